//! Approvals: the pending ones, and answering one.

use axum::{Json, extract::State};
use selfheal_core::{Approval, Uuid};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Body, Path};
use super::schemas::ApprovalSchema;
use crate::{Principal, error::ApiError, state::AppState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(pending_approvals))
        .routes(routes!(approve))
        .routes(routes!(reject))
}

/// Approvals waiting for an answer, oldest first.
#[utoipa::path(get, path = "/approvals", tag = "approvals",
    responses((status = 200, description = "pending approvals", body = [ApprovalSchema], links(
        ("ApproveOldest" = (operation_id = "approve",
            parameters(("id" = "$response.body#/0/id")))),
        ("RejectOldest" = (operation_id = "reject",
            parameters(("id" = "$response.body#/0/id"))))))))]
async fn pending_approvals(State(s): State<AppState>) -> Result<Json<Vec<Approval>>, ApiError> {
    Ok(Json(s.admin().pending_approvals().await?))
}

/// Approves a pending fix; it runs (subject to the guards).
#[utoipa::path(post, path = "/approvals/{id}/approve", tag = "approvals",
    params(("id" = Uuid, Path, description = "the approval's id")),
    responses(
        (status = 200, description = "the approval, decided", body = ApprovalSchema),
        (status = 404, description = "no approval with that id", body = ApiError),
        (status = 409, description = "decided or expired already, or nothing waits for it any more", body = ApiError)))]
async fn approve(
    State(s): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<Approval>, ApiError> {
    Ok(Json(s.admin().approve(id, &principal.name).await?))
}

/// Why a fix is rejected.
#[derive(Deserialize, ToSchema)]
pub(crate) struct RejectBody {
    /// The reason, recorded in the audit trail.
    reason: String,
}

/// Rejects a pending fix; nothing runs and the incident closes.
#[utoipa::path(post, path = "/approvals/{id}/reject", tag = "approvals",
    params(("id" = Uuid, Path, description = "the approval's id")),
    request_body = RejectBody,
    responses(
        (status = 200, description = "the approval, decided", body = ApprovalSchema),
        (status = 404, description = "no approval with that id", body = ApiError),
        (status = 409, description = "decided or expired already, or nothing waits for it any more", body = ApiError)))]
async fn reject(
    State(s): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
    Body(body): Body<RejectBody>,
) -> Result<Json<Approval>, ApiError> {
    Ok(Json(
        s.admin().reject(id, &principal.name, &body.reason).await?,
    ))
}
