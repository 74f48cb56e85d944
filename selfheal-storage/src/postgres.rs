//! [`PostgresStore`]: a PostgreSQL database shared by every replica of a service.
//!
//! ```no_run
//! use selfheal_core::{Pattern, PatternStore};
//! use selfheal_storage::PostgresStore;
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
//! // The tables go into schema `selfheal` (created if missing), migrated on connect.
//! let store = PostgresStore::builder("postgres://postgres@127.0.0.1:5432/app")
//!     .schema("selfheal")
//!     .connect()
//!     .await?;
//! store.add_pattern(&Pattern::new("disk_full").regex("No space left on device")).await?;
//! # Ok(()) }
//! ```

mod rows;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use selfheal_core::{
    ActionRecord, Approval, ApprovalState, AuditRecord, AuditStore, ChainHead, ControlStore,
    Decided, Diagnosis, DiagnosisCache, Error, ErrorKind, Fingerprint, FleetStore, Incident,
    IncidentFilter, IncidentStatus, IncidentStore, LeaseGrant, OverviewRow, Pattern, PatternReport,
    PatternStore, ReportStore, Result, SharedCooldown, Store,
};
use sqlx::PgConnection;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tracing::instrument;
use uuid::Uuid;

use self::rows::{
    ActionRow, ApprovalRow, AuditRow, FixRow, IncidentRow, OverviewDbRow, PatternRow,
};
use crate::StorageError;
use crate::codec::{duration_ns, enum_text, json, parse_json, to_i64, to_u64, truncate};

/// The schema, embedded at build time and applied on connect.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections kept by default: a replica's pipeline needs few.
const DEFAULT_POOL_SIZE: u32 = 5;

/// How long a caller waits for a connection before the store answers `Unavailable`.
const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a transaction of the store may sit idle before the server ends it: a
/// replica that hangs mid-transaction (a blocked runtime, a stopped process) must not
/// hold its locks, and with them every other replica, for ever.
const DEFAULT_IDLE_IN_TRANSACTION: Duration = Duration::from_secs(30);

/// The longest fingerprint sample kept, in bytes (cut on a char boundary).
pub const PG_MAX_SAMPLE_BYTES: usize = 4096;

/// A [`Store`] in PostgreSQL: native types (uuid, timestamptz, jsonb), the
/// schema migrated on connect, every replica of a service sharing one database (and
/// its leases, cooldowns and rate limit). Cloning is cheap and shares the pool.
///
/// Timestamps are kept to the microsecond; everything else round-trips exactly. Text
/// cannot hold NUL characters in PostgreSQL: they are stored as U+FFFD.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    schema: Option<String>,
    /// Approval decisions announced by any replica (`LISTEN`), started on first use.
    decisions: std::sync::Arc<std::sync::OnceLock<tokio::sync::broadcast::Sender<Uuid>>>,
}

/// Options for [`PostgresStore`]: the URL, the schema, the pool.
#[derive(Debug, Clone)]
pub struct PostgresStoreBuilder {
    url: String,
    schema: Option<String>,
    max_connections: u32,
    acquire_timeout: Duration,
    idle_in_transaction: Duration,
    seed_catalog: bool,
}

impl PostgresStoreBuilder {
    /// Keeps the tables in `schema` (created if missing) instead of the connection's
    /// default (`public`): several services, or tests, can share one database.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// The most connections the pool opens (default 5).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long an operation waits for a connection before failing with
    /// `Unavailable` (default 5 s). Short, so an unreachable database is noticed fast.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How long one of the store's transactions may sit idle, waiting on this process,
    /// before PostgreSQL ends it and frees its locks (default 30 s; zero leaves the
    /// server's `idle_in_transaction_session_timeout` as it is). The store's own
    /// transactions take milliseconds; the limit is for a replica that hangs in the
    /// middle of one, which would otherwise hold the fleet's rate-limit lock, and the
    /// rows it had locked, until it is killed. It also holds for your own transactions
    /// on [`PostgresStore::pool`]. Kept to the millisecond (rounded up), at most
    /// `i32::MAX` ms (about 24.8 days, the server's limit): `connect` refuses more.
    /// [`PostgresStore::from_pool`] leaves your pool's settings as they are.
    pub fn idle_in_transaction_timeout(mut self, timeout: Duration) -> Self {
        self.idle_in_transaction = timeout;
        self
    }

    /// Whether `connect` seeds the stock pattern catalog (default yes). Seeding adds the
    /// stock patterns that are missing and upgrades those nobody changed; replicas
    /// seeding at once are safe. See `selfheal_core::catalog::seed`.
    pub fn seed_catalog(mut self, yes: bool) -> Self {
        self.seed_catalog = yes;
        self
    }

