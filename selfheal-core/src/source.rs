//! Sources: what feeds a healer besides its own process (log files, Loki, Alertmanager,
//! a message stream).
//!
//! A [`Source`] runs as a task of the healer: it starts with [`Healer::spawn`] and
//! stops with [`Running::shutdown`](crate::Running::shutdown). It hands signals over
//! through its [`Feed`], which never blocks the host:
//!
//! - [`Feed::emit`] queues a signal on the healer's bounded intake queue, like
//!   [`Healer::observe`], and counts it as emitted or dropped;
//! - [`Feed::ingest`] waits until the intake has taken the signal in (fingerprinted,
//!   matched, counted into an incident), for sources that acknowledge upstream only
//!   then (a message stream redelivers what was never acknowledged);
//! - [`Feed::malformed`] counts an input it could not read, and logs it without
//!   flooding the log, so bad input costs that input only.
//!
//! When the healer stops, [`Feed::stopped`] resolves and the source's `run` ends by
//! itself: it may first save its place ([`Feed::save_cursor`], an acknowledgement), for
//! up to [`SHUTDOWN_GRACE`]; a source still
//! running after that is dropped.
//!
//! A source whose `run` returns an error or panics is started again after a back-off
//! (1 s, doubling to 1 min), and counted in [`SourceStats::restarts`]; one that returns
//! `Ok(())` is done. [`Healer::sources`] lists each source's counters.
//!
//! ```
//! use selfheal_core::source::{Feed, Source};
//! use selfheal_core::{Healer, Signal};
//!
//! /// Emits one signal, then waits for the healer to stop.
//! struct Once;
//!
//! #[async_trait::async_trait]
//! impl Source for Once {
//!     fn name(&self) -> &str {
//!         "once"
//!     }
//!     async fn run(&self, feed: Feed) -> selfheal_core::Result<()> {
//!         feed.emit(Signal::new("db", "connection refused"));
//!         feed.stopped().await;
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let healer = Healer::builder().source(Once).build().unwrap();
//! let running = healer.spawn();
//! // ...
//! running.shutdown().await;
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::{Healer, Result, Signal};

/// How long a source's `run` may go on once the healer stops, to save its place (a
/// cursor, an acknowledgement) before it is dropped.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A producer of signals that runs beside the healer. See the [module docs](self).
#[async_trait]
pub trait Source: Send + Sync + 'static {
    /// A name unique among the healer's sources: in logs, in [`Healer::sources`], and
    /// as the key of the source's stored cursor.
    fn name(&self) -> &str;

    /// Reads until the healer stops ([`Feed::stopped`]) and hands what it reads to
    /// `feed`. An error or a panic restarts it after a back-off; `Ok(())` ends it.
    async fn run(&self, feed: Feed) -> Result<()>;
}

/// What one source has done, counted since the healer was built.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceStats {
    /// The source's name.
    pub name: String,
    /// Signals the healer's queue took (by [`Feed::emit`] or [`Feed::ingest`]).
    pub emitted: u64,
    /// Signals the queue refused (full, or the target over its share) or the healer
    /// stopped before taking in.
    pub dropped: u64,
    /// Inputs the source could not read (not UTF-8, wrong shape, too long, …).
    pub malformed: u64,
    /// Times `run` failed or panicked and was started again.
    pub restarts: u64,
}

/// The counters behind [`SourceStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    emitted: AtomicU64,
    dropped: AtomicU64,
    malformed: AtomicU64,
    pub(crate) restarts: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self, name: &str) -> SourceStats {
        SourceStats {
            name: name.to_owned(),
            emitted: self.emitted.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }
}

/// Why [`Feed::ingest`] did not take a signal in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotIngested {
    /// The healer stopped before taking the signal in.
    Stopped,
}

impl std::fmt::Display for NotIngested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotIngested::Stopped => f.write_str("the healer stopped before taking the signal in"),
        }
    }
}

impl std::error::Error for NotIngested {}

/// A source's handle on the healer: hands signals over, counts, stores its cursor.
/// Cheap to clone.
#[derive(Clone)]
pub struct Feed {
    healer: Healer,
    name: Arc<str>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").field("source", &self.name).finish()
    }
}

/// The control-state key of a source's cursor.
fn cursor_key(source: &str) -> String {
    format!("source/cursor/{source}")
}

impl Feed {
    pub(crate) fn new(healer: Healer, name: Arc<str>, counters: Arc<Counters>) -> Self {
        Feed {
            healer,
            name,
            counters,
        }
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues `signal` for the healer without waiting; `false` when the queue refused
    /// it (counted in [`SourceStats::dropped`] and [`Healer::dropped`]).
    pub fn emit(&self, signal: Signal) -> bool {
        let accepted = self.healer.offer(signal);
        let counter = if accepted {
            &self.counters.emitted
        } else {
            &self.counters.dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
        accepted
    }

    /// Hands `signal` to the intake and waits until it has been taken in: fingerprinted,
    /// matched and counted (an incident it opens has been started). For sources that
    /// acknowledge upstream only after that. Waits while the intake is busy with other
    /// signals (at most `intake.queue_capacity` tracked signals wait at once), never
    /// blocking a thread.
    pub async fn ingest(&self, signal: Signal) -> std::result::Result<(), NotIngested> {
        let taken = self.healer.ingest_tracked(signal).await;
        let counter = if taken.is_ok() {
            &self.counters.emitted
        } else {
            &self.counters.dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
        taken
    }

    /// Counts an input the source could not read and logs `why` (never the input
    /// itself, which may hold secrets): the first few, then every 1024th.
    pub fn malformed(&self, why: &str) {
        let n = self.counters.malformed.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 4 || n.is_power_of_two() || n.is_multiple_of(1024) {
            tracing::warn!(
                source = %self.name,
                malformed = n,
                why,
                "a source skipped an input it could not read"
            );
        }
    }

    /// Resolves when the healer is shutting down: a source's `run` ends then.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.healer.stopped()
    }

    /// The cursor this source saved last ([`Feed::save_cursor`]), so a restart neither
    /// reads again nor skips. `None` when it saved none or the store could not say
    /// (logged).
    pub async fn cursor(&self) -> Option<Value> {
        let key = cursor_key(&self.name);
        match self.healer.store().list_control(&key).await {
            Ok(rows) => rows.into_iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            Err(e) => {
                tracing::warn!(source = %self.name, error = %e, "could not read the source's cursor; starting without it");
                None
            }
        }
    }

    /// Saves the source's cursor in the store's control state (any JSON document).
    pub async fn save_cursor(&self, cursor: &Value) -> Result<()> {
        self.healer
            .store()
            .put_control(&cursor_key(&self.name), cursor)
            .await
    }

    /// The healer, for what a feed does not cover.
    pub fn healer(&self) -> &Healer {
        &self.healer
    }
}
