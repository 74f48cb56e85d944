//! A fleet over NATS JetStream: three services publish their signals (`NatsSink`), two
//! healers share one durable consumer (`NatsSource`) and one PostgreSQL store in fleet
//! mode (`DATABASE_URL`, a schema of the test's own). Each incident is remediated once;
//! then one healer hangs and is killed while messages are in flight, and the other
//! takes the messages it never acknowledged, so every signal is taken in at least once.
//!
//! The NATS server is `NATS_URL` (default `nats://127.0.0.1:4222`, JetStream on); the
//! test's stream is its own and is deleted at the end. Without either server the test
//! says it skipped (and fails under `CI=true`).
#![cfg(all(feature = "nats", feature = "postgres"))]
#![allow(clippy::print_stdout)]

mod support;

use std::sync::mpsc;
use std::time::Duration;

use selfheal::sources::nats::async_nats::{self, jetstream};
use selfheal::sources::nats::{
    ConsumerCounters, NatsSink, NatsSource, SinkConfig, SourceConfig, StreamSettings,
};
use selfheal::storage::PostgresStore;
use selfheal::{
    Healer, HealerConfig, Incident, IncidentFilter, IncidentStatus, IncidentStore, Level,
    PatternStore, Running, Signal,
};
use selfheal_testsupport::{ScratchNats, env_url};
use support::{FakeFix, Gauge, auto_pattern};
use uuid::Uuid;

const POOL_TIMEOUT: &str = "pool timed out while waiting for an open connection";
const REDIS_OOM: &str = "OOM command not allowed when used memory > 'maxmemory'";
/// The whole scenario at most: a minute or two on a loaded machine.
const SCENARIO_LIMIT: Duration = Duration::from_secs(300);
/// Warnings each service publishes in each half of the stream.
const NOISE: usize = 1000;

/// One healer of the group: a runtime of its own (a process of its own, as far as the
/// test can tell), so it can be hung and killed.
struct Member {
    rt: Option<tokio::runtime::Runtime>,
    running: Option<Running>,
    counters: ConsumerCounters,
}

impl Member {
    /// Stops it cleanly (a healer shutting down).
    fn shut_down(mut self) {
        if let (Some(rt), Some(running)) = (&self.rt, self.running.take()) {
            rt.block_on(running.shutdown());
        }
    }

