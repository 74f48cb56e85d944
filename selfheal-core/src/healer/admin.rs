//! The operator handle, [`Admin`]: every verb an operator (or the admin router, or
//! the CLI) uses on a running healer: patterns, incidents, approvals, silences, dry
//! run, the breaker, backups, reports, audit, stats and health. [`Healer`] keeps the
//! runtime verbs (`observe`, `layer`, `subscribe`, `spawn`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use super::{Answer, Healer};
use crate::Decided;
use crate::{
    ActionRecord, Approval, ApprovalState, AuditEntry, AuditRecord, Error, ErrorKind, Health,
    Incident, IncidentFilter, Pattern, PatternMode, Result, catalog,
};

/// The actor of an operator's change, which must say who.
pub(super) fn who(actor: &str) -> Result<&str> {
    let actor = actor.trim();
    if actor.is_empty() {
        return Err(Error::invalid(
            "the actor is empty; say who makes the change (it goes to the audit trail)",
        ));
    }
    Ok(actor)
}

/// The operator handle of a [`Healer`] ([`Healer::admin`]): cheap to clone, and every
/// change it makes is audited with the actor it is given.
///
/// ```
/// # async fn run(healer: selfheal_core::Healer) -> selfheal_core::Result<()> {
/// let admin = healer.admin();
/// for approval in admin.pending_approvals().await? {
///     admin.approve(approval.id, "alice").await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Admin {
    pub(super) healer: Healer,
}

impl Healer {
    /// The operator handle: patterns, incidents, approvals, silences, dry run, the
    /// breaker, backups, reports, audit, stats and health.
    pub fn admin(&self) -> Admin {
        Admin {
            healer: self.clone(),
        }
    }
}

impl Admin {
    /// The healer this handle operates.
    pub fn healer(&self) -> &Healer {
        &self.healer
    }
}

/// Counters and per-pattern figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Signals handed to `observe`.
    pub observed: u64,
    /// Signals dropped because the queue was full.
    pub dropped: u64,
    /// Signals whose processing panicked (fingerprinter, matcher), skipped one by one.
    pub failed: u64,
    /// Store writes that failed.
    pub store_errors: u64,
    /// Audit records waiting for the store to take them.
    pub audit_waiting: usize,
    /// Audit records dropped because the backlog was full.
    pub audit_dropped: u64,
    /// Incidents open right now.
    pub open_incidents: usize,
    /// One entry per pattern.
    pub patterns: Vec<PatternStats>,
}

/// How one pattern is doing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatternStats {
    /// The pattern.
    pub pattern: String,
    /// Its current confidence.
    pub confidence: f64,
    /// Incidents it explained.
    pub incidents: usize,
    /// Occurrences counted into those incidents.
    pub occurrences: u64,
    /// Verified successes over attempts, all strategies, `None` before any attempt.
    pub success_rate: Option<f64>,
    /// Success rate per strategy.
    pub success_rate_by_strategy: BTreeMap<String, Option<f64>>,
    /// Mean time to recover over its resolved incidents.
    pub mttr: Option<Duration>,
}

impl Admin {
    /// All patterns.
    pub async fn patterns(&self) -> Result<Vec<Pattern>> {
        self.healer.inner.store.list_patterns().await
    }

    /// Adds a pattern after validating it (an invalid regex is refused with a clear
    /// error); `actor` (who adds it) and the whole definition go to the audit trail.
    pub async fn add_pattern(&self, pattern: Pattern, actor: &str) -> Result<()> {
        let actor = who(actor)?;
        pattern.validate()?;
        self.healer.inner.store.add_pattern(&pattern).await?;
        let detail = serde_json::json!({
            "definition": catalog::definition_hash(&pattern),
            "pattern": pattern,
        });
        self.pattern_changed(&pattern, actor, "self_heal.pattern_added", detail)
            .await
    }

    /// Replaces a pattern after validating it; `actor` and the fields that changed
    /// (`{"field": {"from": …, "to": …}}`) go to the audit trail. `NotFound` when there
    /// is no pattern by that name.
    pub async fn update_pattern(&self, pattern: Pattern, actor: &str) -> Result<()> {
        let actor = who(actor)?;
        pattern.validate()?;
        let before = self.stored_pattern(&pattern.name).await?;
        self.healer.inner.store.update_pattern(&pattern).await?;
        let detail = serde_json::json!({
            "definition": catalog::definition_hash(&pattern),
            "changes": catalog::changed_fields(&before, &pattern),
        });
        self.pattern_changed(&pattern, actor, "self_heal.pattern_updated", detail)
            .await
    }

