//! What operators ask of the store's history: the healing overview, recent activity and
//! per-pattern stats. SQL stores answer from views (`healing_overview`,
//! `recent_activity`, `pattern_hourly`, `strategy_success`, `pattern_mttr`,
//! `actions_by_outcome`); [`compute_report`] is the reference every store matches.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{ActionRecord, ActionStatus, Incident, IncidentStatus};

/// One incident in the healing overview: what it is, where it stands, what was done last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OverviewRow {
    /// The incident.
    pub incident: Uuid,
    /// The affected system.
    pub target: String,
    /// The matched pattern, if any.
    pub pattern: Option<String>,
    /// The fingerprint that opened it.
    pub fingerprint: String,
    /// Where it stands.
    pub status: IncidentStatus,
    /// When it opened.
    pub opened_at: DateTime<Utc>,
    /// When it closed, if it did.
    pub closed_at: Option<DateTime<Utc>>,
    /// The newest action taken on it, if any.
    pub last_action: Option<LastAction>,
}

impl OverviewRow {
    /// A row (for stores that read it from a view).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        incident: Uuid,
        target: String,
        pattern: Option<String>,
        fingerprint: String,
        status: IncidentStatus,
        opened_at: DateTime<Utc>,
        closed_at: Option<DateTime<Utc>>,
        last_action: Option<LastAction>,
    ) -> Self {
        OverviewRow {
            incident,
            target,
            pattern,
            fingerprint,
            status,
            opened_at,
            closed_at,
            last_action,
        }
    }
}

/// The newest action of an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LastAction {
    /// The action.
    pub id: Uuid,
    /// The strategy it ran.
    pub strategy: String,
    /// How it went.
    pub status: ActionStatus,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

impl LastAction {
    /// A last action (for stores that read it from a view).
    pub fn new(
        id: Uuid,
        strategy: String,
        status: ActionStatus,
        started_at: DateTime<Utc>,
    ) -> Self {
        LastAction {
            id,
            strategy,
            status,
            started_at,
        }
    }
}

/// Incidents of a pattern that opened within one hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HourlyCount {
    /// The start of the hour (UTC).
    pub hour: DateTime<Utc>,
    /// Incidents that opened in it.
    pub incidents: u64,
    /// Occurrences counted into those incidents.
    pub occurrences: u64,
}

/// How one strategy did for one pattern: finished actions by result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StrategyRate {
    /// The strategy.
    pub strategy: String,
    /// Actions that succeeded.
    pub successes: u64,
    /// Actions that failed or were rolled back.
    pub failures: u64,
}

impl StrategyRate {
    /// Successes over finished actions, `None` before any finished.
    pub fn success_rate(&self) -> Option<f64> {
        let total = self.successes + self.failures;
        (total > 0).then(|| self.successes as f64 / total as f64)
    }
}

/// One pattern's figures over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PatternReport {
    /// The pattern.
    pub pattern: String,
    /// Incidents and occurrences per hour, oldest first; hours without any are left out.
    pub hourly: Vec<HourlyCount>,
    /// Results per strategy, by strategy name.
    pub strategies: Vec<StrategyRate>,
    /// Incidents resolved (verified fixed).
    pub resolved: u64,
    /// Mean time from opening to resolution over the resolved ones (to the millisecond).
    pub mttr: Option<Duration>,
    /// Actions by status name (`succeeded`, `failed`, `rolled_back`, `running`).
    pub actions_by_outcome: BTreeMap<String, u64>,
}

/// The start of `t`'s hour.
pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

/// The healing overview of `incidents` (newest first, as given) and their `actions`.
pub fn compute_overview(incidents: &[Incident], actions: &[ActionRecord]) -> Vec<OverviewRow> {
    incidents
        .iter()
        .map(|i| {
            // Newest first; among equal start times the first saved, as stores list them.
            let last = actions.iter().filter(|a| a.incident == i.id).fold(
                None::<&ActionRecord>,
                |best, a| match best {
                    Some(b) if b.started_at >= a.started_at => Some(b),
                    _ => Some(a),
                },
            );
            OverviewRow {
                incident: i.id,
                target: i.target.clone(),
                pattern: i.pattern.clone(),
                fingerprint: i.fingerprint.clone(),
                status: i.status,
                opened_at: i.opened_at,
                closed_at: i.closed_at,
                last_action: last.map(|a| LastAction {
                    id: a.id,
                    strategy: a.strategy.clone(),
                    status: a.status,
                    started_at: a.started_at,
                }),
            }
        })
        .collect()
}

