//! Learning from what operators did: an escalated or suggested incident that an
//! operator resolved (an approved fix that verified, or the operator saying which fix
//! worked) teaches the store a proposed pattern, alert-only, for an operator to promote.
//!
//! - The incident matched a pattern that binds the fix: that pattern's confidence rises
//!   by the feedback rule (`feedback.success_delta`), like any verified fix.
//! - Otherwise the store gets (or reinforces) the pattern `learned_<fingerprint>`: a
//!   regex made from the incident's fingerprint template (its masked parts match
//!   anything, the rest literally), the incident's target, the fix, alert-only and
//!   never auto-healable. Learning never makes a pattern act on its own: promoting it
//!   is [`Admin::promote_pattern`], an operator's call.
//!
//! Patterns whose fixes keep failing fall back by the same rule: each failure takes
//! `feedback.failure_delta` off, so an auto-healable pattern drops under the auto
//! threshold (suggest, wait for approval) and then under the suggest threshold
//! (escalate).

use super::admin::Admin;
use chrono::Utc;
use uuid::Uuid;

use super::Healer;
use super::admin::who;
use crate::{
    AuditEntry, Error, ErrorKind, FixBinding, Incident, IncidentStatus, Pattern, PatternMode,
    Result,
};

/// The mask the normalizing fingerprinter puts where a template's text varies.
const MASK: &str = "<*>";

/// The prefix of the names of patterns learning proposes.
pub const LEARNED_PREFIX: &str = "learned_";

/// Fewer literal letters and digits than this, and a template is too generic to learn.
const MIN_LITERAL_CHARS: usize = 8;

/// What an operator's resolution taught the store.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Learned {
    /// A new alert-only pattern, proposed for an operator to promote.
    Proposed(Pattern),
    /// A pattern that already bound the fix (the incident's, or an earlier proposal),
    /// with its confidence raised by the feedback rule.
    Reinforced(Pattern),
}

impl Learned {
    /// The pattern, whichever it is.
    pub fn pattern(&self) -> &Pattern {
        match self {
            Learned::Proposed(p) | Learned::Reinforced(p) => p,
        }
    }
}

impl Healer {
    /// After an approved fix from an advisor verified: learn from it, never failing the
    /// pipeline (a template too generic to learn is logged).
    pub(super) async fn learn_from_approval(&self, id: Uuid, fix: &FixBinding, approver: &str) {
        let Some(incident) = self.snapshot(id) else {
            return;
        };
        if let Err(e) = self.learn_from(&incident, fix, approver).await {
            tracing::info!(incident = %id, error = %e, "nothing learned from the approved fix");
        }
    }

    async fn learn_from(
        &self,
        incident: &Incident,
        fix: &FixBinding,
        actor: &str,
    ) -> Result<Learned> {
        let store = &self.inner.store;
        let binds = |p: &Pattern| p.fixes.iter().any(|f| f.strategy == fix.strategy);
        if let Some(name) = &incident.pattern
            && let Some(p) = store.get_pattern(name).await?
            && binds(&p)
        {
            return self.reinforce(&p, fix, actor, incident).await;
        }
        let name = learned_name(&incident.fingerprint);
        if let Some(mut p) = store.get_pattern(&name).await? {
            if !binds(&p) {
                p.fixes.push(learned_fix(fix));
                store.update_pattern(&p).await?;
            }
            return self.reinforce(&p, fix, actor, incident).await;
        }
        let proposal = propose(incident, fix, actor)?;
        store.add_pattern(&proposal).await?;
        let fb = &self.inner.config.feedback;
        let proposal = store
            .record_outcome(&proposal.name, &fix.strategy, true, fb.success_delta)
            .await?;
        self.reload_patterns().await?;
        tracing::info!(pattern = %proposal.name, incident = %incident.id, "proposed a learned pattern (alert-only)");
        self.audit(AuditEntry {
            actor: actor.to_owned(),
            incident: Some(incident.id),
            pattern: Some(proposal.name.clone()),
            confidence: Some(proposal.confidence),
            action: Some(fix.strategy.clone()),
            detail: serde_json::json!({"pattern": proposal}),
            ..AuditEntry::new(
                "self_heal.pattern_proposed",
                "learned from an operator's fix; alert-only until an operator promotes it",
            )
        })
        .await;
        Ok(Learned::Proposed(proposal))
    }

