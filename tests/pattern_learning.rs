//! Pattern management and learning through the `Healer` handle, in paused time: an
//! operator's promotions and edits are audited with who and what; an escalated or
//! suggested incident an operator resolved teaches the store an alert-only pattern;
//! patterns travel between healers as JSON.

mod support;

use std::time::Duration;

use selfheal::catalog::ImportOptions;
use selfheal::{
    Diagnosis, ErrorKind, FixBinding, Healer, IncidentFilter, IncidentStatus, Learned, MemoryStore,
    MockLlmAdvisor, Pattern, PatternMode, Phase, Signal, verify_chain,
};
use support::{FakeFix, Gauge, next};

/// An error no pattern knows, with a varying part.
fn unknown(i: usize) -> String {
    format!("search shard {i} rejected query: circuit tripped after 12 timeouts")
}

fn storm(healer: &Healer, target: &str, n: usize, from: usize) {
    for i in from..from + n {
        healer.observe(Signal::new(target, unknown(i)));
    }
}

async fn audit(healer: &Healer) -> Vec<selfheal::AuditRecord> {
    let audit = healer.admin().audit_log(10_000).await.unwrap();
    verify_chain(&audit).expect("audit chain intact");
    audit
}

#[tokio::test(start_paused = true)]
async fn an_operator_fix_of_an_escalated_error_proposes_an_alert_only_pattern() {
    let gauge = Gauge::new(100);
    let healer = Healer::builder()
        .store(MemoryStore::new())
        .strategy(FakeFix::new("restart_shard", &gauge, Some(100)))
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();

    // Unknown, no advisor: escalated.
    storm(&healer, "search", 5, 0);
    let escalated = next(&mut rx, Phase::Escalated).await;
    let id = escalated.incident.unwrap();

    // Bad operator input is refused and changes nothing.
    let err = healer
        .admin()
        .mark_fixed(id, FixBinding::new("restart_shard"), " ")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = healer
        .admin()
        .mark_fixed(id, FixBinding::new("reboot_the_world"), "alice")
        .await
        .unwrap_err();
    assert!(err.message().contains("not registered"), "{err}");
    assert!(healer.admin().patterns().await.unwrap().is_empty());

    let learned = healer
        .admin()
        .mark_fixed(id, FixBinding::new("restart_shard"), "alice")
        .await
        .unwrap();
    let Learned::Proposed(p) = learned else {
        panic!("expected a proposal, got {learned:?}");
    };
    assert!(p.name.starts_with(selfheal::LEARNED_PREFIX));
    assert_eq!(p.mode, PatternMode::AlertOnly);
    assert!(
        !p.auto_healable,
        "learning never makes a pattern auto-healable"
    );
    assert_eq!(p.target.as_deref(), Some("search"));
    assert_eq!(p.fixes[0].strategy, "restart_shard");
    assert_eq!(p.fixes[0].successes, 1);
    assert!(
        (p.confidence - 0.55).abs() < 1e-9,
        "0.5 + the success delta"
    );
    let incident = healer.admin().incident(id).await.unwrap().unwrap();
    assert_eq!(incident.status, IncidentStatus::Resolved);
    assert!(incident.reason.contains("alice"));
    let err = healer
        .admin()
        .mark_fixed(id, FixBinding::new("restart_shard"), "alice")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);

    let records = audit(&healer).await;
    let proposed = records
        .iter()
        .find(|r| r.event_type == "self_heal.pattern_proposed")
        .unwrap();
    assert_eq!(proposed.actor, "alice");
    assert_eq!(proposed.pattern.as_deref(), Some(p.name.as_str()));
    assert!(
        records
            .iter()
            .any(|r| r.event_type == "self_heal.resolved_by_operator")
    );

    // The same error again (other numbers): the proposal matches it and only alerts.
    storm(&healer, "search", 3, 100);
    let decided = next(&mut rx, Phase::Decided).await;
    assert_eq!(
        decided.detail,
        "alert only: the pattern notifies and runs nothing"
    );
    let latest = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.id != id)
        .unwrap();
    assert_eq!(latest.pattern.as_deref(), Some(p.name.as_str()));

    // A second operator fix of that fingerprint reinforces the proposal.
    next(&mut rx, Phase::Closed).await;
    let again = healer
        .admin()
        .mark_fixed(latest.id, FixBinding::new("restart_shard"), "bob")
        .await
        .unwrap();
    let Learned::Reinforced(r) = again else {
        panic!("expected a reinforcement, got {again:?}");
    };
    assert_eq!(r.name, p.name);
    assert!((r.confidence - 0.6).abs() < 1e-9, "{}", r.confidence);
    assert!(!r.auto_healable);

    // The proposal waits for review until an operator promotes it.
    assert_eq!(
        healer.admin().proposed_patterns().await.unwrap(),
        std::slice::from_ref(&r)
    );
    healer
        .admin()
        .promote_pattern(&r.name, false, "alice")
        .await
        .unwrap();
    assert!(healer.admin().proposed_patterns().await.unwrap().is_empty());
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_approved_advised_fix_that_verifies_proposes_a_pattern() {
    let gauge = Gauge::new(10);
    let mut advisor = MockLlmAdvisor::new();
    advisor.expect_name().return_const("mock".to_owned());
    advisor.expect_advise().returning(|_| {
        Ok(Diagnosis {
            root_cause: "a stuck shard".into(),
            strategy: Some("restart_shard".into()),
            params: serde_json::Value::Null,
            confidence: 0.6,
            explanation: "restarting the shard clears the tripped circuit".into(),
            advisor: "mock".into(),
        })
    });
    let healer = Healer::builder()
        .store(MemoryStore::new())
        .strategy(FakeFix::new("restart_shard", &gauge, Some(100)))
        .verifier("search", gauge.clone())
        .advisor(advisor)
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();

    storm(&healer, "search", 5, 0);
    next(&mut rx, Phase::AwaitingApproval).await;
    let approval = healer.admin().pending_approvals().await.unwrap().remove(0);
    healer.admin().approve(approval.id, "bob").await.unwrap();
    next(&mut rx, Phase::Resolved).await;

    let learned: Vec<Pattern> = healer
        .admin()
        .patterns()
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.name.starts_with(selfheal::LEARNED_PREFIX))
        .collect();
    assert_eq!(learned.len(), 1, "{learned:?}");
    assert_eq!(learned[0].mode, PatternMode::AlertOnly);
    assert!(!learned[0].auto_healable);
    assert_eq!(learned[0].fixes[0].strategy, "restart_shard");
    let proposed = audit(&healer)
        .await
        .into_iter()
        .find(|r| r.event_type == "self_heal.pattern_proposed")
        .unwrap();
    assert_eq!(proposed.actor, "bob");
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn operators_manage_patterns_and_every_change_is_audited_with_what_changed() {
    let gauge = Gauge::new(100);
    let healer = Healer::builder()
        .store(MemoryStore::new())
        .strategy(FakeFix::new("restart_shard", &gauge, Some(100)))
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();

    let err = healer
        .admin()
        .add_pattern(Pattern::new("broken").regex("shard (\\d+"), "alice")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.message().contains("invalid regex in pattern `broken`"),
        "{err}"
    );
    let err = healer
        .admin()
        .add_pattern(Pattern::new("x").regex("x"), "")
        .await
        .unwrap_err();
    assert!(err.message().contains("say who"), "{err}");
    assert!(healer.admin().patterns().await.unwrap().is_empty());

    let pattern = Pattern::new("shard_circuit")
        .regex("rejected query: circuit tripped")
        .threshold(1, Duration::from_secs(60))
        .fix(FixBinding::new("restart_shard"));
    healer
        .admin()
        .add_pattern(pattern.clone(), "alice")
        .await
        .unwrap();

    let promoted = healer
        .admin()
        .promote_pattern("shard_circuit", true, "alice")
        .await
        .unwrap();
    assert_eq!(promoted.mode, PatternMode::Active);
    assert!(promoted.auto_healable);
    let updated = promoted.clone().regex("circuit tripped");
    healer
        .admin()
        .update_pattern(updated, "carol")
        .await
        .unwrap();
    let disabled = healer
        .admin()
        .set_pattern_enabled("shard_circuit", false, "dave")
        .await
        .unwrap();
    assert!(!disabled.enabled);
    let err = healer
        .admin()
        .promote_pattern("nope", true, "alice")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    let records = audit(&healer).await;
    let mine: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.event_type.as_str(), r.actor.as_str()))
        .collect();
    assert_eq!(
        mine,
        [
            ("self_heal.pattern_added", "alice"),
            ("self_heal.pattern_promoted", "alice"),
            ("self_heal.pattern_updated", "carol"),
            ("self_heal.pattern_disabled", "dave"),
        ]
    );
    assert_eq!(
        records[1].detail["changes"],
        serde_json::json!({
            "mode": {"from": "alert_only", "to": "active"},
            "auto_healable": {"from": false, "to": true},
        })
    );
    assert_eq!(
        records[2].detail["changes"],
        serde_json::json!({"regex": {"from": "rejected query: circuit tripped", "to": "circuit tripped"}})
    );

    // Disabled: the error is unknown again and escalates.
    storm(&healer, "search", 5, 0);
    let e = next(&mut rx, Phase::Escalated).await;
    assert!(e.detail.contains("no known pattern"), "{}", e.detail);
    // Enabled and demoted: it only alerts.
    healer
        .admin()
        .set_pattern_enabled("shard_circuit", true, "dave")
        .await
        .unwrap();
    let demoted = healer
        .admin()
        .demote_pattern("shard_circuit", "dave")
        .await
        .unwrap();
    assert_eq!(
        (demoted.mode, demoted.auto_healable),
        (PatternMode::AlertOnly, false)
    );
    storm(&healer, "search", 1, 50);
    assert_eq!(
        next(&mut rx, Phase::Decided).await.detail,
        "alert only: the pattern notifies and runs nothing"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn patterns_travel_between_healers_as_json() {
    let from = Healer::builder().store(MemoryStore::new()).build().unwrap();
    let report = from.admin().seed_catalog().await.unwrap();
    assert_eq!(report.added.len(), selfheal::catalog::stock().len());
    from.admin()
        .promote_pattern("redis_oom", true, "alice")
        .await
        .unwrap();
    let json = from.admin().export_patterns("checkout-api").await.unwrap();

    let to = Healer::builder().store(MemoryStore::new()).build().unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    doc["patterns"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "bad", "regex": "(unclosed"}));
    let report = to
        .admin()
        .import_patterns(&doc.to_string(), &ImportOptions::default(), "erin")
        .await
        .unwrap();
    assert_eq!(report.added.len(), selfheal::catalog::stock().len());
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].name.as_deref(), Some("bad"));
    let oom = to
        .admin()
        .patterns()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == "redis_oom")
        .unwrap();
    assert!(
        !oom.auto_healable,
        "an untrusted import is never auto-healable"
    );
    let records = audit(&to).await;
    assert_eq!(
        records.last().unwrap().event_type,
        "self_heal.patterns_imported"
    );
    assert_eq!(records.last().unwrap().actor, "erin");
    // The seeding was audited by the catalog, chained with the healer's own records.
    let from_audit = audit(&from).await;
    assert_eq!(from_audit[0].actor, selfheal::catalog::SEED_ACTOR);
    assert_eq!(
        from_audit.last().unwrap().event_type,
        "self_heal.pattern_promoted"
    );
}

