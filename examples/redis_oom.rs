//! A full Redis, healed for real (tuned: its own auto-healable pattern and a 1 s quiet
//! window, so it heals in about a second).
//!
//! ```sh
//! cargo run --release --example redis_oom --features redis
//! ```
//!
//! Needs `redis-server` on PATH: the example starts a private one on a free port of
//! 127.0.0.1 (`maxmemory 2mb`, `maxmemory-policy noeviction`, nothing saved to disk)
//! and removes it when it ends; your own Redis is not touched.
//!
//! A small "orders" service caches 8 KiB values every 20 ms through a shared
//! [`RedisHandle`]. The cache fills up and Redis refuses writes with its real error,
//! `OOM command not allowed when used memory > 'maxmemory'`. The service reports each
//! failed write to the healer as a signal; the healer opens an incident, matches the
//! `redis_oom` pattern, raises `maxmemory` to 16 MB (its ceiling is 32 MB), verifies
//! that the errors stopped and the verifier's write probe passes (memory health,
//! `100 − used / maxmemory × 100`, is recorded before and after), and the service's
//! writes succeed again. The timeline comes from the healer's event
//! stream; the example exits 0 when the incident is resolved.

#![allow(clippy::print_stdout, clippy::print_stderr)] // an example talks to its user

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use selfheal::redis;
use selfheal::strategies::{ProcessExecutor, RedisHandle, RedisIntegration, RedisVerifier};
use selfheal::{
    FixBinding, Healer, HealerConfig, HealingEvent, IncidentFilter, Level, MemoryStore, Pattern,
    PatternMode, Phase, Severity, Signal, SignalSource, Verifier,
};
use selfheal_testsupport::PrivateRedis;
use tokio::sync::{Mutex, watch};

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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let redis = PrivateRedis::start(&[("maxmemory", "2mb"), ("maxmemory-policy", "noeviction")])
        .map_err(|e| format!("could not start a private redis-server ({e}); install redis-server (e.g. apt-get install redis-server)"))?;
    println!(
        "selfheal example: a full Redis, healed (private redis-server on 127.0.0.1:{}, maxmemory 2mb, noeviction)\n",
        redis.port()
    );
    let handle = Arc::new(RedisHandle::open(&redis.url())?);
    let verifier = RedisVerifier::for_handle(&handle);

    let mut config = HealerConfig {
        service: "orders".into(),
        ..Default::default()
    };
    config.verification.window = Duration::from_secs(30);
    config.verification.interval = Duration::from_millis(200);
    config.verification.quiet_for = Duration::from_secs(1);
    let healer = Healer::builder()
        .config(config)
        .store(MemoryStore::new())
        // The stock Redis strategies and verifier, in one call.
        .integrate(
            RedisIntegration::new(TARGET, handle.clone()).maxmemory_ceiling(32 * 1024 * 1024),
        )
        .executor(ProcessExecutor::new())
        .build()?;
    let mut events = healer.subscribe();
    let running = healer.spawn();
    healer.admin().seed_patterns([oom_pattern()]).await?;

    let clock = move || format!("{:>6.2}s", started.elapsed().as_secs_f64());
    println!(
        "{}  {:<10} caching 8 KiB values every 20 ms",
        clock(),
        "app"
    );

    // The service: every failed write is reported to the healer.
    let first_error: Arc<Mutex<Option<Instant>>> = Arc::default();
    let failed = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let service = {
        let (handle, healer, first_error, failed) = (
            handle.clone(),
            healer.clone(),
            first_error.clone(),
            failed.clone(),
        );
        tokio::spawn(async move {
            let value = vec![b'x'; 8 * 1024];
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut i = 0u64;
            while !*stopped.borrow() {
                tick.tick().await;
                i += 1;
                let written = match handle.connection().await {
                    Ok(mut conn) => redis::cmd("SET")
                        .arg(format!("cache:{i}"))
                        .arg(&value)
                        .query_async::<()>(&mut conn)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = written {
                    let mut first = first_error.lock().await;
                    if first.is_none() {
                        *first = Some(Instant::now());
                        println!("{}  {:<10} write failed: {e}", clock(), "app");
                    }
                    failed.fetch_add(1, Ordering::Relaxed);
                    healer.observe(
                        Signal::new(TARGET, e)
                            .source(SignalSource::Log)
                            .level(Level::Error),
                    );
                }
            }
        })
    };

    let ended = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let Ok(event) = events.recv().await else {
                return None;
            };
            print_event(&clock(), &event);
            if matches!(
                event.phase,
                Phase::Resolved | Phase::Escalated | Phase::Closed
            ) {
                return Some(event);
            }
        }
    })
    .await;
    let recovered = Instant::now();
    stop.send(true)?;
    service.await?;

    let healed = matches!(&ended, Ok(Some(e)) if e.phase == Phase::Resolved);
    println!("\nsummary");
    if let Some(first) = *first_error.lock().await {
        println!(
            "  first error → verified recovery  {:.2}s",
            recovered.duration_since(first).as_secs_f64()
        );
    }
    println!(
        "  failed writes reported          {}",
        failed.load(Ordering::Relaxed)
    );
    if let Some(incident) = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await?
        .into_iter()
        .next()
    {
        println!(
            "  incident                        {} ({}, {} occurrences)",
            incident.id,
            incident.status.as_str(),
            incident.occurrences
        );
        if let Some(action) = healer
            .admin()
            .actions(Some(incident.id))
            .await?
            .into_iter()
            .next()
        {
            let show = |h: Option<u8>| h.map_or("n/a".to_owned(), |h| h.to_string());
            println!(
                "  action                          {} ({})",
                action.strategy,
                action.status.as_str()
            );
            if let Some(outcome) = &action.outcome {
                println!(
                    "  result                          {}",
                    outcome.stdout.trim()
                );
            }
            println!(
                "  health                          {} → {}",
                show(action.health_before),
                show(action.health_after)
            );
        }
    }
    let after = verifier.check().await?;
    println!(
        "  redis now                       {} ({})",
        after.score, after.detail
    );
    let mut conn = handle.connection().await?;
    let write = redis::cmd("SET")
        .arg("after:heal")
        .arg(vec![b'y'; 8 * 1024])
        .query_async::<()>(&mut conn)
        .await;
    println!(
        "  a new 8 KiB write               {}",
        match &write {
            Ok(()) => "succeeds".to_owned(),
            Err(e) => format!("fails: {e}"),
        }
    );
    running.shutdown().await;
    drop(redis);
    if healed && write.is_ok() {
        Ok(())
    } else {
        Err("the incident was not resolved; see the timeline above".into())
    }
}

/// One line of the timeline per healer event, labelled like a terminal log.
fn print_event(clock: &str, event: &HealingEvent) {
    let label = match event.phase {
        Phase::Detected => "detected",
        Phase::Matched | Phase::Decided | Phase::Diagnosed => "thinking",
        Phase::Executing => "command",
        Phase::Output => "result",
        Phase::Verifying => "verifying",
        Phase::Verified => "verified",
        Phase::Resolved => "complete",
        Phase::Escalated | Phase::Failed => "failed",
        _ => "event",
    };
    let mut lines = event.detail.lines();
    println!("{clock}  {label:<10} {}", lines.next().unwrap_or_default());
    for line in lines {
        println!("{clock}  {label:<10} {line}");
    }
    if event.phase == Phase::Executing {
        println!("{clock}  {:<10} running it", "executing");
    }
    let _ = std::io::stdout().flush();
}
