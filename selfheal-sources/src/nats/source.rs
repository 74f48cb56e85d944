//! The consumer: a healer's share of the stream, through the durable pull consumer its
//! group shares, each message acknowledged once the healer's intake took it in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind, Message};
use async_trait::async_trait;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use selfheal_core::source::{Feed, Source};
use selfheal_core::{Error, ErrorKind, Result, Signal};
use serde::Serialize;

use super::recent::{RecentIds, Seen};
use super::wire::service_of;
use super::{StreamSettings, connect, decode, unavailable};

/// The longest message id kept for recognising a redelivery; a longer one (not written
/// by [`NatsSink`](super::NatsSink)) is replaced by the message's stream sequence.
const MAX_ID_BYTES: usize = 128;

/// How a healer reads the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// The NATS server (`nats://127.0.0.1:4222`).
    pub url: String,
    /// The source's name among the healer's sources (`nats`).
    pub name: String,
    /// The stream (created if missing, with the same settings publishers use).
    pub stream: StreamSettings,
    /// The durable consumer the healer group shares (`selfheal-healers`): healers with
    /// the same name split the messages, each message going to one of them. An
    /// existing consumer is used with its own settings.
    pub durable: String,
    /// How long a delivered message may go unacknowledged before JetStream delivers it
    /// again, to this or another healer (30 s): what a healer that died costs its
    /// messages in delay.
    pub ack_wait: Duration,
    /// Deliveries of one message at most (5), so a message that kills every healer that
    /// reads it is given up.
    pub max_deliver: i64,
    /// Messages asked of the server per pull (256).
    pub batch: usize,
    /// Messages being taken in at once at most (1,024): the window between receiving a
    /// message and acknowledging it.
    pub in_flight: usize,
    /// Message ids remembered as taken in (65,536), to acknowledge a redelivery again
    /// without counting it twice.
    pub recent_ids: usize,
}

impl SourceConfig {
    /// The defaults for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        SourceConfig {
            url: url.into(),
            name: "nats".into(),
            stream: StreamSettings::default(),
            durable: "selfheal-healers".into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            batch: 256,
            in_flight: 1024,
            recent_ids: 65_536,
        }
    }
}

/// What a [`NatsSource`] has done since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConsumerStats {
    /// Messages delivered to it (redeliveries included).
    pub received: u64,
    /// Of those, messages delivered before (to this healer or another) and not
    /// acknowledged then: a healer that died, a lost acknowledgement.
    pub redelivered: u64,
    /// Signals the healer's intake took in, then acknowledged.
    pub ingested: u64,
    /// Redeliveries of messages it had taken in (or was taking in): not ingested again.
    pub duplicates: u64,
    /// Messages that were not signals: terminated, never delivered again.
    pub malformed: u64,
    /// Messages handed back (the healer stopped before taking them in), for another
    /// healer to take.
    pub returned: u64,
    /// Acknowledgements that could not be sent: the message comes back after
    /// `ack_wait`, and is recognised as a duplicate if it comes back here.
    pub ack_failures: u64,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    redelivered: AtomicU64,
    ingested: AtomicU64,
    duplicates: AtomicU64,
    malformed: AtomicU64,
    returned: AtomicU64,
    ack_failures: AtomicU64,
}

/// A handle on a [`NatsSource`]'s counters that outlives handing the source to the
/// healer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConsumerCounters(Arc<Counters>);

impl ConsumerCounters {
    /// The counters now.
    pub fn stats(&self) -> ConsumerStats {
        let c = &self.0;
        ConsumerStats {
            received: c.received.load(Ordering::Relaxed),
            redelivered: c.redelivered.load(Ordering::Relaxed),
            ingested: c.ingested.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            returned: c.returned.load(Ordering::Relaxed),
            ack_failures: c.ack_failures.load(Ordering::Relaxed),
        }
    }
}

/// A healer's [`Source`] of the signals services publish with
/// [`NatsSink`](super::NatsSink). See the [module docs](super).
#[derive(Debug)]
pub struct NatsSource {
    config: SourceConfig,
    counters: Arc<Counters>,
    /// Kept across restarts of `run`, so a redelivery after a reconnect is known.
    recent: Mutex<RecentIds>,
}

