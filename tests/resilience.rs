//! The healer under adverse conditions: a store that refuses every write, two
//! incidents on one target, its own log events, and the admin health questions.

mod support;

use std::time::Duration;

use selfheal::{
    Error, ErrorKind, Healer, HealerConfig, MemoryStore, MockStore, Pattern, Phase, Signal,
};
use support::{FakeFix, Gauge, next};

fn active(name: &str, regex: &str, fix: &str) -> Pattern {
    support::auto_pattern(name, regex, fix).threshold(2, Duration::from_secs(60))
}

fn down() -> Error {
    Error::new(ErrorKind::Unavailable, "database is down")
}

/// A store that is down: every read and write fails as unavailable.
fn broken_store() -> MockStore {
    let pattern = active("pool", "pool timed out", "restart");
    let mut store = MockStore::new();
    store
        .expect_list_patterns()
        .returning(move || Ok(vec![pattern.clone()]));
    store.expect_list_audit().returning(|_| Err(down()));
    store.expect_audit_checkpoint().returning(|| Err(down()));
    store.expect_list_actions().returning(|_| Err(down()));
    store.expect_list_incidents().returning(|_| Err(down()));
    store.expect_append_audit().returning(|_| Err(down()));
    store.expect_save_incident().returning(|_| Err(down()));
    store.expect_save_action().returning(|_| Err(down()));
    store.expect_list_control().returning(|_| Err(down()));
    store.expect_put_control().returning(|_, _| Err(down()));
    store.expect_delete_control().returning(|_| Err(down()));
    store
        .expect_record_outcome()
        .returning(|_, _, _, _| Err(down()));
    store
}

/// Heals one incident on `builder` with the broken store; the healer, still running.
async fn heal_with_broken_store(builder: selfheal::HealerBuilder) -> (Healer, selfheal::Running) {
    let gauge = Gauge::new(0);
    let fix = FakeFix::new("restart", &gauge, Some(100));
    let healer = builder
        .store(broken_store())
        .strategy(fix.clone())
        .verifier("db", gauge)
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    for _ in 0..2 {
        healer.observe(Signal::new(
            "db",
            "pool timed out while waiting for an open connection",
        ));
    }
    next(&mut rx, Phase::Resolved).await;
    assert_eq!(
        fix.runs(),
        1,
        "the fix ran although nothing could be stored"
    );
    (healer, running)
}

