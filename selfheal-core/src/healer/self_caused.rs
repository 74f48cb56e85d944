//! Self-caused errors: while the healer acts on a target, errors on that target (and,
//! until the end of the validation window, on targets that depend on it) are what the
//! action itself causes (connection resets during a restart, refused connections of a
//! flushed pool). They are counted into the open incident, not opened as new ones.
//!
//! Once the action has ended, an error of a new fingerprint on the target itself is
//! not the action's: it counts against verification and goes through intake as usual.

use dashmap::DashMap;
use tokio::time::Instant;
use uuid::Uuid;

use super::Healer;
use crate::{AuditEntry, Phase, Signal};

/// The targets being acted on.
#[derive(Debug, Default)]
pub(crate) struct Acting {
    pub(super) targets: DashMap<String, ActingOn>,
}

/// One target being acted on.
#[derive(Debug)]
pub(super) struct ActingOn {
    /// The incident acting.
    pub(super) incident: Uuid,
    /// Errors counted into it as self-caused.
    count: u64,
    /// Whether the action has ended (its fix is being verified).
    ended: bool,
    /// The last new error on the target since the action ended: when, and its message.
    late: Option<(Instant, String)>,
}

impl Healer {
    /// Marks `target` as acted on by incident `id` (from the action to the end of
    /// its validation window).
    pub(super) fn start_acting(&self, id: Uuid, target: &str) {
        self.inner.acting.targets.insert(
            target.to_owned(),
            ActingOn {
                incident: id,
                count: 0,
                ended: false,
                late: None,
            },
        );
    }

    /// The action on `target` ended: from now on new errors on it are its own again.
    pub(super) fn action_ended(&self, target: &str) {
        if let Some(mut on) = self.inner.acting.targets.get_mut(target) {
            on.ended = true;
        }
    }

    /// A signal counted into incident `id`: when another incident's fix on the same
    /// target is being verified, it is a new error there and counts against it.
    pub(super) fn note_late_error(&self, id: Uuid, signal: &Signal) {
        if let Some(mut on) = self.inner.acting.targets.get_mut(&signal.target)
            && on.ended
            && on.incident != id
        {
            on.late = Some((Instant::now(), signal.message.clone()));
        }
    }

    /// The last error of a new fingerprint on `target` since its action ended.
    pub(super) fn late_error(&self, target: &str) -> Option<(Instant, String)> {
        self.inner.acting.targets.get(target)?.late.clone()
    }

    /// Ends the window of `target`; audits how many errors the action caused.
    pub(super) async fn stop_acting(&self, id: Uuid, target: &str) {
        let Some((_, on)) = self.inner.acting.targets.remove(target) else {
            return;
        };
        let count = on.count;
        if count == 0 {
            return;
        }
        self.audit(AuditEntry {
            incident: Some(id),
            detail: serde_json::json!({"target": target, "errors": count}),
            ..AuditEntry::new(
                "self_heal.self_caused",
                format!("{count} error(s) during the action and its validation counted into the incident"),
            )
        })
        .await;
    }

    /// Counts `signal` into the incident acting on its target or on one of the
    /// target's dependencies; `false` when no action is under way there, or when the
    /// signal is a new error on the acted-on target after its action ended (recorded
    /// against verification, not absorbed). Called only for fingerprints no open
    /// incident has.
    pub(super) fn count_self_caused(&self, signal: &Signal) -> bool {
        if self.inner.acting.targets.is_empty() {
            return false;
        }
        if let Some(mut on) = self.inner.acting.targets.get_mut(&signal.target)
            && on.ended
        {
            on.late = Some((Instant::now(), signal.message.clone()));
            return false;
        }
        if !self.inner.config.safety.self_caused {
            return false;
        }
        let acting = std::iter::once(&signal.target)
            .chain(self.inner.dependencies.of(&signal.target))
            .find_map(|t| {
                let mut on = self.inner.acting.targets.get_mut(t)?;
                on.count += 1;
                Some((on.incident, on.count, t.clone()))
            });
        let Some((id, count, acted_on)) = acting else {
            return false;
        };
        self.count_foreign(id, signal);
        if count == 1 {
            let incident = self.snapshot(id);
            self.emit(
                incident.as_ref(),
                &signal.target,
                Phase::SelfCaused,
                format!(
                    "errors on `{}` while the healer acts on `{acted_on}` are counted into this incident",
                    signal.target
                ),
            );
        }
        true
    }
}
