//! [`QuietVerifier`]: healthy when a target's errors stopped for a while.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use selfheal_core::{Error, ErrorKind, Healer, Health, Result, Verifier, WeakHealer};

use crate::executor::format_duration;

/// Scores a target by the healer's own sightings: 100 when the target produced no
/// error signal (of one fingerprint, or any) for `window`, 0 while it still does.
///
/// It reads the healer it is registered with, so it is built first and
/// [`attach`](QuietVerifier::attach)ed once the healer is; clones share the attachment,
/// and it holds the healer weakly (no reference cycle). Unattached, or after the healer
/// is dropped, `check` is an `Err` that says so.
///
/// ```
/// use std::time::Duration;
/// use selfheal_core::{Healer, Signal, Verifier};
/// use selfheal_strategies::QuietVerifier;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
/// let quiet = QuietVerifier::new("redis-cache", Duration::from_secs(30));
/// let healer = Healer::builder().verifier("redis-cache", quiet.clone()).build()?;
/// quiet.attach(&healer);
/// assert_eq!(quiet.check().await?.score, 100); // nothing seen yet
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct QuietVerifier {
    target: String,
    fingerprint: Option<String>,
    window: Duration,
    healer: Arc<OnceLock<WeakHealer>>,
}

impl QuietVerifier {
    /// Healthy when `target` has been free of error signals for `window`.
    pub fn new(target: impl Into<String>, window: Duration) -> Self {
        QuietVerifier {
            target: target.into(),
            fingerprint: None,
            window,
            healer: Arc::default(),
        }
    }

    /// Only counts signals of this fingerprint id (as in `Incident::fingerprint`).
    pub fn fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.fingerprint = Some(fingerprint.into());
        self
    }

    /// Reads `healer`'s sightings from now on. A second attach is ignored.
    pub fn attach(&self, healer: &Healer) {
        let _ = self.healer.set(healer.downgrade());
    }
}

#[async_trait]
impl Verifier for QuietVerifier {
    fn name(&self) -> &str {
        "quiet"
    }

    async fn check(&self) -> Result<Health> {
        let healer = self
            .healer
            .get()
            .ok_or_else(|| {
                Error::invalid(
                    "the quiet verifier is not attached to a healer; call QuietVerifier::attach(&healer) after building it",
                )
            })?
            .upgrade()
            .ok_or_else(|| Error::new(ErrorKind::Closed, "the healer this verifier reads is gone"))?;
        let what = self
            .fingerprint
            .as_deref()
            .map_or_else(|| "errors".to_owned(), |f| format!("fingerprint {f}"));
        Ok(
            match healer.since_last_seen(&self.target, self.fingerprint.as_deref()) {
                None => Health::new(100, format!("no {what} seen on {}", self.target)),
                Some(since) if since >= self.window => Health::new(
                    100,
                    format!(
                        "{what} quiet for {} (≥ {})",
                        format_duration(since),
                        format_duration(self.window)
                    ),
                ),
                Some(since) => Health::new(
                    0,
                    format!(
                        "{what} seen {} ago; needs {} of quiet",
                        format_duration(since),
                        format_duration(self.window)
                    ),
                ),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use selfheal_core::{Incident, IncidentFilter, Signal};

    use super::*;

    async fn wait_for_incident(healer: &Healer) -> Incident {
        for _ in 0..10_000 {
            if let Some(i) = healer
                .admin()
                .incidents(&IncidentFilter::default())
                .await
                .unwrap()
                .into_iter()
                .next()
            {
                return i;
            }
            tokio::task::yield_now().await;
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        panic!("no incident opened");
    }

    #[tokio::test(start_paused = true)]
    async fn healthy_only_after_the_window_without_errors() {
        let quiet = QuietVerifier::new("api", Duration::from_secs(30));
        let healer = Healer::builder()
            .verifier("api", quiet.clone())
            .build()
            .unwrap();
        let err = quiet.check().await.unwrap_err();
        assert!(err.message().contains("attach"), "{err}");
        quiet.attach(&healer);
        let running = healer.spawn();
        assert_eq!(quiet.check().await.unwrap().score, 100);

        for _ in 0..5 {
            healer.observe(Signal::new(
                "api",
                "upstream connect error: connection refused",
            ));
        }
        let incident = wait_for_incident(&healer).await;
        let noisy = quiet.check().await.unwrap();
        assert_eq!(noisy.score, 0, "{}", noisy.detail);

        let by_fingerprint = quiet.clone().fingerprint(incident.fingerprint.clone());
        // Another target's errors do not count.
        healer.observe(Signal::new("db", "too many clients already"));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(quiet.check().await.unwrap().score, 0);
        tokio::time::advance(Duration::from_secs(2)).await;
        let calm = quiet.check().await.unwrap();
        assert_eq!(calm.score, 100, "{}", calm.detail);
        assert_eq!(by_fingerprint.check().await.unwrap().score, 100);
        let other =
            QuietVerifier::new("api", Duration::from_secs(1)).fingerprint("ffffffffffffffff");
        other.attach(&healer);
        assert!(
            other
                .check()
                .await
                .unwrap()
                .detail
                .starts_with("no fingerprint")
        );

        running.shutdown().await;
        drop(healer);
        assert_eq!(quiet.check().await.unwrap_err().kind(), ErrorKind::Closed);
    }
}
