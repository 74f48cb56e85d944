//! Dry-run mode, for the whole healer or per pattern: everything runs and is audited
//! except the executor, which a [`DryRun`] wrapper replaces to record what it would
//! have run. Operators switch it at runtime through the [`Healer`] handle; a switch is
//! kept in the store (`control.rs`), so it holds on every replica and after a restart.
//! A switch in the store wins over the config, which only says where to start.

use super::admin::Admin;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;

use super::Healer;
use crate::{ActionOutcome, AuditEntry, Command, Executor, Phase, Result, SafetyConfig};

/// Which patterns run dry.
#[derive(Debug, Default)]
pub(crate) struct DryRunSwitch {
    all: AtomicBool,
    patterns: RwLock<HashSet<String>>,
    /// What the config says, for switches the store holds nothing about.
    config_all: bool,
    config_patterns: Vec<String>,
}

impl DryRunSwitch {
    pub(crate) fn new(config: &SafetyConfig) -> Self {
        DryRunSwitch {
            all: AtomicBool::new(config.dry_run),
            patterns: RwLock::new(config.dry_run_patterns.iter().cloned().collect()),
            config_all: config.dry_run,
            config_patterns: config.dry_run_patterns.clone(),
        }
    }

    /// Takes the switches read from the store: the whole healer's (`None`: as the
    /// config says) and per pattern, over the config's.
    pub(crate) fn replace(&self, all: Option<bool>, patterns: Vec<(String, bool)>) {
        let mut set: HashSet<String> = self.config_patterns.iter().cloned().collect();
        for (pattern, on) in patterns {
            if on {
                set.insert(pattern);
            } else {
                set.remove(&pattern);
            }
        }
        *self.patterns.write().unwrap_or_else(|e| e.into_inner()) = set;
        let all = all.unwrap_or(self.config_all);
        let was = self.all.swap(all, Ordering::SeqCst);
        if self.config_all && was && !all {
            tracing::warn!(
                "safety.dry_run is set, but an operator switched the healer live (kept in the \
                 store): running live; switch it with Admin::set_dry_run"
            );
        }
    }

    fn applies(&self, pattern: Option<&str>) -> bool {
        self.all.load(Ordering::SeqCst)
            || pattern.is_some_and(|p| {
                self.patterns
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(p)
            })
    }
}

/// Stands in for the live executor: notes what each command would have been (its
/// preview, never its environment, which may hold secrets) and reports success
/// without running anything.
#[derive(Debug)]
pub(crate) struct DryRun {
    /// `dry_run(<live executor>)`.
    name: String,
    would_have_run: Mutex<Vec<String>>,
}

impl DryRun {
    /// A recorder standing in for the executor named `live`.
    pub(crate) fn wrapping(live: &str) -> Self {
        DryRun {
            name: format!("dry_run({live})"),
            would_have_run: Mutex::new(Vec::new()),
        }
    }

    /// The previews of the commands it would have run, in order.
    pub(crate) fn would_have_run(&self) -> Vec<String> {
        self.would_have_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl Executor for DryRun {
    fn dry_run(&self) -> bool {
        true
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, command: &Command) -> Result<ActionOutcome> {
        let preview = command.preview();
        tracing::info!(executor = %self.name, command = %preview, "dry run: not running command");
        let outcome = ActionOutcome {
            stdout: format!("{}: would run {preview}", self.name),
            ..ActionOutcome::ok(Duration::ZERO)
        };
        self.would_have_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(preview);
        Ok(outcome)
    }
}

impl Healer {
    /// The live executor, or when `dry` a recorder standing in for it.
    pub(super) fn executor_for(&self, dry: bool) -> (Arc<dyn Executor>, Option<Arc<DryRun>>) {
        let live = self.inner.executor.clone();
        if !dry {
            return (live, None);
        }
        let dry = Arc::new(DryRun::wrapping(live.name()));
        (dry.clone(), Some(dry))
    }
}

impl Admin {
    /// Switches the whole healer between dry run (`true`) and live; `actor` is audited.
    pub async fn set_dry_run(&self, on: bool, actor: &str) {
        self.healer
            .control_changed(|| self.healer.inner.dry_run.all.store(on, Ordering::SeqCst));
        self.healer
            .save_control(
                super::control::DRY_RUN_ALL.to_owned(),
                Some(serde_json::json!({"on": on})),
            )
            .await;
        self.mode_changed(None, on, actor).await;
    }

    /// Switches one pattern between dry run and live; `actor` is audited. The whole
    /// healer in dry run wins over a pattern switched live.
    pub async fn set_pattern_dry_run(&self, pattern: &str, on: bool, actor: &str) {
        self.healer.control_changed(|| {
            let mut set = self
                .healer
                .inner
                .dry_run
                .patterns
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if on {
                set.insert(pattern.to_owned());
            } else {
                set.remove(pattern);
            }
        });
        self.healer
            .save_control(
                super::control::dry_run_pattern_key(pattern),
                Some(serde_json::json!({"pattern": pattern, "on": on})),
            )
            .await;
        self.mode_changed(Some(pattern), on, actor).await;
    }

    /// Whether incidents of `pattern` (or without one, `None`) run dry now.
    pub fn is_dry_run(&self, pattern: Option<&str>) -> bool {
        self.healer.inner.dry_run.applies(pattern)
    }

    /// The patterns switched to dry run on their own (by config or an operator),
    /// sorted: they stay dry when the whole healer is switched live.
    pub fn dry_run_patterns(&self) -> Vec<String> {
        let mut patterns: Vec<String> = self
            .healer
            .inner
            .dry_run
            .patterns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        patterns.sort();
        patterns
    }

    async fn mode_changed(&self, pattern: Option<&str>, on: bool, actor: &str) {
        let mode = if on { "dry_run" } else { "live" };
        let scope = pattern.map_or_else(|| "the healer".to_owned(), |p| format!("pattern `{p}`"));
        self.healer.emit_with(
            None,
            "*",
            Phase::ModeChanged,
            format!("{scope} is {mode} (by {actor})"),
            crate::EventData {
                actor: Some(actor.to_owned()),
                ..crate::EventData::default()
            },
        );
        self.healer
            .audit(AuditEntry {
                actor: actor.to_owned(),
                pattern: pattern.map(str::to_owned),
                detail: serde_json::json!({"mode": mode}),
                ..AuditEntry::new("self_heal.mode_changed", mode)
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_instead_of_running() {
        let dry = DryRun::wrapping("process");
        let out = dry
            .run(&Command::new("systemctl", ["restart", "api"]))
            .await
            .unwrap();
        assert!(out.success && dry.dry_run());
        assert_eq!(dry.name(), "dry_run(process)");
        assert_eq!(out.exit_code, None);
        assert_eq!(dry.would_have_run(), ["systemctl restart api"]);
    }

    #[test]
    fn whole_healer_or_per_pattern() {
        let switch = DryRunSwitch::new(&SafetyConfig {
            dry_run_patterns: vec!["redis_oom".into()],
            ..Default::default()
        });
        assert!(switch.applies(Some("redis_oom")));
        assert!(!switch.applies(Some("pool")) && !switch.applies(None));
        switch.all.store(true, Ordering::SeqCst);
        assert!(switch.applies(Some("pool")) && switch.applies(None));
    }
}
