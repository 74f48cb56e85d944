//! JSON errors with the status that fits.
//! (Skeleton: the admin-API helper completes it.)

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// An error answered as `{"error": "...", "status": N}`.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// What went wrong and what to do.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}
