//! Crash reconciliation at start. A healer killed mid-action (kill -9, OOM, a lost
//! machine) leaves incidents `Remediating`, actions `Running` and approvals
//! `Pending` in the store, and its cooldowns died with its memory. On start, before
//! the first signal, the healer:
//!
//! - closes what was left non-terminal as interrupted: the incident escalates (its
//!   reason starts with `interrupted:`), a running action is marked interrupted, a pending
//!   approval expired; each is audited (`self_heal.interrupted`) and the operators get
//!   one notification for all of them. In fleet mode only incidents whose target lease
//!   this replica can take (its holder's lease expired) are touched, and only those
//!   mid-action or older than the approval TTL: a live peer may be working on the rest.
//! - re-arms the cooldown of every (strategy, target) an action started within the
//!   last `guards.cooldown`, so a fix that was running when the process died is not
//!   run again a second after the restart (in fleet mode the shared cooldowns in the
//!   store do this already).

use std::time::Duration;

use chrono::Utc;

use super::Healer;
use crate::{
    ActionStatus, Approval, ApprovalState, AuditEntry, Incident, IncidentFilter, IncidentStatus,
    Notification,
};

/// How the reason of an incident closed by reconciliation starts.
pub(super) const INTERRUPTED: &str = "interrupted";

impl Healer {
    /// Reconciles what a previous run left behind; see the module docs.
    pub(super) async fn reconcile(&self) {
        self.rearm_cooldowns().await;
        let open = IncidentFilter {
            statuses: vec![
                IncidentStatus::Open,
                IncidentStatus::AwaitingApproval,
                IncidentStatus::Queued,
                IncidentStatus::Remediating,
            ],
            ..IncidentFilter::default()
        };
        let left = match self.inner.store.list_incidents(&open).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "could not read incidents left open by a previous run; they stay as they are");
                return;
            }
        };
        // The approvals still pending, read once for every incident closed below.
        let pending = if left.is_empty() {
            Vec::new()
        } else {
            self.inner
                .store
                .list_approvals(true)
                .await
                .unwrap_or_else(|e| {
                    self.store_failed("list_approvals", &e);
                    Vec::new()
                })
        };
        let mut closed = Vec::new();
        for incident in left {
            if self.inner.open.contains_key(&incident.id) || !self.may_reconcile(&incident).await {
                continue;
            }
            self.interrupt(incident.clone(), &pending).await;
            closed.push(incident);
        }
        if closed.is_empty() {
            return;
        }
        let list: Vec<String> = closed
            .iter()
            .map(|i| format!("{} on {} ({})", i.id, i.target, i.status.as_str()))
            .collect();
        tracing::warn!(
            incidents = closed.len(),
            "closed incidents a previous run left open"
        );
        self.notify(Notification {
            title: format!(
                "selfheal: {} incident(s) interrupted by a restart",
                closed.len()
            ),
            body: format!(
                "The healer stopped (crash, kill or deploy) while these were open; \
                 a fix may have run halfway. Check the targets:\n{}",
                list.join("\n")
            ),
            incident: None,
            event_type: "self_heal.interrupted".into(),
            links: Vec::new(),
        })
        .await;
    }

    /// In fleet mode a peer may still own the incident: only take it when its target's
    /// lease is free and it was mid-action or is older than an approval could wait.
    async fn may_reconcile(&self, incident: &Incident) -> bool {
        let fleet = &self.inner.config.guards.fleet;
        if !fleet.enabled {
            return true;
        }
        let stale = (Utc::now() - incident.opened_at)
            .to_std()
            .unwrap_or_default()
            > self.inner.config.safety.approval_ttl;
        if incident.status != IncidentStatus::Remediating && !stale {
            return false;
        }
        let Some(store) = self.inner.store.fleet() else {
            return false;
        };
        match store
            .acquire_lease(&incident.target, &self.inner.replica, fleet.lease_ttl)
            .await
        {
            Ok(grant) if grant.acquired() => {
                let _ = store
                    .release_lease(&incident.target, &self.inner.replica)
                    .await;
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, target = %incident.target, "could not check the lease; leaving the incident to its holder");
                false
            }
        }
    }

    async fn interrupt(&self, mut incident: Incident, pending: &[Approval]) {
        let id = incident.id;
        let was = incident.status;
        let now = Utc::now();
        let mut stopped_actions = Vec::new();
        match self.inner.store.list_actions(Some(id)).await {
            Ok(actions) => {
                for mut action in actions.into_iter().filter(|a| {
                    matches!(a.status, ActionStatus::Running | ActionStatus::Interrupted)
                }) {
                    action.status = ActionStatus::Interrupted;
                    action.finished_at = Some(now);
                    action.error = Some(format!(
                        "{INTERRUPTED}: the healer stopped while `{}` ran or was being verified; \
                         its effect is unknown",
                        action.strategy
                    ));
                    stopped_actions.push(action.strategy.clone());
                    self.save_action(&action).await;
                }
            }
            Err(e) => self.store_failed("list_actions", &e),
        }
        for approval in pending.iter().filter(|a| a.incident == id) {
            let mut approval = approval.clone();
            approval.state = ApprovalState::Expired;
            approval.decided_by = Some("selfheal (restart)".into());
            self.save_approval(&approval).await;
        }
        let reason = if stopped_actions.is_empty() {
            format!(
                "{INTERRUPTED}: the healer stopped while the incident was {}; nothing was running",
                was.as_str()
            )
        } else {
            format!(
                "{INTERRUPTED}: the healer stopped while `{}` ran or was being verified; \
                 check the target, its state is unknown",
                stopped_actions.join("`, `")
            )
        };
        incident.status = IncidentStatus::Escalated;
        incident.closed_at = Some(now);
        incident.reason = reason.clone();
        self.save(&incident).await;
        self.audit(AuditEntry {
            incident: Some(id),
            pattern: incident.pattern.clone(),
            detail: serde_json::json!({"was": was.as_str(), "actions": stopped_actions}),
            ..AuditEntry::new("self_heal.interrupted", reason)
        })
        .await;
    }

    /// Re-arms the cooldowns of actions started within the last `guards.cooldown`. In
    /// fleet mode the cooldowns live in the store already (shared cooldowns), and a
    /// replica starting while a peer acts must stand by through them, not escalate on a
    /// local copy.
    async fn rearm_cooldowns(&self) {
        if self.inner.config.guards.fleet.enabled {
            return;
        }
        let cooldown = self.inner.config.guards.cooldown;
        let actions = match self.inner.store.list_actions(None).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "could not read past actions; cooldowns start empty");
                return;
            }
        };
        let now = Utc::now();
        for action in actions {
            let age = (now - action.started_at).to_std().unwrap_or_default();
            if age >= cooldown {
                continue;
            }
            let left = cooldown.saturating_sub(age).max(Duration::from_millis(1));
            tracing::info!(strategy = %action.strategy, target = %action.target, left_secs = left.as_secs(), "cooldown carried over from the previous run");
            self.inner
                .guards
                .start_cooldown_for(&action.strategy, &action.target, left);
        }
    }
}
