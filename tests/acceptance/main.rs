//! The acceptance suite of issue 12: a small axum service (sessions and a cache in
//! Redis, queries through an sqlx pool) embeds selfheal as the README shows, with the
//! stock catalog and the default configuration, and serves 20 requests/s on loopback
//! while real faults are injected into private servers:
//!
//! | scenario | fault | approver | must show |
//! |---|---|---|---|
//! | Redis OOM | fill to `maxmemory 2mb` with `noeviction` | approves after 3 s | error rate back to 0 within 10 s of the approval; verified; nothing rolled back; no FLUSHDB suggested |
//! | Redis OOM | same | none | one suggestion pending, one notification, 0 escalations, nothing run |
//! | Postgres slots | 17 idle sessions of the service's role fill `max_connections=20`; the pool's idle sessions are ended so it must reconnect | approves after 3 s | the right pattern, a fix that can work, errors stop, verified; ≤ 1 escalation |
//! | Redis restart | `SHUTDOWN NOSAVE`, start again after 15 s | none | recognised; reconnected automatically once Redis is back; errors stop within 5 s of Redis's return |
//! | no fault | load only, 60 s | none | 0 incidents, 0 actions |
//!
//! Each scenario runs on its own single-threaded runtime with its own servers, so the
//! scenarios run concurrently; the healer's layer is installed with
//! `tracing::subscriber::set_default`, which covers every task of that runtime. Each
//! prints its timeline and figures (`cargo test --features redis,postgres --test
//! acceptance -- --include-ignored --nocapture`). Needs `redis-server` and PostgreSQL's
//! `initdb`/`pg_ctl` (skipped without them; a failure under `CI=true`).
#![allow(
    clippy::print_stdout,
    reason = "the scenarios print their timeline and figures"
)]

mod faults;
mod load;
mod service;
mod timeline;

use std::sync::Arc;
use std::time::Duration;

use selfheal::{ActionRecord, ActionStatus, HealingEvent, Incident, IncidentFilter, Phase};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt;

use crate::load::{Load, LoadFigures};
use crate::service::{PG_TARGET, REDIS_TARGET, Servers, Service};
use crate::timeline::Timeline;

/// Load before the fault, so the pool and the sessions are warm.
const WARM_UP: Duration = Duration::from_secs(5);
/// How long the approver takes to answer.
const APPROVE_AFTER: Duration = Duration::from_secs(3);
/// The longest a scenario waits for the healer's verdict (the default verification
/// window is 2 minutes).
const VERDICT_CAP: Duration = Duration::from_secs(150);

/// One scenario: servers, the service with its healer, the load and the timeline.
struct Run {
    servers: Servers,
    service: Service,
    timeline: Arc<Timeline>,
    load: Load,
    follow: tokio::task::JoinHandle<()>,
    _subscriber: DefaultGuard,
}

/// What a scenario measured.
struct Figures {
    load: LoadFigures,
    incidents: Vec<Incident>,
    actions: Vec<ActionRecord>,
    escalations: usize,
    notifications: Vec<String>,
    suggested: Vec<String>,
    events: Vec<(Duration, HealingEvent)>,
}

impl Figures {
    fn rolled_back(&self) -> usize {
        self.events
            .iter()
            .filter(|(_, e)| e.phase == Phase::RolledBack)
            .count()
            + self
                .actions
                .iter()
                .filter(|a| a.status == ActionStatus::RolledBack)
                .count()
    }

    fn first(&self, phase: Phase) -> Option<Duration> {
        self.events
            .iter()
            .find(|(_, e)| e.phase == phase)
            .map(|(at, _)| *at)
    }

    /// The load ran at least `clean` past its last error (or had none).
    fn errors_stopped(&self, clean: Duration) -> bool {
        self.load
            .last_error()
            .is_none_or(|last| last + clean <= self.load.end())
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("—".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()))
}

impl Run {
    async fn start(name: &str) -> Option<Run> {
        let setup = std::time::Instant::now();
        let servers = Servers::start().await?;
        let service = Service::start(&servers).await;
        let timeline = Timeline::new(name);
        timeline.mark(format!(
            "private Redis and PostgreSQL, service and healer ready in {:.1?}",
            setup.elapsed()
        ));
        let follow = timeline.follow(&service.healer);
        // The host's subscriber: the healer's layer, plus selfheal's own warnings and
        // errors on the timeline.
        let subscriber = tracing_subscriber::registry()
            .with(service.healer.layer())
            .with(timeline.log_layer());
        let guard = tracing::subscriber::set_default(subscriber);
        timeline.mark(format!(
            "load: {} requests/s on {}",
            load::RATE,
            service.base
        ));
        let load = Load::start(service.base.clone(), timeline.clone());
        Some(Run {
            servers,
            service,
            timeline,
            load,
            follow,
            _subscriber: guard,
        })
    }

    /// Waits (the fault schedule) until `at` on the scenario clock.
    async fn until(&self, at: Duration) {
        if let Some(left) = at.checked_sub(self.timeline.elapsed()) {
            tokio::time::sleep(left).await;
        }
    }

