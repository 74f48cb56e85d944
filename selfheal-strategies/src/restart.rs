//! [`RestartProcess`]: restarts a process owned by a [`ChildSupervisor`].

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use selfheal_core::{
    ActionContext, ActionOutcome, Command, Error, ErrorKind, Executor, RemediationPlan, Result,
    Risk, Strategy,
};
use serde_json::Value;
use tracing::{info, instrument, warn};

use crate::executor::append_note;
use crate::supervisor::ChildSupervisor;

/// Restarts a supervised process: `kill -TERM <pid>` through the healer's executor,
/// then the [`ChildSupervisor`] respawns the same argument vector.
///
/// - **Plan**: risk [`Risk::Medium`] (the service is briefly down), two steps: the
///   command `kill -TERM <pid>` of the process running when planned, and
///   ``respawn `<argv>` ``. Fails with [`ErrorKind::Unavailable`] (retryable) while no
///   process runs because a respawn is pending.
/// - **Execute**: refuses ([`ErrorKind::Conflict`]) a plan whose pid is no longer the
///   supervised process (it restarted since, and the pid may now belong to anything);
///   runs the kill command through the executor; waits for the supervisor to respawn
///   the process (a new pid), SIGKILLing it if it ignored SIGTERM for the supervisor's
///   grace period. The outcome carries the kill command's exit code and output plus a
///   `[selfheal: restarted …: pid A → B]` note, and the time the whole restart took.
///   A kill that fails is returned as the failed outcome it is. When the executor is a
///   dry run ([`Executor::dry_run`], as with [`DryRunExecutor`](crate::DryRunExecutor))
///   there is nothing to wait for, and its outcome is returned as it is.
/// - **Rollback**: none (a restart cannot be undone).
/// - **Parameters**: none; `null` or `{}`.
#[derive(Debug, Clone)]
pub struct RestartProcess {
    service: String,
    supervisor: Arc<ChildSupervisor>,
}

impl RestartProcess {
    /// The strategy's name, which patterns bind fixes to.
    pub const NAME: &'static str = "restart_process";

    /// Restarts the process of `service` (a name for messages and logs) that
    /// `supervisor` owns.
    pub fn new(service: impl Into<String>, supervisor: Arc<ChildSupervisor>) -> Self {
        RestartProcess {
            service: service.into(),
            supervisor,
        }
    }

    /// The supervised service's name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The supervisor whose process it restarts.
    pub fn supervisor(&self) -> &Arc<ChildSupervisor> {
        &self.supervisor
    }
}

/// The pid in a `kill -TERM <pid>` command.
fn planned_pid(command: &Command) -> Option<u32> {
    match (command.program.as_str(), command.args.as_slice()) {
        ("kill", [signal, pid]) if signal == "-TERM" => pid.parse().ok(),
        _ => None,
    }
}

#[async_trait]
impl Strategy for RestartProcess {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn validate(&self, params: &Value) -> Result<()> {
        match params {
            Value::Null => Ok(()),
            Value::Object(map) if map.is_empty() => Ok(()),
            Value::Object(map) => {
                let keys = map
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(Error::invalid(format!(
                    "restart_process takes no parameters but got {keys}; remove them (the process and its argument vector come from the ChildSupervisor)"
                )))
            }
            other => Err(Error::invalid(format!(
                "restart_process takes no parameters: expected null or {{}}, got {}",
                match other {
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::String(_) => "a string",
                    _ => "an array",
                }
            ))),
        }
    }

