//! Stock strategies, executors and verifiers for [selfheal](selfheal_core), and a
//! supervisor for the child processes a service owns.
//!
//! - [`ProcessExecutor`] runs a strategy's commands as local processes: argument
//!   vectors (never a shell), a timeout with kill, capped output, a scrubbed
//!   environment. [`DryRunExecutor`] records them instead.
//! - [`ChildSupervisor`] owns one child process: streams its output lines, respawns it
//!   when it exits, restarts it on demand (SIGTERM, grace period, SIGKILL).
//! - [`RestartProcess`] (`restart_process`) is the strategy that restarts a supervised
//!   process through the healer's executor, so the restart is a real `kill -TERM <pid>`
//!   command in the plan's preview and the audit trail.
//! - [`HttpVerifier`] scores a target's health from an HTTP GET.
//! - Feature `redis`: `RedisHandle` (the host's client, shared), `RedisVerifier` (PING,
//!   memory health) and the strategies `redis_evict_keys`, `redis_flushdb`,
//!   `redis_raise_maxmemory`, `redis_eviction_policy`, `redis_reconnect`,
//!   `redis_restart`.
//! - Feature `postgres`: `PgPoolHandle` (the host's sqlx pool, shared),
//!   `PostgresVerifier` (a query, connection usage) and the strategies
//!   `postgres_terminate_idle` and `postgres_reset_pool`.
//!
//! Register them with the healer: `Healer::builder().strategy(restart)`,
//! `.verifier("worker", verifier)`, `.executor(ProcessExecutor::new())`.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use selfheal_core::{Command, Executor, Strategy, Verifier};
//! use selfheal_strategies::{ChildSupervisor, HttpVerifier, ProcessExecutor, RestartProcess};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
//! // Commands are argument vectors with a timeout, captured output and a scrubbed environment.
//! let executor = ProcessExecutor::new().timeout(Duration::from_secs(10));
//! let outcome = executor.run(&Command::new("echo", ["hello"])).await?;
//! assert_eq!((outcome.success, outcome.stdout.as_str()), (true, "hello\n"));
//!
//! // The service's worker process, supervised: its output arrives line by line.
//! let (supervisor, mut lines) =
//!     ChildSupervisor::builder("sh", ["-c", "echo worker ready; exec sleep 60"]).spawn()?;
//! assert_eq!(lines.recv().await.as_deref(), Some("worker ready"));
//! let supervisor = Arc::new(supervisor);
//!
//! // The strategy a pattern binds to restart it; it takes no parameters.
//! let restart = RestartProcess::new("worker", Arc::clone(&supervisor));
//! assert_eq!(restart.name(), "restart_process");
//! restart.validate(&serde_json::json!({}))?;
//!
//! // Nothing listens on port 9 here: unreachable is a score of 0, not an error.
//! let verifier = HttpVerifier::new("http://127.0.0.1:9/healthz")?.timeout(Duration::from_secs(1));
//! assert_eq!(verifier.check().await?.score, 0);
//!
//! supervisor.shutdown().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod executor;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod restart;
mod supervisor;
mod verifier;

pub use executor::{DEFAULT_ENV_ALLOW, DryRunExecutor, ProcessExecutor, SENSITIVE_ENV_MARKERS};
#[cfg(feature = "postgres")]
pub use postgres::{PgPoolHandle, PostgresVerifier, ResetPgPool, TerminateIdleConnections};
#[cfg(feature = "redis")]
pub use redis::{
    EvictKeys, FlushDb, RaiseMaxmemory, ReconnectRedis, RedisHandle, RedisVerifier, RestartRedis,
    SetEvictionPolicy,
};
pub use restart::RestartProcess;
pub use supervisor::{ChildSupervisor, ChildSupervisorBuilder};
pub use verifier::HttpVerifier;
