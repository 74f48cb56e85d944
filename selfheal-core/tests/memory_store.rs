//! The `PatternStore` conformance suite against the in-memory reference store.
//!
//! Run with `cargo test -p selfheal-core --features test-util --test memory_store`.
#![cfg(feature = "test-util")]

use selfheal_core::{MemoryStore, testkit};

#[tokio::test]
async fn memory_store_passes_the_conformance_suite() {
    testkit::run_all(&MemoryStore::new()).await;
}

#[tokio::test]
async fn the_suite_can_run_twice_against_one_store() {
    let store = MemoryStore::new();
    testkit::run_all(&store).await;
    testkit::run_all(&store).await;
}
