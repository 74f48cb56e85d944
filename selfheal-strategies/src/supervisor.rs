//! [`ChildSupervisor`]: owns one child process, streams its output, restarts it.

use std::fmt;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use selfheal_core::{Command, Error, ErrorKind, Executor, Result};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::executor::{ProcessExecutor, format_duration, spawn_error};

/// How long a respawn may take after the old process is gone, on top of the respawn delay.
const RESPAWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGKILLed process may take to be reaped before shutdown gives up waiting.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Owns one child process started from an argument vector, streams its stdout and
/// stderr lines to the host, and restarts it.
///
/// - **Supervision**: whenever the child exits (it crashed, was killed by
///   [`restart`](Self::restart), or by anyone else) it is respawned with the same
///   argument vector and environment, no sooner than the respawn delay (default 1 s)
///   after the previous spawn, so a crash loop costs at most one spawn per delay. A
///   respawn that fails is logged and retried after the delay. Only
///   [`shutdown`](Self::shutdown) (or dropping the supervisor) stops it.
/// - **Output**: every line the child writes to stdout or stderr arrives on the
///   [`mpsc::Receiver<String>`] returned by [`ChildSupervisorBuilder::spawn`], from
///   the first child and every respawned one, in order per stream. Lines are capped
///   (default 8 KiB, then `… [truncated]`), invalid UTF-8 is replaced, and when the
///   receiver is full a line is counted in [`dropped_lines`](Self::dropped_lines)
///   instead of blocking the child. The channel closes after shutdown, once the last
///   child's pipes are closed.
/// - **Restart**: `kill -TERM <pid>` as an argument vector through an [`Executor`]
///   (so a healer's restart is a real, recorded command), then up to the grace period
///   (default 10 s) for the child to exit, then SIGKILL; the supervision loop respawns it.
/// - **Environment**: the child inherits the host's environment plus the variables set
///   with [`ChildSupervisorBuilder::env`]: it is the host's own service and usually
///   needs its configuration. [`ChildSupervisorBuilder::clear_env`] starts it from an
///   empty one instead.
/// - **Drop** kills the child (SIGKILL) without waiting; prefer `shutdown`.
///
/// ```
/// use selfheal_strategies::ChildSupervisor;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
/// let (supervisor, mut lines) =
///     ChildSupervisor::builder("sh", ["-c", "echo ready; exec sleep 30"]).spawn()?;
/// assert_eq!(lines.recv().await.as_deref(), Some("ready"));
/// let first = supervisor.pid();
///
/// let second = supervisor.restart().await?;
/// assert_ne!(Some(second), first);
/// assert_eq!(supervisor.restarts(), 1);
/// assert_eq!(lines.recv().await.as_deref(), Some("ready"));
///
/// supervisor.shutdown().await?;
/// assert_eq!(supervisor.pid(), None);
/// # Ok(()) }
/// ```
pub struct ChildSupervisor {
    command: Command,
    grace: Duration,
    respawn_delay: Duration,
    executor: Arc<dyn Executor>,
    state: watch::Receiver<ChildState>,
    control: mpsc::UnboundedSender<Control>,
    stop: CancellationToken,
    monitor: Mutex<Option<JoinHandle<()>>>,
    dropped_lines: Arc<AtomicU64>,
}

/// The supervised child as the supervision loop last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChildState {
    /// How many children were spawned so far (1 for the first).
    pub(crate) generation: u64,
    /// The running child's pid; `None` between an exit and the respawn, and after shutdown.
    pub(crate) pid: Option<u32>,
}

/// A message to the supervision loop.
#[derive(Debug)]
enum Control {
    /// SIGKILL the child of this generation (any generation when `None`).
    Kill { generation: Option<u64> },
}

/// How a restart went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Respawned {
    /// The new child's pid.
    pub(crate) pid: u32,
    /// Whether the old child ignored SIGTERM for the grace period and was SIGKILLed.
    pub(crate) forced: bool,
}

