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
//! - [`HttpVerifier`] scores a target's health from an HTTP GET; [`TcpVerifier`] from a
//!   TCP connect; [`QuietVerifier`] from the healer's own sightings of the target's
//!   errors; [`CompositeVerifier`] combines several (all/any).
//! - [`CommandStrategy`] runs argument-vector templates with validated parameters:
//!   systemd, Docker, `kubectl rollout restart` / `scale` / `rollout undo`, your own.
//! - [`ConfigPatch`] (`patch_config`) changes one key in a TOML/JSON/YAML/.env file with
//!   a backup, an atomic write and a byte-exact rollback.
//! - [`CircuitBreaker`] is a handle your code consults; [`OpenCircuit`]
//!   (`circuit_break`) opens it. [`KillRunawaySessions`] ends sessions over limits
//!   through your [`SessionControl`]. [`AlertOnly`] only tells people.
//! - [`HealthMonitor`] polls verifiers and a [`MetricsProbe`] (CPU, memory, disk, cgroup
//!   memory) and turns bad readings into signals.
//! - [`NtfyNotifier`] and [`WebhookNotifier`] tell humans.
//! - Feature `redis`: `RedisHandle` (the host's client, shared), `RedisVerifier` (PING,
//!   a write probe; memory usage recorded) and the strategies `redis_evict_keys`, `redis_flushdb`,
//!   `redis_raise_maxmemory`, `redis_eviction_policy`, `redis_reconnect`,
//!   `redis_restart`.
//! - Feature `postgres`: `PgPoolHandle` (the host's sqlx pool, shared),
//!   `PostgresVerifier` (a new connection and a query; slot usage recorded) and the strategies
//!   `postgres_terminate_idle` and `postgres_reset_pool`.
//!
//! Register them with the healer: `Healer::builder().strategy(restart)`,
//! `.verifier("worker", verifier)`, `.executor(ProcessExecutor::new())`. The Redis and
//! Postgres pieces come in one call each: `.integrate(RedisIntegration::new(target,
//! handle))`, `.integrate(PostgresIntegration::for_handle(target, pool).await?)`.
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

mod alert_only;
mod breaker;
mod config_patch;
mod executor;
mod metrics;
mod monitor;
mod notifier;
#[cfg(feature = "postgres")]
mod postgres;
mod process;
#[cfg(feature = "redis")]
mod redis;
mod restart;
mod session;
mod supervisor;
mod verifier;

pub use alert_only::AlertOnly;
pub use breaker::{BreakerState, CircuitBreaker, OpenCircuit, Route};
pub use config_patch::{ConfigFormat, ConfigPatch};
pub use executor::{DEFAULT_ENV_ALLOW, DryRunExecutor, ProcessExecutor, SENSITIVE_ENV_MARKERS};
pub use metrics::{Metrics, MetricsProbe, Thresholds};
pub use monitor::{HealthMonitor, MonitorHandle};
pub use notifier::{NtfyNotifier, SIGNATURE_HEADER, WebhookNotifier};
#[cfg(feature = "postgres")]
pub use postgres::{
    PgPoolHandle, PostgresIntegration, PostgresVerifier, ResetPgPool, TerminateIdleConnections,
};
pub use process::{CommandStrategy, ParamRule};
#[cfg(feature = "redis")]
pub use redis::{
    EvictKeys, FlushDb, RaiseMaxmemory, ReconnectRedis, RedisHandle, RedisIntegration,
    RedisVerifier, RestartRedis, SetEvictionPolicy,
};
pub use restart::RestartProcess;
#[cfg(any(test, feature = "test-util"))]
pub use session::MockSessionControl;
pub use session::{KillRunawaySessions, SessionControl, SessionInfo};
pub use supervisor::{ChildSupervisor, ChildSupervisorBuilder};
pub use verifier::{Combine, CompositeVerifier, HttpVerifier, QuietVerifier, TcpVerifier};
