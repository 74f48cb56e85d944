//! Fleet mode against a real PostgreSQL (`DATABASE_URL`): eight healers, each on its own
//! runtime with its own connection pool (as eight replicas would be), share one store.
//! The same error storm reaches all of them and exactly one remediation runs; when the
//! replica that is acting dies mid-action, another takes over once its lease lapses.
//!
//! `cargo test --features postgres --test fleet -- --nocapture` prints the time from
//! the first error to the single remediation.
#![cfg(feature = "postgres")]
#![allow(clippy::print_stdout)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use selfheal::storage::PostgresStore;
use selfheal::{
    ActionContext, ActionOutcome, ActionStatus, AuditStore, Executor, FixBinding, Healer,
    HealerConfig, IncidentFilter, IncidentStatus, IncidentStore, Pattern, PatternMode,
    PatternStore, RemediationPlan, Result, Running, Severity, Signal, Strategy,
};
use selfheal_testsupport::env_url;
use uuid::Uuid;

const REPLICAS: usize = 8;
const TARGET: &str = "orders-db";
const ERROR: &str = "pool timed out while waiting for an open connection";

/// What every replica's strategy reports: who ran it and when.
#[derive(Debug, Default)]
struct Ledger {
    runs: Mutex<Vec<(usize, Instant)>>,
    /// Set: the first run never returns (its replica is about to die).
    hang_first: bool,
    started: Mutex<Option<mpsc::Sender<usize>>>,
    total: AtomicUsize,
}

#[derive(Debug)]
struct ResetPool {
    replica: usize,
    ledger: Arc<Ledger>,
}

#[async_trait]
impl Strategy for ResetPool {
    fn name(&self) -> &str {
        "reset_pool"
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        Ok(RemediationPlan::new("reset_pool", &ctx.target).step("reset the pool"))
    }
    async fn execute(&self, _: &RemediationPlan, _: Arc<dyn Executor>) -> Result<ActionOutcome> {
        let n = self.ledger.total.fetch_add(1, Ordering::SeqCst);
        self.ledger
            .runs
            .lock()
            .unwrap()
            .push((self.replica, Instant::now()));
        if let Some(tx) = self.ledger.started.lock().unwrap().as_ref() {
            let _ = tx.send(self.replica);
        }
        if self.ledger.hang_first && n == 0 {
            // Mid-action forever: the test kills this replica now.
            std::future::pending::<()>().await;
        }
        Ok(ActionOutcome::ok(Duration::from_millis(5)))
    }
}

struct Replica {
    rt: tokio::runtime::Runtime,
    healer: Healer,
    running: Option<Running>,
}

fn config(replica: usize, lease_ttl: Duration, max_attempts: u32) -> HealerConfig {
    let mut c = HealerConfig {
        service: "orders".into(),
        ..HealerConfig::default()
    };
    c.guards.fleet.enabled = true;
    c.guards.fleet.replica = format!("replica-{replica}");
    c.guards.fleet.lease_ttl = lease_ttl;
    c.guards.max_attempts = max_attempts;
    c.guards.fleet.poll = Duration::from_millis(50);
    c.verification.interval = Duration::from_millis(50);
    c.verification.quiet_for = Duration::from_millis(300);
    c.verification.window = Duration::from_secs(20);
    c
}

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
                use selfheal::storage::sqlx;
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

/// A fresh schema with the pattern seeded, or `None` (skipped without DATABASE_URL).
async fn schema() -> Option<(String, String, PostgresStore)> {
    let url = env_url("DATABASE_URL")?;
    let schema = format!("selfheal_fleet_{}", Uuid::new_v4().simple());
    let store = PostgresStore::builder(&url)
        .schema(&schema)
        .seed_catalog(false)
        .connect()
        .await
        .expect("connect and migrate");
    store
        .add_pattern(
            &Pattern::new("pool_exhausted")
                .regex("pool timed out while waiting for an open connection")
                .severity(Severity::High)
                .mode(PatternMode::Active)
                .auto_healable(true)
                .confidence(0.9)
                .threshold(3, Duration::from_secs(60))
                .fix(FixBinding::new("reset_pool")),
        )
        .await
        .unwrap();
    Some((url, schema, store))
}

