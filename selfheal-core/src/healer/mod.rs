//! The [`Healer`]: the handle a service embeds. It takes signals, runs the healing
//! pipeline (detect, match, advise, decide, guard, plan, approve, execute, verify,
//! learn, audit) and answers the admin questions. `docs/ARCHITECTURE.md` in the
//! repository maps each stage to its file.
//!
//! Around the guards sits the safety envelope (`envelope.rs` wires it in, one module
//! per piece): a storm short-circuit, cooldowns that back off on repeat incidents and
//! flag fixes that mask the real issue, a breaker on the healer itself
//! ([`Admin::rearm`]), approvals that expire into escalations, silences
//! ([`Admin::add_silence`]), one incident per escalation (`escalation.rs`: its error
//! keeps counting into it, reminders on a back-off, a new incident only after a quiet
//! period), errors the healer's own action causes counted into the
//! open incident, dependency-aware attribution ([`HealerBuilder::depends_on`]) and a
//! dry-run mode ([`Admin::set_dry_run`], [`Admin::set_pattern_dry_run`]). Silences,
//! dry-run switches, the breaker and back-off live in the store (`control.rs`), so they
//! hold on every replica and after a restart ([`Admin::reload_control`]).

mod admin;
mod approval;
mod backoff;
mod backups;
mod bindings;
mod breaker;
mod builder;
mod chain;
mod contain;
mod control;
mod dependency;
mod detector;
mod dry_run;
mod envelope;
mod escalation;
mod evidence;
mod external;
mod fleet;
mod guard;
mod heal;
mod intake;
mod learning;
mod lifecycle;
mod limits;
mod lookup;
mod queue;
mod reconcile;
#[cfg(test)]
mod reload_tests;
mod report;
mod self_caused;
mod sightings;
mod silence;
mod sources;
mod storm;
mod trail;
mod verify;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::Utc;
use dashmap::DashMap;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::{
    AuditEntry, EventData, Executor, Fingerprinter, HealerConfig, HealerLayer, HealingEvent,
    Incident, LlmAdvisor, Matcher, Notification, Notifier, Phase, Signal, Store, Strategy,
    Verifier,
};

pub use admin::{Admin, PatternStats, Stats};
pub use backups::Backup;
pub use bindings::{BindingIssue, BindingProblem};
pub use builder::{HealerBuilder, Integration};
pub use chain::CHECKED_AT_START;
pub use envelope::SafetyStatus;
pub use learning::{LEARNED_PREFIX, Learned, template_regex};
pub use sightings::WeakHealer;
pub use silence::{Silence, SilenceScope, SilenceStatus};
pub use trail::AUDIT_BACKLOG;

