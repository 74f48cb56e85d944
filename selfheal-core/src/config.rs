//! Every default of the healer in one struct that deserializes from TOML.
//!
//! ```
//! let config: selfheal_core::HealerConfig = toml::from_str(r#"
//!     [guards]
//!     max_actions_per_hour = 10
//!     cooldown = "5m"
//!     [verification]
//!     window = "30s"
//! "#).unwrap();
//! assert_eq!(config.guards.max_actions_per_hour, 10);
//! assert_eq!(config.policy.auto_threshold, 0.7);
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The healer's configuration. Every field has a default; the README's tables list them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealerConfig {
    /// Service name stamped on signals that have none.
    pub service: String,
    /// Signal intake.
    pub intake: IntakeConfig,
    /// Detection windows and correlation.
    pub detection: DetectionConfig,
    /// Confidence thresholds and approvals.
    pub policy: PolicyConfig,
    /// Rate limits, cooldowns, attempts.
    pub guards: GuardConfig,
    /// Verification after an action.
    pub verification: VerificationConfig,
    /// How outcomes move confidence.
    pub feedback: FeedbackConfig,
    /// The safety envelope: storm short-circuit, back-off, breaker, approval expiry,
    /// self-caused errors, dependencies and dry run.
    pub safety: SafetyConfig,
    /// Secrets masked before anything is stored, notified, audited or sent.
    pub redaction: RedactionConfig,
    /// How long each plug-in call may take.
    pub limits: LimitsConfig,
}

/// How long each plug-in call may take. A call over its limit is abandoned (its future
/// dropped) and counts as a failed call with a `Timeout` error that names the limit:
/// a plan or applicability check over it skips the fix, an execute over it fails the
/// fix (its target lock and fleet lease are released and the next fix or an escalation
/// follows), a rollback over it is reported, an advice over it escalates, a
/// notification over it is logged.
///
/// ```
/// let config = selfheal_core::HealerConfig::from_toml(r#"
///     [limits]
///     execute = "2m"
/// "#).unwrap();
/// assert_eq!(config.limits.execute, std::time::Duration::from_secs(120));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// `Strategy::plan` and `Strategy::applicable`.
    #[serde(with = "humantime_serde")]
    pub plan: Duration,
    /// `Strategy::execute`.
    #[serde(with = "humantime_serde")]
    pub execute: Duration,
    /// `Strategy::rollback`.
    #[serde(with = "humantime_serde")]
    pub rollback: Duration,
    /// `Notifier::notify`, per notifier.
    #[serde(with = "humantime_serde")]
    pub notify: Duration,
    /// `LlmAdvisor::advise`.
    #[serde(with = "humantime_serde")]
    pub advise: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            plan: Duration::from_secs(30),
            execute: Duration::from_secs(5 * 60),
            rollback: Duration::from_secs(5 * 60),
            notify: Duration::from_secs(10),
            advise: Duration::from_secs(2 * 60),
        }
    }
}

/// Redaction: the built-in rules always run; these add to them.
///
/// ```
/// let config = selfheal_core::HealerConfig::from_toml(r#"
///     [redaction]
///     extra = ['tenant-\d+', 'card \d{4}']
///     emails = true
/// "#).unwrap();
/// assert_eq!(config.redaction.extra.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactionConfig {
    /// More regexes; whatever they match is masked as `[REDACTED]`.
    pub extra: Vec<String>,
    /// Also mask e-mail addresses as `[EMAIL]` (off by default).
    pub emails: bool,
}

