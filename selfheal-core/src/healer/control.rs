//! The operators' control state in the store ([`ControlStore`](crate::ControlStore)):
//! silences, dry-run switches, the breaker and back-off. Every change is written
//! through; the whole state is read at start (before the first signal) and again every
//! `safety.control_refresh`, so a change made on one replica holds on every replica
//! that shares the store, and after a restart.
//!
//! A write the store refuses is counted in [`Healer::store_errors`] and kept here; it
//! is tried again before the next re-read, and while any is still unsaved the re-read
//! keeps the local state instead of replacing it with the store's older one.
//!
//! | key | document |
//! |---|---|
//! | `silence/<id>` | `{id, silence, created_by}` |
//! | `dry_run/all` | `{on}` |
//! | `dry_run/pattern/<name>` | `{pattern, on}` |
//! | `breaker/state` | `{open}` |
//! | `breaker/failure/<id>` | `{at}`: one failed remediation |
//! | `backoff/["<strategy>","<target>"]` | `{strategy, target, fingerprint, at, repeats}` |

use super::admin::Admin;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use super::Healer;
use super::contain::panic_message;
use super::silence::Silence;
use crate::{Error, ErrorKind, Result};

const SILENCE: &str = "silence/";
pub(super) const DRY_RUN_ALL: &str = "dry_run/all";
const DRY_RUN_PATTERN: &str = "dry_run/pattern/";
const BREAKER_STATE: &str = "breaker/state";
const BREAKER_FAILURE: &str = "breaker/failure/";
const BACKOFF: &str = "backoff/";

pub(super) fn silence_key(id: Uuid) -> String {
    format!("{SILENCE}{id}")
}

pub(super) fn silence_doc(id: Uuid, silence: &Silence, created_by: &str) -> Value {
    json!({"id": id, "silence": silence, "created_by": created_by})
}

pub(super) fn dry_run_pattern_key(pattern: &str) -> String {
    format!("{DRY_RUN_PATTERN}{pattern}")
}

fn backoff_key(strategy: &str, target: &str) -> String {
    // JSON keeps the two apart whatever characters they hold.
    format!("{BACKOFF}{}", json!([strategy, target]))
}

/// `t` on tokio's clock (so paused-time tests drive stored times too).
pub(super) fn instant_at(t: DateTime<Utc>) -> Instant {
    let (now, wall) = (Instant::now(), Utc::now());
    match (t - wall).to_std() {
        Ok(ahead) => now
            .checked_add(ahead)
            .or_else(|| now.checked_add(Silence::MAX_DURATION))
            .unwrap_or(now),
        Err(_) => now
            .checked_sub((wall - t).to_std().unwrap_or_default())
            .unwrap_or(now),
    }
}

/// `t`, a time on tokio's clock, as a wall-clock time.
fn wall_at(t: Instant) -> DateTime<Utc> {
    let (now, wall) = (Instant::now(), Utc::now());
    let delta = |d: Duration| chrono::TimeDelta::from_std(d).unwrap_or_default();
    if t >= now {
        wall + delta(t - now)
    } else {
        wall - delta(now - t)
    }
}

/// Writes not yet in the store, and the lock and generation that keep a re-read from
/// undoing a change made while it read.
#[derive(Debug, Default)]
pub(super) struct Control {
    /// By key: the document to put (`Some`) or a delete (`None`).
    unsaved: Mutex<BTreeMap<String, Option<Value>>>,
    /// Bumped by every local change.
    generation: AtomicU64,
    /// Held while a change is made or a re-read is applied.
    applying: Mutex<()>,
}

impl Control {
    fn unsaved(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Option<Value>>> {
        self.unsaved.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Deserialize)]
struct SilenceDoc {
    id: Uuid,
    silence: Silence,
    created_by: String,
}

#[derive(Deserialize)]
struct SwitchDoc {
    #[serde(default)]
    pattern: String,
    on: bool,
}

#[derive(Deserialize)]
struct OpenDoc {
    open: bool,
}

#[derive(Deserialize)]
struct AtDoc {
    at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct BackoffDoc {
    strategy: String,
    target: String,
    fingerprint: String,
    at: DateTime<Utc>,
    repeats: u32,
}

impl Healer {
    /// Makes a local change to the control state, so that a re-read in flight does not
    /// replace it with what the store held before.
    pub(super) fn control_changed<R>(&self, change: impl FnOnce() -> R) -> R {
        let c = &self.inner.control;
        let _applying = c.applying.lock().unwrap_or_else(|e| e.into_inner());
        let out = change();
        c.generation.fetch_add(1, Ordering::SeqCst);
        out
    }

    /// Writes one control document through (`None` deletes it). A failure is counted
    /// and the write kept for the next re-read; it never fails the caller.
    pub(super) async fn save_control(&self, key: String, value: Option<Value>) {
        match self.write_control(&key, value.as_ref()).await {
            Ok(()) => {
                self.inner.control.unsaved().remove(&key);
            }
            Err(e) => {
                self.store_failed("save_control", &e);
                self.inner.control.unsaved().insert(key, value);
            }
        }
    }

