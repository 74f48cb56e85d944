//! Time limits on plug-in calls (paused time): a strategy, advisor or notifier that
//! hangs is abandoned after its `[limits]` entry; the incident ends (escalated, the
//! reason names the limit), the target's lock is released, and other work goes on.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use selfheal::{
    ActionContext, ActionOutcome, AdviceRequest, Diagnosis, Executor, Healer, IncidentFilter,
    IncidentStatus, LlmAdvisor, Notification, Notifier, Pattern, Phase, RemediationPlan, Result,
    Signal, Strategy,
};
use support::{FakeFix, Gauge, next, rig};

/// Hangs forever in whatever it is asked to do.
#[derive(Debug)]
struct Hangs;

#[async_trait]
impl Strategy for Hangs {
    fn name(&self) -> &str {
        "hangs"
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        Ok(RemediationPlan::new("hangs", &ctx.target).step("wait forever"))
    }
    async fn execute(&self, _: &RemediationPlan, _: Arc<dyn Executor>) -> Result<ActionOutcome> {
        std::future::pending().await
    }
}

#[async_trait]
impl LlmAdvisor for Hangs {
    fn name(&self) -> &str {
        "hangs"
    }
    async fn advise(&self, _: &AdviceRequest) -> Result<Diagnosis> {
        std::future::pending().await
    }
}

#[async_trait]
impl Notifier for Hangs {
    fn name(&self) -> &str {
        "hangs"
    }
    async fn notify(&self, _: &Notification) -> Result<()> {
        std::future::pending().await
    }
}

fn auto(name: &str, regex: &str, fix: &str) -> Pattern {
    support::auto_pattern(name, regex, fix)
}

fn burst(healer: &Healer, target: &str, message: &str) {
    for _ in 0..5 {
        healer.observe(Signal::new(target, message));
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_strategy_is_abandoned_and_its_target_is_free_again() {
    let gauge = Gauge::new(10);
    let fix = FakeFix::new("restart", &gauge, Some(100));
    let builder = Healer::builder()
        .strategy(Hangs)
        .strategy(fix.clone())
        .verifier("db", gauge.clone())
        .notifier(Hangs);
    let mut r = rig(builder, auto("wedged", "replication wedged", "hangs")).await;
    let healer = r.healer.clone();
    healer
        .admin()
        .add_pattern(auto("pool", "pool timed out", "restart"), "test")
        .await
        .unwrap();

    let started = tokio::time::Instant::now();
    burst(&healer, "db", "replication wedged");
    let escalated = next(&mut r.rx, Phase::Escalated).await;
    assert!(
        escalated
            .detail
            .contains("timed out after 300s (limits.execute)"),
        "{}",
        escalated.detail
    );
    assert!(started.elapsed() >= Duration::from_secs(300));
    assert!(
        started.elapsed() < Duration::from_secs(400),
        "abandoned at the limit (plus the hung notifier's 10 s): {:?}",
        started.elapsed()
    );
    // The target's lock was released: once the escalated incident has gone quiet,
    // another error on the same target is fixed.
    next(&mut r.rx, Phase::Quiet).await;
    burst(&healer, "db", "pool timed out");
    next(&mut r.rx, Phase::Resolved).await;
    assert_eq!(fix.runs(), 1);
    // The hung notifier was abandoned too: the inbox after it still heard of it.
    assert!(
        r.inbox
            .event_types()
            .contains(&"self_heal.escalated".to_owned()),
        "{:?}",
        r.inbox.event_types()
    );
    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 2);
    assert!(
        incidents
            .iter()
            .any(|i| i.status == IncidentStatus::Resolved)
    );
    r.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_hung_advisor_is_abandoned_and_the_incident_escalates() {
    let mut r = rig(
        Healer::builder().advisor(Hangs),
        auto("unrelated", "never matches", "restart"),
    )
    .await;
    burst(&r.healer, "api", "something nobody has seen");
    let escalated = next(&mut r.rx, Phase::Escalated).await;
    assert!(
        escalated
            .detail
            .contains("timed out after 120s (limits.advise)"),
        "{}",
        escalated.detail
    );
    r.running.shutdown().await;
}
