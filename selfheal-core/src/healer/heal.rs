//! One incident from detection to resolution or escalation: match, advise, decide,
//! guard, plan, approve, execute, learn. Approval, verification and the lifecycle
//! helpers live beside it in `approval.rs`, `verify.rs` and `lifecycle.rs`.

use std::sync::Arc;

use chrono::Utc;
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use super::approval::Approved;
use super::escalation::{ALERTED, REJECTED};
use super::external::AlertState;
use super::fleet::Turn;
use super::guard::Admission;
use super::verify::{Reach, Verdict};
use super::{Healer, fmt_health};
use crate::{
    ActionRecord, ActionStatus, AdviceRequest, AuditEntry, Decision, EventData, FixBinding,
    Incident, IncidentStatus, Notification, Pattern, PatternMatch, Phase, RemediationPlan,
    Strategy, decide,
};

/// How one fix ended.
#[derive(Debug)]
enum FixResult {
    /// It ran and was verified: the health score after, when a verifier is registered.
    Verified(Option<u8>),
    /// It ran and nothing could verify it.
    Unverified(String),
    /// It ran and did not heal (rolled back when the strategy can).
    Failed(String),
    /// It could not run (the strategy failed to execute): it starts no cooldown.
    NotRun(String),
    /// The healer shut down while it was verified: nothing rolled back or learned.
    Interrupted,
    /// It did not heal and undoing it failed too: the target is in an unknown state,
    /// so no further fix is tried.
    RollbackFailed(String),
    /// This replica lost its fleet lease before a step that acts: it stopped there.
    Fenced(String),
}

/// The fix candidates of an incident and where they came from.
struct Plan {
    pattern: Option<Pattern>,
    fixes: Vec<FixBinding>,
    confidence: f64,
    /// Set when the fixes come from an advisor: they always wait for approval.
    advised: bool,
}

impl Healer {
    pub(super) async fn heal(self, incident: Incident, matched: Option<PatternMatch>) {
        let span = tracing::info_span!(
            "heal",
            incident = %incident.id,
            fingerprint = %incident.fingerprint,
            target = %incident.target,
        );
        let id = incident.id;
        // Whatever happens below (a panic, a cancelled task), the incident is forgotten.
        let _forget = super::contain::ForgetOnDrop::new(&self, id);
        if self.fold_into_dependency(&incident).await {
            return;
        }
        self.contained(id, self.run_incident(incident, matched))
            .instrument(span.clone())
            .await;
        // One incident, one escalation: its error keeps counting into it until quiet.
        if self.stays_for_counting(id) {
            self.count_until_quiet(id).instrument(span).await;
        }
    }

    async fn run_incident(&self, incident: Incident, matched: Option<PatternMatch>) {
        let (incident, matched) = self.weigh_evidence(incident, matched).await;
        let id = incident.id;
        self.save(&incident).await;
        self.emit(
            Some(&incident),
            &incident.target,
            Phase::Detected,
            incident.template.clone(),
        );
        self.audit(AuditEntry {
            incident: Some(id),
            pattern: incident.pattern.clone(),
            detail: serde_json::json!({
                "fingerprint": incident.fingerprint,
                "template": incident.template,
                "occurrences": incident.occurrences,
            }),
            ..AuditEntry::new("self_heal.detected", "incident opened")
        })
        .await;
        if !self.admit(id).await {
            return;
        }

        let Some(plan) = self.candidates(&incident, matched).await else {
            return;
        };

        if let Some(p) = plan
            .pattern
            .as_ref()
            .filter(|p| p.mode == crate::PatternMode::AlertOnly)
        {
            self.alert_only(id, p, plan.confidence).await;
            return;
        }
        if plan.fixes.is_empty() {
            let who = plan
                .pattern
                .as_ref()
                .map_or("the advice", |p| p.name.as_str());
            self.escalate(
                id,
                format!("{who} has no fix bound; add one to the pattern"),
            )
            .await;
            return;
        }
        self.try_fixes(id, plan).await;
    }

