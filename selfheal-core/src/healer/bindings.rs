//! Fix bindings checked against the registered strategies: when the pipeline starts
//! (the stored patterns, stock ones among them), and for each fix before
//! the healer decides on it. A fix that cannot run is skipped out loud: a
//! [`Phase::Skipped`] event and a `self_heal.fix_skipped` audit record, never silently.

use super::admin::Admin;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use tracing::Instrument;

use super::Healer;
use crate::{
    ActionContext, Applicability, AuditEntry, Decision, FixBinding, Incident, Pattern, PatternMode,
    Phase, RemediationPlan, Result, Strategy,
};

/// A fix binding that cannot run as bound.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BindingProblem {
    /// The pattern that binds the fix.
    pub pattern: String,
    /// The strategy the fix names.
    pub strategy: String,
    /// What is wrong.
    pub issue: BindingIssue,
}

/// What is wrong with a fix binding.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindingIssue {
    /// No strategy of that name is registered on the healer.
    NotRegistered,
    /// The strategy refuses the binding's parameters ([`Strategy::validate`]).
    InvalidParams(String),
}

impl fmt::Display for BindingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (pattern, strategy) = (&self.pattern, &self.strategy);
        match &self.issue {
            BindingIssue::NotRegistered => write!(
                f,
                "pattern `{pattern}` binds strategy `{strategy}`, which is not registered; register it (Healer::builder().strategy(..) or an integration) or remove the fix from the pattern"
            ),
            BindingIssue::InvalidParams(why) => write!(
                f,
                "pattern `{pattern}` binds strategy `{strategy}` with parameters it refuses ({why}); the fix is skipped until you give valid parameters (Admin::update_pattern)"
            ),
        }
    }
}

/// Every binding of `patterns` that cannot run with `strategies`, in pattern order.
/// A pattern in [`PatternMode::AlertOnly`] has none: the healer alerts for it itself and
/// never runs its fixes, so their strategies need not be registered.
pub(super) fn check_bindings(
    patterns: &[Pattern],
    strategies: &HashMap<String, Arc<dyn Strategy>>,
) -> Vec<BindingProblem> {
    let mut problems = Vec::new();
    for p in patterns
        .iter()
        .filter(|p| p.enabled && p.mode != PatternMode::AlertOnly)
    {
        for fix in &p.fixes {
            let issue = match strategies.get(&fix.strategy) {
                None => BindingIssue::NotRegistered,
                Some(s) => match s.validate(&fix.params) {
                    Ok(()) => continue,
                    Err(e) => BindingIssue::InvalidParams(e.message().to_owned()),
                },
            };
            problems.push(BindingProblem {
                pattern: p.name.clone(),
                strategy: fix.strategy.clone(),
                issue,
            });
        }
    }
    problems
}

/// Logs `problems` (from `source`, "the stock catalog" or "the store"): one warning
/// listing every strategy that is not registered, one per refused binding.
pub(super) fn warn_binding_problems(problems: &[BindingProblem], source: &str) {
    let missing: BTreeSet<&str> = problems
        .iter()
        .filter(|p| p.issue == BindingIssue::NotRegistered)
        .map(|p| p.strategy.as_str())
        .collect();
    if !missing.is_empty() {
        // Each with the selfheal-strategies type that registers it, when it is stock.
        let missing: Vec<String> = missing
            .into_iter()
            .map(
                |name| match crate::catalog::strategy::how_to_register(name) {
                    Some(how) => format!("{name} ({how})"),
                    None => name.to_owned(),
                },
            )
            .collect();
        tracing::warn!(
            strategies = %missing.join(", "),
            "fixes of {source} name strategies that are not registered; those fixes are skipped and their incidents escalate (an event and an audit record each time). Register the ones you use (in brackets: the selfheal-strategies type that registers each), or disable the patterns you do not want (healer.admin().binding_problems() lists them)"
        );
    }
    for p in problems
        .iter()
        .filter(|p| matches!(p.issue, BindingIssue::InvalidParams(_)))
    {
        tracing::warn!(pattern = %p.pattern, strategy = %p.strategy, "{p}");
    }
}

impl Healer {
    /// Logs the problems of the stored bindings: those of stock patterns the store
    /// holds as shipped under "the stock catalog", the rest under "the store". A store
    /// without the stock catalog (an empty `MemoryStore`, a store not seeded) says
    /// nothing about it.
    pub(super) async fn warn_stored_binding_problems(&self) {
        // Said when the pipeline starts rather than in `build()`: the host's tracing
        // subscriber, which needs the built healer for its layer, is installed by then.
        match self.admin().binding_problems().await {
            Ok(problems) => {
                let stock = check_bindings(&crate::catalog::stock(), &self.inner.strategies);
                let (stock, stored): (Vec<_>, Vec<_>) =
                    problems.into_iter().partition(|p| stock.contains(p));
                warn_binding_problems(&stock, "the stock catalog");
                warn_binding_problems(&stored, "the store");
            }
            Err(e) => tracing::warn!(error = %e, "could not check the stored fix bindings"),
        }
    }

