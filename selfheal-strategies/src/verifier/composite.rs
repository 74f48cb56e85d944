//! [`CompositeVerifier`]: several verifiers as one.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use selfheal_core::{Error, Health, Result, Verifier};

/// How the parts' scores combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Combine {
    /// Every part must pass: the lowest score.
    All,
    /// One passing part is enough: the highest score.
    Any,
}

/// Several verifiers checked together (concurrently), their scores combined: the lowest
/// for [`all`](CompositeVerifier::all), the highest for [`any`](CompositeVerifier::any);
/// it passes when every part passes (`all`) or one does (`any`).
/// A part that errs or takes longer than the part timeout (default 10 s) scores 0. The
/// detail lists each part: `http: 100 (HTTP 200 OK in 3ms); tcp: 0 (connection failed: …)`.
///
/// ```
/// use selfheal_core::Verifier;
/// use selfheal_strategies::{CompositeVerifier, TcpVerifier};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
/// let both = CompositeVerifier::all()
///     .part(TcpVerifier::new("127.0.0.1:9")?)
///     .part(TcpVerifier::new("127.0.0.1:7")?);
/// assert_eq!(both.check().await?.score, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CompositeVerifier {
    combine: Combine,
    parts: Vec<Arc<dyn Verifier>>,
    part_timeout: Duration,
}

impl CompositeVerifier {
    /// Healthy when all parts are: the lowest score.
    pub fn all() -> Self {
        Self::new(Combine::All)
    }

    /// Healthy when any part is: the highest score.
    pub fn any() -> Self {
        Self::new(Combine::Any)
    }

    /// An empty composite combining with `combine`.
    pub fn new(combine: Combine) -> Self {
        CompositeVerifier {
            combine,
            parts: Vec::new(),
            part_timeout: Duration::from_secs(10),
        }
    }

    /// Adds a part.
    pub fn part(mut self, verifier: impl Verifier) -> Self {
        self.parts.push(Arc::new(verifier));
        self
    }

    /// Adds a shared part.
    pub fn part_arc(mut self, verifier: Arc<dyn Verifier>) -> Self {
        self.parts.push(verifier);
        self
    }

    /// How long each part may take (default 10 s).
    pub fn part_timeout(mut self, timeout: Duration) -> Self {
        self.part_timeout = timeout;
        self
    }
}

#[async_trait]
impl Verifier for CompositeVerifier {
    fn name(&self) -> &str {
        match self.combine {
            Combine::All => "all",
            Combine::Any => "any",
        }
    }

    async fn check(&self) -> Result<Health> {
        if self.parts.is_empty() {
            return Err(Error::invalid(
                "the composite verifier has no parts; add some with CompositeVerifier::part",
            ));
        }
        let checks = self.parts.iter().map(|p| async move {
            match tokio::time::timeout(self.part_timeout, p.check()).await {
                Ok(Ok(h)) => (p.name().to_owned(), h),
                Ok(Err(e)) => (
                    p.name().to_owned(),
                    Health::down(format!("check failed: {e}")),
                ),
                Err(_) => (p.name().to_owned(), Health::down("timed out")),
            }
        });
        let results = futures_util::future::join_all(checks).await;
        let scores = results.iter().map(|(_, h)| h.score);
        let mut verdicts = results.iter().map(|(_, h)| h.passed);
        let (score, passed) = match self.combine {
            Combine::All => (scores.min(), verdicts.all(|p| p)),
            Combine::Any => (scores.max(), verdicts.any(|p| p)),
        };
        let score = score.unwrap_or(0);
        let detail = results
            .iter()
            .map(|(name, h)| format!("{name}: {} ({})", h.score, h.detail))
            .collect::<Vec<_>>()
            .join("; ");
        Ok(Health::new(score, detail).with_passed(passed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(u8, &'static str);

    #[async_trait]
    impl Verifier for Fixed {
        fn name(&self) -> &str {
            self.1
        }
        async fn check(&self) -> Result<Health> {
            Ok(Health::new(self.0, "fixed"))
        }
    }

    #[derive(Debug)]
    struct Broken;

    #[async_trait]
    impl Verifier for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        async fn check(&self) -> Result<Health> {
            Err(Error::invalid("bad config"))
        }
    }

    #[derive(Debug)]
    struct Hangs;

    #[async_trait]
    impl Verifier for Hangs {
        fn name(&self) -> &str {
            "hangs"
        }
        async fn check(&self) -> Result<Health> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn all_takes_the_lowest_and_any_the_highest() {
        let all = CompositeVerifier::all()
            .part(Fixed(90, "http"))
            .part(Fixed(40, "redis"));
        let health = all.check().await.unwrap();
        assert_eq!(health.score, 40);
        assert_eq!(health.detail, "http: 90 (fixed); redis: 40 (fixed)");
        let any = CompositeVerifier::any()
            .part(Fixed(90, "http"))
            .part(Fixed(40, "redis"));
        assert_eq!(any.check().await.unwrap().score, 90);
        assert!(CompositeVerifier::all().check().await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_or_hanging_part_scores_0() {
        let all = CompositeVerifier::all()
            .part(Fixed(100, "http"))
            .part(Broken)
            .part(Hangs)
            .part_timeout(Duration::from_secs(2));
        let health = all.check().await.unwrap();
        assert_eq!(health.score, 0);
        assert!(
            health
                .detail
                .contains("broken: 0 (check failed: invalid input: bad config)"),
            "{}",
            health.detail
        );
        assert!(
            health.detail.contains("hangs: 0 (timed out)"),
            "{}",
            health.detail
        );
        let any = CompositeVerifier::any().part(Broken).part(Fixed(85, "tcp"));
        assert_eq!(any.check().await.unwrap().score, 85);
    }
}
