//! [`SqliteStore`]: the embedded default store, one SQLite file (or memory) per service.
//!
//! ```
//! use selfheal_core::{IncidentFilter, IncidentStore, Pattern, PatternStore};
//! use selfheal_storage::SqliteStore;
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
//! let store = SqliteStore::open("sqlite::memory:").await?;
//! store.add_pattern(&Pattern::new("redis_refused").regex("connection refused")).await?;
//! let p = store.record_outcome("redis_refused", "restart_service", true, 0.05).await?;
//! assert_eq!(p.use_count, 1);
//! assert!(store.list_incidents(&IncidentFilter::default()).await?.is_empty());
//! # Ok(()) }
//! ```

mod checkpoint;
mod file;
mod rows;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use selfheal_core::store::fleet_expiry;
use selfheal_core::{
    ActionRecord, Approval, ApprovalState, AuditRecord, AuditStore, ChainHead, ControlStore,
    Decided, Diagnosis, DiagnosisCache, Error, ErrorKind, Fingerprint, FleetStore, Incident,
    IncidentFilter, IncidentStatus, IncidentStore, LeaseGrant, OverviewRow, Pattern, PatternReport,
    PatternStore, ReportStore, Result, SharedCooldown, Store,
};
use sqlx::SqliteConnection;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqliteLockingMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use tracing::instrument;
use uuid::Uuid;

use self::checkpoint::CheckpointFile;
use self::file::FileWatch;
pub use self::file::SqliteHealth;
use self::rows::{
    ActionRow, ApprovalRow, AuditRow, FixRow, IncidentRow, OverviewDbRow, PatternRow,
};
use crate::StorageError;
use crate::codec::{
    duration_ns, enum_text, json, opt_ts, parse_json, parse_ts, to_i64, truncate, ts, uuid_text,
};

/// The schema, embedded at build time and applied on open.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits for another writer before giving up with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest fingerprint sample kept, in bytes (cut on a char boundary).
pub const MAX_SAMPLE_BYTES: usize = 4096;

/// A [`Store`] in an SQLite database: a file or memory. The schema is migrated
/// on open. Cloning is cheap and shares the connection.
///
/// A file is opened in WAL mode with `locking_mode=EXCLUSIVE`, `synchronous=NORMAL`,
/// `mmap_size=0` and foreign keys on, through one connection that stays open:
///
/// - **Nothing is memory-mapped.** In exclusive mode SQLite keeps the WAL index in heap
///   memory instead of a shared `-shm` file, and the database is read with `read()`. A
///   write fault on a mapped file that became immutable or was truncated is a SIGBUS
///   that kills the host; here the same fault is an I/O error (`Unavailable`).
/// - **One process owns the file.** The lock is held from open to close: another
///   process (a second replica, the `sqlite3` shell) cannot open the file while the
///   store has it, and a store that finds it held fails to open with `Unavailable`.
///   For several processes use PostgreSQL.
/// - **Crash safe.** WAL with `synchronous=NORMAL`: a killed process loses nothing it
///   committed; a power cut may lose the last commits, never the file.
/// - **A deleted or replaced file is noticed.** After each write (and before a read, at
///   most once a second) the store compares the file at its path with the one it
///   opened. If the file was deleted, moved or replaced, that call and every later one
///   fail with [`ErrorKind::Closed`], an error is logged once, and
///   [`SqliteStore::health`] says what happened.
///
/// Timestamps are kept to the microsecond; everything else round-trips exactly.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The database file and what became of it; `None` in memory.
    file: Option<Arc<FileWatch>>,
    /// The audit chain's head, kept beside the file; `None` in memory.
    checkpoint: Option<Arc<CheckpointFile>>,
}

/// How [`SqliteStore::open_with`] opens a store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// Seed the stock pattern catalog on open ([`selfheal_core::catalog::seed`]): add
    /// the stock patterns the store lacks and upgrade those no operator changed.
    /// Default: on.
    pub seed_catalog: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { seed_catalog: true }
    }
}

impl SqliteOptions {
    /// Whether to seed the stock catalog on open.
    pub fn seed_catalog(mut self, yes: bool) -> Self {
        self.seed_catalog = yes;
        self
    }
}

impl SqliteStore {
    /// Opens (creating it and its directory if missing) the database at `url_or_path`,
    /// migrates it and seeds the stock pattern catalog: `sqlite://path/to/selfheal.db`,
    /// a plain path, or `sqlite::memory:` for a private in-memory database. See
    /// [`SqliteStore::open_with`] to open without seeding.
    pub async fn open(url_or_path: &str) -> Result<Self> {
        Self::open_with(url_or_path, SqliteOptions::default()).await
    }

    /// [`SqliteStore::open`] with options, e.g. without seeding the stock catalog:
    ///
    /// ```
    /// use selfheal_core::PatternStore;
    /// use selfheal_storage::{SqliteOptions, SqliteStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
    /// let bare = SqliteStore::open_with("sqlite::memory:", SqliteOptions::default().seed_catalog(false)).await?;
    /// assert!(bare.list_patterns().await?.is_empty());
    /// let seeded = SqliteStore::open("sqlite::memory:").await?;
    /// assert!(seeded.get_pattern("redis_oom").await?.is_some());
    /// # Ok(()) }
    /// ```
    #[instrument(level = "debug", skip_all)]
    pub async fn open_with(url_or_path: &str, options: SqliteOptions) -> Result<Self> {
        let store = Self::open_unseeded(url_or_path).await?;
        if options.seed_catalog {
            let report = selfheal_core::catalog::seed(&store).await?;
            tracing::debug!(
                added = report.added.len(),
                upgraded = report.upgraded.len(),
                kept = report.kept.len(),
                "seeded the stock pattern catalog"
            );
        }
        Ok(store)
    }

