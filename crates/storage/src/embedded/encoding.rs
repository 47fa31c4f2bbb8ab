//! The on-disk byte layout of records. Hand-written so the format is ours to
//! version and every decode failure becomes [`Error::Corrupted`] instead of
//! a panic.
//!
//! Integers are little-endian and fixed width: records are small, and fixed
//! widths keep the decoder trivially bounds-checked.

use bytes::Bytes;

use super::history::RevisionEntry;
use super::lease::LeaseRecord;
use super::mvcc::Meta;
use crate::{Error, Event, EventKind, KeyValue, Result};

/// First byte of every log entry; bump when the layout changes.
const LOG_FORMAT: u8 = 1;

const KIND_PUT: u8 = 0;
const KIND_DELETE: u8 = 1;

/// The live record of a key: everything but the key itself (the table key).
pub fn encode_kv(kv: &KeyValue, out: &mut Vec<u8>) {
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.version.to_le_bytes());
    out.extend_from_slice(&kv.lease.unwrap_or(0).to_le_bytes());
    put_bytes(out, &kv.value);
}

/// Bytes of a live record before its value: four integers and the length.
const KV_HEADER: usize = 4 * 8 + 4;

/// The bookkeeping of a live record without touching its value (what an
/// open reads for every key).
pub fn decode_meta(row: &[u8]) -> Result<Meta> {
    value_len(row)?;
    let int = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&row[i * 8..i * 8 + 8]);
        i64::from_le_bytes(a)
    };
    Ok(Meta {
        create_revision: int(0),
        mod_revision: int(1),
        version: int(2),
        lease: int(3),
    })
}

/// The value of a live record.
pub fn decode_value(row: &[u8]) -> Result<&[u8]> {
    value_len(row)?;
    Ok(&row[KV_HEADER..])
}

fn value_len(row: &[u8]) -> Result<usize> {
    let header = row
        .get(..KV_HEADER)
        .ok_or_else(|| Error::Corrupted(format!("live record truncated: {} bytes", row.len())))?;
    let mut n = [0u8; 4];
    n.copy_from_slice(&header[32..]);
    let n = u32::from_le_bytes(n) as usize;
    if KV_HEADER + n != row.len() {
        return Err(Error::Corrupted(format!(
            "live record holds {} value bytes, says {n}",
            row.len() - KV_HEADER
        )));
    }
    Ok(n)
}

#[cfg(test)]
pub fn decode_kv(key: Bytes, row: &[u8]) -> Result<KeyValue> {
    let buf = Bytes::copy_from_slice(row);
    let mut r = Reader::new(&buf);
    let kv = r.kv(key)?;
    r.finish()?;
    Ok(kv)
}

/// One revision: its commit time and every event it produced, with the
/// previous value of each key, so that watch replay after a restart can
/// report `prev_kv` without a second lookup.
pub fn encode_entry(entry: &RevisionEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + entry.events.len() * 96);
    out.push(LOG_FORMAT);
    out.extend_from_slice(&entry.time_ms.to_le_bytes());
    out.extend_from_slice(&(entry.events.len() as u32).to_le_bytes());
    for ev in &entry.events {
        out.push(match ev.kind {
            EventKind::Put => KIND_PUT,
            EventKind::Delete => KIND_DELETE,
        });
        put_bytes(&mut out, &ev.kv.key);
        if ev.kind == EventKind::Put {
            encode_kv(&ev.kv, &mut out);
        }
        match &ev.prev_kv {
            Some(prev) => {
                out.push(1);
                encode_kv(prev, &mut out);
            }
            None => out.push(0),
        }
    }
    out
}

pub fn decode_entry(revision: i64, row: &[u8]) -> Result<RevisionEntry> {
    // One allocation per entry; keys and values are slices of it.
    let buf = Bytes::copy_from_slice(row);
    let mut r = Reader::new(&buf);
    let format = r.u8()?;
    if format != LOG_FORMAT {
        return Err(Error::Corrupted(format!(
            "log entry {revision} has unknown format {format}"
        )));
    }
    let time_ms = r.i64()?;
    let n = r.u32()? as usize;
    let mut events = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let kind = r.u8()?;
        let key = r.bytes()?;
        let kv = match kind {
            KIND_PUT => r.kv(key.clone())?,
            KIND_DELETE => tombstone(key.clone(), revision),
            other => {
                return Err(Error::Corrupted(format!(
                    "log entry {revision} has unknown event kind {other}"
                )));
            }
        };
        if kv.mod_revision != revision {
            return Err(Error::Corrupted(format!(
                "log entry {revision} holds an event of revision {}",
                kv.mod_revision
            )));
        }
        let prev_kv = match r.u8()? {
            0 => None,
            1 => Some(r.kv(key)?),
            other => {
                return Err(Error::Corrupted(format!(
                    "log entry {revision} has a bad prev flag {other}"
                )));
            }
        };
        events.push(Event {
            kind: if kind == KIND_PUT {
                EventKind::Put
            } else {
                EventKind::Delete
            },
            kv,
            prev_kv,
        });
    }
    r.finish()?;
    Ok(RevisionEntry {
        revision,
        time_ms,
        events,
    })
}

