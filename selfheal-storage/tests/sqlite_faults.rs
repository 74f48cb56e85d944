//! What happens to a host whose SQLite files go bad under it: made read-only mid-run,
//! deleted, or replaced. The store may fail, loudly; it must never kill its host
//! process nor claim a write it lost.
#![cfg(feature = "sqlite")]
// The child talks to the parent on stdout; skips and measurements are reported there.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use selfheal_core::{
    AuditEntry, AuditStore, ErrorKind, Fingerprint, Incident, IncidentFilter, IncidentStatus,
    IncidentStore, Severity,
};
use selfheal_storage::{SqliteHealth, SqliteOptions, SqliteStore};
use uuid::Uuid;

/// Set in the environment of a child run of this test binary: the database it writes to.
const CHILD_DB: &str = "SELFHEAL_SQLITE_FAULT_CHILD_DB";
/// Writes the child makes before it tells the parent it is running.
const WARM_UP: u64 = 200;
/// Operations the child tries after the parent made its files immutable.
const AFTER_FAULT: u64 = 2_000;
/// Concurrent writers in the child, so the pool opens several connections.
const WRITERS: u64 = 4;

fn unseeded() -> SqliteOptions {
    SqliteOptions::default().seed_catalog(false)
}

fn incident(n: u64) -> Incident {
    let at = Utc::now().trunc_subsecs(6);
    Incident {
        id: Uuid::new_v4(),
        target: format!("svc-{}", n % 7),
        fingerprint: format!("{n:016x}"),
        template: "disk full on <*>".into(),
        stack: None,
        related: Vec::new(),
        pattern: None,
        status: IncidentStatus::Open,
        severity: Severity::Medium,
        occurrences: 1,
        samples: vec![format!("disk full on /var/{n}")],
        opened_at: at,
        last_seen: at,
        closed_at: None,
        reason: String::new(),
    }
}

/// One write and one read, as a healer makes them per signal.
async fn one_operation(store: &SqliteStore, n: u64) -> selfheal_core::Result<()> {
    store.save_incident(&incident(n)).await?;
    let fp = Fingerprint::new("api", "timeout after <*>", None);
    store
        .record_fingerprint(&fp, &format!("timeout after {n}ms"), Utc::now())
        .await?;
    store.get_incident(Uuid::new_v4()).await?;
    Ok(())
}

/// The child: writes to the database named in [`CHILD_DB`] from several tasks, tells
/// the parent (`ready` on stdout) once it is warm, keeps writing until the parent says
/// the files are immutable (a line on stdin), then [`AFTER_FAULT`] operations more, and
/// a reopen. It reports what failed and exits normally. Run alone, this test does nothing.
#[test]
fn child_writes_while_the_parent_breaks_its_files() {
    let Some(db) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(child(PathBuf::from(db)));
}

