//! Polls Loki's `GET /loki/api/v1/query_range` with a LogQL query, or follows its
//! `GET /loki/api/v1/tail` over a WebSocket, and hands each new log line to the healer
//! (feature `loki`).
//!
//! ```no_run
//! use std::time::Duration;
//! use selfheal_core::Healer;
//! use selfheal_sources::loki::LokiSource;
//!
//! # fn main() -> selfheal_core::Result<()> {
//! let loki = LokiSource::new("http://loki:3100", r#"{namespace="prod"} |= "error""#)
//!     .poll_every(Duration::from_secs(5))
//!     .target_label("service_name");
//! let healer = Healer::builder().source(loki).build()?;
//! # Ok(()) }
//! ```
//!
//! - Each poll asks for `start` (the cursor, inclusive) to `end` (now minus
//!   [`delay`](LokiSource::delay), for lines that reach Loki late), `direction=forward`,
//!   at most [`limit`](LokiSource::limit) entries. A full page is followed at once by the
//!   next; otherwise the source waits [`poll_every`](LokiSource::poll_every).
//! - No line twice, none lost at a page boundary: the cursor keeps the last timestamp
//!   read and the entries already read at it (several can share one nanosecond), and the
//!   next query starts at that timestamp and skips those. It is saved with
//!   [`Feed::save_cursor`] after each page, so a restart resumes there; without one the
//!   source starts [`lookback`](LokiSource::lookback) ago, and a cursor older than
//!   [`max_catch_up`](LokiSource::max_catch_up) is moved up to that (logged).
//! - Each line is taken in with [`Feed::ingest`] before the cursor moves past it.
//! - A 429 waits as its `Retry-After` says (at most 5 min), a 5xx or a network error
//!   backs off (1 s doubling to 1 min); another 4xx (a bad query, a refused token) or a
//!   metric query fails the source, which the healer starts again after its back-off.
//!   An answer that cannot be read, or an entry in it, is counted as malformed.
//! - A line becomes a signal through the same [`LineParser`] a
//!   `FileTail` (feature `file`) reads with (JSON, logfmt, plain text), so it
//!   gives the same message, level and fields from either source; then the stream's
//!   labels are fields, [`target_label`](LokiSource::target_label) (then
//!   `service_name`, `service`, `app`, `job`, `container`) names the target, and the
//!   timestamp is Loki's. The line's own level decides: below WARN it is skipped, as in a
//!   file. A line without one takes its `level`/`detected_level` label's (skipped below
//!   WARN), else counts as an error (the query chose it). Entries are read one by one:
//!   stack traces are not joined across entries (Loki keeps one line per entry).
//!
//! With [`follow_tail`](LokiSource::follow_tail) the source follows
//! `GET /loki/api/v1/tail` over a WebSocket instead of polling: lines arrive as Loki
//! takes them in, and become signals the same way.
//!
//! ```no_run
//! use selfheal_core::Healer;
//! use selfheal_sources::loki::LokiSource;
//!
//! # fn main() -> selfheal_core::Result<()> {
//! let loki = LokiSource::new("https://loki.example", r#"{namespace="prod"} |= "error""#)
//!     .follow_tail(true)
//!     .tenant("team-a")?; // sent on the WebSocket handshake too
//! let stats = loki.stats(); // entries Loki dropped, connections, frames
//! let healer = Healer::builder().source(loki).build()?;
//! # Ok(()) }
//! ```
//!
//! - Each connection starts at the stored cursor (inclusive; `start` is the cursor's
//!   timestamp, with [`limit`](LokiSource::limit)), so a restart or a reconnect resumes
//!   where the last one stopped, and what the cursor already read is skipped: nothing
//!   twice, nothing lost at a shared nanosecond. The cursor is saved after each frame.
//! - The handshake carries the same headers ([`header`](LokiSource::header),
//!   [`tenant`](LokiSource::tenant)) and must finish within
//!   [`timeout`](LokiSource::timeout). A closed or broken connection, no answer, a 429
//!   or a 5xx reconnects after a back-off (1 s doubling to 1 min, back to 1 s after a
//!   connection that delivered frames); another 4xx, or an answer that is not a
//!   WebSocket upgrade, fails the source, which the healer starts again after its
//!   back-off.
//! - A frame that is not Loki's JSON, or an entry in it, is counted as malformed; the
//!   entries Loki says it dropped (`dropped_entries`: the tail could not keep up) are
//!   counted in [`LokiStats::dropped_by_loki`] and logged at warn.
//! - `wss://` uses rustls as the poller's HTTP client does (the process's default
//!   crypto provider, else aws-lc-rs; the platform's certificate verifier).
//!   [`poll_every`](LokiSource::poll_every) and [`delay`](LokiSource::delay) do not
//!   apply.

