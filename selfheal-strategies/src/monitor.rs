//! [`HealthMonitor`]: polls verifiers (and a metrics probe) and turns bad readings
//! into signals for the healer, so a verifier doubles as a periodic probe.

use std::sync::Arc;
use std::time::Duration;

use selfheal_core::{Healer, Level, Signal, SignalSource, Verifier};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::MetricsProbe;

/// Polls its verifiers every `interval` (default 10 s) and hands the healer a
/// [`SignalSource::Probe`] signal for each one whose probe failed (an ERROR,
/// `health check failed on <target>: <verifier> probe failed (score N): <detail>`) or
/// that passed with a usage score under `threshold` (default 70; a WARN,
/// `health check failed on <target>: <verifier> scored under 70: <detail>`), with the
/// fields `health.score`, `health.verifier` and `metrics` (the probe's last reading as
/// JSON, or `{"health": score}` without a probe). A verifier that errs or takes longer
/// than `check_timeout` (default 10 s) scores 0. With a [`MetricsProbe`] it also
/// samples it every interval and hands over its over-threshold signals.
///
/// The healer's own verification still uses the verifiers registered with
/// `Healer::builder().verifier(..)`; register the same ones here (verifiers are cheap
/// to clone or share as `Arc`).
///
/// ```
/// use std::time::Duration;
/// use selfheal_core::Healer;
/// use selfheal_strategies::{HealthMonitor, TcpVerifier};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
/// let redis = TcpVerifier::new("127.0.0.1:6379")?;
/// let healer = Healer::builder().verifier("redis-cache", redis.clone()).build()?;
/// let running = healer.spawn();
/// let monitor = HealthMonitor::new(&healer)
///     .verifier("redis-cache", redis)
///     .interval(Duration::from_secs(10))
///     .spawn();
/// // ...
/// monitor.stop().await;
/// running.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HealthMonitor {
    healer: Healer,
    verifiers: Vec<(String, Arc<dyn Verifier>)>,
    probe: Option<MetricsProbe>,
    interval: Duration,
    threshold: u8,
    check_timeout: Duration,
}

/// The running monitor; [`stop`](MonitorHandle::stop) ends it. Dropping it leaves the
/// monitor running until the runtime ends.
#[derive(Debug)]
#[must_use = "keep the handle to stop the monitor"]
pub struct MonitorHandle {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl MonitorHandle {
    /// Stops polling and waits for the current round to end.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

impl HealthMonitor {
    /// Default time between rounds.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
    /// Default score under which a target counts as unhealthy.
    pub const DEFAULT_THRESHOLD: u8 = 70;

    /// A monitor feeding `healer`, with no verifiers yet.
    pub fn new(healer: &Healer) -> Self {
        HealthMonitor {
            healer: healer.clone(),
            verifiers: Vec::new(),
            probe: None,
            interval: Self::DEFAULT_INTERVAL,
            threshold: Self::DEFAULT_THRESHOLD,
            check_timeout: Duration::from_secs(10),
        }
    }

    /// Polls `verifier` for `target`.
    pub fn verifier(self, target: impl Into<String>, verifier: impl Verifier) -> Self {
        self.verifier_arc(target, Arc::new(verifier))
    }

    /// Polls a shared `verifier` for `target`.
    pub fn verifier_arc(mut self, target: impl Into<String>, verifier: Arc<dyn Verifier>) -> Self {
        self.verifiers.push((target.into(), verifier));
        self
    }

    /// Samples `probe` every round too.
    pub fn metrics(mut self, probe: MetricsProbe) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Time between rounds (default 10 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Scores under this are signals (default 70).
    pub fn threshold(mut self, threshold: u8) -> Self {
        self.threshold = threshold;
        self
    }

    /// How long one check may take (default 10 s).
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }

    /// One round: samples the probe, checks every verifier, hands the healer a signal
    /// for each bad reading, and returns those signals.
    pub async fn round(&self) -> Vec<Signal> {
        let mut signals = Vec::new();
        let snapshot = match &self.probe {
            Some(probe) => match probe.sample().await {
                Ok(m) => {
                    signals.extend(probe.signals(&m));
                    serde_json::to_value(&m).ok()
                }
                Err(e) => {
                    warn!(error = %e, "metrics sample failed");
                    None
                }
            },
            None => None,
        };
        let checks = self.verifiers.iter().map(|(target, verifier)| async move {
            let health = match tokio::time::timeout(self.check_timeout, verifier.check()).await {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => selfheal_core::Health::down(format!("check failed: {e}")),
                Err(_) => selfheal_core::Health::down("check timed out"),
            };
            (target, verifier.name().to_owned(), health)
        });
        for (target, verifier, health) in futures_util::future::join_all(checks).await {
            debug!(target_system = %target, %verifier, passed = health.passed, score = health.score, "health round");
            if health.passed && health.score >= self.threshold {
                continue;
            }
            let metrics = snapshot
                .clone()
                .unwrap_or_else(|| serde_json::json!({"health": health.score}));
            let what = if health.passed {
                format!("{verifier} scored under {}", self.threshold)
            } else {
                format!("{verifier} probe failed (score {})", health.score)
            };
            signals.push(
                Signal::new(
                    target.clone(),
                    format!("health check failed on {target}: {what}: {}", health.detail),
                )
                .source(SignalSource::Probe)
                .level(if health.passed {
                    Level::Warn
                } else {
                    Level::Error
                })
                .field("health.score", health.score.to_string())
                .field("health.verifier", verifier)
                .field("metrics", metrics.to_string()),
            );
        }
        for signal in &signals {
            self.healer.observe(signal.clone());
        }
        signals
    }

