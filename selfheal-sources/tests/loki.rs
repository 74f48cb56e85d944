//! The Loki source against a stand-in Loki that answers like Loki's HTTP API
//! documentation says (tests/support/fake_loki.rs): pages that split the entries of
//! one nanosecond, a 429 with `Retry-After`, a 5xx, an answer that is not Loki's, a
//! refused query, and a restart that resumes from the stored cursor. And `tail` over a
//! WebSocket (tests/support/fake_loki_tail.rs): frames with dropped entries, one that is
//! not JSON, a close, and a reconnect from the cursor.

#[path = "support/fake_loki.rs"]
mod fake_loki;
#[path = "support/fake_loki_tail.rs"]
mod fake_loki_tail;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fake_loki::{FakeLoki, Scripted, now_ns};
use fake_loki_tail::{FakeTail, Step, frame};
use selfheal_core::{Healer, Level, MemoryStore, Store};
use selfheal_sources::loki::LokiSource;
use support::Spy;

fn source(loki: &FakeLoki) -> LokiSource {
    LokiSource::new(&loki.url, r#"{env="prod"} |= "error""#)
        .poll_every(Duration::from_millis(50))
        .lookback(Duration::from_secs(600))
}

fn healer(spy: &Spy, store: Arc<dyn Store>, source: LokiSource) -> Healer {
    Healer::builder()
        .store_arc(store)
        .fingerprinter(spy.clone())
        .source(source)
        .build()
        .unwrap()
}

/// Counts each message.
fn counted(messages: Vec<String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for m in messages {
        *counts.entry(m).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_that_split_one_nanosecond_lose_nothing_and_repeat_nothing() {
    let loki = FakeLoki::start().await;
    let t = now_ns() - 30_000_000_000;
    let api = [("service_name", "api"), ("env", "prod")];
    let web = [("service_name", "web"), ("env", "prod")];
    loki.push(&api, t + 1, "a error");
    // Four entries share one nanosecond, over two streams.
    loki.push(&api, t + 2, "b1 error");
    loki.push(&web, t + 2, "b2 error");
    loki.push(&api, t + 2, "b3 error");
    loki.push(&web, t + 2, "b4 error");
    loki.push(&api, t + 3, "c error");
    loki.push(&web, t + 4, "d error");
    // Read, but below warn: not a signal.
    loki.push(
        &[("service_name", "web"), ("env", "prod"), ("level", "info")],
        t + 4,
        "retrying after an error",
    );
    let spy = Spy::default();
    let healer = healer(&spy, Arc::new(MemoryStore::new()), source(&loki).limit(3));
    let running = healer.spawn();
    let signals = spy.wait_for(7).await;
    // Two more polls after the last line: nothing comes twice.
    let asked = loki.requests().len();
    loki.wait_requests(asked + 2).await;
    running.shutdown().await;

    let expected = [
        "a error", "b1 error", "b2 error", "b3 error", "b4 error", "c error", "d error",
    ];
    assert_eq!(
        counted(spy.messages()),
        counted(expected.iter().map(|s| s.to_string()).collect()),
        "each line once"
    );
    let d = signals.iter().find(|s| s.message == "d error").unwrap();
    assert_eq!(d.target, "web", "service_name names the target");
    assert_eq!(d.fields["env"], "prod", "labels are fields");
    assert_eq!(d.level, Level::Error);
    assert_eq!(d.timestamp.timestamp_nanos_opt(), Some(t + 4));
    let requests = loki.requests();
    assert!(requests.iter().all(|r| r.direction == "forward"));
    assert!(
        requests.windows(2).all(|w| w[1].start >= w[0].start),
        "the cursor never goes back: {requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.start == t + 2),
        "a query starts at the split nanosecond, inclusive: {requests:?}"
    );
    let stats = &healer.sources()[0];
    assert_eq!(
        (stats.emitted, stats.malformed, stats.restarts),
        (7, 0, 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_waits_as_told_a_5xx_backs_off_and_a_foreign_answer_is_malformed() {
    let loki = FakeLoki::start().await;
    loki.push(&[("app", "api")], now_ns() - 10_000_000_000, "boom error");
    loki.script(&[
        Scripted::Status(429, Some("1"), "too many outstanding requests"),
        Scripted::Status(503, None, "ingester unavailable"),
        Scripted::Status(200, None, "<html>a proxy's page</html>"),
    ]);
    let spy = Spy::default();
    let healer = healer(&spy, Arc::new(MemoryStore::new()), source(&loki));
    let running = healer.spawn();
    let signals = spy.wait_for(1).await;
    running.shutdown().await;

    assert_eq!(signals[0].message, "boom error");
    assert_eq!(
        signals[0].target, "api",
        "`app` when there is no service_name"
    );
    let r = loki.requests();
    assert!(r.len() >= 4, "{r:?}");
    for (i, gap) in r.windows(2).take(3).map(|w| w[1].at - w[0].at).enumerate() {
        assert!(
            gap >= Duration::from_millis(950),
            "request {} came {gap:?} after the one refused",
            i + 1
        );
    }
    let stats = &healer.sources()[0];
    assert_eq!((stats.malformed, stats.restarts), (1, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_query_fails_the_source_which_runs_again() {
    let loki = FakeLoki::start().await;
    loki.push(&[("app", "api")], now_ns() - 10_000_000_000, "boom error");
    loki.script(&[Scripted::Status(
        400,
        None,
        "parse error at line 1, col 7: syntax error: unexpected IDENTIFIER",
    )]);
    let spy = Spy::default();
    let healer = healer(
        &spy,
        Arc::new(MemoryStore::new()),
        source(&loki).tenant("team-a").unwrap(),
    );
    let running = healer.spawn();
    spy.wait_for(1).await;
    // The poll after it: the line's `ingest` has returned and been counted.
    let asked = loki.requests().len();
    loki.wait_requests(asked + 1).await;
    running.shutdown().await;
    let stats = &healer.sources()[0];
    assert_eq!((stats.restarts, stats.emitted), (1, 1), "{stats:?}");
    assert!(
        loki.requests()
            .iter()
            .all(|r| r.tenant.as_deref() == Some("team-a")),
        "the tenant goes with every request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_stored_cursor_in_the_middle_of_a_nanosecond() {
    let loki = FakeLoki::start().await;
    let t = now_ns() - 30_000_000_000;
    let api = [("service_name", "api")];
    loki.push(&api, t + 1, "one error");
    loki.push(&api, t + 2, "two error");
    loki.push(&api, t + 2, "three error");
    loki.push(&api, t + 3, "four error");
    // The first run reads one page of two, then its next query never comes back.
    loki.script(&[Scripted::Entries, Scripted::Hang]);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let spy = Spy::default();
    let first = healer(&spy, store.clone(), source(&loki).limit(2));
    let running = first.spawn();
    spy.wait_for(2).await;
    loki.wait_requests(2).await;
    running.shutdown().await;
    assert_eq!(spy.messages(), ["one error", "two error"]);

    let again = Spy::default();
    let second = healer(&again, store, source(&loki).limit(2));
    let running = second.spawn();
    again.wait_for(2).await;
    let asked = loki.requests().len();
    loki.wait_requests(asked + 2).await;
    running.shutdown().await;
    assert_eq!(
        again.messages(),
        ["three error", "four error"],
        "resumed after what the first run read, at its nanosecond"
    );
    let resumed = &loki.requests()[2];
    assert_eq!(resumed.start, t + 2, "the stored cursor: {resumed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_reconnects_from_the_cursor_and_counts_what_loki_dropped() {
    let t = now_ns() - 30_000_000_000;
    let api: &[(&str, &str)] = &[("service_name", "api"), ("env", "prod")];
    let web: &[(&str, &str)] = &[("app", "web"), ("peer", "redis"), ("env", "prod")];
    let tail = FakeTail::start(vec![
        vec![
            Step::Text(frame(
                &[(api, &[(t + 1, "a error")]), (web, &[(t + 2, "b error")])],
                &[],
            )),
            Step::Text(frame(
                &[(api, &[(t + 3, "c1 error")])],
                &[(t + 3, "api"), (t + 3, "web")],
            )),
            Step::Text("{\"streams\": [not json".to_owned()),
            Step::Close,
        ],
        // Loki sends again from `start`, inclusive: c1 was read, c3 shares its
        // nanosecond and was not. The replayed c1 comes before d, so once d is in, a
        // repeat of c1 would have been too.
        vec![
            Step::Text(frame(
                &[
                    (api, &[(t + 3, "c1 error")]),
                    (web, &[(t + 3, "c3 error"), (t + 4, "d error")]),
                ],
                &[],
            )),
            Step::Hold,
        ],
    ])
    .await;
    let loki = LokiSource::new(&tail.url, r#"{env="prod"} |= "error""#)
        .follow_tail(true)
        .lookback(Duration::from_secs(600))
        .limit(100)
        .target_label("peer")
        .tenant("team-a")
        .unwrap()
        .header("authorization", "Bearer not-a-secret")
        .unwrap();
    let mut stats = loki.stats();
    let spy = Spy::default();
    let healer = healer(&spy, Arc::new(MemoryStore::new()), loki);
    let running = healer.spawn();
    let signals = spy.wait_for(5).await;
    // The spy sees a signal while the intake takes it in; the stats count it after.
    let counts = tokio::time::timeout(Duration::from_secs(20), stats.wait_for(|s| s.signals >= 5))
        .await
        .expect("five signals counted")
        .unwrap();
    running.shutdown().await;

    assert_eq!(
        counted(spy.messages()),
        counted(
            ["a error", "b error", "c1 error", "c3 error", "d error"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        ),
        "each line once, none lost at the shared nanosecond"
    );
    let a = signals.iter().find(|s| s.message == "a error").unwrap();
    assert_eq!(
        a.target, "api",
        "service_name when the stream has no `peer`"
    );
    assert_eq!(a.service, "api");
    assert_eq!(a.fields["env"], "prod", "labels are fields");
    assert_eq!(a.timestamp.timestamp_nanos_opt(), Some(t + 1));
    let d = signals.iter().find(|s| s.message == "d error").unwrap();
    assert_eq!(d.target, "redis", "the configured label first");
    assert_eq!(d.fields["app"], "web");

    let handshakes = tail.handshakes();
    assert_eq!(handshakes.len(), 2, "{handshakes:?}");
    for h in &handshakes {
        assert_eq!(h.path, "/loki/api/v1/tail");
        assert_eq!(h.params["query"], r#"{env="prod"} |= "error""#);
        assert_eq!(h.params["limit"], "100");
        assert_eq!(
            h.headers.get("x-scope-orgid").map(String::as_str),
            Some("team-a")
        );
        assert_eq!(
            h.headers.get("authorization").map(String::as_str),
            Some("Bearer not-a-secret")
        );
    }
    assert!(
        handshakes[0].start() < t + 1,
        "the first starts lookback ago"
    );
    assert_eq!(
        handshakes[1].start(),
        t + 3,
        "the reconnect starts at the last entry read (inclusive; what was read there is skipped)"
    );
    assert_eq!(
        (
            counts.connections,
            counts.frames,
            counts.dropped_by_loki,
            counts.signals
        ),
        (2, 3, 2, 5),
        "{counts:?}"
    );
    let sources = &healer.sources()[0];
    assert_eq!(
        (sources.emitted, sources.malformed, sources.restarts),
        (5, 1, 0),
        "{sources:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_tail_resumes_from_the_stored_cursor() {
    let t = now_ns() - 30_000_000_000;
    let api: &[(&str, &str)] = &[("service_name", "api")];
    let tail = FakeTail::start(vec![
        vec![
            Step::Text(frame(
                &[(api, &[(t + 1, "one error"), (t + 2, "two error")])],
                &[],
            )),
            Step::Hold,
        ],
        vec![
            Step::Text(frame(
                &[(api, &[(t + 2, "two error"), (t + 3, "three error")])],
                &[],
            )),
            Step::Hold,
        ],
    ])
    .await;
    let source = || {
        LokiSource::new(&tail.url, "{app=\"api\"}")
            .follow_tail(true)
            .lookback(Duration::from_secs(600))
    };
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let spy = Spy::default();
    let first = source();
    let mut saves = first.stats();
    let first = healer(&spy, store.clone(), first);
    let running = first.spawn();
    spy.wait_for(2).await;
    tokio::time::timeout(
        Duration::from_secs(20),
        saves.wait_for(|s| s.cursor_saves >= 1),
    )
    .await
    .expect("the cursor saved")
    .unwrap();
    running.shutdown().await;

    let again = Spy::default();
    let second = healer(&again, store, source());
    let running = second.spawn();
    again.wait_for(1).await;
    running.shutdown().await;
    assert_eq!(again.messages(), ["three error"], "nothing read twice");
    assert_eq!(tail.handshakes()[1].start(), t + 2, "the stored cursor");
}

/// One line gives one signal whichever source read it: a FileTail and the Loki poller
/// both read it with the crate's line parser (message, level, logger alike); Loki then
/// adds its labels, names the target from them and keeps its own timestamp.
#[cfg(feature = "file")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_gives_the_same_signal_through_loki_as_through_a_file() {
    use selfheal_sources::file::FileTail;
    let line = "2026-12-05T10:00:00Z ERROR orders::db: query failed error=pool timed out while waiting for an open connection";

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("orders.log");
    std::fs::write(&log, format!("{line}\n")).unwrap();
    let file_spy = Spy::default();
    let tail = FileTail::new(log.to_string_lossy())
        .from_start(true)
        .poll_interval(Duration::from_millis(20))
        .idle_flush(Duration::from_millis(10));
    let file_healer = Healer::builder()
        .fingerprinter(file_spy.clone())
        .source(tail)
        .build()
        .unwrap();
    let running = file_healer.spawn();
    let from_file = file_spy.wait_for(1).await.remove(0);
    running.shutdown().await;

    let loki = FakeLoki::start().await;
    let t = now_ns() - 10_000_000_000;
    loki.push(&[("service_name", "orders"), ("env", "prod")], t, line);
    let loki_spy = Spy::default();
    let healer = healer(&loki_spy, Arc::new(MemoryStore::new()), source(&loki));
    let running = healer.spawn();
    let from_loki = loki_spy.wait_for(1).await.remove(0);
    running.shutdown().await;

    assert_eq!(
        from_file.message,
        "query failed: pool timed out while waiting for an open connection"
    );
    assert_eq!(from_loki.message, from_file.message);
    assert_eq!(
        (from_loki.level, from_file.level),
        (Level::Error, Level::Error)
    );
    assert_eq!(from_loki.fields["logger"], from_file.fields["logger"]);
    assert_eq!(
        from_loki.fields["error"],
        "pool timed out while waiting for an open connection"
    );
    assert_eq!(
        (from_loki.target.as_str(), from_loki.fields["env"].as_str()),
        ("orders", "prod")
    );
    assert_eq!(from_loki.timestamp.timestamp_nanos_opt(), Some(t));
}

/// Below WARN by its own word, a line is skipped as a file tail skips it, whatever
/// the query let through; a line without a level keeps the level its labels say.
#[test]
fn the_line_decides_the_level_then_the_labels() {
    use selfheal_sources::loki::{Entry, Labels};
    let entry = |labels: &[(&str, &str)], line: &str| Entry {
        ts: 1,
        labels: Arc::new(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Labels>(),
        ),
        metadata: Labels::new(),
        line: line.to_owned(),
    };
    let loki = LokiSource::new("http://loki", "{}");
    let info = "2026-12-05T10:00:00Z  INFO orders: retrying after an error";
    assert!(
        loki.to_signal(&entry(&[("level", "error")], info))
            .is_none()
    );
    let s = loki
        .to_signal(&entry(&[("level", "warn")], "disk at 91%"))
        .unwrap();
    assert_eq!((s.level, s.message.as_str()), (Level::Warn, "disk at 91%"));
}
