//! A Loki entry to a [`Signal`]: the line is the message, the stream's labels (and the
//! entry's structured metadata) are fields, a label names the target, and the level
//! comes from a `level`/`detected_level` label or the first level word of the line.
//!
//! This is the simple mapping of the Loki source. The shared line parser
//! (`selfheal_sources::lines`: JSON, logfmt, stack traces) plugs in at
//! [`to_signal`] once it lands: parse the line with it, then lay the labels over.

use chrono::{DateTime, Utc};
use selfheal_core::{Level, Signal, SignalSource};

use super::answer::Entry;

/// Labels read for the level, in order.
const LEVEL_LABELS: [&str; 4] = ["level", "detected_level", "severity", "lvl"];
/// Labels that name the target when the configured one is missing, in order.
const TARGET_LABELS: [&str; 5] = ["service_name", "service", "app", "job", "container"];
/// How far into a line a level word is looked for.
const LEVEL_WORD_WITHIN: usize = 256;

/// How the entries of one source become signals.
#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    /// The label naming the target, tried first.
    pub(crate) target_label: String,
    /// The target when no label names one.
    pub(crate) default_target: String,
}

/// What an entry says about its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    /// Warn or error: a signal.
    Level(Level),
    /// Info, debug or trace: not a signal.
    Below,
    /// Nothing: the query selected it, so it counts as an error.
    Nothing,
}

/// The signal of `entry`; `None` when its level is below warn.
pub(crate) fn to_signal(entry: &Entry, mapping: &Mapping) -> Option<Signal> {
    let level = match level_of(entry) {
        Said::Level(level) => level,
        Said::Below => return None,
        Said::Nothing => Level::Error,
    };
    let label = |name: &str| {
        entry
            .metadata
            .get(name)
            .or_else(|| entry.labels.get(name))
            .filter(|v| !v.is_empty())
    };
    let target = std::iter::once(mapping.target_label.as_str())
        .chain(TARGET_LABELS)
        .find_map(label)
        .cloned()
        .unwrap_or_else(|| mapping.default_target.clone());
    let mut signal = Signal::new(target, entry.line.clone())
        .source(SignalSource::Log)
        .level(level);
    if let Some(service) = label("service_name") {
        signal.service.clone_from(service);
    }
    for (k, v) in entry.labels.iter().chain(&entry.metadata) {
        signal.fields.insert(k.clone(), v.clone());
    }
    signal.timestamp = DateTime::<Utc>::from_timestamp_nanos(entry.ts);
    Some(signal)
}

fn level_of(entry: &Entry) -> Said {
    let labelled = LEVEL_LABELS
        .iter()
        .find_map(|k| entry.metadata.get(*k).or_else(|| entry.labels.get(*k)));
    if let Some(said) = labelled
        .map(|l| level_word(l))
        .filter(|s| *s != Said::Nothing)
    {
        return said;
    }
    let mut head = &entry.line[..];
    if head.len() > LEVEL_WORD_WITHIN {
        let mut cut = LEVEL_WORD_WITHIN;
        while !head.is_char_boundary(cut) {
            cut -= 1;
        }
        head = &head[..cut];
    }
    head.split(|c: char| !c.is_ascii_alphabetic())
        .map(level_word)
        .find(|s| *s != Said::Nothing)
        .unwrap_or(Said::Nothing)
}

fn level_word(word: &str) -> Said {
    match word.to_ascii_lowercase().as_str() {
        "error" | "err" | "fatal" | "panic" | "critical" | "crit" | "alert" | "emerg"
        | "emergency" | "severe" => Said::Level(Level::Error),
        "warn" | "warning" => Said::Level(Level::Warn),
        "info" | "information" | "notice" | "debug" | "trace" | "dbug" => Said::Below,
        _ => Said::Nothing,
    }
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
            default_target: "loki".into(),
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
