//! The file tail on real files in a temporary directory: one pass at a time (no
//! waiting at all), then whole healers that stop and start again on one store.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use selfheal_core::{ControlStore as _, Healer, MemoryStore, Signal, Store};

use super::cursor::Cursor;
use super::state::State;
use super::*;

fn append(path: &Path, text: &[u8]) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text)
        .unwrap();
}

fn error(n: usize) -> String {
    format!("2026-12-04T10:00:0{n}.000Z ERROR orders: query {n} failed\n")
}

/// A state for `tail`'s settings, started from `cursor`.
fn start(tail: &FileTail, cursor: &Cursor) -> State {
    State::start(Arc::new(tail.settings.clone()), cursor)
}

/// The messages one pass hands over (as many passes as the files need).
fn pass(state: &mut State) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let (read, more) = state.pass(false);
        out.extend(read.into_iter().map(|(_, h)| h.signal.message));
        if !more {
            return out;
        }
    }
}

fn signals(state: &mut State, changed: bool) -> Vec<Signal> {
    state
        .pass(changed)
        .0
        .into_iter()
        .map(|(_, h)| h.signal)
        .collect()
}

/// A temporary directory with an empty `orders.log`.
fn empty_log() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("orders.log");
    File::create(&log).unwrap();
    (dir, log)
}

/// A tail of `path` that hands a signal over at the end of each pass.
fn tail(path: &Path) -> FileTail {
    FileTail::new(path.to_string_lossy()).idle_flush(Duration::ZERO)
}

#[test]
fn appended_lines_are_read_and_history_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("orders.log");
    append(&log, error(0).as_bytes());
    let mut state = start(&tail(&log), &Cursor::default());
    assert!(
        pass(&mut state).is_empty(),
        "what was there before is history"
    );

    append(&log, b"2026-12-04T10:00:00.500Z  INFO orders: fine\n");
    append(&log, error(1).as_bytes());
    append(&log, error(2).as_bytes());
    assert_eq!(pass(&mut state), ["query 1 failed", "query 2 failed"]);
    assert!(pass(&mut state).is_empty());
    assert_eq!(state.counts.lines, 3);
}

#[test]
fn the_target_is_the_file_name_or_the_configured_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("payments.2026-12-04.log");
    File::create(&log).unwrap();
    let mut state = start(&tail(&log), &Cursor::default());
    append(&log, error(1).as_bytes());
    assert_eq!(signals(&mut state, false)[0].target, "payments");
    let mut state = start(&tail(&log).target("billing"), &Cursor::default());
    append(&log, error(2).as_bytes());
    assert_eq!(signals(&mut state, false)[0].target, "billing");
}

#[test]
fn a_rotation_reads_the_old_file_to_its_end_then_the_new_one() {
    let (dir, log) = empty_log();
    let mut state = start(&tail(&log), &Cursor::default());
    // The writer holds the file open across the rename, as a service does until it
    // reopens its log.
    let mut writer = OpenOptions::new().append(true).open(&log).unwrap();
    writer.write_all(error(1).as_bytes()).unwrap();
    assert_eq!(pass(&mut state), ["query 1 failed"]);

    std::fs::rename(&log, dir.path().join("orders.log.1")).unwrap();
    writer.write_all(error(2).as_bytes()).unwrap();
    append(&log, error(3).as_bytes());
    assert_eq!(pass(&mut state), ["query 2 failed", "query 3 failed"]);
    assert_eq!(state.counts.rotations, 1);
    append(&log, error(4).as_bytes());
    assert_eq!(pass(&mut state), ["query 4 failed"]);
}

#[test]
fn a_glob_that_matches_rotated_files_reads_each_line_once() {
    let (dir, log) = empty_log();
    let tail =
        FileTail::new(format!("{}/orders.log*", dir.path().display())).idle_flush(Duration::ZERO);
    let mut state = start(&tail, &Cursor::default());
    append(&log, error(1).as_bytes());
    assert_eq!(pass(&mut state), ["query 1 failed"]);
    std::fs::rename(&log, dir.path().join("orders.log.1")).unwrap();
    append(&log, error(2).as_bytes());
    let mut got = Vec::new();
    for changed in [true, false, true] {
        got.extend(signals(&mut state, changed).into_iter().map(|s| s.message));
    }
    assert_eq!(
        got,
        ["query 2 failed"],
        "orders.log.1 is the file already read"
    );
}

