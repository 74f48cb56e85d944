//! [`OpenAiAdvisor`]: any OpenAI-compatible chat-completions endpoint (OpenAI, GitHub
//! Models, vLLM, llama.cpp server), answering through a strict JSON Schema
//! (`response_format`) or a forced tool call.
//!
//! ```no_run
//! use selfheal_llm::{AnswerFormat, OpenAiAdvisor};
//! # fn main() -> selfheal_core::Result<()> {
//! let advisor = OpenAiAdvisor::builder()
//!     .base_url("http://127.0.0.1:8080/v1") // a llama.cpp server; OpenAI is the default
//!     .model("qwen2.5-7b-instruct")
//!     .answer_format(AnswerFormat::ToolCall)
//!     .build()?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use selfheal_core::{AdviceRequest, Diagnosis, LlmAdvisor, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::instrument;

use crate::http::{Transport, common_setters, endpoint, parts};
use crate::prompt::{Prompt, answer_schema};
use crate::{ApiKey, HttpSettings, LlmError, Redactor, TokenBudget};

/// The tool the model is made to call in [`AnswerFormat::ToolCall`].
pub const TOOL_NAME: &str = "submit_diagnosis";

/// How the model is made to answer in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AnswerFormat {
    /// `response_format: {"type": "json_schema", "json_schema": {…, "strict": true}}`.
    #[default]
    JsonSchema,
    /// One forced function call, `submit_diagnosis`, whose arguments are the answer.
    ToolCall,
}

/// Settings of an [`OpenAiAdvisor`], loadable from TOML. The key is never printed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// The API root, up to and without `/chat/completions`.
    pub base_url: String,
    /// The model name.
    pub model: String,
    /// The API key, sent as `Authorization: Bearer …` (none for local servers).
    pub api_key: ApiKey,
    /// How the answer is structured.
    pub answer_format: AnswerFormat,
    /// The most tokens one answer may use (`max_completion_tokens`).
    pub max_tokens: u32,
    /// Timeout and retries.
    pub http: HttpSettings,
    /// Extra redaction patterns (regexes), on top of the built-in ones.
    pub redact: Vec<String>,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            api_key: ApiKey::default(),
            answer_format: AnswerFormat::default(),
            max_tokens: 800,
            http: HttpSettings::default(),
            redact: Vec::new(),
        }
    }
}

/// Asks an OpenAI-compatible chat-completions endpoint. Build it with
/// [`OpenAiAdvisor::builder`] or [`OpenAiAdvisor::from_config`].
#[derive(Debug, Clone)]
pub struct OpenAiAdvisor {
    config: OpenAiConfig,
    url: String,
    redactor: Redactor,
    transport: Transport,
}

impl OpenAiAdvisor {
    /// A builder starting from [`OpenAiConfig::default`].
    pub fn builder() -> OpenAiBuilder {
        OpenAiBuilder::default()
    }

    /// An advisor from `config`, without a token budget.
    pub fn from_config(config: OpenAiConfig) -> Result<Self> {
        OpenAiBuilder {
            config,
            budget: None,
        }
        .build()
    }

    /// The body sent for `request`: model, the two messages, temperature 0, the
    /// answer size cap, and the schema as `response_format` or a forced tool.
    pub fn request_body(&self, request: &AdviceRequest) -> Value {
        let prompt = Prompt::new(request, &self.redactor);
        let schema = answer_schema(request);
        let mut body = json!({
            "model": self.config.model,
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
            "temperature": 0,
            "max_completion_tokens": self.config.max_tokens,
        });
        match self.config.answer_format {
            AnswerFormat::JsonSchema => {
                body["response_format"] = json!({
                    "type": "json_schema",
                    "json_schema": {"name": "diagnosis", "strict": true, "schema": schema},
                });
            }
            AnswerFormat::ToolCall => {
                body["tools"] = json!([{
                    "type": "function",
                    "function": {
                        "name": TOOL_NAME,
                        "description": "Submit the diagnosis of the incident.",
                        "parameters": schema,
                        "strict": true,
                    },
                }]);
                body["tool_choice"] = json!({"type": "function", "function": {"name": TOOL_NAME}});
            }
        }
        body
    }
}

