//! Any text as a pattern import: the export document (JSON) through `catalog::import`
//! into a `MemoryStore`, and a single pattern as TOML or JSON through `Pattern::validate`.
//! No panic; a refused document is a clean `InvalidInput` error; every pattern is
//! accounted for once (added, skipped or refused with a message); what was imported is
//! valid, arrives alert-only, and exports and imports again unchanged in number.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use selfheal_core::catalog::{self, ImportOptions};
use selfheal_core::{ErrorKind, MemoryStore, Pattern, PatternMode, PatternStore};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
});

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 3 {
        0 => RUNTIME.block_on(document(&text)),
        1 => single(toml::from_str::<Pattern>(&text).ok()),
        _ => single(serde_json::from_str::<Pattern>(&text).ok()),
    }
});

async fn document(json: &str) {
    let store = MemoryStore::new();
    let report = match catalog::import(&store, json, &ImportOptions::default()).await {
        Ok(report) => report,
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e} for {json:?}");
            assert!(!e.message().trim().is_empty());
            return;
        }
    };
    let total = catalog::parse(json)
        .expect("imported, so it parses")
        .patterns
        .len();
    assert!(report.replaced.is_empty());
    assert_eq!(
        report.added.len() + report.skipped.len() + report.errors.len(),
        total,
        "{report:?}"
    );
    assert!(report.errors.iter().all(|e| !e.message.trim().is_empty()));
    let stored = store.list_patterns().await.expect("a memory store lists");
    assert_eq!(stored.len(), report.added.len());
    for p in &stored {
        assert!(p.validate().is_ok(), "{p:?}");
        assert_eq!(p.mode, PatternMode::AlertOnly);
        assert!(!p.auto_healable);
    }
    let again = catalog::export(&stored, "fuzz").expect("valid patterns export");
    let copy = MemoryStore::new();
    let second = catalog::import(&copy, &again, &ImportOptions::default())
        .await
        .expect("an export imports");
    assert_eq!(second.added.len(), stored.len(), "{second:?}");
    assert!(second.errors.is_empty(), "{second:?}");
}

fn single(pattern: Option<Pattern>) {
    if let Some(p) = pattern
        && let Err(e) = p.validate()
    {
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(!e.message().trim().is_empty());
    }
}
