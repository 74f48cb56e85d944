//! Incidents and what the healer did about them: matches, decisions, plans, actions, approvals.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Severity;

/// Where an incident is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IncidentStatus {
    /// Detected, not yet decided.
    Open,
    /// Waiting for an operator to approve a fix.
    AwaitingApproval,
    /// Waiting for the global rate limit.
    Queued,
    /// A fix is running or being verified.
    Remediating,
    /// A fix was verified.
    Resolved,
    /// Handed to humans.
    Escalated,
    /// Only notified (alert-only pattern, or rejected suggestion).
    Closed,
}

impl IncidentStatus {
    /// Whether the incident is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            IncidentStatus::Resolved | IncidentStatus::Escalated | IncidentStatus::Closed
        )
    }

    /// The snake_case name stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::AwaitingApproval => "awaiting_approval",
            IncidentStatus::Queued => "queued",
            IncidentStatus::Remediating => "remediating",
            IncidentStatus::Resolved => "resolved",
            IncidentStatus::Escalated => "escalated",
            IncidentStatus::Closed => "closed",
        }
    }
}

/// One problem on one target: a fingerprint (or a few related ones) that crossed its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Unique id.
    pub id: Uuid,
    /// The affected system.
    pub target: String,
    /// The fingerprint that opened it.
    pub fingerprint: String,
    /// Its template.
    pub template: String,
    /// The stack signature of its fingerprint (in-app frames, no line numbers), when
    /// the signal that opened it carried a stack trace.
    #[serde(default)]
    pub stack: Option<String>,
    /// Other fingerprints on the same target grouped under it.
    pub related: Vec<String>,
    /// The matched pattern, once matched.
    pub pattern: Option<String>,
    /// Where it is in its lifecycle.
    pub status: IncidentStatus,
    /// How bad (the matched pattern's severity, else medium).
    pub severity: Severity,
    /// Occurrences counted into it.
    pub occurrences: u64,
    /// A few sample messages.
    pub samples: Vec<String>,
    /// When it opened.
    pub opened_at: DateTime<Utc>,
    /// Last time one of its fingerprints was seen.
    pub last_seen: DateTime<Utc>,
    /// When it reached a terminal status.
    pub closed_at: Option<DateTime<Utc>>,
    /// Why it is where it is (decision reason, escalation reason).
    pub reason: String,
}

impl Incident {
    /// Time from opening to resolution, for resolved incidents.
    pub fn time_to_recover(&self) -> Option<Duration> {
        if self.status != IncidentStatus::Resolved {
            return None;
        }
        let closed = self.closed_at?;
        (closed - self.opened_at).to_std().ok()
    }
}

/// A pattern that explains an incident, with how sure the matcher is and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternMatch {
    /// The pattern's name.
    pub pattern: String,
    /// Confidence in [0, 1].
    pub confidence: f64,
    /// Its severity.
    pub severity: Severity,
    /// Why it matched (regex, keywords, target).
    pub reasons: Vec<String>,
}

/// An advisor's reading of an incident no pattern explained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// Likely root cause.
    pub root_cause: String,
    /// A registered strategy to try, if any.
    pub strategy: Option<String>,
    /// Parameters for it.
    pub params: serde_json::Value,
    /// The advisor's confidence in [0, 1].
    pub confidence: f64,
    /// Why.
    pub explanation: String,
    /// Which advisor said so.
    pub advisor: String,
}

/// What the policy decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Decision {
    /// Run the fix now (subject to guards).
    AutoRemediate,
    /// Propose the fix and wait for approval.
    Suggest {
        /// Why approval is needed.
        reason: String,
    },
    /// Hand to humans with full context.
    Escalate {
        /// Why.
        reason: String,
    },
    /// Alert-only pattern: notify, do nothing.
    AlertOnly,
}

impl Decision {
    /// The audit event type of this decision (`self_heal.auto`, …).
    pub fn event_type(&self) -> &'static str {
        match self {
            Decision::AutoRemediate => "self_heal.auto",
            Decision::Suggest { .. } => "self_heal.suggested",
            Decision::Escalate { .. } => "self_heal.escalated",
            Decision::AlertOnly => "self_heal.alerted",
        }
    }
}