    async fn open_unseeded(url_or_path: &str) -> Result<Self> {
        let spec = url_or_path.trim();
        if spec.is_empty() {
            return Err(Error::invalid(
                "empty SQLite location; pass a file path, `sqlite://path` or `sqlite::memory:`",
            ));
        }
        if spec.contains("://") && !spec.starts_with("sqlite://") {
            return Err(Error::invalid(format!(
                "`{spec}` is not an SQLite location; pass a file path, `sqlite://path` or `sqlite::memory:`"
            )));
        }
        if is_memory(spec) {
            let url = if spec.starts_with("sqlite:") {
                spec
            } else {
                "sqlite::memory:"
            };
            let options = SqliteConnectOptions::from_str(url).map_err(err)?;
            return Self::connect_memory(options).await;
        }
        let options = if spec.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(spec).map_err(err)?
        } else {
            SqliteConnectOptions::new().filename(spec)
        };
        // Exclusive locking before WAL (sqlx sets `locking_mode` first): the WAL index
        // lives in heap memory, never in a memory-mapped `-shm` file; with
        // `mmap_size=0` nothing of the database is mapped, so a file that turns
        // read-only or shrinks under the store is an I/O error, not a SIGBUS.
        let options = options
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .locking_mode(SqliteLockingMode::Exclusive)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .pragma("mmap_size", "0");
        ensure_parent_dir(options.get_filename())?;
        // One connection, kept open: it holds the exclusive lock, which a second
        // connection would wait on. SQLite serialises writers anyway.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(|e| {
                let e = Error::from(StorageError::from(e));
                let held = if e.message().contains("database is locked") {
                    " (another process has it open: the SQLite store opens its file \
                     exclusively; stop that process, choose another file, or use \
                     PostgreSQL to share one database)"
                } else {
                    ""
                };
                Error::new(
                    e.kind(),
                    format!(
                        "cannot open SQLite database `{spec}`{held}: {}",
                        e.message()
                    ),
                )
                .with_source(e)
            })?;
        // Should the connection ever be replaced, it must not create an empty database
        // where the file was deleted.
        pool.set_connect_options(options.create_if_missing(false));
        tracing::debug!(database = spec, "opened SQLite store");
        Self::from_pool(pool).await
    }

    /// A new, empty, private in-memory database (not seeded with the stock catalog).
    /// Nothing survives the store.
    pub async fn in_memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(err)?;
        Self::connect_memory(options).await
    }

    /// One connection that is never closed: an in-memory database lives as long as
    /// its last connection.
    async fn connect_memory(options: SqliteConnectOptions) -> Result<Self> {
        let options = options.foreign_keys(true).busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(err)?;
        let mut store = Self::from_pool(pool).await?;
        store.file = None;
        store.checkpoint = None;
        Ok(store)
    }

    /// Uses an existing pool (for your own options) and migrates its database. Nothing
    /// is seeded: call [`selfheal_core::catalog::seed`] for the stock catalog.
    /// A file database is watched for deletion and replacement like one opened by
    /// [`SqliteStore::open`]; the pool's journal and locking settings are yours.
    #[instrument(level = "debug", skip_all)]
    pub async fn from_pool(pool: SqlitePool) -> Result<Self> {
        MIGRATOR.run(&pool).await.map_err(err)?;
        let filename = pool.connect_options().get_filename().to_owned();
        let file = FileWatch::of(&filename).map(Arc::new);
        let checkpoint = file
            .as_ref()
            .and_then(|_| std::fs::canonicalize(&filename).ok())
            .map(|path| Arc::new(CheckpointFile::beside(&path)));
        let store = SqliteStore {
            pool,
            file,
            checkpoint,
        };
        store.start_checkpoint().await;
        Ok(store)
    }

    /// A database without an audit checkpoint beside it (new, or written by an older
    /// version) gets one at its newest record. A log truncated before that goes
    /// unnoticed, so it is said.
    async fn start_checkpoint(&self) {
        let Some(checkpoint) = &self.checkpoint else {
            return;
        };
        match checkpoint.read() {
            Ok(Some(_)) => {}
            Ok(None) => match self.list_audit(1).await {
                Ok(mut newest) => {
                    if let Some(newest) = newest.pop() {
                        tracing::warn!(
                            seq = newest.seq,
                            "no audit checkpoint beside the database; starting one at its \
                             newest record (a truncation before now cannot be told)"
                        );
                        if let Err(e) = checkpoint.advance(newest.head()).await {
                            tracing::error!(error = %e, "could not start the audit checkpoint");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not read the audit head"),
            },
            Err(e) => tracing::error!(error = %e, "the audit checkpoint cannot be read"),
        }
    }

    /// Whether the store still writes to the database file it opened: one `stat` of
    /// the path. A store in memory is always [`SqliteHealth::Healthy`].
    ///
    /// ```
    /// use selfheal_core::PatternStore;
    /// use selfheal_storage::{SqliteHealth, SqliteStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("selfheal.db");
    /// let store = SqliteStore::open(path.to_str().unwrap()).await?;
    /// assert_eq!(store.health(), SqliteHealth::Healthy);
    /// std::fs::remove_file(&path).unwrap();
    /// assert!(matches!(store.health(), SqliteHealth::FileDeleted { .. }));
    /// assert!(store.list_patterns().await.is_err());
    /// # Ok(()) }
    /// ```
    pub fn health(&self) -> SqliteHealth {
        self.file
            .as_ref()
            .map_or(SqliteHealth::Healthy, |f| f.health())
    }

    /// Before a read: refuses once the file is known lost (and looks at most once a
    /// second).
    fn check(&self) -> Result<()> {
        self.file.as_ref().map_or(Ok(()), |f| f.before())
    }

    /// Runs a write, then makes sure it went to the file at the store's path: a write
    /// to a deleted or replaced file is an error, not a success that is lost on exit.
    async fn write<T>(&self, op: impl Future<Output = Result<T>>) -> Result<T> {
        self.check()?;
        let done = op.await?;
        if let Some(f) = &self.file {
            f.after()?;
        }
        Ok(done)
    }

    /// The schema migrations this version applies on open, to compare a database's
    /// `_sqlx_migrations` with before opening it (the `selfheal` CLI refuses a store it
    /// would have to migrate).
    pub fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    /// The connection pool, for reading the tables with SQL. A file store has one
    /// connection: while you hold it (a transaction, a streaming query) the store's own
    /// calls wait for it. Writes made through the pool bypass the file watch.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection, waiting for those in use. Later calls fail with
    /// [`ErrorKind::Closed`].
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Counts one occurrence of `fp` seen at `at`, keeping `sample` (cut to
    /// [`MAX_SAMPLE_BYTES`]) as the latest example. Returns how often it has been seen.
    #[instrument(level = "debug", skip_all, fields(fingerprint = %fp.id))]
    pub async fn record_fingerprint(
        &self,
        fp: &Fingerprint,
        sample: &str,
        at: DateTime<Utc>,
    ) -> Result<u64> {
        self.write(async {
            const SQL: &str = "INSERT INTO fingerprints \
                    (id, template, stack, version, sample, first_seen, last_seen, count) \
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1) \
                ON CONFLICT (id) DO UPDATE SET \
                    count = count + 1, \
                    template = excluded.template, \
                    stack = excluded.stack, \
                    version = excluded.version, \
                    sample = CASE WHEN excluded.last_seen >= last_seen \
                        THEN excluded.sample ELSE sample END, \
                    first_seen = MIN(first_seen, excluded.first_seen), \
                    last_seen = MAX(last_seen, excluded.last_seen) \
                RETURNING count";
            let count: i64 = sqlx::query_scalar(SQL)
                .bind(&fp.id)
                .bind(&fp.template)
                .bind(fp.stack.as_deref())
                .bind(i64::from(fp.version))
                .bind(truncate(sample, MAX_SAMPLE_BYTES))
                .bind(ts(at))
                .fetch_one(&self.pool)
                .await
                .map_err(err)?;
            crate::codec::to_u64("fingerprints.count", count).map_err(err)
        })
        .await
    }
}

/// Whether `spec` names an in-memory database.
fn is_memory(spec: &str) -> bool {
    let rest = spec
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (db, query) = rest.split_once('?').unwrap_or((rest, ""));
    db == ":memory:" || query.split('&').any(|kv| kv == "mode=memory")
}

fn ensure_parent_dir(path: &Path) -> Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "cannot create directory `{}` for the SQLite database: {e}; create it or choose another path",
                dir.display()
            ),
        )
        .with_source(e)
    })
}

