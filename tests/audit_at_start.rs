//! The audit chain is verified when the healer starts: a tampered record is reported
//! (an event, a notification, `Admin::audit_chain` names the first broken link), and
//! an intact chain is reported intact.

mod support;

use std::time::Duration;

use chrono::Utc;
use selfheal::{AuditEntry, AuditStore, Healer, MemoryStore, Phase};
use support::{Inbox, next};

async fn store_with_chain(tamper: bool) -> MemoryStore {
    let store = MemoryStore::new();
    let mut prev = None;
    for i in 0..3 {
        let mut record = AuditEntry::new("self_heal.detected", format!("record {i}"))
            .chain(prev.as_ref(), Utc::now());
        if tamper && i == 1 {
            record.result = "rewritten afterwards".into();
        }
        store.append_audit(&record).await.unwrap();
        prev = Some(record);
    }
    store
}

#[tokio::test]
async fn a_tampered_chain_is_reported_at_start() {
    let inbox = Inbox::default();
    let healer = Healer::builder()
        .store(store_with_chain(true).await)
        .notifier(inbox.clone())
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    let event = tokio::time::timeout(Duration::from_secs(30), next(&mut rx, Phase::ChainBroken))
        .await
        .expect("reported at start");
    assert!(
        event.detail.contains("broken at record 2"),
        "{}",
        event.detail
    );
    let broken = healer.admin().audit_chain().unwrap().unwrap_err();
    assert_eq!(broken.seq, 2);
    running.shutdown().await;
    assert_eq!(inbox.event_types(), ["self_heal.chain_broken"]);
}

#[tokio::test]
async fn an_intact_chain_is_reported_intact() {
    let healer = Healer::builder()
        .store(store_with_chain(false).await)
        .build()
        .unwrap();
    assert!(
        healer.admin().audit_chain().is_none(),
        "not checked before spawn"
    );
    let running = healer.spawn();
    let verdict = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(v) = healer.admin().audit_chain() {
                return v;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("checked at start");
    assert_eq!(verdict, Ok(()));
    running.shutdown().await;
}
