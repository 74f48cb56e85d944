//! Durable stores for [selfheal](https://docs.rs/selfheal): the embedded SQLite store
//! (feature `sqlite`, the default) and PostgreSQL (feature `postgres`).
//!
//! Every store implements [`selfheal_core::Store`] (and [`selfheal_core::FleetStore`], so
//! replicas can share it), passes the conformance suite
//! in `selfheal_core::testkit`, and migrates its schema on open (`migrations/sqlite/`,
//! `migrations/postgres/`). Errors come back as [`selfheal_core::Error`]; a busy or
//! unreachable database is `Unavailable` (retryable), never a panic.
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
//! use selfheal_core::{Pattern, PatternStore};
//! use selfheal_storage::SqliteStore;
//!
//! // Seeded with the stock pattern catalog on open.
//! let store = SqliteStore::open("sqlite::memory:").await?; // or "sqlite://selfheal.db"
//! store.add_pattern(&Pattern::new("uploads_full").regex("No space left on device")).await?;
//! assert!(store.get_pattern("disk_full").await?.is_some());
//! # Ok(()) }
//! # #[cfg(not(feature = "sqlite"))] fn main() {}
//! ```
#![deny(missing_docs)]

// How values are written to columns and read back, shared by both dialects.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod codec;
mod error;
// Pattern and fix rows, the same in both dialects.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod pattern_rows;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use error::StorageError;
#[cfg(feature = "postgres")]
pub use postgres::{PG_MAX_SAMPLE_BYTES, PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "sqlite")]
pub use sqlite::{MAX_SAMPLE_BYTES, SqliteHealth, SqliteOptions, SqliteStore};
/// The sqlx this crate is built on, to build your own pool for `SqliteStore::from_pool`
/// or `PostgresStore::from_pool`.
pub use sqlx;
