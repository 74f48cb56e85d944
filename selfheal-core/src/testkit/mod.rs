//! The [`Store`] conformance suite: every store runs all of it (the fleet checks when
//! the store has [`Store::fleet`]).
//!
//! Each check is a plain `async fn` taking `&dyn Store`. It panics, naming the
//! store, when the store does not behave like [`MemoryStore`](crate::MemoryStore), the
//! reference. Checks use their own unique pattern names, targets and ids, so they can
//! all run against one store, in any order and more than once. The one shared thing
//! is the audit log: [`audit_is_append_only_and_chained`] chains its records after
//! whatever the store holds, so run it only where no one else appends at the same time.
//!
//! Timestamps are truncated to microseconds, the precision every store keeps.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = selfheal_core::MemoryStore::new();
//! selfheal_core::testkit::run_all(&store).await;
//! # }
//! ```

mod control;
mod diagnosis;
mod fleet;
mod report;

pub use control::control_documents_round_trip_by_key;
pub use diagnosis::diagnosis_cache_keeps_one_per_fingerprint;
pub use fleet::{
    attempts_are_counted_per_episode, cooldowns_are_shared, leases_are_exclusive_and_expire,
    rate_permits_are_counted_fleet_wide,
};
pub use report::{
    reports_answer_the_operators_questions, retention_deletes_only_old_terminal_incidents,
};

use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::{
    ActionOutcome, ActionRecord, ActionStatus, Approval, ApprovalState, AuditEntry, AuditRecord,
    Command, Decided, ErrorKind, FixBinding, Incident, IncidentFilter, IncidentStatus, Pattern,
    PatternMode, RemediationPlan, Result, Risk, Severity, Store, verify_chain,
};

/// Runs every check of the suite against `store`, one after the other; the fleet
/// checks only when the store coordinates a fleet.
pub async fn run_all(store: &dyn Store) {
    patterns_round_trip(store).await;
    add_refuses_duplicates_and_invalid_regex(store).await;
    update_missing_is_not_found(store).await;
    record_outcome_moves_confidence_and_counts(store).await;
    incidents_upsert_filter_and_order(store).await;
    actions_by_incident(store).await;
    approvals_pending_only(store).await;
    audit_is_append_only_and_chained(store).await;
    reports_answer_the_operators_questions(store).await;
    retention_deletes_only_old_terminal_incidents(store).await;
    control_documents_round_trip_by_key(store).await;
    approvals_are_decided_once(store).await;
    if store.fleet().is_some() {
        leases_are_exclusive_and_expire(store).await;
        cooldowns_are_shared(store).await;
        rate_permits_are_counted_fleet_wide(store).await;
        attempts_are_counted_per_episode(store).await;
    }
}

/// The number of checks [`run_all`] runs.
pub const CHECKS: usize = 16;

/// An approval is decided once, whoever comes first: the decision (state, who, when,
/// note) is stored, a second decision leaves it unchanged and says so, saving the
/// approval again does not undo it, and an unknown id is `NotFound`.
pub async fn approvals_are_decided_once(store: &dyn Store) {
    let s = store.name();
    let inc = incident(
        &unique("target"),
        now() - TimeDelta::minutes(5),
        IncidentStatus::AwaitingApproval,
    );
    ok(s, "save_incident", store.save_incident(&inc).await);
    let pending = approval(&inc, now() - TimeDelta::minutes(1), ApprovalState::Pending);
    ok(s, "save_approval", store.save_approval(&pending).await);
    assert_eq!(
        ok(s, "approval", store.approval(pending.id).await).as_ref(),
        Some(&pending),
        "[{s}] an approval comes back by id unchanged"
    );
    let before = Utc::now() - TimeDelta::seconds(5);
    let first = ok(
        s,
        "decide_approval",
        store
            .decide_approval(
                pending.id,
                ApprovalState::Rejected,
                "alice",
                Some("not now"),
            )
            .await,
    );
    let Decided::Now(decided) = first else {
        panic!("[{s}] deciding a pending approval must decide it, got {first:?}");
    };
    assert_eq!(
        decided.state,
        ApprovalState::Rejected,
        "[{s}] the state decided"
    );
    assert_eq!(
        decided.decided_by.as_deref(),
        Some("alice"),
        "[{s}] who decided"
    );
    assert_eq!(decided.note.as_deref(), Some("not now"), "[{s}] the note");
    assert!(
        decided.decided_at.is_some_and(|t| t >= before),
        "[{s}] when it was decided: {:?}",
        decided.decided_at
    );
    let second = ok(
        s,
        "decide_approval",
        store
            .decide_approval(pending.id, ApprovalState::Approved, "bob", None)
            .await,
    );
    assert_eq!(
        second,
        Decided::Already(decided.clone()),
        "[{s}] a second decision changes nothing and returns the first"
    );
    ok(s, "save_approval", store.save_approval(&pending).await);
    assert_eq!(
        ok(s, "approval", store.approval(pending.id).await),
        Some(decided),
        "[{s}] saving a decided approval as pending again must not undo the decision"
    );
    assert_eq!(
        ok(
            s,
            "decide_approval",
            store
                .decide_approval(Uuid::new_v4(), ApprovalState::Approved, "bob", None)
                .await
        ),
        Decided::NotFound,
        "[{s}] an unknown approval"
    );
    assert_eq!(
        ok(s, "approval", store.approval(Uuid::new_v4()).await),
        None,
        "[{s}] an unknown approval"
    );
}

