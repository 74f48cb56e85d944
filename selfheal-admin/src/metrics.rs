//! Prometheus metrics at `/metrics`, in the OpenMetrics text format (which Prometheus
//! negotiates and parses).
//!
//! Counters of what happened (incidents by pattern, actions by strategy and outcome,
//! events by phase, time to recover) are fed by a task subscribed to the healer's
//! events; what the healer already counts (signals observed and dropped, store errors,
//! each source's emitted, dropped and malformed inputs and restarts)
//! and states (breaker, storm, approvals pending, open incidents, SSE clients) are
//! read from it at scrape time.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::{DateTime, Utc};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use selfheal_core::{Healer, HealingEvent, Phase};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::{events::Hub, state::AppState};

/// The content type of the answer: OpenMetrics 1.0 text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Incidents whose opening is remembered to measure their time to recover.
const TRACKED_INCIDENTS: usize = 10_000;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PatternLabel {
    pattern: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    strategy: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StrategyLabel {
    strategy: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

/// What the feeding task knows of an incident it saw open.
#[derive(Debug, Default)]
struct Tracked {
    opened_at: Option<DateTime<Utc>>,
    counted: bool,
    strategy: Option<String>,
}

/// The registry and what feeds it.
pub(crate) struct Metrics {
    registry: Registry,
    // Read from the healer at scrape time.
    observed: Counter,
    dropped: Counter,
    failed: Counter,
    store_errors: Counter,
    breaker_open: Gauge,
    storm_active: Gauge,
    approvals_pending: Gauge,
    open_incidents: Gauge,
    queue_signals: Gauge,
    queue_bytes: Gauge,
    sse_clients: Gauge,
    sse_dropped: Counter,
    events_lagged: Counter,
    sse_lost: Counter,
    sources: Family<SourceLabels, Counter>,
    // Fed from the event stream.
    incidents: Family<PatternLabel, Counter>,
    actions: Family<ActionLabels, Counter>,
    rollbacks: Family<StrategyLabel, Counter>,
    events: Family<PhaseLabel, Counter>,
    time_to_recover: Histogram,
    tracked: Mutex<HashMap<Uuid, Tracked>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every metric and starts the task that feeds the event counters; it
    /// ends when the healer shuts down.
    pub(crate) fn start(healer: &Healer) -> Arc<Self> {
        let metrics = Arc::new(Self::new());
        let mut events = healer.subscribe();
        let stopped = healer.stopped();
        let feeding = metrics.clone();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            loop {
                let received = tokio::select! {
                    received = events.recv() => received,
                    () = &mut stopped => break,
                };
                match received {
                    Ok(event) => feeding.record(&event),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(lost = n, "metrics fell behind the healer's event stream");
                        feeding.events_lagged.inc_by(n);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        metrics
    }

    fn new() -> Self {
        let mut registry = Registry::default();
        let observed = Counter::default();
        let dropped = Counter::default();
        let failed = Counter::default();
        let store_errors = Counter::default();
        let breaker_open = Gauge::default();
        let storm_active = Gauge::default();
        let approvals_pending = Gauge::default();
        let open_incidents = Gauge::default();
        let queue_signals = Gauge::default();
        let queue_bytes = Gauge::default();
        let sse_clients = Gauge::default();
        let sse_dropped = Counter::default();
        let events_lagged = Counter::default();
        let sse_lost = Counter::default();
        let sources = Family::<SourceLabels, Counter>::default();
        let incidents = Family::<PatternLabel, Counter>::default();
        let actions = Family::<ActionLabels, Counter>::default();
        let rollbacks = Family::<StrategyLabel, Counter>::default();
        let events = Family::<PhaseLabel, Counter>::default();
        let time_to_recover = Histogram::new(exponential_buckets(1.0, 2.0, 14));

        // Counter names get their `_total` suffix from the encoder.
        registry.register(
            "selfheal_signals_observed",
            "Signals handed to the healer",
            observed.clone(),
        );
        registry.register(
            "selfheal_signals_dropped",
            "Signals the healer's queue refused (full, or their target over its share)",
            dropped.clone(),
        );
        registry.register(
            "selfheal_signals_failed",
            "Signals whose processing panicked",
            failed.clone(),
        );
        registry.register(
            "selfheal_store_errors",
            "Store calls that failed",
            store_errors.clone(),
        );
        registry.register(
            "selfheal_breaker_open",
            "1 while the healer's breaker is open (it acts on nothing until re-armed)",
            breaker_open.clone(),
        );
        registry.register(
            "selfheal_storm_active",
            "1 while a storm holds automatic remediation",
            storm_active.clone(),
        );
        registry.register(
            "selfheal_approvals_pending",
            "Actions waiting for a human",
            approvals_pending.clone(),
        );
        registry.register(
            "selfheal_queue_signals",
            "Signals waiting in the intake queue",
            queue_signals.clone(),
        );
        registry.register(
            "selfheal_queue_bytes",
            "Bytes the signals waiting in the intake queue hold",
            queue_bytes.clone(),
        );
        registry.register(
            "selfheal_open_incidents",
            "Incidents open now",
            open_incidents.clone(),
        );
        registry.register(
            "selfheal_incidents_opened",
            "Incidents opened, by matched pattern (empty: none matched)",
            incidents.clone(),
        );
        registry.register(
            "selfheal_actions",
            "Remediation actions finished, by strategy and outcome",
            actions.clone(),
        );
        registry.register(
            "selfheal_rollbacks",
            "Actions rolled back, by strategy",
            rollbacks.clone(),
        );
        registry.register(
            "selfheal_events",
            "Healing events, by phase",
            events.clone(),
        );
        registry.register(
            "selfheal_time_to_recover_seconds",
            "Time from an incident's detection to its resolution",
            time_to_recover.clone(),
        );
        registry.register(
            "selfheal_admin_sse_clients",
            "Clients connected to /events",
            sse_clients.clone(),
        );
        registry.register(
            "selfheal_source_inputs",
            "What each source did with its inputs (outcome: emitted, dropped, malformed, restarts)",
            sources.clone(),
        );
        registry.register(
            "selfheal_admin_sse_dropped_clients",
            "Clients of /events dropped because they did not keep up",
            sse_dropped.clone(),
        );
        registry.register(
            "selfheal_admin_events_lagged",
            "Healing events the admin surface missed because it fell behind",
            events_lagged.clone(),
        );
        registry.register(
            "selfheal_admin_sse_events_lost",
            "Healing events /events never numbered because its hub fell behind (clients got a gap)",
            sse_lost.clone(),
        );
        Self {
            registry,
            observed,
            dropped,
            failed,
            store_errors,
            breaker_open,
            storm_active,
            approvals_pending,
            open_incidents,
            queue_signals,
            queue_bytes,
            sse_clients,
            sse_dropped,
            sources,
            events_lagged,
            sse_lost,
            incidents,
            actions,
            rollbacks,
            events,
            time_to_recover,
            tracked: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event.
    fn record(&self, event: &HealingEvent) {
        let phase = phase_name(event.phase);
        self.events
            .get_or_create(&PhaseLabel {
                phase: phase.clone(),
            })
            .inc();
        let Some(id) = event.incident else { return };
        let fields = serde_json::to_value(event).unwrap_or_default();
        let mut tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        if event.phase == Phase::Detected {
            if tracked.len() >= TRACKED_INCIDENTS {
                // Forget the oldest openings rather than grow without bound.
                let oldest = tracked
                    .iter()
                    .min_by_key(|(_, t)| t.opened_at)
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    tracked.remove(&k);
                }
            }
            let entry = tracked.entry(id).or_default();
            entry.opened_at = Some(event.at);
            if let Some(pattern) = str_field(&fields, &["pattern"]) {
                self.count_incident(&pattern);
                entry.counted = true;
            }
            return;
        }
        let entry = tracked.entry(id).or_default();
        if !entry.counted && entry.opened_at.is_some() {
            let pattern = match event.phase {
                Phase::Matched => str_field(&fields, &["pattern"])
                    .or_else(|| backquoted_after(&event.detail, "pattern `"))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            self.count_incident(&pattern);
            entry.counted = true;
        }
        if let Some(strategy) =
            str_field(&fields, &["strategy"]).or_else(|| str_field(&fields, &["plan", "strategy"]))
        {
            entry.strategy = Some(strategy);
        }
        let strategy = || {
            entry
                .strategy
                .clone()
                .unwrap_or_else(|| "unknown".to_owned())
        };
        let outcome = match event.phase {
            Phase::Verified => Some("verified"),
            Phase::Unverified => Some("unverified"),
            Phase::Failed => Some("failed"),
            Phase::Interrupted => Some("interrupted"),
            Phase::DryRun => Some("dry_run"),
            _ => None,
        };
        if let Some(outcome) = outcome {
            self.actions
                .get_or_create(&ActionLabels {
                    strategy: strategy(),
                    outcome: outcome.to_owned(),
                })
                .inc();
        }
        if event.phase == Phase::RolledBack {
            // The detail of a rollback is its strategy.
            let strategy = entry.strategy.clone().unwrap_or_else(|| {
                Some(event.detail.trim())
                    .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
                    .map_or_else(|| "unknown".to_owned(), str::to_owned)
            });
            self.rollbacks
                .get_or_create(&StrategyLabel { strategy })
                .inc();
        }
        if event.phase == Phase::Resolved
            && let Some(opened) = entry.opened_at
        {
            let secs = (event.at - opened).num_milliseconds().max(0) as f64 / 1000.0;
            self.time_to_recover.observe(secs);
        }
        if matches!(
            event.phase,
            Phase::Resolved | Phase::Closed | Phase::Escalated
        ) {
            tracked.remove(&id);
        }
    }

    fn count_incident(&self, pattern: &str) {
        self.incidents
            .get_or_create(&PatternLabel {
                pattern: pattern.to_owned(),
            })
            .inc();
    }

    /// Reads the healer's own counters and states, then encodes everything.
    async fn scrape(&self, healer: &Healer, hub: &Hub) -> Result<String, std::fmt::Error> {
        set_counter(&self.observed, healer.observed());
        set_counter(&self.dropped, healer.dropped());
        set_counter(&self.failed, healer.failed());
        set_counter(&self.store_errors, healer.store_errors());
        set_counter(&self.sse_dropped, hub.dropped_clients());
        set_counter(&self.sse_lost, hub.lagged());
        for stats in healer.sources() {
            for (outcome, value) in [
                ("emitted", stats.emitted),
                ("dropped", stats.dropped),
                ("malformed", stats.malformed),
                ("restarts", stats.restarts),
            ] {
                let labels = SourceLabels {
                    source: stats.name.clone(),
                    outcome,
                };
                set_counter(&self.sources.get_or_create(&labels), value);
            }
        }
        let admin = healer.admin();
        let (signals, bytes) = healer.queued();
        self.queue_signals
            .set(signals.try_into().unwrap_or(i64::MAX));
        self.queue_bytes.set(bytes.try_into().unwrap_or(i64::MAX));
        self.breaker_open.set(i64::from(admin.breaker_open()));
        self.storm_active.set(i64::from(admin.storm_active()));
        self.open_incidents
            .set(admin.open_incidents().len().try_into().unwrap_or(i64::MAX));
        self.sse_clients
            .set(hub.clients().try_into().unwrap_or(i64::MAX));
        match admin.pending_approvals().await {
            Ok(pending) => {
                self.approvals_pending
                    .set(pending.len().try_into().unwrap_or(i64::MAX));
            }
            Err(error) => {
                tracing::warn!(%error, "approvals pending unknown for this scrape: the store did not answer");
            }
        }
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Raises a counter to `value` (what the healer counted): never down.
fn set_counter(counter: &Counter, value: u64) {
    counter.inner().fetch_max(value, Ordering::Relaxed);
}

fn phase_name(phase: Phase) -> String {
    match serde_json::to_value(phase) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{phase:?}"),
    }
}

/// The string at `path` in `value`, if there is a non-empty one.
fn str_field(value: &serde_json::Value, path: &[&str]) -> Option<String> {
    let mut v = value;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// The text between `prefix` and the next backquote.
fn backquoted_after(text: &str, prefix: &str) -> Option<String> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    Some(rest[..rest.find('`')?].to_owned())
}

/// `GET /metrics`.
async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.scrape(&state.healer, &state.events).await {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "metrics did not encode");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: Uuid, phase: Phase, detail: &str, at: DateTime<Utc>) -> HealingEvent {
        serde_json::from_value(serde_json::json!({
            "incident": id,
            "target": "db",
            "phase": phase,
            "detail": detail,
            "at": at,
        }))
        .unwrap()
    }

    fn encoded(m: &Metrics) -> String {
        let mut out = String::new();
        encode(&mut out, &m.registry).unwrap();
        out
    }

    /// Emits one signal and reports one unreadable input, then ends.
    struct OneOfEach;

    #[async_trait::async_trait]
    impl selfheal_core::source::Source for OneOfEach {
        fn name(&self) -> &str {
            "logs"
        }
        async fn run(&self, feed: selfheal_core::source::Feed) -> selfheal_core::Result<()> {
            feed.malformed("not UTF-8");
            feed.ingest(selfheal_core::Signal::new("db", "connection refused"))
                .await
                .ok();
            Ok(())
        }
    }

    #[tokio::test]
    async fn each_source_is_counted_by_outcome() {
        let healer = Healer::builder().source(OneOfEach).build().unwrap();
        let running = healer.spawn();
        // The source ends after its ingest returned; wait for its counters to show it.
        while healer.sources()[0].emitted == 0 {
            tokio::task::yield_now().await;
        }
        let m = Metrics::new();
        let text = m.scrape(&healer, &Hub::new(4, 4)).await.unwrap();
        for line in [
            "selfheal_source_inputs_total{source=\"logs\",outcome=\"emitted\"} 1",
            "selfheal_source_inputs_total{source=\"logs\",outcome=\"malformed\"} 1",
            "selfheal_source_inputs_total{source=\"logs\",outcome=\"dropped\"} 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        running.shutdown().await;
    }

    #[test]
    fn an_incident_is_counted_by_pattern_and_its_recovery_timed() {
        let m = Metrics::new();
        let id = Uuid::new_v4();
        let t0 = Utc::now();
        m.record(&event(id, Phase::Detected, "pool timed out", t0));
        m.record(&event(
            id,
            Phase::Matched,
            "pattern `pool_exhausted` (confidence 0.90): regex",
            t0,
        ));
        m.record(&event(id, Phase::Verified, "health 10 -> 90", t0));
        m.record(&event(
            id,
            Phase::Resolved,
            "",
            t0 + chrono::Duration::seconds(3),
        ));
        // With the typed fields: the pattern at detection, the strategy from the plan.
        let typed = Uuid::new_v4();
        let mut detected = event(typed, Phase::Detected, "x", t0);
        detected.pattern = Some("disk_full".into());
        m.record(&detected);
        let mut executing = event(typed, Phase::Executing, "rm /tmp/x", t0);
        executing.plan = Some(selfheal_core::RemediationPlan::new("clean_tmp", "db"));
        m.record(&executing);
        m.record(&event(typed, Phase::Failed, "no", t0));
        m.record(&event(typed, Phase::Escalated, "no", t0));
        let other = Uuid::new_v4();
        m.record(&event(other, Phase::Detected, "x", t0));
        m.record(&event(other, Phase::Escalated, "no pattern", t0));
        let text = encoded(&m);
        assert!(
            text.contains("selfheal_incidents_opened_total{pattern=\"pool_exhausted\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("selfheal_incidents_opened_total{pattern=\"\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("selfheal_actions_total{strategy=\"unknown\",outcome=\"verified\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("selfheal_incidents_opened_total{pattern=\"disk_full\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("selfheal_actions_total{strategy=\"clean_tmp\",outcome=\"failed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("selfheal_time_to_recover_seconds_sum 3.0"),
            "{text}"
        );
        assert!(
            text.contains("selfheal_events_total{phase=\"detected\"} 3"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        assert!(m.tracked.lock().unwrap().is_empty());
    }
}
