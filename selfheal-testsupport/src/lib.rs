//! Test infrastructure for selfheal's own tests, kept out of the published crates (as
//! tokio-test and tower-test are): private Redis and PostgreSQL servers for tests that
//! break them for real, a private Alertmanager for the webhook receiver, and the rule
//! for tests that need a server: skip plainly without one, fail under `CI=true`.
//!
//! A private server runs on a free port of 127.0.0.1 with its own data directory and
//! its own limits (`maxmemory 2mb`, `max_connections=20`), so a test can fill it,
//! exhaust it, stop it and start it again without touching the machine's shared
//! servers. Dropping the handle kills the server and removes its directory.
//!
//! ```no_run
//! use selfheal_testsupport::PrivateRedis;
//!
//! let redis = PrivateRedis::start(&[("maxmemory", "2mb"), ("maxmemory-policy", "noeviction")])
//!     .expect("redis-server on PATH");
//! assert!(redis.url().starts_with("redis://127.0.0.1:"));
//! ```
//!
//! [`random_word_lines`] makes the template miner's worst case, lines that share no word,
//! the same on every run.
//!
//! Tests on NATS JetStream use the shared server through [`ScratchNats`]: a stream and
//! subject prefix of their own, deleted when the test ends.
//!
//! The conformance suite every store runs stays in `selfheal_core::testkit` (feature
//! `test-util`): downstream stores run it too, while these servers serve this
//! repository's tests only.

mod alertmanager;
mod env;
mod lines;
mod nats;
mod postgres;
mod redis;
mod scratch;

pub use alertmanager::PrivateAlertmanager;
pub use env::{env_url, free_port, in_ci, unavailable};
pub use lines::random_word_lines;
pub use nats::ScratchNats;
pub use postgres::PrivatePostgres;
pub use redis::PrivateRedis;