    /// Connects, creates the schema if asked for one, migrates it and, unless turned
    /// off with [`seed_catalog`](Self::seed_catalog), seeds the stock pattern catalog.
    #[instrument(level = "debug", skip_all)]
    pub async fn connect(self) -> Result<PostgresStore> {
        let url = self.url.trim();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::invalid(format!(
                "`{}` is not a PostgreSQL URL; pass `postgres://user@host:port/database`",
                redact_url(url)
            )));
        }
        if let Some(schema) = &self.schema {
            check_schema_name(schema)?;
        }
        // Rounded up: a limit under a millisecond must not become 0, which turns it off.
        let idle_ms = self.idle_in_transaction.as_nanos().div_ceil(1_000_000);
        if idle_ms > i32::MAX as u128 {
            return Err(Error::invalid(format!(
                "idle_in_transaction_timeout of {:?} is over PostgreSQL's limit of {} ms \
                 (about 24.8 days); use a shorter one, or zero to keep the server's setting",
                self.idle_in_transaction,
                i32::MAX
            )));
        }
        let mut options = PgConnectOptions::from_str(url).map_err(|e| {
            Error::invalid(format!(
                "`{}` is not a valid PostgreSQL URL ({e}); fix the URL",
                redact_url(url)
            ))
        })?;
        options = options.application_name("selfheal");
        if let Some(schema) = &self.schema {
            // Every connection starts in the schema: tables, views, migrations.
            options = options.options([("search_path", schema.as_str())]);
            create_schema(url, schema, self.acquire_timeout).await?;
        }
        let mut pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout);
        if idle_ms > 0 {
            // A `SET` after connecting rather than a startup option: poolers such as
            // PgBouncer refuse unknown startup parameters.
            let set = format!("SET idle_in_transaction_session_timeout = {idle_ms}");
            pool = pool.after_connect(move |conn, _| {
                let set = set.clone();
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(set))
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_lazy_with(options);
        let store = PostgresStore::from_pool(pool).await?;
        let store = PostgresStore {
            schema: self.schema,
            ..store
        };
        if self.seed_catalog {
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
}

/// Creates `schema` with a short-lived connection.
async fn create_schema(url: &str, schema: &str, timeout: Duration) -> Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(timeout)
        .connect_lazy(url)
        .map_err(err)?;
    let created = sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
    )))
    .execute(&pool)
    .await;
    pool.close().await;
    match created {
        Ok(_) => Ok(()),
        // Two replicas creating it at once: one wins, the other sees it exist.
        Err(e) if is_unique_violation(&e) => Ok(()),
        Err(e) => Err(open_err(url, e)),
    }
}

fn open_err(url: &str, e: impl Into<StorageError>) -> Error {
    let e = err(e);
    Error::new(
        e.kind(),
        format!(
            "cannot open PostgreSQL database `{}`: {}",
            redact_url(url),
            e.message()
        ),
    )
    .with_source(e)
}

/// A schema name we quote into SQL ourselves: letters, digits, `_`, not too long.
fn check_schema_name(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "schema name `{schema}` is not allowed; use 1 to 63 ASCII letters, digits and `_`, not starting with a digit"
        )))
    }
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl PostgresStore {
    /// Options for a store at `url` (`postgres://user@host:port/database`).
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            url: url.into(),
            schema: None,
            max_connections: DEFAULT_POOL_SIZE,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            idle_in_transaction: DEFAULT_IDLE_IN_TRANSACTION,
            seed_catalog: true,
        }
    }

    /// Connects to `url` with the default options and migrates the schema.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// Uses an existing pool (for your own options) and migrates its database. It does
    /// not seed the stock catalog: call `selfheal_core::catalog::seed(&store)` for that.
    /// Nor does it set anything on your pool's connections (no schema, no
    /// [`idle_in_transaction_timeout`](PostgresStoreBuilder::idle_in_transaction_timeout)):
    /// set `idle_in_transaction_session_timeout` in your options (or with
    /// `after_connect`) so a replica that hangs mid-transaction frees its locks.
    #[instrument(level = "debug", skip_all)]
    pub async fn from_pool(pool: PgPool) -> Result<Self> {
        // Replicas starting together: sqlx takes an advisory lock around migrations,
        // so exactly one applies them and the others wait.
        MIGRATOR.run(&pool).await.map_err(|e| {
            let e = err(e);
            Error::new(
                e.kind(),
                format!("cannot migrate the PostgreSQL store: {}", e.message()),
            )
            .with_source(e)
        })?;
        Ok(PostgresStore {
            pool,
            schema: None,
            decisions: Default::default(),
        })
    }

    /// The schema migrations this version applies on connect, to compare a database's
    /// `_sqlx_migrations` with before opening it (the `selfheal` CLI refuses a store it
    /// would have to migrate).
    pub fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    /// The connection pool, for reading the tables with SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema the tables live in, when one was chosen.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Closes every connection, waiting for those in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Drops the store's schema with everything in it, and closes the store. For tests
    /// and for removing selfheal from a database; refuses without a schema of its own.
    pub async fn drop_schema(self) -> Result<()> {
        let Some(schema) = self.schema.clone() else {
            return Err(Error::invalid(
                "this store uses the connection's default schema; drop its tables by hand",
            ));
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&self.pool)
        .await
        .map_err(err)?;
        self.pool.close().await;
        Ok(())
    }

    /// Counts one occurrence of `fp` seen at `at`, keeping `sample` (cut to
    /// [`PG_MAX_SAMPLE_BYTES`]) as the latest example. Returns how often it has been seen.
    #[instrument(level = "debug", skip_all, fields(fingerprint = %fp.id))]
    pub async fn record_fingerprint(
        &self,
        fp: &Fingerprint,
        sample: &str,
        at: DateTime<Utc>,
    ) -> Result<u64> {
        const SQL: &str = "INSERT INTO fingerprints \
                (id, template, stack, version, sample, first_seen, last_seen, count) \
            VALUES ($1, $2, $3, $4, $5, $6, $6, 1) \
            ON CONFLICT (id) DO UPDATE SET \
                count = fingerprints.count + 1, \
                template = excluded.template, \
                stack = excluded.stack, \
                version = excluded.version, \
                sample = CASE WHEN excluded.last_seen >= fingerprints.last_seen \
                    THEN excluded.sample ELSE fingerprints.sample END, \
                first_seen = LEAST(fingerprints.first_seen, excluded.first_seen), \
                last_seen = GREATEST(fingerprints.last_seen, excluded.last_seen) \
            RETURNING count";
        let count: i64 = sqlx::query_scalar(SQL)
            .bind(nul_free(&fp.id))
            .bind(nul_free(&fp.template))
            .bind(fp.stack.as_deref().map(nul_free))
            .bind(i64::from(fp.version))
            .bind(nul_free(truncate(sample, PG_MAX_SAMPLE_BYTES)))
            .bind(at)
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        crate::codec::to_u64("fingerprints.count", count).map_err(err)
    }
}