impl ChildSupervisor {
    /// Starts building a supervisor of `program` with `args`.
    pub fn builder<I, S>(program: impl Into<String>, args: I) -> ChildSupervisorBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ChildSupervisorBuilder {
            command: Command::new(program, args),
            clear_env: false,
            grace: ChildSupervisorBuilder::DEFAULT_GRACE_PERIOD,
            respawn_delay: ChildSupervisorBuilder::DEFAULT_RESPAWN_DELAY,
            line_capacity: ChildSupervisorBuilder::DEFAULT_LINE_CAPACITY,
            max_line_bytes: ChildSupervisorBuilder::DEFAULT_MAX_LINE_BYTES,
            executor: None,
        }
    }

    /// The running child's pid; `None` between an exit and its respawn, and after shutdown.
    pub fn pid(&self) -> Option<u32> {
        self.state().pid
    }

    /// How many times the child was respawned (by a restart or after it exited).
    pub fn restarts(&self) -> u64 {
        self.state().generation.saturating_sub(1)
    }

    /// The argument vector (and extra environment) every child is spawned with.
    pub fn command(&self) -> &Command {
        &self.command
    }

    /// The grace period between SIGTERM and SIGKILL.
    pub fn grace_period(&self) -> Duration {
        self.grace
    }

    /// Output lines dropped because the receiver was full.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines.load(Ordering::Relaxed)
    }

    /// `kill -TERM <pid>` for the running child, as an argument vector; `None` when no
    /// child is running.
    pub fn term_command(&self) -> Option<Command> {
        self.pid().map(term_command)
    }

    /// Restarts the child through the supervisor's own executor (a [`ProcessExecutor`]
    /// unless [`ChildSupervisorBuilder::executor`] set another) and returns the new pid.
    ///
    /// See [`restart_with`](Self::restart_with).
    pub async fn restart(&self) -> Result<u32> {
        let executor = Arc::clone(&self.executor);
        self.restart_with(executor.as_ref()).await
    }

    /// Restarts the child: runs `kill -TERM <pid>` through `executor`, waits up to the
    /// grace period for it to exit, SIGKILLs it if it has not, and waits for the respawn.
    /// Returns the new pid. When no child is running (a respawn is pending) it waits for
    /// that respawn instead.
    ///
    /// Errors: [`ErrorKind::Timeout`] when no new child came up in time (the respawn
    /// keeps failing: see the logs), [`ErrorKind::Closed`] after shutdown.
    pub async fn restart_with(&self, executor: &dyn Executor) -> Result<u32> {
        if self.stop.is_cancelled() {
            return Err(closed());
        }
        let before = self.state();
        if let Some(pid) = before.pid {
            let command = term_command(pid);
            match executor.run(&command).await {
                Ok(outcome) if outcome.success => {
                    debug!(pid, "sent SIGTERM to the supervised process");
                }
                Ok(outcome) => warn!(
                    pid,
                    exit_code = ?outcome.exit_code,
                    stderr = %outcome.stderr.trim_end(),
                    "`kill -TERM` failed; SIGKILL follows after the grace period if the process is still running"
                ),
                Err(e) => warn!(
                    pid,
                    error = %e,
                    "could not run `kill -TERM`; SIGKILL follows after the grace period"
                ),
            }
        }
        Ok(self.await_restart(before.generation).await?.pid)
    }

    /// Stops the child for good: no more respawns, SIGTERM (through the supervisor's
    /// executor), up to the grace period for it to exit, then SIGKILL. Returns once the
    /// child is gone. Calling it again does nothing.
    pub async fn shutdown(&self) -> Result<()> {
        self.stop.cancel();
        let handle = self
            .monitor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut handle) = handle else {
            return Ok(());
        };
        if let Some(pid) = self.pid() {
            info!(pid, "shutting down the supervised process");
            match self.executor.run(&term_command(pid)).await {
                Ok(outcome) if outcome.success => {}
                Ok(outcome) => {
                    warn!(pid, stderr = %outcome.stderr.trim_end(), "`kill -TERM` failed during shutdown");
                }
                Err(e) => warn!(pid, error = %e, "could not run `kill -TERM` during shutdown"),
            }
        }
        let joined = match tokio::time::timeout(self.grace, &mut handle).await {
            Ok(joined) => joined,
            Err(_) => {
                warn!(
                    grace = %format_duration(self.grace),
                    "supervised process ignored SIGTERM for the grace period; sending SIGKILL"
                );
                // An error means the loop has ended already; the join below reports it.
                let _ = self.control.send(Control::Kill { generation: None });
                tokio::time::timeout(KILL_TIMEOUT, handle).await.map_err(|_| {
                    Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "the supervised process `{}` was not reaped within {} of SIGKILL; check for a process stuck in the kernel (state D)",
                            self.command.program,
                            format_duration(KILL_TIMEOUT)
                        ),
                    )
                })?
            }
        };
        joined.map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                "the supervision task ended abnormally; this is a bug in selfheal",
            )
            .with_source(e)
        })
    }

    /// The child as last reported.
    pub(crate) fn state(&self) -> ChildState {
        *self.state.borrow()
    }

    /// Waits for the child of `generation` to be replaced: up to the grace period for it
    /// to exit, then SIGKILL, then up to the respawn delay plus [`RESPAWN_TIMEOUT`] for
    /// the new child.
    pub(crate) async fn await_restart(&self, generation: u64) -> Result<Respawned> {
        let mut state = self.state.clone();
        let exited = tokio::time::timeout(
            self.grace,
            wait_state(&mut state, |s| {
                s.generation != generation || s.pid.is_none()
            }),
        )
        .await;
        let forced = match exited {
            Ok(Ok(_)) => false,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                warn!(
                    grace = %format_duration(self.grace),
                    "supervised process did not exit on SIGTERM within the grace period; sending SIGKILL"
                );
                self.control
                    .send(Control::Kill {
                        generation: Some(generation),
                    })
                    .map_err(|_| closed())?;
                true
            }
        };
        let wait = self.respawn_delay + RESPAWN_TIMEOUT;
        let respawned = tokio::time::timeout(
            wait,
            wait_state(&mut state, |s| {
                s.generation != generation && s.pid.is_some()
            }),
        )
        .await;
        match respawned {
            Ok(Ok(ChildState { pid: Some(pid), .. })) => Ok(Respawned { pid, forced }),
            Ok(Ok(_)) => Err(Error::new(
                ErrorKind::Internal,
                "the supervisor reported a respawn without a pid; this is a bug in selfheal",
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "`{}` was not respawned within {}; check the supervisor's logs for why it cannot start",
                    self.command.program,
                    format_duration(wait)
                ),
            )),
        }
    }
}

