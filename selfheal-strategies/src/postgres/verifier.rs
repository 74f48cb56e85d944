//! [`PostgresVerifier`]: a new connection and a query; connection usage recorded.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use selfheal_core::{Health, Result, Verifier};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, PgPool};
use tracing::{debug, instrument};

use super::describe;

/// Checks a Postgres server: whether a **new connection** is accepted and answers the
/// check query, and how many connection slots are in use.
///
/// - **Verdict** ([`Health::passed`]): a new connection (by default with the pool's
///   own options; the service's role with [`connect_as`](Self::connect_as), or an
///   acquire from the service's pool with [`service_pool`](Self::service_pool)) is
///   accepted and the check query (default `SELECT 1`) succeeds, all within the
///   timeout (default 5 s). A server with 7 of 20 slots in use passes.
/// - **Score** (recorded as health before/after, not judged): `100 − used /
///   max_connections × 100`, rounded and clamped to 0..=100, where `used` is the sum of
///   `numbackends` over `pg_stat_database`, read through `pool` (the healer's own, so
///   it holds its connection when the server has no slot left). When the usage cannot
///   be read the score is 0.
///
/// A superuser has reserved slots: when the healer's role is one, give the service's
/// role to [`connect_as`](Self::connect_as) so the verdict sees what the service sees.
///
/// ```no_run
/// use selfheal_core::Verifier;
/// use selfheal_strategies::PostgresVerifier;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/postgres").await?;
/// let health = PostgresVerifier::new(pool).query("SELECT count(*) FROM orders").check().await?;
/// // true 65 (new connection accepted; `SELECT count(*) FROM orders` ok; 7 of 20 connections in use)
/// println!("{} {} ({})", health.passed, health.score, health.detail);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresVerifier {
    pool: PgPool,
    probe: Probe,
    query: String,
    timeout: Duration,
}

/// How the verdict gets its connection.
#[derive(Clone)]
enum Probe {
    /// A new connection with these options.
    Connect(Arc<PgConnectOptions>),
    /// One acquired from the service's pool.
    Pool(PgPool),
}

impl PostgresVerifier {
    /// Checks through `pool`: usage read through it, the verdict on a new connection
    /// with its options.
    pub fn new(pool: PgPool) -> Self {
        PostgresVerifier {
            probe: Probe::Connect(pool.connect_options()),
            pool,
            query: "SELECT 1".into(),
            timeout: Duration::from_secs(5),
        }
    }

    /// The verdict's new connection uses `options` (the service's role and database)
    /// instead of the pool's.
    pub fn connect_as(mut self, options: PgConnectOptions) -> Self {
        self.probe = Probe::Connect(Arc::new(options));
        self
    }

    /// The verdict acquires a connection from the service's own `pool` instead of
    /// opening one: it passes when the service could run a query.
    pub fn service_pool(mut self, pool: PgPool) -> Self {
        self.probe = Probe::Pool(pool);
        self
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

    /// The verdict: a connection accepted and the query answered.
    async fn verdict(&self) -> std::result::Result<&'static str, String> {
        // The host's own statement (see `query`), never text from logs.
        let query = sqlx::AssertSqlSafe(self.query.as_str());
        let failed = |e: sqlx::Error| format!("`{}` failed: {e}", self.query);
        match &self.probe {
            Probe::Connect(options) => {
                let mut conn = PgConnection::connect_with(options)
                    .await
                    .map_err(|e| format!("a new connection was refused: {e}"))?;
                let answered = sqlx::query(query).execute(&mut conn).await.map_err(failed);
                let _ = conn.close().await;
                answered.map(|_| "new connection accepted")
            }
            Probe::Pool(pool) => {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(|e| format!("the service's pool gave no connection: {e}"))?;
                sqlx::query(query)
                    .execute(&mut *conn)
                    .await
                    .map_err(failed)?;
                Ok("the service's pool acquired")
            }
        }
    }

    /// Slots in use and `max_connections`, through the healer's pool.
    async fn usage(&self) -> std::result::Result<(i64, i64), String> {
        sqlx::query_as(
            "SELECT (SELECT coalesce(sum(numbackends), 0) FROM pg_stat_database)::int8, \
             current_setting('max_connections')::int8",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| format!("reading connection usage failed: {e}"))
    }

