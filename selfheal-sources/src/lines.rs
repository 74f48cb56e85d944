//! Log lines to [`Signal`]s: JSON lines, logfmt, and plain text with a level word,
//! with stack traces that span several lines joined into the signal's `stack`.
//!
//! - **JSON** (`{"level":"error","msg":"…","error":"…"}`): the level from `level`, `lvl`,
//!   `severity`, `log.level` (nested `log.level` too), `levelname`, `@l`, pino's numbers
//!   (`"level":50`) or journald's `PRIORITY`; the message from `msg`, `message`,
//!   `fields.message` (tracing-subscriber's JSON format), `@message`, `@m`, `event`, …;
//!   the logger from `target`, `logger`, `logger_name`, `module`, …; error text from
//!   `error`, `err`, `error.message`, `exception`, `exc_info`, …; the stack from
//!   `stack`, `stack_trace`, `stacktrace`, `exception.stacktrace`, `error.stack`,
//!   `backtrace`, …. Nested objects are flattened to dotted keys.
//! - **logfmt** (`level=error msg="query failed" err="pool timed out"`): the same keys.
//! - **Plain text**: a level word among the first tokens (`ERROR`, `WARN`, `WARNING`,
//!   `FATAL`, `CRITICAL`, …; upper case, or any case in brackets as in `[error]`; glog's
//!   `E1204 …`), after whatever timestamp, thread or host comes first. What follows the
//!   level is the message, less a leading logger: tracing-subscriber's default format
//!   `2026-12-04T10:00:00.123Z ERROR orders: query failed: pool timed out` gives the
//!   logger `orders` and the message `query failed: pool timed out`. When the fields
//!   that format writes after the message hold an error (`query failed error=pool timed
//!   out …`), they become signal fields and the error's text joins the message
//!   (`query failed: pool timed out …`), as with tracing's own events. ANSI colours are
//!   removed.
//!
//! A line whose level is below WARN (INFO, DEBUG, …), and a line with no level at all,
//! is not a signal; telling so allocates nothing. The error text of a structured line
//! is appended to the message (`query failed: pool timed out …`) unless the message
//! holds it already, as [`HealerLayer`](selfheal_core::HealerLayer) does for tracing's
//! error fields, so patterns match it. Structured keys become signal fields (at most
//! [`MAX_FIELDS`], each cut to
//! [`MAX_FIELD_BYTES`]); the logger is kept in the field
//! [`LOGGER_FIELD`]. The target is the value of the configured key
//! ([`LineParser::target_key`]), else the parser's default target. The timestamp is when
//! the line was read, not the one the line carries (that one stays a field).
//!
//! [`Lines`] joins traces: you push lines in, it hands back finished signals. A
//! signal waits for the lines after it until one is not part of a trace, or until you
//! call [`Lines::flush`] (at the end of the input, or when it has been idle a moment).
//! A trace with no log line before it (a Python traceback, a Rust panic, a Go panic, a
//! bare `java.lang.…Exception: …`) is a signal of its own, with the exception or panic
//! as its message. When a log line heads the trace, the exception line that says what
//! was thrown joins the line's message (`request failed: java.sql.…Exception: …`)
//! unless the message holds it already, and the root cause (a JVM trace's last
//! `Caused by:`, else its only exception; a Python traceback's first) goes to the
//! fields [`ROOT_CAUSE_TYPE_FIELD`] and [`ROOT_CAUSE_MESSAGE_FIELD`], an error-bearing
//! field that patterns match. A trace is cut at [`LineParser::max_stack_lines`] lines or
//! [`LineParser::max_stack_bytes`] bytes: the signal is handed back then, with the field
//! `stack.truncated` set, and the rest of that trace is skipped.
//!
//! [`LineChannel`] is a source that reads lines from a channel (a child process's
//! output, a socket) this way.
//!
//! ```
//! use selfheal_sources::lines::{LineParser, Lines};
//!
//! let mut lines = Lines::new(LineParser::new("orders"));
//! let mut signals = Vec::new();
//! for line in [
//!     "2026-12-04T10:00:00.123Z  INFO orders: listening on 127.0.0.1:8080",
//!     "2026-12-04T10:00:01.456Z ERROR orders: query failed: pool timed out while waiting for an open connection",
//!     r#"{"level":"error","msg":"payment failed","error":"connection refused","target":"payments"}"#,
//!     "10:00:02.000 [main] ERROR com.acme.Orders - request failed",
//!     "java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request timed out after 30000ms.",
//!     "\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:696)",
//!     "\tat com.acme.Orders.load(Orders.java:42)",
//! ] {
//!     signals.extend(lines.push(line));
//! }
//! signals.extend(lines.flush());
//!
//! assert_eq!(signals.len(), 3);
//! assert_eq!(signals[0].message, "query failed: pool timed out while waiting for an open connection");
//! assert_eq!(signals[0].target, "orders");
//! assert_eq!(signals[1].message, "payment failed: connection refused");
//! assert_eq!(signals[1].fields["logger"], "payments");
//! // What was thrown joins the log line's message; the root cause is a field.
//! assert_eq!(
//!     signals[2].message,
//!     "request failed: java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request timed out after 30000ms."
//! );
//! assert_eq!(signals[2].fields["exception.type"], "java.sql.SQLTransientConnectionException");
//! assert!(signals[2].stack.as_deref().unwrap().contains("at com.acme.Orders.load"));
//! ```

