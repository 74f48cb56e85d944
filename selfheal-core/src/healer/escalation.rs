//! One incident, one escalation. An escalated incident (or one whose fix a human
//! rejected, or one of an alert-only pattern) is not forgotten at once: its error's
//! further occurrences keep counting into it, the operators are reminded of an escalated
//! one on a back-off (`safety.escalation.renotify_after`) while it keeps occurring, and
//! only once it has been quiet for `safety.escalation.reopen_after_quiet` may the same
//! error open a new incident. Without this, every few errors after an escalation opened
//! a new incident that escalated again: a page every few seconds (and an alert-only
//! pattern's alert every few errors).

use tokio::time::Instant;
use uuid::Uuid;

use super::Healer;
use crate::{AuditEntry, IncidentStatus, Notification, Phase};

impl Healer {
    /// Whether the finished incident `id` stays open for counting: it escalated, a
    /// human rejected its fix, or its pattern is alert-only (it was alerted on).
    pub(super) fn stays_for_counting(&self, id: Uuid) -> bool {
        self.snapshot(id).is_some_and(|i| {
            i.status == IncidentStatus::Escalated
                || (i.status == IncidentStatus::Closed
                    && (i.reason.starts_with(REJECTED) || i.reason == ALERTED))
        })
    }

    /// Keeps the finished incident `id` counting its error until the error has been
    /// quiet for the configured period, reminding the operators of an escalated one on
    /// the back-off. Returns when the incident may be forgotten (or the healer stops).
    pub(super) async fn count_until_quiet(&self, id: Uuid) {
        let cfg = self.inner.config.safety.escalation.clone();
        let Some(start) = self.snapshot(id) else {
            return;
        };
        let remind = start.status == IncidentStatus::Escalated;
        let parked_at = Instant::now();
        // New distinct errors on the target open their own incident.
        self.inner
            .by_target
            .remove_if(&start.target, |_, v| *v == id);
        let mut counted = start.occurrences;
        let mut reminders = 0usize;
        let mut next_reminder = cfg
            .renotify_after
            .first()
            .filter(|_| remind)
            .map(|d| parked_at + *d);
        loop {
            let Some(incident) = self.snapshot(id) else {
                return;
            };
            let last = self
                .last_sighting(&incident)
                .unwrap_or(parked_at)
                .max(parked_at);
            let quiet_at = last + cfg.reopen_after_quiet;
            let now = Instant::now();
            if now >= quiet_at {
                let what = format!(
                    "its error was quiet for {}s; the same error may open a new incident",
                    cfg.reopen_after_quiet.as_secs()
                );
                self.emit(
                    Some(&incident),
                    &incident.target,
                    Phase::Quiet,
                    what.clone(),
                );
                self.save(&incident).await;
                self.audit(AuditEntry {
                    incident: Some(id),
                    pattern: incident.pattern.clone(),
                    detail: serde_json::json!({"occurrences": incident.occurrences}),
                    ..AuditEntry::new("self_heal.quiet", what)
                })
                .await;
                return;
            }
            if let Some(at) = next_reminder.filter(|at| now >= *at) {
                if incident.occurrences > counted {
                    self.remind(&incident, incident.occurrences - counted, at - parked_at)
                        .await;
                    counted = incident.occurrences;
                }
                reminders += 1;
                let delay = cfg
                    .renotify_after
                    .get(reminders)
                    .or(cfg.renotify_after.last())
                    .copied()
                    .unwrap_or(cfg.reopen_after_quiet);
                next_reminder = Some(now + delay);
            }
            // Held back only by an unhealthy dependency: once its probe passes, the
            // dependent's own failure gets a new incident (and a fix) at once.
            let blocked = self.inner.blocked_by.get(&id).map(|d| d.clone());
            if let Some(dep) = &blocked
                && self.probe_passes(dep).await
            {
                let what = format!(
                    "`{dep}` is healthy again; the next occurrence on `{}` opens a new incident",
                    incident.target
                );
                self.emit(
                    Some(&incident),
                    &incident.target,
                    Phase::Released,
                    what.clone(),
                );
                self.audit(AuditEntry {
                    incident: Some(id),
                    pattern: incident.pattern.clone(),
                    detail: serde_json::json!({"dependency": dep}),
                    ..AuditEntry::new("self_heal.released", what)
                })
                .await;
                return;
            }
            let mut wake = next_reminder.map_or(quiet_at, |r| r.min(quiet_at));
            if blocked.is_some() {
                wake = wake.min(Instant::now() + DEPENDENCY_POLL);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.inner.cancel.cancelled() => return,
            }
        }
    }

    /// An operator changed pattern `name`: finished incidents of that pattern (and of
    /// no pattern, which the change may now explain) stop counting, so the next
    /// occurrence is judged under the new definition.
    pub(super) fn release_counting(&self, name: &str) {
        self.release_where(|i| i.pattern.as_deref().is_none_or(|p| p == name));
    }

    /// An operator re-armed the breaker: every finished incident stops counting, so
    /// the next occurrence is acted on again.
    pub(super) fn release_all_counting(&self) {
        self.release_where(|_| true);
    }

    /// Forgets the finished incidents still counting that `which` picks.
    fn release_where(&self, which: impl Fn(&crate::Incident) -> bool) {
        let released: Vec<Uuid> = self
            .inner
            .open
            .iter()
            .filter(|i| i.status.is_terminal() && which(i))
            .map(|i| i.id)
            .collect();
        for id in released {
            self.forget(id);
        }
    }

    /// Reminds the operators that an escalated incident's error goes on.
    async fn remind(&self, incident: &crate::Incident, new: u64, since: std::time::Duration) {
        let what = format!(
            "still failing: {new} more occurrence(s) in the {}s since it escalated ({} in all); \
             it stays one incident until its error is quiet",
            since.as_secs(),
            incident.occurrences
        );
        self.emit(
            Some(incident),
            &incident.target,
            Phase::Reminded,
            what.clone(),
        );
        self.save(incident).await;
        self.audit(AuditEntry {
            incident: Some(incident.id),
            pattern: incident.pattern.clone(),
            detail: serde_json::json!({"new_occurrences": new, "occurrences": incident.occurrences}),
            ..AuditEntry::new("self_heal.reminded", what.clone())
        })
        .await;
        self.notify(Notification {
            title: format!("selfheal: still failing on {}", incident.target),
            body: format!(
                "{what}\nReason it escalated: {}\nTemplate: {}",
                incident.reason, incident.template
            ),
            incident: Some(incident.id),
            event_type: "self_heal.reminded".into(),
            links: Vec::new(),
        })
        .await;
    }
}

/// How often a dependent's escalated incident checks its dependency's probe.
const DEPENDENCY_POLL: std::time::Duration = std::time::Duration::from_secs(10);

/// How the reason of an incident whose fix a human rejected starts.
pub(super) const REJECTED: &str = "fix rejected";

/// The reason of an incident of an alert-only pattern, closed once alerted on.
pub(super) const ALERTED: &str = "alert-only pattern: notified, no action";
