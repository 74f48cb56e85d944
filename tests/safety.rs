//! The safety envelope end to end through the facade, in paused time: storm
//! short-circuit, back-off on repeats, the healer's breaker, approval expiry,
//! silences, self-caused errors, dependencies and dry run.

mod support;

use std::time::Duration;

use selfheal::{
    ErrorKind, FixBinding, Healer, HealerBuilder, HealerConfig, IncidentFilter, IncidentStatus,
    MemoryStore, Pattern, PatternMode, Phase, Severity, Signal, Silence, SilenceScope,
};
use support::{
    CommandFix, CountingExecutor, FakeFix, Gauge, Rig, audit_types, next, phases_until, rig,
};

const POOL: &str = "pool timed out while waiting for an open connection";
const PATTERN: &str = "postgres_connection_pool_exhausted";

fn pool_pattern(confidence: f64, fix: &str) -> Pattern {
    Pattern::new(PATTERN)
        .regex(POOL)
        .severity(Severity::High)
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(confidence)
        .threshold(3, Duration::from_secs(60))
        .fix(FixBinding::new(fix))
}

/// A spawned healer with a `restart` fix that sets `gauge` to `heals_to`, the pool
/// pattern at `confidence`, and whatever `extra` adds to the builder.
async fn restart_rig(
    gauge: &Gauge,
    heals_to: Option<u8>,
    confidence: f64,
    extra: impl FnOnce(HealerBuilder) -> HealerBuilder,
) -> (Rig, FakeFix) {
    let fix = FakeFix::new("restart", gauge, heals_to);
    let builder = extra(Healer::builder().strategy(fix.clone()));
    (rig(builder, pool_pattern(confidence, "restart")).await, fix)
}

fn storm(healer: &Healer, target: &str, n: usize) {
    for i in 0..n {
        healer.observe(Signal::new(target, format!("{POOL} (attempt {i})")));
    }
}

fn count(types: &[String], t: &str) -> usize {
    types.iter().filter(|x| *x == t).count()
}

