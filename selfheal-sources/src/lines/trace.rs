//! Which lines belong to a stack trace that spans several lines: Java and other JVM
//! traces (`\tat …`, `Caused by:`, `... 12 more`), Python tracebacks (to the final
//! `XError: message` line, chained ones too), Rust panics and backtraces, Go panics and
//! goroutine dumps, Node.js stacks (`    at fn (file:1:2)`).

/// What kind of trace is being read, and where in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// After a log line, or a JVM or Node exception line: indented lines and the
    /// markers below continue it.
    Generic,
    /// A Python traceback; `ended` once its final exception line was read.
    Python { ended: bool },
    /// A Rust panic; `message_next` while its message (on the next line since Rust
    /// 1.73) is still to come.
    Rust { message_next: bool },
    /// A Go panic or goroutine dump.
    Go,
}

/// How a line relates to the trace being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Continues {
    /// It is part of the trace.
    Yes,
    /// A blank line: part of the trace only if the next line is.
    Blank,
    /// It is not: the trace ended before it.
    No,
}

const TRACEBACK: &str = "Traceback (most recent call last):";

/// A line that starts a new signal of its own even in the middle of another trace: a
/// Rust panic, a Go panic, a JVM thread's uncaught exception. With its mode.
pub(crate) fn opens_new(line: &str) -> Option<Mode> {
    if line.starts_with("thread '") && line.contains("' panicked at") {
        return Some(Mode::Rust {
            message_next: line.ends_with(':'),
        });
    }
    if line.starts_with("panic: ") {
        return Some(Mode::Go);
    }
    if line.starts_with("Exception in thread \"") {
        return Some(Mode::Generic);
    }
    None
}

/// A line that starts a signal when no other trace is being read: a Python traceback,
/// an exception line (`java.sql.SQLException: …`, `TypeError: …`). With its mode.
pub(crate) fn opens(line: &str) -> Option<Mode> {
    if let Some(mode) = opens_new(line) {
        return Some(mode);
    }
    if line.starts_with(TRACEBACK) {
        return Some(Mode::Python { ended: false });
    }
    if exception_line(line) {
        return Some(Mode::Generic);
    }
    None
}

/// The message of a trace that opened without a log line: its exception or panic.
pub(crate) fn opening_message(line: &str) -> &str {
    if let Some(at) = line.find("' panicked at ")
        && line.starts_with("thread '")
    {
        return line[at + 2..].trim_end_matches(':');
    }
    line.strip_prefix("Exception in thread \"")
        .and_then(|rest| rest.split_once("\" "))
        .map_or(line, |(_, exception)| exception)
}

/// Whether `line` continues a trace in `mode` (which it may move on).
pub(crate) fn continues(mode: &mut Mode, line: &str) -> Continues {
    if line.trim().is_empty() {
        return Continues::Blank;
    }
    match *mode {
        Mode::Rust { message_next: true } => {
            *mode = Mode::Rust {
                message_next: false,
            };
            return Continues::Yes;
        }
        Mode::Python { ended: false } => {
            if !indented(line) && !python_marker(line) {
                // The exception line closes the traceback.
                *mode = Mode::Python { ended: true };
            }
            return Continues::Yes;
        }
        Mode::Go if go_line(line) => return Continues::Yes,
        _ => {}
    }
    if line.starts_with(TRACEBACK) {
        *mode = Mode::Python { ended: false };
        return Continues::Yes;
    }
    if python_marker(line) {
        return Continues::Yes;
    }
    if line.starts_with("stack backtrace:") || line.starts_with("note: ") {
        *mode = Mode::Rust {
            message_next: false,
        };
        return Continues::Yes;
    }
    if goroutine(line) {
        *mode = Mode::Go;
        return Continues::Yes;
    }
    if (indented(line) && !leveled(line))
        || line.starts_with("Caused by: ")
        || line.starts_with("Suppressed: ")
        || exception_line(line)
    {
        return Continues::Yes;
    }
    Continues::No
}