/// Patterns come back exactly as they were added and updated (every field, fixes in
/// order), `list_patterns` is sorted by name, and a missing pattern is `None`.
pub async fn patterns_round_trip(store: &dyn Store) {
    let s = store.name();
    let full = full_pattern(&unique("full"));
    let minimal = Pattern::new(unique("minimal")).keywords(["pool"]);

    ok(s, "add_pattern", store.add_pattern(&full).await);
    ok(s, "add_pattern", store.add_pattern(&minimal).await);
    assert_eq!(
        ok(s, "get_pattern", store.get_pattern(&full.name).await).as_ref(),
        Some(&full),
        "[{s}] a pattern with every field set must come back unchanged"
    );
    assert_eq!(
        ok(s, "get_pattern", store.get_pattern(&minimal.name).await).as_ref(),
        Some(&minimal),
        "[{s}] a pattern with default fields must come back unchanged"
    );

    let listed = ok(s, "list_patterns", store.list_patterns().await);
    assert!(
        listed.windows(2).all(|w| w[0].name < w[1].name),
        "[{s}] list_patterns must be sorted by name, without duplicates"
    );
    for p in [&full, &minimal] {
        assert_eq!(
            listed.iter().find(|x| x.name == p.name),
            Some(p),
            "[{s}] list_patterns must return `{}` unchanged",
            p.name
        );
    }

    // Replace: other fields, fewer fixes, another order.
    let mut updated = full.clone();
    updated.description = "updated description".into();
    updated.regex = Some(r"(?i)connection (refused|reset) by \S+".into());
    updated.keywords = vec!["refused".into()];
    updated.error_type = None;
    updated.target = None;
    updated.severity = Severity::Critical;
    updated.mode = PatternMode::AlertOnly;
    updated.enabled = true;
    updated.confidence = 0.25;
    updated.fixes = vec![
        updated.fixes[1].clone(),
        FixBinding::new("testkit_alert").priority(-3),
        updated.fixes[0].clone(),
    ];
    ok(s, "update_pattern", store.update_pattern(&updated).await);
    assert_eq!(
        ok(s, "get_pattern", store.get_pattern(&updated.name).await).as_ref(),
        Some(&updated),
        "[{s}] update_pattern must replace every field, fixes included, in order"
    );

    updated.fixes.clear();
    ok(s, "update_pattern", store.update_pattern(&updated).await);
    assert_eq!(
        ok(s, "get_pattern", store.get_pattern(&updated.name).await).as_ref(),
        Some(&updated),
        "[{s}] update_pattern must be able to remove every fix"
    );

    assert_eq!(
        ok(
            s,
            "get_pattern",
            store.get_pattern(&unique("missing")).await
        ),
        None,
        "[{s}] get_pattern of an unknown name must be None"
    );
}

