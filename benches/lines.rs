//! The cost of reading one log line with `selfheal::sources::lines`: a line below WARN
//! is skipped without allocating; an ERROR line becomes a signal.
//!
//! ```sh
//! cargo bench --bench lines
//! ```
//!
//! One element is one line: `time` is per line.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use selfheal::sources::lines::{LineParser, Lines};

const INFO_TEXT: &str = "2026-12-04T10:00:00.123456Z  INFO orders::http: request served method=GET path=/v1/orders/42 status=200 took_ms=3";
const INFO_JSON: &str = r#"{"timestamp":"2026-12-04T10:00:00.123456Z","level":"INFO","fields":{"message":"request served","method":"GET","path":"/v1/orders/42","status":200},"target":"orders::http"}"#;
const INFO_LOGFMT: &str = r#"time=2026-12-04T10:00:00.123Z level=info msg="request served" method=GET path=/v1/orders/42 status=200"#;
const ERROR_TEXT: &str = "2026-12-04T10:00:00.123456Z ERROR orders::db: query failed: pool timed out while waiting for an open connection";
const ERROR_JSON: &str = r#"{"timestamp":"2026-12-04T10:00:00.123456Z","level":"ERROR","fields":{"message":"query failed","error":"pool timed out while waiting for an open connection"},"target":"orders::db"}"#;
const ERROR_LOGFMT: &str = r#"time=2026-12-04T10:00:00.123Z level=error msg="query failed" err="pool timed out while waiting for an open connection""#;

fn bench(c: &mut Criterion) {
    let parser = LineParser::new("orders");
    let mut group = c.benchmark_group("lines");
    group.throughput(Throughput::Elements(1));
    for (name, line) in [
        ("skip_info_text", INFO_TEXT),
        ("skip_info_json", INFO_JSON),
        ("skip_info_logfmt", INFO_LOGFMT),
        ("parse_error_text", ERROR_TEXT),
        ("parse_error_json", ERROR_JSON),
        ("parse_error_logfmt", ERROR_LOGFMT),
    ] {
        group.bench_function(name, |b| b.iter(|| parser.parse(black_box(line))));
    }
    // Through the joiner: each ERROR line finishes the one before it.
    let mut lines = Lines::new(parser.clone());
    group.bench_function("joiner_skip_info_text", |b| {
        b.iter(|| lines.push(black_box(INFO_TEXT)))
    });
    let mut lines = Lines::new(parser);
    group.bench_function("joiner_error_text", |b| {
        b.iter(|| lines.push(black_box(ERROR_TEXT)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
