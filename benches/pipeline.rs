//! What `Healer::observe` costs the host: the call a service makes on every error.
//!
//! `cargo bench --bench pipeline`. Two cases side by side: the queue has room (the
//! signal is accepted), and the queue is full (the signal is counted as dropped).

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use selfheal::{Healer, HealerConfig, Signal};

fn healer(capacity: usize) -> Healer {
    let mut config = HealerConfig::default();
    config.intake.queue_capacity = capacity;
    Healer::builder()
        .config(config)
        .build()
        .expect("valid config")
}

fn bench(c: &mut Criterion) {
    let signal = Signal::new(
        "postgres",
        "pool timed out while waiting for an open connection",
    );
    let mut group = c.benchmark_group("observe");
    group.bench_function("accepted", |b| {
        // A fresh healer per batch so the queue always has room; nothing drains it.
        b.iter_batched_ref(
            || healer(1 << 16),
            |h| h.observe(signal.clone()),
            BatchSize::NumIterations(1 << 15),
        )
    });
    let full = healer(1);
    full.observe(signal.clone());
    group.bench_function("dropped (queue full)", |b| {
        b.iter(|| full.observe(signal.clone()))
    });
    group.bench_function("Signal::clone (floor)", |b| {
        b.iter(|| std::hint::black_box(signal.clone()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