async fn child(db: PathBuf) {
    let path = db.to_str().unwrap().to_owned();
    let store = SqliteStore::open_with(&path, unseeded())
        .await
        .expect("the child opens a healthy database");
    let faulted = Arc::new(AtomicBool::new(false));
    std::thread::spawn({
        let faulted = faulted.clone();
        move || {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            faulted.store(true, Ordering::SeqCst);
        }
    });
    let done = Arc::new(AtomicU64::new(0));
    let after = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (store, faulted, done, after, errors) = (
            store.clone(),
            faulted.clone(),
            done.clone(),
            after.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let n = i * WRITERS + w;
                let was_faulted = faulted.load(Ordering::SeqCst);
                if was_faulted && after.fetch_add(1, Ordering::SeqCst) >= AFTER_FAULT {
                    break;
                }
                if done.load(Ordering::SeqCst) > 50 * WARM_UP {
                    println!("child gave up: no word from the parent");
                    break;
                }
                if let Err(e) = one_operation(&store, n).await {
                    if errors.fetch_add(1, Ordering::SeqCst) < 3 {
                        println!("child error: {e}");
                    }
                    if !was_faulted {
                        // Cannot happen before the fault; back off rather than spin.
                        tokio::task::yield_now().await;
                    }
                }
                if done.fetch_add(1, Ordering::SeqCst) + 1 == WARM_UP {
                    println!("child ready");
                    std::io::stdout().flush().unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    store.close().await;
    let reopen = SqliteStore::open_with(&path, unseeded()).await;
    println!(
        "child done ops={} errors={} reopen={}",
        done.load(Ordering::SeqCst),
        errors.load(Ordering::SeqCst),
        match &reopen {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        }
    );
}

/// Sets or clears the immutable attribute with `chattr` (argv, no shell).
fn chattr(flag: &str, files: &[PathBuf]) -> std::io::Result<bool> {
    if files.is_empty() {
        return Ok(true);
    }
    let status = Command::new("chattr")
        .arg(flag)
        .args(files)
        .stderr(Stdio::null())
        .status()?;
    Ok(status.success())
}

/// The database and its `-wal`, `-shm` and `-journal` companions that exist.
fn database_files(db: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", db.display())))
        .filter(|p| p.exists())
        .collect()
}

/// Clears the immutable attribute again, so the temporary directory can be removed.
struct Unfreeze(PathBuf);

impl Drop for Unfreeze {
    fn drop(&mut self) {
        let _ = chattr("-i", &database_files(&self.0));
    }
}

/// Whether `chattr +i` works in `dir`: it needs root (CAP_LINUX_IMMUTABLE), the
/// `chattr` program and a file system with the attribute (ext4, xfs, btrfs; not tmpfs
/// or overlayfs).
fn immutable_files_supported(dir: &Path) -> bool {
    let probe = dir.join("probe");
    std::fs::write(&probe, b"probe").unwrap();
    let files = [probe.clone()];
    let ok = matches!(chattr("+i", &files), Ok(true)) && std::fs::write(&probe, b"x").is_err();
    let _ = chattr("-i", &files);
    let _ = std::fs::remove_file(&probe);
    ok
}

/// Starts a child writing to `db` and waits until it says it is warm. Returns it, its
/// stdin and the rest of its stdout, and what it said so far.
fn start_child(
    db: &Path,
) -> (
    std::process::Child,
    std::process::ChildStdin,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
    Vec<String>,
) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writes_while_the_parent_breaks_its_files",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        // libtest prints the test's name on the same line.
        let ready = line.ends_with("child ready");
        log.push(line);
        if ready {
            break;
        }
    }
    assert!(
        log.last().is_some_and(|l| l.ends_with("child ready")),
        "the child did not start writing: {log:?}"
    );
    (child, stdin, lines, log)
}

/// `kill -9` of a host in the middle of heavy writes, twelve times: the file opens
/// again, passes `PRAGMA integrity_check`, and holds every write the host saw commit.
#[tokio::test]
async fn a_host_killed_mid_write_leaves_an_intact_file() {
    for run in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("selfheal.db");
        let (mut child, _stdin, _lines, _log) = start_child(&db);
        // Four writers are mid-transaction when it dies.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "run {run}: {status}"
        );
        let store = SqliteStore::open_with(db.to_str().unwrap(), unseeded())
            .await
            .unwrap_or_else(|e| panic!("run {run}: {e}"));
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(check, "ok", "run {run}");
        let incidents: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM incidents")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let committed = i64::try_from(WARM_UP).unwrap();
        assert!(
            incidents >= committed,
            "run {run}: {incidents} < {committed}"
        );
        store.close().await;
    }
}

