//! [`ProcessExecutor`]: runs a [`Command`] as a local process.

use std::ffi::OsString;
use std::fmt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use selfheal_core::{ActionOutcome, Command, Error, ErrorKind, Executor, Result};
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::{debug, instrument, warn};

/// Substrings (matched case-insensitively) of environment variable names that are never
/// passed from the host to a command, even when allow-listed. A command still gets such
/// a variable when it sets it itself in [`Command::env`].
pub const SENSITIVE_ENV_MARKERS: &[&str] = &["SECRET", "TOKEN", "PASSWORD", "KEY", "CREDENTIAL"];

/// Host environment variables passed to commands by default.
pub const DEFAULT_ENV_ALLOW: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

/// How long the process's output pipes are still read after it exited or was killed,
/// in case a descendant holds them open.
const DRAIN_WINDOW: Duration = Duration::from_millis(500);

/// Runs a [`Command`] as a local process: an argument vector passed to the program as it
/// is, never through a shell.
///
/// - **Timeout**: [`Command::timeout`] when set, else the executor's default (30 s).
///   A command that runs out of time is killed (SIGKILL) and reported as an `Ok`
///   outcome with `success: false`, no exit code, the output captured so far, and
///   stderr ending in a `[selfheal: killed after … timeout]` note. It is an outcome, not
///   an `Err`, because the command did run and its partial output belongs in the audit
///   trail. On Unix the command runs in a process group of its own and the whole group
///   is killed, so what it started (`sh -c 'worker &'`) dies with it; a descendant
///   that moved to another group or session (a daemon) is out of reach.
/// - **Output**: stdout and stderr are captured separately, each capped (64 KiB by
///   default). The head is kept, the rest is read and discarded (so the process never
///   blocks on a full pipe) and a `[selfheal: output truncated: N more bytes]` note is
///   appended. Invalid UTF-8 is replaced.
/// - **Environment**: scrubbed. The process starts from an empty environment and gets
///   only the allow-listed host variables (PATH, HOME, LANG, LC_ALL, TZ by default) plus
///   [`Command::env`]. Host variables whose names contain one of
///   [`SENSITIVE_ENV_MARKERS`] are never passed, even when allow-listed.
/// - **Stdin** is closed (`/dev/null`).
///
/// A program that cannot be started is an `Err` of kind [`ErrorKind::Execution`] that
/// names the program; a non-zero exit is an `Ok` outcome with `success: false`.
///
/// ```
/// use selfheal_core::{Command, Executor};
/// use selfheal_strategies::ProcessExecutor;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
/// let executor = ProcessExecutor::new().max_output_bytes(1024);
/// let outcome = executor.run(&Command::new("echo", ["hello"])).await?;
/// assert!(outcome.success);
/// assert_eq!(outcome.stdout, "hello\n");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ProcessExecutor {
    timeout: Duration,
    max_output_bytes: usize,
    env_allow: Vec<String>,
}

impl ProcessExecutor {
    /// The timeout of a command that sets none.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    /// How much of stdout and of stderr is kept, each.
    pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 64 * 1024;

    /// An executor with the defaults: 30 s timeout, 64 KiB per stream, the
    /// [`DEFAULT_ENV_ALLOW`] allow-list.
    pub fn new() -> Self {
        ProcessExecutor {
            timeout: Self::DEFAULT_TIMEOUT,
            max_output_bytes: Self::DEFAULT_MAX_OUTPUT_BYTES,
            env_allow: DEFAULT_ENV_ALLOW.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The timeout of commands that set none ([`Command::timeout`] overrides it).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many bytes of stdout and of stderr are kept, each.
    pub fn max_output_bytes(mut self, max: usize) -> Self {
        self.max_output_bytes = max;
        self
    }

    /// Replaces the allow-list of host environment variables passed to commands.
    /// Names containing one of [`SENSITIVE_ENV_MARKERS`] are still never passed.
    pub fn env_allow<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.env_allow = names.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one host environment variable to the allow-list.
    pub fn allow_env(mut self, name: impl Into<String>) -> Self {
        self.env_allow.push(name.into());
        self
    }

    /// The environment `command` runs with, reading host variables through `host`.
    fn environment(
        &self,
        command: &Command,
        host: impl Fn(&str) -> Option<OsString>,
    ) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = Vec::new();
        for name in &self.env_allow {
            if is_sensitive(name) {
                debug!(variable = %name, "not passing allow-listed variable: its name looks like a secret");
                continue;
            }
            if let Some(value) = host(name) {
                env.push((name.into(), value));
            }
        }
        for (name, value) in &command.env {
            env.retain(|(n, _)| n != name.as_str());
            env.push((name.into(), value.into()));
        }
        env
    }
}

impl Default for ProcessExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ProcessExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessExecutor")
            .field("timeout", &self.timeout)
            .field("max_output_bytes", &self.max_output_bytes)
            .field("env_allow", &self.env_allow)
            .finish()
    }
}