/// Adding a name that exists is `Conflict` and changes nothing; a pattern that does not
/// validate (invalid regex, nothing to match on) is `InvalidInput`, on add and on update,
/// and is not stored.
pub async fn add_refuses_duplicates_and_invalid_regex(store: &dyn Store) {
    let s = store.name();
    let original = Pattern::new(unique("dup"))
        .regex("too many clients")
        .description("original");
    ok(s, "add_pattern", store.add_pattern(&original).await);

    let again = original.clone().description("second copy");
    let err = expect_err(
        s,
        "add_pattern of an existing name",
        store.add_pattern(&again).await,
    );
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "[{s}] duplicate add: {err}"
    );
    assert!(
        err.message().contains(&original.name),
        "[{s}] the conflict must name the pattern: {err}"
    );
    assert_eq!(
        ok(s, "get_pattern", store.get_pattern(&original.name).await).as_ref(),
        Some(&original),
        "[{s}] a refused duplicate must not replace the stored pattern"
    );

    let bad = Pattern::new(unique("bad_regex")).regex("OOM (command");
    let err = expect_err(
        s,
        "add_pattern with an invalid regex",
        store.add_pattern(&bad).await,
    );
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidInput,
        "[{s}] invalid regex: {err}"
    );
    assert!(
        err.message()
            .contains(&format!("invalid regex in pattern `{}`", bad.name)),
        "[{s}] the error must name the pattern and the problem: {err}"
    );
    assert_eq!(
        ok(s, "get_pattern", store.get_pattern(&bad.name).await),
        None,
        "[{s}] a pattern with an invalid regex must not be stored"
    );

    let nothing = Pattern::new(unique("nothing_to_match"));
    let err = expect_err(
        s,
        "add_pattern without regex or keywords",
        store.add_pattern(&nothing).await,
    );
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidInput,
        "[{s}] no regex, no keywords: {err}"
    );
    assert_eq!(
        ok(s, "get_pattern", store.get_pattern(&nothing.name).await),
        None
    );

    let broken_update = original.clone().regex("([unclosed");
    let err = expect_err(
        s,
        "update_pattern with an invalid regex",
        store.update_pattern(&broken_update).await,
    );
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidInput,
        "[{s}] invalid regex on update: {err}"
    );
    assert_eq!(
        ok(s, "get_pattern", store.get_pattern(&original.name).await).as_ref(),
        Some(&original),
        "[{s}] a refused update must leave the stored pattern unchanged"
    );
}

/// Updating or recording an outcome for a pattern that does not exist is `NotFound`
/// and creates nothing.
pub async fn update_missing_is_not_found(store: &dyn Store) {
    let s = store.name();
    let ghost = Pattern::new(unique("ghost")).keywords(["ghost"]);
    let err = expect_err(
        s,
        "update_pattern of a missing pattern",
        store.update_pattern(&ghost).await,
    );
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "[{s}] update of a missing pattern: {err}"
    );
    assert!(
        err.message().contains(&ghost.name),
        "[{s}] the error must name the pattern: {err}"
    );
    assert_eq!(
        ok(s, "get_pattern", store.get_pattern(&ghost.name).await),
        None,
        "[{s}] update_pattern must not create a missing pattern"
    );

    let err = expect_err(
        s,
        "record_outcome of a missing pattern",
        store
            .record_outcome(&ghost.name, "restart", true, 0.05)
            .await,
    );
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "[{s}] outcome of a missing pattern: {err}"
    );
    assert_eq!(
        ok(s, "get_pattern", store.get_pattern(&ghost.name).await),
        None
    );
}