/// Signal intake.
///
/// The queue between `observe` and the pipeline is bounded twice, in signals and in
/// bytes (each signal charged for what it holds after its own bounds), and it is fair
/// per target: a signal of a target is queued only while that target, with it, holds
/// no more signals and no more bytes than the queue had free. So one target never holds
/// more than half the queue, and a flood on one target leaves room for every other. The
/// pipeline takes the targets in turn, one signal each. What is refused is counted in
/// `Healer::dropped`.
///
/// ```
/// let config = selfheal_core::HealerConfig::from_toml(r#"
///     [intake]
///     queue_capacity = 20000
///     queue_bytes = 134217728
/// "#).unwrap();
/// assert_eq!(config.intake.queue_bytes, 128 << 20);
/// assert!(!config.intake.module_targets);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeConfig {
    /// Signals buffered between `observe` and the pipeline; more are dropped and counted.
    pub queue_capacity: usize,
    /// Bytes the queued signals may hold together (64 MiB by default); a signal that
    /// would go over is dropped and counted.
    pub queue_bytes: u64,
    /// Events buffered per subscriber of the event stream.
    pub event_capacity: usize,
    /// The tracing layer names a signal's target after the event's module path
    /// (`myapp::cache`) when the event has no `heal.target`, `component` or `peer`
    /// field. Off by default: such a signal's target is then the service name (or
    /// `app` without one), and the module path is kept in its `tracing.target` field.
    pub module_targets: bool,
}

impl IntakeConfig {
    /// The largest `queue_capacity`: more queued signals than this is a backlog, not a
    /// buffer.
    pub const MAX_QUEUE_CAPACITY: usize = 10_000_000;
    /// The largest `event_capacity`: the event buffer is allocated up front.
    pub const MAX_EVENT_CAPACITY: usize = 65_536;
    /// The smallest `queue_bytes`: room for two of the largest signals `observe` lets
    /// through (a 64 KiB message, a 256 KiB stack, 64 fields of 4 KiB).
    pub const MIN_QUEUE_BYTES: u64 = 2 << 20;
    /// The largest `queue_bytes`.
    pub const MAX_QUEUE_BYTES: u64 = 4 << 30;

    fn validate(&self) -> Result<()> {
        for (key, value, max) in [
            (
                "intake.queue_capacity",
                self.queue_capacity,
                Self::MAX_QUEUE_CAPACITY,
            ),
            (
                "intake.event_capacity",
                self.event_capacity,
                Self::MAX_EVENT_CAPACITY,
            ),
        ] {
            if !(1..=max).contains(&value) {
                return Err(Error::invalid(format!(
                    "{key} is {value}; give a number from 1 to {max}"
                )));
            }
        }
        let (min, max) = (Self::MIN_QUEUE_BYTES, Self::MAX_QUEUE_BYTES);
        if !(min..=max).contains(&self.queue_bytes) {
            return Err(Error::invalid(format!(
                "intake.queue_bytes is {}; give a number of bytes from {min} (2 MiB) to {max} (4 GiB)",
                self.queue_bytes
            )));
        }
        Ok(())
    }

    /// `queue_bytes` as a `usize`, clamped where a `usize` is narrower.
    pub(crate) fn queue_bytes(&self) -> usize {
        usize::try_from(self.queue_bytes).unwrap_or(usize::MAX)
    }
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            queue_capacity: 10_000,
            queue_bytes: 64 << 20,
            event_capacity: 1_024,
            module_targets: false,
        }
    }
}

/// Detection windows and correlation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionConfig {
    /// Occurrences that open an incident for fingerprints no pattern matches (external
    /// alerts included: only a pattern's match makes one alert enough).
    pub default_min_occurrences: u32,
    /// Their window.
    #[serde(with = "humantime_serde")]
    pub default_window: Duration,
    /// Fingerprints on a target with an open incident younger than this join it.
    #[serde(with = "humantime_serde")]
    pub correlation_window: Duration,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            default_min_occurrences: 5,
            default_window: Duration::from_secs(60),
            correlation_window: Duration::from_secs(300),
        }
    }
}

