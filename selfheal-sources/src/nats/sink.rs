//! The publisher: a service's signals to JetStream, through a bounded queue that a task
//! drains, so publishing never blocks the host.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use futures_util::future::join_all;
use selfheal_core::{DEFAULT_TARGET, Error, OwnWork, Result, Signal, event_signal};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{Event, Instrument as _, Subscriber};
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::{StreamSettings, connect, encode};

/// How often a sink that could not create or find the stream tries again.
const ENSURE_EVERY: Duration = Duration::from_secs(5);
/// The first pause before a failed publish is retried; it doubles with each retry.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Where and how a service publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// The NATS server (`nats://127.0.0.1:4222`).
    pub url: String,
    /// The service's name: the last token of its subject, and the `service` of its
    /// signals that have none.
    pub service: String,
    /// The stream.
    pub stream: StreamSettings,
    /// Signals waiting to be published at most (10,000); more are dropped and counted.
    pub queue_capacity: usize,
    /// Signals published together at most, their acknowledgements awaited together (256).
    pub batch: usize,
    /// Times a publish JetStream did not acknowledge is tried again, with the same
    /// message id, before the signal is given up and counted as failed (3).
    pub retries: u32,
}

impl SinkConfig {
    /// The defaults for `service` publishing to the server at `url`.
    pub fn new(url: impl Into<String>, service: impl Into<String>) -> Self {
        SinkConfig {
            url: url.into(),
            service: service.into(),
            stream: StreamSettings::default(),
            queue_capacity: 10_000,
            batch: 256,
            retries: 3,
        }
    }
}

/// What a sink has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    /// Signals JetStream stored.
    pub published: u64,
    /// Publishes JetStream acknowledged as duplicates (a retry whose first try had
    /// landed): stored once.
    pub duplicates: u64,
    /// Signals refused because the queue was full (or the sink gone).
    pub dropped: u64,
    /// Signals given up after every retry failed.
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    duplicates: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// What the drain task takes from the queue.
enum Outgoing {
    Signal(Signal),
    /// Answered once everything queued before it was published or given up.
    Flush(oneshot::Sender<()>),
}

/// Publishes a service's signals to JetStream without ever blocking the host. Cheap to
/// clone; the drain task ends when the last clone (and the last [`NatsLayer`]) is gone.
#[derive(Debug, Clone)]
pub struct NatsSink {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Outgoing>,
    service: String,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outgoing::Signal(_) => "Signal",
            Outgoing::Flush(_) => "Flush",
        })
    }
}

impl NatsSink {
    /// Starts the sink: its task connects in the background (retrying while the server
    /// is down), creates the stream if it is missing, and publishes what is queued.
    /// Fails only outside a Tokio runtime.
    pub fn start(config: SinkConfig) -> Result<NatsSink> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::invalid("NatsSink::start runs inside a Tokio runtime"))?;
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let service = config.service.clone();
        // Its own span: the layer of this process (or a healer's) ignores what the
        // sink's work logs, so a failing publish never feeds itself.
        let span = tracing::debug_span!("nats_sink", service = %service);
        runtime.spawn(drain(rx, config, counters.clone()).instrument(span));
        Ok(NatsSink {
            inner: Arc::new(Inner {
                tx,
                service,
                counters,
            }),
        })
    }

    /// Queues `signal` for publishing, with the sink's service name when it has none;
    /// `false` when the queue was full (counted in [`SinkStats::dropped`]). Never
    /// blocks, and works outside the runtime too.
    pub fn publish(&self, mut signal: Signal) -> bool {
        if signal.service.is_empty() {
            signal.service.clone_from(&self.inner.service);
        }
        let queued = self.inner.tx.try_send(Outgoing::Signal(signal)).is_ok();
        if !queued {
            self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// Waits until every signal queued before this call was published or given up.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.inner.tx.send(Outgoing::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }

    /// What the sink has done so far.
    pub fn stats(&self) -> SinkStats {
        let c = &self.inner.counters;
        SinkStats {
            published: c.published.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    /// A `tracing` layer that publishes the host's WARN and ERROR events as signals,
    /// made the way a healer's own layer makes them ([`selfheal_core::HealerLayer`]):
    /// the target is the first of the fields `heal.target`, `component`, `peer`, else
    /// the service name. Selfheal's own events (this sink's included) are not
    /// published. `registry().with(fmt::layer()).with(sink.layer())`.
    pub fn layer<S>(&self) -> Filtered<NatsLayer, OwnWork, S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        NatsLayer { sink: self.clone() }.with_filter(OwnWork)
    }
}

/// Publishes the host's WARN and ERROR events through a [`NatsSink`]. Get one from
/// [`NatsSink::layer`].
#[derive(Debug, Clone)]
pub struct NatsLayer {
    sink: NatsSink,
}

impl<S> Layer<S> for NatsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let service = self.sink.inner.service.as_str();
        let target = if service.is_empty() {
            DEFAULT_TARGET
        } else {
            service
        };
        if let Some(signal) = event_signal(event, &ctx, Some(target)) {
            self.sink.publish(signal);
        }
    }
}

