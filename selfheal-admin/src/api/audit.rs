//! The audit trail: pages of it, and a check of its hash chain.

use axum::{Json, extract::State};
use selfheal_core::{AuditRecord, verify_chain};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Query;
use super::schemas::AuditRecordSchema;
use crate::{error::ApiError, state::AppState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(audit_log))
        .routes(routes!(verify_audit))
}

/// Which records.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// Only records before this position (the `seq` of the oldest record of the page
    /// before), to page back through the trail.
    #[param(minimum = 1)]
    before_seq: Option<i64>,
}

/// The newest audit records (before `before_seq` when given), oldest first.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "audit records, oldest first", body = [AuditRecordSchema])))]
async fn audit_log(
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_field(
            "limit",
            format!("limit: {limit} is out of range; ask for 1 to 10000"),
        ));
    }
    let limit = limit as usize;
    let Some(before) = q.before_seq else {
        return Ok(Json(s.admin().audit_log(limit).await?));
    };
    let Ok(before) = u64::try_from(before) else {
        return Err(ApiError::bad_field(
            "before_seq",
            "before_seq: positions start at 1; give the seq of a record",
        ));
    };
    if before == 0 {
        return Err(ApiError::bad_field(
            "before_seq",
            "before_seq: positions start at 1; give the seq of a record",
        ));
    }
    // The store reads the newest records: read back far enough to cover the page
    // (positions are consecutive, so at most `newest - before + 1` come after it).
    let newest = s.admin().audit_log(1).await?.first().map_or(0, |r| r.seq);
    let after =
        usize::try_from(newest.saturating_sub(before).saturating_add(1)).unwrap_or(usize::MAX);
    let mut records = s.admin().audit_log(after.saturating_add(limit)).await?;
    records.retain(|r| r.seq < before);
    let skip = records.len().saturating_sub(limit);
    Ok(Json(records.split_off(skip)))
}

/// Where the chain breaks.
#[derive(Serialize, ToSchema)]
pub(crate) struct BrokenLink {
    /// The first record that does not fit.
    seq: u64,
    /// What is wrong with it.
    reason: String,
}

/// The verdict on the audit chain.
#[derive(Serialize, ToSchema)]
pub(crate) struct Verification {
    /// Whether every record chains to the one before and its hash matches its content.
    ok: bool,
    /// How many records were checked.
    records: usize,
    /// The first broken link, `null` when the chain is whole.
    first_broken: Option<BrokenLink>,
}

/// Verifies the whole audit chain and names the first broken link.
#[utoipa::path(get, path = "/audit/verify", tag = "audit",
    responses((status = 200, description = "the verdict", body = Verification)))]
async fn verify_audit(State(s): State<AppState>) -> Result<Json<Verification>, ApiError> {
    let records = s.admin().audit_log(usize::MAX).await?;
    let verdict = verify_chain(&records);
    Ok(Json(Verification {
        ok: verdict.is_ok(),
        records: records.len(),
        first_broken: verdict.err().map(|e| BrokenLink {
            seq: e.seq,
            reason: e.reason.to_owned(),
        }),
    }))
}
