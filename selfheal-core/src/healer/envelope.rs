//! The safety envelope's gates on an incident's way: one when it opens (silence,
//! storm), one right before an action runs (silence, breaker, dependency, storm).
//! The pieces live beside it: `storm.rs`, `breaker.rs`, `backoff.rs`, `silence.rs`,
//! `dependency.rs`, `dry_run.rs`; this file wires them into the pipeline.

use super::admin::Admin;
use std::collections::BTreeSet;

use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

use super::Healer;
use crate::{AuditEntry, Error, ErrorKind, Incident, IncidentStatus, Notification, Phase, Result};

/// Where the safety envelope stands (see [`Admin::safety`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SafetyStatus {
    /// A storm is on: automatic remediation stopped until health recovers.
    pub storm: bool,
    /// Targets with an open incident of their own (not attributed to a dependency).
    pub unhealthy_targets: Vec<String>,
    /// Targets the healer has heard of (signals, verifiers, dependencies).
    pub known_targets: usize,
    /// The breaker tripped: nothing runs until [`Admin::rearm`].
    pub breaker_open: bool,
    /// The whole healer runs dry.
    pub dry_run: bool,
    /// Silences in force now.
    pub silences: usize,
}

impl Healer {
    /// Gate when an incident opens: `false` when it is over (silenced, recovered
    /// during a storm) or the healer stopped.
    pub(super) async fn admit(&self, id: Uuid) -> bool {
        !self.close_if_silenced(id).await && self.hold_during_storm(id).await
    }

    /// Gate right before an action runs: `false` when nothing may run.
    pub(super) async fn clear_to_run(&self, id: Uuid) -> bool {
        if self.close_if_silenced(id).await || self.attribute_to_dependency(id).await {
            return false;
        }
        if self.inner.breaker.is_open() {
            let b = self.inner.breaker.config();
            self.escalate(
                id,
                format!(
                    "the healer's breaker is open after {} failed remediations within {:?}; \
                     nothing runs until an operator re-arms it (Admin::rearm)",
                    b.max_failures, b.window
                ),
            )
            .await;
            return false;
        }
        self.hold_during_storm(id).await
    }

    async fn close_if_silenced(&self, id: Uuid) -> bool {
        let Some(incident) = self.snapshot(id) else {
            return false;
        };
        let Some(silence) = self.inner.silences.matching(
            &incident.target,
            incident.pattern.as_deref(),
            &incident.fingerprint,
        ) else {
            return false;
        };
        self.audit(AuditEntry {
            incident: Some(id),
            pattern: incident.pattern.clone(),
            detail: serde_json::json!({"silence": silence.to_string()}),
            ..AuditEntry::new("self_heal.silenced", "a silence is in force; nothing runs")
        })
        .await;
        self.close(
            id,
            IncidentStatus::Closed,
            format!("silence {silence} is in force; nothing runs"),
        )
        .await;
        true
    }

    /// Targets unhealthy now: those with an open incident, except `leaving` and those
    /// whose dependency has one (their failures are its failures).
    fn unhealthy_targets(&self, leaving: Option<Uuid>) -> BTreeSet<String> {
        let open: Vec<(Uuid, String)> = self
            .inner
            .open
            .iter()
            .filter(|i| !i.status.is_terminal() && Some(i.id) != leaving)
            .map(|i| (i.id, i.target.clone()))
            .collect();
        open.into_iter()
            .filter(|(_, target)| {
                self.dependency_incident(target)
                    .is_none_or(|dep| Some(dep) == leaving)
            })
            .map(|(_, target)| target)
            .collect()
    }

    /// Re-evaluates the storm; announces it starting or ending.
    async fn storm_check(&self, leaving: Option<Uuid>) -> bool {
        let unhealthy = self.unhealthy_targets(leaving);
        let storm = self.inner.storm.is_storm(unhealthy.len());
        match self.inner.storm.set(storm) {
            Some(true) => self.storm_tripped(&unhealthy).await,
            Some(false) => self.storm_cleared(unhealthy.len()).await,
            None => {}
        }
        storm
    }

