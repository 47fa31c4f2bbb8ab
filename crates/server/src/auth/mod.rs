//! Authentication: bearer tokens (wsgate-issued ES256 JWTs, ServiceAccount
//! tokens and external OIDC-style issuers) to a [`user::User`].
