//! Where the healer stands: counters and the safety envelope, and the full stats.

use axum::{Json, extract::State};
use selfheal_core::{SafetyStatus, Stats};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::schemas::{SafetyStatusSchema, StatsSchema};
use crate::{error::ApiError, state::AppState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(stats))
}

/// The healer at a glance.
#[derive(Serialize, ToSchema)]
pub(crate) struct Status {
    /// This replica's id.
    replica: String,
    /// Signals handed to `observe`.
    observed: u64,
    /// Signals dropped because the queue was full.
    dropped: u64,
    /// Signals whose processing panicked.
    failed: u64,
    /// Store writes that failed.
    store_errors: u64,
    /// Incidents open right now.
    open_incidents: usize,
    /// Approvals waiting for an answer.
    pending_approvals: usize,
    /// The whole healer runs dry.
    dry_run: bool,
    /// Patterns in dry run on their own: they stay dry while the healer is live.
    dry_run_patterns: Vec<String>,
    /// The safety envelope.
    #[schema(value_type = SafetyStatusSchema)]
    safety: SafetyStatus,
}

/// Counters, open incidents, pending approvals and the safety envelope.
#[utoipa::path(get, path = "/status", tag = "status",
    responses((status = 200, description = "the healer at a glance", body = Status)))]
async fn status(State(s): State<AppState>) -> Result<Json<Status>, ApiError> {
    let (admin, healer) = (s.admin(), &s.healer);
    let pending_approvals = admin.pending_approvals().await?.len();
    Ok(Json(Status {
        replica: healer.replica().to_owned(),
        observed: healer.observed(),
        dropped: healer.dropped(),
        failed: healer.failed(),
        store_errors: healer.store_errors(),
        open_incidents: admin.open_incidents().len(),
        pending_approvals,
        dry_run: admin.is_dry_run(None),
        dry_run_patterns: admin.dry_run_patterns(),
        safety: admin.safety(),
    }))
}

/// Counters and per-pattern figures: incidents, occurrences, success rate, MTTR.
#[utoipa::path(get, path = "/stats", tag = "status",
    responses((status = 200, description = "the stats", body = StatsSchema)))]
async fn stats(State(s): State<AppState>) -> Result<Json<Stats>, ApiError> {
    Ok(Json(s.admin().stats().await?))
}
