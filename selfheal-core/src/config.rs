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

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The healer's configuration. Every field has the default DESIGN.md gives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
}

/// Signal intake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IntakeConfig {
    /// Signals buffered between `observe` and the pipeline; more are dropped and counted.
    pub queue_capacity: usize,
    /// Events buffered per subscriber of the event stream.
    pub event_capacity: usize,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            queue_capacity: 10_000,
            event_capacity: 1_024,
        }
    }
}

/// Detection windows and correlation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectionConfig {
    /// Occurrences that open an incident for fingerprints no pattern matches.
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
#[serde(default)]
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
#[serde(default)]
pub struct GuardConfig {
    /// Actions allowed per hour across all targets; more wait in a queue by severity.
    pub max_actions_per_hour: u32,
    /// After an action, the same strategy on the same target is refused for this long.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Attempts per pattern per incident before escalating.
    pub max_attempts: u32,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            max_actions_per_hour: 5,
            cooldown: Duration::from_secs(600),
            max_attempts: 3,
        }
    }
}

/// Verification after an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerificationConfig {
    /// How long a fix has to prove itself.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How often health is polled within it.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Health needed to pass (0-100).
    pub min_health: u8,
    /// The fingerprint must not recur for this long after the action.
    #[serde(with = "humantime_serde")]
    pub quiet_for: Duration,
}

impl Default for VerificationConfig {
    fn default() -> Self {
        VerificationConfig {
            window: Duration::from_secs(120),
            interval: Duration::from_secs(5),
            min_health: 80,
            quiet_for: Duration::from_secs(15),
        }
    }
}

/// How outcomes move a pattern's confidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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

impl HealerConfig {
    /// Parses a TOML document and validates it.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: HealerConfig = toml::from_str(text)
            .map_err(|e| Error::invalid(format!("invalid healer config: {e}")))?;
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
        if self.intake.queue_capacity == 0 || self.intake.event_capacity == 0 {
            return Err(Error::invalid("intake capacities must be at least 1"));
        }
        if self.verification.interval.is_zero() {
            return Err(Error::invalid("verification.interval must be more than 0"));
        }
        if self.detection.default_min_occurrences == 0 {
            return Err(Error::invalid(
                "detection.default_min_occurrences must be at least 1",
            ));
        }
        Ok(())
    }
}
