//! Executors: how a strategy's commands are run.

mod dry_run;
mod process;

pub use dry_run::DryRunExecutor;
pub use process::{DEFAULT_ENV_ALLOW, ProcessExecutor, SENSITIVE_ENV_MARKERS};
pub(crate) use process::{append_note, format_duration, spawn_error};
