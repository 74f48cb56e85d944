//! The operator surface of [selfheal](https://docs.rs/selfheal): one axum [`Router`]
//! the host nests wherever it likes.
//!
//! ```no_run
//! # async fn run(healer: selfheal_core::Healer) -> std::io::Result<()> {
//! use selfheal_admin::{AdminConfig, router};
//!
//! let admin = AdminConfig::from_env()?; // SELFHEAL_ADMIN_TOKENS="operator:…,viewer:…"
//! let app = axum::Router::new().nest("/selfheal", router(healer, admin));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! Under the mount point:
//!
//! | path | what | role |
//! |---|---|---|
//! | `/` | the dashboard (assets embedded, works offline) | viewer |
//! | `/api/…` | the JSON API, one endpoint per operator verb | viewer reads, operator acts |
//! | `/events` | every `HealingEvent` as server-sent events, `Last-Event-ID` resume | viewer |
//! | `/metrics` | Prometheus text format | its own setting ([`AdminConfig::metrics`]) |
//! | `/openapi.json` | the OpenAPI 3 document of the API | none |
//!
//! Nothing is served until auth is configured: bearer tokens ([`AdminConfig::token`]),
//! or the host's own auth ([`AdminConfig::host_auth`]) putting a [`Principal`] in the
//! request's extensions.
#![deny(missing_docs)]

mod api;
mod auth;
mod config;
mod dashboard;
mod error;
mod events;
mod metrics;
mod openapi;
mod state;

use axum::Router;
use selfheal_core::Healer;

pub use auth::{Principal, Role};
pub use config::{AdminConfig, MetricsAuth};
pub use error::ApiError;

/// The operator surface of `healer`, to nest under a path of the host's router.
///
/// Starts the background work that feeds live events and metrics (it ends when the
/// healer shuts down). Must be called inside a Tokio runtime.
pub fn router(healer: Healer, config: AdminConfig) -> Router {
    let state = state::AppState::new(healer, config);
    Router::new()
        .merge(dashboard::routes())
        .nest("/api", api::routes())
        .merge(events::routes())
        .merge(metrics::routes())
        .merge(openapi::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state)
}
