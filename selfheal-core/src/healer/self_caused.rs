//! Self-caused errors: while the healer acts on a target and validates the fix,
//! errors on that target (and on targets that depend on it) are what the action
//! itself causes (connection resets during a restart, refused connections of a
//! flushed pool). They are counted into the open incident, not opened as new ones.

use dashmap::DashMap;
use uuid::Uuid;

use super::Healer;
use crate::{AuditEntry, Phase, Signal};

/// The targets being acted on, with the incident and the errors counted so far.
#[derive(Debug, Default)]
pub(crate) struct Acting {
    pub(super) targets: DashMap<String, (Uuid, u64)>,
}

impl Healer {
    /// Marks `target` as acted on by incident `id` (from the action to the end of
    /// its validation window).
    pub(super) fn start_acting(&self, id: Uuid, target: &str) {
        if self.inner.config.safety.self_caused {
            self.inner.acting.targets.insert(target.to_owned(), (id, 0));
        }
    }

    /// Ends the window of `target`; audits how many errors the action caused.
    pub(super) async fn stop_acting(&self, id: Uuid, target: &str) {
        let Some((_, (_, count))) = self.inner.acting.targets.remove(target) else {
            return;
        };
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
    /// target's dependencies; `false` when no action is under way there.
    pub(super) fn count_self_caused(&self, signal: &Signal) -> bool {
        if self.inner.acting.targets.is_empty() {
            return false;
        }
        let acting = std::iter::once(&signal.target)
            .chain(self.inner.dependencies.of(&signal.target))
            .find_map(|t| {
                let mut entry = self.inner.acting.targets.get_mut(t)?;
                entry.1 += 1;
                Some((entry.0, entry.1, t.clone()))
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
