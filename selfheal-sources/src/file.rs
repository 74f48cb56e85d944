//! Follows log files like `tail -F` (feature `file`): [`FileTail`].
//!
//! - **Which files**: paths and glob patterns (`/var/log/app/*.log`, `**` too). A glob
//!   is expanded again every [`rescan_interval`](FileTail::rescan_interval), and at
//!   once when the platform's watcher says files came or went, so new files are
//!   followed; a plain path is followed even before it exists.
//! - **When**: the platform's file watcher (inotify, FSEvents, kqueue, through the
//!   `notify` crate) wakes the tail when a watched directory changes; it also reads
//!   every [`poll_interval`](FileTail::poll_interval) whatever the watcher says, which
//!   is all it does where there is no watcher (or with
//!   [`watch(false)`](FileTail::watch), for file systems that send no events, such as
//!   NFS).
//! - **Where it starts**: where it stopped, from the cursor it keeps in the store
//!   ([`Feed::cursor`]): per path, the file's identity (device, inode and a hash of its first bytes) and the offset
//!   up to which every line was handed over (a signal still waiting for more of its
//!   trace, or a line without its line break yet, is read again after a restart, never
//!   skipped). Without a cursor a file that is already there is read from its end
//!   (what it holds is history; [`from_start`](FileTail::from_start) reads it whole),
//!   and a file that appears later from its start. When the file at a path is another
//!   one than the cursor says (rotated while the tail was stopped), the old one is
//!   looked for in the same directory by its identity (`app.log.1`) and read from the
//!   stored offset to its end first; when it is gone (compressed, deleted), the new
//!   one is read from its start and what the old one got after the stored offset is
//!   lost (logged). The cursor is saved every
//!   [`cursor_interval`](FileTail::cursor_interval) when it moved, and when the healer
//!   stops.
//! - **Rotation** (`mv app.log app.log.1` and a new `app.log`): the old file is read to
//!   its end, then the new one from its start. A file that shows up at another path
//!   (a glob matching `app.log.1` too) is never read twice: files are known by identity.
//!   **Truncation** (`copytruncate`, `> app.log`): a file shorter than the offset read
//!   is read again from its start (a file truncated and written past the old offset
//!   between two reads cannot be told from one that grew; `tail -F` has the same
//!   blind spot). A file deleted with no new one is closed (its space is freed).
//! - **Bad input**: a line that is not UTF-8 is read lossily (each bad sequence becomes
//!   U+FFFD) and counted as malformed, so an error line with one bad byte still
//!   counts; a line over [`max_line_bytes`](FileTail::max_line_bytes) is cut there, the
//!   rest of it dropped as it is read (never buffered) and counted as malformed. A file
//!   that cannot be read is logged once and tried again; the tail goes on with the
//!   others.
//!
//! Lines become signals with [`lines`](crate::lines) (JSON, logfmt, plain text; stack
//! traces joined), one joiner per file, and are handed over with [`Feed::ingest`]: a
//! busy healer slows the tail down rather than losing lines.

mod cursor;
mod discover;
mod follow;
mod state;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use selfheal_core::source::{Feed, Source};
use selfheal_core::{Error, ErrorKind, MAX_MESSAGE_BYTES};
use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::StatsWatch;
use crate::lines::LineParser;
use cursor::Cursor;
use discover::Watch;
use state::State;

/// The least time between two passes.
const MIN_PASS_GAP: Duration = Duration::from_millis(10);

/// What a [`FileTail`] has done since its source started (see [`FileTail::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TailStats {
    /// Paths with a file open now.
    pub files: usize,
    /// Whether the platform's watcher watches a directory of the patterns (else the
    /// tail only polls).
    pub watching: bool,
    /// Lines read.
    pub lines: u64,
    /// Signals handed over (taken in by the healer's intake).
    pub signals: u64,
    /// Rotations followed (a new file at a path).
    pub rotations: u64,
    /// Truncations followed (a file read again from its start).
    pub truncations: u64,
    /// Lines cut at [`FileTail::max_line_bytes`].
    pub cut_lines: u64,
    /// Lines that were not UTF-8 (read lossily).
    pub invalid_utf8: u64,
    /// Times the cursor was saved in the store.
    pub cursor_saves: u64,
    /// Passes over the files.
    pub passes: u64,
}

