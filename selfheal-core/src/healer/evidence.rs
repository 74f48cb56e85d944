//! Evidence for texts with two causes. sqlx prints `pool timed out while waiting for
//! an open connection` for a saturated pool, a database out of slots and a database
//! that is down alike. A pattern that declares its text ambiguous
//! ([`crate::Pattern::ambiguous`]) is checked against the target's probe
//! ([`crate::Verifier::diagnose`]) before anything is decided: when the probe names
//! another pattern, that pattern explains the incident. The probe is bounded in time
//! and its answer cached briefly per target, so a burst of incidents asks once.

use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use super::Healer;
use crate::{AuditEntry, Incident, PatternMatch};

/// How long a probe may take before the text's own pattern stands.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a probe's answer is reused for the same target.
const CACHE_FOR: Duration = Duration::from_secs(5);

/// Recent probe answers per target.
#[derive(Debug, Default)]
pub(crate) struct Evidence {
    answers: DashMap<String, (Instant, Option<String>)>,
}

impl Healer {
    /// Re-reads an ambiguous match in the light of the target's probe; returns the
    /// incident and the match that explains it.
    pub(super) async fn weigh_evidence(
        &self,
        mut incident: Incident,
        matched: Option<PatternMatch>,
    ) -> (Incident, Option<PatternMatch>) {
        let Some(m) = matched else {
            return (incident, None);
        };
        let matcher = self.matcher();
        if !matcher.pattern(&m.pattern).is_some_and(|p| p.ambiguous) {
            return (incident, Some(m));
        }
        let Some(named) = self.probe_names(&incident.target).await else {
            return (incident, Some(m));
        };
        let Some(pattern) = matcher
            .pattern(&named)
            .filter(|p| p.enabled && named != m.pattern)
        else {
            return (incident, Some(m));
        };
        let why = format!(
            "`{}` has more than one cause; the probe of `{}` points to `{named}`",
            m.pattern, incident.target
        );
        tracing::info!(from = %m.pattern, to = %named, target = %incident.target, "probe evidence re-reads an ambiguous match");
        let better = PatternMatch {
            pattern: named.clone(),
            confidence: pattern.confidence,
            severity: pattern.severity,
            reasons: vec![why.clone()],
        };
        incident.pattern = Some(named.clone());
        incident.severity = better.severity;
        if let Some(mut live) = self.inner.open.get_mut(&incident.id) {
            live.pattern = Some(named.clone());
            live.severity = better.severity;
        }
        self.audit(AuditEntry {
            incident: Some(incident.id),
            pattern: Some(named),
            detail: serde_json::json!({"text_matched": m.pattern}),
            ..AuditEntry::new("self_heal.evidence", why)
        })
        .await;
        (incident, Some(better))
    }

    /// The pattern the target's probe points to, asked at most once per
    /// [`CACHE_FOR`] and never waited for longer than [`PROBE_TIMEOUT`].
    async fn probe_names(&self, target: &str) -> Option<String> {
        let cache = &self.inner.evidence.answers;
        if let Some(hit) = cache.get(target)
            && hit.0.elapsed() < CACHE_FOR
        {
            return hit.1.clone();
        }
        let verifier = self.inner.verifiers.get(target)?;
        let answer = match tokio::time::timeout(PROBE_TIMEOUT, verifier.diagnose()).await {
            Ok(Ok(named)) => named,
            Ok(Err(e)) => {
                tracing::warn!(verifier = verifier.name(), error = %e, "the probe could not diagnose; the text's pattern stands");
                None
            }
            Err(_) => {
                tracing::warn!(
                    verifier = verifier.name(),
                    "the probe did not answer in time; the text's pattern stands"
                );
                None
            }
        };
        cache.insert(target.to_owned(), (Instant::now(), answer.clone()));
        answer
    }
}
