//! Guards that hold before anything runs: a global rate limit with a queue by severity,
//! cooldowns per (strategy, target), and one action at a time per target.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::{Quota, RateLimiter, state::InMemoryState, state::NotKeyed};
use tokio::sync::{Notify, OwnedMutexGuard, oneshot};
use tokio::time::Instant;

use crate::{GuardConfig, Severity};

/// governor's clock on tokio's time, so paused-time tests drive the rate limit too.
#[derive(Debug, Clone)]
pub(crate) struct TokioClock {
    start: Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Instant::now().duration_since(self.start)
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// The rate limit and its waiting line.
#[derive(Debug)]
pub(crate) struct Guards {
    limiter: Limiter,
    clock: TokioClock,
    queue: Mutex<BinaryHeap<Waiter>>,
    queued: Notify,
    seq: std::sync::atomic::AtomicU64,
    cooldowns: DashMap<(String, String), Instant>,
    targets: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    cooldown: Duration,
}

#[derive(Debug)]
struct Waiter {
    severity: Severity,
    seq: u64,
    permit: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    /// Highest severity first, then first come.
    fn cmp(&self, other: &Self) -> Ordering {
        self.severity
            .cmp(&other.severity)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// Whether an action may run now or must wait its turn.
pub(crate) enum Admission {
    Now,
    Queued(oneshot::Receiver<()>),
}

impl Guards {
    pub(crate) fn new(config: &GuardConfig) -> Self {
        let per_hour =
            NonZeroU32::new(config.max_actions_per_hour.max(1)).expect("max(1) is non-zero");
        let clock = TokioClock {
            start: Instant::now(),
        };
        Guards {
            limiter: RateLimiter::direct_with_clock(Quota::per_hour(per_hour), clock.clone()),
            clock,
            queue: Mutex::new(BinaryHeap::new()),
            queued: Notify::new(),
            seq: Default::default(),
            cooldowns: DashMap::new(),
            targets: DashMap::new(),
            cooldown: config.cooldown,
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, BinaryHeap<Waiter>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a rate-limit permit now, or joins the queue (by severity) for one.
    pub(crate) fn admit(&self, severity: Severity) -> Admission {
        let mut queue = self.queue();
        if queue.is_empty() && self.limiter.check().is_ok() {
            return Admission::Now;
        }
        let (tx, rx) = oneshot::channel();
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        queue.push(Waiter {
            severity,
            seq,
            permit: tx,
        });
        drop(queue);
        self.queued.notify_one();
        Admission::Queued(rx)
    }

    /// Hands permits to queued actions as the rate limit allows. Runs until cancelled.
    pub(crate) async fn dispatch(&self) {
        loop {
            let waiting = !self.queue().is_empty();
            if !waiting {
                self.queued.notified().await;
                continue;
            }
            match self.limiter.check() {
                Ok(()) => {
                    // Give the permit to the most severe live waiter; a waiter whose
                    // incident went away hands it on.
                    loop {
                        let Some(w) = self.queue().pop() else { break };
                        if w.permit.send(()).is_ok() {
                            break;
                        }
                    }
                }
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                }
            }
        }
    }

    /// When the cooldown of `strategy` on `target` ends, if it is running.
    pub(crate) fn cooling_until(&self, strategy: &str, target: &str) -> Option<Instant> {
        let key = (strategy.to_owned(), target.to_owned());
        let until = *self.cooldowns.get(&key)?;
        (until > Instant::now()).then_some(until)
    }

    /// Starts the cooldown of `strategy` on `target`.
    pub(crate) fn start_cooldown(&self, strategy: &str, target: &str) {
        self.start_cooldown_for(strategy, target, self.cooldown);
    }

    /// Starts a cooldown of `strategy` on `target` lasting `length` (the safety
    /// envelope's back-off makes it longer than the configured one on repeats).
    pub(crate) fn start_cooldown_for(&self, strategy: &str, target: &str, length: Duration) {
        self.cooldowns.insert(
            (strategy.to_owned(), target.to_owned()),
            Instant::now() + length,
        );
    }

    /// Waits until no other action runs on `target`, and holds it until the guard drops.
    pub(crate) async fn lock_target(&self, target: &str) -> OwnedMutexGuard<()> {
        let lock = self.targets.entry(target.to_owned()).or_default().clone();
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn queue_runs_most_severe_first_when_the_limit_allows() {
        let g = Arc::new(Guards::new(&GuardConfig {
            max_actions_per_hour: 1,
            ..Default::default()
        }));
        assert!(matches!(g.admit(Severity::Low), Admission::Now));
        let Admission::Queued(low) = g.admit(Severity::Low) else {
            panic!("should queue")
        };
        let Admission::Queued(high) = g.admit(Severity::Critical) else {
            panic!("should queue")
        };
        let dispatcher = tokio::spawn({
            let g = g.clone();
            async move { g.dispatch().await }
        });
        let start = Instant::now();
        high.await.unwrap();
        let first = start.elapsed();
        assert!(first >= Duration::from_secs(3500), "high waited {first:?}");
        low.await.unwrap();
        assert!(start.elapsed() >= first + Duration::from_secs(3500));
        dispatcher.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_expires() {
        let g = Guards::new(&GuardConfig::default());
        assert!(g.cooling_until("restart", "db").is_none());
        g.start_cooldown("restart", "db");
        assert!(g.cooling_until("restart", "db").is_some());
        assert!(g.cooling_until("restart", "cache").is_none());
        tokio::time::advance(Duration::from_secs(601)).await;
        assert!(g.cooling_until("restart", "db").is_none());
    }
}
