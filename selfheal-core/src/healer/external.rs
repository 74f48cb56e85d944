//! Alerts from another system (Alertmanager, say) as verification evidence.
//!
//! An alert is already a verdict over time: it fires while its condition holds and
//! resolves when the condition is gone, and the system that sends it repeats a firing
//! alert only rarely (Alertmanager: every `repeat_interval`, hours by default). So for
//! a target with alerts, "the errors stopped" is not the quiet after the last signal
//! but the alert's resolution:
//!
//! - while an alert on the target fires ([`Healer::external_firing`]), verification of
//!   a fix on it does not pass, however quiet the target is;
//! - once every alert on it resolved ([`Healer::external_resolved`]) after the last
//!   error, verification passes at once (with the probe, if the target has one), without
//!   waiting for `verification.quiet_for`;
//! - a target no alert was reported on verifies on quiet, as before.
//!
//! Alerts are keyed by the sending system's identity of the alert (Alertmanager's
//! `fingerprint`). The state lives in this process only, bounded in size.

use std::collections::HashSet;

use dashmap::DashMap;
use tokio::time::Instant;

use super::Healer;

/// Most firing alerts kept per target; a target with more counts as firing anyway.
const MAX_FIRING_PER_TARGET: usize = 1_024;
/// Targets kept before the ones with nothing firing are forgotten.
const MAX_TARGETS: usize = 10_000;

/// The alerts reported per target.
#[derive(Debug, Default)]
pub(crate) struct ExternalAlerts {
    targets: DashMap<String, TargetAlerts>,
}

#[derive(Debug, Default)]
struct TargetAlerts {
    /// The keys of the firing alerts.
    firing: HashSet<String>,
    /// When the last alert on the target resolved.
    resolved_at: Option<Instant>,
}

/// What the alerts say about one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AlertState {
    /// No alert was reported on the target: verification goes by quiet.
    Unknown,
    /// This alert (one of them, if several) still fires.
    Firing(String),
    /// Nothing fires; the last alert resolved then.
    Resolved(Instant),
}

impl ExternalAlerts {
    fn firing(&self, target: &str, key: &str) {
        self.make_room(target);
        let mut alerts = self.targets.entry(target.to_owned()).or_default();
        if alerts.firing.len() < MAX_FIRING_PER_TARGET || alerts.firing.contains(key) {
            alerts.firing.insert(key.to_owned());
        } else {
            tracing::warn!(
                target_system = target,
                kept = MAX_FIRING_PER_TARGET,
                "too many firing alerts on one target; this one is not tracked (the target \
                 counts as firing until the others resolve)"
            );
        }
    }

    fn resolved(&self, target: &str, key: &str) {
        self.make_room(target);
        let mut alerts = self.targets.entry(target.to_owned()).or_default();
        alerts.firing.remove(key);
        alerts.resolved_at = Some(Instant::now());
    }

    /// Forgets the targets with nothing firing when the map is full.
    fn make_room(&self, target: &str) {
        if self.targets.len() >= MAX_TARGETS && !self.targets.contains_key(target) {
            self.targets.retain(|_, a| !a.firing.is_empty());
        }
    }

    pub(super) fn state(&self, target: &str) -> AlertState {
        let Some(alerts) = self.targets.get(target) else {
            return AlertState::Unknown;
        };
        // The first key names the state, so the answer is stable.
        let first = alerts.firing.iter().min();
        match (first, alerts.resolved_at) {
            (Some(key), _) => AlertState::Firing(key.clone()),
            (None, Some(at)) => AlertState::Resolved(at),
            (None, None) => AlertState::Unknown,
        }
    }
}

impl Healer {
    /// Another system reports alert `key` (Alertmanager's `fingerprint`) firing on
    /// `target`: until it resolves ([`Healer::external_resolved`]), a fix on `target`
    /// does not verify, however quiet the target is. Call it for each firing alert you
    /// also hand over as a signal (the Alertmanager source of `selfheal-sources` does).
    ///
    /// An alert fires while its condition holds and its sender repeats it only rarely
    /// (Alertmanager: every `repeat_interval`), so quiet after its signal says nothing;
    /// its resolution does. A target no alert was reported on verifies on quiet as
    /// before. Kept in this process only, for at most 10,000 targets and 1,024 firing
    /// alerts per target.
    pub fn external_firing(&self, target: &str, key: &str) {
        self.inner.external.firing(target, key);
    }

