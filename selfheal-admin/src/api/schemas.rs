//! How the core's types look on the wire, for the OpenAPI document only: the core does
//! not derive `ToSchema`, so each type the API sends or takes is described here once,
//! under the core type's name. Nothing here is constructed; the handlers send and take
//! the core types themselves.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// How bad a failure is.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Severity)]
pub(crate) enum SeveritySchema {
    /// Cosmetic or self-limiting.
    Low,
    /// Degrades the service.
    Medium,
    /// Breaks a feature.
    High,
    /// Takes the service down.
    Critical,
}

/// Whether a pattern may act or only notify.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PatternMode)]
pub(crate) enum PatternModeSchema {
    /// Matches lead to decisions and actions.
    Active,
    /// Matches only notify.
    AlertOnly,
}

/// A fix bound to a pattern (`selfheal_core::FixBinding`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FixBinding)]
pub(crate) struct FixBindingSchema {
    /// The registered strategy's name.
    strategy: String,
    /// Parameters handed to the strategy (validated by it).
    #[serde(default)]
    params: serde_json::Value,
    /// Lower runs first.
    #[serde(default)]
    priority: i32,
    /// Always wait for a human before running this fix.
    #[serde(default)]
    requires_approval: bool,
    /// Verified successes so far.
    #[serde(default)]
    successes: u64,
    /// Failures so far.
    #[serde(default)]
    failures: u64,
}

/// A known failure: how to recognise it and how to fix it (`selfheal_core::Pattern`).
/// Beyond this shape, the regex must compile, and a pattern needs a regex or keywords.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Pattern)]
pub(crate) struct PatternSchema {
    /// Unique name.
    #[schema(pattern = r"\S")]
    name: String,
    /// What it means, in a sentence.
    #[serde(default)]
    description: String,
    /// A regex over the signal's message and stack.
    #[serde(default)]
    regex: Option<String>,
    /// Words that suggest this pattern when no regex matches.
    #[serde(default)]
    keywords: Vec<String>,
    /// Only match signals whose `error.type` field equals this.
    #[serde(default)]
    error_type: Option<String>,
    /// Only match signals for this target (a name or a glob).
    #[serde(default)]
    target: Option<String>,
    /// How bad it is (default medium).
    #[schema(required = false)]
    severity: SeveritySchema,
    /// The usual root cause, for humans.
    #[serde(default)]
    root_cause: String,
    /// Whether fixes may run without approval when confidence is high.
    #[serde(default)]
    auto_healable: bool,
    /// Learned confidence in [0, 1] (default 0.5).
    #[schema(required = false, minimum = 0.0, maximum = 1.0)]
    confidence: f64,
    /// Active or alert-only (default alert_only).
    #[schema(required = false)]
    mode: PatternModeSchema,
    /// Occurrences needed within `window` before an incident opens (default 3).
    #[schema(required = false, minimum = 1, maximum = 4294967295_u64)]
    min_occurrences: u32,
    /// The detection window as a humantime duration (`60s`, `5m`; default 1m).
    #[schema(required = false, example = "1m")]
    window: String,
    /// Fixes, tried in priority order.
    #[serde(default)]
    fixes: Vec<FixBindingSchema>,
    /// Verified successful heals.
    #[serde(default)]
    use_count: u64,
    /// Disabled patterns never match (default true).
    #[schema(required = false)]
    enabled: bool,
    /// The text has more than one cause; the target's probe decides.
    #[serde(default)]
    ambiguous: bool,
}

/// How one pattern is doing (`selfheal_core::PatternStats`).
#[derive(ToSchema)]
#[schema(as = PatternStats, value_type = Object)]
pub(crate) struct PatternStatsSchema(serde_json::Value);

/// Counters and per-pattern figures (`selfheal_core::Stats`).
#[derive(ToSchema)]
#[schema(as = Stats, value_type = Object)]
pub(crate) struct StatsSchema(serde_json::Value);

/// The only export format.
#[derive(Deserialize, ToSchema)]
#[schema(as = ExportFormat)]
pub(crate) enum ExportFormatSchema {
    /// Patterns exported by selfheal.
    #[serde(rename = "selfheal.patterns")]
    Patterns,
}

/// An export document of patterns (`selfheal_core::catalog::PatternDocument`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ExportDocument)]
pub(crate) struct ExportDocumentSchema {
    /// Always `selfheal.patterns`.
    format: ExportFormatSchema,
    /// The document version (this release reads 1).
    #[schema(minimum = 1, maximum = 1)]
    version: u32,
    /// When it was exported (RFC 3339).
    exported_at: chrono::DateTime<chrono::Utc>,
    /// Who exported it (a service name), free text.
    #[serde(default)]
    source: String,
    /// The patterns, each as its JSON form; each is checked on its own at import, and
    /// one that does not decode is reported without spoiling the rest.
    patterns: Vec<serde_json::Value>,
}

/// One pattern an import refused.
#[derive(ToSchema)]
#[schema(as = ImportError)]
pub(crate) struct ImportErrorSchema {
    /// Its position in the document, from 0.
    index: u64,
    /// Its name, when it has one.
    name: Option<String>,
    /// What is wrong, and what to do.
    message: String,
}

