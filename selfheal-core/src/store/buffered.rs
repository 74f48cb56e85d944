//! [`BufferedStore`]: keeps the pipeline's writes when the store is unreachable and
//! replays them, in order and once, when it is back.
//!
//! The healer's builder wraps its store in one by default (see
//! [`crate::Healer::store_buffer`]). To size the buffer yourself, build it and tell the
//! builder not to wrap it again:
//!
//! ```
//! use std::sync::Arc;
//! use selfheal_core::{Healer, MemoryStore, store::BufferedStore};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
//! let store = Arc::new(BufferedStore::new(Arc::new(MemoryStore::new())).capacity(50_000));
//! let healer = Healer::builder().store_arc(store.clone()).unbuffered().build()?;
//! // Later: how many writes wait for the store, and how many a full buffer dropped.
//! assert_eq!((store.pending(), store.dropped_writes()), (0, 0));
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use crate::store::report::{OverviewRow, PatternReport};
use crate::{
    ActionRecord, Approval, ApprovalState, AuditRecord, AuditStore, ControlStore, Decided,
    Diagnosis, DiagnosisCache, Error, ErrorKind, FleetStore, Incident, IncidentFilter,
    IncidentStore, Pattern, PatternStore, ReportStore, Result, Store,
};

/// Writes kept by default while the store is unreachable.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// A write waiting for the store.
#[derive(Debug, Clone)]
enum Op {
    Incident(Box<Incident>),
    Action(Box<ActionRecord>),
    Approval(Box<Approval>),
    Audit(Box<AuditRecord>),
    Outcome {
        pattern: String,
        strategy: String,
        success: bool,
        delta: f64,
    },
    Diagnosis {
        fingerprint: String,
        diagnosis: Box<Diagnosis>,
        expires: DateTime<Utc>,
    },
    /// A control document stored (`Some`) or deleted (`None`).
    Control {
        key: String,
        value: Option<serde_json::Value>,
    },
}

impl Op {
    /// Writes with the same key replace each other in the buffer: an upsert by id
    /// only needs its latest state.
    fn key(&self) -> Option<(u8, String)> {
        match self {
            Op::Incident(i) => Some((0, i.id.to_string())),
            Op::Action(a) => Some((1, a.id.to_string())),
            Op::Approval(a) => Some((2, a.id.to_string())),
            Op::Diagnosis { fingerprint, .. } => Some((3, fingerprint.clone())),
            Op::Control { key, .. } => Some((4, key.clone())),
            Op::Audit(_) | Op::Outcome { .. } => None,
        }
    }
}

/// Whether `e` means the store is unreachable (so the write is worth keeping).
fn outage(e: &Error) -> bool {
    e.is_retryable()
}

/// Wraps a store so that a store outage never stops the pipeline: a write the store
/// refuses as unavailable is kept in a bounded buffer (the latest state per incident,
/// action, approval and diagnosis; every audit record and learned outcome in order) and
/// reported as done; the buffer is replayed in order once the store answers again, on
/// the next call or by [`BufferedStore::flush`]. Upserts are by id and audit records by
/// `seq`, so a replayed write lands once: an audit record the store already holds (its
/// write went through before the connection dropped) is not written again. One whose
/// position another replica took meanwhile is chained again after the store's newest
/// record, and so are the buffered records after it; a later write chained after it
/// gets `Conflict`, so its writer chains it after the newest record too.
///
/// Control documents are buffered like the other upserts (the latest state per key),
/// and [`ControlStore::list_control`] lays the buffered ones over what the store
/// returns, so a silence added during an outage is not lifted by the next re-read. A
/// buffered `delete_control` answers `true`.
///
/// Reads and fleet coordination go to the store (they fail while it is unreachable,
/// and the pipeline goes on with what it holds in memory). While writes are buffered the
/// store is tried again at most every `retry_every`, so an outage costs no time per write.
///
/// A full buffer drops the new write, counts it in [`BufferedStore::dropped_writes`] and
/// returns the store's error. Learned outcomes are applied to the last pattern read, so
/// `record_outcome` answers during an outage for patterns the healer has loaded.
#[derive(Debug)]
pub struct BufferedStore {
    inner: Arc<dyn Store>,
    buffer: Mutex<Buffer>,
    buffered: AtomicBool,
    flushing: tokio::sync::Mutex<()>,
    capacity: usize,
    retry_every: Duration,
    dropped: AtomicU64,
    replayed: AtomicU64,
}

