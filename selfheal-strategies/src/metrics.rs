//! [`MetricsProbe`]: CPU, memory and disk of the host and the cgroup v2 memory of the
//! container, read with `sysinfo` and `/sys/fs/cgroup`, turned into signals when over
//! their thresholds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use selfheal_core::{Error, ErrorKind, Level, Result, Signal, SignalSource};
use serde::{Deserialize, Serialize};
use sysinfo::{Disks, System};
use tracing::debug;

/// One reading. Percentages are 0-100.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// CPU usage of the whole host, averaged over the CPUs.
    pub cpu_percent: f64,
    /// Host memory in use (total − available) over total.
    pub memory_percent: f64,
    /// Space used on the disk holding the probe's path.
    pub disk_percent: Option<f64>,
    /// The mount point that disk reading is for.
    pub disk_mount: Option<String>,
    /// The cgroup's `memory.current`, bytes.
    pub cgroup_memory_current: Option<u64>,
    /// The cgroup's `memory.max`, bytes (`None` when unlimited or unknown).
    pub cgroup_memory_max: Option<u64>,
    /// `memory.current / memory.max`, when there is a limit.
    pub cgroup_memory_percent: Option<f64>,
}

/// Where a reading counts as a problem (percent; the seeds' defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// CPU above this (default 90).
    pub cpu: f64,
    /// Host memory above this (default 90).
    pub memory: f64,
    /// Disk above this (default 95).
    pub disk: f64,
    /// Container memory against its cgroup limit above this (default 90).
    pub cgroup_memory: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            cpu: 90.0,
            memory: 90.0,
            disk: 95.0,
            cgroup_memory: 90.0,
        }
    }
}

/// Reads the host's CPU, memory and disk (`sysinfo`) and the container's cgroup v2
/// memory (`memory.current` / `memory.max`), and turns readings over their
/// [`Thresholds`] into signals (source [`SignalSource::Metric`]) with the whole
/// reading attached as the `metrics` field (JSON). Feed them to the healer yourself
/// or let a [`HealthMonitor`](crate::HealthMonitor) do it every interval.
///
/// CPU usage needs two readings: the first [`sample`](MetricsProbe::sample) takes
/// two, 200 ms apart (`sysinfo::MINIMUM_CPU_UPDATE_INTERVAL`); later ones compare with
/// the previous sample.
///
/// ```
/// use selfheal_strategies::MetricsProbe;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
/// let probe = MetricsProbe::new("host");
/// let metrics = probe.sample().await?;
/// assert!((0.0..=100.0).contains(&metrics.memory_percent));
/// for signal in probe.signals(&metrics) {
///     // e.g. "host memory usage above threshold: 93% > 90%"
///     tracing::warn!(message = %signal.message, "over threshold");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MetricsProbe {
    target: String,
    disk_path: PathBuf,
    cgroup_dir: Option<PathBuf>,
    thresholds: Thresholds,
    system: Arc<Mutex<Option<System>>>,
}

impl MetricsProbe {
    /// A probe whose signals are about `target` (e.g. `host`, your service's name),
    /// reading the disk of `/` and this process's own cgroup.
    pub fn new(target: impl Into<String>) -> Self {
        MetricsProbe {
            target: target.into(),
            disk_path: PathBuf::from("/"),
            cgroup_dir: own_cgroup_dir(),
            thresholds: Thresholds::default(),
            system: Arc::default(),
        }
    }

    /// Reads the disk holding `path` (default `/`).
    pub fn disk_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.disk_path = path.into();
        self
    }

    /// Reads `memory.current` / `memory.max` in `dir` (default: this process's cgroup
    /// under `/sys/fs/cgroup`).
    pub fn cgroup_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cgroup_dir = Some(dir.into());
        self
    }

    /// The thresholds (default CPU 90 %, memory 90 %, disk 95 %, cgroup memory 90 %).
    pub fn thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// The target its signals name.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Takes a reading (blocking work runs off the async threads).
    pub async fn sample(&self) -> Result<Metrics> {
        let first = self
            .system
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none();
        if first {
            let mut system = System::new();
            system.refresh_cpu_usage();
            *self.system.lock().unwrap_or_else(PoisonError::into_inner) = Some(system);
            tokio::time::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL).await;
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read())
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("the metrics task failed: {e}")))
    }

    fn read(&self) -> Metrics {
        let mut guard = self.system.lock().unwrap_or_else(PoisonError::into_inner);
        let system = guard.get_or_insert_with(System::new);
        system.refresh_cpu_usage();
        system.refresh_memory();
        let cpu_percent = f64::from(system.global_cpu_usage()).clamp(0.0, 100.0);
        let total = system.total_memory();
        let memory_percent = if total == 0 {
            0.0
        } else {
            let used = total.saturating_sub(system.available_memory());
            percent(used, total)
        };
        drop(guard);

        let disks = Disks::new_with_refreshed_list();
        let disk = disks
            .list()
            .iter()
            .filter(|d| self.disk_path.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len());
        let (disk_percent, disk_mount) = match disk {
            Some(d) if d.total_space() > 0 => (
                Some(percent(
                    d.total_space().saturating_sub(d.available_space()),
                    d.total_space(),
                )),
                Some(d.mount_point().display().to_string()),
            ),
            _ => (None, None),
        };

        let (current, max) = self
            .cgroup_dir
            .as_deref()
            .map(read_cgroup_memory)
            .unwrap_or((None, None));
        let metrics = Metrics {
            cpu_percent,
            memory_percent,
            disk_percent,
            disk_mount,
            cgroup_memory_current: current,
            cgroup_memory_max: max,
            cgroup_memory_percent: current.zip(max).map(|(c, m)| percent(c, m)),
        };
        debug!(?metrics, "metrics sampled");
        metrics
    }

    /// One signal per reading over its threshold, with the reading attached.
    pub fn signals(&self, metrics: &Metrics) -> Vec<Signal> {
        let t = &self.thresholds;
        let snapshot = serde_json::to_string(metrics).unwrap_or_default();
        let checks = [
            ("cpu", "cpu usage", Some(metrics.cpu_percent), t.cpu),
            (
                "memory",
                "memory usage",
                Some(metrics.memory_percent),
                t.memory,
            ),
            ("disk", "disk usage", metrics.disk_percent, t.disk),
            (
                "cgroup_memory",
                "container memory against its cgroup limit",
                metrics.cgroup_memory_percent,
                t.cgroup_memory,
            ),
        ];
        checks
            .into_iter()
            .filter_map(|(metric, what, value, threshold)| {
                let value = value?;
                (value > threshold).then(|| {
                    Signal::new(
                        self.target.clone(),
                        format!(
                            "{} {what} above threshold: {value:.0}% > {threshold:.0}%",
                            self.target
                        ),
                    )
                    .source(SignalSource::Metric)
                    .level(Level::Error)
                    .field("metric", metric)
                    .field("value", format!("{value:.1}"))
                    .field("threshold", format!("{threshold:.1}"))
                    .field("metrics", snapshot.clone())
                })
            })
            .collect()
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    // Precision loss above 2^53 bytes is irrelevant for a percentage.
    (part as f64 / whole as f64 * 100.0).clamp(0.0, 100.0)
}

