//! The store traits, one per concern, and [`Store`], which a healer is built on.
//!
//! | trait | holds |
//! |---|---|
//! | [`PatternStore`] | the knowledge base: patterns and their learned outcomes |
//! | [`IncidentStore`] | incidents, actions, approvals, and retention of them |
//! | [`AuditStore`] | the append-only, hash-chained audit trail |
//! | [`DiagnosisCache`] | advisor diagnoses by fingerprint, with an expiry |
//! | [`ReportStore`] | read models for operators (computed from the above by default) |
//! | [`ControlStore`] | operator and safety state shared by replicas: silences, dry-run switches, the breaker, back-off |
//! | [`FleetStore`] | coordination of replicas: leases, shared cooldowns, attempts, rate permits |
//!
//! A [`Store`] is all of them but the last, plus a name, and says whether it can
//! coordinate a fleet ([`Store::fleet`]). Nothing here grants a lease it cannot
//! enforce: a healer in fleet mode on a store whose `fleet()` is `None` is refused at
//! build time. Every store passes the conformance suite in `selfheal_core::testkit`.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::fleet::{LeaseGrant, SharedCooldown};
use crate::store::report::{OverviewRow, PatternReport, compute_overview, compute_report};
use crate::{
    ActionRecord, Approval, ApprovalState, AuditRecord, Decided, Diagnosis, Incident, Pattern,
    Result, incident::IncidentStatus,
};

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

/// The knowledge base: patterns, and the outcomes the healer learned for them.
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait PatternStore: Send + Sync + Debug + 'static {
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
}

/// Incidents, the actions taken on them and the approvals they waited for.
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait IncidentStore: Send + Sync + Debug + 'static {
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

    /// Retention: deletes terminal (resolved, escalated, closed) incidents that closed
    /// before `older_than` (or were last seen before it, without a close time), with
    /// their actions and approvals. The audit log is never deleted. Returns how many
    /// incidents were deleted.
    async fn retention_cleanup(&self, older_than: DateTime<Utc>) -> Result<u64>;
}

/// The audit trail: append-only, hash-chained (see [`crate::verify_chain`]).
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait AuditStore: Send + Sync + Debug + 'static {
    /// Appends one audit record; `Conflict` if its `seq` exists already.
    async fn append_audit(&self, record: &AuditRecord) -> Result<()>;
    /// The last `limit` audit records in chain order (oldest first).
    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditRecord>>;
    /// Audit records at or after `since`, oldest first (the `recent_activity` view is
    /// the last 24 hours). The default reads the whole trail and filters it.
    async fn recent_activity(&self, since: DateTime<Utc>) -> Result<Vec<AuditRecord>> {
        let mut all = self.list_audit(usize::MAX).await?;
        all.retain(|r| r.at >= since);
        Ok(all)
    }
    /// The audit chain's head as last kept outside the audit table (a checkpoint file,
    /// a row of its own), written with every appended record: what
    /// [`crate::verify_checkpoint`] compares the table with at start, so a truncated or
    /// emptied log is noticed. `None` when none was kept yet, or when the store keeps
    /// no checkpoint (`MemoryStore`: nothing outlives it anyway). Required, so a wrapper
    /// cannot silently turn truncation detection off by not forwarding it.
    async fn audit_checkpoint(&self) -> Result<Option<crate::ChainHead>>;
}

/// Advisor diagnoses by fingerprint, so an unknown error is not sent to the advisor
/// again while its diagnosis is fresh.
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait DiagnosisCache: Send + Sync + Debug + 'static {
    /// The cached advisor diagnosis of `fingerprint`, unless it expired.
    async fn cached_diagnosis(&self, fingerprint: &str) -> Result<Option<Diagnosis>>;
    /// Caches `diagnosis` for `fingerprint` for `ttl`, replacing an older one.
    async fn cache_diagnosis(
        &self,
        fingerprint: &str,
        diagnosis: &Diagnosis,
        ttl: Duration,
    ) -> Result<()>;
}

/// Read models for operators. The defaults compute them from the [`IncidentStore`];
/// SQL stores read views instead.
#[async_trait]
pub trait ReportStore: IncidentStore {
    /// The healing overview: incidents newest first (at most `limit`), each with its
    /// pattern, fingerprint, status and last action.
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

