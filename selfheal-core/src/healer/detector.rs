//! Per-fingerprint sliding windows and the last time each fingerprint was seen.

use std::collections::VecDeque;
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

/// Most timestamps kept per fingerprint; thresholds above this are treated as this.
const MAX_KEPT: usize = 1_024;
/// Fingerprints tracked before the ones not seen for [`IDLE`] are forgotten.
const MAX_TRACKED: usize = 100_000;
/// How long an unseen fingerprint is kept once the map is over [`MAX_TRACKED`].
const IDLE: Duration = Duration::from_secs(3_600);

#[derive(Debug)]
pub(crate) struct Detector {
    windows: DashMap<String, Window>,
    max_tracked: usize,
}

impl Default for Detector {
    fn default() -> Self {
        Detector {
            windows: DashMap::new(),
            max_tracked: MAX_TRACKED,
        }
    }
}

#[derive(Debug)]
struct Window {
    times: VecDeque<Instant>,
    last: Instant,
}

impl Detector {
    /// Records one occurrence of `fingerprint` at `now` and returns how many fall
    /// within `window`.
    pub(crate) fn record(&self, fingerprint: &str, now: Instant, window: Duration) -> usize {
        if self.windows.len() >= self.max_tracked && !self.windows.contains_key(fingerprint) {
            self.prune(now);
        }
        let mut w = self
            .windows
            .entry(fingerprint.to_owned())
            .or_insert_with(|| Window {
                times: VecDeque::new(),
                last: now,
            });
        w.last = now;
        w.times.push_back(now);
        while w
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
            || w.times.len() > MAX_KEPT
        {
            w.times.pop_front();
        }
        w.times.len()
    }

    /// Keeps memory bounded when messages carry unique values nobody masked: forgets
    /// fingerprints idle for an hour, then, if still over half the cap, the least
    /// recently seen half. Runs at most once per `max_tracked / 2` new fingerprints.
    fn prune(&self, now: Instant) {
        self.windows
            .retain(|_, w| now.duration_since(w.last) < IDLE);
        let keep = self.max_tracked / 2;
        if self.windows.len() > keep {
            let mut lasts: Vec<Instant> = self.windows.iter().map(|w| w.last).collect();
            let drop = lasts.len() - keep;
            let (_, cut, _) = lasts.select_nth_unstable(drop);
            let cut = *cut;
            self.windows.retain(|_, w| w.last >= cut);
        }
        tracing::debug!(tracked = self.windows.len(), "pruned fingerprint windows");
    }

    /// When `fingerprint` was last seen.
    pub(crate) fn last_seen(&self, fingerprint: &str) -> Option<Instant> {
        self.windows.get(fingerprint).map(|w| w.last)
    }

    /// The last sighting of any key starting with `prefix` (all of one target's
    /// fingerprints). Scans every tracked key: for occasional probes, not the hot path.
    pub(crate) fn last_seen_prefixed(&self, prefix: &str) -> Option<Instant> {
        self.windows
            .iter()
            .filter(|e| e.key().starts_with(prefix))
            .map(|e| e.value().last)
            .max()
    }

    /// Empties the window of `fingerprint` (its incident closed): a new incident needs
    /// a new run of occurrences. The last sighting is kept.
    pub(crate) fn reset(&self, fingerprint: &str) {
        if let Some(mut w) = self.windows.get_mut(fingerprint) {
            w.times.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_only_within_the_window() {
        let d = Detector::default();
        let w = Duration::from_secs(60);
        assert_eq!(d.record("a", Instant::now(), w), 1);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(d.record("a", Instant::now(), w), 2);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(d.record("a", Instant::now(), w), 2);
        assert_eq!(d.record("b", Instant::now(), w), 1);
        d.reset("a");
        assert_eq!(d.record("a", Instant::now(), w), 1);
        assert_eq!(d.last_seen("a"), Some(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn memory_stays_bounded_and_recent_fingerprints_survive() {
        let d = Detector {
            windows: DashMap::new(),
            max_tracked: 100,
        };
        let w = Duration::from_secs(60);
        for i in 0..1_000 {
            d.record(&format!("unique-{i}"), Instant::now(), w);
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        assert!(d.windows.len() <= 100, "{} tracked", d.windows.len());
        assert!(d.last_seen("unique-999").is_some());
        assert!(d.last_seen("unique-0").is_none());
    }
}
