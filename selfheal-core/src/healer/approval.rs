//! Waiting for a human: the approval is stored, announced and notified, and the
//! incident waits for `Admin::approve` / `Admin::reject` (or shutdown).

use std::time::Duration;

use chrono::Utc;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::{Answer, Healer};
use crate::{
    Approval, ApprovalState, AuditEntry, Decided, EventData, Incident, IncidentStatus, LinkAction,
    Notification, Phase, RemediationPlan,
};

/// The next approval decided anywhere, as the store announces it: `Some(id)`, or
/// `None` when announcements were missed (check now). Never resolves without a
/// wake-up channel (the poll covers it).
async fn next_decision(wake: &mut Option<broadcast::Receiver<Uuid>>) -> Option<Uuid> {
    let Some(rx) = wake.as_mut() else {
        return std::future::pending().await;
    };
    match rx.recv().await {
        Ok(id) => Some(id),
        Err(broadcast::error::RecvError::Lagged(_)) => None,
        Err(broadcast::error::RecvError::Closed) => {
            *wake = None;
            std::future::pending().await
        }
    }
}

/// How an approval wait ended.
pub(super) enum Approved {
    /// Approved, by whom.
    Yes(String),
    No(String),
    /// Nobody answered within the TTL; the reason to escalate with.
    Expired(String),
    Cancelled,
}

impl Healer {
    pub(super) async fn await_approval(
        &self,
        incident: &Incident,
        plan: &RemediationPlan,
        reason: &str,
        confidence: f64,
    ) -> Approved {
        let mut approval = Approval {
            id: Uuid::new_v4(),
            incident: incident.id,
            pattern: incident.pattern.clone(),
            plan: plan.clone(),
            reason: reason.to_owned(),
            confidence,
            requested_at: Utc::now(),
            state: ApprovalState::Pending,
            decided_by: None,
            decided_at: None,
            note: None,
        };
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        self.inner
            .pending
            .insert(approval.id, (approval.clone(), tx));
        self.save_approval(&approval).await;
        self.set_status(
            incident.id,
            IncidentStatus::AwaitingApproval,
            Some(reason.to_owned()),
        )
        .await;
        self.emit_with(
            Some(incident),
            &incident.target,
            Phase::AwaitingApproval,
            format!(
                "approval {} for `{}` on {}:\n{}",
                approval.id,
                plan.strategy,
                incident.target,
                plan.preview()
            ),
            EventData {
                approval: Some(approval.id),
                plan: Some(plan.clone()),
                ..EventData::default()
            },
        );
        self.notify(Notification {
            title: format!(
                "selfheal: approve `{}` on {}?",
                plan.strategy, incident.target
            ),
            body: format!(
                "{reason}\nApproval id: {}\nPlan:\n{}",
                approval.id,
                plan.preview()
            ),
            incident: Some(incident.id),
            event_type: "self_heal.suggested".into(),
            links: self.approval_links(&approval),
        })
        .await;
        let ttl = self.inner.config.safety.approval_ttl;
        let deadline = tokio::time::Instant::now() + ttl;
        // Any replica's router may decide it in the store: this one learns from its own
        // operator handle at once, from the store's wake-ups, or by polling.
        let mut wake = self.inner.store.approval_decisions();
        let mut poll = tokio::time::interval(self.inner.config.safety.approval_poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.reset();
        let decided = loop {
            tokio::select! {
                biased;
                answer = &mut rx => break match answer {
                    Ok(Answer::Decided(decided)) => Some(*decided),
                    Ok(Answer::Local(state, by, note)) => {
                        approval.state = state;
                        approval.decided_by = Some(by);
                        approval.decided_at = Some(Utc::now());
                        approval.note = note;
                        self.save_approval(&approval).await;
                        Some(approval.clone())
                    }
                    Err(_) => None,
                },
                _ = self.inner.cancel.cancelled() => {
                    // Nothing will run it any more: say so in the store, so an answer
                    // from any replica is refused with the reason.
                    let why = "the healer that asked it stopped before anyone answered";
                    match self
                        .inner
                        .store
                        .decide_approval(approval.id, ApprovalState::Expired, "selfheal", Some(why))
                        .await
                    {
                        Ok(_) => {}
                        Err(e) => self.store_failed("decide_approval", &e),
                    }
                    break None;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.inner.pending.remove(&approval.id);
                    match self.expire_in_store(&approval, ttl).await {
                        Some(decided) => break Some(decided),
                        None => return self.expire(incident, approval, ttl).await,
                    }
                }
                woken = next_decision(&mut wake) => {
                    if woken.is_none_or(|id| id == approval.id)
                        && let Some(decided) = self.decided(approval.id).await
                    {
                        break Some(decided);
                    }
                }
                _ = poll.tick() => {
                    if let Some(decided) = self.decided(approval.id).await {
                        break Some(decided);
                    }
                }
            }
        };
        self.inner.pending.remove(&approval.id);
        let Some(decided) = decided else {
            return Approved::Cancelled;
        };
        let who = decided
            .decided_by
            .clone()
            .unwrap_or_else(|| "unknown".to_owned());
        let (result, event, phase) = match decided.state {
            ApprovalState::Approved => (
                Approved::Yes(who.clone()),
                "self_heal.approved",
                Phase::Approved,
            ),
            ApprovalState::Rejected => (
                Approved::No(decided.note.clone().unwrap_or_else(|| "rejected".into())),
                "self_heal.rejected",
                Phase::Rejected,
            ),
            // Expired by another replica (or a reconciliation) meanwhile.
            _ => return self.expire(incident, decided, ttl).await,
        };
        self.emit_with(
            Some(incident),
            &incident.target,
            phase,
            format!("by {who}"),
            EventData {
                approval: Some(approval.id),
                actor: Some(who.clone()),
                ..EventData::default()
            },
        );
        self.audit(AuditEntry {
            actor: who,
            incident: Some(incident.id),
            pattern: incident.pattern.clone(),
            confidence: Some(confidence),
            action: Some(plan.strategy.clone()),
            detail: serde_json::json!({"approval": approval.id.to_string()}),
            ..AuditEntry::new(
                event,
                match &result {
                    Approved::No(why) | Approved::Expired(why) => why.clone(),
                    _ => "approved".to_owned(),
                },
            )
        })
        .await;
        result
    }

    /// Signed Approve / Reject links for `approval`'s notification, expiring with it.
    fn approval_links(&self, approval: &Approval) -> Vec<crate::NotificationLink> {
        let Some(links) = &self.inner.approval_links else {
            return Vec::new();
        };
        let ttl = chrono::TimeDelta::from_std(self.inner.config.safety.approval_ttl)
            .unwrap_or(chrono::TimeDelta::MAX);
        let expires = approval
            .requested_at
            .checked_add_signed(ttl)
            .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
        [
            ("Approve", LinkAction::Approve),
            ("Reject", LinkAction::Reject),
        ]
        .into_iter()
        .map(|(label, action)| crate::NotificationLink {
            label: label.to_owned(),
            url: links.link(approval.id, action, expires),
        })
        .collect()
    }

    /// The approval as the store has it, once someone decided it.
    async fn decided(&self, id: Uuid) -> Option<Approval> {
        match self.inner.store.approval(id).await {
            Ok(Some(a)) if a.state != ApprovalState::Pending => Some(a),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(approval = %id, error = %e, "could not read the approval; asking again at the next poll");
                None
            }
        }
    }

