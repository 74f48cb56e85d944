//! Where a file tail stopped, as kept in the store: per path, the file's identity and
//! the offset up to which every line was handed over.

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A file's identity: its device and inode, which a rename keeps and a new file at the
/// same path does not. `None` where the platform has none to offer (not unix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    #[cfg(unix)]
    pub(crate) fn of(meta: &Metadata) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        Some(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    #[cfg(not(unix))]
    pub(crate) fn of(_meta: &Metadata) -> Option<FileId> {
        None
    }
}

/// The most bytes at the start of a file that its [`Head`] covers.
pub(crate) const HEAD_BYTES: usize = 256;

/// A hash of a file's first bytes (up to [`HEAD_BYTES`]): what an append-only log
/// never changes. With the identity it tells a file from a new one that got a deleted
/// file's inode again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Head {
    /// How many bytes it covers (0: none known).
    pub head_len: u32,
    /// Their FNV-1a hash.
    pub head_hash: u64,
}

impl Head {
    fn of(bytes: &[u8]) -> Head {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        Head {
            head_len: bytes.len() as u32,
            head_hash: hash,
        }
    }

    /// The head of `file` over at most `len` bytes; the file's position is left at
    /// `pos`.
    pub(crate) fn read(file: &mut File, len: usize, pos: u64) -> io::Result<Head> {
        let mut buf = [0u8; HEAD_BYTES];
        let want = len.min(HEAD_BYTES);
        file.seek(SeekFrom::Start(0))?;
        let mut got = 0;
        while got < want {
            match file.read(&mut buf[got..want]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        file.seek(SeekFrom::Start(pos))?;
        Ok(Head::of(&buf[..got]))
    }

    /// Whether `file` starts with the bytes this head was taken of (always, for a head
    /// of no bytes); its position is left at `pos`.
    pub(crate) fn matches(self, file: &mut File, pos: u64) -> io::Result<bool> {
        if self.head_len == 0 {
            return Ok(true);
        }
        Ok(Head::read(file, self.head_len as usize, pos)? == self)
    }
}

/// Which file: its identity and its head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ident {
    pub id: Option<FileId>,
    pub head: Head,
}

/// A place in a file: which file, and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub file: Ident,
    pub offset: u64,
}

/// One path's stored place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub path: PathBuf,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub id: Option<FileId>,
    #[serde(flatten)]
    pub head: Head,
    pub offset: u64,
}

/// The document a file tail keeps in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    pub files: Vec<Stored>,
}

impl Cursor {
    /// The cursor in `value`; an empty one when there is none or it cannot be read
    /// (logged: the tail then starts as if new).
    pub(crate) fn from_value(value: Option<Value>) -> Cursor {
        let Some(value) = value else {
            return Cursor::default();
        };
        serde_json::from_value(value).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the stored file cursor could not be read; starting without it");
            Cursor::default()
        })
    }

    pub(crate) fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The stored place of `path`.
    pub(crate) fn get(&self, path: &std::path::Path) -> Option<&Stored> {
        self.files.iter().find(|f| f.path == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_a_bad_one_is_empty() {
        let cursor = Cursor {
            files: vec![
                Stored {
                    path: "/var/log/a.log".into(),
                    id: Some(FileId { dev: 1, ino: 2 }),
                    head: Head::of(b"2026-12-04 first line"),
                    offset: 42,
                },
                Stored {
                    path: "/var/log/b.log".into(),
                    id: None,
                    head: Head::default(),
                    offset: 0,
                },
            ],
        };
        let value = cursor.to_value();
        assert_eq!(
            value["files"][0],
            serde_json::json!({
                "path": "/var/log/a.log",
                "dev": 1,
                "ino": 2,
                "head_len": 21,
                "head_hash": Head::of(b"2026-12-04 first line").head_hash,
                "offset": 42
            })
        );
        // A cursor without heads (or identities) reads as one with none.
        let bare = serde_json::json!({"files": [{"path": "/x", "offset": 3}]});
        assert_eq!(
            Cursor::from_value(Some(bare)).files[0].head,
            Head::default()
        );
        assert_eq!(Cursor::from_value(Some(value)), cursor);
        assert_eq!(
            Cursor::from_value(Some(serde_json::json!({"files": 3}))),
            Cursor::default()
        );
        assert_eq!(Cursor::from_value(None), Cursor::default());
    }
}

#[cfg(test)]
mod head_tests {
    use super::*;

    #[test]
    fn a_head_tells_a_file_from_another_with_other_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "first line\nsecond line\n").unwrap();
        let mut file = File::open(&path).unwrap();
        let head = Head::read(&mut file, HEAD_BYTES, 5).unwrap();
        assert_eq!(head.head_len, 23);
        assert_eq!(file.stream_position().unwrap(), 5, "the position is kept");
        assert!(head.matches(&mut file, 0).unwrap());
        std::fs::write(&path, "other line\nsecond line\n").unwrap();
        assert!(!head.matches(&mut File::open(&path).unwrap(), 0).unwrap());
        std::fs::write(&path, "first").unwrap();
        assert!(
            !head.matches(&mut File::open(&path).unwrap(), 0).unwrap(),
            "shorter"
        );
        assert!(
            Head::default()
                .matches(&mut File::open(&path).unwrap(), 0)
                .unwrap()
        );
    }
}
