//! Who is calling: bearer tokens or the host's own auth, and two roles.
//!
//! Every request but `/openapi.json` (and `/metrics` when it is
//! [`MetricsAuth::Open`](crate::MetricsAuth::Open)) needs a principal: from the host's
//! auth when [`AdminConfig::host_auth`](crate::AdminConfig::host_auth) trusts it, else
//! from an `Authorization: Bearer` token. Viewers read; only operators change anything.
//! No cookies are read or set. Alert webhooks (`/api/alerts/…`) take a viewer's token
//! too: an alert is an observation, and the sender should hold no token that can act.
//!
//! The dashboard's page and assets (`/`, `/assets/…`) are public: they hold no data,
//! and a browser cannot attach a bearer token to a page load. The page asks for a token
//! and sends it with every API call. `/events` also takes it as `?access_token=`,
//! because a browser's `EventSource` cannot send headers.

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::{
    config::{AdminConfig, MetricsAuth},
    error::ApiError,
    state::AppState,
};

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

/// Served to anyone, even before auth is configured.
const OPENAPI: &str = "/openapi.json";

/// The dashboard's static assets, public (like its page, `/`) once auth is configured.
const ASSETS: &str = "/assets/";

/// The pages behind the signed Approve / Reject links of notifications.
const LINKS: &str = "/links/";

/// The one path that also takes its token as `?access_token=` (for `EventSource`).
const EVENTS: &str = "/events";

/// Alert webhooks: posting an alert is an observation, not an operator's act, so a
/// viewer's token may (and the system sending alerts never needs one that can act).
pub(crate) const ALERTS: &str = "/api/alerts/";

/// The auth middleware: answers 503 until auth is configured, 401 without a known
/// principal, 403 to a viewer calling a mutation; otherwise puts the [`Principal`] in
/// the request's extensions for the handlers.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    match admit(&state.config, &request) {
        Err(e) => e.into_response(),
        Ok(None) => next.run(request).await,
        Ok(Some(principal)) => {
            tracing::debug!(principal = %principal.name, method = %request.method(), path = %request.uri().path(), "admin request");
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
    }
}

/// Who is calling and whether they may: `Ok(None)` for a public path, `Ok(Some(..))`
/// for an authenticated caller allowed to make this request, `Err` with the answer
/// otherwise.
fn admit(config: &AdminConfig, request: &Request) -> Result<Option<Principal>, ApiError> {
    let path = request.uri().path();
    if path == OPENAPI || (path == "/metrics" && config.metrics == MetricsAuth::Open) {
        return Ok(None);
    }
    if !config.auth_configured() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the selfheal admin API has no auth configured, so it serves nothing; set \
             SELFHEAL_ADMIN_TOKENS=role:name:secret,... (AdminConfig::from_env), add tokens \
             with AdminConfig::token, or trust your own auth with AdminConfig::host_auth",
        ));
    }
    if request.method() == Method::GET && (path == "/" || path.starts_with(ASSETS)) {
        return Ok(None);
    }
    // An approval link's signed token is its own credential (see links.rs).
    if path.starts_with(LINKS) {
        return Ok(None);
    }
    let from_host = config
        .host_auth
        .then(|| request.extensions().get::<Principal>().cloned())
        .flatten();
    let principal = match from_host {
        Some(p) => p,
        None => {
            let token = bearer(request)
                .or_else(|| (path == EVENTS).then(|| query_token(request)).flatten());
            let token = token.ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "no bearer token; send `Authorization: Bearer <token>` with a viewer or \
                     operator token",
                )
            })?;
            config.principal_of(token).ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unknown bearer token; use a token configured in SELFHEAL_ADMIN_TOKENS \
                     (or AdminConfig::token)",
                )
            })?
        }
    };
    if is_mutation(request.method()) && principal.role < Role::Operator && !path.starts_with(ALERTS)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} {} changes the healer and needs the operator role; `{}` is a viewer",
                request.method(),
                path,
                principal.name
            ),
        ));
    }
    Ok(Some(principal))
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

/// The `access_token` query parameter (percent-decoding not needed: tokens are
/// written in URL-safe characters; one that is not simply does not match).
fn query_token(request: &Request) -> Option<&str> {
    request
        .uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("access_token="))
        .filter(|t| !t.is_empty())
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

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn request(method: Method, path: &str, token: Option<&str>) -> Request {
        let mut r = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        r.body(Body::empty()).unwrap()
    }

    fn status(result: Result<Option<Principal>, ApiError>) -> u16 {
        result.err().map_or(200, |e| e.status)
    }

    #[test]
    fn metrics_follow_their_own_setting() {
        let secret = format!("{:x}", std::process::id() as u128 * 7919);
        let tokens = AdminConfig::default().token(Role::Viewer, "v", &secret);
        let get = |c: &AdminConfig, t| status(admit(c, &request(Method::GET, "/metrics", t)));
        assert_eq!(get(&tokens, None), 401);
        assert_eq!(get(&tokens, Some(&secret)), 200);
        let open = AdminConfig::default().metrics(MetricsAuth::Open);
        assert_eq!(get(&open, None), 200, "open even with no auth configured");
        assert_eq!(
            status(admit(&open, &request(Method::GET, "/api/status", None))),
            503,
            "the rest still waits for auth"
        );
        assert_eq!(
            status(admit(
                &AdminConfig::default(),
                &request(Method::GET, "/metrics", None)
            )),
            503
        );
    }

    #[test]
    fn the_dashboard_is_public_and_events_take_a_query_token() {
        let secret = format!("{:x}", std::process::id() as u128 * 7_727);
        let c = AdminConfig::default().token(Role::Viewer, "v", &secret);
        for path in ["/", "/assets/app.js", "/openapi.json"] {
            assert_eq!(
                status(admit(&c, &request(Method::GET, path, None))),
                200,
                "{path}"
            );
        }
        assert_eq!(
            status(admit(&c, &request(Method::GET, "/events", None))),
            401
        );
        let with_query = format!("/events?last_event_id=3&access_token={secret}");
        assert_eq!(
            status(admit(&c, &request(Method::GET, &with_query, None))),
            200
        );
        let elsewhere = format!("/api/status?access_token={secret}");
        assert_eq!(
            status(admit(&c, &request(Method::GET, &elsewhere, None))),
            401,
            "only /events takes a token in the URL"
        );
    }

    #[test]
    fn roles_and_schemes() {
        let secret = format!("{:x}", std::process::id() as u128 * 104_729);
        let c = AdminConfig::default().token(Role::Viewer, "v", &secret);
        assert_eq!(
            status(admit(
                &c,
                &request(Method::HEAD, "/api/status", Some(&secret))
            )),
            200
        );
        assert_eq!(
            status(admit(
                &c,
                &request(Method::DELETE, "/api/silences/x", Some(&secret))
            )),
            403
        );
        let mut lower = request(Method::GET, "/api/status", None);
        lower.headers_mut().insert(
            header::AUTHORIZATION,
            format!("bearer {secret}").parse().unwrap(),
        );
        assert_eq!(
            status(admit(&c, &lower)),
            200,
            "the scheme is case-insensitive"
        );
        let mut basic = request(Method::GET, "/api/status", None);
        basic
            .headers_mut()
            .insert(header::AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
        assert_eq!(status(admit(&c, &basic)), 401);
    }
}