    /// Kills it: its runtime goes away with every task, nothing shut down cleanly.
    fn kill(mut self) {
        std::mem::forget(self.running.take());
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // Also when the test fails: a runtime cannot be dropped in async code, but it
        // can be left in the background.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn healer_config(replica: usize) -> HealerConfig {
    let mut c = HealerConfig {
        service: "healers".into(),
        ..HealerConfig::default()
    };
    c.guards.fleet.enabled = true;
    c.guards.fleet.replica = format!("healer-{replica}");
    c.guards.fleet.lease_ttl = Duration::from_secs(5);
    c.guards.fleet.poll = Duration::from_millis(50);
    c.verification.interval = Duration::from_millis(50);
    c.verification.quiet_for = Duration::from_millis(300);
    c.verification.window = Duration::from_secs(20);
    c
}

fn stream_settings(scratch: &ScratchNats) -> StreamSettings {
    StreamSettings::new(scratch.stream(), scratch.subject_prefix())
}

fn source_config(scratch: &ScratchNats) -> SourceConfig {
    SourceConfig {
        stream: stream_settings(scratch),
        durable: "healers".into(),
        // What a dead healer's messages wait before another healer gets them.
        ack_wait: Duration::from_secs(2),
        ..SourceConfig::new(scratch.url())
    }
}

fn start_member(
    replica: usize,
    url: &str,
    schema: &str,
    scratch: &ScratchNats,
    fixes: &[FakeFix],
) -> Member {
    let (rt, store) = support::replica_runtime(url, schema);
    let source = NatsSource::new(source_config(scratch));
    let counters = source.counters();
    let mut builder = Healer::builder()
        .config(healer_config(replica))
        .store(store)
        .source(source);
    for fix in fixes {
        builder = builder.strategy(fix.clone());
    }
    let healer = builder.build().unwrap();
    let running = {
        let _in = rt.enter();
        healer.spawn()
    };
    Member {
        rt: Some(rt),
        running: Some(running),
        counters,
    }
}

/// Polls `done` (every 50 ms, for up to 60 s) until it holds.
async fn until<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn incidents(store: &PostgresStore) -> Vec<Incident> {
    store
        .list_incidents(&IncidentFilter::default())
        .await
        .unwrap()
}

/// `n` warnings of `sink`'s service, each its own message.
fn noise(sink: &NatsSink, service: &str, n: usize) {
    for i in 0..n {
        let signal = Signal::new(format!("{service}-http"), format!("slow request: {i} ms"))
            .level(Level::Warn);
        assert!(sink.publish(signal), "the queue holds {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_healers_three_services_each_incident_once_and_a_killed_healers_messages_taken_over() {
    let Some(scratch) = ScratchNats::connect() else {
        return;
    };
    let Some(url) = env_url("DATABASE_URL") else {
        return;
    };
    let schema = format!("selfheal_nats_{}", Uuid::new_v4().simple());
    let control = PostgresStore::builder(&url)
        .schema(&schema)
        .seed_catalog(false)
        .connect()
        .await
        .expect("connect and migrate");
    let control2 = control.clone();
    // The scenario runs in a task of its own, so the schema is dropped even when it
    // fails; and it has a limit, so a hang fails the test instead of wedging the run.
    let outcome = tokio::spawn(async move {
        tokio::time::timeout(SCENARIO_LIMIT, scenario(scratch, url, schema, control2))
            .await
            .expect("the scenario ends within its limit")
    })
    .await;
    tokio::time::timeout(Duration::from_secs(60), control.drop_schema())
        .await
        .expect("the schema is dropped within a minute")
        .unwrap();
    if let Err(failed) = outcome {
        std::panic::resume_unwind(failed.into_panic());
    }
}

async fn scenario(scratch: ScratchNats, url: String, schema: String, control: PostgresStore) {
    control
        .add_pattern(&auto_pattern("pool_exhausted", POOL_TIMEOUT, "reset_pool"))
        .await
        .unwrap();
    control
        .add_pattern(&auto_pattern(
            "redis_oom",
            "OOM command not allowed",
            "evict_keys",
        ))
        .await
        .unwrap();
    let gauge = Gauge::new(100);
    let fixes = [
        FakeFix::new("reset_pool", &gauge, None),
        FakeFix::new("evict_keys", &gauge, None),
    ];
    let mut members: Vec<Member> = tokio::task::block_in_place(|| {
        (0..2)
            .map(|i| start_member(i, &url, &schema, &scratch, &fixes))
            .collect()
    });
    let sinks: Vec<(&str, NatsSink)> = ["orders", "cart", "search"]
        .into_iter()
        .map(|service| {
            let mut config = SinkConfig::new(scratch.url(), service);
            config.stream = stream_settings(&scratch);
            (service, NatsSink::start(config).unwrap())
        })
        .collect();
    let flush = || async {
        for (_, sink) in &sinks {
            sink.flush().await;
        }
    };

    // Two real failures, each reported six times by its service: whichever healers
    // the messages reach, one of them sees at least three and opens an incident.
    for _ in 0..6 {
        sinks[0].1.publish(Signal::new("orders-db", POOL_TIMEOUT));
        sinks[1].1.publish(Signal::new("cart-cache", REDIS_OOM));
    }
    noise(&sinks[2].1, "search", 10);
    flush().await;
    let (control, fixes) = (&control, &fixes);
    until(
        "both failures to be remediated and settled",
        || async move {
            let all = incidents(control).await;
            fixes.iter().all(|f| f.runs() >= 1)
                && ["orders-db", "cart-cache"].iter().all(|target| {
                    let mine: Vec<_> = all.iter().filter(|i| i.target == *target).collect();
                    !mine.is_empty() && mine.iter().all(|i| i.status.is_terminal())
                })
        },
    )
    .await;

    // The stream's second part: both healers read it, then one hangs (its only worker
    // thread blocked, as a process stuck in a long pause) while it holds messages it
    // has not taken in yet, more arrives, and it is killed: what it was delivered is
    // never acknowledged.
    let before = members[0].counters.stats().ingested;
    for (service, sink) in &sinks {
        noise(sink, service, NOISE);
    }
    let first = members[0].counters.clone();
    until("the first healer to be taking the stream in", || {
        std::future::ready(first.stats().ingested >= before + 100)
    })
    .await;
    let (hung_tx, hung_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    members[0].rt.as_ref().unwrap().spawn(async move {
        // On the healer's only worker: while this runs, its source cannot, so what the
        // counters say it holds is what it holds when it hangs.
        loop {
            let s = first.stats();
            let held = s.received - s.ingested - s.duplicates - s.malformed - s.returned;
            if held > 0 {
                let _ = hung_tx.send(held);
                let _ = release_rx.recv();
                return;
            }
            tokio::task::yield_now().await;
        }
    });
    let held = tokio::task::block_in_place(|| hung_rx.recv_timeout(Duration::from_secs(60)))
        .expect("the first healer hangs holding messages");
    for (service, sink) in &sinks {
        noise(sink, service, NOISE);
    }
    flush().await;
    let dead = members.remove(0);
    let dead_counters = dead.counters.clone();
    dead.kill();
    // Never released: a killed process does not run again, not even for a moment to
    // send what it had left (the blocked thread ends with the test binary).
    std::mem::forget(release_tx);

    let published: u64 = sinks.iter().map(|(_, s)| s.stats().published).sum();
    for (service, sink) in &sinks {
        let stats = sink.stats();
        assert_eq!(
            (stats.dropped, stats.failed),
            (0, 0),
            "{service}: {stats:?}"
        );
    }
    assert_eq!(published, 12 + 10 + 6 * NOISE as u64);

    // Every message is acknowledged in the end, and a healer acknowledges a message
    // only once its intake took the signal in: so every signal was taken in.
    let js = jetstream::new(async_nats::connect(scratch.url()).await.unwrap());
    let (js, durable, name) = (&js, &source_config(&scratch).durable, &scratch.stream());
    until("every message to be acknowledged", || async move {
        let mut stream = js.get_stream(name).await.unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        let info = stream.consumer_info(durable).await.unwrap();
        last == published
            && info.ack_floor.stream_sequence == last
            && info.num_ack_pending == 0
            && info.num_pending == 0
    })
    .await;
    let dead_stats = dead_counters.stats();
    let live_stats = members[0].counters.stats();
    println!(
        "fleet over NATS: {published} signals from 3 services; the killed healer took in \
         {} (received {}, holding {held} when it hung), the other {} (received {}, {} of \
         them redelivered, {} duplicates)",
        dead_stats.ingested,
        dead_stats.received,
        live_stats.ingested,
        live_stats.received,
        live_stats.redelivered,
        live_stats.duplicates,
    );
    assert_eq!(dead_stats.malformed + live_stats.malformed, 0);
    assert!(
        dead_stats.ingested + live_stats.ingested >= published,
        "{dead_stats:?} {live_stats:?}"
    );
    assert!(
        live_stats.redelivered >= held,
        "the {held} messages the hung healer held came to the other: {live_stats:?}"
    );
    assert!(
        dead_stats.ingested > before,
        "the killed healer was mid-stream"
    );

    // However the messages were split, each failure was remediated once.
    for fix in fixes {
        assert_eq!(fix.runs(), 1, "{} ran once across the fleet", fix.name);
    }
    let all = incidents(control).await;
    for target in ["orders-db", "cart-cache"] {
        let resolved = all
            .iter()
            .filter(|i| i.target == target && i.status == IncidentStatus::Resolved)
            .count();
        assert_eq!(resolved, 1, "{target}: {all:#?}");
    }

    for member in members {
        tokio::task::block_in_place(|| member.shut_down());
    }
}
