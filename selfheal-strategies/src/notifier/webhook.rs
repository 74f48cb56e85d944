//! [`WebhookNotifier`]: posts each notification as a JSON document to a URL.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use reqwest::header::{HeaderName, HeaderValue};
use selfheal_core::{Error, Notification, Notifier, Result};
use tracing::{debug, instrument};

use super::{DEFAULT_TIMEOUT, client, parse_http_url, redacted, send};

/// Posts each notification to a URL as JSON (`Content-Type: application/json`):
///
/// ```json
/// {"source": "selfheal", "service": "checkout-api", "event_type": "self_heal.escalated",
///  "title": "…", "body": "…", "incident": "<uuid or null>",
///  "links": [{"label": "Approve", "url": "…"}, …], "sent_at": "<RFC 3339>"}
/// ```
///
/// Extra headers (an API key your receiver expects) are set with
/// [`header`](WebhookNotifier::header) or [`bearer`](WebhookNotifier::bearer); their
/// values never show in `Debug` or in errors. With a
/// [`signing_secret`](WebhookNotifier::signing_secret) every request carries
/// `X-Selfheal-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact body, so the
/// receiver can check it came from you and was not changed. Errors are classified like
/// [`NtfyNotifier`](crate::NtfyNotifier)'s: 5xx, 429, timeouts and unreachable
/// servers are retryable.
///
/// ```
/// use selfheal_strategies::WebhookNotifier;
/// # fn main() -> selfheal_core::Result<()> {
/// let hook = WebhookNotifier::new("https://hooks.example.com/selfheal")?
///     .service("checkout-api")
///     .header("X-Api-Key", "not-a-real-key")?;
/// assert!(!format!("{hook:?}").contains("not-a-real-key"));
/// // Header names and values are checked when set, not when the first alert goes out.
/// assert!(WebhookNotifier::new("https://hooks.example.com/")?.header("bad name", "x").is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WebhookNotifier {
    url: reqwest::Url,
    service: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    secret: Option<Vec<u8>>,
    timeout: Duration,
    client: reqwest::Client,
}