#[derive(Debug, Default)]
struct Buffer {
    /// Writes in order, each with a number that changes when a newer state replaces it.
    ops: VecDeque<(u64, Op)>,
    next: u64,
    last_try: Option<Instant>,
    /// The latest state of each pattern read or learned, for outcomes during an outage.
    patterns: std::collections::BTreeMap<String, Pattern>,
    /// The last buffered audit record that had to be chained again (another replica
    /// took its position): its hash as the caller chained it, and where it went. A
    /// record chained after the first is chained after the second.
    moved: Option<(String, AuditRecord)>,
}

/// Lost races for an audit position before a replayed record gives up.
const CONFLICTS: usize = 16;
/// How far back a conflicting audit position is looked up to see whether it holds the
/// very record being written.
const LOOK_BACK: u64 = 1_024;

impl BufferedStore {
    /// Wraps `inner` with a buffer of [`DEFAULT_CAPACITY`] writes, retrying every second.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        BufferedStore {
            inner,
            buffer: Mutex::default(),
            buffered: AtomicBool::new(false),
            flushing: tokio::sync::Mutex::new(()),
            capacity: DEFAULT_CAPACITY,
            retry_every: Duration::from_secs(1),
            dropped: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
        }
    }

    /// At most `capacity` writes are kept (at least 1).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// While writes are buffered, the store is tried again at most this often.
    pub fn retry_every(mut self, every: Duration) -> Self {
        self.retry_every = every;
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// Writes waiting for the store.
    pub fn pending(&self) -> usize {
        self.buffer().ops.len()
    }

    /// Writes dropped because the buffer was full.
    pub fn dropped_writes(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Buffered writes replayed into the store so far.
    pub fn replayed_writes(&self) -> u64 {
        self.replayed.load(Ordering::Relaxed)
    }

    /// Replays the buffer now, whatever `retry_every` says. `Ok` once it is empty;
    /// the store's error if it is still unreachable (the rest stays buffered).
    pub async fn flush(&self) -> Result<()> {
        self.drain(true).await
    }

    fn buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replays buffered writes in order. `Ok` when the buffer is empty afterwards.
    async fn drain(&self, force: bool) -> Result<()> {
        if !self.buffered.load(Ordering::Acquire) {
            return Ok(());
        }
        {
            let buf = self.buffer();
            let recent = buf.last_try.is_some_and(|t| t.elapsed() < self.retry_every);
            if recent && !force {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "the `{}` store is unreachable; {} writes are buffered",
                        self.inner.name(),
                        buf.ops.len()
                    ),
                ));
            }
        }
        let _one_at_a_time = self.flushing.lock().await;
        loop {
            let next = {
                let buf = self.buffer();
                let next = buf.ops.front().cloned();
                if next.is_none() {
                    // Under the lock: a write kept meanwhile sets the flag again after.
                    self.buffered.store(false, Ordering::Release);
                }
                next
            };
            let Some((number, op)) = next else {
                tracing::info!(
                    store = self.inner.name(),
                    replayed = self.replayed_writes(),
                    "store back; buffer replayed"
                );
                return Ok(());
            };
            let replayed = match &op {
                Op::Audit(r) => self.replay_audit(r).await,
                op => self.apply(op).await,
            };
            match replayed {
                Ok(()) => {
                    self.replayed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if outage(&e) => {
                    self.buffer().last_try = Some(Instant::now());
                    return Err(e);
                }
                Err(e) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, ?op, "the store refused a buffered write; dropped");
                }
            }
            // Unless a newer state replaced it while it was written: then that goes next.
            let mut buf = self.buffer();
            if buf.ops.front().is_some_and(|(n, _)| *n == number) {
                buf.ops.pop_front();
            }
        }
    }

    async fn apply(&self, op: &Op) -> Result<()> {
        match op {
            Op::Incident(i) => self.inner.save_incident(i).await,
            Op::Action(a) => self.inner.save_action(a).await,
            Op::Approval(a) => self.inner.save_approval(a).await,
            Op::Audit(r) => self.inner.append_audit(r).await,
            Op::Outcome {
                pattern,
                strategy,
                success,
                delta,
            } => self
                .inner
                .record_outcome(pattern, strategy, *success, *delta)
                .await
                .map(|_| ()),
            Op::Diagnosis {
                fingerprint,
                diagnosis,
                expires,
            } => {
                let ttl = (*expires - Utc::now()).to_std().unwrap_or_default();
                self.inner
                    .cache_diagnosis(fingerprint, diagnosis, ttl)
                    .await
            }
            Op::Control {
                key,
                value: Some(value),
            } => self.inner.put_control(key, value).await,
            Op::Control { key, value: None } => self.inner.delete_control(key).await.map(|_| ()),
        }
    }

    /// Writes a buffered audit record where the chain now ends. After a predecessor
    /// that was chained again, it is chained after that one; when another writer took
    /// its position (`Conflict`), it is chained again after the store's newest record,
    /// unless the record there is this one (its first write went through before the
    /// connection dropped). So the chain a fleet shares stays one chain.
    async fn replay_audit(&self, original: &AuditRecord) -> Result<()> {
        let mut record = match &self.buffer().moved {
            Some((old, new)) if original.prev_hash == *old => {
                original.entry().chain(Some(new), original.at)
            }
            _ => original.clone(),
        };
        for _ in 0..CONFLICTS {
            let landed = match self.inner.append_audit(&record).await {
                Ok(()) => true,
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    let newest = self.inner.list_audit(1).await?.pop();
                    if self.holds(&record, newest.as_ref()).await? {
                        tracing::debug!(seq = record.seq, "buffered audit record already stored");
                        true
                    } else {
                        record = original.entry().chain(newest.as_ref(), original.at);
                        false
                    }
                }
                Err(e) => return Err(e),
            };
            if landed {
                if record.hash != original.hash {
                    tracing::info!(
                        from = original.seq,
                        to = record.seq,
                        "another replica took a buffered audit record's position; chained it after the newest"
                    );
                    self.buffer().moved = Some((original.hash.clone(), record));
                }
                return Ok(());
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            "the audit chain's head kept moving while a buffered record was replayed; \
             another writer appends too fast",
        ))
    }

    /// Whether the store holds `record` at its position (`newest` is the store's newest).
    async fn holds(&self, record: &AuditRecord, newest: Option<&AuditRecord>) -> Result<bool> {
        let Some(newest) = newest.filter(|n| n.seq >= record.seq) else {
            return Ok(false);
        };
        if newest.seq - record.seq >= LOOK_BACK {
            return Ok(false);
        }
        let span = usize::try_from(newest.seq - record.seq + 1).unwrap_or(usize::MAX);
        let stored = self.inner.list_audit(span).await?;
        Ok(stored
            .first()
            .is_some_and(|r| r.seq == record.seq && r.hash == record.hash))
    }

    /// `Conflict` for an audit record chained after a buffered record that was chained
    /// again elsewhere: its writer chains it again after the store's newest record, as
    /// after any lost race.
    fn follows_moved(&self, op: &Op) -> Result<()> {
        match (op, &self.buffer().moved) {
            (Op::Audit(record), Some((old, new))) if record.prev_hash == *old => Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "audit record {} follows a buffered record that was chained again \
                         at {}; chain it after the store's newest record",
                    record.seq, new.seq
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Writes `op` through, or keeps it when the store is unreachable.
    async fn write(&self, op: Op) -> Result<()> {
        let error = match self.drain(false).await {
            Ok(()) => match async {
                self.follows_moved(&op)?;
                self.apply(&op).await
            }
            .await
            {
                Ok(()) => return Ok(()),
                Err(e) if outage(&e) => e,
                Err(e) => return Err(e),
            },
            Err(e) => e,
        };
        self.keep(op, error)
    }

    fn keep(&self, op: Op, error: Error) -> Result<()> {
        let mut buf = self.buffer();
        if buf.last_try.is_none() || !self.buffered.load(Ordering::Acquire) {
            tracing::warn!(store = self.inner.name(), error = %error, "store unreachable; buffering writes");
            buf.last_try = Some(Instant::now());
        }
        let number = buf.next;
        buf.next += 1;
        if let Some(key) = op.key()
            && let Some(slot) = buf
                .ops
                .iter_mut()
                .find(|(_, o)| o.key().as_ref() == Some(&key))
        {
            *slot = (number, op);
            return Ok(());
        }
        if buf.ops.len() >= self.capacity {
            drop(buf);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(capacity = self.capacity, "store buffer full; write dropped");
            return Err(Error::new(
                error.kind(),
                format!(
                    "{}; the outage buffer is full ({} writes), so this write was dropped",
                    error.message(),
                    self.capacity
                ),
            ));
        }
        buf.ops.push_back((number, op));
        self.buffered.store(true, Ordering::Release);
        Ok(())
    }

    fn remember(&self, patterns: &[Pattern]) {
        let mut buf = self.buffer();
        for p in patterns {
            buf.patterns.insert(p.name.clone(), p.clone());
        }
    }
}

impl Store for BufferedStore {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn fleet(&self) -> Option<&dyn FleetStore> {
        self.inner.fleet()
    }
}

#[async_trait]
impl PatternStore for BufferedStore {
    async fn list_patterns(&self) -> Result<Vec<Pattern>> {
        let _ = self.drain(false).await;
        let patterns = self.inner.list_patterns().await?;
        self.remember(&patterns);
        Ok(patterns)
    }

    async fn get_pattern(&self, name: &str) -> Result<Option<Pattern>> {
        let _ = self.drain(false).await;
        let pattern = self.inner.get_pattern(name).await?;
        self.remember(pattern.as_slice());
        Ok(pattern)
    }

    async fn add_pattern(&self, pattern: &Pattern) -> Result<()> {
        self.drain(false).await?;
        self.inner.add_pattern(pattern).await
    }

    async fn update_pattern(&self, pattern: &Pattern) -> Result<()> {
        self.drain(false).await?;
        self.inner.update_pattern(pattern).await
    }

    async fn record_outcome(
        &self,
        pattern: &str,
        strategy: &str,
        success: bool,
        confidence_delta: f64,
    ) -> Result<Pattern> {
        if !confidence_delta.is_finite() {
            return Err(Error::invalid(format!(
                "confidence change {confidence_delta} is not a number; pass a finite delta"
            )));
        }
        let error = match self.drain(false).await {
            Ok(()) => match self
                .inner
                .record_outcome(pattern, strategy, success, confidence_delta)
                .await
            {
                Ok(p) => {
                    self.remember(std::slice::from_ref(&p));
                    return Ok(p);
                }
                Err(e) if outage(&e) => e,
                Err(e) => return Err(e),
            },
            Err(e) => e,
        };
        // Learn on the last known state, and replay the outcome later.
        let learned = {
            let mut buf = self.buffer();
            let Some(p) = buf.patterns.get_mut(pattern) else {
                return Err(error);
            };
            p.confidence = (p.confidence + confidence_delta).clamp(0.0, 1.0);
            if success {
                p.use_count += 1;
            }
            if let Some(fix) = p.fixes.iter_mut().find(|f| f.strategy == strategy) {
                if success {
                    fix.successes += 1;
                } else {
                    fix.failures += 1;
                }
            }
            p.clone()
        };
        self.keep(
            Op::Outcome {
                pattern: pattern.to_owned(),
                strategy: strategy.to_owned(),
                success,
                delta: confidence_delta,
            },
            error,
        )?;
        Ok(learned)
    }
}

#[async_trait]
impl IncidentStore for BufferedStore {
    async fn save_incident(&self, incident: &Incident) -> Result<()> {
        self.write(Op::Incident(Box::new(incident.clone()))).await
    }

    async fn get_incident(&self, id: Uuid) -> Result<Option<Incident>> {
        let _ = self.drain(false).await;
        self.inner.get_incident(id).await
    }

    async fn list_incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>> {
        let _ = self.drain(false).await;
        self.inner.list_incidents(filter).await
    }

    async fn save_action(&self, action: &ActionRecord) -> Result<()> {
        self.write(Op::Action(Box::new(action.clone()))).await
    }

    async fn list_actions(&self, incident: Option<Uuid>) -> Result<Vec<ActionRecord>> {
        let _ = self.drain(false).await;
        self.inner.list_actions(incident).await
    }

    async fn save_approval(&self, approval: &Approval) -> Result<()> {
        self.write(Op::Approval(Box::new(approval.clone()))).await
    }

    async fn list_approvals(&self, pending_only: bool) -> Result<Vec<Approval>> {
        let _ = self.drain(false).await;
        self.inner.list_approvals(pending_only).await
    }

    async fn retention_cleanup(&self, older_than: DateTime<Utc>) -> Result<u64> {
        self.drain(false).await?;
        self.inner.retention_cleanup(older_than).await
    }
}

#[async_trait]
impl AuditStore for BufferedStore {
    async fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        self.write(Op::Audit(Box::new(record.clone()))).await
    }

    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        let _ = self.drain(false).await;
        self.inner.list_audit(limit).await
    }

    async fn recent_activity(&self, since: DateTime<Utc>) -> Result<Vec<AuditRecord>> {
        let _ = self.drain(false).await;
        self.inner.recent_activity(since).await
    }

    async fn audit_checkpoint(&self) -> Result<Option<crate::ChainHead>> {
        self.inner.audit_checkpoint().await
    }
}

