//! Alertmanager's webhook receiver (feature `alertmanager`): each firing alert becomes
//! a signal, and each resolved one ends the error stream of its target, so a fix on it
//! verifies on the alert's resolution.
//!
//! ```no_run
//! use selfheal_core::Healer;
//! use selfheal_sources::alertmanager::Alertmanager;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let alerts = Alertmanager::new();
//! let healer = Healer::builder().source(alerts.clone()).build()?;
//! let running = healer.spawn();
//! // Alertmanager: `webhook_configs: [{url: "http://host:8080/hooks/alertmanager", send_resolved: true}]`
//! // `nest_service` answers `/hooks/alertmanager` and `/hooks/alertmanager/` alike.
//! let app = axum::Router::new().nest_service("/hooks/alertmanager", alerts.router());
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! The receiver is a [`Source`] of the healer: add it with `HealerBuilder::source`, and
//! it takes notifications while the healer runs (503 before `spawn` and after
//! shutdown, which Alertmanager retries). Its counters are in `Healer::sources`.
//! The admin router mounts it too, at `POST /api/alerts/alertmanager` behind the
//! admin's bearer tokens (`AdminConfig::alertmanager`, both features on).
//!
//! For each alert of a notification (version 4 of the payload; one signal per alert,
//! however they were grouped):
//!
//! - the target is its first label of [`target_labels`](Alertmanager::target_labels)
//!   (default `service`, `job`, `instance`), else
//!   [`default_target`](Alertmanager::default_target) (`alertmanager`);
//! - **firing**: [`Healer::external_firing`](selfheal_core::Healer::external_firing)
//!   marks it on its target, and a [`SignalSource::External`] signal is taken in with
//!   `Feed::ingest` before the answer: message `alertname: summary` (else
//!   `description`, else the alert name alone), the labels as fields plus
//!   `alert.fingerprint`, `alert.receiver` and `alert.generator_url`, the level from the
//!   `severity` label (`warning`, `info` and the like are warnings, the rest errors),
//!   the time `startsAt`;
//! - **resolved**: [`Healer::external_resolved`](selfheal_core::Healer::external_resolved):
//!   while an alert on a target fires its fix does not verify, and once every alert on it
//!   resolved the errors count as stopped.
//!
//! Alertmanager sends an alert once per `group_interval` change and again only every
//! `repeat_interval`, so an alert is one signal, and one is enough: an
//! [`External`](SignalSource::External) signal that a pattern matches meets the
//! pattern's occurrence threshold (`threshold(n, ..)`, 5 by default) on its own, as
//! Alertmanager's `for:` already decided it is an alert. The pattern needs only to
//! match it (`regex("^RedisDown")`); an alert no pattern matches counts like any signal
//! (`detection.default_min_occurrences`).
//!
//! A body that is not such a payload (a missing field, a wrong type, another version)
//! is answered 400 with what is wrong, counted as malformed, and changes nothing.

mod payload;

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use selfheal_core::source::{Feed, Source};
use selfheal_core::{Level, Signal, SignalSource};
use serde::Serialize;

pub use payload::{Alert, AlertStatus, VERSION, Webhook, parse};

/// Alertmanager's webhook receiver: a [`Source`] of the healer and an axum handler.
/// Cheap to clone: clones share the receiver. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Alertmanager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    target_labels: Vec<String>,
    default_target: String,
    /// The feed of the running healer; `None` before `spawn` and after shutdown.
    feed: RwLock<Option<Feed>>,
}

/// What a notification did: the answer to Alertmanager.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// Firing alerts taken in as signals.
    pub firing: usize,
    /// Resolved alerts handed to the healer.
    pub resolved: usize,
    /// Alerts Alertmanager left out of the notification (`max_alerts`).
    pub truncated: u64,
}

/// Why a notification was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Not a version 4 payload: what is wrong (answered 400, counted as malformed).
    Malformed(String),
    /// The healer is not running (answered 503: Alertmanager retries).
    NotRunning,
}

impl Refusal {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
            Refusal::NotRunning => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Malformed(why) => write!(f, "not an Alertmanager webhook payload: {why}"),
            Refusal::NotRunning => f.write_str(
                "the healer is not running (not spawned yet, or shutting down); retry later",
            ),
        }
    }
}

impl std::error::Error for Refusal {}

impl Default for Alertmanager {
    fn default() -> Self {
        Self::new()
    }
}

impl Alertmanager {
    /// A receiver named `alertmanager`, target labels `service`, `job`, `instance`,
    /// default target `alertmanager`.
    pub fn new() -> Self {
        Alertmanager {
            inner: Arc::new(Inner {
                name: "alertmanager".to_owned(),
                target_labels: ["service", "job", "instance"].map(str::to_owned).to_vec(),
                default_target: "alertmanager".to_owned(),
                feed: RwLock::new(None),
            }),
        }
    }

    /// The source's name (default `alertmanager`), unique per healer.
    pub fn named(self, name: impl Into<String>) -> Self {
        self.with(|i| i.name = name.into())
    }

    /// The labels that name an alert's target, tried in order.
    pub fn target_labels<I, S>(self, labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let labels = labels.into_iter().map(Into::into).collect();
        self.with(|i| i.target_labels = labels)
    }

    /// The target of alerts without any of the target labels.
    pub fn default_target(self, target: impl Into<String>) -> Self {
        self.with(|i| i.default_target = target.into())
    }