mod channel;
mod fmt_fields;
mod json;
pub(crate) mod level;
mod logfmt;
mod structured;
mod text;
mod trace;

use std::collections::BTreeMap;

use selfheal_core::{Level, MAX_FIELD_BYTES, MAX_FIELDS, MAX_MESSAGE_BYTES, Signal};

pub use channel::{DEFAULT_IDLE_FLUSH, LineChannel};
use level::Seen;
use trace::{Continues, Mode};

/// The signal field that holds the line's logger or module (tracing's target,
/// `logger`, `com.acme.Orders`, …), when it names one.
pub const LOGGER_FIELD: &str = "logger";

/// The signal field set to `"true"` when the signal's stack was cut at its bound.
pub const TRUNCATED_FIELD: &str = "stack.truncated";

/// The signal field that holds the type of a trace's root cause (a JVM trace's last
/// `Caused by:`, else its only exception; a Python traceback's first):
/// `org.postgresql.util.PSQLException`.
pub const ROOT_CAUSE_TYPE_FIELD: &str = "exception.type";

/// The signal field that holds the message of a trace's root cause: `FATAL: sorry,
/// too many clients already`. It is one of the error-bearing fields
/// ([`selfheal_core::ERROR_FIELDS`]), so patterns match it like the message.
pub const ROOT_CAUSE_MESSAGE_FIELD: &str = "exception.message";

/// The default bound on the lines of one trace.
pub const DEFAULT_MAX_STACK_LINES: usize = 512;

/// The default bound on the bytes of one trace (what the matcher reads of a stack).
pub const DEFAULT_MAX_STACK_BYTES: usize = 64 * 1024;

/// Blank lines in a row that end a trace.
const MAX_BLANKS: usize = 2;

/// Reads one log line into a signal. Cheap to clone; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct LineParser {
    default_target: String,
    target_key: Option<String>,
    max_stack_lines: usize,
    max_stack_bytes: usize,
}

impl LineParser {
    /// A parser whose signals are for `default_target` (unless
    /// [`target_key`](Self::target_key) names one).
    pub fn new(default_target: impl Into<String>) -> Self {
        LineParser {
            default_target: default_target.into(),
            target_key: None,
            max_stack_lines: DEFAULT_MAX_STACK_LINES,
            max_stack_bytes: DEFAULT_MAX_STACK_BYTES,
        }
    }

