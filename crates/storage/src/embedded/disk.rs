//! Persistence: one redb file holding the live keys, the revision log since
//! the compaction point, the leases and a few counters. Only the writer
//! thread touches it after open.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use redb::{
    Builder, Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition,
};

use super::encoding;
use super::history::RevisionEntry;
use super::lease::LeaseRecord;
use super::mvcc::Snapshot;
use crate::{Error, EventKind, KeyValue, LeaseId, Result, Revision};

/// The database file inside the data directory.
pub const FILE_NAME: &str = "wsgate.redb";

const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// Key -> its current record (only keys that exist now).
const LIVE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("live");
/// Revision -> every event of that revision, for revisions `>=` the
/// compaction point.
const LOG: TableDefinition<i64, &[u8]> = TableDefinition::new("log");
const LEASES: TableDefinition<i64, &[u8]> = TableDefinition::new("leases");

const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";
const META_NEXT_LEASE: &str = "next_lease";

/// An empty store is at revision 1, like a fresh etcd, so the first write
/// is revision 2.
const INITIAL_REVISION: Revision = 1;

pub struct Disk {
    db: Database,
}

/// A read view of the `live` table at one committed state: where the
/// values of cold keys are read from. It pins that state's pages in the
/// file until dropped, so the writer replaces it with every batch.
pub struct LiveSnapshot {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

/// Cold values wanted in one read at most this far apart are read by one
/// forward scan of the table instead of one lookup each.
const SCAN_RATHER_THAN_GET: usize = 8;

impl LiveSnapshot {
    /// Sets the value of every `kvs[i]` for `i` in `cold` (ascending, and
    /// the keys in key order, as a range returns them) from the snapshot.
    /// Checks each row's revision, so a value can never come from another
    /// version than the one the memory state named.
    pub fn fill(&self, kvs: &mut [KeyValue], cold: &[usize]) -> Result<()> {
        if cold.len() < SCAN_RATHER_THAN_GET {
            for &i in cold {
                let kv = &mut kvs[i];
                let row = self
                    .table
                    .get(&kv.key[..])
                    .map_err(|e| db_error("live", e))?
                    .ok_or_else(|| missing(&kv.key))?;
                kv.value = checked_value(kv, row.value())?;
            }
            return Ok(());
        }
        let (Some(&first), Some(&last)) = (cold.first(), cold.last()) else {
            return Ok(());
        };
        let (from, to) = (kvs[first].key.clone(), kvs[last].key.clone());
        let mut rows = self
            .table
            .range::<&[u8]>(&from[..]..=&to[..])
            .map_err(|e| db_error("live", e))?;
        for &i in cold {
            let kv = &mut kvs[i];
            loop {
                let (k, v) = rows
                    .next()
                    .ok_or_else(|| missing(&kv.key))?
                    .map_err(|e| db_error("live", e))?;
                match k.value().cmp(&kv.key[..]) {
                    std::cmp::Ordering::Less => continue,
                    std::cmp::Ordering::Equal => {
                        kv.value = checked_value(kv, v.value())?;
                        break;
                    }
                    std::cmp::Ordering::Greater => return Err(missing(&kv.key)),
                }
            }
        }
        Ok(())
    }
}

fn checked_value(kv: &KeyValue, row: &[u8]) -> Result<Bytes> {
    let meta = encoding::decode_meta(row)?;
    if meta.mod_revision != kv.mod_revision {
        return Err(Error::Corrupted(format!(
            "key {} is at revision {} on disk, {} in memory",
            String::from_utf8_lossy(&kv.key),
            meta.mod_revision,
            kv.mod_revision
        )));
    }
    Ok(Bytes::copy_from_slice(encoding::decode_value(row)?))
}

fn missing(key: &[u8]) -> Error {
    Error::Corrupted(format!(
        "key {} is live in memory but missing from the live table",
        String::from_utf8_lossy(key)
    ))
}

/// Everything one group commit writes.
pub struct Commit<'a> {
    pub entries: &'a [Arc<RevisionEntry>],
    pub lease_upserts: &'a [(LeaseId, LeaseRecord)],
    pub lease_removals: &'a [LeaseId],
    pub compact: Option<Revision>,
    pub revision: Revision,
    pub next_lease: LeaseId,
}