/// The healer. Cheap to clone: every clone is the same healer.
///
/// Build it with [`Healer::builder`], start it with [`Healer::spawn`], feed it with
/// [`Healer::observe`] or [`Healer::layer`], watch it with [`Healer::subscribe`].
#[derive(Clone)]
pub struct Healer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Healer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Healer")
            .field("store", &self.inner.store.name())
            .field(
                "strategies",
                &self.inner.strategies.keys().collect::<Vec<_>>(),
            )
            .field("dropped", &self.dropped())
            .field("failed", &self.failed())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: HealerConfig,
    store: Arc<dyn Store>,
    /// The buffer the builder wrapped the store in, unless it was built unbuffered.
    store_buffer: Option<Arc<crate::store::BufferedStore>>,
    fingerprinter: Arc<dyn Fingerprinter>,
    strategies: HashMap<String, Arc<dyn Strategy>>,
    verifiers: HashMap<String, Arc<dyn Verifier>>,
    executor: Arc<dyn Executor>,
    advisor: Option<Arc<dyn LlmAdvisor>>,
    notifiers: Vec<Arc<dyn Notifier>>,
    /// Masks secrets in signals as they enter, and in what is stored, audited or sent.
    redactor: crate::Redactor,
    /// Signs the Approve / Reject links of approval notifications.
    approval_links: Option<crate::ApprovalLinks>,

    /// Signals between `observe` and the intake: bounded in count and bytes, fair per target.
    queue: queue::Queue,
    /// Set by the first `spawn`.
    spawned: AtomicBool,
    /// The sources that feed the healer, and the intake's tracked lane.
    sources: sources::Sources,
    /// Signals handed to the tracked lane (the queue counts its own).
    tracked: AtomicU64,
    /// Signals discarded at shutdown or by the tracked lane (the queue counts those it
    /// refused).
    dropped: AtomicU64,
    failed: AtomicU64,
    events: broadcast::Sender<HealingEvent>,

    /// The matcher in force and the ticket of the load that built it.
    matcher: RwLock<(u64, Arc<Matcher>)>,
    /// Tickets of pattern loads, taken before each load reads the store.
    loads: AtomicU64,
    detector: detector::Detector,
    guards: guard::Guards,
    /// Open incidents by id, and indexes from (target, fingerprint) and target to them.
    open: DashMap<Uuid, Incident>,
    by_fingerprint: DashMap<String, Uuid>,
    by_target: DashMap<String, Uuid>,
    /// Recent probe answers for ambiguous patterns, per target.
    evidence: evidence::Evidence,
    /// What the check of the audit chain at start found.
    chain_check: chain::ChainCheck,
    /// Escalated incidents held back only by an unhealthy dependency, with its name.
    blocked_by: DashMap<Uuid, String>,
    /// Event types already notified per live incident: each is sent once.
    notified: DashMap<Uuid, Vec<String>>,
    /// Answers awaited by incidents waiting for approval, by approval id.
    pending: DashMap<Uuid, (crate::Approval, oneshot::Sender<Answer>)>,
    /// The audit chain's head and the records waiting for the store.
    trail: trail::Trail,
    store_errors: AtomicU64,
    /// This replica's name in fleet leases and cooldowns.
    replica: String,

    /// The safety envelope.
    storm: storm::Storm,
    backoff: backoff::Backoff,
    breaker: breaker::Breaker,
    silences: silence::Silences,
    dependencies: dependency::Dependencies,
    dry_run: dry_run::DryRunSwitch,
    /// Control state writes the store refused, and what keeps re-reads consistent.
    control: control::Control,
    acting: self_caused::Acting,
    /// Alerts other systems reported firing or resolved, per target (verification).
    external: external::ExternalAlerts,

    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// An operator's answer to an approval this process waits on.
#[derive(Debug)]
enum Answer {
    /// Decided in the store by this process's operator handle: wake at once.
    Decided(Box<crate::Approval>),
    /// Decided here while the store could not take it (state, by whom, note).
    Local(crate::ApprovalState, String, Option<String>),
}

/// The running pipeline. Dropping it does not stop the healer; call [`Running::shutdown`].
#[derive(Debug)]
#[must_use = "keep the handle to shut the healer down cleanly"]
pub struct Running {
    healer: Healer,
}

impl Running {
    /// Stops taking signals, cancels waits (approvals, queues, verification) and waits
    /// for every task to finish. Signals still queued are discarded.
    pub async fn shutdown(self) {
        self.healer.shutdown().await;
    }
}

impl Healer {
    /// Starts configuring a healer.
    pub fn builder() -> HealerBuilder {
        HealerBuilder::default()
    }

    /// Starts the pipeline on the current tokio runtime: loads the patterns and the audit
    /// head from the store, then processes signals. Calling it twice is a no-op.
    pub fn spawn(&self) -> Running {
        if !self.inner.spawned.swap(true, Ordering::SeqCst) {
            let this = self.clone();
            self.inner
                .tasks
                .spawn(async move { this.run_intake().await });
            let this = self.clone();
            self.inner
                .tasks
                .spawn(async move { this.refresh_control_periodically().await });
            self.start_sources();
            let this = self.clone();
            self.inner.tasks.spawn(async move {
                tokio::select! {
                    _ = this.inner.guards.dispatch() => {}
                    _ = this.inner.cancel.cancelled() => {}
                }
            });
        }
        Running {
            healer: self.clone(),
        }
    }

    /// Hands a signal to the pipeline. Never blocks and never fails: a signal the
    /// queue refuses is counted in [`Healer::dropped`].
    ///
    /// The signal is first cut to its bounds ([`crate::MAX_STACK_BYTES`] and the
    /// others). The queue holds at most `intake.queue_capacity` signals and
    /// `intake.queue_bytes` bytes, and it is fair per target: a signal is refused when
    /// its target would hold more signals or bytes than the queue had free (so one
    /// target never fills more than half of it, and a flood on one target leaves room
    /// for the others), or when the healer shut down. The intake takes the targets in
    /// turn, one signal each, so a flood on one target delays another target's signal
    /// by at most one flood signal per signal of its own queued ahead of it.
    ///
    /// It costs the calling thread one short lock and no allocation: a signal without
    /// a service name gets the healer's on the intake's side, not here.
    pub fn observe(&self, signal: Signal) {
        self.offer(signal);
    }

