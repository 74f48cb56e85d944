//! A service's log file feeds the healer as the README shows: a `FileTail` source on a
//! healer with the SQLite store and its stock catalog. Real error texts, written the
//! way services write them, open an incident that the right stock pattern explains.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use selfheal::sources::file::FileTail;
use selfheal::sources::lines::LineParser;
use selfheal::storage::SqliteStore;
use selfheal::{Healer, HealingEvent, IncidentFilter, Phase, Running};
use sqlx::sqlite::SqlitePoolOptions;
use tokio::sync::broadcast;

const POOL_PATTERN: &str = "postgres_connection_pool_exhausted";

/// sqlx's real error when its pool has no free connection: a pool of one whose only
/// connection is held, asked for another.
async fn pool_timed_out() -> sqlx::Error {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(50))
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let _held = pool.acquire().await.unwrap();
    pool.acquire()
        .await
        .expect_err("the only connection is held")
}

/// The event in which a pattern explained an incident (the timeout is a guard only).
async fn matched(events: &mut broadcast::Receiver<HealingEvent>) -> HealingEvent {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let event = events.recv().await.expect("the healer runs");
            if event.phase == Phase::Matched {
                return event;
            }
        }
    })
    .await
    .expect("an incident was matched within the guard")
}

/// A healer on the SQLite store in `dir` (with the stock catalog, as the README says),
/// with `tail` as its source, running, its one file open.
async fn start(dir: &Path, tail: FileTail) -> (Healer, Running, broadcast::Receiver<HealingEvent>) {
    let mut stats = tail.stats();
    let store = SqliteStore::open(&dir.join("selfheal.db").to_string_lossy())
        .await
        .unwrap();
    let healer = Healer::builder().store(store).source(tail).build().unwrap();
    let events = healer.subscribe();
    let running = healer.spawn();
    // A file that was there before the tail started is read from its end: what is
    // written next must come after the tail opened it.
    tokio::time::timeout(Duration::from_secs(20), stats.wait_for(|s| s.files == 1))
        .await
        .expect("the tail opened its file within the guard")
        .unwrap();
    (healer, running, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracing_log_file_opens_an_incident_the_stock_pool_pattern_explains() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("orders.log");
    File::create(&log).unwrap();

    let tail = FileTail::new(log.to_string_lossy()).target("orders-postgres");
    let (healer, running, mut events) = start(dir.path(), tail).await;

    // The service logs with tracing-subscriber's default format into its file.
    let error = pool_timed_out().await;
    let writer = Mutex::new(OpenOptions::new().append(true).open(&log).unwrap());
    let service = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(service, || {
        tracing::info!("listening on 127.0.0.1:8080");
        for _ in 0..3 {
            tracing::error!(error = %error, "query failed");
        }
        tracing::info!("still serving");
    });

    let event = matched(&mut events).await;
    assert_eq!(event.pattern.as_deref(), Some(POOL_PATTERN), "{event:?}");
    assert_eq!(event.target, "orders-postgres");
    let incident = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap()
        .into_iter()
        .find(|i| Some(i.id) == event.incident)
        .expect("the incident is stored");
    // tracing's fmt wrote `query failed error=pool timed out …`: the error field joined
    // the message as it does for the healer's own layer.
    assert_eq!(
        incident.template,
        "query failed: pool timed out while waiting for an open connection"
    );
    assert!(incident.occurrences >= 3, "{}", incident.occurrences);
    let source = &healer.sources()[0];
    assert_eq!((source.emitted, source.malformed), (3, 0), "{source:?}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_whose_error_key_holds_the_text_are_matched_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    File::create(logs.join("web.log")).unwrap();

    // Every `*.log` of the directory; the target from each line's `service` key.
    let tail = FileTail::new(format!("{}/*.log", logs.display()))
        .parser(LineParser::new("unknown").target_key("service"));
    let (healer, running, mut events) = start(dir.path(), tail).await;

    // A file that appears later is found and read from its start.
    let error = pool_timed_out().await.to_string();
    let mut db = File::create(logs.join("db.log")).unwrap();
    for _ in 0..3 {
        let line = serde_json::json!({
            "timestamp": "2026-12-04T10:00:00.123Z",
            "level": "ERROR",
            "msg": "query failed",
            "error": error,
            "service": "orders-postgres",
        });
        writeln!(db, "{line}").unwrap();
    }
    db.flush().unwrap();

    let event = matched(&mut events).await;
    assert_eq!(event.pattern.as_deref(), Some(POOL_PATTERN), "{event:?}");
    assert_eq!(event.target, "orders-postgres");
    assert_eq!(healer.sources()[0].emitted, 3);
    running.shutdown().await;
}
