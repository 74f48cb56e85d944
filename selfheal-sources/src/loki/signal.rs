//! A Loki entry to a [`Signal`], read by the same [`LineParser`] as a file's lines, so
//! one line gives one signal (message, level, logger, fields) whichever source read
//! it; then the stream's labels (and the entry's structured metadata) are laid over
//! as fields, a label names the target, and the timestamp is Loki's.
//!
//! The level: the line's own (as in a file: below WARN, the line is not a signal);
//! for a line without one, a `level`/`detected_level`/`severity`/`lvl` label (below
//! WARN is skipped too); with neither, the line is an error, since the LogQL query
//! chose it (a file tail drops such lines: it reads everything). Each entry is read
//! alone: Loki keeps one line per entry, so stack traces are not joined across entries
//! (a trace shipped as one multi-line entry is kept whole as the message).

use chrono::{DateTime, Utc};
use selfheal_core::{Level, Signal, SignalSource};

use super::answer::Entry;
use crate::lines::level::{self, Seen};
use crate::lines::{LineParser, Read};

/// Labels read for the level, in order.
const LEVEL_LABELS: [&str; 4] = ["level", "detected_level", "severity", "lvl"];
/// Labels that name the target when the configured one is missing, in order.
const TARGET_LABELS: [&str; 5] = ["service_name", "service", "app", "job", "container"];

/// How the entries of one source become signals.
#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    /// The label naming the target, tried first.
    pub(crate) target_label: String,
    /// Reads each line; its default target is the target when no label names one.
    pub(crate) parser: LineParser,
}

/// The signal of `entry`; `None` when its level is below warn.
pub(crate) fn to_signal(entry: &Entry, mapping: &Mapping) -> Option<Signal> {
    let label = |name: &str| {
        entry
            .metadata
            .get(name)
            .or_else(|| entry.labels.get(name))
            .filter(|v| !v.is_empty())
    };
    let mut signal = match mapping.parser.read(&entry.line) {
        Read::Signal(signal) => signal,
        Read::Below => return None,
        Read::Unleveled => {
            let level = match LEVEL_LABELS
                .iter()
                .find_map(|k| label(k).and_then(|v| level::value(k, v)))
            {
                Some(Seen::At(level)) => level,
                Some(Seen::Below) => return None,
                None => Level::Error,
            };
            Signal::new(mapping.parser.default_target(), entry.line.trim()).level(level)
        }
    };
    if let Some(target) = std::iter::once(mapping.target_label.as_str())
        .chain(TARGET_LABELS)
        .find_map(label)
    {
        signal.target.clone_from(target);
    }
    signal.source = SignalSource::Log;
    if let Some(service) = label("service_name") {
        signal.service.clone_from(service);
    }
    for (k, v) in entry.labels.iter().chain(&entry.metadata) {
        signal.fields.insert(k.clone(), v.clone());
    }
    signal.timestamp = DateTime::<Utc>::from_timestamp_nanos(entry.ts);
    Some(signal)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::loki::answer::Labels;

    fn entry(labels: &[(&str, &str)], line: &str) -> Entry {
        Entry {
            ts: 1_700_000_000_000_000_001,
            labels: Arc::new(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<Labels>(),
            ),
            metadata: Labels::new(),
            line: line.to_owned(),
        }
    }

    fn mapping() -> Mapping {
        Mapping {
            target_label: "service_name".into(),
            parser: LineParser::new("loki"),
        }
    }

    #[test]
    fn labels_become_fields_and_name_the_target() {
        let s = to_signal(
            &entry(
                &[("service_name", "checkout"), ("env", "prod")],
                "connection refused",
            ),
            &mapping(),
        )
        .unwrap();
        assert_eq!(
            (s.target.as_str(), s.service.as_str()),
            ("checkout", "checkout")
        );
        assert_eq!(s.fields["env"], "prod");
        assert_eq!(s.level, Level::Error, "nothing said: the query chose it");
        assert_eq!(
            s.timestamp.timestamp_nanos_opt(),
            Some(1_700_000_000_000_000_001)
        );
        let s = to_signal(&entry(&[("job", "batch")], "x"), &mapping()).unwrap();
        assert_eq!(s.target, "batch", "a fallback label");
        let s = to_signal(&entry(&[], "x"), &mapping()).unwrap();
        assert_eq!(s.target, "loki", "the default target");
        let custom = Mapping {
            target_label: "peer".into(),
            ..mapping()
        };
        let s = to_signal(&entry(&[("peer", "redis"), ("app", "api")], "x"), &custom).unwrap();
        assert_eq!(s.target, "redis", "the configured label first");
    }

    #[test]
    fn the_level_comes_from_a_label_or_the_first_level_word() {
        let level = |labels: &[(&str, &str)], line: &str| {
            to_signal(&entry(labels, line), &mapping()).map(|s| s.level)
        };
        assert_eq!(
            level(&[("level", "warn")], "disk at 91%"),
            Some(Level::Warn)
        );
        assert_eq!(level(&[("detected_level", "info")], "an error word"), None);
        assert_eq!(
            level(&[("level", "unknown")], "WARNING: x"),
            Some(Level::Warn)
        );
        assert_eq!(level(&[], "ts=1 level=error msg=boom"), Some(Level::Error));
        assert_eq!(level(&[], r#"{"level":"debug","msg":"error"}"#), None);
        assert_eq!(level(&[], "[INFO] started"), None);
        assert_eq!(level(&[], "connection refused"), Some(Level::Error));
        let long = format!("{} warn", "é".repeat(200));
        assert_eq!(
            level(&[], &long),
            Some(Level::Error),
            "only the head is read"
        );
    }
}
