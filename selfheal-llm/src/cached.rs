//! [`Cached`]: one diagnosis per fingerprint, kept in the store for a TTL.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use selfheal_core::{AdviceRequest, Diagnosis, DiagnosisCache, LlmAdvisor, Result};

/// Asks the advisor it wraps once per fingerprint and keeps the answer in the store
/// (see [`DiagnosisCache::cache_diagnosis`]) for `ttl`. Failures are not cached. A cached
/// answer naming a strategy that is no longer registered is asked again. A store
/// error only costs the cache: the advisor is asked.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use selfheal_core::MemoryStore;
/// use selfheal_llm::{Cached, StaticAdvisor};
/// let store = Arc::new(MemoryStore::new());
/// let advisor = Cached::new(StaticAdvisor::new("restart", 0.5, "leak"), store, Duration::from_secs(3600));
/// ```
#[derive(Debug)]
pub struct Cached<A> {
    inner: A,
    store: Arc<dyn DiagnosisCache>,
    ttl: Duration,
}

impl<A: LlmAdvisor> Cached<A> {
    /// `inner`, its answers kept in `store` for `ttl`.
    pub fn new(inner: A, store: Arc<dyn DiagnosisCache>, ttl: Duration) -> Self {
        Cached { inner, store, ttl }
    }
}

#[async_trait]
impl<A: LlmAdvisor> LlmAdvisor for Cached<A> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn advise(&self, request: &AdviceRequest) -> Result<Diagnosis> {
        let fingerprint = &request.incident.fingerprint;
        match self.store.cached_diagnosis(fingerprint).await {
            Ok(Some(d))
                if d.strategy
                    .as_ref()
                    .is_none_or(|s| request.strategies.contains(s)) =>
            {
                tracing::debug!(fingerprint, "diagnosis from the cache");
                return Ok(d);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(fingerprint, error = %e, "diagnosis cache unreadable; asking the advisor")
            }
        }
        let diagnosis = self.inner.advise(request).await?;
        if let Err(e) = self
            .store
            .cache_diagnosis(fingerprint, &diagnosis, self.ttl)
            .await
        {
            tracing::warn!(fingerprint, error = %e, "could not cache the diagnosis");
        }
        Ok(diagnosis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::request;
    use selfheal_core::{Error, ErrorKind, MemoryStore, MockDiagnosisCache, MockLlmAdvisor};

    fn counting(strategy: &str, calls: usize) -> MockLlmAdvisor {
        let mut m = MockLlmAdvisor::new();
        m.expect_name().return_const("mock".to_owned());
        let strategy = strategy.to_owned();
        m.expect_advise().times(calls).returning(move |_| {
            Ok(Diagnosis {
                root_cause: "leak".into(),
                strategy: Some(strategy.clone()),
                params: serde_json::json!({}),
                confidence: 0.5,
                explanation: String::new(),
                advisor: "mock".into(),
            })
        });
        m
    }

    #[tokio::test]
    async fn one_question_per_fingerprint_until_the_strategy_disappears() {
        let store = Arc::new(MemoryStore::new());
        let hour = Duration::from_secs(3600);
        // The mock fails the test if asked more than twice.
        let advisor = Cached::new(counting("restart", 2), store.clone(), hour);
        let req = request(&["restart"], "x");
        let first = advisor.advise(&req).await.unwrap();
        assert_eq!(
            advisor.advise(&req).await.unwrap(),
            first,
            "second comes from the cache"
        );
        assert_eq!(
            store.cached_diagnosis("0011223344556677").await.unwrap(),
            Some(first)
        );
        // `restart` is no longer registered: the cached answer is not used.
        let req = request(&["clear_cache"], "x");
        assert_eq!(
            advisor.advise(&req).await.unwrap().strategy.as_deref(),
            Some("restart")
        );
    }

    #[tokio::test]
    async fn a_broken_store_costs_only_the_cache() {
        let mut store = MockDiagnosisCache::new();
        store
            .expect_cached_diagnosis()
            .returning(|_| Err(Error::new(ErrorKind::Unavailable, "down")));
        store
            .expect_cache_diagnosis()
            .returning(|_, _, _| Err(Error::new(ErrorKind::Unavailable, "down")));
        let advisor = Cached::new(
            counting("restart", 2),
            Arc::new(store),
            Duration::from_secs(60),
        );
        let req = request(&["restart"], "x");
        advisor.advise(&req).await.unwrap();
        advisor.advise(&req).await.unwrap();
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let store = Arc::new(MemoryStore::new());
        let mut inner = MockLlmAdvisor::new();
        inner.expect_name().return_const("mock".to_owned());
        inner
            .expect_advise()
            .times(2)
            .returning(|_| Err(Error::new(ErrorKind::Unavailable, "429")));
        let advisor = Cached::new(inner, store.clone(), Duration::from_secs(60));
        let req = request(&["restart"], "x");
        assert!(advisor.advise(&req).await.is_err());
        assert!(advisor.advise(&req).await.is_err(), "asked again");
        assert_eq!(
            store.cached_diagnosis("0011223344556677").await.unwrap(),
            None
        );
    }
}
