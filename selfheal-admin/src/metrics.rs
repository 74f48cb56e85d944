//! Prometheus metrics at `/metrics`.
//! (Skeleton: the live-surface helper completes it.)

use std::sync::Arc;

use axum::Router;
use selfheal_core::Healer;

use crate::state::AppState;

/// The registry and what feeds it.
pub(crate) struct Metrics {}

impl Metrics {
    pub(crate) fn start(_healer: &Healer) -> Arc<Self> {
        Arc::new(Self {})
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
