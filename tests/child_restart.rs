//! Scenario 3 of issue 5: a real child process degrades (its pool times out, it says so
//! on stdout and its status turns bad), the healer reads its output, restarts it
//! through the process executor, and verifies the new process is healthy and quiet.
//! Real processes, so real time, bounded by deadlines.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use selfheal::strategies::{ChildSupervisor, ProcessExecutor, RestartProcess};
use selfheal::{
    ActionStatus, FixBinding, Healer, HealerConfig, Health, IncidentFilter, IncidentStatus,
    Pattern, PatternMode, Phase, Result, Severity, Signal, Verifier,
};
use support::phases_until;

const POOL: &str = "pool timed out while waiting for an open connection";

/// 100 when the child last wrote `ok` to its status file, 0 otherwise.
#[derive(Debug)]
struct StatusFile(PathBuf);

#[async_trait]
impl Verifier for StatusFile {
    fn name(&self) -> &str {
        "status_file"
    }
    async fn check(&self) -> Result<Health> {
        let status = std::fs::read_to_string(&self.0).unwrap_or_default();
        let score = if status.trim() == "ok" { 100 } else { 0 };
        Ok(Health::new(score, status.trim().to_owned()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degrading_child_is_restarted_and_verified_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("degraded-once");
    let status = dir.path().join("status");
    // First run: degrade (bad status, the pool error every 100 ms). Later runs: healthy.
    let script = format!(
        "if [ -e '{mark}' ]; then echo ok > '{status}'; echo 'worker ready'; exec sleep 60; \
         else : > '{mark}'; echo degraded > '{status}'; \
         while true; do echo '{POOL}'; sleep 0.1; done; fi",
        mark = mark.display(),
        status = status.display(),
    );
    let (supervisor, mut lines) = ChildSupervisor::builder("sh", ["-c", script.as_str()])
        .respawn_delay(Duration::ZERO)
        .grace_period(Duration::from_secs(2))
        .spawn()
        .unwrap();
    let supervisor = Arc::new(supervisor);
    let first_pid = supervisor.pid().unwrap();

    let mut config = HealerConfig::default();
    config.verification.window = Duration::from_secs(20);
    config.verification.interval = Duration::from_millis(200);
    config.verification.quiet_for = Duration::from_secs(1);
    let healer = Healer::builder()
        .config(config)
        .strategy(RestartProcess::new("worker", Arc::clone(&supervisor)))
        .verifier("worker", StatusFile(status.clone()))
        .executor(ProcessExecutor::new())
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(
            Pattern::new("pool_exhausted")
                .regex(POOL)
                .severity(Severity::High)
                .mode(PatternMode::Active)
                .auto_healable(true)
                .confidence(0.9)
                .threshold(3, Duration::from_secs(60))
                .fix(FixBinding::new(RestartProcess::NAME)),
            "test",
        )
        .await
        .unwrap();

    // The host forwards the child's output to the healer, as the quickstart does.
    let feeder = {
        let healer = healer.clone();
        tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                healer.observe(Signal::new("worker", line));
            }
        })
    };

    let phases = tokio::time::timeout(
        Duration::from_secs(60),
        phases_until(&mut rx, &[Phase::Resolved, Phase::Escalated]),
    )
    .await
    .expect("the healer finished within a minute");
    assert_eq!(phases.last(), Some(&Phase::Resolved), "{phases:?}");

    let new_pid = supervisor.pid().expect("a process runs");
    assert_ne!(new_pid, first_pid, "the process was replaced");
    assert_eq!(supervisor.restarts(), 1);
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "ok");

    let actions = healer.admin().actions(None).await.unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].status, ActionStatus::Succeeded);
    assert_eq!(actions[0].health_before, Some(0));
    assert_eq!(actions[0].health_after, Some(100));
    assert!(
        actions[0]
            .preview
            .starts_with(&format!("kill -TERM {first_pid}")),
        "{}",
        actions[0].preview
    );
    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents[0].status, IncidentStatus::Resolved);

    running.shutdown().await;
    supervisor.shutdown().await.unwrap();
    feeder.abort();
}
