//! A real, small failure to heal: a service needs its flag file (`<dir>/<target>.flag`);
//! the fix recreates it with `touch` through an executor that runs processes (no
//! shell); the verifier checks the file is there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use selfheal_core::{
    ActionContext, ActionOutcome, Command, Error, ErrorKind, Executor, FixBinding, Healer,
    HealerConfig, Health, MemoryStore, Pattern, PatternMode, RemediationPlan, Result, Severity,
    Signal, Strategy, Verifier,
};

pub const PATTERN: &str = "flag_file_missing";

/// Where a target's flag file is.
pub fn flag(dir: &Path, target: &str) -> PathBuf {
    dir.join(format!("{target}.flag"))
}

/// The target's health: whether its flag file is there.
#[derive(Debug, Clone)]
pub struct FlagFile(pub PathBuf);

#[async_trait]
impl Verifier for FlagFile {
    fn name(&self) -> &str {
        "flag_file"
    }
    async fn check(&self) -> Result<Health> {
        Ok(if self.0.exists() {
            Health::new(100, "flag file present")
        } else {
            Health::new(0, "flag file missing")
        })
    }
}

/// The fix: `touch <dir>/<target>.flag`, through the executor.
#[derive(Debug, Clone)]
pub struct RecreateFlag(pub PathBuf);

#[async_trait]
impl Strategy for RecreateFlag {
    fn name(&self) -> &str {
        "recreate_flag"
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        let path = flag(&self.0, &ctx.target);
        Ok(RemediationPlan::new("recreate_flag", &ctx.target)
            .command(Command::new("touch", [path.to_string_lossy().into_owned()])))
    }
    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        let mut last = ActionOutcome::ok(Duration::ZERO);
        for step in &plan.steps {
            if let Some(command) = &step.command {
                last = executor.run(command).await?;
            }
        }
        Ok(last)
    }
}

/// Runs a command as a process: program and arguments, no shell.
#[derive(Debug)]
pub struct Spawn;

#[async_trait]
impl Executor for Spawn {
    fn name(&self) -> &str {
        "spawn"
    }
    async fn run(&self, command: &Command) -> Result<ActionOutcome> {
        let started = Instant::now();
        let status = tokio::process::Command::new(&command.program)
            .args(&command.args)
            .status()
            .await
            .map_err(|e| Error::new(ErrorKind::Unavailable, e.to_string()))?;
        let mut outcome = ActionOutcome::ok(started.elapsed());
        outcome.success = status.success();
        outcome.exit_code = status.code();
        Ok(outcome)
    }
}

/// A spawned healer for `targets` (flag files created in `dir`), whose pattern has
/// `confidence` (0.5: a human approves; 0.9: it heals alone).
pub async fn healer(
    dir: &Path,
    targets: &[&str],
    confidence: f64,
) -> (Healer, selfheal_core::Running) {
    let mut config = HealerConfig::default();
    config.verification.window = Duration::from_secs(20);
    config.verification.interval = Duration::from_millis(200);
    config.verification.quiet_for = Duration::from_secs(1);
    let mut builder = Healer::builder()
        .config(config)
        .store(MemoryStore::new())
        .strategy(RecreateFlag(dir.to_owned()))
        .executor(Spawn);
    for target in targets {
        std::fs::write(flag(dir, target), b"ok").unwrap();
        builder = builder.verifier(*target, FlagFile(flag(dir, target)));
    }
    let healer = builder.build().unwrap();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(
            Pattern::new(PATTERN)
                .regex("flag file .* is missing")
                .severity(Severity::High)
                .mode(PatternMode::Active)
                .auto_healable(true)
                .confidence(confidence)
                .threshold(3, Duration::from_secs(60))
                .fix(FixBinding::new("recreate_flag")),
            "test",
        )
        .await
        .unwrap();
    (healer, running)
}

/// The failure: the flag file is removed and the service reports it three times.
pub fn break_it(healer: &Healer, dir: &Path, target: &str) {
    let path = flag(dir, target);
    std::fs::remove_file(&path).unwrap();
    for _ in 0..3 {
        assert!(!path.exists());
        healer.observe(Signal::new(
            target,
            format!("flag file {} is missing", path.display()),
        ));
    }
}
