//! The store's reports through the [`Healer`] handle: what operators read.

use super::admin::Admin;
use chrono::{DateTime, Utc};

use crate::{AuditRecord, OverviewRow, PatternReport, Result};

impl Admin {
    /// The healing overview: incidents newest first (at most `limit`), each with its
    /// pattern, fingerprint, status and last action.
    pub async fn healing_overview(&self, limit: Option<usize>) -> Result<Vec<OverviewRow>> {
        self.healer.inner.store.healing_overview(limit).await
    }

    /// The audit records at or after `since`, oldest first.
    pub async fn recent_activity(&self, since: DateTime<Utc>) -> Result<Vec<AuditRecord>> {
        self.healer.inner.store.recent_activity(since).await
    }

    /// Per-pattern stats since `since`: incidents and occurrences per hour, results per
    /// strategy, MTTR, actions by outcome.
    pub async fn pattern_report(&self, since: DateTime<Utc>) -> Result<Vec<PatternReport>> {
        self.healer.inner.store.pattern_report(since).await
    }

    /// Deletes resolved, escalated and closed incidents that closed before `older_than`,
    /// with their actions and approvals (never the audit log); returns how many.
    pub async fn retention_cleanup(&self, older_than: DateTime<Utc>) -> Result<u64> {
        let deleted = self
            .healer
            .inner
            .store
            .retention_cleanup(older_than)
            .await?;
        tracing::info!(deleted, %older_than, "retention cleanup");
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::TimeDelta;

    use crate::{Healer, HealerConfig, IncidentStatus, MemoryStore, Signal};

    #[tokio::test]
    async fn an_escalated_incident_shows_in_the_reports_and_goes_with_retention() {
        let store = Arc::new(MemoryStore::new());
        let mut config = HealerConfig::default();
        config.detection.default_min_occurrences = 1;
        let healer = Healer::builder()
            .config(config)
            .store_arc(store)
            .build()
            .unwrap();
        let mut events = healer.subscribe();
        let running = healer.spawn();
        let start = chrono::Utc::now() - TimeDelta::seconds(1);
        healer.observe(Signal::new("db", "disk full on /var"));
        // Unknown error, no advisor: escalated at once.
        tokio::time::timeout(Duration::from_secs(10), async {
            while events.recv().await.unwrap().phase != crate::Phase::Escalated {}
        })
        .await
        .expect("escalated");
        running.shutdown().await;

        let overview = healer.admin().healing_overview(None).await.unwrap();
        assert_eq!(overview.len(), 1);
        assert_eq!(overview[0].status, IncidentStatus::Escalated);
        assert_eq!(overview[0].last_action, None);
        let activity = healer.admin().recent_activity(start).await.unwrap();
        assert!(
            activity
                .iter()
                .any(|r| r.event_type == "self_heal.escalated")
        );
        assert!(
            healer
                .admin()
                .pattern_report(start)
                .await
                .unwrap()
                .is_empty(),
            "no pattern"
        );
        assert_eq!(
            healer.admin().retention_cleanup(start).await.unwrap(),
            0,
            "too recent"
        );
        let later = chrono::Utc::now() + TimeDelta::seconds(1);
        assert_eq!(healer.admin().retention_cleanup(later).await.unwrap(), 1);
        assert!(
            healer
                .admin()
                .healing_overview(None)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            healer.admin().recent_activity(start).await.unwrap(),
            activity,
            "the audit log stays"
        );
    }
}
