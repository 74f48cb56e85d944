use std::collections::{BTreeMap, HashSet};

use super::*;
use crate::{AuditStore, PatternStore};
use crate::{FixBinding, MemoryStore, PatternMode};

#[test]
fn every_stock_pattern_validates_and_ships_safe() {
    let all = stock();
    let names: HashSet<&str> = all.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), all.len(), "stock pattern names must be unique");
    for seed in [
        "redis_connection_refused",
        "postgres_connection_pool_exhausted",
        "llm_rate_limit_exceeded",
        "sse_stream_timeout",
        "memory_threshold_exceeded",
        "session_runaway",
    ] {
        assert!(names.contains(seed), "the seeds' `{seed}` is missing");
    }
    for p in &all {
        p.validate().unwrap();
        if p.auto_healable {
            assert!(
                AUTO_HEALABLE.contains(&p.name.as_str()),
                "`{}` ships auto-healable",
                p.name
            );
            for f in p.fixes.iter().filter(|f| !f.requires_approval) {
                assert_eq!(
                    f.strategy,
                    strategy::REDIS_RECONNECT,
                    "`{}` is auto-healable: its fixes without approval must be harmless",
                    p.name
                );
            }
        }
        assert!(!p.fixes.is_empty(), "`{}` binds no fix", p.name);
        for f in &p.fixes {
            assert!(
                strategy::ALL.contains(&f.strategy.as_str()),
                "`{}` binds `{}`, which is not a stock strategy name",
                p.name,
                f.strategy
            );
        }
        let destructive = [
            strategy::REDIS_FLUSHDB,
            strategy::POSTGRES_TERMINATE_IDLE,
            strategy::RESTART_PROCESS,
            strategy::REDIS_RESTART,
            strategy::KILL_RUNAWAY_SESSIONS,
        ];
        for f in p
            .fixes
            .iter()
            .filter(|f| destructive.contains(&f.strategy.as_str()))
        {
            assert!(
                f.requires_approval,
                "`{}`: `{}` must require approval",
                p.name, f.strategy
            );
        }
        if p.mode == PatternMode::AlertOnly {
            assert!(p.fixes.iter().all(|f| f.strategy == strategy::ALERT_ONLY));
        }
    }
}

#[test]
fn redis_oom_binds_no_fix_that_cannot_run_or_deletes_everything() {
    let oom = stock().into_iter().find(|p| p.name == "redis_oom").unwrap();
    let first = oom.ordered_fixes()[0].strategy.clone();
    assert_eq!(first, strategy::REDIS_RAISE_MAXMEMORY);
    for f in &oom.fixes {
        assert_ne!(
            f.strategy,
            strategy::REDIS_FLUSHDB,
            "FLUSHDB is never suggested by default"
        );
        assert_ne!(
            f.strategy,
            strategy::REDIS_EVICT_KEYS,
            "evict-keys needs a key pattern only the service knows"
        );
    }
}

#[test]
fn a_redis_restart_reconnects_with_no_human_involved() {
    let config = crate::PolicyConfig::default();
    for name in AUTO_HEALABLE {
        let p = stock().into_iter().find(|p| p.name == name).unwrap();
        let fix = p.ordered_fixes()[0].clone();
        assert_eq!(fix.strategy, strategy::REDIS_RECONNECT);
        assert_eq!(
            crate::decide(&config, &p, p.confidence, &fix, false),
            crate::Decision::AutoRemediate,
            "`{name}`"
        );
    }
}

#[test]
fn every_current_definition_is_recorded_as_shipped() {
    let file: ShippedFile = serde_json::from_str(SHIPPED).expect("shipped.json parses");
    let mut missing = BTreeMap::new();
    for p in stock() {
        let hash = definition_hash(&p);
        if !file
            .patterns
            .get(&p.name)
            .is_some_and(|h| h.contains(&hash))
        {
            missing.insert(p.name.clone(), hash);
        }
    }
    assert!(
        missing.is_empty(),
        "stock definitions changed without recording them in src/catalog/shipped.json \
         (append each hash to its pattern's list, never remove old ones): {missing:?}"
    );
}

