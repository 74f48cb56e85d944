//! What `Healer::observe` costs the host: the call a service makes on every error.
//!
//! `cargo bench --bench pipeline`. Side by side, in group `observe`:
//!
//! - `accepted`: the queue has room. The signals are cloned before the clock starts,
//!   so what is timed is `observe` alone. A fresh healer per 2^15 calls, nothing drains
//!   it, so its lane grows from empty (as after a start).
//! - `accepted, warm queue`: the same on a healer whose intake drains the queue between
//!   batches of 1,024 (untimed): the lane is kept with its buffer, the steady state of a
//!   running host.
//! - `dropped (queue full)`: the signal is refused and counted. Timed as it always was,
//!   with the `signal.clone()` it is handed; the refused signal is dropped inside
//!   `observe`. Compare it with `Signal::clone + drop (floor)`.
//! - the floors: `Signal::clone`, and `Signal::clone + drop`.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use selfheal::{Healer, HealerConfig, Signal};

/// Calls per fresh healer in `accepted`: one target may hold half of the queue.
const BATCH: u64 = 1 << 15;
/// Calls between two drains in `accepted, warm queue`.
const WARM_BATCH: u64 = 1 << 10;

fn healer(capacity: usize) -> Healer {
    let mut config = HealerConfig::default();
    config.intake.queue_capacity = capacity;
    Healer::builder()
        .config(config)
        .build()
        .expect("valid config")
}

/// Times `observe` of `n` clones of `signal` (cloned before the clock starts).
fn observe_clones(healer: &Healer, signal: &Signal, n: u64) -> Duration {
    let signals: Vec<Signal> = (0..n).map(|_| signal.clone()).collect();
    let dropped = healer.dropped();
    let start = Instant::now();
    for s in signals {
        healer.observe(s);
    }
    let timed = start.elapsed();
    assert_eq!(healer.dropped(), dropped, "every signal was accepted");
    timed
}

fn bench(c: &mut Criterion) {
    let signal = Signal::new(
        "postgres",
        "pool timed out while waiting for an open connection",
    );
    let mut group = c.benchmark_group("observe");
    group.bench_function("accepted", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                timed += observe_clones(&healer(2 * BATCH as usize), &signal, n);
                left -= n;
            }
            timed
        })
    });

    // The healer's tasks run only inside `block_on`: not while `observe` is timed.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let warm = healer(4 * WARM_BATCH as usize);
    let running = {
        let _entered = rt.enter();
        warm.spawn()
    };
    group.bench_function("accepted, warm queue", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(WARM_BATCH);
                timed += observe_clones(&warm, &signal, n);
                rt.block_on(async {
                    while warm.queued().0 > 0 {
                        tokio::task::yield_now().await;
                    }
                });
                left -= n;
            }
            timed
        })
    });
    rt.block_on(running.shutdown());

    let full = healer(1);
    full.observe(signal.clone());
    group.bench_function("dropped (queue full)", |b| {
        b.iter(|| full.observe(signal.clone()))
    });
    assert!(full.dropped() > 0, "the full queue refused");
    group.bench_function("Signal::clone (floor)", |b| {
        b.iter(|| std::hint::black_box(signal.clone()))
    });
    group.bench_function("Signal::clone + drop (floor)", |b| {
        b.iter(|| drop(std::hint::black_box(signal.clone())))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
