//! Verification: after an action, poll the target's probe and the incident's
//! fingerprints until the errors stopped and the probe passes, or the validation window
//! ends. On a target other systems report alerts for, "the errors stopped" is the
//! alerts' resolution (`external.rs`), not quiet. The probe's verdict ([`Health::passed`]) is what counts; its usage score is
//! only recorded. Also the wait of a fix that needs its target reachable.

use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::Healer;
use super::external::AlertState;
use crate::{AuditEntry, Health, Phase};

/// The longest pause between two probes of a target a fix waits for.
const MAX_TARGET_POLL: Duration = Duration::from_secs(2);
/// The first pause; it doubles up to [`MAX_TARGET_POLL`].
const FIRST_TARGET_POLL: Duration = Duration::from_millis(250);
/// How long one probe may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// How verification of a fix ended.
#[derive(Debug)]
pub(super) enum Verdict {
    /// The errors stopped and the probe passed (or there is no verifier and the errors
    /// stayed away): the health score after, when a verifier is registered.
    Verified(Option<u8>),
    /// Nothing could verify it: no verifier for the target and no quiet check.
    Unverified(String),
    /// Not verified within the window: why, and the last health score.
    Failed(String, Option<u8>),
    /// The healer shut down while it verified.
    Interrupted,
}

/// Whether a fix that needs its target may run.
#[derive(Debug)]
pub(super) enum Reach {
    /// The probe passes (or there is no verifier to ask): run now.
    Ready,
    /// The probe did not pass within `verification.target_wait`: why.
    Unreachable(String),
    /// The healer shut down (or the incident went away) meanwhile.
    Cancelled,
}

impl Healer {
    /// Polls the target's probe and the incident's fingerprints until the errors stopped
    /// and the probe passes, or the window ends.
    pub(super) async fn verify(&self, id: Uuid, action_end: Instant) -> Verdict {
        let cfg = &self.inner.config.verification;
        let Some(target) = self.snapshot(id).map(|i| i.target) else {
            return Verdict::Failed("incident vanished".into(), None);
        };
        let alerted = self.inner.external.state(&target) != AlertState::Unknown;
        if cfg.quiet_for.is_zero() && !self.inner.verifiers.contains_key(&target) && !alerted {
            return Verdict::Unverified(format!(
                "no verifier for `{target}` and no quiet check (verification.quiet_for = 0): \
                 the fix ran but nothing can tell whether it worked"
            ));
        }
        let deadline = action_end + cfg.window;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(cfg.interval) => {}
                _ = self.inner.cancel.cancelled() => return Verdict::Interrupted,
            }
            let Some(incident) = self.snapshot(id) else {
                return Verdict::Failed("incident vanished".into(), None);
            };
            let probe = self.probe(&incident.target).await;
            let score = probe.as_ref().map(|h| h.score);
            let now = Instant::now();
            let own = self
                .last_sighting(&incident)
                .unwrap_or(action_end)
                .max(action_end);
            // An error of a new fingerprint on the target since the action ended counts
            // as much as the incident's own.
            let late = self.late_error(&incident.target);
            let last = late.as_ref().map_or(own, |(at, _)| own.max(*at));
            let quiet = now.saturating_duration_since(last) >= cfg.quiet_for;
            // Alerts on the target (external.rs): one still firing holds verification;
            // all resolved after the last error ended the error stream.
            let alerts = self.inner.external.state(&incident.target);
            let stopped = match &alerts {
                AlertState::Unknown => quiet,
                AlertState::Firing(_) => false,
                AlertState::Resolved(at) => *at >= last || quiet,
            };
            let passed = probe.as_ref().is_none_or(|h| h.passed);
            if passed && stopped {
                return Verdict::Verified(score);
            }
            if now >= deadline {
                let why = match (&probe, late, alerts) {
                    (Some(h), _, _) if !h.passed => format!(
                        "the probe of `{}` did not pass: {} (health {})",
                        incident.target, h.detail, h.score
                    ),
                    (_, _, AlertState::Firing(key)) => {
                        format!("the alert `{key}` on `{}` still fires", incident.target)
                    }
                    (_, Some((at, message)), _) if at > own => format!(
                        "a new error on `{}` since the action, {}s before the window ended: {message}",
                        incident.target,
                        now.saturating_duration_since(at).as_secs()
                    ),
                    _ => format!(
                        "the error recurred {}s before the window ended",
                        now.saturating_duration_since(last).as_secs()
                    ),
                };
                return Verdict::Failed(format!("verification failed: {why}"), score);
            }
        }
    }

    /// Waits until `target`'s probe passes, polling with back-off, for a fix that needs
    /// its target reachable. Without a verifier for the target there is nothing to wait
    /// for.
    pub(super) async fn wait_for_target(&self, id: Uuid, strategy: &str) -> Reach {
        let Some(incident) = self.snapshot(id) else {
            return Reach::Cancelled;
        };
        let target = incident.target.as_str();
        if !self.inner.verifiers.contains_key(target) {
            return Reach::Ready;
        }
        let wait = self.inner.config.verification.target_wait;
        let deadline = Instant::now() + wait;
        let mut pause = FIRST_TARGET_POLL;
        let mut announced = false;
        loop {
            let health = self
                .probe(target)
                .await
                .unwrap_or_else(|| Health::down("no verifier"));
            if health.passed {
                if announced {
                    tracing::info!(
                        target_system = target,
                        strategy,
                        "target is back; running the fix"
                    );
                }
                return Reach::Ready;
            }
            let now = Instant::now();
            if now >= deadline {
                return Reach::Unreachable(format!(
                    "`{strategy}` needs `{target}` reachable, and its probe did not pass within \
                     {wait:?} (verification.target_wait): {}",
                    health.detail
                ));
            }
            if !announced {
                announced = true;
                let what = format!(
                    "`{strategy}` needs `{target}` reachable; waiting up to {wait:?} for its \
                     probe to pass ({})",
                    health.detail
                );
                self.emit(
                    Some(&incident),
                    target,
                    Phase::WaitingForTarget,
                    what.clone(),
                );
                self.audit(AuditEntry {
                    incident: Some(id),
                    pattern: incident.pattern.clone(),
                    action: Some(strategy.to_owned()),
                    ..AuditEntry::new("self_heal.waiting_for_target", what)
                })
                .await;
            }
            tokio::select! {
                _ = tokio::time::sleep(pause.min(deadline - now)) => {}
                _ = self.inner.cancel.cancelled() => return Reach::Cancelled,
            }
            pause = (pause * 2).min(MAX_TARGET_POLL);
        }
    }

    /// The target's health, if a verifier is registered for it. A verifier that cannot
    /// check, or takes longer than 30 s, counts as down.
    pub(super) async fn probe(&self, target: &str) -> Option<Health> {
        let verifier = self.inner.verifiers.get(target)?;
        Some(
            match tokio::time::timeout(CHECK_TIMEOUT, verifier.check()).await {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => {
                    tracing::warn!(verifier = verifier.name(), error = %e, "health check failed");
                    Health::down(format!("check failed: {e}"))
                }
                Err(_) => Health::down(format!("no answer within {CHECK_TIMEOUT:?}")),
            },
        )
    }

    /// The target's health score, if a verifier is registered for it (recorded, not
    /// judged).
    pub(super) async fn health_score(&self, target: &str) -> Option<u8> {
        self.probe(target).await.map(|h| h.score)
    }
}