/// Python's lines between chained tracebacks.
fn python_marker(line: &str) -> bool {
    line.starts_with("During handling of the above exception")
        || line.starts_with("The above exception was the direct cause")
}

fn indented(line: &str) -> bool {
    line.starts_with([' ', '\t'])
}

/// An indented line that is a log line of its own (tracing's ` INFO target: msg`
/// without a timestamp).
fn leveled(line: &str) -> bool {
    let word = line.split_whitespace().next().unwrap_or("");
    word.bytes().all(|b| b.is_ascii_uppercase()) && super::level::word(word).is_some()
}

/// `goroutine 7 [running]:`.
fn goroutine(line: &str) -> bool {
    line.strip_prefix("goroutine ")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// A line of a Go trace: a goroutine header, a frame (`main.handler(0x1)`), its file
/// (indented), `created by …`, a signal line, a nested panic.
fn go_line(line: &str) -> bool {
    indented(line)
        || goroutine(line)
        || line.starts_with("created by ")
        || line.starts_with("[signal ")
        || line.starts_with("panic: ")
        || (line.ends_with(')') && line.contains('(') && !line.contains(' '))
        || line.ends_with("...")
}

/// An exception line: `java.sql.SQLException: too many clients`, `Caused by` aside;
/// `TypeError: x is undefined`, `ValueError`, `com.acme.OrderException`. The first word
/// is a (dotted) name ending in `Error`, `Exception` or `Throwable`, followed by `: ` or
/// the end of the line.
pub(crate) fn exception_line(line: &str) -> bool {
    let name = line.split_once(": ").map_or(line, |(name, _)| name);
    let name = name.trim_end_matches(':');
    !name.is_empty()
        && name.len() <= 256
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.$".contains(&b))
        && (name.ends_with("Error") || name.ends_with("Exception") || name.ends_with("Throwable"))
}

/// The line of a trace that says what failed: a Python traceback's final exception
/// line, else the first exception or panic line, else the first line.
pub(crate) fn headline(stack: &str) -> &str {
    let mut lines = stack
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty());
    let first = lines.clone().next().unwrap_or("");
    if first.starts_with(TRACEBACK) {
        let last = stack.lines().rev().find(|l| {
            !l.trim().is_empty() && !indented(l) && !python_marker(l) && !l.starts_with(TRACEBACK)
        });
        return last.map_or(first, str::trim_end);
    }
    lines
        .find(|l| exception_line(l) || opens_new(l).is_some())
        .map_or(first, opening_message)
}

/// The exception line of a trace that says what failed, when the trace has one: a
/// Python traceback's final line, else its first exception line (`java.sql.…Exception:
/// …`, `TypeError: …`). `None` for panics, goroutine dumps and indented lines alone.
pub(crate) fn exception_headline(stack: &str) -> Option<&str> {
    let line = headline(stack);
    let first = stack
        .lines()
        .map(str::trim_end)
        .find(|l| !l.trim().is_empty())?;
    let python = first.starts_with(TRACEBACK) && line != first;
    (python || exception_line(line)).then_some(line)
}