/// Whether a variable name looks like it holds a secret.
fn is_sensitive(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SENSITIVE_ENV_MARKERS.iter().any(|m| upper.contains(m))
}

/// How the process ended.
enum Ending {
    Exited(ExitStatus),
    TimedOut,
}

#[async_trait]
impl Executor for ProcessExecutor {
    fn name(&self) -> &str {
        "process"
    }

    #[instrument(skip_all, fields(program = %command.program), err)]
    async fn run(&self, command: &Command) -> Result<ActionOutcome> {
        if command.program.is_empty() {
            return Err(Error::invalid(
                "command has an empty program; give the program to run as the first element of the argument vector",
            ));
        }
        let timeout = command.timeout.unwrap_or(self.timeout);
        debug!(command = %command.preview(), ?timeout, "running command");

        let mut process = tokio::process::Command::new(&command.program);
        process
            .args(&command.args)
            .env_clear()
            .envs(self.environment(command, |name| std::env::var_os(name)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group, so a timeout can kill what it started too.
        #[cfg(unix)]
        process.process_group(0);

        let started = Instant::now();
        let mut child = process
            .spawn()
            .map_err(|e| spawn_error(&command.program, e))?;
        let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take())
        else {
            return Err(Error::new(
                ErrorKind::Internal,
                "the child process has no stdout or stderr pipe although both were requested",
            ));
        };

        let mut out = Capture::new(self.max_output_bytes);
        let mut err = Capture::new(self.max_output_bytes);
        let deadline = tokio::time::Instant::now() + timeout;
        let (ending, duration) = {
            let mut reading = std::pin::pin!(async {
                tokio::join!(out.fill(&mut stdout), err.fill(&mut stderr))
            });
            let mut reading_done = false;
            let ending = loop {
                tokio::select! {
                    _ = &mut reading, if !reading_done => reading_done = true,
                    status = child.wait() => break status.map(Ending::Exited),
                    () = tokio::time::sleep_until(deadline) => break Ok(Ending::TimedOut),
                }
            };
            let ending = ending.map_err(|e| {
                Error::new(
                    ErrorKind::Execution,
                    format!(
                        "lost track of `{}` while waiting for it to exit: {e}",
                        command.program
                    ),
                )
                .with_source(e)
            })?;
            if let Ending::TimedOut = ending {
                warn!(?timeout, "command timed out; killing it");
                kill_group(&child);
                if let Err(e) = child.start_kill() {
                    warn!(error = %e, "could not kill the timed-out command");
                }
                // SIGKILL cannot be ignored; the wait is bounded anyway so that nothing
                // the kernel does can hang the healer.
                if let Ok(Err(e)) = tokio::time::timeout(DRAIN_WINDOW * 4, child.wait()).await {
                    warn!(error = %e, "could not reap the killed command");
                }
            }
            if !reading_done
                && tokio::time::timeout(DRAIN_WINDOW, &mut reading)
                    .await
                    .is_err()
            {
                debug!(
                    "output pipes still open after the process ended (held by a descendant?); stopped reading"
                );
            }
            (ending, started.elapsed())
        };

        let mut outcome = ActionOutcome {
            exit_code: None,
            stdout: out.into_string(),
            stderr: err.into_string(),
            duration,
            success: false,
        };
        match ending {
            Ending::Exited(status) => {
                outcome.exit_code = status.code();
                outcome.success = status.success();
                if let Some(signal) = terminating_signal(&status) {
                    append_note(
                        &mut outcome.stderr,
                        &format!("terminated by signal {signal}"),
                    );
                }
            }
            Ending::TimedOut => append_note(
                &mut outcome.stderr,
                &format!("killed after {} timeout", format_duration(timeout)),
            ),
        }
        debug!(
            exit_code = ?outcome.exit_code,
            success = outcome.success,
            duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            "command finished"
        );
        Ok(outcome)
    }
}

/// SIGKILLs the process group `child` leads (it was spawned with `process_group(0)`).
#[cfg(unix)]
fn kill_group(child: &tokio::process::Child) {
    let Some(pgid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return; // already reaped: nothing left to kill in its name
    };
    if let Err(e) = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL) {
        debug!(error = %e, "could not kill the command's process group");
    }
}

