//! [`StatsWatch`]: what a source has done, read as copies, never as a borrow.

use std::fmt;

use tokio::sync::watch;

/// A view of the counts a source publishes as it goes ([`FileTail::stats`],
/// [`LokiSource::stats`]): read the latest with [`get`](Self::get), or wait for a
/// change or a condition with [`changed`](Self::changed) and
/// [`wait_for`](Self::wait_for) rather than sleeping.
///
/// Every method hands back a copy of the counts, never a borrow of them, so keeping
/// what they return for as long as you like never holds the source up. Clones watch
/// the same counts; each remembers on its own which update it saw last.
///
/// [`FileTail::stats`]: crate::file::FileTail::stats
/// [`LokiSource::stats`]: crate::loki::LokiSource::stats
#[derive(Debug, Clone)]
pub struct StatsWatch<T> {
    rx: watch::Receiver<T>,
}

/// The source was dropped (its healer is gone): its counts will not change again.
/// [`StatsWatch::get`] still reads the last ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceGone;

impl fmt::Display for SourceGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the source was dropped with its healer: its stats will not change again; read the last ones with get()")
    }
}

impl std::error::Error for SourceGone {}

impl<T: Clone> StatsWatch<T> {
    pub(crate) fn new(rx: watch::Receiver<T>) -> Self {
        StatsWatch { rx }
    }

    /// The latest counts (a copy).
    pub fn get(&self) -> T {
        self.rx.borrow().clone()
    }

    /// Waits for counts newer than the last ones [`changed`](Self::changed) or
    /// [`wait_for`](Self::wait_for) returned (at once when there are), and returns
    /// them; [`SourceGone`] when the source was dropped.
    pub async fn changed(&mut self) -> Result<T, SourceGone> {
        self.rx.changed().await.map_err(|_| SourceGone)?;
        Ok(self.rx.borrow_and_update().clone())
    }

    /// Waits until `ok` holds for the counts (at once when it holds now) and returns
    /// them; [`SourceGone`] when the source was dropped before. Bound it with
    /// `tokio::time::timeout` when the source may never get there: a source stopped
    /// by `Running::shutdown` is dropped only with its healer, so until then this
    /// waits rather than returning [`SourceGone`].
    pub async fn wait_for(&mut self, ok: impl FnMut(&T) -> bool) -> Result<T, SourceGone> {
        // The borrow ends here, before the caller gets anything.
        let counts = self.rx.wait_for(ok).await.map_err(|_| SourceGone)?;
        Ok(counts.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn what_wait_for_returns_never_holds_the_publisher_up() {
        let (tx, rx) = watch::channel(0_u64);
        let mut stats = StatsWatch::new(rx);
        tx.send_modify(|n| *n = 2);
        let kept = stats.wait_for(|n| *n >= 2).await.unwrap();
        // With a borrow kept, this would block the thread for good.
        tx.send_modify(|n| *n += 1);
        tx.send_replace(5);
        assert_eq!((kept, stats.get()), (2, 5));
        let next = tokio::time::timeout(Duration::from_secs(5), stats.changed())
            .await
            .expect("an update was waiting");
        assert_eq!(next, Ok(5));
    }

    #[tokio::test]
    async fn a_dropped_source_is_an_error_but_its_last_counts_remain() {
        let (tx, rx) = watch::channel(1_u64);
        let mut stats = StatsWatch::new(rx);
        drop(tx);
        assert_eq!(stats.changed().await, Err(SourceGone));
        assert_eq!(stats.wait_for(|n| *n > 1).await, Err(SourceGone));
        assert_eq!(stats.wait_for(|n| *n == 1).await, Ok(1), "it holds already");
        assert_eq!(stats.get(), 1);
    }
}
