//! What replicas share through the store so that a fleet acts as one: a lease per
//! target, cooldowns, and the global rate limit.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The answer to a lease request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LeaseGrant {
    /// The caller holds the lease until `expires_at` (or until it renews or releases it).
    Acquired {
        /// When the lease lapses unless renewed.
        expires_at: DateTime<Utc>,
    },
    /// Another holder has it.
    Held {
        /// Who holds it.
        holder: String,
        /// When it lapses unless renewed.
        expires_at: DateTime<Utc>,
    },
}

impl LeaseGrant {
    /// Whether the caller got the lease.
    pub fn acquired(&self) -> bool {
        matches!(self, LeaseGrant::Acquired { .. })
    }
}

/// A cooldown of one strategy on one target, as the fleet sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedCooldown {
    /// When it ends.
    pub until: DateTime<Utc>,
    /// When it was started (the end of the action that started it).
    pub started_at: DateTime<Utc>,
    /// The replica whose action started it.
    pub holder: String,
}
