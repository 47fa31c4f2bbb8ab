//! Label and field selectors: parsing (the full Kubernetes grammar) and matching.
