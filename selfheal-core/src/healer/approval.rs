//! Waiting for a human: the approval is stored, announced and notified, and the
//! incident waits for `Healer::approve` / `Healer::reject` (or shutdown).

use chrono::Utc;
use uuid::Uuid;

use super::{Answer, Healer};
use crate::{
    Approval, ApprovalState, AuditEntry, Incident, IncidentStatus, Notification, Phase,
    RemediationPlan,
};

/// How an approval wait ended.
pub(super) enum Approved {
    Yes,
    No(String),
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
        if let Err(e) = self.inner.store.save_approval(&approval).await {
            self.store_failed("save_approval", &e);
        }
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
        let answer = tokio::select! {
            a = rx => a.ok(),
            _ = self.inner.cancel.cancelled() => None,
        };
        self.inner.pending.remove(&approval.id);
        let (result, state, who, event, phase) = match answer {
            Some(Answer::Approve(who)) => (
                Approved::Yes,
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
        if let Err(e) = self.inner.store.save_approval(&approval).await {
            self.store_failed("save_approval", &e);
        }
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
                    Approved::No(why) => why.clone(),
                    _ => "approved".to_owned(),
                },
            )
        })
        .await;
        result
    }
}
