//! The audit chain is verified when the healer starts: a healer on a broken chain says
//! so (an error log, an event, one notification, [`Admin::audit_chain`]) instead of
//! appending after a tampered or corrupted record as if nothing happened. The newest
//! [`CHECKED_AT_START`] records are checked, so a start costs a bounded read, and so is
//! the store's checkpoint of the head ([`crate::AuditStore::audit_checkpoint`]): a log
//! truncated or emptied since the last write is reported the same way.

use super::admin::Admin;
use std::sync::Mutex;

use super::Healer;
use crate::{ChainError, Notification, Phase, verify_chain, verify_checkpoint};

/// How many of the newest audit records are verified at start.
pub const CHECKED_AT_START: usize = 10_000;

/// What the start-up check found.
#[derive(Debug, Default)]
pub(crate) struct ChainCheck(Mutex<Option<Result<(), ChainError>>>);

impl Healer {
    pub(super) async fn check_chain_at_start(&self) {
        let records = match self.inner.store.list_audit(CHECKED_AT_START).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "could not read the audit trail to verify it");
                return;
            }
        };
        let checkpoint = match self.inner.store.audit_checkpoint().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "could not read the audit checkpoint; truncation goes unchecked");
                None
            }
        };
        let verdict =
            verify_chain(&records).and_then(|()| verify_checkpoint(&records, checkpoint.as_ref()));
        *self
            .inner
            .chain_check
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(verdict.clone());
        let Err(broken) = verdict else {
            return;
        };
        let what = format!(
            "the audit chain is broken at record {}: {}; the trail can no longer be \
             trusted from there (tampering or corruption): investigate before relying on it",
            broken.seq, broken.reason
        );
        tracing::error!(
            seq = broken.seq,
            reason = broken.reason,
            "audit chain broken"
        );
        self.emit(None, "*", Phase::ChainBroken, what.clone());
        self.notify(Notification {
            title: "selfheal: the audit chain is broken".into(),
            body: what,
            incident: None,
            event_type: "self_heal.chain_broken".into(),
            links: Vec::new(),
        })
        .await;
    }
}

impl Admin {
    /// What the check of the audit chain at start found: `None` before the pipeline
    /// has started (or when the store could not be read), `Some(Ok(()))` when the newest
    /// records chain and end where the store's checkpoint says, `Some(Err(..))` naming
    /// the first broken link, a record that does not decode, or where a truncated or
    /// emptied log ends.
    pub fn audit_chain(&self) -> Option<Result<(), ChainError>> {
        self.healer
            .inner
            .chain_check
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