    #[instrument(skip_all, fields(service = %self.service, target = %ctx.target), err)]
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        self.validate(&ctx.params)?;
        let Some(kill) = self.supervisor.term_command() else {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "service `{}` has no running process right now (a respawn is pending); plan again once it is up",
                    self.service
                ),
            ));
        };
        let mut plan = RemediationPlan::new(Self::NAME, ctx.target.clone())
            .risk(Risk::Medium)
            .command(kill)
            .step(format!("respawn `{}`", self.supervisor.command().preview()));
        plan.params = ctx.params.clone();
        Ok(plan)
    }

    #[instrument(skip_all, fields(service = %self.service, target = %plan.target), err)]
    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        if plan.strategy != Self::NAME {
            return Err(Error::invalid(format!(
                "this plan belongs to strategy `{}`, not `{}`",
                plan.strategy,
                Self::NAME
            )));
        }
        let (kill, pid) = plan
            .steps
            .iter()
            .filter_map(|step| step.command.as_ref())
            .find_map(|command| planned_pid(command).map(|pid| (command, pid)))
            .ok_or_else(|| {
                Error::invalid(
                    "the plan has no `kill -TERM <pid>` step; make it with RestartProcess::plan",
                )
            })?;
        let state = self.supervisor.state();
        if state.pid != Some(pid) {
            let now = state
                .pid
                .map_or_else(|| "no process".to_owned(), |p| format!("pid {p}"));
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "service `{}` runs as {now} now, not pid {pid} as planned: it restarted since the plan was made; plan again",
                    self.service
                ),
            ));
        }

        let started = Instant::now();
        let mut outcome = executor.run(kill).await?;
        if !outcome.success {
            warn!(pid, exit_code = ?outcome.exit_code, "`kill -TERM` failed");
            outcome.duration = started.elapsed();
            return Ok(outcome);
        }
        if executor.dry_run() {
            info!(
                executor = executor.name(),
                "the executor ran no process (dry run): not waiting for a respawn"
            );
            return Ok(outcome);
        }
        match self.supervisor.await_restart(state.generation).await {
            Ok(respawned) => {
                let forced = if respawned.forced {
                    " (SIGKILL after it ignored SIGTERM)"
                } else {
                    ""
                };
                append_note(
                    &mut outcome.stdout,
                    &format!(
                        "restarted `{}`: pid {pid} → {}{forced}",
                        self.service, respawned.pid
                    ),
                );
                info!(
                    old_pid = pid,
                    new_pid = respawned.pid,
                    forced = respawned.forced,
                    "process restarted"
                );
                outcome.success = true;
            }
            Err(e) if e.kind() == ErrorKind::Timeout => {
                append_note(&mut outcome.stderr, e.message());
                outcome.success = false;
            }
            Err(e) => return Err(e),
        }
        outcome.duration = started.elapsed();
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use selfheal_core::{Incident, IncidentStatus, Severity};
    use serde_json::json;
    use tokio::sync::mpsc;
    use uuid::Uuid;

    use super::*;
    use crate::{DryRunExecutor, ProcessExecutor};

    fn ctx(params: Value) -> ActionContext {
        ActionContext {
            incident: Incident {
                id: Uuid::new_v4(),
                target: "worker".into(),
                fingerprint: "0123456789abcdef".into(),
                template: "worker stalled for <NUM>s".into(),
                stack: None,
                related: Vec::new(),
                pattern: Some("worker_stalled".into()),
                status: IncidentStatus::Open,
                severity: Severity::High,
                occurrences: 3,
                samples: vec!["worker stalled for 30s".into()],
                opened_at: Utc::now(),
                last_seen: Utc::now(),
                closed_at: None,
                reason: String::new(),
            },
            target: "worker".into(),
            params,
        }
    }

    fn supervised() -> (Arc<ChildSupervisor>, mpsc::Receiver<String>) {
        let (supervisor, lines) =
            ChildSupervisor::builder("sh", ["-c", "echo ready; exec sleep 30"])
                .respawn_delay(Duration::ZERO)
                .grace_period(Duration::from_secs(3))
                .spawn()
                .unwrap();
        (Arc::new(supervisor), lines)
    }

    async fn next_line(lines: &mut mpsc::Receiver<String>) -> String {
        tokio::time::timeout(Duration::from_secs(10), lines.recv())
            .await
            .expect("a line within 10 s")
            .expect("channel open")
    }

    #[tokio::test]
    async fn plan_kills_the_current_pid_and_previews_the_respawn() {
        let (supervisor, _lines) = supervised();
        let strategy = RestartProcess::new("worker", Arc::clone(&supervisor));
        let pid = supervisor.pid().unwrap();

        let plan = strategy.plan(&ctx(Value::Null)).await.unwrap();

        assert_eq!(strategy.name(), "restart_process");
        assert!(!strategy.destructive());
        assert_eq!(plan.strategy, "restart_process");
        assert_eq!(plan.target, "worker");
        assert_eq!(plan.risk, Risk::Medium);
        assert!(!plan.reversible);
        assert_eq!(plan.steps.len(), 2);
        let kill = plan.steps[0].command.as_ref().expect("a command step");
        assert_eq!(kill.program, "kill");
        assert_eq!(kill.args, vec!["-TERM".to_owned(), pid.to_string()]);
        assert_eq!(plan.steps[1].command, None);
        assert_eq!(
            plan.preview(),
            format!("kill -TERM {pid}\nrespawn `sh -c 'echo ready; exec sleep 30'`")
        );
        assert_eq!(supervisor.pid(), Some(pid), "planning changes nothing");
        supervisor.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn execute_kills_through_the_executor_and_waits_for_the_respawn() {
        let (supervisor, mut lines) = supervised();
        assert_eq!(next_line(&mut lines).await, "ready");
        let strategy = RestartProcess::new("worker", Arc::clone(&supervisor));
        let old = supervisor.pid().unwrap();
        let plan = strategy.plan(&ctx(json!({}))).await.unwrap();

        let outcome = strategy
            .execute(&plan, Arc::new(ProcessExecutor::new()))
            .await
            .unwrap();

        let new = supervisor.pid().expect("respawned");
        assert!(outcome.success, "{outcome:?}");
        assert_eq!(outcome.exit_code, Some(0));
        assert_ne!(new, old);
        assert_eq!(supervisor.restarts(), 1);
        assert!(
            outcome.stdout.ends_with(&format!(
                "[selfheal: restarted `worker`: pid {old} → {new}]"
            )),
            "{}",
            outcome.stdout
        );
        assert!(outcome.duration > Duration::ZERO);
        assert_eq!(
            next_line(&mut lines).await,
            "ready",
            "the new child streams into the same channel"
        );
        assert_eq!(
            strategy
                .rollback(&plan, Arc::new(ProcessExecutor::new()))
                .await
                .unwrap(),
            None
        );
        supervisor.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn dry_run_records_the_kill_and_restarts_nothing() {
        let (supervisor, _lines) = supervised();
        let strategy = RestartProcess::new("worker", Arc::clone(&supervisor));
        let pid = supervisor.pid().unwrap();
        let plan = strategy.plan(&ctx(Value::Null)).await.unwrap();
        let executor = Arc::new(DryRunExecutor::new());

        let outcome = strategy.execute(&plan, executor.clone()).await.unwrap();

        assert!(outcome.success);
        assert_eq!(
            executor.recorded(),
            vec![plan.steps[0].command.clone().unwrap()]
        );
        assert_eq!(supervisor.pid(), Some(pid));
        assert_eq!(supervisor.restarts(), 0);
        supervisor.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_stale_plan_is_refused_after_the_process_restarted() {
        let (supervisor, _lines) = supervised();
        let strategy = RestartProcess::new("worker", Arc::clone(&supervisor));
        let plan = strategy.plan(&ctx(Value::Null)).await.unwrap();
        let new = supervisor.restart().await.unwrap();
        let executor = Arc::new(DryRunExecutor::new());

        let err = strategy.execute(&plan, executor.clone()).await.unwrap_err();

        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(
            err.message().contains(&format!("runs as pid {new} now")),
            "{err}"
        );
        assert!(executor.recorded().is_empty(), "nothing was run");
        supervisor.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_plan_of_another_strategy_is_refused() {
        let (supervisor, _lines) = supervised();
        let strategy = RestartProcess::new("worker", Arc::clone(&supervisor));
        let plan = RemediationPlan::new("clear_cache", "worker")
            .command(Command::new("kill", ["-TERM", "1"]));
        let err = strategy
            .execute(&plan, Arc::new(DryRunExecutor::new()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let plan = RemediationPlan::new("restart_process", "worker").step("nothing to run");
        let err = strategy
            .execute(&plan, Arc::new(DryRunExecutor::new()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("kill -TERM <pid>"), "{err}");
        supervisor.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn validate_accepts_only_null_or_an_empty_object() {
        let (supervisor, _lines) = supervised();
        let strategy = RestartProcess::new("worker", Arc::clone(&supervisor));
        strategy.validate(&Value::Null).unwrap();
        strategy.validate(&json!({})).unwrap();

        let err = strategy.validate(&json!({"signal": "KILL"})).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(
            err.message()
                .contains("takes no parameters but got `signal`"),
            "{err}"
        );
        for bad in [json!([]), json!("x"), json!(1), json!(true)] {
            let err = strategy.validate(&bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(err.message().contains("expected null or {}"), "{err}");
        }
        let err = strategy
            .plan(&ctx(json!({"signal": "KILL"})))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "plan validates too");
        supervisor.shutdown().await.unwrap();
    }
}