/// The root cause of a JVM trace: its last `Caused by:` exception, else its first
/// exception line (Spring's `… with root cause` puts the root cause first), as
/// `(type, message)`; the message is empty when the line has none.
pub(crate) fn root_cause(stack: &str) -> Option<(&str, &str)> {
    let last_cause = stack
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Caused by: "))
        .next_back();
    let line = last_cause.or_else(|| stack.lines().find(|l| exception_line(l)))?;
    let line = line.trim_end();
    let (name, message) = line.split_once(": ").unwrap_or((line, ""));
    exception_line(name).then_some((name, message.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: Mode, lines: &[&str]) -> Vec<Continues> {
        let mut mode = mode;
        lines.iter().map(|l| continues(&mut mode, l)).collect()
    }

    #[test]
    fn java_frames_causes_and_more() {
        let got = run(
            Mode::Generic,
            &[
                "java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available",
                "\tat com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:696)",
                "Caused by: java.net.ConnectException: Connection refused",
                "\t... 12 more",
                "2026-12-04 10:00:01 INFO next line",
            ],
        );
        use Continues::*;
        assert_eq!(got, [Yes, Yes, Yes, Yes, No]);
    }

    #[test]
    fn a_python_traceback_ends_after_its_exception_line() {
        use Continues::*;
        let got = run(
            Mode::Python { ended: false },
            &[
                "  File \"/srv/cache.py\", line 40, in get",
                "    return self.client.get(key)",
                "ConnectionError: Error 111 connecting to localhost:6379. Connection refused.",
                "",
                "The above exception was the direct cause of the following exception:",
                "",
                "Traceback (most recent call last):",
                "  File \"/srv/views.py\", line 9, in show",
                "CacheUnavailable: redis down",
                "2026-12-04 10:00:01,000 INFO ok",
            ],
        );
        assert_eq!(got, [Yes, Yes, Yes, Blank, Yes, Blank, Yes, Yes, Yes, No]);
    }

    #[test]
    fn rust_panic_message_and_backtrace() {
        use Continues::*;
        let first = "thread 'main' panicked at src/main.rs:10:5:";
        let mode = opens_new(first).unwrap();
        let got = run(
            mode,
            &[
                "pool timed out",
                "stack backtrace:",
                "   0: rust_begin_unwind",
                "             at ./src/handler.rs:42:9",
                "note: Some details are omitted, run with `RUST_BACKTRACE=full`.",
                "2026-12-04T10:00:01Z  INFO orders: restarted",
            ],
        );
        assert_eq!(got, [Yes, Yes, Yes, Yes, Yes, No]);
        assert_eq!(opening_message(first), "panicked at src/main.rs:10:5");
    }

    #[test]
    fn go_panic_and_goroutines() {
        use Continues::*;
        let got = run(
            opens_new("panic: runtime error: index out of range [3] with length 3").unwrap(),
            &[
                "",
                "goroutine 7 [running]:",
                "main.handler(0x1)",
                "\t/app/main.go:12 +0x1d",
                "created by net/http.(*Server).Serve in goroutine 1",
                "",
                "exit status 2",
            ],
        );
        assert_eq!(got, [Blank, Yes, Yes, Yes, Yes, Blank, No]);
    }

    #[test]
    fn node_frames() {
        use Continues::*;
        let got = run(
            Mode::Generic,
            &[
                "TypeError: Cannot read properties of undefined (reading 'id')",
                "    at handler (/app/server.js:10:15)",
                "    at Layer.handle [as handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)",
                " INFO orders: next",
            ],
        );
        assert_eq!(got, [Yes, Yes, Yes, No]);
    }

    #[test]
    fn exception_lines() {
        assert!(exception_line("java.lang.IllegalStateException: boom"));
        assert!(exception_line("TypeError: x"));
        assert!(exception_line("com.acme.OrderException"));
        assert!(!exception_line("query failed: Error"));
        assert!(!exception_line("Error handling request: x"));
        assert!(!exception_line(""));
    }

    #[test]
    fn headlines() {
        assert_eq!(
            headline(
                "Traceback (most recent call last):\n  File \"a.py\", line 1, in f\nValueError: bad\n"
            ),
            "ValueError: bad"
        );
        assert_eq!(
            headline(
                "java.sql.SQLException: too many clients\n\tat com.acme.Pool.get(Pool.java:42)"
            ),
            "java.sql.SQLException: too many clients"
        );
        assert_eq!(
            headline("thread 'w' panicked at src/a.rs:1:1:\nboom"),
            "panicked at src/a.rs:1:1"
        );
        assert_eq!(headline(""), "");
    }
}