/// Converts a database error, logging the ones callers do not expect.
fn err(e: impl Into<StorageError>) -> Error {
    let e: StorageError = e.into();
    match e.kind() {
        ErrorKind::Unavailable => tracing::warn!(error = %e, "SQLite store unavailable"),
        ErrorKind::Internal => tracing::error!(error = %e, "SQLite store error"),
        _ => tracing::debug!(error = %e, "SQLite store refused an operation"),
    }
    e.into()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

// ---- patterns -----------------------------------------------------------------------

const SELECT_PATTERNS: &str = "SELECT name, description, regex, keywords, error_type, target, \
    severity, root_cause, auto_healable, confidence, mode, min_occurrences, window_ns, \
    use_count, enabled, ambiguous FROM patterns ORDER BY name";
const SELECT_PATTERN: &str = "SELECT name, description, regex, keywords, error_type, target, \
    severity, root_cause, auto_healable, confidence, mode, min_occurrences, window_ns, \
    use_count, enabled, ambiguous FROM patterns WHERE name = ?1";
const SELECT_FIXES: &str = "SELECT pattern, strategy, params, priority, requires_approval, \
    successes, failures FROM pattern_fixes ORDER BY pattern, position";
const SELECT_FIXES_OF: &str = "SELECT pattern, strategy, params, priority, requires_approval, \
    successes, failures FROM pattern_fixes WHERE pattern = ?1 ORDER BY position";
const INSERT_PATTERN: &str = "INSERT INTO patterns (name, description, regex, keywords, \
    error_type, target, severity, root_cause, auto_healable, confidence, mode, \
    min_occurrences, window_ns, use_count, enabled, created_at, updated_at, ambiguous) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16, ?17)";
const UPDATE_PATTERN: &str = "UPDATE patterns SET description = ?2, regex = ?3, keywords = ?4, \
    error_type = ?5, target = ?6, severity = ?7, root_cause = ?8, auto_healable = ?9, \
    confidence = ?10, mode = ?11, min_occurrences = ?12, window_ns = ?13, use_count = ?14, \
    enabled = ?15, updated_at = ?16, ambiguous = ?17 WHERE name = ?1";
const INSERT_FIX: &str = "INSERT INTO pattern_fixes (pattern, position, strategy, params, \
    priority, requires_approval, successes, failures, last_applied_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// A pattern's columns, converted once, bound in the order of `INSERT_PATTERN` and
/// `UPDATE_PATTERN`.
struct PatternValues {
    keywords: String,
    severity: String,
    mode: String,
    window_ns: i64,
    use_count: i64,
    now: String,
}

impl PatternValues {
    fn of(p: &Pattern) -> Result<Self> {
        Ok(PatternValues {
            keywords: json("pattern keywords", &p.keywords).map_err(err)?,
            severity: enum_text(&p.severity),
            mode: enum_text(&p.mode),
            window_ns: duration_ns("pattern window", p.window).map_err(err)?,
            use_count: to_i64("pattern use_count", p.use_count).map_err(err)?,
            now: ts(Utc::now()),
        })
    }
}

async fn exec_pattern(
    conn: &mut SqliteConnection,
    sql: &'static str,
    p: &Pattern,
    v: &PatternValues,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(sql)
        .bind(&p.name)
        .bind(&p.description)
        .bind(p.regex.as_deref())
        .bind(&v.keywords)
        .bind(p.error_type.as_deref())
        .bind(p.target.as_deref())
        .bind(&v.severity)
        .bind(&p.root_cause)
        .bind(p.auto_healable)
        .bind(p.confidence)
        .bind(&v.mode)
        .bind(i64::from(p.min_occurrences))
        .bind(v.window_ns)
        .bind(v.use_count)
        .bind(p.enabled)
        .bind(&v.now)
        .bind(p.ambiguous)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Inserts `p`'s fixes in order, keeping `last_applied` times by strategy.
async fn insert_fixes(
    conn: &mut SqliteConnection,
    p: &Pattern,
    last_applied: &HashMap<String, Option<String>>,
) -> Result<()> {
    for (position, fix) in p.fixes.iter().enumerate() {
        let params = json("fix params", &fix.params).map_err(err)?;
        sqlx::query(INSERT_FIX)
            .bind(&p.name)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(&fix.strategy)
            .bind(params)
            .bind(i64::from(fix.priority))
            .bind(fix.requires_approval)
            .bind(to_i64("fix successes", fix.successes).map_err(err)?)
            .bind(to_i64("fix failures", fix.failures).map_err(err)?)
            .bind(last_applied.get(&fix.strategy).cloned().flatten())
            .execute(&mut *conn)
            .await
            .map_err(err)?;
    }
    Ok(())
}

async fn load_pattern(conn: &mut SqliteConnection, name: &str) -> Result<Option<Pattern>> {
    let row: Option<PatternRow> = sqlx::query_as(SELECT_PATTERN)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(err)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let fixes: Vec<FixRow> = sqlx::query_as(SELECT_FIXES_OF)
        .bind(name)
        .fetch_all(&mut *conn)
        .await
        .map_err(err)?;
    Ok(rows::assemble(vec![row], fixes).map_err(err)?.pop())
}

/// Rejects a pattern the way [`Pattern::validate`] does, and values SQLite cannot hold.
fn validate(p: &Pattern) -> Result<PatternValues> {
    p.validate()?;
    PatternValues::of(p)
}

// ---- incidents, actions, approvals, audit -------------------------------------------

const UPSERT_INCIDENT: &str = "INSERT INTO incidents (id, target, fingerprint, template, \
    related, pattern, status, severity, occurrences, samples, opened_at, last_seen, closed_at, \
    reason, stack) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
    ON CONFLICT (id) DO UPDATE SET target = excluded.target, \
    fingerprint = excluded.fingerprint, template = excluded.template, stack = excluded.stack, \
    related = excluded.related, pattern = excluded.pattern, status = excluded.status, \
    severity = excluded.severity, occurrences = excluded.occurrences, \
    samples = excluded.samples, opened_at = excluded.opened_at, \
    last_seen = excluded.last_seen, closed_at = excluded.closed_at, reason = excluded.reason";
const SELECT_INCIDENT: &str = "SELECT id, target, fingerprint, template, related, \
    pattern, status, severity, occurrences, samples, opened_at, last_seen, closed_at, reason, \
    stack FROM incidents WHERE id = ?1";
// Ties in time keep insertion order (an upsert keeps its rowid), as in MemoryStore.
const LIST_INCIDENTS: &str = "SELECT id, target, fingerprint, template, related, \
    pattern, status, severity, occurrences, samples, opened_at, last_seen, closed_at, reason, \
    stack FROM incidents \
    WHERE (?1 IS NULL OR target = ?1) \
      AND (?2 IS NULL OR status IN (SELECT value FROM json_each(?2))) \
    ORDER BY opened_at DESC, rowid ASC LIMIT ?3";

const UPSERT_ACTION: &str = "INSERT INTO actions (id, incident, pattern, strategy, target, \
    preview, status, success, exit_code, stdout, stderr, duration_ns, health_before, \
    health_after, started_at, finished_at, error) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
    ON CONFLICT (id) DO UPDATE SET incident = excluded.incident, \
    pattern = excluded.pattern, strategy = excluded.strategy, target = excluded.target, \
    preview = excluded.preview, status = excluded.status, success = excluded.success, \
    exit_code = excluded.exit_code, stdout = excluded.stdout, stderr = excluded.stderr, \
    duration_ns = excluded.duration_ns, health_before = excluded.health_before, \
    health_after = excluded.health_after, started_at = excluded.started_at, \
    finished_at = excluded.finished_at, error = excluded.error";
const LIST_ACTIONS: &str = "SELECT id, incident, pattern, strategy, target, preview, status, \
    success, exit_code, stdout, stderr, duration_ns, health_before, health_after, started_at, \
    finished_at, error FROM actions WHERE (?1 IS NULL OR incident = ?1) \
    ORDER BY started_at DESC, rowid ASC";

// A decision is final: saving an approval again never undoes it.
const UPSERT_APPROVAL: &str = "INSERT INTO approvals (id, incident, pattern, plan, reason, \
    confidence, requested_at, state, decided_by, decided_at, note) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
    ON CONFLICT (id) DO UPDATE SET incident = excluded.incident, \
    pattern = excluded.pattern, plan = excluded.plan, reason = excluded.reason, \
    confidence = excluded.confidence, requested_at = excluded.requested_at, \
    state = excluded.state, decided_by = excluded.decided_by, \
    decided_at = excluded.decided_at, note = excluded.note \
    WHERE approvals.state = 'pending'";
const GET_APPROVAL: &str = "SELECT id, incident, pattern, plan, reason, confidence, \
    requested_at, state, decided_by, decided_at, note FROM approvals WHERE id = ?1";
const LIST_APPROVALS: &str = "SELECT id, incident, pattern, plan, reason, confidence, \
    requested_at, state, decided_by, decided_at, note FROM approvals \
    WHERE (?1 IS NULL OR state = ?1) ORDER BY requested_at ASC, rowid ASC";
const DECIDE_APPROVAL: &str = "UPDATE approvals SET state = ?2, decided_by = ?3, \
    decided_at = ?4, note = ?5 WHERE id = ?1 AND state = 'pending'";

const INSERT_AUDIT: &str = "INSERT INTO audit_log (seq, at, event_type, actor, incident, \
    pattern, confidence, action, result, controls, detail, prev_hash, hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
const SELECT_DIAGNOSIS: &str =
    "SELECT diagnosis FROM diagnosis_cache WHERE fingerprint = ?1 AND expires_at > ?2";
const UPSERT_DIAGNOSIS: &str = "INSERT INTO diagnosis_cache (fingerprint, diagnosis, created_at, \
    expires_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (fingerprint) DO UPDATE SET \
    diagnosis = excluded.diagnosis, created_at = excluded.created_at, expires_at = excluded.expires_at";
const PURGE_DIAGNOSES: &str = "DELETE FROM diagnosis_cache WHERE expires_at <= ?1";
const LIST_AUDIT: &str = "SELECT seq, at, event_type, actor, incident, pattern, confidence, \
    action, result, controls, detail, prev_hash, hash FROM (\
    SELECT * FROM audit_log ORDER BY seq DESC LIMIT ?1) ORDER BY seq ASC";

impl Store for SqliteStore {
    fn name(&self) -> &str {
        "sqlite"
    }

    fn fleet(&self) -> Option<&dyn FleetStore> {
        Some(self)
    }
}

#[async_trait]
impl PatternStore for SqliteStore {
    #[instrument(level = "debug", skip_all)]
    async fn list_patterns(&self) -> Result<Vec<Pattern>> {
        self.check()?;
        // One read transaction: patterns and fixes from the same snapshot.
        let mut tx = self.pool.begin().await.map_err(err)?;
        let patterns: Vec<PatternRow> = sqlx::query_as(SELECT_PATTERNS)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
        let fixes: Vec<FixRow> = sqlx::query_as(SELECT_FIXES)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        rows::assemble(patterns, fixes).map_err(err)
    }

    #[instrument(level = "debug", skip_all, fields(pattern = name))]
    async fn get_pattern(&self, name: &str) -> Result<Option<Pattern>> {
        self.check()?;
        let mut tx = self.pool.begin().await.map_err(err)?;
        let pattern = load_pattern(&mut tx, name).await?;
        tx.commit().await.map_err(err)?;
        Ok(pattern)
    }

    #[instrument(level = "debug", skip_all, fields(pattern = %pattern.name))]
    async fn add_pattern(&self, pattern: &Pattern) -> Result<()> {
        self.write(async {
            let values = validate(pattern)?;
            let mut tx = self.pool.begin().await.map_err(err)?;
            match exec_pattern(&mut tx, INSERT_PATTERN, pattern, &values).await {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "pattern `{}` exists already; update it instead",
                            pattern.name
                        ),
                    )
                    .with_source(StorageError::from(e)));
                }
                Err(e) => return Err(err(e)),
            }
            insert_fixes(&mut tx, pattern, &HashMap::new()).await?;
            tx.commit().await.map_err(err)
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(pattern = %pattern.name))]
    async fn update_pattern(&self, pattern: &Pattern) -> Result<()> {
        self.write(async {
            let values = validate(pattern)?;
            // Write first, so the transaction holds the write lock from its first statement.
            let mut tx = self.pool.begin().await.map_err(err)?;
            let updated = exec_pattern(&mut tx, UPDATE_PATTERN, pattern, &values)
                .await
                .map_err(err)?;
            if updated == 0 {
                return Err(Error::not_found(format!(
                    "no pattern named `{}`; add it first",
                    pattern.name
                )));
            }
            // Keep when each strategy was last applied across the replacement.
            let previous: Vec<(String, Option<String>)> = sqlx::query_as(
                "SELECT strategy, last_applied_at FROM pattern_fixes WHERE pattern = ?1 \
                 ORDER BY position",
            )
            .bind(&pattern.name)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
            let mut last_applied = HashMap::new();
            for (strategy, at) in previous {
                last_applied.entry(strategy).or_insert(at);
            }
            sqlx::query("DELETE FROM pattern_fixes WHERE pattern = ?1")
                .bind(&pattern.name)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            insert_fixes(&mut tx, pattern, &last_applied).await?;
            tx.commit().await.map_err(err)
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(pattern = pattern, strategy = strategy, success = success))]
    async fn record_outcome(
        &self,
        pattern: &str,
        strategy: &str,
        success: bool,
        confidence_delta: f64,
    ) -> Result<Pattern> {
        self.write(async {
            if confidence_delta.is_nan() {
                return Err(Error::invalid(format!(
                    "confidence delta for pattern `{pattern}` is NaN; pass a number"
                )));
            }
            let now = ts(Utc::now());
            let mut tx = self.pool.begin().await.map_err(err)?;
            let updated = sqlx::query(
                "UPDATE patterns SET confidence = MIN(1.0, MAX(0.0, confidence + ?1)), \
                 use_count = use_count + ?2, updated_at = ?3 WHERE name = ?4",
            )
            .bind(confidence_delta)
            .bind(i64::from(success))
            .bind(&now)
            .bind(pattern)
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
            if updated == 0 {
                return Err(Error::not_found(format!("no pattern named `{pattern}`")));
            }
            // The first fix bound to the strategy, as MemoryStore counts it.
            sqlx::query(
                "UPDATE pattern_fixes SET successes = successes + ?1, failures = failures + ?2, \
                 last_applied_at = ?3 WHERE pattern = ?4 AND position = (\
                 SELECT MIN(position) FROM pattern_fixes WHERE pattern = ?4 AND strategy = ?5)",
            )
            .bind(i64::from(success))
            .bind(i64::from(!success))
            .bind(&now)
            .bind(pattern)
            .bind(strategy)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            let updated = load_pattern(&mut tx, pattern).await?.ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    format!("pattern `{pattern}` vanished inside its own transaction; report this"),
                )
            })?;
            tx.commit().await.map_err(err)?;
            Ok(updated)
        })
        .await
    }
}

