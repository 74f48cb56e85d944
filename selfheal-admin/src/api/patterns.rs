//! Patterns: list with their figures, add, replace, enable, promote, demote, export and
//! import.

use axum::{Json, extract::State, http::StatusCode};
use selfheal_core::{Pattern, catalog::ImportOptions};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Body, Path, Query};
use super::schemas::{ExportDocumentSchema, ImportReportSchema, PatternSchema, PatternStatsSchema};
use crate::{Principal, error::ApiError, state::AppState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_patterns, add_pattern))
        .routes(routes!(replace_pattern))
        .routes(routes!(set_pattern_enabled))
        .routes(routes!(promote_pattern))
        .routes(routes!(demote_pattern))
        .routes(routes!(export_patterns))
        .routes(routes!(import_patterns))
}

/// A pattern with its figures.
#[derive(Serialize, ToSchema)]
pub(crate) struct PatternWithStats {
    #[schema(value_type = PatternSchema)]
    pattern: Pattern,
    /// `null` when the pattern has no figures yet.
    #[schema(value_type = Option<PatternStatsSchema>)]
    stats: Option<selfheal_core::PatternStats>,
}

/// Every pattern with its figures (incidents, occurrences, success rates, MTTR).
#[utoipa::path(get, path = "/patterns", tag = "patterns",
    responses((status = 200, description = "every pattern", body = [PatternWithStats])))]
async fn list_patterns(State(s): State<AppState>) -> Result<Json<Vec<PatternWithStats>>, ApiError> {
    let mut stats = s.admin().stats().await?.patterns;
    let patterns = s.admin().patterns().await?;
    let out = patterns
        .into_iter()
        .map(|pattern| {
            let at = stats.iter().position(|st| st.pattern == pattern.name);
            PatternWithStats {
                stats: at.map(|i| stats.swap_remove(i)),
                pattern,
            }
        })
        .collect();
    Ok(Json(out))
}

/// The stored pattern called `name`.
async fn stored(s: &AppState, name: &str) -> Result<Pattern, ApiError> {
    s.admin()
        .patterns()
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no pattern named `{name}`")))
}

/// Adds a pattern (its regex is validated; an invalid one is a 400 with the regex
/// engine's message).
#[utoipa::path(post, path = "/patterns", tag = "patterns",
    request_body = PatternSchema,
    responses(
        (status = 201, description = "added", body = PatternSchema, links(
            ("ReplacePattern" = (operation_id = "replace_pattern",
                parameters(("name" = "$response.body#/name")))),
            ("DemotePattern" = (operation_id = "demote_pattern",
                parameters(("name" = "$response.body#/name")))))),
        (status = 409, description = "a pattern by that name exists", body = ApiError)))]
async fn add_pattern(
    State(s): State<AppState>,
    principal: Principal,
    Body(pattern): Body<Pattern>,
) -> Result<(StatusCode, Json<Pattern>), ApiError> {
    let name = pattern.name.clone();
    s.admin().add_pattern(pattern, &principal.name).await?;
    Ok((StatusCode::CREATED, Json(stored(&s, &name).await?)))
}

/// Replaces the pattern called `name` (the body must carry the same name).
#[utoipa::path(put, path = "/patterns/{name}", tag = "patterns",
    params(("name" = String, Path, description = "the pattern's name")),
    request_body = PatternSchema,
    responses(
        (status = 200, description = "replaced", body = PatternSchema),
        (status = 404, description = "no pattern by that name", body = ApiError)))]
async fn replace_pattern(
    State(s): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    Body(pattern): Body<Pattern>,
) -> Result<Json<Pattern>, ApiError> {
    if pattern.name != name {
        return Err(ApiError::bad_field(
            "name",
            format!(
                "name: the body names pattern `{}` but the path `{name}`; a pattern cannot be renamed",
                pattern.name
            ),
        ));
    }
    s.admin().update_pattern(pattern, &principal.name).await?;
    Ok(Json(stored(&s, &name).await?))
}

/// Whether a pattern is enabled.
#[derive(Deserialize, ToSchema)]
pub(crate) struct EnabledBody {
    /// `false` disables it: it never matches.
    enabled: bool,
}

