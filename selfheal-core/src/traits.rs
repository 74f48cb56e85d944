//! The plug-in traits. Async ones are dyn-first (`Arc<dyn Strategy>`); the
//! fingerprinter is synchronous because it is the hot path.
//!
//! With the `test-util` feature each trait has a `mockall` mock (`MockStrategy`, …).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::{
    ActionOutcome, Backup, Command, Diagnosis, Fingerprint, Health, Incident, RemediationPlan,
    Result, Signal,
};

/// Turns a signal into a stable fingerprint. Synchronous: called once per signal.
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
pub trait Fingerprinter: Send + Sync + Debug + 'static {
    /// A short name for diagnostics.
    fn name(&self) -> &str;
    /// The fingerprint of `signal`.
    fn fingerprint(&self, signal: &Signal) -> Fingerprint;
}

/// Context handed to a strategy when it plans.
#[derive(Debug, Clone)]
pub struct ActionContext {
    /// The incident being healed.
    pub incident: Incident,
    /// The target acted on.
    pub target: String,
    /// The fix's parameters.
    pub params: serde_json::Value,
}

/// Whether a fix can work in the current state: the answer of
/// [`Strategy::applicable`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Applicability {
    /// It can work: the healer decides on it, plans it and (after any approval) runs it.
    Applicable,
    /// It cannot work now, for the reason given ("the server has no free connection
    /// slot", "no idle session to terminate"). The healer skips it with an event and an
    /// audit record, asks no one about it, and goes on to the next fix.
    NotApplicable(String),
}

impl Applicability {
    /// Not applicable, because of `reason`.
    pub fn not_applicable(reason: impl Into<String>) -> Self {
        Applicability::NotApplicable(reason.into())
    }

    /// Whether the fix can work.
    pub fn is_applicable(&self) -> bool {
        matches!(self, Applicability::Applicable)
    }
}

/// A way to fix something: plan first, then execute, optionally roll back.
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait Strategy: Send + Sync + Debug + 'static {
    /// The name patterns bind fixes to.
    fn name(&self) -> &str;

    /// Whether it loses data or capacity: destructive strategies wait for approval
    /// unless the configuration says otherwise.
    fn destructive(&self) -> bool {
        false
    }

    /// Whether it only works while its target is reachable (a reconnect, a pool reset):
    /// the healer then waits for the target's probe to pass before it runs it (up to
    /// `verification.target_wait`, polling with back-off) and runs it as soon as the
    /// target is back. Default: `false`, run at once.
    fn needs_target(&self) -> bool {
        false
    }

    /// Whether every effect of `execute` goes through the [`Executor`] it is handed, so
    /// that in a dry run the recording executor keeps anything from happening. Only
    /// then does a dry run call `execute`; for any other strategy (one that talks to a
    /// server or an API itself) a dry run records the plan and never calls it.
    /// Default: `false`.
    fn dry_run_safe(&self) -> bool {
        false
    }

    /// Checks parameters before anything is planned.
    fn validate(&self, _params: &serde_json::Value) -> Result<()> {
        Ok(())
    }

    /// A JSON Schema of the parameters, shown to advisors so they suggest valid ones.
    /// [`validate`](Strategy::validate) stays the authority. Default: any object.
    fn param_schema(&self) -> serde_json::Value {
        serde_json::json!({"type": "object"})
    }

    /// Whether the fix can work in the current state, asked before the healer decides
    /// on it: a fix that cannot work is never suggested to a human nor run. It reads
    /// state and changes nothing. `Err` means the state could not be read; the healer
    /// then skips the fix as well, with the error as the reason. Default: applicable.
    async fn applicable(&self, _ctx: &ActionContext) -> Result<Applicability> {
        Ok(Applicability::Applicable)
    }

    /// What it would do, with risk and a preview of every command. Changes nothing.
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan>;

    /// Carries out `plan`, running its commands through `executor` (shared, so a
    /// strategy may hand it to tasks of its own).
    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome>;

    /// Undoes `plan` when it did not heal. `Ok(None)` means it cannot be undone.
    async fn rollback(
        &self,
        _plan: &RemediationPlan,
        _executor: Arc<dyn Executor>,
    ) -> Result<Option<ActionOutcome>> {
        Ok(None)
    }

    /// The backups it took before changing something, newest first (listed by
    /// `Admin::backups`). Default: a strategy that takes none.
    async fn backups(&self) -> Result<Vec<Backup>> {
        Ok(Vec::new())
    }

    /// Puts backup `id` back in place and returns it, updated; `Ok(None)` when the
    /// backup is not one of this strategy's. Default: a strategy that takes none.
    async fn restore_backup(&self, _id: Uuid) -> Result<Option<Backup>> {
        Ok(None)
    }
}

