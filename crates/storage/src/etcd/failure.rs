//! What went wrong on one etcd call, before it becomes a [`crate::Error`].
//!
//! etcd reports its semantic errors as gRPC statuses whose only structured
//! part is the code; the kind is in the message (`rpctypes` in etcd, which
//! its own Go client also matches on). Those strings are etcd's wire API and
//! have been stable since v3.0, so matching them here, in one place, is what
//! lets every caller above match typed variants instead.

use std::time::Duration;

use tonic::Code;

use crate::Error;

/// Whether a failed request may have been applied by etcd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// etcd refused or never received it: safe to send again, even a write.
    NotApplied,
    /// The request may or may not have been applied (connection lost
    /// mid-call, deadline, leader change): only idempotent calls may be
    /// resent blindly.
    Unknown,
}

/// One failed call, classified.
#[derive(Debug)]
pub(super) enum Failure {
    /// `mvcc: required revision has been compacted`; etcd 3.4 does not say
    /// which revision, see `compaction.rs`.
    Compacted,
    /// `mvcc: required revision is a future revision`.
    FutureRevision,
    /// `requested lease not found`.
    LeaseNotFound,
    /// `request is too large` (etcd's `--max-request-bytes`).
    TooLarge,
    /// etcd rejected the request as malformed or unauthorised; retrying
    /// cannot help.
    Rejected(String),
    /// etcd could not be reached or could not serve the call now.
    Transient {
        outcome: Outcome,
        message: String,
        source: Option<etcd_client::Error>,
    },
}

impl Failure {
    /// A call that did not finish within the request timeout.
    pub(super) fn timed_out(what: &str, after: Duration) -> Failure {
        Failure::Transient {
            outcome: Outcome::Unknown,
            message: format!("{what}: no answer from etcd within {after:?}"),
            source: None,
        }
    }

    pub(super) fn is_transient(&self) -> bool {
        matches!(self, Failure::Transient { .. })
    }

    pub(super) fn outcome(&self) -> Outcome {
        match self {
            Failure::Transient { outcome, .. } => *outcome,
            // etcd answered: it did not apply the request.
            _ => Outcome::NotApplied,
        }
    }

    /// The error for failures that need no further context; the kinds that
    /// carry revisions or ids (compacted, future revision, lease, size) are
    /// built by the caller, which knows them.
    pub(super) fn into_error(self, what: &str) -> Error {
        match self {
            Failure::Compacted => Error::Compacted {
                compact_revision: 0,
            },
            Failure::FutureRevision => Error::FutureRevision {
                requested: 0,
                current: 0,
            },
            Failure::LeaseNotFound => Error::LeaseNotFound(0),
            Failure::TooLarge => Error::TooLarge {
                size: 0,
                limit: crate::MAX_VALUE_BYTES,
            },
            Failure::Rejected(message) => Error::InvalidArgument(format!("{what}: {message}")),
            Failure::Transient {
                outcome,
                message,
                source,
            } => {
                let message = match outcome {
                    Outcome::NotApplied => format!("{what}: {message}"),
                    Outcome::Unknown => {
                        format!("{what}: {message} (the request may have been applied)")
                    }
                };
                Error::Unavailable {
                    message,
                    retry_after: Some(Duration::from_secs(1)),
                    source: source.map(|e| Box::new(e) as _),
                }
            }
        }
    }
}

impl From<etcd_client::Error> for Failure {
    fn from(e: etcd_client::Error) -> Failure {
        use etcd_client::Error as E;
        match &e {
            E::GRpcStatus(status) => {
                let (code, message) = (status.code(), status.message().to_string());
                classify_status(code, &message, e)
            }
            // The client could not build or send the request at all.
            E::InvalidArgs(m) | E::EndpointError(m) => Failure::Rejected(m.clone()),
            E::InvalidUri(u) => Failure::Rejected(u.to_string()),
            // `etcd-client` turns etcd's TTL-0 keep-alive answer into this.
            E::LeaseKeepAliveError(m) if m.contains("lease not found") => Failure::LeaseNotFound,
            E::TransportError(_) | E::IoError(_) => Failure::Transient {
                outcome: Outcome::NotApplied,
                message: e.to_string(),
                source: Some(e),
            },
            // Stream setup and everything else: we cannot tell how far it got.
            _ => Failure::Transient {
                outcome: Outcome::Unknown,
                message: e.to_string(),
                source: Some(e),
            },
        }
    }
}

fn classify_status(code: Code, message: &str, e: etcd_client::Error) -> Failure {
    match code {
        Code::OutOfRange if message.contains("required revision has been compacted") => {
            Failure::Compacted
        }
        Code::OutOfRange if message.contains("future revision") => Failure::FutureRevision,
        Code::NotFound if message.contains("lease not found") => Failure::LeaseNotFound,
        Code::InvalidArgument if message.contains("request is too large") => Failure::TooLarge,
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::AlreadyExists
        | Code::NotFound
        | Code::OutOfRange
        | Code::Unimplemented => Failure::Rejected(message.to_string()),
        _ => Failure::Transient {
            outcome: transient_outcome(code, message),
            message: format!("{code:?}: {message}"),
            source: Some(e),
        },
    }
}

/// Transient failures where etcd certainly did not apply the request.
fn transient_outcome(code: Code, message: &str) -> Outcome {
    // etcd refuses before proposing: no leader known to this member (with
    // `require_leader`), or the apply queue is full.
    const REFUSED_BY_ETCD: [&str; 3] = [
        "etcdserver: no leader",
        "etcdserver: too many requests",
        "etcdserver: not capable",
    ];
    // tonic could not open a connection, so nothing was sent.
    const NOT_CONNECTED: [&str; 3] = [
        "tcp connect error",
        "error trying to connect",
        "Connection refused",
    ];
    let refused = REFUSED_BY_ETCD.iter().any(|m| message.contains(m));
    let unconnected =
        code == Code::Unavailable && NOT_CONNECTED.iter().any(|m| message.contains(m));
    if refused || unconnected {
        Outcome::NotApplied
    } else {
        Outcome::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, message: &str) -> Failure {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, message)).into()
    }

    #[test]
    fn recognises_etcd_semantic_errors() {
        assert!(matches!(
            status(
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted"
            ),
            Failure::Compacted
        ));
        assert!(matches!(
            status(
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision"
            ),
            Failure::FutureRevision
        ));
        assert!(matches!(
            status(Code::NotFound, "etcdserver: requested lease not found"),
            Failure::LeaseNotFound
        ));
        assert!(matches!(
            status(Code::InvalidArgument, "etcdserver: request is too large"),
            Failure::TooLarge
        ));
    }

    #[test]
    fn only_refusals_are_known_not_applied() {
        assert_eq!(
            status(Code::Unavailable, "etcdserver: no leader").outcome(),
            Outcome::NotApplied
        );
        assert_eq!(
            status(Code::Unavailable, "etcdserver: request timed out").outcome(),
            Outcome::Unknown
        );
        assert_eq!(
            status(Code::Unavailable, "etcdserver: leader changed").outcome(),
            Outcome::Unknown
        );
        assert!(status(Code::DeadlineExceeded, "deadline").is_transient());
    }
}