#[async_trait]
impl DiagnosisCache for BufferedStore {
    async fn cached_diagnosis(&self, fingerprint: &str) -> Result<Option<Diagnosis>> {
        let _ = self.drain(false).await;
        self.inner.cached_diagnosis(fingerprint).await
    }

    async fn cache_diagnosis(
        &self,
        fingerprint: &str,
        diagnosis: &Diagnosis,
        ttl: Duration,
    ) -> Result<()> {
        self.write(Op::Diagnosis {
            fingerprint: fingerprint.to_owned(),
            diagnosis: Box::new(diagnosis.clone()),
            expires: crate::store::fleet_expiry(Utc::now(), ttl),
        })
        .await
    }
}

#[async_trait]
impl ReportStore for BufferedStore {
    async fn healing_overview(&self, limit: Option<usize>) -> Result<Vec<OverviewRow>> {
        let _ = self.drain(false).await;
        self.inner.healing_overview(limit).await
    }

    async fn pattern_report(&self, since: DateTime<Utc>) -> Result<Vec<PatternReport>> {
        let _ = self.drain(false).await;
        self.inner.pattern_report(since).await
    }
}

#[async_trait]
impl ControlStore for BufferedStore {
    async fn put_control(&self, key: &str, value: &serde_json::Value) -> Result<()> {
        self.write(Op::Control {
            key: key.to_owned(),
            value: Some(value.clone()),
        })
        .await
    }

