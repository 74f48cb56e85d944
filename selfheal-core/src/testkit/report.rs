//! Conformance checks for what operators read from the store: the healing overview,
//! recent activity, per-pattern stats, and retention.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::TimeDelta;

use super::{action, expect_none, incident, now, ok, unique};
use crate::store::report::hour_of;
use crate::{
    ActionRecord, ActionStatus, AuditEntry, Incident, IncidentStatus, Store, StrategyRate,
};

fn with_pattern(mut i: Incident, pattern: &str, occurrences: u64) -> Incident {
    i.pattern = Some(pattern.to_owned());
    i.occurrences = occurrences;
    i
}

fn resolved_after(mut i: Incident, secs: i64) -> Incident {
    i.status = IncidentStatus::Resolved;
    i.closed_at = Some(i.opened_at + TimeDelta::seconds(secs));
    i
}

fn act(
    i: &Incident,
    strategy: &str,
    status: ActionStatus,
    started: chrono::DateTime<chrono::Utc>,
) -> ActionRecord {
    let mut a = action(i, started);
    a.pattern = i.pattern.clone();
    a.strategy = strategy.to_owned();
    a.status = status;
    a
}

/// The healing overview lists incidents newest first with their last action;
/// `pattern_report` counts incidents and occurrences per hour, results per strategy,
/// MTTR and actions by outcome over the period asked for, exactly as
/// [`compute_report`](crate::store::report::compute_report) defines them.
pub async fn reports_answer_the_operators_questions(store: &dyn Store) {
    let s = store.name();
    let pattern = unique("reported");
    let target = unique("target");
    let base = hour_of(now()) - TimeDelta::hours(2);
    let since = base - TimeDelta::hours(1);
    let m = TimeDelta::minutes;

    let i1 = resolved_after(
        with_pattern(
            incident(&target, base + m(10), IncidentStatus::Open),
            &pattern,
            5,
        ),
        30,
    );
    let i2 = resolved_after(
        with_pattern(
            incident(&target, base + m(20), IncidentStatus::Open),
            &pattern,
            7,
        ),
        90,
    );
    let i3 = with_pattern(
        incident(&target, base + m(65), IncidentStatus::Escalated),
        &pattern,
        2,
    );
    let old = resolved_after(
        with_pattern(
            incident(&target, base - m(120), IncidentStatus::Open),
            &pattern,
            100,
        ),
        10,
    );
    let unmatched = incident(&target, base + m(15), IncidentStatus::Open);
    for i in [&i3, &old, &i1, &unmatched, &i2] {
        ok(s, "save_incident", store.save_incident(i).await);
    }
    let actions = [
        act(&i1, "restart", ActionStatus::Failed, base + m(11)),
        act(&i1, "reset_pool", ActionStatus::Succeeded, base + m(12)),
        act(&i2, "restart", ActionStatus::Succeeded, base + m(21)),
        act(&i3, "restart", ActionStatus::RolledBack, base + m(66)),
        act(&i3, "reset_pool", ActionStatus::Running, base + m(67)),
        act(&old, "restart", ActionStatus::Succeeded, base - m(119)),
    ];
    for a in &actions {
        ok(s, "save_action", store.save_action(a).await);
    }

    // Overview: every incident once, its newest action.
    let overview = ok(s, "healing_overview", store.healing_overview(None).await);
    assert!(
        overview
            .windows(2)
            .all(|w| w[0].opened_at >= w[1].opened_at),
        "[{s}] the overview is newest first"
    );
    let row = |id| {
        overview
            .iter()
            .find(|r| r.incident == id)
            .unwrap_or_else(|| panic!("[{s}] incident {id} missing from the overview"))
    };
    let r1 = row(i1.id);
    assert_eq!(r1.pattern.as_deref(), Some(pattern.as_str()));
    assert_eq!(r1.fingerprint, i1.fingerprint);
    assert_eq!(r1.status, IncidentStatus::Resolved);
    assert_eq!(r1.closed_at, i1.closed_at);
    let last = r1.last_action.as_ref().expect("i1 has actions");
    assert_eq!(
        (
            last.id,
            last.strategy.as_str(),
            last.status,
            last.started_at
        ),
        (
            actions[1].id,
            "reset_pool",
            ActionStatus::Succeeded,
            base + m(12)
        ),
        "[{s}] the last action is the newest"
    );
    assert_eq!(
        row(i3.id).last_action.as_ref().map(|a| a.id),
        Some(actions[4].id)
    );
    assert_eq!(
        row(unmatched.id).last_action,
        None,
        "[{s}] no action, none shown"
    );
    assert_eq!(row(unmatched.id).pattern, None);
    let newest = ok(s, "healing_overview", store.healing_overview(Some(1)).await);
    assert_eq!(newest.len(), 1, "[{s}] limit");
    assert_eq!(newest[0], overview[0], "[{s}] limit keeps the newest");

    // Stats over the period.
    let reports = ok(s, "pattern_report", store.pattern_report(since).await);
    assert!(
        reports.windows(2).all(|w| w[0].pattern < w[1].pattern),
        "[{s}] sorted by pattern"
    );
    let report = reports
        .iter()
        .find(|r| r.pattern == pattern)
        .unwrap_or_else(|| panic!("[{s}] pattern `{pattern}` missing from the report"));
    let hourly: Vec<_> = report
        .hourly
        .iter()
        .map(|h| (h.hour, h.incidents, h.occurrences))
        .collect();
    assert_eq!(
        hourly,
        [(base, 2, 12), (base + m(60), 1, 2)],
        "[{s}] incidents and occurrences per hour, the old one left out"
    );
    let rate = |strategy: &str, successes, failures| StrategyRate {
        strategy: strategy.into(),
        successes,
        failures,
    };
    assert_eq!(
        report.strategies,
        [rate("reset_pool", 1, 0), rate("restart", 1, 2)],
        "[{s}] results per strategy (rolled back counts as failed)"
    );
    assert_eq!(report.strategies[1].success_rate(), Some(1.0 / 3.0));
    assert_eq!(report.resolved, 2, "[{s}] resolved in the period");
    assert_eq!(
        report.mttr,
        Some(Duration::from_secs(60)),
        "[{s}] MTTR is the mean of 30 s and 90 s"
    );
    let outcomes: BTreeMap<String, u64> = [
        ("failed", 1),
        ("rolled_back", 1),
        ("running", 1),
        ("succeeded", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(
        report.actions_by_outcome, outcomes,
        "[{s}] actions by outcome"
    );

    let all_time = ok(
        s,
        "pattern_report",
        store.pattern_report(base - m(180)).await,
    );
    let report = all_time.iter().find(|r| r.pattern == pattern).unwrap();
    assert_eq!(
        report.resolved, 3,
        "[{s}] a longer period includes the old one"
    );
    assert_eq!(
        report.mttr,
        Some(Duration::from_millis(43_333)),
        "[{s}] (10+30+90)/3 s"
    );

    // Recent activity: the audit records at or after a time, oldest first.
    let head = ok(s, "list_audit", store.list_audit(1).await);
    let record = AuditEntry::new("self_heal.detected", "reported").chain(head.last(), now());
    ok(s, "append_audit", store.append_audit(&record).await);
    let recent = ok(s, "recent_activity", store.recent_activity(record.at).await);
    assert_eq!(
        recent.last(),
        Some(&record),
        "[{s}] the newest record is recent"
    );
    assert!(
        recent.iter().all(|r| r.at >= record.at),
        "[{s}] nothing older than asked for"
    );
    let later = ok(
        s,
        "recent_activity",
        store
            .recent_activity(record.at + TimeDelta::seconds(1))
            .await,
    );
    assert!(
        later.iter().all(|r| r.seq != record.seq),
        "[{s}] nothing newer than the newest"
    );
}

/// Retention deletes terminal incidents that closed (or were last seen) before the
/// cut-off, with their actions and approvals, and keeps everything else.
pub async fn retention_deletes_only_old_terminal_incidents(store: &dyn Store) {
    let s = store.name();
    let target = unique("retained");
    let long_ago = now() - TimeDelta::days(10);
    let old_resolved = incident(&target, long_ago, IncidentStatus::Resolved);
    let mut old_escalated = incident(&target, long_ago, IncidentStatus::Escalated);
    old_escalated.closed_at = None;
    let old_open = incident(&target, long_ago, IncidentStatus::Open);
    let recent = incident(
        &target,
        now() - TimeDelta::hours(1),
        IncidentStatus::Resolved,
    );
    for i in [&old_resolved, &old_escalated, &old_open, &recent] {
        ok(s, "save_incident", store.save_incident(i).await);
    }
    let gone_action = action(&old_resolved, long_ago);
    let kept_action = action(&recent, now());
    for a in [&gone_action, &kept_action] {
        ok(s, "save_action", store.save_action(a).await);
    }
    let gone_approval = super::approval(&old_escalated, long_ago, crate::ApprovalState::Pending);
    ok(
        s,
        "save_approval",
        store.save_approval(&gone_approval).await,
    );

    let deleted = ok(
        s,
        "retention_cleanup",
        store.retention_cleanup(now() - TimeDelta::days(7)).await,
    );
    assert_eq!(deleted, 2, "[{s}] the two old terminal incidents");
    for i in [&old_resolved, &old_escalated] {
        expect_none(s, "a deleted incident", store.get_incident(i.id).await);
    }
    for i in [&old_open, &recent] {
        assert!(
            ok(s, "get_incident", store.get_incident(i.id).await).is_some(),
            "[{s}] open and recent incidents are kept"
        );
    }
    assert!(
        ok(
            s,
            "list_actions",
            store.list_actions(Some(old_resolved.id)).await
        )
        .is_empty(),
        "[{s}] a deleted incident's actions go with it"
    );
    assert_eq!(
        ok(s, "list_actions", store.list_actions(Some(recent.id)).await),
        [kept_action]
    );
    assert!(
        ok(s, "list_approvals", store.list_approvals(false).await)
            .iter()
            .all(|a| a.id != gone_approval.id),
        "[{s}] a deleted incident's approvals go with it"
    );
    assert_eq!(
        ok(
            s,
            "retention_cleanup",
            store.retention_cleanup(now() - TimeDelta::days(7)).await
        ),
        0,
        "[{s}] a second cleanup finds nothing"
    );
}
