//! The HTTP sources as a user embeds them through the facade, the way the README's
//! Sources section shows: Loki polled for error lines, and Alertmanager's webhook
//! mounted on the host's router and in the admin router, an alert's resolution
//! verifying the fix.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use selfheal::admin::{AdminConfig, Role};
use selfheal::sources::alertmanager::Alertmanager;
use selfheal::sources::loki::LokiSource;
use selfheal::{
    FixBinding, Healer, HealerConfig, HealingEvent, MemoryStore, Pattern, PatternMode, Phase,
    Running,
};
use serde_json::{Value, json};
use support::{FakeFix, Gauge};
use tokio::sync::broadcast::Receiver;

/// A spawned healer fed by `source`, its pattern `redis_down` matching `regex` at the
/// first signal and bound to `redis_reconnect`; its events.
async fn spawn(
    config: HealerConfig,
    source: impl selfheal::source::Source,
    regex: &str,
) -> (Healer, Running, Receiver<HealingEvent>) {
    let healer = Healer::builder()
        .config(config)
        .store(MemoryStore::new())
        .strategy(FakeFix::new("redis_reconnect", &Gauge::new(100), None))
        .source(source)
        .build()
        .unwrap();
    let events = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(pattern(regex), "ops")
        .await
        .unwrap();
    (healer, running, events)
}

fn pattern(regex: &str) -> Pattern {
    Pattern::new("redis_down")
        .regex(regex)
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(0.95)
        .threshold(1, Duration::from_secs(300))
        .fix(FixBinding::new("redis_reconnect"))
}

/// Waits (at most 20 s) for an event of `phase`; the details seen on the way.
async fn until(events: &mut Receiver<HealingEvent>, phase: Phase) -> Vec<String> {
    let mut seen = Vec::new();
    let wait = async {
        loop {
            let e = events.recv().await.unwrap();
            seen.push(format!("{:?}: {}", e.phase, e.detail));
            if e.phase == phase {
                return;
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .is_err()
    {
        panic!("no {phase:?} within 20s");
    }
    seen
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn notification(status: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"RedisDown\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "selfheal",
        "groupLabels": {"alertname": "RedisDown"},
        "commonLabels": {"alertname": "RedisDown", "service": "cache"},
        "commonAnnotations": {"summary": "redis on cache-1 is down"},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": status,
            "labels": {"alertname": "RedisDown", "service": "cache", "severity": "critical"},
            "annotations": {"summary": "redis on cache-1 is down"},
            "startsAt": "2024-05-01T10:00:00Z",
            "endsAt": if status == "firing" { "0001-01-01T00:00:00Z" } else { "2024-05-01T10:05:00Z" },
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
            "fingerprint": "6f1a3c0d2b9e8a77",
        }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_opens_an_incident_and_its_resolution_verifies_the_fix() {
    let mut config = HealerConfig::default();
    config.verification.interval = Duration::from_millis(20);
    config.verification.quiet_for = Duration::from_millis(100);
    let alerts = Alertmanager::new().target_labels(["service", "job"]);
    let (healer, running, mut events) = spawn(config, alerts.clone(), "^RedisDown").await;
    let base =
        serve(axum::Router::new().nest_service("/hooks/alertmanager", alerts.router())).await;
    let hook = format!("{base}/hooks/alertmanager");
    let client = reqwest::Client::new();

    let fired = client
        .post(&hook)
        .json(&notification("firing"))
        .send()
        .await
        .unwrap();
    assert_eq!(fired.status(), 200);
    until(&mut events, Phase::Verifying).await;
    // Ten quiet periods while the alert fires: no verdict yet.
    tokio::time::sleep(Duration::from_secs(1)).await;
    while let Ok(e) = events.try_recv() {
        assert_ne!(e.phase, Phase::Verified, "verified while the alert fires");
    }
    let resolved = client
        .post(&hook)
        .json(&notification("resolved"))
        .send()
        .await
        .unwrap();
    assert_eq!(resolved.json::<Value>().await.unwrap()["resolved"], 1);
    until(&mut events, Phase::Verified).await;
    let stats = healer.sources();
    assert_eq!((stats[0].emitted, stats[0].malformed), (1, 0), "{stats:?}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_router_takes_alerts_with_a_viewer_token() {
    let alerts = Alertmanager::new();
    let healer = Healer::builder()
        .store(MemoryStore::new())
        .source(alerts.clone())
        .build()
        .unwrap();
    let running = healer.spawn();
    let secret = format!(
        "{:032x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let config = AdminConfig::default()
        .token(Role::Viewer, "alertmanager", &secret)
        .alertmanager(alerts);
    let base = serve(
        axum::Router::new().nest("/selfheal", selfheal::admin::router(healer.clone(), config)),
    )
    .await;
    let r = reqwest::Client::new()
        .post(format!("{base}/selfheal/api/alerts/alertmanager"))
        .bearer_auth(&secret)
        .json(&notification("firing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["firing"], 1);
    assert!(healer.since_last_seen("cache", None).is_some());
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_lines_open_an_incident() {
    // A Loki that always answers the same page: the cursor keeps it from counting twice.
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        - 20_000_000_000;
    let page = json!({"status": "success", "data": {"resultType": "streams", "result": [
        {"stream": {"service_name": "checkout", "namespace": "prod"},
         "values": [[ts.to_string(), "level=error msg=\"redis: connection refused\""],
                    [(ts + 1).to_string(), "level=info msg=\"retrying\""]]}],
        "stats": {}}})
    .to_string();
    let asked = Arc::new(tokio::sync::Notify::new());
    let polled = asked.clone();
    let loki = serve(axum::Router::new().route(
        "/loki/api/v1/query_range",
        axum::routing::get(move || {
            let page = page.clone();
            polled.notify_waiters();
            async move { ([("content-type", "application/json")], page) }
        }),
    ))
    .await;

    let source = LokiSource::new(&loki, r#"{namespace="prod"} |= "error""#)
        .poll_every(Duration::from_millis(50))
        .lookback(Duration::from_secs(60))
        .target_label("service_name")
        .tenant("team-a")
        .unwrap();
    let (healer, running, mut events) =
        spawn(HealerConfig::default(), source, "connection refused").await;
    let seen = until(&mut events, Phase::Matched).await;
    assert!(
        seen.last().unwrap().contains("pattern `redis_down`"),
        "the error line matched: {seen:?}"
    );
    let incidents = healer.admin().open_incidents();
    assert_eq!(
        incidents[0].target, "checkout",
        "service_name names the target"
    );
    // Three more polls answered with the same page: nothing is taken twice.
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(10), asked.notified())
            .await
            .expect("Loki is polled");
    }
    running.shutdown().await;
    let stats = &healer.sources()[0];
    assert_eq!(
        (stats.name.as_str(), stats.emitted),
        ("loki", 1),
        "one error line, once: {stats:?}"
    );
    assert_eq!(healer.observed(), 1);
}
