//! Known failures: what they look like and how to fix them.

use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How bad a failure is; the highest wins when several patterns match.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Severity {
    /// Cosmetic or self-limiting.
    Low,
    /// Degrades the service.
    #[default]
    Medium,
    /// Breaks a feature.
    High,
    /// Takes the service down.
    Critical,
}

impl Severity {
    /// The lower-case name stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Whether a pattern may act or only notify.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PatternMode {
    /// Matches lead to decisions and actions.
    Active,
    /// Matches only notify (the default for newly added patterns).
    #[default]
    AlertOnly,
}

/// A fix bound to a pattern: which strategy, with which parameters, in which order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixBinding {
    /// The registered strategy's name.
    pub strategy: String,
    /// Parameters handed to the strategy (validated by it).
    #[serde(default)]
    pub params: serde_json::Value,
    /// Lower runs first.
    #[serde(default)]
    pub priority: i32,
    /// Always wait for a human before running this fix.
    #[serde(default)]
    pub requires_approval: bool,
    /// Verified successes so far.
    #[serde(default)]
    pub successes: u64,
    /// Failures so far.
    #[serde(default)]
    pub failures: u64,
}

impl FixBinding {
    /// A fix running `strategy` with no parameters.
    pub fn new(strategy: impl Into<String>) -> Self {
        FixBinding {
            strategy: strategy.into(),
            params: serde_json::Value::Null,
            priority: 0,
            requires_approval: false,
            successes: 0,
            failures: 0,
        }
    }

    /// Sets the parameters.
    pub fn params(mut self, params: serde_json::Value) -> Self {
        self.params = params;
        self
    }

    /// Sets the priority (lower runs first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Requires approval before running.
    pub fn requires_approval(mut self, yes: bool) -> Self {
        self.requires_approval = yes;
        self
    }

    /// Successes over attempts, `None` before the first attempt.
    pub fn success_rate(&self) -> Option<f64> {
        let total = self.successes + self.failures;
        (total > 0).then(|| self.successes as f64 / total as f64)
    }
}

/// A known failure: how to recognise it and how to fix it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    /// Unique name, e.g. `postgres_connection_pool_exhausted`.
    pub name: String,
    /// What it means, in a sentence (also scored by keyword matching).
    #[serde(default)]
    pub description: String,
    /// A regex over the signal's message and stack; checked when the pattern is added.
    #[serde(default)]
    pub regex: Option<String>,
    /// Words that suggest this pattern when no regex matches (BM25-scored).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Only match signals whose `error.type` field equals this.
    #[serde(default)]
    pub error_type: Option<String>,
    /// Only match signals for this target: an exact name or a glob.
    ///
    /// An exact name (no `*` or `|`) must equal the signal's target, case and all, and
    /// no field is tried. A glob (any `*` or `|` makes one, so `redis|cache` is a glob:
    /// `*` matches any run of characters, `|` separates alternatives) such as
    /// `*postgres*|*pg*` is case-insensitive and matches whole segments of the name,
    /// split at `-`, `_`, `.`, `/` and `:`: `*pg*` matches `pg-main` and `orders.pg`,
    /// not `upgrade-worker`. A glob is tried against the signal's target and its
    /// `db.system`, `db.system.name` and `peer.service` fields.
    #[serde(default)]
    pub target: Option<String>,
    /// How bad it is.
    #[serde(default)]
    pub severity: Severity,
    /// The usual root cause, for humans.
    #[serde(default)]
    pub root_cause: String,
    /// Whether fixes may run without approval when confidence is high.
    #[serde(default)]
    pub auto_healable: bool,
    /// Learned confidence in [0, 1].
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Active or alert-only.
    #[serde(default)]
    pub mode: PatternMode,
    /// Occurrences needed within `window` before an incident opens (one external alert
    /// is enough on its own; see [`Pattern::threshold`]).
    #[serde(default = "default_min_occurrences")]
    pub min_occurrences: u32,
    /// The detection window.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// Fixes, tried in priority order.
    #[serde(default)]
    pub fixes: Vec<FixBinding>,
    /// Verified successful heals.
    #[serde(default)]
    pub use_count: u64,
    /// Disabled patterns never match.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The text has more than one cause (sqlx's `pool timed out` is a saturated pool, a
    /// database out of slots, or a database that is down). Before deciding, the healer
    /// asks the target's verifier ([`crate::Verifier::diagnose`]), and when the probe
    /// names another pattern, that pattern explains the incident instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ambiguous: bool,
}

