//! Backups strategies took before they changed something (a config file, a key), listed
//! and restored through the [`Healer`] handle. The strategies keep them (see
//! [`Strategy::backups`](crate::Strategy::backups)); the healer asks each registered one.

use super::admin::Admin;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{AuditEntry, Error, Result};

/// A copy a strategy took before it changed something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// Unique id, passed to [`Admin::restore_backup`].
    pub id: Uuid,
    /// The strategy that took it.
    pub strategy: String,
    /// The target the change was for.
    pub target: String,
    /// What was copied: a file's path, a key.
    pub location: String,
    /// Size of the copy in bytes.
    pub size: u64,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// When it was last restored, if ever.
    pub restored_at: Option<DateTime<Utc>>,
}

impl Admin {
    /// Every backup the registered strategies hold, newest first. A strategy whose
    /// backups cannot be read is logged and skipped.
    pub async fn backups(&self) -> Result<Vec<Backup>> {
        let mut all = Vec::new();
        for strategy in self.healer.inner.strategies.values() {
            match strategy.backups().await {
                Ok(b) => all.extend(b),
                Err(e) => {
                    tracing::warn!(strategy = strategy.name(), error = %e, "could not list backups")
                }
            }
        }
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    /// Puts backup `id` back in place (the file gets the bytes it had when the backup was
    /// taken); `actor` is recorded in the audit trail (`self_heal.backup_restored`).
    /// `NotFound` when no registered strategy holds that backup.
    pub async fn restore_backup(&self, id: Uuid, actor: &str) -> Result<Backup> {
        for strategy in self.healer.inner.strategies.values() {
            if let Some(backup) = strategy.restore_backup(id).await? {
                self.healer
                    .audit(AuditEntry {
                        actor: actor.to_owned(),
                        action: Some(backup.strategy.clone()),
                        detail: serde_json::json!({
                            "backup": backup.id,
                            "target": backup.target,
                            "location": backup.location,
                            "size": backup.size,
                        }),
                        ..AuditEntry::new("self_heal.backup_restored", "restored")
                    })
                    .await;
                tracing::info!(backup = %id, location = %backup.location, actor, "backup restored");
                return Ok(backup);
            }
        }
        Err(Error::not_found(format!(
            "no registered strategy holds backup {id}; list them with Admin::backups"
        )))
    }
}