    async fn delete_control(&self, key: &str) -> Result<bool> {
        let error = match self.drain(false).await {
            Ok(()) => match self.inner.delete_control(key).await {
                Ok(found) => return Ok(found),
                Err(e) if outage(&e) => e,
                Err(e) => return Err(e),
            },
            Err(e) => e,
        };
        let op = Op::Control {
            key: key.to_owned(),
            value: None,
        };
        self.keep(op, error).map(|()| true)
    }

    async fn list_control(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>> {
        let _ = self.drain(false).await;
        let stored = self.inner.list_control(prefix).await?;
        let mut docs: std::collections::BTreeMap<_, _> = stored.into_iter().collect();
        // Writes still waiting for the store are newer than what it returned.
        for (_, op) in &self.buffer().ops {
            if let Op::Control { key, value } = op
                && key.starts_with(prefix)
            {
                match value {
                    Some(v) => docs.insert(key.clone(), v.clone()),
                    None => docs.remove(key),
                };
            }
        }
        Ok(docs.into_iter().collect())
    }

    async fn approval(&self, id: Uuid) -> Result<Option<Approval>> {
        let _ = self.drain(false).await;
        if let Some(stored) = self.inner.approval(id).await? {
            return Ok(Some(stored));
        }
        // Saved here, not yet in the store.
        Ok(self.buffer().ops.iter().rev().find_map(|(_, op)| match op {
            Op::Approval(a) if a.id == id => Some((**a).clone()),
            _ => None,
        }))
    }

    /// Not buffered: a decision is taken in the store or not at all. Writes waiting
    /// here go first, so an approval saved through the buffer can be decided.
    async fn decide_approval<'a>(
        &self,
        id: Uuid,
        state: ApprovalState,
        by: &str,
        note: Option<&'a str>,
    ) -> Result<Decided> {
        self.drain(false).await?;
        self.inner.decide_approval(id, state, by, note).await
    }

