//! Live events: every `HealingEvent` as server-sent events, with ids, a bounded replay
//! buffer for `Last-Event-ID`, keep-alives, and slow clients dropped.
//! (Skeleton: the live-surface helper completes it.)

use std::sync::Arc;

use axum::Router;
use selfheal_core::Healer;

use crate::{config::AdminConfig, state::AppState};

/// Numbers every event and keeps the last ones for clients that reconnect.
pub(crate) struct Hub {}

impl Hub {
    pub(crate) fn start(_healer: &Healer, _config: &AdminConfig) -> Arc<Self> {
        Arc::new(Self {})
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
