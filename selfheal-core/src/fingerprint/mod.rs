//! Fingerprints: the stable identity of an error, whatever its variable parts.
//!
//! ```
//! use selfheal_core::{Fingerprinter, Normalizer, Signal};
//! let f = Normalizer::default();
//! let a = f.fingerprint(&Signal::new("db", "connect to 10.0.0.7:5432 failed after 30ms"));
//! let b = f.fingerprint(&Signal::new("db", "connect to 10.0.0.9:5432 failed after 1200ms"));
//! assert_eq!(a.id, b.id);
//! assert_eq!(&*a.template, "connect to <*> failed after <*>");
//! ```

mod id_cache;
mod line_memo;
mod miner;
mod normalize;
mod recency;
mod stack;
mod token_index;
mod values;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use miner::{ClusterId, MinerConfig, MinerSnapshot, SavedCluster, TemplateMiner};
pub use normalize::{MASK, Normalizer};
pub use stack::{MAX_FRAMES, MAX_STACK_BYTES, stack_signature};

/// Version of the fingerprint contract. Ids from different versions are not comparable;
/// any change that alters ids for the same input bumps it.
pub const FINGERPRINT_VERSION: u32 = 3;

/// The stable identity of a signal. Cheap to clone: the id and template are shared
/// strings, so a repeated template costs no allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// First 16 hex digits of sha256 over `service:template:stack`.
    pub id: Arc<str>,
    /// The message with its variable parts masked as `<*>`.
    pub template: Arc<str>,
    /// In-app frames of the stack trace, when there was one.
    pub stack: Option<String>,
    /// [`FINGERPRINT_VERSION`] at the time it was made.
    pub version: u32,
}

impl Fingerprint {
    /// Builds the fingerprint of `template` and `stack` for `service`, computing the id
    /// ([`fingerprint_id`]; recent ids are remembered per thread, so a repeated
    /// template costs a comparison instead of a digest).
    ///
    /// `stack` is a stack *signature*, as [`stack_signature`] makes it from a raw trace
    /// (the [`Fingerprinter`](crate::Fingerprinter)s pass `None` when the signature is
    /// empty): pass a raw trace and the id differs from theirs.
    #[inline]
    pub fn new(service: &str, template: &str, stack: Option<String>) -> Self {
        let (template, id) = id_cache::lookup(service, template, stack.as_deref());
        Fingerprint {
            id,
            template,
            stack,
            version: FINGERPRINT_VERSION,
        }
    }
}

/// First 16 hex digits of sha256 over `service:template:stack`.
pub fn fingerprint_id(service: &str, template: &str, stack: Option<&str>) -> String {
    id_hex(service, template, stack).as_str().to_owned()
}

/// [`fingerprint_id`] on the stack, so a caller that shares it (`Arc<str>`) allocates
/// once, not twice.
pub(crate) fn id_hex(service: &str, template: &str, stack: Option<&str>) -> IdHex {
    let mut hasher = Sha256::new();
    hasher.update(service.as_bytes());
    hasher.update(b":");
    hasher.update(template.as_bytes());
    hasher.update(b":");
    hasher.update(stack.unwrap_or("").as_bytes());
    let digest = hasher.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 16];
    for (pair, b) in id.chunks_exact_mut(2).zip(&digest[..8]) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 15)];
    }
    IdHex(id)
}

/// A fingerprint id: 16 lowercase hex digits.
pub(crate) struct IdHex([u8; 16]);

impl IdHex {
    /// The id as text.
    pub(crate) fn as_str(&self) -> &str {
        // Hex digits only, so always valid: the fallback is never taken.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id formula itself (the normalizer's golden vectors live in
    /// `tests/fingerprint_golden.rs`).
    #[test]
    fn golden_ids_are_stable() {
        // sha256("::") and sha256("svc:<template>:"), first 16 hex digits (python hashlib).
        assert_eq!(fingerprint_id("", "", None), "71546855d6279ef7");
        assert_eq!(
            fingerprint_id(
                "svc",
                "pool timed out while waiting for an open connection",
                None
            ),
            "54a137d858a50f16"
        );
    }
}
