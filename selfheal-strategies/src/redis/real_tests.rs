//! The Redis strategies and verifier against private `redis-server`s broken for real:
//! filled until writes fail with Redis's own OOM error, killed and started again.

use std::sync::Arc;
use std::time::Duration;

use selfheal_core::{Command, ErrorKind, Executor, Strategy, Verifier};
use selfheal_testsupport::{PrivateRedis, unavailable};
use serde_json::json;

use super::*;
use crate::{DryRunExecutor, ProcessExecutor};

fn start(config: &[(&str, &str)]) -> Option<PrivateRedis> {
    PrivateRedis::start(config)
        .map_err(|e| unavailable("redis-server", e))
        .ok()
}

fn full_cache() -> Option<PrivateRedis> {
    start(&[("maxmemory", "2mb"), ("maxmemory-policy", "noeviction")])
}

/// Writes 8 KiB values under `prefix` until Redis refuses; returns the refusal's text.
async fn fill(handle: &RedisHandle, prefix: &str) -> String {
    let mut conn = handle.connection().await.unwrap();
    let value = vec![b'x'; 8 * 1024];
    for i in 0..10_000 {
        let written: std::result::Result<(), ::redis::RedisError> = ::redis::cmd("SET")
            .arg(format!("{prefix}{i}"))
            .arg(&value)
            .query_async(&mut conn)
            .await;
        if let Err(e) = written {
            return e.to_string();
        }
    }
    panic!("10 000 writes of 8 KiB fit in a 2 MB Redis");
}

async fn set(handle: &RedisHandle, key: &str) -> std::result::Result<(), ::redis::RedisError> {
    let mut conn = handle.connection().await.unwrap();
    ::redis::cmd("SET")
        .arg(key)
        .arg("v")
        .query_async(&mut conn)
        .await
}

async fn config(handle: &RedisHandle, name: &str) -> String {
    super::config::config_get(handle, name).await.unwrap()
}

fn real() -> Arc<dyn Executor> {
    Arc::new(ProcessExecutor::new())
}

#[tokio::test]
async fn memory_health_falls_as_the_server_fills_and_is_0_once_it_is_down() {
    let Some(mut redis) = full_cache() else {
        return;
    };
    let handle = RedisHandle::open(&redis.url()).unwrap();
    let verifier = RedisVerifier::for_handle(&handle);
    let fresh = verifier.check().await.unwrap();
    assert!(
        fresh.detail.starts_with("PONG; write ok; memory "),
        "{}",
        fresh.detail
    );
    assert!(
        fresh.detail.contains("of 2.0 MiB maxmemory"),
        "{}",
        fresh.detail
    );

    let refusal = fill(&handle, "cache:").await;
    assert!(
        refusal.contains("command not allowed when used memory > 'maxmemory'"),
        "{refusal}"
    );
    let full = verifier.check().await.unwrap();
    assert!(full.score <= 5, "a full server: {full:?}");
    assert!(full.score < fresh.score);
    assert!(fresh.passed, "{fresh:?}");
    assert!(!full.passed, "the write probe is refused: {full:?}");
    assert!(
        full.detail.contains("write probe refused"),
        "{}",
        full.detail
    );

    redis.stop();
    let down = verifier.check().await.unwrap();
    assert_eq!(down.score, 0);
    assert!(!down.passed);
    assert!(down.detail.contains("could not connect"), "{}", down.detail);
}