    /// The pattern and its fixes, or the advisor's suggestion; `None` when escalated.
    async fn candidates(&self, incident: &Incident, matched: Option<PatternMatch>) -> Option<Plan> {
        if let Some(m) = matched {
            let pattern = self.matcher().pattern(&m.pattern).cloned();
            self.emit(
                Some(incident),
                &incident.target,
                Phase::Matched,
                format!(
                    "pattern `{}` (confidence {:.2}): {}",
                    m.pattern,
                    m.confidence,
                    m.reasons.join("; ")
                ),
            );
            let pattern = match pattern {
                Some(p) => p,
                None => {
                    self.escalate(incident.id, format!("pattern `{}` disappeared", m.pattern))
                        .await;
                    return None;
                }
            };
            let fixes = pattern.ordered_fixes().into_iter().cloned().collect();
            return Some(Plan {
                fixes,
                confidence: m.confidence,
                pattern: Some(pattern),
                advised: false,
            });
        }
        let Some(advisor) = self.inner.advisor.clone() else {
            self.escalate(
                incident.id,
                "no known pattern matches and no advisor is configured".into(),
            )
            .await;
            return None;
        };
        let mut request = AdviceRequest::new(
            incident.clone(),
            self.inner.strategies.keys().cloned().collect(),
        );
        request.param_schemas = self
            .inner
            .strategies
            .iter()
            .map(|(name, s)| (name.clone(), s.param_schema()))
            .collect();
        if let Some(score) = self.health_score(&incident.target).await {
            request.metrics = serde_json::json!({ "health_score": score });
        }
        let advice = advisor
            .advise(&request)
            .instrument(tracing::info_span!("advise"));
        let limit = self.inner.config.limits.advise;
        let diagnosis = match super::limits::limited(limit, "the advisor", "advise", advice).await {
            Ok(d) => d,
            Err(e) => {
                self.escalate(
                    incident.id,
                    format!("no known pattern matches; advisor failed: {e}"),
                )
                .await;
                return None;
            }
        };
        self.emit(
            Some(incident),
            &incident.target,
            Phase::Diagnosed,
            format!(
                "{} suggests {:?} (confidence {:.2}): {}",
                diagnosis.advisor, diagnosis.strategy, diagnosis.confidence, diagnosis.root_cause
            ),
        );
        self.audit(AuditEntry {
            incident: Some(incident.id),
            confidence: Some(diagnosis.confidence),
            action: diagnosis.strategy.clone(),
            detail: serde_json::json!({"root_cause": diagnosis.root_cause, "advisor": diagnosis.advisor}),
            ..AuditEntry::new("self_heal.diagnosed", diagnosis.explanation.clone())
        })
        .await;
        // Advice can only suggest a registered strategy whose parameters validate.
        let usable = diagnosis.strategy.as_ref().filter(|s| {
            self.inner
                .strategies
                .get(*s)
                .is_some_and(|st| st.validate(&diagnosis.params).is_ok())
        });
        match usable {
            Some(strategy)
                if diagnosis.confidence >= self.inner.config.policy.suggest_threshold =>
            {
                Some(Plan {
                    pattern: None,
                    fixes: vec![FixBinding::new(strategy.clone()).params(diagnosis.params.clone())],
                    confidence: diagnosis.confidence,
                    advised: true,
                })
            }
            _ => {
                self.escalate(
                    incident.id,
                    format!(
                        "no known pattern matches; advice was not usable ({})",
                        diagnosis.explanation
                    ),
                )
                .await;
                None
            }
        }
    }

