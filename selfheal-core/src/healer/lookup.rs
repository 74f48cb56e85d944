//! Look-ups by id the admin surface needs: one approval, the approvals of an incident.

use uuid::Uuid;

use super::Admin;
use crate::{Approval, Result};

impl Admin {
    /// Every approval, decided or not, oldest first; only those of `incident` when given.
    pub async fn approvals(&self, incident: Option<Uuid>) -> Result<Vec<Approval>> {
        let mut all = self.healer.inner.store.list_approvals(false).await?;
        if let Some(id) = incident {
            all.retain(|a| a.incident == id);
        }
        Ok(all)
    }

    /// One approval by id, decided or not.
    pub async fn approval(&self, id: Uuid) -> Result<Option<Approval>> {
        Ok(self
            .healer
            .inner
            .store
            .list_approvals(false)
            .await?
            .into_iter()
            .find(|a| a.id == id))
    }
}
