//! Silences and maintenance windows: by target, pattern or fingerprint, with a start
//! and an end. Signals they match are counted but open nothing and run nothing.
//! Silences are kept in the store (`control.rs`): one added on any replica holds on
//! every replica that shares the store (within `safety.control_refresh`) and after a
//! restart. What each silence suppressed is counted per process.
//!
//! ```
//! use std::time::Duration;
//! use selfheal_core::{Healer, Silence, SilenceScope};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
//! let healer = Healer::builder().build()?;
//! let id = healer
//!     .admin()
//!     .add_silence(
//!         Silence::from_now(SilenceScope::Target("orders-db".into()), Duration::from_secs(3600))
//!             .reason("planned failover"),
//!         "alice",
//!     )
//!     .await?;
//! assert!(healer.admin().silences()[0].active);
//! healer.admin().remove_silence(id, "alice").await?;
//! # Ok(()) }
//! ```

use super::admin::Admin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

use super::Healer;
use crate::{AuditEntry, Error, Phase, Result};

/// What a silence matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SilenceScope {
    /// Every signal of one target.
    Target(String),
    /// Signals one pattern matches.
    Pattern(String),
    /// Signals with one fingerprint id.
    Fingerprint(String),
}

impl SilenceScope {
    fn value(&self) -> &str {
        match self {
            SilenceScope::Target(v) | SilenceScope::Pattern(v) | SilenceScope::Fingerprint(v) => v,
        }
    }
}

/// A silence or maintenance window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// What it matches.
    pub scope: SilenceScope,
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// When it ends.
    pub ends_at: DateTime<Utc>,
    /// Why (shown to operators and audited).
    pub reason: String,
}

impl Silence {
    /// A silence of `scope` from `starts_at` to `ends_at`.
    pub fn new(scope: SilenceScope, starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> Self {
        Silence {
            scope,
            starts_at,
            ends_at,
            reason: String::new(),
        }
    }

    /// A silence of `scope` starting now and lasting `duration`; at most
    /// [`Silence::MAX_DURATION`] (a longer one, up to `Duration::MAX`, is taken as that).
    pub fn from_now(scope: SilenceScope, duration: Duration) -> Self {
        let now = Utc::now();
        let duration = duration.min(Self::MAX_DURATION);
        let end = chrono::Duration::from_std(duration)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(now);
        Silence::new(scope, now, end)
    }

    /// The longest silence: 100 years, which stores and compares like any date.
    pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

    /// Sets the reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }
}

/// A silence the healer holds, and what it has suppressed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SilenceStatus {
    /// Its id, for [`Admin::remove_silence`].
    pub id: Uuid,
    /// The silence.
    pub silence: Silence,
    /// Who added it.
    pub created_by: String,
    /// Whether it is in force now.
    pub active: bool,
    /// Signals it suppressed.
    pub suppressed: u64,
}

#[derive(Debug)]
struct Entry {
    id: Uuid,
    silence: Silence,
    created_by: String,
    /// Start and end on tokio's clock, so paused-time tests drive them too.
    start: Instant,
    end: Instant,
    suppressed: AtomicU64,
}

impl Entry {
    fn new(id: Uuid, silence: Silence, created_by: String) -> Self {
        Entry {
            id,
            start: super::control::instant_at(silence.starts_at),
            end: super::control::instant_at(silence.ends_at),
            silence,
            created_by,
            suppressed: AtomicU64::new(0),
        }
    }

    fn active(&self, now: Instant) -> bool {
        self.start <= now && now < self.end
    }

    /// Silences that ended a day ago are of no use to anyone: the list stays short.
    fn stale(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.end) >= Duration::from_secs(86_400)
    }
}

/// The silences in force or to come.
#[derive(Debug, Default)]
pub(crate) struct Silences {
    list: RwLock<Vec<Arc<Entry>>>,
}

/// A signal a silence suppressed.
pub(crate) struct Suppressed {
    pub(crate) silence: Uuid,
    /// The first signal this silence suppressed.
    pub(crate) first: bool,
}

impl Silences {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Entry>>> {
        self.list.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether any silence is in force (the hot path skips the rest when none is).
    pub(crate) fn any_active(&self) -> bool {
        let now = Instant::now();
        self.read().iter().any(|e| e.active(now))
    }

    /// Whether a pattern silence is in force (so the signal's pattern must be known).
    pub(crate) fn wants_pattern(&self) -> bool {
        let now = Instant::now();
        self.read()
            .iter()
            .any(|e| e.active(now) && matches!(e.silence.scope, SilenceScope::Pattern(_)))
    }

    fn find(&self, target: &str, pattern: Option<&str>, fingerprint: &str) -> Option<Arc<Entry>> {
        let now = Instant::now();
        self.read()
            .iter()
            .find(|e| {
                e.active(now)
                    && match &e.silence.scope {
                        SilenceScope::Target(t) => t == target,
                        SilenceScope::Pattern(p) => pattern == Some(p.as_str()),
                        SilenceScope::Fingerprint(f) => f == fingerprint,
                    }
            })
            .cloned()
    }

    /// The id of the silence in force matching these, if any.
    pub(crate) fn matching(
        &self,
        target: &str,
        pattern: Option<&str>,
        fingerprint: &str,
    ) -> Option<Uuid> {
        self.find(target, pattern, fingerprint).map(|e| e.id)
    }

