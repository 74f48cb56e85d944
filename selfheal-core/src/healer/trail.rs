//! The healer's side of the audit trail: every record is chained in order into a
//! bounded backlog and written from there, so a write the store refuses is retried
//! with back-off instead of lost, and the chain goes on from the newest record chained,
//! written or waiting. Only a full backlog drops a record, and that is counted
//! ([`Healer::audit_dropped`]) and logged at `error`.
//!
//! When replicas share the store, another one may take the next position (`Conflict`):
//! the waiting records are chained again after the store's newest record, unless the
//! record at that position is the one this healer wrote (its answer was lost).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;

use super::Healer;
use crate::{AuditEntry, AuditRecord, ErrorKind};

/// Audit records kept while the store does not take them; a record beyond is dropped.
pub const AUDIT_BACKLOG: usize = 10_000;

/// The first wait before a refused write is tried again; it doubles up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
const LAST_RETRY: Duration = Duration::from_secs(30);
/// Lost races for a position before a write waits for the next try.
const CONFLICTS: usize = 16;
/// How far back a conflicting position is looked up to see whether it is ours.
const LOOK_BACK: u64 = 1_024;

/// The chain's head and the records waiting for the store.
#[derive(Debug, Default)]
pub(super) struct Trail {
    state: tokio::sync::Mutex<State>,
    /// A retry task runs; set and cleared under the state lock.
    retrying: AtomicBool,
    waiting: AtomicUsize,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// The newest record the store holds, as far as this healer knows.
    pub(super) head: Option<AuditRecord>,
    /// Records chained after `head`, oldest first, not written yet.
    backlog: VecDeque<AuditRecord>,
}

impl Trail {
    pub(super) async fn lock(&self) -> tokio::sync::MutexGuard<'_, State> {
        self.state.lock().await
    }
}

impl Healer {
    /// Audit records waiting for the store (it refused them; they are retried with
    /// back-off, in order).
    pub fn audit_waiting(&self) -> usize {
        self.inner.trail.waiting.load(Ordering::Relaxed)
    }

    /// Audit records dropped because [`AUDIT_BACKLOG`] records were already waiting for
    /// the store. Each is also logged at `error` level.
    pub fn audit_dropped(&self) -> u64 {
        self.inner.trail.dropped.load(Ordering::Relaxed)
    }

    /// Chains `entry` after the newest record and writes it, or keeps it for a retry.
    pub(super) async fn append_to_trail(&self, entry: AuditEntry) {
        let trail = &self.inner.trail;
        let mut state = trail.lock().await;
        if state.backlog.len() >= AUDIT_BACKLOG {
            let dropped = trail.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(
                event_type = %entry.event_type,
                waiting = state.backlog.len(),
                dropped,
                "audit record dropped: the store has refused the last {AUDIT_BACKLOG} records"
            );
            return;
        }
        let record = entry.chain(state.backlog.back().or(state.head.as_ref()), Utc::now());
        state.backlog.push_back(record);
        // While a retry task waits, it writes this one too, in order.
        if !trail.retrying.load(Ordering::Acquire) && !self.write_backlog(&mut state).await {
            self.retry_later();
        }
        trail.waiting.store(state.backlog.len(), Ordering::Relaxed);
    }

    /// Writes the backlog in order; `false` when the store refused (the rest waits).
    async fn write_backlog(&self, state: &mut State) -> bool {
        let mut conflicts = 0;
        while let Some(record) = state.backlog.front() {
            match self.inner.store.append_audit(record).await {
                Ok(()) => state.head = state.backlog.pop_front(),
                Err(e) if e.kind() == ErrorKind::Conflict && conflicts < CONFLICTS => {
                    conflicts += 1;
                    if let Err(e) = self.rechain_backlog(state).await {
                        self.store_failed("list_audit", &e);
                        return false;
                    }
                }
                Err(e) => {
                    self.store_failed("append_audit", &e);
                    return false;
                }
            }
        }
        true
    }

    /// The store holds a record at the front record's position already. If it is the
    /// front record (written, its answer lost), it becomes the head; otherwise another
    /// writer took the position and every waiting record is chained again after the
    /// store's newest one.
    async fn rechain_backlog(&self, state: &mut State) -> crate::Result<()> {
        let Some(front) = state.backlog.front() else {
            return Ok(());
        };
        let newest = self.inner.store.list_audit(1).await?.pop();
        if let Some(newest) = &newest
            && newest.seq >= front.seq
            && newest.seq - front.seq < LOOK_BACK
        {
            let span = usize::try_from(newest.seq - front.seq + 1).unwrap_or(usize::MAX);
            let stored = self.inner.store.list_audit(span).await?;
            if stored
                .first()
                .is_some_and(|r| r.seq == front.seq && r.hash == front.hash)
            {
                state.head = state.backlog.pop_front();
                return Ok(());
            }
        }
        tracing::debug!(
            seq = front.seq,
            newest = newest.as_ref().map(|r| r.seq),
            "another writer took the audit position; chaining again after the newest"
        );
        let mut prev = newest.clone();
        for record in &mut state.backlog {
            *record = record.entry().chain(prev.as_ref(), record.at);
            prev = Some(record.clone());
        }
        state.head = newest;
        Ok(())
    }