impl fmt::Debug for ChildSupervisor {
    // The command's environment may hold secrets: show the argument vector only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSupervisor")
            .field("command", &self.command.preview())
            .field("pid", &self.pid())
            .field("restarts", &self.restarts())
            .field("grace", &self.grace)
            .field("respawn_delay", &self.respawn_delay)
            .field("executor", &self.executor.name())
            .finish()
    }
}

impl Drop for ChildSupervisor {
    fn drop(&mut self) {
        self.stop.cancel();
        let handle = self
            .monitor
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            // Dropping the supervision task drops the child, and `kill_on_drop` kills it.
            handle.abort();
        }
    }
}

/// Configures and spawns a [`ChildSupervisor`]; made by [`ChildSupervisor::builder`].
pub struct ChildSupervisorBuilder {
    command: Command,
    clear_env: bool,
    grace: Duration,
    respawn_delay: Duration,
    line_capacity: usize,
    max_line_bytes: usize,
    executor: Option<Arc<dyn Executor>>,
}

impl ChildSupervisorBuilder {
    /// Default time between SIGTERM and SIGKILL.
    pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
    /// Default minimum time between two spawns.
    pub const DEFAULT_RESPAWN_DELAY: Duration = Duration::from_secs(1);
    /// Default number of lines the receiver buffers.
    pub const DEFAULT_LINE_CAPACITY: usize = 1024;
    /// Default cap on one line's length, in bytes.
    pub const DEFAULT_MAX_LINE_BYTES: usize = 8 * 1024;

