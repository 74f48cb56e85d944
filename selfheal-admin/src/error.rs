//! JSON errors with the status that fits: core errors by kind, request rejections by
//! what was wrong with the request.

use axum::{
    Json,
    extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use selfheal_core::ErrorKind;
use serde::Serialize;
use utoipa::ToSchema;

/// An error answered as `{"status": N, "error": "..."}`, with `"field"` naming the
/// part of the request that is wrong when it is known.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// What went wrong and what to do.
    pub error: String,
    /// The field of the body (a path such as `fixes[0].strategy`) or the query
    /// parameter that is wrong, when the error is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// An error with `status` and a message saying what to do.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status: status.as_u16(),
            error: error.into(),
            field: None,
        }
    }

    /// The same error about `field`.
    pub(crate) fn with_field(mut self, field: Option<String>) -> Self {
        self.field = field;
        self
    }

    pub(crate) fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }

    /// A 400 about one field; the message starts with the field's name.
    pub(crate) fn bad_field(field: &str, error: impl Into<String>) -> Self {
        Self::bad_request(error).with_field(Some(field.to_owned()))
    }

    pub(crate) fn not_found(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error)
    }

    /// A 413: the body is over `AdminConfig::body_limit`.
    fn too_large() -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is larger than this API accepts \
             (AdminConfig::body_limit, 1 MiB by default); send less",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The status of a core error's kind: what the caller got wrong is a 4xx, what the
/// healer could not do a 5xx with the core's message (which says what to do).
pub(crate) fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        // The healer said no in its current state (an approval nothing waits for any
        // more): a conflict with the state, not an outage.
        ErrorKind::Closed => StatusCode::CONFLICT,
        // A backend that did not answer, or not in time: retrying later may help.
        ErrorKind::Unavailable | ErrorKind::Timeout => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<selfheal_core::Error> for ApiError {
    fn from(e: selfheal_core::Error) -> Self {
        let status = status_of(e.kind());
        if status.is_server_error() {
            tracing::warn!(error = %e, status = status.as_u16(), "admin request failed");
        }
        ApiError::new(status, e.message())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match &rejection {
            // DefaultBodyLimit's refusal, surfaced through the body read.
            r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => return ApiError::too_large(),
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            // Everything else the caller sent wrong is a 400: axum's 422 for
            // well-formed JSON of the wrong shape is folded in, as the contract says.
            _ if rejection.status().is_client_error() => StatusCode::BAD_REQUEST,
            _ => rejection.status(),
        };
        // body_text carries serde's message with the path of the field that is wrong
        // (`fixes[0].strategy: invalid type: ...`).
        let text = rejection.body_text();
        let field = field_of(&text);
        ApiError::new(status, text).with_field(field)
    }
}

/// The field a deserialization message is about: serde's path before the message
/// (`…: fixes[0].strategy: invalid type …`), or the name of a missing field.
pub(crate) fn field_of(text: &str) -> Option<String> {
    let detail = text.split_once("target type: ").map_or(text, |(_, d)| d);
    let (path, message) = match detail.split_once(": ") {
        Some((p, m)) if !p.contains(' ') => (Some(p).filter(|p| *p != "."), m),
        _ => (None, detail),
    };
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|m| m.split_once('`'))
        .map(|(name, _)| name);
    match (path, missing) {
        (Some(p), Some(name)) => Some(format!("{p}.{name}")),
        (None, Some(name)) => Some(name.to_owned()),
        (Some(p), None) => Some(p.to_owned()),
        (None, None) => None,
    }
}

/// A raw body that could not be read (over the limit, or broken off).
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::too_large();
        }
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        // `Failed to deserialize query string: limit: invalid digit found in string`
        let text = rejection.body_text();
        let field = text
            .split_once("query string: ")
            .and_then(|(_, d)| d.split_once(": "))
            .map(|(f, _)| f)
            .filter(|f| !f.contains(' '))
            .map(str::to_owned);
        ApiError::bad_request(text).with_field(field)
    }
}

#[cfg(test)]
mod tests {
    use selfheal_core::Error;

    use super::*;

    #[test]
    fn the_field_is_read_from_serdes_message() {
        let prefix = "Failed to deserialize the JSON body into the target type: ";
        for (message, field) in [
            (
                "fixes[0].strategy: invalid type: integer `7`, expected a string at line 1 column 45",
                Some("fixes[0].strategy"),
            ),
            (
                "on: invalid type: string \"yes\", expected a boolean at line 1 column 11",
                Some("on"),
            ),
            ("missing field `on` at line 1 column 2", Some("on")),
            (
                "fixes[0]: missing field `strategy` at line 1 column 30",
                Some("fixes[0].strategy"),
            ),
            ("expected value at line 1 column 1", None),
        ] {
            assert_eq!(
                field_of(&format!("{prefix}{message}")).as_deref(),
                field,
                "{message}"
            );
        }
    }

    #[test]
    fn core_kinds_map_to_statuses_and_keep_the_message() {
        for (kind, status) in [
            (ErrorKind::NotFound, 404),
            (ErrorKind::InvalidInput, 400),
            (ErrorKind::Conflict, 409),
            (ErrorKind::Closed, 409),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Timeout, 503),
            (ErrorKind::Execution, 500),
            (ErrorKind::Internal, 500),
        ] {
            let e = ApiError::from(Error::new(kind, "what to do"));
            assert_eq!(
                (e.status, e.error.as_str()),
                (status, "what to do"),
                "{kind:?}"
            );
        }
    }
}
