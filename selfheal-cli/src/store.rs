//! Reading a store directly, never changing it: the audit chain and the pattern catalog.
//!
//! SQLite: the file is opened like the service opens it (exclusive lock, WAL) with
//! `query_only` on. PostgreSQL: every transaction is read-only. Either way the store's
//! schema must be exactly the one this version knows (the store's migrations are
//! compared first), so opening the store never migrates it.
// Built without any store (`--no-default-features`): every path errors before a store
// exists, and the type is uninhabited.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(unreachable_code, dead_code)
)]

use selfheal_core::{AuditRecord, ChainHead};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use selfheal_core::{AuditStore, PatternStore};
use serde_json::{Value, json};

use crate::cli::StoreArgs;
use crate::error::{CliError, CliResult};

/// A store opened for reading.
pub enum Opened {
    /// An SQLite file.
    #[cfg(feature = "sqlite")]
    Sqlite(selfheal_storage::SqliteStore),
    /// A PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(selfheal_storage::PostgresStore),
    /// Built without a store: nothing can be opened.
    #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
    None(std::convert::Infallible),
}

/// A store opened for reading, and how to name it.
pub struct ReadStore {
    store: Opened,
    /// Where it is (no password), for messages and the export's `source`.
    pub location: String,
    /// Said when opening started the SQLite audit checkpoint.
    pub note: Option<String>,
}

impl ReadStore {
    /// Opens the store `args` name (one of them must be given).
    pub async fn open(args: &StoreArgs) -> CliResult<Self> {
        if let Some(path) = &args.sqlite {
            return open_sqlite(path).await;
        }
        if let Some(url) = &args.postgres {
            return open_postgres(url, args.schema.as_deref()).await;
        }
        Err(CliError::usage(
            "name a store: --sqlite PATH or --postgres URL",
        ))
    }

    /// Every audit record, oldest first.
    pub async fn audit(&self) -> CliResult<Vec<AuditRecord>> {
        Ok(match &self.store {
            #[cfg(feature = "sqlite")]
            Opened::Sqlite(s) => s.list_audit(usize::MAX).await?,
            #[cfg(feature = "postgres")]
            Opened::Postgres(s) => s.list_audit(usize::MAX).await?,
            #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
            Opened::None(never) => match *never {},
        })
    }

    /// The audit chain's head kept outside the table, if any.
    pub async fn checkpoint(&self) -> CliResult<Option<ChainHead>> {
        Ok(match &self.store {
            #[cfg(feature = "sqlite")]
            Opened::Sqlite(s) => s.audit_checkpoint().await?,
            #[cfg(feature = "postgres")]
            Opened::Postgres(s) => s.audit_checkpoint().await?,
            #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
            Opened::None(never) => match *never {},
        })
    }

    /// The pattern catalog.
    pub async fn patterns(&self) -> CliResult<Vec<selfheal_core::Pattern>> {
        Ok(match &self.store {
            #[cfg(feature = "sqlite")]
            Opened::Sqlite(s) => s.list_patterns().await?,
            #[cfg(feature = "postgres")]
            Opened::Postgres(s) => s.list_patterns().await?,
            #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
            Opened::None(never) => match *never {},
        })
    }

    /// Closes the connections.
    pub async fn close(self) {
        match self.store {
            #[cfg(feature = "sqlite")]
            Opened::Sqlite(s) => s.close().await,
            #[cfg(feature = "postgres")]
            Opened::Postgres(s) => s.close().await,
            #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
            Opened::None(never) => match never {},
        }
    }

    /// Checks the whole audit log: the hash chain, then the checkpoint kept outside the
    /// table. The answer has the API's `/api/audit/verify` shape.
    pub async fn verify(&self) -> CliResult<Value> {
        let records = self.audit().await?;
        let checkpoint = self.checkpoint().await?;
        Ok(verify_records(&records, checkpoint.as_ref()))
    }
}

/// `{"ok", "records", "first_broken": null | {"seq", "reason"}, "checkpoint"}`.
pub fn verify_records(records: &[AuditRecord], checkpoint: Option<&ChainHead>) -> Value {
    let broken = selfheal_core::verify_chain(records)
        .and_then(|()| selfheal_core::verify_checkpoint(records, checkpoint))
        .err();
    json!({
        "ok": broken.is_none(),
        "records": records.len(),
        "first_broken": broken.map(|b| json!({"seq": b.seq, "reason": b.reason})),
        "checkpoint": checkpoint.map(|c| json!({"seq": c.seq, "hash": c.hash})),
    })
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(path: &std::path::Path) -> CliResult<ReadStore> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteLockingMode, SqlitePoolOptions};

    let shown = path.display().to_string();
    if !path.is_file() {
        return Err(CliError::failed(format!(
            "no SQLite store at `{shown}`: the file does not exist (the CLI never creates one)"
        )));
    }
    // The service's own settings (exclusive lock, so no `-shm` file; nothing mapped),
    // plus `query_only`: SQLite refuses any change to the database on this connection.
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .locking_mode(SqliteLockingMode::Exclusive)
        .pragma("mmap_size", "0")
        .pragma("query_only", "ON")
        .busy_timeout(std::time::Duration::from_secs(2));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| open_failed(&shown, &e))?;
    let applied = sqlite_applied(&pool)
        .await
        .map_err(|e| open_failed(&shown, &e))?;
    if let Err(e) = compare_schema(applied, selfheal_storage::SqliteStore::migrator(), &shown) {
        pool.close().await;
        return Err(e);
    }
    let head = checkpoint_path(path);
    let had_checkpoint = head.as_ref().is_some_and(|h| h.exists());
    let store = selfheal_storage::SqliteStore::from_pool(pool).await?;
    let note = (!had_checkpoint && head.as_ref().is_some_and(|h| h.exists())).then(|| {
        "no audit checkpoint was beside the database; opening started one at the newest \
         record (a truncation before now cannot be told)"
            .to_owned()
    });
    Ok(ReadStore {
        store: Opened::Sqlite(store),
        location: format!("sqlite:{shown}"),
        note,
    })
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(_: &std::path::Path) -> CliResult<ReadStore> {
    Err(CliError::usage(
        "this selfheal was built without SQLite: install it with `--features sqlite`",
    ))
}