/// Confidence thresholds and approvals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// At or above: auto-remediate auto-healable patterns.
    pub auto_threshold: f64,
    /// At or above (and under `auto_threshold`): suggest; under: escalate.
    pub suggest_threshold: f64,
    /// Strategies that always wait for approval.
    pub require_approval_for: Vec<String>,
    /// Let destructive strategies run without approval (off by default).
    pub allow_destructive_without_approval: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            auto_threshold: 0.7,
            suggest_threshold: 0.3,
            require_approval_for: vec![
                "rollback_deployment".into(),
                "scale_replicas".into(),
                "failover".into(),
            ],
            allow_destructive_without_approval: false,
        }
    }
}

/// Rate limits, cooldowns, attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// Actions allowed per hour across all targets; more wait in a queue by severity.
    pub max_actions_per_hour: u32,
    /// After an action, the same strategy on the same target is refused for this long.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Attempts at one error on one target before escalating: per incident, and per
    /// episode in the store (across incidents and restarts; an episode ends when a fix
    /// is verified or after `safety.escalation.reopen_after_quiet` without an attempt).
    pub max_attempts: u32,
    /// Fleet mode: the same guards held across replicas through the store.
    pub fleet: FleetConfig,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            max_actions_per_hour: 5,
            cooldown: Duration::from_secs(600),
            max_attempts: 3,
            fleet: FleetConfig::default(),
        }
    }
}

/// Fleet mode: replicas that share a store act as one. Before an action a replica takes
/// the target's lease (one replica at a time acts on a target; renewed while it acts,
/// so a replica that dies mid-action loses it after `lease_ttl`), checks the shared
/// cooldown (another replica's fix of the same episode closes this incident instead of
/// running it twice) and takes a permit of the fleet-wide rate limit
/// (`max_actions_per_hour` for the whole fleet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// On: coordinate through the store. Off (the default): each replica guards alone.
    pub enabled: bool,
    /// This replica's name in leases and cooldowns; empty: `<hostname>-<pid>-<random>`.
    pub replica: String,
    /// How long a lease lasts unless renewed (it is renewed every third of it).
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How long an incident waits for another replica's lease (or the fleet's rate
    /// limit) before it escalates.
    #[serde(with = "humantime_serde")]
    pub lease_wait: Duration,
    /// How often a waiting replica asks again.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            enabled: false,
            replica: String::new(),
            lease_ttl: Duration::from_secs(30),
            lease_wait: Duration::from_secs(600),
            poll: Duration::from_millis(500),
        }
    }
}

/// Verification after an action: within `window`, polled every `interval`, the
/// incident's errors (and any new error on the target since the action ended) must
/// stay away for `quiet_for` **and** the target's probe must pass
/// ([`Health::passed`](crate::Health::passed), the verifier's verdict on whether the
/// failed operation works again; its usage score is recorded, not judged). Without a
/// verifier only the quiet check counts; with neither (`quiet_for = 0` and no
/// verifier) the action ends `unverified`. On a target another system reports alerts
/// for ([`Healer::external_firing`](crate::Healer::external_firing)), the alerts'
/// resolution replaces the quiet check: a firing alert holds verification, and once
/// every alert resolved after the last error the errors count as stopped at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerificationConfig {
    /// How long a fix has to prove itself.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How often health is polled within it.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The fingerprint must not recur for this long after the action (0: no quiet check).
    #[serde(with = "humantime_serde")]
    pub quiet_for: Duration,
    /// How long a fix that needs its target reachable (`Strategy::needs_target`, e.g.
    /// `redis_reconnect`) waits for the target's probe to pass before it runs; it then
    /// runs at once. Past this the fix is not run (and starts no cooldown).
    #[serde(with = "humantime_serde")]
    pub target_wait: Duration,
    /// Removed: verification no longer passes on a health score. Kept so a
    /// configuration that still sets it is refused with an explanation instead of
    /// being silently ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_health: Option<u8>,
}

