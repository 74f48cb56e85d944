//! From signal to incident: fingerprint, count into an open incident, correlate by
//! target, or count in the window and open a new incident at the threshold.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;

use chrono::Utc;
use tokio::time::Instant;
use uuid::Uuid;

use super::Healer;
use super::contain::panic_message;
use crate::{Fingerprint, Incident, IncidentStatus, Severity, Signal, SignalSource};

/// Related fingerprints listed per incident (the rest still count into it).
pub(super) const MAX_RELATED: usize = 64;

/// The longest the intake works through a queue that never empties before it lets the
/// other tasks of its worker run (tokio time: paused in tests, where tokio's budget
/// alone applies).
const YIELD_EVERY: std::time::Duration = std::time::Duration::from_millis(1);

/// Sample messages kept per incident.
pub(super) const MAX_SAMPLES: usize = 5;

impl Healer {
    pub(super) async fn run_intake(self) {
        if let Err(e) = self.reload_patterns().await {
            tracing::error!(error = %e, "could not load patterns from the store; starting with none");
        }
        self.warn_stored_binding_problems().await;
        // Silences, dry-run switches, the breaker and back-off as operators left them.
        self.reload_control_contained("starting").await;
        match self.inner.store.list_audit(1).await {
            Ok(mut last) => self.inner.trail.lock().await.head = last.pop(),
            Err(e) => {
                tracing::error!(error = %e, "could not read the audit head; the chain restarts")
            }
        }
        self.check_chain_at_start().await;
        // What a crashed or killed previous run left open is closed before anything new.
        // A store that panics here must not cost the healer its intake.
        let reconciled = std::panic::AssertUnwindSafe(self.reconcile());
        if let Err(panic) = futures_util::FutureExt::catch_unwind(reconciled).await {
            tracing::error!(
                panic = panic_message(panic.as_ref()),
                "reconciling the previous run panicked; starting without it"
            );
        }
        let mut tracked = self
            .inner
            .sources
            .tracked_rx
            .lock()
            .ok()
            .and_then(|mut rx| rx.take());
        let mut since_yield = Instant::now();
        let mut tracked_first = false;
        loop {
            // The queue and the sources' tracked lane take turns when both have signals.
            tracked_first = !tracked_first;
            let waiting = tracked_first
                .then(|| tracked.as_mut().and_then(|rx| rx.try_recv().ok()))
                .flatten();
            let (signal, done) = match waiting {
                Some((signal, done)) => (signal, Some(done)),
                None => tokio::select! {
                    biased;
                    _ = self.inner.cancel.cancelled() => break,
                    queued = self.inner.queue.pop() => {
                        let default_target = crate::layer::default_target(self.config());
                        (queued.into_signal(default_target), None)
                    }
                    Some((signal, done)) = recv_tracked(&mut tracked) => (signal, Some(done)),
                },
            };
            self.ingest_contained(signal);
            if let Some(done) = done {
                // Taken in (or failed and counted): the source may acknowledge it.
                let _ = done.send(());
            }
            // A queue that never empties must not hold this worker. Tokio runs a task
            // spawned here (an incident just opened) next on this same worker, and no
            // other worker may take it, so it waits until the intake yields: at the
            // latest after YIELD_EVERY of work, or tokio's budget of 128 signals.
            tokio::task::consume_budget().await;
            if since_yield.elapsed() >= YIELD_EVERY {
                tokio::task::yield_now().await;
                since_yield = Instant::now();
            }
        }
        // Whatever is still queued is dropped, and counted; later signals are refused.
        let left = self.inner.queue.close();
        self.inner.dropped.fetch_add(left as u64, Ordering::Relaxed);
    }
}

