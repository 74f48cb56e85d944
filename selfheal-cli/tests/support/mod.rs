//! Shared by the CLI's tests: running the binary, and a real healer that leaves an audit
//! trail in a store.
#![allow(dead_code)] // each test file uses its part

use std::process::Output;
use std::time::Duration;

use selfheal_core::{Healer, Pattern, Phase, Signal, Store};

/// Runs `selfheal args…` with no SELFHEAL_* settings from the environment.
pub fn selfheal(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .args(args)
        .env_remove("SELFHEAL_URL")
        .env_remove("SELFHEAL_TOKEN")
        .output()
        .expect("the selfheal binary runs")
}

/// Its stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Its stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What the run said, for assertion messages.
pub fn said(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

/// The pattern the healer below matches.
pub const PATTERN: &str = "uploads_disk_full";

/// Runs a real healer on `store` until it has handled one real incident, with operator
/// verbs on the way (a pattern added, dry run switched, a silence set and lifted), then
/// shuts it down so every audit record is written. Returns the healer's own count.
pub async fn heal_once<S: Store + Clone + 'static>(store: S) -> usize {
    let healer = Healer::builder().store(store).build().unwrap();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(
            Pattern::new(PATTERN)
                .regex(r"No space left on device")
                .keywords(["space", "device"]),
            "alice",
        )
        .await
        .unwrap();
    healer.admin().set_dry_run(true, "alice").await;
    let mut events = healer.subscribe();
    healer.observe(Signal::new(
        "uploads",
        "write /var/uploads/tmp-8812 failed: No space left on device (os error 28)",
    ));
    // An alert-only pattern: the incident is matched, notified and closed.
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let event = events.recv().await.expect("the healer runs");
            if matches!(
                event.phase,
                Phase::Closed | Phase::Resolved | Phase::Escalated
            ) {
                return event;
            }
        }
    })
    .await
    .expect("the incident ends within 30 s");
    assert_eq!(closed.target, "uploads");
    healer.admin().set_dry_run(false, "bob").await;
    running.shutdown().await;
    healer.admin().audit_log(usize::MAX).await.unwrap().len()
}