impl Default for VerificationConfig {
    fn default() -> Self {
        VerificationConfig {
            window: Duration::from_secs(120),
            interval: Duration::from_secs(5),
            quiet_for: Duration::from_secs(15),
            target_wait: Duration::from_secs(600),
            min_health: None,
        }
    }
}

/// How outcomes move a pattern's confidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedbackConfig {
    /// Added on a verified success (capped at 1).
    pub success_delta: f64,
    /// Subtracted on a failure (floored at 0).
    pub failure_delta: f64,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            success_delta: 0.05,
            failure_delta: 0.1,
        }
    }
}

/// The safety envelope around the guards: the healer never makes things worse.
///
/// ```
/// let config = selfheal_core::HealerConfig::from_toml(r#"
///     [safety]
///     dry_run = true
///     approval_ttl = "15m"
///     [safety.storm]
///     max_unhealthy = 5
///     [safety.dependencies]
///     api = ["postgres"]
/// "#).unwrap();
/// assert_eq!(config.safety.storm.max_unhealthy, 5);
/// assert_eq!(config.safety.breaker.max_failures, 5);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafetyConfig {
    /// Many targets failing at once: stop and escalate once.
    pub storm: StormConfig,
    /// Cooldowns that grow when an error keeps coming back after "successful" fixes.
    pub backoff: BackoffConfig,
    /// The breaker on the healer itself.
    pub breaker: BreakerConfig,
    /// One incident, one escalation: re-notification back-off and the quiet period
    /// before the same error may open a new incident.
    pub escalation: EscalationConfig,
    /// A suggestion nobody answers within this long escalates; approving it later is refused.
    #[serde(with = "humantime_serde")]
    pub approval_ttl: Duration,
    /// How often a replica waiting on an approval asks the store whether someone
    /// (on any replica) decided it, when the store cannot wake it (Postgres does, with
    /// `LISTEN`/`NOTIFY`, and is still polled as a fallback).
    #[serde(with = "humantime_serde")]
    pub approval_poll: Duration,
    /// Count errors on the target (and its dependents) during an action and its
    /// validation window into the open incident instead of opening new ones.
    pub self_caused: bool,
    /// Start the whole healer in dry run: strategies plan and "execute" against an
    /// executor that records what it would have run. Switchable at runtime.
    pub dry_run: bool,
    /// Patterns that start in dry run while the rest is live.
    pub dry_run_patterns: Vec<String>,
    /// How often the healer re-reads the operators' control state (silences, dry-run
    /// switches, the breaker, back-off) from the store, so that a change made on
    /// another replica holds here within this long. It is also read once at start.
    #[serde(with = "humantime_serde")]
    pub control_refresh: Duration,
    /// What each target depends on (`api = ["postgres"]`): while a dependency is
    /// unhealthy, its dependents' failures are attributed to it.
    pub dependencies: BTreeMap<String, Vec<String>>,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        SafetyConfig {
            storm: StormConfig::default(),
            backoff: BackoffConfig::default(),
            breaker: BreakerConfig::default(),
            escalation: EscalationConfig::default(),
            approval_ttl: Duration::from_secs(30 * 60),
            approval_poll: Duration::from_secs(1),
            self_caused: true,
            dry_run: false,
            dry_run_patterns: Vec::new(),
            control_refresh: Duration::from_secs(5),
            dependencies: BTreeMap::new(),
        }
    }
}

/// The storm short-circuit (Cluster API's `maxUnhealthy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StormConfig {
    /// More unhealthy targets than this at once is a storm.
    pub max_unhealthy: usize,
    /// A larger share of the known targets than this (0-1) unhealthy at once is a storm…
    pub max_unhealthy_share: f64,
    /// …once at least this many targets are known (so one failing target of two is not).
    pub share_min_targets: usize,
    /// An incident held by a storm closes once its errors are quiet this long.
    #[serde(with = "humantime_serde")]
    pub recovered_after: Duration,
}

