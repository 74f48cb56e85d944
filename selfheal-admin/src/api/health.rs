//! Health: every target's, and a check of one now.

use std::collections::BTreeMap;

use axum::{Json, extract::State};
use selfheal_core::Health;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Path;
use super::schemas::{HealthByTargetSchema, HealthSchema};
use crate::{error::ApiError, state::AppState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(check_health))
}

/// The health of every target with a verifier (a verifier that cannot check reports
/// score 0 with the reason).
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "health by target", body = HealthByTargetSchema)))]
async fn health(State(s): State<AppState>) -> Json<BTreeMap<String, Health>> {
    Json(s.admin().health().await)
}

/// Checks one target now.
#[utoipa::path(post, path = "/health/{target}/check", tag = "health",
    params(("target" = String, Path, description = "the target")),
    responses(
        (status = 200, description = "its health now", body = HealthSchema),
        (status = 404, description = "no verifier for that target", body = ApiError)))]
async fn check_health(
    State(s): State<AppState>,
    Path(target): Path<String>,
) -> Result<Json<Health>, ApiError> {
    Ok(Json(s.admin().check(&target).await?))
}
