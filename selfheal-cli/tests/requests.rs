//! What the `selfheal` binary sends: a recording server in the API.md shapes checks the
//! method, path, query, body and bearer token of every command, and answers with the
//! API's shapes and errors. (`http.rs` runs the same commands against the real router.)

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    auth: Option<String>,
    body: Value,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

const APPROVAL: &str = "0b6f8a52-3c61-4f0e-9d3a-52a0c5e3c0aa";
const INCIDENT: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
const SILENCE: &str = "5f0c7e7e-0000-4000-8000-000000000001";

fn approval(state: &str, by: Option<&str>) -> Value {
    json!({
        "id": APPROVAL, "incident": INCIDENT, "pattern": "redis_oom",
        "plan": {"strategy": "redis_raise_maxmemory", "target": "cache", "risk": "medium",
                 "steps": [], "params": null, "reversible": true},
        "reason": "fix `redis_raise_maxmemory` requires approval", "confidence": 0.95,
        "requested_at": "2026-12-04T23:15:42.123456Z", "state": state, "decided_by": by
    })
}

/// Answers like the admin API (only what the CLI asks), recording every request.
async fn answer(State(rec): State<Recorder>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        auth: parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned()),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    rec.0.lock().unwrap().push(seen.clone());
    let error = |status: StatusCode, message: &str| {
        (
            status,
            axum::Json(json!({"status": status.as_u16(), "error": message})),
        )
            .into_response()
    };
    if seen.auth.as_deref() != Some("Bearer op-secret") {
        return error(
            StatusCode::UNAUTHORIZED,
            "no valid bearer token; send Authorization: Bearer <token>",
        );
    }
    let ok = |v: Value| axum::Json(v).into_response();
    match (seen.method.as_str(), seen.path.as_str()) {
        ("GET", "/selfheal/api/status") => ok(json!({
            "replica": "web-1", "observed": 12, "dropped": 0, "failed": 0, "store_errors": 0,
            "open_incidents": 1, "pending_approvals": 1, "dry_run": false,
            "safety": {"breaker_open": false, "storm": false, "unhealthy_targets": ["cache"]}
        })),
        ("GET", "/selfheal/api/incidents") => ok(json!({
            "items": [{"id": INCIDENT, "target": "cache", "fingerprint": "f1",
                       "template": "OOM command not allowed when used memory > 'maxmemory'",
                       "pattern": "redis_oom", "status": "awaiting_approval", "severity": "high",
                       "occurrences": 7, "opened_at": "2026-12-04T23:15:40.5Z"}],
            "total": 1, "limit": 5, "offset": 0
        })),
        ("GET", "/selfheal/api/approvals") => ok(json!([approval("pending", None)])),
        ("POST", p) if p == format!("/selfheal/api/approvals/{APPROVAL}/approve") => {
            ok(approval("approved", Some("alice")))
        }
        ("POST", p) if p.ends_with("/reject") => error(
            StatusCode::CONFLICT,
            "approval is approved already; nothing to do",
        ),
        ("POST", "/selfheal/api/silences") => {
            (StatusCode::CREATED, axum::Json(json!({"id": SILENCE}))).into_response()
        }
        ("GET", "/selfheal/api/silences") => ok(json!([{
            "id": SILENCE,
            "silence": {"scope": {"kind": "target", "value": "cache"},
                        "starts_at": "2026-12-04T23:00:00.5Z", "ends_at": "2026-12-05T01:30:00.25Z",
                        "reason": "migrating"},
            "created_by": "alice", "active": true, "suppressed": 4
        }])),
        ("DELETE", p) if p == format!("/selfheal/api/silences/{SILENCE}") => {
            StatusCode::NO_CONTENT.into_response()
        }
        ("DELETE", p) if p.starts_with("/selfheal/api/silences/") => {
            error(StatusCode::NOT_FOUND, "no silence with that id")
        }
        ("PUT", "/selfheal/api/dry-run") => ok(json!({
            "dry_run": seen.body["on"], "pattern": seen.body["pattern"]
        })),
        ("GET", "/selfheal/api/audit/verify") => ok(json!({
            "ok": false, "records": 57,
            "first_broken": {"seq": 3, "reason": "its content was changed after it was written"}
        })),
        ("GET", "/selfheal/api/patterns/export") => ok(json!({
            "format": "selfheal.patterns", "version": 1,
            "exported_at": "2026-12-04T23:15:42Z", "source": "web", "patterns": []
        })),
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

async fn server() -> (String, Recorder) {
    let rec = Recorder::default();
    let app = Router::new().fallback(answer).with_state(rec.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/selfheal", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rec)
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn selfheal(url: &str, token: &str, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .args(["--url", url, "--token", token])
        .args(args)
        .env_remove("SELFHEAL_URL")
        .env_remove("SELFHEAL_TOKEN")
        .output()
        .await
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_sends_its_request_and_prints_the_answer() {
    let (url, rec) = server().await;
    // A trailing slash on the mount point is fine.
    let url_slash = format!("{url}/");
    let op = |args: &'static [&'static str]| {
        let url = url_slash.clone();
        async move { selfheal(&url, "op-secret", args).await }
    };

    let status = op(&["status"]).await;
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    assert!(
        status.stdout.contains("safety.unhealthy_targets  cache\n"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("pending_approvals         1\n"),
        "{}",
        status.stdout
    );
    // Not alphabetical: who answers, the counters, what waits, the switches, safety.
    let keys: Vec<&str> = status
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        [
            "replica",
            "observed",
            "dropped",
            "failed",
            "store_errors",
            "open_incidents",
            "pending_approvals",
            "dry_run",
            "safety.breaker_open",
            "safety.storm",
            "safety.unhealthy_targets"
        ],
        "{}",
        status.stdout
    );
    let seen = rec.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/selfheal/api/status")
    );
    assert_eq!(seen[0].auth.as_deref(), Some("Bearer op-secret"));

    let incidents = op(&[
        "incidents",
        "--status",
        "awaiting_approval",
        "--target",
        "cache",
        "--limit",
        "5",
    ])
    .await;
    assert_eq!(incidents.code, Some(0), "{}", incidents.stderr);
    let seen = rec.take();
    let mut query: Vec<&str> = seen[0].query.split('&').collect();
    query.sort_unstable();
    assert_eq!(
        query,
        [
            "limit=5",
            "offset=0",
            "status=awaiting_approval",
            "target=cache"
        ]
    );
    let lines: Vec<&str> = incidents.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS"),
        "{}",
        incidents.stdout
    );
    assert!(lines[1].starts_with(INCIDENT), "{}", incidents.stdout);
    assert!(
        lines[1].contains("2026-12-04T23:15:40Z"),
        "times without fractions: {}",
        lines[1]
    );
    assert_eq!(lines[2], "1 of 1 (from 0)");
    assert!(
        incidents.stdout.ends_with("1 of 1 (from 0)\n"),
        "the paging line ends the output with a newline: {:?}",
        incidents.stdout
    );

    let approvals = op(&["approvals"]).await;
    assert_eq!(approvals.code, Some(0), "{}", approvals.stderr);
    assert!(
        approvals
            .stdout
            .lines()
            .nth(1)
            .unwrap()
            .starts_with(APPROVAL),
        "{}",
        approvals.stdout
    );
    assert!(
        approvals.stdout.contains("redis_raise_maxmemory"),
        "{}",
        approvals.stdout
    );
    rec.take();

    let approve = selfheal(&url, "op-secret", &["approve", APPROVAL]).await;
    assert_eq!(approve.code, Some(0), "{}", approve.stderr);
    assert_eq!(
        approve.stdout,
        format!("approved {APPROVAL} (by alice; strategy redis_raise_maxmemory on cache)\n")
    );
    let seen = rec.take();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].body, Value::Null, "approve sends no body");

    let reject = selfheal(
        &url,
        "op-secret",
        &["reject", APPROVAL, "--reason", "too late"],
    )
    .await;
    assert_eq!(reject.code, Some(1));
    assert_eq!(
        reject.stderr,
        "selfheal: approval is approved already; nothing to do (HTTP 409)\n"
    );
    assert_eq!(rec.take()[0].body, json!({"reason": "too late"}));

    let silence = op(&[
        "silence",
        "cache",
        "--for",
        "2h 30m",
        "--reason",
        "migrating",
    ])
    .await;
    assert_eq!(silence.code, Some(0), "{}", silence.stderr);
    assert_eq!(
        rec.take()[0].body,
        json!({"target": "cache", "duration": "2h 30m", "reason": "migrating"})
    );
    assert_eq!(
        silence.stdout,
        format!(
            "silenced `cache` for 2h 30m (silence {SILENCE}; lift it with `selfheal unsilence {SILENCE}`)\n"
        )
    );
    let silence = op(&["silence", "cache", "--for", "10m"]).await;
    assert_eq!(silence.code, Some(0), "{}", silence.stderr);
    assert_eq!(
        rec.take()[0].body,
        json!({"target": "cache", "duration": "10m"})
    );

    let silences = op(&["silences"]).await;
    assert_eq!(silences.code, Some(0), "{}", silences.stderr);
    let seen = rec.take();
    assert_eq!(
        (
            seen[0].method.as_str(),
            seen[0].path.as_str(),
            seen[0].query.as_str()
        ),
        ("GET", "/selfheal/api/silences", "")
    );
    let lines: Vec<Vec<&str>> = silences
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["ID", "SCOPE", "ENDS", "ACTIVE", "SUPPRESSED", "REASON"],
            vec![
                SILENCE,
                "target:cache",
                "2026-12-05T01:30:00Z",
                "yes",
                "4",
                "migrating"
            ],
        ],
        "{}",
        silences.stdout
    );

    let lifted = op(&["unsilence", SILENCE]).await;
    assert_eq!(lifted.code, Some(0), "{}", lifted.stderr);
    assert_eq!(
        lifted.stdout,
        format!("lifted silence {SILENCE}: healing of what it matched resumes\n")
    );
    let seen = rec.take();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        (
            "DELETE",
            format!("/selfheal/api/silences/{SILENCE}").as_str()
        )
    );
    assert_eq!(seen[0].body, Value::Null, "unsilence sends no body");
    assert_eq!(seen[0].auth.as_deref(), Some("Bearer op-secret"));
    let quiet = op(&["unsilence", SILENCE, "--json"]).await;
    assert_eq!(quiet.code, Some(0), "{}", quiet.stderr);
    assert_eq!(quiet.stdout, "", "204 has no JSON to print");
    rec.take();
    let unknown = op(&["unsilence", INCIDENT]).await;
    assert_eq!(unknown.code, Some(1));
    assert_eq!(
        unknown.stderr,
        "selfheal: no silence with that id (HTTP 404)\n"
    );
    rec.take();

    let dry = op(&["dry-run", "on", "--pattern", "redis_oom"]).await;
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    let seen = rec.take();
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[0].body, json!({"on": true, "pattern": "redis_oom"}));
    let dry = op(&["dry-run", "off"]).await;
    assert_eq!(dry.stdout, "dry run off for the whole healer: fixes run\n");
    assert_eq!(rec.take()[0].body, json!({"on": false, "pattern": null}));

    // A broken chain reported by the API: named, and exit 1.
    let verify = op(&["audit", "verify"]).await;
    assert_eq!(verify.code, Some(1));
    assert_eq!(
        verify.stdout,
        "audit chain BROKEN at seq 3: its content was changed after it was written (57 records read)\n"
    );

    let export = op(&["patterns", "export", "--source", "web"]).await;
    assert_eq!(export.code, Some(0), "{}", export.stderr);
    let seen = rec.take();
    assert_eq!(seen.last().unwrap().query, "source=web");
    let doc: Value = serde_json::from_str(&export.stdout).unwrap();
    assert_eq!(doc["format"], "selfheal.patterns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_error_is_printed_as_is_with_json() {
    let (url, rec) = server().await;
    let wrong = selfheal(&url, "wrong-secret", &["approvals", "--json"]).await;
    assert_eq!(wrong.code, Some(1));
    let body: Value = serde_json::from_str(wrong.stderr.trim()).unwrap();
    assert_eq!(body["status"], 401);
    assert!(wrong.stdout.is_empty());
    let plain = selfheal(&url, "wrong-secret", &["approvals"]).await;
    assert_eq!(
        plain.stderr,
        "selfheal: no valid bearer token; send Authorization: Bearer <token> (HTTP 401)\n"
    );
    assert_eq!(rec.take()[0].auth.as_deref(), Some("Bearer wrong-secret"));

    // Never sent: an id that is not a UUID.
    let bad = selfheal(
        &url,
        "op-secret",
        &["approve", &Uuid::nil().to_string()[..8]],
    )
    .await;
    assert_eq!(bad.code, Some(2));
    assert!(rec.take().is_empty());
}