    /// Sets an environment variable for the child (on top of the inherited environment,
    /// unless [`clear_env`](Self::clear_env)).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.command.env.push((name.into(), value.into()));
        self
    }

    /// Starts the child from an empty environment plus the variables set with
    /// [`env`](Self::env), instead of inheriting the host's.
    pub fn clear_env(mut self) -> Self {
        self.clear_env = true;
        self
    }

    /// Time between SIGTERM and SIGKILL on restart and shutdown (default 10 s).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Minimum time between two spawns (default 1 s): bounds a crash loop.
    pub fn respawn_delay(mut self, delay: Duration) -> Self {
        self.respawn_delay = delay;
        self
    }

    /// How many output lines the receiver buffers before new ones are dropped (default 1024).
    pub fn line_capacity(mut self, capacity: usize) -> Self {
        self.line_capacity = capacity;
        self
    }

    /// Cap on one output line, in bytes (default 8 KiB); the rest of the line is dropped.
    pub fn max_line_bytes(mut self, max: usize) -> Self {
        self.max_line_bytes = max;
        self
    }

    /// The executor that sends `kill -TERM` on [`ChildSupervisor::restart`] and
    /// [`ChildSupervisor::shutdown`] (default: a [`ProcessExecutor`]).
    pub fn executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executor = Some(executor);
        self
    }

    /// Spawns the first child and the supervision task. Returns the supervisor and the
    /// receiver of the children's output lines.
    ///
    /// Errors: [`ErrorKind::InvalidInput`] for an empty program, a zero line capacity or
    /// line cap, or when called outside a Tokio runtime; [`ErrorKind::Execution`] when
    /// the program cannot be started.
    pub fn spawn(self) -> Result<(ChildSupervisor, mpsc::Receiver<String>)> {
        if self.command.program.is_empty() {
            return Err(Error::invalid(
                "the supervised command has an empty program; give the program as the first element of the argument vector",
            ));
        }
        if self.line_capacity == 0 || self.max_line_bytes == 0 {
            return Err(Error::invalid(
                "line_capacity and max_line_bytes must be at least 1",
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::invalid(
                "ChildSupervisor spawns tasks: call spawn() inside a Tokio runtime",
            ));
        }

        let (lines_tx, lines_rx) = mpsc::channel(self.line_capacity);
        let dropped_lines = Arc::new(AtomicU64::new(0));
        let spawner = Spawner {
            command: self.command.clone(),
            clear_env: self.clear_env,
            lines: lines_tx,
            dropped: Arc::clone(&dropped_lines),
            max_line_bytes: self.max_line_bytes,
        };
        let child = spawner.spawn()?;
        let pid = child.id();
        info!(pid, command = %self.command.preview(), "supervised process started");

        let (state_tx, state_rx) = watch::channel(ChildState { generation: 1, pid });
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let monitor = tokio::spawn(supervise(
            spawner,
            child,
            state_tx,
            control_rx,
            stop.clone(),
            self.respawn_delay,
        ));
        let supervisor = ChildSupervisor {
            command: self.command,
            grace: self.grace,
            respawn_delay: self.respawn_delay,
            executor: self
                .executor
                .unwrap_or_else(|| Arc::new(ProcessExecutor::new())),
            state: state_rx,
            control: control_tx,
            stop,
            monitor: Mutex::new(Some(monitor)),
            dropped_lines,
        };
        Ok((supervisor, lines_rx))
    }
}

impl fmt::Debug for ChildSupervisorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSupervisorBuilder")
            .field("command", &self.command.preview())
            .field("clear_env", &self.clear_env)
            .field("grace", &self.grace)
            .field("respawn_delay", &self.respawn_delay)
            .field("line_capacity", &self.line_capacity)
            .field("max_line_bytes", &self.max_line_bytes)
            .finish_non_exhaustive()
    }
}

/// `kill -TERM <pid>`.
fn term_command(pid: u32) -> Command {
    Command::new("kill", ["-TERM".to_owned(), pid.to_string()]).timeout(Duration::from_secs(5))
}

fn closed() -> Error {
    Error::new(
        ErrorKind::Closed,
        "the child supervisor is shut down; spawn a new one",
    )
}

/// Waits until the state satisfies `ready`, copying it out (a watch `Ref` must not be
/// held across an await).
async fn wait_state(
    state: &mut watch::Receiver<ChildState>,
    ready: impl FnMut(&ChildState) -> bool,
) -> Result<ChildState> {
    state
        .wait_for(ready)
        .await
        .map(|s| *s)
        .map_err(|_| closed())
}

/// Spawns children with their output forwarded.
struct Spawner {
    command: Command,
    clear_env: bool,
    lines: mpsc::Sender<String>,
    dropped: Arc<AtomicU64>,
    max_line_bytes: usize,
}

