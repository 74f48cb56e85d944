//! When a target's errors were last seen, for probes such as a "fingerprint quiet"
//! verifier, and a weak handle so such a probe can be registered with the healer it
//! reads without keeping it alive.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::{Healer, Inner, occurrence_key};

impl Healer {
    /// How long ago `target` last produced a signal of `fingerprint` (any fingerprint
    /// when `None`); `None` when none was seen (or it was forgotten after an idle hour).
    /// Counts every signal the pipeline processed for the target, silenced ones too.
    pub fn since_last_seen(&self, target: &str, fingerprint: Option<&str>) -> Option<Duration> {
        let detector = &self.inner.detector;
        let last = match fingerprint {
            Some(fp) => detector.last_seen(&occurrence_key(target, fp)),
            None => detector.last_seen_prefixed(&occurrence_key(target, "")),
        }?;
        Some(Instant::now().saturating_duration_since(last))
    }

    /// A handle that does not keep the healer alive: for verifiers and probes that the
    /// healer itself holds.
    pub fn downgrade(&self) -> WeakHealer {
        WeakHealer {
            inner: Arc::downgrade(&self.inner),
        }
    }
}

/// A [`Healer`] handle that does not keep it alive; see [`Healer::downgrade`].
#[derive(Clone, Default)]
pub struct WeakHealer {
    inner: Weak<Inner>,
}

impl WeakHealer {
    /// The healer, while any strong handle to it lives.
    pub fn upgrade(&self) -> Option<Healer> {
        self.inner.upgrade().map(|inner| Healer { inner })
    }
}

impl std::fmt::Debug for WeakHealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakHealer")
            .field("alive", &(self.inner.strong_count() > 0))
            .finish()
    }
}
