//! `POST /api/alerts/alertmanager` (feature `alertmanager`): Alertmanager's webhook
//! behind the admin's bearer tokens, a viewer's enough; a bad body is a 400 naming the
//! field and counted as malformed; without a configured receiver a 404 says how.

mod api_fixture;

use api_fixture::{Fixture, serve, token};
use reqwest::StatusCode;
use selfheal_admin::{AdminConfig, Role};
use selfheal_core::Healer;
use serde_json::{Value, json};

const HOOK: &str = "/api/alerts/alertmanager";

fn notification(status: &str, fingerprint: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"DiskFull\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "selfheal",
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {"alertname": "DiskFull", "service": "db"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": status,
            "labels": {"alertname": "DiskFull", "service": "db"},
            "annotations": {"summary": "disk full on /var"},
            "startsAt": "2024-05-01T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": fingerprint,
        }],
    })
}

#[tokio::test]
async fn a_viewer_token_posts_alerts_and_they_reach_the_healer() {
    let f = Fixture::start().await;
    let post = |token: Option<&str>, body: Value| {
        let r = f.client.post(f.url(HOOK)).json(&body);
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
        .send()
    };
    let none = post(None, notification("firing", "fp1")).await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let unknown = post(Some(&token()), notification("firing", "fp1"))
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert!(
        f.healer.since_last_seen("db", None).is_none(),
        "nothing yet"
    );

    let viewer = post(Some(&f.viewer), notification("firing", "fp1"))
        .await
        .unwrap();
    assert_eq!(viewer.status(), StatusCode::OK);
    let receipt: Value = viewer.json().await.unwrap();
    assert_eq!(receipt, json!({"firing": 1, "resolved": 0, "truncated": 0}));
    assert!(
        f.healer.since_last_seen("db", None).is_some(),
        "the alert was taken in as a signal of `service`"
    );
    let resolved = post(Some(&f.operator), notification("resolved", "fp1"))
        .await
        .unwrap();
    assert_eq!(resolved.status(), StatusCode::OK);
    assert_eq!(resolved.json::<Value>().await.unwrap()["resolved"], 1);
    let stats = f.healer.sources();
    assert_eq!(stats[0].name, "alertmanager");
    assert_eq!(stats[0].emitted, 1, "{stats:?}");
    f.stop().await;
}

#[tokio::test]
async fn the_hook_with_a_trailing_slash_is_the_same_hook() {
    let f = Fixture::start().await;
    let slash = f
        .client
        .post(f.url(&format!("{HOOK}/")))
        .bearer_auth(&f.viewer)
        .json(&notification("firing", "fp-slash"))
        .send()
        .await
        .unwrap();
    assert_eq!(slash.status(), StatusCode::OK);
    assert_eq!(slash.json::<Value>().await.unwrap()["firing"], 1);
    assert!(f.healer.since_last_seen("db", None).is_some());
    let anonymous = f
        .client
        .post(f.url(&format!("{HOOK}/")))
        .json(&notification("firing", "fp-slash"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous.status(),
        StatusCode::UNAUTHORIZED,
        "tokens still apply"
    );
    f.stop().await;
}

#[tokio::test]
async fn a_bad_body_is_a_400_naming_the_field_and_counted() {
    let f = Fixture::start().await;
    let mut missing = notification("firing", "fp1");
    missing["alerts"][0]
        .as_object_mut()
        .unwrap()
        .remove("fingerprint");
    let mut wrong = notification("firing", "fp1");
    wrong["alerts"][0]["startsAt"] = json!(17);
    for (body, field) in [
        (missing.to_string(), Some("alerts[0].fingerprint")),
        (wrong.to_string(), Some("alerts[0].startsAt")),
        ("not json".to_owned(), None),
    ] {
        let r = f
            .client
            .post(f.url(HOOK))
            .bearer_auth(&f.viewer)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["status"], 400);
        assert!(
            e["error"]
                .as_str()
                .unwrap()
                .starts_with("not an Alertmanager webhook payload: "),
            "{e}"
        );
        assert_eq!(e["field"].as_str(), field, "{e}");
    }
    assert_eq!(f.healer.sources()[0].malformed, 3);
    assert!(f.healer.since_last_seen("db", None).is_none());
    let big = "x".repeat(2 * 1024 * 1024);
    let r = f
        .client
        .post(f.url(HOOK))
        .bearer_auth(&f.viewer)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], 413);
    f.stop().await;
}

#[tokio::test]
async fn without_a_receiver_the_endpoint_says_how_to_configure_one() {
    let viewer = token();
    let healer = Healer::builder().build().unwrap();
    let running = healer.spawn();
    let base = serve(selfheal_admin::router(
        healer,
        AdminConfig::default().token(Role::Viewer, "victor", &viewer),
    ))
    .await;
    let r = reqwest::Client::new()
        .post(format!("{base}{HOOK}"))
        .bearer_auth(&viewer)
        .json(&notification("firing", "fp1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("AdminConfig::alertmanager"),
        "{e}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_webhook() {
    let f = Fixture::start().await;
    let doc: Value = f
        .client
        .get(f.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let op = &doc["paths"][HOOK]["post"];
    for code in ["200", "400", "401", "404", "413", "503"] {
        assert!(op["responses"][code].is_object(), "lacks {code}: {op}");
    }
    assert!(
        op["responses"]["403"].is_null(),
        "a viewer may post alerts: no 403"
    );
    let schema = &doc["components"]["schemas"]["AlertmanagerAlert"];
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in ["status", "labels", "startsAt", "fingerprint"] {
        assert!(required.contains(&field), "{field} required: {schema}");
    }
    f.stop().await;
}
