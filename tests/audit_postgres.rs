//! The audit trail on a real PostgreSQL (`DATABASE_URL`): a truncated or emptied log is
//! reported at start through the checkpoint row, one undecodable newest row never
//! blocks later writes, and replicas that share the store keep one chain when a
//! replica's buffered records lost their positions to another replica.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use selfheal::storage::{PostgresStore, sqlx};
use selfheal::store::BufferedStore;
use selfheal::{
    ActionRecord, Approval, AuditEntry, AuditRecord, AuditStore, ChainError, ControlStore,
    DiagnosisCache, Error, ErrorKind, FleetStore, Healer, Incident, IncidentFilter, IncidentStore,
    Pattern, PatternStore, ReportStore, Result, Store, verify_chain,
};
use selfheal_testsupport::env_url;
use tokio::time::Instant;
use uuid::Uuid;

/// Drops the test's schema when the test ends, passed or not.
struct DropSchema(String, String);

impl Drop for DropSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.0.clone(), self.1.clone());
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

/// A fresh schema, or `None` (skipped without `DATABASE_URL`).
async fn schema() -> Option<(DropSchema, String, String)> {
    let url = env_url("DATABASE_URL")?;
    let schema = format!("selfheal_audit_{}", Uuid::new_v4().simple());
    Some((DropSchema(url.clone(), schema.clone()), url, schema))
}

async fn connect(url: &str, schema: &str) -> PostgresStore {
    PostgresStore::builder(url)
        .schema(schema)
        .seed_catalog(false)
        .connect()
        .await
        .expect("connect and migrate")
}

async fn sql(store: &PostgresStore, statement: &'static str) -> Result<(), sqlx::Error> {
    sqlx::query(statement)
        .execute(store.pool())
        .await
        .map(|_| ())
}