impl Default for StormConfig {
    fn default() -> Self {
        StormConfig {
            max_unhealthy: 3,
            max_unhealthy_share: 0.4,
            share_min_targets: 5,
            recovered_after: Duration::from_secs(60),
        }
    }
}

/// Back-off of the (strategy, target) cooldown on repeat incidents. The first
/// cooldown is `guards.cooldown`; each repeat doubles it up to `cap`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// The longest cooldown.
    #[serde(with = "humantime_serde")]
    pub cap: Duration,
    /// No repeat for this long after a fix resets the back-off.
    #[serde(with = "humantime_serde")]
    pub reset_after: Duration,
    /// After this many repeats of a "successful" fix the fix is masking the real
    /// issue: escalate instead of running it again (0: never).
    pub masking_after: u32,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            cap: Duration::from_secs(6 * 3600),
            reset_after: Duration::from_secs(24 * 3600),
            masking_after: 3,
        }
    }
}

/// The breaker on the healer: after `max_failures` failed remediations across all
/// targets within `window`, the healer stops acting until an operator re-arms it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Failed remediations that trip it.
    pub max_failures: u32,
    /// The window they are counted in.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            max_failures: 5,
            window: Duration::from_secs(3600),
        }
    }
}

/// What happens after an incident escalates (or its fix is rejected): the incident
/// stays open for counting, so its error's further occurrences count into it instead
/// of opening new incidents that escalate again.
///
/// ```
/// let config = selfheal_core::HealerConfig::from_toml(r#"
///     [safety.escalation]
///     renotify_after = ["2m", "30m"]
///     reopen_after_quiet = "15m"
/// "#).unwrap();
/// assert_eq!(config.safety.escalation.renotify_after.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationConfig {
    /// While the error keeps occurring, the operators are reminded after each of these
    /// delays in turn (then every last one), and only if it occurred since the last
    /// notice. Empty: never reminded.
    #[serde(with = "durations")]
    pub renotify_after: Vec<Duration>,
    /// An escalated incident (or one whose fix a human rejected, or one of an
    /// alert-only pattern) ends once its errors are quiet this long; until then they
    /// count into it, and only then may the same error on the same target open a new
    /// incident.
    #[serde(with = "humantime_serde")]
    pub reopen_after_quiet: Duration,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            renotify_after: [1, 5, 15, 60].map(|m| Duration::from_secs(m * 60)).to_vec(),
            reopen_after_quiet: Duration::from_secs(10 * 60),
        }
    }
}

/// A list of durations in TOML as humantime strings (`["1m", "5m"]`).
mod durations {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|d| humantime_serde::re::humantime::format_duration(*d).to_string())
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| {
                humantime_serde::re::humantime::parse_duration(t)
                    .map_err(|e| serde::de::Error::custom(format!("`{t}`: {e}")))
            })
            .collect()
    }
}

