//! End-to-end paths through the facade, in paused time: every decision the healer can
//! take, the guards, verification with rollback, the intake under a flood, and the
//! tracing layer.

mod support;

use std::time::Duration;

use selfheal::{
    ActionStatus, ApprovalState, ErrorKind, FixBinding, GuardConfig, Healer, HealerConfig,
    IncidentFilter, IncidentStatus, MemoryStore, Pattern, PatternMode, Phase, Severity, Signal,
    verify_chain,
};
use support::{FakeFix, Gauge, Inbox, next, phases_until};

const POOL: &str = "pool timed out while waiting for an open connection";

fn pool_pattern(confidence: f64, fixes: &[&str]) -> Pattern {
    let mut p = Pattern::new("postgres_connection_pool_exhausted")
        .regex("pool timed out while waiting for an open connection")
        .severity(Severity::High)
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(confidence)
        .threshold(3, Duration::from_secs(60));
    for (i, f) in fixes.iter().enumerate() {
        p = p.fix(FixBinding::new(*f).priority(i as i32));
    }
    p
}

fn storm(healer: &Healer, target: &str, n: usize) {
    for i in 0..n {
        healer.observe(Signal::new(target, format!("{POOL} (attempt {i})")));
    }
}

async fn audit_types(healer: &Healer) -> Vec<String> {
    let audit = healer.admin().audit_log(1000).await.unwrap();
    verify_chain(&audit).expect("audit chain intact");
    audit.into_iter().map(|r| r.event_type).collect()
}

#[tokio::test(start_paused = true)]
async fn auto_remediates_verifies_and_learns() {
    let gauge = Gauge::new(20);
    let fix = FakeFix::new("restart", &gauge, Some(100));
    let healer = Healer::builder()
        .store(MemoryStore::new())
        .strategy(fix.clone())
        .verifier("db", gauge.clone())
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(pool_pattern(0.8, &["restart"]), "test")
        .await
        .unwrap();

    storm(&healer, "db", 3);
    let phases = phases_until(&mut rx, &[Phase::Resolved, Phase::Escalated]).await;
    assert_eq!(
        phases,
        [
            Phase::Detected,
            Phase::Matched,
            Phase::Decided,
            Phase::Executing,
            Phase::Output,
            Phase::Verifying,
            Phase::Verified,
            Phase::Resolved
        ]
    );
    assert_eq!(fix.runs(), 1);

    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].status, IncidentStatus::Resolved);
    assert_eq!(
        incidents[0].pattern.as_deref(),
        Some("postgres_connection_pool_exhausted")
    );
    let actions = healer.admin().actions(Some(incidents[0].id)).await.unwrap();
    assert_eq!(actions[0].status, ActionStatus::Succeeded);
    assert_eq!(
        (actions[0].health_before, actions[0].health_after),
        (Some(20), Some(100))
    );

    let p = &healer.admin().patterns().await.unwrap()[0];
    assert!(
        (p.confidence - 0.85).abs() < 1e-9,
        "confidence {}",
        p.confidence
    );
    assert_eq!((p.use_count, p.fixes[0].successes), (1, 1));
    let stats = healer.admin().stats().await.unwrap();
    assert_eq!(stats.patterns[0].success_rate, Some(1.0));
    assert!(stats.patterns[0].mttr.is_some());

    let types = audit_types(&healer).await;
    for t in [
        "self_heal.pattern_added",
        "self_heal.detected",
        "self_heal.auto",
        "self_heal.executed",
        "self_heal.resolved",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} missing from {types:?}");
    }
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn suggests_then_runs_when_approved() {
    let gauge = Gauge::new(0);
    let fix = FakeFix::new("restart", &gauge, Some(100));
    let healer = Healer::builder()
        .strategy(fix.clone())
        .verifier("db", gauge)
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(pool_pattern(0.5, &["restart"]), "test")
        .await
        .unwrap();

    storm(&healer, "db", 3);
    next(&mut rx, Phase::AwaitingApproval).await;
    assert_eq!(fix.runs(), 0, "nothing runs before approval");
    let pending = healer.admin().pending_approvals().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert!(
        pending[0].reason.contains("under the auto threshold"),
        "{}",
        pending[0].reason
    );
    assert_eq!(pending[0].plan.preview(), "restart db");

    healer
        .admin()
        .approve(pending[0].id, "alice")
        .await
        .unwrap();
    next(&mut rx, Phase::Resolved).await;
    assert_eq!(fix.runs(), 1);
    assert!(healer.admin().pending_approvals().await.unwrap().is_empty());
    let types = audit_types(&healer).await;
    assert!(types.contains(&"self_heal.suggested".to_owned()));
    let approved = healer
        .admin()
        .audit_log(100)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.event_type == "self_heal.approved")
        .unwrap();
    assert_eq!(approved.actor, "alice");
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn rejected_suggestion_runs_nothing_and_cannot_be_answered_twice() {
    let gauge = Gauge::new(0);
    let fix = FakeFix::new("restart", &gauge, Some(100));
    let healer = Healer::builder().strategy(fix.clone()).build().unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(pool_pattern(0.5, &["restart"]), "test")
        .await
        .unwrap();

    storm(&healer, "db", 3);
    next(&mut rx, Phase::AwaitingApproval).await;
    let id = healer.admin().pending_approvals().await.unwrap()[0].id;
    healer
        .admin()
        .reject(id, "bob", "maintenance tonight")
        .await
        .unwrap();
    let closed = next(&mut rx, Phase::Closed).await;
    assert!(closed.detail.contains("maintenance tonight"));
    assert_eq!(fix.runs(), 0);

    let again = healer.admin().approve(id, "alice").await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict);
    assert!(again.message().contains("rejected already"), "{again}");
    let missing = healer
        .admin()
        .approve(uuid_nil(), "alice")
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    let approvals = healer.admin().audit_log(100).await.unwrap();
    assert!(
        approvals
            .iter()
            .any(|r| r.event_type == "self_heal.rejected" && r.actor == "bob")
    );
    running.shutdown().await;
}

