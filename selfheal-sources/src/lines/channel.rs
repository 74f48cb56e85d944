//! A source that reads log lines from a channel: a child process's output (as
//! `ChildSupervisor` hands it over), a socket, stdin.

use std::time::Duration;

use async_trait::async_trait;
use selfheal_core::source::{Feed, Source};
use tokio::sync::{Mutex, mpsc};

use super::{LineParser, Lines};

/// How long a signal waits for more of its trace when no line comes.
pub const DEFAULT_IDLE_FLUSH: Duration = Duration::from_millis(100);

/// A [`Source`] whose lines come from a channel: each WARN and ERROR line (with its
/// trace) becomes a signal, queued with [`Feed::emit`]. A signal is handed over when
/// the next line shows its trace has ended, or when no line came for
/// [`idle_flush`](Self::idle_flush). It ends when the channel closes.
///
/// ```no_run
/// use selfheal_core::Healer;
/// use selfheal_sources::lines::{LineChannel, LineParser};
///
/// # fn main() -> selfheal_core::Result<()> {
/// let (tx, rx) = tokio::sync::mpsc::channel::<String>(1024);
/// let healer = Healer::builder()
///     .source(LineChannel::new("orders-log", rx, LineParser::new("orders")))
///     .build()?;
/// // Send the service's log lines to `tx`.
/// # drop((tx, healer)); Ok(()) }
/// ```
#[derive(Debug)]
pub struct LineChannel {
    name: String,
    lines: Mutex<mpsc::Receiver<String>>,
    parser: LineParser,
    idle_flush: Duration,
}

impl LineChannel {
    /// A source named `name` reading `lines` with `parser`.
    pub fn new(name: impl Into<String>, lines: mpsc::Receiver<String>, parser: LineParser) -> Self {
        LineChannel {
            name: name.into(),
            lines: Mutex::new(lines),
            parser,
            idle_flush: DEFAULT_IDLE_FLUSH,
        }
    }

    /// How long a signal waits for more of its trace when no line comes (default
    /// [`DEFAULT_IDLE_FLUSH`]).
    pub fn idle_flush(mut self, idle: Duration) -> Self {
        self.idle_flush = idle;
        self
    }
}

#[async_trait]
impl Source for LineChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, feed: Feed) -> selfheal_core::Result<()> {
        let mut rx = self.lines.lock().await;
        let mut lines = Lines::new(self.parser.clone());
        let stopped = feed.stopped();
        tokio::pin!(stopped);
        loop {
            let next = async {
                if lines.is_pending() {
                    tokio::time::timeout(self.idle_flush, rx.recv()).await.ok()
                } else {
                    Some(rx.recv().await)
                }
            };
            let line = tokio::select! {
                () = &mut stopped => return Ok(()),
                line = next => line,
            };
            let signal = match line {
                // Idle: the trace being read is over.
                None => lines.flush(),
                Some(Some(line)) => lines.push(&line),
                Some(None) => {
                    if let Some(signal) = lines.flush() {
                        feed.emit(signal);
                    }
                    return Ok(());
                }
            };
            if let Some(signal) = signal {
                feed.emit(signal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use selfheal_core::{Healer, MemoryStore};

    use super::*;

    #[tokio::test]
    async fn lines_from_a_channel_become_signals_and_the_source_ends_with_it() {
        let (tx, rx) = mpsc::channel(16);
        let healer = Healer::builder()
            .store(MemoryStore::new())
            .source(LineChannel::new("child", rx, LineParser::new("orders")))
            .build()
            .unwrap();
        let running = healer.spawn();
        for line in [
            "2026-12-04T10:00:00Z  INFO orders: started",
            "2026-12-04T10:00:01Z ERROR orders: query failed",
            "java.sql.SQLException: too many clients",
            "\tat com.acme.Pool.get(Pool.java:42)",
            "2026-12-04T10:00:02Z  WARN orders: slow",
        ] {
            tx.send(line.to_owned()).await.unwrap();
        }
        drop(tx);
        // The channel closed: the source flushes what it holds and ends.
        let stats = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let stats = healer.sources().remove(0);
                if stats.emitted == 2 {
                    return stats;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("two signals within the guard");
        assert_eq!((stats.dropped, stats.malformed, stats.restarts), (0, 0, 0));
        assert_eq!(healer.observed(), 2);
        running.shutdown().await;
    }
}