    async fn try_fixes(&self, id: Uuid, plan: Plan) {
        let max_attempts = self.inner.config.guards.max_attempts;
        let mut confidence = plan.confidence;
        let mut attempts = 0;
        let mut last_failure = String::from("no fix could be tried");
        for fix in &plan.fixes {
            if attempts >= max_attempts {
                last_failure = format!("{attempts} attempts used (max_attempts = {max_attempts})");
                break;
            }
            let Some(incident) = self.snapshot(id) else {
                return;
            };
            let Some(strategy) = self.inner.strategies.get(&fix.strategy).cloned() else {
                last_failure = format!("strategy `{}` is not registered", fix.strategy);
                self.skip_fix(&incident, fix, &last_failure).await;
                continue;
            };
            // Parameters, applicability and the plan, before anyone is asked.
            let remediation = match self.prepare_fix(&incident, fix, &strategy).await {
                Ok(plan) => plan,
                Err(why) => {
                    last_failure = why;
                    continue;
                }
            };
            let decision = match &plan.pattern {
                Some(p) if !plan.advised => decide(
                    &self.inner.config.policy,
                    p,
                    confidence,
                    fix,
                    strategy.destructive(),
                ),
                _ => Decision::Suggest {
                    reason: "advice from an advisor always needs approval".into(),
                },
            };
            if let Decision::Escalate { reason } = &decision {
                self.record_decision(&incident, fix, &decision, confidence)
                    .await;
                self.escalate(id, reason.clone()).await;
                return;
            }

            let repeats = self.control_changed(|| {
                self.inner
                    .backoff
                    .repeat(&fix.strategy, &incident.target, &incident.fingerprint)
            });
            self.save_backoff(&fix.strategy, &incident.target).await;
            if self.inner.backoff.is_masking(repeats) {
                self.masking(&incident, &fix.strategy, repeats).await;
                return;
            }
            if let Some(until) = self
                .inner
                .guards
                .cooling_until(&fix.strategy, &incident.target)
            {
                let left = until.saturating_duration_since(Instant::now());
                self.escalate(id, format!(
                    "`{}` ran on `{}` recently; its cooldown has {}s left, so the error came back after a fix",
                    fix.strategy,
                    incident.target,
                    left.as_secs()
                ))
                .await;
                return;
            }
            // Recorded once nothing else stops the fix: a `self_heal.suggested` record
            // means a human is asked now.
            self.record_decision(&incident, fix, &decision, confidence)
                .await;

            let mut approved_by = None;
            if let Decision::Suggest { reason } = &decision {
                match self
                    .await_approval(&incident, &remediation, reason, confidence)
                    .await
                {
                    Approved::Yes(by) => approved_by = Some(by),
                    Approved::No(why) => {
                        self.close(id, IncidentStatus::Closed, format!("{REJECTED}: {why}"))
                            .await;
                        return;
                    }
                    Approved::Expired(why) => {
                        self.escalate(id, why).await;
                        return;
                    }
                    Approved::Cancelled => return,
                }
            }

            // A fix that needs its target reachable runs once the target's probe passes.
            if strategy.needs_target() {
                match self.wait_for_target(id, &fix.strategy).await {
                    Reach::Ready => {}
                    Reach::Unreachable(why) => {
                        last_failure = why;
                        continue;
                    }
                    Reach::Cancelled => return,
                }
            }
            if !self.wait_for_rate_limit(id).await {
                return;
            }
            let _target = tokio::select! {
                guard = self.inner.guards.lock_target(&incident.target) => guard,
                _ = self.inner.cancel.cancelled() => return,
            };
            // Fleet mode: this replica's turn on the target (lease, shared cooldown,
            // fleet-wide rate limit).
            let hold = match self.fleet_turn(id, &fix.strategy).await {
                Turn::Go(hold) => hold,
                Turn::Stop => return,
            };
            if !self.clear_to_run(id).await {
                self.fleet_release(hold).await;
                return;
            }
            // A dry run learns nothing and trips nothing: the fix did not run.
            let dry = self.admin().is_dry_run(incident.pattern.as_deref());
            // Attempts at this error on this target are counted in the store, so a
            // restart (or a new incident of the same episode) does not start over.
            if !dry
                && let Some(counted) = self.count_episode_attempt(&incident).await
                && counted > max_attempts
            {
                last_failure = format!(
                    "{} attempt(s) at this error on `{}` already, counted across incidents \
                     and restarts (max_attempts = {max_attempts})",
                    counted - 1,
                    incident.target
                );
                self.fleet_release(hold).await;
                break;
            }
            attempts += 1;
            let result = self
                .run_fix(id, &strategy, &remediation, dry, hold.as_ref())
                .await;
            match &result {
                // It did not run: no cooldown, here or across the fleet.
                FixResult::NotRun(_) | FixResult::Fenced(_) => self.fleet_release(hold).await,
                _ => {
                    let fixed = matches!(result, FixResult::Verified(_)) && !dry;
                    self.fleet_done(hold, &fix.strategy, fixed).await;
                }
            }
            match result {
                FixResult::Verified(health) => {
                    if dry {
                        self.resolve(id, health).await;
                        return;
                    }
                    if let Some(p) = &plan.pattern {
                        self.learn(p, &fix.strategy, true).await;
                    } else if let Some(by) = &approved_by {
                        // An advised fix an operator approved, verified: propose a pattern.
                        self.learn_from_approval(id, fix, by).await;
                    }
                    self.control_changed(|| {
                        self.inner.backoff.fixed(
                            &fix.strategy,
                            &incident.target,
                            &incident.fingerprint,
                        )
                    });
                    self.save_backoff(&fix.strategy, &incident.target).await;
                    self.end_episode(&incident).await;
                    self.resolve(id, health).await;
                    return;
                }
                // Not a success and not a failure: nothing learned, no next fix.
                FixResult::Unverified(reason) => {
                    self.close(id, IncidentStatus::Closed, reason).await;
                    return;
                }
                // Shut down mid-verification: the incident stays where it is (remediating)
                // for whoever picks it up after a restart.
                FixResult::Interrupted => return,
                // Another replica may be acting on the target: stop, and let a human see it.
                FixResult::Fenced(reason) => {
                    self.escalate(id, format!("{reason}; this replica stopped before acting"))
                        .await;
                    return;
                }
                FixResult::RollbackFailed(reason) => {
                    self.remediation_failed().await;
                    if let Some(p) = &plan.pattern {
                        self.learn(p, &fix.strategy, false).await;
                    }
                    self.escalate(
                        id,
                        format!("{reason}; no further fix is tried: check the target by hand"),
                    )
                    .await;
                    return;
                }
                FixResult::Failed(reason) | FixResult::NotRun(reason) if dry => {
                    last_failure = reason
                }
                FixResult::Failed(reason) | FixResult::NotRun(reason) => {
                    self.remediation_failed().await;
                    if let Some(p) = &plan.pattern {
                        self.learn(p, &fix.strategy, false).await;
                    }
                    confidence = (confidence - self.inner.config.feedback.failure_delta).max(0.0);
                    last_failure = reason;
                }
            }
        }
        self.escalate(
            id,
            format!("fixes exhausted after {attempts} attempt(s); last: {last_failure}"),
        )
        .await;
    }