/// What an import did (`selfheal_core::catalog::ImportReport`).
#[derive(ToSchema)]
#[schema(as = ImportReport)]
pub(crate) struct ImportReportSchema {
    /// Patterns added.
    added: Vec<String>,
    /// Patterns that existed and were replaced.
    replaced: Vec<String>,
    /// Patterns that existed and were left alone.
    skipped: Vec<String>,
    /// Patterns refused, one entry each; the others were imported.
    errors: Vec<ImportErrorSchema>,
}

/// One problem on one target (`selfheal_core::Incident`).
#[derive(ToSchema)]
#[schema(as = Incident, value_type = Object)]
pub(crate) struct IncidentSchema(serde_json::Value);

/// One remediation attempt (`selfheal_core::ActionRecord`).
#[derive(ToSchema)]
#[schema(as = ActionRecord, value_type = Object)]
pub(crate) struct ActionRecordSchema(serde_json::Value);

/// Where an approval is.
#[derive(ToSchema)]
#[schema(as = ApprovalState)]
#[allow(clippy::enum_variant_names)]
pub(crate) enum ApprovalStateSchema {
    /// Waiting.
    #[schema(rename = "pending")]
    Pending,
    /// Approved: the plan ran.
    #[schema(rename = "approved")]
    Approved,
    /// Rejected: nothing ran.
    #[schema(rename = "rejected")]
    Rejected,
    /// Nobody answered within the TTL.
    #[schema(rename = "expired")]
    Expired,
}

/// A suggested fix waiting for a human, or decided (`selfheal_core::Approval`).
#[derive(ToSchema)]
#[schema(as = Approval)]
pub(crate) struct ApprovalSchema {
    /// Its id.
    id: Uuid,
    /// The incident.
    incident: Uuid,
    /// The pattern, if one matched.
    pattern: Option<String>,
    /// The plan to run if approved.
    #[schema(value_type = Object)]
    plan: serde_json::Value,
    /// Why approval is needed.
    reason: String,
    /// The confidence at decision time.
    confidence: f64,
    /// When it was asked (RFC 3339).
    requested_at: String,
    /// The answer, once given.
    state: ApprovalStateSchema,
    /// Who answered.
    decided_by: Option<String>,
    /// When it was answered or expired (RFC 3339).
    decided_at: Option<String>,
    /// The reason given with a rejection, or why it expired.
    note: Option<String>,
}

/// A silence the healer holds and what it suppressed (`selfheal_core::SilenceStatus`).
#[derive(ToSchema)]
#[schema(as = SilenceStatus)]
pub(crate) struct SilenceStatusSchema {
    /// Its id.
    id: Uuid,
    /// The silence: scope, start, end, reason.
    #[schema(value_type = Object)]
    silence: serde_json::Value,
    /// Who added it.
    created_by: String,
    /// Whether it is in force now.
    active: bool,
    /// Signals it suppressed.
    suppressed: u64,
}

/// Where the safety envelope stands (`selfheal_core::SafetyStatus`).
#[derive(ToSchema)]
#[schema(as = SafetyStatus)]
pub(crate) struct SafetyStatusSchema {
    /// A storm is on: automatic remediation stopped until health recovers.
    storm: bool,
    /// Targets with an open incident of their own.
    unhealthy_targets: Vec<String>,
    /// Targets the healer has heard of.
    known_targets: u64,
    /// The breaker tripped: nothing runs until re-armed.
    breaker_open: bool,
    /// The whole healer runs dry.
    dry_run: bool,
    /// Silences in force now.
    silences: u64,
}

/// A target's health (`selfheal_core::Health`).
#[derive(ToSchema)]
#[schema(as = Health)]
pub(crate) struct HealthSchema {
    /// Score in 0..=100.
    #[schema(minimum = 0, maximum = 100)]
    score: u8,
    /// What the check saw.
    detail: String,
    /// Whether the probe passed.
    passed: bool,
}

/// The health of every target with a verifier, by target.
#[derive(ToSchema)]
#[schema(as = HealthByTarget)]
pub(crate) struct HealthByTargetSchema(BTreeMap<String, HealthSchema>);

/// A copy a strategy took before it changed something (`selfheal_core::Backup`).
#[derive(ToSchema)]
#[schema(as = Backup)]
pub(crate) struct BackupSchema {
    /// Its id.
    id: Uuid,
    /// The strategy that took it.
    strategy: String,
    /// The target the change was for.
    target: String,
    /// What was copied: a file's path, a key.
    location: String,
    /// Size of the copy in bytes.
    size: u64,
    /// When it was taken (RFC 3339).
    created_at: String,
    /// When it was last restored, if ever.
    restored_at: Option<String>,
}

/// One audit record (`selfheal_core::AuditRecord`).
#[derive(ToSchema)]
#[schema(as = AuditRecord)]
pub(crate) struct AuditRecordSchema {
    /// Position in the chain, from 1.
    seq: u64,
    /// When (RFC 3339).
    at: String,
    /// `self_heal.auto`, `self_heal.pattern_added`, …
    event_type: String,
    /// Who: `selfheal` or the operator's name.
    actor: String,
    /// The incident, if any.
    incident: Option<Uuid>,
    /// The pattern, if any.
    pattern: Option<String>,
    /// The confidence at the time, if any.
    confidence: Option<f64>,
    /// The action (strategy) concerned, if any.
    action: Option<String>,
    /// The result in a word or a sentence.
    result: String,
    /// The NIST controls this record serves.
    controls: Vec<String>,
    /// Extra context.
    detail: serde_json::Value,
    /// Hash of the previous record.
    prev_hash: String,
    /// Hash of this record.
    hash: String,
}