    /// The silence in force matching the signal, if any, counting the signal into it.
    pub(crate) fn suppress(
        &self,
        target: &str,
        pattern: Option<&str>,
        fingerprint: &str,
    ) -> Option<Suppressed> {
        let hit = self.find(target, pattern, fingerprint)?;
        let before = hit.suppressed.fetch_add(1, Ordering::Relaxed);
        Some(Suppressed {
            silence: hit.id,
            first: before == 0,
        })
    }

    fn add(&self, id: Uuid, silence: Silence, created_by: &str) {
        let entry = Entry::new(id, silence, created_by.to_owned());
        let now = Instant::now();
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        list.retain(|e| !e.stale(now));
        list.push(Arc::new(entry));
    }

    /// Takes the silences read from the store (id, silence, who added it), keeping
    /// what each one already here suppressed. Returns the ids of those that ended a
    /// day ago, which the store need not keep.
    pub(super) fn replace(&self, stored: Vec<(Uuid, Silence, String)>) -> Vec<Uuid> {
        let now = Instant::now();
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        let mut kept = Vec::with_capacity(stored.len());
        let mut stale = Vec::new();
        for (id, silence, created_by) in stored {
            let entry = match list.iter().find(|e| e.id == id && e.silence == silence) {
                Some(e) => e.clone(),
                None => Arc::new(Entry::new(id, silence, created_by)),
            };
            if entry.stale(now) {
                stale.push(id);
            } else {
                kept.push(entry);
            }
        }
        *list = kept;
        stale
    }

    fn remove(&self, id: Uuid) -> Option<Silence> {
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        let at = list.iter().position(|e| e.id == id)?;
        Some(list.remove(at).silence.clone())
    }

    fn statuses(&self) -> Vec<SilenceStatus> {
        let now = Instant::now();
        self.read()
            .iter()
            .map(|e| SilenceStatus {
                id: e.id,
                silence: e.silence.clone(),
                created_by: e.created_by.clone(),
                active: e.active(now),
                suppressed: e.suppressed.load(Ordering::Relaxed),
            })
            .collect()
    }
}

impl Healer {
    /// Whether a silence suppresses this signal; announces the first one per silence.
    pub(super) fn silenced(&self, target: &str, pattern: Option<&str>, fingerprint: &str) -> bool {
        let Some(hit) = self.inner.silences.suppress(target, pattern, fingerprint) else {
            return false;
        };
        if hit.first {
            self.emit(
                None,
                target,
                Phase::Silenced,
                format!(
                    "silence {} suppresses signals: counted, nothing opens or runs",
                    hit.silence
                ),
            );
        }
        true
    }
}

impl Admin {
    /// Adds a silence (or maintenance window); `actor` is audited. Refused when it
    /// ends before it starts, has already ended, or names nothing.
    pub async fn add_silence(&self, silence: Silence, actor: &str) -> Result<Uuid> {
        if silence.scope.value().trim().is_empty() {
            return Err(Error::invalid(
                "a silence needs a target, pattern or fingerprint to match; give one",
            ));
        }
        if silence.ends_at <= silence.starts_at {
            return Err(Error::invalid(format!(
                "silence ends ({}) before it starts ({}); give an end after the start",
                silence.ends_at, silence.starts_at
            )));
        }
        if silence.ends_at <= Utc::now() {
            return Err(Error::invalid(format!(
                "silence ended already ({}); give an end in the future",
                silence.ends_at
            )));
        }
        let detail = serde_json::to_value(&silence).unwrap_or_default();
        let id = Uuid::new_v4();
        let doc = super::control::silence_doc(id, &silence, actor);
        self.healer
            .control_changed(|| self.healer.inner.silences.add(id, silence, actor));
        self.healer
            .save_control(super::control::silence_key(id), Some(doc))
            .await;
        self.healer
            .audit(AuditEntry {
                actor: actor.to_owned(),
                detail,
                ..AuditEntry::new("self_heal.silence_added", id.to_string())
            })
            .await;
        Ok(id)
    }

    /// Every silence, in force, to come or recently ended, with what it suppressed.
    pub fn silences(&self) -> Vec<SilenceStatus> {
        self.healer.inner.silences.statuses()
    }

    /// Lifts a silence now; `actor` is audited.
    pub async fn remove_silence(&self, id: Uuid, actor: &str) -> Result<()> {
        let mut removed = self
            .healer
            .control_changed(|| self.healer.inner.silences.remove(id));
        if removed.is_none() {
            // Added on another replica since the last re-read, perhaps.
            let _ = self.reload_control().await;
            removed = self
                .healer
                .control_changed(|| self.healer.inner.silences.remove(id));
        }
        let silence = removed.ok_or_else(|| {
            Error::not_found(format!("no silence {id}; list them with Admin::silences"))
        })?;
        self.healer
            .save_control(super::control::silence_key(id), None)
            .await;
        self.healer
            .audit(AuditEntry {
                actor: actor.to_owned(),
                detail: serde_json::to_value(&silence).unwrap_or_default(),
                ..AuditEntry::new("self_heal.silence_removed", id.to_string())
            })
            .await;
        Ok(())
    }
}
