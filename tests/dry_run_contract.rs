//! Dry run is a contract (paused time): a strategy that acts on its own, outside the
//! executor it is handed, is never called in a dry run; its plan is recorded instead.
//! A strategy that declares every effect goes through the executor runs against the
//! recording executor, so nothing reaches the real one.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use selfheal::{
    ActionContext, ActionOutcome, Executor, Healer, HealerConfig, Pattern, Phase, RemediationPlan,
    Result, Signal, Strategy,
};
use support::{CommandFix, CountingExecutor, audit_types, next, rig};

/// Calls "an API" directly: its effect bypasses the executor.
#[derive(Debug, Clone, Default)]
struct CallsAnApi(Arc<AtomicUsize>);

#[async_trait]
impl Strategy for CallsAnApi {
    fn name(&self) -> &str {
        "calls_an_api"
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        Ok(RemediationPlan::new("calls_an_api", &ctx.target).step("POST /scale?replicas=5"))
    }
    async fn execute(&self, _: &RemediationPlan, _: Arc<dyn Executor>) -> Result<ActionOutcome> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(ActionOutcome::ok(Duration::from_millis(1)))
    }
}

fn pattern(fix: &str) -> Pattern {
    support::auto_pattern("overloaded", "overloaded", fix)
}

fn dry() -> HealerConfig {
    let mut config = HealerConfig::default();
    config.safety.dry_run = true;
    config.verification.quiet_for = Duration::from_secs(1);
    config
}

#[tokio::test(start_paused = true)]
async fn a_custom_strategy_that_bypasses_the_executor_is_never_called_in_a_dry_run() {
    let api = CallsAnApi::default();
    let builder = Healer::builder().config(dry()).strategy(api.clone());
    let mut r = rig(builder, pattern("calls_an_api")).await;
    for _ in 0..3 {
        r.healer.observe(Signal::new("web", "overloaded"));
    }
    let recorded = next(&mut r.rx, Phase::DryRun).await;
    assert!(recorded.detail.contains("plan only"), "{}", recorded.detail);
    assert!(
        recorded.detail.contains("POST /scale?replicas=5"),
        "{}",
        recorded.detail
    );
    next(&mut r.rx, Phase::Resolved).await;
    assert_eq!(api.0.load(Ordering::SeqCst), 0, "never called in a dry run");
    let types = audit_types(&r.healer).await;
    assert!(types.contains(&"self_heal.dry_run".to_owned()), "{types:?}");
    assert!(
        !types.contains(&"self_heal.executed".to_owned()),
        "{types:?}"
    );
    r.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_strategy_that_acts_through_the_executor_runs_against_the_recorder() {
    let executor = CountingExecutor::default();
    let builder = Healer::builder()
        .config(dry())
        .strategy(CommandFix::new("restart"))
        .executor(executor.clone());
    let mut r = rig(builder, pattern("restart")).await;
    for _ in 0..3 {
        r.healer.observe(Signal::new("web", "overloaded"));
    }
    let recorded = next(&mut r.rx, Phase::DryRun).await;
    assert!(
        recorded.detail.contains("systemctl restart web"),
        "{}",
        recorded.detail
    );
    assert!(executor.ran().is_empty(), "the real executor ran nothing");
    r.running.shutdown().await;
}