#[tokio::test(start_paused = true)]
async fn a_storm_over_ten_targets_runs_nothing_escalates_once_and_rearms() {
    let gauge = Gauge::new(100);
    let (mut r, fix) = restart_rig(&gauge, Some(100), 0.9, |b| b).await;
    let healer = r.healer.clone();

    for t in 0..10 {
        storm(&healer, &format!("svc-{t}"), 3);
    }
    let tripped = next(&mut r.rx, Phase::StormTripped).await;
    assert!(
        tripped.detail.contains("10 of 10 known targets"),
        "{}",
        tripped.detail
    );
    assert!(healer.admin().storm_active());
    let status = healer.admin().safety();
    assert!(status.storm && !status.breaker_open);
    assert_eq!(
        (status.unhealthy_targets.len(), status.known_targets),
        (10, 10)
    );
    // The errors stop: every held incident closes with nothing run, and the storm ends.
    next(&mut r.rx, Phase::StormCleared).await;
    assert!(!healer.admin().storm_active());
    assert_eq!(fix.runs(), 0, "nothing ran during the storm");
    assert_eq!(
        r.inbox.event_types(),
        ["self_heal.escalated", "self_heal.storm_cleared"]
    );
    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 10);
    assert!(
        incidents
            .iter()
            .all(|i| i.status == IncidentStatus::Closed && i.reason.contains("during the storm")),
        "{incidents:?}"
    );
    let types = audit_types(&healer).await;
    assert_eq!(count(&types, "self_heal.storm_tripped"), 1);
    assert_eq!(count(&types, "self_heal.held"), 10);
    assert_eq!(count(&types, "self_heal.executed"), 0);

    // Re-armed: one failing target is remediated again.
    storm(&healer, "svc-0", 3);
    next(&mut r.rx, Phase::Resolved).await;
    assert_eq!(fix.runs(), 1);
    r.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn repeat_incidents_double_the_cooldown_up_to_its_cap() {
    let gauge = Gauge::new(100);
    let mut config = HealerConfig::default();
    config.safety.backoff.masking_after = 0;
    let (mut r, fix) = restart_rig(&gauge, Some(100), 0.9, |b| b.config(config)).await;
    let healer = r.healer.clone();

    for round in 1..=8 {
        storm(&healer, "db", 3);
        next(&mut r.rx, Phase::Resolved).await;
        assert_eq!(fix.runs(), round);
        // The error comes back once this cooldown is over.
        tokio::time::advance(healer.admin().next_cooldown("restart", "db")).await;
    }
    let backed_off: Vec<u64> = healer
        .admin()
        .audit_log(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event_type == "self_heal.backed_off")
        .map(|r| r.detail["cooldown_secs"].as_u64().unwrap() / 60)
        .collect();
    assert_eq!(backed_off, [20, 40, 80, 160, 320, 360, 360]);
    assert_eq!(
        healer.admin().next_cooldown("restart", "db"),
        Duration::from_secs(6 * 3600)
    );
    assert_eq!(
        healer.admin().next_cooldown("restart", "cache"),
        Duration::from_secs(600)
    );
    r.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_fix_that_keeps_succeeding_while_the_error_returns_is_flagged_as_masking() {
    let gauge = Gauge::new(100);
    let (mut r, fix) = restart_rig(&gauge, Some(100), 0.9, |b| b).await;
    let healer = r.healer.clone();

    for _ in 0..3 {
        storm(&healer, "db", 3);
        next(&mut r.rx, Phase::Resolved).await;
        tokio::time::advance(healer.admin().next_cooldown("restart", "db")).await;
    }
    storm(&healer, "db", 3);
    let e = next(&mut r.rx, Phase::Escalated).await;
    assert!(e.detail.contains("masking the real issue"), "{}", e.detail);
    assert!(e.detail.contains("3 times"), "{}", e.detail);
    assert_eq!(fix.runs(), 3, "the third repeat does not run the fix again");
    assert_eq!(r.inbox.event_types(), ["self_heal.escalated"]);
    assert_eq!(count(&audit_types(&healer).await, "self_heal.masking"), 1);
    r.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn five_failed_fixes_trip_the_breaker_until_an_operator_rearms_it() {
    let gauge = Gauge::new(0);
    let mut config = HealerConfig::default();
    // Each failure would also lower the pattern's confidence until it only suggests;
    // keep it auto so the breaker, not the policy, is what stops the sixth fix.
    config.feedback.failure_delta = 0.0;
    let (mut r, fix) = restart_rig(&gauge, None, 0.9, |b| {
        (0..6).fold(b.config(config), |b, t| {
            b.verifier(format!("svc-{t}"), gauge.clone())
        })
    })
    .await;
    let healer = r.healer.clone();

    for t in 0..4 {
        storm(&healer, &format!("svc-{t}"), 3);
        next(&mut r.rx, Phase::Escalated).await;
    }
    assert!(!healer.admin().breaker_open());
    storm(&healer, "svc-4", 3);
    let phases = phases_until(&mut r.rx, &[Phase::Escalated]).await;
    assert!(phases.contains(&Phase::BreakerTripped), "{phases:?}");
    assert!(healer.admin().breaker_open() && healer.admin().safety().breaker_open);
    assert_eq!(fix.runs(), 5);

    // Open: a sixth incident runs nothing, whatever time passes.
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    storm(&healer, "svc-5", 3);
    let e = next(&mut r.rx, Phase::Escalated).await;
    assert!(e.detail.contains("breaker is open"), "{}", e.detail);
    assert_eq!(fix.runs(), 5);
    assert_eq!(
        r.inbox
            .event_types()
            .iter()
            .filter(|t| *t == "self_heal.breaker_tripped")
            .count(),
        1
    );

    healer.admin().rearm("alice").await.unwrap();
    let again = healer.admin().rearm("alice").await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict);
    storm(&healer, "svc-5", 3);
    next(&mut r.rx, Phase::Failed).await;
    assert_eq!(fix.runs(), 6, "re-armed: the healer acts again");
    let audit = healer.admin().audit_log(1000).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.event_type == "self_heal.breaker_rearmed" && r.actor == "alice")
    );
    r.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_approval_expires_escalates_and_cannot_be_approved() {
    let gauge = Gauge::new(0);
    let (mut r, fix) = restart_rig(&gauge, Some(100), 0.5, |b| b).await;
    let healer = r.healer.clone();

    storm(&healer, "db", 3);
    next(&mut r.rx, Phase::AwaitingApproval).await;
    let asked = tokio::time::Instant::now();
    let id = healer.admin().pending_approvals().await.unwrap()[0].id;
    next(&mut r.rx, Phase::Expired).await;
    assert_eq!(
        asked.elapsed(),
        Duration::from_secs(30 * 60),
        "the default TTL"
    );
    let e = next(&mut r.rx, Phase::Escalated).await;
    assert!(
        e.detail.contains("not answered within 1800s"),
        "{}",
        e.detail
    );
    assert!(healer.admin().pending_approvals().await.unwrap().is_empty());

    let err = healer.admin().approve(id, "alice").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.message()
            .contains("expired (not answered within 1800s)"),
        "{err}"
    );
    assert_eq!(fix.runs(), 0);
    assert_eq!(
        r.inbox.event_types(),
        ["self_heal.suggested", "self_heal.escalated"]
    );
    assert_eq!(
        count(&audit_types(&healer).await, "self_heal.approval_expired"),
        1
    );
    r.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_silence_suppresses_a_pattern_and_lifts_on_time() {
    let gauge = Gauge::new(100);
    let (mut r, fix) = restart_rig(&gauge, Some(100), 0.9, |b| b).await;
    let healer = r.healer.clone();

    let bad = Silence::new(
        SilenceScope::Pattern(PATTERN.into()),
        chrono::Utc::now(),
        chrono::Utc::now() - chrono::TimeDelta::minutes(1),
    );
    let err = healer.admin().add_silence(bad, "alice").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("before it starts"), "{err}");

    let id = healer
        .admin()
        .add_silence(
            Silence::from_now(
                SilenceScope::Pattern(PATTERN.into()),
                Duration::from_secs(3600),
            )
            .reason("database maintenance"),
            "alice",
        )
        .await
        .unwrap();
    storm(&healer, "db", 5);
    let e = next(&mut r.rx, Phase::Silenced).await;
    assert_eq!(e.target, "db");
    let status = &healer.admin().silences()[0];
    assert_eq!((status.id, status.active, status.suppressed), (id, true, 5));
    assert!(
        healer
            .admin()
            .incidents(&IncidentFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "a silence opens nothing"
    );
    assert_eq!(fix.runs(), 0);

    tokio::time::advance(Duration::from_secs(3601)).await;
    assert!(!healer.admin().silences()[0].active, "lifted on time");
    storm(&healer, "db", 3);
    next(&mut r.rx, Phase::Resolved).await;
    assert_eq!(fix.runs(), 1);

    healer.admin().remove_silence(id, "alice").await.unwrap();
    assert!(healer.admin().silences().is_empty());
    let missing = healer
        .admin()
        .remove_silence(id, "alice")
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    let types = audit_types(&healer).await;
    assert_eq!(count(&types, "self_heal.silence_added"), 1);
    assert_eq!(count(&types, "self_heal.silence_removed"), 1);
    r.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarts_own_connection_errors_do_not_open_a_second_incident() {
    let gauge = Gauge::new(20);
    let mut config = HealerConfig::default();
    // Correlation by target would also absorb them while the incident is young (and
    // it ages on the wall clock, which paused time does not move): switch it off so
    // only the self-caused window is at work.
    config.detection.correlation_window = Duration::ZERO;
    let (mut r, fix) = restart_rig(&gauge, Some(100), 0.9, |b| {
        b.config(config).verifier("db", gauge.clone())
    })
    .await;
    let healer = r.healer.clone();
    // The restart takes 5 s; its connection resets come while it runs.
    fix.takes_ms
        .store(5_000, std::sync::atomic::Ordering::SeqCst);

    storm(&healer, "db", 3);
    next(&mut r.rx, Phase::Executing).await;
    for _ in 0..10 {
        healer.observe(Signal::new("db", "connection reset by peer"));
    }
    let phases = phases_until(&mut r.rx, &[Phase::Resolved, Phase::Escalated]).await;
    assert!(phases.contains(&Phase::SelfCaused), "{phases:?}");
    assert_eq!(phases.last(), Some(&Phase::Resolved));
    assert!(!phases.contains(&Phase::Detected), "{phases:?}");
    assert_eq!(fix.runs(), 1);
    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1, "one incident");
    assert_eq!(incidents[0].occurrences, 13);
    let counted = healer
        .admin()
        .audit_log(100)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.event_type == "self_heal.self_caused")
        .expect("self-caused errors audited");
    assert_eq!(counted.detail["errors"], 10);

    // After the validation window the same errors are the target's own again.
    for _ in 0..5 {
        healer.observe(Signal::new("db", "connection reset by peer"));
    }
    let second = next(&mut r.rx, Phase::Detected).await;
    assert_eq!(second.target, "db");
    r.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_database_with_three_dependents_makes_one_incident_and_one_remediation() {
    let gauge = Gauge::new(100);
    let (mut r, fix) = restart_rig(&gauge, Some(100), 0.9, |b| {
        b.depends_on("api", ["db"])
            .depends_on("worker", ["db"])
            .depends_on("web", ["db", "cache"])
    })
    .await;
    let healer = r.healer.clone();

    // The dependents notice first; the database's own errors follow.
    for t in ["api", "worker", "web", "db"] {
        storm(&healer, t, 3);
    }
    let phases = phases_until(&mut r.rx, &[Phase::Resolved, Phase::Escalated]).await;
    assert_eq!(phases.last(), Some(&Phase::Resolved));
    assert_eq!(
        phases.iter().filter(|p| **p == Phase::Attributed).count(),
        3
    );
    assert_eq!(fix.runs(), 1, "one remediation");
    let actions = healer.admin().actions(None).await.unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].target, "db");
    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1, "one incident");
    assert_eq!(
        (incidents[0].target.as_str(), incidents[0].occurrences),
        ("db", 12)
    );
    assert!(
        !healer.admin().storm_active(),
        "four failing targets, one root cause"
    );
    let types = audit_types(&healer).await;
    assert_eq!(count(&types, "self_heal.attributed"), 3);
    assert_eq!(count(&types, "self_heal.storm_tripped"), 0);
    r.running.shutdown().await;
}

