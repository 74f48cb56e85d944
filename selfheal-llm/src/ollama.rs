//! [`OllamaAdvisor`]: Ollama's `/api/chat`, one non-streamed answer constrained by a
//! JSON Schema in `format`.
//!
//! ```no_run
//! use selfheal_llm::OllamaAdvisor;
//! # fn main() -> selfheal_core::Result<()> {
//! // `ollama serve` and `ollama pull llama3.2` first.
//! let advisor = OllamaAdvisor::builder()
//!     .host("http://127.0.0.1:11434")
//!     .model("llama3.2")
//!     .build()?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use selfheal_core::{AdviceRequest, Diagnosis, LlmAdvisor, Result};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::instrument;

use crate::http::{Transport, common_setters, endpoint, parts};
use crate::prompt::{Prompt, answer_schema};
use crate::{HttpSettings, LlmError, Redactor, TokenBudget};

/// Settings of an [`OllamaAdvisor`], loadable from TOML.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OllamaConfig {
    /// Where Ollama listens (default `http://localhost:11434`, as `OLLAMA_HOST`).
    pub host: String,
    /// The model name (default `llama3.2`).
    pub model: String,
    /// The most tokens one answer may use (`options.num_predict`).
    pub max_tokens: u32,
    /// Timeout and retries. Local models are slow to load: the default timeout is 120 s.
    pub http: HttpSettings,
    /// Extra redaction patterns (regexes), on top of the built-in ones.
    pub redact: Vec<String>,
}

impl Default for OllamaConfig {
    fn default() -> Self {
        OllamaConfig {
            host: "http://localhost:11434".into(),
            model: "llama3.2".into(),
            max_tokens: 800,
            http: HttpSettings {
                timeout: Duration::from_secs(120),
                ..HttpSettings::default()
            },
            redact: Vec::new(),
        }
    }
}

/// Asks a local (or remote) Ollama server. Build it with [`OllamaAdvisor::builder`]
/// or [`OllamaAdvisor::from_config`].
#[derive(Debug, Clone)]
pub struct OllamaAdvisor {
    config: OllamaConfig,
    url: String,
    redactor: Redactor,
    transport: Transport,
}

impl OllamaAdvisor {
    /// A builder starting from [`OllamaConfig::default`].
    pub fn builder() -> OllamaBuilder {
        OllamaBuilder::default()
    }

    /// An advisor from `config`, without a token budget.
    pub fn from_config(config: OllamaConfig) -> Result<Self> {
        OllamaBuilder {
            config,
            budget: None,
        }
        .build()
    }

    /// The body sent for `request`: model, the two messages, `stream: false`, the
    /// answer schema as `format`, temperature 0 and the answer size cap.
    pub fn request_body(&self, request: &AdviceRequest) -> Value {
        let prompt = Prompt::new(request, &self.redactor);
        json!({
            "model": self.config.model,
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
            "stream": false,
            "format": answer_schema(request),
            "options": {"temperature": 0, "num_predict": self.config.max_tokens},
        })
    }
}

/// The answer text of an `/api/chat` response and the tokens it used.
fn read_chat(provider: &str, response: &Value) -> Result<(String, u64), LlmError> {
    let content = response["message"]["content"]
        .as_str()
        .ok_or_else(|| LlmError::Malformed {
            provider: provider.to_owned(),
            detail: "no `message.content`".into(),
        })?;
    let count = |k: &str| response[k].as_u64().unwrap_or(0);
    Ok((
        content.to_owned(),
        count("prompt_eval_count") + count("eval_count"),
    ))
}

#[async_trait]
impl LlmAdvisor for OllamaAdvisor {
    fn name(&self) -> &str {
        "ollama"
    }

    #[instrument(skip_all, fields(advisor = "ollama", model = %self.config.model, incident = %request.incident.id), err)]
    async fn advise(&self, request: &AdviceRequest) -> Result<Diagnosis> {
        let body = self.request_body(request);
        (self.transport)
            .ask(&self.url, None, &body, read_chat, request)
            .await
    }
}

/// Builds an [`OllamaAdvisor`]; `build` checks the settings.
#[derive(Debug, Default)]
pub struct OllamaBuilder {
    config: OllamaConfig,
    budget: Option<Arc<TokenBudget>>,
}

impl OllamaBuilder {
    /// Where Ollama listens (default `http://localhost:11434`).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.config.host = host.into();
        self
    }
    /// The model (default `llama3.2`).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.config.model = model.into();
        self
    }
    common_setters!("120 s");

    /// The advisor, or what to fix in the settings.
    pub fn build(self) -> Result<OllamaAdvisor> {
        let config = self.config;
        let host = if config.host.contains("://") {
            config.host.clone()
        } else {
            // OLLAMA_HOST is often given as `host:port`.
            format!("http://{}", config.host.trim())
        };
        let url = endpoint(
            "ollama",
            &host,
            "/api/chat",
            &config.model,
            "http://localhost:11434 and llama3.2",
        )?;
        let (redactor, transport) = parts("ollama", &config.http, &config.redact, self.budget)?;
        Ok(OllamaAdvisor {
            url,
            redactor,
            transport,
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_without_scheme_is_accepted_and_bad_settings_are_not() {
        let a = OllamaAdvisor::builder()
            .host("127.0.0.1:11434")
            .build()
            .unwrap();
        assert_eq!(a.url, "http://127.0.0.1:11434/api/chat");
        let err = OllamaAdvisor::builder()
            .host("ftp://x")
            .build()
            .unwrap_err();
        assert!(err.message().contains("not an http(s) URL"), "{err}");
        let err = OllamaAdvisor::builder().model("").build().unwrap_err();
        assert!(err.message().contains("model is empty"), "{err}");
    }

    #[test]
    fn usage_is_prompt_plus_completion_tokens() {
        let r = json!({"message": {"role": "assistant", "content": "{}"}, "prompt_eval_count": 26, "eval_count": 290});
        assert_eq!(read_chat("ollama", &r).unwrap(), ("{}".to_owned(), 316));
        assert!(matches!(
            read_chat("ollama", &json!({"done": true})),
            Err(LlmError::Malformed { .. })
        ));
    }
}