/// A host writing to SQLite while its database files become immutable (`chattr +i`)
/// must see errors, never die. With the WAL index in a memory-mapped `-shm` file, the
/// first write to a page of it that the kernel has written back faults, and ext4
/// answers a write fault on an immutable file with SIGBUS. The parent `fsync`s the
/// files before freezing them, as the kernel's periodic writeback would within 30 s,
/// so the fault is met on every run, not by chance.
///
/// Runs ten times, each a child process (this test binary again, in
/// `child_writes_while_the_parent_breaks_its_files`). Needs root and a file system that
/// supports the immutable attribute for the temporary directory (ext4 `/tmp` here);
/// otherwise it prints that it skipped, and fails when `CI=true`.
#[test]
fn read_only_database_files_never_kill_the_host() {
    let runs = 10;
    let probe = tempfile::tempdir().unwrap();
    if !immutable_files_supported(probe.path()) {
        let why = "skipped: `chattr +i` does not work here (needs root and ext4/xfs/btrfs)";
        println!("{why}");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        return;
    }
    let mut deaths = Vec::new();
    for run in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("selfheal.db");
        let _unfreeze = Unfreeze(db.clone());
        let (mut child, mut stdin, lines, mut log) = start_child(&db);
        let files = database_files(&db);
        for f in &files {
            std::fs::File::open(f).unwrap().sync_all().unwrap();
        }
        assert!(chattr("+i", &files).unwrap(), "chattr +i {files:?}");
        // The child may be gone already; then its status tells why.
        let _ = writeln!(stdin, "immutable");
        drop(stdin);
        // The rest of its output, until it exits (or hangs: then it is killed).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(lines.map_while(|l| l.ok()).collect::<Vec<_>>());
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(rest) => log.extend(rest),
            Err(_) => {
                let _ = child.kill();
                log.push("(hung: killed after 120 s)".into());
            }
        }
        let status = child.wait().unwrap();
        let summary = log.iter().find(|l| l.contains("child done"));
        println!("run {run}: {status:?}, files {files:?}, {summary:?}");
        if !status.success() {
            deaths.push(format!("run {run}: {status} after {log:?}"));
            continue;
        }
        let summary = summary.expect("the child reports what it did");
        assert!(
            !summary.contains("errors=0 "),
            "writes to immutable files must fail: {log:?}"
        );
    }
    assert!(deaths.is_empty(), "the host died: {deaths:#?}");
}

/// Opens a store on a new file in `dir` and writes to it.
async fn store_with_one_write(dir: &Path) -> (SqliteStore, PathBuf) {
    let path = dir.join("selfheal.db");
    let store = SqliteStore::open_with(path.to_str().unwrap(), unseeded())
        .await
        .unwrap();
    store.save_incident(&incident(1)).await.unwrap();
    assert_eq!(store.health(), SqliteHealth::Healthy);
    (store, path)
}

/// After the file is gone, nothing the store does may claim success: the write that
/// meets the change, every later write and read, each with the same clear error.
async fn assert_refuses_everything(store: &SqliteStore, path: &Path, what: &str) {
    let err = store.save_incident(&incident(2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    assert!(!err.is_retryable(), "{err}");
    let message = err.to_string();
    for needle in [what, &path.display().to_string(), "restart the service"] {
        assert!(message.contains(needle), "`{needle}` not in: {message}");
    }
    let fp = Fingerprint::new("api", "timeout after <*>", None);
    let later = store
        .record_fingerprint(&fp, "timeout after 3ms", Utc::now())
        .await;
    assert_eq!(later.unwrap_err().to_string(), message);
    let audit = AuditEntry::new("self_heal.detected", "opened").chain(None, Utc::now());
    assert_eq!(
        store.append_audit(&audit).await.unwrap_err().to_string(),
        message
    );
    let read = store.list_incidents(&IncidentFilter::default()).await;
    assert_eq!(read.unwrap_err().to_string(), message);
    assert!(!store.health().is_healthy());
    assert_eq!(
        store.health().to_string(),
        message.trim_start_matches("closed: ")
    );
}

#[tokio::test]
async fn a_deleted_database_file_is_reported_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_with_one_write(dir.path()).await;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        store.health(),
        SqliteHealth::FileDeleted { path: path.clone() }
    );
    assert_refuses_everything(&store, &path, "was deleted").await;
}

