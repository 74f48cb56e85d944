//! The operator surface of [selfheal](https://docs.rs/selfheal): one axum [`Router`]
//! the host nests wherever it likes.
//!
//! ```no_run
//! # async fn run(healer: selfheal_core::Healer) -> std::io::Result<()> {
//! use selfheal_admin::{AdminConfig, router};
//!
//! let admin = AdminConfig::from_env()?; // SELFHEAL_ADMIN_TOKENS="operator:alice:…,viewer:grafana:…"
//! let app = axum::Router::new().nest("/selfheal", router(healer, admin));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! Under the mount point:
//!
//! | path | what | who |
//! |---|---|---|
//! | `/` | the dashboard (assets embedded, works offline); the page holds no data and asks for a token | anyone, once auth is configured |
//! | `/api/…` | the JSON API, one endpoint per operator verb | viewer reads, operator acts |
//! | `/events` | every `HealingEvent` as server-sent events, `Last-Event-ID` resume | viewer (token also as `?access_token=`, for `EventSource`) |
//! | `/metrics` | Prometheus text format | its own setting ([`AdminConfig::metrics`]) |
//! | `/openapi.json` | the OpenAPI 3 document of the API | anyone, always |
//!
//! With the `alertmanager` feature, `POST /api/alerts/alertmanager` (with or without a
//! trailing `/`) takes Alertmanager's webhook and hands it to the receiver given to
//! `AdminConfig::alertmanager` (the healer's `selfheal_sources::alertmanager::Alertmanager`
//! source). Any token may post
//! alerts, a viewer's too: Alertmanager then holds no token that can act.
//!
//! Nothing else is served until auth is configured (503 saying how): bearer tokens
//! ([`AdminConfig::token`], [`AdminConfig::from_env`] reading `SELFHEAL_ADMIN_TOKENS` as
//! `role:name:secret,...`), or the host's own auth ([`AdminConfig::host_auth`]) putting
//! a [`Principal`] in the request's extensions. The principal's name is the actor of
//! every change in the audit trail. Errors are JSON, `{"status": N, "error": "..."}`:
//! 401 without a known token, 403 for a viewer's mutation, 400 naming the malformed
//! field, 404, 409, 413 over [`AdminConfig::body_limit`].
#![deny(missing_docs)]

mod api;
mod auth;
mod config;
mod dashboard;
mod error;
mod events;
mod links;
mod metrics;
mod openapi;
mod state;

use axum::{Router, extract::DefaultBodyLimit};
use selfheal_core::Healer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use auth::{Principal, Role};
pub use config::{
    AdminConfig, DEFAULT_BODY_LIMIT, MIN_SECRET_LEN, MetricsAuth, TOKENS_ENV, TokenError,
};
pub use error::ApiError;

/// The operator surface of `healer`, to nest under a path of the host's router.
///
/// Starts the background work that feeds live events and metrics (it ends when the
/// healer shuts down). Must be called inside a Tokio runtime.
pub fn router(healer: Healer, config: AdminConfig) -> Router {
    let body_limit = config.body_limit;
    let public_base_url = config.public_base_url.clone();
    let state = state::AppState::new(healer, config);
    let (api, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/api", api::routes())
        .split_for_parts();
    Router::new()
        .merge(dashboard::routes())
        .merge(api)
        .merge(events::routes())
        .merge(links::routes())
        .merge(metrics::routes())
        .merge(openapi::routes(doc, public_base_url))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Any other path under the mount point: a JSON 404 like every other error.
async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "nothing at {}; the API is listed in /openapi.json under the mount point, besides \
         /, /events, /metrics and /links/",
        uri.path()
    ))
}
