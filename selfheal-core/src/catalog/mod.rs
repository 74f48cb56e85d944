//! The stock pattern catalog: known failures of Redis, Postgres, HTTP upstreams, LLM
//! providers and the OS, as data, with the seeding that puts them in a store and
//! upgrades them later without clobbering what operators changed.
//!
//! Seeding ([`seed`]) adds every stock pattern a store lacks. A stored stock pattern
//! is upgraded to the current definition only when its stored *definition* (everything
//! but the learned confidence, use count and fix counters) is one the catalog shipped
//! at some point: an operator's change (a promotion, a new regex, a disabled pattern)
//! is kept and logged instead. The hashes of every shipped definition live in
//! `shipped.json` beside this module; a test fails when a definition changes without
//! its new hash being recorded there.
//!
//! ```
//! use selfheal_core::{MemoryStore, PatternStore, catalog};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
//! let store = MemoryStore::new();
//! let report = catalog::seed(&store).await?;
//! assert_eq!(report.added.len(), catalog::stock().len());
//! // Seeding again changes nothing.
//! assert!(catalog::seed(&store).await?.added.is_empty());
//! let oom = store.get_pattern("redis_oom").await?.unwrap();
//! assert!(!oom.auto_healable, "stock patterns ship waiting for approval");
//! // Except reconnecting a Redis client after a restart, which is harmless.
//! assert!(store.get_pattern("redis_connection_lost").await?.unwrap().auto_healable);
//! # Ok(()) }
//! ```

mod exchange;
mod patterns;
pub mod strategy;

use std::collections::BTreeMap;

use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use exchange::{
    EXPORT_FORMAT, EXPORT_VERSION, ImportError, ImportOptions, ImportReport, PatternDocument,
    export, import, parse,
};
pub use patterns::{
    AUTO_HEALABLE, LLM_TARGETS, POSTGRES_TARGETS, REDIS_TARGETS, STREAM_TARGETS, stock,
};

use crate::{AuditEntry, ErrorKind, Pattern, Result, Store};

/// The actor seeding writes in the audit trail.
pub const SEED_ACTOR: &str = "catalog";

/// The hashes of every definition the catalog has shipped, per stock pattern.
const SHIPPED: &str = include_str!("shipped.json");

/// What [`seed`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SeedReport {
    /// Stock patterns the store lacked, now added.
    pub added: Vec<String>,
    /// Stored stock patterns whose definition was an older shipped one, now current
    /// (their learned confidence, use count and fix counters kept).
    pub upgraded: Vec<String>,
    /// Stored stock patterns an operator changed: left as they are.
    pub kept: Vec<String>,
    /// Stored stock patterns already at the current definition.
    pub current: Vec<String>,
}

impl SeedReport {
    /// Whether seeding changed the store.
    pub fn changed(&self) -> bool {
        !self.added.is_empty() || !self.upgraded.is_empty()
    }
}

/// A set of patterns with the history of their shipped definitions; [`Catalog::stock`]
/// is selfheal's own. Build your own to seed a fleet with your service's patterns.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    patterns: Vec<Pattern>,
    shipped: BTreeMap<String, Vec<String>>,
}

impl Catalog {
    /// The stock catalog and its shipped history.
    pub fn stock() -> Self {
        let shipped: BTreeMap<String, Vec<String>> = serde_json::from_str::<ShippedFile>(SHIPPED)
            .map(|f| f.patterns)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "catalog/shipped.json does not parse; upgrades are off");
                BTreeMap::new()
            });
        Catalog {
            patterns: stock(),
            shipped,
        }
    }

    /// A catalog of `patterns` whose earlier shipped definitions are `shipped` (pattern
    /// name to [`definition_hash`]es). The current definitions count as shipped.
    pub fn new(patterns: Vec<Pattern>, shipped: BTreeMap<String, Vec<String>>) -> Self {
        Catalog { patterns, shipped }
    }

    /// The patterns.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// The hashes of every shipped definition of `name` (the current one included).
    pub fn shipped_hashes(&self, name: &str) -> Vec<String> {
        let mut out = self.shipped.get(name).cloned().unwrap_or_default();
        if let Some(p) = self.patterns.iter().find(|p| p.name == name) {
            let current = definition_hash(p);
            if !out.contains(&current) {
                out.push(current);
            }
        }
        out
    }

    /// Adds what the store lacks and upgrades what no operator changed; see the
    /// [module docs](self). Every change is written to the audit trail by
    /// [`SEED_ACTOR`].
    pub async fn seed(&self, store: &dyn Store) -> Result<SeedReport> {
        let mut report = SeedReport::default();
        let mut changes = Vec::new();
        for stock in &self.patterns {
            match store.get_pattern(&stock.name).await? {
                None => match store.add_pattern(stock).await {
                    Ok(()) => {
                        report.added.push(stock.name.clone());
                        changes.push(("self_heal.pattern_seeded", stock.clone(), None));
                    }
                    // Another replica seeding the same store added it first.
                    Err(e) if e.kind() == ErrorKind::Conflict => {
                        report.current.push(stock.name.clone());
                    }
                    Err(e) => return Err(e),
                },
                Some(stored) => {
                    let hash = definition_hash(&stored);
                    if hash == definition_hash(stock) {
                        report.current.push(stock.name.clone());
                    } else if self.shipped_hashes(&stock.name).contains(&hash) {
                        let upgraded = keep_learned(&stored, stock);
                        store.update_pattern(&upgraded).await?;
                        report.upgraded.push(stock.name.clone());
                        tracing::info!(pattern = %stock.name, "stock pattern upgraded to the current catalog definition");
                        changes.push((
                            "self_heal.pattern_upgraded",
                            upgraded,
                            Some(changed_fields(&stored, stock)),
                        ));
                    } else {
                        report.kept.push(stock.name.clone());
                        tracing::info!(
                            pattern = %stock.name,
                            "stock pattern was changed by an operator; keeping the operator's version (the catalog's differs)"
                        );
                    }
                }
            }
        }
        if !changes.is_empty() {
            audit_changes(store, changes).await;
        }
        Ok(report)
    }
}

