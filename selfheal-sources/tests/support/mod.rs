//! Test doubles: a fingerprinter that remembers every signal the healer took in.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfheal_core::{Fingerprint, Fingerprinter, Normalizer, Signal};
use tokio::sync::Notify;

/// Fingerprints like the default and keeps a copy of each signal, in intake order.
#[derive(Debug, Clone, Default)]
pub struct Spy {
    seen: Arc<Mutex<Vec<Signal>>>,
    more: Arc<Notify>,
}

impl Fingerprinter for Spy {
    fn name(&self) -> &str {
        "spy"
    }
    fn fingerprint(&self, signal: &Signal) -> Fingerprint {
        self.seen.lock().unwrap().push(signal.clone());
        self.more.notify_waiters();
        Normalizer::default().fingerprint(signal)
    }
}

impl Spy {
    /// The signals taken in so far.
    pub fn signals(&self) -> Vec<Signal> {
        self.seen.lock().unwrap().clone()
    }

    /// Their messages.
    pub fn messages(&self) -> Vec<String> {
        self.signals().into_iter().map(|s| s.message).collect()
    }

    /// Waits until `n` signals were taken in (at most 20 s), and returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Signal> {
        wait_until(
            &self.more,
            || self.seen.lock().unwrap().len() >= n,
            || format!("{n} signals expected, got {:?}", self.messages()),
        )
        .await;
        self.signals()
    }
}

/// Waits until `done()` holds, checking each time `more` is notified (at most 20 s;
/// then panics with `what()`).
pub async fn wait_until(more: &Notify, done: impl Fn() -> bool, what: impl Fn() -> String) {
    let wait = async {
        loop {
            let notified = more.notified();
            if done() {
                return;
            }
            notified.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .is_err()
    {
        panic!("{}", what());
    }
}
