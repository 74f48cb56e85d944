//! `PostgresStore` against the conformance suite on a real PostgreSQL (`DATABASE_URL`),
//! each test in a schema of its own that it drops at the end, plus what only this
//! database does: schemas, migrations, the append-only trigger.
#![cfg(feature = "postgres")]

use selfheal_core::testkit;
use selfheal_core::{AuditEntry, AuditStore, ErrorKind, FleetStore, PatternStore};
use selfheal_storage::PostgresStore;
use selfheal_testsupport::env_url;
use uuid::Uuid;

/// Drops the test's schema when the test ends, passed or not.
struct DropSchema(String, String);

impl Drop for DropSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.0.clone(), self.1.clone());
        // A runtime of its own: the test's may be gone or busy.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                    let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// A store in a fresh schema of the `DATABASE_URL` database (dropped with the guard),
/// or `None` (skipped).
async fn store() -> Option<(PostgresStore, DropSchema)> {
    let url = env_url("DATABASE_URL")?;
    let schema = format!("selfheal_test_{}", Uuid::new_v4().simple());
    let guard = DropSchema(url.clone(), schema.clone());
    let store = PostgresStore::builder(url)
        .schema(schema)
        .max_connections(4)
        .seed_catalog(false)
        .connect()
        .await
        .expect("connect to DATABASE_URL and migrate a fresh schema");
    Some((store, guard))
}

#[tokio::test]
async fn postgres_store_passes_the_conformance_suite() {
    let Some((store, _cleanup)) = store().await else {
        return;
    };
    testkit::run_all(&store).await;
    // A second run against the same data: the checks do not trip over each other.
    testkit::run_all(&store).await;
    testkit::diagnosis_cache_keeps_one_per_fingerprint(&store).await;
    store.drop_schema().await.unwrap();
}

#[tokio::test]
async fn migrating_again_is_a_no_op_and_the_audit_log_is_append_only() {
    let Some((store, _cleanup)) = store().await else {
        return;
    };
    let schema = store.schema().unwrap().to_owned();
    let record =
        AuditEntry::new("self_heal.detected", "incident opened").chain(None, chrono::Utc::now());
    store.append_audit(&record).await.unwrap();

    let url = env_url("DATABASE_URL").unwrap();
    let again = PostgresStore::builder(url)
        .schema(&schema)
        .seed_catalog(false)
        .connect()
        .await
        .unwrap();
    assert_eq!(again.list_audit(10).await.unwrap(), [record]);
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(again.pool())
            .await
            .unwrap();
    assert!(versions.len() >= 2, "{versions:?}");
    let views: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.views \
         WHERE table_schema = current_schema() ORDER BY table_name",
    )
    .fetch_all(again.pool())
    .await
    .unwrap();
    assert_eq!(
        views,
        [
            "actions_by_outcome",
            "healing_overview",
            "pattern_hourly",
            "pattern_mttr",
            "recent_activity",
            "strategy_success"
        ]
    );
    for view in &views {
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {view}")))
            .fetch_all(again.pool())
            .await
            .unwrap_or_else(|e| panic!("{view}: {e}"));
    }
    let recent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM recent_activity")
        .fetch_one(again.pool())
        .await
        .unwrap();
    assert_eq!(recent, 1, "the record just written is recent activity");

    for sql in [
        "UPDATE audit_log SET result = 'forged'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let e = sqlx::query(sql).execute(again.pool()).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    again.close().await;
    store.drop_schema().await.unwrap();
}