    fn approval_decisions(&self) -> Option<tokio::sync::broadcast::Receiver<Uuid>> {
        self.inner.approval_decisions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditEntry, FixBinding, IncidentStatus, MemoryStore, Severity, verify_chain};

    /// A memory store that can be switched off.
    #[derive(Debug, Default)]
    struct Flaky {
        store: MemoryStore,
        down: AtomicBool,
        writes: AtomicU64,
    }

    impl Flaky {
        fn check(&self) -> Result<()> {
            if self.down.load(Ordering::SeqCst) {
                Err(Error::new(ErrorKind::Unavailable, "connection refused"))
            } else {
                Ok(())
            }
        }
        fn wrote(&self) -> Result<()> {
            self.check()?;
            self.writes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    impl Store for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }

        fn fleet(&self) -> Option<&dyn FleetStore> {
            None
        }
    }

    #[async_trait]
    impl PatternStore for Flaky {
        async fn list_patterns(&self) -> Result<Vec<Pattern>> {
            self.check()?;
            self.store.list_patterns().await
        }

        async fn get_pattern(&self, name: &str) -> Result<Option<Pattern>> {
            self.check()?;
            self.store.get_pattern(name).await
        }

        async fn add_pattern(&self, p: &Pattern) -> Result<()> {
            self.wrote()?;
            self.store.add_pattern(p).await
        }

