//! [`RateLimited`]: at most so many advice requests, with `governor`.

use std::num::NonZeroU32;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use selfheal_core::{AdviceRequest, Diagnosis, Error, ErrorKind, LlmAdvisor, Result};

/// Lets through at most `per_minute` requests to the advisor it wraps (bursts up to
/// that size). A request over the limit is not queued: it fails at once with
/// `Unavailable`, so the healer escalates the incident without advice rather than
/// holding it.
///
/// ```
/// use selfheal_llm::{RateLimited, StaticAdvisor};
/// let advisor = RateLimited::per_minute(StaticAdvisor::new("restart", 0.5, "leak"), 10);
/// ```
#[derive(Debug)]
pub struct RateLimited<A> {
    inner: A,
    limiter: DefaultDirectRateLimiter,
    per_minute: u32,
}

impl<A: LlmAdvisor> RateLimited<A> {
    /// `inner`, at most `per_minute` requests a minute (0 counts as 1).
    pub fn per_minute(inner: A, per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        RateLimited {
            inner,
            limiter: RateLimiter::direct(Quota::per_minute(n)),
            per_minute: n.get(),
        }
    }

    /// The advisor it wraps.
    pub fn inner(&self) -> &A {
        &self.inner
    }
}

#[async_trait]
impl<A: LlmAdvisor> LlmAdvisor for RateLimited<A> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn advise(&self, request: &AdviceRequest) -> Result<Diagnosis> {
        if self.limiter.check().is_err() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "advice rate limit of {} requests a minute reached; escalating without advice (raise the limit if this is normal)",
                    self.per_minute
                ),
            ));
        }
        self.inner.advise(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StaticAdvisor;
    use crate::testing::request;

    #[tokio::test]
    async fn requests_over_the_limit_fail_at_once() {
        let advisor = RateLimited::per_minute(StaticAdvisor::new("restart", 0.5, "leak"), 2);
        let req = request(&["restart"], "x");
        advisor.advise(&req).await.unwrap();
        advisor.advise(&req).await.unwrap();
        let err = advisor.advise(&req).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.message().contains("2 requests a minute"), "{err}");
        assert_eq!(advisor.name(), "static");
    }
}