/// Enables or disables a pattern.
#[utoipa::path(post, path = "/patterns/{name}/enabled", tag = "patterns",
    params(("name" = String, Path, description = "the pattern's name")),
    request_body = EnabledBody,
    responses(
        (status = 200, description = "the pattern as stored", body = PatternSchema),
        (status = 404, description = "no pattern by that name", body = ApiError)))]
async fn set_pattern_enabled(
    State(s): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    Body(body): Body<EnabledBody>,
) -> Result<Json<Pattern>, ApiError> {
    let p = s
        .admin()
        .set_pattern_enabled(&name, body.enabled, &principal.name)
        .await?;
    Ok(Json(p))
}

/// How to promote.
#[derive(Deserialize, ToSchema)]
pub(crate) struct PromoteBody {
    /// Also let its fixes run without approval at high confidence.
    auto_healable: bool,
}

/// Promotes a pattern from alert-only to active.
#[utoipa::path(post, path = "/patterns/{name}/promote", tag = "patterns",
    params(("name" = String, Path, description = "the pattern's name")),
    request_body = PromoteBody,
    responses(
        (status = 200, description = "the pattern as stored", body = PatternSchema),
        (status = 404, description = "no pattern by that name", body = ApiError)))]
async fn promote_pattern(
    State(s): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    Body(body): Body<PromoteBody>,
) -> Result<Json<Pattern>, ApiError> {
    let p = s
        .admin()
        .promote_pattern(&name, body.auto_healable, &principal.name)
        .await?;
    Ok(Json(p))
}

/// Puts a pattern back to alert-only and not auto-healable.
#[utoipa::path(post, path = "/patterns/{name}/demote", tag = "patterns",
    params(("name" = String, Path, description = "the pattern's name")),
    responses(
        (status = 200, description = "the pattern as stored", body = PatternSchema),
        (status = 404, description = "no pattern by that name", body = ApiError)))]
async fn demote_pattern(
    State(s): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Pattern>, ApiError> {
    Ok(Json(
        s.admin().demote_pattern(&name, &principal.name).await?,
    ))
}

/// Where an export comes from.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportQuery {
    /// The exporting service's name, written into the document (default `selfheal`).
    source: Option<String>,
}

/// Every pattern as a versioned export document, for `POST /api/patterns/import`
/// elsewhere.
#[utoipa::path(get, path = "/patterns/export", tag = "patterns",
    params(ExportQuery),
    responses((status = 200, description = "the export document", body = ExportDocumentSchema)))]
async fn export_patterns(
    State(s): State<AppState>,
    Query(q): Query<ExportQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let source = q.source.as_deref().unwrap_or("selfheal");
    let text = s.admin().export_patterns(source).await?;
    let doc = serde_json::from_str(&text).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the export document is not JSON: {e}"),
        )
    })?;
    Ok(Json(doc))
}

/// An import.
#[derive(Deserialize, ToSchema)]
pub(crate) struct ImportBody {
    /// An export document (as JSON, or as a string holding it).
    #[schema(value_type = ExportDocumentSchema)]
    document: serde_json::Value,
    /// Keep each pattern's mode and auto-healable flag (default: imported patterns
    /// arrive alert-only and not auto-healable).
    #[serde(default)]
    trust_modes: bool,
    /// Replace patterns that exist already (default: skip them).
    #[serde(default)]
    replace_existing: bool,
}

/// Imports an export document; each refused pattern is reported on its own.
#[utoipa::path(post, path = "/patterns/import", tag = "patterns",
    request_body = ImportBody,
    responses((status = 200, description = "what the import did", body = ImportReportSchema)))]
async fn import_patterns(
    State(s): State<AppState>,
    principal: Principal,
    Body(body): Body<ImportBody>,
) -> Result<Json<selfheal_core::catalog::ImportReport>, ApiError> {
    let text = match body.document {
        serde_json::Value::String(text) => text,
        doc => doc.to_string(),
    };
    let options = ImportOptions::default()
        .trust_modes(body.trust_modes)
        .replace_existing(body.replace_existing);
    let report = s
        .admin()
        .import_patterns(&text, &options, &principal.name)
        .await?;
    Ok(Json(report))
}
