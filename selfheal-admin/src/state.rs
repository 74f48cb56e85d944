//! What every handler shares.

use std::sync::Arc;

use selfheal_core::Healer;

use crate::{config::AdminConfig, events::Hub, metrics::Metrics};

/// Shared by every handler: the healer, the config, the live event hub and metrics.
#[derive(Clone)]
#[allow(dead_code)] // read by the handlers the skeleton's modules grow
pub(crate) struct AppState {
    pub(crate) healer: Healer,
    pub(crate) config: Arc<AdminConfig>,
    pub(crate) events: Arc<Hub>,
    pub(crate) metrics: Arc<Metrics>,
}

impl AppState {
    pub(crate) fn new(healer: Healer, config: AdminConfig) -> Self {
        let config = Arc::new(config);
        let events = Hub::start(&healer, &config);
        let metrics = Metrics::start(&healer);
        Self {
            healer,
            config,
            events,
            metrics,
        }
    }
}

impl AppState {
    /// The operator handle the API acts through (every change audited with its actor).
    pub(crate) fn admin(&self) -> selfheal_core::Admin {
        self.healer.admin()
    }
}
