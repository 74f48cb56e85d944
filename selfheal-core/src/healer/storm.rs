//! The storm short-circuit (Cluster API's `maxUnhealthy`): when more targets are
//! unhealthy at once than the configuration allows, a common cause is likelier than
//! many independent failures, so automatic remediation stops until health recovers.
//!
//! This module only keeps the state: which targets are known and whether a storm is
//! on. The pipeline counts the unhealthy targets and acts on the verdict.

use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashSet;

use crate::StormConfig;

/// Targets remembered for the share rule; past this, new ones are not added.
const MAX_KNOWN: usize = 10_000;

#[derive(Debug)]
pub(crate) struct Storm {
    config: StormConfig,
    known: DashSet<String>,
    active: AtomicBool,
}

impl Storm {
    pub(crate) fn new(config: StormConfig) -> Self {
        Storm {
            config,
            known: DashSet::new(),
            active: AtomicBool::new(false),
        }
    }

    /// Remembers `target` as one of the known targets.
    pub(crate) fn know(&self, target: &str) {
        if self.known.len() < MAX_KNOWN && !self.known.contains(target) {
            self.known.insert(target.to_owned());
        }
    }

    /// How many targets are known.
    pub(crate) fn known(&self) -> usize {
        self.known.len()
    }

    /// Whether `unhealthy` targets at once is a storm: more than `max_unhealthy`, or
    /// more than `max_unhealthy_share` of the known targets once enough are known.
    pub(crate) fn is_storm(&self, unhealthy: usize) -> bool {
        let known = self.known().max(unhealthy);
        unhealthy > self.config.max_unhealthy
            || (known >= self.config.share_min_targets
                && unhealthy as f64 > self.config.max_unhealthy_share * known as f64)
    }

    /// Records the verdict: `Some(true)` when a storm just started, `Some(false)` when
    /// it just ended, `None` when nothing changed. Only one caller sees each change.
    pub(crate) fn set(&self, storm: bool) -> Option<bool> {
        let was = self.active.swap(storm, Ordering::SeqCst);
        (was != storm).then_some(storm)
    }

    /// Whether a storm is on.
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    pub(crate) fn config(&self) -> &StormConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_and_share_rules() {
        let storm = Storm::new(StormConfig::default());
        for t in ["a", "b"] {
            storm.know(t);
        }
        // Two of two known is 100 %, but too few targets are known for the share rule.
        assert!(!storm.is_storm(2));
        assert!(!storm.is_storm(3));
        assert!(storm.is_storm(4), "more than 3 is a storm");
        for i in 0..8 {
            storm.know(&format!("t{i}"));
        }
        assert_eq!(storm.known(), 10);
        assert!(!storm.is_storm(3), "30 % of 10");
        let strict = Storm::new(StormConfig {
            max_unhealthy: 100,
            ..Default::default()
        });
        for i in 0..10 {
            strict.know(&format!("t{i}"));
        }
        assert!(!strict.is_storm(4), "40 % is not more than 40 %");
        assert!(strict.is_storm(5), "50 % of 10");
    }

    #[test]
    fn each_change_is_seen_once() {
        let storm = Storm::new(StormConfig::default());
        assert_eq!(storm.set(false), None);
        assert_eq!(storm.set(true), Some(true));
        assert_eq!(storm.set(true), None);
        assert!(storm.active());
        assert_eq!(storm.set(false), Some(false));
    }
}