/// How a [`FileTail`] reads (what its builder methods set).
#[derive(Debug, Clone)]
struct Settings {
    patterns: Vec<String>,
    parser: Option<LineParser>,
    target: Option<String>,
    poll_interval: Duration,
    rescan_interval: Duration,
    idle_flush: Duration,
    cursor_interval: Duration,
    max_line_bytes: usize,
    max_files: usize,
    watch: bool,
    from_start: bool,
}

impl Settings {
    /// Whether `path` is one the patterns name.
    fn matches(&self, path: &Path) -> bool {
        self.patterns.iter().any(|p| {
            if discover::is_glob(p) {
                glob::Pattern::new(p).is_ok_and(|g| g.matches_path(path))
            } else {
                Path::new(p) == path
            }
        })
    }
}

/// A [`Source`] that follows log files like `tail -F`; see the [module docs](self).
///
/// ```no_run
/// use selfheal_core::Healer;
/// use selfheal_sources::file::FileTail;
///
/// # fn main() -> selfheal_core::Result<()> {
/// let healer = Healer::builder()
///     .source(FileTail::new("/var/log/orders/*.log").target("orders"))
///     .build()?;
/// # drop(healer); Ok(()) }
/// ```
#[derive(Debug)]
pub struct FileTail {
    name: String,
    settings: Settings,
    stats: watch::Sender<TailStats>,
}

impl FileTail {
    /// A tail of `pattern`: a path, or a glob (`/var/log/app/*.log`). Named `file`
    /// (see [`name`](Self::name)); each file's signals are for the file's name without
    /// its extensions (`orders` for `orders.log`) unless [`target`](Self::target) or
    /// [`parser`](Self::parser) says otherwise.
    pub fn new(pattern: impl Into<String>) -> Self {
        FileTail {
            name: "file".to_owned(),
            settings: Settings {
                patterns: vec![pattern.into()],
                parser: None,
                target: None,
                poll_interval: Duration::from_millis(250),
                rescan_interval: Duration::from_secs(2),
                idle_flush: Duration::from_millis(200),
                cursor_interval: Duration::from_secs(1),
                max_line_bytes: MAX_MESSAGE_BYTES,
                max_files: 256,
                watch: true,
                from_start: false,
            },
            stats: watch::channel(TailStats::default()).0,
        }
    }

    /// Follows `pattern` too.
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.settings.patterns.push(pattern.into());
        self
    }

    /// The source's name (default `file`): unique among the healer's sources, and the
    /// key of its stored cursor, so two tails need two names.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The target of every file's signals.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.settings.target = Some(target.into());
        self
    }

    /// Reads lines with `parser` (its default target, its target key, its bounds).
    pub fn parser(mut self, parser: LineParser) -> Self {
        self.settings.parser = Some(parser);
        self
    }

    /// How often files are read whatever the watcher says (default 250 ms): the
    /// latency where there is no watcher.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.settings.poll_interval = every.max(Duration::from_millis(1));
        self
    }

    /// How often globs are expanded again to find new files (default 2 s; at once
    /// when the watcher sees files come or go).
    pub fn rescan_interval(mut self, every: Duration) -> Self {
        self.settings.rescan_interval = every;
        self
    }

    /// How long a signal waits for more of its trace when its file is quiet (default
    /// 200 ms).
    pub fn idle_flush(mut self, idle: Duration) -> Self {
        self.settings.idle_flush = idle;
        self
    }

    /// How often the cursor is saved when it moved (default 1 s); it is saved when the
    /// healer stops too.
    pub fn cursor_interval(mut self, every: Duration) -> Self {
        self.settings.cursor_interval = every;
        self
    }

    /// The longest line kept (default [`MAX_MESSAGE_BYTES`]); the rest of a longer one
    /// is dropped as it is read.
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_line_bytes = bytes.max(1);
        self
    }

    /// The most files followed at once (default 256): the first ones the patterns name,
    /// in order; more are not read (logged at debug level, every rescan).
    pub fn max_files(mut self, files: usize) -> Self {
        self.settings.max_files = files.max(1);
        self
    }

    /// Whether to use the platform's file watcher (default `true`); without it the
    /// tail polls every [`poll_interval`](Self::poll_interval).
    pub fn watch(mut self, watch: bool) -> Self {
        self.settings.watch = watch;
        self
    }

    /// Reads files that are there at the first start (no stored cursor) from their
    /// start rather than their end.
    pub fn from_start(mut self, from_start: bool) -> Self {
        self.settings.from_start = from_start;
        self
    }

    /// What the tail has done, updated after every pass: wait on it
    /// (`stats.wait_for(|s| s.signals >= 3).await`) rather than sleeping. What it
    /// hands back are copies: keep them as long as you like.
    pub fn stats(&self) -> StatsWatch<TailStats> {
        StatsWatch::new(self.stats.subscribe())
    }

    /// Saves the cursor when it moved.
    async fn save(&self, feed: &Feed, state: &State, saved: &mut Cursor) {
        let cursor = state.cursor();
        if cursor == *saved {
            return;
        }
        match feed.save_cursor(&cursor.to_value()).await {
            Ok(()) => {
                *saved = cursor;
                self.stats.send_modify(|s| s.cursor_saves += 1);
            }
            Err(e) => {
                tracing::warn!(source = %self.name, error = %e, "could not save the file tail's cursor; trying again");
            }
        }
    }

    /// Publishes the counts and reports what was malformed since the last time.
    fn report(&self, feed: &Feed, state: &State, watching: bool, signals: u64) {
        let counts = state.counts;
        let before = *self.stats.borrow();
        for _ in before.invalid_utf8..counts.invalid_utf8 {
            feed.malformed("a line was not valid UTF-8; it was read lossily");
        }
        for _ in before.cut_lines..counts.cut_lines {
            feed.malformed("a line was longer than max_line_bytes; it was cut");
        }
        self.stats.send_modify(|s| {
            s.files = state.open_files();
            s.watching = watching;
            s.lines = counts.lines;
            s.signals += signals;
            s.rotations = counts.rotations;
            s.truncations = counts.truncations;
            s.cut_lines = counts.cut_lines;
            s.invalid_utf8 = counts.invalid_utf8;
            s.passes += 1;
        });
    }
}

