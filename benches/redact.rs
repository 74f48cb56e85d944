//! Redaction cost per line, with and without secrets: every signal pays it as it
//! enters the healer.
//!
//! ```sh
//! cargo bench --bench redact
//! ```
//!
//! One element is one line: criterion's `thrpt` is lines/s, `time` is per batch of
//! the group's lines (divide by the element count for ns per line).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use selfheal::Redactor;

/// Ordinary error lines: no secret, several with trigger words (`key`, `://`, `token`).
const CLEAN: [&str; 8] = [
    "pool timed out while waiting for an open connection after 30s",
    "OOM command not allowed when used memory > 'maxmemory'",
    "GET http://api.internal:8080/v1/orders?id=3 returned 503 Service Unavailable",
    "FATAL: password authentication failed for user \"app\"",
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    "could not serialize access due to concurrent update on relation orders",
    "token expired, refreshing the session",
    "java.net.SocketTimeoutException: Read timed out after 5000 ms",
];

/// Lines with a secret each (fake values).
fn dirty() -> Vec<String> {
    vec![
        "connect postgres://orders:Zq9fakefake1@db.internal:5432/orders: connection refused"
            .to_owned(),
        "login failed: password=notarealpassword for user app".to_owned(),
        format!(
            "upstream said 401: Authorization: Bearer {}",
            "fAkE0tOkEn".repeat(4)
        ),
        format!("AccessDenied: key {}{} denied", "AKIA", "FAKEFAKEFAKE2345"),
        format!(
            "jwt rejected: eyJ{}.eyJ{}.{}",
            "x".repeat(20),
            "y".repeat(40),
            "z".repeat(43)
        ),
        "Server=db;User Id=sa;Password=NotReal!1;Encrypt=true".to_owned(),
        format!("git push with {}{} denied", "ghp_", "F4ke".repeat(9)),
        format!(
            "signing with {}Fz9 failed",
            "aB3/".repeat(9).get(..37).unwrap_or_default()
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let redactor = Redactor::default();
    let mut group = c.benchmark_group("redact");
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(CLEAN.len() as u64));
    group.bench_function("clean_lines", |b| {
        b.iter(|| {
            for line in CLEAN {
                black_box(redactor.redact(black_box(line)));
            }
        })
    });
    let dirty = dirty();
    group.throughput(Throughput::Elements(dirty.len() as u64));
    group.bench_function("lines_with_secrets", |b| {
        b.iter(|| {
            for line in &dirty {
                black_box(redactor.redact(black_box(line)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
