//! The storage contract of wsgate and its engines.
//!
//! [`Store`] is an etcd-shaped key-value store with a single global revision
//! counter, guarded writes, snapshot reads, prefix watches with history,
//! compaction and leases. Everything above this crate (the registry, the
//! watch cache, the server) talks only to this trait; the concrete engine is
//! chosen once, by [`open`].
//!
//! This crate knows nothing about HTTP or Kubernetes objects: keys and values
//! are bytes.
//!
//! Engines:
//! - [`embedded`]: a single-file persistent store (redb) in the data
//!   directory; the zero-setup default.
//! - [`etcd`]: a real etcd cluster through `etcd-client`.
//!
//! Both pass the one conformance suite in `tests/conformance/`.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;

pub mod config;
pub mod embedded;
mod error;
pub mod etcd;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{EmbeddedConfig, EtcdConfig, StorageConfig};
pub use error::{Error, Result};

/// A storage revision. Revisions start at 1 and only grow; every successful
/// write (create, update, delete, lease expiry) produces a new one.
pub type Revision = i64;

/// Identifies a lease. `0` is never a valid lease id.
pub type LeaseId = i64;

/// The largest value a single key may hold (etcd's default request limit).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// One key with its value and revision metadata, as etcd reports it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Bytes,
    /// Empty when the read asked for keys only.
    pub value: Bytes,
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since creation; 1 after the create.
    pub version: i64,
    /// Lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

impl fmt::Debug for KeyValue {
    // Values can be large (and are Kubernetes Secrets, sometimes): print sizes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .field("version", &self.version)
            .field("lease", &self.lease)
            .finish()
    }
}

/// A read of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetResponse {
    pub kv: Option<KeyValue>,
    /// The store revision the read was served at.
    pub revision: Revision,
}

/// A read of the keys in `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeRequest {
    pub start: Bytes,
    /// Exclusive end; use [`prefix_end`] to read a prefix.
    pub end: Bytes,
    /// At most this many keys; `0` means no limit.
    pub limit: usize,
    /// Read the snapshot at this revision; `None` is the latest.
    pub revision: Option<Revision>,
    /// Return keys and metadata without values.
    pub keys_only: bool,
    /// Return only `count`, no keys.
    pub count_only: bool,
}

impl RangeRequest {
    /// Every key that starts with `prefix`, at the latest revision.
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        let start: Bytes = prefix.into();
        let end = prefix_end(&start);
        RangeRequest {
            start,
            end,
            limit: 0,
            revision: None,
            keys_only: false,
            count_only: false,
        }
    }

    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    #[must_use]
    pub fn at_revision(mut self, revision: Revision) -> Self {
        self.revision = Some(revision);
        self
    }

    /// Continue a paged read after `key` (exclusive), keeping the same end.
    #[must_use]
    pub fn starting_after(mut self, key: &[u8]) -> Self {
        let mut start = Vec::with_capacity(key.len() + 1);
        start.extend_from_slice(key);
        start.push(0);
        self.start = Bytes::from(start);
        self
    }

    #[must_use]
    pub fn keys_only(mut self) -> Self {
        self.keys_only = true;
        self
    }

    #[must_use]
    pub fn count_only(mut self) -> Self {
        self.count_only = true;
        self
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResponse {
    /// Keys in ascending byte order (empty for `count_only`).
    pub kvs: Vec<KeyValue>,
    /// More keys in the range remain beyond `limit`.
    pub more: bool,
    /// Number of keys in the whole range at that revision (ignores `limit`).
    pub count: i64,
    /// The revision the read was served at: pass it back as
    /// [`RangeRequest::revision`] to read the next page of the same snapshot.
    pub revision: Revision,
}

/// The result of a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteResponse {
    /// The value the key held before the delete.
    pub prev: KeyValue,
    /// The revision of the delete.
    pub revision: Revision,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    pub deleted: i64,
    /// The revision of the delete (the current revision if nothing was deleted).
    pub revision: Revision,
}

/// A watch on the keys in `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchRequest {
    pub start: Bytes,
    pub end: Bytes,
    /// Deliver every event with revision `>= start_revision`, replaying history
    /// when it is in the past; `None` means only events after the current
    /// revision. Kubernetes "changes after resourceVersion X" is `Some(X + 1)`.
    pub start_revision: Option<Revision>,
    /// Emit [`WatchResponse::Progress`] when the watch is idle, so a watcher
    /// learns that it has seen everything up to the store's revision.
    pub progress_notify: bool,
}

