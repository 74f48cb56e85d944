//! Verification: after an action, poll the target's health and the incident's
//! fingerprints until both are good or the validation window ends.

use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::{Healer, fmt_health};

impl Healer {
    /// Polls health and the incident's fingerprints until both are good or the window ends.
    pub(super) async fn verify(
        &self,
        id: Uuid,
        action_end: Instant,
    ) -> Result<Option<u8>, (String, Option<u8>)> {
        let cfg = &self.inner.config.verification;
        let deadline = action_end + cfg.window;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(cfg.interval) => {}
                _ = self.inner.cancel.cancelled() => return Err(("healer shut down during verification".into(), None)),
            }
            let Some(incident) = self.snapshot(id) else {
                return Err(("incident vanished".into(), None));
            };
            let health = self.health_score(&incident.target).await;
            let now = Instant::now();
            let last = self
                .last_sighting(&incident)
                .unwrap_or(action_end)
                .max(action_end);
            let quiet = now.saturating_duration_since(last) >= cfg.quiet_for;
            let healthy = health.is_none_or(|h| h >= cfg.min_health);
            if healthy && quiet {
                return Ok(health);
            }
            if now >= deadline {
                let why = if healthy {
                    format!(
                        "the error recurred {}s before the window ended",
                        now.saturating_duration_since(last).as_secs()
                    )
                } else {
                    format!(
                        "health {} stayed under {}",
                        fmt_health(health),
                        cfg.min_health
                    )
                };
                return Err((format!("verification failed: {why}"), health));
            }
        }
    }

    /// The target's health score, if a verifier is registered for it. A verifier that
    /// cannot check counts as 0.
    pub(super) async fn health_score(&self, target: &str) -> Option<u8> {
        let verifier = self.inner.verifiers.get(target)?;
        match tokio::time::timeout(Duration::from_secs(30), verifier.check()).await {
            Ok(Ok(h)) => Some(h.score),
            Ok(Err(e)) => {
                tracing::warn!(verifier = verifier.name(), error = %e, "health check failed");
                Some(0)
            }
            Err(_) => Some(0),
        }
    }
}