#[test]
fn the_definition_hash_ignores_learned_state_only() {
    let p = stock().into_iter().find(|p| !p.auto_healable).unwrap();
    let mut learned = p.clone();
    learned.confidence = 0.99;
    learned.use_count = 7;
    learned.fixes[0].successes = 3;
    learned.fixes[0].failures = 1;
    assert_eq!(definition_hash(&p), definition_hash(&learned));
    let promoted = p.clone().auto_healable(true);
    assert_ne!(definition_hash(&p), definition_hash(&promoted));
    let mut disabled = p.clone();
    disabled.enabled = false;
    assert_ne!(definition_hash(&p), definition_hash(&disabled));
    let reparam = p
        .clone()
        .fix(FixBinding::new("x").params(serde_json::json!({"b": 1, "a": 2})));
    let same = p
        .clone()
        .fix(FixBinding::new("x").params(serde_json::json!({"a": 2, "b": 1})));
    assert_eq!(definition_hash(&reparam), definition_hash(&same));
}

fn v1() -> Pattern {
    Pattern::new("cache_down")
        .regex("connection refused")
        .mode(PatternMode::Active)
        .fix(FixBinding::new("reconnect"))
}

fn v2() -> Pattern {
    v1().regex("connection refused|ECONNREFUSED")
        .severity(crate::Severity::High)
}

#[tokio::test]
async fn seeding_adds_then_upgrades_shipped_definitions_keeping_what_was_learned() {
    let store = MemoryStore::new();
    let old = Catalog::new(vec![v1()], BTreeMap::new());
    assert_eq!(old.seed(&store).await.unwrap().added, ["cache_down"]);
    store
        .record_outcome("cache_down", "reconnect", true, 0.05)
        .await
        .unwrap();

    let shipped = BTreeMap::from([("cache_down".to_owned(), vec![definition_hash(&v1())])]);
    let new = Catalog::new(vec![v2()], shipped);
    let report = new.seed(&store).await.unwrap();
    assert_eq!(report.upgraded, ["cache_down"]);
    let stored = store.get_pattern("cache_down").await.unwrap().unwrap();
    assert_eq!(
        stored.regex.as_deref(),
        Some("connection refused|ECONNREFUSED")
    );
    assert_eq!(stored.severity, crate::Severity::High);
    assert!(
        (stored.confidence - 0.55).abs() < 1e-9,
        "learned confidence kept"
    );
    assert_eq!((stored.use_count, stored.fixes[0].successes), (1, 1));

    // Seeding again: current, nothing written.
    let again = new.seed(&store).await.unwrap();
    assert_eq!(again.current, ["cache_down"]);
    assert!(!again.changed());

    let audit = store.list_audit(10).await.unwrap();
    let events: Vec<&str> = audit.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(
        events,
        ["self_heal.pattern_seeded", "self_heal.pattern_upgraded"]
    );
    assert_eq!(audit[1].actor, SEED_ACTOR);
    assert_eq!(
        audit[1].detail["changes"]["severity"],
        serde_json::json!({"from": "medium", "to": "high"})
    );
    crate::verify_chain(&audit).unwrap();
}

#[tokio::test]
async fn seeding_keeps_an_operators_change() {
    let store = MemoryStore::new();
    Catalog::new(vec![v1()], BTreeMap::new())
        .seed(&store)
        .await
        .unwrap();
    let promoted = v1().auto_healable(true).regex("refused");
    store.update_pattern(&promoted).await.unwrap();

    let shipped = BTreeMap::from([("cache_down".to_owned(), vec![definition_hash(&v1())])]);
    let report = Catalog::new(vec![v2()], shipped)
        .seed(&store)
        .await
        .unwrap();
    assert_eq!(report.kept, ["cache_down"]);
    assert!(report.upgraded.is_empty());
    assert_eq!(
        store.get_pattern("cache_down").await.unwrap().unwrap(),
        promoted
    );
}

