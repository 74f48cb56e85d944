//! `selfheal audit verify --postgres` and `patterns export --postgres` on a schema a real
//! healer wrote (PostgreSQL at `DATABASE_URL`, default
//! postgres://postgres@127.0.0.1:5432/test; skipped when unreachable, a failure under
//! `CI=true`): an intact chain passes while the service runs, a row changed with SQL is
//! named, and a schema this version does not know is refused, not migrated.
#![cfg(feature = "postgres")]

mod support;

use selfheal_storage::PostgresStore;
use support::{PATTERN, heal_once, said, selfheal, stdout};
use uuid::Uuid;

/// The test's own schema, dropped when the test ends, passed or not.
struct Scratch {
    url: String,
    schema: String,
    admin: sqlx::PgPool,
}

impl Scratch {
    /// A new schema, or `None` (skipped) when PostgreSQL cannot be reached.
    async fn new() -> Option<Self> {
        let url = std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let admin = match sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(&url)
            .await
        {
            Ok(pool) => pool,
            Err(e) => {
                selfheal_testsupport::unavailable("PostgreSQL (DATABASE_URL)", e);
                return None;
            }
        };
        let schema = format!("selfheal_cli_{}", Uuid::new_v4().simple());
        Some(Scratch { url, schema, admin })
    }

    /// Runs `statements` in the schema, as someone with write access would.
    async fn sql(&self, statements: &str) {
        let text = format!("SET search_path TO \"{}\"; {statements}", self.schema);
        sqlx::raw_sql(sqlx::AssertSqlSafe(text))
            .execute(&self.admin)
            .await
            .unwrap();
    }

    async fn scalar(&self, query: &str) -> i64 {
        let text = query.replace("{schema}", &self.schema);
        sqlx::query_scalar(sqlx::AssertSqlSafe(text))
            .fetch_one(&self.admin)
            .await
            .unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_an_intact_store_and_names_the_first_broken_link_after_tampering() {
    let Some(db) = Scratch::new().await else {
        return;
    };
    let store = PostgresStore::builder(&db.url)
        .schema(&db.schema)
        .connect()
        .await
        .unwrap();
    let records = heal_once(store.clone()).await;
    assert!(
        records >= 5,
        "the healer audited its work ({records} records)"
    );
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "audit".to_owned(),
            "verify".to_owned(),
            "--postgres".to_owned(),
            db.url.clone(),
            "--schema".to_owned(),
            db.schema.clone(),
        ];
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        selfheal(&refs)
    };

    // The service's store stays open: PostgreSQL is shared, reading it is fine.
    let intact = run(args(&[]));
    assert_eq!(intact.status.code(), Some(0), "{}", said(&intact));
    assert!(
        stdout(&intact).contains(&format!("audit chain intact: {records} records")),
        "{}",
        said(&intact)
    );

    db.sql(
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change; \
         UPDATE audit_log SET result = 'success' WHERE seq = 4",
    )
    .await;
    let broken = run(args(&["--json"]));
    assert_eq!(broken.status.code(), Some(1), "{}", said(&broken));
    let verdict: serde_json::Value = serde_json::from_slice(&broken.stdout).unwrap();
    assert_eq!(verdict["ok"], false, "{}", said(&broken));
    assert_eq!(verdict["first_broken"]["seq"], 4);
    assert_eq!(
        verdict["first_broken"]["reason"],
        "its content was changed after it was written"
    );

    // Patterns, from the same schema.
    let export = run(vec![
        "patterns".into(),
        "export".into(),
        "--postgres".into(),
        db.url.clone(),
        "--schema".into(),
        db.schema.clone(),
    ]);
    assert_eq!(export.status.code(), Some(0), "{}", said(&export));
    let doc = selfheal_core::catalog::parse(&stdout(&export)).unwrap();
    assert!(
        doc.patterns.iter().any(|p| p["name"] == PATTERN),
        "{}",
        said(&export)
    );
    assert!(
        doc.source.starts_with("postgres:") && doc.source.contains(&db.schema),
        "{}",
        doc.source
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_this_version_does_not_know_is_refused_not_migrated() {
    let Some(db) = Scratch::new().await else {
        return;
    };
    let store = PostgresStore::builder(&db.url)
        .schema(&db.schema)
        .seed_catalog(false)
        .connect()
        .await
        .unwrap();
    store.close().await;
    let applied = "SELECT count(*) FROM \"{schema}\"._sqlx_migrations";
    let all = db.scalar(applied).await;
    db.sql(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .await;
    let run = selfheal(&[
        "audit",
        "verify",
        "--postgres",
        &db.url,
        "--schema",
        &db.schema,
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", said(&run));
    assert!(
        support::stderr(&run).contains("is older than this selfheal"),
        "{}",
        said(&run)
    );
    assert_eq!(db.scalar(applied).await, all - 1, "nothing was migrated");

    // A schema that holds no store is not created either.
    let missing = format!("{}_none", db.schema);
    let run = selfheal(&[
        "audit",
        "verify",
        "--postgres",
        &db.url,
        "--schema",
        &missing,
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", said(&run));
    assert!(
        support::stderr(&run).contains("holds no selfheal store"),
        "{}",
        said(&run)
    );
    let created = db
        .scalar(&format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = '{missing}'"
        ))
        .await;
    assert_eq!(created, 0);
}
