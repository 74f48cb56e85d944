//! The plug-in traits. Async ones are dyn-first (`Arc<dyn Strategy>`); the
//! fingerprinter is synchronous because it is the hot path.
//!
//! With the `test-util` feature each trait has a `mockall` mock (`MockStrategy`, …).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::fleet::{LeaseGrant, SharedCooldown};
use crate::store::report::{OverviewRow, PatternReport, compute_overview, compute_report};

use crate::{
    ActionOutcome, ActionRecord, Approval, AuditRecord, Backup, Command, Diagnosis, Fingerprint,
    Health, Incident, Pattern, RemediationPlan, Result, Signal, incident::IncidentStatus,
};

/// Turns a signal into a stable fingerprint. Synchronous: called once per signal.
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
pub trait Fingerprinter: Send + Sync + Debug + 'static {
    /// A short name for diagnostics.
    fn name(&self) -> &str;
    /// The fingerprint of `signal`.
    fn fingerprint(&self, signal: &Signal) -> Fingerprint;
}

/// Which incidents to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentFilter {
    /// Only these statuses (all when empty).
    pub statuses: Vec<IncidentStatus>,
    /// Only this target.
    pub target: Option<String>,
    /// At most this many, newest first (all when `None`).
    pub limit: Option<usize>,
}

