//! Fingerprinting throughput on real Loghub lines and real-shaped stack traces, beside
//! the sha256-per-line floor.
//!
//! ```sh
//! LOGHUB_DIR=/path/to/loghub-2k cargo bench --bench fingerprint
//! ```
//!
//! With `LOGHUB_DIR` the `fingerprint` group runs over the `Content` column of all 16
//! systems' `*_structured_corrected.csv` (32,000 lines); without it, over a few built-in
//! lines (and says so). One element is one line: criterion's `thrpt` is lines/s.
//! Accuracy and per-system figures come from `examples/loghub_eval.rs`.
//!
//! The `fingerprint, distinct lines` group runs over the same lines with each one kept
//! once: a log that never repeats a line, so the per-thread line memo never answers and
//! only costs. `normalizer without the line memo` is the same work made through the
//! public API without it (`template_into`, then `Fingerprint::new`).
//!
//! The `miner at the cap` group is the miner's worst case: every line is six random
//! words (a seeded xorshift, the same on every run), so every line is a new cluster, and
//! the miner already holds its 10,000 (`max_clusters`), so every line also evicts one.
#![allow(clippy::print_stderr)] // says which lines it measures

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use selfheal::fingerprint::{MinerConfig, TemplateMiner, fingerprint_id, stack_signature};
use selfheal::{Fingerprint, Fingerprinter, Normalizer, Signal};
use selfheal_testsupport::random_word_lines;
use sha2::{Digest, Sha256};

const SYSTEMS: [&str; 16] = [
    "HDFS",
    "Hadoop",
    "Spark",
    "Zookeeper",
    "BGL",
    "HPC",
    "Thunderbird",
    "Windows",
    "Linux",
    "Android",
    "HealthApp",
    "Apache",
    "Proxifier",
    "OpenSSH",
    "OpenStack",
    "Mac",
];

const FALLBACK: &[&str] = &[
    "pool timed out while waiting for an open connection",
    "error communicating with database: Connection refused (os error 111)",
    "GET /api/v1/orders/550e8400-e29b-41d4-a716-446655440000 returned 503 in 1532ms",
    "OOM command not allowed when used memory > 'maxmemory'.",
    "FATAL:  sorry, too many clients already",
    "connection to 10.0.0.7:5432 failed: timeout after 30s, retry=3",
];

const STACKS: &[&str] = &[
    "thread 'tokio-runtime-worker' panicked at src/db/pool.rs:88:14:
called `Result::unwrap()` on an `Err` value: PoolTimedOut
stack backtrace:
   0: rust_begin_unwind
             at /rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/std/src/panicking.rs:665:5
   1: core::panicking::panic_fmt
             at /rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/panicking.rs:74:14
   2: core::result::unwrap_failed
             at /rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/result.rs:1700:5
   3: checkout::db::pool::Pool::get::{{closure}}
             at ./src/db/pool.rs:88:14
   4: checkout::api::orders::create::{{closure}}
             at ./src/api/orders.rs:41:22
   5: tokio::runtime::task::core::Core<T,S>::poll::{{closure}}
             at /home/dev/.cargo/registry/src/index.crates.io-6f17d22bba15001f/tokio-1.41.0/src/runtime/task/core.rs:331:17
note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.",
    r#"Traceback (most recent call last):
  File "/srv/app/billing/api.py", line 88, in charge
    with db.connect() as conn:
  File "/srv/app/billing/db.py", line 41, in connect
    conn = psycopg2.connect(dsn)
  File "/usr/local/lib/python3.12/site-packages/psycopg2/__init__.py", line 122, in connect
    conn = _connect(dsn, connection_factory=connection_factory, **kwasync)
psycopg2.OperationalError: connection to server at "10.0.0.5", port 5432 failed: Connection refused"#,
    "org.springframework.dao.DataAccessResourceFailureException: Unable to acquire JDBC Connection
\tat org.springframework.orm.jpa.vendor.HibernateJpaDialect.convertHibernateAccessException(HibernateJpaDialect.java:275)
\tat com.acme.orders.OrderService.lambda$load$0(OrderService.java:57)
\tat java.base/java.util.concurrent.FutureTask.run(FutureTask.java:264)
\tat java.base/java.lang.Thread.run(Thread.java:833)
Caused by: java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request timed out after 30000ms.
\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:696)
\tat app//com.acme.orders.Db.open(Db.java:31)
\t... 12 more",
    "panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x6b4f3a]

goroutine 42 [running]:
github.com/acme/ledger/store.(*Pool).Get(0x0, {0x8a1f60, 0xc0001a2000})
\t/home/ci/src/ledger/store/pool.go:77 +0x3a
github.com/acme/ledger/api.(*Server).handleTransfer(0xc000128000, {0x8a5e40, 0xc0002b6000}, 0xc0002c4000)
\t/home/ci/src/ledger/api/transfer.go:31 +0x8c
net/http.HandlerFunc.ServeHTTP(0xc0001b4000?, {0x8a5e40?, 0xc0002b6000?}, 0xc0002c4000?)
\t/usr/local/go/src/net/http/server.go:2171 +0x29
exit status 2",
    "TypeError: Cannot read properties of undefined (reading 'id')
    at getUser (/app/src/users.js:12:15)
    at Layer.handle [as handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)
    at async Promise.all (index 0)
    at /app/src/index.js:30:7
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)",
];

