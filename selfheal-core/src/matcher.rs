//! Finds the known pattern behind a signal: regex first, then BM25 keyword scoring.

use std::collections::HashMap;

use regex::Regex;

use crate::{Pattern, PatternMatch, PatternMode, Signal};

/// Keyword-only matches are weighted below regex matches: words alone are weaker evidence.
/// How much of a stack the regexes read: a 10 MB trace costs what 64 KiB does.
const MATCHED_STACK_BYTES: usize = 64 * 1024;
const KEYWORD_WEIGHT: f64 = 0.75;
/// A keyword match needs at least this share of the pattern's ideal BM25 score.
const KEYWORD_MIN_SHARE: f64 = 0.34;
const BM25_K1: f64 = 1.2;
const BM25_B: f64 = 0.75;

/// A compiled set of patterns. Cheap to query, rebuilt when patterns change.
#[derive(Debug, Default)]
pub struct Matcher {
    entries: Vec<Entry>,
    /// Document frequency of each term over the pattern documents.
    df: HashMap<String, usize>,
    avg_len: f64,
}

#[derive(Debug)]
struct Entry {
    pattern: Pattern,
    regex: Option<Regex>,
    /// Term frequencies of the pattern's document (name, description, keywords).
    terms: HashMap<String, usize>,
    len: usize,
    /// Terms of its keywords: the query that would score it best.
    keywords: Vec<String>,
}

impl Matcher {
    /// Compiles the enabled patterns. Patterns whose regex does not compile are skipped
    /// (the store refuses them when added, so this only guards against edited rows).
    pub fn new(patterns: &[Pattern]) -> Self {
        let mut entries = Vec::new();
        for p in patterns.iter().filter(|p| p.enabled) {
            let regex = match p.compile_regex() {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(pattern = %p.name, error = %e, "skipping pattern with invalid regex");
                    continue;
                }
            };
            let mut doc = tokens(&p.name);
            doc.extend(tokens(&p.description));
            let keywords: Vec<String> = p.keywords.iter().flat_map(|k| tokens(k)).collect();
            doc.extend(keywords.iter().cloned());
            let mut terms = HashMap::new();
            for t in &doc {
                *terms.entry(t.clone()).or_insert(0) += 1;
            }
            entries.push(Entry {
                pattern: p.clone(),
                regex,
                len: doc.len(),
                terms,
                keywords,
            });
        }
        let mut df = HashMap::new();
        for e in &entries {
            for t in e.terms.keys() {
                *df.entry(t.clone()).or_insert(0) += 1;
            }
        }
        let avg_len = if entries.is_empty() {
            1.0
        } else {
            entries.iter().map(|e| e.len).sum::<usize>() as f64 / entries.len() as f64
        };
        Matcher {
            entries,
            df,
            avg_len,
        }
    }

    /// The patterns it holds.
    pub fn patterns(&self) -> impl Iterator<Item = &Pattern> {
        self.entries.iter().map(|e| &e.pattern)
    }

    /// One pattern by name.
    pub fn pattern(&self, name: &str) -> Option<&Pattern> {
        self.patterns().find(|p| p.name == name)
    }

    /// Every pattern that matches `signal`, best first: highest severity, then confidence.
    ///
    /// A regex is tried against the message, the error-bearing fields
    /// ([`ERROR_FIELDS`](crate::ERROR_FIELDS)) and the stack; keywords are scored over
    /// the message and the error-bearing fields.
    pub fn matches(&self, signal: &Signal) -> Vec<PatternMatch> {
        let mut query = tokens(&signal.message);
        for text in error_texts(signal) {
            query.extend(tokens(text));
        }
        let mut out = Vec::new();
        for e in &self.entries {
            let p = &e.pattern;
            if !p.applies_to(signal) {
                continue;
            }
            if p.error_type
                .as_ref()
                .is_some_and(|t| signal.fields.get("error.type") != Some(t))
            {
                continue;
            }
            let mut reasons = Vec::new();
            if let Some(t) = &p.target {
                reasons.push(format!("target matches `{t}`"));
            }
            let regex_hit = e.regex.as_ref().is_some_and(|re| {
                re.is_match(&signal.message)
                    || error_texts(signal).any(|t| re.is_match(t))
                    || signal
                        .stack
                        .as_deref()
                        .is_some_and(|s| re.is_match(crate::signal::prefix(s, MATCHED_STACK_BYTES)))
            });
            let confidence = if regex_hit {
                reasons.push(format!(
                    "regex `{}` matched",
                    p.regex.as_deref().unwrap_or_default()
                ));
                p.confidence
            } else if !e.keywords.is_empty() {
                let share = self.bm25(e, &query) / self.bm25(e, &e.keywords).max(f64::EPSILON);
                if share < KEYWORD_MIN_SHARE {
                    continue;
                }
                reasons.push(format!(
                    "keywords scored {:.2} of the ideal (BM25)",
                    share.min(1.0)
                ));
                p.confidence * share.min(1.0) * KEYWORD_WEIGHT
            } else {
                continue;
            };
            if p.mode == PatternMode::AlertOnly {
                reasons.push("pattern is alert-only".to_owned());
            }
            out.push(PatternMatch {
                pattern: p.name.clone(),
                confidence,
                severity: p.severity,
                reasons,
            });
        }
        // Regex matches first (keywords are weaker evidence: a keyword-only match of a
        // severe pattern must not outrank the pattern whose regex matched), then the
        // highest severity, then confidence.
        out.sort_by(|a, b| {
            by_regex(b)
                .cmp(&by_regex(a))
                .then_with(|| b.severity.cmp(&a.severity))
                .then_with(|| b.confidence.total_cmp(&a.confidence))
        });
        out
    }

    /// The best match, if any.
    pub fn best(&self, signal: &Signal) -> Option<PatternMatch> {
        self.matches(signal).into_iter().next()
    }

    fn bm25(&self, e: &Entry, query: &[String]) -> f64 {
        let n = self.entries.len() as f64;
        let mut seen = std::collections::HashSet::new();
        query
            .iter()
            .filter(|t| seen.insert(t.as_str()))
            .filter_map(|t| {
                let tf = *e.terms.get(t)? as f64;
                let df = *self.df.get(t).unwrap_or(&0) as f64;
                let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                let norm = BM25_K1 * (1.0 - BM25_B + BM25_B * e.len as f64 / self.avg_len);
                Some(idf * tf * (BM25_K1 + 1.0) / (tf + norm))
            })
            .sum()
    }
}

