//! Fingerprinting throughput, beside the sha256-per-line floor.
//!
//! `cargo bench --bench fingerprint`. The Loghub-2k accuracy and speed figures come
//! from `examples/loghub_eval.rs` (issue "Fingerprinting"); this bench keeps a quick,
//! always-available view of the hot path.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use selfheal::{Fingerprinter, Normalizer, Signal};
use sha2::{Digest, Sha256};
use std::hint::black_box;

const LINES: &[&str] = &[
    "pool timed out while waiting for an open connection",
    "error communicating with database: Connection refused (os error 111)",
    "Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106 dest: /10.250.19.102:50010",
    "PacketResponder 1 for block blk_38865049064139660 terminating",
    "GET /api/v1/orders/550e8400-e29b-41d4-a716-446655440000 returned 503 in 1532ms",
    "OOM command not allowed when used memory > 'maxmemory'.",
    "FATAL:  sorry, too many clients already",
    "connection to 10.0.0.7:5432 failed: timeout after 30s, retry=3",
];

fn bench(c: &mut Criterion) {
    let signals: Vec<Signal> = LINES.iter().map(|l| Signal::new("svc", *l)).collect();
    let normalizer = Normalizer::default();
    let mut group = c.benchmark_group("fingerprint");
    group.throughput(Throughput::Elements(signals.len() as u64));
    group.bench_function("sha256 per line", |b| {
        b.iter(|| {
            for s in &signals {
                black_box(Sha256::digest(s.message.as_bytes()));
            }
        })
    });
    group.bench_function("normalizer", |b| {
        b.iter(|| {
            for s in &signals {
                black_box(normalizer.fingerprint(s));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
