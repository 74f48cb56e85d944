//! The OpenAPI 3 document of the API, served at `/openapi.json`.
//! (Skeleton: the admin-API helper completes it.)

use axum::Router;

use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
