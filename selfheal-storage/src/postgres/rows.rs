//! Rows as PostgreSQL returns them (native uuid, timestamptz, boolean; JSON read back
//! as text), and their conversion into domain types.

use chrono::{DateTime, Utc};
use selfheal_core::store::report::assemble_report;
use selfheal_core::{
    ActionOutcome, ActionRecord, Approval, AuditRecord, Incident, LastAction, OverviewRow,
    PatternReport,
};
use uuid::Uuid;

use crate::StorageError;
use crate::codec::{lossy, parse_duration_ns, parse_enum, parse_json, to_u8, to_u64};

pub(super) use crate::pattern_rows::{FixRow, PatternRow, assemble};

type Result<T, E = StorageError> = std::result::Result<T, E>;

#[derive(Debug, sqlx::FromRow)]
pub(super) struct IncidentRow {
    id: Uuid,
    target: String,
    fingerprint: String,
    template: String,
    stack: Option<String>,
    related: String,
    pattern: Option<String>,
    status: String,
    severity: String,
    occurrences: i64,
    samples: String,
    opened_at: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
    reason: String,
}

impl TryFrom<IncidentRow> for Incident {
    type Error = StorageError;

    fn try_from(r: IncidentRow) -> Result<Self> {
        Ok(Incident {
            id: r.id,
            related: parse_json("incidents.related", &r.related)?,
            status: parse_enum("incidents.status", &r.status)?,
            severity: parse_enum("incidents.severity", &r.severity)?,
            occurrences: to_u64("incidents.occurrences", r.occurrences)?,
            samples: parse_json("incidents.samples", &r.samples)?,
            opened_at: r.opened_at,
            last_seen: r.last_seen,
            closed_at: r.closed_at,
            target: r.target,
            fingerprint: r.fingerprint,
            template: r.template,
            stack: r.stack,
            pattern: r.pattern,
            reason: r.reason,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ActionRow {
    id: Uuid,
    incident: Uuid,
    pattern: Option<String>,
    strategy: String,
    target: String,
    preview: String,
    status: String,
    success: Option<bool>,
    exit_code: Option<i32>,
    stdout: Option<String>,
    stderr: Option<String>,
    duration_ns: Option<i64>,
    health_before: Option<i16>,
    health_after: Option<i16>,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

impl TryFrom<ActionRow> for ActionRecord {
    type Error = StorageError;

    fn try_from(r: ActionRow) -> Result<Self> {
        // The outcome is stored when `success` is set; its other columns come with it.
        let outcome = match r.success {
            None => None,
            Some(success) => Some(ActionOutcome {
                exit_code: r.exit_code,
                stdout: r.stdout.unwrap_or_default(),
                stderr: r.stderr.unwrap_or_default(),
                duration: parse_duration_ns("actions.duration_ns", r.duration_ns.unwrap_or(0))?,
                success,
            }),
        };
        Ok(ActionRecord {
            id: r.id,
            incident: r.incident,
            status: parse_enum("actions.status", &r.status)?,
            health_before: r
                .health_before
                .map(|h| to_u8("actions.health_before", i64::from(h)))
                .transpose()?,
            health_after: r
                .health_after
                .map(|h| to_u8("actions.health_after", i64::from(h)))
                .transpose()?,
            started_at: r.started_at,
            finished_at: r.finished_at,
            outcome,
            pattern: r.pattern,
            strategy: r.strategy,
            target: r.target,
            preview: r.preview,
            error: r.error,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ApprovalRow {
    id: Uuid,
    incident: Uuid,
    pattern: Option<String>,
    plan: String,
    reason: String,
    confidence: f64,
    requested_at: DateTime<Utc>,
    state: String,
    decided_by: Option<String>,
    decided_at: Option<DateTime<Utc>>,
    note: Option<String>,
}

impl TryFrom<ApprovalRow> for Approval {
    type Error = StorageError;

    fn try_from(r: ApprovalRow) -> Result<Self> {
        Ok(Approval {
            id: r.id,
            incident: r.incident,
            plan: parse_json("approvals.plan", &r.plan)?,
            requested_at: r.requested_at,
            state: parse_enum("approvals.state", &r.state)?,
            pattern: r.pattern,
            reason: r.reason,
            confidence: r.confidence,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            note: r.note,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct AuditRow {
    seq: i64,
    at: DateTime<Utc>,
    event_type: String,
    actor: String,
    incident: Option<Uuid>,
    pattern: Option<String>,
    confidence: Option<f64>,
    action: Option<String>,
    result: String,
    controls: String,
    detail: String,
    prev_hash: String,
    hash: String,
}

impl TryFrom<AuditRow> for AuditRecord {
    type Error = StorageError;

    /// Only the position must decode: see [`lossy`].
    fn try_from(r: AuditRow) -> Result<Self> {
        let seq = r.seq;
        let detail = lossy(seq, parse_json("audit_log.detail", &r.detail), || {
            serde_json::Value::String(r.detail.clone())
        });
        Ok(AuditRecord {
            seq: to_u64("audit_log.seq", r.seq)?,
            at: r.at,
            incident: r.incident,
            controls: lossy(seq, parse_json("audit_log.controls", &r.controls), Vec::new),
            detail,
            event_type: r.event_type,
            actor: r.actor,
            pattern: r.pattern,
            confidence: r.confidence,
            action: r.action,
            result: r.result,
            prev_hash: r.prev_hash,
            hash: r.hash,
        })
    }
}

/// Converts every row, failing on the first that does not convert.
pub(super) fn convert<R, T>(rows: Vec<R>) -> Result<Vec<T>>
where
    T: TryFrom<R, Error = StorageError>,
{
    rows.into_iter().map(T::try_from).collect()
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct OverviewDbRow {
    incident: Uuid,
    target: String,
    pattern: Option<String>,
    fingerprint: String,
    status: String,
    opened_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
    last_action: Option<Uuid>,
    last_strategy: Option<String>,
    last_action_status: Option<String>,
    last_action_at: Option<DateTime<Utc>>,
}

impl TryFrom<OverviewDbRow> for OverviewRow {
    type Error = StorageError;

    fn try_from(r: OverviewDbRow) -> Result<Self> {
        let last_action = match (
            r.last_action,
            r.last_strategy,
            r.last_action_status,
            r.last_action_at,
        ) {
            (Some(id), Some(strategy), Some(status), Some(at)) => Some(LastAction::new(
                id,
                strategy,
                parse_enum("actions.status", &status)?,
                at,
            )),
            _ => None,
        };
        Ok(OverviewRow::new(
            r.incident,
            r.target,
            r.pattern,
            r.fingerprint,
            parse_enum("incidents.status", &r.status)?,
            r.opened_at,
            r.closed_at,
            last_action,
        ))
    }
}

/// The per-pattern report from its aggregate rows.
pub(super) fn report(
    hourly: Vec<(String, DateTime<Utc>, i64, i64)>,
    strategies: Vec<(String, String, i64, i64)>,
    mttr: Vec<(String, i64, Option<f64>)>,
    outcomes: Vec<(String, String, i64)>,
) -> Result<Vec<PatternReport>> {
    let hourly = hourly
        .into_iter()
        .map(|(p, hour, n, occ)| {
            Ok((
                p,
                hour,
                to_u64("pattern_hourly.incidents", n)?,
                to_u64("pattern_hourly.occurrences", occ)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let strategies = strategies
        .into_iter()
        .map(|(p, s, ok, failed)| {
            Ok((
                p,
                s,
                to_u64("strategy_success.successes", ok)?,
                to_u64("strategy_success.failures", failed)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let mttr = mttr
        .into_iter()
        .map(|(p, n, ms)| Ok((p, to_u64("pattern_mttr.resolved", n)?, ms)))
        .collect::<Result<Vec<_>>>()?;
    let outcomes = outcomes
        .into_iter()
        .map(|(p, s, n)| Ok((p, s, to_u64("actions_by_outcome.actions", n)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(assemble_report(hourly, strategies, mttr, outcomes))
}