        async fn update_pattern(&self, p: &Pattern) -> Result<()> {
            self.wrote()?;
            self.store.update_pattern(p).await
        }

        async fn record_outcome(&self, p: &str, s: &str, ok: bool, d: f64) -> Result<Pattern> {
            self.wrote()?;
            self.store.record_outcome(p, s, ok, d).await
        }
    }

    #[async_trait]
    impl IncidentStore for Flaky {
        async fn save_incident(&self, i: &Incident) -> Result<()> {
            self.wrote()?;
            self.store.save_incident(i).await
        }

        async fn get_incident(&self, id: Uuid) -> Result<Option<Incident>> {
            self.check()?;
            self.store.get_incident(id).await
        }

        async fn list_incidents(&self, f: &IncidentFilter) -> Result<Vec<Incident>> {
            self.check()?;
            self.store.list_incidents(f).await
        }

        async fn save_action(&self, a: &ActionRecord) -> Result<()> {
            self.wrote()?;
            self.store.save_action(a).await
        }

        async fn list_actions(&self, i: Option<Uuid>) -> Result<Vec<ActionRecord>> {
            self.check()?;
            self.store.list_actions(i).await
        }

        async fn save_approval(&self, a: &Approval) -> Result<()> {
            self.wrote()?;
            self.store.save_approval(a).await
        }

