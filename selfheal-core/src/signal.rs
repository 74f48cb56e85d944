//! One observation of the service: a log line, a tracing event, a probe, a metric.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest message kept from a signal; longer ones are truncated on a char boundary.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The longest stack kept from a signal (stack signatures read no more than this).
pub const MAX_STACK_BYTES: usize = 256 * 1024;
/// The longest field value kept from a signal.
pub const MAX_FIELD_BYTES: usize = 4 * 1024;
/// The most fields kept from a signal (the first ones by name).
pub const MAX_FIELDS: usize = 64;
/// The most levels of an error's `source()` chain that are read.
pub const MAX_CHAIN_LEVELS: usize = 64;

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
    /// An alert from another system. One that a pattern matches meets the pattern's
    /// occurrence threshold on its own: the other system already decided it is an
    /// alert.
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
///
/// At most [`MAX_CHAIN_LEVELS`] levels are read, whatever repeats, so a deeply wrapped
/// error costs a bounded number of `Display` calls, and each text is cut to
/// [`MAX_MESSAGE_BYTES`].
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut chain: Vec<String> = Vec::new();
    for err in std::iter::successors(Some(error), |e| e.source()).take(MAX_CHAIN_LEVELS) {
        let mut text = err.to_string();
        truncate_utf8(&mut text, MAX_MESSAGE_BYTES);
        if !chain.last().is_some_and(|prev| prev.contains(&text)) {
            chain.push(text);
        }
    }
    chain
}

impl Signal {
    /// Cuts what a signal carries to fixed bounds (message, stack, each field, the
    /// number of fields), so one signal costs the queue and the matcher a bounded
    /// amount whatever the host hands over. Cheap when nothing is over.
    pub(crate) fn bound(&mut self) {
        truncate_utf8(&mut self.message, MAX_MESSAGE_BYTES);
        if let Some(stack) = &mut self.stack {
            truncate_utf8(stack, MAX_STACK_BYTES);
        }
        if self.fields.len() > MAX_FIELDS {
            let keep: Vec<String> = self.fields.keys().take(MAX_FIELDS).cloned().collect();
            self.fields.retain(|k, _| keep.contains(k));
        }
        for value in self.fields.values_mut() {
            truncate_utf8(value, MAX_FIELD_BYTES);
        }
    }
}

impl Signal {
    /// An estimate of the memory this signal holds: the struct and every allocation it
    /// owns, by capacity (what is really allocated, not what is used). The intake queue
    /// charges it against `intake.queue_bytes`.
    pub(crate) fn heap_bytes(&self) -> usize {
        /// A `BTreeMap` entry's share of its node, beyond the two strings' buffers.
        const FIELD_OVERHEAD: usize = 2 * std::mem::size_of::<String>() + 16;
        let fields: usize = self
            .fields
            .iter()
            .map(|(k, v)| k.capacity() + v.capacity() + FIELD_OVERHEAD)
            .sum();
        std::mem::size_of::<Signal>()
            + self.service.capacity()
            + self.target.capacity()
            + self.message.capacity()
            + self.stack.as_ref().map_or(0, String::capacity)
            + fields
    }
}

/// The first at most `max` bytes of `s`, cut on a char boundary.
pub(crate) fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// Cuts `s` to at most `max` bytes on a char boundary, in place. A string that was cut
/// also gives back the memory it no longer uses: a 10 MB stack cut to 256 KiB must not
/// keep its 10 MB allocation alive in the queue.
pub(crate) fn truncate_utf8(s: &mut String, max: usize) {
    let keep = prefix(s, max).len();
    if keep < s.len() {
        s.truncate(keep);
        s.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error wrapping `depth` more of itself, counting the `source()` calls made.
    #[derive(Debug)]
    struct Deep {
        depth: usize,
        inner: Option<Box<Deep>>,
        calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl std::fmt::Display for Deep {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "level {}", self.depth)
        }
    }

    impl std::error::Error for Deep {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn a_ten_thousand_deep_error_chain_is_read_to_a_bounded_depth() {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut error = Deep {
            depth: 0,
            inner: None,
            calls: calls.clone(),
        };
        for depth in 1..10_000 {
            error = Deep {
                depth,
                inner: Some(Box::new(error)),
                calls: calls.clone(),
            };
        }
        let chain = error_chain(&error);
        assert_eq!(chain.len(), MAX_CHAIN_LEVELS);
        assert_eq!(chain[0], "level 9999");
        assert!(calls.load(std::sync::atomic::Ordering::Relaxed) <= MAX_CHAIN_LEVELS);
        // Dropping a 10,000-deep Box chain recursively is the test's own business.
        std::mem::forget(error);
    }

    #[test]
    fn a_bounded_signal_gives_back_what_it_cut_and_is_charged_for_what_it_holds() {
        let mut signal = Signal::new("svc", "boom").stack("x".repeat(10 << 20));
        assert!(signal.heap_bytes() >= 10 << 20, "charged by what it holds");
        signal.bound();
        assert!(signal.stack.as_ref().unwrap().capacity() <= MAX_STACK_BYTES);
        let bytes = signal.heap_bytes();
        assert!(
            (MAX_STACK_BYTES..MAX_STACK_BYTES + 1024).contains(&bytes),
            "{bytes}"
        );
    }

    #[test]
    fn a_ten_megabyte_stack_and_a_flood_of_fields_are_bounded() {
        let mut signal = Signal::new("svc", "boom").stack("frame\n".repeat(2_000_000));
        for i in 0..1_000 {
            signal = signal.field(format!("f{i:04}"), "é".repeat(10_000));
        }
        signal.bound();
        assert!(signal.stack.as_ref().unwrap().len() <= MAX_STACK_BYTES);
        assert_eq!(signal.fields.len(), MAX_FIELDS);
        assert!(signal.fields.values().all(|v| v.len() <= MAX_FIELD_BYTES));
        assert!(
            signal.fields.contains_key("f0000"),
            "the first fields by name are kept"
        );
    }

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
