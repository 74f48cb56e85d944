//! [`ReconnectRedis`] and [`RestartRedis`]: for a Redis that refuses connections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use selfheal_core::{
    ActionContext, ActionOutcome, Command, Error, Executor, RemediationPlan, Result, Risk, Strategy,
};
use serde_json::{Value, json};
use tracing::{info, instrument};

use super::{RedisHandle, check_plan, params_object};
use crate::executor::append_note;

fn no_params(strategy: &str, params: &Value) -> Result<()> {
    match params_object(strategy, params, &[])? {
        Some(map) if !map.is_empty() => Err(Error::invalid(format!(
            "{strategy} takes no parameters; remove them"
        ))),
        _ => Ok(()),
    }
}

/// Replaces the [`RedisHandle`]'s connection with a new one that answered `PING`, for a
/// client whose connection broke (the server restarted, a proxy dropped it) while the
/// server itself is back.
///
/// - **Parameters**: none.
/// - **Plan**: risk [`Risk::Low`]; one step `reconnect the client handle of <addr>
///   (generation N → N+1)`.
/// - **Waits for its target** ([`Strategy::needs_target`]): after a Redis restart the
///   healer runs it as soon as the target's probe passes again, not while Redis is
///   still down.
/// - **Execute**: [`RedisHandle::reconnect`]; a server that still refuses is an error
///   (`Unavailable`) and the old connection is kept. With a dry-run executor, nothing.
/// - **Rollback**: none.
#[derive(Debug, Clone)]
pub struct ReconnectRedis {
    handle: Arc<RedisHandle>,
}

impl ReconnectRedis {
    /// The strategy's name, which patterns bind fixes to.
    pub const NAME: &'static str = "redis_reconnect";

    /// Reconnects `handle`.
    pub fn new(handle: Arc<RedisHandle>) -> Self {
        ReconnectRedis { handle }
    }
}

#[async_trait]
impl Strategy for ReconnectRedis {
    fn name(&self) -> &str {
        Self::NAME
    }

    /// A reconnect only works once the server answers again: the healer waits for the
    /// target's probe, then runs it at once.
    fn needs_target(&self) -> bool {
        true
    }

    fn validate(&self, params: &Value) -> Result<()> {
        no_params(Self::NAME, params)
    }

    fn param_schema(&self) -> Value {
        json!({"type": "object", "additionalProperties": false})
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        self.validate(&ctx.params)?;
        let generation = self.handle.generation();
        Ok(RemediationPlan::new(Self::NAME, ctx.target.clone())
            .risk(Risk::Low)
            .step(format!(
                "reconnect the Redis client handle of {} (generation {generation} → {})",
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
                stdout: "dry run: would reconnect the Redis client handle".into(),
                ..ActionOutcome::ok(started.elapsed())
            });
        }
        let generation = self.handle.reconnect().await?;
        Ok(ActionOutcome {
            stdout: format!("reconnected: generation {generation}"),
            ..ActionOutcome::ok(started.elapsed())
        })
    }
}

/// Restarts the Redis server with a command the host configures (an argument vector
/// run through the healer's executor: `systemctl restart redis-server`, `docker restart
/// cache`, …), waits until the server answers `PING`, then reconnects the
/// [`RedisHandle`].
///
/// In the command's arguments `{host}` and `{port}` are replaced with the handle's
/// (from the host's configuration, never from log text).
///
/// - **Parameters**: none.
/// - **Plan**: risk [`Risk::Medium`] (Redis is down while it restarts and loses what it
///   did not persist); the command, then `wait until PING answers (at most 30s)` and
///   `reconnect the client handle`.
/// - **Execute**: a command that fails is returned as the failed outcome it is; a server
///   that does not answer `PING` in time is a failed outcome with a note. With a
///   dry-run executor only the command is recorded.
/// - **Rollback**: none.
#[derive(Debug, Clone)]
pub struct RestartRedis {
    handle: Arc<RedisHandle>,
    command: Command,
    ready_timeout: Duration,
}