/// `record_outcome` moves confidence by the delta clamped to [0, 1], counts successes
/// and failures per fix strategy, raises `use_count` on success only, and returns the
/// pattern as stored.
pub async fn record_outcome_moves_confidence_and_counts(store: &dyn Store) {
    let s = store.name();
    let name = unique("outcome");
    let pattern = Pattern::new(&name)
        .regex("pool timed out")
        .confidence(0.5)
        .fix(FixBinding::new("reset_pool").priority(0))
        .fix(FixBinding::new("restart").priority(1));
    ok(s, "add_pattern", store.add_pattern(&pattern).await);

    let record = |strategy: &'static str, success: bool, delta: f64| {
        let name = name.clone();
        async move {
            let p = ok(
                s,
                "record_outcome",
                store.record_outcome(&name, strategy, success, delta).await,
            );
            let stored = ok(s, "get_pattern", store.get_pattern(&name).await);
            assert_eq!(
                stored.as_ref(),
                Some(&p),
                "[{s}] record_outcome must return the pattern as stored"
            );
            p
        }
    };
    let counts = |p: &Pattern, strategy: &str| {
        let fix = p
            .fixes
            .iter()
            .find(|f| f.strategy == strategy)
            .unwrap_or_else(|| panic!("[{s}] fix `{strategy}` disappeared"));
        (fix.successes, fix.failures)
    };

    let p = record("reset_pool", true, 0.05).await;
    assert_close(s, p.confidence, 0.55, "confidence after a success");
    assert_eq!(p.use_count, 1, "[{s}] a success raises use_count");
    assert_eq!(
        counts(&p, "reset_pool"),
        (1, 0),
        "[{s}] success counted on its fix"
    );
    assert_eq!(counts(&p, "restart"), (0, 0), "[{s}] other fixes untouched");

    let p = record("reset_pool", false, -0.1).await;
    assert_close(s, p.confidence, 0.45, "confidence after a failure");
    assert_eq!(p.use_count, 1, "[{s}] a failure leaves use_count alone");
    assert_eq!(
        counts(&p, "reset_pool"),
        (1, 1),
        "[{s}] failure counted on its fix"
    );

    let p = record("restart", true, 0.05).await;
    assert_eq!(p.use_count, 2);
    assert_eq!(
        counts(&p, "restart"),
        (1, 0),
        "[{s}] counts are per strategy"
    );
    assert_eq!(counts(&p, "reset_pool"), (1, 1));

    let p = record("restart", true, 5.0).await;
    assert_close(s, p.confidence, 1.0, "confidence is clamped at 1");
    let p = record("restart", false, -5.0).await;
    assert_close(s, p.confidence, 0.0, "confidence is clamped at 0");
    assert_eq!(counts(&p, "restart"), (2, 1));
    assert_eq!(p.use_count, 3);

    // A strategy the pattern has no fix for still moves confidence and use_count.
    let p = record("testkit_unbound", true, 0.05).await;
    assert_close(
        s,
        p.confidence,
        0.05,
        "confidence after an unbound strategy",
    );
    assert_eq!(p.use_count, 4);
    assert_eq!(counts(&p, "reset_pool"), (1, 1));
    assert_eq!(counts(&p, "restart"), (2, 1));
    assert_eq!(
        p.fixes.len(),
        2,
        "[{s}] an unbound strategy must not add a fix"
    );

    // Everything but the learned fields is as it was added.
    let mut expected = pattern.clone();
    expected.confidence = p.confidence;
    expected.use_count = 4;
    expected.fixes[0].successes = 1;
    expected.fixes[0].failures = 1;
    expected.fixes[1].successes = 2;
    expected.fixes[1].failures = 1;
    assert_eq!(
        p, expected,
        "[{s}] record_outcome must change only what it records"
    );
}