    /// Takes the signal's target from this field of the line when it has one: a JSON
    /// or logfmt key (`service`, `component`, `log.logger`, …), or [`LOGGER_FIELD`]
    /// for the logger any line names (tracing's target in plain text too).
    pub fn target_key(mut self, key: impl Into<String>) -> Self {
        self.target_key = Some(key.into());
        self
    }

    /// The target of signals whose line names none.
    #[cfg_attr(not(feature = "loki"), allow(dead_code))]
    pub(crate) fn default_target(&self) -> &str {
        &self.default_target
    }

    /// Bounds the lines of one trace (default [`DEFAULT_MAX_STACK_LINES`]).
    pub fn max_stack_lines(mut self, lines: usize) -> Self {
        self.max_stack_lines = lines.max(1);
        self
    }

    /// Bounds the bytes of one trace (default [`DEFAULT_MAX_STACK_BYTES`]).
    pub fn max_stack_bytes(mut self, bytes: usize) -> Self {
        self.max_stack_bytes = bytes.max(1);
        self
    }

    /// The signal one line is, without joining traces; `None` below WARN or without
    /// a level.
    pub fn parse(&self, line: &str) -> Option<Signal> {
        match self.read(line) {
            Read::Signal(signal) => Some(signal),
            Read::Below | Read::Unleveled => None,
        }
    }

    /// What one line is: a signal, a line below WARN, or a line without a level (for
    /// sources that know the level another way, such as Loki's labels).
    pub(crate) fn read(&self, line: &str) -> Read {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim_start();
        if trimmed.starts_with('{') {
            let Some(seen) = json::hint(trimmed) else {
                return Read::Unleveled;
            };
            let Some(level) = seen.level() else {
                return Read::Below;
            };
            return Read::Signal(match json::flatten(trimmed) {
                Some(map) => {
                    let level = structured::level_of(&map)
                        .and_then(Seen::level)
                        .unwrap_or(level);
                    structured::signal(self, map, level, line)
                }
                // Broken JSON (a line cut short) with a level: the line is the message.
                None => self.signal(line.trim(), None, level),
            });
        }
        if logfmt::looks_like(trimmed)
            && let Some(seen) = logfmt::hint(trimmed)
        {
            let Some(level) = seen.level() else {
                return Read::Below;
            };
            return Read::Signal(structured::signal(self, logfmt::map(trimmed), level, line));
        }
        self.parse_text(line)
    }

    fn parse_text(&self, line: &str) -> Read {
        let Some(head) = text::head(line) else {
            return Read::Unleveled;
        };
        if head.seen.level().is_none() {
            return Read::Below;
        }
        let signal = if line.contains('\x1b') {
            let plain = text::strip_ansi(line);
            text::head(&plain).and_then(|head| self.text_signal(&head))
        } else {
            self.text_signal(&head)
        };
        signal.map_or(Read::Unleveled, Read::Signal)
    }

    fn text_signal(&self, head: &text::Head<'_>) -> Option<Signal> {
        let level = head.seen.level()?;
        let (logger, message) = text::logger_and_message(head);
        let message = if message.is_empty() {
            head.rest.trim()
        } else {
            message
        };
        let Some((message, fields)) = fmt_fields::split(message) else {
            return Some(self.signal(message, logger, level));
        };
        let mut signal = self.signal(&message, logger, level);
        for (key, mut value) in fields {
            if signal.fields.len() >= MAX_FIELDS {
                break;
            }
            cut(&mut value, MAX_FIELD_BYTES);
            signal.fields.entry(key).or_insert(value);
        }
        signal.target = self.target_of(&signal.fields);
        Some(signal)
    }

    /// A signal with `message` and, when there is one, the line's logger.
    fn signal(&self, message: &str, logger: Option<&str>, level: Level) -> Signal {
        let mut fields = BTreeMap::new();
        if let Some(logger) = logger {
            fields.insert(LOGGER_FIELD.to_owned(), logger.to_owned());
        }
        let mut signal = Signal::new(self.target_of(&fields), message).level(level);
        signal.fields = fields;
        signal
    }