    /// Another system reports alert `key` on `target` resolved: its error stream has
    /// ended. Once no alert on `target` fires, a fix on it whose errors came before this
    /// verifies at once, without waiting for `verification.quiet_for` (its probe, if
    /// any, must still pass). A key never reported firing is fine (a restart in
    /// between): the resolution still counts.
    pub fn external_resolved(&self, target: &str, key: &str) {
        self.inner.external.resolved(target, key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use tokio::sync::broadcast;

    use super::*;
    use crate::{
        ActionContext, ActionOutcome, Executor, FixBinding, HealerConfig, HealingEvent,
        MemoryStore, Pattern, PatternMode, Phase, RemediationPlan, Signal, SignalSource, Strategy,
    };

    #[tokio::test(start_paused = true)]
    async fn a_target_fires_until_each_of_its_alerts_resolved() {
        let alerts = ExternalAlerts::default();
        assert_eq!(alerts.state("db"), AlertState::Unknown);
        alerts.firing("db", "b");
        alerts.firing("db", "a");
        alerts.firing("db", "a");
        assert_eq!(alerts.state("db"), AlertState::Firing("a".into()));
        alerts.resolved("db", "a");
        assert_eq!(alerts.state("db"), AlertState::Firing("b".into()));
        tokio::time::advance(Duration::from_secs(1)).await;
        alerts.resolved("db", "b");
        assert_eq!(alerts.state("db"), AlertState::Resolved(Instant::now()));
        assert_eq!(alerts.state("cache"), AlertState::Unknown, "per target");
        // A resolution nobody saw fire still counts.
        alerts.resolved("cache", "z");
        assert!(matches!(alerts.state("cache"), AlertState::Resolved(_)));
    }

    #[test]
    fn the_map_stays_bounded_and_keeps_what_fires() {
        let alerts = ExternalAlerts::default();
        alerts.firing("hot", "a");
        for i in 0..MAX_TARGETS + 10 {
            alerts.resolved(&format!("t{i}"), "k");
        }
        assert!(
            alerts.targets.len() <= MAX_TARGETS,
            "{}",
            alerts.targets.len()
        );
        assert_eq!(alerts.state("hot"), AlertState::Firing("a".into()));
    }

    /// A healer whose `disk_full` pattern opens at the first signal and runs `fix`,
    /// verifying every 100 ms with a quiet period of a minute.
    async fn healer() -> (Healer, crate::Running, broadcast::Receiver<HealingEvent>) {
        let mut config = HealerConfig::default();
        config.verification.interval = Duration::from_millis(100);
        config.verification.quiet_for = QUIET;
        config.verification.window = Duration::from_secs(300);
        let healer = Healer::builder()
            .config(config)
            .store(MemoryStore::new())
            .strategy(Fix)
            .build()
            .unwrap();
        let events = healer.subscribe();
        let running = healer.spawn();
        healer
            .admin()
            .add_pattern(
                Pattern::new("disk_full")
                    .regex("DiskFull")
                    .mode(PatternMode::Active)
                    .auto_healable(true)
                    .confidence(0.95)
                    .threshold(1, Duration::from_secs(60))
                    .fix(FixBinding::new("fix")),
                "test",
            )
            .await
            .unwrap();
        (healer, running, events)
    }

    const QUIET: Duration = Duration::from_secs(60);

    #[derive(Debug)]
    struct Fix;

    #[async_trait]
    impl Strategy for Fix {
        fn name(&self) -> &str {
            "fix"
        }
        async fn plan(&self, ctx: &ActionContext) -> crate::Result<RemediationPlan> {
            Ok(RemediationPlan::new("fix", &ctx.target).step("fix it"))
        }
        async fn execute(
            &self,
            _: &RemediationPlan,
            _: Arc<dyn Executor>,
        ) -> crate::Result<ActionOutcome> {
            Ok(ActionOutcome::ok(Duration::ZERO))
        }
    }

    /// The next event of `phase`, and the details of the ones before it.
    async fn until(events: &mut broadcast::Receiver<HealingEvent>, phase: Phase) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let e = events.recv().await.unwrap();
            seen.push(format!("{:?}: {}", e.phase, e.detail));
            if e.phase == phase {
                return seen;
            }
        }
    }

    fn alert(healer: &Healer) {
        healer.external_firing("db", "fp1");
        healer.observe(
            Signal::new("db", "DiskFull: disk full on /var")
                .source(SignalSource::External)
                .field("alert.fingerprint", "fp1"),
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fix_verifies_on_the_alerts_resolution_and_not_before() {
        let (healer, running, mut events) = healer().await;
        alert(&healer);
        until(&mut events, Phase::Verifying).await;
        // Twice the quiet period without a signal: quiet, but the alert still fires.
        tokio::time::sleep(QUIET * 2).await;
        while let Ok(e) = events.try_recv() {
            assert_ne!(e.phase, Phase::Verified, "verified while the alert fires");
        }
        let resolved = Instant::now();
        healer.external_resolved("db", "fp1");
        let seen = until(&mut events, Phase::Verified).await;
        let took = resolved.elapsed();
        assert!(
            took <= Duration::from_millis(100),
            "verified {took:?} after the resolution, within one poll: {seen:?}"
        );
        running.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_resolution_ends_the_error_stream_without_the_quiet_period() {
        let (healer, running, mut events) = healer().await;
        alert(&healer);
        until(&mut events, Phase::Verifying).await;
        let resolved = Instant::now();
        healer.external_resolved("db", "fp1");
        until(&mut events, Phase::Verified).await;
        assert!(
            resolved.elapsed() < QUIET,
            "verified {:?} after the resolution, before `quiet_for` ({QUIET:?})",
            resolved.elapsed()
        );
        running.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_alert_that_keeps_firing_fails_verification_and_says_so() {
        let (healer, running, mut events) = healer().await;
        alert(&healer);
        let seen = until(&mut events, Phase::Escalated).await;
        assert!(
            seen.iter()
                .any(|e| e.contains("the alert `fp1` on `db` still fires")),
            "{seen:#?}"
        );
        running.shutdown().await;
    }
}
