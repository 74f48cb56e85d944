//! An in-memory [`Store`]: for tests, examples and services that need no history.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::fleet_expiry;
use crate::{
    ActionRecord, Approval, ApprovalState, AuditRecord, AuditStore, ControlStore, Decided,
    Diagnosis, DiagnosisCache, Error, ErrorKind, FleetStore, Incident, IncidentFilter,
    IncidentStore, LeaseGrant, Pattern, PatternStore, ReportStore, Result, SharedCooldown, Store,
};

/// Keeps everything in memory behind one lock. Nothing survives the process.
///
/// Bounded: past its [`MemoryLimits`] it forgets the oldest records of each kind
/// (closed incidents first, with their actions and approvals), so a long-running
/// service on the default store does not grow without end.
///
/// ```
/// use selfheal_core::{AuditEntry, AuditStore, MemoryLimits, MemoryStore};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
/// let store = MemoryStore::with_limits(MemoryLimits { audit: 2, ..MemoryLimits::default() });
/// let mut head = None;
/// for n in 0..3 {
///     let record = AuditEntry::new("test", format!("record {n}")).chain(head.as_ref(), chrono::Utc::now());
///     store.append_audit(&record).await?;
///     head = Some(record);
/// }
/// assert_eq!(store.list_audit(10).await?.len(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    limits: MemoryLimits,
    /// Wakes the healer waiting on an approval decided through this store.
    decisions: tokio::sync::broadcast::Sender<Uuid>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_limits(MemoryLimits::default())
    }
}

/// How many records of each kind a [`MemoryStore`] keeps before it forgets the oldest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Incidents (default 10,000). Closed ones are forgotten first, with their
    /// actions and approvals; open ones only when every kept incident is open.
    pub incidents: usize,
    /// Actions (default 20,000).
    pub actions: usize,
    /// Approvals (default 10,000).
    pub approvals: usize,
    /// Audit records (default 100,000): the newest are kept, and they still chain
    /// (verification starts at the oldest kept record).
    pub audit: usize,
    /// Cached diagnoses (default 10,000): expired ones go first, then the ones that
    /// expire soonest.
    pub diagnoses: usize,
    /// Fleet bookkeeping per target: cooldowns and attempt counts (default 10,000
    /// each); expired cooldowns and the stalest attempt counts go first.
    pub fleet_entries: usize,
    /// Control documents: silences, dry-run switches, breaker and back-off state
    /// (default 10,000). Past it a new key is refused rather than an old one
    /// forgotten: forgetting a silence would lift it.
    pub control: usize,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        MemoryLimits {
            incidents: 10_000,
            actions: 20_000,
            approvals: 10_000,
            audit: 100_000,
            diagnoses: 10_000,
            fleet_entries: 10_000,
            control: 10_000,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    patterns: BTreeMap<String, Pattern>,
    incidents: Vec<Incident>,
    actions: VecDeque<ActionRecord>,
    approvals: VecDeque<Approval>,
    audit: VecDeque<AuditRecord>,
    /// Advisor diagnoses by fingerprint, with when they expire.
    diagnoses: BTreeMap<String, (Diagnosis, DateTime<Utc>)>,
    /// Leases by target: holder and expiry.
    leases: BTreeMap<String, (String, DateTime<Utc>)>,
    /// Cooldowns by (strategy, target).
    cooldowns: BTreeMap<(String, String), SharedCooldown>,
    /// When each rate-limit permit of the last hour was granted.
    permits: Vec<DateTime<Utc>>,
    /// Attempts per (target, fingerprint) episode, with the time of the last one.
    attempts: BTreeMap<(String, String), (u32, DateTime<Utc>)>,
    /// Control documents by key.
    control: BTreeMap<String, serde_json::Value>,
}

impl MemoryStore {
    /// An empty store with the default [`MemoryLimits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that keeps at most `limits` records of each kind (each at
    /// least 1).
    pub fn with_limits(limits: MemoryLimits) -> Self {
        let at_least_one = |n: usize| n.max(1);
        MemoryStore {
            state: Mutex::default(),
            limits: MemoryLimits {
                incidents: at_least_one(limits.incidents),
                actions: at_least_one(limits.actions),
                approvals: at_least_one(limits.approvals),
                audit: at_least_one(limits.audit),
                diagnoses: at_least_one(limits.diagnoses),
                fleet_entries: at_least_one(limits.fleet_entries),
                control: at_least_one(limits.control),
            },
            decisions: tokio::sync::broadcast::channel(64).0,
        }
    }