    /// Skips `fix` of incident `id` out loud: a [`Phase::Skipped`] event and a
    /// `self_heal.fix_skipped` audit record saying why.
    pub(super) async fn skip_fix(&self, incident: &Incident, fix: &FixBinding, reason: &str) {
        tracing::warn!(strategy = %fix.strategy, reason, "fix skipped");
        self.emit(
            Some(incident),
            &incident.target,
            Phase::Skipped,
            format!("`{}` skipped: {reason}", fix.strategy),
        );
        self.audit(AuditEntry {
            incident: Some(incident.id),
            pattern: incident.pattern.clone(),
            action: Some(fix.strategy.clone()),
            detail: serde_json::json!({"params": fix.params}),
            ..AuditEntry::new("self_heal.fix_skipped", reason)
        })
        .await;
    }

    /// Emits and audits the policy's `decision` on `fix`.
    pub(super) async fn record_decision(
        &self,
        incident: &Incident,
        fix: &FixBinding,
        decision: &Decision,
        confidence: f64,
    ) {
        self.emit(
            Some(incident),
            &incident.target,
            Phase::Decided,
            describe_decision(decision, &fix.strategy),
        );
        self.audit(AuditEntry {
            incident: Some(incident.id),
            pattern: incident.pattern.clone(),
            confidence: Some(confidence),
            action: Some(fix.strategy.clone()),
            ..AuditEntry::new(
                decision.event_type(),
                super::heal::decision_reason(decision),
            )
        })
        .await;
    }

    /// Checks that `fix` can run now (parameters, [`Strategy::applicable`]) and plans
    /// it; a fix that cannot is skipped out loud and the reason returned.
    pub(super) async fn prepare_fix(
        &self,
        incident: &Incident,
        fix: &FixBinding,
        strategy: &Arc<dyn Strategy>,
    ) -> std::result::Result<RemediationPlan, String> {
        let refused = if let Err(e) = strategy.validate(&fix.params) {
            Err(format!("parameters of `{}` refused: {e}", fix.strategy))
        } else {
            let ctx = ActionContext {
                incident: incident.clone(),
                target: incident.target.clone(),
                params: fix.params.clone(),
            };
            let limit = self.inner.config.limits.plan;
            let applicable = strategy
                .applicable(&ctx)
                .instrument(tracing::info_span!("applicable"));
            match super::limits::limited(limit, "checking applicability", "plan", applicable).await
            {
                Ok(Applicability::Applicable) => {
                    let plan = strategy.plan(&ctx).instrument(tracing::info_span!("plan"));
                    super::limits::limited(limit, "planning", "plan", plan)
                        .await
                        .map_err(|e| format!("`{}` could not plan: {e}", fix.strategy))
                }
                Ok(Applicability::NotApplicable(why)) => Err(format!(
                    "`{}` cannot work in the current state: {why}",
                    fix.strategy
                )),
                Err(e) => Err(format!(
                    "`{}` could not check whether it can work: {e}",
                    fix.strategy
                )),
            }
        };
        if let Err(why) = &refused {
            self.skip_fix(incident, fix, why).await;
        }
        refused
    }
}

impl Admin {
    /// Every fix binding of the stored patterns that cannot run: a strategy that is not
    /// registered, or parameters the strategy refuses. The pipeline logs them when it
    /// starts, and skips such a fix (an event and an audit record) when it comes up.
    pub async fn binding_problems(&self) -> Result<Vec<BindingProblem>> {
        let patterns = self.healer.inner.store.list_patterns().await?;
        Ok(check_bindings(&patterns, &self.healer.inner.strategies))
    }
}