/// Where patterns, incidents, actions, approvals and the audit trail live.
///
/// Every store passes the conformance suite in `selfheal_core::testkit`.
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait PatternStore: Send + Sync + Debug + 'static {
    /// A short name for diagnostics (`memory`, `sqlite`, …).
    fn name(&self) -> &str;

    /// All patterns, by name.
    async fn list_patterns(&self) -> Result<Vec<Pattern>>;
    /// One pattern.
    async fn get_pattern(&self, name: &str) -> Result<Option<Pattern>>;
    /// Adds a new pattern; `Conflict` if the name exists, `InvalidInput` if it does not validate.
    async fn add_pattern(&self, pattern: &Pattern) -> Result<()>;
    /// Replaces an existing pattern; `NotFound` if there is none by that name.
    async fn update_pattern(&self, pattern: &Pattern) -> Result<()>;
    /// Records a verified outcome of `strategy` for `pattern` atomically: the fix's
    /// success or failure count, the pattern's use count (on success) and its
    /// confidence moved by `confidence_delta` and clamped to [0, 1]. Returns the
    /// updated pattern; `NotFound` if the pattern is gone.
    async fn record_outcome(
        &self,
        pattern: &str,
        strategy: &str,
        success: bool,
        confidence_delta: f64,
    ) -> Result<Pattern>;

    /// Inserts or updates an incident by id.
    async fn save_incident(&self, incident: &Incident) -> Result<()>;
    /// One incident.
    async fn get_incident(&self, id: Uuid) -> Result<Option<Incident>>;
    /// Incidents matching `filter`, newest first.
    async fn list_incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>>;

    /// Inserts or updates an action by id.
    async fn save_action(&self, action: &ActionRecord) -> Result<()>;
    /// Actions, newest first, for one incident or all.
    async fn list_actions(&self, incident: Option<Uuid>) -> Result<Vec<ActionRecord>>;

    /// Inserts or updates an approval by id.
    async fn save_approval(&self, approval: &Approval) -> Result<()>;
    /// Approvals, oldest first; only pending ones when `pending_only`.
    async fn list_approvals(&self, pending_only: bool) -> Result<Vec<Approval>>;

    /// Appends one audit record; `Conflict` if its `seq` exists already.
    async fn append_audit(&self, record: &AuditRecord) -> Result<()>;
    /// The last `limit` audit records in chain order (oldest first).
    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditRecord>>;

    /// The cached advisor diagnosis of `fingerprint`, unless it expired. The default
    /// is a store without a diagnosis cache: always `None`.
    async fn cached_diagnosis(&self, _fingerprint: &str) -> Result<Option<Diagnosis>> {
        Ok(None)
    }
    /// Caches `diagnosis` for `fingerprint` for `ttl`, replacing an older one. The
    /// default is a store without a diagnosis cache: nothing is kept.
    async fn cache_diagnosis(
        &self,
        _fingerprint: &str,
        _diagnosis: &Diagnosis,
        _ttl: Duration,
    ) -> Result<()> {
        Ok(())
    }

    // ---- reporting ------------------------------------------------------------------

    /// The healing overview: incidents newest first (at most `limit`), each with its
    /// pattern, fingerprint, status and last action. SQL stores read the
    /// `healing_overview` view; the default builds it from the listing methods.
    async fn healing_overview(&self, limit: Option<usize>) -> Result<Vec<OverviewRow>> {
        let incidents = self
            .list_incidents(&IncidentFilter {
                limit,
                ..IncidentFilter::default()
            })
            .await?;
        let actions = self.list_actions(None).await?;
        Ok(compute_overview(&incidents, &actions))
    }

    /// Audit records at or after `since`, oldest first (the `recent_activity` view is
    /// the last 24 hours).
    async fn recent_activity(&self, since: DateTime<Utc>) -> Result<Vec<AuditRecord>> {
        let mut all = self.list_audit(usize::MAX).await?;
        all.retain(|r| r.at >= since);
        Ok(all)
    }

    /// Per-pattern stats over incidents opened and actions started at or after `since`:
    /// incidents and occurrences per hour, results per strategy, MTTR, actions by
    /// outcome. Sorted by pattern name; see [`compute_report`] for the exact rules.
    async fn pattern_report(&self, since: DateTime<Utc>) -> Result<Vec<PatternReport>> {
        let incidents = self.list_incidents(&IncidentFilter::default()).await?;
        let actions = self.list_actions(None).await?;
        Ok(compute_report(&incidents, &actions, since))
    }

    /// Retention: deletes terminal (resolved, escalated, closed) incidents that closed
    /// before `older_than` (or were last seen before it, without a close time), with
    /// their actions and approvals. The audit log is never deleted. Returns how many
    /// incidents were deleted. The default, for a store that keeps no history, deletes
    /// nothing.
    async fn retention_cleanup(&self, _older_than: DateTime<Utc>) -> Result<u64> {
        Ok(0)
    }

    // ---- fleet coordination ----------------------------------------------------------

    /// Takes (or renews, for the same `holder`) the lease on `target` for `ttl`, unless
    /// another holder has an unexpired one. At most one holder per target at a time,
    /// across every replica that shares the store. The default, for a store that
    /// shares nothing, always grants it.
    async fn acquire_lease(
        &self,
        _target: &str,
        _holder: &str,
        ttl: Duration,
    ) -> Result<LeaseGrant> {
        Ok(LeaseGrant::Acquired {
            expires_at: crate::store::fleet_expiry(Utc::now(), ttl),
        })
    }

    /// Extends the lease `holder` has on `target` by `ttl` from now; `false` (and no
    /// lease created) if it does not hold it any more. Unlike `acquire_lease`, a renewal
    /// that arrives after a release does not take the lease back.
    async fn renew_lease(&self, target: &str, holder: &str, ttl: Duration) -> Result<bool> {
        Ok(self.acquire_lease(target, holder, ttl).await?.acquired())
    }

    /// Gives up the lease on `target` if `holder` has it; `false` if it did not.
    async fn release_lease(&self, _target: &str, _holder: &str) -> Result<bool> {
        Ok(true)
    }

    /// The running cooldown of `strategy` on `target`, if any replica started one.
    async fn shared_cooldown(
        &self,
        _strategy: &str,
        _target: &str,
    ) -> Result<Option<SharedCooldown>> {
        Ok(None)
    }

    /// Starts (or replaces) the cooldown of `strategy` on `target` for `length`, on
    /// behalf of `holder`.
    async fn start_shared_cooldown(
        &self,
        _strategy: &str,
        _target: &str,
        _holder: &str,
        _length: Duration,
    ) -> Result<()> {
        Ok(())
    }

    /// Counts one attempt at the episode of `fingerprint` on `target` and returns how
    /// many there have been, this one included. An episode whose last attempt is older
    /// than `window` starts over. The default, for a store that shares nothing, says 1.
    async fn count_attempt(
        &self,
        _target: &str,
        _fingerprint: &str,
        _window: Duration,
    ) -> Result<u32> {
        Ok(1)
    }

    /// Ends the episode of `fingerprint` on `target` (it was fixed): the next attempt
    /// counts from 1.
    async fn clear_attempts(&self, _target: &str, _fingerprint: &str) -> Result<()> {
        Ok(())
    }

    /// Takes one permit of the fleet-wide rate limit of `per_hour` actions in any
    /// rolling hour; `false` when the limit is reached. The default grants every one.
    async fn take_rate_permit(&self, _holder: &str, _per_hour: u32) -> Result<bool> {
        Ok(true)
    }

    // ---- audit checkpoint (issue 11 item 9; belongs with the audit methods) ----------

    /// The audit chain's head as last kept outside the audit table (a checkpoint file,
    /// a row of its own), written with every appended record: what
    /// [`crate::verify_checkpoint`] compares the table with at start, so a truncated or
    /// emptied log is noticed. `None` when none was kept yet. The default, for a store
    /// without one (in memory), is `None`.
    async fn audit_checkpoint(&self) -> Result<Option<crate::ChainHead>> {
        Ok(None)
    }
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
    /// `Healer::backups`). Default: a strategy that takes none.
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