        async fn list_approvals(&self, p: bool) -> Result<Vec<Approval>> {
            self.check()?;
            self.store.list_approvals(p).await
        }
        async fn retention_cleanup(&self, t: DateTime<Utc>) -> Result<u64> {
            self.wrote()?;
            self.store.retention_cleanup(t).await
        }
    }

    #[async_trait]
    impl AuditStore for Flaky {
        async fn append_audit(&self, r: &AuditRecord) -> Result<()> {
            self.wrote()?;
            self.store.append_audit(r).await
        }

        async fn list_audit(&self, limit: usize) -> Result<Vec<AuditRecord>> {
            self.check()?;
            self.store.list_audit(limit).await
        }
        async fn audit_checkpoint(&self) -> Result<Option<crate::ChainHead>> {
            self.check()?;
            self.store.audit_checkpoint().await
        }
    }

    #[async_trait]
    impl DiagnosisCache for Flaky {
        async fn cached_diagnosis(&self, f: &str) -> Result<Option<Diagnosis>> {
            self.check()?;
            self.store.cached_diagnosis(f).await
        }
        async fn cache_diagnosis(&self, f: &str, d: &Diagnosis, ttl: Duration) -> Result<()> {
            self.wrote()?;
            self.store.cache_diagnosis(f, d, ttl).await
        }
    }

    #[async_trait]
    impl ReportStore for Flaky {}

    #[async_trait]
    impl ControlStore for Flaky {
        async fn put_control(&self, key: &str, value: &serde_json::Value) -> Result<()> {
            self.wrote()?;
            self.store.put_control(key, value).await
        }
        async fn delete_control(&self, key: &str) -> Result<bool> {
            self.wrote()?;
            self.store.delete_control(key).await
        }
        async fn list_control(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>> {
            self.check()?;
            self.store.list_control(prefix).await
        }
        async fn approval(&self, id: Uuid) -> Result<Option<Approval>> {
            self.check()?;
            self.store.approval(id).await
        }
        async fn decide_approval<'a>(
            &self,
            id: Uuid,
            state: ApprovalState,
            by: &str,
            note: Option<&'a str>,
        ) -> Result<Decided> {
            self.wrote()?;
            self.store.decide_approval(id, state, by, note).await
        }
    }

    fn incident(target: &str) -> Incident {
        let now = Utc::now();
        Incident {
            id: Uuid::new_v4(),
            target: target.into(),
            fingerprint: "0011223344556677".into(),
            template: "boom".into(),
            stack: None,
            related: vec![],
            pattern: Some("p".into()),
            status: IncidentStatus::Open,
            severity: Severity::High,
            occurrences: 1,
            samples: vec![],
            opened_at: now,
            last_seen: now,
            closed_at: None,
            reason: String::new(),
        }
    }

    #[cfg(feature = "test-util")]
    #[tokio::test]
    async fn a_buffered_store_passes_the_conformance_suite() {
        let store = BufferedStore::new(Arc::new(MemoryStore::new()));
        crate::testkit::run_all(&store).await;
    }

    #[tokio::test]
    async fn control_writes_in_an_outage_are_read_back_before_they_are_replayed() {
        let flaky = Arc::new(Flaky::default());
        let store = BufferedStore::new(flaky.clone()).retry_every(Duration::from_secs(3600));
        let on = serde_json::json!({"on": true});
        store.put_control("silence/old", &on).await.unwrap();

        flaky.down.store(true, Ordering::SeqCst);
        store.put_control("silence/new", &on).await.unwrap();
        assert!(store.delete_control("silence/old").await.unwrap());
        assert_eq!(store.pending(), 2);

        // The store answers reads again, but the buffer waits for its retry: what it
        // holds is laid over the store's older state.
        flaky.down.store(false, Ordering::SeqCst);
        let read = store.list_control("silence/").await.unwrap();
        assert_eq!(read, vec![("silence/new".to_owned(), on.clone())]);
        assert_eq!(
            flaky.store.list_control("silence/").await.unwrap(),
            vec![("silence/old".to_owned(), on.clone())],
            "not replayed yet"
        );
        store.flush().await.unwrap();
        assert_eq!(
            flaky.store.list_control("silence/").await.unwrap(),
            vec![("silence/new".to_owned(), on)]
        );
    }

