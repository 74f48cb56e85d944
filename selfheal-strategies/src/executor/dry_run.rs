//! [`DryRunExecutor`]: records commands instead of running them.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use selfheal_core::{ActionOutcome, Command, Executor, Result};
use tracing::info;

/// Runs nothing: records every command it is given and reports success.
///
/// Its outcomes have no exit code (no process ran) and a stdout of
/// `dry run: would run <preview>`. Use it for the healer's dry-run mode and in tests
/// to see what a strategy would have done.
///
/// ```
/// use selfheal_core::{Command, Executor};
/// use selfheal_strategies::DryRunExecutor;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
/// let executor = DryRunExecutor::new();
/// let outcome = executor.run(&Command::new("systemctl", ["restart", "api"])).await?;
/// assert!(outcome.success);
/// assert_eq!(outcome.exit_code, None);
/// assert_eq!(executor.recorded(), vec![Command::new("systemctl", ["restart", "api"])]);
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct DryRunExecutor {
    recorded: Mutex<Vec<Command>>,
}

impl DryRunExecutor {
    /// An executor with nothing recorded yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The commands it was asked to run, oldest first.
    pub fn recorded(&self) -> Vec<Command> {
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl fmt::Debug for DryRunExecutor {
    // Recorded commands may carry secrets in their environment: show only how many.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self
            .recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("DryRunExecutor")
            .field("recorded", &count)
            .finish()
    }
}

#[async_trait]
impl Executor for DryRunExecutor {
    fn name(&self) -> &str {
        "dry_run"
    }

    fn dry_run(&self) -> bool {
        true
    }

    async fn run(&self, command: &Command) -> Result<ActionOutcome> {
        let preview = command.preview();
        info!(command = %preview, "dry run: not running command");
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(command.clone());
        Ok(ActionOutcome {
            exit_code: None,
            stdout: format!("dry run: would run {preview}"),
            stderr: String::new(),
            duration: Duration::ZERO,
            success: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_commands_in_order_and_runs_nothing() {
        let executor = DryRunExecutor::new();
        let dir = std::env::temp_dir().join(format!("selfheal-dry-run-{}", std::process::id()));
        let first = Command::new("mkdir", [dir.to_string_lossy().into_owned()]);
        let second = Command::new("kill", ["-TERM", "1"]);

        let outcome = executor.run(&first).await.unwrap();
        executor.run(&second).await.unwrap();

        assert!(outcome.success);
        assert_eq!(outcome.exit_code, None);
        assert!(
            outcome.stdout.starts_with("dry run: would run mkdir "),
            "{}",
            outcome.stdout
        );
        assert_eq!(executor.recorded(), vec![first, second]);
        assert!(!dir.exists(), "the dry run created {dir:?}");
        assert_eq!(format!("{executor:?}"), "DryRunExecutor { recorded: 2 }");
    }
}