mod answer;
mod cursor;
mod signal;
mod stats;
mod tail;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use selfheal_core::source::{Feed, Source};
use selfheal_core::{Error, ErrorKind, Result};
use tokio::sync::watch;

use crate::StatsWatch;
use crate::lines::LineParser;

pub use answer::{Answer, AnswerError, Entry, Labels, parse_query_range, parse_tail_frame};
pub use cursor::Cursor;
use signal::{Mapping, to_signal};
pub use stats::LokiStats;

/// The first wait after a failed poll; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The longest a 429's `Retry-After` is followed.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// The largest `limit` asked for (Loki's default `max_entries_limit_per_query`).
const MAX_LIMIT: u32 = 5_000;
/// How much of an error answer is quoted in the log.
const QUOTED: usize = 512;

/// A source that polls Loki, or follows its tail. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct LokiSource {
    name: String,
    url: String,
    query: String,
    limit: u32,
    poll_every: Duration,
    delay: Duration,
    lookback: Duration,
    max_catch_up: Duration,
    timeout: Duration,
    headers: HeaderMap,
    mapping: Mapping,
    tail: bool,
    stats: watch::Sender<LokiStats>,
}

impl LokiSource {
    /// Polls the Loki at `url` (`http://loki:3100`) with the LogQL log query `query`.
    ///
    /// Defaults: named `loki`, `limit` 1000, every 5 s, `delay` 2 s, `lookback` 1 min,
    /// `max_catch_up` 1 h, requests time out after 30 s, target label `service_name`,
    /// default target `loki`.
    pub fn new(url: impl Into<String>, query: impl Into<String>) -> Self {
        LokiSource {
            name: "loki".to_owned(),
            url: url.into().trim_end_matches('/').to_owned(),
            query: query.into(),
            limit: 1_000,
            poll_every: Duration::from_secs(5),
            delay: Duration::from_secs(2),
            lookback: Duration::from_secs(60),
            max_catch_up: Duration::from_secs(3_600),
            timeout: Duration::from_secs(30),
            headers: HeaderMap::new(),
            mapping: Mapping {
                target_label: "service_name".to_owned(),
                parser: LineParser::new("loki"),
            },
            tail: false,
            stats: watch::channel(LokiStats::default()).0,
        }
    }

