//! The broadcast stream of every phase of every incident.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::RemediationPlan;

/// A phase of the healing flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// An incident opened.
    Detected,
    /// A pattern explained it.
    Matched,
    /// An advisor diagnosed it.
    Diagnosed,
    /// The policy decided.
    Decided,
    /// The action waits for the rate limit.
    Queued,
    /// The action waits for a human.
    AwaitingApproval,
    /// A human approved.
    Approved,
    /// A human rejected.
    Rejected,
    /// The action runs.
    Executing,
    /// The action produced output.
    Output,
    /// The fix is being verified.
    Verifying,
    /// Verification passed: the errors stopped and the target's probe passed.
    Verified,
    /// The fix ran and nothing could verify it (no verifier, no quiet check): not a
    /// success; nothing rolled back or learned.
    Unverified,
    /// The healer shut down during verification: nothing rolled back or learned.
    Interrupted,
    /// A fix that needs its target reachable waits for the target's probe to pass.
    WaitingForTarget,
    /// The fix was undone.
    RolledBack,
    /// The incident is resolved.
    Resolved,
    /// The incident went to humans.
    Escalated,
    /// An action failed.
    Failed,
    /// The incident closed without action (alert-only, rejected, silenced).
    Closed,
    /// The safety envelope holds the incident: it acts on nothing for now (storm).
    Held,
    /// Too many targets unhealthy at once: automatic remediation stopped.
    StormTripped,
    /// Health recovered after a storm: automatic remediation re-armed.
    StormCleared,
    /// A repeat incident made the cooldown of a (strategy, target) grow.
    BackedOff,
    /// Too many failed remediations: the healer stopped acting until re-armed.
    BreakerTripped,
    /// An operator re-armed the healer's breaker.
    BreakerRearmed,
    /// A silence or maintenance window suppressed signals.
    Silenced,
    /// An approval was not answered within its TTL.
    Expired,
    /// A dependent's failure was attributed to its unhealthy dependency.
    Attributed,
    /// Errors caused by the healer's own action were counted into the incident.
    SelfCaused,
    /// A dry run recorded what it would have run instead of running it.
    DryRun,
    /// An operator switched dry run on or off.
    ModeChanged,
    /// An escalated incident's error goes on: the operators were reminded.
    Reminded,
    /// An escalated (or rejected) incident's error was quiet long enough: the same
    /// error may open a new incident.
    Quiet,
    /// The audit chain did not verify when the healer started.
    ChainBroken,
    /// What held an escalated incident back is gone (its dependency is healthy again):
    /// the next occurrence opens a new incident.
    Released,
    /// A fix was passed over without asking anyone or running it: its strategy is not
    /// registered, its parameters are refused, it cannot work in the current state, or
    /// it could not plan. The detail says which and why.
    Skipped,
    /// In fleet mode, this replica lost the target's lease before a step that acts
    /// (execute or rollback) and did not run it. The detail says which step and why.
    Fenced,
}

/// One event on the stream returned by `Healer::subscribe`: typed, so a dashboard or
/// a log shipper reads the plan, the approval and the health readings as data, not
/// from `detail`. Fields that do not apply to a phase are `None` (`null` in JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HealingEvent {
    /// The incident, if the event concerns one.
    pub incident: Option<Uuid>,
    /// The target.
    pub target: String,
    /// The phase.
    pub phase: Phase,
    /// Human-readable detail.
    pub detail: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The pattern that explained the incident, once one did.
    #[serde(default)]
    pub pattern: Option<String>,
    /// The approval the event concerns: `AwaitingApproval`, `Approved`, `Rejected`,
    /// `Expired`.
    #[serde(default)]
    pub approval: Option<Uuid>,
    /// The plan, with every command it runs: `AwaitingApproval`, `Executing`,
    /// `DryRun`.
    #[serde(default)]
    pub plan: Option<RemediationPlan>,
    /// The target's health score (0–100) before the fix: `Executing`, `Verified`,
    /// `RolledBack`.
    #[serde(default)]
    pub health_before: Option<u8>,
    /// The target's health score (0–100) after the fix: `Verified`, `RolledBack`.
    #[serde(default)]
    pub health_after: Option<u8>,
    /// Who acted: `Approved`, `Rejected`, `BreakerRearmed`, `ModeChanged`.
    #[serde(default)]
    pub actor: Option<String>,
}

/// The typed parts of an event beyond phase and detail (the healer fills the
/// incident, target and pattern).
#[derive(Debug, Clone, Default)]
pub(crate) struct EventData {
    pub(crate) approval: Option<Uuid>,
    pub(crate) plan: Option<RemediationPlan>,
    pub(crate) health_before: Option<u8>,
    pub(crate) health_after: Option<u8>,
    pub(crate) actor: Option<String>,
}