    /// The targets of the signals queued now (for tests in the crate).
    #[cfg(test)]
    pub(crate) fn queued_targets(&self) -> Vec<String> {
        self.inner.queue.targets()
    }

    /// The next queued signal, taken as the intake would (for tests in the crate).
    #[cfg(test)]
    pub(crate) fn try_pop_queued(&self) -> Option<Signal> {
        self.inner.queue.try_pop()
    }

    /// Signals handed to [`Healer::observe`] so far.
    pub fn observed(&self) -> u64 {
        let (accepted, refused) = self.inner.queue.counts();
        accepted + refused + self.inner.tracked.load(Ordering::Relaxed)
    }

    /// Signals dropped: refused by the queue (full in signals or bytes, or their target
    /// over its share of it), or still queued or handed over when the healer shut down.
    pub fn dropped(&self) -> u64 {
        let (_, refused) = self.inner.queue.counts();
        refused + self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Signals the intake could not process because processing them panicked (in the
    /// fingerprinter, the matcher or the intake itself). Each costs that signal only:
    /// the intake goes on with the next one.
    pub fn failed(&self) -> u64 {
        self.inner.failed.load(Ordering::Relaxed)
    }

    /// The [`crate::store::BufferedStore`] the builder wrapped the store in (by
    /// default), to see how many writes wait for the store (`pending`), were replayed
    /// or dropped; `None` when built [`HealerBuilder::unbuffered`] or with a store that
    /// needs none (in memory, or already buffered).
    pub fn store_buffer(&self) -> Option<&crate::store::BufferedStore> {
        self.inner.store_buffer.as_deref()
    }

    /// Store calls that failed (the pipeline went on without them). An audit record the
    /// store refuses is not lost but kept and retried ([`Healer::audit_waiting`]); each
    /// refused try counts here.
    pub fn store_errors(&self) -> u64 {
        self.inner.store_errors.load(Ordering::Relaxed)
    }

    /// A `tracing_subscriber::Layer` feeding this healer with WARN and ERROR events.
    ///
    /// It carries its own per-layer filter ([`crate::OwnWork`]): WARN and ERROR events,
    /// plus selfheal's own spans so it can tell the healer's work from the host's. It
    /// never turns on a TRACE, DEBUG or INFO callsite of the host, so when no other
    /// layer wants those they cost nothing, and when another layer (a `fmt` layer at
    /// DEBUG) does, that layer still sees them. Use it on a
    /// `tracing_subscriber::registry()` stack:
    /// `registry().with(fmt::layer()).with(healer.layer())`. Signals without a
    /// `heal.target`, `component` or `peer` field get the service name as target
    /// (see [`HealerLayer`]).
    pub fn layer<S>(&self) -> tracing_subscriber::filter::Filtered<HealerLayer, crate::OwnWork, S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer as _;
        HealerLayer::new(self.clone()).with_filter(crate::OwnWork)
    }

    /// Signals and bytes waiting in the intake queue now.
    pub fn queued(&self) -> (usize, usize) {
        self.inner.queue.len()
    }

    /// Resolves once the healer is shutting down ([`Running::shutdown`]): for tasks
    /// that serve it (live events, metrics) to end with it.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.inner.cancel.clone().cancelled_owned()
    }