#[cfg(not(unix))]
fn kill_group(_child: &tokio::process::Child) {}

/// The error for a program that could not be started, saying what to check.
pub(crate) fn spawn_error(program: &str, e: std::io::Error) -> Error {
    let hint = match e.kind() {
        std::io::ErrorKind::NotFound => {
            "check that it is installed and on the PATH passed to the executor, or give an absolute path"
        }
        std::io::ErrorKind::PermissionDenied => {
            "check that the file is executable and the service's user may run it"
        }
        _ => "check the program path, its permissions and the system's process limits",
    };
    Error::new(
        ErrorKind::Execution,
        format!("could not start `{program}`: {e}; {hint}"),
    )
    .with_source(e)
}

#[cfg(unix)]
fn terminating_signal(status: &ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(status)
}

#[cfg(not(unix))]
fn terminating_signal(_status: &ExitStatus) -> Option<i32> {
    None
}

/// Appends a `[selfheal: …]` note on its own line.
pub(crate) fn append_note(text: &mut String, note: &str) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("[selfheal: ");
    text.push_str(note);
    text.push(']');
}

/// `200ms`, `30s`, `1.5s`.
pub(crate) fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The head of one output stream, up to a cap, and how much was discarded.
struct Capture {
    head: Vec<u8>,
    cap: usize,
    discarded: u64,
}

impl Capture {
    fn new(cap: usize) -> Self {
        Capture {
            head: Vec::new(),
            cap,
            discarded: 0,
        }
    }