#[tokio::test]
async fn evicting_a_pattern_frees_a_full_server_and_keeps_other_keys() {
    let Some(redis) = full_cache() else { return };
    let handle = Arc::new(RedisHandle::open(&redis.url()).unwrap());
    set(&handle, "session:alice").await.unwrap();
    fill(&handle, "cache:").await;
    let refused = fill(&handle, "more:").await;
    assert!(refused.contains("OOM"), "writes fail while full: {refused}");

    let evict = EvictKeys::new(handle.clone());
    let plan = evict
        .plan(&test_ctx(
            "cache",
            json!({"pattern": "cache:*", "count": 100}),
        ))
        .await
        .unwrap();
    assert!(
        plan.preview()
            .contains("SCAN <cursor> MATCH cache:* COUNT 100"),
        "{}",
        plan.preview()
    );
    let outcome = evict.execute(&plan, real()).await.unwrap();
    assert!(outcome.success, "{outcome:?}");
    assert!(
        outcome.stdout.starts_with("unlinked "),
        "{}",
        outcome.stdout
    );

    set(&handle, "session:bob")
        .await
        .expect("writes succeed again");
    let mut conn = handle.connection().await.unwrap();
    let left: Vec<String> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["session:alice", "session:bob"]);

    // Nothing left to evict: a failed outcome, so the healer moves on.
    let again = evict.execute(&plan, real()).await.unwrap();
    assert!(!again.success);
    assert!(
        again.stderr.contains("nothing was freed"),
        "{}",
        again.stderr
    );
}

#[tokio::test]
async fn raising_maxmemory_stays_under_the_ceiling_and_rolls_back() {
    let Some(redis) = full_cache() else { return };
    let handle = Arc::new(RedisHandle::open(&redis.url()).unwrap());
    fill(&handle, "cache:").await;
    let verifier = RedisVerifier::for_handle(&handle);
    let before = verifier.check().await.unwrap().score;

    let raise = RaiseMaxmemory::new(handle.clone(), 16 * 1024 * 1024);
    let plan = raise
        .plan(&test_ctx("cache", json!({"factor": 16})))
        .await
        .unwrap();
    assert!(plan.reversible);
    assert_eq!(
        plan.preview(),
        format!(
            "redis {}: CONFIG SET maxmemory 16777216 (2.0 MiB → 16.0 MiB; ceiling 16.0 MiB)",
            handle.address()
        )
    );
    // A dry run changes nothing.
    raise
        .execute(&plan, Arc::new(DryRunExecutor::new()))
        .await
        .unwrap();
    assert_eq!(config(&handle, "maxmemory").await, "2097152");

    let outcome = raise.execute(&plan, real()).await.unwrap();
    assert_eq!(outcome.stdout, "maxmemory 2.0 MiB → 16.0 MiB");
    assert_eq!(config(&handle, "maxmemory").await, "16777216");
    set(&handle, "after").await.expect("writes succeed again");
    let after = verifier.check().await.unwrap().score;
    assert!(after >= 80 && after > before, "{before} -> {after}");

    // The plan was made from 2 MiB; it no longer holds.
    let stale = raise.execute(&plan, real()).await.unwrap_err();
    assert_eq!(stale.kind(), ErrorKind::Conflict, "{stale}");
    // At the ceiling there is nothing left to raise.
    let at_ceiling = raise
        .plan(&test_ctx("cache", json!(null)))
        .await
        .unwrap_err();
    assert_eq!(at_ceiling.kind(), ErrorKind::Conflict);
    assert!(
        at_ceiling.message().contains("raise the ceiling"),
        "{at_ceiling}"
    );

    let undone = raise.rollback(&plan, real()).await.unwrap().unwrap();
    assert_eq!(undone.stdout, "maxmemory restored to 2.0 MiB");
    assert_eq!(config(&handle, "maxmemory").await, "2097152");
}

#[tokio::test]
async fn an_eviction_policy_lets_a_full_cache_take_writes_and_rolls_back() {
    let Some(redis) = full_cache() else { return };
    let handle = Arc::new(RedisHandle::open(&redis.url()).unwrap());
    fill(&handle, "cache:").await;

    let policy = SetEvictionPolicy::new(handle.clone()).allow(["allkeys-lru"]);
    let plan = policy
        .plan(&test_ctx("cache", json!({"policy": "allkeys-lru"})))
        .await
        .unwrap();
    assert!(
        plan.preview()
            .ends_with("CONFIG SET maxmemory-policy allkeys-lru (was noeviction)")
    );
    policy.execute(&plan, real()).await.unwrap();
    assert_eq!(config(&handle, "maxmemory-policy").await, "allkeys-lru");
    set(&handle, "fresh")
        .await
        .expect("Redis evicts instead of refusing");

    let same = policy
        .plan(&test_ctx("cache", json!({"policy": "allkeys-lru"})))
        .await
        .unwrap_err();
    assert_eq!(same.kind(), ErrorKind::Conflict);
    policy.rollback(&plan, real()).await.unwrap();
    assert_eq!(config(&handle, "maxmemory-policy").await, "noeviction");
}

