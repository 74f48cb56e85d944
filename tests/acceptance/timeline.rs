//! What a scenario saw, in order: the healer's events (from `healer.subscribe()`) and the
//! test's own marks (fault injected, approval given, server back), with the time since
//! the scenario started; and the figures the issue asks for.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use selfheal::{Healer, HealingEvent};
use tokio::sync::{broadcast, watch};

/// One line of the timeline.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A healer event.
    Event(Box<HealingEvent>),
    /// Something the test did.
    Mark(String),
}

/// The scenario's timeline, shared by the tasks that add to it.
#[derive(Debug)]
pub struct Timeline {
    name: String,
    start: Instant,
    entries: Mutex<Vec<(Duration, Entry)>>,
    changed: watch::Sender<usize>,
}

impl Timeline {
    /// A timeline whose clock starts now.
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(Timeline {
            name: name.to_owned(),
            start: Instant::now(),
            entries: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
        })
    }

    /// Time since the scenario started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn push(&self, entry: Entry) {
        let mut entries = self.entries.lock().unwrap();
        entries.push((self.elapsed(), entry));
        let n = entries.len();
        drop(entries);
        self.changed.send_replace(n);
    }

    /// Records something the test did; returns when (scenario clock).
    pub fn mark(&self, what: impl Into<String>) -> Duration {
        let at = self.elapsed();
        self.push(Entry::Mark(what.into()));
        at
    }

    /// Records every healer event from now on, until the healer's stream closes or the
    /// returned task is aborted.
    pub fn follow(self: &Arc<Self>, healer: &Healer) -> tokio::task::JoinHandle<()> {
        let mut rx = healer.subscribe();
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(event) => this.push(Entry::Event(Box::new(event))),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        this.push(Entry::Mark(format!("(timeline lagged: {n} events lost)")));
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }

    /// The healer events so far, with their times.
    pub fn events(&self) -> Vec<(Duration, HealingEvent)> {
        self.entries
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(at, e)| match e {
                Entry::Event(event) => Some((*at, (**event).clone())),
                Entry::Mark(_) => None,
            })
            .collect()
    }

    /// The time of the first mark containing `text`.
    pub fn marks_containing(&self, text: &str) -> Option<Duration> {
        self.entries
            .lock()
            .unwrap()
            .iter()
            .find(|(_, e)| matches!(e, Entry::Mark(m) if m.contains(text)))
            .map(|(at, _)| *at)
    }

    /// Whether an event satisfying `pred` was recorded.
    pub fn seen(&self, pred: impl Fn(&HealingEvent) -> bool) -> bool {
        self.events().iter().any(|(_, e)| pred(e))
    }

    /// Waits until an event satisfies `pred` (including one already recorded), or
    /// `deadline` on the scenario clock passes. Returns the event's time.
    pub async fn wait_for(
        &self,
        deadline: Duration,
        pred: impl Fn(&HealingEvent) -> bool,
    ) -> Option<(Duration, HealingEvent)> {
        let mut changed = self.changed.subscribe();
        let mut seen = 0;
        loop {
            {
                let entries = self.entries.lock().unwrap();
                for (at, entry) in &entries[seen..] {
                    if let Entry::Event(e) = entry
                        && pred(e)
                    {
                        return Some((*at, (**e).clone()));
                    }
                }
                seen = entries.len();
            }
            let left = deadline.checked_sub(self.elapsed())?;
            if tokio::time::timeout(left, changed.changed()).await.is_err() {
                return None;
            }
        }
    }

    /// The timeline as text, one line per entry. An entry like one already shown (the
    /// same phase, target and detail, digits aside) is not repeated: the repeats are
    /// counted and listed at the end with their first and last time, so a storm of
    /// escalations reads as one line with its count.
    pub fn render(&self) -> String {
        let mut out = format!("── timeline: {} ──\n", self.name);
        // (key, first line, count, first time, last time) of the repeats.
        let mut repeats: Vec<(String, String, usize, Duration, Duration)> = Vec::new();
        let mut shown: Vec<String> = Vec::new();
        for (at, entry) in self.entries.lock().unwrap().iter() {
            let line = match entry {
                Entry::Mark(what) => format!("[test]  {what}"),
                Entry::Event(e) => {
                    let detail: String = e.detail.replace('\n', " ⏎ ").chars().take(220).collect();
                    format!("{:<17} {} {}", format!("{:?}", e.phase), e.target, detail)
                }
            };
            let key: String = line.chars().filter(|c| !c.is_ascii_digit()).collect();
            if shown.contains(&key) {
                match repeats.iter_mut().find(|(k, ..)| *k == key) {
                    Some((_, _, n, _, last)) => {
                        *n += 1;
                        *last = *at;
                    }
                    None => repeats.push((key, line, 1, *at, *at)),
                }
                continue;
            }
            shown.push(key);
            let _ = writeln!(out, "{:7.2}s  {line}", at.as_secs_f64());
        }
        if !repeats.is_empty() {
            let _ = writeln!(
                out,
                "── repeats of lines above (digits aside), not shown ──"
            );
            for (_, line, n, first, last) in repeats {
                let _ = writeln!(
                    out,
                    "×{n:<4} {:.2}s–{:.2}s  {}",
                    first.as_secs_f64(),
                    last.as_secs_f64(),
                    line.chars().take(160).collect::<String>()
                );
            }
        }
        out
    }

    /// A `tracing` layer that puts selfheal's own warnings and errors on the timeline
    /// (as marks), so a refused plan or a skipped fix shows where it happened.
    pub fn log_layer(self: &Arc<Self>) -> LogLayer {
        LogLayer(self.clone())
    }
}

/// See [`Timeline::log_layer`].
pub struct LogLayer(Arc<Timeline>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if !meta.target().starts_with("selfheal") || *meta.level() > tracing::Level::WARN {
            return;
        }
        let mut text = String::new();
        event.record(
            &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                let _ = write!(text, " {}={value:?}", field.name());
            },
        );
        self.0
            .mark(format!("log {} {}:{text}", meta.level(), meta.target()));
    }
}
