//! What `healer.layer()` adds to a host's `tracing` events.
//!
//! `cargo bench --bench layer`. The host's subscriber is a registry with one layer that
//! wants INFO and above and does nothing with them (standing in for a `fmt` layer without
//! its formatting cost). Side by side, in group `layer`:
//!
//! - `error, host only` and `error, host + healer.layer()`: one
//!   `tracing::error!(error = %e, peer = "orders-db", "query failed")`. With the healer's
//!   layer the event becomes a signal that `observe` queues for a healer running on a
//!   thread of its own, whose intake drains the queue as the events come, and until it is
//!   empty between batches of 1,024 events (untimed). The difference of
//!   the two is what the layer adds to an ERROR event.
//! - `debug, host only` and `debug, host + healer.layer()`: one `tracing::debug!` that no
//!   layer wants. The layer must not turn such a callsite on: the difference is what it
//!   adds to a DEBUG event.
//!
//! Only the dispatcher of the case being timed is alive while it runs, and each case has
//! callsites of its own, so a callsite's cached interest is that of its own subscriber.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use selfheal::{Healer, HealerConfig};
use tracing::Dispatch;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;

/// Events between two drains of the healer's queue.
const BATCH: u64 = 1 << 10;

/// The host's own layer: wants INFO and above, does nothing with them.
struct HostLayer;

impl<S: tracing::Subscriber> Layer<S> for HostLayer {}

fn host() -> Dispatch {
    Dispatch::new(tracing_subscriber::registry().with(HostLayer.with_filter(LevelFilter::INFO)))
}

fn host_with(healer: &Healer) -> Dispatch {
    Dispatch::new(
        tracing_subscriber::registry()
            .with(HostLayer.with_filter(LevelFilter::INFO))
            .with(healer.layer()),
    )
}

/// Times `n` runs of `event` under `dispatch`.
fn timed(dispatch: &Dispatch, n: u64, event: impl Fn()) -> Duration {
    tracing::dispatcher::with_default(dispatch, || {
        let start = Instant::now();
        for _ in 0..n {
            event();
        }
        start.elapsed()
    })
}

/// One ERROR event; each expansion is a callsite of its own.
macro_rules! error_event {
    () => {
        || {
            let e = std::io::Error::other("pool timed out while waiting for an open connection");
            tracing::error!(error = %e, peer = "orders-db", "query failed");
        }
    };
}

/// One DEBUG event that no layer wants; each expansion is a callsite of its own.
macro_rules! debug_event {
    () => {
        || tracing::debug!(n = black_box(1), "cache hit")
    };
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("layer");

    {
        let dispatch = host();
        tracing::callsite::rebuild_interest_cache();
        group.bench_function("error, host only", |b| {
            b.iter_custom(|iters| timed(&dispatch, iters, error_event!()))
        });
        group.bench_function("debug, host only", |b| {
            b.iter_custom(|iters| timed(&dispatch, iters, debug_event!()))
        });
    }

    // The healer runs on a thread of its own, as in a host: its intake drains the queue
    // while the events are timed, and between batches until it is empty.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut config = HealerConfig::default();
    config.intake.queue_capacity = 4 * BATCH as usize;
    let healer = Healer::builder()
        .config(config)
        .build()
        .expect("valid config");
    let running = {
        let _entered = rt.enter();
        healer.spawn()
    };
    {
        let dispatch = host_with(&healer);
        tracing::callsite::rebuild_interest_cache();
        group.bench_function("error, host + healer.layer()", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(BATCH);
                    let dropped = healer.dropped();
                    total += timed(&dispatch, n, error_event!());
                    assert_eq!(healer.dropped(), dropped, "every signal was accepted");
                    while healer.queued().0 > 0 {
                        std::thread::yield_now();
                    }
                    left -= n;
                }
                total
            })
        });
        group.bench_function("debug, host + healer.layer()", |b| {
            b.iter_custom(|iters| timed(&dispatch, iters, debug_event!()))
        });
    }
    assert!(healer.observed() > 0, "the layer fed the healer");
    rt.block_on(running.shutdown());
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
