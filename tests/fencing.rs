//! Fencing in fleet mode (paused time): a replica confirms with the store that it still
//! holds the target's lease right before each step that acts. One that lost it (another
//! replica took the target over) runs nothing more, records why and escalates.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use selfheal::{
    ActionContext, ActionOutcome, Executor, FixBinding, FleetStore, Healer, HealerConfig, Health,
    MemoryStore, Pattern, PatternMode, Phase, RemediationPlan, Result, Severity, Signal, Strategy,
    Verifier,
};
use support::{audit_types, next, rig};

const ME: &str = "replica-a";
const OTHER: &str = "replica-b";
const TARGET: &str = "orders-db";

/// Another replica takes the lease on the target over, as one would after this one
/// stalled past its lease.
async fn take_over(store: &MemoryStore) {
    store.release_lease(TARGET, ME).await.unwrap();
    let grant = store
        .acquire_lease(TARGET, OTHER, Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(grant.acquired(), "the other replica gets the lease");
}

/// A probe that fails, and lets another replica take the lease the first time it is
/// asked (that is the health check right before the fix would run) when `steal`.
#[derive(Debug)]
struct Probe {
    store: Arc<MemoryStore>,
    steal: bool,
    checks: AtomicUsize,
}

#[async_trait]
impl Verifier for Probe {
    fn name(&self) -> &str {
        "probe"
    }
    async fn check(&self) -> Result<Health> {
        if self.steal && self.checks.fetch_add(1, Ordering::SeqCst) == 0 {
            take_over(&self.store).await;
        }
        Ok(Health::new(10, "still failing"))
    }
}

/// A reversible fix that does not heal; it stalls while running so long that another
/// replica takes the target over when `steal`.
#[derive(Debug)]
struct Fix {
    store: Arc<MemoryStore>,
    steal: bool,
    runs: AtomicUsize,
    rollbacks: AtomicUsize,
}

#[async_trait]
impl Strategy for Fix {
    fn name(&self) -> &str {
        "reset_pool"
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        Ok(RemediationPlan::new("reset_pool", &ctx.target).step("reset the pool"))
    }
    async fn execute(&self, _: &RemediationPlan, _: Arc<dyn Executor>) -> Result<ActionOutcome> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if self.steal {
            take_over(&self.store).await;
        }
        Ok(ActionOutcome::ok(Duration::from_millis(1)))
    }
    async fn rollback(
        &self,
        _: &RemediationPlan,
        _: Arc<dyn Executor>,
    ) -> Result<Option<ActionOutcome>> {
        self.rollbacks.fetch_add(1, Ordering::SeqCst);
        Ok(Some(ActionOutcome::ok(Duration::from_millis(1))))
    }
}

fn pattern() -> Pattern {
    Pattern::new("pool_exhausted")
        .regex("pool timed out")
        .severity(Severity::High)
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(0.9)
        .threshold(2, Duration::from_secs(60))
        .fix(FixBinding::new("reset_pool"))
}

fn fleet_config() -> HealerConfig {
    let mut config = HealerConfig::default();
    config.guards.fleet.enabled = true;
    config.guards.fleet.replica = ME.into();
    config
}

struct Setup {
    store: Arc<MemoryStore>,
    fix: Arc<Fix>,
    builder: selfheal::HealerBuilder,
}

fn setup(steal_in_probe: bool, steal_in_fix: bool) -> Setup {
    let store = Arc::new(MemoryStore::new());
    let fix = Arc::new(Fix {
        store: store.clone(),
        steal: steal_in_fix,
        runs: AtomicUsize::new(0),
        rollbacks: AtomicUsize::new(0),
    });
    let probe = Probe {
        store: store.clone(),
        steal: steal_in_probe,
        checks: AtomicUsize::new(0),
    };
    let builder = Healer::builder()
        .config(fleet_config())
        .store_arc(store.clone())
        .strategy_arc(fix.clone())
        .verifier(TARGET, probe);
    Setup {
        store,
        fix,
        builder,
    }
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_lost_its_lease_before_executing_runs_nothing_and_escalates() {
    let s = setup(true, false);
    let mut r = rig(s.builder, pattern()).await;
    for _ in 0..2 {
        r.healer
            .observe(Signal::new(TARGET, "pool timed out after 30s"));
    }
    let fenced = next(&mut r.rx, Phase::Fenced).await;
    assert!(
        fenced.detail.contains("execute not run"),
        "{}",
        fenced.detail
    );
    assert!(
        fenced.detail.contains("no longer holds the lease"),
        "{}",
        fenced.detail
    );
    let escalated = next(&mut r.rx, Phase::Escalated).await;
    assert!(
        escalated.detail.contains("stopped before acting"),
        "{}",
        escalated.detail
    );
    assert_eq!(s.fix.runs.load(Ordering::SeqCst), 0, "nothing ran");
    let types = audit_types(&r.healer).await;
    assert!(types.contains(&"self_heal.fenced".to_owned()), "{types:?}");
    assert!(
        !types.contains(&"self_heal.executing".to_owned()),
        "{types:?}"
    );
    // The other replica still holds the target: this one did not hand it back.
    let grant = s
        .store
        .acquire_lease(TARGET, "replica-c", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(!grant.acquired(), "{grant:?}");
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_lost_its_lease_mid_action_does_not_roll_back() {
    let s = setup(false, true);
    let mut r = rig(s.builder, pattern()).await;
    for _ in 0..2 {
        r.healer
            .observe(Signal::new(TARGET, "pool timed out after 30s"));
    }
    let fenced = next(&mut r.rx, Phase::Fenced).await;
    assert!(
        fenced.detail.contains("rollback not run"),
        "{}",
        fenced.detail
    );
    let escalated = next(&mut r.rx, Phase::Escalated).await;
    assert!(
        escalated.detail.contains("it was not rolled back"),
        "{}",
        escalated.detail
    );
    assert_eq!(s.fix.runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        s.fix.rollbacks.load(Ordering::SeqCst),
        0,
        "no rollback without the lease"
    );
    let types = audit_types(&r.healer).await;
    assert!(types.contains(&"self_heal.fenced".to_owned()), "{types:?}");
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_keeps_its_lease_acts_and_rolls_back() {
    let s = setup(false, false);
    let mut r = rig(s.builder, pattern()).await;
    for _ in 0..2 {
        r.healer
            .observe(Signal::new(TARGET, "pool timed out after 30s"));
    }
    next(&mut r.rx, Phase::RolledBack).await;
    assert_eq!(s.fix.runs.load(Ordering::SeqCst), 1);
    assert_eq!(s.fix.rollbacks.load(Ordering::SeqCst), 1);
    let types = audit_types(&r.healer).await;
    assert!(!types.contains(&"self_heal.fenced".to_owned()), "{types:?}");
}
