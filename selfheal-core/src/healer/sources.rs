//! Running the healer's [`Source`]s: each in a task of its own, restarted after a
//! back-off when it fails or panics, ended with the healer; and the tracked lane of the
//! intake that [`Feed::ingest`](crate::source::Feed::ingest) waits on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::Healer;
use super::contain::panic_message;
use crate::source::{Counters, Feed, NotIngested, SHUTDOWN_GRACE, Source, SourceStats};
use crate::{Signal, Store};

/// The first wait before a failed source runs again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A signal handed over by [`Feed::ingest`], with the answer it waits for.
pub(super) type Tracked = (Signal, oneshot::Sender<()>);

/// The healer's sources with their counters.
pub(super) struct Sources {
    pub(super) sources: Vec<(Arc<dyn Source>, Arc<Counters>)>,
    /// The tracked lane: bounded, so a source waits (never a host thread) while the
    /// intake is busy.
    pub(super) tracked_tx: mpsc::Sender<Tracked>,
    /// Taken by the intake when it starts.
    pub(super) tracked_rx: std::sync::Mutex<Option<mpsc::Receiver<Tracked>>>,
}

impl Sources {
    pub(super) fn new(sources: Vec<Arc<dyn Source>>, capacity: usize) -> Self {
        let (tracked_tx, tracked_rx) = mpsc::channel(capacity.max(1));
        Sources {
            sources: sources
                .into_iter()
                .map(|s| (s, Arc::new(Counters::default())))
                .collect(),
            tracked_tx,
            tracked_rx: std::sync::Mutex::new(Some(tracked_rx)),
        }
    }
}

impl Healer {
    /// Each source's counters, in the order they were added.
    pub fn sources(&self) -> Vec<SourceStats> {
        self.inner
            .sources
            .sources
            .iter()
            .map(|(s, c)| c.snapshot(s.name()))
            .collect()
    }

    /// [`Healer::observe`], saying whether the queue took the signal (the queue counts
    /// it as accepted or refused).
    #[inline]
    pub(crate) fn offer(&self, mut signal: Signal) -> bool {
        signal.bound();
        self.inner.queue.push(signal)
    }

    /// Queues a host event the tracing layer captured (see [`crate::HealerLayer`]).
    pub(crate) fn observe_event(
        &self,
        event: crate::layer::Captured,
        default_target: Option<&str>,
    ) -> bool {
        self.inner.queue.push_event(event, default_target)
    }

    /// Hands `signal` to the intake's tracked lane and waits until it was taken in.
    pub(crate) async fn ingest_tracked(&self, mut signal: Signal) -> Result<(), NotIngested> {
        self.inner.tracked.fetch_add(1, Ordering::Relaxed);
        signal.bound();
        let (done, taken) = oneshot::channel();
        let sent = tokio::select! {
            sent = self.inner.sources.tracked_tx.send((signal, done)) => sent.is_ok(),
            _ = self.inner.cancel.cancelled() => false,
        };
        if sent && taken.await.is_ok() {
            return Ok(());
        }
        self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        Err(NotIngested::Stopped)
    }

    /// The store, for a source's cursor.
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Starts every source in a task of its own (from [`Healer::spawn`]).
    pub(super) fn start_sources(&self) {
        for (source, counters) in &self.inner.sources.sources {
            let this = self.clone();
            let source = source.clone();
            let counters = counters.clone();
            self.inner.tasks.spawn(async move {
                let name: Arc<str> = source.name().into();
                let stopping = this.stopped();
                tokio::select! {
                    _ = this.supervise(source, counters) => {}
                    // A source ends by itself once the healer stops (its `run` watches
                    // `Feed::stopped`), after saving its place; one that does not is
                    // dropped after the grace.
                    _ = async {
                        stopping.await;
                        tokio::time::sleep(SHUTDOWN_GRACE).await;
                    } => {
                        tracing::warn!(source = %name, grace = ?SHUTDOWN_GRACE, "a source did not end when the healer stopped; dropped");
                    }
                }
            });
        }
    }

