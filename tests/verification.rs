//! Verification judges recovery, not headroom, and cooldowns follow what happened; in
//! paused time with scripted strategies and probes.
//!
//! - A fix whose errors stopped and whose probe passes is verified, however low its
//!   usage score.
//! - Shutdown mid-verification rolls nothing back, learns nothing, asks nobody.
//! - No verifier and no quiet check: `unverified`.
//! - A new error on the target after the action counts against verification.
//! - A fix that could not run (plan refused, execute failed) starts no cooldown.
//! - A fix that needs its target waits for the target's probe, then runs at once.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use selfheal::{
    ActionContext, ActionOutcome, ActionStatus, Error, ErrorKind, Executor, FixBinding, Healer,
    HealerConfig, HealingEvent, Health, IncidentFilter, IncidentStatus, MemoryStore, Pattern,
    PatternMode, Phase, RemediationPlan, Result, Severity, Signal, Strategy, Verifier,
};
use support::{audit_types, next, phases_until};
use tokio::sync::broadcast::Receiver;
use tokio::time::Instant;

const TARGET: &str = "cache";

/// A probe the test sets: a usage score and a verdict.
#[derive(Debug, Clone)]
struct Probe {
    score: Arc<AtomicU8>,
    ok: Arc<AtomicBool>,
}

impl Probe {
    fn new(score: u8, ok: bool) -> Self {
        Probe {
            score: Arc::new(AtomicU8::new(score)),
            ok: Arc::new(AtomicBool::new(ok)),
        }
    }
    fn set(&self, score: u8, ok: bool) {
        self.score.store(score, Ordering::SeqCst);
        self.ok.store(ok, Ordering::SeqCst);
    }
}

#[async_trait]
impl Verifier for Probe {
    fn name(&self) -> &str {
        "probe"
    }
    async fn check(&self) -> Result<Health> {
        Ok(Health::new(self.score.load(Ordering::SeqCst), "usage")
            .with_passed(self.ok.load(Ordering::SeqCst)))
    }
}

