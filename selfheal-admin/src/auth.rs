//! Who is calling: bearer tokens or the host's own auth, and two roles.
//!
//! Every request but `/openapi.json` (and `/metrics` when it is
//! [`MetricsAuth::Open`](crate::MetricsAuth::Open)) needs a principal: from the host's
//! auth when [`AdminConfig::host_auth`](crate::AdminConfig::host_auth) trusts it, else
//! from an `Authorization: Bearer` token. Viewers read; only operators change anything.
//! No cookies are read or set.

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::{config::MetricsAuth, error::ApiError, state::AppState};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Read and act.
    Operator,
}

/// The authenticated caller: the actor of every change it makes.
///
/// A host that authenticates on its own puts one in the request's extensions (with
/// [`AdminConfig::host_auth`](crate::AdminConfig::host_auth) set) and the router uses it
/// as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Who (goes to the audit trail).
    pub name: String,
    /// What they may do.
    pub role: Role,
}

/// Paths served to anyone, before any auth check.
const PUBLIC: &[&str] = &["/openapi.json"];

/// The auth middleware: answers 503 until auth is configured, 401 without a known
/// principal, 403 to a viewer calling a mutation; otherwise puts the [`Principal`] in
/// the request's extensions for the handlers.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if PUBLIC.contains(&path) || (path == "/metrics" && state.config.metrics == MetricsAuth::Open) {
        return next.run(request).await;
    }
    let config = &state.config;
    if !config.auth_configured() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the selfheal admin API has no auth configured, so it serves nothing; set \
             SELFHEAL_ADMIN_TOKENS=role:name:secret,... (AdminConfig::from_env), add tokens \
             with AdminConfig::token, or trust your own auth with AdminConfig::host_auth",
        )
        .into_response();
    }
    let from_host = config
        .host_auth
        .then(|| request.extensions().get::<Principal>().cloned())
        .flatten();
    let principal = match from_host {
        Some(p) => p,
        None => match bearer(&request) {
            None => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "no bearer token; send `Authorization: Bearer <token>` with a viewer or \
                     operator token",
                )
                .into_response();
            }
            Some(token) => match config.principal_of(token) {
                Some(p) => p,
                None => {
                    return ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unknown bearer token; use a token configured in SELFHEAL_ADMIN_TOKENS \
                         (or AdminConfig::token)",
                    )
                    .into_response();
                }
            },
        },
    };
    if is_mutation(request.method()) && principal.role < Role::Operator {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} {} changes the healer and needs the operator role; `{}` is a viewer",
                request.method(),
                request.uri().path(),
                principal.name
            ),
        )
        .into_response();
    }
    tracing::debug!(principal = %principal.name, method = %request.method(), path = %request.uri().path(), "admin request");
    request.extensions_mut().insert(principal);
    next.run(request).await
}

fn is_mutation(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "no authenticated principal; send `Authorization: Bearer <token>`",
            )
        })
    }
}
