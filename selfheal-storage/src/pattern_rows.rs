//! Pattern and fix rows, the same in both dialects (text, integers, booleans), and
//! their assembly into patterns.

use std::collections::HashMap;

use selfheal_core::{FixBinding, Pattern};

use crate::StorageError;
use crate::codec::{parse_duration_ns, parse_enum, parse_json, to_i32, to_u32, to_u64};

type Result<T, E = StorageError> = std::result::Result<T, E>;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PatternRow {
    name: String,
    description: String,
    regex: Option<String>,
    keywords: String,
    error_type: Option<String>,
    target: Option<String>,
    severity: String,
    root_cause: String,
    auto_healable: bool,
    confidence: f64,
    mode: String,
    min_occurrences: i64,
    window_ns: i64,
    use_count: i64,
    enabled: bool,
    ambiguous: bool,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct FixRow {
    pattern: String,
    strategy: String,
    params: String,
    priority: i64,
    requires_approval: bool,
    successes: i64,
    failures: i64,
}

impl FixRow {
    fn into_fix(self) -> Result<(String, FixBinding)> {
        let fix = FixBinding {
            strategy: self.strategy,
            params: parse_json("pattern_fixes.params", &self.params)?,
            priority: to_i32("pattern_fixes.priority", self.priority)?,
            requires_approval: self.requires_approval,
            successes: to_u64("pattern_fixes.successes", self.successes)?,
            failures: to_u64("pattern_fixes.failures", self.failures)?,
        };
        Ok((self.pattern, fix))
    }
}

/// Joins pattern rows with their fix rows (ordered by position) into patterns, keeping
/// the order of `patterns`.
pub(crate) fn assemble(patterns: Vec<PatternRow>, fixes: Vec<FixRow>) -> Result<Vec<Pattern>> {
    let mut by_pattern: HashMap<String, Vec<FixBinding>> = HashMap::new();
    for row in fixes {
        let (pattern, fix) = row.into_fix()?;
        by_pattern.entry(pattern).or_default().push(fix);
    }
    patterns
        .into_iter()
        .map(|row| {
            let fixes = by_pattern.remove(&row.name).unwrap_or_default();
            row.into_pattern(fixes)
        })
        .collect()
}

impl PatternRow {
    fn into_pattern(self, fixes: Vec<FixBinding>) -> Result<Pattern> {
        Ok(Pattern {
            keywords: parse_json("patterns.keywords", &self.keywords)?,
            severity: parse_enum("patterns.severity", &self.severity)?,
            mode: parse_enum("patterns.mode", &self.mode)?,
            min_occurrences: to_u32("patterns.min_occurrences", self.min_occurrences)?,
            window: parse_duration_ns("patterns.window_ns", self.window_ns)?,
            use_count: to_u64("patterns.use_count", self.use_count)?,
            name: self.name,
            description: self.description,
            regex: self.regex,
            error_type: self.error_type,
            target: self.target,
            root_cause: self.root_cause,
            auto_healable: self.auto_healable,
            confidence: self.confidence,
            fixes,
            enabled: self.enabled,
            ambiguous: self.ambiguous,
        })
    }
}
