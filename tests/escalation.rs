//! One incident, one escalation (paused time): an error that keeps coming after its
//! incident escalated counts into that incident, the operators are reminded on a
//! back-off, and a new incident opens only after the error was quiet for a while.
//! A fix a human rejected is not asked about again while its error goes on, and an
//! alert-only pattern alerts once while its error goes on.

mod support;

use std::time::Duration;

use selfheal::{
    FixBinding, Healer, IncidentFilter, IncidentStatus, Pattern, PatternMode, Phase, Severity,
    Signal,
};
use support::{FakeFix, Gauge, audit_types, next, rig};

/// Sends `message` on `target` once a second for `for_secs` seconds of (paused) time.
async fn keep_failing(healer: &Healer, target: &str, message: &str, for_secs: u64) {
    for _ in 0..for_secs {
        healer.observe(Signal::new(target, message));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn count(types: &[String], t: &str) -> usize {
    types.iter().filter(|x| *x == t).count()
}

#[tokio::test(start_paused = true)]
async fn an_error_that_goes_on_after_escalating_is_one_incident_reminded_on_a_back_off() {
    // A pattern nobody wrote a fix for: it escalates.
    let pattern = Pattern::new("upstream_exploded")
        .regex("upstream exploded")
        .severity(Severity::High)
        .mode(PatternMode::Active)
        .confidence(0.9)
        .threshold(3, Duration::from_secs(60));
    let mut r = rig(Healer::builder(), pattern).await;
    let healer = r.healer.clone();

    // 30 minutes of an error a second: one incident, one escalation, three reminders
    // (after 1, 1+5 and 1+5+15 minutes).
    keep_failing(&healer, "api", "upstream exploded", 30 * 60).await;
    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0].status, IncidentStatus::Escalated);
    assert!(
        incidents[0].occurrences > 1700,
        "later occurrences count into it: {}",
        incidents[0].occurrences
    );
    assert_eq!(
        r.inbox.event_types(),
        [
            "self_heal.escalated",
            "self_heal.reminded",
            "self_heal.reminded",
            "self_heal.reminded"
        ]
    );

    // Quiet for the period: it ends, and the same error opens a new incident.
    let quiet = next(&mut r.rx, Phase::Quiet).await;
    assert_eq!(quiet.incident, Some(incidents[0].id));
    keep_failing(&healer, "api", "upstream exploded", 5).await;
    next(&mut r.rx, Phase::Escalated).await;
    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 2);
    let types = audit_types(&healer).await;
    assert_eq!(count(&types, "self_heal.escalated"), 2);
    assert_eq!(count(&types, "self_heal.reminded"), 3);
    assert_eq!(count(&types, "self_heal.quiet"), 1);
    r.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_quiet_escalated_incident_reminds_nobody() {
    let pattern = Pattern::new("upstream_exploded")
        .regex("upstream exploded")
        .mode(PatternMode::Active)
        .confidence(0.9)
        .threshold(3, Duration::from_secs(60));
    let mut r = rig(Healer::builder(), pattern).await;
    keep_failing(&r.healer, "api", "upstream exploded", 3).await;
    next(&mut r.rx, Phase::Escalated).await;
    next(&mut r.rx, Phase::Quiet).await;
    assert_eq!(r.inbox.event_types(), ["self_heal.escalated"]);
    r.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_rejected_fix_is_not_asked_about_again_while_its_error_goes_on() {
    let gauge = Gauge::new(100);
    let fix = FakeFix::new("restart", &gauge, Some(100));
    let pattern = Pattern::new("pool_exhausted")
        .regex("pool timed out")
        .severity(Severity::High)
        .mode(PatternMode::Active)
        .confidence(0.9)
        .threshold(3, Duration::from_secs(60))
        .fix(FixBinding::new("restart"));
    let mut r = rig(Healer::builder().strategy(fix.clone()), pattern).await;
    let healer = r.healer.clone();

    keep_failing(&healer, "db", "pool timed out", 3).await;
    next(&mut r.rx, Phase::AwaitingApproval).await;
    let pending = healer.admin().pending_approvals().await.unwrap();
    assert_eq!(pending.len(), 1);
    healer
        .admin()
        .reject(pending[0].id, "alice", "not during the sale")
        .await
        .unwrap();
    next(&mut r.rx, Phase::Closed).await;

    // Five more minutes of the error: no new incident, no new question.
    keep_failing(&healer, "db", "pool timed out", 5 * 60).await;
    assert!(healer.admin().pending_approvals().await.unwrap().is_empty());
    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(fix.runs(), 0);
    assert_eq!(
        r.inbox.event_types(),
        ["self_heal.suggested"],
        "asked once, never reminded about a rejected fix"
    );

    // Quiet, then the error again: a human is asked again.
    next(&mut r.rx, Phase::Quiet).await;
    keep_failing(&healer, "db", "pool timed out", 3).await;
    next(&mut r.rx, Phase::AwaitingApproval).await;
    assert_eq!(healer.admin().pending_approvals().await.unwrap().len(), 1);
    r.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn nothing_is_audited_as_suggested_unless_a_human_was_asked() {
    let gauge = Gauge::new(10);
    let fix = FakeFix::new("restart", &gauge, Some(100));
    let pattern = Pattern::new("pool_exhausted")
        .regex("pool timed out")
        .severity(Severity::High)
        .mode(PatternMode::Active)
        .confidence(0.9)
        .threshold(3, Duration::from_secs(60))
        .fix(FixBinding::new("restart"));
    let mut r = rig(
        Healer::builder()
            .strategy(fix.clone())
            .verifier("db", gauge.clone()),
        pattern,
    )
    .await;
    let healer = r.healer.clone();

    // Asked, approved, fixed.
    keep_failing(&healer, "db", "pool timed out", 3).await;
    next(&mut r.rx, Phase::AwaitingApproval).await;
    let pending = healer.admin().pending_approvals().await.unwrap();
    healer
        .admin()
        .approve(pending[0].id, "alice")
        .await
        .unwrap();
    next(&mut r.rx, Phase::Resolved).await;
    assert_eq!(fix.runs(), 1);

    // Back at once: the fix is cooling down, so nobody is asked and nothing says so.
    gauge.set(10);
    keep_failing(&healer, "db", "pool timed out", 3).await;
    let escalated = next(&mut r.rx, Phase::Escalated).await;
    assert!(
        escalated.detail.contains("cooldown"),
        "{}",
        escalated.detail
    );
    assert!(healer.admin().pending_approvals().await.unwrap().is_empty());
    let types = audit_types(&healer).await;
    assert_eq!(count(&types, "self_heal.suggested"), 1, "{types:?}");
    assert_eq!(fix.runs(), 1);
    r.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_alert_only_error_that_goes_on_is_one_incident_and_one_alert() {
    // An error storm on an alert-only pattern (as the stock `pool_timeout` is): 20 a
    // second for a minute.
    let pattern = Pattern::new("pool_timeout")
        .regex("pool timed out")
        .severity(Severity::Medium)
        .mode(PatternMode::AlertOnly)
        .confidence(0.9)
        .threshold(3, Duration::from_secs(60));
    let mut r = rig(Healer::builder(), pattern).await;
    let healer = r.healer.clone();
    for _ in 0..60 * 20 {
        healer.observe(Signal::new("db", "pool timed out"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1, "one incident, not {}", incidents.len());
    assert_eq!(incidents[0].status, IncidentStatus::Closed);
    assert!(
        incidents[0].occurrences > 1100,
        "later occurrences count into it: {}",
        incidents[0].occurrences
    );
    assert_eq!(r.inbox.event_types(), ["self_heal.alerted"], "alerted once");

    // Quiet for the period: it ends, and the same error alerts again.
    let quiet = next(&mut r.rx, Phase::Quiet).await;
    assert_eq!(quiet.incident, Some(incidents[0].id));
    keep_failing(&healer, "db", "pool timed out", 5).await;
    assert_eq!(
        r.inbox.event_types(),
        ["self_heal.alerted", "self_heal.alerted"]
    );
    let types = audit_types(&healer).await;
    assert_eq!(count(&types, "self_heal.alerted"), 2);
    assert_eq!(count(&types, "self_heal.quiet"), 1);
    r.running.shutdown().await;
}