    /// Waits for the healer to resolve an incident on `target` (an escalation on the
    /// way does not end the wait), at most until `cap`; then keeps the load on for `then`.
    async fn verdict(&self, target: &str, cap: Duration, then: Duration) -> Option<Duration> {
        let ended = self
            .timeline
            .wait_for(cap, |e| e.target == target && e.phase == Phase::Resolved)
            .await
            .map(|(at, _)| at);
        match ended {
            Some(at) => self
                .timeline
                .mark(format!("verdict on {target} at {at:.2?}")),
            None => self
                .timeline
                .mark(format!("no verdict on {target} by {cap:?}")),
        };
        tokio::time::sleep(then).await;
        ended
    }

    /// Stops the load, prints the timeline and the figures, stops the healer.
    async fn finish(self) -> (Figures, Servers, Service) {
        let samples = self.load.stop().await;
        self.timeline.mark("load stopped");
        let healer = &self.service.healer;
        let incidents = healer
            .admin()
            .incidents(&IncidentFilter::default())
            .await
            .unwrap();
        let actions = healer.admin().actions(None).await.unwrap();
        let audit = healer.admin().audit_log(100_000).await.unwrap();
        selfheal::verify_chain(&audit).expect("the audit chain verifies");
        let suggested = audit
            .iter()
            .filter(|r| r.event_type == "self_heal.suggested")
            .map(|r| {
                r.action
                    .clone()
                    .unwrap_or_else(|| r.detail.to_string().chars().take(120).collect())
            })
            .collect();
        let events = self.timeline.events();
        let figures = Figures {
            load: LoadFigures { samples },
            incidents,
            actions,
            escalations: events
                .iter()
                .filter(|(_, e)| e.phase == Phase::Escalated)
                .count(),
            notifications: self.service.inbox.event_types(),
            suggested,
            events,
        };
        self.follow.abort();
        print!("{}", self.timeline.render());
        print_figures(&figures);
        let Run {
            servers, service, ..
        } = self;
        (figures, servers, service)
    }
}