    /// Per-pattern stats over incidents opened and actions started at or after `since`:
    /// incidents and occurrences per hour, results per strategy, MTTR, actions by
    /// outcome. Sorted by pattern name; see [`compute_report`] for the exact rules.
    async fn pattern_report(&self, since: DateTime<Utc>) -> Result<Vec<PatternReport>> {
        let incidents = self.list_incidents(&IncidentFilter::default()).await?;
        let actions = self.list_actions(None).await?;
        Ok(compute_report(&incidents, &actions, since))
    }
}

/// Operator and safety state that must outlive a process and hold on every replica
/// that shares the store: silences, dry-run switches, the breaker and back-off, and the
/// decisions on approvals. Plain JSON documents by key (`silence/<id>`, `dry_run/all`,
/// …); the healer owns the keys and their shapes (see `healer/control.rs`), the store
/// only keeps them. Approvals are decided here, once, by whoever comes first: the
/// router of any replica (or of a restarted process) answers, and the replica that
/// waits learns it ([`ControlStore::approval_decisions`], or by polling). Every
/// method is required but the wake-up: a store that forgets these would silently
/// lift a silence.
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait ControlStore: Send + Sync + Debug + 'static {
    /// Stores `value` under `key`, replacing what was there.
    async fn put_control(&self, key: &str, value: &serde_json::Value) -> Result<()>;
    /// Deletes `key`; `false` if there was nothing under it.
    async fn delete_control(&self, key: &str) -> Result<bool>;
    /// Every document whose key starts with `prefix` (all with `""`), sorted by key.
    async fn list_control(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>>;

    /// One approval (saved with [`IncidentStore::save_approval`]).
    async fn approval(&self, id: Uuid) -> Result<Option<Approval>>;

    /// Decides approval `id` if it is still pending: sets `state` (approved, rejected
    /// or expired), `decided_by`, `decided_at` (now) and `note`, atomically across every
    /// replica that shares the store, so two answers never both win. An approval that
    /// is no longer pending is left as it is ([`Decided::Already`]).
    async fn decide_approval<'a>(
        &self,
        id: Uuid,
        state: ApprovalState,
        by: &str,
        note: Option<&'a str>,
    ) -> Result<Decided>;

    /// The ids of approvals decided from now on, by any replica, for the replica that
    /// waits on them to learn at once (Postgres: `LISTEN`/`NOTIFY`). `None` (the
    /// default) when the store cannot push: the waiting replica polls
    /// ([`crate::SafetyConfig::approval_poll`]). A missed wake-up only delays the
    /// waiter until its next poll.
    fn approval_decisions(&self) -> Option<tokio::sync::broadcast::Receiver<Uuid>> {
        None
    }
}

/// Coordination of the replicas that share one store. Every method is required: a
/// store either coordinates for real or does not offer this trait.
#[cfg_attr(any(test, feature = "test-util"), mockall::automock)]
#[async_trait]
pub trait FleetStore: Send + Sync + Debug + 'static {
    /// Takes (or renews, for the same `holder`) the lease on `target` for `ttl`, unless
    /// another holder has an unexpired one. At most one holder per target at a time,
    /// across every replica that shares the store.
    async fn acquire_lease(&self, target: &str, holder: &str, ttl: Duration) -> Result<LeaseGrant>;

    /// Extends the lease `holder` has on `target` by `ttl` from now; `false` (and no
    /// lease created) if it does not hold it any more. Unlike `acquire_lease`, a renewal
    /// that arrives after a release does not take the lease back.
    async fn renew_lease(&self, target: &str, holder: &str, ttl: Duration) -> Result<bool>;

    /// Gives up the lease on `target` if `holder` has it; `false` if it did not.
    async fn release_lease(&self, target: &str, holder: &str) -> Result<bool>;

    /// The running cooldown of `strategy` on `target`, if any replica started one.
    async fn shared_cooldown(&self, strategy: &str, target: &str)
    -> Result<Option<SharedCooldown>>;

    /// Starts (or replaces) the cooldown of `strategy` on `target` for `length`, on
    /// behalf of `holder`.
    async fn start_shared_cooldown(
        &self,
        strategy: &str,
        target: &str,
        holder: &str,
        length: Duration,
    ) -> Result<()>;

    /// Counts one attempt at the episode of `fingerprint` on `target` and returns how
    /// many there have been, this one included. An episode whose last attempt is older
    /// than `window` starts over.
    async fn count_attempt(&self, target: &str, fingerprint: &str, window: Duration)
    -> Result<u32>;

    /// Ends the episode of `fingerprint` on `target` (it was fixed): the next attempt
    /// counts from 1.
    async fn clear_attempts(&self, target: &str, fingerprint: &str) -> Result<()>;

    /// Takes one permit of the fleet-wide rate limit of `per_hour` actions in any
    /// rolling hour; `false` when the limit is reached.
    async fn take_rate_permit(&self, holder: &str, per_hour: u32) -> Result<bool>;
}

