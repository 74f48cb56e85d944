//! The dashboard at `/`: plain HTML, CSS and JavaScript embedded in the crate.
//! (Skeleton: the live-surface helper completes it.)

use axum::Router;

use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
