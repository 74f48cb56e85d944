//! An in-memory [`PatternStore`]: for tests, examples and services that need no history.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::fleet_expiry;
use crate::{
    ActionRecord, Approval, ApprovalState, AuditRecord, Diagnosis, Error, ErrorKind, Incident,
    IncidentFilter, LeaseGrant, Pattern, PatternStore, Result, SharedCooldown,
};

/// Keeps everything in memory behind one lock. Nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    patterns: BTreeMap<String, Pattern>,
    incidents: Vec<Incident>,
    actions: Vec<ActionRecord>,
    approvals: Vec<Approval>,
    audit: Vec<AuditRecord>,
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
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
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

fn upsert<T: Clone>(items: &mut Vec<T>, item: &T, same: impl Fn(&T) -> bool) {
    match items.iter_mut().find(|x| same(x)) {
        Some(slot) => *slot = item.clone(),
        None => items.push(item.clone()),
    }
}

#[async_trait]
impl PatternStore for MemoryStore {
    fn name(&self) -> &str {
        "memory"
    }

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

    async fn save_incident(&self, incident: &Incident) -> Result<()> {
        upsert(&mut self.state().incidents, incident, |x| {
            x.id == incident.id
        });
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
        upsert(&mut self.state().actions, action, |x| x.id == action.id);
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
        upsert(&mut self.state().approvals, approval, |x| {
            x.id == approval.id
        });
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

    async fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        let mut state = self.state();
        if state.audit.iter().any(|r| r.seq == record.seq) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "audit record {} exists already; the audit log is append-only",
                    record.seq
                ),
            ));
        }
        state.audit.push(record.clone());
        Ok(())
    }

    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        let state = self.state();
        let start = state.audit.len().saturating_sub(limit);
        Ok(state.audit[start..].to_vec())
    }

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
        let expires = expiry(Utc::now(), ttl);
        self.state()
            .diagnoses
            .insert(fingerprint.to_owned(), (diagnosis.clone(), expires));
        Ok(())
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
        self.state().cooldowns.insert(
            (strategy.to_owned(), target.to_owned()),
            SharedCooldown {
                until: fleet_expiry(now, length),
                started_at: now,
                holder: holder.to_owned(),
            },
        );
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
        Ok(slot.0)
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

    #[tokio::test]
    async fn diagnosis_cache_keeps_one_per_fingerprint() {
        let store = super::MemoryStore::new();
        crate::testkit::diagnosis_cache_keeps_one_per_fingerprint(&store).await;
    }
}