#[cfg(feature = "sqlite")]
fn checkpoint_path(db: &std::path::Path) -> Option<std::path::PathBuf> {
    let mut name = std::fs::canonicalize(db).ok()?.into_os_string();
    name.push(".audit-head");
    Some(name.into())
}

#[cfg(feature = "sqlite")]
async fn sqlite_applied(pool: &sqlx::SqlitePool) -> Result<Option<Vec<Applied>>, sqlx::Error> {
    let exists: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(pool)
    .await?;
    if exists == 0 {
        return Ok(None);
    }
    sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .map(Some)
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, schema: Option<&str>) -> CliResult<ReadStore> {
    use std::str::FromStr;

    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

    let shown = redact_url(url);
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(CliError::usage(format!(
            "`{shown}` is not a PostgreSQL URL; pass postgres://user@host:port/database"
        )));
    }
    let mut options = PgConnectOptions::from_str(url)
        .map_err(|e| CliError::usage(format!("`{shown}` is not a valid PostgreSQL URL: {e}")))?;
    options = options.application_name("selfheal-cli");
    if let Some(schema) = schema {
        options = options.options([("search_path", schema)]);
    }
    let read_only = options
        .clone()
        .options([("default_transaction_read_only", "on")]);
    let timeout = std::time::Duration::from_secs(5);

    // First, with read-only connections: is the schema exactly the one we know?
    let probe = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(timeout)
        .connect_lazy_with(read_only.clone());
    let applied = pg_applied(&probe)
        .await
        .map_err(|e| open_failed(&shown, &e));
    probe.close().await;
    let place = match schema {
        Some(s) => format!("{shown} (schema {s})"),
        None => shown.clone(),
    };
    compare_schema(
        applied?,
        selfheal_storage::PostgresStore::migrator(),
        &place,
    )?;

    // The store's own open then finds nothing to migrate (it takes the migration lock,
    // sees every migration applied, and writes nothing); after it the one connection,
    // and any that replaces it, runs read-only transactions only.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(timeout)
        .connect_lazy_with(options);
    let store = selfheal_storage::PostgresStore::from_pool(pool).await?;
    sqlx::query("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        .execute(store.pool())
        .await
        .map_err(|e| open_failed(&shown, &e))?;
    store.pool().set_connect_options(read_only);
    Ok(ReadStore {
        store: Opened::Postgres(store),
        location: format!("postgres:{place}"),
        note: None,
    })
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_: &str, _: Option<&str>) -> CliResult<ReadStore> {
    Err(CliError::usage(
        "this selfheal was built without PostgreSQL: install it with `--features postgres`",
    ))
}

#[cfg(feature = "postgres")]
async fn pg_applied(pool: &sqlx::PgPool) -> Result<Option<Vec<Applied>>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(None);
    }
    sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .map(Some)
}

/// The URL without its password.
#[cfg(feature = "postgres")]
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

/// One row of `_sqlx_migrations`: version, checksum, success.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
type Applied = (i64, Vec<u8>, bool);

/// Refuses a store whose schema differs from the one this version's migrations make:
/// opening it would migrate it (older) or misread it (newer, or changed).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn compare_schema(
    applied: Option<Vec<Applied>>,
    migrator: &sqlx::migrate::Migrator,
    place: &str,
) -> CliResult<()> {
    let Some(applied) = applied else {
        return Err(CliError::failed(format!(
            "`{place}` holds no selfheal store (no `_sqlx_migrations` table); check the path, \
             URL or --schema"
        )));
    };
    if let Some((version, ..)) = applied.iter().find(|(_, _, ok)| !ok) {
        return Err(CliError::failed(format!(
            "the store at `{place}` has a failed migration ({version}); the service's next \
             start reports it"
        )));
    }
    let known: Vec<_> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .collect();
    for m in &known {
        match applied.iter().find(|(v, ..)| *v == m.version) {
            None => {
                return Err(CliError::failed(format!(
                    "the store at `{place}` is older than this selfheal (migration {} `{}` is not \
                     applied); the CLI never migrates a store: start the service once (it \
                     migrates on open), or use the CLI of the service's version",
                    m.version, m.description
                )));
            }
            Some((_, checksum, _)) if checksum.as_slice() != &*m.checksum => {
                return Err(CliError::failed(format!(
                    "the store at `{place}` has migration {} in another form than this selfheal \
                     knows; use the CLI of the service's version",
                    m.version
                )));
            }
            Some(_) => {}
        }
    }
    if let Some((version, ..)) = applied
        .iter()
        .find(|(v, ..)| !known.iter().any(|m| m.version == *v))
    {
        return Err(CliError::failed(format!(
            "the store at `{place}` is newer than this selfheal (it has migration {version}); \
             upgrade the CLI to the service's version"
        )));
    }
    Ok(())
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn open_failed(place: &str, e: &sqlx::Error) -> CliError {
    let said = e.to_string();
    let hint = if said.contains("database is locked") {
        " (the service has it open: an SQLite store is opened by one process at a time; \
         stop the service, or ask its admin API instead of --sqlite)"
    } else {
        ""
    };
    CliError::failed(format!("cannot read the store at `{place}`{hint}: {said}"))
}
