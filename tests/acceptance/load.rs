//! Bounded load on loopback: a fixed request rate against the service, every answer
//! kept with the time it was sent (on the scenario clock).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::timeline::Timeline;

/// Requests per second.
pub const RATE: u32 = 20;

/// One request: when it was sent, whether it succeeded, and what failed.
#[derive(Debug, Clone)]
pub struct Sample {
    pub sent: Duration,
    pub ok: bool,
}

/// The running load and what it has seen.
#[derive(Debug)]
pub struct Load {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Sends `RATE` requests per second to `base` (`http://127.0.0.1:<port>`) until
    /// stopped. Each request has 5 s to answer; a late one counts as an error.
    pub fn start(base: String, timeline: Arc<Timeline>) -> Load {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = watch::channel(false);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .expect("an HTTP client");
        let task = {
            let samples = samples.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut requests = tokio::task::JoinSet::new();
                let mut n = 0u64;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.changed() => break,
                    }
                    n += 1;
                    let (client, samples, timeline) =
                        (client.clone(), samples.clone(), timeline.clone());
                    let url = format!("{base}/item/{}", n % 1000);
                    requests.spawn(async move {
                        let sent = timeline.elapsed();
                        let ok = matches!(
                            client.get(url).send().await,
                            Ok(r) if r.status().is_success()
                        );
                        samples.lock().unwrap().push(Sample { sent, ok });
                    });
                    while requests.try_join_next().is_some() {}
                }
                while requests.join_next().await.is_some() {}
            })
        };
        Load {
            samples,
            stop,
            task,
        }
    }

    /// Stops sending, waits for the answers in flight, returns every sample by send time.
    pub async fn stop(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let mut samples = self.samples.lock().unwrap().clone();
        samples.sort_by_key(|s| s.sent);
        samples
    }
}

/// What the load saw.
#[derive(Debug, Clone)]
pub struct LoadFigures {
    pub samples: Vec<Sample>,
}

impl LoadFigures {
    /// Requests and errors per second of the scenario clock (by send time).
    pub fn per_second(&self) -> Vec<(u64, usize, usize)> {
        let last = self.samples.last().map_or(0, |s| s.sent.as_secs());
        (0..=last)
            .map(|sec| {
                let in_sec: Vec<_> = self
                    .samples
                    .iter()
                    .filter(|s| s.sent.as_secs() == sec)
                    .collect();
                let errors = in_sec.iter().filter(|s| !s.ok).count();
                (sec, in_sec.len(), errors)
            })
            .collect()
    }

    /// The error rate per second as a compact line: `12:0/20 13:20/20 …` (errors/requests),
    /// runs of error-free seconds collapsed.
    pub fn error_rate_line(&self) -> String {
        let mut out = String::new();
        let mut clean_from: Option<u64> = None;
        let per_second = self.per_second();
        for (sec, requests, errors) in &per_second {
            if *errors == 0 {
                clean_from.get_or_insert(*sec);
                continue;
            }
            if let Some(from) = clean_from.take() {
                out.push_str(&format!("{from}-{}s:0 ", sec - 1));
            }
            out.push_str(&format!("{sec}s:{errors}/{requests} "));
        }
        if let (Some(from), Some((last, _, _))) = (clean_from, per_second.last()) {
            out.push_str(&format!("{from}-{last}s:0"));
        }
        out
    }

    /// Requests that failed.
    pub fn errors(&self) -> usize {
        self.samples.iter().filter(|s| !s.ok).count()
    }

    /// When the first failed request was sent.
    pub fn first_error(&self) -> Option<Duration> {
        self.samples.iter().find(|s| !s.ok).map(|s| s.sent)
    }

    /// When the last failed request was sent.
    pub fn last_error(&self) -> Option<Duration> {
        self.samples.iter().rev().find(|s| !s.ok).map(|s| s.sent)
    }

    /// When the last failed request sent at or after `from` was sent.
    pub fn last_error_after(&self, from: Duration) -> Option<Duration> {
        self.samples
            .iter()
            .rev()
            .find(|s| !s.ok && s.sent >= from)
            .map(|s| s.sent)
    }

    /// When the last request was sent.
    pub fn end(&self) -> Duration {
        self.samples.last().map_or(Duration::ZERO, |s| s.sent)
    }
}