    /// Every phase of every incident from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<HealingEvent> {
        self.inner.events.subscribe()
    }

    /// The configuration in force.
    pub fn config(&self) -> &HealerConfig {
        &self.inner.config
    }

    async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    fn emit(
        &self,
        incident: Option<&Incident>,
        target: &str,
        phase: Phase,
        detail: impl Into<String>,
    ) {
        self.emit_with(incident, target, phase, detail, EventData::default());
    }

    /// [`Healer::emit`] with the typed parts (plan, approval, health, actor), redacted
    /// like the rest.
    fn emit_with(
        &self,
        incident: Option<&Incident>,
        target: &str,
        phase: Phase,
        detail: impl Into<String>,
        data: EventData,
    ) {
        let redactor = &self.inner.redactor;
        let mut detail = detail.into();
        redactor.redact_in_place(&mut detail);
        let mut plan = data.plan;
        if let Some(plan) = plan.as_mut() {
            redactor.redact_plan(plan);
        }
        let event = HealingEvent {
            incident: incident.map(|i| i.id),
            target: target.to_owned(),
            phase,
            detail,
            at: Utc::now(),
            pattern: incident.and_then(|i| i.pattern.clone()),
            approval: data.approval,
            plan,
            health_before: data.health_before,
            health_after: data.health_after,
            actor: data.actor,
        };
        tracing::debug!(target: "selfheal::event", phase = ?event.phase, target_system = %event.target, detail = %event.detail);
        let _ = self.inner.events.send(event);
    }

    /// Appends to the audit chain (`trail.rs`): a write the store refuses is kept in a
    /// bounded backlog and retried with back-off, and the chain continues from it. When
    /// replicas share the store, another one may have taken the next position
    /// (`Conflict`): the record is chained again after the store's newest one, so the
    /// fleet keeps one chain.
    async fn audit(&self, mut entry: AuditEntry) {
        // The chain cannot be purged, so nothing secret may enter it.
        self.inner.redactor.redact_in_place(&mut entry.result);
        entry.detail = self.inner.redactor.redact_value(&entry.detail);
        self.append_to_trail(entry).await;
    }

    /// Sends `notification` to every notifier, once per incident and event type
    /// (reminders of an escalated incident excepted: their back-off paces them).
    async fn notify(&self, mut notification: Notification) {
        self.inner.redactor.redact_in_place(&mut notification.title);
        self.inner.redactor.redact_in_place(&mut notification.body);
        if let Some(id) = notification.incident
            && notification.event_type != "self_heal.reminded"
        {
            let mut sent = self.inner.notified.entry(id).or_default();
            if sent.contains(&notification.event_type) {
                tracing::debug!(incident = %id, event_type = %notification.event_type, "notification already sent for this incident");
                return;
            }
            sent.push(notification.event_type.clone());
        }
        for n in &self.inner.notifiers {
            let sent = std::panic::AssertUnwindSafe(limits::limited(
                self.inner.config.limits.notify,
                "notifying",
                "notify",
                n.notify(&notification),
            ));
            match futures_util::FutureExt::catch_unwind(sent).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(notifier = n.name(), error = %e, "notification failed")
                }
                Err(panic) => tracing::error!(
                    notifier = n.name(),
                    panic = contain::panic_message(panic.as_ref()),
                    "notifier panicked; the others are still told"
                ),
            }
        }
    }

    fn store_failed(&self, operation: &str, error: &crate::Error) {
        self.inner.store_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(store = self.inner.store.name(), operation, error = %error, "store write failed; continuing in memory");
    }

    fn matcher(&self) -> Arc<Matcher> {
        self.inner
            .matcher
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// Rebuilds the matcher from the store's patterns.
    ///
    /// Loads may overlap (the intake task's first load, an operator's change, learning).
    /// Each takes a ticket before it reads the store, and a load installs its matcher
    /// only if no load with a later ticket installed one first: that later load read
    /// the store after this one began, so it saw every change this one saw. An older
    /// read therefore never overwrites a newer one.
    async fn reload_patterns(&self) -> crate::Result<()> {
        let ticket = self.inner.loads.fetch_add(1, Ordering::SeqCst) + 1;
        let patterns = self.inner.store.list_patterns().await?;
        let matcher = Arc::new(Matcher::new(&patterns));
        let mut current = self
            .inner
            .matcher
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if ticket > current.0 {
            *current = (ticket, matcher);
        } else {
            tracing::debug!(
                ticket,
                newer = current.0,
                "a newer pattern load finished first; this one is dropped"
            );
        }
        Ok(())
    }
}

/// The key occurrences are counted under: one target's one fingerprint.
fn occurrence_key(target: &str, fingerprint: &str) -> String {
    format!("{target}\u{1f}{fingerprint}")
}

/// A health score for humans: the number, or `n/a` without a verifier.
fn fmt_health(h: Option<u8>) -> String {
    h.map_or_else(|| "n/a".to_owned(), |h| h.to_string())
}
