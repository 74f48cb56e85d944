//! One healer group watching a fleet of services over NATS JetStream.
//!
//! ```sh
//! cargo run --example fleet_nats --features nats
//! cargo run --release --example fleet_nats --features nats -- --bench 100000 --runs 5
//! ```
//!
//! Needs a NATS server with JetStream (`nats-server -js`) at `NATS_URL` (default
//! `nats://127.0.0.1:4222`). The example works on a stream of its own and deletes it
//! when it ends.
//!
//! Three services ("orders", "cart", "search") publish what goes wrong with a
//! `NatsSink`; "orders" does it as a `tracing` layer, the others by hand. Two healers
//! read the stream through one durable consumer, so each message goes to one of them,
//! and share a store in fleet mode. Among ordinary warnings, "orders" logs sqlx's real
//! `pool timed out while waiting for an open connection` against `orders-db` six
//! times: whichever healer sees three first opens an incident, takes the target's
//! lease and resets the pool once; the example prints who saw what and who acted.
//! Here the two healers are in one process and share a `MemoryStore`; as separate
//! processes they share a `PostgresStore` with `guards.fleet.enabled` (see
//! `tests/fleet_nats.rs`).
//!
//! `--bench N` measures instead how many signals per second one healer takes in from
//! the stream: one service publishes `N` signals, then one healer reads them all (each
//! acknowledged after its intake's receipt). `--runs R` repeats it and prints the median.

#![allow(clippy::print_stdout, clippy::print_stderr)] // an example talks to its user

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use selfheal::sources::nats::async_nats::{self, jetstream};
use selfheal::sources::nats::{
    ConsumerCounters, NatsSink, NatsSource, SinkConfig, SourceConfig, StreamSettings,
};
use selfheal::{
    ActionContext, ActionOutcome, Executor, FixBinding, Healer, HealerConfig, IncidentFilter,
    Level, MemoryStore, Pattern, PatternMode, Phase, RemediationPlan, Severity, Signal, Store,
    Strategy,
};
use tracing_subscriber::layer::SubscriberExt as _;

const POOL_TIMEOUT: &str = "pool timed out while waiting for an open connection";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<usize>())
            .transpose()
    };
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let js =
        jetstream::new(async_nats::connect(&url).await.map_err(|e| {
            format!("no NATS server at {url} ({e}); start one with `nats-server -js`")
        })?);
    // A stream of the example's own, removed at the end whatever happened.
    let id = std::process::id();
    let stream = StreamSettings::new(
        format!("SELFHEAL_EXAMPLE_{id}"),
        format!("selfheal_example.{id}"),
    );
    let outcome = match arg("--bench")? {
        Some(n) => bench(&url, &stream, n, arg("--runs")?.unwrap_or(3)).await,
        None => fleet(&url, &stream).await,
    };
    let _ = js.delete_stream(&stream.name).await;
    outcome
}

/// Resets a connection pool: here it only says so and counts.
#[derive(Debug)]
struct ResetPool {
    healer: &'static str,
    runs: Arc<AtomicUsize>,
}

#[async_trait]
impl Strategy for ResetPool {
    fn name(&self) -> &str {
        "reset_pool"
    }
    async fn plan(&self, ctx: &ActionContext) -> selfheal::Result<RemediationPlan> {
        Ok(RemediationPlan::new("reset_pool", &ctx.target).step("close and reopen the pool"))
    }
    async fn execute(
        &self,
        _: &RemediationPlan,
        _: Arc<dyn Executor>,
    ) -> selfheal::Result<ActionOutcome> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        println!("  {}: resetting the orders-db pool", self.healer);
        Ok(ActionOutcome::ok(Duration::from_millis(5)))
    }
}

fn source(url: &str, stream: &StreamSettings) -> NatsSource {
    NatsSource::new(SourceConfig {
        stream: stream.clone(),
        ..SourceConfig::new(url)
    })
}

fn sink(url: &str, stream: &StreamSettings, service: &str) -> selfheal::Result<NatsSink> {
    NatsSink::start(SinkConfig {
        stream: stream.clone(),
        ..SinkConfig::new(url, service)
    })
}