/// A strategy that does what the test scripts: refuse to plan or fail to execute a
/// number of times, heal the probe when it runs, wait for its target.
#[derive(Debug, Clone)]
struct Scripted {
    name: String,
    needs_target: bool,
    destructive: bool,
    refuse_plans: Arc<AtomicUsize>,
    fail_runs: Arc<AtomicUsize>,
    heals: Option<(Probe, u8)>,
    runs: Arc<AtomicUsize>,
    rollbacks: Arc<AtomicUsize>,
    ran_at: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Scripted {
    fn new(name: &str) -> Self {
        Scripted {
            name: name.into(),
            needs_target: false,
            destructive: false,
            refuse_plans: Arc::default(),
            fail_runs: Arc::default(),
            heals: None,
            runs: Arc::default(),
            rollbacks: Arc::default(),
            ran_at: Arc::default(),
        }
    }
    fn heals(mut self, probe: &Probe, to_score: u8) -> Self {
        self.heals = Some((probe.clone(), to_score));
        self
    }
    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
    fn rollbacks(&self) -> usize {
        self.rollbacks.load(Ordering::SeqCst)
    }
}

/// Takes one from `n` if it is above 0.
fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl Strategy for Scripted {
    fn name(&self) -> &str {
        &self.name
    }
    fn destructive(&self) -> bool {
        self.destructive
    }
    fn needs_target(&self) -> bool {
        self.needs_target
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        if take_one(&self.refuse_plans) {
            return Err(Error::new(ErrorKind::Conflict, "nothing to do"));
        }
        Ok(RemediationPlan::new(&self.name, &ctx.target).step(format!("{} it", self.name)))
    }
    async fn execute(
        &self,
        _plan: &RemediationPlan,
        _executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        if take_one(&self.fail_runs) {
            return Err(Error::new(ErrorKind::Unavailable, "target unreachable"));
        }
        self.runs.fetch_add(1, Ordering::SeqCst);
        *self.ran_at.lock().unwrap() = Some(Instant::now());
        if let Some((probe, score)) = &self.heals {
            probe.set(*score, true);
        }
        Ok(ActionOutcome::ok(Duration::from_millis(5)))
    }
    async fn rollback(
        &self,
        _plan: &RemediationPlan,
        _executor: Arc<dyn Executor>,
    ) -> Result<Option<ActionOutcome>> {
        self.rollbacks.fetch_add(1, Ordering::SeqCst);
        Ok(Some(ActionOutcome::ok(Duration::from_millis(1))))
    }
}

fn pattern(fixes: &[&str]) -> Pattern {
    let mut p = Pattern::new("cache_broken")
        .regex("cache (broken|failing|down)")
        .severity(Severity::High)
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(0.9)
        .threshold(3, Duration::from_secs(60));
    for (i, f) in fixes.iter().enumerate() {
        p = p.fix(FixBinding::new(*f).priority(i as i32));
    }
    p
}

fn errors(healer: &Healer, text: &str, n: usize) {
    for _ in 0..n {
        healer.observe(Signal::new(TARGET, text));
    }
}

/// A spawned healer with `fixes` bound in order to one pattern, `probe` (if any) as
/// the target's verifier, and its event stream.
async fn spawn(
    config: HealerConfig,
    fixes: &[&Scripted],
    probe: Option<&Probe>,
) -> (Healer, selfheal::Running, Receiver<HealingEvent>) {
    let mut builder = Healer::builder().config(config).store(MemoryStore::new());
    for fix in fixes {
        builder = builder.strategy((*fix).clone());
    }
    if let Some(probe) = probe {
        builder = builder.verifier(TARGET, probe.clone());
    }
    let healer = builder.build().unwrap();
    let rx = healer.subscribe();
    let running = healer.spawn();
    let names: Vec<&str> = fixes.iter().map(|f| f.name.as_str()).collect();
    healer
        .admin()
        .add_pattern(pattern(&names), "t")
        .await
        .unwrap();
    (healer, running, rx)
}

async fn confidence(healer: &Healer) -> f64 {
    healer.admin().patterns().await.unwrap()[0].confidence
}

#[tokio::test(start_paused = true)]
async fn a_fix_whose_errors_stopped_and_whose_probe_passes_verifies_at_a_low_usage_score() {
    // Memory at 50 % of the raised maxmemory: usage score 50, probe passes.
    let probe = Probe::new(0, false);
    let fix = Scripted::new("raise").heals(&probe, 35);
    let (healer, running, mut rx) = spawn(HealerConfig::default(), &[&fix], Some(&probe)).await;

    errors(&healer, "cache broken", 3);
    let phases = phases_until(&mut rx, &[Phase::Resolved, Phase::Escalated]).await;
    assert_eq!(phases.last(), Some(&Phase::Resolved), "{phases:?}");
    assert!(!phases.contains(&Phase::RolledBack), "{phases:?}");
    assert_eq!((fix.runs(), fix.rollbacks()), (1, 0));
    let incident = &healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap()[0];
    let action = &healer.admin().actions(Some(incident.id)).await.unwrap()[0];
    assert_eq!(action.status, ActionStatus::Succeeded);
    assert_eq!(
        (action.health_before, action.health_after),
        (Some(0), Some(35))
    );
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_keeps_failing_is_rolled_back_whatever_the_score() {
    // A high score is no pass: the verdict is what counts.
    let probe = Probe::new(90, false);
    let fix = Scripted::new("raise");
    let (healer, running, mut rx) = spawn(HealerConfig::default(), &[&fix], Some(&probe)).await;
    errors(&healer, "cache broken", 3);
    let failed = next(&mut rx, Phase::Failed).await;
    assert!(
        failed.detail.contains("the probe of `cache` did not pass"),
        "{}",
        failed.detail
    );
    assert_eq!(fix.rollbacks(), 1);
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_verification_rolls_nothing_back_and_records_interrupted() {
    let probe = Probe::new(0, false);
    let fix = Scripted::new("raise");
    // A second, destructive fix: after a "failure" it would be suggested for approval.
    let mut flush = Scripted::new("flush");
    flush.destructive = true;
    let (healer, running, mut rx) =
        spawn(HealerConfig::default(), &[&fix, &flush], Some(&probe)).await;
    let before = confidence(&healer).await;

    errors(&healer, "cache broken", 3);
    next(&mut rx, Phase::Verifying).await;
    // The service keeps failing for a while: verification is still under way.
    tokio::time::sleep(Duration::from_secs(30)).await;
    running.shutdown().await;

    assert_eq!((fix.runs(), fix.rollbacks()), (1, 0), "nothing rolled back");
    assert_eq!(flush.runs(), 0);
    assert!(
        healer.admin().pending_approvals().await.unwrap().is_empty(),
        "no next fix suggested"
    );
    assert_eq!(confidence(&healer).await, before, "nothing learned");
    let incident = &healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap()[0];
    assert_eq!(incident.status, IncidentStatus::Remediating);
    let action = &healer.admin().actions(Some(incident.id)).await.unwrap()[0];
    assert_eq!(action.status, ActionStatus::Interrupted);
    let types = audit_types(&healer).await;
    assert!(
        types.iter().any(|t| t == "self_heal.interrupted"),
        "{types:?}"
    );
    assert!(
        !types.iter().any(|t| t == "self_heal.rolled_back"),
        "{types:?}"
    );
    assert!(
        !types.iter().any(|t| t == "self_heal.escalated"),
        "{types:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn no_verifier_and_no_quiet_check_is_unverified_and_learns_nothing() {
    let fix = Scripted::new("raise");
    let mut config = HealerConfig::default();
    config.verification.quiet_for = Duration::ZERO;
    let (healer, running, mut rx) = spawn(config, &[&fix], None).await;
    let before = confidence(&healer).await;

    errors(&healer, "cache broken", 3);
    let phases = phases_until(&mut rx, &[Phase::Resolved, Phase::Escalated, Phase::Closed]).await;
    assert!(phases.contains(&Phase::Unverified), "{phases:?}");
    assert!(!phases.contains(&Phase::Resolved), "{phases:?}");
    assert_eq!(phases.last(), Some(&Phase::Closed), "{phases:?}");
    assert_eq!((fix.runs(), fix.rollbacks()), (1, 0));
    assert_eq!(confidence(&healer).await, before, "confidence unchanged");
    let p = &healer.admin().patterns().await.unwrap()[0];
    assert_eq!(
        (p.use_count, p.fixes[0].successes, p.fixes[0].failures),
        (0, 0, 0)
    );
    let incident = &healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap()[0];
    assert_eq!(incident.status, IncidentStatus::Closed);
    assert!(
        incident.reason.contains("unverified"),
        "{}",
        incident.reason
    );
    let action = &healer.admin().actions(Some(incident.id)).await.unwrap()[0];
    assert_eq!(action.status, ActionStatus::Unverified);
    let types = audit_types(&healer).await;
    assert!(
        types.iter().any(|t| t == "self_heal.unverified"),
        "{types:?}"
    );
    assert!(
        !types.iter().any(|t| t == "self_heal.resolved"),
        "{types:?}"
    );
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_error_on_the_target_after_the_action_counts_against_verification() {
    let probe = Probe::new(0, false);
    let fix = Scripted::new("raise").heals(&probe, 100);
    let mut config = HealerConfig::default();
    config.verification.window = Duration::from_secs(30);
    config.verification.quiet_for = Duration::from_secs(5);
    // A new fingerprint does not join the incident by correlation: only the
    // verification's own rule is at work.
    config.detection.correlation_window = Duration::ZERO;
    let (healer, running, mut rx) = spawn(config, &[&fix], Some(&probe)).await;

    errors(&healer, "cache broken", 3);
    next(&mut rx, Phase::Verifying).await;
    // After the action, a different error on the same target, every 2 s.
    let noise = {
        let healer = healer.clone();
        tokio::spawn(async move {
            loop {
                healer.observe(Signal::new(TARGET, "disk quota exceeded on volume data"));
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    let failed = next(&mut rx, Phase::Failed).await;
    noise.abort();
    assert!(
        failed
            .detail
            .contains("a new error on `cache` since the action"),
        "{}",
        failed.detail
    );
    assert_eq!(fix.rollbacks(), 1);
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_fix_whose_plan_is_refused_starts_no_cooldown() {
    let fix = Scripted::new("terminate_idle");
    fix.refuse_plans.store(1, Ordering::SeqCst);
    let (healer, running, mut rx) = spawn(HealerConfig::default(), &[&fix], None).await;

    errors(&healer, "cache broken", 3);
    let first = next(&mut rx, Phase::Escalated).await;
    assert!(first.detail.contains("could not plan"), "{}", first.detail);
    assert_eq!(fix.runs(), 0);

    // Another error on the same target a minute later: the fix runs, no cooldown.
    tokio::time::sleep(Duration::from_secs(60)).await;
    errors(&healer, "cache failing", 3);
    let phases = phases_until(&mut rx, &[Phase::Resolved, Phase::Escalated]).await;
    assert_eq!(phases.last(), Some(&Phase::Resolved), "{phases:?}");
    assert_eq!(fix.runs(), 1);
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_fix_that_failed_to_execute_starts_no_cooldown() {
    let fix = Scripted::new("reconnect");
    fix.fail_runs.store(1, Ordering::SeqCst);
    let (healer, running, mut rx) = spawn(HealerConfig::default(), &[&fix], None).await;

    errors(&healer, "cache broken", 3);
    let failed = next(&mut rx, Phase::Failed).await;
    assert!(
        failed.detail.contains("failed to execute"),
        "{}",
        failed.detail
    );
    next(&mut rx, Phase::Escalated).await;

    tokio::time::sleep(Duration::from_secs(60)).await;
    errors(&healer, "cache failing", 3);
    let phases = phases_until(&mut rx, &[Phase::Resolved, Phase::Escalated]).await;
    assert_eq!(phases.last(), Some(&Phase::Resolved), "{phases:?}");
    assert_eq!(fix.runs(), 1);

    // A fix that ran does start it.
    tokio::time::sleep(Duration::from_secs(60)).await;
    errors(&healer, "cache down", 3);
    let blocked = next(&mut rx, Phase::Escalated).await;
    assert!(blocked.detail.contains("cooldown"), "{}", blocked.detail);
    assert_eq!(fix.runs(), 1);
    running.shutdown().await;
}

/// A spawned healer whose only fix needs its target, which is down, and its errors.
async fn needs_target_rig(
    config: HealerConfig,
) -> (
    Healer,
    selfheal::Running,
    Receiver<HealingEvent>,
    Probe,
    Scripted,
) {
    let probe = Probe::new(0, false);
    let mut fix = Scripted::new("reconnect");
    fix.needs_target = true;
    let (healer, running, rx) = spawn(config, &[&fix], Some(&probe)).await;
    errors(&healer, "cache broken", 3);
    (healer, running, rx, probe, fix)
}

#[tokio::test(start_paused = true)]
async fn a_fix_that_needs_its_target_waits_for_the_probe_then_runs_at_once() {
    let (_healer, running, mut rx, probe, fix) = needs_target_rig(HealerConfig::default()).await;
    let waiting = next(&mut rx, Phase::WaitingForTarget).await;
    assert!(
        waiting.detail.contains("needs `cache` reachable"),
        "{}",
        waiting.detail
    );
    tokio::time::sleep(Duration::from_secs(45)).await;
    assert_eq!(fix.runs(), 0, "not while the target is down");

    // The target is back: the fix runs within the longest poll pause (2 s).
    let back = Instant::now();
    probe.set(100, true);
    next(&mut rx, Phase::Executing).await;
    let ran_at = fix.ran_at.lock().unwrap().expect("ran");
    assert!(
        ran_at - back <= Duration::from_secs(2),
        "{:?}",
        ran_at - back
    );
    let phases = phases_until(&mut rx, &[Phase::Resolved, Phase::Escalated]).await;
    assert_eq!(phases.last(), Some(&Phase::Resolved), "{phases:?}");
    assert_eq!(fix.runs(), 1);
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_target_that_never_comes_back_is_not_acted_on_and_starts_no_cooldown() {
    let mut config = HealerConfig::default();
    config.verification.target_wait = Duration::from_secs(60);
    let (healer, running, mut rx, _probe, fix) = needs_target_rig(config).await;
    let escalated = next(&mut rx, Phase::Escalated).await;
    assert!(
        escalated.detail.contains("did not pass within"),
        "{}",
        escalated.detail
    );
    assert_eq!(fix.runs(), 0);
    let p = &healer.admin().patterns().await.unwrap()[0];
    assert_eq!(
        p.fixes[0].failures, 0,
        "a fix that did not run is no failure"
    );
    running.shutdown().await;
}
