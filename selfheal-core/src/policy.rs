//! The decision table: how sure we are decides whether to fix, ask or escalate.

use crate::{Decision, FixBinding, Pattern, PatternMode, PolicyConfig};

/// Decides what to do with a match of `pattern` at `confidence` using `fix`.
///
/// | confidence | auto-healable | decision |
/// |---|---|---|
/// | ≥ auto (0.7) | yes | auto-remediate |
/// | ≥ auto | no | suggest |
/// | suggest (0.3) – auto | any | suggest |
/// | < suggest | any | escalate |
///
/// Alert-only patterns only notify; fixes that require approval, strategies in
/// `require_approval_for` and destructive strategies (unless allowed) always suggest.
pub fn decide(
    config: &PolicyConfig,
    pattern: &Pattern,
    confidence: f64,
    fix: &FixBinding,
    destructive: bool,
) -> Decision {
    if pattern.mode == PatternMode::AlertOnly {
        return Decision::AlertOnly;
    }
    if confidence < config.suggest_threshold {
        return Decision::Escalate {
            reason: format!(
                "confidence {confidence:.2} is under the suggest threshold {:.2}",
                config.suggest_threshold
            ),
        };
    }
    if confidence < config.auto_threshold {
        return Decision::Suggest {
            reason: format!(
                "confidence {confidence:.2} is under the auto threshold {:.2}",
                config.auto_threshold
            ),
        };
    }
    if !pattern.auto_healable {
        return Decision::Suggest {
            reason: format!("pattern `{}` is not auto-healable", pattern.name),
        };
    }
    if fix.requires_approval {
        return Decision::Suggest {
            reason: format!("fix `{}` requires approval", fix.strategy),
        };
    }
    if config.require_approval_for.contains(&fix.strategy) {
        return Decision::Suggest {
            reason: format!("strategy `{}` is in require_approval_for", fix.strategy),
        };
    }
    if destructive && !config.allow_destructive_without_approval {
        return Decision::Suggest {
            reason: format!("strategy `{}` is destructive", fix.strategy),
        };
    }
    Decision::AutoRemediate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(auto: bool) -> Pattern {
        Pattern::new("p")
            .regex("x")
            .mode(PatternMode::Active)
            .auto_healable(auto)
    }

    #[test]
    fn the_table_of_design_md() {
        let c = PolicyConfig::default();
        let fix = FixBinding::new("restart");
        assert_eq!(
            decide(&c, &active(true), 0.7, &fix, false),
            Decision::AutoRemediate
        );
        assert!(matches!(
            decide(&c, &active(false), 0.9, &fix, false),
            Decision::Suggest { .. }
        ));
        assert!(matches!(
            decide(&c, &active(true), 0.5, &fix, false),
            Decision::Suggest { .. }
        ));
        assert!(matches!(
            decide(&c, &active(true), 0.3, &fix, false),
            Decision::Suggest { .. }
        ));
        assert!(matches!(
            decide(&c, &active(true), 0.29, &fix, false),
            Decision::Escalate { .. }
        ));
        let alert = Pattern::new("p").regex("x").auto_healable(true);
        assert_eq!(decide(&c, &alert, 1.0, &fix, false), Decision::AlertOnly);
    }

    #[test]
    fn approval_requirements_override_confidence() {
        let c = PolicyConfig::default();
        let p = active(true);
        assert!(matches!(
            decide(&c, &p, 1.0, &FixBinding::new("rollback_deployment"), false),
            Decision::Suggest { .. }
        ));
        assert!(matches!(
            decide(
                &c,
                &p,
                1.0,
                &FixBinding::new("x").requires_approval(true),
                false
            ),
            Decision::Suggest { .. }
        ));
        assert!(matches!(
            decide(&c, &p, 1.0, &FixBinding::new("flush"), true),
            Decision::Suggest { .. }
        ));
        let allow = PolicyConfig {
            allow_destructive_without_approval: true,
            ..c
        };
        assert_eq!(
            decide(&allow, &p, 1.0, &FixBinding::new("flush"), true),
            Decision::AutoRemediate
        );
    }
}