/// Per-pattern figures over incidents opened and actions started at or after `since`.
/// Patterns without incidents or actions in the period are left out; the result is
/// sorted by pattern name.
pub fn compute_report(
    incidents: &[Incident],
    actions: &[ActionRecord],
    since: DateTime<Utc>,
) -> Vec<PatternReport> {
    #[derive(Default)]
    struct Acc {
        hourly: BTreeMap<DateTime<Utc>, (u64, u64)>,
        strategies: BTreeMap<String, (u64, u64)>,
        resolved_us: Vec<i64>,
        outcomes: BTreeMap<String, u64>,
    }
    let mut by: BTreeMap<String, Acc> = BTreeMap::new();
    for i in incidents.iter().filter(|i| i.opened_at >= since) {
        let Some(p) = &i.pattern else { continue };
        let acc = by.entry(p.clone()).or_default();
        let slot = acc.hourly.entry(hour_of(i.opened_at)).or_default();
        slot.0 += 1;
        slot.1 += i.occurrences;
        if i.status == IncidentStatus::Resolved
            && let Some(closed) = i.closed_at
        {
            acc.resolved_us.push(
                (closed - i.opened_at)
                    .num_microseconds()
                    .unwrap_or(i64::MAX),
            );
        }
    }
    for a in actions.iter().filter(|a| a.started_at >= since) {
        let Some(p) = &a.pattern else { continue };
        let acc = by.entry(p.clone()).or_default();
        *acc.outcomes
            .entry(a.status.as_str().to_owned())
            .or_default() += 1;
        let slot = acc.strategies.entry(a.strategy.clone()).or_default();
        match a.status {
            ActionStatus::Succeeded => slot.0 += 1,
            ActionStatus::Failed | ActionStatus::RolledBack => slot.1 += 1,
            _ => {}
        }
    }
    by.into_iter()
        .map(|(pattern, acc)| {
            let resolved = acc.resolved_us.len() as u64;
            let mttr = (resolved > 0).then(|| {
                let mean = acc.resolved_us.iter().map(|&u| u as f64).sum::<f64>() / resolved as f64;
                mttr_ms(mean / 1000.0)
            });
            PatternReport {
                pattern,
                hourly: acc
                    .hourly
                    .into_iter()
                    .map(|(hour, (incidents, occurrences))| HourlyCount {
                        hour,
                        incidents,
                        occurrences,
                    })
                    .collect(),
                strategies: acc
                    .strategies
                    .into_iter()
                    .map(|(strategy, (successes, failures))| StrategyRate {
                        strategy,
                        successes,
                        failures,
                    })
                    .collect(),
                resolved,
                mttr,
                actions_by_outcome: acc.outcomes,
            }
        })
        .collect()
}

/// A mean time in (fractional) milliseconds as a duration rounded to the millisecond:
/// the precision every store can compute it to.
pub fn mttr_ms(mean_ms: f64) -> Duration {
    Duration::from_millis(mean_ms.max(0.0).round() as u64)
}

/// Builds a [`PatternReport`] from a store's aggregate rows (for SQL stores).
pub fn assemble_report(
    hourly: Vec<(String, DateTime<Utc>, u64, u64)>,
    strategies: Vec<(String, String, u64, u64)>,
    mttr: Vec<(String, u64, Option<f64>)>,
    outcomes: Vec<(String, String, u64)>,
) -> Vec<PatternReport> {
    fn entry<'a>(by: &'a mut BTreeMap<String, PatternReport>, p: &str) -> &'a mut PatternReport {
        by.entry(p.to_owned()).or_insert_with(|| PatternReport {
            pattern: p.to_owned(),
            hourly: Vec::new(),
            strategies: Vec::new(),
            resolved: 0,
            mttr: None,
            actions_by_outcome: BTreeMap::new(),
        })
    }
    let mut by: BTreeMap<String, PatternReport> = BTreeMap::new();
    for (p, hour, incidents, occurrences) in hourly {
        entry(&mut by, &p).hourly.push(HourlyCount {
            hour,
            incidents,
            occurrences,
        });
    }
    for (p, strategy, successes, failures) in strategies {
        entry(&mut by, &p).strategies.push(StrategyRate {
            strategy,
            successes,
            failures,
        });
    }
    for (p, resolved, mean_ms) in mttr {
        let r = entry(&mut by, &p);
        r.resolved = resolved;
        r.mttr = mean_ms.filter(|_| resolved > 0).map(mttr_ms);
    }
    for (p, status, n) in outcomes {
        entry(&mut by, &p).actions_by_outcome.insert(status, n);
    }
    let mut out: Vec<PatternReport> = by.into_values().collect();
    for r in &mut out {
        r.hourly.sort_by_key(|h| h.hour);
        r.strategies.sort_by(|a, b| a.strategy.cmp(&b.strategy));
    }
    out
}
