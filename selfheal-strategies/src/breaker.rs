//! [`CircuitBreaker`]: a handle the host's code consults to pick an upstream or its
//! fallback, and [`OpenCircuit`] (`circuit_break`), the strategy that trips it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use selfheal_core::{
    ActionContext, ActionOutcome, Error, Executor, RemediationPlan, Result, Risk, Strategy,
};
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::info;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go to the primary upstream.
    Closed,
    /// Calls go to the fallback until the cool-off ends.
    Open,
    /// The cool-off ended: one trial call goes to the primary, the others to the
    /// fallback, until that trial is recorded.
    HalfOpen,
}

/// Which upstream a call should use, as [`CircuitBreaker::route`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// The primary upstream.
    Primary,
    /// The primary, as the half-open trial: record its outcome.
    Trial,
    /// The fallback.
    Fallback,
}

impl Route {
    /// Whether the call goes to the primary (plain or trial).
    pub fn is_primary(self) -> bool {
        !matches!(self, Route::Fallback)
    }
}

#[derive(Debug)]
struct Inner {
    state: Phase,
    trips: u64,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { trial_out: bool },
}

/// A circuit breaker the host's code consults before each call to an upstream (an LLM
/// provider, a payment API): [`route`](CircuitBreaker::route) says primary or fallback.
/// The [`OpenCircuit`] strategy opens it when the healer sees the upstream failing; after
/// the cool-off one trial call goes to the primary, and its recorded outcome closes the
/// breaker or opens it for another cool-off. Cheap to clone: clones share one state.
/// Time is tokio's, so tests can pause it.
///
/// ```
/// use std::time::Duration;
/// use selfheal_strategies::{BreakerState, CircuitBreaker, Route};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let openai = CircuitBreaker::new("openai", Duration::from_secs(300));
/// assert_eq!(openai.route(), Route::Primary);
/// openai.open("429 Too Many Requests");
/// assert_eq!(openai.state(), BreakerState::Open);
/// assert_eq!(openai.route(), Route::Fallback); // e.g. the local Ollama model
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    name: String,
    cool_off: Duration,
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("cool_off", &self.cool_off)
            .field("state", &self.state())
            .finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker named `name` that stays open for `cool_off` once opened.
    pub fn new(name: impl Into<String>, cool_off: Duration) -> Self {
        CircuitBreaker {
            name: name.into(),
            cool_off,
            inner: Arc::new(Mutex::new(Inner {
                state: Phase::Closed,
                trips: 0,
            })),
        }
    }

    /// Its name (what `circuit_break`'s `breaker` parameter names).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long it stays open.
    pub fn cool_off(&self) -> Duration {
        self.cool_off
    }

    /// How many times it was opened.
    pub fn trips(&self) -> u64 {
        self.lock().trips
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves an open breaker whose cool-off ended to half-open.
    fn settle(inner: &mut Inner) {
        if let Phase::Open { until } = inner.state
            && Instant::now() >= until
        {
            inner.state = Phase::HalfOpen { trial_out: false };
        }
    }

    /// Where it stands now.
    pub fn state(&self) -> BreakerState {
        let mut inner = self.lock();
        Self::settle(&mut inner);
        match inner.state {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Which upstream this call should use. Half-open, the first caller gets
    /// [`Route::Trial`] and must [`record`](CircuitBreaker::record) how it went; the
    /// others get the fallback meanwhile.
    pub fn route(&self) -> Route {
        let mut inner = self.lock();
        Self::settle(&mut inner);
        match &mut inner.state {
            Phase::Closed => Route::Primary,
            Phase::Open { .. } => Route::Fallback,
            Phase::HalfOpen { trial_out } if !*trial_out => {
                *trial_out = true;
                Route::Trial
            }
            Phase::HalfOpen { .. } => Route::Fallback,
        }
    }

    /// Records how a call to the primary went. Half-open: success closes the breaker,
    /// failure opens it for another cool-off. Closed or open: nothing changes (the
    /// healer, not single failures, decides when to open).
    pub fn record(&self, success: bool) {
        let mut inner = self.lock();
        Self::settle(&mut inner);
        if let Phase::HalfOpen { .. } = inner.state {
            if success {
                inner.state = Phase::Closed;
                info!(breaker = %self.name, "trial call succeeded: breaker closed");
            } else {
                inner.state = Phase::Open {
                    until: Instant::now() + self.cool_off,
                };
                inner.trips += 1;
                info!(breaker = %self.name, "trial call failed: breaker open again");
            }
        }
    }

    /// Opens it: calls go to the fallback for the cool-off.
    pub fn open(&self, reason: &str) {
        let mut inner = self.lock();
        inner.state = Phase::Open {
            until: Instant::now() + self.cool_off,
        };
        inner.trips += 1;
        info!(breaker = %self.name, reason, cool_off = ?self.cool_off, "breaker opened");
    }

    /// Closes it: calls go to the primary again.
    pub fn close(&self) {
        self.lock().state = Phase::Closed;
        info!(breaker = %self.name, "breaker closed");
    }
}

/// Opens a [`CircuitBreaker`] so the host's calls switch to their fallback
/// (`circuit_break`). Parameters: `{"breaker": "<name>"}` (optional with one breaker).
/// Plan risk low, reversible: rollback closes the breaker again. A dry-run executor
/// leaves the breaker as it is.
#[derive(Debug, Clone, Default)]
pub struct OpenCircuit {
    breakers: BTreeMap<String, CircuitBreaker>,
}

impl OpenCircuit {
    /// The strategy's name, which patterns bind fixes to.
    pub const NAME: &'static str = "circuit_break";

    /// A strategy with no breakers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets it open `breaker` (by its name).
    pub fn breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breakers.insert(breaker.name().to_owned(), breaker);
        self
    }

    fn pick(&self, params: &Value) -> Result<&CircuitBreaker> {
        let name = match params {
            Value::Null => None,
            Value::Object(map) => {
                if let Some(k) = map.keys().find(|k| k.as_str() != "breaker") {
                    return Err(Error::invalid(format!(
                        "circuit_break has no parameter `{k}`; it takes `breaker`"
                    )));
                }
                match map.get("breaker") {
                    None => None,
                    Some(Value::String(s)) => Some(s.as_str()),
                    Some(other) => {
                        return Err(Error::invalid(format!(
                            "`breaker` must be a breaker's name, got {other}"
                        )));
                    }
                }
            }
            other => {
                return Err(Error::invalid(format!(
                    "circuit_break takes {{\"breaker\": \"<name>\"}}, got {other}"
                )));
            }
        };
        let known = || self.breakers.keys().cloned().collect::<Vec<_>>().join(", ");
        match name {
            Some(n) => self.breakers.get(n).ok_or_else(|| {
                Error::invalid(format!("no breaker named `{n}`; registered: {}", known()))
            }),
            None if self.breakers.len() == 1 => Ok(self.breakers.values().next().expect("one")),
            None => Err(Error::invalid(format!(
                "say which breaker to open with `breaker`: one of {}",
                known()
            ))),
        }
    }
}

#[async_trait]
impl Strategy for OpenCircuit {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn validate(&self, params: &Value) -> Result<()> {
        self.pick(params).map(|_| ())
    }

    fn param_schema(&self) -> Value {
        json!({"type": "object", "properties": {"breaker": {"type": "string", "enum": self.breakers.keys().collect::<Vec<_>>()}}, "additionalProperties": false})
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        let breaker = self.pick(&ctx.params)?;
        let mut plan = RemediationPlan::new(Self::NAME, ctx.target.clone())
            .risk(Risk::Low)
            .step(format!(
                "open breaker `{}`: calls use the fallback for {}s, then one trial call tries the primary",
                breaker.name(),
                breaker.cool_off().as_secs()
            ));
        plan.reversible = true;
        plan.params = json!({"breaker": breaker.name()});
        Ok(plan)
    }

    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        let breaker = self.pick(&plan.params)?;
        if executor.dry_run() {
            return Ok(ActionOutcome {
                stdout: format!("dry run: would open breaker `{}`", breaker.name()),
                ..ActionOutcome::ok(Duration::ZERO)
            });
        }
        breaker.open(&format!("healer: incident on {}", plan.target));
        Ok(ActionOutcome {
            stdout: format!("breaker `{}` open\n", breaker.name()),
            ..ActionOutcome::ok(Duration::ZERO)
        })
    }

    async fn rollback(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<Option<ActionOutcome>> {
        let breaker = self.pick(&plan.params)?;
        if !executor.dry_run() {
            breaker.close();
        }
        Ok(Some(ActionOutcome {
            stdout: format!("breaker `{}` closed\n", breaker.name()),
            ..ActionOutcome::ok(Duration::ZERO)
        }))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use selfheal_core::{Incident, IncidentStatus, Severity, Uuid};

    use super::*;
    use crate::{DryRunExecutor, ProcessExecutor};

    fn ctx(params: Value) -> ActionContext {
        ActionContext {
            incident: Incident {
                stack: None,
                id: Uuid::new_v4(),
                target: "openai".into(),
                fingerprint: "0123456789abcdef".into(),
                template: "429".into(),
                related: Vec::new(),
                pattern: Some("llm_rate_limit_exceeded".into()),
                status: IncidentStatus::Open,
                severity: Severity::High,
                occurrences: 3,
                samples: Vec::new(),
                opened_at: Utc::now(),
                last_seen: Utc::now(),
                closed_at: None,
                reason: String::new(),
            },
            target: "openai".into(),
            params,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn open_then_half_open_after_the_cool_off_then_closed_by_a_good_trial() {
        let breaker = CircuitBreaker::new("openai", Duration::from_secs(300));
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.open("429");
        assert_eq!(breaker.route(), Route::Fallback);

        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.route(), Route::Fallback);

        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(breaker.route(), Route::Trial, "one trial call");
        assert_eq!(breaker.route(), Route::Fallback, "only one");
        breaker.record(true);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.route(), Route::Primary);
        assert_eq!(breaker.trips(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_opens_it_for_another_cool_off() {
        let breaker = CircuitBreaker::new("openai", Duration::from_secs(60));
        breaker.open("503");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(breaker.route(), Route::Trial);
        breaker.record(false);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.trips(), 2);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(breaker.route(), Route::Fallback);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(breaker.route(), Route::Trial);
        // Outcomes outside a trial change nothing.
        let closed = CircuitBreaker::new("x", Duration::from_secs(1));
        closed.record(false);
        assert_eq!(closed.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn the_strategy_opens_the_named_breaker_and_rollback_closes_it() {
        let openai = CircuitBreaker::new("openai", Duration::from_secs(300));
        let stripe = CircuitBreaker::new("stripe", Duration::from_secs(30));
        let strategy = OpenCircuit::new()
            .breaker(openai.clone())
            .breaker(stripe.clone());
        assert!(
            strategy.validate(&json!({})).is_err(),
            "two breakers: say which"
        );
        assert!(strategy.validate(&json!({"breaker": "nope"})).is_err());
        assert!(
            strategy
                .validate(&json!({"breaker": "openai", "x": 1}))
                .is_err()
        );

        let plan = strategy
            .plan(&ctx(json!({"breaker": "openai"})))
            .await
            .unwrap();
        assert!(plan.reversible);
        assert!(
            plan.preview().contains("open breaker `openai`"),
            "{}",
            plan.preview()
        );
        assert_eq!(
            openai.state(),
            BreakerState::Closed,
            "planning changes nothing"
        );

        strategy
            .execute(&plan, Arc::new(DryRunExecutor::new()))
            .await
            .unwrap();
        assert_eq!(
            openai.state(),
            BreakerState::Closed,
            "dry run changes nothing"
        );

        let executor: Arc<dyn Executor> = Arc::new(ProcessExecutor::new());
        strategy.execute(&plan, executor.clone()).await.unwrap();
        assert_eq!(openai.route(), Route::Fallback);
        assert_eq!(stripe.route(), Route::Primary);

        strategy.rollback(&plan, executor).await.unwrap().unwrap();
        assert_eq!(openai.route(), Route::Primary);
    }
}
