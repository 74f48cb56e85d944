//! Plain-text lines: a level word among the first few tokens (after a timestamp, a
//! thread, a host), then an optional logger, then the message.
//!
//! Shapes read (each has a test below): tracing-subscriber's default `fmt` layer
//! (`2026-12-04T10:00:00.123Z ERROR span{id=1}: orders::db: query failed`, with or without
//! ANSI colours), env_logger (`[2026-12-04T10:00:00Z ERROR orders] msg`), logback and
//! log4j (`10:00:00.123 [main] ERROR com.acme.Orders - msg`), Spring Boot
//! (`… ERROR 1234 --- [main] c.a.Orders : msg`), Python's logging
//! (`2026-12-04 10:00:00,123 - orders - ERROR - msg`, where the logger comes before the
//! level, and `ERROR:orders:msg`), syslog
//! (`Dec  4 10:00:00 host app[12]: ERROR msg`), nginx (`… [error] 12#0: msg`) and glog
//! (`E1204 10:00:00.123456 12 file.go:42] msg`).

use super::level::{self, Seen};

/// The level word is looked for among this many tokens…
const HEAD_TOKENS: usize = 8;
/// …that start within this many bytes of the line.
const HEAD_BYTES: usize = 256;
/// A logger name longer than this is taken for message text.
const MAX_LOGGER: usize = 160;

/// Where a plain-text line's level word is, and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head<'a> {
    /// What the level says.
    pub seen: Seen,
    /// The text after the level word.
    pub rest: &'a str,
    /// The text before the level word (a timestamp, a thread, Python's `name - `).
    pub before: &'a str,
    /// How the rest is laid out.
    pub shape: Shape,
}

/// How the text after the level word is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// An optional logger (`target:`, `logger -`, `logger]`), then the message.
    Usual,
    /// Python's `LEVEL:logger:message`.
    PythonColons,
    /// glog: `… file.go:42] message`.
    Glog,
}

/// The level word of a plain-text line and what follows it; `None` when none of the
/// first tokens is a level word. Allocates nothing.
pub(crate) fn head(line: &str) -> Option<Head<'_>> {
    if let Some(head) = glog(line) {
        return Some(head);
    }
    let bytes = line.as_bytes();
    let mut i = 0;
    for n in 0..HEAD_TOKENS {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || i >= HEAD_BYTES {
            return None;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let token = &line[start..i];
        if n == 0
            && let Some((word, after)) = token.split_once(':')
            && !after.is_empty()
            && is_upper(word)
            && let Some(seen) = level::word(word)
        {
            return Some(Head {
                seen,
                rest: &line[start + word.len() + 1..],
                before: "",
                shape: Shape::PythonColons,
            });
        }
        if let Some(seen) = token_level(token) {
            return Some(Head {
                seen,
                rest: &line[i..],
                before: &line[..start],
                shape: Shape::Usual,
            });
        }
    }
    None
}

/// glog's `E1204 10:00:00.123456 …`: a level letter and the month and day.
fn glog(line: &str) -> Option<Head<'_>> {
    let b = line.as_bytes();
    if b.len() < 7 || b[5] != b' ' || !b[1..5].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let seen = match b[0] {
        b'E' | b'F' => Seen::At(selfheal_core::Level::Error),
        b'W' => Seen::At(selfheal_core::Level::Warn),
        b'I' => Seen::Below,
        _ => return None,
    };
    Some(Head {
        seen,
        rest: &line[6..],
        before: "",
        shape: Shape::Glog,
    })
}

/// The level a token says: an upper-case level word (`ERROR`, `[WARN]`, `ERROR:`), or a
/// level word in any case inside brackets (`[error]`, `<Warning>`).
fn token_level(token: &str) -> Option<Seen> {
    let token = strip_csi(token);
    let inner = token.trim_start_matches(['[', '<', '(', '|']);
    let bracketed = inner.len() < token.len();
    let word = inner.trim_end_matches([']', '>', ')', ':', ',', '|', ';']);
    if word.is_empty() || !(bracketed || is_upper(word)) {
        return None;
    }
    level::word(word)
}

fn is_upper(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_uppercase())
}

/// `token` without the ANSI colour sequences (`ESC [ … m`) at its ends.
fn strip_csi(mut token: &str) -> &str {
    while let Some(rest) = token.strip_prefix("\x1b[") {
        match rest.find(|c: char| ('@'..='~').contains(&c)) {
            Some(end) => token = &rest[end + 1..],
            None => return "",
        }
    }
    while let Some(start) = token.rfind("\x1b[") {
        let seq = &token[start + 2..];
        let is_csi = seq.ends_with('m')
            && seq[..seq.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b';');
        if !is_csi {
            break;
        }
        token = &token[..start];
    }
    token
}