    async fn write_control(&self, key: &str, value: Option<&Value>) -> Result<()> {
        match value {
            Some(v) => self.inner.store.put_control(key, v).await,
            None => self.inner.store.delete_control(key).await.map(|_| ()),
        }
    }

    /// Saves the back-off of `strategy` on `target` as it stands now.
    pub(super) async fn save_backoff(&self, strategy: &str, target: &str) {
        let doc =
            self.inner
                .backoff
                .last_fix(strategy, target)
                .map(|(fingerprint, at, repeats)| {
                    json!({
                        "strategy": strategy, "target": target, "fingerprint": fingerprint,
                        "at": wall_at(at), "repeats": repeats,
                    })
                });
        self.save_control(backoff_key(strategy, target), doc).await;
    }

    /// Counts a failed remediation into the breaker and the store; the failures in the
    /// window when it tripped the breaker.
    pub(super) async fn breaker_failed(&self) -> Option<usize> {
        let tripped = self.control_changed(|| self.inner.breaker.failed());
        let key = format!("{BREAKER_FAILURE}{}", Uuid::new_v4());
        self.save_control(key, Some(json!({"at": Utc::now()})))
            .await;
        if tripped.is_some() {
            self.save_control(BREAKER_STATE.to_owned(), Some(json!({"open": true})))
                .await;
        }
        tripped
    }

    /// Closes the breaker here and in the store, and forgets its failures; `false` if
    /// it was not open.
    pub(super) async fn breaker_rearm(&self) -> bool {
        if !self.control_changed(|| self.inner.breaker.rearm()) {
            return false;
        }
        self.save_control(BREAKER_STATE.to_owned(), Some(json!({"open": false})))
            .await;
        match self.inner.store.list_control(BREAKER_FAILURE).await {
            Ok(failures) => {
                for (key, _) in failures {
                    self.save_control(key, None).await;
                }
            }
            // A read: nothing is lost, the failures age out of the breaker's window.
            Err(e) => {
                tracing::warn!(error = %e, "could not list the breaker's failures to clear them")
            }
        }
        true
    }

    async fn retry_unsaved(&self) -> Result<()> {
        let pending: Vec<_> = self.inner.control.unsaved().clone().into_iter().collect();
        for (key, value) in pending {
            if let Err(e) = self.write_control(&key, value.as_ref()).await {
                self.store_failed("save_control", &e);
                let waiting = self.inner.control.unsaved().len();
                return Err(Error::new(
                    e.kind(),
                    format!(
                        "{}; {waiting} control writes wait for the store, so the local \
                         control state is kept",
                        e.message()
                    ),
                ));
            }
            let mut unsaved = self.inner.control.unsaved();
            // Unless a newer write of the same key came meanwhile.
            if unsaved.get(&key) == Some(&value) {
                unsaved.remove(&key);
            }
        }
        Ok(())
    }

    /// Takes the documents read from the store; returns the keys of documents that are
    /// of no use any more (ended silences, old failures, reset back-offs).
    fn apply_control(&self, docs: Vec<(String, Value)>) -> Vec<String> {
        let mut silences = Vec::new();
        let (mut all, mut patterns) = (None, Vec::new());
        let (mut open, mut failures) = (false, Vec::new());
        let mut fixes = Vec::new();
        let mut stale = Vec::new();
        let now = Instant::now();
        let window = self.inner.breaker.config().window;
        for (key, value) in docs {
            let parsed = if key.starts_with(SILENCE) {
                serde_json::from_value::<SilenceDoc>(value)
                    .map(|d| silences.push((d.id, d.silence, d.created_by)))
            } else if key == DRY_RUN_ALL {
                serde_json::from_value::<SwitchDoc>(value).map(|d| all = Some(d.on))
            } else if key.starts_with(DRY_RUN_PATTERN) {
                serde_json::from_value::<SwitchDoc>(value).map(|d| patterns.push((d.pattern, d.on)))
            } else if key == BREAKER_STATE {
                serde_json::from_value::<OpenDoc>(value).map(|d| open = d.open)
            } else if key.starts_with(BREAKER_FAILURE) {
                serde_json::from_value::<AtDoc>(value).map(|d| {
                    let at = instant_at(d.at);
                    if now.saturating_duration_since(at) > window {
                        stale.push(key.clone());
                    } else {
                        failures.push(at);
                    }
                })
            } else if key.starts_with(BACKOFF) {
                serde_json::from_value::<BackoffDoc>(value).map(|d| {
                    let at = instant_at(d.at);
                    fixes.push(((d.strategy, d.target), (d.fingerprint, at, d.repeats)));
                })
            } else {
                Ok(())
            };
            if let Err(e) = parsed {
                // Another version's document, or a damaged one: never fatal.
                tracing::warn!(key, error = %e, "control document not understood; ignored");
            }
        }
        let ended = self.inner.silences.replace(silences);
        stale.extend(ended.into_iter().map(silence_key));
        self.inner.dry_run.replace(all, patterns);
        self.inner.breaker.replace(open, failures);
        let reset = self.inner.backoff.replace(fixes);
        stale.extend(reset.iter().map(|(s, t)| backoff_key(s, t)));
        stale
    }

