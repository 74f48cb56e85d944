//! NATS JetStream: services publish their signals, a group of healers consumes them.
//!
//! A service that does not embed the whole healer publishes what goes wrong with a
//! [`NatsSink`] (directly, or as a `tracing` layer with [`NatsSink::layer`]); healers
//! read the stream with a [`NatsSource`]. So one healer group watches a fleet of
//! services:
//!
//! - **Publisher.** [`NatsSink::publish`] never blocks the host: it queues on a bounded
//!   queue that a task drains to JetStream, and counts what it dropped
//!   ([`SinkStats`]). Each signal goes as JSON to `selfheal.signals.<service>` with a
//!   `Nats-Msg-Id` made once per signal, so a publish retried after a lost
//!   acknowledgement, or any copy sent again with that id, is stored once: the stream
//!   is made with a duplicate window ([`StreamSettings::duplicate_window`]).
//! - **Consumer.** Every [`NatsSource`] of the group binds the same durable pull
//!   consumer, so each message goes to one healer. A message is acknowledged only
//!   after [`Feed::ingest`](selfheal_core::source::Feed::ingest) says the healer's
//!   intake took it in; a healer that stops or dies with messages in flight leaves
//!   them unacknowledged, and JetStream delivers them to another healer after
//!   `ack_wait`. A message that is not a signal is counted as malformed and
//!   terminated (never delivered again). A redelivery of a message this healer took
//!   in lately (its acknowledgement was lost) is acknowledged again, not counted twice.
//! - **Acting once.** With a shared PostgreSQL store in fleet mode
//!   (`guards.fleet.enabled`), the healers of the group take a lease per target
//!   before acting, so each incident is remediated once however many healers run.
//!
//! Thresholds count per healer: with `n` healers sharing the stream, each sees about
//! `1/n` of a service's errors.
//!
//! Give sinks and sources the same [`StreamSettings`]. A source warns at start when a
//! stream on the server holds the subjects a sink with the default settings publishes
//! to but the source reads another, and when the group's durable consumer already
//! existed with another filter (an existing consumer keeps its settings).
//!
//! ```no_run
//! use selfheal_core::{Healer, Signal};
//! use selfheal_sources::nats::{NatsSink, NatsSource, SinkConfig, SourceConfig};
//!
//! # #[tokio::main] async fn main() -> selfheal_core::Result<()> {
//! // In each service:
//! let sink = NatsSink::start(SinkConfig::new("nats://127.0.0.1:4222", "orders"))?;
//! sink.publish(Signal::new("orders-db", "pool timed out while waiting for an open connection"));
//!
//! // In each healer of the group:
//! let healer = Healer::builder()
//!     .source(NatsSource::new(SourceConfig::new("nats://127.0.0.1:4222")))
//!     .build()?;
//! let running = healer.spawn();
//! # running.shutdown().await;
//! # Ok(()) }
//! ```

use std::time::Duration;

use async_nats::jetstream;
use selfheal_core::{Error, ErrorKind, Result};

mod recent;
mod sink;
mod source;
mod wire;

/// The NATS client these are built with, for a host that wants its own connection (to
/// inspect the stream, or to publish by hand in the same format).
pub use async_nats;
pub use sink::{NatsLayer, NatsSink, SinkConfig, SinkStats};
pub use source::{ConsumerCounters, ConsumerStats, NatsSource, SourceConfig};
pub use wire::{MAX_PAYLOAD_BYTES, Malformed, decode, encode, subject};

/// The stream signals travel on, as publishers and consumers both create it when it is
/// missing (identical settings on both sides; an existing stream is used as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// The stream's name (`SELFHEAL_SIGNALS`).
    pub name: String,
    /// Subjects are `<prefix>.<service>` (`selfheal.signals`); the stream holds
    /// `<prefix>.>`.
    pub subject_prefix: String,
    /// How long JetStream remembers a message id to drop a re-publish (2 min).
    pub duplicate_window: Duration,
    /// How long a signal is kept unread at most (1 h): older ones are stale.
    pub max_age: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            name: "SELFHEAL_SIGNALS".into(),
            subject_prefix: "selfheal.signals".into(),
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(3600),
        }
    }
}

impl StreamSettings {
    /// The stream `name` on the subjects `<subject_prefix>.>`, with the default windows.
    pub fn new(name: impl Into<String>, subject_prefix: impl Into<String>) -> Self {
        StreamSettings {
            name: name.into(),
            subject_prefix: subject_prefix.into(),
            ..StreamSettings::default()
        }
    }

    /// The subject `service` publishes on.
    pub fn subject(&self, service: &str) -> String {
        subject(&self.subject_prefix, service)
    }

    /// The stream, created with these settings when it does not exist yet.
    pub async fn ensure(&self, js: &jetstream::Context) -> Result<jetstream::stream::Stream> {
        js.get_or_create_stream(jetstream::stream::Config {
            name: self.name.clone(),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            duplicate_window: self.duplicate_window,
            max_age: self.max_age,
            max_message_size: i32::try_from(MAX_PAYLOAD_BYTES).unwrap_or(i32::MAX),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            unavailable(
                format!("could not create or find the stream `{}`", self.name),
                e,
            )
        })
    }
}

/// Connects to `url`, naming the connection `name` (seen in the server's monitoring).
async fn connect(url: &str, name: &str, in_background: bool) -> Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new().name(name);
    if in_background {
        options = options.retry_on_initial_connect();
    }
    options
        .connect(url)
        .await
        .map_err(|e| unavailable(format!("could not connect to NATS at {url}"), e))
}

/// An [`ErrorKind::Unavailable`] error that says what failed and why.
fn unavailable(what: String, cause: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Unavailable, format!("{what}: {cause}")).with_source(cause)
}
