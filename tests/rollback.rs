//! A failed rollback is audited and escalated (paused time): the fix did not heal,
//! undoing it failed too, so the target is in an unknown state and no further fix runs.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use selfheal::{
    ActionContext, ActionOutcome, ActionStatus, Error, ErrorKind, Executor, FixBinding, Healer,
    Pattern, PatternMode, Phase, RemediationPlan, Result, Severity, Signal, Strategy,
};
use support::{FakeFix, Gauge, audit_types, next, rig};

/// Runs, changes nothing, and cannot be undone.
#[derive(Debug)]
struct Irreversible;

#[async_trait]
impl Strategy for Irreversible {
    fn name(&self) -> &str {
        "irreversible"
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        Ok(RemediationPlan::new("irreversible", &ctx.target).step("change a setting"))
    }
    async fn execute(&self, _: &RemediationPlan, _: Arc<dyn Executor>) -> Result<ActionOutcome> {
        Ok(ActionOutcome::ok(Duration::from_millis(1)))
    }
    async fn rollback(
        &self,
        _: &RemediationPlan,
        _: Arc<dyn Executor>,
    ) -> Result<Option<ActionOutcome>> {
        Err(Error::new(ErrorKind::Execution, "the old value is gone"))
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_rollback_is_audited_escalated_and_stops_further_fixes() {
    let gauge = Gauge::new(10); // the probe never passes
    let next_fix = FakeFix::new("restart", &gauge, None);
    let pattern = Pattern::new("cache_broken")
        .regex("cache broken")
        .severity(Severity::High)
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(0.9)
        .threshold(3, Duration::from_secs(60))
        .fix(FixBinding::new("irreversible").priority(0))
        .fix(FixBinding::new("restart").priority(1));
    let builder = Healer::builder()
        .strategy(Irreversible)
        .strategy(next_fix.clone())
        .verifier("cache", gauge.clone());
    let mut r = rig(builder, pattern).await;
    for _ in 0..3 {
        r.healer.observe(Signal::new("cache", "cache broken"));
    }
    let escalated = next(&mut r.rx, Phase::Escalated).await;
    assert!(
        escalated
            .detail
            .contains("rolling `irreversible` back failed too: "),
        "{}",
        escalated.detail
    );
    assert!(escalated.detail.contains("the old value is gone"));
    assert_eq!(
        next_fix.runs(),
        0,
        "no further fix on a target in an unknown state"
    );
    let types = audit_types(&r.healer).await;
    assert!(
        types.contains(&"self_heal.rollback_failed".to_owned()),
        "{types:?}"
    );
    let actions = r.healer.admin().actions(escalated.incident).await.unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].status, ActionStatus::Failed);
    assert!(
        actions[0]
            .error
            .as_deref()
            .unwrap()
            .contains("back failed too")
    );
    r.running.shutdown().await;
    assert!(
        r.inbox
            .event_types()
            .contains(&"self_heal.escalated".to_owned())
    );
}
