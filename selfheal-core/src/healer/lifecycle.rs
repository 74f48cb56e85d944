//! An incident's lifecycle in memory and in the store: status changes, resolution,
//! escalation, and forgetting it once it is over.

use chrono::Utc;
use uuid::Uuid;

use super::{Healer, fmt_health};
use crate::{ActionRecord, AuditEntry, Incident, IncidentStatus, Notification, Phase};

impl Healer {
    pub(super) async fn resolve(&self, id: Uuid, health: Option<u8>) {
        let Some(incident) = self
            .close(
                id,
                IncidentStatus::Resolved,
                format!("verified; health {}", fmt_health(health)),
            )
            .await
        else {
            return;
        };
        let ttr = incident.time_to_recover().unwrap_or_default();
        self.audit(AuditEntry {
            incident: Some(id),
            pattern: incident.pattern.clone(),
            detail: serde_json::json!({"time_to_recover_ms": ttr.as_millis() as u64, "health_after": health}),
            ..AuditEntry::new("self_heal.resolved", "fix verified")
        })
        .await;
    }

    pub(super) async fn escalate(&self, id: Uuid, reason: String) {
        tracing::warn!(%reason, "escalating");
        let Some(incident) = self
            .close(id, IncidentStatus::Escalated, reason.clone())
            .await
        else {
            return;
        };
        self.audit(AuditEntry {
            incident: Some(id),
            pattern: incident.pattern.clone(),
            detail: serde_json::json!({"samples": incident.samples, "occurrences": incident.occurrences}),
            ..AuditEntry::new("self_heal.escalated", reason.clone())
        })
        .await;
        self.notify(Notification {
            title: format!("selfheal: escalating incident on {}", incident.target),
            body: format!(
                "{reason}\nTemplate: {}\nOccurrences: {}",
                incident.template, incident.occurrences
            ),
            incident: Some(id),
            event_type: "self_heal.escalated".into(),
            links: Vec::new(),
        })
        .await;
    }

    /// Moves the incident to a terminal status, saves it and announces it.
    pub(super) async fn close(
        &self,
        id: Uuid,
        status: IncidentStatus,
        reason: String,
    ) -> Option<Incident> {
        let incident = {
            let mut entry = self.inner.open.get_mut(&id)?;
            entry.status = status;
            entry.reason = reason.clone();
            entry.closed_at = Some(Utc::now());
            entry.clone()
        };
        self.save(&incident).await;
        let phase = match status {
            IncidentStatus::Resolved => Phase::Resolved,
            IncidentStatus::Escalated => Phase::Escalated,
            _ => Phase::Closed,
        };
        self.emit(Some(&incident), &incident.target, phase, reason);
        Some(incident)
    }

    /// Drops the incident from the open indexes; its fingerprints start counting afresh.
    pub(super) fn forget(&self, id: Uuid) {
        self.inner.notified.remove(&id);
        self.inner.blocked_by.remove(&id);
        let Some((_, incident)) = self.inner.open.remove(&id) else {
            return;
        };
        for fp in std::iter::once(&incident.fingerprint).chain(&incident.related) {
            let key = super::occurrence_key(&incident.target, fp);
            self.inner.by_fingerprint.remove_if(&key, |_, v| *v == id);
            self.inner.detector.reset(&key);
        }
        self.inner
            .by_target
            .remove_if(&incident.target, |_, v| *v == id);
    }

    pub(super) fn snapshot(&self, id: Uuid) -> Option<Incident> {
        self.inner.open.get(&id).map(|i| i.clone())
    }

    pub(super) async fn set_status(
        &self,
        id: Uuid,
        status: IncidentStatus,
        reason: Option<String>,
    ) -> Option<Incident> {
        let incident = {
            let mut entry = self.inner.open.get_mut(&id)?;
            entry.status = status;
            if let Some(r) = reason {
                entry.reason = r;
            }
            entry.clone()
        };
        self.save(&incident).await;
        Some(incident)
    }

    /// Stores `incident`, redacted (its reason may quote a strategy's error).
    pub(super) async fn save(&self, incident: &Incident) {
        let mut incident = incident.clone();
        self.inner.redactor.redact_incident(&mut incident);
        if let Err(e) = self.inner.store.save_incident(&incident).await {
            self.store_failed("save_incident", &e);
        }
    }

    /// Stores `action`, redacted: its output and error come from outside.
    pub(super) async fn save_action(&self, action: &ActionRecord) {
        let mut action = action.clone();
        self.inner.redactor.redact_action(&mut action);
        if let Err(e) = self.inner.store.save_action(&action).await {
            self.store_failed("save_action", &e);
        }
    }

    /// Stores `approval`, its plan and reason redacted (the plan that runs is the
    /// one in memory).
    pub(super) async fn save_approval(&self, approval: &crate::Approval) {
        let mut approval = approval.clone();
        self.inner.redactor.redact_plan(&mut approval.plan);
        self.inner.redactor.redact_in_place(&mut approval.reason);
        if let Err(e) = self.inner.store.save_approval(&approval).await {
            self.store_failed("save_approval", &e);
        }
    }
}
