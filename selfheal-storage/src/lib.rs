//! Durable stores for [selfheal](https://docs.rs/selfheal): the embedded SQLite store
//! (feature `sqlite`, the default) and, later, PostgreSQL (feature `postgres`).
//!
//! Every store implements [`selfheal_core::PatternStore`], passes the conformance suite
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

// Shared by the dialects that store values as text; the Postgres store will use it too.
#[cfg(feature = "sqlite")]
mod codec;
mod error;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use error::StorageError;
#[cfg(feature = "sqlite")]
pub use sqlite::{MAX_SAMPLE_BYTES, SqliteOptions, SqliteStore};
/// The sqlx this crate is built on, to build your own pool for `SqliteStore::from_pool`.
pub use sqlx;
