//! Scenario 1, for real: a private `redis-server` with `maxmemory 2mb` and `noeviction`
//! is filled until writes fail with Redis's own OOM error. The service reports its
//! client errors to the healer as signals; the healer matches them, raises
//! `maxmemory` within its ceiling, verifies that the errors stopped and the write probe
//! passes (memory still at about half of the new limit), and writes succeed again.
//!
//! Needs `redis-server` on PATH (skipped without it; a failure under `CI=true`).
#![cfg(feature = "redis")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use selfheal::strategies::{ProcessExecutor, RedisHandle, RedisIntegration, RedisVerifier};
use selfheal::{
    ActionStatus, FixBinding, Healer, HealerConfig, IncidentFilter, IncidentStatus, Level,
    MemoryStore, Pattern, PatternMode, Phase, Severity, Signal, SignalSource, Verifier,
    verify_chain,
};
use selfheal_testsupport::{PrivateRedis, unavailable};
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
        .fix(FixBinding::new("redis_raise_maxmemory").params(serde_json::json!({"to": "4mb"})))
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
        .integrate(
            RedisIntegration::new(TARGET, handle.clone()).maxmemory_ceiling(32 * 1024 * 1024),
        )
        .executor(ProcessExecutor::new())
        .build()
        .unwrap();
    let mut events = healer.subscribe();
    let running = healer.spawn();
    healer.admin().seed_patterns([oom_pattern()]).await.unwrap();

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
    let ended = support::finished(&mut events, Duration::from_secs(60)).await;
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

    // Writes succeed again; memory is about half of the new limit, and that passes.
    write(&handle, "after:heal".into(), &[b'y'; 8 * 1024])
        .await
        .expect("writes succeed after the heal");
    let health = RedisVerifier::for_handle(&handle).check().await.unwrap();
    assert!(health.passed, "{health:?}");
    assert!(
        health.score < 80,
        "still far from 80 % headroom: {health:?}"
    );

    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0].status, IncidentStatus::Resolved);
    assert_eq!(incidents[0].pattern.as_deref(), Some("redis_oom"));
    let actions = healer.admin().actions(Some(incidents[0].id)).await.unwrap();
    assert_eq!(actions.len(), 1);
    let action = &actions[0];
    assert_eq!(action.strategy, "redis_raise_maxmemory");
    assert_eq!(action.status, ActionStatus::Succeeded);
    assert!(
        action
            .preview
            .contains("CONFIG SET maxmemory 4194304 (2.0 MiB → 4.0 MiB; ceiling 32.0 MiB)"),
        "{}",
        action.preview
    );
    let (before, after) = (action.health_before.unwrap(), action.health_after.unwrap());
    assert!(before < 20, "a full server before the fix: {before}");
    // About 50 % of maxmemory in use: a usage score near 50, verified all the same.
    assert!(
        (20..80).contains(&after),
        "memory health after the fix: {after}"
    );
    assert!(
        !healer
            .admin()
            .audit_log(1000)
            .await
            .unwrap()
            .iter()
            .any(|r| r.event_type == "self_heal.rolled_back"),
        "nothing rolled back"
    );
    verify_chain(&healer.admin().audit_log(1000).await.unwrap()).expect("audit chain intact");
    running.shutdown().await;
}

/// Writes 8 KiB values until Redis refuses; returns the refusal's text.
async fn fill(handle: &RedisHandle) -> String {
    let value = vec![b'x'; 8 * 1024];
    for i in 0..10_000 {
        if let Err(e) = write(handle, format!("cache:{i}"), &value).await {
            return e;
        }
    }
    panic!("10 000 writes of 8 KiB fit in a 2 MB Redis");
}

/// The phases up to the first of `until`, with a deadline.
async fn phases_until(
    events: &mut tokio::sync::broadcast::Receiver<selfheal::HealingEvent>,
    until: &[Phase],
) -> Vec<Phase> {
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut phases = Vec::new();
        loop {
            let event = events.recv().await.unwrap();
            phases.push(event.phase);
            if until.contains(&event.phase) {
                return phases;
            }
        }
    })
    .await
    .expect("the phase came within 60 s")
}

