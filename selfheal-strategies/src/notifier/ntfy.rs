//! [`NtfyNotifier`]: publishes notifications to an ntfy server.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use selfheal_core::{Error, Notification, Notifier, Result};
use tracing::{debug, instrument};

use super::{DEFAULT_TIMEOUT, client, parse_http_url, redacted, send};

/// Publishes each notification to an [ntfy](https://ntfy.sh) topic, as ntfy's JSON
/// publishing API expects: `POST <server>/` with
/// `{"topic", "title", "message", "priority", "tags"}`.
///
/// - **Priority**: 4 (high) for escalations, failures, storms, a tripped breaker,
///   masking and expired approvals; 3 (default) for everything else.
/// - **Tags**: `selfheal` and the event type (`self_heal.escalated`, …) so a client can
///   filter; the incident id goes into the message's last line.
/// - **Auth**: [`token`](NtfyNotifier::token) sends `Authorization: Bearer <token>`;
///   the token never shows in `Debug` or in errors.
/// - **Errors**: 5xx, 429, timeouts and unreachable servers are retryable
///   (`Unavailable`/`Timeout`); other non-2xx answers are `InvalidInput` with ntfy's
///   answer in the message. The healer logs a failed notification and goes on.
///
/// ```
/// use selfheal_strategies::NtfyNotifier;
/// # fn main() -> selfheal_core::Result<()> {
/// let ntfy = NtfyNotifier::new("https://ntfy.sh", "checkout-api-alerts")?
///     .token("tk_not_a_real_token");
/// assert!(!format!("{ntfy:?}").contains("tk_not_a_real_token"));
/// // Topics are URL path segments: anything else is refused up front.
/// assert!(NtfyNotifier::new("https://ntfy.sh", "bad topic/../x").is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NtfyNotifier {
    server: reqwest::Url,
    topic: String,
    token: Option<String>,
    timeout: Duration,
    client: reqwest::Client,
}

impl NtfyNotifier {
    /// Publishes to `topic` on the ntfy server at `server` (e.g. `https://ntfy.sh`).
    ///
    /// Errors: [`ErrorKind::InvalidInput`](selfheal_core::ErrorKind::InvalidInput) for a
    /// URL that is not http(s) or a topic that is not 1-64 of `A-Z a-z 0-9 _ -`.
    pub fn new(server: impl AsRef<str>, topic: impl Into<String>) -> Result<Self> {
        let server = parse_http_url(server.as_ref(), "ntfy server")?;
        let topic = topic.into();
        if topic.is_empty()
            || topic.len() > 64
            || !topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::invalid(format!(
                "invalid ntfy topic `{topic}`: use 1 to 64 letters, digits, `_` or `-`"
            )));
        }
        Ok(NtfyNotifier {
            server,
            topic,
            token: None,
            timeout: DEFAULT_TIMEOUT,
            client: client()?,
        })
    }

    /// An access token for a protected topic, sent as `Authorization: Bearer <token>`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// How long one publish may take (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The topic published to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The JSON document published for `notification`.
    pub fn payload(&self, notification: &Notification) -> serde_json::Value {
        let mut message = notification.body.clone();
        if let Some(id) = notification.incident {
            if !message.is_empty() {
                message.push('\n');
            }
            message.push_str(&format!("incident {id}"));
        }
        let mut payload = serde_json::json!({
            "topic": self.topic,
            "title": notification.title,
            "message": message,
            "priority": priority(&notification.event_type),
            "tags": ["selfheal", notification.event_type],
        });
        // Approve / Reject buttons: each opens the admin router's confirmation page.
        if !notification.links.is_empty() {
            let actions: Vec<_> = notification
                .links
                .iter()
                .map(|l| serde_json::json!({"action": "view", "label": l.label, "url": l.url}))
                .collect();
            payload["actions"] = serde_json::Value::Array(actions);
        }
        payload
    }
}

/// ntfy's priority (1-5) for an audit event type.
fn priority(event_type: &str) -> u8 {
    const URGENT: &[&str] = &[
        "escalated",
        "failed",
        "storm_tripped",
        "breaker_tripped",
        "masking",
        "approval_expired",
    ];
    let name = event_type.strip_prefix("self_heal.").unwrap_or(event_type);
    if URGENT.contains(&name) { 4 } else { 3 }
}

