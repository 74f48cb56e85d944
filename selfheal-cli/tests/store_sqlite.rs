//! `selfheal audit verify --sqlite` and `selfheal patterns export --sqlite` on a file a
//! real healer wrote: an intact chain passes, a row changed with SQL is named, the file
//! is never changed by reading it, and a store the CLI does not know is refused.
#![cfg(feature = "sqlite")]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use selfheal_storage::SqliteStore;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use support::{PATTERN, heal_once, said, selfheal, stdout};

/// A store file written by a real healer, closed again; and how many records it holds.
async fn healed_file(dir: &Path) -> (PathBuf, usize) {
    let path = dir.join("selfheal.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    let records = heal_once(store.clone()).await;
    store.close().await;
    assert!(
        records >= 5,
        "the healer audited its work ({records} records)"
    );
    (path, records)
}

/// Runs `statements` on the file with a connection of its own (the store is closed),
/// as someone with write access to it would.
async fn sql(path: &Path, statements: &str) {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(statements.to_owned()))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// The store's triggers keep `audit_log` append-only; whoever tampers drops them first.
const DROP_GUARDS: &str = "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;";

/// Every file in `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_an_intact_file_and_names_the_first_broken_link_after_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let (path, records) = healed_file(dir.path()).await;
    let db = path.to_str().unwrap();

    let intact = selfheal(&["audit", "verify", "--sqlite", db]);
    assert_eq!(intact.status.code(), Some(0), "{}", said(&intact));
    assert!(
        stdout(&intact).contains(&format!("audit chain intact: {records} records")),
        "{}",
        said(&intact)
    );
    let json = selfheal(&["audit", "verify", "--sqlite", db, "--json"]);
    let verdict: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(verdict["ok"], true);
    assert_eq!(verdict["records"], records);
    assert_eq!(verdict["first_broken"], serde_json::Value::Null);
    assert_eq!(
        verdict["checkpoint"]["seq"], records,
        "the checkpoint names the newest record"
    );

    // An operator's name in the third record is rewritten behind the store's back.
    sql(
        &path,
        &format!("{DROP_GUARDS} UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"),
    )
    .await;
    let broken = selfheal(&["audit", "verify", "--sqlite", db]);
    assert_eq!(broken.status.code(), Some(1), "{}", said(&broken));
    assert!(
        stdout(&broken)
            .contains("audit chain BROKEN at seq 3: its content was changed after it was written"),
        "{}",
        said(&broken)
    );
    let json = selfheal(&["audit", "verify", "--sqlite", db, "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let verdict: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(verdict["ok"], false);
    assert_eq!(verdict["first_broken"]["seq"], 3);

    // Every record deleted: no chain is left to break, the checkpoint beside the file
    // says there was one.
    sql(&path, "DELETE FROM audit_log").await;
    let cut = selfheal(&["audit", "verify", "--sqlite", db]);
    assert_eq!(cut.status.code(), Some(1), "{}", said(&cut));
    assert!(stdout(&cut).contains("it was emptied"), "{}", said(&cut));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_log_is_named_at_its_first_missing_record() {
    let dir = tempfile::tempdir().unwrap();
    let (path, records) = healed_file(dir.path()).await;
    sql(
        &path,
        &format!(
            "{DROP_GUARDS} DELETE FROM audit_log WHERE seq >= {}",
            records - 1
        ),
    )
    .await;
    let cut = selfheal(&["audit", "verify", "--sqlite", path.to_str().unwrap()]);
    assert_eq!(cut.status.code(), Some(1), "{}", said(&cut));
    assert!(
        stdout(&cut).contains(&format!(
            "BROKEN at seq {}: records from here to the checkpoint are missing",
            records - 1
        )),
        "{}",
        said(&cut)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_store_changes_no_byte_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = healed_file(dir.path()).await;
    let before = snapshot(dir.path());
    assert!(before.keys().any(|k| k.ends_with(".audit-head")));
    let db = path.to_str().unwrap();
    for args in [
        &["audit", "verify", "--sqlite", db][..],
        &["patterns", "export", "--sqlite", db][..],
    ] {
        let run = selfheal(args);
        assert_eq!(run.status.code(), Some(0), "{}", said(&run));
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "the directory holds the same files with the same bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_prints_the_catalog_the_healer_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = healed_file(dir.path()).await;
    let run = selfheal(&["patterns", "export", "--sqlite", path.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(0), "{}", said(&run));
    let doc = selfheal_core::catalog::parse(&stdout(&run)).expect("an export document");
    let names: Vec<String> = doc
        .patterns
        .iter()
        .filter_map(|p| p.get("name").and_then(|n| n.as_str()).map(str::to_owned))
        .collect();
    assert!(names.iter().any(|n| n == PATTERN), "{names:?}");
    assert!(
        names.iter().any(|n| n == "disk_full"),
        "the stock catalog too: {names:?}"
    );
    assert!(doc.source.starts_with("sqlite:"), "{}", doc.source);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_with_a_schema_this_version_does_not_know_is_refused_not_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = healed_file(dir.path()).await;
    let db = path.to_str().unwrap();

    // As if written by an older selfheal: its newest migration is not applied.
    sql(
        &path,
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .await;
    let before = snapshot(dir.path());
    let older = selfheal(&["audit", "verify", "--sqlite", db]);
    assert_eq!(older.status.code(), Some(1), "{}", said(&older));
    assert!(
        support::stderr(&older).contains("is older than this selfheal"),
        "{}",
        said(&older)
    );
    assert_eq!(snapshot(dir.path()), before, "nothing was migrated");

    // Not a store at all, and no file.
    let other = dir.path().join("other.db");
    sql(&other, "CREATE TABLE t (x INTEGER)").await;
    let run = selfheal(&["audit", "verify", "--sqlite", other.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1), "{}", said(&run));
    assert!(
        support::stderr(&run).contains("holds no selfheal store"),
        "{}",
        said(&run)
    );
    let missing = dir.path().join("missing.db");
    let run = selfheal(&["audit", "verify", "--sqlite", missing.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1), "{}", said(&run));
    assert!(!missing.exists(), "the CLI never creates a store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_service_holds_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = healed_file(dir.path()).await;
    let held = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    let path_text = path.to_str().unwrap().to_owned();
    let run =
        tokio::task::spawn_blocking(move || selfheal(&["audit", "verify", "--sqlite", &path_text]))
            .await
            .unwrap();
    held.close().await;
    assert_eq!(run.status.code(), Some(1), "{}", said(&run));
    assert!(
        support::stderr(&run).contains("the service has it open"),
        "{}",
        said(&run)
    );
}