    /// The source's name (default `loki`): unique per healer, and the key of its cursor.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The most entries per query (1 to 5000; default 1000).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit.clamp(1, MAX_LIMIT);
        self
    }

    /// The pause between polls that found everything (default 5 s).
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    /// How far behind now each query ends (default 2 s), so lines that reach Loki a
    /// little after their timestamp are still read. A line that arrives later than this
    /// after its own timestamp is missed: raise it when shippers batch longer.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Without a stored cursor, how far back the first query starts (default 1 min).
    pub fn lookback(mut self, lookback: Duration) -> Self {
        self.lookback = lookback;
        self
    }

    /// The oldest a stored cursor may be (default 1 h): after a longer stop the source
    /// starts this far back instead, and says so, rather than replaying old errors as
    /// if they were new.
    pub fn max_catch_up(mut self, max: Duration) -> Self {
        self.max_catch_up = max;
        self
    }

    /// How long one request may take (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The label that names a line's target (default `service_name`; then
    /// `service`, `app`, `job` and `container` are tried).
    pub fn target_label(mut self, label: impl Into<String>) -> Self {
        self.mapping.target_label = label.into();
        self
    }

    /// The target of lines no label names one for (default `loki`).
    pub fn default_target(mut self, target: impl Into<String>) -> Self {
        self.mapping.parser = LineParser::new(target);
        self
    }

    /// The tenant, sent as `X-Scope-OrgID` (multi-tenant Loki).
    pub fn tenant(self, tenant: &str) -> Result<Self> {
        self.header("x-scope-orgid", tenant)
    }

    /// A header sent with every request (`Authorization`, say: read its value from the
    /// environment or a secret store, never from code). Refused when the name or value
    /// is not a valid header.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| Error::invalid(format!("`{name}` is not a header name: {e}")))?;
        let mut value = HeaderValue::from_str(value)
            .map_err(|e| Error::invalid(format!("the value of `{name}` is not valid: {e}")))?;
        value.set_sensitive(true);
        self.headers.insert(name, value);
        Ok(self)
    }

    /// Follows `GET /loki/api/v1/tail` over a WebSocket instead of polling
    /// `query_range` (default `false`): lines reach the healer as Loki takes them in.
    /// Cursor, headers, tenant, `limit`, `lookback`, `max_catch_up`, `timeout` (of the
    /// handshake) and the mapping to signals apply alike; see the [module docs](self).
    pub fn follow_tail(mut self, follow: bool) -> Self {
        self.tail = follow;
        self
    }

    /// What the source has done, updated as it goes: wait on it
    /// (`stats.wait_for(|s| s.signals >= 3).await`) rather than sleeping. What it
    /// hands back are copies: keep them as long as you like. Clones of the source
    /// share one set of counts.
    pub fn stats(&self) -> StatsWatch<LokiStats> {
        StatsWatch::new(self.stats.subscribe())
    }

    /// The signal `entry` becomes, or `None` when its level is below warn (see the
    /// [module docs](self)).
    pub fn to_signal(&self, entry: &Entry) -> Option<selfheal_core::Signal> {
        to_signal(entry, &self.mapping)
    }

    /// One `query_range` request from `cursor` to `end`.
    async fn query(&self, client: &reqwest::Client, cursor: &Cursor, end: i64, limit: u32) -> Poll {
        let url = format!("{}/loki/api/v1/query_range", self.url);
        let sent = client
            .get(&url)
            .headers(self.headers.clone())
            .query(&[
                ("query", self.query.as_str()),
                ("start", &cursor.ts.to_string()),
                ("end", &end.to_string()),
                ("limit", &limit.to_string()),
                ("direction", "forward"),
            ])
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Poll::Unavailable(format!("no answer from {url}: {e}")),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => return Poll::Unavailable(format!("the answer of {url} broke off: {e}")),
        };
        match status {
            StatusCode::OK => match parse_query_range(&body) {
                Ok(answer) => Poll::Page(answer),
                Err(e @ AnswerError::Unreadable(_)) => Poll::Unreadable(e.to_string()),
                Err(e) => Poll::Fatal(e.to_string()),
            },
            StatusCode::TOO_MANY_REQUESTS => Poll::Throttled(retry_after),
            s if s.is_server_error() => {
                Poll::Unavailable(format!("{url} answered {s}: {}", quote(&body)))
            }
            s => Poll::Fatal(format!("{url} answered {s}: {}", quote(&body))),
        }
    }

    /// Where polling starts: the stored cursor, moved up to `max_catch_up` ago; else
    /// `lookback` ago.
    async fn start(&self, feed: &Feed) -> Cursor {
        let now = now_ns();
        let oldest = now.saturating_sub(nanos(self.max_catch_up));
        let stored = feed.cursor().await.and_then(|v| {
            serde_json::from_value::<Cursor>(v)
                .inspect_err(|e| {
                    tracing::warn!(source = feed.name(), error = %e, "the stored Loki cursor is unreadable; starting without it");
                })
                .ok()
        });
        match stored {
            Some(c) if c.ts >= oldest => c,
            Some(c) => {
                tracing::warn!(
                    source = feed.name(),
                    behind = ?Duration::from_nanos(now.saturating_sub(c.ts).max(0) as u64),
                    max_catch_up = ?self.max_catch_up,
                    "the stored Loki cursor is older than max_catch_up; older lines are skipped"
                );
                Cursor::at(oldest)
            }
            None => Cursor::at(now.saturating_sub(nanos(self.lookback))),
        }
    }
}

/// How one poll went.
enum Poll {
    /// An answer to read.
    Page(Answer),
    /// 429: wait this long (or back off).
    Throttled(Option<Duration>),
    /// 5xx or no answer: back off.
    Unavailable(String),
    /// 200 but not a Loki answer: counted malformed, back off.
    Unreadable(String),
    /// A refusal retrying will not fix: fail the source.
    Fatal(String),
}