impl HealerConfig {
    /// Parses a TOML document and validates it.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: HealerConfig = toml::from_str(text).map_err(|e| {
            Error::invalid(format!(
                "invalid healer config: {}",
                crate::strict::explain(&e.to_string())
            ))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values make sense together.
    pub fn validate(&self) -> Result<()> {
        let p = &self.policy;
        if !(0.0..=1.0).contains(&p.suggest_threshold)
            || !(0.0..=1.0).contains(&p.auto_threshold)
            || p.suggest_threshold > p.auto_threshold
        {
            return Err(Error::invalid(format!(
                "policy thresholds must satisfy 0 <= suggest_threshold ({}) <= auto_threshold ({}) <= 1",
                p.suggest_threshold, p.auto_threshold
            )));
        }
        if self.guards.max_actions_per_hour == 0 {
            return Err(Error::invalid(
                "guards.max_actions_per_hour is 0; use at least 1 (or make patterns alert-only)",
            ));
        }
        if self.guards.max_attempts == 0 {
            return Err(Error::invalid("guards.max_attempts is 0; use at least 1"));
        }
        self.intake.validate()?;
        if self.verification.interval.is_zero() {
            return Err(Error::invalid("verification.interval must be more than 0"));
        }
        if self.verification.min_health.is_some() {
            return Err(Error::invalid(
                "verification.min_health was removed: a fix is verified when its errors stop \
                 and the target's probe passes (the verifier's verdict), not on a score; \
                 remove the key",
            ));
        }
        let fleet = &self.guards.fleet;
        if fleet.lease_ttl < Duration::from_millis(30) || fleet.poll.is_zero() {
            return Err(Error::invalid(
                "guards.fleet needs lease_ttl >= 30ms and poll > 0; use seconds (lease_ttl = \"30s\")",
            ));
        }
        if self.detection.default_min_occurrences == 0 {
            return Err(Error::invalid(
                "detection.default_min_occurrences must be at least 1",
            ));
        }
        crate::Redactor::from_config(&self.redaction)
            .map_err(|e| Error::invalid(format!("redaction.extra: {}", e.message())))?;
        let l = &self.limits;
        if [l.plan, l.execute, l.rollback, l.notify, l.advise]
            .iter()
            .any(Duration::is_zero)
        {
            return Err(Error::invalid(
                "every [limits] entry must be above 0 (defaults: plan 30s, execute 5m, \
                 rollback 5m, notify 10s, advise 2m)",
            ));
        }
        self.safety.validate(self.guards.cooldown)
    }
}

impl SafetyConfig {
    fn validate(&self, cooldown: Duration) -> Result<()> {
        if !(0.0..=1.0).contains(&self.storm.max_unhealthy_share) {
            return Err(Error::invalid(format!(
                "safety.storm.max_unhealthy_share is {}; give a share between 0 and 1 (0.4 is 40 %)",
                self.storm.max_unhealthy_share
            )));
        }
        if self.backoff.cap < cooldown {
            return Err(Error::invalid(format!(
                "safety.backoff.cap ({:?}) is shorter than guards.cooldown ({cooldown:?}); make it at least as long",
                self.backoff.cap
            )));
        }
        if self.backoff.reset_after <= self.backoff.cap {
            return Err(Error::invalid(format!(
                "safety.backoff.reset_after ({:?}) must be longer than safety.backoff.cap ({:?}), \
                 or a repeat after the longest cooldown would always reset the back-off",
                self.backoff.reset_after, self.backoff.cap
            )));
        }
        if self.breaker.max_failures == 0 || self.breaker.window.is_zero() {
            return Err(Error::invalid(
                "safety.breaker needs max_failures >= 1 and a window > 0",
            ));
        }
        if self.approval_ttl.is_zero() {
            return Err(Error::invalid(
                "safety.approval_ttl is 0; give approvers some time (default 30m)",
            ));
        }
        if self.approval_poll.is_zero() {
            return Err(Error::invalid(
                "safety.approval_poll is 0; give how often to ask the store whether an approval \
                 was decided (default 1s)",
            ));
        }
        if self.control_refresh.is_zero() {
            return Err(Error::invalid(
                "safety.control_refresh is 0; give how often to re-read the shared control \
                 state from the store (default 5s)",
            ));
        }
        let e = &self.escalation;
        if e.renotify_after.iter().any(Duration::is_zero) || e.reopen_after_quiet.is_zero() {
            return Err(Error::invalid(
                "safety.escalation needs every renotify_after delay and reopen_after_quiet \
                 above 0 (defaults: [\"1m\", \"5m\", \"15m\", \"60m\"] and \"10m\")",
            ));
        }
        if let Some(cycle) = dependency_cycle(&self.dependencies) {
            return Err(Error::invalid(format!(
                "safety.dependencies go round in a circle ({}); a failure could then be \
                 attributed to itself: remove one of these links",
                cycle.join(" -> ")
            )));
        }
        Ok(())
    }
}