/// Everything a [`Healer`](crate::Healer) keeps: patterns, incidents, the audit trail,
/// the diagnosis cache, the reports, the operators' control state, and, where the store can share it between
/// replicas, fleet coordination.
///
/// ```
/// use selfheal_core::{MemoryStore, Store};
/// let store = MemoryStore::new();
/// assert_eq!(store.name(), "memory");
/// assert!(store.fleet().is_some(), "replicas in one process can share a MemoryStore");
/// ```
pub trait Store:
    PatternStore + IncidentStore + AuditStore + DiagnosisCache + ReportStore + ControlStore
{
    /// A short name for diagnostics (`memory`, `sqlite`, …).
    fn name(&self) -> &str;

    /// The store's fleet coordination, or `None` when it cannot coordinate replicas.
    /// A healer with `guards.fleet.enabled` refuses to build on a store without it.
    fn fleet(&self) -> Option<&dyn FleetStore>;
}

#[cfg(any(test, feature = "test-util"))]
mockall::mock! {
    /// A mock of a whole [`Store`], for tests that need a store failing in chosen ways.
    /// Its name is `mock` and it has no fleet coordination.
    pub Store {}

    #[async_trait]
    impl PatternStore for Store {
        async fn list_patterns(&self) -> Result<Vec<Pattern>>;
        async fn get_pattern(&self, name: &str) -> Result<Option<Pattern>>;
        async fn add_pattern(&self, pattern: &Pattern) -> Result<()>;
        async fn update_pattern(&self, pattern: &Pattern) -> Result<()>;
        async fn record_outcome(
            &self,
            pattern: &str,
            strategy: &str,
            success: bool,
            confidence_delta: f64,
        ) -> Result<Pattern>;
    }

    #[async_trait]
    impl IncidentStore for Store {
        async fn save_incident(&self, incident: &Incident) -> Result<()>;
        async fn get_incident(&self, id: Uuid) -> Result<Option<Incident>>;
        async fn list_incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>>;
        async fn save_action(&self, action: &ActionRecord) -> Result<()>;
        async fn list_actions(&self, incident: Option<Uuid>) -> Result<Vec<ActionRecord>>;
        async fn save_approval(&self, approval: &Approval) -> Result<()>;
        async fn list_approvals(&self, pending_only: bool) -> Result<Vec<Approval>>;
        async fn retention_cleanup(&self, older_than: DateTime<Utc>) -> Result<u64>;
    }

    #[async_trait]
    impl AuditStore for Store {
        async fn append_audit(&self, record: &AuditRecord) -> Result<()>;
        async fn list_audit(&self, limit: usize) -> Result<Vec<AuditRecord>>;
        async fn recent_activity(&self, since: DateTime<Utc>) -> Result<Vec<AuditRecord>>;
        async fn audit_checkpoint(&self) -> Result<Option<crate::ChainHead>>;
    }

    #[async_trait]
    impl DiagnosisCache for Store {
        async fn cached_diagnosis(&self, fingerprint: &str) -> Result<Option<Diagnosis>>;
        async fn cache_diagnosis(
            &self,
            fingerprint: &str,
            diagnosis: &Diagnosis,
            ttl: Duration,
        ) -> Result<()>;
    }

    #[async_trait]
    impl ReportStore for Store {
        async fn healing_overview(&self, limit: Option<usize>) -> Result<Vec<OverviewRow>>;
        async fn pattern_report(&self, since: DateTime<Utc>) -> Result<Vec<PatternReport>>;
    }

    #[async_trait]
    impl ControlStore for Store {
        async fn put_control(&self, key: &str, value: &serde_json::Value) -> Result<()>;
        async fn delete_control(&self, key: &str) -> Result<bool>;
        async fn list_control(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>>;
        async fn approval(&self, id: Uuid) -> Result<Option<Approval>>;
        async fn decide_approval<'a>(
            &self,
            id: Uuid,
            state: ApprovalState,
            by: &str,
            note: Option<&'a str>,
        ) -> Result<Decided>;
        fn approval_decisions(&self) -> Option<tokio::sync::broadcast::Receiver<Uuid>>;
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Debug for MockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockStore")
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Store for MockStore {
    fn name(&self) -> &str {
        "mock"
    }

    fn fleet(&self) -> Option<&dyn FleetStore> {
        None
    }
}
