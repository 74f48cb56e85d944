//! The HTTP side shared by the providers: one POST of JSON with a timeout, retries
//! with exponential back-off that honour `Retry-After`, the token budget, and the
//! mapping of statuses and bodies to [`LlmError`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{LlmError, Redactor, TokenBudget};

/// An API key. Its `Debug` and `Display` never show it; it is sent only in the
/// `Authorization` header.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps `key`.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// Whether no key was given.
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() {
            "ApiKey(none)"
        } else {
            "ApiKey(***)"
        })
    }
}

/// Timeout and retries of every request, the same for each provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// The longest one request may take, connection included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries after a connection failure, a 429 or a 5xx (not after a timeout).
    pub max_retries: u32,
    /// The first back-off; it doubles with each retry unless `Retry-After` says otherwise.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// The longest wait before a retry. A `Retry-After` beyond it fails at once, so
    /// a fallback provider can answer instead.
    #[serde(with = "humantime_serde")]
    pub max_retry_wait: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            timeout: Duration::from_secs(30),
            max_retries: 2,
            backoff: Duration::from_millis(500),
            max_retry_wait: Duration::from_secs(20),
        }
    }
}

impl HttpSettings {
    pub(crate) fn validate(&self, provider: &str) -> selfheal_core::Result<()> {
        if self.timeout.is_zero() {
            return Err(selfheal_core::Error::invalid(format!(
                "`{provider}`: timeout is zero; give requests time to answer (e.g. 30s)"
            )));
        }
        Ok(())
    }

    /// The wait before retry number `retry` (0-based), or `None` to give up.
    fn wait(&self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if retry >= self.max_retries {
            return None;
        }
        let wait =
            retry_after.unwrap_or_else(|| self.backoff.saturating_mul(2u32.saturating_pow(retry)));
        (wait <= self.max_retry_wait).then_some(wait)
    }
}

/// The URL of `path` under `base`, once `base` is an http(s) URL and `model` is named.
pub(crate) fn endpoint(
    provider: &str,
    base: &str,
    path: &str,
    model: &str,
    example: &str,
) -> selfheal_core::Result<String> {
    let base = base.trim().trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(selfheal_core::Error::invalid(format!(
            "{provider} base URL `{base}` is not an http(s) URL; use e.g. {example}"
        )));
    }
    if model.trim().is_empty() {
        return Err(selfheal_core::Error::invalid(format!(
            "{provider} model is empty; name one, e.g. as in {example}"
        )));
    }
    Ok(format!("{base}{path}"))
}

/// The setters every HTTP advisor's builder has, for a builder with `config` (holding
/// `max_tokens`, `http` and `redact`) and `budget` fields.
macro_rules! common_setters {
    ($default_timeout:literal) => {
        /// The most tokens one answer may use (default 800).
        pub fn max_tokens(mut self, tokens: u32) -> Self {
            self.config.max_tokens = tokens;
            self
        }
        #[doc = concat!("The longest one request may take (default ", $default_timeout, ").")]
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.config.http.timeout = timeout;
            self
        }
        /// Timeout, retries and back-off together.
        pub fn http(mut self, http: $crate::HttpSettings) -> Self {
            self.config.http = http;
            self
        }
        /// Another redaction pattern (a regex), checked by `build`.
        pub fn redact(mut self, pattern: impl Into<String>) -> Self {
            self.config.redact.push(pattern.into());
            self
        }
        /// A token budget, shareable with other advisors.
        pub fn budget(mut self, budget: std::sync::Arc<$crate::TokenBudget>) -> Self {
            self.budget = Some(budget);
            self
        }
    };
}
pub(crate) use common_setters;

/// The redactor and the transport of an advisor, from its settings.
pub(crate) fn parts(
    provider: &str,
    http: &HttpSettings,
    redact: &[String],
    budget: Option<Arc<TokenBudget>>,
) -> selfheal_core::Result<(Redactor, Transport)> {
    let redactor = Redactor::default().patterns(redact)?;
    let transport = Transport::new(provider, http.clone(), budget)?;
    Ok((redactor, transport))
}

/// Reads a provider's response: the answer text and the tokens used.
pub(crate) type ReadAnswer = fn(&str, &Value) -> Result<(String, u64), LlmError>;

/// Sends requests for one provider.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    client: reqwest::Client,
    provider: String,
    settings: HttpSettings,
    budget: Option<Arc<TokenBudget>>,
}

