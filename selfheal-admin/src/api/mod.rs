//! The JSON API under `/api`: one endpoint per operator verb, one file per concern.
//! Handlers stay thin: they parse, call the healer with the principal as the actor,
//! and answer; the logic lives in `selfheal-core`.

mod alerts;
mod approvals;
mod audit;
mod backups;
mod control;
mod extract;
mod health;
mod incidents;
mod patterns;
mod reports;
mod schemas;
mod status;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// Every endpoint of the API, with its OpenAPI description.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(status::routes())
        .merge(patterns::routes())
        .merge(incidents::routes())
        .merge(approvals::routes())
        .merge(control::routes())
        .merge(health::routes())
        .merge(backups::routes())
        .merge(reports::routes())
        .merge(audit::routes())
        .merge(alerts::routes())
}