/// The captured Redis OOM text through a healer with the stock catalog: the stock
/// pattern only suggests its fix until an operator marks it auto-healable.
#[tokio::test(start_paused = true)]
async fn a_stock_pattern_suggests_until_an_operator_promotes_it() {
    const OOM: &str = "\"OOM\": command not allowed when used memory > 'maxmemory'.";
    let gauge = Gauge::new(10);
    // The stock `redis_oom` pattern's first fix.
    let raise = FakeFix::new(
        selfheal::catalog::strategy::REDIS_RAISE_MAXMEMORY,
        &gauge,
        Some(100),
    );
    let healer = Healer::builder()
        .store(MemoryStore::new())
        .strategy(raise.clone())
        .verifier("redis-cache", gauge.clone())
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer.admin().seed_catalog().await.unwrap();

    for _ in 0..3 {
        healer.observe(Signal::new("redis-cache", OOM));
    }
    let matched = next(&mut rx, Phase::Matched).await;
    assert!(matched.detail.contains("`redis_oom`"), "{}", matched.detail);
    next(&mut rx, Phase::AwaitingApproval).await;
    let approval = healer.admin().pending_approvals().await.unwrap().remove(0);
    assert!(
        approval.reason.contains("not auto-healable"),
        "{}",
        approval.reason
    );
    healer
        .admin()
        .reject(approval.id, "alice", "not now")
        .await
        .unwrap();
    next(&mut rx, Phase::Closed).await;
    assert_eq!(raise.runs(), 0);

    healer
        .admin()
        .promote_pattern("redis_oom", true, "alice")
        .await
        .unwrap();
    for _ in 0..3 {
        healer.observe(Signal::new("redis-cache", OOM));
    }
    next(&mut rx, Phase::Resolved).await;
    assert_eq!(raise.runs(), 1, "promoted: the fix ran without asking");
    running.shutdown().await;
}
