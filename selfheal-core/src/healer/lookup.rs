//! Look-ups the admin surface needs: the approvals of an incident (one approval by
//! id is `Admin::approval`).

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
}