#[test]
fn a_truncated_file_is_read_again_from_its_start() {
    let (_dir, log) = empty_log();
    let mut state = start(&tail(&log), &Cursor::default());
    append(&log, format!("{}{}", error(1), error(2)).as_bytes());
    assert_eq!(pass(&mut state).len(), 2);
    // copytruncate, or `> orders.log`, then a shorter line.
    File::create(&log).unwrap();
    append(&log, b"2026-12-04 ERROR x\n");
    assert_eq!(pass(&mut state), ["x"]);
    assert_eq!(state.counts.truncations, 1);
}

#[test]
fn a_glob_picks_up_a_new_file_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), error(0).as_bytes());
    let tail = FileTail::new(format!("{}/*.log", dir.path().display())).idle_flush(Duration::ZERO);
    let mut state = start(&tail, &Cursor::default());
    assert!(pass(&mut state).is_empty());
    let b = dir.path().join("b.log");
    append(&b, format!("{}{}", error(1), error(2)).as_bytes());
    let got = signals(&mut state, true);
    assert_eq!(got.len(), 2, "a file that appears is read whole");
    assert_eq!(got[0].target, "b");
    assert_eq!(state.open_files(), 2);
}

#[test]
fn a_ten_megabyte_line_is_cut_and_never_buffered_whole() {
    let (_dir, log) = empty_log();
    let mut state = start(&tail(&log).max_line_bytes(4096), &Cursor::default());
    let mut big = b"2026-12-04T10:00:00Z ERROR orders: huge ".to_vec();
    big.extend(std::iter::repeat_n(b'x', 10 << 20));
    big.push(b'\n');
    append(&log, &big);
    append(&log, error(1).as_bytes());
    let got = pass(&mut state);
    assert_eq!(got.len(), 2);
    assert!(
        got[0].starts_with("huge xxx") && got[0].len() < 4096,
        "{}",
        got[0].len()
    );
    assert_eq!(got[1], "query 1 failed");
    assert_eq!(state.counts.cut_lines, 1);
}

#[test]
fn a_line_that_is_not_utf8_is_read_lossily_and_counted() {
    let (_dir, log) = empty_log();
    let mut state = start(&tail(&log), &Cursor::default());
    append(
        &log,
        b"2026-12-04T10:00:00Z ERROR orders: bad \xff\xfe byte\n\xc3\n",
    );
    assert_eq!(pass(&mut state), ["bad \u{fffd}\u{fffd} byte"]);
    assert_eq!(state.counts.invalid_utf8, 2);
}

#[test]
fn a_trace_written_in_two_parts_is_one_signal() {
    let (_dir, log) = empty_log();
    let tail = FileTail::new(log.to_string_lossy()).idle_flush(Duration::from_secs(3600));
    let mut state = start(&tail, &Cursor::default());
    append(&log, b"10:00:00.000 [main] ERROR com.acme.Orders - request failed\njava.sql.SQLException: too many\n");
    assert!(
        pass(&mut state).is_empty(),
        "waiting for the rest of the trace"
    );
    append(
        &log,
        b"\tat com.acme.Pool.get(Pool.java:42)\n10:00:01.000 [main] INFO com.acme.Orders - ok\n",
    );
    let got = signals(&mut state, false);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].stack.as_deref(),
        Some("java.sql.SQLException: too many\n\tat com.acme.Pool.get(Pool.java:42)")
    );
}

#[test]
fn the_cursor_stops_before_a_waiting_signal_and_a_partial_line() {
    let (_dir, log) = empty_log();
    let tail = FileTail::new(log.to_string_lossy()).idle_flush(Duration::from_secs(3600));
    let mut state = start(&tail, &Cursor::default());
    let first = error(1);
    append(
        &log,
        format!("{first}{}2026-12-04 ERROR no line break yet", error(2)).as_bytes(),
    );
    assert_eq!(pass(&mut state), ["query 1 failed"]);
    let cursor = state.cursor();
    assert_eq!(cursor.files.len(), 1);
    assert_eq!(
        cursor.files[0].offset,
        first.len() as u64,
        "query 2 waits for its trace"
    );

    // A restart from that cursor reads query 2 (not 1), and the line once it is whole.
    let mut again = start(&tail.idle_flush(Duration::ZERO), &cursor);
    append(&log, b"\n");
    assert_eq!(pass(&mut again), ["query 2 failed", "no line break yet"]);
}

