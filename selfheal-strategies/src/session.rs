//! [`SessionControl`], the small trait a host implements over its own sessions (chat
//! conversations, SSE streams, agent runs), and [`KillRunawaySessions`]
//! (`kill_runaway_sessions`), the strategy that ends those over time or cost limits.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use selfheal_core::{
    ActionContext, ActionOutcome, Error, ErrorKind, Executor, RemediationPlan, Result, Risk,
    Strategy,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{info, warn};

/// One live session, as the host reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The host's id for it.
    pub id: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// What it has cost so far, in the host's unit (dollars, tokens).
    pub cost: f64,
    /// Who it belongs to, for the audit trail (optional).
    pub owner: Option<String>,
}

/// The host's sessions: list them, end one. Implement it over whatever holds them.
///
/// With the `test-util` feature it has a `mockall` mock, `MockSessionControl`.
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait SessionControl: Send + Sync + fmt::Debug + 'static {
    /// The live sessions.
    async fn sessions(&self) -> Result<Vec<SessionInfo>>;
    /// Ends session `id`, telling its owner `reason`. `NotFound` if it already ended.
    async fn kill(&self, id: &str, reason: &str) -> Result<()>;
}

/// Ends sessions that run longer than `max_age` or cost more than `max_cost`
/// (`kill_runaway_sessions`).
///
/// Parameters (all optional): `{"max_age": "30m", "max_cost": 5.0}` may tighten the
/// configured limits, never loosen them. At most `max_kills` (default 10) sessions
/// end per run, the worst first, so one bad reading never ends everything.
///
/// - **Plan**: risk medium; lists the sessions over a limit now, one step each (`end
///   session abc: running 45m > 30m`). Planning ends nothing.
/// - **Execute**: ends the planned sessions through [`SessionControl::kill`]; one that
///   already ended counts as done. With a dry-run executor nothing is ended.
/// - **Rollback**: none (an ended session cannot be resumed).
#[derive(Clone)]
pub struct KillRunawaySessions {
    control: Arc<dyn SessionControl>,
    max_age: Option<Duration>,
    max_cost: Option<f64>,
    max_kills: usize,
}

impl fmt::Debug for KillRunawaySessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KillRunawaySessions")
            .field("control", &self.control)
            .field("max_age", &self.max_age)
            .field("max_cost", &self.max_cost)
            .field("max_kills", &self.max_kills)
            .finish()
    }
}

/// Limits in force for one run.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_age: Option<Duration>,
    max_cost: Option<f64>,
}

impl KillRunawaySessions {
    /// The strategy's name, which patterns bind fixes to.
    pub const NAME: &'static str = "kill_runaway_sessions";

    /// Ends runaway sessions of `control`. Set at least one limit.
    pub fn new(control: Arc<dyn SessionControl>) -> Self {
        KillRunawaySessions {
            control,
            max_age: None,
            max_cost: None,
            max_kills: 10,
        }
    }

    /// Sessions running longer than this are runaway.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Sessions that cost more than this are runaway.
    pub fn max_cost(mut self, max_cost: f64) -> Self {
        self.max_cost = Some(max_cost);
        self
    }

    /// At most this many sessions end per run (default 10).
    pub fn max_kills(mut self, max_kills: usize) -> Self {
        self.max_kills = max_kills;
        self
    }

    fn limits(&self, params: &Value) -> Result<Limits> {
        let map = match params {
            Value::Null => serde_json::Map::new(),
            Value::Object(map) => map.clone(),
            other => {
                return Err(Error::invalid(format!(
                    "kill_runaway_sessions takes an object, got {other}"
                )));
            }
        };
        if let Some(k) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "max_age" | "max_cost"))
        {
            return Err(Error::invalid(format!(
                "kill_runaway_sessions has no parameter `{k}`; it takes `max_age` and `max_cost`"
            )));
        }
        let mut limits = Limits {
            max_age: self.max_age,
            max_cost: self.max_cost,
        };
        if let Some(v) = map.get("max_age") {
            let text = v
                .as_str()
                .ok_or_else(|| Error::invalid("`max_age` must be a duration such as \"30m\""))?;
            let age = parse_duration(text)?;
            limits.max_age = Some(limits.max_age.map_or(age, |m| m.min(age)));
        }
        if let Some(v) = map.get("max_cost") {
            let cost = v
                .as_f64()
                .filter(|c| c.is_finite() && *c >= 0.0)
                .ok_or_else(|| Error::invalid("`max_cost` must be a non-negative number"))?;
            limits.max_cost = Some(limits.max_cost.map_or(cost, |m| m.min(cost)));
        }
        if limits.max_age.is_none() && limits.max_cost.is_none() {
            return Err(Error::invalid(
                "kill_runaway_sessions has no limit; set max_age or max_cost on the strategy or in the fix's params",
            ));
        }
        Ok(limits)
    }

    /// The sessions over `limits` now, worst first, with why.
    async fn runaways(&self, limits: Limits) -> Result<Vec<(SessionInfo, String)>> {
        let now = Utc::now();
        let mut over: Vec<(SessionInfo, String, f64)> = Vec::new();
        for s in self.control.sessions().await? {
            let age = (now - s.started_at).to_std().unwrap_or_default();
            let mut why = Vec::new();
            let mut badness = 0.0;
            if let Some(max) = limits.max_age
                && age > max
            {
                why.push(format!("running {} > {}", human(age), human(max)));
                badness += age.as_secs_f64() / max.as_secs_f64().max(1.0);
            }
            if let Some(max) = limits.max_cost
                && s.cost > max
            {
                why.push(format!("cost {} > {max}", s.cost));
                badness += s.cost / max.max(f64::EPSILON);
            }
            if !why.is_empty() {
                over.push((s, why.join(", "), badness));
            }
        }
        over.sort_by(|a, b| b.2.total_cmp(&a.2));
        Ok(over.into_iter().map(|(s, why, _)| (s, why)).collect())
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// `30s`, `15m`, `2h`.
fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (num, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = num.parse().map_err(|_| {
        Error::invalid(format!(
            "invalid duration `{text}`; use e.g. 90s, 30m or 2h"
        ))
    })?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => {
            return Err(Error::invalid(format!(
                "invalid duration `{text}`; use e.g. 90s, 30m or 2h"
            )));
        }
    };
    Ok(Duration::from_secs(secs))
}