/// The values of the signal's error-bearing fields that the message does not already hold.
fn error_texts(signal: &Signal) -> impl Iterator<Item = &str> {
    crate::ERROR_FIELDS
        .iter()
        .filter_map(|f| signal.fields.get(*f))
        .map(String::as_str)
        .filter(|t| !t.is_empty() && !signal.message.contains(*t))
}

/// Whether a match came from the pattern's regex (not from keywords alone).
fn by_regex(m: &PatternMatch) -> bool {
    m.reasons.iter().any(|r| r.starts_with("regex"))
}

/// Lower-case alphanumeric words of two or more characters; `_` and punctuation split.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 2 && !w.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;

    fn catalog() -> Vec<Pattern> {
        vec![
            Pattern::new("postgres_pool_exhausted")
                .regex(r"pool timed out while waiting for an open connection")
                .severity(Severity::High)
                .confidence(0.8),
            Pattern::new("redis_connection_refused")
                .description("Redis is not accepting connections")
                .keywords(["redis", "connection", "refused"])
                .confidence(0.9),
            Pattern::new("disk_full")
                .regex("No space left on device")
                .severity(Severity::Critical),
        ]
    }

    #[test]
    fn regex_match_carries_the_pattern_confidence_and_reason() {
        let m = Matcher::new(&catalog());
        let best = m
            .best(&Signal::new(
                "db",
                "error: pool timed out while waiting for an open connection",
            ))
            .unwrap();
        assert_eq!(best.pattern, "postgres_pool_exhausted");
        assert_eq!(best.confidence, 0.8);
        assert!(best.reasons[0].contains("regex"));
    }

    #[test]
    fn keywords_match_below_regex_confidence() {
        let m = Matcher::new(&catalog());
        let best = m
            .best(&Signal::new(
                "cache",
                "Redis connection refused by 10.0.0.1:6379",
            ))
            .unwrap();
        assert_eq!(best.pattern, "redis_connection_refused");
        assert!(
            best.confidence < 0.9 && best.confidence > 0.3,
            "{}",
            best.confidence
        );
        assert!(m.best(&Signal::new("cache", "user logged in")).is_none());
    }

    #[test]
    fn a_regex_match_outranks_a_more_severe_keyword_match() {
        let patterns = vec![
            Pattern::new("upstream_5xx")
                .keywords(["upstream", "http", "server", "error"])
                .severity(Severity::High),
            Pattern::new("refused").regex("connection refused"),
        ];
        let m = Matcher::new(&patterns);
        let all = m.matches(&Signal::new(
            "api",
            "error sending request: tcp connect error: Connection refused (os error 111); upstream server http error",
        ));
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].pattern, "refused");
    }

    #[test]
    fn error_fields_are_matched_like_the_message() {
        let m = Matcher::new(&catalog());
        for field in crate::ERROR_FIELDS {
            let s = Signal::new("db", "query failed")
                .field(field, "pool timed out while waiting for an open connection");
            assert_eq!(
                m.best(&s).map(|b| b.pattern),
                Some("postgres_pool_exhausted".to_owned()),
                "{field}"
            );
        }
        let other = Signal::new("db", "query failed").field(
            "detail",
            "pool timed out while waiting for an open connection",
        );
        assert!(m.best(&other).is_none(), "only error-bearing fields count");
    }

    #[test]
    fn highest_severity_wins_and_target_filters() {
        let mut patterns = catalog();
        patterns.push(Pattern::new("generic_io").regex("device").confidence(1.0));
        patterns.push(Pattern::new("only_redis").regex("space").target("redis"));
        let m = Matcher::new(&patterns);
        let all = m.matches(&Signal::new(
            "disk",
            "write failed: No space left on device",
        ));
        assert_eq!(all[0].pattern, "disk_full");
        assert!(all.iter().all(|x| x.pattern != "only_redis"));
    }
}