impl Spawner {
    fn spawn(&self) -> Result<Child> {
        let mut process = tokio::process::Command::new(&self.command.program);
        process.args(&self.command.args);
        if self.clear_env {
            process.env_clear();
        }
        process
            .envs(self.command.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = process
            .spawn()
            .map_err(|e| spawn_error(&self.command.program, e))?;
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(forward_lines(
                stdout,
                self.lines.clone(),
                Arc::clone(&self.dropped),
                self.max_line_bytes,
            ));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward_lines(
                stderr,
                self.lines.clone(),
                Arc::clone(&self.dropped),
                self.max_line_bytes,
            ));
        }
        Ok(child)
    }
}

/// The supervision loop: waits for the child, respawns it, obeys kill requests, stops
/// when `stop` is cancelled (or the supervisor is gone).
async fn supervise(
    spawner: Spawner,
    mut child: Child,
    state: watch::Sender<ChildState>,
    mut control: mpsc::UnboundedReceiver<Control>,
    stop: CancellationToken,
    respawn_delay: Duration,
) {
    let mut generation = 1u64;
    let mut spawned_at = Instant::now();
    loop {
        let pid = child.id();
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                message = control.recv() => match message {
                    Some(Control::Kill { generation: g }) => {
                        if g.is_none_or(|g| g == generation) {
                            warn!(pid, "sending SIGKILL to the supervised process");
                            if let Err(e) = child.start_kill() {
                                warn!(pid, error = %e, "could not SIGKILL the supervised process");
                            }
                        }
                    }
                    None => {
                        // The supervisor is gone without a shutdown: kill and stop.
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        state.send_modify(|s| s.pid = None);
                        return;
                    }
                },
            }
        };
        state.send_modify(|s| s.pid = None);
        if stop.is_cancelled() {
            info!(pid, status = ?status, "supervised process stopped");
            return;
        }
        match status {
            Ok(status) => warn!(pid, %status, "supervised process exited; respawning"),
            Err(e) => error!(pid, error = %e, "lost track of the supervised process; respawning"),
        }
        child = loop {
            tokio::select! {
                () = tokio::time::sleep_until(spawned_at + respawn_delay) => {}
                () = stop.cancelled() => return,
            }
            spawned_at = Instant::now();
            match spawner.spawn() {
                Ok(child) => break child,
                Err(e) => error!(
                    error = %e,
                    retry_in = %format_duration(respawn_delay),
                    "could not respawn the supervised process"
                ),
            }
        };
        generation += 1;
        let pid = child.id();
        state.send_modify(|s| {
            s.generation = generation;
            s.pid = pid;
        });
        info!(
            pid,
            restarts = generation - 1,
            "supervised process respawned"
        );
    }
}

/// Forwards `reader`'s lines to `lines` until end of file: each capped at `max_bytes`,
/// `\r\n` or `\n` stripped, invalid UTF-8 replaced. Never blocks on a full channel: the
/// line is counted in `dropped` instead. Keeps draining after the receiver is gone so
/// the child never blocks on a full pipe.
pub(crate) async fn forward_lines<R: AsyncRead + Unpin>(
    reader: R,
    lines: mpsc::Sender<String>,
    dropped: Arc<AtomicU64>,
    max_bytes: usize,
) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    let mut truncated = false;
    let emit = |line: &mut Vec<u8>, truncated: &mut bool| {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let mut text = String::from_utf8_lossy(line).into_owned();
        if *truncated {
            text.push_str(" … [truncated]");
        }
        line.clear();
        *truncated = false;
        match lines.try_send(text) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    };
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(e) => {
                debug!(error = %e, "stopped reading the supervised process's output");
                break;
            }
        };
        if buf.is_empty() {
            if !line.is_empty() || truncated {
                emit(&mut line, &mut truncated);
            }
            break;
        }
        let newline = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        let room = max_bytes.saturating_sub(line.len());
        if chunk.len() > room {
            line.extend_from_slice(&chunk[..room]);
            truncated = true;
        } else {
            line.extend_from_slice(chunk);
        }
        let consumed = newline.map_or(buf.len(), |i| i + 1);
        reader.consume(consumed);
        if newline.is_some() {
            emit(&mut line, &mut truncated);
        }
    }
}

#[cfg(test)]
mod tests {
    use selfheal_core::ErrorKind;

    use super::*;
    use crate::DryRunExecutor;

