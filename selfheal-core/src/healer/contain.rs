//! Containment: a panic in a plug-in (strategy, executor, verifier, notifier,
//! advisor) never wedges an incident. The incident's task runs under
//! `catch_unwind`; a panic ends the incident (audited as `self_heal.failed` with the
//! panic message, then escalated), and a drop guard always forgets the incident, so
//! its error can be healed again and it never counts toward a storm as a zombie.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;
use uuid::Uuid;

use super::Healer;
use crate::{AuditEntry, Phase};

/// Forgets the incident when dropped: at the end of its task, on a panic, or when the
/// task is cancelled.
pub(super) struct ForgetOnDrop {
    healer: Healer,
    id: Uuid,
}

impl ForgetOnDrop {
    pub(super) fn new(healer: &Healer, id: Uuid) -> Self {
        ForgetOnDrop {
            healer: healer.clone(),
            id,
        }
    }
}

impl Drop for ForgetOnDrop {
    fn drop(&mut self) {
        let id = self.id;
        // An action cut short by a panic no longer counts errors as its own.
        self.healer
            .inner
            .acting
            .targets
            .retain(|_, acting| acting.incident != id);
        self.healer.forget(id);
    }
}

impl Healer {
    /// Runs `work` for incident `id`; a panic inside it ends the incident as failed.
    pub(super) async fn contained(&self, id: Uuid, work: impl Future<Output = ()>) {
        let Err(panic) = AssertUnwindSafe(work).catch_unwind().await else {
            return;
        };
        let message = panic_message(panic.as_ref()).to_owned();
        // Ending the incident goes through notifiers and the store, which may panic too.
        let ended = AssertUnwindSafe(self.end_panicked(id, &message))
            .catch_unwind()
            .await;
        if ended.is_err() {
            tracing::error!(incident = %id, panic = %message, "could not end the incident after a plug-in panicked");
        }
    }

    async fn end_panicked(&self, id: Uuid, message: &str) {
        tracing::error!(incident = %id, panic = %message, "a plug-in panicked; the incident ends as failed");
        let Some(incident) = self.snapshot(id) else {
            return;
        };
        let what = format!("failed: a plug-in panicked: {message}");
        self.emit(
            Some(&incident),
            &incident.target,
            Phase::Failed,
            what.clone(),
        );
        self.audit(AuditEntry {
            incident: Some(id),
            pattern: incident.pattern.clone(),
            detail: serde_json::json!({"panic": message}),
            ..AuditEntry::new("self_heal.failed", what.clone())
        })
        .await;
        self.escalate(
            id,
            format!("{what}; nothing more runs for this incident: fix or remove the plug-in"),
        )
        .await;
    }
}

/// The text a panic carried (`panic!("…")` gives a `&str` or a `String`).
pub(super) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}
