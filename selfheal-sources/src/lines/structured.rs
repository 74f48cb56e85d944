//! Structured lines (JSON, logfmt) to signals: which keys hold the level, the message,
//! the logger, the error and the stack.

use std::collections::BTreeMap;

use selfheal_core::{Level, MAX_FIELD_BYTES, MAX_FIELDS, Signal};

use super::level::{self, Seen};
use super::{LOGGER_FIELD, LineParser, cut, trace};

/// The most keys read from one line.
pub(crate) const MAX_KEYS: usize = 256;

/// Keys that hold the level, first found first.
pub(crate) const LEVEL_KEYS: [&str; 11] = [
    "level",
    "lvl",
    "severity",
    "log.level",
    "levelname",
    "level_name",
    "loglevel",
    "log_level",
    "@l",
    "@level",
    "PRIORITY",
];

/// Keys that hold the message (tracing-subscriber's JSON puts it in `fields.message`;
/// Serilog's compact JSON in `@m` or `@mt`; structlog's in `event`).
const MESSAGE_KEYS: [&str; 9] = [
    "msg",
    "message",
    "fields.message",
    "@message",
    "@m",
    "@mt",
    "MESSAGE",
    "text",
    "event",
];

/// Keys that name the logger or the module (tracing's `target`).
const LOGGER_KEYS: [&str; 9] = [
    "target",
    "logger",
    "logger_name",
    "loggerName",
    "logger.name",
    "log.logger",
    "module",
    "component",
    "name",
];

/// Keys that hold an error's text (or, for some loggers, a whole trace). Their text
/// reaches the signal's message, as [`selfheal_core::HealerLayer`] does for tracing's
/// error fields.
const ERROR_KEYS: [&str; 14] = [
    "error",
    "err",
    "error.message",
    "exception.message",
    "err.message",
    "error.msg",
    "errorMessage",
    "fields.error",
    "fields.err",
    "exception",
    "exc",
    "exc_info",
    "@x",
    "error.cause",
];

/// Keys that hold a stack trace or a backtrace.
const STACK_KEYS: [&str; 12] = [
    "stack",
    "stack_trace",
    "stacktrace",
    "stackTrace",
    "exception.stacktrace",
    "exception.stack_trace",
    "error.stack",
    "error.stack_trace",
    "err.stack",
    "backtrace",
    "fields.backtrace",
    "trace.stack",
];

/// The level of a structured line from its first level key with a level value.
pub(crate) fn level_of(map: &BTreeMap<String, String>) -> Option<Seen> {
    LEVEL_KEYS
        .iter()
        .find_map(|k| map.get(*k).and_then(|v| level::value(k, v)))
}

/// The signal for a structured line at `level`; `raw` is the line, the message of last
/// resort.
pub(crate) fn signal(
    parser: &LineParser,
    mut map: BTreeMap<String, String>,
    level: Level,
    raw: &str,
) -> Signal {
    for key in LEVEL_KEYS {
        map.remove(key);
    }
    let mut message = take_first(&mut map, &MESSAGE_KEYS).unwrap_or_default();
    let mut stack = take_first(&mut map, &STACK_KEYS);
    let logger = LOGGER_KEYS
        .iter()
        .find_map(|k| map.get(*k).filter(|v| !v.is_empty()).cloned());

    // Error texts: a one-line error is appended to the message; a multi-line one is a
    // trace, whose headline is appended and which becomes the stack if none was given.
    let mut errors: Vec<String> = Vec::new();
    for key in ERROR_KEYS {
        let Some(value) = map.get(key) else { continue };
        let text = if value.contains('\n') {
            let headline = trace::headline(value).to_owned();
            if stack.is_none() {
                stack = map.remove(key);
            } else {
                map.remove(key);
            }
            headline
        } else {
            value.clone()
        };
        if !text.is_empty() && !errors.contains(&text) {
            errors.push(text);
        }
    }
    if message.is_empty() && errors.is_empty() {
        message = raw.trim().to_owned();
    }
    for text in &errors {
        if message.contains(text.as_str()) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(text);
    }

    if let Some(logger) = logger {
        map.insert(LOGGER_FIELD.to_owned(), logger);
    }
    let target = parser.target_of(&map);
    let mut signal = Signal::new(target, message).level(level);
    signal.stack = stack.filter(|s| !s.trim().is_empty());
    for (key, mut value) in map.into_iter().take(MAX_FIELDS) {
        cut(&mut value, MAX_FIELD_BYTES);
        signal.fields.insert(key, value);
    }
    signal
}

fn take_first(map: &mut BTreeMap<String, String>, keys: &[&str]) -> Option<String> {
    let key = keys
        .iter()
        .find(|k| map.get(**k).is_some_and(|v| !v.is_empty()))?;
    map.remove(*key)
}
