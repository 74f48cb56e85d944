//! The audit chain's head, kept in a file beside the database (`<db>.audit-head`) so that
//! removing records from the end of `audit_log`, or all of them, is noticed: the table
//! alone cannot tell a truncated log from a short one. Written after each appended
//! record, atomically (a temporary file, fsync, rename, fsync of the directory).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use selfheal_core::{ChainHead, Error, ErrorKind, Result};

/// The checkpoint file of one database.
#[derive(Debug)]
pub(super) struct CheckpointFile {
    path: PathBuf,
    /// The position last written, so a slower writer never moves the file back.
    written: Mutex<u64>,
}

impl CheckpointFile {
    /// The checkpoint beside `database` (`<database>.audit-head`).
    pub(super) fn beside(database: &Path) -> Self {
        let mut name = database.as_os_str().to_owned();
        name.push(".audit-head");
        CheckpointFile {
            path: PathBuf::from(name),
            written: Mutex::new(0),
        }
    }

    /// What the file says; `None` when there is none.
    pub(super) fn read(&self) -> Result<Option<ChainHead>> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.failed("read", &e)),
        };
        let head: ChainHead = serde_json::from_slice(&text).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!(
                    "the audit checkpoint `{}` does not decode ({e}): it was damaged or \
                     edited; compare the audit log with a backup",
                    self.path.display()
                ),
            )
        })?;
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        *written = (*written).max(head.seq);
        Ok(Some(head))
    }

    /// Writes `head` unless a later position was written already. Runs off the async
    /// runtime: two fsyncs.
    pub(super) async fn advance(self: &Arc<Self>, head: ChainHead) -> Result<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.advance_now(&head))
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("audit checkpoint write: {e}")))?
    }

    fn advance_now(&self, head: &ChainHead) -> Result<()> {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if head.seq <= *written {
            return Ok(());
        }
        let text = serde_json::to_vec(head)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("audit checkpoint: {e}")))?;
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let io = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        io().map_err(|e| self.failed("write", &e))?;
        *written = head.seq;
        Ok(())
    }

    fn failed(&self, what: &str, e: &std::io::Error) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "cannot {what} the audit checkpoint `{}`: {e}; without it a truncated audit \
                 log goes unnoticed",
                self.path.display()
            ),
        )
    }
}
