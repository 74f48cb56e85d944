//! The JSON API: one endpoint per operator verb.
//! (Skeleton: the admin-API helper completes it.)

use axum::Router;

use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