    /// Reads `reader` to its end, keeping the head.
    async fn fill<R: AsyncRead + Unpin>(&mut self, reader: &mut R) {
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    let room = self.cap.saturating_sub(self.head.len()).min(n);
                    self.head.extend_from_slice(&buf[..room]);
                    self.discarded += (n - room) as u64;
                }
                Err(e) => {
                    debug!(error = %e, "stopped reading command output");
                    break;
                }
            }
        }
    }

    fn into_string(mut self) -> String {
        let truncated = self.discarded > 0;
        if truncated {
            // Do not end the kept head in the middle of a UTF-8 sequence.
            if let Err(e) = std::str::from_utf8(&self.head)
                && e.error_len().is_none()
            {
                let cut = self.head.len() - e.valid_up_to();
                self.head.truncate(e.valid_up_to());
                self.discarded += cut as u64;
            }
        }
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if truncated {
            append_note(
                &mut text,
                &format!("output truncated: {} more bytes", self.discarded),
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn cmd(program: &str, args: &[&str]) -> Command {
        Command::new(program, args.iter().copied())
    }

    #[tokio::test]
    async fn true_succeeds_with_exit_code_zero() {
        let outcome = ProcessExecutor::new().run(&cmd("true", &[])).await.unwrap();
        assert!(outcome.success);
        assert_eq!(outcome.exit_code, Some(0));
        assert_eq!(outcome.stdout, "");
        assert_eq!(outcome.stderr, "");
    }

    #[tokio::test]
    async fn false_is_an_ok_outcome_that_did_not_succeed() {
        let outcome = ProcessExecutor::new()
            .run(&cmd("false", &[]))
            .await
            .unwrap();
        assert!(!outcome.success);
        assert_eq!(outcome.exit_code, Some(1));
    }

    #[tokio::test]
    async fn captures_stdout_stderr_and_exit_code_separately() {
        let outcome = ProcessExecutor::new()
            .run(&cmd("sh", &["-c", "echo out; echo err >&2; exit 3"]))
            .await
            .unwrap();
        assert!(!outcome.success);
        assert_eq!(outcome.exit_code, Some(3));
        assert_eq!(outcome.stdout, "out\n");
        assert_eq!(outcome.stderr, "err\n");
        assert!(outcome.duration > Duration::ZERO);
    }

    #[tokio::test]
    async fn arguments_are_passed_verbatim_never_through_a_shell() {
        let outcome = ProcessExecutor::new()
            .run(&cmd("echo", &["$HOME", "; rm -rf /", "`id`"]))
            .await
            .unwrap();
        assert_eq!(outcome.stdout, "$HOME ; rm -rf / `id`\n");
    }

    #[tokio::test]
    async fn missing_program_is_an_execution_error_naming_it() {
        let err = ProcessExecutor::new()
            .run(&cmd("selfheal-no-such-program", &["x"]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Execution);
        assert!(
            err.message().contains("`selfheal-no-such-program`"),
            "{err}"
        );
        assert!(err.message().contains("PATH"), "{err}");
    }

    #[tokio::test]
    async fn empty_program_is_invalid_input() {
        let err = ProcessExecutor::new().run(&cmd("", &[])).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn command_timeout_overrides_default_and_kills_the_process() {
        // `exec` keeps the shell's pid, so the printed pid is the process that must die.
        let command =
            cmd("sh", &["-c", "echo $$; exec sleep 30"]).timeout(Duration::from_millis(200));
        let started = Instant::now();
        let outcome = ProcessExecutor::new().run(&command).await.unwrap();
        let elapsed = started.elapsed();

        assert!(
            elapsed < Duration::from_secs(5),
            "returned after {elapsed:?}"
        );
        assert!(outcome.duration >= Duration::from_millis(200));
        assert!(!outcome.success);
        assert_eq!(outcome.exit_code, None);
        assert!(
            outcome.stderr.contains("killed after 200ms timeout"),
            "{}",
            outcome.stderr
        );
        let pid: u32 = outcome.stdout.trim().parse().expect("partial output kept");
        // Killed and reaped: no process (not even a zombie) is left under that pid.
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} still exists"
        );
    }

    /// Whether `pid` is gone or a zombie (killed, waiting for its new parent to reap it).
    fn dead(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            // The state follows the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        }
    }

    #[tokio::test]
    async fn a_timeout_kills_what_the_command_started_too() {
        // The shell starts a background sleep and waits for it: the sleep is a child
        // of the shell, in the command's process group.
        let command =
            cmd("sh", &["-c", "sleep 30 & echo $!; wait"]).timeout(Duration::from_millis(300));
        let outcome = ProcessExecutor::new().run(&command).await.unwrap();
        assert!(
            outcome.stderr.contains("killed after 300ms timeout"),
            "{}",
            outcome.stderr
        );
        let pid: u32 = outcome.stdout.trim().parse().expect("the background pid");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !dead(pid) {
            assert!(
                Instant::now() < deadline,
                "background pid {pid} survived the timeout"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn executor_default_timeout_applies_when_command_sets_none() {
        let executor = ProcessExecutor::new().timeout(Duration::from_millis(200));
        let started = Instant::now();
        let outcome = executor.run(&cmd("sleep", &["30"])).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!outcome.success);
        assert!(outcome.stderr.contains("timeout"), "{}", outcome.stderr);
    }

    #[tokio::test]
    async fn output_is_capped_keeping_the_head_and_noting_truncation() {
        let executor = ProcessExecutor::new().max_output_bytes(1024);
        // ~590 KB of output: the process would block on a full pipe if the rest were not drained.
        let outcome = executor.run(&cmd("seq", &["1", "100000"])).await.unwrap();
        assert!(outcome.success, "{outcome:?}");
        let full: String = (1..=100_000).map(|n: u32| format!("{n}\n")).collect();
        let head = &full[..1024];
        let separator = if head.ends_with('\n') { "" } else { "\n" };
        assert_eq!(
            outcome.stdout,
            format!(
                "{head}{separator}[selfheal: output truncated: {} more bytes]",
                full.len() - 1024
            )
        );
        assert_eq!(outcome.stderr, "");
    }

    #[test]
    fn truncation_never_splits_a_utf8_character() {
        let mut capture = Capture::new(4);
        capture.head.extend_from_slice("abc\u{e9}".as_bytes()); // 'é' is two bytes: one fits
        capture.head.truncate(4);
        capture.discarded = 1;
        assert_eq!(
            capture.into_string(),
            "abc\n[selfheal: output truncated: 2 more bytes]"
        );
    }

    #[test]
    fn environment_keeps_allow_list_drops_secret_names_and_adds_command_env() {
        let host = |name: &str| -> Option<OsString> {
            match name {
                "PATH" => Some("/usr/bin".into()),
                "SELFHEAL_TEST_SECRET_TOKEN" => Some("leak".into()),
                "db_password" => Some("leak".into()),
                "OTHER" => Some("other".into()),
                _ => None,
            }
        };
        let executor = ProcessExecutor::new()
            .allow_env("SELFHEAL_TEST_SECRET_TOKEN")
            .allow_env("db_password")
            .allow_env("OTHER");
        let mut command = cmd("env", &[]);
        command.env = vec![
            ("API_KEY".into(), "explicit".into()),
            ("PATH".into(), "/opt/bin".into()),
        ];
        let env = executor.environment(&command, host);
        let env: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect();
        assert_eq!(
            env,
            vec![
                ("OTHER".to_owned(), "other".to_owned()),
                ("API_KEY".to_owned(), "explicit".to_owned()),
                ("PATH".to_owned(), "/opt/bin".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn environment_of_a_real_process_is_scrubbed() {
        // cargo sets CARGO_PKG_NAME for the test process: a real host variable that is
        // not on the default allow-list.
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let outcome = ProcessExecutor::new().run(&cmd("env", &[])).await.unwrap();
        let names: Vec<&str> = outcome
            .stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(n, _)| n)
            .collect();
        assert!(names.contains(&"PATH"), "{names:?}");
        assert!(!names.contains(&"CARGO_PKG_NAME"), "{names:?}");
        assert!(
            names.iter().all(|n| DEFAULT_ENV_ALLOW.contains(n)),
            "{names:?}"
        );
    }

    /// Re-runs this test binary with `SELFHEAL_TEST_SECRET_TOKEN` set in its environment
    /// (setting it in this process would need `unsafe`), running only
    /// [`secret_probe`], which checks that the variable never reaches a command.
    #[tokio::test]
    async fn secret_named_host_variables_never_reach_a_real_process() {
        let output = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "executor::process::tests::secret_probe",
                "--test-threads=1",
            ])
            .env("SELFHEAL_TEST_SECRET_TOKEN", "leaked-value")
            .env(PROBE_FLAG, "1")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "probe failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("1 passed"),
            "the probe did not run:\n{stdout}"
        );
    }

    const PROBE_FLAG: &str = "SELFHEAL_SECRET_PROBE";

    /// The child half of the test above; does nothing when run on its own.
    #[tokio::test]
    async fn secret_probe() {
        if std::env::var_os(PROBE_FLAG).is_none() {
            return;
        }
        assert_eq!(
            std::env::var("SELFHEAL_TEST_SECRET_TOKEN").as_deref(),
            Ok("leaked-value")
        );
        let executor = ProcessExecutor::new().allow_env("SELFHEAL_TEST_SECRET_TOKEN");
        let mut command = cmd("env", &[]);
        command.env.push(("MY_API_KEY".into(), "explicit".into()));
        let outcome = executor.run(&command).await.unwrap();
        assert!(
            !outcome.stdout.contains("SELFHEAL_TEST_SECRET_TOKEN"),
            "{}",
            outcome.stdout
        );
        assert!(
            !outcome.stdout.contains("leaked-value"),
            "{}",
            outcome.stdout
        );
        assert!(
            outcome.stdout.lines().any(|l| l.starts_with("PATH=")),
            "{}",
            outcome.stdout
        );
        assert!(
            outcome.stdout.lines().any(|l| l == "MY_API_KEY=explicit"),
            "{}",
            outcome.stdout
        );
    }

    #[test]
    fn durations_are_formatted_for_humans() {
        assert_eq!(format_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    }
}