/// `line` without any ANSI escape sequence (colours, cursor moves).
pub(crate) fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            // CSI: parameters and intermediates, then one final byte.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ESC \.
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The logger and the message after the level word.
pub(crate) fn logger_and_message<'a>(head: &Head<'a>) -> (Option<&'a str>, &'a str) {
    match head.shape {
        Shape::Glog => {
            let message = head.rest.split_once("] ").map_or(head.rest, |(_, m)| m);
            (None, message.trim())
        }
        Shape::PythonColons => match head.rest.split_once(':') {
            Some((logger, message)) if is_logger(logger) => (Some(logger), message.trim()),
            _ => (None, head.rest.trim()),
        },
        Shape::Usual => python_dashes(head.before, head.rest).unwrap_or_else(|| usual(head)),
    }
}

/// Python's `%(asctime)s - %(name)s - %(levelname)s - %(message)s`: the logger is the
/// ` - `-separated field just before the level word, and ` - ` follows the level.
fn python_dashes<'a>(before: &'a str, rest: &'a str) -> Option<(Option<&'a str>, &'a str)> {
    let message = rest.strip_prefix(" - ")?;
    let fields = before.strip_suffix(" - ")?;
    let logger = fields.rsplit_once(" - ").map_or(fields, |(_, name)| name);
    // A timestamp is not a logger (`2026-12-04T10:00:00Z - ERROR - …`).
    let named = logger.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    (named && is_logger(logger)).then(|| (Some(logger), message.trim()))
}

fn usual<'a>(head: &Head<'a>) -> (Option<&'a str>, &'a str) {
    let mut message = trim_separators(head.rest);
    if let Some(spring) = spring(message) {
        return spring;
    }
    // logback's and log4j's `[thread] LEVEL logger - message`: after a thread, any name
    // before ` - ` is the logger; elsewhere only a dotted one is (`Payment - refund
    // failed` is a message).
    let after_thread = head.before.trim_end().ends_with(']');
    let mut logger = None;
    // `span{a=1}:span2: target: message`: spans, then the target. A segment is passed
    // over for the next only when it is a span chain or the next is a module path
    // (`request: orders::db: …`), so `orders: timeout: upstream` keeps `timeout: …` in
    // the message. The message itself (the last segment) is never taken.
    for _ in 0..4 {
        let Some((name, after)) = segment(message, after_thread) else {
            break;
        };
        if after.is_empty() {
            break;
        }
        logger = Some(name);
        message = after;
        let next = segment(message, after_thread).filter(|(_, rest)| !rest.is_empty());
        if !next.is_some_and(|(next, _)| span_chain(name) || next.contains("::")) {
            break;
        }
    }
    (logger, message.trim_end())
}

/// tracing's spans before the target: `request{id=1}`, `request{id=1}:db`, `a:b`.
fn span_chain(name: &str) -> bool {
    let b = name.as_bytes();
    name.contains('{')
        || (0..b.len())
            .any(|i| b[i] == b':' && (i == 0 || b[i - 1] != b':') && b.get(i + 1) != Some(&b':'))
}

/// Leading separators between the level word and what follows (`- `, `| `, `: `, `] `).
fn trim_separators(mut s: &str) -> &str {
    loop {
        let t = s.trim_start();
        let t = t
            .strip_prefix("- ")
            .or_else(|| t.strip_prefix("| "))
            .or_else(|| t.strip_prefix(": "))
            .or_else(|| t.strip_prefix("] "))
            .unwrap_or(t);
        if t.len() == s.len() {
            return t;
        }
        s = t;
    }
}

/// Spring Boot's `1234 --- [app] [main] c.a.Orders : message`.
fn spring(s: &str) -> Option<(Option<&str>, &str)> {
    let at = s.get(..48.min(s.len())).unwrap_or(s).find("--- [")?;
    let mut after = &s[at + 4..];
    while let Some(rest) = after.strip_prefix('[') {
        after = rest.split_once(']')?.1.trim_start();
    }
    let (logger, message) = after.split_once(" : ")?;
    let logger = logger.trim();
    // Tomcat's loggers hold brackets: `o.a.c.c.C.[.[.[/].[dispatcherServlet]`.
    let named = is_logger(&logger.replace(['[', ']'], ""));
    Some((named.then_some(logger), message.trim()))
}

/// The first logger-shaped segment of `s` and what follows it: `target: …`,
/// `span{a=1 b=2}:span2: …`, `logger - …` (a dotted logger, or any after a thread),
/// `logger] …`. A capitalised word with a colon (`Error: …`, `Timeout: …`) is message.
fn segment(s: &str, after_thread: bool) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut end = b.len();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            c if depth == 0 && c.is_ascii_whitespace() => {
                end = i;
                break;
            }
            _ => {}
        }
        if i > MAX_LOGGER {
            return None;
        }
    }
    let token = &s[..end];
    let after = &s[end..];
    let dotted = |n: &str| n.contains('.') || n.contains("::");
    let (name, after) = if let Some(name) = token.strip_suffix(':') {
        if name.starts_with(|c: char| c.is_ascii_uppercase()) && !dotted(name) {
            return None;
        }
        (name, after)
    } else if let Some(name) = token.strip_suffix(']').filter(|n| !n.contains('[')) {
        (name, after)
    } else if let Some(after) = after
        .strip_prefix(" - ")
        .filter(|_| after_thread || dotted(token))
    {
        (token, after)
    } else {
        return None;
    };
    is_logger(name).then(|| (name, after.trim_start()))
}

