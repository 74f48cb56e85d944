#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub use selfheal_core::*;

/// Stores: the embedded SQLite default (feature `sqlite`) and PostgreSQL (feature
/// `postgres`).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod storage {
    pub use selfheal_storage::*;
}

/// Stock strategies, executors and verifiers (feature `strategies`).
#[cfg(feature = "strategies")]
pub mod strategies {
    pub use selfheal_strategies::*;
}

/// LLM advisors (feature `llm`; the HTTP advisors with `openai` and `ollama`).
#[cfg(feature = "llm")]
pub mod llm {
    pub use selfheal_llm::*;
}

#[cfg(feature = "ollama")]
pub use selfheal_llm::{OllamaAdvisor, OllamaConfig};
#[cfg(feature = "openai")]
pub use selfheal_llm::{OpenAiAdvisor, OpenAiConfig};