    async fn reinforce(
        &self,
        pattern: &Pattern,
        fix: &FixBinding,
        actor: &str,
        incident: &Incident,
    ) -> Result<Learned> {
        let fb = &self.inner.config.feedback;
        let updated = self
            .inner
            .store
            .record_outcome(&pattern.name, &fix.strategy, true, fb.success_delta)
            .await?;
        self.reload_patterns().await?;
        self.audit(AuditEntry {
            actor: actor.to_owned(),
            incident: Some(incident.id),
            pattern: Some(updated.name.clone()),
            confidence: Some(updated.confidence),
            action: Some(fix.strategy.clone()),
            ..AuditEntry::new(
                "self_heal.pattern_reinforced",
                format!(
                    "confidence {:.2} -> {:.2}",
                    pattern.confidence, updated.confidence
                ),
            )
        })
        .await;
        Ok(Learned::Reinforced(updated))
    }
}

fn learned_name(fingerprint: &str) -> String {
    format!("{LEARNED_PREFIX}{fingerprint}")
}

fn learned_fix(fix: &FixBinding) -> FixBinding {
    FixBinding::new(fix.strategy.clone())
        .params(fix.params.clone())
        .priority(fix.priority)
        .requires_approval(fix.requires_approval)
}

/// The alert-only pattern learned from `incident` resolved with `fix`.
fn propose(incident: &Incident, fix: &FixBinding, actor: &str) -> Result<Pattern> {
    let regex = template_regex(&incident.template)?;
    let pattern = Pattern::new(learned_name(&incident.fingerprint))
        .description(format!(
            "Learned from incident {} on `{}`: {}",
            incident.id, incident.target, incident.template
        ))
        .regex(regex)
        .target(incident.target.clone())
        .severity(incident.severity)
        .root_cause(format!(
            "resolved by {actor} with `{}`; review before promoting",
            fix.strategy
        ))
        .mode(PatternMode::AlertOnly)
        .auto_healable(false)
        .fix(learned_fix(fix));
    pattern.validate()?;
    let compiled = pattern.compile_regex().ok().flatten();
    if let (Some(re), Some(sample)) = (compiled, incident.samples.first())
        && !re.is_match(sample)
    {
        return Err(Error::invalid(format!(
            "the regex learned from template `{}` does not match the incident's sample; add a pattern by hand",
            incident.template
        )));
    }
    Ok(pattern)
}

/// A regex from a fingerprint template: masked parts match anything, spaces any run of
/// whitespace, the rest literally. Refused when too little is literal to be specific.
pub fn template_regex(template: &str) -> Result<String> {
    let literal: usize = template
        .split(MASK)
        .flat_map(str::chars)
        .filter(|c| c.is_alphanumeric())
        .count();
    if literal < MIN_LITERAL_CHARS {
        return Err(Error::invalid(format!(
            "template `{template}` has too little fixed text to learn a pattern from ({literal} letters or digits, at least {MIN_LITERAL_CHARS}); add a pattern by hand"
        )));
    }
    let parts: Vec<String> = template
        .split(MASK)
        .map(|part| {
            part.split(' ')
                .map(regex::escape)
                .collect::<Vec<_>>()
                .join(r"\s+")
        })
        .collect();
    // `(?s)`: a masked part (a quoted value, say) may span lines.
    Ok(parts.join("(?s:.*?)"))
}

impl Admin {
    /// The patterns learning proposed that are still alert-only: what waits for an
    /// operator's review ([`Admin::promote_pattern`] or `set_pattern_enabled(.., false, ..)`).
    pub async fn proposed_patterns(&self) -> Result<Vec<Pattern>> {
        Ok(self
            .healer
            .inner
            .store
            .list_patterns()
            .await?
            .into_iter()
            .filter(|p| p.name.starts_with(LEARNED_PREFIX) && p.mode == PatternMode::AlertOnly)
            .collect())
    }