#[async_trait]
impl IncidentStore for SqliteStore {
    #[instrument(level = "debug", skip_all, fields(incident = %incident.id))]
    async fn save_incident(&self, incident: &Incident) -> Result<()> {
        self.write(async {
            sqlx::query(UPSERT_INCIDENT)
                .bind(uuid_text(incident.id))
                .bind(&incident.target)
                .bind(&incident.fingerprint)
                .bind(&incident.template)
                .bind(json("incident related", &incident.related).map_err(err)?)
                .bind(incident.pattern.as_deref())
                .bind(enum_text(&incident.status))
                .bind(enum_text(&incident.severity))
                .bind(to_i64("incident occurrences", incident.occurrences).map_err(err)?)
                .bind(json("incident samples", &incident.samples).map_err(err)?)
                .bind(ts(incident.opened_at))
                .bind(ts(incident.last_seen))
                .bind(opt_ts(incident.closed_at))
                .bind(&incident.reason)
                .bind(incident.stack.as_deref())
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(incident = %id))]
    async fn get_incident(&self, id: Uuid) -> Result<Option<Incident>> {
        self.check()?;
        let row: Option<IncidentRow> = sqlx::query_as(SELECT_INCIDENT)
            .bind(uuid_text(id))
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.map(Incident::try_from).transpose().map_err(err)
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>> {
        self.check()?;
        let statuses = if filter.statuses.is_empty() {
            None
        } else {
            let names: Vec<String> = filter.statuses.iter().map(enum_text).collect();
            Some(json("status filter", &names).map_err(err)?)
        };
        // LIMIT -1 is no limit in SQLite.
        let limit = filter
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows: Vec<IncidentRow> = sqlx::query_as(LIST_INCIDENTS)
            .bind(filter.target.as_deref())
            .bind(statuses)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows::convert(rows).map_err(err)
    }

    #[instrument(level = "debug", skip_all, fields(action = %action.id))]
    async fn save_action(&self, action: &ActionRecord) -> Result<()> {
        self.write(async {
            let outcome = action.outcome.as_ref();
            let duration = outcome
                .map(|o| duration_ns("action duration", o.duration))
                .transpose()
                .map_err(err)?;
            sqlx::query(UPSERT_ACTION)
                .bind(uuid_text(action.id))
                .bind(uuid_text(action.incident))
                .bind(action.pattern.as_deref())
                .bind(&action.strategy)
                .bind(&action.target)
                .bind(&action.preview)
                .bind(enum_text(&action.status))
                .bind(outcome.map(|o| o.success))
                .bind(outcome.and_then(|o| o.exit_code))
                .bind(outcome.map(|o| o.stdout.as_str()))
                .bind(outcome.map(|o| o.stderr.as_str()))
                .bind(duration)
                .bind(action.health_before.map(i64::from))
                .bind(action.health_after.map(i64::from))
                .bind(ts(action.started_at))
                .bind(opt_ts(action.finished_at))
                .bind(action.error.as_deref())
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_actions(&self, incident: Option<Uuid>) -> Result<Vec<ActionRecord>> {
        self.check()?;
        let rows: Vec<ActionRow> = sqlx::query_as(LIST_ACTIONS)
            .bind(incident.map(uuid_text))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows::convert(rows).map_err(err)
    }

    #[instrument(level = "debug", skip_all, fields(approval = %approval.id))]
    async fn save_approval(&self, approval: &Approval) -> Result<()> {
        self.write(async {
            sqlx::query(UPSERT_APPROVAL)
                .bind(uuid_text(approval.id))
                .bind(uuid_text(approval.incident))
                .bind(approval.pattern.as_deref())
                .bind(json("approval plan", &approval.plan).map_err(err)?)
                .bind(&approval.reason)
                .bind(approval.confidence)
                .bind(ts(approval.requested_at))
                .bind(enum_text(&approval.state))
                .bind(approval.decided_by.as_deref())
                .bind(approval.decided_at.map(ts))
                .bind(approval.note.as_deref())
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_approvals(&self, pending_only: bool) -> Result<Vec<Approval>> {
        self.check()?;
        let state = pending_only.then(|| enum_text(&ApprovalState::Pending));
        let rows: Vec<ApprovalRow> = sqlx::query_as(LIST_APPROVALS)
            .bind(state)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows::convert(rows).map_err(err)
    }

    #[instrument(level = "debug", skip_all, fields(older_than = %older_than))]
    async fn retention_cleanup(&self, older_than: DateTime<Utc>) -> Result<u64> {
        self.write(async {
            const DELETE_ACTIONS: &str = "DELETE FROM actions WHERE incident IN (\
                SELECT id FROM incidents WHERE status IN (SELECT value FROM json_each(?1)) \
                  AND COALESCE(closed_at, last_seen) < ?2)";
            const DELETE_APPROVALS: &str = "DELETE FROM approvals WHERE incident IN (\
                SELECT id FROM incidents WHERE status IN (SELECT value FROM json_each(?1)) \
                  AND COALESCE(closed_at, last_seen) < ?2)";
            const DELETE_INCIDENTS: &str = "DELETE FROM incidents \
                WHERE status IN (SELECT value FROM json_each(?1)) \
                  AND COALESCE(closed_at, last_seen) < ?2";

            let terminal: Vec<String> = [
                IncidentStatus::Open,
                IncidentStatus::AwaitingApproval,
                IncidentStatus::Queued,
                IncidentStatus::Remediating,
                IncidentStatus::Resolved,
                IncidentStatus::Escalated,
                IncidentStatus::Closed,
            ]
            .into_iter()
            .filter(|s| s.is_terminal())
            .map(|s| enum_text(&s))
            .collect();
            let terminal = json("terminal statuses", &terminal).map_err(err)?;
            let cutoff = ts(older_than);

            let mut tx = self.pool.begin().await.map_err(err)?;
            // Children first: actions and approvals, then their incidents.
            let mut deleted = [0u64; 3];
            for (count, sql) in
                deleted
                    .iter_mut()
                    .zip([DELETE_ACTIONS, DELETE_APPROVALS, DELETE_INCIDENTS])
            {
                *count = sqlx::query(sql)
                    .bind(&terminal)
                    .bind(&cutoff)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
            }
            let [actions, approvals, incidents] = deleted;
            tx.commit().await.map_err(err)?;
            tracing::info!(incidents, actions, approvals, cutoff, "retention cleanup");
            Ok(incidents)
        })
        .await
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    #[instrument(level = "debug", skip_all, fields(seq = record.seq))]
    async fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        self.write(async {
            let result = sqlx::query(INSERT_AUDIT)
                .bind(to_i64("audit seq", record.seq).map_err(err)?)
                .bind(ts(record.at))
                .bind(&record.event_type)
                .bind(&record.actor)
                .bind(record.incident.map(uuid_text))
                .bind(record.pattern.as_deref())
                .bind(record.confidence)
                .bind(record.action.as_deref())
                .bind(&record.result)
                .bind(json("audit controls", &record.controls).map_err(err)?)
                .bind(json("audit detail", &record.detail).map_err(err)?)
                .bind(&record.prev_hash)
                .bind(&record.hash)
                .execute(&self.pool)
                .await;
            match result {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "audit record {} exists already; the audit log is append-only",
                        record.seq
                    ),
                )
                .with_source(StorageError::from(e))),
                Err(e) => Err(err(e)),
            }
        })
        .await?;
        // The record is in; a checkpoint that could not follow weakens only the check
        // for truncation, and says so.
        if let Some(checkpoint) = &self.checkpoint
            && let Err(e) = checkpoint.advance(record.head()).await
        {
            tracing::error!(seq = record.seq, error = %e, "audit record written, its checkpoint not");
        }
        Ok(())
    }

    #[instrument(level = "debug", skip_all, fields(limit = limit))]
    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        self.check()?;
        let rows: Vec<AuditRow> = sqlx::query_as(LIST_AUDIT)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows::convert(rows).map_err(err)
    }

    async fn audit_checkpoint(&self) -> Result<Option<ChainHead>> {
        self.check()?;
        self.checkpoint.as_ref().map_or(Ok(None), |c| c.read())
    }

    #[instrument(level = "debug", skip_all)]
    async fn recent_activity(&self, since: DateTime<Utc>) -> Result<Vec<AuditRecord>> {
        self.check()?;
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT seq, at, event_type, actor, incident, pattern, confidence, action, result, \
             controls, detail, prev_hash, hash FROM audit_log WHERE at >= ?1 ORDER BY seq ASC",
        )
        .bind(ts(since))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows::convert(rows).map_err(err)
    }
}

#[async_trait]
impl ControlStore for SqliteStore {
    #[instrument(skip_all, fields(key), err)]
    async fn put_control(&self, key: &str, value: &serde_json::Value) -> Result<()> {
        self.write(async {
            sqlx::query(
                "INSERT INTO control_state (key, value, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 updated_at = excluded.updated_at",
            )
            .bind(key)
            .bind(json("control_state.value", value).map_err(err)?)
            .bind(ts(Utc::now()))
            .execute(&self.pool)
            .await
            .map_err(err)
            .map(|_| ())
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(approval = %id), err)]
    async fn approval(&self, id: Uuid) -> Result<Option<Approval>> {
        self.check()?;
        let row: Option<ApprovalRow> = sqlx::query_as(GET_APPROVAL)
            .bind(uuid_text(id))
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.map(Approval::try_from).transpose().map_err(err)
    }

    #[instrument(skip_all, fields(approval = %id, state = state.as_str()), err)]
    async fn decide_approval<'a>(
        &self,
        id: Uuid,
        state: ApprovalState,
        by: &str,
        note: Option<&'a str>,
    ) -> Result<Decided> {
        let done = self
            .write(async {
                sqlx::query(DECIDE_APPROVAL)
                    .bind(uuid_text(id))
                    .bind(enum_text(&state))
                    .bind(by)
                    .bind(ts(Utc::now()))
                    .bind(note)
                    .execute(&self.pool)
                    .await
                    .map_err(err)
            })
            .await?;
        let now = self.approval(id).await?;
        Ok(match now {
            None => Decided::NotFound,
            Some(a) if done.rows_affected() == 1 => Decided::Now(a),
            Some(a) => Decided::Already(a),
        })
    }

    #[instrument(skip_all, fields(key), err)]
    async fn delete_control(&self, key: &str) -> Result<bool> {
        self.write(async {
            let done = sqlx::query("DELETE FROM control_state WHERE key = ?1")
                .bind(key)
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(prefix), err)]
    async fn list_control(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>> {
        self.check()?;
        // substr, not LIKE: `%` and `_` in a prefix are plain characters.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT key, value FROM control_state \
             WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
        )
        .bind(prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|(k, v)| Ok((k, parse_json("control_state.value", &v).map_err(err)?)))
            .collect()
    }
}

#[async_trait]
impl DiagnosisCache for SqliteStore {
    #[instrument(skip_all, fields(fingerprint), err)]
    async fn cached_diagnosis(&self, fingerprint: &str) -> Result<Option<Diagnosis>> {
        self.check()?;
        let row: Option<(String,)> = sqlx::query_as(SELECT_DIAGNOSIS)
            .bind(fingerprint)
            .bind(ts(Utc::now()))
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.map(|(text,)| parse_json("diagnosis_cache.diagnosis", &text))
            .transpose()
            .map_err(err)
    }

    #[instrument(skip_all, fields(fingerprint), err)]
    async fn cache_diagnosis(
        &self,
        fingerprint: &str,
        diagnosis: &Diagnosis,
        ttl: Duration,
    ) -> Result<()> {
        self.write(async {
            let now = Utc::now();
            // Capped at the last four-digit year, so that text order stays time order.
            let latest = DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or(now);
            let expires = chrono::TimeDelta::from_std(ttl)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .map_or(latest, |t| t.min(latest));
            let mut tx = self.pool.begin().await.map_err(err)?;
            sqlx::query(PURGE_DIAGNOSES)
                .bind(ts(now))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            sqlx::query(UPSERT_DIAGNOSIS)
                .bind(fingerprint)
                .bind(json("diagnosis", diagnosis).map_err(err)?)
                .bind(ts(now))
                .bind(ts(expires))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)
        })
        .await
    }
}

#[async_trait]
impl ReportStore for SqliteStore {
    #[instrument(level = "debug", skip_all)]
    async fn healing_overview(&self, limit: Option<usize>) -> Result<Vec<OverviewRow>> {
        self.check()?;
        let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows: Vec<OverviewDbRow> = sqlx::query_as(
            "SELECT incident, target, pattern, fingerprint, status, opened_at, closed_at, \
             last_action, last_strategy, last_action_status, last_action_at \
             FROM healing_overview ORDER BY opened_at DESC, seq ASC LIMIT ?1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows::convert(rows).map_err(err)
    }

    #[instrument(level = "debug", skip_all)]
    async fn pattern_report(&self, since: DateTime<Utc>) -> Result<Vec<PatternReport>> {
        self.check()?;
        let since = ts(since);
        let mut tx = self.pool.begin().await.map_err(err)?;
        let hourly: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT pattern, substr(opened_at, 1, 13) || ':00:00.000000Z' AS hour, COUNT(*), \
             SUM(occurrences) FROM incidents WHERE pattern IS NOT NULL AND opened_at >= ?1 \
             GROUP BY pattern, hour",
        )
        .bind(&since)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let strategies: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT pattern, strategy, SUM(status = 'succeeded'), \
             SUM(status IN ('failed', 'rolled_back')) FROM actions \
             WHERE pattern IS NOT NULL AND started_at >= ?1 GROUP BY pattern, strategy",
        )
        .bind(&since)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let mttr: Vec<(String, i64, Option<f64>)> = sqlx::query_as(
            "SELECT pattern, COUNT(*), \
             AVG((julianday(closed_at) - julianday(opened_at)) * 86400000.0) FROM incidents \
             WHERE pattern IS NOT NULL AND status = 'resolved' AND closed_at IS NOT NULL \
               AND opened_at >= ?1 GROUP BY pattern",
        )
        .bind(&since)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let outcomes: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT pattern, status, COUNT(*) FROM actions \
             WHERE pattern IS NOT NULL AND started_at >= ?1 GROUP BY pattern, status",
        )
        .bind(&since)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        rows::report(hourly, strategies, mttr, outcomes).map_err(err)
    }
}

#[async_trait]
impl FleetStore for SqliteStore {
    #[instrument(level = "debug", skip_all, fields(target = target, holder = holder))]
    async fn acquire_lease(&self, target: &str, holder: &str, ttl: Duration) -> Result<LeaseGrant> {
        self.write(async {
            let now = Utc::now();
            let expires = fleet_expiry(now, ttl);
            // One statement: SQLite serialises writers, so two callers cannot both win.
            let won: Option<(String,)> = sqlx::query_as(
                "INSERT INTO leases (target, holder, acquired_at, expires_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (target) DO UPDATE SET holder = excluded.holder, \
                   acquired_at = CASE WHEN leases.holder = excluded.holder \
                     THEN leases.acquired_at ELSE excluded.acquired_at END, \
                   expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.acquired_at \
                 RETURNING holder",
            )
            .bind(target)
            .bind(holder)
            .bind(ts(now))
            .bind(ts(expires))
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
            if won.is_some() {
                return Ok(LeaseGrant::Acquired {
                    expires_at: expires,
                });
            }
            let (other, until): (String, String) =
                sqlx::query_as("SELECT holder, expires_at FROM leases WHERE target = ?1")
                    .bind(target)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(err)?;
            Ok(LeaseGrant::Held {
                holder: other,
                expires_at: parse_ts("leases.expires_at", &until).map_err(err)?,
            })
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(target = target, holder = holder))]
    async fn renew_lease(&self, target: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.write(async {
            let done =
                sqlx::query("UPDATE leases SET expires_at = ?3 WHERE target = ?1 AND holder = ?2")
                    .bind(target)
                    .bind(holder)
                    .bind(ts(fleet_expiry(Utc::now(), ttl)))
                    .execute(&self.pool)
                    .await
                    .map_err(err)?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(target = target, holder = holder))]
    async fn release_lease(&self, target: &str, holder: &str) -> Result<bool> {
        self.write(async {
            let done = sqlx::query("DELETE FROM leases WHERE target = ?1 AND holder = ?2")
                .bind(target)
                .bind(holder)
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(strategy = strategy, target = target))]
    async fn shared_cooldown(
        &self,
        strategy: &str,
        target: &str,
    ) -> Result<Option<SharedCooldown>> {
        self.check()?;
        let row: Option<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT expires_at, updated_at, holder FROM cooldowns \
             WHERE strategy = ?1 AND target = ?2 AND expires_at > ?3",
        )
        .bind(strategy)
        .bind(target)
        .bind(ts(Utc::now()))
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.map(|(until, started, holder)| {
            Ok::<_, StorageError>(SharedCooldown {
                until: parse_ts("cooldowns.expires_at", &until)?,
                started_at: parse_ts("cooldowns.updated_at", &started)?,
                holder: holder.unwrap_or_default(),
            })
        })
        .transpose()
        .map_err(err)
    }

    #[instrument(level = "debug", skip_all, fields(strategy = strategy, target = target))]
    async fn start_shared_cooldown(
        &self,
        strategy: &str,
        target: &str,
        holder: &str,
        length: Duration,
    ) -> Result<()> {
        self.write(async {
            let now = Utc::now();
            sqlx::query(
                "INSERT INTO cooldowns (strategy, target, expires_at, strikes, updated_at, holder) \
                 VALUES (?1, ?2, ?3, 0, ?4, ?5) ON CONFLICT (strategy, target) DO UPDATE SET \
                 expires_at = excluded.expires_at, updated_at = excluded.updated_at, \
                 holder = excluded.holder",
            )
            .bind(strategy)
            .bind(target)
            .bind(ts(fleet_expiry(now, length)))
            .bind(ts(now))
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(err)?;
            Ok(())
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(target = target, fingerprint = fingerprint))]
    async fn count_attempt(
        &self,
        target: &str,
        fingerprint: &str,
        window: Duration,
    ) -> Result<u32> {
        self.write(async {
            let now = Utc::now();
            let stale = now - chrono::TimeDelta::from_std(window).unwrap_or(chrono::TimeDelta::MAX);
            let n: i64 = sqlx::query_scalar(
                "INSERT INTO fleet_attempts (target, fingerprint, attempts, updated_at) \
                 VALUES (?1, ?2, 1, ?3) ON CONFLICT (target, fingerprint) DO UPDATE SET \
                 attempts = CASE WHEN fleet_attempts.updated_at <= ?4 THEN 1 \
                   ELSE fleet_attempts.attempts + 1 END, \
                 updated_at = excluded.updated_at RETURNING attempts",
            )
            .bind(target)
            .bind(fingerprint)
            .bind(ts(now))
            .bind(ts(stale))
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
            crate::codec::to_u32("fleet_attempts.attempts", n).map_err(err)
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(target = target, fingerprint = fingerprint))]
    async fn clear_attempts(&self, target: &str, fingerprint: &str) -> Result<()> {
        self.write(async {
            sqlx::query("DELETE FROM fleet_attempts WHERE target = ?1 AND fingerprint = ?2")
                .bind(target)
                .bind(fingerprint)
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(holder = holder))]
    async fn take_rate_permit(&self, holder: &str, per_hour: u32) -> Result<bool> {
        self.write(async {
            let now = Utc::now();
            let hour_ago = ts(now - chrono::TimeDelta::hours(1));
            let mut tx = self.pool.begin().await.map_err(err)?;
            sqlx::query("DELETE FROM rate_permits WHERE granted_at <= ?1")
                .bind(&hour_ago)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            let granted = sqlx::query(
                "INSERT INTO rate_permits (granted_at, holder) SELECT ?1, ?2 \
                 WHERE (SELECT COUNT(*) FROM rate_permits WHERE granted_at > ?3) < ?4",
            )
            .bind(ts(now))
            .bind(holder)
            .bind(&hour_ago)
            .bind(i64::from(per_hour))
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
            tx.commit().await.map_err(err)?;
            Ok(granted == 1)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_locations_are_recognised() {
        for spec in [
            "sqlite::memory:",
            "sqlite://:memory:",
            ":memory:",
            "sqlite://?mode=memory",
            "sqlite://shared?mode=memory&cache=shared",
        ] {
            assert!(is_memory(spec), "{spec}");
        }
        for spec in [
            "sqlite://selfheal.db",
            "data/selfheal.db",
            "sqlite:memory.db",
        ] {
            assert!(!is_memory(spec), "{spec}");
        }
    }

    #[tokio::test]
    async fn diagnosis_cache_survives_reopen_and_purges_expired_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        let path = path.to_str().unwrap();
        let store = SqliteStore::open(path).await.unwrap();
        selfheal_core::testkit::diagnosis_cache_keeps_one_per_fingerprint(&store).await;
        store.close().await;
        let store = SqliteStore::open(path).await.unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM diagnosis_cache")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(
            rows, 2,
            "one row per live fingerprint; the expired one was purged"
        );
        // A new write purges nothing live and the survivors are still readable.
        let all: Vec<(String,)> = sqlx::query_as("SELECT fingerprint FROM diagnosis_cache")
            .fetch_all(store.pool())
            .await
            .unwrap();
        for (fp,) in all {
            assert!(store.cached_diagnosis(&fp).await.unwrap().is_some(), "{fp}");
        }
    }
}