/// The header carrying the body's HMAC-SHA256 when a signing secret is set.
pub const SIGNATURE_HEADER: &str = "x-selfheal-signature";

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`.
fn signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret)
        .expect("HMAC accepts any key length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

impl WebhookNotifier {
    /// Posts to `url` (http or https).
    pub fn new(url: impl AsRef<str>) -> Result<Self> {
        Ok(WebhookNotifier {
            url: parse_http_url(url.as_ref(), "webhook")?,
            service: String::new(),
            headers: Vec::new(),
            secret: None,
            timeout: DEFAULT_TIMEOUT,
            client: client()?,
        })
    }

    /// The service name put in every document (default empty).
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    /// Adds a header to every request. Its value is treated as a secret.
    ///
    /// Errors: `InvalidInput` for a name or value HTTP does not allow.
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Result<Self> {
        let name_str = name.as_ref();
        let name = HeaderName::from_bytes(name_str.as_bytes()).map_err(|e| {
            Error::invalid(format!(
                "invalid webhook header name `{name_str}`: {e}; use letters, digits and `-`"
            ))
        })?;
        let mut value = HeaderValue::from_str(value.as_ref()).map_err(|_| {
            Error::invalid(format!(
                "invalid value for webhook header `{name}`: only visible ASCII and spaces are allowed"
            ))
        })?;
        value.set_sensitive(true);
        self.headers.push((name, value));
        Ok(self)
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn bearer(self, token: impl AsRef<str>) -> Result<Self> {
        self.header("authorization", format!("Bearer {}", token.as_ref()))
    }

    /// Signs every body: `X-Selfheal-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.
    pub fn signing_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// How long one request may take (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The JSON document posted for `notification`.
    pub fn payload(&self, notification: &Notification) -> serde_json::Value {
        serde_json::json!({
            "source": "selfheal",
            "service": self.service,
            "event_type": notification.event_type,
            "title": notification.title,
            "body": notification.body,
            "incident": notification.incident,
            "links": notification.links,
            "sent_at": Utc::now().to_rfc3339(),
        })
    }
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("url", &redacted(&self.url))
            .field("service", &self.service)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| format!("{n}: <redacted>"))
                    .collect::<Vec<_>>(),
            )
            .field("signed", &self.secret.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        "webhook"
    }

    #[instrument(skip_all, fields(url = %redacted(&self.url), event = %notification.event_type), err)]
    async fn notify(&self, notification: &Notification) -> Result<()> {
        let body = serde_json::to_vec(&self.payload(notification))
            .map_err(|e| Error::invalid(format!("could not encode the notification: {e}")))?;
        let signed = self.secret.as_deref().map(|s| signature(s, &body));
        let mut request = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(signed) = signed {
            request = request.header(SIGNATURE_HEADER, signed);
        }
        for (name, value) in &self.headers {
            request = request.header(name.clone(), value.clone());
        }
        send("webhook", &self.url, request).await?;
        debug!("webhook delivered");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use selfheal_core::ErrorKind;
    use uuid::Uuid;

    use super::*;
    use crate::notifier::testserver::serve;

    fn notification() -> Notification {
        Notification {
            title: "selfheal: action on postgres queued".into(),
            body: "The global rate limit of actions is reached.".into(),
            incident: Some(Uuid::from_u128(7)),
            event_type: "self_heal.queued".into(),
            links: Vec::new(),
        }
    }

    #[tokio::test]
    async fn posts_the_documented_json_with_the_configured_headers() {
        let (addr, mut requests) = serve(204, "").await;
        let hook = WebhookNotifier::new(format!("http://{addr}/hooks/selfheal?team=sre"))
            .unwrap()
            .service("checkout-api")
            .header("X-Api-Key", "k-123")
            .unwrap()
            .bearer("t-456")
            .unwrap();

        let before = Utc::now();
        hook.notify(&notification()).await.unwrap();

        let request = requests.recv().await.unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hooks/selfheal?team=sre");
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(request.headers["x-api-key"], "k-123");
        assert_eq!(request.headers["authorization"], "Bearer t-456");
        let mut json = request.json();
        let sent_at = json["sent_at"].take();
        let sent_at = chrono::DateTime::parse_from_rfc3339(sent_at.as_str().unwrap()).unwrap();
        assert!(sent_at >= before, "{sent_at} < {before}");
        assert_eq!(
            json,
            serde_json::json!({
                "source": "selfheal",
                "service": "checkout-api",
                "event_type": "self_heal.queued",
                "title": "selfheal: action on postgres queued",
                "body": "The global rate limit of actions is reached.",
                "incident": "00000000-0000-0000-0000-000000000007",
                "links": [],
                "sent_at": null,
            })
        );
    }

    #[tokio::test]
    async fn a_signed_request_carries_the_hmac_of_the_exact_body() {
        use hmac::{KeyInit, Mac};
        let (addr, mut requests) = serve(200, "").await;
        let hook = WebhookNotifier::new(format!("http://{addr}/in"))
            .unwrap()
            .signing_secret("whsec-test");
        assert!(!format!("{hook:?}").contains("whsec-test"));

        hook.notify(&notification()).await.unwrap();

        let request = requests.recv().await.unwrap();
        let header = &request.headers[SIGNATURE_HEADER];
        let hex = header.strip_prefix("sha256=").expect("sha256= prefix");
        let tag: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        // What a receiver does: recompute over the body it got, compare in constant time.
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"whsec-test").unwrap();
        mac.update(&request.body);
        mac.verify_slice(&tag)
            .expect("the signature matches the body");
        let mut other = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"wrong").unwrap();
        other.update(&request.body);
        assert!(other.verify_slice(&tag).is_err());
    }

    #[tokio::test]
    async fn a_404_is_an_error_that_says_to_check_the_url() {
        let (addr, _requests) = serve(404, "no such hook").await;
        let hook = WebhookNotifier::new(format!("http://{addr}/nope"))
            .unwrap()
            .header("X-Api-Key", "k-secret")
            .unwrap();
        let err = hook.notify(&notification()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("HTTP 404"), "{err}");
        assert!(err.message().contains("no such hook"), "{err}");
        assert!(!err.to_string().contains("k-secret"));
    }

    #[tokio::test]
    async fn a_429_is_retryable() {
        let (addr, _requests) = serve(429, "slow down").await;
        let hook = WebhookNotifier::new(format!("http://{addr}/")).unwrap();
        let err = hook.notify(&notification()).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }

    #[test]
    fn bad_headers_and_urls_are_refused_up_front() {
        assert!(WebhookNotifier::new("not a url").is_err());
        let hook = WebhookNotifier::new("https://example.com/").unwrap();
        assert!(hook.clone().header("bad name", "v").is_err());
        assert!(hook.header("x-ok", "line\nbreak").is_err());
    }
}