fn default_confidence() -> f64 {
    0.5
}
fn default_min_occurrences() -> u32 {
    3
}
fn default_window() -> Duration {
    Duration::from_secs(60)
}
fn default_true() -> bool {
    true
}

impl Pattern {
    /// A new alert-only pattern with default confidence (0.5), 3 occurrences in 60 s.
    pub fn new(name: impl Into<String>) -> Self {
        Pattern {
            name: name.into(),
            description: String::new(),
            regex: None,
            keywords: Vec::new(),
            error_type: None,
            target: None,
            severity: Severity::Medium,
            root_cause: String::new(),
            auto_healable: false,
            confidence: default_confidence(),
            mode: PatternMode::AlertOnly,
            min_occurrences: default_min_occurrences(),
            window: default_window(),
            fixes: Vec::new(),
            use_count: 0,
            enabled: true,
            ambiguous: false,
        }
    }

    /// Declares that the text has more than one cause, so the target's probe decides
    /// which pattern explains it (see [`Pattern::ambiguous`]).
    pub fn ambiguous(mut self, yes: bool) -> Self {
        self.ambiguous = yes;
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }
    /// Sets the regex (checked by [`Pattern::validate`]).
    pub fn regex(mut self, regex: impl Into<String>) -> Self {
        self.regex = Some(regex.into());
        self
    }
    /// Sets the keywords.
    pub fn keywords<I: IntoIterator<Item = S>, S: Into<String>>(mut self, words: I) -> Self {
        self.keywords = words.into_iter().map(Into::into).collect();
        self
    }
    /// Restricts the pattern to one target, or to the targets a glob matches
    /// (see [`Pattern::target`](Pattern#structfield.target)).
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }
    /// Sets the severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }
    /// Sets the root cause.
    pub fn root_cause(mut self, root_cause: impl Into<String>) -> Self {
        self.root_cause = root_cause.into();
        self
    }
    /// Marks the pattern as safe to fix without approval at high confidence.
    pub fn auto_healable(mut self, yes: bool) -> Self {
        self.auto_healable = yes;
        self
    }
    /// Sets the starting confidence.
    pub fn confidence(mut self, confidence: f64) -> Self {
        self.confidence = confidence;
        self
    }
    /// Sets the mode.
    pub fn mode(mut self, mode: PatternMode) -> Self {
        self.mode = mode;
        self
    }
    /// Sets the detection threshold: `n` occurrences within `window`. A signal from
    /// another system's alerting ([`SignalSource::External`](crate::SignalSource::External),
    /// such as an Alertmanager alert, whose `for:` already applied its own rule) that
    /// the pattern matches meets it on its own: one firing alert opens the incident.
    pub fn threshold(mut self, n: u32, window: Duration) -> Self {
        self.min_occurrences = n;
        self.window = window;
        self
    }
    /// Adds a fix.
    pub fn fix(mut self, fix: FixBinding) -> Self {
        self.fixes.push(fix);
        self
    }

    /// Checks the pattern: a name, a regex that compiles, a confidence in [0, 1],
    /// at least one occurrence, and something to match on.
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::invalid(
                "pattern has an empty name; give it a unique name",
            ));
        }
        if let Some(re) = &self.regex {
            self.compile_regex().map_err(|e| {
                Error::invalid(format!(
                    "invalid regex in pattern `{}`: {}; fix the pattern",
                    self.name,
                    first_line(&e.to_string())
                ))
                .with_source(e)
            })?;
            if re.is_empty() {
                return Err(Error::invalid(format!(
                    "pattern `{}` has an empty regex, which would match everything; remove it or write one",
                    self.name
                )));
            }
        }
        if let Some(t) = &self.target
            && (t.trim().is_empty() || (is_glob(t) && t.split('|').any(|a| a.trim().is_empty())))
        {
            return Err(Error::invalid(format!(
                "pattern `{}` has an empty target or an empty `|` alternative in `{t}`; name the target or remove it",
                self.name
            )));
        }
        if self.regex.is_none() && self.keywords.is_empty() {
            return Err(Error::invalid(format!(
                "pattern `{}` has neither a regex nor keywords, so it can never match; add one",
                self.name
            )));
        }
        if !(0.0..=1.0).contains(&self.confidence) || self.confidence.is_nan() {
            return Err(Error::invalid(format!(
                "pattern `{}` has confidence {}; use a value between 0 and 1",
                self.name, self.confidence
            )));
        }
        if self.min_occurrences == 0 {
            return Err(Error::invalid(format!(
                "pattern `{}` has min_occurrences 0; use 1 to open an incident on the first occurrence",
                self.name
            )));
        }
        Ok(())
    }

    /// Whether the pattern's target restriction lets `signal` through: always without
    /// one; an exact name must equal the signal's target (case-sensitive, fields not
    /// tried); a glob (`*`, `|`; case-insensitive) may match the target or the
    /// `db.system`, `db.system.name` or `peer.service` field.
    pub fn applies_to(&self, signal: &crate::Signal) -> bool {
        self.target
            .as_deref()
            .is_none_or(|spec| TargetSpec::new(spec).admits(signal))
    }

    /// Compiles the regex (case-insensitive unless the regex says otherwise).
    pub fn compile_regex(&self) -> Result<Option<Regex>, regex::Error> {
        self.regex
            .as_deref()
            .map(|re| {
                regex::RegexBuilder::new(re)
                    .case_insensitive(true)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
            })
            .transpose()
    }

    /// Fixes in the order they are tried: priority, then success rate.
    pub fn ordered_fixes(&self) -> Vec<&FixBinding> {
        let mut fixes: Vec<&FixBinding> = self.fixes.iter().collect();
        fixes.sort_by(|a, b| {
            a.priority.cmp(&b.priority).then_with(|| {
                let ra = a.success_rate().unwrap_or(0.5);
                let rb = b.success_rate().unwrap_or(0.5);
                rb.total_cmp(&ra)
            })
        });
        fixes
    }
}

