//! [`PostgresVerifier`]: a query and connection usage.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use selfheal_core::{Health, Result, Verifier};
use sqlx::PgPool;
use tracing::{debug, instrument};

use super::describe;

/// Scores a Postgres server's health through a pool (the healer's own, so it holds its
/// connection when the server has no slot left):
///
/// - The check query (default `SELECT 1`) must succeed within the timeout (default
///   5 s), else score 0 with the error in the detail.
/// - Then the **connection usage**: `100 − used / max_connections × 100`, rounded and
///   clamped to 0..=100, where `used` is the sum of `numbackends` over
///   `pg_stat_database`. A server with every slot taken scores 0; with the healer's
///   default pass mark of 80, verification wants under a fifth of the slots in use.
///
/// ```no_run
/// use selfheal_core::Verifier;
/// use selfheal_strategies::PostgresVerifier;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/postgres").await?;
/// let health = PostgresVerifier::new(pool).query("SELECT count(*) FROM orders").check().await?;
/// println!("{} ({})", health.score, health.detail); // 85 (SELECT 1 ok; 3 of 20 connections in use)
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresVerifier {
    pool: PgPool,
    query: String,
    timeout: Duration,
}

impl PostgresVerifier {
    /// Checks through `pool`.
    pub fn new(pool: PgPool) -> Self {
        PostgresVerifier {
            pool,
            query: "SELECT 1".into(),
            timeout: Duration::from_secs(5),
        }
    }

    /// The statement that must succeed (default `SELECT 1`). It comes from the host's
    /// code, never from log text.
    pub fn query(mut self, sql: impl Into<String>) -> Self {
        self.query = sql.into();
        self
    }

    /// How long the whole check may take (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn probe(&self) -> std::result::Result<Health, String> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| format!("no connection: {e}"))?;
        // The host's own statement (see `query`), never text from logs.
        sqlx::query(sqlx::AssertSqlSafe(self.query.as_str()))
            .execute(&mut *conn)
            .await
            .map_err(|e| format!("`{}` failed: {e}", self.query))?;
        let (used, max): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT coalesce(sum(numbackends), 0) FROM pg_stat_database)::int8, \
             current_setting('max_connections')::int8",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| format!("reading connection usage failed: {e}"))?;
        Ok(Health::new(
            usage_score(used, max),
            format!("`{}` ok; {used} of {max} connections in use", self.query),
        ))
    }
}

/// `100 − used / max × 100`, rounded and clamped to 0..=100.
pub(crate) fn usage_score(used: i64, max: i64) -> u8 {
    if max <= 0 {
        return 100;
    }
    let share = used.max(0) as f64 / max as f64 * 100.0;
    // Clamped to 0..=100 first, so the cast is exact.
    (100.0 - share).round().clamp(0.0, 100.0) as u8
}

impl fmt::Debug for PostgresVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresVerifier")
            .field("server", &describe(&self.pool.connect_options()))
            .field("query", &self.query)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[async_trait]
impl Verifier for PostgresVerifier {
    fn name(&self) -> &str {
        "postgres"
    }

    #[instrument(skip_all, fields(postgres = %describe(&self.pool.connect_options())), err)]
    async fn check(&self) -> Result<Health> {
        let health = match tokio::time::timeout(self.timeout, self.probe()).await {
            Ok(Ok(health)) => health,
            Ok(Err(why)) => Health::new(0, why),
            Err(_) => Health::new(0, format!("no answer within {:?}", self.timeout)),
        };
        debug!(score = health.score, detail = %health.detail, "postgres check");
        Ok(health)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_score_follows_the_formula() {
        assert_eq!(usage_score(0, 20), 100);
        assert_eq!(usage_score(2, 20), 90);
        assert_eq!(usage_score(20, 20), 0);
        assert_eq!(usage_score(25, 20), 0);
        assert_eq!(usage_score(1, 3), 67);
        assert_eq!(usage_score(5, 0), 100);
    }

    #[tokio::test]
    async fn an_unreachable_server_scores_0() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(300))
            .connect_lazy(&format!("postgres://u:secret@127.0.0.1:{port}/db"))
            .unwrap();
        let health = PostgresVerifier::new(pool).check().await.unwrap();
        assert_eq!(health.score, 0);
        assert!(
            health.detail.starts_with("no connection"),
            "{}",
            health.detail
        );
        assert!(!health.detail.contains("secret"), "{}", health.detail);
    }
}