#[tokio::test]
async fn flushdb_is_destructive_and_empties_the_database() {
    let Some(redis) = full_cache() else { return };
    let handle = Arc::new(RedisHandle::open(&redis.url()).unwrap());
    fill(&handle, "cache:").await;
    let flush = FlushDb::new(handle.clone());
    assert!(flush.destructive());
    let plan = flush
        .plan(&test_ctx("cache", json!({"async": false})))
        .await
        .unwrap();
    assert!(
        plan.preview().contains("FLUSHDB SYNC (deletes all "),
        "{}",
        plan.preview()
    );
    let outcome = flush.execute(&plan, real()).await.unwrap();
    assert!(outcome.stdout.starts_with("flushed "), "{}", outcome.stdout);
    let mut conn = handle.connection().await.unwrap();
    let size: u64 = ::redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(size, 0);
}

#[tokio::test]
async fn a_broken_client_connection_is_replaced_by_reconnect() {
    let Some(mut redis) = start(&[]) else { return };
    let handle = Arc::new(RedisHandle::open(&redis.url()).unwrap());
    set(&handle, "a").await.unwrap();
    redis.stop();
    redis.start_again().unwrap();
    // The host's connection died with the old process and stays dead.
    let broken = set(&handle, "b").await.unwrap_err();
    assert!(
        broken.is_io_error() || broken.is_connection_dropped(),
        "{broken}"
    );

    let reconnect = ReconnectRedis::new(handle.clone());
    let plan = reconnect
        .plan(&test_ctx("cache", json!(null)))
        .await
        .unwrap();
    assert!(
        plan.preview().contains("(generation 1 → 2)"),
        "{}",
        plan.preview()
    );
    let outcome = reconnect.execute(&plan, real()).await.unwrap();
    assert_eq!(outcome.stdout, "reconnected: generation 2");
    set(&handle, "b")
        .await
        .expect("the host's handle works again");
}

/// Shuts down a Redis this test started outside `PrivateRedis`, even on panic.
struct ShutdownOnDrop(u16);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        use std::io::Write;
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.0)) {
            let _ = s.write_all(b"SHUTDOWN NOSAVE\r\n");
        }
    }
}

#[tokio::test]
async fn restart_runs_the_argv_waits_for_ping_and_reconnects() {
    let Some(mut redis) = start(&[]) else { return };
    let port = redis.port();
    let handle = Arc::new(RedisHandle::open(&redis.url()).unwrap());
    set(&handle, "a").await.unwrap();
    redis.stop(); // crashed: connections refused
    let dir = std::env::temp_dir().join(format!("selfheal-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = ShutdownOnDrop(port);

    let restart = RestartRedis::new(
        handle.clone(),
        Command::new(
            "redis-server",
            [
                "--port".to_owned(),
                "{port}".to_owned(),
                "--bind".to_owned(),
                "{host}".to_owned(),
                "--save".to_owned(),
                String::new(),
                "--daemonize".to_owned(),
                "yes".to_owned(),
                "--dir".to_owned(),
                dir.to_string_lossy().into_owned(),
            ],
        ),
    )
    .ready_timeout(Duration::from_secs(10));
    let plan = restart.plan(&test_ctx("cache", json!(null))).await.unwrap();
    assert!(
        plan.preview().starts_with(&format!(
            "redis-server --port {port} --bind 127.0.0.1 --save ''"
        )),
        "{}",
        plan.preview()
    );
    let outcome = restart.execute(&plan, real()).await.unwrap();
    assert!(outcome.success, "{outcome:?}");
    assert!(
        outcome.stdout.contains("client reconnected (generation 2)"),
        "{}",
        outcome.stdout
    );
    set(&handle, "b")
        .await
        .expect("the restarted server takes writes");
    drop(_cleanup);
    let _ = std::fs::remove_dir_all(&dir);
}