    /// The target for a line with these fields (cut to [`MAX_FIELD_BYTES`]).
    fn target_of(&self, fields: &BTreeMap<String, String>) -> String {
        let mut target = self
            .target_key
            .as_ref()
            .and_then(|k| fields.get(k))
            .filter(|t| !t.is_empty())
            .unwrap_or(&self.default_target)
            .clone();
        cut(&mut target, MAX_FIELD_BYTES);
        target
    }
}

/// What [`LineParser::read`] made of one line.
#[derive(Debug)]
pub(crate) enum Read {
    /// WARN or worse: a signal.
    Signal(Signal),
    /// A level below WARN (INFO, DEBUG, …).
    Below,
    /// No level the parser knows.
    Unleveled,
}

/// A signal waiting for the lines of its trace.
#[derive(Debug)]
struct Pending {
    signal: Signal,
    stack: String,
    lines: usize,
    blanks: usize,
    mode: Mode,
    /// It opened with the trace itself: its message comes from the trace.
    headerless: bool,
    /// The line carried its own stack (a JSON or logfmt key), whose error text the
    /// message has already.
    own_stack: bool,
}

/// Joins log lines into signals, stack traces and all. See the [module docs](self).
#[derive(Debug)]
pub struct Lines {
    parser: LineParser,
    pending: Option<Pending>,
    /// The rest of a trace that went over its bound, skipped.
    skipping: Option<Mode>,
    truncated: u64,
}

impl Lines {
    /// A joiner reading lines with `parser`.
    pub fn new(parser: LineParser) -> Self {
        Lines {
            parser,
            pending: None,
            skipping: None,
            truncated: 0,
        }
    }

    /// The parser it reads lines with.
    pub fn parser(&self) -> &LineParser {
        &self.parser
    }

    /// Reads one line (without its line break; a trailing `\r` is dropped). Returns the
    /// signal this line finished, if any: the one before it, whose trace it does not
    /// continue, or the one whose trace went over its bound.
    pub fn push(&mut self, line: &str) -> Option<Signal> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(mode) = &mut self.skipping {
            if trace::opens_new(line).is_none() && continues(mode, line) {
                return None;
            }
            self.skipping = None;
        }
        if let Some(pending) = &mut self.pending
            && trace::opens_new(line).is_none()
        {
            let before = pending.mode;
            match trace::continues(&mut pending.mode, line) {
                Continues::Blank if pending.blanks < MAX_BLANKS => {
                    pending.blanks += 1;
                    return None;
                }
                Continues::Yes => return self.append(line, before),
                Continues::Blank | Continues::No => {}
            }
        }
        let done = self.pending.take().map(finish);
        self.pending = self.open(line);
        done
    }

    /// Hands back the signal still waiting for more of its trace, if any: call it at
    /// the end of the input, or when no line came for a moment.
    pub fn flush(&mut self) -> Option<Signal> {
        self.skipping = None;
        self.pending.take().map(finish)
    }

    /// Whether a signal waits for more of its trace (so [`Lines::flush`] would hand
    /// one back).
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Traces cut at their bound so far.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// The signal `line` starts, waiting for its trace.
    fn open(&self, line: &str) -> Option<Pending> {
        if let Some(mut signal) = self.parser.parse(line) {
            let mut stack = signal.stack.take().unwrap_or_default();
            cut(&mut stack, self.parser.max_stack_bytes);
            return Some(Pending {
                own_stack: !stack.is_empty(),
                stack,
                signal,
                lines: 0,
                blanks: 0,
                mode: Mode::Generic,
                headerless: false,
            });
        }
        let mode = trace::opens(line)?;
        let signal = self
            .parser
            .signal(trace::opening_message(line), None, Level::Error);
        let mut stack = String::new();
        push_bounded(&mut stack, line, self.parser.max_stack_bytes);
        Some(Pending {
            signal,
            stack,
            lines: 1,
            blanks: 0,
            mode,
            headerless: true,
            own_stack: false,
        })
    }

    /// Adds a line to the pending trace (which was in mode `before` until this line);
    /// hands the signal back when the trace went over its bound.
    fn append(&mut self, line: &str, before: Mode) -> Option<Signal> {
        let max_bytes = self.parser.max_stack_bytes;
        let max_lines = self.parser.max_stack_lines;
        let pending = self.pending.as_mut()?;
        if pending.headerless {
            match (before, pending.mode) {
                // A Python traceback's final line says what failed.
                (Mode::Python { ended: false }, Mode::Python { ended: true }) => {
                    pending.signal.message = line.trim().to_owned();
                }
                // A panic's message, on the line after `panicked at …:`.
                (Mode::Rust { message_next: true }, _) => {
                    pending.signal.message = format!("{}: {}", pending.signal.message, line.trim());
                }
                _ => {}
            }
            cut(&mut pending.signal.message, MAX_MESSAGE_BYTES);
        }
        for _ in 0..std::mem::take(&mut pending.blanks) {
            pending.stack.push('\n');
        }
        if !pending.stack.is_empty() {
            pending.stack.push('\n');
        }
        let fit = push_bounded(&mut pending.stack, line, max_bytes);
        pending.lines += 1;
        if fit && pending.lines < max_lines {
            return None;
        }
        self.truncated += 1;
        let mut pending = self.pending.take()?;
        pending
            .signal
            .fields
            .insert(TRUNCATED_FIELD.to_owned(), "true".to_owned());
        self.skipping = Some(pending.mode);
        Some(finish(pending))
    }
}