#[async_trait]
impl Strategy for KillRunawaySessions {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn validate(&self, params: &Value) -> Result<()> {
        self.limits(params).map(|_| ())
    }

    fn param_schema(&self) -> Value {
        json!({"type": "object", "properties": {
            "max_age": {"type": "string", "description": "e.g. 30m; only tightens the configured limit"},
            "max_cost": {"type": "number", "minimum": 0}
        }, "additionalProperties": false})
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        let limits = self.limits(&ctx.params)?;
        let runaways = self.runaways(limits).await?;
        let mut plan = RemediationPlan::new(Self::NAME, ctx.target.clone()).risk(Risk::Medium);
        let total = runaways.len();
        let mut ids = Vec::new();
        for (s, why) in runaways.into_iter().take(self.max_kills) {
            plan = plan.step(format!("end session {}: {why}", s.id));
            ids.push(s.id);
        }
        if total > ids.len() {
            plan = plan.step(format!(
                "leave {} more runaway sessions for the next run (at most {} per run)",
                total - ids.len(),
                self.max_kills
            ));
        }
        if ids.is_empty() {
            plan = plan.step("no session is over the limits: nothing to end");
        }
        plan.params = json!({"limits": ctx.params, "sessions": ids});
        Ok(plan)
    }

    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        let started = Instant::now();
        let ids: Vec<String> = plan
            .params
            .get("sessions")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                Error::invalid("the plan lists no sessions; make it with KillRunawaySessions::plan")
            })?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        if executor.dry_run() {
            return Ok(ActionOutcome {
                stdout: format!("dry run: would end sessions {}", ids.join(", ")),
                ..ActionOutcome::ok(started.elapsed())
            });
        }
        let mut outcome = ActionOutcome::ok(Duration::ZERO);
        for id in &ids {
            match self
                .control
                .kill(id, "ended by selfheal: over the session limits")
                .await
            {
                Ok(()) => {
                    info!(session = %id, "runaway session ended");
                    outcome.stdout.push_str(&format!("ended session {id}\n"));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    outcome
                        .stdout
                        .push_str(&format!("session {id} had already ended\n"));
                }
                Err(e) => {
                    warn!(session = %id, error = %e, "could not end session");
                    outcome.stderr.push_str(&format!("session {id}: {e}\n"));
                    outcome.success = false;
                }
            }
        }
        outcome.duration = started.elapsed();
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use selfheal_core::{Incident, IncidentStatus, Severity, Uuid};

    use super::*;
    use crate::{DryRunExecutor, ProcessExecutor};

    #[derive(Debug, Default)]
    struct Sessions {
        live: Mutex<Vec<SessionInfo>>,
        killed: Mutex<Vec<String>>,
    }

    impl Sessions {
        fn with(sessions: &[(&str, i64, f64)]) -> Arc<Self> {
            let now = Utc::now();
            Arc::new(Sessions {
                live: Mutex::new(
                    sessions
                        .iter()
                        .map(|(id, mins, cost)| SessionInfo {
                            id: (*id).into(),
                            started_at: now - chrono::Duration::minutes(*mins),
                            cost: *cost,
                            owner: None,
                        })
                        .collect(),
                ),
                killed: Mutex::default(),
            })
        }
        fn killed(&self) -> Vec<String> {
            self.killed.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl SessionControl for Sessions {
        async fn sessions(&self) -> Result<Vec<SessionInfo>> {
            Ok(self.live.lock().unwrap().clone())
        }
        async fn kill(&self, id: &str, _reason: &str) -> Result<()> {
            let mut live = self.live.lock().unwrap();
            let before = live.len();
            live.retain(|s| s.id != id);
            if live.len() == before {
                return Err(Error::not_found(format!("no session {id}")));
            }
            self.killed.lock().unwrap().push(id.to_owned());
            Ok(())
        }
    }

    fn ctx(params: Value) -> ActionContext {
        ActionContext {
            incident: Incident {
                stack: None,
                id: Uuid::new_v4(),
                target: "chat".into(),
                fingerprint: "0123456789abcdef".into(),
                template: "session over budget".into(),
                related: Vec::new(),
                pattern: Some("session_runaway".into()),
                status: IncidentStatus::Open,
                severity: Severity::High,
                occurrences: 3,
                samples: Vec::new(),
                opened_at: Utc::now(),
                last_seen: Utc::now(),
                closed_at: None,
                reason: String::new(),
            },
            target: "chat".into(),
            params,
        }
    }

    #[tokio::test]
    async fn ends_only_the_sessions_over_time_or_cost_worst_first() {
        let sessions = Sessions::with(&[
            ("fine", 5, 0.5),
            ("old", 45, 0.1),
            ("pricey", 1, 9.0),
            ("both", 90, 20.0),
        ]);
        let strategy = KillRunawaySessions::new(sessions.clone())
            .max_age(Duration::from_secs(30 * 60))
            .max_cost(5.0);
        let plan = strategy.plan(&ctx(Value::Null)).await.unwrap();
        assert_eq!(
            plan.preview(),
            "end session both: running 1h30m > 30m, cost 20 > 5\nend session pricey: cost 9 > 5\nend session old: running 45m > 30m"
        );
        assert!(sessions.killed().is_empty(), "planning ends nothing");

        let outcome = strategy
            .execute(&plan, Arc::new(ProcessExecutor::new()))
            .await
            .unwrap();
        assert!(outcome.success);
        assert_eq!(sessions.killed(), ["both", "pricey", "old"]);
        let left = sessions.sessions().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, "fine");
    }

    #[tokio::test]
    async fn params_tighten_never_loosen_and_kills_are_capped() {
        let sessions = Sessions::with(&[("a", 20, 0.0), ("b", 25, 0.0), ("c", 40, 0.0)]);
        let strategy = KillRunawaySessions::new(sessions.clone())
            .max_age(Duration::from_secs(30 * 60))
            .max_kills(1);
        let loose = strategy.plan(&ctx(json!({"max_age": "2h"}))).await.unwrap();
        assert_eq!(loose.steps.len(), 1, "{}", loose.preview());
        assert!(loose.preview().starts_with("end session c"));
        let tight = strategy
            .plan(&ctx(json!({"max_age": "15m"})))
            .await
            .unwrap();
        assert_eq!(
            tight.preview(),
            "end session c: running 40m > 15m\nleave 2 more runaway sessions for the next run (at most 1 per run)"
        );
        for bad in [
            json!({"max_age": 5}),
            json!({"max_age": "soon"}),
            json!({"max_cost": -1}),
            json!({"pid": 1}),
        ] {
            assert!(strategy.validate(&bad).is_err(), "{bad}");
        }
        assert!(
            KillRunawaySessions::new(sessions)
                .validate(&Value::Null)
                .is_err(),
            "no limit"
        );
    }

    #[tokio::test]
    async fn a_kill_that_fails_fails_the_action_with_the_reason() {
        let mut control = MockSessionControl::new();
        control.expect_sessions().returning(|| {
            Ok(vec![SessionInfo {
                id: "s1".into(),
                started_at: Utc::now() - chrono::Duration::hours(2),
                cost: 0.0,
                owner: Some("bob".into()),
            }])
        });
        control
            .expect_kill()
            .withf(|id, reason| id == "s1" && reason.contains("over the session limits"))
            .times(1)
            .returning(|_, _| Err(Error::new(ErrorKind::Unavailable, "session store down")));
        let strategy = KillRunawaySessions::new(Arc::new(control)).max_age(Duration::from_secs(60));
        let plan = strategy.plan(&ctx(Value::Null)).await.unwrap();
        let outcome = strategy
            .execute(&plan, Arc::new(ProcessExecutor::new()))
            .await
            .unwrap();
        assert!(!outcome.success);
        assert!(
            outcome.stderr.contains("session store down"),
            "{}",
            outcome.stderr
        );
    }

    #[tokio::test]
    async fn a_dry_run_ends_nothing_and_an_ended_session_is_no_failure() {
        let sessions = Sessions::with(&[("old", 45, 0.0)]);
        let strategy = KillRunawaySessions::new(sessions.clone()).max_age(Duration::from_secs(60));
        let plan = strategy.plan(&ctx(Value::Null)).await.unwrap();
        strategy
            .execute(&plan, Arc::new(DryRunExecutor::new()))
            .await
            .unwrap();
        assert!(sessions.killed().is_empty());
        sessions.kill("old", "by hand").await.unwrap();
        let outcome = strategy
            .execute(&plan, Arc::new(ProcessExecutor::new()))
            .await
            .unwrap();
        assert!(outcome.success);
        assert!(
            outcome.stdout.contains("had already ended"),
            "{}",
            outcome.stdout
        );
    }
}