/// Runs one incident through a healer and returns its audit trail and executor.
async fn one_incident(dry_run: bool) -> (Healer, Vec<String>, CountingExecutor) {
    let executor = CountingExecutor::default();
    let mut config = HealerConfig::default();
    config.safety.dry_run = dry_run;
    let mut r = rig(
        Healer::builder()
            .config(config)
            .store(MemoryStore::new())
            .strategy(CommandFix::new("restart"))
            .executor(executor.clone()),
        pool_pattern(0.9, "restart"),
    )
    .await;
    let healer = r.healer.clone();
    storm(&healer, "db", 3);
    let phases = phases_until(&mut r.rx, &[Phase::Resolved, Phase::Escalated]).await;
    assert_eq!(phases.last(), Some(&Phase::Resolved), "{phases:?}");
    assert_eq!(phases.contains(&Phase::DryRun), dry_run, "{phases:?}");
    r.running.shutdown().await;
    let types = audit_types(&healer).await;
    (healer, types, executor)
}

#[tokio::test(start_paused = true)]
async fn dry_run_gives_the_live_audit_trail_minus_the_execution() {
    let (_, live, live_exec) = one_incident(false).await;
    let (dry_healer, dry, dry_exec) = one_incident(true).await;
    assert_eq!(live_exec.ran(), ["systemctl restart db"]);
    assert!(
        dry_exec.ran().is_empty(),
        "the executor never ran in dry run"
    );

    let without = |types: &[String], t: &str| -> Vec<String> {
        types.iter().filter(|x| *x != t).cloned().collect()
    };
    assert_eq!(count(&live, "self_heal.executed"), 1);
    assert_eq!(count(&dry, "self_heal.dry_run"), 1);
    assert_eq!(
        without(&live, "self_heal.executed"),
        without(&dry, "self_heal.dry_run")
    );
    let record = dry_healer
        .admin()
        .audit_log(100)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.event_type == "self_heal.dry_run")
        .unwrap();
    assert_eq!(record.detail["would_have_run"][0], "systemctl restart db");
    let action = &dry_healer.admin().actions(None).await.unwrap()[0];
    let stdout = &action.outcome.as_ref().unwrap().stdout;
    assert!(
        stdout.contains("would run systemctl restart db"),
        "{stdout}"
    );
    assert_eq!(
        dry_healer.admin().patterns().await.unwrap()[0].confidence,
        0.9,
        "a dry run learns nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn operators_switch_a_pattern_or_the_healer_to_dry_run_at_runtime() {
    let executor = CountingExecutor::default();
    let mut r = rig(
        Healer::builder()
            .strategy(CommandFix::new("restart"))
            .executor(executor.clone()),
        pool_pattern(0.9, "restart"),
    )
    .await;
    let healer = r.healer.clone();
    assert!(!healer.admin().is_dry_run(Some(PATTERN)));

    healer
        .admin()
        .set_pattern_dry_run(PATTERN, true, "alice")
        .await;
    assert!(healer.admin().is_dry_run(Some(PATTERN)) && !healer.admin().is_dry_run(Some("other")));
    next(&mut r.rx, Phase::ModeChanged).await;
    storm(&healer, "db", 3);
    next(&mut r.rx, Phase::DryRun).await;
    next(&mut r.rx, Phase::Resolved).await;
    assert!(executor.ran().is_empty());

    healer
        .admin()
        .set_pattern_dry_run(PATTERN, false, "alice")
        .await;
    storm(&healer, "cache", 3);
    next(&mut r.rx, Phase::Resolved).await;
    assert_eq!(executor.ran(), ["systemctl restart cache"]);

    healer.admin().set_dry_run(true, "bob").await;
    assert!(healer.admin().is_dry_run(None));
    storm(&healer, "queue", 3);
    next(&mut r.rx, Phase::DryRun).await;
    next(&mut r.rx, Phase::Resolved).await;
    assert_eq!(executor.ran().len(), 1);
    let changes: Vec<(String, String)> = healer
        .admin()
        .audit_log(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event_type == "self_heal.mode_changed")
        .map(|r| (r.actor, r.result))
        .collect();
    assert_eq!(
        changes,
        [
            ("alice".to_owned(), "dry_run".to_owned()),
            ("alice".to_owned(), "live".to_owned()),
            ("bob".to_owned(), "dry_run".to_owned()),
        ]
    );
    r.running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_dependency_whose_probe_fails_keeps_its_dependent_from_being_remediated() {
    let db = Gauge::new(10);
    let api = Gauge::new(100);
    let (mut r, fix) = restart_rig(&api, Some(100), 0.9, |b| {
        b.verifier("db", db.clone()).depends_on("api", ["db"])
    })
    .await;
    let healer = r.healer.clone();

    storm(&healer, "api", 3);
    let e = next(&mut r.rx, Phase::Escalated).await;
    assert_eq!(e.target, "api");
    assert!(
        e.detail.contains("`db`, whose probe says health 10"),
        "{}",
        e.detail
    );
    assert_eq!(fix.runs(), 0);

    // Once the dependency is healthy, the dependent's own failure is its own: the
    // escalated incident lets go, and the next occurrences open one that is fixed.
    db.set(100);
    next(&mut r.rx, Phase::Released).await;
    storm(&healer, "api", 3);
    next(&mut r.rx, Phase::Resolved).await;
    assert_eq!(fix.runs(), 1);
    r.running.shutdown().await;
}