impl RestartRedis {
    /// The strategy's name, which patterns bind fixes to.
    pub const NAME: &'static str = "redis_restart";

    /// Restarts the server of `handle` with `command` (an argv template, see the type's
    /// docs).
    pub fn new(handle: Arc<RedisHandle>, command: Command) -> Self {
        RestartRedis {
            handle,
            command,
            ready_timeout: Duration::from_secs(30),
        }
    }

    /// How long to wait for `PING` after the command (default 30 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// The command with `{host}` and `{port}` filled in.
    fn command(&self) -> Command {
        let address = self.handle.address();
        let (host, port) = address.rsplit_once(':').unwrap_or((address.as_str(), ""));
        let mut command = self.command.clone();
        for arg in &mut command.args {
            *arg = arg.replace("{host}", host).replace("{port}", port);
        }
        command
    }
}

#[async_trait]
impl Strategy for RestartRedis {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn validate(&self, params: &Value) -> Result<()> {
        no_params(Self::NAME, params)
    }

    fn param_schema(&self) -> Value {
        json!({"type": "object", "additionalProperties": false})
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        self.validate(&ctx.params)?;
        Ok(RemediationPlan::new(Self::NAME, ctx.target.clone())
            .risk(Risk::Medium)
            .command(self.command())
            .step(format!(
                "wait until {} answers PING (at most {}s)",
                self.handle.address(),
                self.ready_timeout.as_secs()
            ))
            .step("reconnect the Redis client handle"))
    }

    #[instrument(skip_all, fields(target = %plan.target), err)]
    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        check_plan(plan, Self::NAME)?;
        let Some(command) = plan.steps.iter().find_map(|s| s.command.as_ref()) else {
            return Err(Error::invalid(
                "this redis_restart plan has no command; make plans with its plan()",
            ));
        };
        if *command != self.command() {
            return Err(Error::invalid(
                "this redis_restart plan's command is not the configured one; plan again",
            ));
        }
        let started = Instant::now();
        let mut outcome = executor.run(command).await?;
        if !outcome.success || executor.dry_run() {
            return Ok(outcome);
        }
        let deadline = Instant::now() + self.ready_timeout;
        let mut last_error = String::new();
        loop {
            match self.handle.reconnect().await {
                Ok(generation) => {
                    append_note(
                        &mut outcome.stdout,
                        &format!(
                            "Redis answered PING; client reconnected (generation {generation})"
                        ),
                    );
                    info!(generation, "redis restarted and reconnected");
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    last_error = e.message().to_owned();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    if last_error.is_empty() {
                        last_error = e.message().to_owned();
                    }
                    outcome.success = false;
                    append_note(
                        &mut outcome.stderr,
                        &format!(
                            "Redis did not answer PING within {}s after the restart: {last_error}",
                            self.ready_timeout.as_secs()
                        ),
                    );
                    break;
                }
            }
        }
        outcome.duration = started.elapsed();
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DryRunExecutor;

    fn ctx() -> ActionContext {
        super::super::test_ctx("cache", Value::Null)
    }

    #[tokio::test]
    async fn restart_fills_the_argv_template_and_a_dry_run_only_records_it() {
        let handle = Arc::new(RedisHandle::open("redis://127.0.0.1:6390").unwrap());
        let restart = RestartRedis::new(
            handle,
            Command::new("redis-cli", ["-h", "{host}", "-p", "{port}", "shutdown"]),
        );
        let plan = restart.plan(&ctx()).await.unwrap();
        assert_eq!(
            plan.preview(),
            "redis-cli -h 127.0.0.1 -p 6390 shutdown\nwait until 127.0.0.1:6390 answers PING (at most 30s)\nreconnect the Redis client handle"
        );
        let dry = Arc::new(DryRunExecutor::new());
        let outcome = restart.execute(&plan, dry.clone()).await.unwrap();
        assert!(outcome.success);
        assert_eq!(
            dry.recorded()[0].args,
            ["-h", "127.0.0.1", "-p", "6390", "shutdown"]
        );
        assert!(restart.validate(&json!({"x": 1})).is_err());
    }
}
