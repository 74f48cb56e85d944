//! The healer's own store statements never come back to it as signals, even when host
//! code calls the store outside any incident (an operator verb, a report), while the
//! host's own statements on the same database still do.
//!
//! A real `SqliteStore` whose pool logs every statement as slow (threshold zero), so
//! each statement raises sqlx's `slow statement` WARN, on sqlx's SQLite worker thread.
//! One test in its own binary: it installs the global subscriber that thread needs.

use std::str::FromStr as _;
use std::time::Duration;

use selfheal::IncidentStore;
use selfheal::storage::SqliteStore;
use selfheal::{Healer, IncidentFilter, PatternStore};
use sqlx::ConnectOptions as _;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tracing_subscriber::layer::SubscriberExt as _;

#[tokio::test]
async fn store_statements_outside_an_incident_are_ignored_the_hosts_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteConnectOptions::from_str(&format!(
        "sqlite://{}",
        dir.path().join("selfheal.db").display()
    ))
    .unwrap()
    .create_if_missing(true)
    .log_statements("off".parse().unwrap())
    .log_slow_statements("warn".parse().unwrap(), Duration::ZERO);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    // The healer's layer alone: nothing else turns the store's DEBUG spans on. (Set
    // after the pool connected: its connection set-up statements are the host's.)
    let healer = Healer::builder().build().unwrap();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(healer.layer()))
        .unwrap();

    // Opening (migrations), reads and writes, all called by the host directly.
    let store = SqliteStore::from_pool(pool.clone()).await.unwrap();
    store.list_patterns().await.unwrap();
    store
        .list_incidents(&IncidentFilter::default())
        .await
        .unwrap();
    selfheal::catalog::seed(&store).await.unwrap();
    assert_eq!(
        healer.observed(),
        0,
        "the store's own statements are not signals"
    );

    // The host's statement on the same pool is the host's.
    sqlx::query("SELECT 1").execute(&pool).await.unwrap();
    assert_eq!(
        healer.observed(),
        1,
        "the host's slow statement is a signal"
    );
}
