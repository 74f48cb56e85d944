//! Requests for unit tests.

use chrono::Utc;
use selfheal_core::{AdviceRequest, Incident, IncidentStatus, Severity, Uuid};
use serde_json::json;

/// A request about an incident whose one sample is `sample`, allowed `strategies`;
/// `restart` takes a required integer `grace_secs`.
pub(crate) fn request(strategies: &[&str], sample: &str) -> AdviceRequest {
    let now = Utc::now();
    let incident = Incident {
        id: Uuid::new_v4(),
        target: "orders-db".into(),
        fingerprint: "0011223344556677".into(),
        template: "query failed: <*>".into(),
        stack: None,
        related: Vec::new(),
        pattern: None,
        status: IncidentStatus::Open,
        severity: Severity::Medium,
        occurrences: 7,
        samples: vec![sample.to_owned()],
        opened_at: now,
        last_seen: now,
        closed_at: None,
        reason: String::new(),
    };
    let mut request = AdviceRequest::new(
        incident,
        strategies.iter().map(|s| (*s).to_owned()).collect(),
    );
    request.param_schemas.insert(
        "restart".into(),
        json!({"type": "object", "required": ["grace_secs"], "properties": {"grace_secs": {"type": "integer"}}}),
    );
    request
}
