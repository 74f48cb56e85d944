//! The stock catalog seeded by `SqliteStore::open`, upgraded without clobbering what an
//! operator changed, across reopenings of one database file.

use std::collections::BTreeMap;

use selfheal_core::catalog::{self, Catalog};
use selfheal_core::{AuditStore, FixBinding, Pattern, PatternMode, PatternStore, verify_chain};
use selfheal_storage::{SqliteOptions, SqliteStore};

#[tokio::test]
async fn open_seeds_the_catalog_once_and_keeps_an_operators_promotion() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("selfheal.db");
    let path = path.to_str().unwrap();
    let stock = catalog::stock();
    {
        let store = SqliteStore::open(path).await.unwrap();
        let stored = store.list_patterns().await.unwrap();
        assert_eq!(stored.len(), stock.len());
        for p in &stock {
            let s = store.get_pattern(&p.name).await.unwrap().unwrap();
            assert_eq!(&s, p, "`{}` round-trips through SQLite", p.name);
        }
        let audit = store.list_audit(100).await.unwrap();
        assert_eq!(audit.len(), stock.len());
        assert!(
            audit
                .iter()
                .all(|r| r.event_type == "self_heal.pattern_seeded")
        );
        verify_chain(&audit).unwrap();

        // An operator promotes one stock pattern.
        let mut oom = store.get_pattern("redis_oom").await.unwrap().unwrap();
        oom.auto_healable = true;
        oom.mode = PatternMode::Active;
        store.update_pattern(&oom).await.unwrap();
        store.close().await;
    }
    let store = SqliteStore::open(path).await.unwrap();
    let oom = store.get_pattern("redis_oom").await.unwrap().unwrap();
    assert!(oom.auto_healable, "reopening kept the operator's promotion");
    assert_eq!(
        store.list_audit(100).await.unwrap().len(),
        stock.len(),
        "reopening seeded nothing twice"
    );
    let report = catalog::seed(&store).await.unwrap();
    assert_eq!(report.kept, ["redis_oom"]);
    assert_eq!(report.current.len(), stock.len() - 1);
}

#[tokio::test]
async fn a_shipped_definition_is_upgraded_in_sqlite_with_its_learned_state() {
    let v1 = Pattern::new("cache_down")
        .regex("connection refused")
        .mode(PatternMode::Active)
        .fix(FixBinding::new("reconnect"));
    let v2 = v1.clone().regex("connection refused|ECONNREFUSED");
    let store = SqliteStore::open_with(
        "sqlite::memory:",
        SqliteOptions::default().seed_catalog(false),
    )
    .await
    .unwrap();
    assert!(store.list_patterns().await.unwrap().is_empty());
    Catalog::new(vec![v1.clone()], BTreeMap::new())
        .seed(&store)
        .await
        .unwrap();
    store
        .record_outcome("cache_down", "reconnect", false, -0.1)
        .await
        .unwrap();

    let shipped = BTreeMap::from([("cache_down".to_owned(), vec![catalog::definition_hash(&v1)])]);
    let report = Catalog::new(vec![v2], shipped).seed(&store).await.unwrap();
    assert_eq!(report.upgraded, ["cache_down"]);
    let p = store.get_pattern("cache_down").await.unwrap().unwrap();
    assert_eq!(p.regex.as_deref(), Some("connection refused|ECONNREFUSED"));
    assert!((p.confidence - 0.4).abs() < 1e-9, "{}", p.confidence);
    assert_eq!(p.fixes[0].failures, 1);
    let audit = store.list_audit(10).await.unwrap();
    assert_eq!(
        audit.last().unwrap().event_type,
        "self_heal.pattern_upgraded"
    );
    verify_chain(&audit).unwrap();
}