/// What becomes of one delivered message.
enum Action {
    /// Take the signal in, then acknowledge; `id` recognises a redelivery.
    Ingest(Signal, Option<Arc<str>>),
    /// Taken in before: acknowledge again.
    Ack,
    /// Not a signal: never deliver it again.
    Term,
}

impl NatsSource {
    /// A source reading as `config` says; it connects when the healer starts it.
    pub fn new(config: SourceConfig) -> Self {
        let recent = Mutex::new(RecentIds::new(config.recent_ids));
        NatsSource {
            config,
            counters: Arc::default(),
            recent,
        }
    }

    /// Its counters, readable after the source went to the healer.
    pub fn counters(&self) -> ConsumerCounters {
        ConsumerCounters(self.counters.clone())
    }

    /// Connects, and binds the group's durable consumer (creating the stream and the
    /// consumer when they are missing).
    async fn bind(&self) -> Result<PullConsumer> {
        let c = &self.config;
        let js = jetstream::new(connect(&c.url, "selfheal-healer", false).await?);
        let stream = c.stream.ensure(&js).await?;
        let consumer = stream
            .get_or_create_consumer(
                &c.durable,
                pull::Config {
                    durable_name: Some(c.durable.clone()),
                    description: Some("selfheal healers: signals of the services".into()),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: c.ack_wait,
                    max_deliver: c.max_deliver,
                    filter_subject: format!("{}.>", c.stream.subject_prefix),
                    max_ack_pending: 20_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| unavailable(format!("could not bind the consumer `{}`", c.durable), e))?;
        self.check_filter(&consumer);
        self.check_default_sink(&js).await;
        Ok(consumer)
    }

    /// Warns when the group's consumer existed with another filter than `<prefix>.>`:
    /// an existing consumer keeps its settings, so this healer would read only what
    /// that filter lets through, without a word.
    fn check_filter(&self, consumer: &PullConsumer) {
        let c = &self.config;
        let config = &consumer.cached_info().config;
        let filter = config.filter_subject.as_str();
        let wanted = format!("{}.>", c.stream.subject_prefix);
        if filter.is_empty() || filter == wanted {
            return;
        }
        tracing::warn!(
            source = %c.name,
            durable = %c.durable,
            stream = %c.stream.name,
            filter = %filter,
            wanted = %wanted,
            "the group's consumer exists with another filter, which it keeps: this healer \
             reads only the subjects that filter lets through; delete the consumer (it is \
             made again with `{wanted}`) or give SourceConfig.durable another name"
        );
    }

    /// Warns when the source reads another stream than a [`NatsSink`](super::NatsSink)
    /// with default settings publishes to, and a stream on the server holds that
    /// subject: services that kept the defaults publish where no healer of this group
    /// reads.
    async fn check_default_sink(&self, js: &jetstream::Context) {
        let c = &self.config;
        let defaults = StreamSettings::default();
        if c.stream.subject_prefix == defaults.subject_prefix {
            return;
        }
        let published = format!("{}.>", defaults.subject_prefix);
        let Ok(other) = js.stream_by_subject(published.as_str()).await else {
            return;
        };
        if other != c.stream.name {
            tracing::warn!(
                source = %c.name,
                stream = %c.stream.name,
                subjects = %format!("{}.>", c.stream.subject_prefix),
                other_stream = %other,
                "the stream `{other}` holds `{published}`, where a NatsSink with default \
                 settings publishes, but this source reads `{}`: give the sinks \
                 (SinkConfig.stream) and the healers (SourceConfig.stream) the same \
                 StreamSettings",
                c.stream.name
            );
        }
    }

    /// Decides what becomes of a delivered message; `None` when it is left alone (a
    /// redelivery of a message this healer is taking in now).
    fn receive(&self, feed: &Feed, message: &Message) -> Option<Action> {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        if message.info().is_ok_and(|info| info.delivered > 1) {
            self.counters.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        let mut signal = match decode(&message.payload) {
            Ok(signal) => signal,
            Err(why) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                feed.malformed(&why.to_string());
                return Some(Action::Term);
            }
        };
        if signal.service.is_empty()
            && let Some(service) = service_of(&self.config.stream.subject_prefix, &message.subject)
        {
            signal.service = service.to_owned();
        }
        let Some(id) = message_id(message) else {
            return Some(Action::Ingest(signal, None));
        };
        let seen = self.recent.lock().map_or(Seen::New, |mut r| r.start(&id));
        match seen {
            Seen::New => Some(Action::Ingest(signal, Some(id))),
            Seen::Done | Seen::InFlight => {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                (seen == Seen::Done).then_some(Action::Ack)
            }
        }
    }

    /// Carries out `action` on `message`; returns the id it took in (or failed to).
    async fn settle(
        &self,
        feed: &Feed,
        message: Message,
        action: Action,
    ) -> Option<(Arc<str>, bool)> {
        let (kind, done) = match action {
            Action::Term => (AckKind::Term, None),
            Action::Ack => (AckKind::Ack, None),
            Action::Ingest(signal, id) => match feed.ingest(signal).await {
                Ok(()) => {
                    self.counters.ingested.fetch_add(1, Ordering::Relaxed);
                    (AckKind::Ack, id.map(|id| (id, true)))
                }
                Err(_) => {
                    // Stopping: hand it back at once rather than after `ack_wait`.
                    self.counters.returned.fetch_add(1, Ordering::Relaxed);
                    (AckKind::Nak(None), id.map(|id| (id, false)))
                }
            },
        };
        if let Err(e) = message.ack_with(kind).await {
            let n = self.counters.ack_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(source = %self.config.name, error = %e, ack_failures = n, "could not acknowledge a message; JetStream delivers it again");
            }
        }
        done
    }