/// The answer text of a chat completion: the forced tool call's arguments, else the
/// message content; and the tokens it used.
fn read_completion(provider: &str, response: &Value) -> Result<(String, u64), LlmError> {
    let malformed = |detail: &str| LlmError::Malformed {
        provider: provider.to_owned(),
        detail: detail.to_owned(),
    };
    let tokens = response["usage"]["total_tokens"].as_u64().unwrap_or(0);
    let message = &response["choices"][0]["message"];
    if !message.is_object() {
        return Err(malformed("no `choices[0].message`"));
    }
    if let Some(calls) = message["tool_calls"].as_array().filter(|c| !c.is_empty()) {
        let f = &calls[0]["function"];
        let name = f["name"].as_str().unwrap_or_default();
        if calls.len() > 1 || name != TOOL_NAME {
            return Err(LlmError::Refused {
                provider: provider.to_owned(),
                reason: format!(
                    "the model called `{}` instead of only `{TOOL_NAME}`",
                    name.chars().take(80).collect::<String>()
                ),
            });
        }
        let args = f["arguments"]
            .as_str()
            .ok_or_else(|| malformed("a tool call without `function.arguments`"))?;
        return Ok((args.to_owned(), tokens));
    }
    if let Some(refusal) = message["refusal"].as_str() {
        return Err(LlmError::Refused {
            provider: provider.to_owned(),
            reason: format!("the model declined: {refusal}"),
        });
    }
    let content = message["content"]
        .as_str()
        .ok_or_else(|| malformed("neither `content` nor `tool_calls` in the message"))?;
    Ok((content.to_owned(), tokens))
}

#[async_trait]
impl LlmAdvisor for OpenAiAdvisor {
    fn name(&self) -> &str {
        "openai"
    }

    #[instrument(skip_all, fields(advisor = "openai", model = %self.config.model, incident = %request.incident.id), err)]
    async fn advise(&self, request: &AdviceRequest) -> Result<Diagnosis> {
        let body = self.request_body(request);
        let key = Some(&self.config.api_key);
        (self.transport)
            .ask(&self.url, key, &body, read_completion, request)
            .await
    }
}

/// Builds an [`OpenAiAdvisor`]; `build` checks the settings.
#[derive(Debug, Default)]
pub struct OpenAiBuilder {
    config: OpenAiConfig,
    budget: Option<Arc<TokenBudget>>,
}

impl OpenAiBuilder {
    /// The API root (default `https://api.openai.com/v1`; GitHub Models:
    /// `https://models.github.ai/inference`; vLLM or llama.cpp: `http://host:port/v1`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.config.base_url = url.into();
        self
    }
    /// The model (default `gpt-4o-mini`).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.config.model = model.into();
        self
    }
    /// The API key.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.config.api_key = ApiKey::new(key);
        self
    }
    /// JSON Schema (default) or a forced tool call.
    pub fn answer_format(mut self, format: AnswerFormat) -> Self {
        self.config.answer_format = format;
        self
    }
    common_setters!("30 s");

    /// The advisor, or what to fix in the settings.
    pub fn build(self) -> Result<OpenAiAdvisor> {
        let config = self.config;
        let url = endpoint(
            "openai",
            &config.base_url,
            "/chat/completions",
            &config.model,
            "https://api.openai.com/v1 and gpt-4o-mini",
        )?;
        let (redactor, transport) = parts("openai", &config.http, &config.redact, self.budget)?;
        Ok(OpenAiAdvisor {
            url,
            redactor,
            transport,
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn settings_are_checked_and_the_key_is_never_printed() {
        let err = OpenAiAdvisor::builder()
            .base_url("api.openai.com")
            .build()
            .unwrap_err();
        assert!(err.message().contains("not an http(s) URL"), "{err}");
        let err = OpenAiAdvisor::builder().model(" ").build().unwrap_err();
        assert!(err.message().contains("model is empty"), "{err}");
        let err = OpenAiAdvisor::builder().redact("(").build().unwrap_err();
        assert!(err.message().contains("fix the pattern"), "{err}");
        let err = OpenAiAdvisor::builder()
            .timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(err.message().contains("timeout is zero"), "{err}");

        let advisor = OpenAiAdvisor::builder()
            .api_key("sk-secret-0123456789abcdef")
            .build()
            .unwrap();
        let debug = format!("{advisor:?}");
        assert!(!debug.contains("sk-secret"), "{debug}");
        assert!(debug.contains("ApiKey(***)"), "{debug}");
    }

    #[test]
    fn config_loads_from_toml() {
        let config: OpenAiConfig = toml::from_str(
            r#"
            base_url = "https://models.github.ai/inference"
            model = "openai/gpt-4.1-mini"
            answer_format = "tool_call"
            redact = ["tenant-\\d+"]
            [http]
            timeout = "5s"
            max_retries = 1
            "#,
        )
        .unwrap();
        assert_eq!(config.answer_format, AnswerFormat::ToolCall);
        assert_eq!(config.http.timeout, Duration::from_secs(5));
        assert_eq!(config.max_tokens, 800, "defaults fill the rest");
        let advisor = OpenAiAdvisor::from_config(config).unwrap();
        assert_eq!(
            advisor.url,
            "https://models.github.ai/inference/chat/completions"
        );
    }
}