    /// Enables or disables a pattern (a disabled pattern never matches); audited with
    /// `actor`. Returns the pattern as stored.
    pub async fn set_pattern_enabled(
        &self,
        name: &str,
        enabled: bool,
        actor: &str,
    ) -> Result<Pattern> {
        let event = if enabled {
            "self_heal.pattern_enabled"
        } else {
            "self_heal.pattern_disabled"
        };
        self.modify_pattern(name, actor, event, |p| p.enabled = enabled)
            .await
    }

    /// Promotes a pattern from alert-only to active, and marks it auto-healable when
    /// `auto_healable` (fixes may then run without approval at high confidence, except
    /// fixes and strategies that always require approval). Only an operator does this:
    /// neither the catalog, nor learning, nor an untrusted import ever marks a pattern
    /// auto-healable. Audited with `actor` and what changed.
    pub async fn promote_pattern(
        &self,
        name: &str,
        auto_healable: bool,
        actor: &str,
    ) -> Result<Pattern> {
        self.modify_pattern(name, actor, "self_heal.pattern_promoted", |p| {
            p.mode = PatternMode::Active;
            p.auto_healable = auto_healable;
        })
        .await
    }

    /// Puts a pattern back to alert-only and not auto-healable; audited with `actor`.
    pub async fn demote_pattern(&self, name: &str, actor: &str) -> Result<Pattern> {
        self.modify_pattern(name, actor, "self_heal.pattern_demoted", |p| {
            p.mode = PatternMode::AlertOnly;
            p.auto_healable = false;
        })
        .await
    }

