//! [`StaticAdvisor`]: a deterministic advisor for tests and wiring checks.

use async_trait::async_trait;
use selfheal_core::{AdviceRequest, Diagnosis, LlmAdvisor, Result};

/// Always suggests the same strategy with the same confidence, if it is registered.
#[derive(Debug, Clone)]
pub struct StaticAdvisor {
    strategy: String,
    confidence: f64,
    root_cause: String,
}

impl StaticAdvisor {
    /// An advisor that suggests `strategy` at `confidence` for `root_cause`.
    pub fn new(
        strategy: impl Into<String>,
        confidence: f64,
        root_cause: impl Into<String>,
    ) -> Self {
        StaticAdvisor {
            strategy: strategy.into(),
            confidence: confidence.clamp(0.0, 1.0),
            root_cause: root_cause.into(),
        }
    }
}

#[async_trait]
impl LlmAdvisor for StaticAdvisor {
    fn name(&self) -> &str {
        "static"
    }

    async fn advise(&self, request: &AdviceRequest) -> Result<Diagnosis> {
        let registered = request.strategies.contains(&self.strategy);
        Ok(Diagnosis {
            root_cause: self.root_cause.clone(),
            strategy: registered.then(|| self.strategy.clone()),
            params: serde_json::Value::Null,
            confidence: self.confidence,
            explanation: if registered {
                format!("suggesting registered strategy `{}`", self.strategy)
            } else {
                format!(
                    "strategy `{}` is not registered; no suggestion",
                    self.strategy
                )
            },
            advisor: self.name().to_owned(),
        })
    }
}
