//! The admin API over real HTTP: every endpoint's success body, the auth answers, the
//! error statuses, the audit trail, and an approval raised by a real incident and
//! approved over HTTP.

mod api_fixture;

use std::time::Duration;

use api_fixture::{Fixture, serve, token};
use reqwest::{Method, StatusCode};
use selfheal_admin::{AdminConfig, Principal, Role};
use selfheal_core::{FixBinding, Pattern, PatternMode, Phase, Signal};
use serde_json::{Value, json};

fn pattern_json(name: &str, regex: &str) -> Value {
    json!({"name": name, "regex": regex, "keywords": ["disk"], "window": "1m"})
}

async fn body(r: reqwest::Response, status: StatusCode) -> Value {
    let got = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

/// A pattern whose only fix always waits for a human, opening on the first signal.
fn disk_full() -> Pattern {
    Pattern::new("disk_full")
        .regex("disk full on")
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(0.95)
        .threshold(1, Duration::from_secs(60))
        .fix(FixBinding::new("cleanup").requires_approval(true))
}

#[tokio::test]
async fn an_approval_raised_by_an_incident_and_approved_over_http_runs_the_fix() {
    approval_flow(Fixture::start().await).await;
}

#[tokio::test]
async fn the_approval_flow_and_its_reports_hold_on_sqlite() {
    let store = selfheal_storage::SqliteStore::in_memory().await.unwrap();
    approval_flow(Fixture::on(store).await).await;
}

#[tokio::test]
async fn every_endpoint_answers_on_sqlite_too() {
    let store = selfheal_storage::SqliteStore::in_memory().await.unwrap();
    every_endpoint(Fixture::on(store).await).await;
}

async fn approval_flow(f: Fixture) {
    let mut events = f.healer.subscribe();
    f.healer
        .admin()
        .add_pattern(disk_full(), "test")
        .await
        .unwrap();
    f.healer.observe(Signal::new("db", "disk full on /var"));
    tokio::time::timeout(Duration::from_secs(10), async {
        while events.recv().await.unwrap().phase != Phase::AwaitingApproval {}
    })
    .await
    .expect("the incident waits for approval");
    assert_eq!(f.cleanup.runs.load(std::sync::atomic::Ordering::SeqCst), 0);

    let pending = body(
        f.get("/api/approvals").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let pending = pending.as_array().unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["state"], "pending");
    let id = pending[0]["id"].as_str().unwrap().to_owned();
    let incident = pending[0]["incident"].as_str().unwrap().to_owned();

    let status = body(f.get("/api/status").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(status["pending_approvals"], 1);

    let decided = body(
        f.op(Method::POST, &format!("/api/approvals/{id}/approve"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(decided["state"], "approved");
    assert_eq!(decided["decided_by"], "alice");

    tokio::time::timeout(Duration::from_secs(10), async {
        while events.recv().await.unwrap().phase != Phase::Resolved {}
    })
    .await
    .expect("the approved fix runs and is verified");
    assert_eq!(f.cleanup.runs.load(std::sync::atomic::Ordering::SeqCst), 1);

    let again = body(
        f.op(Method::POST, &format!("/api/approvals/{id}/approve"))
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        again["error"].as_str().unwrap().contains("already"),
        "{again}"
    );

    let detail = body(
        f.get(&format!("/api/incidents/{incident}"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(detail["incident"]["status"], "resolved");
    assert_eq!(detail["actions"][0]["status"], "succeeded");
    assert_eq!(detail["approvals"][0]["decided_by"], "alice");
    let audit = detail["audit"].as_array().unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r["event_type"] == "self_heal.approved" && r["actor"] == "alice"),
        "{audit:?}"
    );

    let report = body(
        f.get("/api/reports?hours=24").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(report["occurrences"][0]["pattern"], "disk_full");
    assert_eq!(report["occurrences"][0]["count"], 1);
    assert_eq!(report["strategies"][0]["strategy"], "cleanup");
    assert_eq!(report["strategies"][0]["success_rate"], 1.0);
    assert!(report["mttr_seconds"]["disk_full"].as_f64().unwrap() >= 0.0);

    let page = body(
        f.get("/api/incidents?status=resolved&limit=1")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"][0]["id"], incident.as_str());
    assert_eq!(page["total"], 1);
    let empty = body(
        f.get("/api/incidents?status=open&target=db")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(empty["items"], json!([]));

    let patterns = body(f.get("/api/patterns").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(patterns[0]["pattern"]["name"], "disk_full");
    assert_eq!(patterns[0]["stats"]["incidents"], 1);
    f.stop().await;
}

#[tokio::test]
async fn every_endpoint_answers_with_its_body() {
    every_endpoint(Fixture::start().await).await;
}

async fn every_endpoint(f: Fixture) {
    let status = body(f.get("/api/status").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(status["replica"], f.healer.replica());
    assert_eq!(status["safety"]["breaker_open"], false);
    let stats = body(f.get("/api/stats").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(stats["open_incidents"], 0);

    let added = body(
        f.op(Method::POST, "/api/patterns")
            .json(&pattern_json("oom", "out of memory"))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(added["name"], "oom");
    assert_eq!(added["mode"], "alert_only");
    let dup = body(
        f.op(Method::POST, "/api/patterns")
            .json(&pattern_json("oom", "x"))
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(dup["error"].as_str().unwrap().contains("exists"), "{dup}");

    let mut changed = pattern_json("oom", "out of memory|OOM");
    changed["description"] = json!("the kernel killed it");
    let replaced = body(
        f.op(Method::PUT, "/api/patterns/oom")
            .json(&changed)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(replaced["description"], "the kernel killed it");
    let renamed = body(
        f.op(Method::PUT, "/api/patterns/other")
            .json(&changed)
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        renamed["error"].as_str().unwrap().contains("name"),
        "{renamed}"
    );

    let disabled = body(
        f.op(Method::POST, "/api/patterns/oom/enabled")
            .json(&json!({"enabled": false}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(disabled["enabled"], false);
    let promoted = body(
        f.op(Method::POST, "/api/patterns/oom/promote")
            .json(&json!({"auto_healable": true}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            promoted["mode"].as_str(),
            promoted["auto_healable"].as_bool()
        ),
        (Some("active"), Some(true))
    );
    let demoted = body(
        f.op(Method::POST, "/api/patterns/oom/demote")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (demoted["mode"].as_str(), demoted["auto_healable"].as_bool()),
        (Some("alert_only"), Some(false))
    );

    let doc = body(
        f.get("/api/patterns/export?source=test-svc")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(doc["source"], "test-svc");
    assert_eq!(doc["patterns"][0]["name"], "oom");
    let mut doc2 = doc.clone();
    doc2["patterns"][0]["name"] = json!("oom_copy");
    let report = body(
        f.op(Method::POST, "/api/patterns/import")
            .json(&json!({"document": doc2, "trust_modes": false}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(report["added"], json!(["oom_copy"]));
    let listed = body(f.get("/api/patterns").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(listed.as_array().unwrap().len(), 2);

    let incidents = body(
        f.get("/api/incidents").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        incidents,
        json!({"items": [], "total": 0, "limit": 50, "offset": 0})
    );
    let approvals = body(
        f.get("/api/approvals").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(approvals, json!([]));

    let created = body(
        f.op(Method::POST, "/api/silences")
            .json(&json!({"target": "db", "duration": "1h", "reason": "failover"}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let sid = created["id"].as_str().unwrap().to_owned();
    let silences = body(f.get("/api/silences").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(silences[0]["id"], sid.as_str());
    assert_eq!(silences[0]["active"], true);
    assert_eq!(silences[0]["created_by"], "alice");
    let both = body(
        f.op(Method::POST, "/api/silences")
            .json(&json!({"target": "db", "pattern": "oom", "duration": "1h"}))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        both["error"].as_str().unwrap().contains("exactly one"),
        "{both}"
    );
    let bad_duration = body(
        f.op(Method::POST, "/api/silences")
            .json(&json!({"target": "db", "duration": "soon"}))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        bad_duration["error"]
            .as_str()
            .unwrap()
            .starts_with("duration"),
        "{bad_duration}"
    );
    let removed = f
        .op(Method::DELETE, &format!("/api/silences/{sid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert!(
        f.healer
            .admin()
            .silences()
            .iter()
            .all(|s| s.id.to_string() != sid)
    );

    let dry = body(
        f.op(Method::PUT, "/api/dry-run")
            .json(&json!({"on": true}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        dry,
        json!({"dry_run": true, "pattern": null, "dry_run_patterns": []})
    );
    assert!(f.healer.admin().is_dry_run(None));
    let safety = body(f.get("/api/safety").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(safety["dry_run"], true);
    let dry = body(
        f.op(Method::PUT, "/api/dry-run")
            .json(&json!({"on": false}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(dry["dry_run"], false);
    let one = body(
        f.op(Method::PUT, "/api/dry-run")
            .json(&json!({"on": true, "pattern": "oom"}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        one,
        json!({"dry_run": true, "pattern": "oom", "dry_run_patterns": ["oom"]})
    );
    assert!(f.healer.admin().is_dry_run(Some("oom")) && !f.healer.admin().is_dry_run(None));
    // Switching the whole healer off leaves the pattern dry, and says so.
    let status = body(f.get("/api/status").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(status["dry_run"], false);
    assert_eq!(status["dry_run_patterns"], json!(["oom"]));

    let rearm = body(
        f.op(Method::POST, "/api/breaker/rearm")
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        rearm["error"].as_str().unwrap().contains("not open"),
        "{rearm}"
    );

    let health = body(f.get("/api/health").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(health["db"]["score"], 10);
    let checked = body(
        f.op(Method::POST, "/api/health/db/check")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(checked["passed"], false);

    let backups = body(f.get("/api/backups").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(backups[0]["location"], "/etc/db.conf");
    assert_eq!(backups[0]["restored_at"], Value::Null);
    let bid = backups[0]["id"].as_str().unwrap().to_owned();
    let restored = body(
        f.op(Method::POST, &format!("/api/backups/{bid}/restore"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(restored["restored_at"].is_string(), "{restored}");

    let report = body(f.get("/api/reports").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(report["occurrences"], json!([]));
    assert_eq!(report["strategies"], json!([]));

    let audit = body(
        f.get("/api/audit?limit=1000").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let audit = audit.as_array().unwrap();
    assert!(audit.len() >= 10, "{}", audit.len());
    let verdict = body(
        f.get("/api/audit/verify").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(verdict["ok"], true);
    assert_eq!(verdict["records"], audit.len());
    assert_eq!(verdict["first_broken"], Value::Null);
    f.stop().await;
}

#[tokio::test]
async fn audit_pages_back_by_seq() {
    let f = Fixture::start().await;
    for i in 0..5 {
        f.healer
            .admin()
            .add_pattern(Pattern::new(format!("p{i}")).regex(format!("e{i}")), "test")
            .await
            .unwrap();
    }
    let newest = body(
        f.get("/api/audit?limit=2").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let newest = newest.as_array().unwrap();
    assert_eq!(newest.len(), 2);
    let oldest_seq = newest[0]["seq"].as_u64().unwrap();
    assert_eq!(newest[1]["seq"].as_u64().unwrap(), oldest_seq + 1);
    let before = body(
        f.get(&format!("/api/audit?limit=2&before_seq={oldest_seq}"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let seqs: Vec<u64> = before
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [oldest_seq - 2, oldest_seq - 1]);
    f.stop().await;
}

#[tokio::test]
async fn a_mutation_is_in_the_audit_trail_with_the_principal_as_actor() {
    let f = Fixture::start().await;
    let r = f
        .op(Method::POST, "/api/patterns")
        .json(&pattern_json("audited", "audited thing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let audit = body(f.get("/api/audit").send().await.unwrap(), StatusCode::OK).await;
    let record = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["event_type"] == "self_heal.pattern_added" && r["pattern"] == "audited")
        .cloned()
        .expect("the addition is audited");
    assert_eq!(record["actor"], "alice");
    f.stop().await;
}

#[tokio::test]
async fn no_token_or_an_unknown_one_is_401_with_a_bearer_challenge() {
    let f = Fixture::start().await;
    let r = f.client.get(f.url("/api/status")).send().await.unwrap();
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap(),
        "Bearer"
    );
    let e = body(r, StatusCode::UNAUTHORIZED).await;
    assert_eq!(e["status"], 401);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{e}"
    );
    let r = f
        .client
        .get(f.url("/api/status"))
        .bearer_auth(token())
        .send()
        .await
        .unwrap();
    let e = body(r, StatusCode::UNAUTHORIZED).await;
    assert!(e["error"].as_str().unwrap().contains("unknown"), "{e}");
    assert!(r_has_no_cookie(&f).await);
    f.stop().await;
}

async fn r_has_no_cookie(f: &Fixture) -> bool {
    let r = f.get("/api/status").send().await.unwrap();
    r.status() == StatusCode::OK && r.headers().get("set-cookie").is_none()
}

#[tokio::test]
async fn a_viewer_calling_a_mutation_is_403_naming_the_role() {
    let f = Fixture::start().await;
    let r = f
        .client
        .post(f.url("/api/patterns"))
        .bearer_auth(&f.viewer)
        .json(&pattern_json("nope", "nope"))
        .send()
        .await
        .unwrap();
    let e = body(r, StatusCode::FORBIDDEN).await;
    assert!(e["error"].as_str().unwrap().contains("operator"), "{e}");
    assert!(
        f.healer.admin().patterns().await.unwrap().is_empty(),
        "nothing added"
    );
    f.stop().await;
}

#[tokio::test]
async fn an_invalid_regex_is_400_with_the_engine_message() {
    let f = Fixture::start().await;
    let e = body(
        f.op(Method::POST, "/api/patterns")
            .json(&pattern_json("broken", "pool (timed out"))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let msg = e["error"].as_str().unwrap();
    assert!(msg.contains("invalid regex"), "{msg}");
    // The regex crate's own words for an unclosed group.
    assert!(msg.contains("unclosed group"), "{msg}");
    f.stop().await;
}

#[tokio::test]
async fn unknown_ids_and_names_are_404() {
    let f = Fixture::start().await;
    let nil = "00000000-0000-0000-0000-000000000000";
    for (method, path) in [
        (Method::GET, format!("/api/incidents/{nil}")),
        (Method::POST, format!("/api/approvals/{nil}/approve")),
        (Method::DELETE, format!("/api/silences/{nil}")),
        (Method::POST, format!("/api/backups/{nil}/restore")),
        (Method::POST, "/api/patterns/ghost/demote".to_owned()),
        (Method::POST, "/api/health/ghost/check".to_owned()),
    ] {
        let e = body(
            f.op(method.clone(), &path).send().await.unwrap(),
            StatusCode::NOT_FOUND,
        )
        .await;
        assert_eq!(e["status"], 404, "{method} {path}");
    }
    let e = body(
        f.op(Method::POST, &format!("/api/approvals/{nil}/reject"))
            .json(&json!({"reason": "no"}))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(e["error"].as_str().unwrap().contains(nil), "{e}");
    let e = body(
        f.get("/api/incidents/not-a-uuid").send().await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        e["error"].as_str().unwrap().to_lowercase().contains("uuid"),
        "{e}"
    );
    f.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let operator = token();
    let config = AdminConfig::default()
        .token(Role::Operator, "alice", &operator)
        .body_limit(1024);
    let f = Fixture::with_config(config, operator, token()).await;
    let mut big = pattern_json("big", "big");
    big["description"] = json!("x".repeat(4096));
    let e = body(
        f.op(Method::POST, "/api/patterns")
            .json(&big)
            .send()
            .await
            .unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert!(e["error"].as_str().unwrap().contains("larger"), "{e}");
    f.stop().await;

    // The default limit is 1 MiB.
    let f = Fixture::start().await;
    let mut big = pattern_json("big", "big");
    big["description"] = json!("x".repeat(1024 * 1024 + 1));
    let r = f
        .op(Method::POST, "/api/patterns")
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    f.stop().await;
}

#[tokio::test]
async fn malformed_json_is_400_naming_the_field() {
    let f = Fixture::start().await;
    let e = body(
        f.op(Method::POST, "/api/patterns")
            .json(&json!({"name": "n", "regex": "r", "fixes": [{"strategy": 7}]}))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        e["error"].as_str().unwrap().contains("fixes[0].strategy"),
        "{e}"
    );
    let e = body(
        f.op(Method::PUT, "/api/dry-run")
            .json(&json!({"on": "yes"}))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(e["error"].as_str().unwrap().contains("on:"), "{e}");
    assert_eq!(e["field"], "on");
    let e = body(
        f.op(Method::PUT, "/api/dry-run")
            .json(&json!({"pattern": "p"}))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(e["field"], "on", "a missing field is named too: {e}");
    let e = body(
        f.op(Method::PUT, "/api/dry-run")
            .header("content-type", "application/json")
            .body("{\"on\": tru")
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(e["status"], 400);
    let e = body(
        f.get("/api/incidents?limit=0").send().await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(e["error"].as_str().unwrap().contains("limit"), "{e}");
    f.stop().await;
}

#[tokio::test]
async fn nothing_is_served_until_auth_is_configured_except_the_openapi_document() {
    let base = serve(selfheal_admin::router(
        selfheal_core::Healer::builder().build().unwrap(),
        AdminConfig::default(),
    ))
    .await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{base}/api/status"))
        .send()
        .await
        .unwrap();
    let e = body(r, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("SELFHEAL_ADMIN_TOKENS"),
        "{e}"
    );
    let doc = body(
        client
            .get(format!("{base}/openapi.json"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
}

#[tokio::test]
async fn the_hosts_own_principal_is_trusted_with_host_auth() {
    let healer = selfheal_core::Healer::builder().build().unwrap();
    let admin = selfheal_admin::router(healer.clone(), AdminConfig::default().host_auth());
    // The host's own auth: here, anyone presenting `X-Test-User` is that operator.
    let app = admin.layer(axum::middleware::from_fn(
        |mut req: axum::extract::Request, next: axum::middleware::Next| async move {
            if let Some(user) = req
                .headers()
                .get("x-test-user")
                .and_then(|v| v.to_str().ok())
            {
                let principal = Principal {
                    name: user.to_owned(),
                    role: Role::Operator,
                };
                req.extensions_mut().insert(principal);
            }
            next.run(req).await
        },
    ));
    let base = serve(app).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/api/patterns"))
        .header("x-test-user", "hostuser")
        .json(&pattern_json("hosted", "hosted"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let audit = healer.admin().audit_log(10).await.unwrap();
    assert!(audit.iter().any(|r| r.actor == "hostuser"), "{audit:?}");
    let r = client
        .get(format!("{base}/api/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_openapi_document_names_bearer_auth_and_the_error_answers() {
    let f = Fixture::start().await;
    let doc = body(
        f.client.get(f.url("/openapi.json")).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(doc["servers"][0]["url"], "/selfheal");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"][0]["bearer"], json!([]));
    let post = &doc["paths"]["/api/patterns"]["post"];
    for code in ["201", "400", "401", "403", "409", "413"] {
        assert!(
            post["responses"][code].is_object(),
            "POST /api/patterns lacks {code}"
        );
    }
    let approve = &doc["paths"]["/api/approvals/{id}/approve"]["post"];
    for code in ["200", "401", "403", "404", "409"] {
        assert!(
            approve["responses"][code].is_object(),
            "approve lacks {code}"
        );
    }
    // Every row of the contract under /api: 28 operations on 26 paths, and the
    // Alertmanager webhook with its feature.
    let alerts = usize::from(cfg!(feature = "alertmanager"));
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(
        paths.len(),
        26 + alerts,
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(operations, 28 + alerts);
    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|p| p.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 28 + alerts, "operation ids are unique: {ids:?}");
    f.stop().await;
}

#[tokio::test]
async fn the_openapi_server_is_the_public_base_url_when_given() {
    let operator = token();
    let config = AdminConfig::default()
        .token(Role::Operator, "alice", &operator)
        .public_base_url(Some("https://ops.example.com/selfheal/".into()));
    let f = Fixture::with_config(config, operator, token()).await;
    let doc = body(
        f.client.get(f.url("/openapi.json")).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        doc["servers"],
        json!([{"url": "https://ops.example.com/selfheal"}])
    );
    f.stop().await;
}
