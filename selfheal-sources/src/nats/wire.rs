//! The message format: one JSON-serialised [`Signal`] per message, on the subject
//! `<prefix>.<service>`, with a unique `Nats-Msg-Id` header.
//!
//! [`decode`] is the one door a message comes in by: it reads at most
//! [`MAX_PAYLOAD_BYTES`], never panics, and says why it refused a message without
//! quoting it (a message may hold secrets).

use std::fmt;

use selfheal_core::Signal;

/// The largest message read as a signal. A signal the healer keeps is smaller (its
/// message, stack and fields are bounded well below this), so a larger message was not
/// written by a publisher of this crate.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Why a message is not a signal. Never holds the message itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// Over [`MAX_PAYLOAD_BYTES`].
    TooLarge {
        /// The message's size.
        bytes: usize,
    },
    /// Not JSON (or not UTF-8), or cut short.
    NotJson {
        /// Where reading stopped (1-based).
        line: usize,
        /// Where reading stopped (1-based).
        column: usize,
    },
    /// JSON, but not the shape of a signal (a missing field, a wrong type).
    NotASignal {
        /// Where reading stopped (1-based).
        line: usize,
        /// Where reading stopped (1-based).
        column: usize,
    },
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::TooLarge { bytes } => write!(
                f,
                "a message of {bytes} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit of a signal"
            ),
            Malformed::NotJson { line, column } => {
                write!(f, "not JSON (stopped at line {line}, column {column})")
            }
            Malformed::NotASignal { line, column } => write!(
                f,
                "JSON, but not a signal: a field is missing or of the wrong type (line {line}, column {column})"
            ),
        }
    }
}

impl std::error::Error for Malformed {}

/// The signal a message carries, or why it carries none.
pub fn decode(payload: &[u8]) -> Result<Signal, Malformed> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Malformed::TooLarge {
            bytes: payload.len(),
        });
    }
    serde_json::from_slice(payload).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        match e.classify() {
            serde_json::error::Category::Data => Malformed::NotASignal { line, column },
            _ => Malformed::NotJson { line, column },
        }
    })
}

/// The message for `signal`.
pub fn encode(signal: &Signal) -> Vec<u8> {
    // A signal is strings, a map of strings, enums and a timestamp: it always
    // serialises. Should that ever change, an empty message is refused downstream as
    // malformed and counted, rather than a panic in the host.
    serde_json::to_vec(signal).unwrap_or_default()
}

/// The subject a service publishes on: `<prefix>.<service>`, with the characters a
/// subject token cannot hold (`.`, `*`, `>`, whitespace) replaced by `_`, and `_` for
/// an empty service name.
pub fn subject(prefix: &str, service: &str) -> String {
    let mut subject = String::with_capacity(prefix.len() + 1 + service.len().max(1));
    subject.push_str(prefix);
    subject.push('.');
    if service.is_empty() {
        subject.push('_');
    }
    subject.extend(service.chars().map(|c| match c {
        '.' | '*' | '>' => '_',
        c if c.is_whitespace() || c.is_control() => '_',
        c => c,
    }));
    subject
}

/// The service a subject names: its token after `prefix.`, for a signal published
/// without a service name.
pub(crate) fn service_of<'a>(prefix: &str, subject: &'a str) -> Option<&'a str> {
    subject
        .strip_prefix(prefix)?
        .strip_prefix('.')
        .filter(|s| !s.is_empty() && *s != "_")
}

#[cfg(test)]
mod tests {
    use selfheal_core::{Level, SignalSource};

    use super::*;

    #[test]
    fn a_signal_survives_the_trip() {
        let signal = Signal::new(
            "orders-db",
            "pool timed out while waiting for an open connection",
        )
        .service("orders")
        .level(Level::Warn)
        .source(SignalSource::Tracing)
        .stack("at orders::db::query")
        .field("error.type", "PoolTimedOut");
        assert_eq!(decode(&encode(&signal)), Ok(signal));
    }

    #[test]
    fn what_is_not_a_signal_is_refused_with_a_reason_that_never_quotes_it() {
        let secret = "password=hunter2";
        let cases: [(Vec<u8>, &str); 6] = [
            (format!("{{\"x\": \"{secret}").into_bytes(), "not JSON"),
            (vec![0xff, 0xfe, b'{'], "not JSON"),
            (Vec::new(), "not JSON"),
            (
                format!("{{\"message\": \"{secret}\"}}").into_bytes(),
                "not a signal",
            ),
            (
                br#"{"service":"a","target":"b","source":"log","level":"error","message":7,"stack":null,"fields":{},"timestamp":"2024-01-01T00:00:00Z"}"#.to_vec(),
                "not a signal",
            ),
            (
                br#"{"service":"a","target":"b","source":"carrier pigeon","level":"error","message":"m","stack":null,"fields":{},"timestamp":"2024-01-01T00:00:00Z"}"#.to_vec(),
                "not a signal",
            ),
        ];
        for (payload, why) in cases {
            let err = decode(&payload).expect_err("refused");
            let text = err.to_string();
            assert!(text.contains(why), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn a_huge_message_is_refused_before_it_is_read() {
        let huge = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert_eq!(
            decode(&huge),
            Err(Malformed::TooLarge {
                bytes: MAX_PAYLOAD_BYTES + 1
            })
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // Nested in a field a signal does not have, which the reader skips through.
        let deep = format!(
            "{{\"extra\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(decode(deep.as_bytes()).is_err());
        let deeper = format!("{}{}", "{\"message\":".repeat(100_000), "}".repeat(100_000));
        assert!(decode(deeper.as_bytes()).is_err());
    }

    #[test]
    fn a_subject_names_the_service_in_one_token() {
        assert_eq!(
            subject("selfheal.signals", "orders"),
            "selfheal.signals.orders"
        );
        assert_eq!(
            subject("selfheal.signals", "orders.eu *>\tx"),
            "selfheal.signals.orders_eu____x"
        );
        assert_eq!(subject("selfheal.signals", ""), "selfheal.signals._");
        assert_eq!(
            service_of("selfheal.signals", "selfheal.signals.orders"),
            Some("orders")
        );
        assert_eq!(service_of("selfheal.signals", "selfheal.signals._"), None);
        assert_eq!(service_of("selfheal.signals", "other.orders"), None);
    }
}
