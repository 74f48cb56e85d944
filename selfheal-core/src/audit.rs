//! The append-only, hash-chained audit trail.
//!
//! Each record carries the hash of the one before it, so editing or deleting a
//! stored record breaks the chain and [`verify_chain`] says where.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The hash before the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// NIST SP 800-53 controls every healing record maps to: incident handling (IR-4),
/// incident monitoring (IR-5), security alerts and advisories (SI-5).
pub const NIST_CONTROLS: [&str; 3] = ["IR-4", "IR-5", "SI-5"];

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When (microsecond precision, so it survives every store).
    pub at: DateTime<Utc>,
    /// `self_heal.auto`, `self_heal.suggested`, `self_heal.escalated`, `self_heal.executed`, …
    pub event_type: String,
    /// Who: `selfheal` or the operator's name.
    pub actor: String,
    /// The incident, if any.
    pub incident: Option<Uuid>,
    /// The pattern, if any.
    pub pattern: Option<String>,
    /// The confidence at the time, if any.
    pub confidence: Option<f64>,
    /// The action (strategy) concerned, if any.
    pub action: Option<String>,
    /// The result in a word or a sentence.
    pub result: String,
    /// The NIST controls this record serves.
    pub controls: Vec<String>,
    /// Extra context.
    pub detail: serde_json::Value,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// Hash of this record.
    pub hash: String,
}

/// The fields of a record before it is chained.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditEntry {
    /// See [`AuditRecord::event_type`].
    pub event_type: String,
    /// See [`AuditRecord::actor`].
    pub actor: String,
    /// See [`AuditRecord::incident`].
    pub incident: Option<Uuid>,
    /// See [`AuditRecord::pattern`].
    pub pattern: Option<String>,
    /// See [`AuditRecord::confidence`].
    pub confidence: Option<f64>,
    /// See [`AuditRecord::action`].
    pub action: Option<String>,
    /// See [`AuditRecord::result`].
    pub result: String,
    /// See [`AuditRecord::detail`].
    pub detail: serde_json::Value,
}

impl AuditEntry {
    /// An entry of `event_type` with `result`, by `selfheal`.
    pub fn new(event_type: impl Into<String>, result: impl Into<String>) -> Self {
        AuditEntry {
            event_type: event_type.into(),
            actor: "selfheal".to_owned(),
            result: result.into(),
            ..Default::default()
        }
    }

