//! [`PgPoolHandle`] and [`ResetPgPool`]: a sqlx pool the healer can replace.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use selfheal_core::{
    ActionContext, ActionOutcome, Applicability, Error, Executor, RemediationPlan, Result, Risk,
    Strategy,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tracing::{info, instrument, warn};

use super::{check_plan, describe, params_object, pg_error};

/// The host's sqlx Postgres pool, shared with the healer so it can be replaced by a
/// fresh one ([`ResetPgPool`]) when it is wedged: connections leaked by a stuck task,
/// connections broken by a failover, a pool that only times out.
///
/// The service calls [`pool`](Self::pool) when it needs the pool (a cheap clone) instead
/// of keeping its own copy: after a reset it gets the new one. The old pool closes its
/// idle connections at once and each checked-out one when it is returned (or dropped).
/// The password never shows in `Debug` or messages.
///
/// ```no_run
/// use selfheal_strategies::PgPoolHandle;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
/// let handle = PgPoolHandle::from_url("postgres://app@127.0.0.1:5432/app")?;
/// sqlx::query("SELECT 1").execute(&handle.pool()).await.expect("query");
/// handle.reset().await?; // a fresh pool, checked with SELECT 1 before it replaces the old
/// assert_eq!(handle.generation(), 2);
/// # Ok(()) }
/// ```
pub struct PgPoolHandle {
    options: PgPoolOptions,
    connect: PgConnectOptions,
    pool: RwLock<PgPool>,
    generation: AtomicU64,
    check_timeout: Duration,
}

impl PgPoolHandle {
    /// A handle whose pools are built with `options` and connect with `connect`. The
    /// first pool connects lazily. Call it inside a tokio runtime.
    pub fn new(options: PgPoolOptions, connect: PgConnectOptions) -> Self {
        let pool = options.clone().connect_lazy_with(connect.clone());
        PgPoolHandle {
            options,
            connect,
            pool: RwLock::new(pool),
            generation: AtomicU64::new(1),
            check_timeout: Duration::from_secs(5),
        }
    }

    /// A handle with sqlx's default pool options on `url`.
    ///
    /// Errors: [`ErrorKind::InvalidInput`](selfheal_core::ErrorKind::InvalidInput) for a
    /// URL that does not parse.
    pub fn from_url(url: &str) -> Result<Self> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::invalid(
                "a Postgres URL starts with postgres:// or postgresql://; give one like postgres://user@127.0.0.1:5432/db",
            ));
        }
        let connect = PgConnectOptions::from_str(url).map_err(|e| {
            Error::invalid(format!(
                "invalid Postgres URL: {e}; give one like postgres://user@127.0.0.1:5432/db"
            ))
        })?;
        Ok(Self::new(PgPoolOptions::new(), connect))
    }

    /// How long [`reset`](Self::reset) waits for the new pool's `SELECT 1` (default 5 s).
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }

    /// The current pool.
    pub fn pool(&self) -> PgPool {
        self.pool
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// 1 for the first pool, +1 on every reset.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// `host:port/database`, without credentials.
    pub fn address(&self) -> String {
        describe(&self.connect)
    }

    /// Whether a new connection with the pool's options succeeds now (within the
    /// check timeout); the error says why not. Changes nothing.
    pub async fn can_connect(&self) -> std::result::Result<(), String> {
        use sqlx::Connection as _;
        match tokio::time::timeout(
            self.check_timeout,
            sqlx::PgConnection::connect_with(&self.connect),
        )
        .await
        {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                Ok(())
            }
            Ok(Err(sqlx::Error::Database(db))) if db.code().as_deref() == Some("53300") => Err(
                format!("the server has no free connection slot for the pool's role ({db})"),
            ),
            Ok(Err(e)) => Err(format!("a new connection fails: {e}")),
            Err(_) => Err(format!(
                "a new connection did not open within {:?}",
                self.check_timeout
            )),
        }
    }

    /// Builds a new pool, checks it with `SELECT 1`, makes it current and closes the
    /// old one in the background. Returns the new generation. When the new pool cannot
    /// answer, the old one stays and the error is returned.
    #[instrument(skip_all, fields(postgres = %self.address()), err)]
    pub async fn reset(&self) -> Result<u64> {
        let fresh = self.options.clone().connect_lazy_with(self.connect.clone());
        let checked =
            tokio::time::timeout(self.check_timeout, sqlx::query("SELECT 1").execute(&fresh)).await;
        match checked {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                fresh.close().await;
                return Err(pg_error("the new pool could not run SELECT 1", e));
            }
            Err(_) => {
                fresh.close().await;
                return Err(Error::new(
                    selfheal_core::ErrorKind::Timeout,
                    format!(
                        "the new pool did not answer SELECT 1 within {:?}; the server is unreachable or exhausted",
                        self.check_timeout
                    ),
                ));
            }
        }
        let old = std::mem::replace(
            &mut *self.pool.write().unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        info!(generation, "postgres pool reset");
        // Marks the old pool closed now; its connections go as they come back.
        drop(old.close());
        tokio::spawn(async move {
            if tokio::time::timeout(Duration::from_secs(60), old.close())
                .await
                .is_err()
            {
                warn!(
                    "connections of the replaced pool were not returned within 60s; they close when dropped"
                );
            }
        });
        Ok(generation)
    }
}