fn loghub_lines() -> Vec<String> {
    let Some(dir) = std::env::var_os("LOGHUB_DIR") else {
        eprintln!(
            "LOGHUB_DIR not set: measuring {} built-in lines",
            FALLBACK.len()
        );
        return FALLBACK.iter().map(|l| (*l).to_owned()).collect();
    };
    let dir = std::path::PathBuf::from(dir);
    let mut lines = Vec::new();
    for system in SYSTEMS {
        let path = dir
            .join(system)
            .join(format!("{system}_2k.log_structured_corrected.csv"));
        let mut csv = csv::Reader::from_path(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; fix: LOGHUB_DIR must be the loghub-2k directory",
                path.display()
            )
        });
        let col = csv
            .headers()
            .expect("csv header")
            .iter()
            .position(|h| h == "Content")
            .expect("a Content column");
        for record in csv.records() {
            lines.push(record.expect("csv record")[col].to_owned());
        }
    }
    eprintln!("measuring {} Loghub lines", lines.len());
    lines
}

/// Lines per measured iteration of the `miner at the cap` group.
const NEW_CLUSTERS_PER_ITER: usize = 1_000;

fn bench_at_the_cap(c: &mut Criterion) {
    let config = MinerConfig::default();
    let miner = TemplateMiner::new(config.clone());
    for line in random_word_lines(config.max_clusters, 6, 1) {
        miner.add(line.as_bytes());
    }
    assert_eq!(miner.len(), config.max_clusters, "the miner starts full");
    // Far more lines than the miner holds: a line comes round again long after it was
    // evicted, so it is a new cluster again.
    let lines = random_word_lines(100 * NEW_CLUSTERS_PER_ITER, 6, 2);
    let mut next = 0;
    let mut group = c.benchmark_group("miner at the cap");
    group.throughput(Throughput::Elements(NEW_CLUSTERS_PER_ITER as u64));
    group.bench_function("new cluster per line, 6 random words", |b| {
        b.iter(|| {
            for _ in 0..NEW_CLUSTERS_PER_ITER {
                black_box(miner.add(lines[next].as_bytes()));
                next = (next + 1) % lines.len();
            }
        })
    });
    group.finish();
    assert_eq!(miner.len(), config.max_clusters, "the cap held");
}

/// sha256 per line (the floor), the normalizer's full fingerprint with and without the
/// line memo, and its template alone, over `lines` into `group`.
fn bench_normalizer(
    group: &mut BenchmarkGroup<'_, WallTime>,
    normalizer: &Normalizer,
    lines: &[&str],
) {
    group.bench_function("sha256 per line", |b| {
        b.iter(|| {
            for l in lines {
                black_box(Sha256::digest(l.as_bytes()));
            }
        })
    });
    group.bench_function("normalizer", |b| {
        b.iter(|| {
            for l in lines {
                black_box(normalizer.fingerprint_bytes("svc", l.as_bytes()));
            }
        })
    });
    group.bench_function("normalizer without the line memo", |b| {
        let mut buf = String::new();
        b.iter(|| {
            for l in lines {
                normalizer.template_into(l.as_bytes(), &mut buf);
                black_box(Fingerprint::new("svc", &buf, None));
            }
        })
    });
    group.bench_function("normalizer template only", |b| {
        let mut buf = String::new();
        b.iter(|| {
            for l in lines {
                normalizer.template_into(l.as_bytes(), &mut buf);
                black_box(&buf);
            }
        })
    });
}

fn bench(c: &mut Criterion) {
    let lines = loghub_lines();
    let normalizer = Normalizer::default();
    let miner = TemplateMiner::new(MinerConfig::default());
    for l in &lines {
        miner.add(l.as_bytes());
    }

    let all: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("fingerprint");
    group.throughput(Throughput::Elements(all.len() as u64));
    bench_normalizer(&mut group, &normalizer, &all);
    group.bench_function("normalizer without the id memo", |b| {
        b.iter(|| {
            for l in &all {
                let mut template = String::with_capacity(l.len().min(4096));
                normalizer.template_into(l.as_bytes(), &mut template);
                let id = fingerprint_id("svc", &template, None);
                black_box((id, template));
            }
        })
    });
    group.bench_function("miner", |b| {
        b.iter(|| {
            for l in &all {
                black_box(miner.fingerprint_bytes("svc", l.as_bytes()));
            }
        })
    });
    group.bench_function("miner cluster id only", |b| {
        b.iter(|| {
            for l in &all {
                black_box(miner.add(l.as_bytes()));
            }
        })
    });
    group.finish();

    // The same lines, each once: what a log that never repeats a line pays.
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<&str> = all.iter().copied().filter(|l| seen.insert(*l)).collect();
    let mut group = c.benchmark_group("fingerprint, distinct lines");
    group.throughput(Throughput::Elements(distinct.len() as u64));
    bench_normalizer(&mut group, &normalizer, &distinct);
    group.finish();

    let signals: Vec<Signal> = STACKS
        .iter()
        .map(|s| {
            let message = s.lines().next().unwrap_or_default();
            Signal::new("svc", message).stack(*s)
        })
        .collect();
    let mut group = c.benchmark_group("stack");
    group.throughput(Throughput::Elements(STACKS.len() as u64));
    group.bench_function("sha256 per trace", |b| {
        b.iter(|| {
            for s in STACKS {
                black_box(Sha256::digest(s.as_bytes()));
            }
        })
    });
    group.bench_function("stack signature", |b| {
        b.iter(|| {
            for s in STACKS {
                black_box(stack_signature(s));
            }
        })
    });
    group.bench_function("normalizer with stack", |b| {
        b.iter(|| {
            for s in &signals {
                black_box(normalizer.fingerprint(s));
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench, bench_at_the_cap
}
criterion_main!(benches);
