//! A store outage mid-run, for real: a private PostgreSQL (`initdb` + `pg_ctl`) is
//! stopped while a default-built healer works. Healing goes on, its writes wait in the
//! `BufferedStore` the builder wrapped the store in, and once the server is back
//! everything arrives exactly once.
#![cfg(feature = "postgres")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use selfheal::storage::PostgresStore;
use selfheal::{
    ActionContext, ActionOutcome, ActionStatus, AuditStore, Executor, FixBinding, Healer,
    HealerConfig, IncidentFilter, IncidentStatus, IncidentStore, Pattern, PatternMode,
    PatternStore, Phase, RemediationPlan, Result, Severity, Signal, Strategy, verify_chain,
};
use selfheal_testsupport::{PrivatePostgres, unavailable};
use tokio::sync::broadcast;
use tokio::time::Instant;

#[derive(Debug, Default)]
struct Restart(AtomicUsize);

#[async_trait]
impl Strategy for Restart {
    fn name(&self) -> &str {
        "restart"
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        Ok(RemediationPlan::new("restart", &ctx.target).step("restart it"))
    }
    async fn execute(&self, _: &RemediationPlan, _: Arc<dyn Executor>) -> Result<ActionOutcome> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(ActionOutcome::ok(Duration::from_millis(1)))
    }
}

async fn resolved(events: &mut broadcast::Receiver<selfheal::HealingEvent>, target: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(e)) if e.target == target && e.phase == Phase::Resolved => return,
            Ok(Ok(e)) if e.target == target && e.phase == Phase::Escalated => {
                panic!("escalated instead of healing: {}", e.detail)
            }
            Ok(_) => {}
            Err(_) => panic!("no resolution on {target} within 30 s"),
        }
    }
}

fn storm(healer: &Healer, target: &str) {
    for _ in 0..4 {
        healer.observe(Signal::new(target, "ERR max number of clients reached"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healing_goes_on_through_a_store_outage_and_every_write_lands_once() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let mut pg = match tokio::task::spawn_blocking(|| {
        // The private cluster commits asynchronously by default; a crash (the stop
        // below) would lose the last commits, which is not the outage under test.
        PrivatePostgres::start(&[("synchronous_commit", "on")])
    })
    .await
    .unwrap()
    {
        Ok(pg) => pg,
        Err(e) => return unavailable("initdb/pg_ctl", e),
    };
    let postgres = PostgresStore::builder(pg.url())
        .acquire_timeout(Duration::from_millis(500))
        .seed_catalog(false)
        .connect()
        .await
        .unwrap();
    postgres
        .add_pattern(
            &Pattern::new("too_many_clients")
                .regex("max number of clients reached")
                .severity(Severity::High)
                .mode(PatternMode::Active)
                .auto_healable(true)
                .confidence(0.9)
                .threshold(3, Duration::from_secs(60))
                .fix(FixBinding::new("restart")),
        )
        .await
        .unwrap();
    let mut config = HealerConfig::default();
    config.guards.cooldown = Duration::from_secs(1);
    config.verification.interval = Duration::from_millis(50);
    config.verification.quiet_for = Duration::from_millis(200);
    let restart = Arc::new(Restart::default());
    // Nothing but the plain store: buffering is the default.
    let healer = Healer::builder()
        .config(config)
        .store(postgres.clone())
        .strategy_arc(restart.clone())
        .build()
        .unwrap();
    let store = healer.store_buffer().expect("buffered by default");
    let mut events = healer.subscribe();
    let running = healer.spawn();

    // Healthy store: one incident healed and written through.
    storm(&healer, "cache-a");
    resolved(&mut events, "cache-a").await;
    assert_eq!(store.pending(), 0);

    // The database goes away mid-run; the healer keeps healing.
    tokio::task::block_in_place(|| pg.stop()).unwrap();
    storm(&healer, "cache-b");
    resolved(&mut events, "cache-b").await;
    assert_eq!(
        restart.0.load(Ordering::SeqCst),
        2,
        "healed during the outage"
    );
    let waiting = store.pending();
    assert!(waiting >= 5, "the outage's writes are buffered: {waiting}");
    assert!(
        postgres
            .list_incidents(&IncidentFilter::default())
            .await
            .is_err(),
        "the database really is down"
    );

    // Back: everything buffered is replayed.
    tokio::task::block_in_place(|| pg.start_again()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = store.flush().await {
        assert!(
            Instant::now() < deadline,
            "the store did not come back: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.pending(), 0);
    assert_eq!(store.dropped_writes(), 0);
    assert!(store.replayed_writes() >= waiting as u64);
    assert_eq!(
        (healer.audit_waiting(), healer.audit_dropped()),
        (0, 0),
        "no audit record waiting or dropped"
    );

    let incidents = postgres
        .list_incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 2, "{incidents:#?}");
    assert!(
        incidents
            .iter()
            .all(|i| i.status == IncidentStatus::Resolved)
    );
    let actions = postgres.list_actions(None).await.unwrap();
    assert_eq!(actions.len(), 2, "one action per incident, once each");
    assert!(actions.iter().all(|a| a.status == ActionStatus::Succeeded));
    let audit = postgres.list_audit(usize::MAX).await.unwrap();
    verify_chain(&audit).expect("the chain written across the outage verifies");
    let seqs: Vec<u64> = audit.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=audit.len() as u64).collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    let count = |t: &str| audit.iter().filter(|r| r.event_type == t).count();
    assert_eq!(
        (count("self_heal.detected"), count("self_heal.resolved")),
        (2, 2)
    );
    let learned = postgres
        .get_pattern("too_many_clients")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(learned.use_count, 2, "both outcomes learned, once each");
    assert_eq!(learned.fixes[0].successes, 2);

    running.shutdown().await;
    postgres.close().await;
}