impl Transport {
    pub(crate) fn new(
        provider: &str,
        settings: HttpSettings,
        budget: Option<Arc<TokenBudget>>,
    ) -> selfheal_core::Result<Self> {
        settings.validate(provider)?;
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| {
                selfheal_core::Error::invalid(format!(
                    "`{provider}`: cannot build the HTTP client: {e}"
                ))
            })?;
        Ok(Transport {
            client,
            provider: provider.to_owned(),
            settings,
            budget,
        })
    }

    /// Records `tokens` against the budget, if there is one.
    fn spend(&self, tokens: u64) {
        if let Some(b) = &self.budget {
            b.spend(tokens);
        }
    }

    /// Asks for advice: POSTs `body`, reads the answer text and the tokens used with
    /// `read`, spends them, and parses the answer for `request`.
    pub(crate) async fn ask(
        &self,
        url: &str,
        key: Option<&ApiKey>,
        body: &Value,
        read: ReadAnswer,
        request: &selfheal_core::AdviceRequest,
    ) -> selfheal_core::Result<selfheal_core::Diagnosis> {
        let response = self.post(url, key, body).await?;
        let (text, tokens) = read(&self.provider, &response)?;
        self.spend(tokens);
        tracing::debug!(tokens, "answered");
        Ok(crate::parse_answer(&self.provider, &text, request)?)
    }

    /// POSTs `body` to `url` and returns the JSON response, retrying what may pass.
    pub(crate) async fn post(
        &self,
        url: &str,
        key: Option<&ApiKey>,
        body: &Value,
    ) -> Result<Value, LlmError> {
        let mut retry = 0;
        loop {
            if let Some(b) = &self.budget {
                b.check()?;
            }
            let (error, retry_after) = match self.once(url, key, body).await {
                Ok(v) => return Ok(v),
                Err(failure) => failure,
            };
            let wait = error
                .is_retryable()
                .then(|| self.settings.wait(retry, retry_after))
                .flatten();
            let Some(wait) = wait else {
                return Err(error);
            };
            tracing::debug!(provider = %self.provider, retry, ?wait, error = %error, "retrying");
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }

    async fn once(
        &self,
        url: &str,
        key: Option<&ApiKey>,
        body: &Value,
    ) -> Result<Value, (LlmError, Option<Duration>)> {
        let mut req = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(key) = key.filter(|k| !k.is_empty()) {
            req = req.header(AUTHORIZATION, format!("Bearer {}", key.0));
        }
        let response = req
            .send()
            .await
            .map_err(|e| (self.transport_error(e), None))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| (self.transport_error(e), None))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                let error = LlmError::Malformed {
                    provider: self.provider.clone(),
                    detail: format!("the body is not JSON ({e})"),
                };
                (error, None)
            });
        }
        let (code, message) = error_body(&bytes);
        let provider = self.provider.clone();
        let error = if status.as_u16() == 429 {
            LlmError::RateLimited {
                provider,
                code: code.unwrap_or_else(|| "rate_limited".into()),
                message,
                retry_after,
            }
        } else {
            LlmError::Status {
                provider,
                status: status.as_u16(),
                message,
            }
        };
        Err((error, retry_after))
    }

    fn transport_error(&self, e: reqwest::Error) -> LlmError {
        if e.is_timeout() {
            LlmError::Timeout {
                provider: self.provider.clone(),
                timeout: self.settings.timeout,
            }
        } else {
            LlmError::Unreachable {
                provider: self.provider.clone(),
                // Without the URL: it is configuration, and may carry credentials.
                detail: e.without_url().to_string(),
            }
        }
    }
}

/// `Retry-After` (seconds) or OpenAI's `retry-after-ms`, whichever is given.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    // A provider's number may be anything (`1e20`): at most a day, never a panic.
    let secs =
        |s: f64| Duration::try_from_secs_f64(s).map_or(MAX_RETRY_AFTER, |d| d.min(MAX_RETRY_AFTER));
    number("retry-after-ms")
        .map(|ms| secs(ms / 1000.0))
        .or_else(|| number("retry-after").map(secs))
}

/// The longest `Retry-After` believed: a provider asking for more is taken to ask for this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The code and message of an error body: OpenAI's `{"error": {"code", "message"}}`,
/// Ollama's `{"error": "..."}`, or the start of whatever else came.
fn error_body(bytes: &[u8]) -> (Option<String>, String) {
    let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    match error {
        Some(Value::String(s)) => (None, s.clone()),
        Some(e) => (
            text(e.get("code")).or_else(|| text(e.get("type"))),
            text(e.get("message")).unwrap_or_else(|| e.to_string()),
        ),
        None => (
            None,
            String::from_utf8_lossy(bytes).chars().take(200).collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_milliseconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let mut date = HeaderMap::new();
        date.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&date), None, "dates fall back to back-off");
    }

    #[test]
    fn a_huge_retry_after_is_a_day_not_a_panic() {
        for (name, value) in [
            ("retry-after", "1e20"),
            ("retry-after", "1e308"),
            ("retry-after-ms", "1e300"),
            ("retry-after", "18446744073709551616"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER), "{name}: {value}");
        }
        // Beyond the longest wait: the request fails at once instead of sleeping a day.
        let s = HttpSettings::default();
        assert_eq!(s.wait(0, Some(MAX_RETRY_AFTER)), None);
    }

    #[test]
    fn back_off_doubles_honours_retry_after_and_gives_up() {
        let s = HttpSettings {
            max_retries: 3,
            backoff: Duration::from_millis(100),
            max_retry_wait: Duration::from_secs(5),
            ..HttpSettings::default()
        };
        assert_eq!(s.wait(0, None), Some(Duration::from_millis(100)));
        assert_eq!(s.wait(2, None), Some(Duration::from_millis(400)));
        assert_eq!(
            s.wait(1, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            s.wait(0, Some(Duration::from_secs(60))),
            None,
            "too long a wait"
        );
        assert_eq!(s.wait(3, None), None, "retries used up");
    }

    #[test]
    fn error_bodies_of_both_providers_are_read() {
        let openai = br#"{"error":{"message":"Rate limit reached for gpt-4o-mini on tokens per min (TPM)","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
        let (code, message) = error_body(openai);
        assert_eq!(code.as_deref(), Some("rate_limit_exceeded"));
        assert!(message.starts_with("Rate limit reached"));
        let (code, message) = error_body(br#"{"error":"model 'llama9' not found"}"#);
        assert_eq!((code, message.as_str()), (None, "model 'llama9' not found"));
        let (_, message) = error_body(b"<html>bad gateway</html>");
        assert_eq!(message, "<html>bad gateway</html>");
    }

    #[test]
    fn api_keys_never_show() {
        let key = ApiKey::new("sk-live-0123456789abcdef");
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        assert_eq!(format!("{:?}", ApiKey::default()), "ApiKey(none)");
    }
}