/// A circle in the dependency graph, as the targets along it, if there is one.
fn dependency_cycle(on: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit<'a>(
        target: &'a str,
        on: &'a BTreeMap<String, Vec<String>>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|t| *t == target) {
            let mut cycle: Vec<String> = path[at..].iter().map(|t| (*t).to_owned()).collect();
            cycle.push(target.to_owned());
            return Some(cycle);
        }
        if !done.insert(target) {
            return None;
        }
        path.push(target);
        for dep in on.get(target).into_iter().flatten() {
            if let Some(cycle) = visit(dep, on, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = std::collections::BTreeSet::new();
    on.keys()
        .find_map(|t| visit(t, on, &mut Vec::new(), &mut done))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(toml: &str) -> String {
        HealerConfig::from_toml(toml)
            .unwrap_err()
            .message()
            .to_owned()
    }

    #[test]
    fn verification_has_no_score_pass_mark_and_refuses_the_old_one() {
        let v = VerificationConfig::default();
        assert_eq!(v.target_wait, Duration::from_secs(600));
        assert_eq!(v.quiet_for, Duration::from_secs(15));
        let msg = invalid("[verification]\nmin_health = 80");
        assert!(msg.contains("min_health was removed"), "{msg}");
        let ok = HealerConfig::from_toml("[verification]\ntarget_wait = \"30s\"").unwrap();
        assert_eq!(ok.verification.target_wait, Duration::from_secs(30));
    }

    #[test]
    fn queue_bytes_has_a_default_and_a_range() {
        let intake = IntakeConfig::default();
        assert_eq!(intake.queue_bytes, 64 << 20);
        assert_eq!(intake.queue_bytes(), 64 << 20);
        for bad in [0, (2 << 20) - 1, (4 << 30) + 1, u64::MAX] {
            let msg = invalid(&format!(
                "[intake]\nqueue_bytes = {}",
                bad.min(i64::MAX as u64)
            ));
            assert!(msg.contains("intake.queue_bytes"), "{msg}");
        }
        for good in [2u64 << 20, 4u64 << 30] {
            HealerConfig::from_toml(&format!("[intake]\nqueue_bytes = {good}")).unwrap();
        }
        let typo = invalid("[intake]\nqueue_byte = 1");
        assert!(typo.contains("did you mean `queue_bytes`"), "{typo}");
    }

    #[test]
    fn safety_defaults_and_refusals() {
        let c = HealerConfig::default().safety;
        assert_eq!(
            (
                c.storm.max_unhealthy,
                c.breaker.max_failures,
                c.backoff.masking_after
            ),
            (3, 5, 3)
        );
        assert_eq!(c.approval_ttl, Duration::from_secs(1800));
        assert_eq!(c.backoff.cap, Duration::from_secs(6 * 3600));

        assert!(invalid("[safety.storm]\nmax_unhealthy_share = 40.0").contains("between 0 and 1"));
        assert!(invalid("[safety.backoff]\ncap = \"5m\"").contains("shorter than guards.cooldown"));
        assert!(invalid("[safety.backoff]\nreset_after = \"1h\"").contains("longer than"));
        assert!(invalid("[safety]\napproval_ttl = \"0s\"").contains("approval_ttl is 0"));
        assert!(invalid("[safety]\ncontrol_refresh = \"0s\"").contains("control_refresh is 0"));
        let circle =
            invalid("[safety.dependencies]\napi = [\"db\"]\ndb = [\"disk\"]\ndisk = [\"api\"]");
        assert!(circle.contains("api -> db -> disk -> api"), "{circle}");
        assert!(invalid("[safety.dependencies]\napi = [\"api\"]").contains("api -> api"));
        // A diamond is not a circle.
        HealerConfig::from_toml(
            "[safety.dependencies]\napi = [\"db\", \"cache\"]\ncache = [\"db\"]",
        )
        .unwrap();
    }
}
