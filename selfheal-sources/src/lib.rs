//! Sources that feed a [`selfheal_core::Healer`] besides its own process.
//!
//! Every source implements [`selfheal_core::source::Source`] and is added with
//! [`HealerBuilder::source`](selfheal_core::HealerBuilder::source): it starts with
//! `healer.spawn()`, stops at shutdown, never blocks the host, and counts what it drops
//! and what it could not read ([`Healer::sources`](selfheal_core::Healer::sources)).
//!
//! - [`lines`]: one log line (JSON, logfmt, or plain text with a level word) to a
//!   [`Signal`](selfheal_core::Signal), with multi-line stack traces joined (always on);
//! - [`file`](mod@file) (feature `file`): follows log files like `tail -F`;
//! - `loki` (feature `loki`): polls Loki's `query_range`, or follows its `tail`;
//! - `alertmanager` (feature `alertmanager`): Alertmanager's webhook receiver;
//! - `nats` (feature `nats`): a publisher and a group consumer on NATS JetStream.
//!
//! The file tail and the Loki source say what they have done through a
//! [`StatsWatch`] (`stats()`): copies of their counts, to read or wait on.
#![deny(missing_docs)]

#[cfg(feature = "alertmanager")]
pub mod alertmanager;
#[cfg(feature = "file")]
pub mod file;
pub mod lines;
#[cfg(feature = "loki")]
pub mod loki;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(any(feature = "file", feature = "loki"))]
mod stats_watch;

#[cfg(any(feature = "file", feature = "loki"))]
pub use stats_watch::{SourceGone, StatsWatch};