    /// Chains the entry after `prev` (or the genesis when `None`).
    pub fn chain(self, prev: Option<&AuditRecord>, at: DateTime<Utc>) -> AuditRecord {
        let (seq, prev_hash) = match prev {
            Some(p) => (p.seq + 1, p.hash.clone()),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let mut record = AuditRecord {
            seq,
            at: at.trunc_subsecs(6),
            event_type: self.event_type,
            actor: self.actor,
            incident: self.incident,
            pattern: self.pattern,
            confidence: self.confidence,
            action: self.action,
            result: self.result,
            controls: NIST_CONTROLS.iter().map(|c| (*c).to_owned()).collect(),
            detail: self.detail,
            prev_hash,
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        record
    }
}

impl AuditRecord {
    /// The fields it was chained from, to chain them again at another position (when
    /// another writer took this one's).
    pub fn entry(&self) -> AuditEntry {
        AuditEntry {
            event_type: self.event_type.clone(),
            actor: self.actor.clone(),
            incident: self.incident,
            pattern: self.pattern.clone(),
            confidence: self.confidence,
            action: self.action.clone(),
            result: self.result.clone(),
            detail: self.detail.clone(),
        }
    }

    /// Its position and hash, as a checkpoint keeps them.
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }

    /// The sha256 (hex) over the previous hash and every field but `hash`.
    pub fn compute_hash(&self) -> String {
        let canonical = serde_json::json!([
            self.seq,
            self.at.timestamp_micros(),
            self.event_type,
            self.actor,
            self.incident.map(|i| i.to_string()),
            self.pattern,
            self.confidence,
            self.action,
            self.result,
            self.controls,
            self.detail,
        ]);
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(canonical.to_string().as_bytes());
        hex(&hasher.finalize())
    }
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at seq {seq}: {reason}")]
pub struct ChainError {
    /// The first record that does not fit.
    pub seq: u64,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks that `records` (in order, from the first) form an unbroken chain.
pub fn verify_chain(records: &[AuditRecord]) -> Result<(), ChainError> {
    let mut prev: Option<&AuditRecord> = None;
    for r in records {
        match prev {
            None if r.seq == 1 && r.prev_hash != GENESIS_HASH => {
                return Err(ChainError {
                    seq: r.seq,
                    reason: "the first record does not start at the genesis hash",
                });
            }
            None => {}
            Some(p) if r.seq != p.seq + 1 => {
                return Err(ChainError {
                    seq: r.seq,
                    reason: "a record is missing before it",
                });
            }
            Some(p) if r.prev_hash != p.hash => {
                return Err(ChainError {
                    seq: r.seq,
                    reason: "prev_hash does not match the record before",
                });
            }
            Some(_) => {}
        }
        if r.compute_hash() != r.hash {
            return Err(ChainError {
                seq: r.seq,
                reason: "its content was changed after it was written",
            });
        }
        prev = Some(r);
    }
    Ok(())
}

/// The newest record's position and hash, kept outside the audit table (a checkpoint
/// file beside a SQLite database, a row of its own in PostgreSQL) so that removing
/// records from the end of the table, or all of them, is noticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Position of the newest record written.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

/// Checks the newest `records` (oldest first, as `list_audit` returns them) against the
/// `checkpoint` kept outside the table: the record at the checkpoint's position must
/// still be there with the same hash. A log that ends before the checkpoint was
/// truncated, an empty one was emptied. A checkpoint older than the first record given
/// cannot be checked here and passes.
pub fn verify_checkpoint(
    records: &[AuditRecord],
    checkpoint: Option<&ChainHead>,
) -> Result<(), ChainError> {
    let Some(cp) = checkpoint else {
        return Ok(());
    };
    let Some(newest) = records.last() else {
        return Err(ChainError {
            seq: cp.seq,
            reason: "the audit log is empty, but its checkpoint says it held records: it was emptied",
        });
    };
    if newest.seq < cp.seq {
        return Err(ChainError {
            seq: newest.seq + 1,
            reason: "records from here to the checkpoint are missing: the log was truncated",
        });
    }
    match records.iter().find(|r| r.seq == cp.seq) {
        Some(r) if r.hash != cp.hash => Err(ChainError {
            seq: r.seq,
            reason: "the record at the checkpoint is not the one the checkpoint names: the log was rewritten",
        }),
        _ => Ok(()),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_of(n: usize) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let entry = AuditEntry {
                confidence: Some(0.75),
                detail: serde_json::json!({"i": i}),
                ..AuditEntry::new("self_heal.auto", "ok")
            };
            let rec = entry.chain(out.last(), Utc::now());
            out.push(rec);
        }
        out
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let chain = chain_of(5);
        assert_eq!(chain[0].prev_hash, GENESIS_HASH);
        assert_eq!(chain[4].seq, 5);
        assert_eq!(chain[0].controls, ["IR-4", "IR-5", "SI-5"]);
        verify_chain(&chain).unwrap();
    }

    #[test]
    fn tampering_and_deletion_are_detected() {
        let mut chain = chain_of(4);
        chain[2].result = "failed".into();
        assert_eq!(verify_chain(&chain).unwrap_err().seq, 3);

        let mut chain = chain_of(4);
        chain.remove(1);
        assert_eq!(verify_chain(&chain).unwrap_err().seq, 3);
    }

    #[test]
    fn a_checkpoint_catches_truncation_emptying_and_rewriting() {
        let chain = chain_of(4);
        let cp = chain[3].head();
        verify_checkpoint(&chain, Some(&cp)).unwrap();
        verify_checkpoint(&chain, None).unwrap();
        // A checkpoint one behind (a crash between the insert and the checkpoint) passes.
        verify_checkpoint(&chain, Some(&chain[2].head())).unwrap();

        let truncated = &chain[..2];
        verify_chain(truncated).unwrap();
        let err = verify_checkpoint(truncated, Some(&cp)).unwrap_err();
        assert_eq!(err.seq, 3);
        assert!(err.reason.contains("truncated"), "{err}");

        let err = verify_checkpoint(&[], Some(&cp)).unwrap_err();
        assert_eq!(err.seq, 4);
        assert!(err.reason.contains("emptied"), "{err}");

        let mut forged = chain_of(4);
        forged[3].hash = "f".repeat(64);
        let err = verify_checkpoint(&forged, Some(&cp)).unwrap_err();
        assert!(err.reason.contains("rewritten"), "{err}");
    }

    #[test]
    fn an_entry_chains_again_after_another_record() {
        let chain = chain_of(2);
        let moved = chain[1].entry().chain(Some(&chain[1]), chain[1].at);
        assert_eq!(
            (moved.seq, moved.prev_hash.clone()),
            (3, chain[1].hash.clone())
        );
        assert_eq!(moved.detail, chain[1].detail);
        let mut all = chain.clone();
        all.push(moved);
        verify_chain(&all).unwrap();
    }

    #[test]
    fn a_record_survives_a_json_round_trip() {
        let chain = chain_of(2);
        let text = serde_json::to_string(&chain).unwrap();
        let back: Vec<AuditRecord> = serde_json::from_str(&text).unwrap();
        verify_chain(&back).unwrap();
    }
}
