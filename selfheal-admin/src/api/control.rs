//! Operator control: silences, dry run, the safety envelope and its breaker.

use axum::{Json, extract::State, http::StatusCode};
use selfheal_core::{SafetyStatus, Silence, SilenceScope, SilenceStatus, Uuid};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Body, Path};
use super::schemas::{SafetyStatusSchema, SilenceStatusSchema};
use crate::{Principal, error::ApiError, state::AppState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_silences, add_silence))
        .routes(routes!(remove_silence))
        .routes(routes!(set_dry_run))
        .routes(routes!(safety))
        .routes(routes!(rearm))
}

/// Every silence, in force, to come or recently ended, with what it suppressed.
#[utoipa::path(get, path = "/silences", tag = "control",
    responses((status = 200, description = "silences", body = [SilenceStatusSchema])))]
async fn list_silences(State(s): State<AppState>) -> Json<Vec<SilenceStatus>> {
    Json(s.admin().silences())
}

/// A silence to add: exactly one of `target`, `pattern` and `fingerprint`.
#[derive(Deserialize, ToSchema)]
pub(crate) struct SilenceBody {
    /// Silence every signal of this target.
    target: Option<String>,
    /// Silence signals this pattern matches.
    pattern: Option<String>,
    /// Silence signals with this fingerprint id.
    fingerprint: Option<String>,
    /// How long, from now, as a humantime duration (`30m`, `1h`, `2d`).
    #[schema(example = "1h")]
    duration: String,
    /// Why (shown to operators and audited).
    #[serde(default)]
    reason: String,
}

/// The id of what was created.
#[derive(Serialize, ToSchema)]
pub(crate) struct Created {
    /// Its id.
    id: Uuid,
}

/// Adds a silence (maintenance window) starting now.
#[utoipa::path(post, path = "/silences", tag = "control",
    request_body = SilenceBody,
    responses((status = 201, description = "added", body = Created, links(
        ("RemoveSilence" = (operation_id = "remove_silence",
            parameters(("id" = "$response.body#/id")),
            description = "lift the silence just added"))))))]
async fn add_silence(
    State(s): State<AppState>,
    principal: Principal,
    Body(body): Body<SilenceBody>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let scope = match (body.target, body.pattern, body.fingerprint) {
        (Some(t), None, None) => SilenceScope::Target(t),
        (None, Some(p), None) => SilenceScope::Pattern(p),
        (None, None, Some(f)) => SilenceScope::Fingerprint(f),
        _ => {
            return Err(ApiError::bad_request(
                "target, pattern, fingerprint: give exactly one of them, the thing to silence",
            ));
        }
    };
    let duration = humantime::parse_duration(&body.duration).map_err(|e| {
        ApiError::bad_field(
            "duration",
            format!(
                "duration: `{}` is not a duration ({e}); write e.g. 30m, 1h or 2d",
                body.duration
            ),
        )
    })?;
    let silence = Silence::from_now(scope, duration).reason(body.reason);
    let id = s.admin().add_silence(silence, &principal.name).await?;
    Ok((StatusCode::CREATED, Json(Created { id })))
}

/// Lifts a silence now.
#[utoipa::path(delete, path = "/silences/{id}", tag = "control",
    params(("id" = Uuid, Path, description = "the silence's id")),
    responses(
        (status = 204, description = "lifted"),
        (status = 404, description = "no silence with that id", body = ApiError)))]
async fn remove_silence(
    State(s): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    s.admin().remove_silence(id, &principal.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Dry run on or off, for the whole healer or one pattern.
#[derive(Deserialize, ToSchema)]
pub(crate) struct DryRunBody {
    /// `true`: plan and record, run nothing.
    on: bool,
    /// Only this pattern (default: the whole healer).
    pattern: Option<String>,
}

/// Whether dry run applies now.
#[derive(Serialize, ToSchema)]
pub(crate) struct DryRunState {
    /// Whether incidents of `pattern` (or the whole healer) run dry now; the whole
    /// healer in dry run wins over a pattern switched live.
    dry_run: bool,
    /// The pattern, when the switch was for one.
    pattern: Option<String>,
    /// Patterns still in dry run on their own (they stay dry while the healer is live;
    /// switch each off with `{"on": false, "pattern": ...}`).
    dry_run_patterns: Vec<String>,
}

/// Switches dry run on or off, for the whole healer or one pattern.
#[utoipa::path(put, path = "/dry-run", tag = "control",
    request_body = DryRunBody,
    responses(
        (status = 200, description = "where dry run stands now", body = DryRunState),
        (status = 404, description = "no pattern by that name", body = ApiError)))]
async fn set_dry_run(
    State(s): State<AppState>,
    principal: Principal,
    Body(body): Body<DryRunBody>,
) -> Result<Json<DryRunState>, ApiError> {
    match &body.pattern {
        Some(pattern) => {
            if !s
                .admin()
                .patterns()
                .await?
                .iter()
                .any(|p| &p.name == pattern)
            {
                return Err(ApiError::not_found(format!("no pattern named `{pattern}`")));
            }
            s.admin()
                .set_pattern_dry_run(pattern, body.on, &principal.name)
                .await;
        }
        None => s.admin().set_dry_run(body.on, &principal.name).await,
    }
    Ok(Json(DryRunState {
        dry_run: s.admin().is_dry_run(body.pattern.as_deref()),
        pattern: body.pattern,
        dry_run_patterns: s.admin().dry_run_patterns(),
    }))
}

/// Where the safety envelope stands.
#[utoipa::path(get, path = "/safety", tag = "control",
    responses((status = 200, description = "the safety envelope", body = SafetyStatusSchema)))]
async fn safety(State(s): State<AppState>) -> Json<SafetyStatus> {
    Json(s.admin().safety())
}

/// Re-arms the healer after its breaker tripped.
#[utoipa::path(post, path = "/breaker/rearm", tag = "control",
    responses(
        (status = 200, description = "re-armed; the safety envelope now", body = SafetyStatusSchema),
        (status = 409, description = "the breaker is not open", body = ApiError)))]
async fn rearm(
    State(s): State<AppState>,
    principal: Principal,
) -> Result<Json<SafetyStatus>, ApiError> {
    s.admin().rearm(&principal.name).await?;
    Ok(Json(s.admin().safety()))
}