async fn chain_of(store: &dyn Store, n: usize) -> Vec<AuditRecord> {
    let mut chain: Vec<AuditRecord> = Vec::new();
    for i in 0..n {
        let record = AuditEntry::new("self_heal.detected", format!("record {i}"))
            .chain(chain.last(), Utc::now());
        store.append_audit(&record).await.unwrap();
        chain.push(record);
    }
    chain
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A default-built healer on `store`, started, and its verdict on the chain at start.
async fn start(store: PostgresStore) -> (Healer, selfheal::Running, Result<(), ChainError>) {
    let healer = Healer::builder().store(store).build().unwrap();
    let running = healer.spawn();
    until("the chain was checked at start", || {
        healer.admin().audit_chain().is_some()
    })
    .await;
    let verdict = healer.admin().audit_chain().unwrap();
    (healer, running, verdict)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_emptied_log_is_reported_at_start() {
    let Some((_cleanup, url, schema)) = schema().await else {
        return;
    };
    let store = connect(&url, &schema).await;
    let chain = chain_of(&store, 5).await;
    assert_eq!(
        store.audit_checkpoint().await.unwrap(),
        Some(chain[4].head())
    );
    let (_, running, verdict) = start(store.clone()).await;
    assert_eq!(verdict, Ok(()));
    running.shutdown().await;

    // The checkpoint row only moves forward, whatever the role appending may do.
    assert!(
        sql(&store, "UPDATE audit_checkpoint SET seq = 3")
            .await
            .is_err()
    );
    assert!(sql(&store, "DELETE FROM audit_checkpoint").await.is_err());
    assert!(sql(&store, "TRUNCATE audit_checkpoint").await.is_err());

    // The table's owner turns its append-only triggers off and cuts the tail.
    sql(&store, "ALTER TABLE audit_log DISABLE TRIGGER USER")
        .await
        .unwrap();
    sql(&store, "DELETE FROM audit_log WHERE seq > 3")
        .await
        .unwrap();
    verify_chain(&store.list_audit(100).await.unwrap()).unwrap();
    let (_, running, verdict) = start(connect(&url, &schema).await).await;
    let broken = verdict.unwrap_err();
    assert_eq!(broken.seq, 4, "the first missing record");
    assert!(broken.reason.contains("truncated"), "{broken}");
    running.shutdown().await;

    sql(&store, "TRUNCATE audit_log").await.unwrap();
    let (_, running, verdict) = start(connect(&url, &schema).await).await;
    let broken = verdict.unwrap_err();
    assert!(broken.reason.contains("emptied"), "{broken}");
    assert_eq!(broken.seq, 5);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_newest_row_never_blocks_later_writes() {
    let Some((_cleanup, url, schema)) = schema().await else {
        return;
    };
    let store = connect(&url, &schema).await;
    let chain = chain_of(&store, 2).await;
    // Valid JSON (the column is `json`), but not the list of controls a record holds.
    sql(&store, "ALTER TABLE audit_log DISABLE TRIGGER USER")
        .await
        .unwrap();
    sql(
        &store,
        "UPDATE audit_log SET controls = '{\"not\": \"a list\"}' WHERE seq = 2",
    )
    .await
    .unwrap();

    let (healer, running, verdict) = start(store.clone()).await;
    assert_eq!(verdict.unwrap_err().seq, 2, "the bad row is reported");
    healer
        .admin()
        .add_pattern(Pattern::new("after").regex("after"), "alice")
        .await
        .unwrap();
    assert_eq!((healer.audit_waiting(), healer.store_errors()), (0, 0));
    let audit = store.list_audit(10).await.unwrap();
    assert_eq!(audit.len(), 3, "the write landed");
    assert_eq!(audit[2].seq, 3);
    assert_eq!(
        audit[2].prev_hash, chain[1].hash,
        "chained on the stored hash"
    );
    assert_eq!(verify_chain(&audit).unwrap_err().seq, 2);
    verify_chain(&audit[2..]).unwrap();
    running.shutdown().await;
}

/// A real PostgreSQL store this test can make unreachable.
#[derive(Debug)]
struct Switch {
    store: PostgresStore,
    down: AtomicBool,
}

impl Switch {
    fn up(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(Error::new(ErrorKind::Unavailable, "connection refused"))
        } else {
            Ok(())
        }
    }
}

impl Store for Switch {
    fn name(&self) -> &str {
        "switched postgres"
    }

    fn fleet(&self) -> Option<&dyn FleetStore> {
        Some(&self.store)
    }
}

#[async_trait]
impl PatternStore for Switch {
    async fn list_patterns(&self) -> Result<Vec<Pattern>> {
        self.up()?;
        self.store.list_patterns().await
    }

    async fn get_pattern(&self, name: &str) -> Result<Option<Pattern>> {
        self.up()?;
        self.store.get_pattern(name).await
    }

    async fn add_pattern(&self, p: &Pattern) -> Result<()> {
        self.up()?;
        self.store.add_pattern(p).await
    }

    async fn update_pattern(&self, p: &Pattern) -> Result<()> {
        self.up()?;
        self.store.update_pattern(p).await
    }

    async fn record_outcome(&self, p: &str, s: &str, ok: bool, d: f64) -> Result<Pattern> {
        self.up()?;
        self.store.record_outcome(p, s, ok, d).await
    }
}

#[async_trait]
impl IncidentStore for Switch {
    async fn save_incident(&self, i: &Incident) -> Result<()> {
        self.up()?;
        self.store.save_incident(i).await
    }

    async fn get_incident(&self, id: Uuid) -> Result<Option<Incident>> {
        self.up()?;
        self.store.get_incident(id).await
    }

    async fn list_incidents(&self, f: &IncidentFilter) -> Result<Vec<Incident>> {
        self.up()?;
        self.store.list_incidents(f).await
    }

    async fn save_action(&self, a: &ActionRecord) -> Result<()> {
        self.up()?;
        self.store.save_action(a).await
    }

    async fn list_actions(&self, i: Option<Uuid>) -> Result<Vec<ActionRecord>> {
        self.up()?;
        self.store.list_actions(i).await
    }

    async fn save_approval(&self, a: &Approval) -> Result<()> {
        self.up()?;
        self.store.save_approval(a).await
    }

    async fn list_approvals(&self, p: bool) -> Result<Vec<Approval>> {
        self.up()?;
        self.store.list_approvals(p).await
    }
    async fn retention_cleanup(&self, t: chrono::DateTime<chrono::Utc>) -> Result<u64> {
        self.up()?;
        self.store.retention_cleanup(t).await
    }
}

#[async_trait]
impl AuditStore for Switch {
    async fn append_audit(&self, r: &AuditRecord) -> Result<()> {
        self.up()?;
        self.store.append_audit(r).await
    }

    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        self.up()?;
        self.store.list_audit(limit).await
    }
    async fn audit_checkpoint(&self) -> Result<Option<selfheal::ChainHead>> {
        self.up()?;
        self.store.audit_checkpoint().await
    }
}

#[async_trait]
impl DiagnosisCache for Switch {
    async fn cached_diagnosis(&self, f: &str) -> Result<Option<selfheal::Diagnosis>> {
        self.up()?;
        self.store.cached_diagnosis(f).await
    }
    async fn cache_diagnosis(
        &self,
        f: &str,
        d: &selfheal::Diagnosis,
        ttl: std::time::Duration,
    ) -> Result<()> {
        self.up()?;
        self.store.cache_diagnosis(f, d, ttl).await
    }
}

#[async_trait]
impl ReportStore for Switch {}

#[async_trait]
impl ControlStore for Switch {
    async fn put_control(&self, key: &str, value: &serde_json::Value) -> Result<()> {
        self.up()?;
        self.store.put_control(key, value).await
    }
    async fn delete_control(&self, key: &str) -> Result<bool> {
        self.up()?;
        self.store.delete_control(key).await
    }
    async fn list_control(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>> {
        self.up()?;
        self.store.list_control(prefix).await
    }
    async fn approval(&self, id: uuid::Uuid) -> Result<Option<selfheal::Approval>> {
        self.up()?;
        self.store.approval(id).await
    }
    async fn decide_approval<'a>(
        &self,
        id: uuid::Uuid,
        state: selfheal::ApprovalState,
        by: &str,
        note: Option<&'a str>,
    ) -> Result<selfheal::Decided> {
        self.up()?;
        self.store.decide_approval(id, state, by, note).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_record_whose_position_was_taken_is_chained_after_the_newest() {
    let Some((_cleanup, url, schema)) = schema().await else {
        return;
    };
    // Replica A buffers through an outage of its own connection; replica B (a healer,
    // buffered by default) goes on writing to the same database meanwhile.
    let a_link = Arc::new(Switch {
        store: connect(&url, &schema).await,
        down: AtomicBool::new(false),
    });
    let a = BufferedStore::new(a_link.clone()).retry_every(Duration::from_secs(3600));
    let first = chain_of(&a, 1).await;

    a_link.down.store(true, Ordering::SeqCst);
    let mut mine = first.clone();
    for i in 0..2 {
        let r =
            AuditEntry::new("self_heal.executed", format!("a{i}")).chain(mine.last(), Utc::now());
        a.append_audit(&r).await.unwrap();
        mine.push(r);
    }
    assert_eq!(a.pending(), 2);

    let (b, running, verdict) = start(connect(&url, &schema).await).await;
    assert_eq!(verdict, Ok(()));
    for name in ["b0", "b1"] {
        b.admin()
            .add_pattern(Pattern::new(name).regex(name), "bob")
            .await
            .unwrap();
    }

    // A's link is back: its records land after B's, not dropped.
    a_link.down.store(false, Ordering::SeqCst);
    a.flush().await.unwrap();
    assert_eq!((a.pending(), a.dropped_writes()), (0, 0));
    let audit = a.list_audit(100).await.unwrap();
    verify_chain(&audit).expect("one chain");
    let results: Vec<_> = audit.iter().map(|r| r.result.as_str()).collect();
    assert_eq!(results.len(), 5, "{results:?}");
    assert_eq!(
        &results[3..],
        ["a0", "a1"],
        "A's records, in order, at the end"
    );
    assert_eq!(
        audit[1..3]
            .iter()
            .map(|r| r.pattern.as_deref())
            .collect::<Vec<_>>(),
        [Some("b0"), Some("b1")]
    );

    // A's next record, chained after its own last, is refused so A chains it again.
    let next = AuditEntry::new("self_heal.executed", "a2").chain(mine.last(), Utc::now());
    let refused = a.append_audit(&next).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Conflict, "{refused}");
    let after = AuditEntry::new("self_heal.executed", "a2").chain(audit.last(), Utc::now());
    a.append_audit(&after).await.unwrap();
    verify_chain(&a.list_audit(100).await.unwrap()).unwrap();

    // B, whose head is older than the store's now, chains after the newest too.
    b.admin()
        .add_pattern(Pattern::new("b2").regex("b2"), "bob")
        .await
        .unwrap();
    let audit = a.list_audit(100).await.unwrap();
    verify_chain(&audit).unwrap();
    assert_eq!(audit.len(), 7);
    assert_eq!(audit[6].pattern.as_deref(), Some("b2"));
    running.shutdown().await;
}