    /// Waits for the global rate limit; `false` if the healer shut down meanwhile.
    async fn wait_for_rate_limit(&self, id: Uuid) -> bool {
        let Some(incident) = self.snapshot(id) else {
            return false;
        };
        match self.inner.guards.admit(incident.severity) {
            Admission::Now => true,
            Admission::Queued(permit) => {
                let incident = self.set_status(id, IncidentStatus::Queued, None).await;
                let target = incident.as_ref().map_or("", |i| i.target.as_str());
                self.emit(
                    incident.as_ref(),
                    target,
                    Phase::Queued,
                    "global rate limit reached; queued by severity",
                );
                self.audit(AuditEntry {
                    incident: Some(id),
                    ..AuditEntry::new("self_heal.queued", "rate limited; queued by severity")
                })
                .await;
                self.notify(Notification {
                    title: format!("selfheal: action on {target} queued"),
                    body: "The global rate limit of actions is reached; the action runs when it allows.".into(),
                    incident: Some(id),
                    event_type: "self_heal.queued".into(),
                    links: Vec::new(),
                })
                .await;
                tokio::select! {
                    r = permit => r.is_ok(),
                    _ = self.inner.cancel.cancelled() => false,
                }
            }
        }
    }

    /// Runs one fix (through a dry-run recorder when `dry`) and verifies it. The
    /// cooldown starts once the strategy has run, not when it could not.
    async fn run_fix(
        &self,
        id: Uuid,
        strategy: &Arc<dyn Strategy>,
        plan: &RemediationPlan,
        dry: bool,
        hold: Option<&super::fleet::LeaseHold>,
    ) -> FixResult {
        let incident = self.set_status(id, IncidentStatus::Remediating, None).await;
        let Some(incident) = incident else {
            return FixResult::NotRun("incident vanished".into());
        };
        let health_before = self.health_score(&incident.target).await;
        // Fencing: the lease is confirmed right before acting, not only when taken.
        if let Err(why) = self.confirm_lease(hold).await {
            self.fenced(&incident, &plan.strategy, "execute", &why)
                .await;
            return FixResult::Fenced(why);
        }
        let mut action = ActionRecord {
            id: Uuid::new_v4(),
            incident: id,
            pattern: incident.pattern.clone(),
            strategy: plan.strategy.clone(),
            target: plan.target.clone(),
            preview: plan.preview(),
            status: ActionStatus::Running,
            outcome: None,
            health_before,
            health_after: None,
            started_at: Utc::now(),
            finished_at: None,
            error: None,
        };
        self.save_action(&action).await;
        // Audited before it runs: a crash mid-action still leaves the record.
        self.audit(AuditEntry {
            incident: Some(id),
            pattern: incident.pattern.clone(),
            action: Some(plan.strategy.clone()),
            detail: serde_json::json!({"action": action.id, "preview": plan.preview()}),
            ..AuditEntry::new("self_heal.executing", "about to execute")
        })
        .await;
        self.emit_with(
            Some(&incident),
            &incident.target,
            Phase::Executing,
            plan.preview(),
            EventData {
                plan: Some(plan.clone()),
                health_before,
                ..EventData::default()
            },
        );
        let (executor, dry) = self.executor_for(dry);
        self.start_acting(id, &incident.target);
        // Dry run is a contract: a strategy that acts outside the executor is never
        // called in a dry run; its plan is what it would have done.
        let plan_only = dry.is_some() && !strategy.dry_run_safe();
        let result = if plan_only {
            Ok(crate::ActionOutcome::ok(std::time::Duration::ZERO))
        } else {
            let execution = strategy
                .execute(plan, executor.clone())
                .instrument(tracing::info_span!("execute", strategy = %plan.strategy));
            let limit = self.inner.config.limits.execute;
            super::limits::limited(limit, "executing", "execute", execution).await
        };
        let action_end = Instant::now();
        self.action_ended(&incident.target);
        let ran = result.is_ok();
        if ran {
            self.start_backed_off_cooldown(&incident, &plan.strategy)
                .await;
        }
        let executed = match result {
            Ok(outcome) if dry.is_some() => {
                let would = if plan_only {
                    vec![format!(
                        "(plan only: `{}` acts outside the executor, so it was not called) {}",
                        plan.strategy,
                        plan.preview()
                    )]
                } else {
                    dry.as_ref().map(|d| d.would_have_run()).unwrap_or_default()
                };
                self.emit_with(
                    Some(&incident),
                    &incident.target,
                    Phase::DryRun,
                    format!("would have run: {}", would.join("; ")),
                    EventData {
                        plan: Some(plan.clone()),
                        ..EventData::default()
                    },
                );
                action.outcome = Some(outcome);
                Ok(())
            }
            Ok(outcome) => {
                self.emit(
                    Some(&incident),
                    &incident.target,
                    Phase::Output,
                    format!(
                        "{} in {} ms{}",
                        outcome
                            .exit_code
                            .map_or_else(|| "done".to_owned(), |c| format!("exit {c}")),
                        outcome.duration.as_millis(),
                        if outcome.stderr.is_empty() {
                            String::new()
                        } else {
                            format!("; stderr: {}", outcome.stderr.trim())
                        }
                    ),
                );
                let ok = outcome.success;
                action.outcome = Some(outcome);
                if ok {
                    Ok(())
                } else {
                    Err(format!("`{}` reported failure", plan.strategy))
                }
            }
            Err(e) => Err(format!("`{}` failed to execute: {e}", plan.strategy)),
        };
        let (event, detail) = match &dry {
            Some(d) => (
                "self_heal.dry_run",
                serde_json::json!({"preview": plan.preview(), "would_have_run": d.would_have_run()}),
            ),
            None => (
                "self_heal.executed",
                serde_json::json!({"preview": plan.preview(), "exit_code": action.outcome.as_ref().and_then(|o| o.exit_code)}),
            ),
        };
        self.audit(AuditEntry {
            incident: Some(id),
            pattern: incident.pattern.clone(),
            action: Some(plan.strategy.clone()),
            detail,
            ..AuditEntry::new(
                event,
                match &executed {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => e.clone(),
                },
            )
        })
        .await;

        let verdict = match executed {
            Ok(()) => {
                let cfg = &self.inner.config.verification;
                let probe = if self.inner.verifiers.contains_key(&incident.target) {
                    "the target's probe passes"
                } else {
                    "no probe (no verifier)"
                };
                let stopped = match self.inner.external.state(&incident.target) {
                    AlertState::Unknown => format!("the errors quiet for {:?}", cfg.quiet_for),
                    _ => "its alerts resolved".to_owned(),
                };
                self.emit(
                    Some(&incident),
                    &incident.target,
                    Phase::Verifying,
                    format!("within {:?}: {stopped} and {probe}", cfg.window),
                );
                self.verify(id, action_end)
                    .instrument(tracing::info_span!("verify"))
                    .await
            }
            Err(e) => Verdict::Failed(e, None),
        };
        self.stop_acting(id, &incident.target).await;
        action.finished_at = Some(Utc::now());
        let reason = match verdict {
            Verdict::Verified(health_after) => {
                action.status = ActionStatus::Succeeded;
                action.health_after = health_after;
                self.save_action(&action).await;
                self.emit_with(
                    Some(&incident),
                    &incident.target,
                    Phase::Verified,
                    format!(
                        "health {} -> {}",
                        fmt_health(health_before),
                        fmt_health(health_after)
                    ),
                    EventData {
                        health_before,
                        health_after,
                        ..EventData::default()
                    },
                );
                return FixResult::Verified(health_after);
            }
            Verdict::Unverified(why) => {
                action.status = ActionStatus::Unverified;
                action.error = Some(why.clone());
                self.save_action(&action).await;
                self.outcome_event(
                    &incident,
                    Phase::Unverified,
                    "self_heal.unverified",
                    &plan.strategy,
                    &why,
                )
                .await;
                return FixResult::Unverified(format!("unverified: {why}"));
            }
            Verdict::Interrupted => {
                let why = "the healer shut down during verification; nothing rolled back, \
                           nothing learned"
                    .to_owned();
                action.status = ActionStatus::Interrupted;
                action.error = Some(why.clone());
                self.save_action(&action).await;
                self.set_status(id, IncidentStatus::Remediating, Some(why.clone()))
                    .await;
                self.outcome_event(
                    &incident,
                    Phase::Interrupted,
                    "self_heal.interrupted",
                    &plan.strategy,
                    &why,
                )
                .await;
                return FixResult::Interrupted;
            }
            Verdict::Failed(reason, health_after) => {
                action.health_after = health_after;
                reason
            }
        };
        action.error = Some(reason.clone());
        action.status = ActionStatus::Failed;
        // Rolling back acts too: only with the lease still held.
        if let Err(why) = self.confirm_lease(hold).await {
            let failed = format!("{reason}; it was not rolled back: {why}");
            action.error = Some(failed.clone());
            action.finished_at = Some(Utc::now());
            self.save_action(&action).await;
            self.fenced(&incident, &plan.strategy, "rollback", &why)
                .await;
            return FixResult::RollbackFailed(failed);
        }
        let limit = self.inner.config.limits.rollback;
        let rollback = strategy.rollback(plan, executor);
        match super::limits::limited(limit, "rolling back", "rollback", rollback).await {
            Ok(Some(_)) => {
                action.status = ActionStatus::RolledBack;
                self.emit_with(
                    Some(&incident),
                    &incident.target,
                    Phase::RolledBack,
                    plan.strategy.clone(),
                    EventData {
                        plan: Some(plan.clone()),
                        health_before,
                        health_after: action.health_after,
                        ..EventData::default()
                    },
                );
                self.audit(AuditEntry {
                    incident: Some(id),
                    action: Some(plan.strategy.clone()),
                    ..AuditEntry::new("self_heal.rolled_back", reason.clone())
                })
                .await;
            }
            Ok(None) => {}
            Err(e) => {
                let failed = format!("{reason}; rolling `{}` back failed too: {e}", plan.strategy);
                tracing::error!(error = %e, strategy = %plan.strategy, "rollback failed");
                action.error = Some(failed.clone());
                self.save_action(&action).await;
                self.emit(
                    Some(&incident),
                    &incident.target,
                    Phase::Failed,
                    failed.clone(),
                );
                self.audit(AuditEntry {
                    incident: Some(id),
                    action: Some(plan.strategy.clone()),
                    detail: serde_json::json!({"rollback_error": e.to_string()}),
                    ..AuditEntry::new("self_heal.rollback_failed", failed.clone())
                })
                .await;
                return FixResult::RollbackFailed(failed);
            }
        }
        self.save_action(&action).await;
        self.emit(
            Some(&incident),
            &incident.target,
            Phase::Failed,
            reason.clone(),
        );
        if ran {
            FixResult::Failed(reason)
        } else {
            FixResult::NotRun(reason)
        }
    }

