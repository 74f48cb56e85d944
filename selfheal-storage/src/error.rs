//! The storage crate's own error, and how it maps onto [`selfheal_core::Error`].

use selfheal_core::ErrorKind;

/// What went wrong in a store. Trait methods never return it directly: it converts into
/// [`selfheal_core::Error`] with a kind that says whether retrying may help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A connection, query or transaction failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Running the schema migrations failed.
    #[error("schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be read back into its type.
    #[error("stored {what} is not valid: {reason}")]
    Corrupt {
        /// Which value (`incidents.status`, …).
        what: String,
        /// Why it could not be read.
        reason: String,
    },
    /// A value cannot be stored as it is (a count or duration beyond the column's range).
    #[error("{0}")]
    Unrepresentable(String),
}

impl StorageError {
    /// The [`ErrorKind`] this error maps to: pool timeouts, I/O and connection
    /// failures and a busy database are `Unavailable`; unique violations are
    /// `Conflict`; a missing row is `NotFound`; the rest is `Internal`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::Database(e) => classify(e),
            StorageError::Migrate(e) => match e {
                sqlx::migrate::MigrateError::Execute(e)
                | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => match classify(e) {
                    // A migration that fails on its own SQL is a bug, not a conflict.
                    ErrorKind::Unavailable => ErrorKind::Unavailable,
                    _ => ErrorKind::Internal,
                },
                _ => ErrorKind::Internal,
            },
            StorageError::Corrupt { .. } => ErrorKind::Internal,
            StorageError::Unrepresentable(_) => ErrorKind::InvalidInput,
        }
    }

    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn corrupt(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        StorageError::Corrupt {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// Classifies a sqlx error by whether retrying may help.
fn classify(e: &sqlx::Error) -> ErrorKind {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => ErrorKind::Unavailable,
        sqlx::Error::PoolClosed => ErrorKind::Closed,
        sqlx::Error::RowNotFound => ErrorKind::NotFound,
        sqlx::Error::Configuration(_) => ErrorKind::InvalidInput,
        sqlx::Error::Database(db) => classify_database(db.as_ref()),
        _ => ErrorKind::Internal,
    }
}

fn classify_database(db: &dyn sqlx::error::DatabaseError) -> ErrorKind {
    if db.is_unique_violation() {
        return ErrorKind::Conflict;
    }
    #[cfg(feature = "sqlite")]
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLite reports its extended result code, in decimal.
        let code: i32 = db.code().and_then(|c| c.parse().ok()).unwrap_or(0);
        return classify_sqlite(code);
    }
    #[cfg(feature = "postgres")]
    if let Some(code) = db.code() {
        return classify_postgres(&code);
    }
    ErrorKind::Internal
}

