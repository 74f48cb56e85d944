//! One observation of the service: a log line, a tracing event, a probe, a metric.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest message kept from a signal; longer ones are truncated on a char boundary.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Signal fields that carry an error's text. Patterns match their regex against these
/// as well as the message, and [`crate::HealerLayer`] appends them to the message, so
/// `tracing::error!(error = %e, "query failed")` is recognised by the error's text.
pub const ERROR_FIELDS: [&str; 4] = ["error", "err", "error.message", "exception.message"];

/// Where a signal came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SignalSource {
    /// A plain log line.
    Log,
    /// A `tracing` event seen by [`crate::HealerLayer`].
    Tracing,
    /// A health probe that scored under its threshold.
    Probe,
    /// A metric over its threshold.
    Metric,
    /// An alert from another system.
    External,
}

/// How bad one signal is on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Level {
    /// Worth a look.
    Warn,
    /// Something failed.
    Error,
}

/// One observation. Build it with [`Signal::new`] or [`Signal::from_error`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// The service that saw it (e.g. `checkout-api`).
    pub service: String,
    /// The affected system (e.g. `redis-cache`, `postgres`); incidents are grouped by it.
    pub target: String,
    /// Where it came from.
    pub source: SignalSource,
    /// Warn or error.
    pub level: Level,
    /// The message, as printed (at most [`MAX_MESSAGE_BYTES`]).
    pub message: String,
    /// A stack trace or backtrace, when there is one.
    pub stack: Option<String>,
    /// Structured fields (`error.type`, `status`, …).
    pub fields: BTreeMap<String, String>,
    /// When it was seen.
    pub timestamp: DateTime<Utc>,
}

impl Signal {
    /// A log-sourced error signal for `target` with `message`, seen now.
    pub fn new(target: impl Into<String>, message: impl Into<String>) -> Self {
        let mut message = message.into();
        truncate_utf8(&mut message, MAX_MESSAGE_BYTES);
        Signal {
            service: String::new(),
            target: target.into(),
            source: SignalSource::Log,
            level: Level::Error,
            message,
            stack: None,
            fields: BTreeMap::new(),
            timestamp: Utc::now(),
        }
    }

    /// A signal from any error: the message is the error and its whole `source()` chain
    /// joined with `: `, and the field `error.chain` holds the number of links.
    ///
    /// ```
    /// use selfheal_core::Signal;
    /// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused (os error 111)");
    /// let signal = Signal::from_error("redis-cache", &io);
    /// assert_eq!(signal.message, "Connection refused (os error 111)");
    /// ```
    pub fn from_error(
        target: impl Into<String>,
        error: &(dyn std::error::Error + 'static),
    ) -> Self {
        let chain = error_chain(error);
        let mut signal = Signal::new(target, chain.join(": "));
        signal
            .fields
            .insert("error.chain".to_owned(), chain.len().to_string());
        signal
    }

    /// Sets the service name.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    /// Sets the source.
    pub fn source(mut self, source: SignalSource) -> Self {
        self.source = source;
        self
    }

    /// Sets the level.
    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// Sets the stack trace.
    pub fn stack(mut self, stack: impl Into<String>) -> Self {
        self.stack = Some(stack.into());
        self
    }

    /// Adds a structured field.
    pub fn field(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }
}

/// The messages of `error` and each of its sources, outermost first, without repeats
/// (many errors print their source in their own message too).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut chain: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(err) = current {
        let text = err.to_string();
        if !chain.last().is_some_and(|prev| prev.contains(&text)) {
            chain.push(text);
        }
        current = err.source();
        if chain.len() >= 32 {
            break;
        }
    }
    chain
}

/// Cuts `s` to at most `max` bytes on a char boundary, in place.
pub(crate) fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("pool timed out while waiting for an open connection")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn from_error_walks_the_source_chain() {
        let err = Outer(std::io::Error::other("connection reset by peer"));
        let signal = Signal::from_error("postgres", &err);
        assert_eq!(
            signal.message,
            "pool timed out while waiting for an open connection: connection reset by peer"
        );
        assert_eq!(signal.fields["error.chain"], "2");
        assert_eq!(signal.target, "postgres");
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let signal = Signal::new("t", long);
        assert!(signal.message.len() <= MAX_MESSAGE_BYTES);
        assert!(signal.message.chars().all(|c| c == 'é'));
    }
}
