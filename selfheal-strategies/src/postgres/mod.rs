//! Postgres (feature `postgres`): a pool handle the host shares with the healer, a
//! verifier (a query and connection usage) and the strategies for a database whose
//! connection slots are exhausted (`sorry, too many clients already`, pool timeouts).
//!
//! | strategy | name | what it does | risk | undo |
//! |---|---|---|---|---|
//! | [`TerminateIdleConnections`] | `postgres_terminate_idle` | `pg_terminate_backend` of idle connections older than a threshold; never the healer's own, never superusers unless allowed | medium | no |
//! | [`ResetPgPool`] | `postgres_reset_pool` | replaces the [`PgPoolHandle`]'s sqlx pool with a fresh one | low | no |
//!
//! [`PostgresIntegration`] registers them (and the healer's own connection) in one call;
//! by hand:
//!
//! ```no_run
//! use std::str::FromStr;
//! use std::sync::Arc;
//! use selfheal_core::Healer;
//! use selfheal_strategies::{PgPoolHandle, PostgresVerifier, ResetPgPool, TerminateIdleConnections};
//! use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The healer's own connections: a small pool named `selfheal`, opened up front so it
//! // holds its slots when the database runs out of them.
//! let admin = PgPoolOptions::new().min_connections(1).max_connections(2).connect_with(
//!     PgConnectOptions::from_str("postgres://postgres@127.0.0.1/app")?.application_name("selfheal"),
//! ).await?;
//! // The service's pool, shared so the healer can reset it.
//! let app = Arc::new(PgPoolHandle::from_url("postgres://app@127.0.0.1/app")?);
//! let healer = Healer::builder()
//!     .strategy(TerminateIdleConnections::new(admin.clone()))
//!     .strategy(ResetPgPool::new(app.clone()))
//!     .verifier("postgres", PostgresVerifier::new(admin))
//!     .build()?;
//! sqlx::query("SELECT 1").execute(&app.pool()).await?;
//! # drop(healer); Ok(()) }
//! ```

mod handle;
mod integration;
#[cfg(test)]
mod real_tests;
mod terminate;
mod verifier;

pub use handle::{PgPoolHandle, ResetPgPool};
pub use integration::PostgresIntegration;
pub use terminate::TerminateIdleConnections;
pub use verifier::PostgresVerifier;

use selfheal_core::{Error, ErrorKind, RemediationPlan, Result};
use serde_json::Value;

/// Maps a sqlx error into selfheal's error, saying what failed (`what`): connection
/// trouble, pool timeouts and `too many clients` (SQLSTATE 53300) are `Unavailable`
/// (retryable), a closed pool `Closed`, what the server refused `Execution`.
pub(crate) fn pg_error(what: &str, e: sqlx::Error) -> Error {
    let (kind, hint) = match &e {
        sqlx::Error::PoolTimedOut => (
            ErrorKind::Unavailable,
            "no connection of the pool came free in time; the pool or the server is exhausted",
        ),
        sqlx::Error::PoolClosed => (ErrorKind::Closed, "the pool was closed"),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => (
            ErrorKind::Unavailable,
            "the server is unreachable; check that it runs and the URL",
        ),
        sqlx::Error::Database(db) if db.code().as_deref() == Some("53300") => (
            ErrorKind::Unavailable,
            "every connection slot is taken; free some (terminate idle connections)",
        ),
        sqlx::Error::Database(db) if db.code().as_deref().is_some_and(|c| c.starts_with("28")) => (
            ErrorKind::InvalidInput,
            "the server refused the credentials; fix the user or password",
        ),
        sqlx::Error::Database(db) if db.code().as_deref() == Some("42501") => (
            ErrorKind::Execution,
            "permission denied; the healer's role needs pg_signal_backend (or superuser) and read access to pg_stat_activity",
        ),
        _ => (ErrorKind::Execution, "the server refused the statement"),
    };
    Error::new(kind, format!("{what}: {e}; {hint}")).with_source(e)
}

/// Refuses a plan made by another strategy.
pub(crate) fn check_plan(plan: &RemediationPlan, name: &str) -> Result<()> {
    if plan.strategy == name {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "this plan belongs to strategy `{}`, not `{name}`",
            plan.strategy
        )))
    }
}

/// The parameters as an object (`null` is an empty one), refusing keys outside `allowed`.
pub(crate) fn params_object<'a>(
    strategy: &str,
    params: &'a Value,
    allowed: &[&str],
) -> Result<Option<&'a serde_json::Map<String, Value>>> {
    let map = match params {
        Value::Null => return Ok(None),
        Value::Object(map) => map,
        _ => {
            return Err(Error::invalid(format!(
                "{strategy} takes an object of parameters; got {params}"
            )));
        }
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Error::invalid(format!(
            "{strategy} has no parameter `{unknown}`; use {}",
            if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    }
    Ok(Some(map))
}

/// `host:port/database` of connect options, without credentials.
pub(crate) fn describe(options: &sqlx::postgres::PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or(options.get_username())
    )
}

/// An action context for unit tests.
#[cfg(test)]
pub(crate) fn test_ctx(target: &str, params: Value) -> selfheal_core::ActionContext {
    let now = chrono::Utc::now();
    selfheal_core::ActionContext {
        incident: selfheal_core::Incident {
            stack: None,
            id: uuid::Uuid::new_v4(),
            target: target.into(),
            fingerprint: "0123456789abcdef".into(),
            template: "sorry, too many clients already".into(),
            related: Vec::new(),
            pattern: Some("postgres_too_many_clients".into()),
            status: selfheal_core::IncidentStatus::Open,
            severity: selfheal_core::Severity::High,
            occurrences: 3,
            samples: Vec::new(),
            opened_at: now,
            last_seen: now,
            closed_at: None,
            reason: String::new(),
        },
        target: target.into(),
        params,
    }
}
