//! The OpenAPI 3 document of the API, served at `/openapi.json` to anyone.
//!
//! It is generated from the handlers' own `#[utoipa::path]` annotations, collected by
//! the same `routes!` lists that register them, so the document and the router cannot
//! drift apart. The error answers every operation shares (401, 403, 400, 413, …) are
//! added here, from what the middleware and extractors really do.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{OriginalUri, Request},
    routing::get,
};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, Content, HttpMethod, RefOr, ResponseBuilder, Server,
        header::HeaderBuilder,
        path::Operation,
        schema::{ObjectBuilder, Ref, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::{error::ApiError, state::AppState};

/// The document's fixed parts; the paths come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "selfheal admin API",
        description = "The operator surface of selfheal: patterns, incidents, approvals, \
                       silences, dry run, safety, health, backups, reports and the audit trail. \
                       Viewers read; operators act. Errors are `{\"status\": N, \"error\": \"...\"}`."
    ),
    modifiers(&Security),
    security(("bearer" = [])),
    components(schemas(ApiError))
)]
pub(crate) struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from SELFHEAL_ADMIN_TOKENS (role:name:secret): viewer reads, operator also acts",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds the answers the middleware and extractors give to the operations they apply to
/// (applied to the finished document, once utoipa-axum has collected the paths).
struct SharedErrors;

fn error(description: &str) -> RefOr<openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ApiError"))),
        )
        .build()
        .into()
}

fn unauthorized() -> RefOr<openapi::Response> {
    ResponseBuilder::new()
        .description("no bearer token, or an unknown one")
        .header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .description(Some("`Bearer`"))
                .build(),
        )
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ApiError"))),
        )
        .build()
        .into()
}

/// Adds the shared answers to `op`; `acts` says whether a mutation needs the operator
/// role (alert webhooks take a viewer's token too).
fn add_shared(method: HttpMethod, op: &mut Operation, acts: bool) {
    let responses = &mut op.responses.responses;
    let mut add = |code: &str, response: RefOr<openapi::Response>| {
        responses.entry(code.to_owned()).or_insert(response);
    };
    add("401", unauthorized());
    add(
        "503",
        error("no auth is configured (the message says how), or the store is unavailable"),
    );
    add("500", error("the healer or its store failed"));
    if acts && !matches!(method, HttpMethod::Get | HttpMethod::Head) {
        add(
            "403",
            error("the token is a viewer's; this needs the operator role"),
        );
    }
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let has_body = op.request_body.is_some();
    if has_params || has_body {
        add(
            "400",
            error("malformed request: the message names the field (or the regex engine's error)"),
        );
    }
    if has_body {
        add(
            "413",
            error("the body is over the limit (1 MiB by default)"),
        );
        add("415", error("the body is not sent as application/json"));
    }
}

impl Modify for SharedErrors {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let acts = !path.starts_with(crate::auth::ALERTS);
            for (method, op) in [
                (HttpMethod::Get, &mut item.get),
                (HttpMethod::Put, &mut item.put),
                (HttpMethod::Post, &mut item.post),
                (HttpMethod::Delete, &mut item.delete),
                (HttpMethod::Patch, &mut item.patch),
            ] {
                if let Some(op) = op {
                    add_shared(method, op, acts);
                }
            }
        }
    }
}

/// `/openapi.json`: `doc` with the server it is reached at, the configured public URL
/// or else the path the host mounted the router under.
pub(crate) fn routes(
    mut doc: openapi::OpenApi,
    public_base_url: Option<String>,
) -> Router<AppState> {
    SharedErrors.modify(&mut doc);
    let doc = Arc::new(doc);
    Router::new().route(
        "/openapi.json",
        get(
            move |OriginalUri(original): OriginalUri, request: Request| {
                let doc = Arc::clone(&doc);
                let base = public_base_url.clone();
                async move {
                    let base = base.unwrap_or_else(|| {
                        let full = original.path();
                        let prefix = full.strip_suffix(request.uri().path()).unwrap_or("");
                        if prefix.is_empty() {
                            "/".to_owned()
                        } else {
                            prefix.to_owned()
                        }
                    });
                    let mut doc = (*doc).clone();
                    doc.servers = Some(vec![Server::new(base)]);
                    Json(doc)
                }
            },
        ),
    )
}