    /// Adds each pattern that does not exist yet; returns how many were added.
    pub async fn seed_patterns(
        &self,
        patterns: impl IntoIterator<Item = Pattern>,
    ) -> Result<usize> {
        let mut added = 0;
        for p in patterns {
            if self
                .healer
                .inner
                .store
                .get_pattern(&p.name)
                .await?
                .is_none()
            {
                self.add_pattern(p, "seed").await?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// Seeds the stock catalog into the healer's store ([`catalog::seed`]: adds what is
    /// missing, upgrades what no operator changed) and reloads the patterns. Stores
    /// that seed on open (`SqliteStore::open`) have done this already.
    pub async fn seed_catalog(&self) -> Result<catalog::SeedReport> {
        // The catalog chains its audit records after the store's last one: keep the
        // healer's head in step by holding it meanwhile and reloading it after.
        let mut trail = self.healer.inner.trail.lock().await;
        let report = catalog::seed(self.healer.inner.store.as_ref()).await;
        if let Ok(mut last) = self.healer.inner.store.list_audit(1).await
            && let Some(record) = last.pop()
        {
            trail.head = Some(record);
        }
        drop(trail);
        let report = report?;
        self.healer.reload_patterns().await?;
        Ok(report)
    }

    /// Every pattern as a versioned JSON document ([`catalog::export`]) from `source`
    /// (your service's name), for [`Admin::import_patterns`] elsewhere.
    pub async fn export_patterns(&self, source: &str) -> Result<String> {
        catalog::export(&self.healer.inner.store.list_patterns().await?, source)
    }

    /// Imports an export document ([`catalog::import`]): every regex is validated and
    /// each refused pattern reported on its own; unless `options.trust_modes`, imported
    /// patterns arrive alert-only and not auto-healable. Audited with `actor` and the
    /// report.
    pub async fn import_patterns(
        &self,
        json: &str,
        options: &catalog::ImportOptions,
        actor: &str,
    ) -> Result<catalog::ImportReport> {
        let actor = who(actor)?;
        let report = catalog::import(self.healer.inner.store.as_ref(), json, options).await?;
        self.healer.reload_patterns().await?;
        self.healer
            .audit(AuditEntry {
                actor: actor.to_owned(),
                detail: serde_json::to_value(&report).unwrap_or_default(),
                ..AuditEntry::new(
                    "self_heal.patterns_imported",
                    format!(
                        "{} added, {} replaced, {} skipped, {} refused",
                        report.added.len(),
                        report.replaced.len(),
                        report.skipped.len(),
                        report.errors.len()
                    ),
                )
            })
            .await;
        Ok(report)
    }

    async fn stored_pattern(&self, name: &str) -> Result<Pattern> {
        self.healer
            .inner
            .store
            .get_pattern(name)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "no pattern named `{name}`; list them with Admin::patterns"
                ))
            })
    }

    /// Loads `name`, applies `change`, stores it and audits what changed.
    async fn modify_pattern(
        &self,
        name: &str,
        actor: &str,
        event: &str,
        change: impl FnOnce(&mut Pattern),
    ) -> Result<Pattern> {
        let actor = who(actor)?;
        let before = self.stored_pattern(name).await?;
        let mut after = before.clone();
        change(&mut after);
        after.validate()?;
        self.healer.inner.store.update_pattern(&after).await?;
        let detail = serde_json::json!({
            "definition": catalog::definition_hash(&after),
            "changes": catalog::changed_fields(&before, &after),
        });
        self.pattern_changed(&after, actor, event, detail).await?;
        Ok(after)
    }

    async fn pattern_changed(
        &self,
        pattern: &Pattern,
        actor: &str,
        event: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.healer.reload_patterns().await?;
        self.healer.release_counting(&pattern.name);
        self.healer
            .audit(AuditEntry {
                actor: actor.to_owned(),
                pattern: Some(pattern.name.clone()),
                confidence: Some(pattern.confidence),
                detail,
                ..AuditEntry::new(event, "ok")
            })
            .await;
        Ok(())
    }

    /// Incidents matching `filter`, newest first; open ones with their live counts.
    pub async fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>> {
        let mut list = self.healer.inner.store.list_incidents(filter).await?;
        for i in &mut list {
            if let Some(live) = self.healer.inner.open.get(&i.id) {
                *i = live.clone();
            }
        }
        Ok(list)
    }

    /// One incident.
    pub async fn incident(&self, id: Uuid) -> Result<Option<Incident>> {
        if let Some(live) = self.healer.inner.open.get(&id) {
            return Ok(Some(live.clone()));
        }
        self.healer.inner.store.get_incident(id).await
    }

    /// Actions, newest first, of one incident or all.
    pub async fn actions(&self, incident: Option<Uuid>) -> Result<Vec<ActionRecord>> {
        self.healer.inner.store.list_actions(incident).await
    }

    /// Approvals waiting for an answer, oldest first.
    pub async fn pending_approvals(&self) -> Result<Vec<Approval>> {
        self.healer.inner.store.list_approvals(true).await
    }

    /// Approves a pending fix; it runs (subject to the guards) on the replica that
    /// waits on it, which may be another process sharing the store. Decided once in
    /// the store: a second answer, on any replica, is a `Conflict` that names the first.
    /// Returns the approval as decided.
    pub async fn approve(&self, approval: Uuid, by: &str) -> Result<Approval> {
        self.answer(approval, ApprovalState::Approved, by, None)
            .await
    }

    /// Rejects a pending fix with `reason`; nothing runs and the incident closes.
    pub async fn reject(&self, approval: Uuid, by: &str, reason: &str) -> Result<Approval> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Error::invalid(
                "the reason is empty; say why the fix is rejected (it goes to the audit trail)",
            ));
        }
        self.answer(approval, ApprovalState::Rejected, by, Some(reason))
            .await
    }

    /// Checks an approval link's token (its signature and expiry), for the admin
    /// router's confirmation page. `Invalid` when no links are configured or the token
    /// is not one of ours, `Conflict` when it expired.
    pub fn check_link(&self, token: &str) -> Result<crate::LinkClaim> {
        let Some(links) = &self.healer.inner.approval_links else {
            return Err(Error::invalid(
                "approval links are not configured on this healer (HealerBuilder::approval_links)",
            ));
        };
        links.verify(token, chrono::Utc::now())
    }

    /// Follows a confirmed approval link: approves or rejects (with `reason`, or a
    /// default) the approval it names, as `actor` (the link's holder is not otherwise
    /// known: `approval link` unless the router knows better). Single-use: the
    /// approval is decided once.
    pub async fn follow_link(
        &self,
        token: &str,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Approval> {
        let claim = self.check_link(token)?;
        match claim.action {
            crate::LinkAction::Approve => self.approve(claim.approval, actor).await,
            crate::LinkAction::Reject => {
                let reason = reason
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .unwrap_or("rejected from a notification link");
                self.reject(claim.approval, actor, reason).await
            }
        }
    }

    /// One approval, pending or decided.
    pub async fn approval(&self, id: Uuid) -> Result<Option<Approval>> {
        self.healer.inner.store.approval(id).await
    }

    async fn answer(
        &self,
        id: Uuid,
        state: ApprovalState,
        by: &str,
        note: Option<&str>,
    ) -> Result<Approval> {
        let by = who(by)?;
        let inner = &self.healer.inner;
        let stored = match inner.store.approval(id).await {
            Ok(stored) => stored,
            Err(e) => return self.answer_locally(id, state, by, note, e),
        };
        let Some(stored) = stored else {
            return self.answer_locally(
                id,
                state,
                by,
                note,
                Error::not_found(format!(
                    "no approval {id}; list the pending ones with Admin::pending_approvals \
                     (GET /api/approvals)"
                )),
            );
        };
        if stored.state == ApprovalState::Pending {
            // A pending approval nobody can still act on: the incident that asked it
            // was closed (a restart reconciles its incidents as interrupted) or it is
            // older than its time to live.
            if let Some(why) = self.no_longer_answerable(&stored).await {
                let _ = inner
                    .store
                    .decide_approval(id, ApprovalState::Expired, "selfheal", Some(&why))
                    .await;
                return Err(Error::new(ErrorKind::Conflict, why));
            }
        }
        match inner.store.decide_approval(id, state, by, note).await {
            Ok(Decided::Now(decided)) => {
                if let Some((_, (_, tx))) = inner.pending.remove(&id) {
                    let _ = tx.send(Answer::Decided(Box::new(decided.clone())));
                }
                Ok(decided)
            }
            Ok(Decided::Already(decided)) => Err(already_decided(&decided)),
            Ok(Decided::NotFound) => Err(Error::not_found(format!("no approval {id}"))),
            Err(e) => self.answer_locally(id, state, by, note, e),
        }
    }

    /// When the store cannot decide (it is down, or the approval never reached it),
    /// a wait in this process is still answered, here.
    fn answer_locally(
        &self,
        id: Uuid,
        state: ApprovalState,
        by: &str,
        note: Option<&str>,
        store_error: Error,
    ) -> Result<Approval> {
        let Some((_, (mut approval, tx))) = self.healer.inner.pending.remove(&id) else {
            return Err(store_error);
        };
        tracing::warn!(approval = %id, error = %store_error, "the store could not record the decision; answering the wait in this process");
        tx.send(Answer::Local(state, by.to_owned(), note.map(str::to_owned)))
            .map_err(|_| {
                Error::new(
                    ErrorKind::Closed,
                    format!("approval {id} can no longer be answered; the healer is shutting down"),
                )
            })?;
        approval.state = state;
        approval.decided_by = Some(by.to_owned());
        approval.decided_at = Some(chrono::Utc::now());
        approval.note = note.map(str::to_owned);
        Ok(approval)
    }

    /// Why a pending approval can no longer be answered, if it cannot.
    async fn no_longer_answerable(&self, approval: &Approval) -> Option<String> {
        let inner = &self.healer.inner;
        if inner.pending.contains_key(&approval.id) {
            return None;
        }
        let ttl = inner.config.safety.approval_ttl;
        let age = (chrono::Utc::now() - approval.requested_at)
            .to_std()
            .unwrap_or_default();
        if age > ttl {
            return Some(format!(
                "approval {} was asked {}s ago, longer than safety.approval_ttl ({}s): it expired \
                 and its incident was escalated; if the error recurs a new incident asks again",
                approval.id,
                age.as_secs(),
                ttl.as_secs()
            ));
        }
        match inner.store.get_incident(approval.incident).await {
            // Terminal only: a replica's status write may land just after its approval.
            Ok(Some(incident)) if incident.status.is_terminal() => Some(format!(
                "approval {} belongs to incident {}, which is {} ({}): nothing waits for \
                     the answer any more (the healer that asked may have restarted); if the \
                     error recurs a new incident asks again",
                approval.id,
                incident.id,
                incident.status.as_str(),
                incident.reason
            )),
            _ => None,
        }
    }

    /// The last `limit` audit records, oldest first.
    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        self.healer.inner.store.list_audit(limit).await
    }

    /// Counters and, per pattern: incidents, occurrences, success rate, MTTR.
    pub async fn stats(&self) -> Result<Stats> {
        let patterns = self.healer.inner.store.list_patterns().await?;
        let incidents = self.incidents(&IncidentFilter::default()).await?;
        let patterns = patterns
            .into_iter()
            .map(|p| {
                let mine: Vec<&Incident> = incidents
                    .iter()
                    .filter(|i| i.pattern.as_deref() == Some(&p.name))
                    .collect();
                let recovered: Vec<Duration> =
                    mine.iter().filter_map(|i| i.time_to_recover()).collect();
                let (ok, total) = p.fixes.iter().fold((0, 0), |(ok, total), f| {
                    (ok + f.successes, total + f.successes + f.failures)
                });
                PatternStats {
                    confidence: p.confidence,
                    incidents: mine.len(),
                    occurrences: mine.iter().map(|i| i.occurrences).sum(),
                    success_rate: (total > 0).then(|| ok as f64 / total as f64),
                    success_rate_by_strategy: p
                        .fixes
                        .iter()
                        .map(|f| (f.strategy.clone(), f.success_rate()))
                        .collect(),
                    mttr: (!recovered.is_empty())
                        .then(|| recovered.iter().sum::<Duration>() / recovered.len() as u32),
                    pattern: p.name,
                }
            })
            .collect();
        Ok(Stats {
            observed: self.healer.observed(),
            dropped: self.healer.dropped(),
            failed: self.healer.failed(),
            store_errors: self.healer.store_errors(),
            audit_waiting: self.healer.audit_waiting(),
            audit_dropped: self.healer.audit_dropped(),
            open_incidents: self.open_incidents().len(),
            patterns,
        })
    }

    /// The health of every target with a verifier. A verifier that cannot check
    /// reports score 0 with the reason.
    pub async fn health(&self) -> BTreeMap<String, Health> {
        let mut out = BTreeMap::new();
        for (target, v) in &self.healer.inner.verifiers {
            let h = v
                .check()
                .await
                .unwrap_or_else(|e| Health::new(0, format!("check failed: {e}")));
            out.insert(target.clone(), h);
        }
        out
    }

    /// Checks one target now.
    pub async fn check(&self, target: &str) -> Result<Health> {
        let v = self.healer.inner.verifiers.get(target).ok_or_else(|| {
            Error::not_found(format!("no verifier for target `{target}`; register one with Healer::builder().verifier(..)"))
        })?;
        v.check().await
    }

    /// Incidents not yet over, with their live counts, without a store round trip.
    ///
    /// Over means resolved, escalated or closed ([`crate::IncidentStatus::is_terminal`]): an
    /// escalated incident is a human's now and is not listed here; read it with
    /// `incidents(..)` from the store.
    pub fn open_incidents(&self) -> Vec<Incident> {
        self.healer
            .inner
            .open
            .iter()
            .filter(|i| !i.status.is_terminal())
            .map(|i| i.clone())
            .collect()
    }
}

/// The error for an answer that came second.
fn already_decided(decided: &Approval) -> Error {
    let by = decided.decided_by.as_deref().unwrap_or("nobody");
    match decided.state {
        ApprovalState::Expired => Error::new(
            ErrorKind::Conflict,
            format!(
                "approval {} can no longer be answered: it expired ({}) and nothing waits for \
                 it; if the error recurs a new incident asks again",
                decided.id,
                decided
                    .note
                    .as_deref()
                    .unwrap_or("not answered within safety.approval_ttl")
            ),
        ),
        state => Error::new(
            ErrorKind::Conflict,
            format!(
                "approval {} was {} already, by {by}; nothing to do",
                decided.id,
                state.as_str()
            ),
        ),
    }
}