async fn fleet(url: &str, stream: &StreamSettings) -> Result<(), Box<dyn std::error::Error>> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    store
        .add_pattern(
            &Pattern::new("orders_pool_exhausted")
                .regex(POOL_TIMEOUT)
                .severity(Severity::High)
                .mode(PatternMode::Active)
                .auto_healable(true)
                .confidence(0.9)
                .threshold(3, Duration::from_secs(60))
                .fix(FixBinding::new("reset_pool")),
        )
        .await?;
    let runs = Arc::new(AtomicUsize::new(0));
    let mut healers = Vec::new();
    for name in ["healer-a", "healer-b"] {
        let mut config = HealerConfig::default();
        config.guards.fleet.enabled = true;
        config.guards.fleet.replica = name.into();
        config.verification.quiet_for = Duration::from_millis(500);
        let source = source(url, stream);
        let counters = source.counters();
        let healer = Healer::builder()
            .config(config)
            .store_arc(store.clone())
            .source(source)
            .strategy(ResetPool {
                healer: name,
                runs: runs.clone(),
            })
            .build()?;
        let mut events = healer.subscribe();
        tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                if matches!(
                    e.phase,
                    Phase::Detected | Phase::Executing | Phase::Resolved | Phase::Escalated
                ) || e.detail.contains("peer")
                {
                    println!("  {name}: {:?} {} — {}", e.phase, e.target, e.detail);
                }
            }
        });
        let running = healer.spawn();
        healers.push((name, healer, running, counters));
    }

    let orders = sink(url, stream, "orders")?;
    let cart = sink(url, stream, "cart")?;
    let search = sink(url, stream, "search")?;
    println!("three services publish; two healers read one durable consumer");
    for i in 0..20 {
        cart.publish(Signal::new("cart-http", format!("slow request: {i} ms")).level(Level::Warn));
        search
            .publish(Signal::new("search-http", format!("slow query: {i} ms")).level(Level::Warn));
    }
    // The orders service logs as usual; its layer publishes the errors.
    let subscriber = tracing_subscriber::registry().with(orders.layer());
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..6 {
            tracing::error!(peer = "orders-db", error = POOL_TIMEOUT, "query failed");
        }
    });
    for s in [&orders, &cart, &search] {
        s.flush().await;
    }

    // Until the pool was reset and every incident is over (the fix is verified once
    // the errors stay quiet for a moment).
    let deadline = Instant::now() + Duration::from_secs(30);
    let incidents = loop {
        let incidents = store.list_incidents(&IncidentFilter::default()).await?;
        let settled =
            runs.load(Ordering::SeqCst) > 0 && incidents.iter().all(|i| i.status.is_terminal());
        if settled || Instant::now() > deadline {
            break incidents;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!();
    for (name, _, _, counters) in &healers {
        let c = counters.stats();
        println!(
            "{name}: took in {} signals ({} malformed, {} redelivered)",
            c.ingested, c.malformed, c.redelivered
        );
    }
    for i in &incidents {
        println!(
            "incident on {}: {} ({} occurrences) {}",
            i.target,
            i.status.as_str(),
            i.occurrences,
            i.reason
        );
    }
    for (service, sink) in [("orders", &orders), ("cart", &cart), ("search", &search)] {
        let st = sink.stats();
        println!(
            "{service} published {} (dropped {}, failed {})",
            st.published, st.dropped, st.failed
        );
    }
    let n = runs.load(Ordering::SeqCst);
    println!("the orders-db pool was reset {n} time(s) across the group");
    for (_, _, running, _) in healers {
        running.shutdown().await;
    }
    if n == 1 {
        Ok(())
    } else {
        Err(format!("expected one remediation, saw {n}").into())
    }
}

/// Signals per second one healer takes in from the stream, over `runs` runs of `n`.
async fn bench(
    url: &str,
    stream: &StreamSettings,
    n: usize,
    runs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut rates = Vec::new();
    for run in 1..=runs.max(1) {
        let stream = StreamSettings::new(
            format!("{}_{run}", stream.name),
            format!("{}.run{run}", stream.subject_prefix),
        );
        let mut config = SinkConfig {
            stream: stream.clone(),
            queue_capacity: n,
            ..SinkConfig::new(url, "bench")
        };
        config.batch = 1024;
        let publisher = NatsSink::start(config)?;
        let started = Instant::now();
        for i in 0..n {
            let signal = Signal::new(
                format!("svc-{}", i % 16),
                format!(
                    "request {i} failed: upstream returned 503 after {} ms",
                    i % 977
                ),
            );
            publisher.publish(signal);
        }
        publisher.flush().await;
        let published = publisher.stats();
        let publish_secs = started.elapsed().as_secs_f64();

        let source = source(url, &stream);
        let counters = source.counters();
        let healer = Healer::builder().source(source).build()?;
        let started = Instant::now();
        let running = healer.spawn();
        let took = wait_for(&counters, published.published).await;
        let rate = published.published as f64 / took.as_secs_f64();
        println!(
            "run {run}: published {} in {publish_secs:.2} s ({:.0}/s); one healer took them in in {:.2} s: {rate:.0} signals/s (from start {:.2} s)",
            published.published,
            published.published as f64 / publish_secs,
            took.as_secs_f64(),
            started.elapsed().as_secs_f64(),
        );
        rates.push(rate);
        running.shutdown().await;
        let js = jetstream::new(async_nats::connect(url).await?);
        let _ = js.delete_stream(&stream.name).await;
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "median over {} runs: {:.0} signals/s into one healer ({n} signals a run)",
        rates.len(),
        rates[rates.len() / 2]
    );
    Ok(())
}

/// Waits until the source took `n` signals in; the time from its first one.
async fn wait_for(counters: &ConsumerCounters, n: u64) -> Duration {
    let mut first = None;
    loop {
        let ingested = counters.stats().ingested;
        if ingested > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if ingested >= n {
            return first.map_or(Duration::ZERO, |f| f.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