/// What the policy decided, in words (the `Decided` event's detail).
pub(super) fn describe_decision(decision: &Decision, strategy: &str) -> String {
    let reason = super::heal::decision_reason(decision);
    match decision {
        Decision::AutoRemediate => format!("run `{strategy}` now: {reason}"),
        Decision::Suggest { .. } => format!("ask a human before running `{strategy}`: {reason}"),
        Decision::Escalate { .. } => format!("escalate instead of running `{strategy}`: {reason}"),
        Decision::AlertOnly => "alert only: the pattern notifies and runs nothing".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::{
        ActionOutcome, Error, Executor, HealerConfig, MemoryStore, PatternMode, PatternStore,
        Signal,
    };

    /// A strategy that refuses parameters other than `null`, and is applicable or not.
    #[derive(Debug)]
    struct Fixed {
        name: &'static str,
        applicable: bool,
    }

    #[async_trait]
    impl Strategy for Fixed {
        fn name(&self) -> &str {
            self.name
        }
        fn validate(&self, params: &serde_json::Value) -> Result<()> {
            if params.is_null() {
                Ok(())
            } else {
                Err(Error::invalid("takes no parameters"))
            }
        }
        async fn applicable(&self, _ctx: &ActionContext) -> Result<Applicability> {
            Ok(if self.applicable {
                Applicability::Applicable
            } else {
                Applicability::not_applicable("the server has no free slot")
            })
        }
        async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
            Ok(RemediationPlan::new(self.name, ctx.target.clone()).step("change something"))
        }
        async fn execute(
            &self,
            _plan: &RemediationPlan,
            _executor: Arc<dyn Executor>,
        ) -> Result<ActionOutcome> {
            panic!("a skipped fix never runs")
        }
    }

    fn pattern() -> Pattern {
        Pattern::new("slots")
            .regex("too many clients")
            .mode(PatternMode::Active)
            .auto_healable(true)
            .confidence(0.95)
            .threshold(1, Duration::from_secs(60))
            .fix(FixBinding::new("not_registered").priority(0))
            .fix(FixBinding::new("reset").priority(1))
            .fix(
                FixBinding::new("terminate")
                    .params(serde_json::json!({"idle_for": "5m"}))
                    .priority(2),
            )
    }

    fn healer(store: Arc<MemoryStore>) -> Healer {
        Healer::builder()
            .config(HealerConfig::default())
            .store_arc(store)
            .strategy(Fixed {
                name: "reset",
                applicable: false,
            })
            .strategy(Fixed {
                name: "terminate",
                applicable: true,
            })
            .build()
            .unwrap()
    }

    /// What the healer logs while `f` runs on this thread, as text.
    async fn logged<F: std::future::Future<Output = ()>>(f: F) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        f.await;
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_stock_catalog_is_warned_about_only_when_the_store_holds_it() {
        const STOCK: &str = "fixes of the stock catalog name strategies that are not registered";
        // No strategy registered: every stock fix is one that cannot run.
        let bare = || Healer::builder().store_arc(Arc::new(MemoryStore::new()));
        let empty = bare().build().unwrap();
        let said = logged(empty.warn_stored_binding_problems()).await;
        assert!(!said.contains("stock catalog"), "an empty store: {said}");

        let store = Arc::new(MemoryStore::new());
        crate::catalog::seed(store.as_ref()).await.unwrap();
        let seeded = Healer::builder().store_arc(store).build().unwrap();
        let said = logged(seeded.warn_stored_binding_problems()).await;
        assert!(said.contains(STOCK), "a seeded store: {said}");
        assert!(!said.contains("fixes of the store"), "{said}");
        // The stock alert-only patterns are alerted on by the healer itself: their
        // `alert_only` fixes never run, so the strategy need not be registered.
        assert!(!said.contains("alert_only"), "{said}");
        // Each missing stock strategy says what registers it.
        assert!(
            said.contains("redis_restart (RedisIntegration::restart(command))")
                && said.contains("circuit_break (OpenCircuit with your CircuitBreaker)"),
            "{said}"
        );

        // A store of the host's own patterns: warned about as the store.
        let store = Arc::new(MemoryStore::new());
        store.add_pattern(&pattern()).await.unwrap();
        let own = Healer::builder().store_arc(store).build().unwrap();
        let said = logged(own.warn_stored_binding_problems()).await;
        assert!(
            said.contains("fixes of the store name strategies that are not registered")
                && said.contains("not_registered"),
            "{said}"
        );
        assert!(!said.contains("stock catalog"), "{said}");
    }

    #[tokio::test]
    async fn stored_bindings_that_cannot_run_are_listed_with_what_to_do() {
        let store = Arc::new(MemoryStore::new());
        store.add_pattern(&pattern()).await.unwrap();
        let problems = healer(store).admin().binding_problems().await.unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].issue, BindingIssue::NotRegistered);
        assert_eq!(problems[0].strategy, "not_registered");
        let text = problems[1].to_string();
        assert!(
            text.contains("pattern `slots` binds strategy `terminate`")
                && text.contains("takes no parameters")
                && text.contains("update_pattern"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn fixes_that_cannot_run_are_skipped_out_loud_and_never_suggested() {
        let store = Arc::new(MemoryStore::new());
        store.add_pattern(&pattern()).await.unwrap();
        let healer = healer(store);
        let mut events = healer.subscribe();
        let running = healer.spawn();
        healer.observe(Signal::new("postgres", "sorry, too many clients already"));
        let mut skipped = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let event = events.recv().await.unwrap();
                match event.phase {
                    Phase::Skipped => skipped.push(event.detail),
                    Phase::Escalated => break,
                    _ => {}
                }
            }
        })
        .await
        .expect("the incident escalates");
        running.shutdown().await;
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(skipped[0].contains("`not_registered` is not registered"));
        assert!(
            skipped[1].contains("cannot work in the current state: the server has no free slot")
        );
        assert!(skipped[2].contains("parameters of `terminate` refused"));

        let audit = healer.admin().audit_log(100).await.unwrap();
        let kinds: Vec<&str> = audit.iter().map(|r| r.event_type.as_str()).collect();
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == "self_heal.fix_skipped")
                .count(),
            3,
            "{kinds:?}"
        );
        assert!(
            !kinds.contains(&"self_heal.suggested") && !kinds.contains(&"self_heal.auto"),
            "nothing decided on a fix that cannot run: {kinds:?}"
        );
    }
}