    /// A settled message's id is no longer in flight.
    fn settled(&self, done: Option<(Arc<str>, bool)>) {
        if let Some((id, taken_in)) = done
            && let Ok(mut recent) = self.recent.lock()
        {
            recent.finish(&id, taken_in);
        }
    }
}

/// The id that recognises a redelivery: the publisher's `Nats-Msg-Id`, else the
/// message's place in the stream.
fn message_id(message: &Message) -> Option<Arc<str>> {
    let published = message
        .headers
        .as_ref()
        .and_then(|h| h.get(NATS_MESSAGE_ID))
        .map(|v| v.as_str())
        .filter(|id| !id.is_empty() && id.len() <= MAX_ID_BYTES);
    if let Some(id) = published {
        return Some(id.into());
    }
    let info = message.info().ok()?;
    Some(format!("{}#{}", info.stream, info.stream_sequence).into())
}

#[async_trait]
impl Source for NatsSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn run(&self, feed: Feed) -> Result<()> {
        let consumer = self.bind().await?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(self.config.batch.max(1))
            .messages()
            .await
            .map_err(|e| unavailable("could not pull from the consumer".into(), e))?;
        tracing::debug!(source = %self.config.name, durable = %self.config.durable, "reading the stream");
        let window = self.config.in_flight.max(1);
        let mut in_flight = FuturesUnordered::new();
        let stopped = feed.stopped();
        tokio::pin!(stopped);
        let failed = loop {
            tokio::select! {
                biased;
                _ = &mut stopped => return Ok(()),
                Some(done) = in_flight.next(), if !in_flight.is_empty() => self.settled(done),
                next = messages.next(), if in_flight.len() < window => match next {
                    Some(Ok(message)) => {
                        if let Some(action) = self.receive(&feed, &message) {
                            in_flight.push(self.settle(&feed, message, action));
                        }
                    }
                    Some(Err(e)) if e.kind() == MessagesErrorKind::MissingHeartbeat => {
                        tracing::warn!(source = %self.config.name, error = %e, "the NATS server went quiet; pulling again");
                    }
                    Some(Err(e)) => break unavailable("pulling from the consumer failed".into(), e),
                    None => break Error::new(ErrorKind::Unavailable, "the consumer's message stream ended"),
                },
            }
        };
        // Settle what is in flight before the healer starts this source again.
        while let Some(done) = in_flight.next().await {
            self.settled(done);
        }
        Err(failed)
    }
}
