//! Dependency-aware attribution: a target declares what it depends on; while a
//! dependency has an open incident (or its probe says it is unhealthy), its
//! dependents' failures are attributed to it and only the dependency is remediated.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::Healer;
use crate::{AuditEntry, Incident, IncidentStatus, Phase};

/// Who depends on whom.
#[derive(Debug, Default)]
pub(crate) struct Dependencies {
    on: BTreeMap<String, Vec<String>>,
}

impl Dependencies {
    pub(crate) fn new(on: &BTreeMap<String, Vec<String>>) -> Self {
        Dependencies { on: on.clone() }
    }

    /// What `target` depends on.
    pub(crate) fn of(&self, target: &str) -> &[String] {
        self.on.get(target).map_or(&[], Vec::as_slice)
    }

    /// Every target named as a dependency or a dependent.
    pub(crate) fn targets(&self) -> impl Iterator<Item = &String> {
        self.on
            .iter()
            .flat_map(|(t, deps)| std::iter::once(t).chain(deps))
    }
}

/// Why a dependent's failure belongs to a dependency.
pub(crate) enum Cause {
    /// The dependency has an open incident: count into it.
    Incident(Uuid),
    /// The dependency's probe says it is unhealthy, but nothing is open for it.
    Probe(String, u8),
}

impl Healer {
    /// The open incident of one of `target`'s dependencies, if any.
    pub(super) fn dependency_incident(&self, target: &str) -> Option<Uuid> {
        self.inner.dependencies.of(target).iter().find_map(|dep| {
            let id = *self.inner.by_target.get(dep)?;
            self.inner
                .open
                .get(&id)
                .is_some_and(|i| !i.status.is_terminal())
                .then_some(id)
        })
    }

    /// Whether one of `target`'s dependencies is unhealthy, and how we know.
    pub(super) async fn unhealthy_dependency(&self, target: &str) -> Option<Cause> {
        if let Some(id) = self.dependency_incident(target) {
            return Some(Cause::Incident(id));
        }
        for dep in self.inner.dependencies.of(target) {
            if let Some(health) = self.probe(dep).await.filter(|h| !h.passed) {
                return Some(Cause::Probe(dep.clone(), health.score));
            }
        }
        None
    }

    /// Folds a just-detected incident of a dependent into its dependency's open one
    /// before it is recorded: one root cause, one incident. `true` when folded.
    pub(super) async fn fold_into_dependency(&self, incident: &Incident) -> bool {
        let Some(into) = self.dependency_incident(&incident.target) else {
            return false;
        };
        self.inner.open.remove(&incident.id);
        let key = super::occurrence_key(&incident.target, &incident.fingerprint);
        self.inner
            .by_fingerprint
            .remove_if(&key, |_, v| *v == incident.id);
        self.inner
            .by_target
            .remove_if(&incident.target, |_, v| *v == incident.id);
        self.inner.detector.reset(&key);
        let Some(parent) = self.absorb(into, incident) else {
            return false;
        };
        self.attributed(&parent, incident).await;
        true
    }

    /// Closes an incident whose target's dependency turned out unhealthy: nothing runs
    /// on the dependent. `true` when closed.
    pub(super) async fn attribute_to_dependency(&self, id: Uuid) -> bool {
        let Some(incident) = self.snapshot(id) else {
            return false;
        };
        match self.unhealthy_dependency(&incident.target).await {
            None => false,
            Some(Cause::Incident(into)) => {
                if let Some(parent) = self.absorb(into, &incident) {
                    self.attributed(&parent, &incident).await;
                }
                self.close(
                    id,
                    IncidentStatus::Closed,
                    format!(
                        "attributed to `{}` (incident {into}), which is remediated instead",
                        self.snapshot(into)
                            .map_or_else(|| "its dependency".to_owned(), |p| p.target)
                    ),
                )
                .await;
                true
            }
            Some(Cause::Probe(dep, score)) => {
                self.inner.blocked_by.insert(id, dep.clone());
                self.escalate(
                    id,
                    format!(
                        "`{}` depends on `{dep}`, whose probe says health {score}; \
                         not remediating `{}` for its dependency's failure",
                        incident.target, incident.target
                    ),
                )
                .await;
                true
            }
        }
    }

    /// Adds `child`'s occurrences and samples to the open incident `into`.
    fn absorb(&self, into: Uuid, child: &Incident) -> Option<Incident> {
        let mut parent = self.inner.open.get_mut(&into)?;
        parent.occurrences += child.occurrences;
        parent.last_seen = parent.last_seen.max(child.last_seen);
        for s in &child.samples {
            if parent.samples.len() < super::intake::MAX_SAMPLES && !parent.samples.contains(s) {
                parent.samples.push(s.clone());
            }
        }
        Some(parent.clone())
    }

    async fn attributed(&self, parent: &Incident, child: &Incident) {
        self.emit(
            Some(parent),
            &child.target,
            Phase::Attributed,
            format!(
                "{} failure(s) of `{}` attributed to its dependency `{}`",
                child.occurrences, child.target, parent.target
            ),
        );
        self.audit(AuditEntry {
            incident: Some(parent.id),
            pattern: parent.pattern.clone(),
            detail: serde_json::json!({
                "dependent": child.target,
                "fingerprint": child.fingerprint,
                "occurrences": child.occurrences,
            }),
            ..AuditEntry::new(
                "self_heal.attributed",
                format!("attributed to `{}`", parent.target),
            )
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_dependencies_and_every_target() {
        let deps = Dependencies::new(&BTreeMap::from([(
            "api".to_owned(),
            vec!["db".to_owned(), "cache".to_owned()],
        )]));
        assert_eq!(deps.of("api"), ["db", "cache"]);
        assert!(deps.of("db").is_empty());
        let all: Vec<&String> = deps.targets().collect();
        assert_eq!(all, ["api", "db", "cache"]);
    }
}