#[tokio::test]
async fn the_stock_catalog_seeds_a_memory_store_once() {
    let store = MemoryStore::new();
    let first = seed(&store).await.unwrap();
    assert_eq!(first.added.len(), stock().len());
    let second = seed(&store).await.unwrap();
    assert_eq!(second.current.len(), stock().len());
    assert!(!second.changed());
    assert_eq!(store.list_audit(100).await.unwrap().len(), stock().len());
}

#[tokio::test]
async fn import_reports_each_bad_pattern_and_imports_the_rest() {
    let good = serde_json::to_value(v1().auto_healable(true)).unwrap();
    let bad_regex = serde_json::json!({"name": "broken", "regex": "pool (timed"});
    let not_a_pattern = serde_json::json!({"name": "odd", "regex": "x", "severity": "apocalyptic"});
    let doc = serde_json::json!({
        "format": EXPORT_FORMAT, "version": 1, "exported_at": "2026-01-01T00:00:00Z",
        "patterns": [good, bad_regex, not_a_pattern, serde_json::to_value(v1()).unwrap()],
    });
    let store = MemoryStore::new();
    let report = import(&store, &doc.to_string(), &ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(report.added, ["cache_down"]);
    assert_eq!(report.errors.len(), 3, "{:?}", report.errors);
    assert_eq!(report.errors[0].index, 1);
    assert!(
        report.errors[0]
            .message
            .contains("invalid regex in pattern `broken`")
    );
    assert_eq!(report.errors[1].name.as_deref(), Some("odd"));
    assert!(report.errors[2].message.contains("appears twice"));
    let p = store.get_pattern("cache_down").await.unwrap().unwrap();
    assert_eq!(
        p.mode,
        PatternMode::AlertOnly,
        "untrusted imports arrive alert-only"
    );
    assert!(!p.auto_healable);

    // Trusted and replacing: the mode comes along.
    let report = import(
        &store,
        &doc.to_string(),
        &ImportOptions::default()
            .replace_existing(true)
            .trust_modes(true),
    )
    .await
    .unwrap();
    assert_eq!(report.replaced, ["cache_down"]);
    assert!(
        store
            .get_pattern("cache_down")
            .await
            .unwrap()
            .unwrap()
            .auto_healable
    );
}

#[tokio::test]
async fn import_refuses_documents_it_cannot_read() {
    let store = MemoryStore::new();
    for (doc, says) in [
        ("not json", "not a pattern export"),
        (
            r#"{"format":"other","version":1,"exported_at":"2026-01-01T00:00:00Z","patterns":[]}"#,
            "format is `other`",
        ),
        (
            r#"{"format":"selfheal.patterns","version":9,"exported_at":"2026-01-01T00:00:00Z","patterns":[]}"#,
            "version 9 is not supported",
        ),
    ] {
        let err = import(&store, doc, &ImportOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        assert!(err.message().contains(says), "{err}");
    }
}

#[tokio::test]
async fn export_then_import_round_trips_the_definitions() {
    let from = MemoryStore::new();
    seed(&from).await.unwrap();
    let json = export(&from.list_patterns().await.unwrap(), "svc").unwrap();
    assert_eq!(parse(&json).unwrap().source, "svc");
    let to = MemoryStore::new();
    let report = import(&to, &json, &ImportOptions::default().trust_modes(true))
        .await
        .unwrap();
    assert!(report.errors.is_empty());
    assert_eq!(
        to.list_patterns().await.unwrap(),
        from.list_patterns().await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_seeding_one_store_at_once_all_succeed() {
    let store = std::sync::Arc::new(MemoryStore::new());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { seed(store.as_ref()).await })
        })
        .collect();
    let mut added = 0;
    for t in tasks {
        added += t.await.unwrap().unwrap().added.len();
    }
    assert_eq!(added, stock().len(), "each pattern added exactly once");
    assert_eq!(store.list_patterns().await.unwrap().len(), stock().len());
}
