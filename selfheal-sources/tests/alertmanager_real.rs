//! A real Alertmanager (Debian's `prometheus-alertmanager`) notifies the receiver: an
//! alert posted to its API opens an incident whose fix does not verify while the alert
//! fires, however quiet it is, and verifies once Alertmanager sends the resolution.
//! Prints the round trips: alert posted → signal taken in, resolution posted →
//! resolution received → fix verified.
//!
//! Without the binary the test says it skipped; under `CI=true` it fails.
#![allow(clippy::print_stdout)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use selfheal_core::{
    ActionContext, ActionOutcome, Executor, FixBinding, Healer, HealerConfig, HealingEvent,
    MemoryStore, Pattern, PatternMode, Phase, RemediationPlan, Strategy,
};
use selfheal_sources::alertmanager::Alertmanager;
use selfheal_testsupport::{PrivateAlertmanager, unavailable};
use serde_json::json;
use support::Spy;
use tokio::sync::broadcast;
use tokio::time::Instant;

const QUIET: Duration = Duration::from_millis(500);

/// A fix that always runs fine.
#[derive(Debug)]
struct PromoteReplica;

#[async_trait]
impl Strategy for PromoteReplica {
    fn name(&self) -> &str {
        "promote_replica"
    }
    async fn plan(&self, ctx: &ActionContext) -> selfheal_core::Result<RemediationPlan> {
        Ok(RemediationPlan::new("promote_replica", &ctx.target).step("promote the replica"))
    }
    async fn execute(
        &self,
        _: &RemediationPlan,
        _: Arc<dyn Executor>,
    ) -> selfheal_core::Result<ActionOutcome> {
        Ok(ActionOutcome::ok(Duration::ZERO))
    }
}

/// The next event of `phase` (at most 30 s), with when it came.
async fn until(events: &mut broadcast::Receiver<HealingEvent>, phase: Phase) -> Instant {
    let wait = async {
        loop {
            let e = events.recv().await.unwrap();
            println!("{:?}: {}", e.phase, e.detail);
            if e.phase == phase {
                return Instant::now();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("no {phase:?} within 30s"))
}

/// Posts `alert` to Alertmanager's API v2.
async fn post_alert(am: &str, ends_at: Option<chrono::DateTime<chrono::Utc>>) -> Instant {
    let mut alert = json!({
        "labels": {"alertname": "RedisDown", "service": "cache", "severity": "critical"},
        "annotations": {"summary": "redis on cache-1 is down"},
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
    });
    if let Some(at) = ends_at {
        alert["endsAt"] = json!(at.to_rfc3339());
    }
    let posted = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{am}/api/v2/alerts"))
        .json(&json!([alert]))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    posted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_opens_an_incident_and_its_resolution_verifies_the_fix() {
    // The receiver, serving before Alertmanager starts; each request's arrival noted.
    let alerts = Alertmanager::new();
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let noted = arrivals.clone();
    let app = axum::Router::new()
        .nest_service("/hooks/alertmanager", alerts.router())
        .layer(from_fn(move |request: Request, next: Next| {
            let noted = noted.clone();
            async move {
                noted.lock().unwrap().push(Instant::now());
                let response: Response = next.run(request).await;
                response
            }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // The URL as users often write it, with a trailing slash: the mount answers it.
    let hook = format!(
        "http://{}/hooks/alertmanager/",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config = format!(
        "route:\n  receiver: selfheal\n  group_by: [alertname]\n  group_wait: 100ms\n  \
         group_interval: 500ms\n  repeat_interval: 1h\nreceivers:\n  - name: selfheal\n    \
         webhook_configs:\n      - url: {hook}\n        send_resolved: true\n"
    );
    let am = match PrivateAlertmanager::start(&config) {
        Ok(am) => am,
        Err(e) => return unavailable("prometheus-alertmanager", e),
    };

    let mut config = HealerConfig::default();
    config.verification.interval = Duration::from_millis(20);
    config.verification.quiet_for = QUIET;
    config.verification.window = Duration::from_secs(60);
    let spy = Spy::default();
    let healer = Healer::builder()
        .config(config)
        .store(MemoryStore::new())
        .fingerprinter(spy.clone())
        .strategy(PromoteReplica)
        .source(alerts.clone())
        .build()
        .unwrap();
    let mut events = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(
            Pattern::new("redis_down")
                .regex("^RedisDown")
                .mode(PatternMode::Active)
                .auto_healable(true)
                .confidence(0.95)
                .threshold(1, Duration::from_secs(60))
                .fix(FixBinding::new("promote_replica")),
            "test",
        )
        .await
        .unwrap();

    let fired = post_alert(&am.url(), None).await;
    let signal = spy.wait_for(1).await.remove(0);
    let ingested = Instant::now();
    assert_eq!(signal.target, "cache");
    assert_eq!(signal.message, "RedisDown: redis on cache-1 is down");
    assert_eq!(signal.fields["alert.receiver"], "selfheal");
    assert!(!signal.fields["alert.fingerprint"].is_empty());
    until(&mut events, Phase::Detected).await;
    let verifying = until(&mut events, Phase::Verifying).await;

    // Quiet for four times `quiet_for` while the alert fires: not verified.
    tokio::time::sleep(QUIET * 4).await;
    while let Ok(e) = events.try_recv() {
        assert_ne!(e.phase, Phase::Verified, "verified while the alert fires");
    }
    let before = arrivals.lock().unwrap().len();
    let resolved = post_alert(
        &am.url(),
        Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
    )
    .await;
    let verified = until(&mut events, Phase::Verified).await;
    let received = *arrivals
        .lock()
        .unwrap()
        .get(before)
        .expect("the resolution was received");
    assert!(verified > resolved && received > resolved);
    assert!(
        verified - verifying > QUIET * 4,
        "verified only after the resolution"
    );
    running.shutdown().await;
    println!(
        "alertmanager round trip (group_wait 100ms, group_interval 500ms, verification every \
         20ms): alert posted -> signal taken in {:?}; resolution posted -> received {:?} -> \
         fix verified {:?}",
        ingested - fired,
        received - resolved,
        verified - resolved
    );
}
