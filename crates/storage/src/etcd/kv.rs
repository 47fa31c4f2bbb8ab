//! Reads and guarded writes, each one etcd request or transaction.
//!
//! | Store call | etcd request |
//! |---|---|
//! | `create` | `Txn(create_revision == 0 → put, else → get)` |
//! | `update` | `Txn(mod_revision == expected ∧ version > 0 → put, get keys-only; else → get)` |
//! | `delete` guarded | `Txn(mod_revision == expected ∧ version > 0 → delete prev_kv; else → get)` |
//! | `delete` unguarded | `DeleteRange(key, prev_kv)` |
//! | `delete_range` | `DeleteRange(start, end)` (one revision) |
//! | `get`, `range` | `Range` (linearizable) |
//! | `current_revision` | count-only `Range`, header revision |
//!
//! The `version > 0` compare keeps an update or delete guarded by revision
//! 0 from matching an absent key (etcd compares an absent key's
//! `mod_revision` as 0).

use bytes::Bytes;
use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, ResponseHeader, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};

use super::Inner;
use super::failure::Failure;
use super::retry::{Idempotence, RetryPolicy};
use crate::{
    DeleteRangeResponse, DeleteResponse, Error, GetResponse, KeyValue, LeaseId, MAX_VALUE_BYTES,
    RangeRequest, RangeResponse, Result, Revision,
};

/// A key no one writes: a count-only read of it is the cheapest request
/// that returns the store revision in its header.
pub(super) const PROBE_KEY: &[u8] = b"\0wsgate/revision-probe";

impl Inner {
    pub(super) async fn get(&self, key: &[u8], revision: Option<Revision>) -> Result<GetResponse> {
        let mut options = GetOptions::new();
        if let Some(r) = revision {
            options = options.with_revision(r);
        }
        let mut resp = match self
            .retry
            .run("get", Idempotence::Idempotent, || {
                let mut kv = self.kv.clone();
                let (key, options) = (key.to_vec(), options.clone());
                async move { kv.get(key, Some(options)).await }
            })
            .await
        {
            Ok(r) => r,
            Err(f) => return Err(self.read_error(f, "get", revision).await),
        };
        let header = header_revision(resp.header())?;
        Ok(GetResponse {
            kv: resp.take_kvs().into_iter().next().map(key_value),
            revision: served_at(revision, header),
        })
    }

