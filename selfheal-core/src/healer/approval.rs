//! Waiting for a human: the approval is stored, announced and notified, and the
//! incident waits for `Admin::approve` / `Admin::reject` (or shutdown).

use chrono::Utc;
use uuid::Uuid;

use super::{Answer, Healer};
use crate::{
    Approval, ApprovalState, AuditEntry, Incident, IncidentStatus, Notification, Phase,
    RemediationPlan,
};

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
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.pending.insert(approval.id, tx);
        self.save_approval(&approval).await;
        self.set_status(
            incident.id,
            IncidentStatus::AwaitingApproval,
            Some(reason.to_owned()),
        )
        .await;
        self.emit(
            Some(incident),
            &incident.target,
            Phase::AwaitingApproval,
            format!("approval {} for:\n{}", approval.id, plan.preview()),
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
        })
        .await;
        let ttl = self.inner.config.safety.approval_ttl;
        let answer = tokio::select! {
            biased;
            a = rx => a.ok(),
            _ = self.inner.cancel.cancelled() => None,
            _ = tokio::time::sleep(ttl) => {
                self.inner.pending.remove(&approval.id);
                return self.expire(incident, approval, ttl).await;
            }
        };
        self.inner.pending.remove(&approval.id);
        let (result, state, who, event, phase) = match answer {
            Some(Answer::Approve(who)) => (
                Approved::Yes(who.clone()),
                ApprovalState::Approved,
                who,
                "self_heal.approved",
                Phase::Approved,
            ),
            Some(Answer::Reject(who, why)) => (
                Approved::No(why),
                ApprovalState::Rejected,
                who,
                "self_heal.rejected",
                Phase::Rejected,
            ),
            None => return Approved::Cancelled,
        };
        approval.state = state;
        approval.decided_by = Some(who.clone());
        self.save_approval(&approval).await;
        self.emit(Some(incident), &incident.target, phase, format!("by {who}"));
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

    /// Nobody answered in time: the approval expires (approving it later is refused)
    /// and the incident escalates instead of waiting forever.
    async fn expire(
        &self,
        incident: &Incident,
        mut approval: Approval,
        ttl: std::time::Duration,
    ) -> Approved {
        approval.state = ApprovalState::Expired;
        self.save_approval(&approval).await;
        let why = format!(
            "approval {} of `{}` was not answered within {}s (safety.approval_ttl); escalating instead of waiting",
            approval.id,
            approval.plan.strategy,
            ttl.as_secs()
        );
        self.emit(
            Some(incident),
            &incident.target,
            Phase::Expired,
            why.clone(),
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
