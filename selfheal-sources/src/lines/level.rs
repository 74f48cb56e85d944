//! Level words and numbers, read without allocating.

use selfheal_core::Level;

/// What a line's level says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// A level below WARN (INFO, DEBUG, …): not a signal.
    Below,
    /// WARN or ERROR (and their synonyms).
    At(Level),
}

impl Seen {
    /// The signal level, `None` below WARN.
    pub(crate) fn level(self) -> Option<Level> {
        match self {
            Seen::Below => None,
            Seen::At(level) => Some(level),
        }
    }
}

/// Words for ERROR and worse (syslog's, log4j's, zerolog's short forms included).
const ERROR_WORDS: [&str; 12] = [
    "error",
    "err",
    "fatal",
    "ftl",
    "critical",
    "crit",
    "severe",
    "panic",
    "pnc",
    "emerg",
    "emergency",
    "alert",
];

/// Words for WARN.
const WARN_WORDS: [&str; 3] = ["warn", "warning", "wrn"];

/// Words for the levels under WARN.
const BELOW_WORDS: [&str; 15] = [
    "info",
    "inf",
    "information",
    "informational",
    "notice",
    "debug",
    "dbg",
    "trace",
    "trc",
    "verbose",
    "fine",
    "finer",
    "finest",
    "config",
    "dbug",
];

/// A level word in any case (`ERROR`, `warning`, `Fatal`); `None` when `word` is none.
pub(crate) fn word(word: &str) -> Option<Seen> {
    // Every level word is 3 to 13 ASCII letters: most tokens fail here at once.
    if !(3..=13).contains(&word.len()) {
        return None;
    }
    let is = |list: &[&str]| list.iter().any(|w| w.eq_ignore_ascii_case(word));
    if is(&ERROR_WORDS) {
        Some(Seen::At(Level::Error))
    } else if is(&WARN_WORDS) {
        Some(Seen::At(Level::Warn))
    } else if is(&BELOW_WORDS) {
        Some(Seen::Below)
    } else {
        None
    }
}

/// A numeric level: pino's and bunyan's (10 trace … 40 warn, 50 error, 60 fatal).
pub(crate) fn pino(n: u64) -> Option<Seen> {
    match n {
        10..=39 => Some(Seen::Below),
        40..=49 => Some(Seen::At(Level::Warn)),
        50..=69 => Some(Seen::At(Level::Error)),
        _ => None,
    }
}

/// A syslog severity (journald's `PRIORITY`): 0 emerg … 3 err, 4 warning, 5+ below.
pub(crate) fn syslog(n: u64) -> Option<Seen> {
    match n {
        0..=3 => Some(Seen::At(Level::Error)),
        4 => Some(Seen::At(Level::Warn)),
        5..=7 => Some(Seen::Below),
        _ => None,
    }
}

/// The level a structured value under `key` says: a word, or a number for the keys
/// that carry one (`level` as pino does, `PRIORITY` as journald does).
pub(crate) fn value(key: &str, value: &str) -> Option<Seen> {
    if let Ok(n) = value.parse::<u64>() {
        return if key.eq_ignore_ascii_case("priority") {
            syslog(n)
        } else {
            pino(n)
        };
    }
    word(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_in_any_case() {
        assert_eq!(word("ERROR"), Some(Seen::At(Level::Error)));
        assert_eq!(word("Warning"), Some(Seen::At(Level::Warn)));
        assert_eq!(word("fatal"), Some(Seen::At(Level::Error)));
        assert_eq!(word("INFO"), Some(Seen::Below));
        assert_eq!(word("orders"), None);
        assert_eq!(word("E"), None);
    }

    #[test]
    fn numbers_by_key() {
        assert_eq!(value("level", "50"), Some(Seen::At(Level::Error)));
        assert_eq!(value("level", "40"), Some(Seen::At(Level::Warn)));
        assert_eq!(value("level", "30"), Some(Seen::Below));
        assert_eq!(value("PRIORITY", "3"), Some(Seen::At(Level::Error)));
        assert_eq!(value("PRIORITY", "6"), Some(Seen::Below));
        assert_eq!(value("level", "7"), None);
    }
}