    /// Marks the approval expired in the store, unless someone decided it first: then
    /// their decision (approved or rejected) stands and is returned.
    async fn expire_in_store(&self, approval: &Approval, ttl: Duration) -> Option<Approval> {
        let why = format!("not answered within {}s", ttl.as_secs());
        match self
            .inner
            .store
            .decide_approval(approval.id, ApprovalState::Expired, "selfheal", Some(&why))
            .await
        {
            Ok(Decided::Already(a))
                if matches!(a.state, ApprovalState::Approved | ApprovalState::Rejected) =>
            {
                Some(a)
            }
            Ok(_) => None,
            Err(e) => {
                self.store_failed("decide_approval", &e);
                None
            }
        }
    }

    /// Nobody answered in time: the approval expires (approving it later is refused)
    /// and the incident escalates instead of waiting forever.
    async fn expire(&self, incident: &Incident, approval: Approval, ttl: Duration) -> Approved {
        let why = format!(
            "approval {} of `{}` was not answered within {}s (safety.approval_ttl); escalating instead of waiting",
            approval.id,
            approval.plan.strategy,
            ttl.as_secs()
        );
        self.emit_with(
            Some(incident),
            &incident.target,
            Phase::Expired,
            why.clone(),
            EventData {
                approval: Some(approval.id),
                plan: Some(approval.plan.clone()),
                ..EventData::default()
            },
        );
        self.audit(AuditEntry {
            incident: Some(incident.id),
            pattern: incident.pattern.clone(),
            confidence: Some(approval.confidence),
            action: Some(approval.plan.strategy.clone()),
            detail: serde_json::json!({"approval": approval.id.to_string(), "ttl_secs": ttl.as_secs()}),
            ..AuditEntry::new("self_heal.approval_expired", why.clone())
        })
        .await;
        Approved::Expired(why)
    }
}