impl fmt::Debug for PgPoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgPoolHandle")
            .field("address", &self.address())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// Replaces the host's sqlx pool (a [`PgPoolHandle`]) with a fresh one.
///
/// - **Parameters**: none.
/// - **Applicable** ([`Strategy::applicable`]) only when a new connection succeeds
///   ([`PgPoolHandle::can_connect`]): a fresh pool cannot help while the server has no
///   free slot, so the healer skips it then, saying why, and asks no one.
/// - **Plan**: risk [`Risk::Low`]; one step `reset the sqlx pool of <host:port/db>
///   (generation N → N+1)`.
/// - **Waits for its target** ([`Strategy::needs_target`]): while the server has no
///   free slot (the target's probe fails) the healer waits, then runs it at once.
/// - **Execute**: [`PgPoolHandle::reset`]; a new pool that cannot answer `SELECT 1` is an
///   error and the old pool stays. With a dry-run executor, nothing.
/// - **Rollback**: none.
#[derive(Debug, Clone)]
pub struct ResetPgPool {
    handle: Arc<PgPoolHandle>,
}

impl ResetPgPool {
    /// The strategy's name, which patterns bind fixes to.
    pub const NAME: &'static str = "postgres_reset_pool";

    /// Resets `handle`'s pool.
    pub fn new(handle: Arc<PgPoolHandle>) -> Self {
        ResetPgPool { handle }
    }
}

#[async_trait]
impl Strategy for ResetPgPool {
    fn name(&self) -> &str {
        Self::NAME
    }

    /// A fresh pool only helps once the server accepts connections: the healer waits
    /// for the target's probe, then runs it at once.
    fn needs_target(&self) -> bool {
        true
    }

    fn validate(&self, params: &Value) -> Result<()> {
        params_object(Self::NAME, params, &[]).map(|_| ())
    }

    fn param_schema(&self) -> Value {
        json!({"type": "object", "additionalProperties": false})
    }

    async fn applicable(&self, _ctx: &ActionContext) -> Result<Applicability> {
        Ok(match self.handle.can_connect().await {
            Ok(()) => Applicability::Applicable,
            Err(why) => Applicability::not_applicable(format!(
                "{why}; a fresh pool could not connect either"
            )),
        })
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        self.validate(&ctx.params)?;
        let generation = self.handle.generation();
        Ok(RemediationPlan::new(Self::NAME, ctx.target.clone())
            .risk(Risk::Low)
            .step(format!(
                "reset the sqlx pool of {} (generation {generation} → {}): check a new pool with SELECT 1, swap it in, close the old one",
                self.handle.address(),
                generation + 1
            )))
    }

    #[instrument(skip_all, fields(target = %plan.target), err)]
    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        check_plan(plan, Self::NAME)?;
        let started = Instant::now();
        if executor.dry_run() {
            return Ok(ActionOutcome {
                stdout: "dry run: would reset the sqlx pool".into(),
                ..ActionOutcome::ok(started.elapsed())
            });
        }
        let generation = self.handle.reset().await?;
        Ok(ActionOutcome {
            stdout: format!("pool reset: generation {generation}"),
            ..ActionOutcome::ok(started.elapsed())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_handle_hides_the_password_and_refuses_bad_urls() {
        let handle =
            PgPoolHandle::from_url("postgres://app:hunter2@127.0.0.1:5999/orders").unwrap();
        let debug = format!("{handle:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("127.0.0.1:5999/orders"), "{debug}");
        assert_eq!(handle.generation(), 1);
        assert!(PgPoolHandle::from_url("mysql://x").is_err());
        assert!(PgPoolHandle::from_url("postgres://[::1").is_err());
    }

    #[tokio::test]
    async fn a_reset_against_an_unreachable_server_keeps_the_old_pool() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let handle = PgPoolHandle::new(
            PgPoolOptions::new().acquire_timeout(Duration::from_millis(500)),
            PgConnectOptions::new().host("127.0.0.1").port(port),
        );
        let before = handle.pool();
        let err = handle.reset().await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert_eq!(handle.generation(), 1);
        assert!(!before.is_closed(), "the old pool stays in service");
        let reset = ResetPgPool::new(Arc::new(handle));
        assert!(reset.validate(&json!({"force": true})).is_err());
        reset.validate(&json!({})).unwrap();
    }
}