#[test]
fn a_restart_resumes_the_file_rotated_away_while_stopped() {
    let (dir, log) = empty_log();
    let tail = tail(&log);
    let mut state = start(&tail, &Cursor::default());
    append(&log, error(1).as_bytes());
    assert_eq!(pass(&mut state), ["query 1 failed"]);
    let cursor = state.cursor();
    drop(state);

    // While stopped: two more lines, a rotation, a line in the new file.
    append(&log, error(2).as_bytes());
    std::fs::rename(&log, dir.path().join("orders.log.1")).unwrap();
    append(&log, error(3).as_bytes());
    let mut state = start(&tail, &cursor);
    assert_eq!(pass(&mut state), ["query 2 failed", "query 3 failed"]);

    // The old file gone too (compressed away): the new one from its start.
    let cursor = state.cursor();
    drop(state);
    append(&log, error(4).as_bytes());
    std::fs::rename(&log, dir.path().join("orders.log.2")).unwrap();
    std::fs::remove_file(dir.path().join("orders.log.2")).unwrap();
    append(&log, error(5).as_bytes());
    let mut state = start(&tail, &cursor);
    assert_eq!(pass(&mut state), ["query 5 failed"]);
}

#[test]
fn a_deleted_file_is_closed_and_a_new_one_read_from_its_start() {
    let (_dir, log) = empty_log();
    let mut state = start(&tail(&log), &Cursor::default());
    append(&log, b"2026-12-04 ERROR last words without a line break");
    assert!(pass(&mut state).is_empty());
    std::fs::remove_file(&log).unwrap();
    assert_eq!(pass(&mut state), ["last words without a line break"]);
    assert_eq!(state.open_files(), 0);
    append(&log, error(1).as_bytes());
    assert_eq!(pass(&mut state), ["query 1 failed"]);
}

#[test]
fn a_path_that_does_not_exist_yet_is_read_whole_when_it_comes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("later.log");
    let mut state = start(&tail(&log), &Cursor::default());
    assert!(pass(&mut state).is_empty());
    append(&log, error(1).as_bytes());
    assert_eq!(pass(&mut state), ["query 1 failed"]);
}

/// A healer on `store` with `tail`, and the tail's stats.
fn healer(store: Arc<dyn Store>, tail: FileTail) -> (Healer, StatsWatch<TailStats>) {
    let stats = tail.stats();
    let healer = Healer::builder()
        .store_arc(store)
        .source(tail)
        .build()
        .unwrap();
    (healer, stats)
}

/// Waits for `stats` to say `ok`; the timeout is a guard only.
async fn wait(stats: &mut StatsWatch<TailStats>, ok: impl FnMut(&TailStats) -> bool) -> TailStats {
    tokio::time::timeout(Duration::from_secs(20), stats.wait_for(ok))
        .await
        .expect("the tail got there within the guard")
        .expect("the tail is running")
}

/// Two healers one after the other on `store`: the second reads what was written
/// while none ran, and nothing the first read.
async fn restart_resumes(store: Arc<dyn Store>, dir: &Path) {
    let log = dir.join("orders.log");
    File::create(&log).unwrap();
    let tail = || {
        FileTail::new(log.to_string_lossy())
            .idle_flush(Duration::from_millis(20))
            .poll_interval(Duration::from_millis(20))
    };

    let (first, mut stats) = healer(store.clone(), tail());
    let running = first.spawn();
    wait(&mut stats, |s| s.files == 1).await;
    append(
        &log,
        format!("{}{}{}", error(1), error(2), error(3)).as_bytes(),
    );
    wait(&mut stats, |s| s.signals == 3).await;
    running.shutdown().await;
    assert_eq!(first.observed(), 3);
    let saved = store.list_control("source/cursor/file").await.unwrap();
    assert_eq!(saved.len(), 1, "the cursor was saved");
    assert_eq!(saved[0].1["files"][0]["offset"], 3 * error(1).len());

    append(&log, format!("{}{}", error(4), error(5)).as_bytes());
    let (second, mut stats) = healer(store, tail());
    let running = second.spawn();
    let after = wait(&mut stats, |s| s.signals >= 2).await;
    // One more pass: nothing else comes.
    let passes = after.passes;
    let last = wait(&mut stats, |s| s.passes > passes + 1).await;
    assert_eq!((last.lines, last.signals), (2, 2), "{last:?}");
    assert_eq!(second.observed(), 2);
    running.shutdown().await;
}

