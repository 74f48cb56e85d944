//! Back-off on repeat incidents: when the same fingerprint comes back on a target
//! after a "successful" fix, the cooldown of that (strategy, target) doubles, up to a
//! cap; a quiet period resets it. Enough repeats mean the fix masks the real issue.
//! The last fix per (strategy, target) is kept in the store too (`control.rs`), so
//! a restart or another replica does not start the count over.

use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use super::Healer;
use crate::{AuditEntry, BackoffConfig, Incident, Phase};

#[derive(Debug)]
pub(crate) struct Backoff {
    base: Duration,
    config: BackoffConfig,
    fixes: DashMap<(String, String), LastFix>,
}

/// A stored last fix: (strategy, target) and (fingerprint, when, repeats).
pub(crate) type StoredFix = ((String, String), (String, Instant, u32));

/// The last verified fix of one (strategy, target).
#[derive(Debug)]
struct LastFix {
    fingerprint: String,
    at: Instant,
    repeats: u32,
}

impl Backoff {
    /// `base` is the first cooldown (`guards.cooldown`).
    pub(crate) fn new(base: Duration, config: BackoffConfig) -> Self {
        Backoff {
            base,
            config,
            fixes: DashMap::new(),
        }
    }

    /// An incident with `fingerprint` on `target` is about to use `strategy`. Returns
    /// how many times in a row it came back after that strategy "fixed" it (0: it is
    /// not a repeat). Counting it makes the next cooldown longer.
    pub(crate) fn repeat(&self, strategy: &str, target: &str, fingerprint: &str) -> u32 {
        let key = (strategy.to_owned(), target.to_owned());
        let Some(mut last) = self.fixes.get_mut(&key) else {
            return 0;
        };
        if last.at.elapsed() >= self.config.reset_after {
            drop(last);
            self.fixes.remove(&key);
            return 0;
        }
        if last.fingerprint != fingerprint {
            return 0;
        }
        last.repeats += 1;
        last.repeats
    }

    /// The cooldown the next run of `strategy` on `target` starts: the base, doubled
    /// per repeat, capped.
    pub(crate) fn cooldown(&self, strategy: &str, target: &str) -> Duration {
        let repeats = self
            .fixes
            .get(&(strategy.to_owned(), target.to_owned()))
            .map_or(0, |l| l.repeats);
        let factor = 1u32.checked_shl(repeats).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.config.cap)
    }

    /// The last fix of `strategy` on `target`: its fingerprint, when, and the repeats.
    pub(crate) fn last_fix(&self, strategy: &str, target: &str) -> Option<(String, Instant, u32)> {
        self.fixes
            .get(&(strategy.to_owned(), target.to_owned()))
            .map(|l| (l.fingerprint.clone(), l.at, l.repeats))
    }

    /// Takes the last fixes read from the store; those older than the quiet period
    /// are dropped, and their keys returned.
    pub(crate) fn replace(&self, fixes: Vec<StoredFix>) -> Vec<(String, String)> {
        let mut stale = Vec::new();
        self.fixes.clear();
        for (key, (fingerprint, at, repeats)) in fixes {
            if at.elapsed() >= self.config.reset_after {
                stale.push(key);
                continue;
            }
            self.fixes.insert(
                key,
                LastFix {
                    fingerprint,
                    at,
                    repeats,
                },
            );
        }
        stale
    }

    /// Whether `repeats` means the fix masks the real issue.
    pub(crate) fn is_masking(&self, repeats: u32) -> bool {
        self.config.masking_after > 0 && repeats >= self.config.masking_after
    }

    /// `strategy` fixed `fingerprint` on `target` (verified). A fix of another
    /// fingerprint, or after the quiet period, starts a new count.
    pub(crate) fn fixed(&self, strategy: &str, target: &str, fingerprint: &str) {
        let key = (strategy.to_owned(), target.to_owned());
        let now = Instant::now();
        let mut last = self.fixes.entry(key).or_insert_with(|| LastFix {
            fingerprint: fingerprint.to_owned(),
            at: now,
            repeats: 0,
        });
        if last.fingerprint != fingerprint || now.duration_since(last.at) >= self.config.reset_after
        {
            last.fingerprint = fingerprint.to_owned();
            last.repeats = 0;
        }
        last.at = now;
    }
}

impl Healer {
    /// Starts the cooldown of `strategy` on the incident's target, backed off on
    /// repeats; a longer one than the base is announced and audited.
    pub(super) async fn start_backed_off_cooldown(&self, incident: &Incident, strategy: &str) {
        let length = self.inner.backoff.cooldown(strategy, &incident.target);
        if length <= self.inner.config.guards.cooldown {
            self.inner.guards.start_cooldown(strategy, &incident.target);
            return;
        }
        self.inner
            .guards
            .start_cooldown_for(strategy, &incident.target, length);
        let what = format!(
            "`{}` came back on `{}` after `{strategy}` fixed it; cooldown now {}s",
            incident.template,
            incident.target,
            length.as_secs()
        );
        self.emit(
            Some(incident),
            &incident.target,
            Phase::BackedOff,
            what.clone(),
        );
        self.audit(AuditEntry {
            incident: Some(incident.id),
            pattern: incident.pattern.clone(),
            action: Some(strategy.to_owned()),
            detail: serde_json::json!({"cooldown_secs": length.as_secs()}),
            ..AuditEntry::new("self_heal.backed_off", what)
        })
        .await;
    }

    /// The fix keeps "succeeding" while the error keeps returning: escalate.
    pub(super) async fn masking(&self, incident: &Incident, strategy: &str, repeats: u32) {
        let what = format!(
            "`{strategy}` \"fixed\" `{}` on `{}` but it came back {repeats} times in a row: \
             the fix is masking the real issue; find the root cause",
            incident.template, incident.target
        );
        self.audit(AuditEntry {
            incident: Some(incident.id),
            pattern: incident.pattern.clone(),
            action: Some(strategy.to_owned()),
            detail: serde_json::json!({"repeats": repeats}),
            ..AuditEntry::new("self_heal.masking", what.clone())
        })
        .await;
        self.escalate(incident.id, what).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::new(Duration::from_secs(600), BackoffConfig::default())
    }

    #[tokio::test(start_paused = true)]
    async fn doubles_per_repeat_up_to_the_cap() {
        let b = backoff();
        assert_eq!(b.repeat("restart", "db", "fp"), 0, "never fixed: no repeat");
        b.fixed("restart", "db", "fp");
        let mut seen = vec![b.cooldown("restart", "db").as_secs() / 60];
        for _ in 0..7 {
            tokio::time::advance(b.cooldown("restart", "db")).await;
            b.repeat("restart", "db", "fp");
            seen.push(b.cooldown("restart", "db").as_secs() / 60);
            b.fixed("restart", "db", "fp");
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 320, 360, 360]);
        assert!(b.is_masking(3) && !b.is_masking(2));
        assert_eq!(b.cooldown("restart", "cache"), Duration::from_secs(600));
    }

    #[tokio::test(start_paused = true)]
    async fn another_error_or_a_quiet_period_resets() {
        let b = backoff();
        b.fixed("restart", "db", "fp");
        assert_eq!(b.repeat("restart", "db", "other"), 0);
        assert_eq!(b.repeat("restart", "db", "fp"), 1);
        b.fixed("restart", "db", "fp");
        tokio::time::advance(Duration::from_secs(24 * 3600)).await;
        assert_eq!(b.repeat("restart", "db", "fp"), 0);
        assert_eq!(b.cooldown("restart", "db"), Duration::from_secs(600));
    }
}
