//! [`Fallback`]: a chain of advisors, each behind a circuit breaker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use selfheal_core::{AdviceRequest, Diagnosis, Error, ErrorKind, LlmAdvisor, Result};
use tokio::time::Instant;

use crate::LlmError;

/// Asks its advisors in order until one answers. An advisor that fails with a
/// retryable error (unreachable, timeout, rate-limited, 5xx, budget spent)
/// `failure_threshold` times in a row is skipped for `cool_off`, or for as long as its
/// `Retry-After` asked if that is longer; one whose answer is refused is not tripped,
/// the next one is simply asked.
///
/// ```
/// use std::time::Duration;
/// use selfheal_core::LlmAdvisor;
/// use selfheal_llm::{Fallback, StaticAdvisor};
/// let chain = Fallback::new()
///     .advisor(StaticAdvisor::new("restart", 0.5, "primary"))
///     .advisor(StaticAdvisor::new("restart", 0.4, "secondary"))
///     .cool_off(Duration::from_secs(60));
/// assert_eq!(chain.name(), "fallback");
/// ```
#[derive(Debug)]
pub struct Fallback {
    links: Vec<Link>,
    cool_off: Duration,
    failure_threshold: u32,
}

#[derive(Debug)]
struct Link {
    advisor: Arc<dyn LlmAdvisor>,
    breaker: Mutex<Breaker>,
}

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

impl Default for Fallback {
    fn default() -> Self {
        Self::new()
    }
}

impl Fallback {
    /// An empty chain: a cool-off of 5 minutes after one retryable failure.
    pub fn new() -> Self {
        Fallback {
            links: Vec::new(),
            cool_off: Duration::from_secs(300),
            failure_threshold: 1,
        }
    }

    /// Appends `advisor` to the chain.
    pub fn advisor(self, advisor: impl LlmAdvisor) -> Self {
        self.advisor_arc(Arc::new(advisor))
    }

    /// Appends a shared advisor to the chain.
    pub fn advisor_arc(mut self, advisor: Arc<dyn LlmAdvisor>) -> Self {
        self.links.push(Link {
            advisor,
            breaker: Mutex::default(),
        });
        self
    }

    /// How long a tripped advisor is skipped (default 5 minutes).
    pub fn cool_off(mut self, cool_off: Duration) -> Self {
        self.cool_off = cool_off;
        self
    }

    /// Retryable failures in a row that trip an advisor (default 1; 0 counts as 1).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures.max(1);
        self
    }
}

impl Link {
    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the breaker closes again, if it is open now.
    fn open_until(&self, now: Instant) -> Option<Instant> {
        self.breaker().open_until.filter(|until| *until > now)
    }

    fn record(&self, outcome: &Result<Diagnosis>, threshold: u32, cool_off: Duration) {
        let mut b = self.breaker();
        match outcome {
            Ok(_) => *b = Breaker::default(),
            Err(e) if e.is_retryable() => {
                b.failures += 1;
                if b.failures >= threshold {
                    b.failures = 0;
                    // A provider that asked for a longer pause gets it.
                    let cool_off = cool_off.max(retry_after(e).unwrap_or_default());
                    b.open_until = Instant::now().checked_add(cool_off);
                    tracing::warn!(advisor = self.advisor.name(), ?cool_off, error = %e, "advisor tripped; skipping it for the cool-off");
                }
            }
            Err(_) => {}
        }
    }
}

/// The `Retry-After` of a rate-limited provider, if that is what `e` is.
fn retry_after(e: &Error) -> Option<Duration> {
    let source = std::error::Error::source(e)?;
    match source.downcast_ref::<LlmError>()? {
        LlmError::RateLimited { retry_after, .. } => *retry_after,
        _ => None,
    }
}

#[async_trait]
impl LlmAdvisor for Fallback {
    fn name(&self) -> &str {
        "fallback"
    }