    /// The limits this store keeps to.
    pub fn limits(&self) -> MemoryLimits {
        self.limits
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-written in a way
        // that matters more than losing the store, so recover the guard.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `now + ttl`, saturating at the latest representable time.
fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(ttl)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Replaces the item `same` finds, or appends `item`; returns whether it appended.
fn upsert<T: Clone>(items: &mut VecDeque<T>, item: &T, same: impl Fn(&T) -> bool) -> bool {
    match items.iter_mut().find(|x| same(x)) {
        Some(slot) => {
            *slot = item.clone();
            false
        }
        None => {
            items.push_back(item.clone());
            true
        }
    }
}

/// Drops the oldest items until at most `limit` are left.
fn keep_newest<T>(items: &mut VecDeque<T>, limit: usize) {
    while items.len() > limit {
        items.pop_front();
    }
}

impl State {
    /// Forgets incidents past `limit`: the oldest closed one first (with its actions and
    /// approvals), the oldest open one only when all are open.
    fn forget_incidents(&mut self, limit: usize) {
        while self.incidents.len() > limit {
            let index = self
                .incidents
                .iter()
                .position(|i| i.status.is_terminal())
                .unwrap_or(0);
            let gone = self.incidents.remove(index).id;
            self.actions.retain(|a| a.incident != gone);
            self.approvals.retain(|a| a.incident != gone);
        }
    }
}

impl Store for MemoryStore {
    fn name(&self) -> &str {
        "memory"
    }

    fn fleet(&self) -> Option<&dyn FleetStore> {
        Some(self)
    }
}

#[async_trait]
impl PatternStore for MemoryStore {
    async fn list_patterns(&self) -> Result<Vec<Pattern>> {
        Ok(self.state().patterns.values().cloned().collect())
    }

    async fn get_pattern(&self, name: &str) -> Result<Option<Pattern>> {
        Ok(self.state().patterns.get(name).cloned())
    }

    async fn add_pattern(&self, pattern: &Pattern) -> Result<()> {
        pattern.validate()?;
        let mut state = self.state();
        if state.patterns.contains_key(&pattern.name) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "pattern `{}` exists already; update it instead",
                    pattern.name
                ),
            ));
        }
        state.patterns.insert(pattern.name.clone(), pattern.clone());
        Ok(())
    }

    async fn update_pattern(&self, pattern: &Pattern) -> Result<()> {
        pattern.validate()?;
        let mut state = self.state();
        match state.patterns.get_mut(&pattern.name) {
            Some(slot) => {
                *slot = pattern.clone();
                Ok(())
            }
            None => Err(Error::not_found(format!(
                "no pattern named `{}`; add it first",
                pattern.name
            ))),
        }
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
        let mut state = self.state();
        let p = state
            .patterns
            .get_mut(pattern)
            .ok_or_else(|| Error::not_found(format!("no pattern named `{pattern}`")))?;
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
        Ok(p.clone())
    }
}

#[async_trait]
impl IncidentStore for MemoryStore {
    async fn save_incident(&self, incident: &Incident) -> Result<()> {
        let mut state = self.state();
        match state.incidents.iter_mut().find(|x| x.id == incident.id) {
            Some(slot) => *slot = incident.clone(),
            None => {
                state.incidents.push(incident.clone());
                state.forget_incidents(self.limits.incidents);
            }
        }
        Ok(())
    }

    async fn get_incident(&self, id: Uuid) -> Result<Option<Incident>> {
        Ok(self.state().incidents.iter().find(|i| i.id == id).cloned())
    }

    async fn list_incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>> {
        let state = self.state();
        let mut out: Vec<Incident> = state
            .incidents
            .iter()
            .filter(|i| filter.statuses.is_empty() || filter.statuses.contains(&i.status))
            .filter(|i| filter.target.as_ref().is_none_or(|t| *t == i.target))
            .cloned()
            .collect();
        out.sort_by_key(|i| std::cmp::Reverse(i.opened_at));
        if let Some(limit) = filter.limit {
            out.truncate(limit);
        }
        Ok(out)
    }