    /// Starts the retry task unless one runs.
    fn retry_later(&self) {
        if self.inner.trail.retrying.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        self.inner
            .tasks
            .spawn(async move { this.retry_backlog().await });
    }

    /// Tries the backlog again with back-off until the store takes all of it. At
    /// shutdown it tries once more, and says what is lost.
    async fn retry_backlog(self) {
        let trail = &self.inner.trail;
        let mut wait = FIRST_RETRY;
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(wait) => false,
                () = self.inner.cancel.cancelled() => true,
            };
            let mut state = trail.lock().await;
            let written = self.write_backlog(&mut state).await;
            trail.waiting.store(state.backlog.len(), Ordering::Relaxed);
            if written {
                trail.retrying.store(false, Ordering::Release);
                tracing::info!("the store took the audit records that waited for it");
                return;
            }
            if stopping {
                trail.retrying.store(false, Ordering::Release);
                tracing::error!(
                    lost = state.backlog.len(),
                    "shutting down with audit records the store never took; they are lost"
                );
                return;
            }
            wait = (wait * 2).min(LAST_RETRY);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::{Error, MockStore, verify_chain};

    /// A store whose audit table can be switched off; what it holds, shared.
    fn switched(down: Arc<AtomicBool>, held: Arc<Mutex<Vec<AuditRecord>>>) -> MockStore {
        let mut store = MockStore::new();
        let rows = held.clone();
        store.expect_append_audit().returning(move |r| {
            if down.load(Ordering::SeqCst) {
                return Err(Error::new(ErrorKind::Unavailable, "disk full"));
            }
            let mut rows = rows.lock().unwrap();
            if rows.iter().any(|s| s.seq == r.seq) {
                return Err(Error::new(ErrorKind::Conflict, "seq exists"));
            }
            rows.push(r.clone());
            Ok(())
        });
        store.expect_list_audit().returning(move |n| {
            let rows = held.lock().unwrap();
            Ok(rows[rows.len().saturating_sub(n)..].to_vec())
        });
        store
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_backlog_drops_and_counts_and_the_rest_lands_in_order() {
        let down = Arc::new(AtomicBool::new(true));
        let held = Arc::new(Mutex::new(Vec::new()));
        let healer = Healer::builder()
            .store(switched(down.clone(), held.clone()))
            .unbuffered()
            .build()
            .unwrap();
        for i in 0..=AUDIT_BACKLOG {
            healer
                .audit(AuditEntry::new("self_heal.detected", format!("#{i}")))
                .await;
        }
        assert_eq!(healer.audit_waiting(), AUDIT_BACKLOG);
        assert_eq!(healer.audit_dropped(), 1, "only the one beyond the backlog");
        assert_eq!(
            healer.store_errors(),
            1,
            "one refusal, then the retry task waits"
        );

        // Still down after a while of retries with back-off: nothing is lost meanwhile.
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(healer.audit_waiting(), AUDIT_BACKLOG);
        let retries = healer.store_errors();
        // The first refusal, then tries after 0.1, 0.2, … 25.6 s (51.1 s in all) and
        // every 30 s: 1 + 9 + 2 in 120 s.
        assert_eq!(retries, 12, "backed off (100 ms doubling to 30 s)");

        down.store(false, Ordering::SeqCst);
        tokio::time::sleep(LAST_RETRY).await;
        assert_eq!(healer.audit_waiting(), 0);
        let rows = held.lock().unwrap().clone();
        assert_eq!(rows.len(), AUDIT_BACKLOG);
        verify_chain(&rows).unwrap();
        assert_eq!(rows[0].result, "#0");
        assert_eq!(
            rows[AUDIT_BACKLOG - 1].result,
            format!("#{}", AUDIT_BACKLOG - 1)
        );

        // The chain goes on after them.
        healer
            .audit(AuditEntry::new("self_heal.detected", "after"))
            .await;
        let rows = held.lock().unwrap().clone();
        assert_eq!(rows.len(), AUDIT_BACKLOG + 1);
        verify_chain(&rows).unwrap();
    }
}