#[async_trait]
impl Source for LokiSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, feed: Feed) -> Result<()> {
        if self.tail {
            return self.run_tail(&feed).await;
        }
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| Error::new(ErrorKind::Internal, format!("an HTTP client: {e}")))?;
        let mut cursor = self.start(&feed).await;
        let mut saved = cursor.clone();
        let mut backoff = FIRST_BACKOFF;
        let mut limit = self.limit;
        loop {
            let end = now_ns().saturating_sub(nanos(self.delay));
            let wait = if end <= cursor.ts {
                self.poll_every
            } else {
                match self.query(&client, &cursor, end, limit).await {
                    Poll::Page(answer) => {
                        backoff = FIRST_BACKOFF;
                        let full = answer.total >= limit as usize;
                        let before = cursor.clone();
                        let Some(()) = self.take(&feed, answer, &mut cursor, None).await else {
                            self.save(&feed, &cursor, &mut saved).await;
                            return Ok(());
                        };
                        if !full {
                            cursor.complete_until(end);
                        } else if cursor == before {
                            // A full page of entries already read: more than `limit`
                            // share the cursor's nanosecond.
                            limit = self.widen(limit, &mut cursor);
                        }
                        self.save(&feed, &cursor, &mut saved).await;
                        if full {
                            Duration::ZERO
                        } else {
                            limit = self.limit;
                            self.poll_every
                        }
                    }
                    Poll::Throttled(after) => {
                        // Loki said how long; without that, back off.
                        let wait = after.map_or(backoff, |a| a.min(MAX_RETRY_AFTER));
                        if after.is_none() {
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                        tracing::warn!(source = feed.name(), retry_in = ?wait, "Loki is rate limiting (429)");
                        wait
                    }
                    Poll::Unavailable(why) => {
                        tracing::warn!(source = feed.name(), error = %why, retry_in = ?backoff, "Loki is unavailable");
                        let wait = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        wait
                    }
                    Poll::Unreadable(why) => {
                        feed.malformed(&why);
                        let wait = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        wait
                    }
                    Poll::Fatal(why) => return Err(Error::invalid(why)),
                }
            };
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = feed.stopped() => return Ok(()),
                }
            }
        }
    }
}

impl LokiSource {
    /// Hands the new entries of `answer` to the healer in timestamp order, moving
    /// `cursor` past each; `None` when the healer stopped. An entry is new when
    /// `read_before` (else `cursor`) has not read it.
    async fn take(
        &self,
        feed: &Feed,
        mut answer: Answer,
        cursor: &mut Cursor,
        read_before: Option<&Cursor>,
    ) -> Option<()> {
        for why in &answer.malformed {
            feed.malformed(why);
        }
        // Streams come one after the other; the cursor needs one timeline (stable, so
        // entries of one nanosecond keep Loki's order).
        answer.entries.sort_by_key(|e| e.ts);
        for entry in &answer.entries {
            if !read_before.unwrap_or(cursor).is_new(entry) {
                continue;
            }
            if let Some(signal) = self.to_signal(entry) {
                feed.ingest(signal).await.ok()?;
                self.stats.send_modify(|s| s.signals += 1);
            }
            cursor.read(entry);
        }
        Some(())
    }

    /// A full page made no progress: asks for more next time, or, at the largest
    /// limit, skips the rest of that nanosecond (logged).
    fn widen(&self, limit: u32, cursor: &mut Cursor) -> u32 {
        if limit < MAX_LIMIT {
            return (limit * 2).min(MAX_LIMIT);
        }
        tracing::warn!(
            source = %self.name,
            ts = cursor.ts,
            limit,
            "more Loki entries share one nanosecond than one query may return; the rest of them are skipped"
        );
        *cursor = Cursor::at(cursor.ts.saturating_add(1));
        limit
    }

    /// Saves `cursor` unless it is the one `saved` last.
    async fn save(&self, feed: &Feed, cursor: &Cursor, saved: &mut Cursor) {
        if cursor == saved {
            return;
        }
        let value = match serde_json::to_value(cursor) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(source = feed.name(), error = %e, "the Loki cursor could not be written as JSON");
                return;
            }
        };
        match feed.save_cursor(&value).await {
            Ok(()) => {
                saved.clone_from(cursor);
                self.stats.send_modify(|s| s.cursor_saves += 1);
            }
            Err(e) => {
                tracing::warn!(source = feed.name(), error = %e, "could not save the Loki cursor; a restart reads again from the last saved one")
            }
        }
    }
}

/// A 429's `Retry-After`: seconds, or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// The start of an error answer, for the log.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(QUOTED)]);
    text.trim().to_owned()
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(
            wait > Duration::from_secs(80) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn bad_headers_are_refused_with_a_reason() {
        let err = LokiSource::new("http://loki", "{a=\"b\"}")
            .header("bad header", "x")
            .unwrap_err();
        assert!(err.to_string().contains("not a header name"), "{err}");
        assert!(
            LokiSource::new("http://loki", "{}")
                .tenant("team\n")
                .is_err()
        );
    }
}