/// Text without NUL characters, which PostgreSQL text cannot hold.
fn nul_free(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// JSON text without NUL characters (`\u0000` escapes), which jsonb cannot hold.
fn json_nul_free(s: String) -> String {
    if s.contains("\\u0000") {
        s.replace("\\u0000", "\\ufffd")
    } else {
        s
    }
}

/// Converts a database error, logging the ones callers do not expect.
pub(crate) fn err(e: impl Into<StorageError>) -> Error {
    let e: StorageError = e.into();
    match e.kind() {
        ErrorKind::Unavailable => tracing::warn!(error = %e, "PostgreSQL store unavailable"),
        ErrorKind::Internal => tracing::error!(error = %e, "PostgreSQL store error"),
        _ => tracing::debug!(error = %e, "PostgreSQL store refused an operation"),
    }
    e.into()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn pg_json<T: serde::Serialize + ?Sized>(what: &str, v: &T) -> Result<String> {
    json(what, v).map(json_nul_free).map_err(err)
}

// ---- patterns -----------------------------------------------------------------------

macro_rules! pattern_columns {
    () => {
        "name, description, regex, keywords::text AS keywords, \
    error_type, target, severity, root_cause, auto_healable, confidence, mode, \
    min_occurrences, window_ns, use_count, enabled, ambiguous"
    };
}
macro_rules! fix_columns {
    () => {
        "pattern, strategy, params::text AS params, priority, \
    requires_approval, successes, failures"
    };
}
const INSERT_PATTERN: &str = "INSERT INTO patterns (name, description, regex, keywords, \
    error_type, target, severity, root_cause, auto_healable, confidence, mode, \
    min_occurrences, window_ns, use_count, enabled, created_at, updated_at, ambiguous) \
    VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, $17)";
const UPDATE_PATTERN: &str = "UPDATE patterns SET description = $2, regex = $3, \
    keywords = $4::jsonb, error_type = $5, target = $6, severity = $7, root_cause = $8, \
    auto_healable = $9, confidence = $10, mode = $11, min_occurrences = $12, window_ns = $13, \
    use_count = $14, enabled = $15, updated_at = $16, ambiguous = $17 WHERE name = $1";
const INSERT_FIX: &str = "INSERT INTO pattern_fixes (pattern, position, strategy, params, \
    priority, requires_approval, successes, failures, last_applied_at) \
    VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9)";

/// A pattern's columns, converted once, bound in the order of `INSERT_PATTERN` and
/// `UPDATE_PATTERN`.
struct PatternValues {
    keywords: String,
    severity: String,
    mode: String,
    window_ns: i64,
    use_count: i64,
}

impl PatternValues {
    fn of(p: &Pattern) -> Result<Self> {
        Ok(PatternValues {
            keywords: pg_json("pattern keywords", &p.keywords)?,
            severity: enum_text(&p.severity),
            mode: enum_text(&p.mode),
            window_ns: duration_ns("pattern window", p.window).map_err(err)?,
            use_count: to_i64("pattern use_count", p.use_count).map_err(err)?,
        })
    }
}

async fn exec_pattern(
    conn: &mut PgConnection,
    sql: &'static str,
    p: &Pattern,
    v: &PatternValues,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(sql)
        .bind(nul_free(&p.name))
        .bind(nul_free(&p.description))
        .bind(p.regex.as_deref().map(nul_free))
        .bind(&v.keywords)
        .bind(p.error_type.as_deref().map(nul_free))
        .bind(p.target.as_deref().map(nul_free))
        .bind(&v.severity)
        .bind(nul_free(&p.root_cause))
        .bind(p.auto_healable)
        .bind(p.confidence)
        .bind(&v.mode)
        .bind(i64::from(p.min_occurrences))
        .bind(v.window_ns)
        .bind(v.use_count)
        .bind(p.enabled)
        .bind(Utc::now())
        .bind(p.ambiguous)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Inserts `p`'s fixes in order, keeping `last_applied` times by strategy.
async fn insert_fixes(
    conn: &mut PgConnection,
    p: &Pattern,
    last_applied: &HashMap<String, Option<DateTime<Utc>>>,
) -> Result<()> {
    for (position, fix) in p.fixes.iter().enumerate() {
        sqlx::query(INSERT_FIX)
            .bind(nul_free(&p.name))
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(nul_free(&fix.strategy))
            .bind(pg_json("fix params", &fix.params)?)
            .bind(i64::from(fix.priority))
            .bind(fix.requires_approval)
            .bind(to_i64("fix successes", fix.successes).map_err(err)?)
            .bind(to_i64("fix failures", fix.failures).map_err(err)?)
            .bind(last_applied.get(&fix.strategy).copied().flatten())
            .execute(&mut *conn)
            .await
            .map_err(err)?;
    }
    Ok(())
}

async fn load_pattern(conn: &mut PgConnection, name: &str) -> Result<Option<Pattern>> {
    let row: Option<PatternRow> = sqlx::query_as(concat!(
        "SELECT ",
        pattern_columns!(),
        " FROM patterns WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(err)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let fixes: Vec<FixRow> = sqlx::query_as(concat!(
        "SELECT ",
        fix_columns!(),
        " FROM pattern_fixes WHERE pattern = $1 ORDER BY position"
    ))
    .bind(name)
    .fetch_all(&mut *conn)
    .await
    .map_err(err)?;
    Ok(rows::assemble(vec![row], fixes).map_err(err)?.pop())
}

fn validate(p: &Pattern) -> Result<PatternValues> {
    p.validate()?;
    PatternValues::of(p)
}

// ---- incidents, actions, approvals, audit -------------------------------------------

const UPSERT_INCIDENT: &str = "INSERT INTO incidents (id, target, fingerprint, template, \
    stack, related, pattern, status, severity, occurrences, samples, opened_at, last_seen, \
    closed_at, reason) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11::jsonb, \
    $12, $13, $14, $15) \
    ON CONFLICT (id) DO UPDATE SET target = excluded.target, \
    fingerprint = excluded.fingerprint, template = excluded.template, stack = excluded.stack, \
    related = excluded.related, pattern = excluded.pattern, status = excluded.status, \
    severity = excluded.severity, occurrences = excluded.occurrences, \
    samples = excluded.samples, opened_at = excluded.opened_at, \
    last_seen = excluded.last_seen, closed_at = excluded.closed_at, reason = excluded.reason";
macro_rules! incident_columns {
    () => {
        "id, target, fingerprint, template, stack, \
    related::text AS related, pattern, status, severity, occurrences, samples::text AS samples, \
    opened_at, last_seen, closed_at, reason"
    };
}

const UPSERT_ACTION: &str = "INSERT INTO actions (id, incident, pattern, strategy, target, \
    preview, status, success, exit_code, stdout, stderr, duration_ns, health_before, \
    health_after, started_at, finished_at, error) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
    ON CONFLICT (id) DO UPDATE SET incident = excluded.incident, \
    pattern = excluded.pattern, strategy = excluded.strategy, target = excluded.target, \
    preview = excluded.preview, status = excluded.status, success = excluded.success, \
    exit_code = excluded.exit_code, stdout = excluded.stdout, stderr = excluded.stderr, \
    duration_ns = excluded.duration_ns, health_before = excluded.health_before, \
    health_after = excluded.health_after, started_at = excluded.started_at, \
    finished_at = excluded.finished_at, error = excluded.error";
const LIST_ACTIONS: &str = "SELECT id, incident, pattern, strategy, target, preview, status, \
    success, exit_code, stdout, stderr, duration_ns, health_before, health_after, started_at, \
    finished_at, error FROM actions WHERE ($1::uuid IS NULL OR incident = $1) \
    ORDER BY started_at DESC, seq ASC";

// A decision is final: saving an approval again never undoes it.
const UPSERT_APPROVAL: &str = "INSERT INTO approvals (id, incident, pattern, plan, reason, \
    confidence, requested_at, state, decided_by, decided_at, note) \
    VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $11) \
    ON CONFLICT (id) DO UPDATE SET incident = excluded.incident, \
    pattern = excluded.pattern, plan = excluded.plan, reason = excluded.reason, \
    confidence = excluded.confidence, requested_at = excluded.requested_at, \
    state = excluded.state, decided_by = excluded.decided_by, \
    decided_at = excluded.decided_at, note = excluded.note \
    WHERE approvals.state = 'pending'";
const LIST_APPROVALS: &str = "SELECT id, incident, pattern, plan::text AS plan, reason, \
    confidence, requested_at, state, decided_by, decided_at, note FROM approvals \
    WHERE ($1::text IS NULL OR state = $1) ORDER BY requested_at ASC, seq ASC";
const GET_APPROVAL: &str = "SELECT id, incident, pattern, plan::text AS plan, reason, \
    confidence, requested_at, state, decided_by, decided_at, note FROM approvals WHERE id = $1";
/// Decides and announces in one statement: the NOTIFY is sent when (and only if) the
/// transaction that decided commits.
const DECIDE_APPROVAL: &str = "WITH decided AS (UPDATE approvals SET state = $2, \
    decided_by = $3, decided_at = now(), note = $4 WHERE id = $1 AND state = 'pending' \
    RETURNING id) SELECT pg_notify('selfheal_approval_decided', id::text)::text FROM decided";
/// The channel a decision is announced on; the payload is the approval's id.
const DECISIONS_CHANNEL: &str = "selfheal_approval_decided";

const INSERT_AUDIT: &str = "INSERT INTO audit_log (seq, at, event_type, actor, incident, \
    pattern, confidence, action, result, controls, detail, prev_hash, hash) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::json, $11::json, $12, $13)";
/// Moves the checkpoint of the audit head forward (never back: see the migration).
const ADVANCE_CHECKPOINT: &str = "INSERT INTO audit_checkpoint (id, seq, hash) \
    VALUES (true, $1, $2) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, \
    hash = excluded.hash WHERE audit_checkpoint.seq < excluded.seq";
const LIST_AUDIT: &str = "SELECT seq, at, event_type, actor, incident, pattern, confidence, \
    action, result, controls::text AS controls, detail::text AS detail, prev_hash, hash FROM (\
    SELECT * FROM audit_log ORDER BY seq DESC LIMIT $1) AS last ORDER BY seq ASC";

impl Store for PostgresStore {
    fn name(&self) -> &str {
        "postgres"
    }

    fn fleet(&self) -> Option<&dyn FleetStore> {
        Some(self)
    }
}

#[async_trait]
impl PatternStore for PostgresStore {
    #[instrument(level = "debug", skip_all)]
    async fn list_patterns(&self) -> Result<Vec<Pattern>> {
        // One snapshot for patterns and fixes.
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let patterns: Vec<PatternRow> = sqlx::query_as(concat!(
            "SELECT ",
            pattern_columns!(),
            " FROM patterns ORDER BY name COLLATE \"C\""
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let fixes: Vec<FixRow> = sqlx::query_as(concat!(
            "SELECT ",
            fix_columns!(),
            " FROM pattern_fixes ORDER BY pattern, position"
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        rows::assemble(patterns, fixes).map_err(err)
    }

    #[instrument(level = "debug", skip_all, fields(pattern = name))]
    async fn get_pattern(&self, name: &str) -> Result<Option<Pattern>> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        load_pattern(&mut conn, &nul_free(name)).await
    }

    #[instrument(level = "debug", skip_all, fields(pattern = %pattern.name))]
    async fn add_pattern(&self, pattern: &Pattern) -> Result<()> {
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
    }

    #[instrument(level = "debug", skip_all, fields(pattern = %pattern.name))]
    async fn update_pattern(&self, pattern: &Pattern) -> Result<()> {
        let values = validate(pattern)?;
        let mut tx = self.pool.begin().await.map_err(err)?;
        // The UPDATE locks the pattern's row until commit: concurrent updates queue.
        let updated = exec_pattern(&mut tx, UPDATE_PATTERN, pattern, &values)
            .await
            .map_err(err)?;
        if updated == 0 {
            return Err(Error::not_found(format!(
                "no pattern named `{}`; add it first",
                pattern.name
            )));
        }
        let previous: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT strategy, last_applied_at FROM pattern_fixes WHERE pattern = $1 \
             ORDER BY position",
        )
        .bind(nul_free(&pattern.name))
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let mut last_applied = HashMap::new();
        for (strategy, at) in previous {
            last_applied.entry(strategy).or_insert(at);
        }
        sqlx::query("DELETE FROM pattern_fixes WHERE pattern = $1")
            .bind(nul_free(&pattern.name))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        insert_fixes(&mut tx, pattern, &last_applied).await?;
        tx.commit().await.map_err(err)
    }

    #[instrument(level = "debug", skip_all, fields(pattern = pattern, strategy = strategy, success = success))]
    async fn record_outcome(
        &self,
        pattern: &str,
        strategy: &str,
        success: bool,
        confidence_delta: f64,
    ) -> Result<Pattern> {
        if !confidence_delta.is_finite() {
            return Err(Error::invalid(format!(
                "confidence change {confidence_delta} for pattern `{pattern}` is not a number; pass a finite delta"
            )));
        }
        let now = Utc::now();
        let mut tx = self.pool.begin().await.map_err(err)?;
        // One statement: the row lock makes concurrent outcomes from replicas add up.
        let updated = sqlx::query(
            "UPDATE patterns SET confidence = LEAST(1.0, GREATEST(0.0, confidence + $1)), \
             use_count = use_count + $2, updated_at = $3 WHERE name = $4",
        )
        .bind(confidence_delta)
        .bind(i64::from(success))
        .bind(now)
        .bind(pattern)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        if updated == 0 {
            return Err(Error::not_found(format!("no pattern named `{pattern}`")));
        }
        sqlx::query(
            "UPDATE pattern_fixes SET successes = successes + $1, failures = failures + $2, \
             last_applied_at = $3 WHERE pattern = $4 AND position = (\
             SELECT MIN(position) FROM pattern_fixes WHERE pattern = $4 AND strategy = $5)",
        )
        .bind(i64::from(success))
        .bind(i64::from(!success))
        .bind(now)
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
    }
}

#[async_trait]
impl IncidentStore for PostgresStore {
    #[instrument(level = "debug", skip_all, fields(incident = %incident.id))]
    async fn save_incident(&self, incident: &Incident) -> Result<()> {
        sqlx::query(UPSERT_INCIDENT)
            .bind(incident.id)
            .bind(nul_free(&incident.target))
            .bind(nul_free(&incident.fingerprint))
            .bind(nul_free(&incident.template))
            .bind(incident.stack.as_deref().map(nul_free))
            .bind(pg_json("incident related", &incident.related)?)
            .bind(incident.pattern.as_deref().map(nul_free))
            .bind(enum_text(&incident.status))
            .bind(enum_text(&incident.severity))
            .bind(to_i64("incident occurrences", incident.occurrences).map_err(err)?)
            .bind(pg_json("incident samples", &incident.samples)?)
            .bind(incident.opened_at)
            .bind(incident.last_seen)
            .bind(incident.closed_at)
            .bind(nul_free(&incident.reason))
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all, fields(incident = %id))]
    async fn get_incident(&self, id: Uuid) -> Result<Option<Incident>> {
        let row: Option<IncidentRow> = sqlx::query_as(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM incidents WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.map(Incident::try_from).transpose().map_err(err)
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>> {
        let statuses: Option<Vec<String>> =
            (!filter.statuses.is_empty()).then(|| filter.statuses.iter().map(enum_text).collect());
        // LIMIT NULL is no limit.
        let limit = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows: Vec<IncidentRow> = sqlx::query_as(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM incidents \
             WHERE ($1::text IS NULL OR target = $1) \
               AND ($2::text[] IS NULL OR status = ANY($2)) \
             ORDER BY opened_at DESC, seq ASC LIMIT $3"
        ))
        .bind(filter.target.as_deref().map(nul_free))
        .bind(statuses)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows::convert(rows).map_err(err)
    }

    #[instrument(level = "debug", skip_all, fields(action = %action.id))]
    async fn save_action(&self, action: &ActionRecord) -> Result<()> {
        let outcome = action.outcome.as_ref();
        let duration = outcome
            .map(|o| duration_ns("action duration", o.duration))
            .transpose()
            .map_err(err)?;
        sqlx::query(UPSERT_ACTION)
            .bind(action.id)
            .bind(action.incident)
            .bind(action.pattern.as_deref().map(nul_free))
            .bind(nul_free(&action.strategy))
            .bind(nul_free(&action.target))
            .bind(nul_free(&action.preview))
            .bind(enum_text(&action.status))
            .bind(outcome.map(|o| o.success))
            .bind(outcome.and_then(|o| o.exit_code))
            .bind(outcome.map(|o| nul_free(&o.stdout)))
            .bind(outcome.map(|o| nul_free(&o.stderr)))
            .bind(duration)
            .bind(action.health_before.map(i16::from))
            .bind(action.health_after.map(i16::from))
            .bind(action.started_at)
            .bind(action.finished_at)
            .bind(action.error.as_deref().map(nul_free))
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_actions(&self, incident: Option<Uuid>) -> Result<Vec<ActionRecord>> {
        let rows: Vec<ActionRow> = sqlx::query_as(LIST_ACTIONS)
            .bind(incident)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows::convert(rows).map_err(err)
    }

    #[instrument(level = "debug", skip_all, fields(approval = %approval.id))]
    async fn save_approval(&self, approval: &Approval) -> Result<()> {
        sqlx::query(UPSERT_APPROVAL)
            .bind(approval.id)
            .bind(approval.incident)
            .bind(approval.pattern.as_deref().map(nul_free))
            .bind(pg_json("approval plan", &approval.plan)?)
            .bind(nul_free(&approval.reason))
            .bind(approval.confidence)
            .bind(approval.requested_at)
            .bind(enum_text(&approval.state))
            .bind(approval.decided_by.as_deref().map(nul_free))
            .bind(approval.decided_at)
            .bind(approval.note.as_deref().map(nul_free))
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_approvals(&self, pending_only: bool) -> Result<Vec<Approval>> {
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
        let mut tx = self.pool.begin().await.map_err(err)?;
        let gone: Vec<Uuid> = sqlx::query_scalar(
            "DELETE FROM incidents WHERE status = ANY($1) \
             AND COALESCE(closed_at, last_seen) < $2 RETURNING id",
        )
        .bind(&terminal)
        .bind(older_than)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let actions = sqlx::query("DELETE FROM actions WHERE incident = ANY($1)")
            .bind(&gone)
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
        let approvals = sqlx::query("DELETE FROM approvals WHERE incident = ANY($1)")
            .bind(&gone)
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
        tx.commit().await.map_err(err)?;
        let incidents = gone.len() as u64;
        tracing::info!(incidents, actions, approvals, cutoff = %older_than, "retention cleanup");
        Ok(incidents)
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    #[instrument(level = "debug", skip_all, fields(seq = record.seq))]
    async fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        // `json` keeps the text as written; NUL escapes are refused by PostgreSQL only
        // for jsonb, so the hashed text is stored unchanged.
        let seq = to_i64("audit seq", record.seq).map_err(err)?;
        // The record and the checkpoint of the head, together.
        let mut tx = self.pool.begin().await.map_err(err)?;
        let result = sqlx::query(INSERT_AUDIT)
            .bind(seq)
            .bind(record.at)
            .bind(nul_free(&record.event_type))
            .bind(nul_free(&record.actor))
            .bind(record.incident)
            .bind(record.pattern.as_deref().map(nul_free))
            .bind(record.confidence)
            .bind(record.action.as_deref().map(nul_free))
            .bind(nul_free(&record.result))
            .bind(json("audit controls", &record.controls).map_err(err)?)
            .bind(json("audit detail", &record.detail).map_err(err)?)
            .bind(&record.prev_hash)
            .bind(&record.hash)
            .execute(&mut *tx)
            .await;
        match result {
            Ok(_) => {
                sqlx::query(ADVANCE_CHECKPOINT)
                    .bind(seq)
                    .bind(&record.hash)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                tx.commit().await.map_err(err)
            }
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
    }

    #[instrument(level = "debug", skip_all, fields(limit = limit))]
    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        let rows: Vec<AuditRow> = sqlx::query_as(LIST_AUDIT)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows::convert(rows).map_err(err)
    }

    async fn audit_checkpoint(&self) -> Result<Option<ChainHead>> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_checkpoint WHERE id")
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        row.map(|(seq, hash)| {
            Ok(ChainHead {
                seq: to_u64("audit_checkpoint.seq", seq).map_err(err)?,
                hash,
            })
        })
        .transpose()
    }

    #[instrument(level = "debug", skip_all)]
    async fn recent_activity(&self, since: DateTime<Utc>) -> Result<Vec<AuditRecord>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT seq, at, event_type, actor, incident, pattern, confidence, action, result, \
             controls::text AS controls, detail::text AS detail, prev_hash, hash \
             FROM audit_log WHERE at >= $1 ORDER BY seq ASC",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows::convert(rows).map_err(err)
    }
}

#[async_trait]
impl ControlStore for PostgresStore {
    #[instrument(skip_all, fields(key), err)]
    async fn put_control(&self, key: &str, value: &serde_json::Value) -> Result<()> {
        sqlx::query(
            "INSERT INTO control_state (key, value, updated_at) VALUES ($1, $2::jsonb, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at",
        )
        .bind(nul_free(key))
        .bind(pg_json("control_state.value", value)?)
        .bind(Utc::now())
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    #[instrument(skip_all, fields(key), err)]
    async fn delete_control(&self, key: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM control_state WHERE key = $1")
            .bind(nul_free(key))
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() > 0)
    }

    #[instrument(level = "debug", skip_all, fields(prefix), err)]
    async fn list_control(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>> {
        // starts_with, not LIKE: `%` and `_` in a prefix are plain characters. Byte
        // order (COLLATE "C"), as every store sorts.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT key, value::text FROM control_state \
             WHERE starts_with(key, $1) ORDER BY key COLLATE \"C\"",
        )
        .bind(nul_free(prefix))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|(k, v)| Ok((k, parse_json("control_state.value", &v).map_err(err)?)))
            .collect()
    }

    #[instrument(level = "debug", skip_all, fields(approval = %id), err)]
    async fn approval(&self, id: Uuid) -> Result<Option<Approval>> {
        let row: Option<ApprovalRow> = sqlx::query_as(GET_APPROVAL)
            .bind(id)
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
        let decided: Option<(Option<String>,)> = sqlx::query_as(DECIDE_APPROVAL)
            .bind(id)
            .bind(enum_text(&state))
            .bind(nul_free(by))
            .bind(note.map(nul_free))
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Ok(match self.approval(id).await? {
            None => Decided::NotFound,
            Some(a) if decided.is_some() => Decided::Now(a),
            Some(a) => Decided::Already(a),
        })
    }

    fn approval_decisions(&self) -> Option<tokio::sync::broadcast::Receiver<Uuid>> {
        let tx = self.decisions.get_or_init(|| {
            let (tx, _) = tokio::sync::broadcast::channel(256);
            tokio::spawn(listen_for_decisions(self.pool.clone(), tx.clone()));
            tx
        });
        Some(tx.subscribe())
    }
}

/// Forwards the decisions any replica announces (`NOTIFY`) to the waiters of this
/// process, reconnecting after a lost connection; a wake-up missed meanwhile only
/// delays a waiter until its next poll. Ends when the pool is closed.
async fn listen_for_decisions(pool: PgPool, tx: tokio::sync::broadcast::Sender<Uuid>) {
    while !pool.is_closed() {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "cannot listen for approval decisions; waiters poll meanwhile");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(DECISIONS_CHANNEL).await {
            tracing::debug!(error = %e, "cannot listen for approval decisions; waiters poll meanwhile");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    if let Ok(id) = Uuid::parse_str(n.payload()) {
                        let _ = tx.send(id);
                    }
                }
                // The connection was lost (and will be re-established): some
                // announcements may be gone, so wake every waiter to look.
                Ok(None) => {
                    let _ = tx.send(Uuid::nil());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "lost the approval decisions listener; reconnecting");
                    break;
                }
            }
            if pool.is_closed() {
                return;
            }
        }
    }
}