/// Runs commands (argument vectors, never shell strings).
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait Executor: Send + Sync + Debug + 'static {
    /// A short name for diagnostics.
    fn name(&self) -> &str;
    /// Whether this executor only records commands instead of running them. Strategies
    /// use it to skip waiting for effects that cannot happen (a respawn, a reconnect).
    fn dry_run(&self) -> bool {
        false
    }
    /// Runs `command` and reports what happened. A non-zero exit is an `Ok` outcome
    /// with `success: false`; `Err` means it could not be run at all.
    async fn run(&self, command: &Command) -> Result<ActionOutcome>;
}

/// Measures a target's health.
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait Verifier: Send + Sync + Debug + 'static {
    /// A short name for diagnostics.
    fn name(&self) -> &str;
    /// The current health: a usage score and the verdict
    /// ([`Health::passed`](crate::Health::passed)) on whether the target works, which is
    /// what verification judges. A target that cannot be reached is `Ok` with score 0,
    /// failed; `Err` is for a verifier that could not check at all (it counts as failed).
    async fn check(&self) -> Result<Health>;
    /// For a text with more than one cause ([`Pattern::ambiguous`](crate::Pattern::ambiguous)):
    /// the name of the pattern the target's present state points to (for Postgres:
    /// `postgres_unavailable` when it cannot be reached, `postgres_too_many_clients`
    /// when it refuses connections for slots), or `None` when the probe sees nothing
    /// that explains the text, so the text's own pattern stands. The default knows
    /// nothing and says `None`.
    async fn diagnose(&self) -> Result<Option<String>> {
        Ok(None)
    }
}

/// What an advisor is told about an incident no pattern explained. The incident
/// carries the template, the sample messages, the frequency and the target; advisors
/// redact what they send out of the process.
#[derive(Debug, Clone)]
pub struct AdviceRequest {
    /// The incident.
    pub incident: Incident,
    /// The names of the registered strategies it may suggest.
    pub strategies: Vec<String>,
    /// The JSON Schema of each registered strategy's parameters, by name.
    pub param_schemas: BTreeMap<String, serde_json::Value>,
    /// In-app frames of the stack trace, when one is known.
    pub stack_signature: Option<String>,
    /// A snapshot of the target's metrics, when the host provides one (`Null` if not).
    pub metrics: serde_json::Value,
}

impl AdviceRequest {
    /// A request about `incident` that may suggest one of `strategies`, with the
    /// incident's stack signature (no schemas, no metrics).
    pub fn new(incident: Incident, strategies: Vec<String>) -> Self {
        AdviceRequest {
            stack_signature: incident.stack.clone(),
            incident,
            strategies,
            param_schemas: BTreeMap::new(),
            metrics: serde_json::Value::Null,
        }
    }
}

/// Suggests a root cause and a registered strategy for unknown incidents. Advice only.
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait LlmAdvisor: Send + Sync + Debug + 'static {
    /// A short name for diagnostics.
    fn name(&self) -> &str;
    /// A diagnosis of `request`.
    async fn advise(&self, request: &AdviceRequest) -> Result<Diagnosis>;
}

/// What a notifier is told.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Short title.
    pub title: String,
    /// The body.
    pub body: String,
    /// The incident, if any.
    pub incident: Option<Uuid>,
    /// The audit event type behind it (`self_heal.escalated`, …).
    pub event_type: String,
    /// Links a person can follow: Approve / Reject for a fix that waits for approval,
    /// when the healer knows its admin router's public URL
    /// ([`HealerBuilder::approval_links`](crate::HealerBuilder::approval_links)).
    pub links: Vec<NotificationLink>,
}

/// A link in a notification (ntfy shows it as an action button).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NotificationLink {
    /// The button's label (`Approve`, `Reject`).
    pub label: String,
    /// Where it goes.
    pub url: String,
}

/// Tells humans (ntfy, webhooks, chat).
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait Notifier: Send + Sync + Debug + 'static {
    /// A short name for diagnostics.
    fn name(&self) -> &str;
    /// Sends `notification`.
    async fn notify(&self, notification: &Notification) -> Result<()>;
}