#[tokio::test]
async fn a_write_that_meets_the_deletion_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_with_one_write(dir.path()).await;
    // Nobody asked for the health: the next write finds out by itself.
    std::fs::remove_file(&path).unwrap();
    assert_refuses_everything(&store, &path, "was deleted").await;
    assert_eq!(store.health(), SqliteHealth::FileDeleted { path });
}

#[tokio::test]
async fn a_replaced_database_file_is_reported_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_with_one_write(dir.path()).await;
    // A restore from elsewhere: another database renamed over the path.
    let other = dir.path().join("restored.db");
    SqliteStore::open_with(other.to_str().unwrap(), unseeded())
        .await
        .unwrap()
        .close()
        .await;
    std::fs::rename(&other, &path).unwrap();
    assert_refuses_everything(&store, &path, "was replaced").await;
    assert_eq!(store.health(), SqliteHealth::FileReplaced { path });
}

#[tokio::test]
async fn a_store_in_memory_is_always_healthy() {
    let store = SqliteStore::in_memory().await.unwrap();
    store.save_incident(&incident(1)).await.unwrap();
    assert_eq!(store.health(), SqliteHealth::Healthy);
}

/// Writes per second (`save_incident`, one upsert each) on a file, with the settings
/// `SqliteStore::open` uses now, with the shared-memory WAL it used before, and with the
/// rollback journal it could have used instead. A measurement, not a check:
/// `cargo test -p selfheal-storage --release --test sqlite_faults write_rate -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check; run it by name"]
async fn write_rate() {
    use selfheal_storage::sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    const N: u64 = 4_000;
    const WRITERS: u64 = 4;
    let settings = [
        "before: WAL, shared -shm index, 4 connections",
        "now: WAL, exclusive, heap index, 1 connection",
        "rejected: DELETE journal, mmap_size=0, 4 connections",
    ];
    for round in 0..2 {
        for (i, name) in settings.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("selfheal.db");
            let store = if i == 1 {
                SqliteStore::open_with(path.to_str().unwrap(), unseeded())
                    .await
                    .unwrap()
            } else {
                let journal = if i == 0 {
                    SqliteJournalMode::Wal
                } else {
                    SqliteJournalMode::Delete
                };
                let options = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5))
                    .journal_mode(journal)
                    .synchronous(SqliteSynchronous::Normal)
                    .pragma("mmap_size", "0");
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await
                    .unwrap();
                SqliteStore::from_pool(pool).await.unwrap()
            };
            let start = std::time::Instant::now();
            for n in 0..N {
                store.save_incident(&incident(n)).await.unwrap();
            }
            let one = N as f64 / start.elapsed().as_secs_f64();
            let start = std::time::Instant::now();
            let tasks: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        for n in 0..N / WRITERS {
                            store
                                .save_incident(&incident(n * WRITERS + w))
                                .await
                                .unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let four = N as f64 / start.elapsed().as_secs_f64();
            println!(
                "round {round}, {name}: {one:.0} writes/s from one task, {four:.0} writes/s from {WRITERS}"
            );
            store.close().await;
        }
    }
}

/// A relative path is resolved when the store opens: a host that changes its working
/// directory afterwards has not lost its database. (Every other test here uses
/// absolute paths, so changing this process's directory does not disturb them.)
#[tokio::test]
async fn a_relative_path_survives_a_change_of_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let before = std::env::current_dir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let store = SqliteStore::open_with("selfheal.db", unseeded()).await;
    std::env::set_current_dir(elsewhere.path()).unwrap();
    let store = store.unwrap();
    let written = store.save_incident(&incident(1)).await;
    std::env::set_current_dir(before).unwrap();
    written.unwrap();
    assert_eq!(store.health(), SqliteHealth::Healthy);
}
