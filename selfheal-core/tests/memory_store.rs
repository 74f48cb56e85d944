//! The `PatternStore` conformance suite against the in-memory reference store, and
//! proof that the suite catches stores that get things wrong.
//!
//! Run with `cargo test -p selfheal-core --features test-util --test memory_store`.
#![cfg(feature = "test-util")]

use async_trait::async_trait;
use std::time::Duration;

use selfheal_core::{
    ActionRecord, Approval, AuditRecord, AuditStore, ControlStore, Diagnosis, DiagnosisCache,
    FleetStore, Incident, IncidentFilter, IncidentStore, MemoryStore, Pattern, PatternStore,
    ReportStore, Result, Store, testkit,
};
use uuid::Uuid;

#[tokio::test]
async fn memory_store_passes_the_conformance_suite() {
    testkit::run_all(&MemoryStore::new()).await;
}

#[tokio::test]
async fn the_suite_can_run_twice_against_one_store() {
    let store = MemoryStore::new();
    testkit::run_all(&store).await;
    testkit::run_all(&store).await;
}

#[tokio::test]
#[should_panic(expected = "newest first")]
async fn the_suite_catches_incidents_listed_oldest_first() {
    testkit::incidents_upsert_filter_and_order(&Flawed::new(Flaw::OldestFirst)).await;
}

#[tokio::test]
#[should_panic(expected = "append_audit of an existing seq must fail")]
async fn the_suite_catches_an_audit_log_that_accepts_duplicates() {
    testkit::audit_is_append_only_and_chained(&Flawed::new(Flaw::SilentDuplicates)).await;
}

#[tokio::test]
#[should_panic(expected = "unchanged")]
async fn the_suite_catches_fixes_coming_back_out_of_order() {
    testkit::patterns_round_trip(&Flawed::new(Flaw::ReversedFixes)).await;
}

/// A store with one deliberate mistake, to show the suite notices it.
#[derive(Debug)]
struct Flawed {
    inner: MemoryStore,
    flaw: Flaw,
}

#[derive(Debug, PartialEq)]
enum Flaw {
    OldestFirst,
    SilentDuplicates,
    ReversedFixes,
}

impl Flawed {
    fn new(flaw: Flaw) -> Self {
        Flawed {
            inner: MemoryStore::new(),
            flaw,
        }
    }
}

impl Store for Flawed {
    fn name(&self) -> &str {
        "flawed"
    }

    fn fleet(&self) -> Option<&dyn FleetStore> {
        Some(&self.inner)
    }
}

#[async_trait]
impl PatternStore for Flawed {
    async fn list_patterns(&self) -> Result<Vec<Pattern>> {
        self.inner.list_patterns().await
    }

    async fn get_pattern(&self, name: &str) -> Result<Option<Pattern>> {
        let mut p = self.inner.get_pattern(name).await?;
        if self.flaw == Flaw::ReversedFixes
            && let Some(p) = p.as_mut()
        {
            p.fixes.reverse();
        }
        Ok(p)
    }

    async fn add_pattern(&self, pattern: &Pattern) -> Result<()> {
        self.inner.add_pattern(pattern).await
    }

    async fn update_pattern(&self, pattern: &Pattern) -> Result<()> {
        self.inner.update_pattern(pattern).await
    }

    async fn record_outcome(
        &self,
        pattern: &str,
        strategy: &str,
        success: bool,
        confidence_delta: f64,
    ) -> Result<Pattern> {
        self.inner
            .record_outcome(pattern, strategy, success, confidence_delta)
            .await
    }
}

#[async_trait]
impl IncidentStore for Flawed {
    async fn save_incident(&self, incident: &Incident) -> Result<()> {
        self.inner.save_incident(incident).await
    }

    async fn get_incident(&self, id: Uuid) -> Result<Option<Incident>> {
        self.inner.get_incident(id).await
    }

    async fn list_incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>> {
        let mut out = self.inner.list_incidents(filter).await?;
        if self.flaw == Flaw::OldestFirst {
            out.reverse();
        }
        Ok(out)
    }

    async fn save_action(&self, action: &ActionRecord) -> Result<()> {
        self.inner.save_action(action).await
    }

    async fn list_actions(&self, incident: Option<Uuid>) -> Result<Vec<ActionRecord>> {
        self.inner.list_actions(incident).await
    }

    async fn save_approval(&self, approval: &Approval) -> Result<()> {
        self.inner.save_approval(approval).await
    }

    async fn list_approvals(&self, pending_only: bool) -> Result<Vec<Approval>> {
        self.inner.list_approvals(pending_only).await
    }
    async fn retention_cleanup(&self, older_than: chrono::DateTime<chrono::Utc>) -> Result<u64> {
        self.inner.retention_cleanup(older_than).await
    }
}

#[async_trait]
impl AuditStore for Flawed {
    async fn append_audit(&self, record: &AuditRecord) -> Result<()> {
        match self.inner.append_audit(record).await {
            Err(_) if self.flaw == Flaw::SilentDuplicates => Ok(()),
            other => other,
        }
    }

    async fn list_audit(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        self.inner.list_audit(limit).await
    }
    async fn audit_checkpoint(&self) -> Result<Option<selfheal_core::ChainHead>> {
        self.inner.audit_checkpoint().await
    }
}

#[async_trait]
impl DiagnosisCache for Flawed {
    async fn cached_diagnosis(&self, fingerprint: &str) -> Result<Option<Diagnosis>> {
        self.inner.cached_diagnosis(fingerprint).await
    }
    async fn cache_diagnosis(&self, fingerprint: &str, d: &Diagnosis, ttl: Duration) -> Result<()> {
        self.inner.cache_diagnosis(fingerprint, d, ttl).await
    }
}

#[async_trait]
impl ReportStore for Flawed {}

#[async_trait]
impl ControlStore for Flawed {
    async fn put_control(&self, key: &str, value: &serde_json::Value) -> Result<()> {
        self.inner.put_control(key, value).await
    }
    async fn delete_control(&self, key: &str) -> Result<bool> {
        self.inner.delete_control(key).await
    }
    async fn list_control(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>> {
        self.inner.list_control(prefix).await
    }
    async fn approval(&self, id: uuid::Uuid) -> Result<Option<selfheal_core::Approval>> {
        self.inner.approval(id).await
    }
    async fn decide_approval<'a>(
        &self,
        id: uuid::Uuid,
        state: selfheal_core::ApprovalState,
        by: &str,
        note: Option<&'a str>,
    ) -> Result<selfheal_core::Decided> {
        self.inner.decide_approval(id, state, by, note).await
    }
}