    pub(super) async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let mut options = GetOptions::new().with_range(req.end.to_vec());
        if req.limit > 0 {
            options = options.with_limit(i64::try_from(req.limit).unwrap_or(i64::MAX));
        }
        if let Some(r) = req.revision {
            options = options.with_revision(r);
        }
        if req.keys_only {
            options = options.with_keys_only();
        }
        if req.count_only {
            options = options.with_count_only();
        }
        let mut resp = match self
            .retry
            .run("range", Idempotence::Idempotent, || {
                let mut kv = self.kv.clone();
                let (start, options) = (req.start.to_vec(), options.clone());
                async move { kv.get(start, Some(options)).await }
            })
            .await
        {
            Ok(r) => r,
            Err(f) => return Err(self.read_error(f, "range", req.revision).await),
        };
        let header = header_revision(resp.header())?;
        Ok(RangeResponse {
            more: resp.more(),
            count: resp.count(),
            kvs: resp.take_kvs().into_iter().map(key_value).collect(),
            revision: served_at(req.revision, header),
        })
    }

    pub(super) async fn create(
        &self,
        key: &[u8],
        value: Bytes,
        lease: Option<LeaseId>,
    ) -> Result<KeyValue> {
        check_size(&value)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), put_options(lease))])
            .or_else([TxnOp::get(key, None)]);
        let resp = self
            .write_txn("create", txn)
            .await
            .map_err(|f| write_error(f, "create", value.len(), lease))?;
        let revision = header_revision(resp.header())?;
        if !resp.succeeded() {
            let current = txn_get(&resp, 0)?.ok_or_else(|| {
                Error::Corrupted("create: compare failed on an absent key".into())
            })?;
            return Err(Error::AlreadyExists {
                current: Box::new(current),
            });
        }
        Ok(KeyValue {
            key: Bytes::copy_from_slice(key),
            value,
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            lease,
        })
    }

    pub(super) async fn update(
        &self,
        key: &[u8],
        value: Bytes,
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<KeyValue> {
        check_size(&value)?;
        // The keys-only read after the put sees it (reads inside an etcd
        // transaction observe its earlier writes) and supplies the
        // create revision and version without a second round trip.
        let txn = Txn::new()
            .when(guard(key, expected))
            .and_then([
                TxnOp::put(key, value.to_vec(), put_options(lease)),
                TxnOp::get(key, Some(GetOptions::new().with_keys_only())),
            ])
            .or_else([TxnOp::get(key, None)]);
        let resp = self
            .write_txn("update", txn)
            .await
            .map_err(|f| write_error(f, "update", value.len(), lease))?;
        if !resp.succeeded() {
            return match txn_get(&resp, 0)? {
                None => Err(Error::NotFound {
                    key: Bytes::copy_from_slice(key),
                }),
                Some(current) => Err(Error::Conflict {
                    current: Some(Box::new(current)),
                }),
            };
        }
        let mut kv = txn_get(&resp, 1)?
            .ok_or_else(|| Error::Corrupted("update: key absent right after its put".into()))?;
        kv.value = value;
        Ok(kv)
    }

    pub(super) async fn delete(
        &self,
        key: &[u8],
        expected: Option<Revision>,
    ) -> Result<DeleteResponse> {
        let Some(expected) = expected else {
            return self.delete_unguarded(key).await;
        };
        let txn = Txn::new()
            .when(guard(key, expected))
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self
            .write_txn("delete", txn)
            .await
            .map_err(|f| f.into_error("delete"))?;
        let revision = header_revision(resp.header())?;
        if !resp.succeeded() {
            // Absent now: another delete won the race (see `Error::Conflict`).
            return Err(Error::Conflict {
                current: txn_get(&resp, 0)?.map(Box::new),
            });
        }
        let prev = match resp.op_responses().into_iter().next() {
            Some(TxnOpResponse::Delete(mut d)) => d.take_prev_kvs().into_iter().next(),
            _ => None,
        }
        .ok_or_else(|| {
            Error::Corrupted("delete: guarded delete returned no previous key".into())
        })?;
        Ok(DeleteResponse {
            prev: key_value(prev),
            revision,
        })
    }

    async fn delete_unguarded(&self, key: &[u8]) -> Result<DeleteResponse> {
        let mut resp = self
            .retry
            .run("delete", Idempotence::NotIdempotent, || {
                let mut kv = self.kv.clone();
                let key = key.to_vec();
                async move {
                    kv.delete(key, Some(DeleteOptions::new().with_prev_key()))
                        .await
                }
            })
            .await
            .map_err(|f| f.into_error("delete"))?;
        let revision = header_revision(resp.header())?;
        match resp.take_prev_kvs().into_iter().next() {
            Some(prev) => Ok(DeleteResponse {
                prev: key_value(prev),
                revision,
            }),
            None => Err(Error::NotFound {
                key: Bytes::copy_from_slice(key),
            }),
        }
    }

    pub(super) async fn delete_range(
        &self,
        start: &[u8],
        end: &[u8],
    ) -> Result<DeleteRangeResponse> {
        let resp = self
            .retry
            .run("delete_range", Idempotence::NotIdempotent, || {
                let mut kv = self.kv.clone();
                let (start, end) = (start.to_vec(), end.to_vec());
                async move {
                    kv.delete(start, Some(DeleteOptions::new().with_range(end)))
                        .await
                }
            })
            .await
            .map_err(|f| f.into_error("delete_range"))?;
        Ok(DeleteRangeResponse {
            deleted: resp.deleted(),
            revision: header_revision(resp.header())?,
        })
    }

    pub(super) async fn current_revision(&self) -> Result<Revision> {
        self.current_revision_with(&self.retry).await
    }

    /// A linearizable count-only read: its header revision is at least every
    /// revision acknowledged to any client before the call.
    pub(super) async fn current_revision_with(&self, policy: &RetryPolicy) -> Result<Revision> {
        let resp = policy
            .run("current_revision", Idempotence::Idempotent, || {
                let mut kv = self.kv.clone();
                async move {
                    kv.get(PROBE_KEY, Some(GetOptions::new().with_count_only()))
                        .await
                }
            })
            .await
            .map_err(|f| f.into_error("current_revision"))?;
        header_revision(resp.header())
    }

    /// Sends a write transaction, resending it only when etcd certainly did
    /// not apply it (see `retry.rs` for why a read-back cannot prove that).
    async fn write_txn(&self, what: &str, txn: Txn) -> std::result::Result<TxnResponse, Failure> {
        self.retry
            .run(what, Idempotence::NotIdempotent, || {
                let mut kv = self.kv.clone();
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await
    }

    /// The error for a failed read at `requested`, with the revisions the
    /// compacted and future-revision kinds carry.
    pub(super) async fn read_error(
        &self,
        failure: Failure,
        what: &str,
        requested: Option<Revision>,
    ) -> Error {
        match failure {
            Failure::Compacted => {
                let requested = requested.unwrap_or(0);
                match self.compacted_revision_above(requested).await {
                    Ok(compact_revision) => Error::Compacted { compact_revision },
                    Err(e) => e,
                }
            }
            Failure::FutureRevision => match self.current_revision().await {
                Ok(current) => Error::FutureRevision {
                    requested: requested.unwrap_or(0),
                    current,
                },
                Err(e) => e,
            },
            other => other.into_error(what),
        }
    }
}

/// `mod_revision == expected` on a key that exists.
fn guard(key: &[u8], expected: Revision) -> [Compare; 2] {
    [
        Compare::mod_revision(key, CompareOp::Equal, expected),
        Compare::version(key, CompareOp::Greater, 0),
    ]
}

fn put_options(lease: Option<LeaseId>) -> Option<PutOptions> {
    lease.map(|l| PutOptions::new().with_lease(l))
}

fn check_size(value: &Bytes) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::TooLarge {
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

fn write_error(failure: Failure, what: &str, size: usize, lease: Option<LeaseId>) -> Error {
    match failure {
        Failure::LeaseNotFound => Error::LeaseNotFound(lease.unwrap_or(0)),
        // etcd's limit covers the whole request, so a value just under ours
        // can still be refused.
        Failure::TooLarge => Error::TooLarge {
            size,
            limit: MAX_VALUE_BYTES,
        },
        other => other.into_error(what),
    }
}

/// A read at a past revision is served at that revision; etcd's header
/// always carries the current one.
fn served_at(requested: Option<Revision>, header: Revision) -> Revision {
    requested.filter(|r| *r > 0).unwrap_or(header)
}

pub(super) fn header_revision(header: Option<&ResponseHeader>) -> Result<Revision> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| Error::Corrupted("etcd response without a header".into()))
}

/// The first key of the range read at position `index` of a transaction's
/// responses.
fn txn_get(resp: &TxnResponse, index: usize) -> Result<Option<KeyValue>> {
    match resp.op_responses().into_iter().nth(index) {
        Some(TxnOpResponse::Get(mut g)) => Ok(g.take_kvs().into_iter().next().map(key_value)),
        // Not printed: values may be Secrets.
        _ => Err(Error::Corrupted(format!(
            "etcd transaction response {index} is not a range"
        ))),
    }
}

pub(super) fn key_value(kv: etcd_client::KeyValue) -> KeyValue {
    let (create_revision, mod_revision, version, lease) = (
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        kv.lease(),
    );
    let (key, value) = kv.into_key_value();
    KeyValue {
        key: key.into(),
        value: value.into(),
        create_revision,
        mod_revision,
        version,
        lease: (lease != 0).then_some(lease),
    }
}

pub(super) fn key_value_ref(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: Bytes::copy_from_slice(kv.key()),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: (kv.lease() != 0).then_some(kv.lease()),
    }
}