/// Incidents are upserted by id, filtered by status and target, limited, and listed
/// newest (`opened_at`) first.
pub async fn incidents_upsert_filter_and_order(store: &dyn Store) {
    let s = store.name();
    let target = unique("target");
    let base = now();
    let oldest = incident(&target, base - TimeDelta::minutes(3), IncidentStatus::Open);
    let mut middle = incident(
        &target,
        base - TimeDelta::minutes(2),
        IncidentStatus::Resolved,
    );
    middle.closed_at = Some(base - TimeDelta::seconds(90));
    middle.pattern = Some(unique("pattern"));
    middle.related = vec!["0123456789abcdef".into(), "fedcba9876543210".into()];
    middle.stack = Some("myapp::db::connect\nmyapp::api::checkout".into());
    let newest = incident(
        &target,
        base - TimeDelta::minutes(1),
        IncidentStatus::Escalated,
    );

    // Saved out of order, so insertion order cannot pass for time order.
    for i in [&middle, &newest, &oldest] {
        ok(s, "save_incident", store.save_incident(i).await);
    }
    for i in [&oldest, &middle, &newest] {
        assert_eq!(
            ok(s, "get_incident", store.get_incident(i.id).await).as_ref(),
            Some(i),
            "[{s}] an incident must come back unchanged"
        );
    }

    // Upsert: same id, new content.
    let mut oldest2 = oldest.clone();
    oldest2.status = IncidentStatus::Remediating;
    oldest2.occurrences = 42;
    oldest2
        .samples
        .push("connection refused (again) — ✓".into());
    oldest2.last_seen = base;
    oldest2.reason = "auto-remediating: confidence 0.82".into();
    ok(s, "save_incident", store.save_incident(&oldest2).await);
    assert_eq!(
        ok(s, "get_incident", store.get_incident(oldest.id).await).as_ref(),
        Some(&oldest2),
        "[{s}] save_incident of an existing id must replace it"
    );

    let ids = |v: &[Incident]| v.iter().map(|i| i.id).collect::<Vec<_>>();
    let by_target = |statuses: Vec<IncidentStatus>, limit: Option<usize>| IncidentFilter {
        statuses,
        target: Some(target.clone()),
        limit,
    };

    let all = ok(
        s,
        "list_incidents",
        store.list_incidents(&by_target(vec![], None)).await,
    );
    assert_eq!(
        ids(&all),
        [newest.id, middle.id, oldest.id],
        "[{s}] incidents of a target, newest first, each once"
    );
    assert_eq!(
        all[2], oldest2,
        "[{s}] the listed incident is the updated one"
    );

    let terminal = ok(
        s,
        "list_incidents",
        store
            .list_incidents(&by_target(
                vec![IncidentStatus::Resolved, IncidentStatus::Escalated],
                None,
            ))
            .await,
    );
    assert_eq!(
        ids(&terminal),
        [newest.id, middle.id],
        "[{s}] status filter"
    );

    let remediating = ok(
        s,
        "list_incidents",
        store
            .list_incidents(&by_target(vec![IncidentStatus::Remediating], None))
            .await,
    );
    assert_eq!(
        ids(&remediating),
        [oldest.id],
        "[{s}] the filter sees the updated status"
    );

    let open = ok(
        s,
        "list_incidents",
        store
            .list_incidents(&by_target(vec![IncidentStatus::Open], None))
            .await,
    );
    assert!(
        open.is_empty(),
        "[{s}] no incident of the target is open any more"
    );

    let limited = ok(
        s,
        "list_incidents",
        store.list_incidents(&by_target(vec![], Some(2))).await,
    );
    assert_eq!(
        ids(&limited),
        [newest.id, middle.id],
        "[{s}] limit keeps the newest"
    );
    let none = ok(
        s,
        "list_incidents",
        store.list_incidents(&by_target(vec![], Some(0))).await,
    );
    assert!(none.is_empty(), "[{s}] limit 0 lists nothing");

    let other = IncidentFilter {
        target: Some(unique("other_target")),
        ..IncidentFilter::default()
    };
    let others = ok(s, "list_incidents", store.list_incidents(&other).await);
    assert!(
        others.is_empty(),
        "[{s}] target filter must exclude other targets"
    );

    let everything = ok(
        s,
        "list_incidents",
        store.list_incidents(&IncidentFilter::default()).await,
    );
    assert!(
        everything
            .windows(2)
            .all(|w| w[0].opened_at >= w[1].opened_at),
        "[{s}] an unfiltered list must be newest first too"
    );
    let mine: Vec<Uuid> = everything
        .iter()
        .filter(|i| i.target == target)
        .map(|i| i.id)
        .collect();
    assert_eq!(
        mine,
        [newest.id, middle.id, oldest.id],
        "[{s}] unfiltered list"
    );

    assert_eq!(
        ok(s, "get_incident", store.get_incident(Uuid::new_v4()).await),
        None,
        "[{s}] get_incident of an unknown id must be None"
    );
}

