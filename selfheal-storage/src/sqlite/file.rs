//! Whether the database file a [`super::SqliteStore`] writes to is still the one at its
//! path. A deleted or replaced file keeps taking writes through the open descriptor, and
//! all of them are gone when the process exits; the store notices and refuses.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use selfheal_core::{Error, ErrorKind, Result};

/// How often a read looks at the file; every write looks after it commits.
const READ_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Whether a [`super::SqliteStore`] still writes to the database file it opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SqliteHealth {
    /// The file at the path is the one the store opened (or the store is in memory).
    Healthy,
    /// The file was deleted or moved away while the store had it open. Writes since
    /// then went to the unlinked file and are lost when the store closes; the store
    /// refuses every call.
    FileDeleted {
        /// The path the store opened.
        path: PathBuf,
    },
    /// Another file took the path (a restore, a copy over it) while the store had the
    /// old one open. The store refuses every call rather than write to the old file.
    FileReplaced {
        /// The path the store opened.
        path: PathBuf,
    },
}

impl SqliteHealth {
    /// Whether the store can be trusted with writes.
    pub fn is_healthy(&self) -> bool {
        matches!(self, SqliteHealth::Healthy)
    }
}

impl fmt::Display for SqliteHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqliteHealth::Healthy => f.write_str("healthy"),
            SqliteHealth::FileDeleted { path } => write!(
                f,
                "the SQLite database file `{}` was deleted or moved away while the store had \
                 it open: writes since then went to the deleted file and are lost when the \
                 process exits, so the store refuses every call; put the file back from a \
                 backup, or restart the service to open a new database",
                path.display()
            ),
            SqliteHealth::FileReplaced { path } => write!(
                f,
                "the SQLite database file `{}` was replaced by another file while the store \
                 had the old one open: writes since then went to the old, unlinked file and \
                 are lost when the process exits, so the store refuses every call; restart \
                 the service to open the new file, or put the old one back",
                path.display()
            ),
        }
    }
}

/// The identity of the file a store opened, and what became of it.
#[derive(Debug)]
pub(super) struct FileWatch {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Set once, when the file is found deleted or replaced; never cleared.
    lost: OnceLock<SqliteHealth>,
    /// When a read last looked, in milliseconds since `start`.
    last_check_ms: AtomicU64,
    start: Instant,
}

impl FileWatch {
    /// Watches the file now at `path`, if there is one (an in-memory database has none).
    /// The path is made absolute first: a host that changes its working directory has
    /// not lost its database.
    pub(super) fn of(path: &Path) -> Option<Self> {
        let path = std::fs::canonicalize(path).ok()?;
        let meta = std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
        Some(FileWatch {
            path,
            dev: meta.dev(),
            ino: meta.ino(),
            lost: OnceLock::new(),
            last_check_ms: AtomicU64::new(0),
            start: Instant::now(),
        })
    }

    /// Looks at the path now: one `stat`.
    pub(super) fn health(&self) -> SqliteHealth {
        if let Some(lost) = self.lost.get() {
            return lost.clone();
        }
        let now = match std::fs::metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => return SqliteHealth::Healthy,
            Ok(_) => SqliteHealth::FileReplaced {
                path: self.path.clone(),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SqliteHealth::FileDeleted {
                path: self.path.clone(),
            },
            // Cannot look (a permission, an I/O error): no verdict, the queries will say.
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e, "cannot stat the SQLite database file");
                return SqliteHealth::Healthy;
            }
        };
        let lost = self.lost.get_or_init(|| {
            tracing::error!(
                path = %self.path.display(),
                health = ?now,
                "{now}"
            );
            now
        });
        lost.clone()
    }

    /// Before a call: fails once the file is known lost, and lets a read look at most
    /// every [`READ_CHECK_EVERY`].
    pub(super) fn before(&self) -> Result<()> {
        if let Some(lost) = self.lost.get() {
            return Err(refusal(lost));
        }
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_check_ms.load(Ordering::Relaxed);
        let every = u64::try_from(READ_CHECK_EVERY.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(last) >= every
            && self
                .last_check_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return self.after();
        }
        Ok(())
    }

    /// After a write committed: fails if it went to a file no longer at the path.
    pub(super) fn after(&self) -> Result<()> {
        match self.health() {
            SqliteHealth::Healthy => Ok(()),
            lost => Err(refusal(&lost)),
        }
    }
}

fn refusal(lost: &SqliteHealth) -> Error {
    Error::new(ErrorKind::Closed, lost.to_string())
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    use super::*;

    fn watched_file(dir: &Path) -> (PathBuf, FileWatch) {
        let path = dir.join("selfheal.db");
        std::fs::write(&path, b"x").unwrap();
        let watch = FileWatch::of(&path).unwrap();
        (path, watch)
    }

    #[test]
    fn a_read_looks_at_most_once_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let (path, watch) = watched_file(dir.path());
        std::fs::remove_file(&path).unwrap();
        // Within the first second a read does not look; a write always does.
        assert!(watch.before().is_ok());
        assert!(watch.after().is_err());
        assert!(watch.before().is_err(), "refused from then on");

        let (path, mut watch) = watched_file(dir.path());
        watch.start = Instant::now()
            .checked_sub(READ_CHECK_EVERY * 2)
            .expect("the clock runs long enough");
        assert!(watch.before().is_ok(), "the file is there");
        std::fs::remove_file(&path).unwrap();
        // The look just made counts for a second: the next read does not look again…
        assert!(watch.before().is_ok());
        // …until a second has passed.
        watch.last_check_ms.store(0, Ordering::Relaxed);
        let err = watch.before().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Closed);
        assert!(err.message().contains("was deleted"), "{err}");
    }

    #[derive(Clone, Default)]
    struct Errors(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> Layer<S> for Errors {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            if *event.metadata().level() == tracing::Level::ERROR {
                let mut fields = Fields::default();
                event.record(&mut fields);
                self.0.lock().unwrap().push(fields.0);
            }
        }
    }

    #[derive(Default)]
    struct Fields(String);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            let _ = write!(self.0, "{}={value:?} ", field.name());
        }
    }

    #[test]
    fn a_replaced_file_is_logged_once_at_error_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let (path, watch) = watched_file(dir.path());
        let other = dir.path().join("other.db");
        std::fs::write(&other, b"y").unwrap();
        std::fs::rename(&other, &path).unwrap();
        let errors = Errors::default();
        let subscriber = tracing_subscriber::registry().with(errors.clone());
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..3 {
                assert_eq!(
                    watch.health(),
                    SqliteHealth::FileReplaced { path: path.clone() }
                );
                assert!(watch.after().is_err());
            }
        });
        let logged = errors.0.lock().unwrap().clone();
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert!(logged[0].contains("was replaced"), "{logged:?}");
        assert!(
            logged[0].contains(&path.display().to_string()),
            "{logged:?}"
        );
    }
}
