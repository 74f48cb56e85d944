//! What went wrong, and the exit code it maps to.

use std::fmt;
use std::process::ExitCode;

/// A failed command: a message for stderr and its exit code.
#[derive(Debug)]
pub struct CliError {
    /// 2 for usage (what was asked cannot be run), 1 for everything else.
    pub code: u8,
    /// What went wrong and what to do.
    pub message: String,
    /// The API's JSON error body, printed as is with `--json`.
    pub body: Option<serde_json::Value>,
}

impl CliError {
    /// The command line asks for something that cannot be done (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: 2,
            message: message.into(),
            body: None,
        }
    }

    /// The API, the network or the store failed, or a check did not pass (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            code: 1,
            message: message.into(),
            body: None,
        }
    }

    /// The exit code for the process.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<selfheal_core::Error> for CliError {
    fn from(e: selfheal_core::Error) -> Self {
        CliError::failed(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader went away (`selfheal … | head`): stop quietly, as `cat` does.
            return CliError {
                code: 0,
                message: String::new(),
                body: None,
            };
        }
        CliError::failed(format!("cannot write the output: {e}"))
    }
}

/// The result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;