/// How big one pattern's compiled regex may grow ([`Pattern::compile_regex`]).
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles many patterns' regexes as one set, with the options of
/// [`Pattern::compile_regex`] (case-insensitive unless a regex says otherwise), so a set
/// member matches exactly where the pattern's own regex does. `size_limit` bounds the
/// whole set; `cache` is the lazy DFA's cache (a speed knob, not a semantic one).
pub(crate) fn regex_set<'a>(
    regexes: impl IntoIterator<Item = &'a str>,
    size_limit: usize,
    cache: usize,
) -> Result<regex::RegexSet, regex::Error> {
    regex::RegexSetBuilder::new(regexes)
        .case_insensitive(true)
        .size_limit(size_limit)
        .dfa_size_limit(cache)
        .build()
}

/// Signal fields a target glob is also tried against (OpenTelemetry's names).
const TARGET_FIELDS: [&str; 3] = ["db.system", "db.system.name", "peer.service"];

fn is_glob(spec: &str) -> bool {
    spec.contains('*') || spec.contains('|')
}

/// A pattern's target restriction ([`Pattern::applies_to`]), read once: the matcher
/// keeps one per distinct restriction instead of splitting and lower-casing it for
/// every signal.
#[derive(Debug, Clone)]
pub(crate) enum TargetSpec {
    /// A name the signal's target must equal.
    Exact(String),
    /// `|`-separated globs, trimmed, lower-cased, without empty ones: case-insensitive,
    /// each matched against the target or a [`TARGET_FIELDS`] field.
    Glob(Vec<SegmentGlob>),
}

impl TargetSpec {
    /// Reads a pattern's `target`.
    pub(crate) fn new(spec: &str) -> Self {
        if !is_glob(spec) {
            return TargetSpec::Exact(spec.to_owned());
        }
        TargetSpec::Glob(
            spec.split('|')
                .map(|alt| lowercase(alt.trim()))
                .filter(|alt| !alt.is_empty())
                .map(|alt| SegmentGlob::new(&alt))
                .collect(),
        )
    }

    /// Whether it lets `signal` through.
    pub(crate) fn admits(&self, signal: &crate::Signal) -> bool {
        let globs = match self {
            TargetSpec::Exact(name) => return *name == signal.target,
            TargetSpec::Glob(globs) => globs,
        };
        std::iter::once(signal.target.as_str())
            .chain(
                TARGET_FIELDS
                    .iter()
                    .filter_map(|f| signal.fields.get(*f).map(String::as_str)),
            )
            .any(|candidate| {
                let candidate = lowercase(candidate);
                globs.iter().any(|glob| glob.matches(&candidate))
            })
    }
}