    /// Waits while a storm is on. `true` when the incident may go on; `false` when
    /// its errors stopped meanwhile (it closes: nothing ran) or the healer stopped.
    async fn hold_during_storm(&self, id: Uuid) -> bool {
        let recovered_after = self.inner.storm.config().recovered_after;
        let mut held = false;
        loop {
            // A held incident whose errors stopped (and whose probe, if any, passes)
            // is over, storm or not.
            if held && let Some(incident) = self.snapshot(id) {
                let last = self.last_sighting(&incident).unwrap_or_else(Instant::now);
                let quiet = Instant::now().saturating_duration_since(last);
                if quiet >= recovered_after && self.probe_passes(&incident.target).await {
                    self.close(
                        id,
                        IncidentStatus::Closed,
                        format!("its errors stopped for {quiet:?} during the storm; nothing ran"),
                    )
                    .await;
                    self.storm_check(Some(id)).await;
                    return false;
                }
            }
            if !self.storm_check(None).await {
                return true;
            }
            let Some(incident) = self.snapshot(id) else {
                return false;
            };
            if !held {
                held = true;
                let why = "held: a storm is on, automatic remediation stopped";
                self.set_status(id, IncidentStatus::Open, Some(why.into()))
                    .await;
                self.emit(Some(&incident), &incident.target, Phase::Held, why);
                self.audit(AuditEntry {
                    incident: Some(id),
                    pattern: incident.pattern.clone(),
                    ..AuditEntry::new("self_heal.held", why)
                })
                .await;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.config.verification.interval) => {}
                _ = self.inner.cancel.cancelled() => return false,
            }
        }
    }

    /// Whether `target`'s verifier (if it has one) says its probe passes.
    pub(super) async fn probe_passes(&self, target: &str) -> bool {
        self.probe(target).await.is_none_or(|h| h.passed)
    }

    /// When one of the incident's fingerprints was last seen on its target.
    pub(super) fn last_sighting(&self, incident: &Incident) -> Option<Instant> {
        std::iter::once(&incident.fingerprint)
            .chain(&incident.related)
            .filter_map(|fp| {
                self.inner
                    .detector
                    .last_seen(&super::occurrence_key(&incident.target, fp))
            })
            .max()
    }

    async fn storm_tripped(&self, unhealthy: &BTreeSet<String>) {
        let known = self.inner.storm.known().max(unhealthy.len());
        let list: Vec<&str> = unhealthy.iter().map(String::as_str).collect();
        let what = format!(
            "{} of {known} known targets are unhealthy at once ({}); a common cause is likely, \
             so automatic remediation stopped until health recovers",
            unhealthy.len(),
            list.join(", ")
        );
        tracing::warn!(
            unhealthy = unhealthy.len(),
            known,
            "storm: remediation stopped"
        );
        let title = format!(
            "selfheal: {} targets failing at once, remediation stopped",
            unhealthy.len()
        );
        let detail = serde_json::json!({"unhealthy": list, "known": known});
        // The one escalation of the storm: the incidents it holds do not escalate each.
        self.announce(
            Phase::StormTripped,
            "self_heal.storm_tripped",
            "self_heal.escalated",
            title,
            what,
            detail,
        )
        .await;
    }

    async fn storm_cleared(&self, unhealthy: usize) {
        let what = format!("{unhealthy} target(s) unhealthy now; automatic remediation re-armed");
        let detail = serde_json::json!({"unhealthy": unhealthy});
        let title = "selfheal: storm over, remediation re-armed".to_owned();
        self.announce(
            Phase::StormCleared,
            "self_heal.storm_cleared",
            "self_heal.storm_cleared",
            title,
            what,
            detail,
        )
        .await;
    }

    /// Counts a failed remediation into the breaker; trips it at the threshold.
    pub(super) async fn remediation_failed(&self) {
        let Some(failures) = self.breaker_failed().await else {
            return;
        };
        let b = self.inner.breaker.config();
        let what = format!(
            "{failures} remediations failed within {:?}; the healer stopped acting until an \
             operator re-arms it (Admin::rearm)",
            b.window
        );
        tracing::error!(failures, "breaker tripped: the healer stopped acting");
        let detail = serde_json::json!({"failures": failures, "window_secs": b.window.as_secs()});
        let title = "selfheal: breaker tripped, the healer stopped acting".to_owned();
        self.announce(
            Phase::BreakerTripped,
            "self_heal.breaker_tripped",
            "self_heal.breaker_tripped",
            title,
            what,
            detail,
        )
        .await;
    }

    /// A healer-wide change, on the stream, in the audit trail and to the notifiers.
    async fn announce(
        &self,
        phase: Phase,
        event_type: &str,
        notification_type: &str,
        title: String,
        what: String,
        detail: serde_json::Value,
    ) {
        self.emit(None, "*", phase, what.clone());
        self.audit(AuditEntry {
            detail,
            ..AuditEntry::new(event_type, what.clone())
        })
        .await;
        self.notify(Notification {
            title,
            body: what,
            incident: None,
            event_type: notification_type.to_owned(),
            links: Vec::new(),
        })
        .await;
    }
}

impl Admin {
    /// Where the safety envelope stands, for operators and admin endpoints.
    pub fn safety(&self) -> SafetyStatus {
        SafetyStatus {
            storm: self.healer.inner.storm.active(),
            unhealthy_targets: self.healer.unhealthy_targets(None).into_iter().collect(),
            known_targets: self.healer.inner.storm.known(),
            breaker_open: self.healer.inner.breaker.is_open(),
            dry_run: self.is_dry_run(None),
            silences: self.silences().iter().filter(|s| s.active).count(),
        }
    }

    /// Whether the healer's breaker is open (it acts on nothing until re-armed).
    pub fn breaker_open(&self) -> bool {
        self.healer.inner.breaker.is_open()
    }

    /// Whether a storm is on (automatic remediation stopped until health recovers).
    pub fn storm_active(&self) -> bool {
        self.healer.inner.storm.active()
    }

    /// Re-arms the healer after its breaker tripped; `actor` is audited. Refused when
    /// the breaker is not open.
    pub async fn rearm(&self, actor: &str) -> Result<()> {
        if !self.healer.breaker_rearm().await {
            return Err(Error::new(
                ErrorKind::Conflict,
                "the healer's breaker is not open; nothing to re-arm",
            ));
        }
        self.healer.release_all_counting();
        self.healer.emit_with(
            None,
            "*",
            Phase::BreakerRearmed,
            format!("by {actor}"),
            crate::EventData {
                actor: Some(actor.to_owned()),
                ..crate::EventData::default()
            },
        );
        self.healer
            .audit(AuditEntry {
                actor: actor.to_owned(),
                ..AuditEntry::new("self_heal.breaker_rearmed", "the healer acts again")
            })
            .await;
        Ok(())
    }

    /// The cooldown the next run of `strategy` on `target` would start: the base,
    /// doubled per repeat incident, capped.
    pub fn next_cooldown(&self, strategy: &str, target: &str) -> std::time::Duration {
        self.healer.inner.backoff.cooldown(strategy, target)
    }
}