#[derive(serde::Deserialize)]
struct ShippedFile {
    patterns: BTreeMap<String, Vec<String>>,
}

/// Seeds `store` with the stock catalog: see [`Catalog::seed`].
pub async fn seed(store: &dyn Store) -> Result<SeedReport> {
    Catalog::stock().seed(store).await
}

/// The hash (16 hex digits of sha256) of a pattern's definition: everything an
/// operator or the catalog sets, nothing that learning moves (confidence, use count,
/// fix success and failure counts).
pub fn definition_hash(p: &Pattern) -> String {
    let fixes: Vec<serde_json::Value> = p
        .fixes
        .iter()
        .map(|f| {
            serde_json::json!([
                f.strategy,
                canonical(&f.params),
                f.priority,
                f.requires_approval
            ])
        })
        .collect();
    let mut definition = serde_json::json!([
        p.name,
        p.description,
        p.regex,
        p.keywords,
        p.error_type,
        p.target,
        p.severity.as_str(),
        p.root_cause,
        p.auto_healable,
        mode_str(p.mode),
        p.min_occurrences,
        u64::try_from(p.window.as_nanos()).unwrap_or(u64::MAX),
        p.enabled,
        fixes,
    ]);
    // Appended only when set, so the hashes of definitions from before it stay valid.
    if p.ambiguous
        && let Some(list) = definition.as_array_mut()
    {
        list.push(serde_json::json!({"ambiguous": true}));
    }
    let digest = Sha256::digest(definition.to_string().as_bytes());
    crate::audit::hex(&digest)[..16].to_owned()
}

fn mode_str(mode: crate::PatternMode) -> &'static str {
    match mode {
        crate::PatternMode::Active => "active",
        crate::PatternMode::AlertOnly => "alert_only",
    }
}

/// JSON with object keys sorted at every level, whatever map order serde_json uses.
fn canonical(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<&String, serde_json::Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            serde_json::Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(canonical).collect())
        }
        other => other.clone(),
    }
}

/// `new`'s definition with `stored`'s learned state: confidence, use count, and the
/// counters of the fixes both bind.
fn keep_learned(stored: &Pattern, new: &Pattern) -> Pattern {
    let mut p = new.clone();
    p.confidence = stored.confidence;
    p.use_count = stored.use_count;
    for fix in &mut p.fixes {
        if let Some(old) = stored.fixes.iter().find(|o| o.strategy == fix.strategy) {
            fix.successes = old.successes;
            fix.failures = old.failures;
        }
    }
    p
}

/// The fields whose definition differs between `before` and `after`, each as
/// `{"from": …, "to": …}`; learned state is left out.
pub fn changed_fields(before: &Pattern, after: &Pattern) -> serde_json::Value {
    let a = definition_fields(before);
    let b = definition_fields(after);
    let mut out = serde_json::Map::new();
    for (key, from) in &a {
        let to = b.get(key).cloned().unwrap_or(serde_json::Value::Null);
        if *from != to {
            out.insert(
                key.clone(),
                serde_json::json!({"from": from.clone(), "to": to}),
            );
        }
    }
    serde_json::Value::Object(out)
}

fn definition_fields(p: &Pattern) -> BTreeMap<String, serde_json::Value> {
    let mut value = serde_json::to_value(p).unwrap_or_default();
    if let Some(fixes) = value.get_mut("fixes").and_then(|f| f.as_array_mut()) {
        for fix in fixes.iter_mut().filter_map(|f| f.as_object_mut()) {
            fix.remove("successes");
            fix.remove("failures");
        }
    }
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "confidence" | "use_count"))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Appends one audit record per change, chained after the store's last record. A
/// failed write is logged: seeding itself succeeded.
async fn audit_changes(
    store: &dyn Store,
    changes: Vec<(&'static str, Pattern, Option<serde_json::Value>)>,
) {
    let mut head = match store.list_audit(1).await {
        Ok(mut last) => last.pop(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the audit head; seeding is not audited");
            return;
        }
    };
    for (event, pattern, diff) in changes {
        let entry = AuditEntry {
            actor: SEED_ACTOR.to_owned(),
            pattern: Some(pattern.name.clone()),
            confidence: Some(pattern.confidence),
            detail: serde_json::json!({
                "definition": definition_hash(&pattern),
                "changes": diff,
            }),
            ..AuditEntry::new(event, "ok")
        };
        let record = entry.chain(head.as_ref(), Utc::now());
        match store.append_audit(&record).await {
            Ok(()) => head = Some(record),
            Err(e) => {
                tracing::warn!(error = %e, pattern = %pattern.name, "audit write for seeding failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
