//! A panic in any plug-in never wedges an incident (paused time): the incident ends as
//! failed (audited with the panic's message) and escalates, it is forgotten once its
//! error is quiet, and the healer goes on healing other errors.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use selfheal::{
    ActionContext, ActionOutcome, AdviceRequest, Diagnosis, Executor, Healer, HealerBuilder,
    Health, IncidentFilter, IncidentStatus, LlmAdvisor, Notification, Notifier, Pattern,
    PatternMode, Phase, RemediationPlan, Result, Signal, Strategy, Verifier,
};
use support::{FakeFix, Gauge, Rig, audit_types, next, rig};

/// Which plug-in call panics.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Where {
    Plan,
    Execute,
    Check,
    Notify,
    Advise,
}

#[derive(Debug)]
struct Panicky(Where);

#[async_trait]
impl Strategy for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        assert!(self.0 != Where::Plan, "strategy plan blew up");
        Ok(RemediationPlan::new("panicky", &ctx.target).step("do it"))
    }
    async fn execute(&self, _: &RemediationPlan, _: Arc<dyn Executor>) -> Result<ActionOutcome> {
        assert!(self.0 != Where::Execute, "strategy execute blew up");
        Ok(ActionOutcome::ok(Duration::from_millis(1)))
    }
}

#[async_trait]
impl Verifier for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    async fn check(&self) -> Result<Health> {
        assert!(self.0 != Where::Check, "verifier check blew up");
        Ok(Health::new(100, "fine"))
    }
}

#[async_trait]
impl Notifier for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    async fn notify(&self, _: &Notification) -> Result<()> {
        panic!("notifier blew up")
    }
}

#[async_trait]
impl LlmAdvisor for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    async fn advise(&self, _: &AdviceRequest) -> Result<Diagnosis> {
        panic!("advisor blew up")
    }
}

fn pattern(message: &str, fix: &str) -> Pattern {
    support::auto_pattern(&format!("p_{fix}"), message, fix)
}

/// Enough occurrences for a pattern (3) and for an unknown error (5).
fn burst(healer: &Healer, target: &str, message: &str) {
    for _ in 0..5 {
        healer.observe(Signal::new(target, message));
    }
}

/// After a panic, a healthy error on another target still heals: the healer is not
/// wedged.
async fn still_heals(r: &mut Rig, gauge: &Gauge, fix: &FakeFix) {
    r.healer
        .admin()
        .add_pattern(pattern("disk slow", "restart"), "test")
        .await
        .unwrap();
    gauge.set(10);
    burst(&r.healer, "disk", "disk slow");
    next(&mut r.rx, Phase::Resolved).await;
    assert_eq!(fix.runs(), 1);
}

async fn panics_in(place: Where) {
    let gauge = Gauge::new(100);
    let fix = FakeFix::new("restart", &gauge, Some(100));
    let mut builder: HealerBuilder = Healer::builder()
        .strategy(Panicky(place))
        .strategy(fix.clone())
        .verifier("disk", gauge.clone());
    builder = match place {
        Where::Check => builder.verifier("api", Panicky(place)),
        Where::Notify => builder.notifier(Panicky(place)),
        Where::Advise => builder.advisor(Panicky(place)),
        _ => builder,
    };
    let first = match place {
        Where::Advise => pattern("never matches anything", "panicky"),
        // No fix bound: it escalates, and the notifiers are told.
        Where::Notify => Pattern::new("p_unfixable")
            .regex("api exploded")
            .mode(PatternMode::Active)
            .confidence(0.9)
            .threshold(3, Duration::from_secs(60)),
        _ => pattern("api exploded", "panicky"),
    };
    let mut r = rig(builder, first).await;

    burst(&r.healer, "api", "api exploded");
    let ended = next(&mut r.rx, Phase::Escalated).await;
    let incident = r
        .healer
        .admin()
        .incident(ended.incident.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(incident.status, IncidentStatus::Escalated);
    if place == Where::Notify {
        // A panicking notifier loses only its own notification: the rest goes on.
        assert!(ended.detail.contains("no fix bound"), "{}", ended.detail);
    } else {
        assert!(
            incident.reason.contains("panicked") && incident.reason.contains("blew up"),
            "{place:?}: {}",
            incident.reason
        );
        let audit = r.healer.admin().audit_log(100).await.unwrap();
        let failed = audit
            .iter()
            .find(|a| a.event_type == "self_heal.failed")
            .expect("the panic is audited");
        assert!(failed.detail["panic"].as_str().unwrap().contains("blew up"));
    }
    assert!(
        r.inbox
            .event_types()
            .contains(&"self_heal.escalated".to_owned()),
        "{place:?}: the other notifiers are still told: {:?}",
        r.inbox.event_types()
    );
    audit_types(&r.healer).await; // the chain is intact

    // Not a zombie: once the error is quiet the incident is gone from memory.
    next(&mut r.rx, Phase::Quiet).await;
    assert!(r.healer.admin().open_incidents().is_empty(), "{place:?}");
    still_heals(&mut r, &gauge, &fix).await;
    let all = r
        .healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    r.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_strategy_that_panics_while_planning_ends_its_incident() {
    panics_in(Where::Plan).await;
}

#[tokio::test(start_paused = true)]
async fn a_strategy_that_panics_while_executing_ends_its_incident() {
    panics_in(Where::Execute).await;
}

#[tokio::test(start_paused = true)]
async fn a_verifier_that_panics_ends_its_incident() {
    panics_in(Where::Check).await;
}

#[tokio::test(start_paused = true)]
async fn a_notifier_that_panics_does_not_stop_the_others() {
    panics_in(Where::Notify).await;
}

#[tokio::test(start_paused = true)]
async fn an_advisor_that_panics_ends_its_incident() {
    panics_in(Where::Advise).await;
}