/// The next signal of the sources' tracked lane; pending forever when there is none.
async fn recv_tracked(
    lane: &mut Option<tokio::sync::mpsc::Receiver<super::sources::Tracked>>,
) -> Option<super::sources::Tracked> {
    match lane {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Healer {
    /// Ingests `signal`. A panic on the way (in the fingerprinter, the matcher or the
    /// intake itself) costs this one signal: it is counted in [`Healer::failed`] and the
    /// next signal is processed, so one poisonous line never deafens the healer.
    fn ingest_contained(&self, mut signal: Signal) {
        // Named here rather than in `observe`: a copy of the name is an allocation the
        // host's thread does not pay.
        if signal.service.is_empty() && !self.inner.config.service.is_empty() {
            signal.service.clone_from(&self.inner.config.service);
        }
        // Redacted before anything keeps, counts, matches or forwards a byte of it.
        let signal = match catch_unwind(AssertUnwindSafe(|| {
            self.inner.redactor.redact_signal(signal)
        })) {
            Ok(signal) => signal,
            Err(payload) => return self.signal_failed(None, payload.as_ref()),
        };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.ingest(&signal))) {
            self.signal_failed(Some(&signal.target), payload.as_ref());
        }
    }

    /// Counts a signal whose processing panicked, and says so without flooding the log.
    fn signal_failed(&self, target: Option<&str>, payload: &(dyn std::any::Any + Send)) {
        let failed = self.inner.failed.fetch_add(1, Ordering::Relaxed) + 1;
        let target = target.unwrap_or("(not redacted yet)");
        // The panic message may quote the line: never above debug.
        tracing::debug!(target, panic = panic_message(payload), "signal failed");
        // A flood of poison lines logs 1, 2, 4, 8, … and then every 1024th.
        if failed.is_power_of_two() || failed.is_multiple_of(1024) {
            tracing::error!(
                failed,
                fingerprinter = self.inner.fingerprinter.name(),
                target,
                "a signal made the intake panic (redaction, fingerprinter or matcher); it is \
                 counted as failed and intake goes on"
            );
        }
    }

    /// Takes one signal in; `true` when it opened an incident (whose task was spawned).
    fn ingest(&self, signal: &Signal) -> bool {
        let fp = self.inner.fingerprinter.fingerprint(signal);
        let now = Instant::now();
        let detection = &self.inner.config.detection;
        self.inner.storm.know(&signal.target);

        // A repeat of an open incident's fingerprint is counted into it.
        // Counting is per (target, fingerprint): the same error on two targets is two problems.
        let key = super::occurrence_key(&signal.target, &fp.id);
        let open_id = self.inner.by_fingerprint.get(&key).map(|r| *r);

        // A silence in force counts the signal and opens nothing.
        if self.inner.silences.any_active() {
            let pattern = match open_id {
                Some(id) => self.inner.open.get(&id).and_then(|i| i.pattern.clone()),
                None if self.inner.silences.wants_pattern() => {
                    self.matcher().best(signal).map(|m| m.pattern)
                }
                None => None,
            };
            if self.silenced(&signal.target, pattern.as_deref(), &fp.id) {
                return false;
            }
        }

        if let Some(id) = open_id {
            self.inner
                .detector
                .record(&key, now, detection.default_window);
            // Another incident's error (an escalated one still counting, say) on a
            // target whose fix is being verified still counts against that fix.
            self.note_late_error(id, signal);
            // The incident knows this fingerprint already (`by_fingerprint` led here).
            self.count_foreign(id, signal);
            return false;
        }

        // Errors while the healer acts on this target (or what it depends on) are the
        // action's own; a dependent's errors while its dependency has an incident are
        // that dependency's.
        if self.count_self_caused(signal) {
            return false;
        }
        if let Some(id) = self.dependency_incident(&signal.target) {
            self.count_foreign(id, signal);
            return false;
        }

        // A new fingerprint on a target with a young open incident joins it.
        let target_id = self.inner.by_target.get(&signal.target).map(|r| *r);
        if let Some(id) = target_id
            && self.join(id, key.clone(), signal, &fp, now)
        {
            return false;
        }

        let matcher = self.matcher();
        let best = matcher.best(signal);
        let (needed, window) = best
            .as_ref()
            .and_then(|m| matcher.pattern(&m.pattern))
            .map_or(
                (detection.default_min_occurrences, detection.default_window),
                |p| (p.min_occurrences, p.window),
            );
        // An alert from another system (Alertmanager's, after its own `for:`) is a
        // verdict already: one firing alert meets its pattern's occurrence threshold.
        // An alert no pattern matches counts like any signal.
        let needed = if signal.source == SignalSource::External && best.is_some() {
            1
        } else {
            needed as usize
        };
        let count = self.inner.detector.record(&key, now, window);
        if count < needed {
            return false;
        }

        let at = Utc::now();
        let incident = Incident {
            id: Uuid::new_v4(),
            target: signal.target.clone(),
            fingerprint: fp.id.to_string(),
            template: fp.template.to_string(),
            stack: fp.stack.clone(),
            related: Vec::new(),
            pattern: best.as_ref().map(|m| m.pattern.clone()),
            status: IncidentStatus::Open,
            severity: best.as_ref().map_or(Severity::Medium, |m| m.severity),
            occurrences: count as u64,
            samples: vec![signal.message.clone()],
            opened_at: at,
            last_seen: at,
            closed_at: None,
            reason: String::new(),
        };
        self.inner.by_fingerprint.insert(key, incident.id);
        self.inner
            .by_target
            .insert(incident.target.clone(), incident.id);
        self.inner.open.insert(incident.id, incident.clone());
        let this = self.clone();
        self.inner
            .tasks
            .spawn(async move { this.heal(incident, best).await });
        true
    }

    /// Joins a fingerprint not yet indexed (`key` is not in `by_fingerprint`) to the
    /// young open incident `id` of its target; `false` when the incident is gone or
    /// older than the correlation window.
    ///
    /// Constant cost however many distinct errors join: membership is the
    /// `by_fingerprint` index (one hash lookup, made before this is called), and an
    /// incident lists and indexes at most [`MAX_RELATED`] related fingerprints. Past
    /// that, further fingerprints still count into it but are neither listed nor
    /// indexed nor windowed, so each costs the same again, nothing outlives the
    /// incident (`forget` removes exactly what was indexed), and they count afresh once
    /// it is gone.
    fn join(&self, id: Uuid, key: String, signal: &Signal, fp: &Fingerprint, now: Instant) -> bool {
        let detection = &self.inner.config.detection;
        {
            let Some(mut incident) = self.inner.open.get_mut(&id) else {
                return false;
            };
            let age = (Utc::now() - incident.opened_at)
                .to_std()
                .unwrap_or_default();
            if age > detection.correlation_window {
                return false;
            }
            if *incident.fingerprint != *fp.id && incident.related.len() < MAX_RELATED {
                incident.related.push(fp.id.to_string());
                // Indexed while the entry is held, so `forget` (which removes the
                // incident first) always sees what it must unindex.
                self.inner
                    .detector
                    .record(&key, now, detection.default_window);
                self.inner.by_fingerprint.insert(key, id);
            }
        }
        self.count_foreign(id, signal);
        true
    }

    /// Counts `signal` into incident `id` without making its fingerprint one the
    /// incident is verified on (errors it caused or a dependent's errors).
    pub(super) fn count_foreign(&self, id: Uuid, signal: &Signal) {
        if let Some(mut incident) = self.inner.open.get_mut(&id) {
            incident.occurrences += 1;
            incident.last_seen = signal.timestamp;
            if incident.samples.len() < MAX_SAMPLES && !incident.samples.contains(&signal.message) {
                incident.samples.push(signal.message.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use tokio::sync::mpsc;

    use crate::{
        AdviceRequest, Diagnosis, Healer, HealerConfig, IncidentStore, LlmAdvisor, MemoryStore,
        Result, Signal,
    };

    #[derive(Debug)]
    struct Recorder(mpsc::UnboundedSender<AdviceRequest>);

    #[async_trait]
    impl LlmAdvisor for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        async fn advise(&self, request: &AdviceRequest) -> Result<Diagnosis> {
            let _ = self.0.send(request.clone());
            Err(crate::Error::new(
                crate::ErrorKind::Unavailable,
                "recording only",
            ))
        }
    }

    /// The message is the template: each distinct message is a distinct fingerprint.
    #[derive(Debug)]
    struct Verbatim;

    impl crate::Fingerprinter for Verbatim {
        fn name(&self) -> &str {
            "verbatim"
        }
        fn fingerprint(&self, signal: &Signal) -> crate::Fingerprint {
            crate::Fingerprint::new(&signal.service, &signal.message, None)
        }
    }

    #[tokio::test]
    async fn one_external_alert_meets_the_threshold_a_log_line_needs_five_for() {
        let healer = Healer::builder()
            .store(MemoryStore::new())
            .fingerprinter(Verbatim)
            .build()
            .unwrap();
        healer
            .admin()
            .add_pattern(
                crate::Pattern::new("redis_down")
                    .regex("^RedisDown")
                    .threshold(5, Duration::from_secs(300)),
                "test",
            )
            .await
            .unwrap();
        let alert = || {
            Signal::new("cache", "RedisDown: redis on cache-1 is down")
                .source(crate::SignalSource::External)
        };
        // The same text as a log line: the pattern's threshold of five holds.
        for n in 1..5 {
            let line = Signal::new("cache-logs", "RedisDown: redis on cache-1 is down");
            assert!(!healer.ingest(&line), "log line {n} of 5 opens nothing");
        }
        assert!(
            healer.ingest(&Signal::new(
                "cache-logs",
                "RedisDown: redis on cache-1 is down"
            )),
            "the fifth does"
        );
        assert!(
            healer.ingest(&alert()),
            "one firing alert opens the incident"
        );
        let incident = healer
            .inner
            .open
            .iter()
            .find(|i| i.target == "cache")
            .map(|i| i.clone())
            .expect("an incident on the alert's target");
        assert_eq!(incident.pattern.as_deref(), Some("redis_down"));
        assert_eq!(incident.occurrences, 1);
        // An alert no pattern matches needs the default threshold like any signal.
        let unmatched = || {
            Signal::new("queue", "QueueBacklog: 10k messages waiting")
                .source(crate::SignalSource::External)
        };
        assert!(
            !healer.ingest(&unmatched()),
            "no pattern: one alert is not enough"
        );
    }

    #[tokio::test]
    async fn related_fingerprints_are_bounded_indexed_once_and_gone_with_the_incident() {
        let mut config = HealerConfig::default();
        config.detection.default_min_occurrences = 2;
        let healer = Healer::builder()
            .config(config)
            .fingerprinter(Verbatim)
            .build()
            .unwrap();
        // Ingested directly, without yielding: the incident's own task never runs, so
        // it stays open and young throughout.
        assert!(!healer.ingest(&Signal::new("db", "first error")));
        assert!(healer.ingest(&Signal::new("db", "first error")), "opened");
        let id = *healer
            .inner
            .by_target
            .get("db")
            .expect("an incident opened");
        for round in 0..2 {
            for i in 0..1_000 {
                assert!(!healer.ingest(&Signal::new("db", format!("distinct error {i}"))));
            }
            let incident = healer.inner.open.get(&id).unwrap().clone();
            assert_eq!(incident.related.len(), super::MAX_RELATED, "round {round}");
            assert_eq!(incident.occurrences, 2 + 1_000 * (round + 1));
            assert_eq!(
                healer.inner.by_fingerprint.len(),
                1 + super::MAX_RELATED,
                "only what is listed is indexed"
            );
        }
        // Nothing of it outlives it: an unlisted fingerprint counts afresh.
        healer.forget(id);
        assert!(healer.inner.by_fingerprint.is_empty());
        assert!(healer.inner.open.is_empty());
        assert!(!healer.ingest(&Signal::new("db", "distinct error 999")));
        assert!(healer.inner.open.is_empty(), "one occurrence opens nothing");
        assert!(healer.ingest(&Signal::new("db", "distinct error 999")));
        assert_eq!(
            healer.inner.open.len(),
            1,
            "the second opens its own incident"
        );
    }

    #[tokio::test]
    async fn the_incident_keeps_its_stack_signature_and_the_advisor_gets_it() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let store = Arc::new(MemoryStore::new());
        let mut config = HealerConfig::default();
        config.detection.default_min_occurrences = 2;
        let healer = Healer::builder()
            .config(config)
            .store_arc(store.clone())
            .advisor(Recorder(tx))
            .build()
            .unwrap();
        let running = healer.spawn();
        let trace = "   0: std::panicking::begin_panic\n   1: myapp::db::connect::h0123456789abcdef\n             at ./src/db.rs:42:9\n   2: tokio::runtime::task::raw::poll\n";
        for _ in 0..2 {
            healer.observe(Signal::new("db", "query failed: deadlock detected").stack(trace));
        }
        let request = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the advisor is asked")
            .unwrap();
        assert_eq!(
            request.stack_signature.as_deref(),
            Some("myapp::db::connect")
        );
        assert_eq!(
            request.incident.stack.as_deref(),
            Some("myapp::db::connect")
        );
        running.shutdown().await;
        let stored = store
            .get_incident(request.incident.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.stack.as_deref(),
            Some("myapp::db::connect"),
            "stored with it"
        );
    }
}