impl WatchRequest {
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        let start: Bytes = prefix.into();
        let end = prefix_end(&start);
        WatchRequest {
            start,
            end,
            start_revision: None,
            progress_notify: false,
        }
    }

    #[must_use]
    pub fn from_revision(mut self, revision: Revision) -> Self {
        self.start_revision = Some(revision);
        self
    }

    #[must_use]
    pub fn with_progress_notify(mut self) -> Self {
        self.progress_notify = true;
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a put, the new key-value. For a delete, the key with
    /// `mod_revision` set to the delete's revision and an empty value.
    pub kv: KeyValue,
    /// The key-value before this event; always present for deletes and for
    /// puts that modified an existing key (the registry needs the old object
    /// to emit Kubernetes DELETED events and selector transitions).
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// One message of a watch stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchResponse {
    /// Events in revision order. Every event of one revision (one
    /// transaction) is in the same batch.
    Events(Vec<Event>),
    /// Every event with revision `<= revision` has been delivered.
    Progress { revision: Revision },
}

/// An ordered stream of watch responses. After an `Err` item (for example
/// [`Error::Compacted`] when the start revision is gone) the stream ends.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse>> + Send>>;

/// A granted lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    /// The TTL granted (engines may round up to whole seconds).
    pub ttl: Duration,
}

/// The storage contract. See the crate documentation.
///
/// Guarded writes return [`Error::AlreadyExists`] or [`Error::Conflict`]
/// with the key's current value, so a caller can report a conflict without a
/// second read.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key at the latest revision or at `revision`.
    async fn get(&self, key: &[u8], revision: Option<Revision>) -> Result<GetResponse>;

    /// Reads a range of keys; see [`RangeRequest`].
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse>;

    /// Creates `key` only if it does not exist.
    async fn create(&self, key: &[u8], value: Bytes, lease: Option<LeaseId>) -> Result<KeyValue>;

    /// Replaces the value of `key` only if its `mod_revision` is
    /// `expected_mod_revision`. A missing key is [`Error::NotFound`].
    /// The key keeps no lease unless `lease` is given.
    async fn update(
        &self,
        key: &[u8],
        value: Bytes,
        expected_mod_revision: Revision,
        lease: Option<LeaseId>,
    ) -> Result<KeyValue>;

    /// Deletes `key`, only if its `mod_revision` is `expected_mod_revision`
    /// when one is given.
    async fn delete(
        &self,
        key: &[u8],
        expected_mod_revision: Option<Revision>,
    ) -> Result<DeleteResponse>;

    /// Deletes every key in `[start, end)` in one revision.
    async fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<DeleteRangeResponse>;

    /// The latest revision, read consistently (a quorum read on etcd).
    async fn current_revision(&self) -> Result<Revision>;

    /// Watches a key range; see [`WatchRequest`] and [`WatchStream`].
    async fn watch(&self, req: WatchRequest) -> Result<WatchStream>;

    /// Discards history below `revision`: reads and watches at an older
    /// revision then fail with [`Error::Compacted`].
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The revision history was last compacted at (0 if never).
    async fn compacted_revision(&self) -> Result<Revision>;

    async fn lease_grant(&self, ttl: Duration) -> Result<Lease>;

    /// Renews a lease; returns the TTL it was renewed for.
    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration>;

    /// Revokes a lease, deleting every key attached to it.
    async fn lease_revoke(&self, id: LeaseId) -> Result<()>;
}

/// Opens the engine the configuration names. This is the only constructor
/// the server calls.
pub async fn open(config: &StorageConfig) -> Result<Arc<dyn Store>> {
    match config {
        StorageConfig::Embedded(c) => Ok(Arc::new(embedded::EmbeddedStore::open(c).await?)),
        StorageConfig::Etcd(c) => Ok(Arc::new(etcd::EtcdStore::connect(c).await?)),
    }
}

/// The smallest key greater than every key that starts with `prefix`
/// (etcd's `GetPrefix` range end). An empty or all-0xff prefix gives `\0`,
/// etcd's "to the end of the keyspace".
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::from_static(b"\0")
}

/// True when `key` is in `[start, end)`, with etcd's convention that an end
/// of `\0` means "no upper bound".
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    key >= start && (end == b"\0" || key < end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/registry/"), Bytes::from_static(b"/registry0"));
        assert_eq!(prefix_end(b"a\xff"), Bytes::from_static(b"b"));
        assert_eq!(prefix_end(b"\xff\xff"), Bytes::from_static(b"\0"));
        assert_eq!(prefix_end(b""), Bytes::from_static(b"\0"));
    }

    #[test]
    fn in_range_respects_open_end() {
        assert!(in_range(b"/a/b", b"/a/", &prefix_end(b"/a/")));
        assert!(!in_range(b"/a0", b"/a/", &prefix_end(b"/a/")));
        assert!(in_range(b"zzz", b"a", b"\0"));
    }
}
