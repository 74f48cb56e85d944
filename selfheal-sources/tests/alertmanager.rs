//! The Alertmanager receiver over HTTP: a grouped notification is one signal per firing
//! alert, a resolved alert reaches the healer, bad bodies are a 400 that says what is
//! wrong and changes nothing, and nothing is taken before the healer runs.

mod support;

use std::sync::Arc;

use selfheal_core::{Healer, Level, MemoryStore, SignalSource};
use selfheal_sources::alertmanager::Alertmanager;
use serde_json::{Value, json};
use support::Spy;

/// Serves `alerts.router()` under `/hooks/alertmanager`; the URL to post to.
async fn serve(alerts: &Alertmanager) -> String {
    let app = axum::Router::new().nest_service("/hooks/alertmanager", alerts.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hooks/alertmanager",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn alert(status: &str, name: &str, labels: Value, fingerprint: &str) -> Value {
    let mut all = json!({"alertname": name});
    all.as_object_mut()
        .unwrap()
        .extend(labels.as_object().unwrap().clone());
    json!({
        "status": status,
        "labels": all,
        "annotations": {"summary": format!("{name} on {fingerprint}")},
        "startsAt": "2024-05-01T10:00:00Z",
        "endsAt": if status == "firing" { "0001-01-01T00:00:00Z" } else { "2024-05-01T10:05:00Z" },
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint,
    })
}

/// A version 4 notification of `alerts`, grouped by `service`.
fn notification(alerts: Vec<Value>) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{service=\"cache\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "selfheal",
        "groupLabels": {"service": "cache"},
        "commonLabels": {"service": "cache"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    })
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn healer(spy: &Spy, alerts: &Alertmanager) -> Healer {
    Healer::builder()
        .store_arc(Arc::new(MemoryStore::new()))
        .fingerprinter(spy.clone())
        .source(alerts.clone())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grouped_notification_is_one_signal_per_firing_alert() {
    let alerts = Alertmanager::new();
    let spy = Spy::default();
    let healer = healer(&spy, &alerts);
    let running = healer.spawn();
    let url = serve(&alerts).await;
    let body = notification(vec![
        alert(
            "firing",
            "RedisDown",
            json!({"service": "cache", "severity": "critical", "instance": "cache-1:6379"}),
            "aa01",
        ),
        alert(
            "firing",
            "RedisMemoryHigh",
            json!({"service": "cache", "severity": "warning"}),
            "aa02",
        ),
        alert("resolved", "RedisSlow", json!({"job": "redis"}), "aa03"),
        alert("firing", "Mystery", json!({}), "aa04"),
    ]);
    let (status, receipt) = post(&url, body.to_string()).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(
        receipt,
        json!({"firing": 3, "resolved": 1, "truncated": 0}),
        "the answer says what was taken"
    );
    // The receipt comes after each signal was taken in.
    let signals = spy.signals();
    assert_eq!(signals.len(), 3, "{signals:?}");
    let down = &signals[0];
    assert_eq!(down.target, "cache", "`service` names the target");
    assert_eq!(down.message, "RedisDown: RedisDown on aa01");
    assert_eq!(down.source, SignalSource::External);
    assert_eq!(down.level, Level::Error);
    assert_eq!(down.fields["alert.fingerprint"], "aa01");
    assert_eq!(down.fields["instance"], "cache-1:6379", "labels are fields");
    assert_eq!(down.fields["alert.receiver"], "selfheal");
    assert_eq!(down.timestamp.to_rfc3339(), "2024-05-01T10:00:00+00:00");
    assert_eq!(signals[1].level, Level::Warn, "severity=warning");
    assert_eq!(
        signals[2].target, "alertmanager",
        "no target label: the default"
    );
    let stats = &healer.sources()[0];
    assert_eq!(
        (stats.name.as_str(), stats.emitted, stats.malformed),
        ("alertmanager", 3, 0)
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_refused_with_what_is_wrong_and_change_nothing() {
    let alerts = Alertmanager::new().target_labels(["job"]);
    let spy = Spy::default();
    let healer = healer(&spy, &alerts);
    let running = healer.spawn();
    let url = serve(&alerts).await;
    let good = notification(vec![alert("firing", "X", json!({"job": "api"}), "f1")]);
    let mut missing = good.clone();
    missing["alerts"][0]
        .as_object_mut()
        .unwrap()
        .remove("fingerprint");
    let mut wrong_type = good.clone();
    wrong_type["alerts"][0]["labels"] = json!(["job", "api"]);
    let mut old = good.clone();
    old["version"] = json!("3");
    let cases: Vec<(String, &str)> = vec![
        (
            missing.to_string(),
            "alerts[0]: missing field `fingerprint`",
        ),
        (
            wrong_type.to_string(),
            "alerts[0].labels: invalid type: sequence",
        ),
        (old.to_string(), "version: `3`"),
        ("not json".to_owned(), "expected ident"),
        (String::new(), "EOF"),
        (
            "\u{0}\u{ff}".repeat(100),
            "not an Alertmanager webhook payload",
        ),
    ];
    let n = cases.len() as u64;
    for (body, says) in cases {
        let (status, answer) = post(&url, body).await;
        assert_eq!(status, 400, "{answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(says), "`{says}` not in `{error}`");
    }
    assert!(spy.signals().is_empty(), "nothing was taken in");
    assert_eq!(healer.sources()[0].malformed, n);
    // And the receiver still works.
    let (status, _) = post(&url, good.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(
        spy.signals()[0].target,
        "api",
        "the configured target label"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_taken_before_the_healer_runs_or_after_it_stopped() {
    let alerts = Alertmanager::new();
    let spy = Spy::default();
    let healer = healer(&spy, &alerts);
    let url = serve(&alerts).await;
    let body = notification(vec![alert("firing", "X", json!({}), "f1")]).to_string();
    let (status, answer) = post(&url, body.clone()).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("not running"));
    let running = healer.spawn();
    // The receiver gets its feed when its task starts.
    let taken = async {
        loop {
            if post(&url, body.clone()).await.0 == 200 {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), taken)
        .await
        .expect("taken once the healer runs");
    running.shutdown().await;
    assert_eq!(post(&url, body).await.0, 503, "after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_answers_with_and_without_a_trailing_slash() {
    let alerts = Alertmanager::new();
    let spy = Spy::default();
    let healer = healer(&spy, &alerts);
    let running = healer.spawn();
    let url = serve(&alerts).await;
    for (n, url) in [url.clone(), format!("{url}/")].into_iter().enumerate() {
        let fingerprint = format!("slash{n}");
        let body = notification(vec![alert("firing", "X", json!({}), &fingerprint)]);
        let (status, answer) = post(&url, body.to_string()).await;
        assert_eq!(status, 200, "{url}: {answer}");
        let signals = spy.signals();
        assert_eq!(signals.len(), n + 1, "{url}: {signals:?}");
        assert_eq!(signals[n].fields["alert.fingerprint"], fingerprint);
    }
    // Only the hook itself: a path below it is not the webhook.
    let (status, _) = post_raw(&format!("{url}/other"), "{}").await;
    assert_eq!(status, 404);
    running.shutdown().await;
}

async fn post_raw(url: &str, body: &'static str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}