    /// Changes the settings of a receiver no clone of which was made yet.
    fn with(mut self, change: impl FnOnce(&mut Inner)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => change(inner),
            None => {
                let mut inner = Inner {
                    name: self.inner.name.clone(),
                    target_labels: self.inner.target_labels.clone(),
                    default_target: self.inner.default_target.clone(),
                    feed: RwLock::new(None),
                };
                change(&mut inner);
                self.inner = Arc::new(inner);
            }
        }
        self
    }

    /// An axum router with `POST /` taking the webhook, to mount where Alertmanager's
    /// `webhook_configs.url` points. It answers 200 with a [`Receipt`], 400 to a body
    /// that is not a payload, 503 while the healer is not running; errors as
    /// `{"error": "..."}`.
    ///
    /// Mount it with `Router::nest_service(path, alerts.router())`: that answers the
    /// path with and without a trailing slash (`/hooks/alertmanager` and
    /// `/hooks/alertmanager/`). `Router::nest` answers only the path exactly as given
    /// (axum's rule for a nested `/`), so a `webhook_configs.url` ending in `/` would
    /// get a 404.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/", post(webhook))
            .with_state(self.clone())
    }

    /// Takes one notification (the request body): for hosts that mount it their own
    /// way. Answers once every firing alert was taken in by the healer.
    pub async fn receive(&self, body: &[u8]) -> Result<Receipt, Refusal> {
        let feed = self
            .inner
            .feed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(Refusal::NotRunning)?;
        let webhook = parse(body).map_err(|why| {
            feed.malformed(&why);
            Refusal::Malformed(why)
        })?;
        if webhook.truncated_alerts > 0 {
            tracing::warn!(
                source = feed.name(),
                group = %webhook.group_key,
                truncated = webhook.truncated_alerts,
                "Alertmanager left alerts out of this notification (the receiver's max_alerts)"
            );
        }
        let healer = feed.healer();
        let mut receipt = Receipt {
            truncated: webhook.truncated_alerts,
            ..Receipt::default()
        };
        for alert in &webhook.alerts {
            let target = self.target_of(alert);
            match alert.status {
                AlertStatus::Resolved => {
                    healer.external_resolved(&target, &alert.fingerprint);
                    receipt.resolved += 1;
                }
                AlertStatus::Firing => {
                    healer.external_firing(&target, &alert.fingerprint);
                    let signal = alert_signal(alert, &webhook, target);
                    feed.ingest(signal).await.map_err(|_| Refusal::NotRunning)?;
                    receipt.firing += 1;
                }
            }
        }
        tracing::debug!(
            source = feed.name(),
            firing = receipt.firing,
            resolved = receipt.resolved,
            "Alertmanager notification taken"
        );
        Ok(receipt)
    }

    /// The target of `alert`: its first target label, else the default target.
    pub fn target_of(&self, alert: &Alert) -> String {
        self.inner
            .target_labels
            .iter()
            .find_map(|l| alert.labels.get(l).filter(|v| !v.is_empty()))
            .unwrap_or(&self.inner.default_target)
            .clone()
    }
}

impl Alertmanager {
    /// The signal a firing `alert` of `webhook` becomes (see the [module docs](self)).
    pub fn signal(&self, alert: &Alert, webhook: &Webhook) -> Signal {
        alert_signal(alert, webhook, self.target_of(alert))
    }
}

fn alert_signal(alert: &Alert, webhook: &Webhook, target: String) -> Signal {
    let name = alert.labels.get("alertname").filter(|n| !n.is_empty());
    let text = ["summary", "description"]
        .iter()
        .find_map(|k| alert.annotations.get(*k).filter(|t| !t.is_empty()));
    let message = match (name, text) {
        (Some(name), Some(text)) => format!("{name}: {text}"),
        (Some(name), None) => name.clone(),
        (None, Some(text)) => text.clone(),
        (None, None) => format!("alert {}", alert.fingerprint),
    };
    let level = match alert.labels.get("severity").map(|s| s.to_ascii_lowercase()) {
        Some(s)
            if matches!(
                s.as_str(),
                "warning" | "warn" | "info" | "notice" | "low" | "minor" | "none"
            ) =>
        {
            Level::Warn
        }
        _ => Level::Error,
    };
    let mut signal = Signal::new(target, message)
        .source(SignalSource::External)
        .level(level);
    signal.fields.extend(alert.labels.clone());
    signal
        .fields
        .insert("alert.fingerprint".to_owned(), alert.fingerprint.clone());
    if !webhook.receiver.is_empty() {
        signal
            .fields
            .insert("alert.receiver".to_owned(), webhook.receiver.clone());
    }
    if !alert.generator_url.is_empty() {
        signal.fields.insert(
            "alert.generator_url".to_owned(),
            alert.generator_url.clone(),
        );
    }
    signal.timestamp = alert.starts_at;
    signal
}

/// `POST /`: a notification.
async fn webhook(State(receiver): State<Alertmanager>, body: Bytes) -> Response {
    match receiver.receive(&body).await {
        Ok(receipt) => (StatusCode::OK, axum::Json(receipt)).into_response(),
        Err(refusal) => (
            refusal.status(),
            axum::Json(serde_json::json!({ "error": refusal.to_string() })),
        )
            .into_response(),
    }
}

#[async_trait]
impl Source for Alertmanager {
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// Lends the feed to the handler while the healer runs.
    async fn run(&self, feed: Feed) -> selfheal_core::Result<()> {
        let stopped = feed.stopped();
        let _lent = Lent::new(&self.inner.feed, feed);
        stopped.await;
        Ok(())
    }
}

/// The feed lent to the handler, taken back when `run` ends or is dropped at shutdown
/// (the feed holds the healer, which holds this receiver).
struct Lent<'a>(&'a RwLock<Option<Feed>>);

impl<'a> Lent<'a> {
    fn new(slot: &'a RwLock<Option<Feed>>, feed: Feed) -> Self {
        *slot.write().unwrap_or_else(|e| e.into_inner()) = Some(feed);
        Lent(slot)
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