/// Actions are upserted by id and listed newest (`started_at`) first, for one incident
/// or for all.
pub async fn actions_by_incident(store: &dyn Store) {
    let s = store.name();
    let target = unique("target");
    let base = now();
    let first = incident(
        &target,
        base - TimeDelta::minutes(10),
        IncidentStatus::Remediating,
    );
    let second = incident(
        &target,
        base - TimeDelta::minutes(9),
        IncidentStatus::Remediating,
    );
    ok(s, "save_incident", store.save_incident(&first).await);
    ok(s, "save_incident", store.save_incident(&second).await);

    let early = action(&first, base - TimeDelta::minutes(8));
    let mut late = action(&first, base - TimeDelta::minutes(7));
    late.status = ActionStatus::Failed;
    late.pattern = None;
    late.outcome = Some(ActionOutcome {
        exit_code: Some(3),
        stdout: "flushed 0 keys\n".into(),
        stderr: "ERR READONLY — replica\n".into(),
        duration: Duration::from_micros(1_234_567),
        success: false,
    });
    late.health_before = Some(12);
    late.health_after = Some(0);
    late.finished_at = Some(base - TimeDelta::minutes(6));
    late.error = Some("verification failed: health 0 < 80".into());
    let other = action(&second, base - TimeDelta::minutes(5));

    for a in [&late, &other, &early] {
        ok(s, "save_action", store.save_action(a).await);
    }

    let ids = |v: &[ActionRecord]| v.iter().map(|a| a.id).collect::<Vec<_>>();
    let of_first = ok(s, "list_actions", store.list_actions(Some(first.id)).await);
    assert_eq!(
        of_first,
        [late.clone(), early.clone()],
        "[{s}] actions of an incident, newest first, unchanged"
    );
    let of_second = ok(s, "list_actions", store.list_actions(Some(second.id)).await);
    assert_eq!(
        of_second,
        std::slice::from_ref(&other),
        "[{s}] actions of the other incident"
    );

    // Upsert: the running action finishes.
    let mut early2 = early.clone();
    early2.status = ActionStatus::Succeeded;
    early2.outcome = Some(ActionOutcome::ok(Duration::from_millis(250)));
    early2.health_after = Some(100);
    early2.finished_at = Some(base - TimeDelta::minutes(4));
    ok(s, "save_action", store.save_action(&early2).await);
    let of_first = ok(s, "list_actions", store.list_actions(Some(first.id)).await);
    assert_eq!(
        of_first,
        [late.clone(), early2.clone()],
        "[{s}] save_action of an existing id must replace it, not add one"
    );

    let all = ok(s, "list_actions", store.list_actions(None).await);
    assert!(
        all.windows(2).all(|w| w[0].started_at >= w[1].started_at),
        "[{s}] all actions, newest first"
    );
    let mine: Vec<Uuid> = ids(&all)
        .into_iter()
        .filter(|id| [early.id, late.id, other.id].contains(id))
        .collect();
    assert_eq!(
        mine,
        [other.id, late.id, early.id],
        "[{s}] all actions include these"
    );

    let unknown = ok(
        s,
        "list_actions",
        store.list_actions(Some(Uuid::new_v4())).await,
    );
    assert!(
        unknown.is_empty(),
        "[{s}] no actions for an unknown incident"
    );
}

/// Approvals are upserted by id and listed oldest (`requested_at`) first; with
/// `pending_only`, answered ones are left out.
pub async fn approvals_pending_only(store: &dyn Store) {
    let s = store.name();
    let target = unique("target");
    let base = now();
    let inc = incident(
        &target,
        base - TimeDelta::minutes(30),
        IncidentStatus::AwaitingApproval,
    );
    ok(s, "save_incident", store.save_incident(&inc).await);

    let first = approval(&inc, base - TimeDelta::minutes(20), ApprovalState::Pending);
    let second = approval(&inc, base - TimeDelta::minutes(10), ApprovalState::Pending);
    let mut answered = approval(&inc, base - TimeDelta::minutes(25), ApprovalState::Approved);
    answered.decided_by = Some("oncall@example.com".into());
    answered.pattern = None;

    for a in [&second, &answered, &first] {
        ok(s, "save_approval", store.save_approval(a).await);
    }
    let mine = |v: Vec<Approval>| -> Vec<Approval> {
        v.into_iter()
            .filter(|a| [first.id, second.id, answered.id].contains(&a.id))
            .collect()
    };

    let all = ok(s, "list_approvals", store.list_approvals(false).await);
    assert!(
        all.windows(2)
            .all(|w| w[0].requested_at <= w[1].requested_at),
        "[{s}] approvals, oldest first"
    );
    assert_eq!(
        mine(all),
        [answered.clone(), first.clone(), second.clone()],
        "[{s}] every approval, oldest first, unchanged"
    );

    let pending = ok(s, "list_approvals", store.list_approvals(true).await);
    assert!(
        pending.iter().all(|a| a.state == ApprovalState::Pending),
        "[{s}] pending_only must list only pending approvals"
    );
    assert_eq!(
        mine(pending),
        [first.clone(), second.clone()],
        "[{s}] pending approvals"
    );

    // Upsert: the first one is rejected.
    let mut rejected = first.clone();
    rejected.state = ApprovalState::Rejected;
    rejected.decided_by = Some("operator".into());
    ok(s, "save_approval", store.save_approval(&rejected).await);
    let pending = ok(s, "list_approvals", store.list_approvals(true).await);
    assert_eq!(
        mine(pending),
        std::slice::from_ref(&second),
        "[{s}] an answered approval is not pending"
    );
    let all = ok(s, "list_approvals", store.list_approvals(false).await);
    assert_eq!(
        mine(all),
        [answered, rejected, second],
        "[{s}] save_approval of an existing id must replace it, not add one"
    );
}

