//! Incidents: a page of them, and one with its actions, approvals and audit records.

use axum::{Json, extract::State};
use selfheal_core::{
    ActionRecord, Approval, AuditRecord, Incident, IncidentFilter, IncidentStatus, Uuid,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Path, Query};
use super::schemas::{ActionRecordSchema, ApprovalSchema, AuditRecordSchema, IncidentSchema};
use crate::{error::ApiError, state::AppState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_incidents))
        .routes(routes!(incident))
}

/// An incident's status, as filtered on.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StatusFilter {
    /// Detected, not yet decided.
    Open,
    /// Waiting for an operator to approve a fix.
    AwaitingApproval,
    /// Waiting for the global rate limit.
    Queued,
    /// A fix is running or being verified.
    Remediating,
    /// A fix was verified.
    Resolved,
    /// Handed to humans.
    Escalated,
    /// Only notified.
    Closed,
}

impl From<StatusFilter> for IncidentStatus {
    fn from(s: StatusFilter) -> Self {
        match s {
            StatusFilter::Open => IncidentStatus::Open,
            StatusFilter::AwaitingApproval => IncidentStatus::AwaitingApproval,
            StatusFilter::Queued => IncidentStatus::Queued,
            StatusFilter::Remediating => IncidentStatus::Remediating,
            StatusFilter::Resolved => IncidentStatus::Resolved,
            StatusFilter::Escalated => IncidentStatus::Escalated,
            StatusFilter::Closed => IncidentStatus::Closed,
        }
    }
}

/// The furthest a page may start.
const MAX_OFFSET: u32 = 1_000_000;

/// Which incidents, and which page of them.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only this status.
    #[param(inline)]
    status: Option<StatusFilter>,
    /// Only this target.
    target: Option<String>,
    /// At most this many (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Skip this many, newest first (default 0).
    #[param(minimum = 0, maximum = 1000000)]
    offset: Option<u32>,
}

/// A page of incidents, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct IncidentPage {
    /// The incidents on this page.
    #[schema(value_type = Vec<IncidentSchema>)]
    items: Vec<Incident>,
    /// How many match in all, when this page reaches the end of them; `null` when
    /// there are more after it.
    total: Option<usize>,
    /// The page size asked for.
    limit: u32,
    /// How many were skipped.
    offset: u32,
}

/// Incidents matching the filter, newest first, a page at a time.
#[utoipa::path(get, path = "/incidents", tag = "incidents", params(ListQuery),
    responses((status = 200, description = "a page of incidents", body = IncidentPage, links(
        ("FirstIncident" = (operation_id = "incident",
            parameters(("id" = "$response.body#/items/0/id"))))))))]
async fn list_incidents(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<IncidentPage>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_field(
            "limit",
            format!("limit: {limit} is out of range; ask for 1 to 1000"),
        ));
    }
    let offset = q.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(ApiError::bad_field(
            "offset",
            format!("offset: {offset} is out of range; skip at most {MAX_OFFSET}, or filter"),
        ));
    }
    let filter = IncidentFilter {
        statuses: q.status.map(IncidentStatus::from).into_iter().collect(),
        target: q.target,
        // One more than the page, to know whether the page is the last.
        limit: Some(offset as usize + limit as usize + 1),
    };
    let all = s.admin().incidents(&filter).await?;
    let seen = all.len();
    let items: Vec<Incident> = all
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    let total = (seen <= offset as usize + limit as usize).then_some(seen);
    Ok(Json(IncidentPage {
        items,
        total,
        limit,
        offset,
    }))
}

/// One incident with what was done about it.
#[derive(Serialize, ToSchema)]
pub(crate) struct IncidentDetail {
    /// The incident.
    #[schema(value_type = IncidentSchema)]
    incident: Incident,
    /// Its actions, newest first.
    #[schema(value_type = Vec<ActionRecordSchema>)]
    actions: Vec<ActionRecord>,
    /// Its approvals, oldest first.
    #[schema(value_type = Vec<ApprovalSchema>)]
    approvals: Vec<Approval>,
    /// Its audit records, oldest first.
    #[schema(value_type = Vec<AuditRecordSchema>)]
    audit: Vec<AuditRecord>,
}

/// One incident with its actions, approvals and audit records.
#[utoipa::path(get, path = "/incidents/{id}", tag = "incidents",
    params(("id" = Uuid, Path, description = "the incident's id")),
    responses(
        (status = 200, description = "the incident", body = IncidentDetail),
        (status = 404, description = "no incident with that id", body = ApiError)))]
async fn incident(
    State(s): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<IncidentDetail>, ApiError> {
    let incident = s
        .admin()
        .incident(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no incident {id}")))?;
    let actions = s.admin().actions(Some(id)).await?;
    let approvals = s.admin().approvals(Some(id)).await?;
    // Its records are at or after its opening: read from there, not the whole trail.
    let since = incident.opened_at - chrono::TimeDelta::seconds(1);
    let mut audit = s.admin().recent_activity(since).await?;
    audit.retain(|r| r.incident == Some(id));
    Ok(Json(IncidentDetail {
        incident,
        actions,
        approvals,
        audit,
    }))
}
