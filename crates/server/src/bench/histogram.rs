//! Latency histograms: HdrHistogram in nanoseconds, 3 significant digits
//! (so p99 is exact to 0.1%), 1 µs to 10 min.

use std::time::Duration;

use hdrhistogram::Histogram;

const LOWEST_NS: u64 = 1_000;
const HIGHEST_NS: u64 = 600_000_000_000;

/// Latencies of one phase (or one worker of it; merge them).
#[derive(Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts (low >= 1,
        // high >= 2 * low, 3 significant digits): it cannot fail.
        let h = Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, 3)
            .or_else(|_| Histogram::new(3))
            .unwrap_or_else(|_| unreachable!("valid histogram bounds"));
        Latencies(h)
    }

    /// Records one sample; values past the top are clamped into it.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.saturating_record(ns.clamp(LOWEST_NS, HIGHEST_NS));
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The value at `q` (0.0..=1.0), or None without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        (self.count() > 0).then(|| Duration::from_nanos(self.0.value_at_quantile(q)))
    }

    pub fn p50(&self) -> Option<Duration> {
        self.quantile(0.50)
    }

    pub fn p99(&self) -> Option<Duration> {
        self.quantile(0.99)
    }

    pub fn max(&self) -> Option<Duration> {
        (self.count() > 0).then(|| Duration::from_nanos(self.0.max()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let mut h = Latencies::new();
        assert_eq!(h.p50(), None);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us * 10));
        }
        let p50 = h.p50().map(|d| d.as_micros());
        let p99 = h.p99().map(|d| d.as_micros());
        assert!(matches!(p50, Some(499..=501)), "{p50:?}");
        assert!(matches!(p99, Some(989..=991)), "{p99:?}");
        let mut other = Latencies::new();
        other.record(Duration::from_secs(2));
        h.merge(&other);
        assert_eq!(h.count(), 101);
        assert!(h.max().is_some_and(|m| m >= Duration::from_millis(1990)));
    }
}