/// A module path, a logger or a span chain: `orders::db`, `com.acme.Orders`,
/// `request{id=1}:db`; no spaces outside braces, at least one letter.
fn is_logger(name: &str) -> bool {
    let mut depth = 0usize;
    let mut letter = false;
    for c in name.bytes() {
        match c {
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c if c.is_ascii_alphabetic() => letter = true,
            c if c.is_ascii_digit() || b"_.:$/-<>@".contains(&c) => {}
            _ => return false,
        }
    }
    letter && depth == 0 && name.len() <= MAX_LOGGER
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfheal_core::Level;

    fn parts(line: &str) -> (Option<Level>, Option<&str>, &str) {
        let head = head(line).expect("a level word");
        let (logger, message) = logger_and_message(&head);
        (head.seen.level(), logger, message)
    }

    #[test]
    fn tracing_fmt_with_target_and_spans() {
        assert_eq!(
            parts("2026-12-04T10:00:00.123456Z ERROR orders: query failed: pool timed out"),
            (
                Some(Level::Error),
                Some("orders"),
                "query failed: pool timed out"
            )
        );
        assert_eq!(
            parts(
                "2026-12-04T10:00:00.123Z  WARN request{id=7 path=\"/a b\"}:db: orders::db: slow query took=3s"
            ),
            (Some(Level::Warn), Some("orders::db"), "slow query took=3s")
        );
        assert_eq!(
            head("2026-12-04T10:00:00.123Z  INFO orders: listening").map(|h| h.seen),
            Some(Seen::Below)
        );
    }

    #[test]
    fn ansi_coloured_tracing_fmt() {
        let line = "\x1b[2m2026-12-04T10:00:00.123Z\x1b[0m \x1b[31mERROR\x1b[0m \x1b[2morders\x1b[0m\x1b[2m:\x1b[0m query failed";
        assert_eq!(head(line).map(|h| h.seen), Some(Seen::At(Level::Error)));
        let plain = strip_ansi(line);
        assert_eq!(plain, "2026-12-04T10:00:00.123Z ERROR orders: query failed");
    }

    #[test]
    fn common_shapes() {
        assert_eq!(
            parts("[2026-12-04T10:00:00Z ERROR orders] pool exhausted"),
            (Some(Level::Error), Some("orders"), "pool exhausted")
        );
        assert_eq!(
            parts("10:00:00.123 [main] ERROR com.acme.Orders - query failed"),
            (Some(Level::Error), Some("com.acme.Orders"), "query failed")
        );
        assert_eq!(
            parts(
                "2026-12-04 10:00:00.123 ERROR 1234 --- [orders] [main] c.a.OrderService : query failed"
            ),
            (Some(Level::Error), Some("c.a.OrderService"), "query failed")
        );
        assert_eq!(
            parts("2026-12-04 10:00:00,123 - orders - WARNING - disk almost full"),
            (Some(Level::Warn), Some("orders"), "disk almost full")
        );
        assert_eq!(
            parts("ERROR:orders.db:connection refused"),
            (Some(Level::Error), Some("orders.db"), "connection refused")
        );
        assert_eq!(
            parts("Dec  4 10:00:00 host app[12]: CRITICAL out of memory"),
            (Some(Level::Error), None, "out of memory")
        );
        assert_eq!(
            parts(
                "2026/12/04 10:00:00 [error] 12#0: *5 connect() failed (111: Connection refused)"
            ),
            (
                Some(Level::Error),
                None,
                "12#0: *5 connect() failed (111: Connection refused)"
            )
        );
        assert_eq!(
            parts("E1204 10:00:00.123456    12 main.go:42] dial tcp: connection refused"),
            (Some(Level::Error), None, "dial tcp: connection refused")
        );
        assert_eq!(
            head("I1204 10:00:00.123456 12 main.go:42] ok").map(|h| h.seen),
            Some(Seen::Below)
        );
    }

    #[test]
    fn lower_case_words_count_only_in_brackets() {
        assert_eq!(head("2026-12-04 connection error: refused"), None);
        assert_eq!(
            head("2026-12-04 [warn] slow").map(|h| h.seen),
            Some(Seen::At(Level::Warn))
        );
        assert_eq!(head("no level here at all"), None);
        assert_eq!(head(""), None);
    }

    #[test]
    fn the_first_level_word_decides() {
        assert_eq!(
            head("2026-12-04T10:00:00Z INFO orders: ERROR rate is low").map(|h| h.seen),
            Some(Seen::Below)
        );
    }
}