    #[tokio::test]
    async fn an_outage_is_buffered_and_replayed_once_in_order() {
        let flaky = Arc::new(Flaky::default());
        let store = BufferedStore::new(flaky.clone()).retry_every(Duration::from_secs(3600));
        store
            .add_pattern(
                &Pattern::new("p")
                    .regex("boom")
                    .fix(FixBinding::new("restart")),
            )
            .await
            .unwrap();
        store.list_patterns().await.unwrap();

        flaky.down.store(true, Ordering::SeqCst);
        let mut inc = incident("db");
        store.save_incident(&inc).await.unwrap();
        inc.status = IncidentStatus::Resolved;
        inc.occurrences = 9;
        store.save_incident(&inc).await.unwrap();
        let mut chain = Vec::new();
        for i in 0..3 {
            let r = AuditEntry::new("self_heal.detected", format!("#{i}"))
                .chain(chain.last(), Utc::now());
            store.append_audit(&r).await.unwrap();
            chain.push(r);
        }
        let learned = store
            .record_outcome("p", "restart", true, 0.05)
            .await
            .unwrap();
        assert_eq!(learned.use_count, 1, "learned on the last known state");
        assert_eq!(
            store.pending(),
            5,
            "one incident (latest state), three records, one outcome"
        );
        assert!(
            store
                .list_incidents(&IncidentFilter::default())
                .await
                .is_err()
        );
        assert!(store.flush().await.is_err(), "still down: kept");
        assert_eq!(store.pending(), 5);

        flaky.down.store(false, Ordering::SeqCst);
        store.flush().await.unwrap();
        assert_eq!(store.pending(), 0);
        assert_eq!(store.replayed_writes(), 5);
        assert_eq!(store.get_incident(inc.id).await.unwrap(), Some(inc.clone()));
        let audit = store.list_audit(usize::MAX).await.unwrap();
        assert_eq!(audit, chain, "every record once, in order");
        verify_chain(&audit).unwrap();
        let p = store.get_pattern("p").await.unwrap().unwrap();
        assert_eq!(
            (p.use_count, p.fixes[0].successes),
            (1, 1),
            "the outcome once"
        );
        // Nothing is replayed twice.
        store.flush().await.unwrap();
        assert_eq!(store.replayed_writes(), 5);
        assert_eq!(store.dropped_writes(), 0);
    }

    #[tokio::test]
    async fn a_record_that_reached_the_store_is_not_written_twice() {
        let flaky = Arc::new(Flaky::default());
        let store = BufferedStore::new(flaky.clone());
        let r = AuditEntry::new("self_heal.detected", "x").chain(None, Utc::now());
        // The write went through, the answer was lost: the caller's copy is buffered.
        flaky.store.append_audit(&r).await.unwrap();
        flaky.down.store(true, Ordering::SeqCst);
        store.append_audit(&r).await.unwrap();
        flaky.down.store(false, Ordering::SeqCst);
        store.flush().await.unwrap();
        assert_eq!(store.list_audit(10).await.unwrap(), [r]);
        assert_eq!(store.dropped_writes(), 0);
    }

    #[tokio::test]
    async fn a_full_buffer_drops_and_counts() {
        let flaky = Arc::new(Flaky::default());
        flaky.down.store(true, Ordering::SeqCst);
        let store = BufferedStore::new(flaky.clone()).capacity(2);
        store.save_incident(&incident("a")).await.unwrap();
        store.save_incident(&incident("b")).await.unwrap();
        let err = store.save_incident(&incident("c")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.message().contains("buffer is full"), "{err}");
        assert_eq!((store.pending(), store.dropped_writes()), (2, 1));
        assert_eq!(flaky.writes.load(Ordering::SeqCst), 0);
        flaky.down.store(false, Ordering::SeqCst);
        store.flush().await.unwrap();
        assert_eq!(
            flaky.writes.load(Ordering::SeqCst),
            2,
            "the two kept, once each"
        );
    }
}
