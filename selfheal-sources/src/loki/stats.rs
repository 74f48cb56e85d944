//! What a Loki source has done, beyond the healer's counters of every source
//! (`Healer::sources`: emitted, dropped, malformed, restarts).

use serde::Serialize;

/// What a [`LokiSource`](super::LokiSource) has done since it was built (see
/// [`LokiSource::stats`](super::LokiSource::stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LokiStats {
    /// Signals handed over (taken in by the healer's intake).
    pub signals: u64,
    /// Times the cursor was saved in the store.
    pub cursor_saves: u64,
    /// `tail` only: WebSocket connections opened (the first, then each reconnect).
    pub connections: u64,
    /// `tail` only: frames read (WebSocket text messages that were Loki's JSON).
    pub frames: u64,
    /// `tail` only: entries Loki says it dropped (`dropped_entries`: the tail could
    /// not keep up); they never reach the healer.
    pub dropped_by_loki: u64,
}