    async fn save_action(&self, action: &ActionRecord) -> Result<()> {
        let mut state = self.state();
        if upsert(&mut state.actions, action, |x| x.id == action.id) {
            keep_newest(&mut state.actions, self.limits.actions);
        }
        Ok(())
    }

    async fn list_actions(&self, incident: Option<Uuid>) -> Result<Vec<ActionRecord>> {
        let mut out: Vec<ActionRecord> = self
            .state()
            .actions
            .iter()
            .filter(|a| incident.is_none_or(|i| a.incident == i))
            .cloned()
            .collect();
        out.sort_by_key(|a| std::cmp::Reverse(a.started_at));
        Ok(out)
    }

    async fn save_approval(&self, approval: &Approval) -> Result<()> {
        let mut state = self.state();
        // A decision is final: saving the approval again never undoes it.
        if state
            .approvals
            .iter()
            .any(|a| a.id == approval.id && a.state != ApprovalState::Pending)
        {
            return Ok(());
        }
        if upsert(&mut state.approvals, approval, |x| x.id == approval.id) {
            keep_newest(&mut state.approvals, self.limits.approvals);
        }
        Ok(())
    }

    async fn list_approvals(&self, pending_only: bool) -> Result<Vec<Approval>> {
        let mut out: Vec<Approval> = self
            .state()
            .approvals
            .iter()
            .filter(|a| !pending_only || a.state == ApprovalState::Pending)
            .cloned()
            .collect();
        out.sort_by_key(|a| a.requested_at);
        Ok(out)
    }

    async fn retention_cleanup(&self, older_than: DateTime<Utc>) -> Result<u64> {
        let mut state = self.state();
        let gone: Vec<uuid::Uuid> = state
            .incidents
            .iter()
            .filter(|i| i.status.is_terminal() && i.closed_at.unwrap_or(i.last_seen) < older_than)
            .map(|i| i.id)
            .collect();
        state.incidents.retain(|i| !gone.contains(&i.id));
        state.actions.retain(|a| !gone.contains(&a.incident));
        state.approvals.retain(|a| !gone.contains(&a.incident));
        Ok(gone.len() as u64)
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        let mut state = self.state();
        // Records arrive in chain order: a seq at or below the newest one's is taken (or
        // was, by a record the limit has since forgotten), never appended out of order.
        let taken = state
            .audit
            .back()
            .is_some_and(|newest| record.seq <= newest.seq);
        if taken {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "audit record {} exists already; the audit log is append-only",
                    record.seq
                ),
            ));
        }
        state.audit.push_back(record.clone());
        keep_newest(&mut state.audit, self.limits.audit);
        Ok(())
    }

    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        let state = self.state();
        let start = state.audit.len().saturating_sub(limit);
        Ok(state.audit.range(start..).cloned().collect())
    }

    /// None: nothing outlives a `MemoryStore`, so there is nothing to truncate unseen.
    async fn audit_checkpoint(&self) -> Result<Option<crate::ChainHead>> {
        Ok(None)
    }
}

#[async_trait]
impl DiagnosisCache for MemoryStore {
    async fn cached_diagnosis(&self, fingerprint: &str) -> Result<Option<Diagnosis>> {
        let mut state = self.state();
        let now = Utc::now();
        state.diagnoses.retain(|_, (_, expires)| *expires > now);
        Ok(state.diagnoses.get(fingerprint).map(|(d, _)| d.clone()))
    }

    async fn cache_diagnosis(
        &self,
        fingerprint: &str,
        diagnosis: &Diagnosis,
        ttl: Duration,
    ) -> Result<()> {
        let now = Utc::now();
        let expires = expiry(now, ttl);
        let mut state = self.state();
        state
            .diagnoses
            .insert(fingerprint.to_owned(), (diagnosis.clone(), expires));
        if state.diagnoses.len() > self.limits.diagnoses {
            state.diagnoses.retain(|_, (_, expires)| *expires > now);
        }
        while state.diagnoses.len() > self.limits.diagnoses {
            let soonest = state
                .diagnoses
                .iter()
                .min_by_key(|(_, (_, expires))| *expires)
                .map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                state.diagnoses.remove(&k);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ReportStore for MemoryStore {}

#[async_trait]
impl ControlStore for MemoryStore {
    async fn put_control(&self, key: &str, value: &serde_json::Value) -> Result<()> {
        let mut state = self.state();
        if !state.control.contains_key(key) && state.control.len() >= self.limits.control {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "the memory store holds {} control documents (MemoryLimits::control); \
                     remove silences or raise the limit",
                    self.limits.control
                ),
            ));
        }
        state.control.insert(key.to_owned(), value.clone());
        Ok(())
    }