/// How risky a plan is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Risk {
    /// Safe to repeat.
    #[default]
    Low,
    /// Briefly disrupts the target.
    Medium,
    /// Loses data or capacity; needs approval by default.
    High,
}

/// A command as an argument vector: never a shell string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The program (looked up on `PATH` when not absolute).
    pub program: String,
    /// Its arguments, passed as they are.
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Kill it after this long.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

impl Command {
    /// `program` with `args`.
    pub fn new<I, S>(program: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Command {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            timeout: None,
        }
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A human-readable preview (arguments quoted where needed). For display only.
    pub fn preview(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .map(|a| {
                if !a.is_empty()
                    && a.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
                {
                    a.to_owned()
                } else {
                    format!("'{}'", a.replace('\'', r"'\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One step of a plan: what a human reads, and the command if the step runs one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    /// Human-readable preview of the step.
    pub preview: String,
    /// The command, when the step runs one through the executor.
    pub command: Option<Command>,
}

/// What a strategy will do, before it does it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemediationPlan {
    /// The strategy's name.
    pub strategy: String,
    /// The target acted on.
    pub target: String,
    /// How risky.
    pub risk: Risk,
    /// The steps, in order.
    pub steps: Vec<PlannedStep>,
    /// Parameters the strategy validated.
    pub params: serde_json::Value,
    /// Whether the strategy can undo it.
    pub reversible: bool,
}

impl RemediationPlan {
    /// A low-risk plan for `strategy` on `target` with no steps yet.
    pub fn new(strategy: impl Into<String>, target: impl Into<String>) -> Self {
        RemediationPlan {
            strategy: strategy.into(),
            target: target.into(),
            risk: Risk::Low,
            steps: Vec::new(),
            params: serde_json::Value::Null,
            reversible: false,
        }
    }

    /// Adds a step that runs `command`.
    pub fn command(mut self, command: Command) -> Self {
        self.steps.push(PlannedStep {
            preview: command.preview(),
            command: Some(command),
        });
        self
    }

    /// Adds a step that runs no command (an in-process action), described by `preview`.
    pub fn step(mut self, preview: impl Into<String>) -> Self {
        self.steps.push(PlannedStep {
            preview: preview.into(),
            command: None,
        });
        self
    }

    /// Sets the risk.
    pub fn risk(mut self, risk: Risk) -> Self {
        self.risk = risk;
        self
    }

    /// The previews, one line each.
    pub fn preview(&self) -> String {
        self.steps
            .iter()
            .map(|s| s.preview.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What running an action produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionOutcome {
    /// Exit code, when a process ran and exited.
    pub exit_code: Option<i32>,
    /// Captured standard output (capped).
    pub stdout: String,
    /// Captured standard error (capped).
    pub stderr: String,
    /// How long it took.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Whether the action itself succeeded (not whether it healed: that is verification).
    pub success: bool,
}

impl ActionOutcome {
    /// A successful in-process action that took `duration`.
    pub fn ok(duration: Duration) -> Self {
        ActionOutcome {
            success: true,
            duration,
            ..Default::default()
        }
    }
}

/// What a verifier saw: a **score** from 0 (down) to 100 (fine), recorded as health
/// before and after an action, and a **verdict**, [`passed`](Health::passed): whether
/// the operation that failed works again.
///
/// The healer verifies a fix on the verdict, never on the score: a Redis at 60 % of
/// `maxmemory` or a Postgres with 7 of 20 slots in use scores low on usage and still
/// passes. Verifiers whose score measures usage decide the verdict themselves
/// ([`Health::with_passed`]); for the rest, whose score is the verdict (a latency, a
/// quiet window), [`Health::new`] passes at [`Health::PASS_MARK`].
///
/// ```
/// use selfheal_core::Health;
/// assert!(Health::new(90, "answered in 12ms").passed);
/// assert!(!Health::new(0, "connection refused").passed);
/// // A usage score: 50 % of maxmemory used, and the write probe worked.
/// let redis = Health::new(50, "write ok; memory 2.0 MiB of 4.0 MiB").with_passed(true);
/// assert!(redis.passed);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Health {
    /// Score in 0..=100.
    pub score: u8,
    /// What the check saw.
    pub detail: String,
    /// Whether the probe passed: the target works (the verdict verification uses).
    /// Absent in a serialized reading: failed.
    #[serde(default)]
    pub passed: bool,
}

impl Health {
    /// The score at which [`Health::new`] passes: for verifiers whose score is itself
    /// the verdict (an HTTP or TCP probe scored by latency, a quiet window).
    pub const PASS_MARK: u8 = 50;

    /// A health of `score` (capped at 100) with `detail`, passing when the score is at
    /// least [`Health::PASS_MARK`]. Verifiers whose score measures usage set the
    /// verdict with [`Health::with_passed`].
    pub fn new(score: u8, detail: impl Into<String>) -> Self {
        let score = score.min(100);
        Health {
            score,
            detail: detail.into(),
            passed: score >= Self::PASS_MARK,
        }
    }

    /// A target that does not work: score 0, failed, with the reason.
    pub fn down(detail: impl Into<String>) -> Self {
        Health::new(0, detail)
    }

    /// The same reading with the verifier's own verdict.
    pub fn with_passed(mut self, passed: bool) -> Self {
        self.passed = passed;
        self
    }
}

/// Final result of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActionStatus {
    /// Running or being verified.
    Running,
    /// Ran and verified.
    Succeeded,
    /// Ran (or failed to run) and did not heal.
    Failed,
    /// Failed and was rolled back.
    RolledBack,
    /// Ran, and nothing could verify it (no verifier for the target and no quiet
    /// check): not a success, and nothing learned from it.
    Unverified,
    /// The healer shut down while it verified: nothing rolled back, nothing learned.
    Interrupted,
}

impl ActionStatus {
    /// The snake_case name stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Running => "running",
            ActionStatus::Succeeded => "succeeded",
            ActionStatus::Failed => "failed",
            ActionStatus::RolledBack => "rolled_back",
            ActionStatus::Unverified => "unverified",
            ActionStatus::Interrupted => "interrupted",
        }
    }
}

/// One remediation attempt, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Unique id.
    pub id: Uuid,
    /// The incident it served.
    pub incident: Uuid,
    /// The pattern whose fix it was, if any.
    pub pattern: Option<String>,
    /// The strategy.
    pub strategy: String,
    /// The target.
    pub target: String,
    /// The plan's preview.
    pub preview: String,
    /// How it ended (or `Running`).
    pub status: ActionStatus,
    /// What running it produced.
    pub outcome: Option<ActionOutcome>,
    /// Health before.
    pub health_before: Option<u8>,
    /// Health after verification.
    pub health_after: Option<u8>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// A suggested fix waiting for a human.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// Unique id, passed to `Admin::approve` / `Admin::reject`.
    pub id: Uuid,
    /// The incident.
    pub incident: Uuid,
    /// The pattern, if one matched.
    pub pattern: Option<String>,
    /// The plan to run if approved.
    pub plan: RemediationPlan,
    /// Why approval is needed.
    pub reason: String,
    /// The confidence at decision time.
    pub confidence: f64,
    /// When it was asked.
    pub requested_at: DateTime<Utc>,
    /// The answer, once given.
    pub state: ApprovalState,
    /// Who answered.
    pub decided_by: Option<String>,
    /// When it was answered (or expired).
    #[serde(default)]
    pub decided_at: Option<DateTime<Utc>>,
    /// The reason given with a rejection, or why it expired.
    #[serde(default)]
    pub note: Option<String>,
}

/// What [`ControlStore::decide_approval`](crate::store::ControlStore::decide_approval)
/// did: an approval is decided once, by whoever comes first, on any replica.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Decided {
    /// This call decided it; the approval as stored now.
    Now(Approval),
    /// It was decided (or expired) before; the approval as stored, unchanged.
    Already(Approval),
    /// No approval has this id.
    NotFound,
}

/// Where an approval is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ApprovalState {
    /// Waiting.
    Pending,
    /// Approved: the plan ran.
    Approved,
    /// Rejected: nothing ran.
    Rejected,
    /// Nobody answered within the TTL: the incident escalated and nothing ran.
    Expired,
}

impl ApprovalState {
    /// The snake_case name stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
            ApprovalState::Expired => "expired",
        }
    }
}