    /// Receives the next line, failing the test if none comes within 10 s.
    async fn next_line(lines: &mut mpsc::Receiver<String>) -> String {
        tokio::time::timeout(Duration::from_secs(10), lines.recv())
            .await
            .expect("a line within 10 s")
            .expect("channel open")
    }

    fn alive(pid: u32) -> bool {
        // A reaped process has no /proc entry; a zombie still has one but state `Z`.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(") ")
                .next()
                .is_some_and(|s| !s.starts_with('Z'))
        })
    }

    #[tokio::test]
    async fn streams_lines_and_restart_respawns_with_a_new_pid() {
        let (supervisor, mut lines) = ChildSupervisor::builder(
            "sh",
            ["-c", "echo \"out $$\"; echo \"err $$\" >&2; exec sleep 30"],
        )
        .spawn()
        .unwrap();
        let first = supervisor.pid().expect("running");
        let mut got = vec![next_line(&mut lines).await, next_line(&mut lines).await];
        got.sort();
        assert_eq!(got, vec![format!("err {first}"), format!("out {first}")]);
        assert_eq!(supervisor.restarts(), 0);

        let second = supervisor.restart().await.unwrap();
        assert_ne!(second, first);
        assert_eq!(supervisor.pid(), Some(second));
        assert_eq!(supervisor.restarts(), 1);
        assert!(!alive(first), "old child {first} still running");
        let mut got = vec![next_line(&mut lines).await, next_line(&mut lines).await];
        got.sort();
        assert_eq!(got, vec![format!("err {second}"), format!("out {second}")]);

        supervisor.shutdown().await.unwrap();
        assert!(!alive(second));
    }

    #[tokio::test]
    async fn restart_sigkills_a_child_that_ignores_sigterm_after_the_grace_period() {
        // An ignored signal stays ignored across exec: `sleep` ignores SIGTERM.
        let (supervisor, mut lines) =
            ChildSupervisor::builder("sh", ["-c", "trap '' TERM; echo ready; exec sleep 30"])
                .grace_period(Duration::from_millis(300))
                .respawn_delay(Duration::ZERO)
                .spawn()
                .unwrap();
        assert_eq!(next_line(&mut lines).await, "ready");
        let first = supervisor.pid().unwrap();

        let started = std::time::Instant::now();
        let respawned = supervisor.await_restart_after_term(first).await;
        let elapsed = started.elapsed();
        assert!(respawned.forced, "the child should have needed SIGKILL");
        assert_ne!(respawned.pid, first);
        assert!(
            elapsed >= Duration::from_millis(300),
            "escalated after {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
        assert!(!alive(first));
        assert_eq!(next_line(&mut lines).await, "ready");
        supervisor.shutdown().await.unwrap();
    }

    impl ChildSupervisor {
        /// `restart()`, but reporting whether SIGKILL was needed.
        async fn await_restart_after_term(&self, pid: u32) -> Respawned {
            let generation = self.state().generation;
            let outcome = ProcessExecutor::new()
                .run(&term_command(pid))
                .await
                .unwrap();
            assert!(outcome.success, "{outcome:?}");
            self.await_restart(generation).await.unwrap()
        }
    }

    #[tokio::test]
    async fn a_child_that_exits_is_respawned_and_keeps_streaming() {
        let (supervisor, mut lines) = ChildSupervisor::builder("sh", ["-c", "echo up $$; exit 1"])
            .respawn_delay(Duration::from_millis(20))
            .spawn()
            .unwrap();
        let mut pids = Vec::new();
        for _ in 0..3 {
            let line = next_line(&mut lines).await;
            let pid = line.strip_prefix("up ").expect("`up <pid>`").to_owned();
            pids.push(pid);
        }
        pids.dedup();
        assert_eq!(pids.len(), 3, "three different children: {pids:?}");
        assert!(supervisor.restarts() >= 2);
        supervisor.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_stops_for_good_and_closes_the_line_channel() {
        let (supervisor, mut lines) =
            ChildSupervisor::builder("sh", ["-c", "echo ready; exec sleep 30"])
                .respawn_delay(Duration::ZERO)
                .spawn()
                .unwrap();
        assert_eq!(next_line(&mut lines).await, "ready");
        let pid = supervisor.pid().unwrap();

        supervisor.shutdown().await.unwrap();
        assert_eq!(supervisor.pid(), None);
        assert_eq!(supervisor.restarts(), 0, "a stopped child is not respawned");
        assert!(!alive(pid));
        let closed = tokio::time::timeout(Duration::from_secs(5), lines.recv()).await;
        assert_eq!(closed, Ok(None), "no new child writes to the channel");
        supervisor.shutdown().await.unwrap();

        let err = supervisor.restart().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    }

    #[tokio::test]
    async fn drop_kills_the_child() {
        let (supervisor, mut lines) =
            ChildSupervisor::builder("sh", ["-c", "echo ready; exec sleep 30"])
                .spawn()
                .unwrap();
        assert_eq!(next_line(&mut lines).await, "ready");
        drop(supervisor);
        // The channel closes only when the child's pipes close, i.e. when it died.
        let closed = tokio::time::timeout(Duration::from_secs(5), lines.recv()).await;
        assert_eq!(closed, Ok(None));
    }

    #[tokio::test]
    async fn restart_runs_kill_through_the_given_executor() {
        let (supervisor, _lines) = ChildSupervisor::builder("sleep", ["30"])
            .grace_period(Duration::from_millis(100))
            .respawn_delay(Duration::ZERO)
            .spawn()
            .unwrap();
        let pid = supervisor.pid().unwrap();
        let executor = DryRunExecutor::new();
        // The dry run sends nothing, so the grace period passes and SIGKILL restarts it.
        let new_pid = supervisor.restart_with(&executor).await.unwrap();
        assert_ne!(new_pid, pid);
        assert_eq!(executor.recorded(), vec![term_command(pid)]);
        assert_eq!(
            executor.recorded()[0].preview(),
            format!("kill -TERM {pid}")
        );
        supervisor.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn env_is_inherited_plus_extra_or_cleared() {
        let (inherited, mut lines) = ChildSupervisor::builder(
            "sh",
            [
                "-c",
                "echo \"$SELFHEAL_X ${PATH:+has-path}\"; exec sleep 30",
            ],
        )
        .env("SELFHEAL_X", "x1")
        .spawn()
        .unwrap();
        assert_eq!(next_line(&mut lines).await, "x1 has-path");
        inherited.shutdown().await.unwrap();

        let (cleared, mut lines) = ChildSupervisor::builder(
            "/bin/sh",
            [
                "-c",
                "echo \"$SELFHEAL_X ${CARGO_PKG_NAME:-none}\"; exec /bin/sleep 30",
            ],
        )
        .env("SELFHEAL_X", "x2")
        .clear_env()
        .spawn()
        .unwrap();
        assert_eq!(next_line(&mut lines).await, "x2 none");
        cleared.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_program_that_cannot_start_is_an_execution_error() {
        let err = ChildSupervisor::builder("selfheal-no-such-service", ["--serve"])
            .spawn()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Execution);
        assert!(
            err.message().contains("`selfheal-no-such-service`"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn long_lines_are_capped_and_a_full_channel_drops_instead_of_blocking() {
        let (tx, mut rx) = mpsc::channel(2);
        let dropped = Arc::new(AtomicU64::new(0));
        let input: &[u8] = b"short\r\n0123456789abcdef\n\xffbad\nfourth\nlast-without-newline";
        forward_lines(input, tx, Arc::clone(&dropped), 10).await;
        assert_eq!(rx.recv().await.as_deref(), Some("short"));
        assert_eq!(rx.recv().await.as_deref(), Some("0123456789 … [truncated]"));
        assert_eq!(rx.recv().await, None, "the rest did not fit");
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn invalid_utf8_is_replaced_and_the_last_line_needs_no_newline() {
        let (tx, mut rx) = mpsc::channel(8);
        let input: &[u8] = b"\xffbad\nlast";
        forward_lines(input, tx, Arc::new(AtomicU64::new(0)), 100).await;
        assert_eq!(rx.recv().await.as_deref(), Some("\u{fffd}bad"));
        assert_eq!(rx.recv().await.as_deref(), Some("last"));
        assert_eq!(rx.recv().await, None);
    }

    #[test]
    fn spawn_outside_a_runtime_is_refused() {
        let err = ChildSupervisor::builder("true", Vec::<String>::new())
            .spawn()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("Tokio runtime"), "{err}");
    }
}