/// Audit records are appended after the store's last record and come back exactly,
/// oldest first, as a chain that verifies; `list_audit(n)` returns the last `n`; a
/// second record with the same `seq` is `Conflict` and replaces nothing.
pub async fn audit_is_append_only_and_chained(store: &dyn Store) {
    let s = store.name();
    let before = ok(s, "list_audit", store.list_audit(usize::MAX).await);
    if let Err(e) = verify_chain(&before) {
        panic!("[{s}] the stored audit chain does not verify before the check: {e}");
    }

    let incident_id = Uuid::new_v4();
    let pattern = unique("audited");
    let mut records: Vec<AuditRecord> = Vec::new();
    let entries = [
        AuditEntry::new("self_heal.detected", "incident opened"),
        AuditEntry {
            pattern: Some(pattern.clone()),
            confidence: Some(0.82),
            ..AuditEntry::new("self_heal.auto", "auto-remediate")
        },
        AuditEntry {
            pattern: Some(pattern.clone()),
            confidence: Some(0.82),
            action: Some("restart".into()),
            detail: json!({"command": ["systemctl", "restart", "redis"], "exit_code": 0, "nested": {"ok": true, "ratio": 0.25}}),
            ..AuditEntry::new("self_heal.executed", "succeeded")
        },
        AuditEntry {
            actor: "oncall@example.com".into(),
            detail: json!({"note": "approved — looks right ✓"}),
            ..AuditEntry::new("self_heal.approved", "approved")
        },
        AuditEntry {
            pattern: Some(pattern.clone()),
            confidence: Some(0.87),
            ..AuditEntry::new("self_heal.resolved", "verified: health 100")
        },
    ];
    let base = now();
    for (i, mut entry) in entries.into_iter().enumerate() {
        entry.incident = Some(incident_id);
        let prev = records.last().or(before.last());
        let at = base + TimeDelta::milliseconds(i as i64);
        let record = entry.chain(prev, at);
        ok(s, "append_audit", store.append_audit(&record).await);
        records.push(record);
    }

    let last5 = ok(s, "list_audit", store.list_audit(5).await);
    assert_eq!(
        last5, records,
        "[{s}] list_audit(5) must return the last 5, oldest first, unchanged"
    );
    if let Err(e) = verify_chain(&last5) {
        panic!("[{s}] the records read back must verify: {e}");
    }
    let last3 = ok(s, "list_audit", store.list_audit(3).await);
    assert_eq!(
        last3,
        records[2..],
        "[{s}] list_audit(3) must return the last 3"
    );
    let zero = ok(s, "list_audit", store.list_audit(0).await);
    assert!(zero.is_empty(), "[{s}] list_audit(0) returns nothing");

    let everything = ok(s, "list_audit", store.list_audit(usize::MAX).await);
    assert_eq!(
        everything.len(),
        before.len() + records.len(),
        "[{s}] list_audit(all)"
    );
    assert_eq!(everything[before.len()..], records[..]);
    if let Err(e) = verify_chain(&everything) {
        panic!("[{s}] the whole stored chain must verify: {e}");
    }

    // The same record twice, and a forged record with a taken seq: both refused.
    let again = records[4].clone();
    let err = expect_err(
        s,
        "append_audit of an existing seq",
        store.append_audit(&again).await,
    );
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "[{s}] duplicate seq: {err}"
    );
    let forged = AuditEntry::new("self_heal.resolved", "forged").chain(Some(&records[2]), now());
    assert_eq!(forged.seq, records[3].seq);
    let err = expect_err(
        s,
        "append_audit of a forged record",
        store.append_audit(&forged).await,
    );
    assert_eq!(
        err.kind(),
        ErrorKind::Conflict,
        "[{s}] forged record with a taken seq: {err}"
    );

    let after = ok(s, "list_audit", store.list_audit(5).await);
    assert_eq!(after, records, "[{s}] a refused append must change nothing");
}

