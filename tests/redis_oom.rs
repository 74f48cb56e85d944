//! Scenario 1, for real: a private `redis-server` with `maxmemory 2mb` and `noeviction`
//! is filled until writes fail with Redis's own OOM error. The service reports its
//! client errors to the healer as signals; the healer matches them, raises
//! `maxmemory` within its ceiling, verifies memory health back above 80, and writes
//! succeed again.
//!
//! Needs `redis-server` on PATH (skipped without it; a failure under `CI=true`).
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::time::Duration;

use selfheal::strategies::{
    EvictKeys, ProcessExecutor, RaiseMaxmemory, RedisHandle, RedisVerifier,
};
use selfheal::{
    ActionStatus, FixBinding, Healer, HealerConfig, IncidentFilter, IncidentStatus, Level,
    MemoryStore, Pattern, PatternMode, Phase, Severity, Signal, SignalSource, Verifier,
    verify_chain,
};
use selfheal_core::testkit::servers::{PrivateRedis, unavailable};
use tokio::sync::watch;

const TARGET: &str = "redis-cache";

fn oom_pattern() -> Pattern {
    Pattern::new("redis_oom")
        .description(
            "Redis refuses writes: used memory is over maxmemory and the policy is noeviction",
        )
        .regex(r"OOM.{0,4}command not allowed when used memory > 'maxmemory'")
        .severity(Severity::High)
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(0.9)
        .threshold(3, Duration::from_secs(60))
        .fix(FixBinding::new("redis_raise_maxmemory").params(serde_json::json!({"to": "16mb"})))
}

async fn write(handle: &RedisHandle, key: String, value: &[u8]) -> Result<(), String> {
    let mut conn = handle.connection().await.map_err(|e| e.to_string())?;
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_is_healed_and_takes_writes_again() {
    let redis =
        match PrivateRedis::start(&[("maxmemory", "2mb"), ("maxmemory-policy", "noeviction")]) {
            Ok(redis) => redis,
            Err(e) => return unavailable("redis-server", e),
        };
    let handle = Arc::new(RedisHandle::open(&redis.url()).unwrap());

    let mut config = HealerConfig::default();
    config.verification.window = Duration::from_secs(20);
    config.verification.interval = Duration::from_millis(200);
    config.verification.quiet_for = Duration::from_secs(1);
    let healer = Healer::builder()
        .config(config)
        .store(MemoryStore::new())
        .strategy(RaiseMaxmemory::new(handle.clone(), 32 * 1024 * 1024))
        .strategy(EvictKeys::new(handle.clone()))
        .verifier(TARGET, RedisVerifier::for_handle(&handle))
        .executor(ProcessExecutor::new())
        .build()
        .unwrap();
    let mut events = healer.subscribe();
    let running = healer.spawn();
    healer.seed_patterns([oom_pattern()]).await.unwrap();

    // The service: caches 8 KiB values every 20 ms and reports every failed write.
    let (stop, stopped) = watch::channel(false);
    let (first_error_tx, mut first_error) = watch::channel(None::<String>);
    let service = {
        let (handle, healer) = (handle.clone(), healer.clone());
        tokio::spawn(async move {
            let value = vec![b'x'; 8 * 1024];
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut i = 0u64;
            while !*stopped.borrow() {
                tick.tick().await;
                i += 1;
                if let Err(e) = write(&handle, format!("cache:{i}"), &value).await {
                    first_error_tx.send_if_modified(|first| {
                        first.get_or_insert_with(|| e.clone());
                        false
                    });
                    healer.observe(
                        Signal::new(TARGET, e)
                            .service("orders")
                            .source(SignalSource::Log)
                            .level(Level::Error),
                    );
                }
            }
        })
    };

    // Wait for the healer to finish, on its event stream (with a deadline).
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let event = events.recv().await.unwrap();
            if matches!(
                event.phase,
                Phase::Resolved | Phase::Escalated | Phase::Closed
            ) {
                return event;
            }
        }
    })
    .await
    .expect("the healer finished within 60 s");
    stop.send(true).unwrap();
    service.await.unwrap();
    assert_eq!(ended.phase, Phase::Resolved, "{}", ended.detail);

    let first_text = first_error
        .borrow_and_update()
        .clone()
        .expect("a write failed");
    assert!(
        first_text.contains("command not allowed when used memory > 'maxmemory'"),
        "the real OOM error: {first_text}"
    );

    // Writes succeed again and memory health is back above 80.
    write(&handle, "after:heal".into(), &[b'y'; 8 * 1024])
        .await
        .expect("writes succeed after the heal");
    let health = RedisVerifier::for_handle(&handle).check().await.unwrap();
    assert!(health.score > 80, "{health:?}");

    let incidents = healer.incidents(&IncidentFilter::default()).await.unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0].status, IncidentStatus::Resolved);
    assert_eq!(incidents[0].pattern.as_deref(), Some("redis_oom"));
    let actions = healer.actions(Some(incidents[0].id)).await.unwrap();
    assert_eq!(actions.len(), 1);
    let action = &actions[0];
    assert_eq!(action.strategy, "redis_raise_maxmemory");
    assert_eq!(action.status, ActionStatus::Succeeded);
    assert!(
        action
            .preview
            .contains("CONFIG SET maxmemory 16777216 (2.0 MiB → 16.0 MiB; ceiling 32.0 MiB)"),
        "{}",
        action.preview
    );
    let (before, after) = (action.health_before.unwrap(), action.health_after.unwrap());
    assert!(before < 20, "a full server before the fix: {before}");
    assert!(after > 80, "memory health after the fix: {after}");
    verify_chain(&healer.audit_log(1000).await.unwrap()).expect("audit chain intact");
    running.shutdown().await;
}
