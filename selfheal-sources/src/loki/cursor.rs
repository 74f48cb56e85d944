//! Where polling resumes: the last timestamp read and the entries already read at it.
//!
//! Several entries can share one nanosecond, and a page of `limit` entries can end in
//! the middle of them. So the next query starts *at* that timestamp (Loki's `start` is
//! inclusive) and skips the entries already read there, known by a hash of their
//! stream's labels and their line (never the line itself: the cursor is stored, and a
//! log line may hold a secret). Everything before the timestamp has been read.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::answer::Entry;

/// The resume point of a Loki source, saved with `Feed::save_cursor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Nanoseconds since the Unix epoch, as a string (JSON numbers lose precision past
    /// 2^53 in many readers): the next query starts here, inclusive.
    #[serde(with = "ns_string")]
    pub ts: i64,
    /// Hashes of the entries at `ts` already read.
    #[serde(default)]
    pub seen: BTreeSet<String>,
}

impl Cursor {
    /// A cursor at `ts` with nothing read there yet.
    pub fn at(ts: i64) -> Self {
        Cursor {
            ts,
            seen: BTreeSet::new(),
        }
    }

    /// Whether `entry` is new: not before the cursor, and not one already read at it.
    pub fn is_new(&self, entry: &Entry) -> bool {
        entry.ts > self.ts || (entry.ts == self.ts && !self.seen.contains(&key(entry)))
    }

    /// Records `entry` as read (entries come in timestamp order).
    pub fn read(&mut self, entry: &Entry) {
        if entry.ts > self.ts {
            *self = Cursor::at(entry.ts);
        }
        if entry.ts == self.ts {
            self.seen.insert(key(entry));
        }
    }

    /// Everything before `ts` has been read: moves up to it (never back).
    pub fn complete_until(&mut self, ts: i64) {
        if ts > self.ts {
            *self = Cursor::at(ts);
        }
    }
}

/// An entry's identity at its timestamp: its stream's labels and its line, hashed. Loki
/// keeps one entry per (stream, timestamp, line), so this is unique at a timestamp.
fn key(entry: &Entry) -> String {
    let mut hash = Sha256::new();
    for (k, v) in entry.labels.iter() {
        hash.update(k.as_bytes());
        hash.update([0x1f]);
        hash.update(v.as_bytes());
        hash.update([0x1e]);
    }
    hash.update([0x1d]);
    hash.update(entry.line.as_bytes());
    hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

mod ns_string {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(ts: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&ts.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(|e| D::Error::custom(format!("a cursor timestamp: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::loki::answer::Labels;

    fn entry(ts: i64, app: &str, line: &str) -> Entry {
        Entry {
            ts,
            labels: Arc::new(Labels::from([("app".to_owned(), app.to_owned())])),
            metadata: Labels::new(),
            line: line.to_owned(),
        }
    }

    #[test]
    fn entries_at_the_cursor_are_new_until_read() {
        let mut c = Cursor::at(10);
        let (a, b, c2) = (
            entry(10, "api", "a"),
            entry(10, "web", "a"),
            entry(10, "api", "b"),
        );
        assert!(!c.is_new(&entry(9, "api", "old")));
        c.read(&a);
        assert!(!c.is_new(&a));
        assert!(c.is_new(&b), "same line, other stream");
        assert!(c.is_new(&c2), "same stream, other line");
        c.read(&entry(11, "api", "x"));
        assert_eq!(c.ts, 11);
        assert_eq!(c.seen.len(), 1, "moving on forgets the older timestamp");
        c.complete_until(5);
        assert_eq!(c.ts, 11, "never back");
        c.complete_until(20);
        assert_eq!(c, Cursor::at(20));
    }

    #[test]
    fn it_round_trips_as_json_without_the_lines() {
        let mut c = Cursor::at(1_700_000_000_123_456_789);
        c.read(&entry(1_700_000_000_123_456_789, "api", "password=hunter2"));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["ts"], "1700000000123456789");
        assert!(!json.to_string().contains("hunter2"));
        assert_eq!(serde_json::from_value::<Cursor>(json).unwrap(), c);
        assert!(serde_json::from_value::<Cursor>(serde_json::json!({"ts": "x"})).is_err());
    }
}