/// Runs `f` on tokio's blocking pool; a panic in it is an error (the source restarts).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> selfheal_core::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("the file tail's reader failed: {e}"),
        )
    })
}

#[async_trait]
impl Source for FileTail {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, feed: Feed) -> selfheal_core::Result<()> {
        let settings = Arc::new(self.settings.clone());
        let mut saved = Cursor::from_value(feed.cursor().await);
        let wake = Arc::new(Notify::new());
        let mut watch = Watch::new(settings.watch, wake.clone());
        watch.add(&settings.patterns);
        let (start, cursor) = (settings.clone(), saved.clone());
        let mut state = blocking(move || State::start(start, &cursor)).await?;
        self.stats.send_modify(|s| *s = TailStats::default());
        tracing::debug!(source = %self.name, watching = watch.is_watching(), "file tail started");
        let stopped = feed.stopped();
        tokio::pin!(stopped);
        let mut last_save = Instant::now();
        loop {
            let pass_started = Instant::now();
            let changed = watch.changed.swap(false, Ordering::Relaxed);
            let (returned, read, more) = blocking(move || {
                let (read, more) = state.pass(changed);
                (state, read, more)
            })
            .await?;
            state = returned;
            let mut read = read.into_iter();
            let mut taken = 0;
            while let Some((i, handed)) = read.next() {
                let from = handed.from;
                if feed.ingest(handed.signal).await.is_err() {
                    // The healer stopped: what it did not take is read again next time.
                    state.hold(std::iter::once((i, from)).chain(read.map(|(i, h)| (i, h.from))));
                    break;
                }
                taken += 1;
            }
            self.report(&feed, &state, watch.is_watching(), taken);
            if last_save.elapsed() >= settings.cursor_interval {
                self.save(&feed, &state, &mut saved).await;
                last_save = Instant::now();
            }
            watch.add(&settings.patterns);
            // A busy file wakes the watcher at every write: passes are at least this
            // far apart, and the events in between make one.
            let earliest = tokio::time::Instant::from_std(pass_started + MIN_PASS_GAP);
            let next = if more {
                earliest
            } else {
                state.next_pass().max(earliest)
            };
            tokio::select! {
                biased;
                () = &mut stopped => {
                    self.save(&feed, &state, &mut saved).await;
                    return Ok(());
                }
                () = wake.notified() => tokio::time::sleep_until(earliest).await,
                () = tokio::time::sleep_until(next) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
