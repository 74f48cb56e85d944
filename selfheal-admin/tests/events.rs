//! `/events` over real HTTP: resuming with `Last-Event-ID` misses nothing still kept,
//! and a client that stops reading is dropped and counted while the healer goes on.

mod support;

use std::time::Duration;

use selfheal_core::{Healer, HealingEvent, MemoryStore, Phase, Signal};
use support::{SseReader, metric, serve, token};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

const WAIT: Duration = Duration::from_secs(10);

async fn healer() -> (Healer, selfheal_core::Running) {
    let healer = Healer::builder().store(MemoryStore::new()).build().unwrap();
    let running = healer.spawn();
    (healer, running)
}

/// Emits `n` events (dry-run switches, each one `mode_changed` event).
async fn toggle(healer: &Healer, n: usize, actor: &str) {
    for i in 0..n {
        healer.admin().set_dry_run(i % 2 == 0, actor).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_with_last_event_id_misses_nothing_still_kept() {
    let (healer, running) = healer().await;
    let token = token();
    let base = serve(&healer, &token).await;

    let mut first = SseReader::connect(&base, &token, None).await;
    toggle(&healer, 10, "alice").await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let e = first.next(WAIT).await.expect("an event");
        assert_eq!(e.event, "mode_changed");
        let parsed: HealingEvent =
            serde_json::from_str(&e.data).expect("the data is the event as JSON");
        assert_eq!(parsed.phase, Phase::ModeChanged);
        assert!(parsed.detail.contains("by alice"), "{}", parsed.detail);
        seen.push(e.id.expect("every event has an id"));
    }
    assert_eq!(seen, [1, 2, 3, 4]);
    drop(first); // disconnect mid-stream

    toggle(&healer, 5, "bob").await; // while nobody listens
    let mut again = SseReader::connect(&base, &token, Some(4)).await;
    let mut resumed = Vec::new();
    for _ in 0..11 {
        let e = again.next(WAIT).await.expect("a replayed or live event");
        assert_ne!(e.event, "gap", "nothing was lost: {e:?}");
        resumed.push(e.id.unwrap());
    }
    assert_eq!(
        resumed,
        (5..=15).collect::<Vec<u64>>(),
        "replayed in order, nothing twice"
    );

    // And it goes on live after the replay.
    toggle(&healer, 1, "carol").await;
    let live = again.next(WAIT).await.unwrap();
    assert_eq!(live.id, Some(16));
    assert!(live.data.contains("by carol"));

    // The query parameter resumes the same way (EventSource cannot send headers).
    let resp = reqwest::Client::new()
        .get(format!("{base}/events?last_event_id=14"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("id: 16") {
        let chunk = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut body))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        text.contains("id: 15") && !text.contains("id: 14\n"),
        "{text}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_past_the_buffer_gets_a_gap_event_then_what_is_kept() {
    let (healer, running) = healer().await;
    let token = token();
    let base = serve(&healer, &token).await;
    let mut watcher = SseReader::connect(&base, &token, None).await;
    toggle(&healer, 1100, "a").await;
    // Wait until the hub has numbered them all (the watcher saw the last one). 1,100
    // quick events overflow a watcher that reads slower than they come (a loaded
    // machine): the hub drops it, as it should, and it comes back with Last-Event-ID.
    let mut last_seen = None;
    let mut reconnects = 0;
    loop {
        match watcher.next(WAIT).await {
            Some(e) if e.id == Some(1100) => break,
            Some(e) => last_seen = e.id.or(last_seen),
            None => {
                reconnects += 1;
                assert!(
                    reconnects <= 20,
                    "the stream keeps ending before event 1100"
                );
                watcher = SseReader::connect(&base, &token, last_seen).await;
            }
        }
    }
    let mut late = SseReader::connect(&base, &token, Some(10)).await;
    let gap = late.next(WAIT).await.unwrap();
    assert_eq!(gap.event, "gap");
    let gap: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(gap["from"], 11);
    assert_eq!(gap["to"], 1100 - 1024);
    let first_kept = late.next(WAIT).await.unwrap();
    assert_eq!(first_kept.id, Some(1100 - 1024 + 1));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_dropped_and_counted_while_observe_and_other_clients_go_on() {
    let (healer, running) = healer().await;
    let token = token();
    let base = serve(&healer, &token).await;
    let addr = base.trim_start_matches("http://").parse().unwrap();

    // A client that asks for the stream and never reads a byte of it.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    stalled
        .write_all(
            format!("GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut reader = SseReader::connect(&base, &token, None).await;
    let client = reqwest::Client::new();
    let scrape = || async {
        client
            .get(format!("{base}/metrics"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // Both are connected (the stalled one's request is in once the gauge says 2).
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(&scrape().await, "selfheal_admin_sse_clients") != Some(2.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "two clients never connected"
        );
        tokio::task::yield_now().await;
    }

    // Big events fill the stalled client's socket, then its queue; the reader reads.
    let actor = "x".repeat(8 * 1024);
    let mut next_id = 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        toggle(&healer, 64, &actor).await;
        for _ in 0..64 {
            let e = reader
                .next(WAIT)
                .await
                .expect("the reading client keeps getting events");
            assert_eq!(e.id, Some(next_id), "the reading client misses nothing");
            next_id += 1;
        }
        let text = scrape().await;
        if metric(&text, "selfheal_admin_sse_dropped_clients_total") == Some(1.0) {
            assert_eq!(
                metric(&text, "selfheal_admin_sse_clients"),
                Some(1.0),
                "{text}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled client was never dropped"
        );
    }

    // The healer never waited for it: signals still flow in and through.
    let before = healer.observed();
    for i in 0..100 {
        healer.observe(Signal::new(
            "db",
            format!("connection refused (attempt {i})"),
        ));
    }
    assert_eq!(healer.observed(), before + 100);
    assert_eq!(healer.dropped(), 0);
    loop {
        let e = reader.next(WAIT).await.expect("events after the drop");
        if e.event == "detected" {
            let parsed: HealingEvent = serde_json::from_str(&e.data).unwrap();
            assert_eq!(parsed.target, "db");
            break;
        }
    }
    let text = scrape().await;
    assert_eq!(
        metric(&text, "selfheal_signals_observed_total"),
        Some(100.0),
        "{text}"
    );
    drop(stalled);
    running.shutdown().await;
}
