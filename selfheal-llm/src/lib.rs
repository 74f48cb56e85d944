//! LLM advisors for selfheal.
//!
//! An advisor reads an incident no known pattern explains and suggests a root cause
//! and one of the *registered* strategies. Its answer is advice: it can never make an
//! unknown error auto-healable, and the healer refuses a strategy it invents.
//!
//! This crate holds, for now, [`StaticAdvisor`]: a deterministic advisor for tests
//! and for wiring checks. The OpenAI-compatible and Ollama advisors, the fallback
//! chain and redaction arrive with their own issue and implement the same
//! [`selfheal_core::LlmAdvisor`] trait.
//!
//! ```
//! use selfheal_core::LlmAdvisor;
//! use selfheal_llm::StaticAdvisor;
//! let advisor = StaticAdvisor::new("restart_process", 0.6, "the pool leaks connections");
//! assert_eq!(advisor.name(), "static");
//! ```
#![deny(missing_docs)]

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