impl Disk {
    /// Opens (creating if needed) the database in `dir` and reads the
    /// keys, the log and the leases (not the live values). `cache_bytes`
    /// bounds redb's page cache (read cache plus write buffer).
    pub fn open(dir: &Path, cache_bytes: usize) -> Result<(Disk, Snapshot)> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::unavailable(format!("creating {}", dir.display()), e))?;
        let path = dir.join(FILE_NAME);
        let db = Builder::new()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|e| db_error(&format!("opening {}", path.display()), e))?;
        let disk = Disk { db };
        disk.init()?;
        let snap = disk.read_all()?;
        Ok((disk, snap))
    }

    /// Creates the tables so that later read transactions find them.
    fn init(&self) -> Result<()> {
        let mut txn = self.db.begin_write().map_err(|e| db_error("begin", e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| db_error("durability", e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| db_error("meta", e))?;
            let missing = meta
                .get(META_REVISION)
                .map_err(|e| db_error("meta", e))?
                .is_none();
            if missing {
                meta.insert(META_REVISION, INITIAL_REVISION)
                    .map_err(|e| db_error("meta", e))?;
                meta.insert(META_COMPACTED, 0)
                    .map_err(|e| db_error("meta", e))?;
                meta.insert(META_NEXT_LEASE, 1)
                    .map_err(|e| db_error("meta", e))?;
            }
            txn.open_table(LIVE).map_err(|e| db_error("live", e))?;
            txn.open_table(LOG).map_err(|e| db_error("log", e))?;
            txn.open_table(LEASES).map_err(|e| db_error("leases", e))?;
        }
        txn.commit().map_err(|e| db_error("commit", e))
    }

    fn read_all(&self) -> Result<Snapshot> {
        let txn = self.db.begin_read().map_err(|e| db_error("begin", e))?;
        let meta = txn.open_table(META).map_err(|e| db_error("meta", e))?;
        let counter = |name: &str| -> Result<i64> {
            meta.get(name)
                .map_err(|e| db_error("meta", e))?
                .map(|g| g.value())
                .ok_or_else(|| Error::Corrupted(format!("meta counter {name} is missing")))
        };
        let revision = counter(META_REVISION)?;
        let compacted = counter(META_COMPACTED)?;
        let next_lease = counter(META_NEXT_LEASE)?;

        // Keys and their bookkeeping only: values stay on disk until read.
        let table = txn.open_table(LIVE).map_err(|e| db_error("live", e))?;
        let mut live = Vec::with_capacity(
            usize::try_from(table.len().map_err(|e| db_error("live", e))?).unwrap_or(0),
        );
        for row in table.iter().map_err(|e| db_error("live", e))? {
            let (k, v) = row.map_err(|e| db_error("live", e))?;
            live.push((
                Box::<[u8]>::from(k.value()),
                encoding::decode_meta(v.value())?,
            ));
        }

        let mut log = Vec::new();
        let table = txn.open_table(LOG).map_err(|e| db_error("log", e))?;
        for row in table.iter().map_err(|e| db_error("log", e))? {
            let (k, v) = row.map_err(|e| db_error("log", e))?;
            log.push(encoding::decode_entry(k.value(), v.value())?);
        }

        let mut leases = Vec::new();
        let table = txn.open_table(LEASES).map_err(|e| db_error("leases", e))?;
        for row in table.iter().map_err(|e| db_error("leases", e))? {
            let (k, v) = row.map_err(|e| db_error("leases", e))?;
            leases.push((k.value(), encoding::decode_lease(k.value(), v.value())?));
        }

        Ok(Snapshot {
            revision,
            compacted,
            next_lease,
            live,
            log,
            leases,
        })
    }

    /// A read view of the live table as last committed.
    pub fn snapshot(&self) -> Result<Arc<LiveSnapshot>> {
        let txn = self.db.begin_read().map_err(|e| db_error("begin", e))?;
        let table = txn.open_table(LIVE).map_err(|e| db_error("live", e))?;
        Ok(Arc::new(LiveSnapshot { table }))
    }

    /// Writes one group commit in one transaction and returns only once it
    /// is durable (`Durability::Immediate`: fsynced; `None` would be lost on
    /// a crash).
    pub fn commit(&self, c: &Commit<'_>) -> Result<()> {
        let mut txn = self.db.begin_write().map_err(|e| db_error("begin", e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| db_error("durability", e))?;
        {
            let mut log = txn.open_table(LOG).map_err(|e| db_error("log", e))?;
            let mut live = txn.open_table(LIVE).map_err(|e| db_error("live", e))?;
            let mut buf = Vec::new();
            for entry in c.entries {
                log.insert(entry.revision, encoding::encode_entry(entry).as_slice())
                    .map_err(|e| db_error("log", e))?;
                for ev in &entry.events {
                    match ev.kind {
                        EventKind::Put => {
                            buf.clear();
                            encoding::encode_kv(&ev.kv, &mut buf);
                            live.insert(&ev.kv.key[..], buf.as_slice())
                                .map_err(|e| db_error("live", e))?;
                        }
                        EventKind::Delete => {
                            live.remove(&ev.kv.key[..])
                                .map_err(|e| db_error("live", e))?;
                        }
                    }
                }
            }
            if let Some(at) = c.compact {
                log.retain_in(..at, |_, _| false)
                    .map_err(|e| db_error("compact", e))?;
            }

            let mut leases = txn.open_table(LEASES).map_err(|e| db_error("leases", e))?;
            for (id, rec) in c.lease_upserts {
                leases
                    .insert(*id, &encoding::encode_lease(rec)[..])
                    .map_err(|e| db_error("leases", e))?;
            }
            for id in c.lease_removals {
                leases.remove(*id).map_err(|e| db_error("leases", e))?;
            }

            let mut meta = txn.open_table(META).map_err(|e| db_error("meta", e))?;
            meta.insert(META_REVISION, c.revision)
                .map_err(|e| db_error("meta", e))?;
            meta.insert(META_NEXT_LEASE, c.next_lease)
                .map_err(|e| db_error("meta", e))?;
            if let Some(at) = c.compact {
                meta.insert(META_COMPACTED, at)
                    .map_err(|e| db_error("meta", e))?;
            }
        }
        txn.commit().map_err(|e| db_error("commit", e))
    }
}

/// redb's corruption report becomes [`Error::Corrupted`]; anything else
/// (I/O, the file locked by another process) is [`Error::Unavailable`].
fn db_error(context: &str, e: impl Into<redb::Error>) -> Error {
    match e.into() {
        redb::Error::Corrupted(msg) => Error::Corrupted(format!("{context}: {msg}")),
        other => Error::unavailable(format!("embedded store: {context}"), other),
    }
}