/// PostgreSQL SQLSTATE codes: <https://www.postgresql.org/docs/current/errcodes-appendix.html>.
#[cfg(feature = "postgres")]
fn classify_postgres(sqlstate: &str) -> ErrorKind {
    match sqlstate {
        // integrity_constraint_violation (the append-only audit trigger), foreign key.
        "23000" | "23503" => ErrorKind::Conflict,
        // serialization failure and deadlock: the transaction may be retried.
        "40001" | "40P01" => ErrorKind::Unavailable,
        // lock not available, query canceled (statement timeout).
        "55P03" | "57014" => ErrorKind::Unavailable,
        // admin shutdown, crash shutdown, cannot connect now (starting up).
        "57P01" | "57P02" | "57P03" => ErrorKind::Unavailable,
        // connection exceptions, insufficient resources (too many connections, disk full).
        s if s.starts_with("08") || s.starts_with("53") => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

/// SQLite result codes: <https://www.sqlite.org/rescode.html>.
#[cfg(feature = "sqlite")]
fn classify_sqlite(extended: i32) -> ErrorKind {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    const SQLITE_IOERR: i32 = 10;
    const SQLITE_FULL: i32 = 13;
    const SQLITE_CANTOPEN: i32 = 14;
    const SQLITE_PROTOCOL: i32 = 15;
    const SQLITE_CONSTRAINT_FOREIGNKEY: i32 = 787;
    const SQLITE_CONSTRAINT_TRIGGER: i32 = 1811;
    match extended {
        // A trigger refused the write (the append-only audit log) or a row refers to
        // one that is gone: the write conflicts with what is stored.
        SQLITE_CONSTRAINT_TRIGGER | SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::Conflict,
        _ => match extended & 0xff {
            SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN
            | SQLITE_PROTOCOL => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        },
    }
}

impl From<StorageError> for selfheal_core::Error {
    fn from(e: StorageError) -> Self {
        let kind = e.kind();
        let message = match kind {
            ErrorKind::Unavailable => format!(
                "the store is unavailable ({e}); check that the database is reachable, \
                 writable, not locked by another process and has disk space, then retry"
            ),
            ErrorKind::Conflict => format!(
                "the write conflicts with what is stored ({e}); read the current state \
                 and update it instead of inserting it again"
            ),
            ErrorKind::NotFound => {
                format!("not found in the store ({e}); check the name or id")
            }
            ErrorKind::Closed => format!("the store is closed ({e}); open it again"),
            ErrorKind::InvalidInput => match &e {
                StorageError::Unrepresentable(_) => format!("{e}; store a smaller value"),
                _ => format!(
                    "invalid store configuration ({e}); for SQLite use a path, \
                     `sqlite://path` or `sqlite::memory:`, for PostgreSQL \
                     `postgres://user@host:port/database`"
                ),
            },
            _ => match &e {
                StorageError::Migrate(_) => format!(
                    "{e}; the database was created or changed by another selfheal version: \
                     open it with that version or start from a new database"
                ),
                StorageError::Corrupt { .. } => format!(
                    "{e}; the database was changed outside selfheal or by a newer version: \
                     repair the row or start from a new database"
                ),
                _ => format!(
                    "unexpected store error ({e}); this is a bug or a damaged database: \
                     report it with this message"
                ),
            },
        };
        selfheal_core::Error::new(kind, message).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_retryable() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::Io(std::io::Error::other("connection reset")),
            sqlx::Error::WorkerCrashed,
        ] {
            let err = selfheal_core::Error::from(StorageError::from(e));
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
            assert!(err.is_retryable());
            assert!(err.message().contains("retry"), "{err}");
        }
    }

    #[test]
    fn missing_rows_and_bugs_are_classified() {
        let err = selfheal_core::Error::from(StorageError::from(sqlx::Error::RowNotFound));
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let err = selfheal_core::Error::from(StorageError::from(sqlx::Error::ColumnNotFound(
            "nope".into(),
        )));
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(!err.is_retryable());
        let err = selfheal_core::Error::from(StorageError::corrupt("incidents.status", "`zzz`"));
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(err.message().contains("incidents.status"), "{err}");
        let source = std::error::Error::source(&err).expect("the storage error is kept");
        assert!(source.to_string().contains("not valid"));
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_codes_are_classified() {
        assert_eq!(classify_sqlite(5), ErrorKind::Unavailable); // SQLITE_BUSY
        assert_eq!(classify_sqlite(517), ErrorKind::Unavailable); // SQLITE_BUSY_SNAPSHOT
        assert_eq!(classify_sqlite(14), ErrorKind::Unavailable); // SQLITE_CANTOPEN
        assert_eq!(classify_sqlite(1811), ErrorKind::Conflict); // SQLITE_CONSTRAINT_TRIGGER
        assert_eq!(classify_sqlite(1299), ErrorKind::Internal); // SQLITE_CONSTRAINT_NOTNULL
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_codes_are_classified() {
        assert_eq!(classify_postgres("53300"), ErrorKind::Unavailable); // too_many_connections
        assert_eq!(classify_postgres("08006"), ErrorKind::Unavailable); // connection_failure
        assert_eq!(classify_postgres("57P01"), ErrorKind::Unavailable); // admin_shutdown
        assert_eq!(classify_postgres("40P01"), ErrorKind::Unavailable); // deadlock_detected
        assert_eq!(classify_postgres("23000"), ErrorKind::Conflict); // the audit trigger
        assert_eq!(classify_postgres("42P01"), ErrorKind::Internal); // undefined_table
    }
}