    /// Runs a round every interval (the first one interval after the start) until
    /// stopped.
    pub fn spawn(self) -> MonitorHandle {
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        // Timed from the call, not from when the task first runs.
        let first = tokio::time::Instant::now() + self.interval;
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(first, self.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = self.round() => {}
                }
            }
        });
        MonitorHandle { cancel, task }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

    use async_trait::async_trait;
    use selfheal_core::{Health, IncidentFilter, Result};

    use super::*;

    #[derive(Debug, Default)]
    struct Gauge {
        score: AtomicU8,
        checks: AtomicUsize,
    }

    #[async_trait]
    impl Verifier for Gauge {
        fn name(&self) -> &str {
            "gauge"
        }
        async fn check(&self) -> Result<Health> {
            self.checks.fetch_add(1, Ordering::SeqCst);
            Ok(Health::new(
                self.score.load(Ordering::SeqCst),
                "replication lag 12s",
            ))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn polls_every_interval_and_turns_low_scores_into_probe_signals() {
        let gauge = Arc::new(Gauge::default());
        gauge.score.store(100, Ordering::SeqCst);
        let healer = Healer::builder().build().unwrap();
        let running = healer.spawn();
        let monitor = HealthMonitor::new(&healer).verifier_arc("replica", gauge.clone());
        assert_eq!(monitor.interval, Duration::from_secs(10));
        assert_eq!(monitor.threshold, 70);

        let handle = monitor.clone().spawn();
        tokio::time::advance(Duration::from_millis(9_990)).await;
        tokio::task::yield_now().await;
        assert_eq!(
            gauge.checks.load(Ordering::SeqCst),
            0,
            "nothing before the first interval"
        );
        tokio::time::advance(Duration::from_millis(10)).await;
        wait_until(|| gauge.checks.load(Ordering::SeqCst) == 1).await;
        assert_eq!(healer.observed(), 0, "healthy: no signal");

        gauge.score.store(69, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(10)).await;
        wait_until(|| healer.observed() == 1).await;
        tokio::time::advance(Duration::from_secs(10)).await;
        wait_until(|| healer.observed() == 2).await;
        assert_eq!(gauge.checks.load(Ordering::SeqCst), 3);

        // Five low rounds open an incident on the target (5 in 60 s for unknown errors).
        for n in 3..=5 {
            tokio::time::advance(Duration::from_secs(10)).await;
            wait_until(|| healer.observed() == n).await;
        }
        let mut opened = Vec::new();
        for _ in 0..1000 {
            opened = healer
                .admin()
                .incidents(&IncidentFilter::default())
                .await
                .unwrap();
            if !opened.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].target, "replica");
        assert!(
            opened[0].samples[0]
                .starts_with("health check failed on replica: gauge scored under 70: "),
            "{:?}",
            opened[0].samples
        );

        handle.stop().await;
        let checks = gauge.checks.load(Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(60)).await;
        tokio::task::yield_now().await;
        assert_eq!(gauge.checks.load(Ordering::SeqCst), checks, "stopped");
        running.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_attaches_the_score_and_a_failing_check_counts_as_0() {
        #[derive(Debug)]
        struct Broken;
        #[async_trait]
        impl Verifier for Broken {
            fn name(&self) -> &str {
                "broken"
            }
            async fn check(&self) -> Result<Health> {
                Err(selfheal_core::Error::invalid("no route"))
            }
        }
        let healer = Healer::builder().build().unwrap();
        let gauge = Arc::new(Gauge::default());
        gauge.score.store(50, Ordering::SeqCst);
        let monitor = HealthMonitor::new(&healer)
            .verifier_arc("replica", gauge)
            .verifier("cache", Broken)
            .threshold(60);
        let signals = monitor.round().await;
        assert_eq!(signals.len(), 2);
        assert_eq!(signals[0].source, SignalSource::Probe);
        assert_eq!(signals[0].level, Level::Warn);
        assert_eq!(signals[0].fields["health.score"], "50");
        assert_eq!(signals[0].fields["health.verifier"], "gauge");
        assert_eq!(signals[0].fields["metrics"], r#"{"health":50}"#);
        assert_eq!(
            signals[0].message,
            "health check failed on replica: gauge scored under 60: replication lag 12s"
        );
        assert_eq!(signals[1].target, "cache");
        assert_eq!(signals[1].level, Level::Error);
        assert_eq!(signals[1].fields["health.score"], "0");
        assert_eq!(healer.observed(), 2);
    }

    #[tokio::test]
    async fn with_a_probe_its_breaches_are_signals_and_its_reading_is_attached() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.current"), "950\n").unwrap();
        std::fs::write(dir.path().join("memory.max"), "1000\n").unwrap();
        let probe = MetricsProbe::new("api")
            .cgroup_dir(dir.path())
            .thresholds(crate::Thresholds {
                cpu: 101.0,
                memory: 101.0,
                disk: 101.0,
                cgroup_memory: 90.0,
            });
        let healer = Healer::builder().build().unwrap();
        let gauge = Arc::new(Gauge::default()); // scores 0
        let monitor = HealthMonitor::new(&healer)
            .verifier_arc("api", gauge)
            .metrics(probe);

        let signals = monitor.round().await;

        assert_eq!(signals.len(), 2, "{signals:?}");
        assert_eq!(signals[0].source, SignalSource::Metric);
        assert_eq!(signals[0].fields["metric"], "cgroup_memory");
        assert_eq!(signals[1].source, SignalSource::Probe);
        let attached: crate::Metrics = serde_json::from_str(&signals[1].fields["metrics"]).unwrap();
        assert_eq!(attached.cgroup_memory_percent, Some(95.0));
        assert_eq!(healer.observed(), 2);
    }

    async fn wait_until(mut done: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("condition never held");
    }
}
