//! Operators' control state lives in the store: silences, dry-run switches, the
//! breaker and back-off hold on every replica that shares the store and after a
//! restart. Real stores: PostgreSQL at `DATABASE_URL` (two replicas on one schema), a
//! SQLite file reopened, and a `MemoryStore` shared by healers in paused time.

mod support;

use std::sync::Arc;
use std::time::Duration;

use selfheal::storage::{PostgresStore, SqliteStore};
use selfheal::{
    FixBinding, Healer, HealerConfig, MemoryStore, Pattern, PatternMode, Phase, Severity, Signal,
    Silence, SilenceScope,
};
use selfheal_testsupport::env_url;
use support::{FakeFix, Gauge, Rig, next, rig};
use uuid::Uuid;

const POOL: &str = "pool timed out while waiting for an open connection";

fn pool_pattern() -> Pattern {
    Pattern::new("pool_exhausted")
        .regex(POOL)
        .severity(Severity::High)
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(0.9)
        .threshold(3, Duration::from_secs(60))
        .fix(FixBinding::new("restart"))
}

fn storm(healer: &Healer, target: &str) {
    for i in 0..3 {
        healer.observe(Signal::new(target, format!("{POOL} (attempt {i})")));
    }
}

fn silence(target: &str) -> Silence {
    Silence::from_now(
        SilenceScope::Target(target.into()),
        Duration::from_secs(3600),
    )
    .reason("planned failover")
}

/// Two replicas, each with its own connection to one schema: what an operator does on
/// A holds on B once B re-reads, and the other way round.
#[tokio::test]
async fn a_silence_and_dry_run_on_replica_a_hold_on_replica_b() {
    let Some(url) = env_url("DATABASE_URL") else {
        return;
    };
    let schema = format!("selfheal_control_{}", Uuid::new_v4().simple());
    let connect = || {
        PostgresStore::builder(&url)
            .schema(&schema)
            .seed_catalog(false)
            .connect()
    };
    let a = Healer::builder()
        .store(connect().await.unwrap())
        .build()
        .unwrap();
    let b = Healer::builder()
        .store(connect().await.unwrap())
        .build()
        .unwrap();

    let id = a
        .admin()
        .add_silence(silence("orders-db"), "alice")
        .await
        .unwrap();
    a.admin().set_dry_run(true, "alice").await;
    a.admin()
        .set_pattern_dry_run("pool_exhausted", true, "alice")
        .await;
    assert!(
        b.admin().silences().is_empty() && !b.admin().is_dry_run(None),
        "not read yet"
    );

    b.admin().reload_control().await.unwrap();
    let on_b = b.admin().silences();
    assert_eq!(on_b.len(), 1);
    assert_eq!((on_b[0].id, on_b[0].active), (id, true));
    assert_eq!(on_b[0].created_by, "alice");
    assert!(b.admin().is_dry_run(None) && b.admin().is_dry_run(Some("pool_exhausted")));

    // B lifts the silence and switches the healer live; A follows.
    b.admin().remove_silence(id, "bob").await.unwrap();
    b.admin().set_dry_run(false, "bob").await;
    a.admin().reload_control().await.unwrap();
    assert!(a.admin().silences().is_empty());
    assert!(!a.admin().is_dry_run(None) && a.admin().is_dry_run(Some("pool_exhausted")));
    assert_eq!((a.store_errors(), b.store_errors()), (0, 0));

    use selfheal::storage::sqlx;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    sqlx::query(sqlx::AssertSqlSafe(drop))
        .execute(&pool)
        .await
        .unwrap();
}

/// A healer on a SQLite file is dropped and a new one built on the reopened file: the
/// silence still suppresses (loaded before the first signal) and the dry-run switch
/// is still in force.
#[tokio::test]
async fn a_silence_and_dry_run_survive_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("selfheal.db");
    let db = db.to_str().unwrap();
    {
        let store = SqliteStore::open(db).await.unwrap();
        let healer = Healer::builder().store(store).build().unwrap();
        healer
            .admin()
            .add_silence(silence("orders-db"), "alice")
            .await
            .unwrap();
        healer
            .admin()
            .set_pattern_dry_run("pool_exhausted", true, "alice")
            .await;
        assert_eq!(healer.store_errors(), 0);
    }

    let store = SqliteStore::open(db).await.unwrap();
    let healer = Healer::builder()
        .store(store)
        .strategy(FakeFix::new("restart", &Gauge::new(0), Some(100)))
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(pool_pattern(), "test")
        .await
        .unwrap();
    storm(&healer, "orders-db");
    let silenced = next(&mut rx, Phase::Silenced).await;
    assert_eq!(silenced.target, "orders-db");
    assert_eq!(healer.admin().silences()[0].created_by, "alice");
    assert!(healer.admin().is_dry_run(Some("pool_exhausted")) && !healer.admin().is_dry_run(None));
    running.shutdown().await;
}