/// Whether `line` continues a trace being skipped (blank lines do).
fn continues(mode: &mut Mode, line: &str) -> bool {
    !matches!(trace::continues(mode, line), Continues::No)
}

/// Appends what fits of `line` under `max` bytes; `false` when it did not all fit.
fn push_bounded(stack: &mut String, line: &str, max: usize) -> bool {
    let room = max.saturating_sub(stack.len());
    let keep = line.floor_char_boundary(room);
    stack.push_str(&line[..keep]);
    keep == line.len()
}

fn finish(mut pending: Pending) -> Signal {
    let stack = pending.stack.trim_end();
    if !stack.is_empty() {
        pending.stack.truncate(stack.len());
        let signal = &mut pending.signal;
        if signal.message.is_empty() {
            signal.message = trace::headline(&pending.stack).to_owned();
        } else if !pending.headerless
            && !pending.own_stack
            && let Some(exception) = trace::exception_headline(&pending.stack)
            && !signal.message.contains(exception)
        {
            // The log line heads the trace (`request failed`): what was thrown joins it,
            // as an error field's text does.
            signal.message.push_str(": ");
            signal.message.push_str(exception);
        }
        cut(&mut signal.message, MAX_MESSAGE_BYTES);
        if let Some((name, message)) = trace::root_cause(&pending.stack) {
            for (field, value) in [
                (ROOT_CAUSE_TYPE_FIELD, name),
                (ROOT_CAUSE_MESSAGE_FIELD, message),
            ] {
                if !value.is_empty() && signal.fields.len() < MAX_FIELDS {
                    let mut value = value.to_owned();
                    cut(&mut value, MAX_FIELD_BYTES);
                    signal.fields.entry(field.to_owned()).or_insert(value);
                }
            }
        }
        pending.signal.stack = Some(pending.stack);
    }
    pending.signal
}

/// Cuts `s` to at most `max` bytes on a char boundary.
pub(crate) fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let keep = s.floor_char_boundary(max);
        s.truncate(keep);
    }
}
#[cfg(test)]
mod tests;
