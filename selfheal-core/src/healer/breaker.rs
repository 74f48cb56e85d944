//! The breaker on the healer itself: after N failed remediations across all targets
//! within a window, the healer stops acting until an operator re-arms it. Its state
//! lives in the store too (`control.rs`): failures are counted across the replicas that
//! share it, and a trip or a re-arm holds on all of them and across restarts.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;

use crate::BreakerConfig;

#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    failures: Mutex<VecDeque<Instant>>,
    open: AtomicBool,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            failures: Mutex::new(VecDeque::new()),
            open: AtomicBool::new(false),
        }
    }

    /// Counts a failed remediation; returns the failures in the window when this one
    /// tripped the breaker.
    pub(crate) fn failed(&self) -> Option<usize> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.push_back(now);
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.config.window)
        {
            failures.pop_front();
        }
        let n = failures.len();
        let trips =
            n >= self.config.max_failures as usize && !self.open.swap(true, Ordering::SeqCst);
        trips.then_some(n)
    }

    /// Whether the healer must not act.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// Closes the breaker and forgets the failures; `false` if it was not open.
    pub(crate) fn rearm(&self) -> bool {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.open.swap(false, Ordering::SeqCst)
    }

    /// Takes the state read from the store: open or not, and the failures (older
    /// ones than the window are dropped).
    pub(crate) fn replace(&self, open: bool, mut failures: Vec<Instant>) {
        let now = Instant::now();
        failures.retain(|t| now.saturating_duration_since(*t) <= self.config.window);
        failures.sort();
        *self.failures.lock().unwrap_or_else(|e| e.into_inner()) = failures.into();
        self.open.store(open, Ordering::SeqCst);
    }

    pub(crate) fn config(&self) -> &BreakerConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn trips_at_n_in_the_window_and_stays_open_until_rearmed() {
        let b = Breaker::new(BreakerConfig::default());
        for _ in 0..4 {
            assert_eq!(b.failed(), None);
        }
        // The first four age out of the hour: the fifth alone does not trip.
        tokio::time::advance(Duration::from_secs(3601)).await;
        assert_eq!(b.failed(), None);
        for _ in 0..3 {
            assert_eq!(b.failed(), None);
        }
        assert_eq!(b.failed(), Some(5));
        assert!(b.is_open());
        assert_eq!(b.failed(), None, "trips once");
        tokio::time::advance(Duration::from_secs(7200)).await;
        assert!(b.is_open(), "time alone does not re-arm it");
        assert!(b.rearm());
        assert!(!b.is_open());
        assert!(!b.rearm());
    }
}