    async fn advise(&self, request: &AdviceRequest) -> Result<Diagnosis> {
        let mut why = Vec::new();
        let mut kind = ErrorKind::Unavailable;
        for link in &self.links {
            let name = link.advisor.name();
            if let Some(until) = link.open_until(Instant::now()) {
                let left = until.saturating_duration_since(Instant::now());
                why.push(format!(
                    "`{name}` is cooling off ({}s left)",
                    left.as_secs()
                ));
                continue;
            }
            let outcome = link.advisor.advise(request).await;
            link.record(&outcome, self.failure_threshold, self.cool_off);
            match outcome {
                Ok(d) => return Ok(d),
                Err(e) => {
                    kind = e.kind();
                    why.push(format!("`{name}`: {e}"));
                }
            }
        }
        if self.links.is_empty() {
            why.push("the chain is empty; add an advisor".into());
        }
        Err(Error::new(
            kind,
            format!("no advisor answered: {}", why.join("; ")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::request;
    use selfheal_core::MockLlmAdvisor;

    fn advisor(name: &'static str, answers: Vec<Result<f64>>) -> MockLlmAdvisor {
        let mut m = MockLlmAdvisor::new();
        m.expect_name().return_const(name.to_owned());
        let mut answers = answers.into_iter();
        let calls = answers.len();
        m.expect_advise().times(calls).returning(move |_| {
            answers
                .next()
                .expect("scripted")
                .map(|confidence| Diagnosis {
                    root_cause: name.into(),
                    strategy: None,
                    params: serde_json::Value::Null,
                    confidence,
                    explanation: String::new(),
                    advisor: name.into(),
                })
        });
        m
    }

    fn limited() -> Error {
        Error::new(ErrorKind::Unavailable, "429 rate_limit_exceeded")
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_provider_is_skipped_for_the_cool_off() {
        // primary: rate-limited, then (after the cool-off) fine; secondary answers twice.
        let chain = Fallback::new()
            .advisor(advisor("primary", vec![Err(limited()), Ok(0.9)]))
            .advisor(advisor("secondary", vec![Ok(0.4), Ok(0.4)]))
            .cool_off(Duration::from_secs(60));
        let req = request(&[], "x");
        assert_eq!(chain.advise(&req).await.unwrap().advisor, "secondary");
        // Within the cool-off the primary is not asked at all (mock counts calls).
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(chain.advise(&req).await.unwrap().advisor, "secondary");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(chain.advise(&req).await.unwrap().advisor, "primary");
    }

    #[tokio::test(start_paused = true)]
    async fn refused_answers_move_on_without_tripping_and_all_failing_is_an_error() {
        let refused = || Error::invalid("the answer was refused: not JSON");
        let chain = Fallback::new()
            .advisor(advisor("primary", vec![Err(refused()), Err(refused())]))
            .advisor(advisor("secondary", vec![Ok(0.5), Err(limited())]));
        let req = request(&[], "x");
        assert_eq!(chain.advise(&req).await.unwrap().advisor, "secondary");
        let err = chain.advise(&req).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.message().contains("`primary`: invalid input"), "{err}");
        assert!(err.message().contains("`secondary`: unavailable"), "{err}");
        let err = Fallback::new().advise(&req).await.unwrap_err();
        assert!(err.message().contains("chain is empty"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn threshold_counts_failures_in_a_row() {
        let chain = Fallback::new()
            .advisor(advisor(
                "flaky",
                vec![Err(limited()), Ok(0.7), Err(limited()), Err(limited())],
            ))
            .failure_threshold(2)
            .cool_off(Duration::from_secs(30));
        let req = request(&[], "x");
        assert!(chain.advise(&req).await.is_err());
        assert!(
            chain.advise(&req).await.is_ok(),
            "one failure does not trip"
        );
        assert!(chain.advise(&req).await.is_err());
        assert!(chain.advise(&req).await.is_err(), "second in a row trips");
        let err = chain.advise(&req).await.unwrap_err();
        assert!(
            err.message().contains("`flaky` is cooling off (30s left)"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_longer_retry_after_extends_the_cool_off() {
        let asked_to_wait = || {
            Error::from(LlmError::RateLimited {
                provider: "primary".into(),
                code: "rate_limit_exceeded".into(),
                message: "slow down".into(),
                retry_after: Some(Duration::from_secs(600)),
            })
        };
        let chain = Fallback::new()
            .advisor(advisor("primary", vec![Err(asked_to_wait())]))
            .cool_off(Duration::from_secs(60));
        let req = request(&[], "x");
        assert!(chain.advise(&req).await.is_err());
        tokio::time::advance(Duration::from_secs(120)).await;
        let err = chain.advise(&req).await.unwrap_err();
        assert!(
            err.message()
                .contains("`primary` is cooling off (480s left)"),
            "{err}"
        );
    }
}