    /// An ending that is neither success nor failure, on the stream and in the audit.
    async fn outcome_event(
        &self,
        incident: &Incident,
        phase: Phase,
        event_type: &str,
        strategy: &str,
        why: &str,
    ) {
        tracing::info!(incident = %incident.id, strategy, event = event_type, %why, "fix ended without a verdict");
        self.emit(Some(incident), &incident.target, phase, why);
        self.audit(AuditEntry {
            incident: Some(incident.id),
            pattern: incident.pattern.clone(),
            action: Some(strategy.to_owned()),
            ..AuditEntry::new(event_type, why)
        })
        .await;
    }

    async fn alert_only(&self, id: Uuid, pattern: &Pattern, confidence: f64) {
        let Some(incident) = self.snapshot(id) else {
            return;
        };
        self.emit(
            Some(&incident),
            &incident.target,
            Phase::Decided,
            super::bindings::describe_decision(&Decision::AlertOnly, ""),
        );
        self.audit(AuditEntry {
            incident: Some(id),
            pattern: Some(pattern.name.clone()),
            confidence: Some(confidence),
            ..AuditEntry::new(
                Decision::AlertOnly.event_type(),
                "pattern is alert-only; notified",
            )
        })
        .await;
        self.notify(Notification {
            title: format!("selfheal: {} on {}", pattern.name, incident.target),
            body: format!(
                "{}\nSample: {}",
                pattern.description,
                incident.samples.first().map_or("", String::as_str)
            ),
            incident: Some(id),
            event_type: "self_heal.alerted".into(),
            links: Vec::new(),
        })
        .await;
        // It keeps counting its error until quiet (`count_until_quiet`): one alert.
        self.close(id, IncidentStatus::Closed, ALERTED.into()).await;
    }

    /// Feedback: success +0.05 and a use, failure -0.1, per (pattern, strategy).
    async fn learn(&self, pattern: &Pattern, strategy: &str, success: bool) {
        let fb = &self.inner.config.feedback;
        let delta = if success {
            fb.success_delta
        } else {
            -fb.failure_delta
        };
        match self
            .inner
            .store
            .record_outcome(&pattern.name, strategy, success, delta)
            .await
        {
            Ok(updated) => {
                tracing::info!(pattern = %pattern.name, strategy, success, confidence = updated.confidence, "learned");
                if let Err(e) = self.reload_patterns().await {
                    self.store_failed("list_patterns", &e);
                }
            }
            Err(e) => self.store_failed("record_outcome", &e),
        }
    }
}

pub(super) fn decision_reason(decision: &Decision) -> String {
    match decision {
        Decision::AutoRemediate => "confidence and policy allow an automatic fix".into(),
        Decision::Suggest { reason } | Decision::Escalate { reason } => reason.clone(),
        Decision::AlertOnly => "alert-only".into(),
    }
}