fn uuid_nil() -> selfheal::Uuid {
    selfheal::Uuid::nil()
}

#[tokio::test(start_paused = true)]
async fn escalates_low_confidence_and_unknown_errors() {
    let gauge = Gauge::new(0);
    let fix = FakeFix::new("restart", &gauge, Some(100));
    let inbox = Inbox::default();
    let healer = Healer::builder()
        .strategy(fix.clone())
        .notifier(inbox.clone())
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(pool_pattern(0.2, &["restart"]), "test")
        .await
        .unwrap();

    storm(&healer, "db", 3);
    let e = next(&mut rx, Phase::Escalated).await;
    assert!(
        e.detail.contains("under the suggest threshold"),
        "{}",
        e.detail
    );

    // An error nobody described: the default threshold (5 in 60 s), then escalation.
    for i in 0..5 {
        healer.observe(Signal::new(
            "billing",
            format!("ledger mismatch in batch {i}"),
        ));
    }
    let e = next(&mut rx, Phase::Escalated).await;
    assert_eq!(e.target, "billing");
    assert!(e.detail.contains("no known pattern"), "{}", e.detail);
    assert_eq!(fix.runs(), 0);
    assert_eq!(
        inbox.event_types(),
        ["self_heal.escalated", "self_heal.escalated"]
    );
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn alert_only_pattern_notifies_and_acts_not() {
    let gauge = Gauge::new(0);
    let fix = FakeFix::new("restart", &gauge, Some(100));
    let inbox = Inbox::default();
    let healer = Healer::builder()
        .strategy(fix.clone())
        .notifier(inbox.clone())
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(
            pool_pattern(0.9, &["restart"]).mode(PatternMode::AlertOnly),
            "test",
        )
        .await
        .unwrap();
    storm(&healer, "db", 3);
    next(&mut rx, Phase::Closed).await;
    assert_eq!(fix.runs(), 0);
    assert_eq!(inbox.event_types(), ["self_heal.alerted"]);
    assert!(
        audit_types(&healer)
            .await
            .contains(&"self_heal.alerted".to_owned())
    );
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn rate_limited_action_is_queued_and_runs_later() {
    let gauge = Gauge::new(100);
    let fix = FakeFix::new("restart", &gauge, Some(100));
    let config = HealerConfig {
        guards: GuardConfig {
            max_actions_per_hour: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let healer = Healer::builder()
        .config(config)
        .strategy(fix.clone())
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(pool_pattern(0.9, &["restart"]), "test")
        .await
        .unwrap();

    let start = tokio::time::Instant::now();
    storm(&healer, "db-a", 3);
    storm(&healer, "db-b", 3);
    let queued = next(&mut rx, Phase::Queued).await;
    assert_eq!(queued.target, "db-b");
    next(&mut rx, Phase::Resolved).await;
    assert_eq!(fix.runs(), 1);
    let second = next(&mut rx, Phase::Executing).await;
    assert_eq!(second.target, "db-b");
    assert!(
        start.elapsed() >= Duration::from_secs(3500),
        "ran after {:?}",
        start.elapsed()
    );
    next(&mut rx, Phase::Resolved).await;
    assert_eq!(fix.runs(), 2);
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn cooldown_blocks_a_repeat_on_the_same_target() {
    let gauge = Gauge::new(100);
    let fix = FakeFix::new("restart", &gauge, Some(100));
    let healer = Healer::builder().strategy(fix.clone()).build().unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(pool_pattern(0.9, &["restart"]), "test")
        .await
        .unwrap();

    storm(&healer, "db", 3);
    next(&mut rx, Phase::Resolved).await;
    storm(&healer, "db", 3);
    let e = next(&mut rx, Phase::Escalated).await;
    assert!(e.detail.contains("cooldown"), "{}", e.detail);
    assert_eq!(fix.runs(), 1);

    // After the cooldown (10 min by default) the fix may run again.
    tokio::time::advance(Duration::from_secs(601)).await;
    storm(&healer, "db", 3);
    next(&mut rx, Phase::Resolved).await;
    assert_eq!(fix.runs(), 2);
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn attempts_exhausted_escalates() {
    let gauge = Gauge::new(0);
    let fixes: Vec<FakeFix> = (0..4)
        .map(|i| FakeFix::new(&format!("fix{i}"), &gauge, None))
        .collect();
    let mut builder = Healer::builder().verifier("db", gauge.clone());
    for f in &fixes {
        builder = builder.strategy(f.clone());
    }
    let healer = builder.build().unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(pool_pattern(1.0, &["fix0", "fix1", "fix2", "fix3"]), "test")
        .await
        .unwrap();

    storm(&healer, "db", 3);
    let e = next(&mut rx, Phase::Escalated).await;
    assert!(e.detail.contains("3 attempt(s)"), "{}", e.detail);
    let runs: Vec<usize> = fixes.iter().map(FakeFix::runs).collect();
    assert_eq!(runs, [1, 1, 1, 0]);
    let p = &healer.admin().patterns().await.unwrap()[0];
    assert!(
        (p.confidence - 0.7).abs() < 1e-9,
        "three failures take 0.3: {}",
        p.confidence
    );
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn failed_verification_rolls_back_then_next_fix_heals() {
    let gauge = Gauge::new(10);
    let mut first = FakeFix::new("patch_config", &gauge, None);
    first.reversible = true;
    let second = FakeFix::new("restart", &gauge, Some(95));
    let healer = Healer::builder()
        .strategy(first.clone())
        .strategy(second.clone())
        .verifier("db", gauge.clone())
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(pool_pattern(0.9, &["patch_config", "restart"]), "test")
        .await
        .unwrap();

    storm(&healer, "db", 3);
    let phases = phases_until(&mut rx, &[Phase::Resolved, Phase::Escalated]).await;
    let tail: Vec<Phase> = phases
        .into_iter()
        .filter(|p| {
            matches!(
                p,
                Phase::Executing | Phase::RolledBack | Phase::Failed | Phase::Resolved
            )
        })
        .collect();
    assert_eq!(
        tail,
        [
            Phase::Executing,
            Phase::RolledBack,
            Phase::Failed,
            Phase::Executing,
            Phase::Resolved
        ]
    );
    assert_eq!((first.runs(), first.rollbacks(), second.runs()), (1, 1, 1));
    let actions = healer.admin().actions(None).await.unwrap();
    let statuses: Vec<ActionStatus> = actions.iter().rev().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [ActionStatus::RolledBack, ActionStatus::Succeeded]
    );
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn destructive_strategy_waits_for_approval_even_at_full_confidence() {
    let gauge = Gauge::new(100);
    let mut flush = FakeFix::new("flushdb", &gauge, Some(100));
    flush.destructive = true;
    let healer = Healer::builder().strategy(flush.clone()).build().unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(pool_pattern(1.0, &["flushdb"]), "test")
        .await
        .unwrap();
    storm(&healer, "db", 3);
    next(&mut rx, Phase::AwaitingApproval).await;
    assert_eq!(flush.runs(), 0);
    let pending = healer.admin().pending_approvals().await.unwrap();
    assert_eq!(pending[0].state, ApprovalState::Pending);
    assert!(pending[0].reason.contains("destructive"));
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn invalid_regex_is_refused_with_a_clear_error() {
    let healer = Healer::builder().build().unwrap();
    let err = healer
        .admin()
        .add_pattern(Pattern::new("broken").regex("pool (timed"), "test")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.message()
            .starts_with("invalid regex in pattern `broken`"),
        "{err}"
    );
    assert!(healer.admin().patterns().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_flood_of_observe_calls_never_blocks_and_counts_drops() {
    let mut config = HealerConfig::default();
    config.intake.queue_capacity = 1_000;
    let healer = Healer::builder().config(config).build().unwrap();
    // Not spawned: nothing drains the queue, so all but the first 500 must be dropped
    // without the caller ever waiting (one target holds at most half the queue; the
    // other half stays free for the other targets).
    for i in 0..1_000_000u32 {
        healer.observe(Signal::new("api", "request failed").field("i", i.to_string()));
    }
    assert_eq!(healer.observed(), 1_000_000);
    assert_eq!(healer.dropped(), 999_500);
    for i in 0..250u32 {
        healer.observe(Signal::new("db", "query failed").field("i", i.to_string()));
    }
    assert_eq!(healer.dropped(), 999_500, "another target still finds room");
}

#[tokio::test(start_paused = true)]
async fn related_errors_on_one_target_make_one_incident() {
    let healer = Healer::builder().build().unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(pool_pattern(0.2, &[]), "test")
        .await
        .unwrap();
    storm(&healer, "db", 3);
    for _ in 0..10 {
        healer.observe(Signal::new("db", "connection reset by peer"));
    }
    next(&mut rx, Phase::Escalated).await;
    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1, "one root cause, one incident");
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn tracing_layer_turns_an_error_event_into_an_incident() {
    use tracing_subscriber::layer::SubscriberExt;

    let healer = Healer::builder().build().unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(pool_pattern(0.2, &[]), "test")
        .await
        .unwrap();

    #[derive(Debug)]
    struct PoolTimedOut;
    impl std::fmt::Display for PoolTimedOut {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(POOL)
        }
    }
    impl std::error::Error for PoolTimedOut {}

    let subscriber = tracing_subscriber::registry().with(healer.layer());
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..3 {
            let err = PoolTimedOut;
            tracing::error!(
                component = "orders-db",
                error = &err as &dyn std::error::Error,
                "query failed"
            );
        }
        tracing::info!("info events are ignored");
    });
    let detected = next(&mut rx, Phase::Detected).await;
    assert_eq!(detected.target, "orders-db");
    let incident = healer
        .admin()
        .incident(detected.incident.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(incident.samples[0], format!("query failed: {POOL}"));
    assert_eq!(
        incident.pattern.as_deref(),
        Some("postgres_connection_pool_exhausted")
    );
    assert_eq!(healer.observed(), 3);
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_approval_left_by_a_stopped_healer_says_so() {
    let store: std::sync::Arc<dyn selfheal::Store> = std::sync::Arc::new(MemoryStore::new());
    let gauge = Gauge::new(0);
    let first = Healer::builder()
        .store_arc(store.clone())
        .strategy(FakeFix::new("restart", &gauge, Some(100)))
        .build()
        .unwrap();
    let mut rx = first.subscribe();
    let running = first.spawn();
    first
        .admin()
        .add_pattern(pool_pattern(0.5, &["restart"]), "test")
        .await
        .unwrap();
    storm(&first, "db", 3);
    next(&mut rx, Phase::AwaitingApproval).await;
    running.shutdown().await;

    let second = Healer::builder().store_arc(store.clone()).build().unwrap();
    assert!(second.admin().pending_approvals().await.unwrap().is_empty());
    let pending = store.list_approvals(false).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].state, selfheal::ApprovalState::Expired);
    let err = second
        .admin()
        .approve(pending[0].id, "alice")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.message()
            .contains("the healer that asked it stopped before anyone answered"),
        "{err}"
    );
}