#[async_trait]
impl DiagnosisCache for PostgresStore {
    #[instrument(skip_all, fields(fingerprint), err)]
    async fn cached_diagnosis(&self, fingerprint: &str) -> Result<Option<Diagnosis>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT diagnosis::text FROM diagnosis_cache \
             WHERE fingerprint = $1 AND expires_at > $2",
        )
        .bind(nul_free(fingerprint))
        .bind(Utc::now())
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
        let now = Utc::now();
        // PostgreSQL's timestamptz ends in 294276 AD; cap far before that.
        let latest = DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or(now);
        let expires = chrono::TimeDelta::from_std(ttl)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .map_or(latest, |t| t.min(latest));
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query("DELETE FROM diagnosis_cache WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        sqlx::query(
            "INSERT INTO diagnosis_cache (fingerprint, diagnosis, created_at, expires_at) \
             VALUES ($1, $2::jsonb, $3, $4) ON CONFLICT (fingerprint) DO UPDATE SET \
             diagnosis = excluded.diagnosis, created_at = excluded.created_at, \
             expires_at = excluded.expires_at",
        )
        .bind(nul_free(fingerprint))
        .bind(pg_json("diagnosis", diagnosis)?)
        .bind(now)
        .bind(expires)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }
}

#[async_trait]
impl ReportStore for PostgresStore {
    #[instrument(level = "debug", skip_all)]
    async fn healing_overview(&self, limit: Option<usize>) -> Result<Vec<OverviewRow>> {
        let limit = limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows: Vec<OverviewDbRow> = sqlx::query_as(
            "SELECT incident, target, pattern, fingerprint, status, opened_at, closed_at, \
             last_action, last_strategy, last_action_status, last_action_at \
             FROM healing_overview ORDER BY opened_at DESC, seq ASC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows::convert(rows).map_err(err)
    }

    #[instrument(level = "debug", skip_all)]
    async fn pattern_report(&self, since: DateTime<Utc>) -> Result<Vec<PatternReport>> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let hourly: Vec<(String, DateTime<Utc>, i64, i64)> = sqlx::query_as(
            "SELECT pattern, date_trunc('hour', opened_at, 'UTC') AS hour, COUNT(*), \
             SUM(occurrences)::bigint FROM incidents \
             WHERE pattern IS NOT NULL AND opened_at >= $1 GROUP BY pattern, hour",
        )
        .bind(since)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let strategies: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT pattern, strategy, COUNT(*) FILTER (WHERE status = 'succeeded'), \
             COUNT(*) FILTER (WHERE status IN ('failed', 'rolled_back')) FROM actions \
             WHERE pattern IS NOT NULL AND started_at >= $1 GROUP BY pattern, strategy",
        )
        .bind(since)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let mttr: Vec<(String, i64, Option<f64>)> = sqlx::query_as(
            "SELECT pattern, COUNT(*), \
             (AVG(EXTRACT(EPOCH FROM (closed_at - opened_at))) * 1000)::double precision \
             FROM incidents WHERE pattern IS NOT NULL AND status = 'resolved' \
               AND closed_at IS NOT NULL AND opened_at >= $1 GROUP BY pattern",
        )
        .bind(since)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let outcomes: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT pattern, status, COUNT(*) FROM actions \
             WHERE pattern IS NOT NULL AND started_at >= $1 GROUP BY pattern, status",
        )
        .bind(since)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        rows::report(hourly, strategies, mttr, outcomes).map_err(err)
    }
}