fn print_figures(f: &Figures) {
    let first_error = f.load.first_error();
    let since_first = |at: Option<Duration>| match (first_error, at) {
        (Some(first), Some(at)) => secs(Some(at.saturating_sub(first))),
        _ => "—".to_owned(),
    };
    println!("── figures ──");
    println!(
        "requests {}, errors {}; errors/requests per second (by send time): {}",
        f.load.samples.len(),
        f.load.errors(),
        f.load.error_rate_line()
    );
    println!(
        "first error {}, last error {}; first error → fix (executing) {}, → verified {}",
        secs(first_error),
        secs(f.load.last_error()),
        since_first(f.first(Phase::Executing)),
        since_first(f.first(Phase::Verified)),
    );
    println!(
        "incidents {}: {}",
        f.incidents.len(),
        f.incidents
            .iter()
            .map(|i| format!(
                "[{} {} pattern={} status={:?} occurrences={}]",
                i.target,
                i.template.chars().take(90).collect::<String>(),
                i.pattern.as_deref().unwrap_or("none"),
                i.status,
                i.occurrences
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "actions {}: {}",
        f.actions.len(),
        f.actions
            .iter()
            .map(|a| format!(
                "[{} {:?} health {:?}→{:?}{}]",
                a.strategy,
                a.status,
                a.health_before,
                a.health_after,
                a.error
                    .as_deref()
                    .map(|e| format!(" error: {e}"))
                    .unwrap_or_default()
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "escalations {}, rolled back {}, notifications {} {:?}, suggested {:?}",
        f.escalations,
        f.rolled_back(),
        f.notifications.len(),
        f.notifications,
        f.suggested
    );
}

fn approval_time(timeline: &Timeline) -> Option<Duration> {
    timeline.marks_containing("approver: approve")
}

#[tokio::test]
async fn redis_oom_approved_recovers_and_verifies_without_rollback() {
    let Some(run) = Run::start("Redis OOM, approver after 3 s").await else {
        return;
    };
    let (_approved, approver) =
        service::approver(&run.service.healer, &run.timeline, APPROVE_AFTER);
    run.until(WARM_UP).await;
    faults::fill_redis(&run.servers.redis_url, &run.timeline).await;
    run.verdict(REDIS_TARGET, VERDICT_CAP, Duration::from_secs(5))
        .await;
    approver.abort();
    let approved_at = approval_time(&run.timeline);
    let (f, _servers, service) = run.finish().await;
    service.running.shutdown().await;

    let approved_at = approved_at.expect("the approver approved a fix");
    assert!(
        f.load
            .last_error()
            .is_some_and(|last| last <= approved_at + Duration::from_secs(10))
            && f.load.end() >= approved_at + Duration::from_secs(10),
        "error rate back to 0 within 10 s of the approval at {approved_at:?}: last error {:?}",
        f.load.last_error()
    );
    assert!(f.first(Phase::Verified).is_some(), "verified");
    assert_eq!(f.rolled_back(), 0, "nothing rolled back");
    assert!(
        !f.suggested.iter().any(|s| s.contains("flushdb"))
            && !f
                .events
                .iter()
                .any(|(_, e)| e.detail.to_ascii_lowercase().contains("flushdb")),
        "no FLUSHDB suggested: {:?}",
        f.suggested
    );
}

#[tokio::test]
async fn redis_oom_unanswered_waits_with_one_suggestion() {
    let Some(run) = Run::start("Redis OOM, no approver").await else {
        return;
    };
    run.until(WARM_UP).await;
    faults::fill_redis(&run.servers.redis_url, &run.timeline).await;
    let asked = run
        .timeline
        .wait_for(WARM_UP + Duration::from_secs(40), |e| {
            e.phase == Phase::AwaitingApproval
        })
        .await;
    // Some time with the suggestion unanswered: nothing more may happen.
    let settle = asked.map_or(Duration::ZERO, |(at, _)| at) + Duration::from_secs(25);
    run.until(settle).await;
    let pending = run
        .service
        .healer
        .admin()
        .pending_approvals()
        .await
        .unwrap();
    let (f, _servers, service) = run.finish().await;
    service.running.shutdown().await;
    println!(
        "pending approvals: {:?}",
        pending.iter().map(|a| &a.plan.strategy).collect::<Vec<_>>()
    );

    assert!(f.load.errors() > 0, "the fault made requests fail");
    assert_eq!(pending.len(), 1, "one suggestion pending");
    assert_eq!(
        f.notifications.len(),
        1,
        "one notification: {:?}",
        f.notifications
    );
    assert_eq!(f.escalations, 0, "no escalation");
    assert!(f.actions.is_empty(), "nothing run: {:?}", f.actions);
}

#[tokio::test]
async fn postgres_slots_approved_recover_and_verify() {
    let Some(run) = Run::start("Postgres slots, approver after 3 s").await else {
        return;
    };
    let (_approved, approver) =
        service::approver(&run.service.healer, &run.timeline, APPROVE_AFTER);
    run.until(WARM_UP).await;
    let mut held = faults::fill_pg_slots(
        run.servers.app_connect(),
        17,
        Duration::from_secs(25),
        &run.timeline,
    )
    .await;
    run.verdict(PG_TARGET, VERDICT_CAP, Duration::from_secs(5))
        .await;
    approver.abort();
    let alive = held.alive().await;
    run.timeline.mark(format!(
        "{alive} of {} held sessions still alive",
        held.sessions.len()
    ));
    let (f, _servers, service) = run.finish().await;
    service.running.shutdown().await;
    drop(held);

    assert!(
        f.incidents
            .iter()
            .any(|i| i.target == PG_TARGET
                && i.pattern.as_deref() == Some("postgres_too_many_clients")),
        "the right pattern (postgres_too_many_clients)"
    );
    assert!(
        f.actions.iter().any(|a| a.strategy == "postgres_terminate_idle"
            && a.status == ActionStatus::Succeeded),
        "a fix that can work (postgres_terminate_idle) ran and succeeded"
    );
    assert!(f.load.errors() > 0, "the fault made requests fail");
    assert!(
        f.errors_stopped(Duration::from_secs(5)),
        "errors stop: last error {:?}, load ended {:?}",
        f.load.last_error(),
        f.load.end()
    );
    assert!(f.first(Phase::Verified).is_some(), "verified");
    assert!(f.escalations <= 1, "≤ 1 escalation: {}", f.escalations);
}

#[tokio::test]
async fn redis_restart_reconnects_on_its_own() {
    let Some(run) = Run::start("Redis restart, no approver").await else {
        return;
    };
    run.until(WARM_UP).await;
    let back = faults::restart_redis(
        run.servers.redis.clone(),
        Duration::from_secs(15),
        &run.timeline,
    )
    .await;
    run.until(back + Duration::from_secs(20)).await;
    let generation = run.service.app.redis.generation();
    run.timeline
        .mark(format!("redis handle generation {generation}"));
    let (f, _servers, service) = run.finish().await;
    service.running.shutdown().await;

    assert!(
        f.incidents.iter().any(|i| i.target == REDIS_TARGET
            && i.pattern.as_deref().is_some_and(|p| p.contains("redis"))),
        "recognised: a Redis pattern matched"
    );
    assert!(
        generation >= 2,
        "reconnected automatically: the handle's connection is still the first (generation {generation})"
    );
    let last_after = f.load.last_error_after(back);
    assert!(
        last_after.is_none_or(|last| last <= back + Duration::from_secs(5)),
        "errors stop within 5 s of Redis's return at {back:?}: last error {last_after:?}"
    );
}

#[tokio::test]
async fn no_fault_opens_nothing() {
    let Some(run) = Run::start("no fault, load only").await else {
        return;
    };
    run.until(Duration::from_secs(60)).await;
    let (f, _servers, service) = run.finish().await;
    service.running.shutdown().await;

    assert!(
        f.load.samples.len() > 1000,
        "the load ran: {}",
        f.load.samples.len()
    );
    assert_eq!(f.incidents.len(), 0, "no incident");
    assert_eq!(f.actions.len(), 0, "no action");
}
