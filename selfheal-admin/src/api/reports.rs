//! Reports over a period: occurrences per hour per pattern, success rate per strategy,
//! mean time to recover per pattern.

use std::collections::BTreeMap;

use axum::{Json, extract::State};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Query;
use crate::{error::ApiError, state::AppState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(report))
}

/// The period.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReportQuery {
    /// Hours back from now (default 24, at most 30 days).
    #[param(minimum = 1, maximum = 720)]
    hours: Option<u32>,
}

/// One pattern's incidents in one hour.
#[derive(Serialize, ToSchema)]
pub(crate) struct Occurrences {
    /// The pattern.
    pattern: String,
    /// The start of the hour (UTC).
    hour: DateTime<Utc>,
    /// Occurrences counted into incidents that opened in it.
    count: u64,
    /// Incidents that opened in it.
    incidents: u64,
}

/// How one strategy did, over every pattern.
#[derive(Serialize, ToSchema)]
pub(crate) struct StrategyResult {
    /// The strategy.
    strategy: String,
    /// Finished actions (succeeded, failed or rolled back).
    attempts: u64,
    /// Actions that succeeded.
    successes: u64,
    /// Successes over attempts; `null` before any finished.
    success_rate: Option<f64>,
}

/// The report.
#[derive(Serialize, ToSchema)]
pub(crate) struct Report {
    /// Start of the period.
    since: DateTime<Utc>,
    /// Occurrences per hour per pattern, by pattern then hour; hours without any are
    /// left out.
    occurrences: Vec<Occurrences>,
    /// Success rate per strategy, by strategy.
    strategies: Vec<StrategyResult>,
    /// Mean time from opening to resolution, in seconds, per pattern that resolved any.
    mttr_seconds: BTreeMap<String, f64>,
}

/// Occurrences per hour per pattern, success rate per strategy, MTTR per pattern.
#[utoipa::path(get, path = "/reports", tag = "reports", params(ReportQuery),
    responses((status = 200, description = "the report", body = Report)))]
async fn report(
    State(s): State<AppState>,
    Query(q): Query<ReportQuery>,
) -> Result<Json<Report>, ApiError> {
    let hours = q.hours.unwrap_or(24);
    if !(1..=720).contains(&hours) {
        return Err(ApiError::bad_field(
            "hours",
            format!("hours: {hours} is out of range; ask for 1 to 720"),
        ));
    }
    let since = Utc::now() - TimeDelta::hours(i64::from(hours));
    let reports = s.admin().pattern_report(since).await?;
    let mut occurrences = Vec::new();
    let mut strategies: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut mttr_seconds = BTreeMap::new();
    for r in reports {
        for h in &r.hourly {
            occurrences.push(Occurrences {
                pattern: r.pattern.clone(),
                hour: h.hour,
                count: h.occurrences,
                incidents: h.incidents,
            });
        }
        for st in &r.strategies {
            let slot = strategies.entry(st.strategy.clone()).or_default();
            slot.0 += st.successes;
            slot.1 += st.failures;
        }
        if let Some(mttr) = r.mttr {
            mttr_seconds.insert(r.pattern.clone(), mttr.as_secs_f64());
        }
    }
    let strategies = strategies
        .into_iter()
        .map(|(strategy, (successes, failures))| {
            let attempts = successes + failures;
            StrategyResult {
                strategy,
                attempts,
                successes,
                success_rate: (attempts > 0).then(|| successes as f64 / attempts as f64),
            }
        })
        .collect();
    Ok(Json(Report {
        since,
        occurrences,
        strategies,
        mttr_seconds,
    }))
}
