//! [`AlertOnly`] (`alert_only`): a fix that changes nothing and tells people.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use selfheal_core::{
    ActionContext, ActionOutcome, Error, Executor, Notification, Notifier, RemediationPlan, Result,
    Risk, Strategy,
};
use serde_json::{Value, json};
use tracing::warn;

/// A fix that changes nothing: it sends a notification to its notifiers and reports
/// success, so verification then says whether the problem went away on its own (if
/// not, the incident escalates as usual). Bind it last in a pattern's fixes, or alone
/// where a human must act. Parameters: `{"message": "..."}` (optional, at most 1000
/// characters) added to the notification.
#[derive(Debug, Clone, Default)]
pub struct AlertOnly {
    notifiers: Vec<Arc<dyn Notifier>>,
}

impl AlertOnly {
    /// The strategy's name, which patterns bind fixes to.
    pub const NAME: &'static str = "alert_only";

    /// An alert with no notifiers yet (it then only logs a warning).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a notifier.
    pub fn notifier(mut self, notifier: impl Notifier) -> Self {
        self.notifiers.push(Arc::new(notifier));
        self
    }

    fn message(params: &Value) -> Result<Option<String>> {
        match params {
            Value::Null => Ok(None),
            Value::Object(map) => {
                if let Some(k) = map.keys().find(|k| k.as_str() != "message") {
                    return Err(Error::invalid(format!(
                        "alert_only has no parameter `{k}`; it takes `message`"
                    )));
                }
                match map.get("message") {
                    None => Ok(None),
                    Some(Value::String(s)) if s.chars().count() <= 1000 => Ok(Some(s.clone())),
                    Some(_) => Err(Error::invalid(
                        "`message` must be a string of at most 1000 characters",
                    )),
                }
            }
            other => Err(Error::invalid(format!(
                "alert_only takes {{\"message\": \"...\"}}, got {other}"
            ))),
        }
    }
}

#[async_trait]
impl Strategy for AlertOnly {
    fn name(&self) -> &str {
        Self::NAME
    }

    /// It has no effect besides its notification.
    fn dry_run_safe(&self) -> bool {
        true
    }

    fn validate(&self, params: &Value) -> Result<()> {
        Self::message(params).map(|_| ())
    }

    fn param_schema(&self) -> Value {
        json!({"type": "object", "properties": {"message": {"type": "string", "maxLength": 1000}}, "additionalProperties": false})
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        let message = Self::message(&ctx.params)?;
        let mut plan = RemediationPlan::new(Self::NAME, ctx.target.clone())
            .risk(Risk::Low)
            .step(format!(
                "notify {} notifier(s) about {}; change nothing",
                self.notifiers.len(),
                ctx.target
            ));
        plan.params = json!({
            "message": message,
            "incident": ctx.incident.id,
            "pattern": ctx.incident.pattern,
            "sample": ctx.incident.samples.first(),
        });
        Ok(plan)
    }

    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        let started = Instant::now();
        let text = |k: &str| {
            plan.params
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let mut body = String::new();
        if let Some(m) = text("message") {
            body.push_str(&m);
            body.push('\n');
        }
        if let Some(s) = text("sample") {
            body.push_str(&format!("Sample: {s}"));
        }
        let notification = Notification {
            title: format!(
                "selfheal: {} on {} needs a human",
                text("pattern").unwrap_or_else(|| "an error".into()),
                plan.target
            ),
            body,
            incident: text("incident").and_then(|s| s.parse().ok()),
            event_type: "self_heal.alerted".into(),
            links: Vec::new(),
        };
        if executor.dry_run() {
            return Ok(ActionOutcome {
                stdout: format!("dry run: would notify: {}", notification.title),
                ..ActionOutcome::ok(Duration::ZERO)
            });
        }
        warn!(target_system = %plan.target, title = %notification.title, "alert only: no change made");
        let mut outcome = ActionOutcome::ok(Duration::ZERO);
        for n in &self.notifiers {
            match n.notify(&notification).await {
                Ok(()) => outcome.stdout.push_str(&format!("notified {}\n", n.name())),
                // A notifier outage is not the target's problem: report it, do not fail.
                Err(e) => outcome.stderr.push_str(&format!("{}: {e}\n", n.name())),
            }
        }
        outcome.duration = started.elapsed();
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::Utc;
    use selfheal_core::{Incident, IncidentStatus, Severity, Uuid};

    use super::*;
    use crate::ProcessExecutor;

    #[derive(Debug, Default, Clone)]
    struct Inbox(Arc<Mutex<Vec<Notification>>>);

    #[async_trait]
    impl Notifier for Inbox {
        fn name(&self) -> &str {
            "inbox"
        }
        async fn notify(&self, n: &Notification) -> Result<()> {
            self.0.lock().unwrap().push(n.clone());
            Ok(())
        }
    }

    #[tokio::test]
    async fn notifies_with_the_incident_and_changes_nothing() {
        let inbox = Inbox::default();
        let strategy = AlertOnly::new().notifier(inbox.clone());
        let id = Uuid::new_v4();
        let ctx = ActionContext {
            incident: Incident {
                stack: None,
                id,
                target: "disk".into(),
                fingerprint: "0123456789abcdef".into(),
                template: "No space left on device".into(),
                related: Vec::new(),
                pattern: Some("disk_full".into()),
                status: IncidentStatus::Open,
                severity: Severity::Critical,
                occurrences: 3,
                samples: vec!["write /var/lib/app: No space left on device".into()],
                opened_at: Utc::now(),
                last_seen: Utc::now(),
                closed_at: None,
                reason: String::new(),
            },
            target: "disk".into(),
            params: json!({"message": "grow the volume"}),
        };
        let plan = strategy.plan(&ctx).await.unwrap();
        assert!(inbox.0.lock().unwrap().is_empty(), "planning sends nothing");
        let outcome = strategy
            .execute(&plan, Arc::new(ProcessExecutor::new()))
            .await
            .unwrap();
        assert!(outcome.success);
        let sent = inbox.0.lock().unwrap().clone();
        assert_eq!(
            sent,
            vec![Notification {
                title: "selfheal: disk_full on disk needs a human".into(),
                body: "grow the volume\nSample: write /var/lib/app: No space left on device".into(),
                incident: Some(id),
                event_type: "self_heal.alerted".into(),
                links: Vec::new(),
            }]
        );
        assert!(strategy.validate(&json!({"message": 1})).is_err());
        assert!(strategy.validate(&json!({"cmd": "rm"})).is_err());
    }
}