    async fn delete_control(&self, key: &str) -> Result<bool> {
        Ok(self.state().control.remove(key).is_some())
    }

    async fn list_control(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>> {
        Ok(self
            .state()
            .control
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn approval(&self, id: Uuid) -> Result<Option<Approval>> {
        Ok(self.state().approvals.iter().find(|a| a.id == id).cloned())
    }

    async fn decide_approval<'a>(
        &self,
        id: Uuid,
        state: ApprovalState,
        by: &str,
        note: Option<&'a str>,
    ) -> Result<Decided> {
        let mut all = self.state();
        let Some(approval) = all.approvals.iter_mut().find(|a| a.id == id) else {
            return Ok(Decided::NotFound);
        };
        if approval.state != ApprovalState::Pending {
            return Ok(Decided::Already(approval.clone()));
        }
        approval.state = state;
        approval.decided_by = Some(by.to_owned());
        approval.decided_at = Some(Utc::now());
        approval.note = note.map(str::to_owned);
        let decided = approval.clone();
        drop(all);
        let _ = self.decisions.send(id);
        Ok(Decided::Now(decided))
    }

    fn approval_decisions(&self) -> Option<tokio::sync::broadcast::Receiver<Uuid>> {
        Some(self.decisions.subscribe())
    }
}

#[async_trait]
impl FleetStore for MemoryStore {
    async fn acquire_lease(&self, target: &str, holder: &str, ttl: Duration) -> Result<LeaseGrant> {
        let now = Utc::now();
        let mut state = self.state();
        if let Some((other, expires)) = state.leases.get(target)
            && other != holder
            && *expires > now
        {
            return Ok(LeaseGrant::Held {
                holder: other.clone(),
                expires_at: *expires,
            });
        }
        let expires_at = fleet_expiry(now, ttl);
        state
            .leases
            .insert(target.to_owned(), (holder.to_owned(), expires_at));
        Ok(LeaseGrant::Acquired { expires_at })
    }

    async fn renew_lease(&self, target: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = Utc::now();
        let mut state = self.state();
        match state.leases.get_mut(target) {
            Some((h, expires)) if h == holder => {
                *expires = fleet_expiry(now, ttl);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(&self, target: &str, holder: &str) -> Result<bool> {
        let mut state = self.state();
        let mine = state.leases.get(target).is_some_and(|(h, _)| h == holder);
        if mine {
            state.leases.remove(target);
        }
        Ok(mine)
    }

    async fn shared_cooldown(
        &self,
        strategy: &str,
        target: &str,
    ) -> Result<Option<SharedCooldown>> {
        let now = Utc::now();
        Ok(self
            .state()
            .cooldowns
            .get(&(strategy.to_owned(), target.to_owned()))
            .filter(|c| c.until > now)
            .cloned())
    }

    async fn start_shared_cooldown(
        &self,
        strategy: &str,
        target: &str,
        holder: &str,
        length: Duration,
    ) -> Result<()> {
        let now = Utc::now();
        let mut state = self.state();
        state.cooldowns.insert(
            (strategy.to_owned(), target.to_owned()),
            SharedCooldown {
                until: fleet_expiry(now, length),
                started_at: now,
                holder: holder.to_owned(),
            },
        );
        if state.cooldowns.len() > self.limits.fleet_entries {
            state.cooldowns.retain(|_, c| c.until > now);
        }
        while state.cooldowns.len() > self.limits.fleet_entries {
            let soonest = state
                .cooldowns
                .iter()
                .min_by_key(|(_, c)| c.until)
                .map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                state.cooldowns.remove(&k);
            }
        }
        Ok(())
    }

    async fn count_attempt(
        &self,
        target: &str,
        fingerprint: &str,
        window: Duration,
    ) -> Result<u32> {
        let now = Utc::now();
        let mut state = self.state();
        let slot = state
            .attempts
            .entry((target.to_owned(), fingerprint.to_owned()))
            .or_insert((0, now));
        if expiry(slot.1, window) <= now {
            slot.0 = 0;
        }
        slot.0 = slot.0.saturating_add(1);
        slot.1 = now;
        let count = slot.0;
        while state.attempts.len() > self.limits.fleet_entries {
            let stalest = state
                .attempts
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                state.attempts.remove(&k);
            }
        }
        Ok(count)
    }

    async fn clear_attempts(&self, target: &str, fingerprint: &str) -> Result<()> {
        self.state()
            .attempts
            .remove(&(target.to_owned(), fingerprint.to_owned()));
        Ok(())
    }

    async fn take_rate_permit(&self, _holder: &str, per_hour: u32) -> Result<bool> {
        let now = Utc::now();
        let hour_ago = now - chrono::TimeDelta::hours(1);
        let mut state = self.state();
        state.permits.retain(|t| *t > hour_ago);
        if state.permits.len() >= per_hour as usize {
            return Ok(false);
        }
        state.permits.push(now);
        Ok(true)
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        let store = super::MemoryStore::new();
        crate::testkit::run_all(&store).await;
        crate::testkit::run_all(&store).await;
    }

    fn incident(n: usize, status: crate::IncidentStatus) -> crate::Incident {
        let at = chrono::Utc::now();
        crate::Incident {
            id: uuid::Uuid::new_v4(),
            target: format!("t{n}"),
            fingerprint: format!("{n:016x}"),
            template: "boom".into(),
            stack: None,
            related: Vec::new(),
            pattern: None,
            status,
            severity: crate::Severity::High,
            occurrences: 1,
            samples: Vec::new(),
            opened_at: at,
            last_seen: at,
            closed_at: status.is_terminal().then_some(at),
            reason: String::new(),
        }
    }

    #[tokio::test]
    async fn a_bounded_store_forgets_closed_incidents_first_and_keeps_its_limits() {
        use crate::{AuditEntry, AuditStore, IncidentFilter, IncidentStatus, IncidentStore};
        let limits = super::MemoryLimits {
            incidents: 3,
            audit: 5,
            ..super::MemoryLimits::default()
        };
        let store = super::MemoryStore::with_limits(limits);
        let open = incident(0, IncidentStatus::Remediating);
        store.save_incident(&open).await.unwrap();
        for n in 1..10 {
            store
                .save_incident(&incident(n, IncidentStatus::Resolved))
                .await
                .unwrap();
        }
        let kept = store
            .list_incidents(&IncidentFilter::default())
            .await
            .unwrap();
        assert_eq!(kept.len(), 3);
        assert!(
            kept.iter().any(|i| i.id == open.id),
            "the open incident outlives closed ones"
        );
        // Updating a kept incident does not evict anything.
        store.save_incident(&open).await.unwrap();
        assert_eq!(
            store
                .list_incidents(&IncidentFilter::default())
                .await
                .unwrap()
                .len(),
            3
        );

        let mut head = None;
        for n in 0..12 {
            let r =
                AuditEntry::new("test", format!("r{n}")).chain(head.as_ref(), chrono::Utc::now());
            store.append_audit(&r).await.unwrap();
            head = Some(r);
        }
        let audit = store.list_audit(usize::MAX).await.unwrap();
        assert_eq!(audit.len(), 5);
        assert_eq!(audit.last().map(|r| r.seq), Some(12));
        crate::verify_chain(&audit).expect("the kept window still chains");
        // A taken position is still refused, and so is one whose record was forgotten.
        let again = head.unwrap();
        assert_eq!(
            store.append_audit(&again).await.unwrap_err().kind(),
            crate::ErrorKind::Conflict
        );
        let forgotten = AuditEntry::new("test", "late").chain(None, chrono::Utc::now());
        assert_eq!(forgotten.seq, 1);
        assert_eq!(
            store.append_audit(&forgotten).await.unwrap_err().kind(),
            crate::ErrorKind::Conflict,
            "never appended out of chain order"
        );
    }

    #[tokio::test]
    async fn diagnosis_cache_keeps_one_per_fingerprint() {
        let store = super::MemoryStore::new();
        crate::testkit::diagnosis_cache_keeps_one_per_fingerprint(&store).await;
    }
}