/// This process's cgroup v2 directory: `/sys/fs/cgroup` + the `0::` line of
/// `/proc/self/cgroup`, or `/sys/fs/cgroup` itself (inside a container's cgroup
/// namespace the path is `/`).
fn own_cgroup_dir() -> Option<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = root.join(path.trim_start_matches('/'));
    Some(if dir.join("memory.current").exists() {
        dir
    } else {
        root.to_path_buf()
    })
}

/// `memory.current` and `memory.max` (`None` for `max`, i.e. no limit) in `dir`.
pub(crate) fn read_cgroup_memory(dir: &Path) -> (Option<u64>, Option<u64>) {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let current = read("memory.current").and_then(|s| s.parse().ok());
    let max = read("memory.max").and_then(|s| s.parse().ok());
    (current, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> Metrics {
        Metrics {
            cpu_percent: 12.0,
            memory_percent: 40.0,
            disk_percent: Some(50.0),
            disk_mount: Some("/".into()),
            cgroup_memory_current: None,
            cgroup_memory_max: None,
            cgroup_memory_percent: None,
        }
    }

    #[test]
    fn readings_over_the_default_thresholds_become_metric_signals() {
        let probe = MetricsProbe::new("checkout-api");
        assert!(probe.signals(&reading()).is_empty());

        let mut hot = reading();
        hot.cpu_percent = 97.0;
        hot.memory_percent = 90.0; // at the threshold: not over it
        hot.disk_percent = Some(96.4);
        hot.cgroup_memory_percent = Some(93.0);
        let signals = probe.signals(&hot);
        let messages: Vec<&str> = signals.iter().map(|s| s.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "checkout-api cpu usage above threshold: 97% > 90%",
                "checkout-api disk usage above threshold: 96% > 95%",
                "checkout-api container memory against its cgroup limit above threshold: 93% > 90%",
            ]
        );
        for s in &signals {
            assert_eq!(s.target, "checkout-api");
            assert_eq!(s.source, SignalSource::Metric);
            let attached: Metrics = serde_json::from_str(&s.fields["metrics"]).unwrap();
            assert_eq!(attached, hot);
        }
        assert_eq!(signals[0].fields["metric"], "cpu");
        assert_eq!(signals[0].fields["threshold"], "90.0");

        let strict = probe.thresholds(Thresholds {
            cpu: 10.0,
            ..Thresholds::default()
        });
        assert_eq!(strict.signals(&reading()).len(), 1);
    }

    #[test]
    fn cgroup_memory_is_read_from_memory_current_and_max() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.current"), "943718400\n").unwrap();
        std::fs::write(dir.path().join("memory.max"), "1048576000\n").unwrap();
        assert_eq!(
            read_cgroup_memory(dir.path()),
            (Some(943_718_400), Some(1_048_576_000))
        );
        std::fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(read_cgroup_memory(dir.path()), (Some(943_718_400), None));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(read_cgroup_memory(empty.path()), (None, None));
    }

    #[tokio::test]
    async fn a_real_sample_reads_this_host_and_the_given_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.current"), "900\n").unwrap();
        std::fs::write(dir.path().join("memory.max"), "1000\n").unwrap();
        let probe = MetricsProbe::new("host").cgroup_dir(dir.path());

        let m = probe.sample().await.unwrap();

        assert!((0.0..=100.0).contains(&m.cpu_percent), "{m:?}");
        assert!(m.memory_percent > 0.0 && m.memory_percent <= 100.0, "{m:?}");
        let disk = m.disk_percent.expect("the disk of / is found");
        assert!((0.0..=100.0).contains(&disk), "{m:?}");
        assert_eq!(m.disk_mount.as_deref(), Some("/"));
        assert_eq!(m.cgroup_memory_percent, Some(90.0));
        // 90 % is not over 90 %: only a tighter threshold turns it into a signal.
        let tight = probe.thresholds(Thresholds {
            cgroup_memory: 80.0,
            cpu: 101.0,
            memory: 101.0,
            disk: 101.0,
        });
        let signals = tight.signals(&tight.sample().await.unwrap());
        assert_eq!(signals.len(), 1, "{signals:?}");
        assert_eq!(signals[0].fields["metric"], "cgroup_memory");
    }
}
