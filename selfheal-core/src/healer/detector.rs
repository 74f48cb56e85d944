//! Per-fingerprint sliding windows and the last time each fingerprint was seen.

use std::collections::VecDeque;
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

/// Most timestamps kept per fingerprint; thresholds above this are treated as this.
const MAX_KEPT: usize = 1_024;

#[derive(Debug, Default)]
pub(crate) struct Detector {
    windows: DashMap<String, Window>,
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

    /// When `fingerprint` was last seen.
    pub(crate) fn last_seen(&self, fingerprint: &str) -> Option<Instant> {
        self.windows.get(fingerprint).map(|w| w.last)
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
}