async fn config_get(handle: &RedisHandle, name: &str) -> String {
    let mut conn = handle.connection().await.unwrap();
    let (_, value): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(&mut conn)
        .await
        .unwrap();
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raise_too_small_to_end_the_oom_is_rolled_back_to_the_old_maxmemory() {
    let redis =
        match PrivateRedis::start(&[("maxmemory", "2mb"), ("maxmemory-policy", "noeviction")]) {
            Ok(redis) => redis,
            Err(e) => return unavailable("redis-server", e),
        };
    let handle = Arc::new(RedisHandle::open(&redis.url()).unwrap());
    let mut config = HealerConfig::default();
    config.verification.window = Duration::from_secs(2);
    config.verification.interval = Duration::from_millis(200);
    config.verification.quiet_for = Duration::from_millis(500);
    let healer = Healer::builder()
        .config(config)
        .integrate(
            RedisIntegration::new(TARGET, handle.clone()).maxmemory_ceiling(32 * 1024 * 1024),
        )
        .build()
        .unwrap();
    let mut events = healer.subscribe();
    let running = healer.spawn();
    let refusal = fill(&handle).await;
    // One byte more: still under what is in use, so writes stay refused.
    let mut pattern = oom_pattern();
    pattern.fixes.clear();
    healer
        .admin()
        .seed_patterns([pattern.fix(
            FixBinding::new("redis_raise_maxmemory")
                .params(serde_json::json!({"to": (2 * 1024 * 1024 + 1).to_string()})),
        )])
        .await
        .unwrap();

    for _ in 0..3 {
        healer.observe(Signal::new(TARGET, refusal.clone()).level(Level::Error));
    }
    let phases = phases_until(&mut events, &[Phase::Escalated, Phase::Resolved]).await;
    assert!(phases.contains(&Phase::RolledBack), "{phases:?}");
    assert_eq!(phases.last(), Some(&Phase::Escalated), "{phases:?}");
    assert_eq!(
        config_get(&handle, "maxmemory").await,
        "2097152",
        "the old value is back"
    );
    let incident = &healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap()[0];
    let action = &healer.admin().actions(Some(incident.id)).await.unwrap()[0];
    assert_eq!(action.status, ActionStatus::RolledBack);
    assert!(
        action
            .error
            .as_deref()
            .is_some_and(|e| e.contains("write probe refused")),
        "{action:?}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushdb_waits_for_approval_and_then_empties_the_database() {
    let redis =
        match PrivateRedis::start(&[("maxmemory", "2mb"), ("maxmemory-policy", "noeviction")]) {
            Ok(redis) => redis,
            Err(e) => return unavailable("redis-server", e),
        };
    let handle = Arc::new(RedisHandle::open(&redis.url()).unwrap());
    let mut config = HealerConfig::default();
    config.verification.interval = Duration::from_millis(200);
    config.verification.quiet_for = Duration::from_millis(500);
    // No verifier for this target: verification is the error staying quiet.
    let healer = Healer::builder()
        .config(config)
        .strategy(selfheal::strategies::FlushDb::new(handle.clone()))
        .build()
        .unwrap();
    let mut events = healer.subscribe();
    let running = healer.spawn();
    let mut pattern = oom_pattern();
    pattern.fixes.clear();
    healer
        .admin()
        .seed_patterns([pattern.fix(FixBinding::new("redis_flushdb"))])
        .await
        .unwrap();

    let refusal = fill(&handle).await;
    for _ in 0..3 {
        healer.observe(Signal::new(TARGET, refusal.clone()).level(Level::Error));
    }
    phases_until(&mut events, &[Phase::AwaitingApproval]).await;
    let mut conn = handle.connection().await.unwrap();
    let keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert!(
        keys > 100,
        "nothing is flushed before approval: {keys} keys"
    );
    let pending = healer.admin().pending_approvals().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert!(
        pending[0].reason.contains("destructive"),
        "{}",
        pending[0].reason
    );
    assert!(
        pending[0]
            .plan
            .preview()
            .contains(&format!("FLUSHDB ASYNC (deletes all {keys} keys)")),
        "{}",
        pending[0].plan.preview()
    );

    healer
        .admin()
        .approve(pending[0].id, "alice")
        .await
        .unwrap();
    let phases = phases_until(&mut events, &[Phase::Resolved, Phase::Escalated]).await;
    assert_eq!(phases.last(), Some(&Phase::Resolved), "{phases:?}");
    let keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(keys, 0);
    write(&handle, "after".into(), b"v")
        .await
        .expect("writes succeed");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_left_broken_by_a_redis_restart_is_reconnected_through_the_healer() {
    use selfheal::strategies::ReconnectRedis;

    let mut redis = match PrivateRedis::start(&[]) {
        Ok(redis) => redis,
        Err(e) => return unavailable("redis-server", e),
    };
    let handle = Arc::new(RedisHandle::open(&redis.url()).unwrap());
    write(&handle, "before".into(), b"v").await.unwrap();

    let mut config = HealerConfig::default();
    config.verification.interval = Duration::from_millis(200);
    config.verification.quiet_for = Duration::from_millis(600);
    let healer = Healer::builder()
        .config(config)
        .strategy(ReconnectRedis::new(handle.clone()))
        .verifier(TARGET, RedisVerifier::for_handle(&handle))
        .build()
        .unwrap();
    let mut events = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .seed_patterns([Pattern::new("redis_connection_broken")
            .regex(r"(?i)broken pipe|connection (reset|refused|closed|dropped)")
            .severity(Severity::High)
            .mode(PatternMode::Active)
            .auto_healable(true)
            .confidence(0.9)
            .threshold(3, Duration::from_secs(60))
            .fix(FixBinding::new("redis_reconnect"))])
        .await
        .unwrap();

    // Redis crashes and its supervisor brings it back; the service's connection died
    // with the old process and every command on it fails.
    redis.stop();
    redis.start_again().unwrap();
    let (stop, stopped) = watch::channel(false);
    let (ok_tx, mut ok_rx) = watch::channel(0u32);
    let service = {
        let (handle, healer) = (handle.clone(), healer.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !*stopped.borrow() {
                tick.tick().await;
                match write(&handle, "k".into(), b"v").await {
                    Ok(()) => ok_tx.send_modify(|n| *n += 1),
                    Err(e) => healer.observe(Signal::new(TARGET, e).level(Level::Error)),
                }
            }
        })
    };
    let phases = phases_until(
        &mut events,
        &[Phase::Resolved, Phase::Escalated, Phase::Closed],
    )
    .await;
    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(
        phases.last(),
        Some(&Phase::Resolved),
        "{phases:?} {incidents:?}"
    );
    ok_rx
        .wait_for(|n| *n > 0)
        .await
        .expect("the service writes again");
    stop.send(true).unwrap();
    service.await.unwrap();
    assert_eq!(handle.generation(), 2, "one reconnect");
    assert_eq!(
        incidents[0].pattern.as_deref(),
        Some("redis_connection_broken")
    );
    // What redis-rs reports for a connection whose server went away.
    assert_eq!(incidents[0].samples[0], "broken pipe");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_shutdown_the_reconnect_waits_for_redis_and_runs_once_it_is_back() {
    use selfheal::strategies::ReconnectRedis;

    let mut redis = match PrivateRedis::start(&[]) {
        Ok(redis) => redis,
        Err(e) => return unavailable("redis-server", e),
    };
    let handle = Arc::new(RedisHandle::open(&redis.url()).unwrap());
    write(&handle, "before".into(), b"v").await.unwrap();

    let mut config = HealerConfig::default();
    config.verification.quiet_for = Duration::from_secs(1);
    let healer = Healer::builder()
        .config(config)
        .strategy(ReconnectRedis::new(handle.clone()))
        .verifier(TARGET, RedisVerifier::for_handle(&handle))
        .build()
        .unwrap();
    let mut events = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .seed_patterns([Pattern::new("redis_connection_broken")
            .regex(r"(?i)broken pipe|connection (reset|refused|closed|dropped)")
            .severity(Severity::High)
            .mode(PatternMode::Active)
            .auto_healable(true)
            .confidence(0.9)
            .threshold(3, Duration::from_secs(60))
            .fix(FixBinding::new("redis_reconnect"))])
        .await
        .unwrap();

    // The service writes every 50 ms and reports what fails; it remembers when a write
    // last succeeded.
    let (stop, stopped) = watch::channel(false);
    let (ok_tx, mut ok_rx) = watch::channel(None::<tokio::time::Instant>);
    let service = {
        let (handle, healer) = (handle.clone(), healer.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !*stopped.borrow() {
                tick.tick().await;
                match write(&handle, "k".into(), b"v").await {
                    Ok(()) => {
                        ok_tx.send_replace(Some(tokio::time::Instant::now()));
                    }
                    Err(e) => healer.observe(Signal::new(TARGET, e).level(Level::Error)),
                }
            }
        })
    };

    // Redis is shut down and stays down for 3 s; the fix waits for it.
    let mut conn = handle.connection().await.unwrap();
    let _ = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query_async::<()>(&mut conn)
        .await;
    redis.stop();
    let waiting = phases_until(&mut events, &[Phase::WaitingForTarget, Phase::Executing]).await;
    assert_eq!(
        waiting.last(),
        Some(&Phase::WaitingForTarget),
        "{waiting:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let redis = tokio::task::spawn_blocking(move || redis.start_again().map(|()| redis))
        .await
        .unwrap()
        .expect("redis-server starts again on its port");
    let back = tokio::time::Instant::now();
    ok_rx.borrow_and_update();
    let recovered = tokio::time::timeout(
        Duration::from_secs(5),
        ok_rx.wait_for(|ok| ok.is_some_and(|at| at > back)),
    )
    .await
    .expect("the service writes again within 5 s of Redis's return")
    .unwrap()
    .unwrap();
    report_recovery(recovered - back);

    let ended = support::finished(&mut events, Duration::from_secs(60)).await;
    stop.send(true).unwrap();
    service.await.unwrap();
    assert_eq!(ended.phase, Phase::Resolved, "{}", ended.detail);
    assert_eq!(handle.generation(), 2, "one reconnect, no human involved");
    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    let actions = healer.admin().actions(Some(incidents[0].id)).await.unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0].status, ActionStatus::Succeeded);
    running.shutdown().await;
    drop(redis);
}

/// Prints how long after Redis's return the service wrote again (the figure the test
/// stands for).
#[allow(clippy::print_stderr)]
fn report_recovery(after: Duration) {
    eprintln!("writes again {} ms after Redis returned", after.as_millis());
}
