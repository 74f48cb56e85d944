//! A stand-in for the JSON API (owned by another branch) with the answers API.md
//! specifies, for the endpoints the dashboard calls. Replaced by the real router's API
//! once it lands.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post, put},
};
use selfheal_core::{Healer, IncidentFilter, Silence, SilenceScope, Uuid};
use serde_json::{Value, json};

const ACTOR: &str = "stub-operator";

type Answer = Result<Json<Value>, (StatusCode, Json<Value>)>;

/// An error as API.md answers it: `{"status", "error"}` with the status that fits.
fn fail(e: selfheal_core::Error) -> (StatusCode, Json<Value>) {
    let status = match e.kind() {
        selfheal_core::ErrorKind::NotFound => StatusCode::NOT_FOUND,
        selfheal_core::ErrorKind::Conflict => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = json!({"status": status.as_u16(), "error": e.to_string()});
    (status, Json(body))
}

fn internal(e: impl std::fmt::Display) -> (StatusCode, Json<Value>) {
    let status = StatusCode::INTERNAL_SERVER_ERROR;
    (status, Json(json!({"status": 500, "error": e.to_string()})))
}

/// Routes relative to `/api`.
pub fn routes(healer: Healer) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/health", get(health))
        .route("/approvals", get(approvals))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/reject", post(reject))
        .route("/incidents", get(incidents))
        .route("/incidents/{id}", get(incident))
        .route("/reports", get(reports))
        .route("/audit", get(audit))
        .route("/audit/verify", get(verify))
        .route("/dry-run", put(dry_run))
        .route("/silences", post(silence))
        .route("/breaker/rearm", post(rearm))
        .with_state(healer)
}

async fn status(State(h): State<Healer>) -> Answer {
    let pending = h.admin().pending_approvals().await.map_err(fail)?.len();
    let safety = h.admin().safety();
    Ok(Json(json!({
        "replica": h.replica(), "observed": h.observed(), "dropped": h.dropped(),
        "failed": h.failed(), "store_errors": h.store_errors(),
        "open_incidents": h.admin().open_incidents().len(), "pending_approvals": pending,
        "dry_run": safety.dry_run,
        "safety": {"breaker_open": safety.breaker_open, "storm_active": safety.storm},
    })))
}

async fn health(State(h): State<Healer>) -> Answer {
    Ok(Json(
        serde_json::to_value(h.admin().health().await).map_err(internal)?,
    ))
}

async fn approvals(State(h): State<Healer>) -> Answer {
    Ok(Json(
        serde_json::to_value(h.admin().pending_approvals().await.map_err(fail)?)
            .map_err(internal)?,
    ))
}

async fn approve(State(h): State<Healer>, Path(id): Path<Uuid>) -> Answer {
    h.admin().approve(id, ACTOR).await.map_err(fail)?;
    Ok(Json(json!({"id": id})))
}

async fn reject(State(h): State<Healer>, Path(id): Path<Uuid>, Json(body): Json<Value>) -> Answer {
    let reason = body["reason"].as_str().unwrap_or_default().to_owned();
    h.admin().reject(id, ACTOR, &reason).await.map_err(fail)?;
    Ok(Json(json!({"id": id})))
}

async fn incidents(State(h): State<Healer>) -> Answer {
    let filter = IncidentFilter {
        limit: Some(50),
        ..Default::default()
    };
    let items = h.admin().incidents(&filter).await.map_err(fail)?;
    Ok(Json(json!({"items": items, "limit": 50, "offset": 0})))
}

async fn incident(State(h): State<Healer>, Path(id): Path<Uuid>) -> Answer {
    let Some(incident) = h.admin().incident(id).await.map_err(fail)? else {
        let error = json!({"status": 404, "error": format!("no incident {id}")});
        return Err((StatusCode::NOT_FOUND, Json(error)));
    };
    let actions = h.admin().actions(Some(id)).await.map_err(fail)?;
    let mut audit = h.admin().audit_log(usize::MAX).await.map_err(fail)?;
    audit.retain(|r| r.incident == Some(id));
    audit.sort_by_key(|r| r.seq);
    Ok(Json(
        json!({"incident": incident, "actions": actions, "approvals": [], "audit": audit}),
    ))
}

async fn reports(State(h): State<Healer>) -> Answer {
    let since = chrono::Utc::now() - chrono::Duration::hours(24);
    let reports = h.admin().pattern_report(since).await.map_err(fail)?;
    let occurrences: Vec<Value> = reports
        .iter()
        .flat_map(|r| {
            r.hourly
                .iter()
                .map(|c| json!({"pattern": r.pattern, "hour": c.hour, "count": c.occurrences}))
        })
        .collect();
    Ok(Json(
        json!({"occurrences": occurrences, "strategies": [], "mttr_seconds": {}}),
    ))
}

async fn audit(State(h): State<Healer>) -> Answer {
    Ok(Json(
        serde_json::to_value(h.admin().audit_log(50).await.map_err(fail)?).map_err(internal)?,
    ))
}

async fn verify(State(h): State<Healer>) -> Answer {
    let records = h.admin().audit_log(usize::MAX).await.map_err(fail)?;
    let mut ordered = records.clone();
    ordered.sort_by_key(|r| r.seq);
    Ok(Json(match selfheal_core::verify_chain(&ordered) {
        Ok(()) => json!({"ok": true, "records": records.len(), "first_broken": null}),
        Err(e) => json!({"ok": false, "records": records.len(),
                         "first_broken": {"seq": e.seq, "reason": e.reason}}),
    }))
}

async fn dry_run(State(h): State<Healer>, Json(body): Json<Value>) -> Answer {
    let on = body["on"].as_bool().unwrap_or(false);
    h.admin().set_dry_run(on, ACTOR).await;
    Ok(Json(json!({"dry_run": on, "pattern": null})))
}

async fn silence(State(h): State<Healer>, Json(body): Json<Value>) -> Answer {
    let target = body["target"].as_str().unwrap_or_default().to_owned();
    let minutes: u64 = body["duration"]
        .as_str()
        .and_then(|d| d.strip_suffix('m')?.parse().ok())
        .unwrap_or(1);
    let silence = Silence::from_now(
        SilenceScope::Target(target),
        std::time::Duration::from_secs(minutes * 60),
    );
    let id = h.admin().add_silence(silence, ACTOR).await.map_err(fail)?;
    Ok(Json(json!({"id": id})))
}

async fn rearm(State(h): State<Healer>) -> Answer {
    h.admin().rearm(ACTOR).await.map_err(fail)?;
    Ok(Json(
        serde_json::to_value(h.admin().safety()).map_err(internal)?,
    ))
}