// ---- helpers -------------------------------------------------------------------------

/// Now, truncated to the microsecond precision every store keeps.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A name nobody else uses.
fn unique(what: &str) -> String {
    let id = Uuid::new_v4().simple().to_string();
    format!("testkit_{what}_{}", &id[..12])
}

fn ok<T>(store: &str, what: &str, result: Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("[{store}] {what} failed: {e} ({e:?})"))
}

fn expect_none<T: std::fmt::Debug>(store: &str, what: &str, result: Result<Option<T>>) {
    if let Some(v) = ok(store, what, result) {
        panic!("[{store}] {what} must be gone, but is {v:?}");
    }
}

fn expect_err<T: std::fmt::Debug>(store: &str, what: &str, result: Result<T>) -> crate::Error {
    match result {
        Ok(v) => panic!("[{store}] {what} must fail, but returned {v:?}"),
        Err(e) => e,
    }
}

fn assert_close(store: &str, got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() < 1e-9,
        "[{store}] {what}: got {got}, want {want}"
    );
}

fn full_pattern(name: &str) -> Pattern {
    let mut fix = FixBinding::new("clear_cache")
        .params(json!({"pattern": "session:*", "db": 0, "ratio": 0.5, "tags": ["a", "ü"]}))
        .priority(2)
        .requires_approval(true);
    fix.successes = 7;
    fix.failures = 2;
    let mut pattern = Pattern::new(name)
        .ambiguous(true)
        .description("Redis refuses connections — the cache is down")
        .regex(r"(?i)connection refused.*:6379")
        .keywords(["redis", "refused", "6379"])
        .target("redis-cache")
        .severity(Severity::High)
        .root_cause("redis-server stopped or crashed")
        .auto_healable(true)
        .confidence(0.8)
        .mode(PatternMode::Active)
        .threshold(5, Duration::from_millis(90_250))
        .fix(FixBinding::new("restart_service").params(json!({"service": "redis"})))
        .fix(fix);
    pattern.error_type = Some("redis::RedisError".into());
    pattern.use_count = 11;
    pattern.enabled = false;
    pattern
}

fn incident(target: &str, opened_at: DateTime<Utc>, status: IncidentStatus) -> Incident {
    let closed_at = status
        .is_terminal()
        .then(|| opened_at + TimeDelta::seconds(30));
    Incident {
        id: Uuid::new_v4(),
        target: target.to_owned(),
        fingerprint: "a1b2c3d4e5f60718".into(),
        template: "connection refused to <*>:<*>".into(),
        stack: None,
        related: Vec::new(),
        pattern: None,
        status,
        severity: Severity::High,
        occurrences: 3,
        samples: vec![
            "connection refused to 10.0.0.7:6379".into(),
            "connection refused to 10.0.0.9:6379 \"quoted\" 'x'".into(),
        ],
        opened_at,
        last_seen: opened_at + TimeDelta::seconds(5),
        closed_at,
        reason: String::new(),
    }
}

fn action(incident: &Incident, started_at: DateTime<Utc>) -> ActionRecord {
    ActionRecord {
        id: Uuid::new_v4(),
        incident: incident.id,
        pattern: Some(unique("pattern")),
        strategy: "restart_service".into(),
        target: incident.target.clone(),
        preview: "systemctl restart 'redis server'".into(),
        status: ActionStatus::Running,
        outcome: None,
        health_before: Some(40),
        health_after: None,
        started_at,
        finished_at: None,
        error: None,
    }
}

fn approval(incident: &Incident, requested_at: DateTime<Utc>, state: ApprovalState) -> Approval {
    let plan = RemediationPlan::new("rollback_deployment", &incident.target)
        .command(
            Command::new("kubectl", ["rollout", "undo", "deployment/api"])
                .timeout(Duration::from_secs(90)),
        )
        .step("wait for the rollout to finish")
        .risk(Risk::High);
    let plan = RemediationPlan {
        params: json!({"deployment": "api", "revision": 41}),
        reversible: true,
        ..plan
    };
    Approval {
        id: Uuid::new_v4(),
        incident: incident.id,
        pattern: Some(unique("pattern")),
        plan,
        reason: "rollback always needs approval".into(),
        confidence: 0.74,
        requested_at,
        state,
        decided_by: None,
        decided_at: None,
        note: None,
    }
}