/// The sink's task: publishes what is queued, in batches, until every sender is gone.
async fn drain(mut rx: mpsc::Receiver<Outgoing>, config: SinkConfig, counters: Arc<Counters>) {
    let js = match connect(&config.url, "selfheal-sink", true).await {
        Ok(client) => jetstream::new(client),
        Err(e) => {
            // A URL the client cannot even parse: nothing will ever be published.
            tracing::error!(error = %e, "the NATS sink cannot start; its signals are dropped");
            while let Some(item) = rx.recv().await {
                if let Outgoing::Signal(_) = item {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
    };
    let mut publisher = Publisher {
        js,
        config,
        counters,
        ensured_at: None,
    };
    let mut items = Vec::new();
    let mut signals = Vec::new();
    while rx
        .recv_many(&mut items, publisher.config.batch.max(1))
        .await
        > 0
    {
        for item in items.drain(..) {
            match item {
                Outgoing::Signal(signal) => signals.push(signal),
                Outgoing::Flush(done) => {
                    publisher.publish(&mut signals).await;
                    let _ = done.send(());
                }
            }
        }
        publisher.publish(&mut signals).await;
    }
}

/// One message on its way: kept with its id so a retry is recognised as a duplicate.
struct Pending {
    subject: String,
    id: String,
    payload: Vec<u8>,
}

struct Publisher {
    js: jetstream::Context,
    config: SinkConfig,
    counters: Arc<Counters>,
    /// When the stream was last looked for, and whether it was there.
    ensured_at: Option<(Instant, bool)>,
}

impl Publisher {
    /// Publishes `signals` (emptying it), retrying what JetStream did not acknowledge.
    async fn publish(&mut self, signals: &mut Vec<Signal>) {
        if signals.is_empty() {
            return;
        }
        let mut pending: Vec<Pending> = signals
            .drain(..)
            .map(|signal| Pending {
                subject: self.config.stream.subject(&signal.service),
                id: uuid::Uuid::new_v4().simple().to_string(),
                payload: encode(&signal),
            })
            .collect();
        let mut pause = FIRST_RETRY;
        for attempt in 0..=self.config.retries {
            self.ensure_stream().await;
            pending = self.try_once(pending).await;
            if pending.is_empty() {
                return;
            }
            if attempt < self.config.retries {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        let failed = pending.len() as u64;
        let total = self.counters.failed.fetch_add(failed, Ordering::Relaxed) + failed;
        tracing::warn!(
            failed,
            total,
            retries = self.config.retries,
            "JetStream did not take signals after every retry; they are lost"
        );
    }

    /// Publishes each of `pending` once and awaits the acknowledgements together;
    /// returns those to try again.
    async fn try_once(&mut self, pending: Vec<Pending>) -> Vec<Pending> {
        let mut sent = Vec::with_capacity(pending.len());
        let mut again = Vec::new();
        for p in pending {
            let message = PublishMessage::build()
                .message_id(&p.id)
                .payload(p.payload.clone().into());
            match self.js.send_publish(p.subject.clone(), message).await {
                Ok(ack) => sent.push((p, ack)),
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    // Never fits, however often it is tried.
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "a signal is too large to publish; it is lost");
                }
                Err(e) => {
                    tracing::debug!(error = %e, "publishing a signal failed; it is tried again");
                    again.push(p);
                }
            }
        }
        let (messages, acks): (Vec<Pending>, Vec<_>) = sent.into_iter().unzip();
        for (p, ack) in messages
            .into_iter()
            .zip(join_all(acks.into_iter().map(std::future::IntoFuture::into_future)).await)
        {
            match ack {
                Ok(ack) => {
                    let counter = if ack.duplicate {
                        &self.counters.duplicates
                    } else {
                        &self.counters.published
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "JetStream did not acknowledge a signal; it is tried again");
                    // No stream (yet, or any more): look for it before the retry.
                    self.ensured_at = self.ensured_at.map(|(at, _)| (at, false));
                    again.push(p);
                }
            }
        }
        again
    }

    /// Creates the stream if it is missing: at start, and again (at most every
    /// [`ENSURE_EVERY`]) while it was not there. A service allowed to publish but not
    /// to create streams publishes all the same.
    async fn ensure_stream(&mut self) {
        if let Some((at, found)) = self.ensured_at
            && (found || at.elapsed() < ENSURE_EVERY)
        {
            return;
        }
        let found = match self.config.stream.ensure(&self.js).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "the NATS sink could not find or create its stream; it publishes all the same");
                false
            }
        };
        self.ensured_at = Some((Instant::now(), found));
    }
}