impl fmt::Debug for NtfyNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NtfyNotifier")
            .field("server", &redacted(&self.server))
            .field("topic", &self.topic)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Notifier for NtfyNotifier {
    fn name(&self) -> &str {
        "ntfy"
    }

    #[instrument(skip_all, fields(topic = %self.topic, event = %notification.event_type), err)]
    async fn notify(&self, notification: &Notification) -> Result<()> {
        let body = serde_json::to_vec(&self.payload(notification))
            .map_err(|e| Error::invalid(format!("could not encode the notification: {e}")))?;
        let mut request = self
            .client
            .post(self.server.clone())
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        send("ntfy", &self.server, request).await?;
        debug!("published to ntfy");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use selfheal_core::ErrorKind;
    use uuid::Uuid;

    use super::*;
    use crate::notifier::testserver::serve;

    fn escalation() -> Notification {
        Notification {
            title: "selfheal: redis_oom on redis-cache escalated".into(),
            body: "3 attempts failed — héalth 12".into(),
            incident: Some(Uuid::nil()),
            event_type: "self_heal.escalated".into(),
            links: Vec::new(),
        }
    }

    #[tokio::test]
    async fn publishes_json_to_the_server_root_with_the_bearer_token() {
        let (addr, mut requests) = serve(200, "{}").await;
        let ntfy = NtfyNotifier::new(format!("http://{addr}"), "ops-alerts")
            .unwrap()
            .token("tk_test_only");

        ntfy.notify(&escalation()).await.unwrap();

        let request = requests.recv().await.unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/");
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(request.headers["authorization"], "Bearer tk_test_only");
        assert_eq!(
            request.json(),
            serde_json::json!({
                "topic": "ops-alerts",
                "title": "selfheal: redis_oom on redis-cache escalated",
                "message": "3 attempts failed — héalth 12\nincident 00000000-0000-0000-0000-000000000000",
                "priority": 4,
                "tags": ["selfheal", "self_heal.escalated"],
            })
        );
    }

    #[tokio::test]
    async fn approval_links_become_view_action_buttons() {
        let (addr, mut requests) = serve(200, "{}").await;
        let ntfy = NtfyNotifier::new(format!("http://{addr}"), "ops").unwrap();
        let mut n = escalation();
        n.links = vec![selfheal_core::NotificationLink {
            label: "Approve".into(),
            url: "https://ops.example.com/selfheal/links/t0ken".into(),
        }];
        ntfy.notify(&n).await.unwrap();
        let json = requests.recv().await.unwrap().json();
        assert_eq!(
            json["actions"],
            serde_json::json!([{"action": "view", "label": "Approve",
                "url": "https://ops.example.com/selfheal/links/t0ken"}])
        );
    }

    #[tokio::test]
    async fn routine_events_get_the_default_priority_and_no_auth_header() {
        let (addr, mut requests) = serve(200, "{}").await;
        let ntfy = NtfyNotifier::new(format!("http://{addr}/"), "ops").unwrap();
        let mut n = escalation();
        n.event_type = "self_heal.queued".into();
        n.incident = None;

        ntfy.notify(&n).await.unwrap();

        let request = requests.recv().await.unwrap();
        assert!(!request.headers.contains_key("authorization"));
        let json = request.json();
        assert_eq!(json["priority"], 3);
        assert_eq!(json["message"], "3 attempts failed — héalth 12");
    }

    #[tokio::test]
    async fn a_refusal_is_an_error_with_the_servers_answer_and_no_token() {
        let (addr, _requests) = serve(403, "forbidden: topic reserved").await;
        let ntfy = NtfyNotifier::new(format!("http://{addr}"), "ops")
            .unwrap()
            .token("tk_secret_value");
        let err = ntfy.notify(&escalation()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("HTTP 403"), "{err}");
        assert!(err.message().contains("forbidden: topic reserved"), "{err}");
        assert!(err.message().contains("check the token"), "{err}");
        assert!(!err.to_string().contains("tk_secret_value"));
    }

    #[tokio::test]
    async fn a_server_error_is_retryable() {
        let (addr, _requests) = serve(503, "").await;
        let ntfy = NtfyNotifier::new(format!("http://{addr}"), "ops").unwrap();
        let err = ntfy.notify(&escalation()).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_retryable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let ntfy = NtfyNotifier::new(format!("http://{addr}"), "ops").unwrap();
        let err = ntfy.notify(&escalation()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    }

    #[test]
    fn bad_servers_and_topics_are_refused() {
        assert!(NtfyNotifier::new("ntfy.sh", "ops").is_err());
        assert!(NtfyNotifier::new("ftp://ntfy.sh", "ops").is_err());
        for topic in ["", "a b", "a/b", "ü", &"x".repeat(65)] {
            let err = NtfyNotifier::new("https://ntfy.sh", topic).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{topic}");
        }
    }
}