/// Without anyone calling `reload_control`, a change on A holds on B within
/// `safety.control_refresh`, and not before the first re-read.
#[tokio::test(start_paused = true)]
async fn the_periodic_reread_carries_a_change_within_control_refresh() {
    let store = Arc::new(MemoryStore::new());
    let a = Healer::builder().store_arc(store.clone()).build().unwrap();
    let b = Healer::builder().store_arc(store).build().unwrap();
    let running = b.spawn();
    settle().await;
    a.admin().set_dry_run(true, "alice").await;
    tokio::time::advance(Duration::from_secs(4)).await;
    settle().await;
    assert!(
        !b.admin().is_dry_run(None),
        "the first re-read is due at 5 s"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    assert!(b.admin().is_dry_run(None), "re-read at 5 s");
    running.shutdown().await;
}

/// Lets the spawned tasks run what is due (no time passes: paused clock, no timers).
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// The breaker trips on one replica's failure; a restarted healer on the same store
/// starts with it open and runs nothing until re-armed, and the re-arm holds after
/// the next restart. Back-off carries over the same way.
#[tokio::test(start_paused = true)]
async fn a_tripped_or_rearmed_breaker_and_back_off_survive_a_restart() {
    let store = Arc::new(MemoryStore::new());
    let gauge = Gauge::new(0);
    let mut config = HealerConfig::default();
    config.safety.breaker.max_failures = 1;
    config.feedback.failure_delta = 0.0;
    let build = |heals_to| {
        let fix = FakeFix::new("restart", &gauge, heals_to);
        let builder = Healer::builder()
            .config(config.clone())
            .store_arc(store.clone())
            .strategy(fix.clone())
            .verifier("db", gauge.clone())
            .verifier("cache", gauge.clone())
            .verifier("api", gauge.clone());
        (builder, fix)
    };

    // First run: the fix fails, the breaker trips.
    let (builder, _) = build(None);
    let mut r = rig(builder, pool_pattern()).await;
    storm(&r.healer, "db");
    next(&mut r.rx, Phase::BreakerTripped).await;
    r.running.shutdown().await;

    // Restarted: open before the first signal, so nothing runs.
    let (builder, fix) = build(Some(100));
    let mut r = restarted(builder);
    storm(&r.healer, "cache");
    let e = next(&mut r.rx, Phase::Escalated).await;
    assert!(e.detail.contains("breaker is open"), "{}", e.detail);
    assert!(r.healer.admin().breaker_open());
    assert_eq!(fix.runs(), 0);
    r.healer.admin().rearm("alice").await.unwrap();
    r.running.shutdown().await;

    // Restarted again (another target: the first run's cooldown on `db` carries over):
    // re-armed, the fix runs and is verified; its back-off is stored.
    gauge.set(0);
    let (builder, fix) = build(Some(100));
    let mut r = restarted(builder);
    storm(&r.healer, "api");
    next(&mut r.rx, Phase::Resolved).await;
    assert!(!r.healer.admin().breaker_open());
    assert_eq!(fix.runs(), 1);
    let cooldown = r.healer.admin().next_cooldown("restart", "api");
    tokio::time::advance(cooldown).await;
    gauge.set(0);
    storm(&r.healer, "api");
    next(&mut r.rx, Phase::Resolved).await;
    let backed_off = r.healer.admin().next_cooldown("restart", "api");
    assert_eq!(backed_off, cooldown * 2, "a repeat doubles the cooldown");
    r.running.shutdown().await;

    let (builder, _) = build(Some(100));
    let healer = builder.build().unwrap();
    healer.admin().reload_control().await.unwrap();
    assert_eq!(healer.admin().next_cooldown("restart", "api"), backed_off);
    assert!(!healer.admin().breaker_open());
}

/// A healer built on a store that holds the pattern already, subscribed and spawned.
fn restarted(builder: selfheal::HealerBuilder) -> Rig {
    let inbox = support::Inbox::default();
    let healer = builder.notifier(inbox.clone()).build().unwrap();
    let rx = healer.subscribe();
    let running = healer.spawn();
    Rig {
        healer,
        rx,
        running,
        inbox,
    }
}
