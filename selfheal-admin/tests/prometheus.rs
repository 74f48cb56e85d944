//! A real Prometheus (Debian's `/usr/bin/prometheus`) scrapes `/metrics` every second
//! while two real failures are healed; its query API then answers the counters the
//! scenario must have produced. Proves the format and content type are what Prometheus
//! accepts, and that the values are right.
//!
//! Without `/usr/bin/prometheus` the test says it skipped, and fails under `CI=true`.
#![allow(clippy::print_stdout)] // says when it skipped

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use selfheal_core::Phase;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const DEADLINE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of `query` as Prometheus answers it, if it has exactly one series.
async fn query(client: &reqwest::Client, prom: &str, query: &str) -> Option<f64> {
    let answer: serde_json::Value = client
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let result = answer["data"]["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}

/// Polls until Prometheus answers `expected` for `q` (scrapes come every second).
async fn until(client: &reqwest::Client, prom: &str, q: &str, expected: f64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = query(client, prom, q).await;
        if got == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{q}` is {got:?}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_counters_of_two_heals() {
    if !Path::new(PROMETHEUS).exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "prometheus is missing at {PROMETHEUS} (apt-get install -y prometheus)"
        );
        println!("skipped: no {PROMETHEUS}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (healer, running) = support::flag::healer(dir.path(), &["alpha", "beta"], 0.9).await;
    let token = support::token();
    let base = support::serve(&healer, &token).await;
    let target = base.trim_start_matches("http://").to_owned();

    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: selfheal\n    metrics_path: /metrics\n\
             \x20   authorization:\n      credentials: {token}\n\
             \x20   static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let mut prometheus = tokio::process::Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let prom = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    // Scraped and accepted: `up` is 1 only if the answer parsed.
    until(&client, &prom, "up{job=\"selfheal\"}", 1.0).await;

    // Two real failures, healed alone (confidence 0.9), one after the other.
    let mut events = healer.subscribe();
    for target in ["alpha", "beta"] {
        support::flag::break_it(&healer, dir.path(), target);
        loop {
            let e = tokio::time::timeout(DEADLINE, events.recv())
                .await
                .unwrap()
                .unwrap();
            if e.target == target && e.phase == Phase::Resolved {
                break;
            }
        }
        assert!(support::flag::flag(dir.path(), target).exists());
    }

    until(&client, &prom, "selfheal_signals_observed_total", 6.0).await;
    until(&client, &prom, "selfheal_signals_dropped_total", 0.0).await;
    until(
        &client,
        &prom,
        "selfheal_incidents_opened_total{pattern=\"flag_file_missing\"}",
        2.0,
    )
    .await;
    until(
        &client,
        &prom,
        "selfheal_actions_total{strategy=\"recreate_flag\",outcome=\"verified\"}",
        2.0,
    )
    .await;
    until(
        &client,
        &prom,
        "selfheal_time_to_recover_seconds_count",
        2.0,
    )
    .await;
    until(
        &client,
        &prom,
        "selfheal_events_total{phase=\"resolved\"}",
        2.0,
    )
    .await;
    until(&client, &prom, "selfheal_breaker_open", 0.0).await;
    until(&client, &prom, "selfheal_approvals_pending", 0.0).await;
    until(
        &client,
        &prom,
        "selfheal_admin_sse_dropped_clients_total",
        0.0,
    )
    .await;

    prometheus.kill().await.unwrap();
    running.shutdown().await;
}