    /// Runs `source` until it returns `Ok(())`, restarting it after a failure or a
    /// panic with a back-off.
    async fn supervise(&self, source: Arc<dyn Source>, counters: Arc<Counters>) {
        let name: Arc<str> = source.name().into();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = tokio::time::Instant::now();
            let feed = Feed::new(self.clone(), name.clone(), counters.clone());
            let run = std::panic::AssertUnwindSafe(source.run(feed)).catch_unwind();
            let why = match run.await {
                Ok(Ok(())) => {
                    tracing::debug!(source = %name, "source ended");
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
            };
            if self.inner.cancel.is_cancelled() {
                tracing::debug!(source = %name, error = %why, "source failed while the healer stopped");
                return;
            }
            if started.elapsed() > MAX_BACKOFF {
                // It ran well for a while: this failure starts the back-off afresh.
                backoff = FIRST_BACKOFF;
            }
            let restarts = counters.restarts.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(
                source = %name,
                error = %why,
                restarts,
                retry_in = ?backoff,
                "a source failed; it runs again after a pause"
            );
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = self.inner.cancel.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use async_trait::async_trait;
    use tokio::sync::Notify;

    use super::*;
    use crate::source::Source;
    use crate::{Healer, MemoryStore};

    /// Ingests `n` signals, then waits for the healer to stop.
    struct Burst {
        n: usize,
        fed: Arc<Notify>,
    }

    #[async_trait]
    impl Source for Burst {
        fn name(&self) -> &str {
            "burst"
        }
        async fn run(&self, feed: Feed) -> crate::Result<()> {
            for _ in 0..self.n {
                feed.ingest(Signal::new("db", "connection refused"))
                    .await
                    .expect("taken in");
            }
            self.fed.notify_one();
            feed.stopped().await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_ingested_signal_has_been_taken_in_when_ingest_returns() {
        let fed = Arc::new(Notify::new());
        let healer = Healer::builder()
            .store(MemoryStore::new())
            .source(Burst {
                n: 3,
                fed: fed.clone(),
            })
            .build()
            .unwrap();
        let running = healer.spawn();
        fed.notified().await;
        // Below the default threshold nothing opens, but the intake counted each one
        // before its `ingest` returned.
        let key = super::super::occurrence_key("db", "");
        assert!(
            healer.inner.detector.last_seen_prefixed(&key).is_some(),
            "the intake saw the signals"
        );
        let stats = healer.sources();
        assert_eq!(stats.len(), 1);
        assert_eq!((stats[0].emitted, stats[0].dropped), (3, 0), "{stats:?}");
        assert_eq!(healer.observed(), 3);
        running.shutdown().await;
    }

    /// Panics on its first two runs, then emits and ends.
    struct Flaky {
        runs: AtomicU32,
    }

    #[async_trait]
    impl Source for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn run(&self, feed: Feed) -> crate::Result<()> {
            match self.runs.fetch_add(1, Ordering::SeqCst) {
                0 => panic!("a bug in a source"),
                1 => Err(crate::Error::invalid("upstream said no")),
                _ => {
                    feed.malformed("not a signal");
                    feed.emit(Signal::new("db", "connection refused"));
                    Ok(())
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_source_runs_again_after_a_back_off_and_the_healer_goes_on() {
        let healer = Healer::builder()
            .source(Flaky {
                runs: AtomicU32::new(0),
            })
            .build()
            .unwrap();
        let running = healer.spawn();
        // Paused time: the back-offs (1 s, then 2 s) pass as soon as every task idles.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let stats = &healer.sources()[0];
        assert_eq!(stats.restarts, 2, "{stats:?}");
        assert_eq!((stats.emitted, stats.malformed), (1, 1), "{stats:?}");
        assert_eq!(healer.observed(), 1);
        running.shutdown().await;
    }

    #[tokio::test]
    async fn ingest_after_shutdown_says_the_healer_stopped() {
        let healer = Healer::builder().build().unwrap();
        let running = healer.spawn();
        let feed = Feed::new(healer.clone(), "late".into(), Arc::default());
        running.shutdown().await;
        assert_eq!(
            feed.ingest(Signal::new("db", "x")).await,
            Err(NotIngested::Stopped)
        );
    }

    #[tokio::test]
    async fn a_cursor_survives_in_the_store() {
        let store: Arc<dyn crate::Store> = Arc::new(MemoryStore::new());
        let healer = Healer::builder().store_arc(store.clone()).build().unwrap();
        let feed = Feed::new(healer.clone(), "tail".into(), Arc::default());
        assert_eq!(feed.cursor().await, None);
        feed.save_cursor(&serde_json::json!({"offset": 42}))
            .await
            .unwrap();
        // A new healer on the same store (a restart) reads it back.
        let again = Healer::builder().store_arc(store).build().unwrap();
        let feed = Feed::new(again, "tail".into(), Arc::default());
        assert_eq!(feed.cursor().await, Some(serde_json::json!({"offset": 42})));
    }

    /// Saves a cursor once the healer stops.
    struct SavesAtStop;

    #[async_trait]
    impl Source for SavesAtStop {
        fn name(&self) -> &str {
            "saves"
        }
        async fn run(&self, feed: Feed) -> crate::Result<()> {
            feed.stopped().await;
            // Work that takes a moment after the stop: it is not cut short.
            tokio::task::yield_now().await;
            feed.save_cursor(&serde_json::json!({"offset": 7})).await
        }
    }

    #[tokio::test]
    async fn a_source_saves_its_place_when_the_healer_stops() {
        let store: Arc<dyn crate::Store> = Arc::new(MemoryStore::new());
        let healer = Healer::builder()
            .store_arc(store.clone())
            .source(SavesAtStop)
            .build()
            .unwrap();
        let running = healer.spawn();
        running.shutdown().await;
        let again = Healer::builder().store_arc(store).build().unwrap();
        let feed = Feed::new(again, "saves".into(), Arc::default());
        assert_eq!(feed.cursor().await, Some(serde_json::json!({"offset": 7})));
    }

    /// Never looks at `Feed::stopped`.
    struct Deaf;

    #[async_trait]
    impl Source for Deaf {
        fn name(&self) -> &str {
            "deaf"
        }
        async fn run(&self, _feed: Feed) -> crate::Result<()> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_that_ignores_the_stop_is_dropped_after_the_grace() {
        let healer = Healer::builder().source(Deaf).build().unwrap();
        let running = healer.spawn();
        let started = tokio::time::Instant::now();
        running.shutdown().await;
        assert!(started.elapsed() >= SHUTDOWN_GRACE);
        assert!(started.elapsed() < SHUTDOWN_GRACE * 2);
    }

    #[test]
    fn two_sources_with_one_name_are_refused() {
        let err = Healer::builder()
            .source(Flaky {
                runs: AtomicU32::new(0),
            })
            .source(Flaky {
                runs: AtomicU32::new(0),
            })
            .build()
            .unwrap_err();
        assert!(
            err.to_string().contains("two sources are named `flaky`"),
            "{err}"
        );
    }
}