    async fn probe(&self) -> Health {
        // Usage first, so the verdict's own connection is not counted in it.
        let usage = self.usage().await;
        let verdict = self.verdict().await;
        let said = match &verdict {
            Ok(how) => format!("{how}; `{}` ok", self.query),
            Err(why) => why.clone(),
        };
        let health = match usage {
            Ok((used, max)) => Health::new(
                usage_score(used, max),
                format!("{said}; {used} of {max} connections in use"),
            ),
            Err(why) => Health::new(0, format!("{said}; {why}")),
        };
        health.with_passed(verdict.is_ok())
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
            Ok(health) => health,
            Err(_) => Health::down(format!("no answer within {:?}", self.timeout)),
        };
        debug!(passed = health.passed, score = health.score, detail = %health.detail, "postgres check");
        Ok(health)
    }

    /// What a new connection as the verdict's role says about an ambiguous text such
    /// as sqlx's `pool timed out`: `postgres_unavailable` when the server cannot be
    /// reached or is starting up or shutting down, `postgres_too_many_clients` when it
    /// refuses for slots (SQLSTATE 53300, including the reserved-slots refusal), and
    /// `None` when it accepts with slots to spare (the server is fine; the pool itself
    /// is saturated). A connection that gets in with at most one slot left for the role
    /// besides its own also points to `postgres_too_many_clients`: under a slot
    /// shortage a slot frees now and then (a pooled connection reaching its
    /// `max_lifetime`), and the probe must not read that moment as a healthy server.
    #[instrument(skip_all, fields(postgres = %describe(&self.pool.connect_options())), err)]
    async fn diagnose(&self) -> Result<Option<String>> {
        let options = match &self.probe {
            Probe::Connect(options) => options.clone(),
            Probe::Pool(pool) => pool.connect_options(),
        };
        let named = match tokio::time::timeout(self.timeout, async {
            let mut conn = PgConnection::connect_with(&options).await?;
            let free = free_slots(&mut conn).await;
            let _ = conn.close().await;
            Ok::<_, sqlx::Error>(free)
        })
        .await
        {
            Err(_) => Some(UNAVAILABLE),
            Ok(Ok(Some(free))) if free <= 1 => Some(TOO_MANY_CLIENTS),
            Ok(Ok(_)) => None,
            Ok(Err(e)) => refusal_points_to(&e),
        };
        debug!(diagnosis = ?named, "postgres diagnose");
        Ok(named.map(str::to_owned))
    }
}

/// Slots still open to a role without superuser rights, counted on `conn` (which holds
/// one of them): `max_connections` less the reserved slots less the sessions in use.
/// `None` when it cannot be read (the caller then goes by the connection alone).
async fn free_slots(conn: &mut PgConnection) -> Option<i64> {
    // `reserved_connections` exists from PostgreSQL 16 on; `true` reads a missing
    // setting as NULL.
    sqlx::query_scalar::<_, i64>(
        "SELECT current_setting('max_connections')::int8 \
              - current_setting('superuser_reserved_connections')::int8 \
              - coalesce(nullif(current_setting('reserved_connections', true), ''), '0')::int8 \
              - (SELECT coalesce(sum(numbackends), 0) FROM pg_stat_database)::int8",
    )
    .fetch_one(conn)
    .await
    .map_err(|e| debug!(error = %e, "reading free connection slots failed"))
    .ok()
}

/// The stock pattern for a server that cannot be reached.
const UNAVAILABLE: &str = "postgres_unavailable";
/// The stock pattern for a server out of connection slots.
const TOO_MANY_CLIENTS: &str = "postgres_too_many_clients";

/// Which stock pattern a refused connection points to, if any.
fn refusal_points_to(e: &sqlx::Error) -> Option<&'static str> {
    match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // too_many_connections: `sorry, too many clients already` and the
            // reserved-slots refusal.
            Some("53300") => Some(TOO_MANY_CLIENTS),
            // admin_shutdown, crash_shutdown, cannot_connect_now (starting up).
            Some("57P01" | "57P02" | "57P03") => Some(UNAVAILABLE),
            _ => None,
        },
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => Some(UNAVAILABLE),
        _ => None,
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
        assert!(!health.passed);
        assert!(
            health.detail.starts_with("a new connection was refused"),
            "{}",
            health.detail
        );
        assert!(!health.detail.contains("secret"), "{}", health.detail);
    }
}
