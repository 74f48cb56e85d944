//! Backups strategies took: list and restore.

use axum::{Json, extract::State};
use selfheal_core::{Backup, Uuid};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Path;
use super::schemas::BackupSchema;
use crate::{Principal, error::ApiError, state::AppState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_backups))
        .routes(routes!(restore_backup))
}

/// Every backup the registered strategies hold, newest first.
#[utoipa::path(get, path = "/backups", tag = "backups",
    responses((status = 200, description = "backups", body = [BackupSchema], links(
        ("RestoreNewest" = (operation_id = "restore_backup",
            parameters(("id" = "$response.body#/0/id"))))))))]
async fn list_backups(State(s): State<AppState>) -> Result<Json<Vec<Backup>>, ApiError> {
    Ok(Json(s.admin().backups().await?))
}

/// Puts a backup back in place.
#[utoipa::path(post, path = "/backups/{id}/restore", tag = "backups",
    params(("id" = Uuid, Path, description = "the backup's id")),
    responses(
        (status = 200, description = "restored", body = BackupSchema),
        (status = 404, description = "no registered strategy holds that backup", body = ApiError)))]
async fn restore_backup(
    State(s): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<Backup>, ApiError> {
    Ok(Json(s.admin().restore_backup(id, &principal.name).await?))
}
