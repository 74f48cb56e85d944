//! A flood on one target against a burst on another: how long the burst's incident
//! takes, with and without the flood, and what the flood costs in memory.
//!
//! ```sh
//! cargo run --release --no-default-features --example fair_intake
//! ```
//!
//! Each run builds a fresh healer (defaults: `MemoryStore`, the `Normalizer`, a queue of
//! 10,000 signals and 64 MiB, 5 occurrences in 60 s open an incident for an unknown
//! error). In a flood run, a thread observes signals of target `flooded` as fast as it
//! can, each a distinct error (so none of them repeats into an incident), for 300 ms
//! before the burst and throughout. Then 5 signals of `orders-db` are observed, and the
//! time from the first of them to the `Detected` event of their incident is taken. Two
//! floods: small signals (the highest rate), and signals carrying a 0.9 MB stack. The
//! median of the runs is printed beside the same burst without a flood, with the
//! process's peak RSS (`VmHWM`) after each kind of run.
#![allow(clippy::print_stdout, clippy::print_stderr)] // an example talks to its user

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use selfheal::{Healer, Phase, Signal};

const RUNS: usize = 9;
const BURST: usize = 5;

#[derive(Clone, Copy, PartialEq)]
enum Flood {
    None,
    Small,
    BigStacks,
}

impl Flood {
    fn label(self) -> &'static str {
        match self {
            Flood::None => "no flood",
            Flood::Small => "flood, small signals",
            Flood::BigStacks => "flood, 0.9 MB stacks",
        }
    }
}

/// A word of letters only, distinct for each `i`: the normalizer masks digits and hex,
/// not words, so every flood signal is a distinct fingerprint.
fn word(mut i: u64) -> String {
    let mut w = String::new();
    loop {
        w.push(char::from(b'g' + (i % 20) as u8));
        i /= 20;
        if i == 0 {
            return w;
        }
    }
}

struct Run {
    latency: Duration,
    flooded: u64,
    dropped: u64,
}

async fn run(flood: Flood, stack: &Arc<String>) -> Run {
    let healer = Healer::builder().build().expect("default config");
    let mut events = healer.subscribe();
    let running = healer.spawn();
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = (flood != Flood::None).then(|| {
        let (healer, stop, stack) = (healer.clone(), stop.clone(), stack.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut signal =
                    Signal::new("flooded", format!("upstream refused request {}", word(i)));
                if flood == Flood::BigStacks {
                    signal = signal.stack(stack.as_str());
                }
                healer.observe(signal);
                i += 1;
            }
            i
        })
    });
    if flooder.is_some() {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Exactly the threshold: the incident opens only if none of the burst is dropped.
    let start = Instant::now();
    for _ in 0..BURST {
        healer.observe(Signal::new("orders-db", "deadlock detected"));
    }
    let latency = loop {
        match events.recv().await {
            Ok(e) if e.phase == Phase::Detected && e.target == "orders-db" => {
                break start.elapsed();
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => panic!("event stream closed: {e}"),
        }
    };
    stop.store(true, Ordering::Relaxed);
    let flooded = flooder.map_or(0, |f| f.join().expect("flood thread"));
    running.shutdown().await;
    if flood == Flood::None {
        assert_eq!(healer.dropped(), 0);
    }
    Run {
        latency,
        flooded,
        dropped: healer.dropped(),
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let frame = "   7: myapp::orders::handler::place_order::h0123456789abcdef\n             at ./src/orders/handler.rs:42:9\n";
    let stack = Arc::new(frame.repeat(900_000 / frame.len()));
    println!(
        "{:<24} {:>12} {:>12} {:>12} {:>14} {:>12}",
        "case", "median", "min", "max", "flood signals/s", "peak RSS"
    );
    for flood in [Flood::None, Flood::Small, Flood::BigStacks] {
        let mut latencies = Vec::new();
        let (mut flooded, mut dropped, mut secs) = (0u64, 0u64, 0f64);
        for _ in 0..RUNS {
            let started = Instant::now();
            let r = run(flood, &stack).await;
            secs += started.elapsed().as_secs_f64();
            latencies.push(r.latency);
            flooded += r.flooded;
            dropped += r.dropped;
        }
        let (min, max) = (
            *latencies.iter().min().expect("runs"),
            *latencies.iter().max().expect("runs"),
        );
        println!(
            "{:<24} {:>12.2?} {:>12.2?} {:>12.2?} {:>14.0} {:>9.0} MiB",
            flood.label(),
            median(latencies),
            min,
            max,
            flooded as f64 / secs,
            peak_rss_mib(),
        );
        if flood != Flood::None {
            println!(
                "{:<24} {} of {} flood signals refused by the queue",
                "", dropped, flooded
            );
        }
    }
}
