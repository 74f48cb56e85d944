//! LLM advisors for selfheal: advice only, never execution.
//!
//! An advisor reads an incident no known pattern explains and suggests a root cause
//! and one of the *registered* strategies. Its answer is advice: the healer always
//! waits for a human to approve it, never lets it make an unknown error auto-healable,
//! and escalates an answer that is not valid JSON, names an unregistered strategy,
//! carries parameters the strategy refuses, or asks for a command.
//!
//! - [`OpenAiAdvisor`] (feature `openai`): any OpenAI-compatible chat-completions
//!   endpoint, with a strict JSON Schema or a forced tool call.
//! - [`OllamaAdvisor`] (feature `ollama`): Ollama's `/api/chat` with `format`.
//! - Wrappers that implement the same trait: [`Fallback`] (a chain with a circuit
//!   breaker per advisor), [`RateLimited`] (`governor`), [`Cached`] (one diagnosis per
//!   fingerprint in the store, with a TTL).
//! - Cost controls inside the HTTP advisors: a shared [`TokenBudget`] per hour read
//!   from the response `usage`, retries with back-off honouring `Retry-After`, a
//!   timeout ([`HttpSettings`]), and `max_tokens`.
//! - [`Redactor`]: secrets and emails are masked before anything leaves the process.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use selfheal_core::{Healer, LlmAdvisor, MemoryStore, Store};
//! use selfheal_llm::{Cached, Fallback, RateLimited, StaticAdvisor};
//! # fn main() -> selfheal_core::Result<()> {
//! let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! let chain = Fallback::new()
//!     .advisor(StaticAdvisor::new("restart", 0.6, "the pool leaks connections"))
//!     .cool_off(Duration::from_secs(300));
//! let advisor = Cached::new(RateLimited::per_minute(chain, 10), store.clone(), Duration::from_secs(3600));
//! let healer = Healer::builder().store_arc(store).advisor(advisor).build()?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod answer;
mod budget;
mod cached;
mod error;
mod fallback;
#[cfg(any(feature = "openai", feature = "ollama"))]
mod http;
#[cfg(feature = "ollama")]
mod ollama;
#[cfg(feature = "openai")]
mod openai;
pub mod prompt;
mod rate;
mod redact;
mod static_advisor;
#[cfg(test)]
mod testing;

pub use answer::parse_answer;
pub use budget::TokenBudget;
pub use cached::Cached;
pub use error::LlmError;
pub use fallback::Fallback;
#[cfg(any(feature = "openai", feature = "ollama"))]
pub use http::{ApiKey, HttpSettings};
#[cfg(feature = "ollama")]
pub use ollama::{OllamaAdvisor, OllamaBuilder, OllamaConfig};
#[cfg(feature = "openai")]
pub use openai::{AnswerFormat, OpenAiAdvisor, OpenAiBuilder, OpenAiConfig, TOOL_NAME};
pub use rate::RateLimited;
pub use redact::Redactor;
pub use static_advisor::StaticAdvisor;