    /// An operator says `fix` resolved `incident`, an incident the healer escalated or
    /// closed without fixing (a rejected or expired suggestion, an alert-only match).
    /// The incident is marked resolved by `actor` (audited as
    /// `self_heal.resolved_by_operator`) and the store learns from it (see
    /// [`Learned`]). The fix must name a registered strategy whose `validate` accepts
    /// its parameters.
    pub async fn mark_fixed(
        &self,
        incident: Uuid,
        fix: FixBinding,
        actor: &str,
    ) -> Result<Learned> {
        let actor = who(actor)?;
        let mut incident = self.incident(incident).await?.ok_or_else(|| {
            Error::not_found(format!(
                "no incident {incident}; list them with Admin::incidents"
            ))
        })?;
        match incident.status {
            IncidentStatus::Escalated | IncidentStatus::Closed => {}
            IncidentStatus::Resolved => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "incident {} is resolved already; nothing to learn twice",
                        incident.id
                    ),
                ));
            }
            other => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "incident {} is still {}; answer its approval or wait until it is escalated or closed",
                        incident.id,
                        other.as_str()
                    ),
                ));
            }
        }
        let strategy = self
            .healer
            .inner
            .strategies
            .get(&fix.strategy)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "strategy `{}` is not registered; name one of the healer's strategies",
                    fix.strategy
                ))
            })?;
        strategy.validate(&fix.params)?;

        incident.status = IncidentStatus::Resolved;
        incident.closed_at = Some(Utc::now());
        incident.reason = format!("resolved by {actor} with `{}`", fix.strategy);
        self.healer.inner.store.save_incident(&incident).await?;
        // Fixed by hand: the error no longer counts into this (escalated) incident.
        self.healer.forget(incident.id);
        self.healer
            .audit(AuditEntry {
                actor: actor.to_owned(),
                incident: Some(incident.id),
                pattern: incident.pattern.clone(),
                action: Some(fix.strategy.clone()),
                detail: serde_json::json!({"params": fix.params}),
                ..AuditEntry::new("self_heal.resolved_by_operator", incident.reason.clone())
            })
            .await;
        self.healer.learn_from(&incident, &fix, actor).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Normalizer;

    #[test]
    fn a_template_regex_matches_the_messages_it_came_from_and_not_others() {
        let n = Normalizer::default();
        let a = "upstream 10.0.0.7:9000 closed stream 42 after 30s (GOAWAY)";
        let b = "upstream 10.0.0.9:9000 closed stream 7 after 2s (GOAWAY)";
        let re = regex::Regex::new(&template_regex(&n.template(a)).unwrap()).unwrap();
        assert!(re.is_match(a) && re.is_match(b));
        assert!(!re.is_match("upstream closed the connection"));
        // Regex syntax in the text is literal.
        let c = "cache key (a+b)* expired";
        let re = regex::Regex::new(&template_regex(&n.template(c)).unwrap()).unwrap();
        assert!(re.is_match(c) && !re.is_match("cache key aab expired"));
    }

    /// The feedback rule alone moves a failing pattern from auto-remediation to a
    /// suggestion to an escalation, and a succeeding one back up.
    #[tokio::test]
    async fn failing_fixes_fall_back_to_suggestion_then_escalation() {
        use crate::{Decision, FeedbackConfig, MemoryStore, PatternStore, PolicyConfig, decide};
        let store = MemoryStore::new();
        let fix = FixBinding::new("restart");
        store
            .add_pattern(
                &Pattern::new("p")
                    .regex("x")
                    .mode(PatternMode::Active)
                    .auto_healable(true)
                    .confidence(0.75)
                    .fix(fix.clone()),
            )
            .await
            .unwrap();
        let (policy, fb) = (PolicyConfig::default(), FeedbackConfig::default());
        let decision = |p: &Pattern| decide(&policy, p, p.confidence, &fix, false);
        let p = store.get_pattern("p").await.unwrap().unwrap();
        assert_eq!(decision(&p), Decision::AutoRemediate);

        let mut seen = Vec::new();
        let mut p = p;
        for _ in 0..5 {
            p = store
                .record_outcome("p", "restart", false, -fb.failure_delta)
                .await
                .unwrap();
            seen.push(std::mem::discriminant(&decision(&p)));
        }
        let suggest = std::mem::discriminant(&Decision::Suggest {
            reason: String::new(),
        });
        let escalate = std::mem::discriminant(&Decision::Escalate {
            reason: String::new(),
        });
        // 0.65, 0.55, 0.45, 0.35: suggest; 0.25: escalate.
        assert_eq!(seen, [suggest, suggest, suggest, suggest, escalate]);
        assert!(
            p.auto_healable,
            "the operator's mark stays; confidence decides"
        );

        for _ in 0..10 {
            p = store
                .record_outcome("p", "restart", true, fb.success_delta)
                .await
                .unwrap();
        }
        assert!((p.confidence - 0.75).abs() < 1e-9, "{}", p.confidence);
        assert_eq!(decision(&p), Decision::AutoRemediate);
        assert_eq!((p.fixes[0].successes, p.fixes[0].failures), (10, 5));
    }

    proptest::proptest! {
        /// Whatever the message, a regex learned from its template compiles and matches
        /// the message again (or the template is refused as too generic).
        #[test]
        fn a_learned_regex_always_matches_its_own_message(
            message in "[ \t\na-zA-Z0-9_:;,./'\"=()\\[\\]{}<>|*+?$^-]{0,80}",
        ) {
            let template = Normalizer::default().template(&message);
            if let Ok(re) = template_regex(&template) {
                let re = regex::Regex::new(&re).unwrap();
                proptest::prop_assert!(re.is_match(&message), "{re} vs {message:?} ({template:?})");
            }
        }
    }

    #[test]
    fn a_template_with_too_little_fixed_text_is_refused() {
        let err = template_regex("<*>: <*> ok").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("too little fixed text"), "{err}");
    }
}
