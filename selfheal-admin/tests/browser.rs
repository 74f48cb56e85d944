//! The dashboard in a real headless Chromium (chromedriver + fantoccini): a real failure
//! (a flag file a service needs is gone) opens an incident whose fix needs approval;
//! the operator approves it on the page, and the page shows it verified and resolved,
//! live, without a reload. Screenshots go to `target/selfheal-admin-screens/`.
//!
//! Without `/usr/bin/chromedriver` the test says it skipped, and fails under `CI=true`.
#![allow(clippy::print_stdout, clippy::print_stderr)] // the timeline is the test's report

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const TARGET: &str = "flagd";
const DEADLINE: Duration = Duration::from_secs(30);

struct Timeline(Instant);

impl Timeline {
    fn step(&self, what: &str) {
        println!("[{:>6} ms] {what}", self.0.elapsed().as_millis());
    }
}

fn screens() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("selfheal-admin-screens");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screens().join(format!("{name}.png")), png).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `css` until an element matches and `ok(text)` holds, within the deadline.
async fn wait_for(client: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    let mut last = None;
    loop {
        if let Ok(found) = client.find(Locator::Css(css)).await
            && let Ok(text) = found.text().await
        {
            if ok(&text) {
                return text;
            }
            last = Some(text);
        }
        assert!(
            Instant::now() < deadline,
            "`{css}` never showed up as expected; last text: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A headless Chromium driven through chromedriver, each with a fresh profile.
struct Browser {
    client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// `None` (and a note) when chromedriver is not installed; fails under `CI=true`.
    async fn open() -> Option<Browser> {
        if !Path::new(CHROMEDRIVER).exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "chromedriver is missing at {CHROMEDRIVER} (apt-get install -y chromium chromium-driver)"
            );
            println!("skipped: no {CHROMEDRIVER}");
            return None;
        }
        let port = free_port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let caps: serde_json::Map<String, serde_json::Value> =
            serde_json::from_value(serde_json::json!({
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--window-size=1400,1800",
                        format!("--user-data-dir={}", profile.path().display()),
                    ]
                }
            }))
            .unwrap();
        let deadline = Instant::now() + DEADLINE;
        let client = loop {
            match ClientBuilder::rustls()
                .unwrap()
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "chromedriver never answered: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Opens the dashboard and gives it the token from the keyboard (typed, then Enter).
    async fn sign_in(&self, url: &str, token: &str) {
        self.client.goto(url).await.unwrap();
        self.client
            .wait()
            .at_most(DEADLINE)
            .for_element(Locator::Css("[data-testid=token-input]"))
            .await
            .unwrap()
            .send_keys(&format!("{token}\u{E007}")) // WebDriver's Enter key
            .await
            .unwrap();
        wait_for(&self.client, "[data-testid=conn-status]", |s| s == "live").await;
    }

    async fn close(mut self) {
        self.client.close().await.unwrap();
        self.driver.kill().await.unwrap();
    }
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_approves_a_fix_on_the_dashboard_and_sees_it_verified_live() {
    let t = Timeline(Instant::now());

    // The service and its healer.
    let dir = tempfile::tempdir().unwrap();
    let flag = support::flag::flag(dir.path(), TARGET);
    let (healer, running) = support::flag::healer(dir.path(), &[TARGET], 0.5).await;
    let token = support::token();
    let url = support::serve_nested(&healer, &token).await;
    t.step("healer and router up");

    let Some(browser) = Browser::open().await else {
        running.shutdown().await;
        return;
    };
    let client = &browser.client;
    t.step("browser session open");
    browser.sign_in(&url, &token).await;
    // A marker a reload would erase.
    client
        .execute("window.__noReload = 42; return null;", vec![])
        .await
        .unwrap();
    t.step("dashboard open, token entered, event stream live");
    shot(client, "1-connected").await;

    // The failure: the flag file is gone, and the service says so.
    support::flag::break_it(&healer, dir.path(), TARGET);
    t.step("failure made: flag file removed, 3 errors observed");

    wait_for(client, "[data-testid^=incident-status-]", |s| !s.is_empty()).await;
    t.step("incident on the page");
    let plan = wait_for(client, "[data-testid^=approval-] pre", |s| {
        s.contains("touch")
    })
    .await;
    assert!(
        plan.contains(&format!("touch {}", flag.display())),
        "the full command is previewed: {plan}"
    );
    t.step("pending approval on the page, with its command");
    shot(client, "2-approval-pending").await;

    click(client, "button[data-testid^=approve-]").await;
    t.step("approve clicked");

    wait_for(
        client,
        "[data-testid^=phases-] [data-phase=verified]",
        |s| s == "verified",
    )
    .await;
    t.step("verified shown");
    wait_for(client, "[data-testid^=incident-status-]", |s| {
        s == "resolved"
    })
    .await;
    wait_for(
        client,
        "[data-testid^=phases-] [data-phase=resolved]",
        |s| s == "resolved",
    )
    .await;
    t.step("resolved shown");
    wait_for(client, "[data-testid=approvals-empty]", |s| s == "None.").await;
    assert!(flag.exists(), "the fix really recreated the flag file");
    let marker = client
        .execute("return window.__noReload;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, serde_json::json!(42), "the page never reloaded");
    shot(client, "3-resolved").await;
    t.step("screenshots saved");

    // Opened again later, the page keeps the tab's token and shows the incident's
    // history from its audit trail.
    client.refresh().await.unwrap();
    wait_for(client, "[data-testid=conn-status]", |s| s == "live").await;
    wait_for(client, "[data-testid^=phases-] [data-step=approved]", |s| {
        s == "approved"
    })
    .await;
    wait_for(client, "[data-testid^=phases-] [data-step=resolved]", |s| {
        s == "resolved"
    })
    .await;
    wait_for(client, "[data-testid=chart-flag_file_missing]", |s| {
        s.contains("flag_file_missing (3)")
    })
    .await;
    let chart = client
        .find(Locator::Css("[data-testid=chart-flag_file_missing] svg"))
        .await
        .unwrap()
        .attr("aria-label")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        chart.starts_with("flag_file_missing: 3 in 24 hours"),
        "the chart counts the 3 errors: {chart}"
    );
    shot(client, "4-history").await;
    t.step("reopened: token kept, history from the audit trail, 24h chart");

    browser.close().await;
    running.shutdown().await;
    t.step("done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emergency_controls_switch_dry_run_silence_a_target_and_explain_a_refused_rearm() {
    let t = Timeline(Instant::now());
    let dir = tempfile::tempdir().unwrap();
    let (healer, running) = support::flag::healer(dir.path(), &[TARGET], 0.9).await;
    let token = support::token();
    let url = support::serve_nested(&healer, &token).await;
    let Some(browser) = Browser::open().await else {
        running.shutdown().await;
        return;
    };
    let client = &browser.client;
    browser.sign_in(&url, &token).await;
    t.step("signed in");

    // Dry run for everything: the healer switches, the stream says so, the page too.
    assert!(!healer.admin().is_dry_run(None));
    click(client, "[data-testid=dry-run-all]").await;
    wait_for(
        client,
        "[data-testid=event-log] li[data-phase=mode_changed]",
        |s| s.contains("dry_run"),
    )
    .await;
    wait_for(client, "[data-testid=status-dry-run]", |s| s == "on").await;
    assert!(
        healer.admin().is_dry_run(None),
        "the checkbox switched the healer"
    );
    t.step("dry run on");

    // Silence the target for 15 minutes, typed in the form and sent with Enter.
    client
        .find(Locator::Css("[data-testid=silence-target]"))
        .await
        .unwrap()
        .send_keys(TARGET)
        .await
        .unwrap();
    let minutes = client
        .find(Locator::Css("[data-testid=silence-minutes]"))
        .await
        .unwrap();
    minutes.clear().await.unwrap();
    minutes.send_keys("15").await.unwrap();
    client
        .find(Locator::Css("[data-testid=silence-reason]"))
        .await
        .unwrap()
        .send_keys("deploy in progress\u{E007}")
        .await
        .unwrap();
    wait_for(client, "[data-testid=controls-result]", |s| {
        s.contains("Silenced flagd for 15 minutes")
    })
    .await;
    let silences = healer.admin().silences();
    assert_eq!(silences.len(), 1, "{silences:?}");
    t.step("target silenced");

    // The breaker is closed: re-arming is refused, and the page says why.
    assert!(!healer.admin().breaker_open());
    click(client, "[data-testid=breaker-rearm]").await;
    wait_for(client, "[data-testid=controls-result]", |s| {
        s.starts_with("Not re-armed:") && s.contains("not open")
    })
    .await;
    wait_for(client, "[data-testid=audit-chain]", |s| {
        s.starts_with("Chain intact")
    })
    .await;
    shot(client, "5-controls").await;
    t.step("re-arm refused while the breaker is closed; audit chain intact");

    browser.close().await;
    running.shutdown().await;
}