    /// Re-reads the control state every `safety.control_refresh` until shutdown.
    pub(super) async fn refresh_control_periodically(self) {
        let every = self.inner.config.safety.control_refresh;
        loop {
            tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            self.reload_control_contained("re-reading").await;
        }
    }

    /// [`Admin::reload_control`], where a failure or a panic in the store is logged
    /// and the healer goes on with the state it holds.
    pub(super) async fn reload_control_contained(&self, when: &str) {
        let admin = self.admin();
        let reload = std::panic::AssertUnwindSafe(admin.reload_control());
        match futures_util::FutureExt::catch_unwind(reload).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.kind() == ErrorKind::Unavailable => {
                tracing::debug!(error = %e, when, "control state not read; keeping what is held")
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, when, "control state not read; keeping what is held")
            }
            Err(panic) => tracing::error!(
                panic = panic_message(panic.as_ref()),
                when,
                "reading the control state panicked; keeping what is held"
            ),
        }
    }
}

impl Admin {
    /// Reads the control state from the store now and takes it: silences, dry-run
    /// switches, the breaker and back-off as the replicas that share the store left
    /// them. The healer does this at start and every `safety.control_refresh`; call it
    /// to see another replica's change at once.
    ///
    /// Writes the store refused earlier are tried first; while any is still refused,
    /// the local state is kept (it is newer) and the store's error returned.
    ///
    /// ```
    /// use selfheal_core::{Healer, MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
    /// let store = std::sync::Arc::new(MemoryStore::new());
    /// let a = Healer::builder().store_arc(store.clone()).build()?;
    /// let b = Healer::builder().store_arc(store).build()?;
    /// a.admin().set_dry_run(true, "alice").await;
    /// b.admin().reload_control().await?;
    /// assert!(b.admin().is_dry_run(None));
    /// # Ok(()) }
    /// ```
    pub async fn reload_control(&self) -> Result<()> {
        self.healer.retry_unsaved().await?;
        let generation = self.healer.inner.control.generation.load(Ordering::SeqCst);
        let docs = match self.healer.inner.store.list_control("").await {
            Ok(docs) => docs,
            // A failed read loses nothing (store_errors counts lost writes): the local
            // state stays in force and the next re-read tries again.
            Err(e) => {
                tracing::warn!(store = self.healer.inner.store.name(), error = %e, "could not read the control state; keeping the local one");
                return Err(e);
            }
        };
        let stale = {
            let c = &self.healer.inner.control;
            let _applying = c.applying.lock().unwrap_or_else(|e| e.into_inner());
            if c.generation.load(Ordering::SeqCst) != generation || !c.unsaved().is_empty() {
                // Changed here while the store was read: the next re-read takes it.
                return Ok(());
            }
            self.healer.apply_control(docs)
        };
        for key in stale {
            self.healer.save_control(key, None).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::{MockStore, SilenceScope};

    fn down() -> Error {
        Error::new(ErrorKind::Unavailable, "connection refused")
    }

    /// A store whose control writes fail while `down` is set, and whose reads return
    /// nothing (as a store that lost the write would).
    fn store(down: Arc<AtomicBool>) -> MockStore {
        let mut store = MockStore::new();
        store.expect_append_audit().returning(|_| Ok(()));
        store.expect_put_control().returning(move |_, _| {
            if down.load(Ordering::SeqCst) {
                Err(self::down())
            } else {
                Ok(())
            }
        });
        store.expect_list_control().returning(|_| Ok(Vec::new()));
        store
    }

    #[tokio::test]
    async fn a_refused_write_is_counted_kept_and_retried_before_the_store_is_believed() {
        let is_down = Arc::new(AtomicBool::new(true));
        // Unbuffered: the healer's own keep-and-retry is what is tested here.
        let healer = Healer::builder()
            .store(store(is_down.clone()))
            .unbuffered()
            .build()
            .unwrap();
        let silence =
            Silence::from_now(SilenceScope::Target("db".into()), Duration::from_secs(600));
        healer.admin().add_silence(silence, "alice").await.unwrap();
        assert_eq!(healer.store_errors(), 1, "counted, never fatal");

        // Still refused: the re-read keeps the local silence instead of the store's
        // (empty) state, and says why.
        let err = healer.admin().reload_control().await.unwrap_err();
        assert!(err.to_string().contains("1 control writes wait"), "{err}");
        assert_eq!(healer.admin().silences().len(), 1);

        // The store is back: the write lands first, then the store is read.
        is_down.store(false, Ordering::SeqCst);
        healer.admin().reload_control().await.unwrap();
        assert!(healer.inner.control.unsaved().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn stored_times_come_back_on_tokio_clock() {
        let t = Instant::now() + Duration::from_secs(90);
        let back = instant_at(wall_at(t));
        let skew = if back > t { back - t } else { t - back };
        assert!(skew < Duration::from_millis(5), "{skew:?}");
    }
}