/// `s.to_lowercase()`, without a copy when `s` is lower-case ASCII already (the
/// matcher asks on every signal).
fn lowercase(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(s.to_lowercase())
    }
}

/// Whether `c` separates the segments of a target name.
fn is_separator(c: char) -> bool {
    matches!(c, '-' | '_' | '.' | '/' | ':')
}

/// A glob over whole segments: `*` matches any run of characters, and each literal part
/// between stars must begin and end on a segment boundary of the text (its start or
/// end, or next to one of `-` `_` `.` `/` `:`). So `*stream*` matches `sse-stream` and
/// `stream`, never `upstream-api`; `*pg*` matches `pg-main`, never `upgrade-worker`.
///
/// Split at its stars once, when read: `first*middle…*last`.
#[derive(Debug, Clone)]
pub(crate) struct SegmentGlob {
    first: String,
    /// The parts between the first and the last star, empty ones dropped; `None`
    /// without a star (the text must equal `first`).
    middle: Option<Vec<String>>,
    last: String,
}

impl SegmentGlob {
    fn new(glob: &str) -> Self {
        let Some((first, rest)) = glob.split_once('*') else {
            return SegmentGlob {
                first: glob.to_owned(),
                middle: None,
                last: String::new(),
            };
        };
        let (middle, last) = rest.rsplit_once('*').unwrap_or(("", rest));
        SegmentGlob {
            first: first.to_owned(),
            middle: Some(
                middle
                    .split('*')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            last: last.to_owned(),
        }
    }

    fn matches(&self, text: &str) -> bool {
        let boundary_before =
            |at: usize| at == 0 || text[..at].chars().next_back().is_some_and(is_separator);
        let boundary_after =
            |at: usize| at == text.len() || text[at..].chars().next().is_some_and(is_separator);
        // A part that starts or ends with a separator brings its own boundary.
        let starts_ok = |part: &str, at: usize| {
            part.is_empty() || part.starts_with(is_separator) || boundary_before(at)
        };
        let ends_ok = |part: &str, end: usize| {
            part.is_empty() || part.ends_with(is_separator) || boundary_after(end)
        };
        let (first, last) = (self.first.as_str(), self.last.as_str());
        let Some(middle) = &self.middle else {
            return first == text;
        };
        if !text.starts_with(first) || !ends_ok(first, first.len()) {
            return false;
        }
        if text.len() < first.len() + last.len() || !text.ends_with(last) {
            return false;
        }
        let last_at = text.len() - last.len();
        if !starts_ok(last, last_at) {
            return false;
        }
        // Greedy leftmost placement of the middle parts, each on segment boundaries.
        let mut pos = first.len();
        for part in middle {
            // Target names are short: looking for the part's first byte beats setting
            // up a substring searcher. A match of valid UTF-8 starts on a char boundary.
            let lead = part.as_bytes()[0];
            let found = (pos..last_at).find(|&at| {
                text.as_bytes()[at] == lead
                    && text[at..last_at].starts_with(part.as_str())
                    && starts_ok(part, at)
                    && ends_ok(part, at + part.len())
            });
            match found {
                Some(at) => pos = at + part.len(),
                None => return false,
            }
        }
        true
    }
}

/// [`SegmentGlob`] read and matched at once.
#[cfg(test)]
fn segment_wildcard(glob: &str, text: &str) -> bool {
    SegmentGlob::new(glob).matches(text)
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_regex_is_refused_with_the_pattern_name() {
        let err = Pattern::new("redis_oom")
            .regex("OOM (command")
            .validate()
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        assert!(
            err.message()
                .contains("invalid regex in pattern `redis_oom`"),
            "{err}"
        );
        assert!(err.message().ends_with("fix the pattern"), "{err}");
    }

    #[test]
    fn pattern_needs_something_to_match() {
        assert!(Pattern::new("empty").validate().is_err());
        assert!(Pattern::new("kw").keywords(["pool"]).validate().is_ok());
        assert!(
            Pattern::new("c")
                .regex("x")
                .confidence(1.5)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn fixes_are_ordered_by_priority_then_success_rate() {
        let mut good = FixBinding::new("good").priority(1);
        good.successes = 9;
        let mut bad = FixBinding::new("bad").priority(1);
        bad.failures = 9;
        let first = FixBinding::new("first").priority(0);
        let p = Pattern::new("p").regex("x").fix(bad).fix(good).fix(first);
        let order: Vec<&str> = p
            .ordered_fixes()
            .iter()
            .map(|f| f.strategy.as_str())
            .collect();
        assert_eq!(order, ["first", "good", "bad"]);
    }

    #[test]
    fn target_globs_match_the_target_or_the_db_system_field() {
        let p = Pattern::new("p")
            .regex("x")
            .target("*postgres*|*postgresql*|*pg*");
        assert!(p.applies_to(&crate::Signal::new("orders-postgres", "x")));
        assert!(p.applies_to(&crate::Signal::new("PG-main", "x")));
        assert!(!p.applies_to(&crate::Signal::new("redis-cache", "x")));
        let by_field = crate::Signal::new("orders-db", "x").field("db.system", "postgresql");
        assert!(p.applies_to(&by_field));
        let exact = Pattern::new("p").regex("x").target("redis");
        assert!(exact.applies_to(&crate::Signal::new("redis", "x")));
        assert!(!exact.applies_to(&crate::Signal::new("redis-cache", "x")));
        // An exact name is case-sensitive and tries no field, as documented; a `|`
        // makes a glob, which is neither.
        assert!(!exact.applies_to(&crate::Signal::new("Redis", "x")));
        assert!(!exact.applies_to(&crate::Signal::new("app", "x").field("peer.service", "redis")));
        let either = Pattern::new("p").regex("x").target("redis|cache");
        assert!(either.applies_to(&crate::Signal::new("CACHE", "x")));
        assert!(either.applies_to(&crate::Signal::new("app", "x").field("peer.service", "redis")));
        assert!(
            Pattern::new("p")
                .regex("x")
                .applies_to(&crate::Signal::new("any", "x"))
        );
        assert!(segment_wildcard("a*b*c", "a-xx-b-yy-c") && !segment_wildcard("a*b*c", "a-xx-c"));
        assert!(segment_wildcard("*", "") && !segment_wildcard("ab*ba", "aba"));
        let empty_alt = Pattern::new("p").regex("x").target("*redis*|").validate();
        assert!(
            empty_alt
                .unwrap_err()
                .message()
                .contains("empty `|` alternative")
        );
    }

    #[test]
    fn target_globs_match_whole_segments_only() {
        let applies = |glob: &str, target: &str| {
            Pattern::new("p")
                .regex("x")
                .target(glob)
                .applies_to(&crate::Signal::new(target, "x"))
        };
        // A part is tried at every place, overlapping ones too: `a-a` at 1 is inside
        // `xa`, at 3 it is whole.
        assert!(applies("*a-a*", "xa-a-a"));
        assert!(!applies("*a-a*", "xa-a-ab"));
        // Near-misses: the word is inside another word.
        assert!(!applies("*stream*", "upstream-api"));
        assert!(!applies("*sse*", "assets-cdn"));
        assert!(!applies("*pg*", "upgrade-worker"));
        assert!(!applies("*redis*", "rediscover-svc"));
        // Whole segments, whatever the separator.
        assert!(applies("*redis*", "redis-cache"));
        assert!(applies("*redis*", "cache.redis"));
        assert!(applies("*redis*", "svc::redis::pool"));
        assert!(applies("*pg*", "pg-main"));
        assert!(applies("*stream*", "sse_stream"));
        assert!(applies("*sse*", "sse_stream"));
        assert!(applies("*stream*", "stream"));
        assert!(applies("*stream*", "Chat/Stream"));
        // A literal with a separator inside, and an anchored prefix.
        assert!(applies("*redis-cache*", "eu.redis-cache.1"));
        assert!(!applies("*redis-cache*", "redis-cachex"));
        assert!(applies("pg-*", "pg-main") && !applies("pg-*", "pgx-main"));
        assert!(applies("redis*", "redis_sessions") && !applies("redis*", "redisx"));
    }

    #[test]
    fn pattern_deserializes_with_defaults() {
        let p: Pattern = serde_json::from_value(serde_json::json!({
            "name": "x", "regex": "boom", "window": "5m"
        }))
        .unwrap();
        assert_eq!(p.window, Duration::from_secs(300));
        assert_eq!(p.mode, PatternMode::AlertOnly);
        assert!(p.enabled);
    }
}
