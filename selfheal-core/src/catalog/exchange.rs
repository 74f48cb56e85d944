//! Export and import of patterns as a versioned JSON document, so one service's
//! knowledge seeds another's.
//!
//! ```
//! use selfheal_core::catalog::{self, ImportOptions};
//! use selfheal_core::{MemoryStore, PatternMode, PatternStore};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
//! let from = MemoryStore::new();
//! catalog::seed(&from).await?;
//! let json = catalog::export(&from.list_patterns().await?, "checkout-api")?;
//!
//! let to = MemoryStore::new();
//! let report = catalog::import(&to, &json, &ImportOptions::default()).await?;
//! assert_eq!(report.added.len(), catalog::stock().len());
//! // Imported patterns arrive alert-only unless the importer trusts the source.
//! let p = to.get_pattern("redis_oom").await?.unwrap();
//! assert_eq!(p.mode, PatternMode::AlertOnly);
//! # Ok(()) }
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, ErrorKind, Pattern, PatternMode, Result, Store};

/// The `format` of an export document.
pub const EXPORT_FORMAT: &str = "selfheal.patterns";
/// The `version` this release writes and reads.
pub const EXPORT_VERSION: u32 = 1;

/// An export: patterns with what made them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternDocument {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// The document version ([`EXPORT_VERSION`]).
    pub version: u32,
    /// When it was exported.
    pub exported_at: DateTime<Utc>,
    /// Who exported it (a service name), free text.
    #[serde(default)]
    pub source: String,
    /// The patterns, each as its JSON form (so one bad pattern does not spoil the rest).
    pub patterns: Vec<serde_json::Value>,
}

/// How to import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Replace patterns that exist already (default: skip them).
    pub replace_existing: bool,
    /// Keep each pattern's mode and auto-healable flag. Default: every imported pattern
    /// arrives alert-only and not auto-healable, for an operator to promote here.
    pub trust_modes: bool,
}

impl ImportOptions {
    /// Replace patterns that exist already.
    pub fn replace_existing(mut self, yes: bool) -> Self {
        self.replace_existing = yes;
        self
    }
    /// Keep modes and auto-healable flags as exported.
    pub fn trust_modes(mut self, yes: bool) -> Self {
        self.trust_modes = yes;
        self
    }
}

/// A pattern that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportError {
    /// Its position in the document, from 0.
    pub index: usize,
    /// Its name, when it has one.
    pub name: Option<String>,
    /// What is wrong, and what to do.
    pub message: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Patterns added.
    pub added: Vec<String>,
    /// Patterns that existed and were replaced.
    pub replaced: Vec<String>,
    /// Patterns that existed and were left alone.
    pub skipped: Vec<String>,
    /// Patterns refused, one entry each; the others were imported.
    pub errors: Vec<ImportError>,
}

/// `patterns` as an export document (pretty JSON) from `source`.
pub fn export(patterns: &[Pattern], source: &str) -> Result<String> {
    let doc = PatternDocument {
        format: EXPORT_FORMAT.to_owned(),
        version: EXPORT_VERSION,
        exported_at: Utc::now(),
        source: source.to_owned(),
        patterns: patterns
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                Error::new(ErrorKind::Internal, format!("cannot encode a pattern: {e}"))
            })?,
    };
    serde_json::to_string_pretty(&doc).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("cannot encode the export: {e}"),
        )
    })
}

/// Parses an export document; `InvalidInput` when it is not one this release reads.
pub fn parse(json: &str) -> Result<PatternDocument> {
    let doc: PatternDocument = serde_json::from_str(json).map_err(|e| {
        Error::invalid(format!(
            "not a pattern export: {}; pass the JSON written by catalog::export / Admin::export_patterns",
            crate::strict::explain(&e.to_string())
        ))
    })?;
    if doc.format != EXPORT_FORMAT {
        return Err(Error::invalid(format!(
            "document format is `{}`, not `{EXPORT_FORMAT}`; pass a pattern export",
            doc.format
        )));
    }
    if doc.version == 0 || doc.version > EXPORT_VERSION {
        return Err(Error::invalid(format!(
            "pattern export version {} is not supported (this release reads 1 to {EXPORT_VERSION}); upgrade selfheal or export again",
            doc.version
        )));
    }
    Ok(doc)
}

/// Imports an export document into `store`: each pattern is decoded and validated on
/// its own (an invalid regex is reported with the pattern's name and position), the
/// valid ones are added (or replaced / skipped), the rest are listed in
/// [`ImportReport::errors`]. Use counts and fix counters start from zero here; the
/// confidence comes along. `Err` only when the document itself is unreadable or the
/// store fails.
pub async fn import(
    store: &dyn Store,
    json: &str,
    options: &ImportOptions,
) -> Result<ImportReport> {
    let doc = parse(json)?;
    let mut report = ImportReport::default();
    let mut seen = std::collections::HashSet::new();
    for (index, value) in doc.patterns.into_iter().enumerate() {
        let name = value
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_owned);
        let fail = |message: String| ImportError {
            index,
            name: name.clone(),
            message,
        };
        let mut pattern: Pattern = match serde_json::from_value(value) {
            Ok(p) => p,
            Err(e) => {
                report.errors.push(fail(format!(
                    "not a pattern: {}; fix the document",
                    crate::strict::explain(&e.to_string())
                )));
                continue;
            }
        };
        if let Err(e) = pattern.validate() {
            report.errors.push(fail(e.message().to_owned()));
            continue;
        }
        if !seen.insert(pattern.name.clone()) {
            report.errors.push(fail(format!(
                "pattern `{}` appears twice in the document; keep one",
                pattern.name
            )));
            continue;
        }
        if !options.trust_modes {
            pattern.mode = PatternMode::AlertOnly;
            pattern.auto_healable = false;
        }
        pattern.use_count = 0;
        for fix in &mut pattern.fixes {
            fix.successes = 0;
            fix.failures = 0;
        }
        match store.get_pattern(&pattern.name).await? {
            None => {
                store.add_pattern(&pattern).await?;
                report.added.push(pattern.name);
            }
            Some(_) if options.replace_existing => {
                store.update_pattern(&pattern).await?;
                report.replaced.push(pattern.name);
            }
            Some(_) => report.skipped.push(pattern.name),
        }
    }
    Ok(report)
}