#[tokio::test]
async fn bad_urls_and_schema_names_are_refused_with_a_fix() {
    let e = PostgresStore::connect("mysql://x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("postgres://"), "{e}");
    let e = PostgresStore::builder("postgres://u:secret@127.0.0.1:1/x")
        .schema("bad-name")
        .seed_catalog(false)
        .connect()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(!e.message().contains("secret"), "{e}");
    // Over the server's limit: said at once, not a pool timeout after 5 s.
    let e = PostgresStore::builder("postgres://u:secret@127.0.0.1:1/x")
        .idle_in_transaction_timeout(std::time::Duration::from_secs(30 * 24 * 3600))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("24.8 days"), "{e}");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_not_a_panic() {
    let port = selfheal_testsupport::free_port().unwrap();
    let e = PostgresStore::builder(format!("postgres://u:secret@127.0.0.1:{port}/x"))
        .acquire_timeout(std::time::Duration::from_secs(1))
        .seed_catalog(false)
        .connect()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    assert!(!e.message().contains("secret"), "{e}");
}

#[tokio::test]
async fn replicas_sharing_the_database_add_up_their_outcomes() {
    let Some((store, _cleanup)) = store().await else {
        return;
    };
    let other = PostgresStore::builder(env_url("DATABASE_URL").unwrap())
        .schema(store.schema().unwrap())
        .seed_catalog(false)
        .connect()
        .await
        .unwrap();
    store
        .add_pattern(
            &selfheal_core::Pattern::new("shared")
                .regex("boom")
                .confidence(0.0)
                .fix(selfheal_core::FixBinding::new("restart")),
        )
        .await
        .unwrap();
    // Twenty outcomes at once from two "replicas": none is lost to a race.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            s.record_outcome("shared", "restart", true, 0.01).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let p = store.get_pattern("shared").await.unwrap().unwrap();
    assert_eq!((p.use_count, p.fixes[0].successes), (20, 20));
    assert!((p.confidence - 0.2).abs() < 1e-9, "{}", p.confidence);
    other.close().await;
    store.close().await;
}

#[tokio::test]
async fn connect_seeds_the_stock_catalog_once() {
    let Some(url) = env_url("DATABASE_URL") else {
        return;
    };
    let schema = format!("selfheal_test_{}", Uuid::new_v4().simple());
    let _cleanup = DropSchema(url.clone(), schema.clone());
    let open = || {
        PostgresStore::builder(url.clone())
            .schema(schema.clone())
            .connect()
    };
    let first = open().await.expect("connect and seed");
    let stock = selfheal_core::catalog::stock();
    let names: Vec<String> = first
        .list_patterns()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    for pattern in &stock {
        assert!(names.contains(&pattern.name), "{} seeded", pattern.name);
    }
    let audited = first.list_audit(1000).await.unwrap().len();
    // A second replica starting later adds nothing and changes nothing.
    let second = open().await.expect("connect again");
    assert_eq!(second.list_patterns().await.unwrap().len(), names.len());
    assert_eq!(second.list_audit(1000).await.unwrap().len(), audited);
    first.drop_schema().await.unwrap();
}

/// A replica that hangs in the middle of a transaction (its runtime blocked, its
/// process stopped) holds the fleet's rate-limit lock; the server ends that
/// transaction after `idle_in_transaction_timeout`, so the other replicas go on.
#[tokio::test]
async fn a_replica_hung_mid_transaction_does_not_hold_the_fleet_up() {
    let Some(url) = env_url("DATABASE_URL") else {
        return;
    };
    let schema = format!("selfheal_test_{}", Uuid::new_v4().simple());
    let _cleanup = DropSchema(url.clone(), schema.clone());
    let replica = |timeout| {
        PostgresStore::builder(url.clone())
            .schema(schema.clone())
            .max_connections(2)
            .seed_catalog(false)
            .idle_in_transaction_timeout(timeout)
            .connect()
    };
    let hung = replica(std::time::Duration::from_millis(500))
        .await
        .unwrap();
    let other = replica(std::time::Duration::from_secs(30)).await.unwrap();

    // The hung replica took the lock `take_rate_permit` takes, and never goes on.
    let mut tx = hung.pool().begin().await.unwrap();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.selfheal_rate_limit')::bigint)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let _hung_forever = std::mem::ManuallyDrop::new(tx);
    let (limit,): (String,) = sqlx::query_as("SHOW idle_in_transaction_session_timeout")
        .fetch_one(other.pool())
        .await
        .unwrap();
    assert_eq!(limit, "30s", "the other replica's own limit");

    let granted = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        other.take_rate_permit("replica-b", 10),
    )
    .await
    .expect("the server ended the hung transaction and released its lock");
    assert!(granted.unwrap(), "the other replica got its permit");
}
