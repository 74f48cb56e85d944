//! Crash recovery: a real child process runs a healer on a SQLite file and is killed
//! with SIGKILL while its fix runs. The restarted healer closes what was left open as
//! interrupted (audited, one notification), the audit chain still verifies, and the
//! same fix is not run again at once: its cooldown carried over.

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use selfheal::storage::SqliteStore;
use selfheal::{
    ActionContext, ActionOutcome, ActionStatus, Executor, FixBinding, Healer, HealerConfig,
    IncidentFilter, IncidentStatus, Pattern, PatternMode, Phase, RemediationPlan, Result, Severity,
    Signal, Strategy, verify_chain,
};
use support::{Inbox, next};

const CHILD_ENV: &str = "SELFHEAL_CRASH_CHILD_DB";
const ERROR: &str = "cache node wedged: replication stalled";

/// The fix: in the child it announces itself on stdout and never returns (the
/// parent kills the process there); in the parent it counts its runs.
#[derive(Debug, Clone, Default)]
struct Unwedge {
    hang: bool,
    runs: Arc<AtomicUsize>,
}

#[async_trait]
impl Strategy for Unwedge {
    fn name(&self) -> &str {
        "unwedge"
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        Ok(RemediationPlan::new("unwedge", &ctx.target).step("unwedge the cache"))
    }
    async fn execute(&self, _: &RemediationPlan, _: Arc<dyn Executor>) -> Result<ActionOutcome> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if self.hang {
            #[allow(clippy::print_stdout)]
            {
                println!("EXECUTING");
            }
            std::future::pending::<()>().await;
        }
        Ok(ActionOutcome::ok(Duration::from_millis(1)))
    }
}

fn pattern() -> Pattern {
    Pattern::new("cache_wedged")
        .regex("cache node wedged")
        .severity(Severity::High)
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(0.9)
        .threshold(3, Duration::from_secs(60))
        .fix(FixBinding::new("unwedge"))
}

/// The child's side: run until killed. Only runs when the parent starts it.
#[tokio::test]
async fn child_runs_a_healer_until_killed() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return; // not the child: nothing to do
    };
    let store = SqliteStore::open(&db).await.unwrap();
    let healer = Healer::builder()
        .store(store)
        .strategy(Unwedge {
            hang: true,
            ..Unwedge::default()
        })
        .build()
        .unwrap();
    let _running = healer.spawn();
    healer.admin().add_pattern(pattern(), "test").await.unwrap();
    for _ in 0..3 {
        healer.observe(Signal::new("cache", ERROR));
    }
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn a_healer_killed_mid_action_is_reconciled_at_restart_and_does_not_rerun_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("selfheal.db");

    // A real process, killed with SIGKILL while its fix runs.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_runs_a_healer_until_killed", "--nocapture"])
        .env(CHILD_ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let executing = lines
        .by_ref()
        .map_while(std::io::Result::ok)
        .any(|l| l.contains("EXECUTING"));
    assert!(executing, "the child reached its fix");
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed: {status:?}");

    // The restart.
    let store = SqliteStore::open(db.to_str().unwrap()).await.unwrap();
    let fix = Unwedge::default();
    let inbox = Inbox::default();
    let healer = Healer::builder()
        .store(store)
        .strategy(fix.clone())
        .notifier(inbox.clone())
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();

    // Reconciled before any signal: the incident escalated as interrupted, the action
    // interrupted, both audited; the chain verifies.
    let audit = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let audit = healer.admin().audit_log(1000).await.unwrap();
            // The notification follows the audit records of every incident closed.
            if audit
                .iter()
                .any(|r| r.event_type == "self_heal.interrupted")
                && !inbox.event_types().is_empty()
            {
                return audit;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the restart reconciles what the killed run left open");
    verify_chain(&audit).expect("the chain verifies after a kill -9");
    let types: Vec<&str> = audit.iter().map(|r| r.event_type.as_str()).collect();
    assert!(types.contains(&"self_heal.executing"), "{types:?}");
    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].status, IncidentStatus::Escalated);
    assert!(
        incidents[0].reason.starts_with("interrupted"),
        "{}",
        incidents[0].reason
    );
    let actions = healer.admin().actions(Some(incidents[0].id)).await.unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].status, ActionStatus::Interrupted);
    assert!(
        actions[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("interrupted")
    );
    assert_eq!(inbox.event_types(), ["self_heal.interrupted"]);

    // The same error again at once: the fix is cooling down, so it does not run.
    for _ in 0..3 {
        healer.observe(Signal::new("cache", ERROR));
    }
    let escalated = next(&mut rx, Phase::Escalated).await;
    assert!(
        escalated.detail.contains("cooldown"),
        "{}",
        escalated.detail
    );
    assert_eq!(
        fix.runs.load(Ordering::SeqCst),
        0,
        "not re-run after the restart"
    );
    running.shutdown().await;
    drop(healer);

    // A second restart, with no cooldown at all and one attempt per episode: the
    // attempt the killed run made is in the store, so the fix still does not run.
    let store = SqliteStore::open(db.to_str().unwrap()).await.unwrap();
    let mut config = HealerConfig::default();
    config.guards.cooldown = Duration::ZERO;
    config.guards.max_attempts = 1;
    let healer = Healer::builder()
        .config(config)
        .store(store)
        .strategy(fix.clone())
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    for _ in 0..3 {
        healer.observe(Signal::new("cache", ERROR));
    }
    let escalated = next(&mut rx, Phase::Escalated).await;
    assert!(
        escalated
            .detail
            .contains("1 attempt(s) at this error on `cache` already"),
        "{}",
        escalated.detail
    );
    assert_eq!(
        fix.runs.load(Ordering::SeqCst),
        0,
        "attempts survive restarts"
    );
    running.shutdown().await;
}
