//! Pattern changes made right after `spawn()` are never lost to the intake task's
//! first load of the patterns (both reload the matcher; an older load must never
//! overwrite a newer one).

use std::sync::Arc;

use crate::{FixBinding, Healer, MemoryStore, Pattern, PatternMode, PatternStore};

const RUNS: usize = 1_000;

fn alert_only(name: &str) -> Pattern {
    Pattern::new(name)
        .regex("disk quota exceeded")
        .mode(PatternMode::AlertOnly)
        .fix(FixBinding::new("alert_only"))
}

async fn store_with(patterns: &[Pattern]) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    for p in patterns {
        store.add_pattern(p).await.unwrap();
    }
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_right_after_spawn_is_never_lost() {
    let mut lost = 0;
    for _ in 0..RUNS {
        let store = store_with(&[alert_only("quota")]).await;
        let healer = Healer::builder().store_arc(store).build().unwrap();
        let running = healer.spawn();
        healer
            .admin()
            .promote_pattern("quota", true, "ops")
            .await
            .unwrap();
        // In force now, and still after the intake task's first load has finished.
        let now = healer.matcher().pattern("quota").map(|p| p.mode);
        running.shutdown().await;
        let after = healer.matcher().pattern("quota").map(|p| p.mode);
        if now != Some(PatternMode::Active) || after != Some(PatternMode::Active) {
            lost += 1;
        }
    }
    assert_eq!(lost, 0, "{lost} of {RUNS} promotions lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_added_right_after_spawn_is_never_lost() {
    let mut lost = 0;
    for _ in 0..RUNS {
        let store = store_with(&[alert_only("quota")]).await;
        let healer = Healer::builder().store_arc(store).build().unwrap();
        let running = healer.spawn();
        healer
            .admin()
            .add_pattern(alert_only("inodes").regex("no space left"), "ops")
            .await
            .unwrap();
        let now = healer.matcher().pattern("inodes").is_some();
        running.shutdown().await;
        if !now || healer.matcher().pattern("inodes").is_none() {
            lost += 1;
        }
    }
    assert_eq!(lost, 0, "{lost} of {RUNS} added patterns lost");
}