#[tokio::test(start_paused = true)]
async fn a_store_that_refuses_every_write_does_not_stop_healing() {
    let (healer, running) = heal_with_broken_store(Healer::builder().unbuffered()).await;
    assert!(
        healer.store_errors() >= 5,
        "{} store errors counted",
        healer.store_errors()
    );
    assert!(
        healer.audit_waiting() >= 3,
        "audit records are kept for a retry: {}",
        healer.audit_waiting()
    );
    assert_eq!(healer.audit_dropped(), 0);
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn by_default_the_writes_of_an_unreachable_store_are_buffered() {
    let (healer, running) = heal_with_broken_store(Healer::builder()).await;
    let buffer = healer.store_buffer().expect("buffered by default");
    assert!(
        buffer.pending() >= 5,
        "incident, action, outcome and audit writes wait: {}",
        buffer.pending()
    );
    assert_eq!(buffer.dropped_writes(), 0);
    assert_eq!(healer.store_errors(), 0, "nothing was lost");
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn one_action_at_a_time_per_target() {
    let gauge = Gauge::new(100);
    let a = FakeFix::new("restart", &gauge, Some(100));
    let b = FakeFix::new("flush_pool", &gauge, Some(100));
    let mut config = HealerConfig::default();
    config.detection.correlation_window = Duration::ZERO; // two incidents on one target
    let healer = Healer::builder()
        .config(config)
        .strategy(a.clone())
        .strategy(b.clone())
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(active("pool", "pool timed out", "restart"), "t")
        .await
        .unwrap();
    healer
        .admin()
        .add_pattern(active("reset", "connection reset", "flush_pool"), "t")
        .await
        .unwrap();

    for _ in 0..2 {
        healer.observe(Signal::new(
            "db",
            "pool timed out while waiting for an open connection",
        ));
        healer.observe(Signal::new("db", "connection reset by peer"));
    }
    // Each action holds the target through its verification, so the phases of the
    // two incidents never interleave between Executing and Resolved.
    let mut running_on_db = 0;
    let mut resolved = 0;
    while resolved < 2 {
        let e = rx.recv().await.unwrap();
        match e.phase {
            Phase::Executing => {
                running_on_db += 1;
                assert_eq!(running_on_db, 1, "two actions ran on `db` at once");
            }
            Phase::Resolved => {
                running_on_db -= 1;
                resolved += 1;
            }
            _ => {}
        }
    }
    assert_eq!((a.runs(), b.runs()), (1, 1));
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_healer_ignores_its_own_log_events() {
    use tracing_subscriber::layer::SubscriberExt;
    let healer = Healer::builder().build().unwrap();
    let subscriber = tracing_subscriber::registry().with(healer.layer());
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..10 {
            tracing::error!(target: "selfheal_core::healer", "store write failed; continuing in memory");
        }
        tracing::warn!(component = "cache", "cache miss storm");
    });
    assert_eq!(healer.observed(), 1, "only the host's event is a signal");
}

#[tokio::test(start_paused = true)]
async fn health_overview_and_manual_check() {
    let healer = Healer::builder()
        .verifier("db", Gauge::new(42))
        .verifier("cache", Gauge::new(100))
        .build()
        .unwrap();
    let overview = healer.admin().health().await;
    assert_eq!(overview["db"].score, 42);
    assert_eq!(overview["cache"].score, 100);
    assert_eq!(healer.admin().check("db").await.unwrap().score, 42);
    let err = healer.admin().check("queue").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("no verifier for target `queue`"));
}

#[test]
fn configuration_loads_from_toml_and_refuses_nonsense() {
    let config = HealerConfig::from_toml(
        r#"
        service = "checkout"
        [policy]
        auto_threshold = 0.8
        require_approval_for = ["flushdb"]
        [guards]
        cooldown = "2m"
        [verification]
        window = "45s"
        "#,
    )
    .unwrap();
    assert_eq!(config.service, "checkout");
    assert_eq!(config.policy.auto_threshold, 0.8);
    assert_eq!(
        config.policy.suggest_threshold, 0.3,
        "unset values keep their default"
    );
    assert_eq!(config.guards.cooldown, Duration::from_secs(120));
    assert_eq!(config.guards.max_actions_per_hour, 5);
    assert_eq!(config.verification.window, Duration::from_secs(45));

    let err = HealerConfig::from_toml("[policy]\nauto_threshold = 0.2\nsuggest_threshold = 0.5")
        .unwrap_err();
    assert!(err.message().contains("suggest_threshold"), "{err}");
    let err = HealerConfig::from_toml("[guards]\ncooldown = \"ten minutes\"").unwrap_err();
    assert!(err.message().starts_with("invalid healer config"), "{err}");
}

#[test]
fn fleet_mode_refuses_a_store_that_cannot_coordinate() {
    let mut config = HealerConfig::default();
    config.guards.fleet.enabled = true;
    let err = Healer::builder()
        .store(MockStore::new())
        .config(config.clone())
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("FleetStore"), "{err}");
    // A store wrapped for outages keeps (or lacks) its inner store's coordination.
    let buffered = selfheal::store::BufferedStore::new(std::sync::Arc::new(MockStore::new()));
    assert!(
        Healer::builder()
            .store(buffered)
            .config(config.clone())
            .build()
            .is_err()
    );
    // The same configuration on a store that coordinates builds.
    Healer::builder()
        .store(MemoryStore::new())
        .config(config)
        .build()
        .unwrap();
}