pub fn encode_lease(rec: &LeaseRecord) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&rec.ttl_ms.to_le_bytes());
    out[8..].copy_from_slice(&rec.deadline_ms.to_le_bytes());
    out
}

pub fn decode_lease(id: i64, row: &[u8]) -> Result<LeaseRecord> {
    let buf = Bytes::copy_from_slice(row);
    let mut r = Reader::new(&buf);
    let rec = LeaseRecord {
        ttl_ms: r.i64()?,
        deadline_ms: r.i64()?,
    };
    r.finish()
        .map_err(|_| Error::Corrupted(format!("lease {id} record has trailing bytes")))?;
    Ok(rec)
}

/// The key-value a delete event carries: the key and the delete's revision.
pub fn tombstone(key: Bytes, revision: i64) -> KeyValue {
    KeyValue {
        key,
        value: Bytes::new(),
        create_revision: 0,
        mod_revision: revision,
        version: 0,
        lease: None,
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// A bounds-checked cursor over one stored row.
struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<std::ops::Range<usize>> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| {
                Error::Corrupted(format!(
                    "record truncated: need {n} bytes at offset {} of {}",
                    self.pos,
                    self.buf.len()
                ))
            })?;
        let r = self.pos..end;
        self.pos = end;
        Ok(r)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let r = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[r]);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<Bytes> {
        let n = self.u32()? as usize;
        let r = self.take(n)?;
        Ok(self.buf.slice(r))
    }

    fn kv(&mut self, key: Bytes) -> Result<KeyValue> {
        let create_revision = self.i64()?;
        let mod_revision = self.i64()?;
        let version = self.i64()?;
        let lease = self.i64()?;
        let value = self.bytes()?;
        Ok(KeyValue {
            key,
            value,
            create_revision,
            mod_revision,
            version,
            lease: (lease != 0).then_some(lease),
        })
    }

    fn finish(&self) -> Result<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(Error::Corrupted(format!(
                "record has {} trailing bytes",
                self.buf.len() - self.pos
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, rev: i64) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            create_revision: 2,
            mod_revision: rev,
            version: 3,
            lease: Some(7),
        }
    }

    #[test]
    fn entry_round_trips() {
        let entry = RevisionEntry {
            revision: 9,
            time_ms: 1234,
            events: vec![
                Event {
                    kind: EventKind::Put,
                    kv: kv("/a", "new", 9),
                    prev_kv: Some(kv("/a", "old", 5)),
                },
                Event {
                    kind: EventKind::Delete,
                    kv: tombstone(Bytes::from_static(b"/b"), 9),
                    prev_kv: Some(kv("/b", "gone", 4)),
                },
            ],
        };
        let bytes = encode_entry(&entry);
        let back = decode_entry(9, &bytes).expect("decode");
        assert_eq!(back.time_ms, 1234);
        assert_eq!(back.events, entry.events);
    }

    #[test]
    fn truncated_or_garbage_rows_are_corrupted() {
        let entry = RevisionEntry {
            revision: 3,
            time_ms: 1,
            events: vec![Event {
                kind: EventKind::Put,
                kv: kv("/a", "v", 3),
                prev_kv: None,
            }],
        };
        let bytes = encode_entry(&entry);
        for cut in 0..bytes.len() {
            assert!(matches!(
                decode_entry(3, &bytes[..cut]),
                Err(Error::Corrupted(_))
            ));
        }
        // Decoded under the wrong revision: the event does not belong there.
        assert!(matches!(decode_entry(4, &bytes), Err(Error::Corrupted(_))));
        assert!(matches!(
            decode_kv(Bytes::new(), &[1, 2, 3]),
            Err(Error::Corrupted(_))
        ));
        let mut row = Vec::new();
        encode_kv(&kv("/a", "value", 3), &mut row);
        for cut in 0..row.len() {
            assert!(matches!(decode_meta(&row[..cut]), Err(Error::Corrupted(_))));
            assert!(matches!(
                decode_value(&row[..cut]),
                Err(Error::Corrupted(_))
            ));
        }
    }

    #[test]
    fn meta_and_value_read_without_a_copy() {
        let kv = kv("/a", "value", 3);
        let mut row = Vec::new();
        encode_kv(&kv, &mut row);
        let meta = decode_meta(&row).expect("meta");
        assert_eq!(meta, Meta::of(&kv));
        assert_eq!(decode_value(&row).expect("value"), b"value");
        assert_eq!(decode_kv(kv.key.clone(), &row).expect("kv"), kv);
    }
}