#[async_trait]
impl FleetStore for PostgresStore {
    /// A row lock with an expiry time: the upsert locks the target's lease row, so
    /// concurrent callers queue on it and see each other's result; the database's clock
    /// decides expiry, so replicas' clocks do not matter.
    #[instrument(level = "debug", skip_all, fields(target = target, holder = holder))]
    async fn acquire_lease(&self, target: &str, holder: &str, ttl: Duration) -> Result<LeaseGrant> {
        // A refused upsert returns nothing; the holder is read in a statement of its
        // own (a new snapshot, which sees a lease committed while we waited on it). If
        // the lease vanished in between, try again.
        for _ in 0..3 {
            let won: Option<(DateTime<Utc>,)> = sqlx::query_as(
                "INSERT INTO leases (target, holder, acquired_at, expires_at) \
                 VALUES ($1, $2, clock_timestamp(), clock_timestamp() + make_interval(secs => $3)) \
                 ON CONFLICT (target) DO UPDATE SET holder = excluded.holder, \
                   acquired_at = CASE WHEN leases.holder = excluded.holder \
                     THEN leases.acquired_at ELSE excluded.acquired_at END, \
                   expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at <= clock_timestamp() \
                 RETURNING expires_at",
            )
            .bind(nul_free(target))
            .bind(nul_free(holder))
            .bind(ttl.as_secs_f64().min(1e9))
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
            if let Some((expires_at,)) = won {
                return Ok(LeaseGrant::Acquired { expires_at });
            }
            let held: Option<(String, DateTime<Utc>)> =
                sqlx::query_as("SELECT holder, expires_at FROM leases WHERE target = $1")
                    .bind(nul_free(target))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err)?;
            if let Some((holder, expires_at)) = held {
                return Ok(LeaseGrant::Held { holder, expires_at });
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("the lease on `{target}` changed hands three times while asking for it; retry"),
        ))
    }

    #[instrument(level = "debug", skip_all, fields(target = target, holder = holder))]
    async fn renew_lease(&self, target: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE leases SET expires_at = clock_timestamp() + make_interval(secs => $3) \
             WHERE target = $1 AND holder = $2",
        )
        .bind(nul_free(target))
        .bind(nul_free(holder))
        .bind(ttl.as_secs_f64().min(1e9))
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    #[instrument(level = "debug", skip_all, fields(target = target, holder = holder))]
    async fn release_lease(&self, target: &str, holder: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM leases WHERE target = $1 AND holder = $2")
            .bind(nul_free(target))
            .bind(nul_free(holder))
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    #[instrument(level = "debug", skip_all, fields(strategy = strategy, target = target))]
    async fn shared_cooldown(
        &self,
        strategy: &str,
        target: &str,
    ) -> Result<Option<SharedCooldown>> {
        let row: Option<(DateTime<Utc>, DateTime<Utc>, Option<String>)> = sqlx::query_as(
            "SELECT expires_at, updated_at, holder FROM cooldowns \
             WHERE strategy = $1 AND target = $2 AND expires_at > clock_timestamp()",
        )
        .bind(nul_free(strategy))
        .bind(nul_free(target))
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        Ok(row.map(|(until, started_at, holder)| SharedCooldown {
            until,
            started_at,
            holder: holder.unwrap_or_default(),
        }))
    }

    #[instrument(level = "debug", skip_all, fields(strategy = strategy, target = target))]
    async fn start_shared_cooldown(
        &self,
        strategy: &str,
        target: &str,
        holder: &str,
        length: Duration,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO cooldowns (strategy, target, expires_at, strikes, updated_at, holder) \
             VALUES ($1, $2, LEAST(clock_timestamp() + make_interval(secs => $3), \
               '9999-12-31 23:59:59+00'::timestamptz), 0, clock_timestamp(), $4) \
             ON CONFLICT (strategy, target) DO UPDATE SET \
             expires_at = excluded.expires_at, updated_at = excluded.updated_at, \
             holder = excluded.holder",
        )
        .bind(nul_free(strategy))
        .bind(nul_free(target))
        .bind(length.as_secs_f64().min(1e11))
        .bind(nul_free(holder))
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all, fields(target = target, fingerprint = fingerprint))]
    async fn count_attempt(
        &self,
        target: &str,
        fingerprint: &str,
        window: Duration,
    ) -> Result<u32> {
        // One upsert: the row lock makes concurrent counts add up.
        let n: i64 = sqlx::query_scalar(
            "INSERT INTO fleet_attempts (target, fingerprint, attempts, updated_at) \
             VALUES ($1, $2, 1, clock_timestamp()) ON CONFLICT (target, fingerprint) DO UPDATE SET \
             attempts = CASE WHEN fleet_attempts.updated_at \
                 <= clock_timestamp() - make_interval(secs => $3) THEN 1 \
               ELSE fleet_attempts.attempts + 1 END, \
             updated_at = excluded.updated_at RETURNING attempts",
        )
        .bind(nul_free(target))
        .bind(nul_free(fingerprint))
        .bind(window.as_secs_f64().min(1e9))
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        crate::codec::to_u32("fleet_attempts.attempts", n).map_err(err)
    }

    #[instrument(level = "debug", skip_all, fields(target = target, fingerprint = fingerprint))]
    async fn clear_attempts(&self, target: &str, fingerprint: &str) -> Result<()> {
        sqlx::query("DELETE FROM fleet_attempts WHERE target = $1 AND fingerprint = $2")
            .bind(nul_free(target))
            .bind(nul_free(fingerprint))
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    /// An advisory lock (per schema) serialises the count and the grant across replicas.
    #[instrument(level = "debug", skip_all, fields(holder = holder))]
    async fn take_rate_permit(&self, holder: &str, per_hour: u32) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.selfheal_rate_limit')::bigint)",
        )
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        sqlx::query(
            "DELETE FROM rate_permits WHERE granted_at <= clock_timestamp() - interval '1 hour'",
        )
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        let granted = sqlx::query(
            "INSERT INTO rate_permits (granted_at, holder) SELECT clock_timestamp(), $1 \
             WHERE (SELECT COUNT(*) FROM rate_permits \
                    WHERE granted_at > clock_timestamp() - interval '1 hour') < $2",
        )
        .bind(nul_free(holder))
        .bind(i64::from(per_hour))
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        tx.commit().await.map_err(err)?;
        Ok(granted == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
    }

    #[test]
    fn schema_names_are_checked() {
        assert!(check_schema_name("selfheal_test_1").is_ok());
        for bad in ["", "1abc", "a-b", "x\"; DROP TABLE y; --", &"a".repeat(64)] {
            let e = check_schema_name(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn nul_characters_are_replaced() {
        assert_eq!(nul_free("a\0b"), "a\u{fffd}b");
        assert_eq!(json_nul_free(r#"["a\u0000"]"#.into()), r#"["a\ufffd"]"#);
    }
}