fn start_replicas(
    url: &str,
    schema: &str,
    ledger: &Arc<Ledger>,
    lease_ttl: Duration,
    max_attempts: u32,
) -> Vec<Replica> {
    (0..REPLICAS)
        .map(|i| {
            let (rt, store) = support::replica_runtime(url, schema);
            let healer = Healer::builder()
                .config(config(i, lease_ttl, max_attempts))
                .store(store)
                .strategy(ResetPool {
                    replica: i,
                    ledger: ledger.clone(),
                })
                .build()
                .unwrap();
            let running = {
                let _in = rt.enter();
                healer.spawn()
            };
            Replica {
                rt,
                healer,
                running: Some(running),
            }
        })
        .collect()
}

/// The same storm to every replica; returns when the first error was fed.
fn storm(replicas: &[Replica]) -> Instant {
    let first = Instant::now();
    for _ in 0..5 {
        for r in replicas {
            r.healer.observe(Signal::new(TARGET, ERROR));
        }
    }
    first
}

/// Polls the shared store until `done` holds for its incidents (or 30 s pass).
async fn wait_for(store: &PostgresStore, what: &str, done: impl Fn(&[selfheal::Incident]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let incidents = store
            .list_incidents(&IncidentFilter::default())
            .await
            .unwrap();
        if done(&incidents) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {incidents:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn shut_down(replicas: Vec<Replica>) {
    for mut r in replicas {
        if let Some(running) = r.running.take() {
            r.rt.block_on(running.shutdown());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_replicas_one_storm_one_remediation() {
    let Some((url, schema, control)) = schema().await else {
        return;
    };
    let _cleanup = DropSchema(url.clone(), schema.clone());
    let ledger = Arc::new(Ledger::default());
    let replicas = tokio::task::block_in_place(|| {
        start_replicas(&url, &schema, &ledger, Duration::from_secs(5), 3)
    });
    // Every replica has loaded the pattern once its intake runs; give the storm to all.
    let first_error = storm(&replicas);

    wait_for(&control, "every replica to settle its incident", |all| {
        all.len() == REPLICAS && all.iter().all(|i| i.status.is_terminal())
    })
    .await;
    let runs = ledger.runs.lock().unwrap().clone();
    assert_eq!(
        runs.len(),
        1,
        "exactly one remediation across the fleet: {runs:?}"
    );
    let (winner, at) = runs[0];
    println!(
        "fleet: {REPLICAS} replicas, first error -> the single remediation (replica-{winner}): {:?}",
        at - first_error
    );

    let incidents = control
        .list_incidents(&IncidentFilter::default())
        .await
        .unwrap();
    let resolved: Vec<_> = incidents
        .iter()
        .filter(|i| i.status == IncidentStatus::Resolved)
        .collect();
    assert_eq!(resolved.len(), 1, "{incidents:#?}");
    let standing_by = incidents
        .iter()
        .filter(|i| i.status == IncidentStatus::Closed && i.reason.contains("standing by"))
        .count();
    assert_eq!(
        standing_by,
        REPLICAS - 1,
        "the others stood by: {incidents:#?}"
    );
    let actions = control.list_actions(None).await.unwrap();
    assert_eq!(actions.len(), 1, "one action row in the shared store");
    assert_eq!(actions[0].status, ActionStatus::Succeeded);
    let audit = control.list_audit(usize::MAX).await.unwrap();
    let peers = audit
        .iter()
        .filter(|r| r.event_type == "self_heal.handled_by_peer")
        .count();
    assert_eq!(peers, REPLICAS - 1);
    selfheal::verify_chain(&audit).expect("the fleet writes one audit chain that verifies");
    assert!(
        audit.len() > 3 * REPLICAS,
        "every replica's records are in it"
    );
    let lease: Option<String> = sqlx::query_scalar("SELECT holder FROM leases WHERE target = $1")
        .bind(TARGET)
        .fetch_optional(control.pool())
        .await
        .unwrap();
    assert_eq!(lease, None, "every lease was handed back");

    tokio::task::block_in_place(|| shut_down(replicas));
    control.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_action_is_taken_over_after_its_lease_lapses() {
    let Some((url, schema, control)) = schema().await else {
        return;
    };
    let _cleanup = DropSchema(url.clone(), schema.clone());
    let lease_ttl = Duration::from_millis(1500);
    let (tx, rx) = mpsc::channel();
    let ledger = Arc::new(Ledger {
        hang_first: true,
        started: Mutex::new(Some(tx)),
        ..Ledger::default()
    });
    let mut replicas =
        tokio::task::block_in_place(|| start_replicas(&url, &schema, &ledger, lease_ttl, 3));
    storm(&replicas);

    let dying = tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(30)))
        .expect("one replica starts the remediation");
    // Kill it mid-action: its runtime goes away with every task, lease renewal included.
    let dead = replicas.remove(dying);
    let killed = Instant::now();
    tokio::task::block_in_place(move || {
        let Replica {
            rt,
            healer,
            running,
        } = dead;
        std::mem::forget(running); // never shut down cleanly: it crashed
        drop(healer);
        rt.shutdown_background();
    });

    let taker = tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(30)))
        .expect("another replica takes over");
    let took = killed.elapsed();
    assert_ne!(taker, dying, "the take-over runs on another replica");
    println!(
        "fleet: replica-{dying} killed mid-action; replica-{taker} took over after {took:?} (lease TTL {lease_ttl:?})"
    );
    assert!(
        took >= lease_ttl / 2,
        "the take-over waited for the lease to lapse (renewed every TTL/3): {took:?}"
    );

    wait_for(&control, "the survivors to settle", |all| {
        all.iter().filter(|i| i.status.is_terminal()).count() == REPLICAS - 1
    })
    .await;
    assert_eq!(
        ledger.total.load(Ordering::SeqCst),
        2,
        "the killed run and the take-over, no more"
    );
    let incidents = control
        .list_incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(
        incidents
            .iter()
            .filter(|i| i.status == IncidentStatus::Resolved)
            .count(),
        1,
        "{incidents:#?}"
    );
    assert_eq!(
        incidents
            .iter()
            .filter(|i| i.status == IncidentStatus::Remediating)
            .count(),
        1,
        "the dead replica's incident stays where it died"
    );
    let actions = control.list_actions(None).await.unwrap();
    let statuses: Vec<ActionStatus> = actions.iter().map(|a| a.status).collect();
    assert_eq!(statuses.len(), 2, "{actions:#?}");
    assert!(statuses.contains(&ActionStatus::Succeeded));
    assert!(statuses.contains(&ActionStatus::Running));

    tokio::task::block_in_place(|| shut_down(replicas));
    control.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_are_counted_fleet_wide_so_a_take_over_respects_max_attempts() {
    let Some((url, schema, control)) = schema().await else {
        return;
    };
    let _cleanup = DropSchema(url.clone(), schema.clone());
    let (tx, rx) = mpsc::channel();
    let ledger = Arc::new(Ledger {
        hang_first: true,
        started: Mutex::new(Some(tx)),
        ..Ledger::default()
    });
    let lease_ttl = Duration::from_millis(600);
    let mut replicas =
        tokio::task::block_in_place(|| start_replicas(&url, &schema, &ledger, lease_ttl, 1));
    storm(&replicas);
    let dying = tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(30)))
        .expect("one replica starts the remediation");
    let dead = replicas.remove(dying);
    tokio::task::block_in_place(move || {
        let Replica {
            rt,
            healer,
            running,
        } = dead;
        std::mem::forget(running);
        drop(healer);
        rt.shutdown_background();
    });

    // max_attempts = 1 for the fleet: the dead replica's attempt counts, so the others
    // escalate instead of trying again.
    wait_for(&control, "the survivors to escalate", |all| {
        all.iter().filter(|i| i.status.is_terminal()).count() == REPLICAS - 1
    })
    .await;
    let incidents = control
        .list_incidents(&IncidentFilter::default())
        .await
        .unwrap();
    let escalated: Vec<_> = incidents
        .iter()
        .filter(|i| i.status == IncidentStatus::Escalated)
        .collect();
    assert!(!escalated.is_empty(), "{incidents:#?}");
    assert!(
        escalated
            .iter()
            .all(|i| i.reason.contains("the fleet has used its 1 attempt")),
        "{escalated:#?}"
    );
    assert_eq!(ledger.total.load(Ordering::SeqCst), 1, "nobody tried again");
    tokio::task::block_in_place(|| shut_down(replicas));
    control.close().await;
}
