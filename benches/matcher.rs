//! What matching one signal against the pattern catalog costs: `Matcher::best`, the
//! call the healer makes on every signal it has fingerprinted.
//!
//! `cargo bench --bench matcher -- --noplot`. Group `matcher`, one case per
//! `<catalog>/<text>`:
//!
//! - catalogs: `stock` is the stock catalog (`catalog::stock()`, regex and target only);
//!   `1000` is the stock catalog plus 1,000 generated patterns shaped like real ones (a
//!   regex over a component and a failure, keywords that share common words such as
//!   `connection` or `memory` with real texts) that match none of the texts, so every
//!   text has the same best match in both catalogs (checked before timing). `1000re` is
//!   the same without the generated patterns' keywords: what the regexes alone cost.
//! - texts (real wordings): `redis oom` (redis `OOM command not allowed …`, target
//!   `redis-cache`, matches `redis_oom`), `sqlx pool` (`pool timed out while waiting for
//!   an open connection`, target `orders-postgres`), `refused` (reqwest's `Connection
//!   refused (os error 111)` chain, target `payments-api`), `nothing` (a text no pattern
//!   matches: every regex and every keyword score is tried and fails).
//!
//! One iteration is one `best` call on a signal built before the clock starts.
//!
//! Group `matcher_build`: `Matcher::new` over each catalog (what a catalog change costs).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use selfheal::{Matcher, Pattern, Severity, Signal, catalog};

/// Components the generated patterns name (none of them is in a bench text).
const COMPONENTS: [&str; 12] = [
    "kafka",
    "etcd",
    "consul",
    "vault",
    "minio",
    "elasticsearch",
    "clickhouse",
    "rabbitmq",
    "memcached",
    "zookeeper",
    "cassandra",
    "nginx",
];
/// Failures the generated patterns describe, each with a word real texts also use.
const FAILURES: [(&str, &str); 8] = [
    ("connection pool drained", "connection"),
    ("memory quota breached", "memory"),
    ("lease renewal failed", "failed"),
    ("request queue overflowed", "request"),
    ("replica lag above limit", "used"),
    ("snapshot checksum mismatch", "error"),
    ("handshake timed out", "timed"),
    ("partition leader unavailable", "open"),
];

/// `n` patterns that look like real ones (regex, keywords, description) and match none
/// of the bench texts.
fn generated(n: usize) -> Vec<Pattern> {
    (0..n)
        .map(|i| {
            let component = COMPONENTS[i % COMPONENTS.len()];
            let (failure, common) = FAILURES[(i / COMPONENTS.len()) % FAILURES.len()];
            let words: Vec<&str> = failure.split(' ').collect();
            Pattern::new(format!("{component}_{}_{i}", words.join("_")))
                .description(format!("{component} shard {i}: {failure}"))
                .regex(format!(
                    r"\b{component}\b[^\n]{{0,80}}?\b{}\b[^\n]{{0,40}}{}|E{i:04}: {failure}",
                    words[0],
                    words[1..].join(" "),
                ))
                .keywords([
                    component.to_owned(),
                    format!("shard{i}"),
                    words[0].to_owned(),
                    common.to_owned(),
                ])
                .severity(if i % 3 == 0 {
                    Severity::High
                } else {
                    Severity::Medium
                })
        })
        .collect()
}

fn texts() -> Vec<(&'static str, Signal)> {
    vec![
        (
            "redis oom",
            Signal::new(
                "redis-cache",
                "OOM command not allowed when used memory > 'maxmemory'.",
            ),
        ),
        (
            "sqlx pool",
            Signal::new(
                "orders-postgres",
                "pool timed out while waiting for an open connection",
            ),
        ),
        (
            "refused",
            Signal::new(
                "payments-api",
                "error sending request for url (http://10.0.0.7:8080/charge): client error (Connect): tcp connect error: Connection refused (os error 111)",
            ),
        ),
        (
            "nothing",
            Signal::new(
                "accounts-api",
                "user 4411 has no saved cart; returning an empty one",
            ),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let stock = catalog::stock();
    let mut big = stock.clone();
    big.extend(generated(1_000));
    let mut regex_only = stock.clone();
    regex_only.extend(generated(1_000).into_iter().map(|mut p| {
        p.keywords.clear();
        p
    }));
    let catalogs = [("stock", &stock), ("1000", &big), ("1000re", &regex_only)];
    let mut group = c.benchmark_group("matcher_build");
    group.sample_size(10);
    for (name, patterns) in catalogs {
        group.bench_function(name, |b| b.iter(|| black_box(Matcher::new(patterns))));
    }
    group.finish();

    let stock = Matcher::new(&stock);
    let big = Matcher::new(&big);
    let regex_only = Matcher::new(&regex_only);
    assert_eq!(big.patterns().count(), stock.patterns().count() + 1_000);
    let texts = texts();
    for (name, signal) in &texts {
        let expected = stock.best(signal).map(|m| m.pattern);
        for m in [&big, &regex_only] {
            assert_eq!(
                m.best(signal).map(|m| m.pattern),
                expected,
                "`{name}`: the generated patterns must not change the best match"
            );
        }
        assert_eq!(
            expected.is_none(),
            *name == "nothing",
            "`{name}` matches as described"
        );
    }

    let mut group = c.benchmark_group("matcher");
    for (catalog, matcher) in [("stock", &stock), ("1000", &big), ("1000re", &regex_only)] {
        for (name, signal) in &texts {
            group.bench_function(format!("{catalog}/{name}"), |b| {
                b.iter(|| black_box(matcher.best(black_box(signal))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
