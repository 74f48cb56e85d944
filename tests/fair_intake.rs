//! A flood on one target neither drops another target's signals nor delays its
//! incident by more than the stated bound: the intake takes targets in turn, so the
//! `k`-th signal of a burst waits behind at most `k` signals of the flood.
//!
//! Counted, not timed: a fingerprinter records the order in which the intake takes
//! signals. `cargo run --release --no-default-features --example fair_intake` measures
//! the same in wall time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfheal::{Fingerprint, Fingerprinter, Healer, HealerConfig, Phase, Signal};

/// The message is the template; records the target of each signal, in intake order.
#[derive(Debug, Clone, Default)]
struct Recording(Arc<Mutex<Vec<String>>>);

impl Fingerprinter for Recording {
    fn name(&self) -> &str {
        "recording"
    }
    fn fingerprint(&self, signal: &Signal) -> Fingerprint {
        let mut order = self.0.lock().unwrap();
        if order.len() < 10_000 {
            order.push(signal.target.clone());
        }
        Fingerprint::new(&signal.service, &signal.message, None)
    }
}

const BURST: usize = 5;

fn flood_signal(i: u64) -> Signal {
    // The first few repeat (A gets an open incident), then every error is distinct and
    // joins it as a related fingerprint.
    let message = if i < BURST as u64 {
        "upstream refused the request".to_owned()
    } else {
        format!("upstream refused request {i}")
    };
    Signal::new("flooded", message).stack("frame\n".repeat(20_000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_one_target_is_detected_through_a_flood_on_another() {
    let recording = Recording::default();
    let mut config = HealerConfig::default();
    config.detection.default_min_occurrences = BURST as u32;
    let healer = Healer::builder()
        .config(config)
        .fingerprinter(recording.clone())
        .build()
        .unwrap();
    let mut events = healer.subscribe();

    // The flood fills the queue before the pipeline starts: far more than it can hold.
    for i in 0..50_000 {
        healer.observe(flood_signal(i));
    }
    let dropped = healer.dropped();
    assert!(dropped > 0, "the flood overflowed its share");
    // The burst finds room: none of it is dropped.
    for _ in 0..BURST {
        healer.observe(Signal::new("orders-db", "deadlock detected"));
    }
    assert_eq!(
        healer.dropped(),
        dropped,
        "no signal of the burst was dropped"
    );

    // The flood goes on, at full speed, from another thread.
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let (healer, stop) = (healer.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 50_000;
            while !stop.load(Ordering::Relaxed) {
                healer.observe(flood_signal(i));
                i += 1;
            }
        })
    };
    let running = healer.spawn();
    let detected = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let event = events.recv().await.expect("the event stream stays open");
            if event.phase == Phase::Detected && event.target == "orders-db" {
                return event;
            }
        }
    })
    .await
    .expect("the burst's incident opens despite the flood");
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    assert!(detected.incident.is_some());

    // The intake alternated: the burst's k-th signal came after exactly k of the flood.
    let order = recording.0.lock().unwrap().clone();
    let burst: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, t)| *t == "orders-db")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(burst, [1, 3, 5, 7, 9], "{:?}", &order[..12]);
    running.shutdown().await;
    assert!(healer.dropped() > dropped, "the flood went on being shed");
}