#[tokio::test]
async fn a_restart_resumes_from_the_cursor_in_a_memory_store() {
    let dir = tempfile::tempdir().unwrap();
    restart_resumes(Arc::new(MemoryStore::new()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_cursor_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("selfheal.db");
    let store = selfheal_storage::SqliteStore::open(&db.to_string_lossy())
        .await
        .unwrap();
    restart_resumes(Arc::new(store), dir.path()).await;
    // And the cursor is in the file itself: a store opened anew reads it.
    let reopened = selfheal_storage::SqliteStore::open(&db.to_string_lossy())
        .await
        .unwrap();
    let saved = reopened.list_control("source/cursor/file").await.unwrap();
    assert_eq!(saved[0].1["files"][0]["offset"], 5 * error(1).len());
}

#[tokio::test]
async fn the_watcher_wakes_the_tail_long_before_its_poll() {
    let (_dir, log) = empty_log();
    // A poll an hour apart: only the watcher can wake it.
    let tail = FileTail::new(log.to_string_lossy())
        .poll_interval(Duration::from_secs(3600))
        .idle_flush(Duration::from_millis(10));
    let (healer, mut stats) = healer(Arc::new(MemoryStore::new()), tail);
    let running = healer.spawn();
    let started = wait(&mut stats, |s| s.files == 1).await;
    assert!(
        started.watching,
        "no file watcher (inotify instances used up? see /proc/sys/fs/inotify/max_user_instances)"
    );
    append(&log, error(1).as_bytes());
    wait(&mut stats, |s| s.signals == 1).await;
    running.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_counted_as_malformed_and_the_tail_goes_on() {
    let (_dir, log) = empty_log();
    let tail = FileTail::new(log.to_string_lossy())
        .max_line_bytes(1024)
        .idle_flush(Duration::from_millis(10))
        .poll_interval(Duration::from_millis(20));
    let (healer, mut stats) = healer(Arc::new(MemoryStore::new()), tail);
    let running = healer.spawn();
    wait(&mut stats, |s| s.files == 1).await;
    let mut bad = b"2026-12-04 ERROR \xff\n2026-12-04 ERROR ".to_vec();
    bad.extend(std::iter::repeat_n(b'y', 5000));
    bad.push(b'\n');
    append(&log, &bad);
    append(&log, error(1).as_bytes());
    wait(&mut stats, |s| s.signals == 3).await;
    let source = &healer.sources()[0];
    assert_eq!(
        (source.malformed, source.emitted, source.restarts),
        (2, 3, 0),
        "{source:?}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn without_the_watcher_the_tail_polls() {
    let (_dir, log) = empty_log();
    let tail = FileTail::new(log.to_string_lossy())
        .watch(false)
        .poll_interval(Duration::from_millis(20))
        .idle_flush(Duration::from_millis(10));
    let (healer, mut stats) = healer(Arc::new(MemoryStore::new()), tail);
    let running = healer.spawn();
    let started = wait(&mut stats, |s| s.files == 1).await;
    assert!(!started.watching);
    append(&log, error(1).as_bytes());
    let done = wait(&mut stats, |s| s.signals == 1).await;
    assert!(done.passes > started.passes);
    running.shutdown().await;
}

/// A caller keeps what `wait_for` returned while the tail goes on: the tail is not
/// held up. On one thread, a kept borrow of the counts would block the tail's next
/// update (and with it the whole runtime) for good; the runtime runs on a thread of
/// its own so a hang fails the deadline rather than the test run.
#[test]
fn keeping_what_wait_for_returned_does_not_hold_the_tail_up() {
    let (_dir, log) = empty_log();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let counts = rt.block_on(async move {
            let tail = FileTail::new(log.to_string_lossy())
                .poll_interval(Duration::from_millis(20))
                .idle_flush(Duration::from_millis(10));
            let (healer, mut stats) = healer(Arc::new(MemoryStore::new()), tail);
            let running = healer.spawn();
            let opened = wait(&mut stats, |s| s.files == 1).await;
            append(&log, error(1).as_bytes());
            let kept = wait(&mut stats, |s| s.signals >= 1).await;
            append(&log, format!("{}{}", error(2), error(3)).as_bytes());
            let later = wait(&mut stats, |s| s.signals >= 3).await;
            running.shutdown().await;
            (opened, kept, later)
        });
        done_tx.send(counts).unwrap();
    });
    // A panic on the runtime's thread drops the sender: that fails here at once.
    let (opened, kept, later) = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the tail went on while the caller kept its copy");
    assert_eq!((opened.signals, kept.signals), (0, 1), "{kept:?}");
    assert_eq!(later.signals, 3, "{later:?}");
    assert!(later.passes > kept.passes, "{later:?} after {kept:?}");
}
