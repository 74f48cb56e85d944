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

/// The `redis` crate the Redis strategies are built with (feature `redis`). Use it for
/// the service's own Redis calls, so its types are the ones [`strategies::RedisHandle`]
/// hands out and takes, whatever version the service would pick on its own.
#[cfg(feature = "redis")]
pub use ::redis;

/// The `sqlx` crate the Postgres strategies and store are built with (feature
/// `postgres`, with its `postgres` driver). Build the service's pool with it, so the
/// `PgPool` the integration takes is the same type.
#[cfg(feature = "postgres")]
pub use ::sqlx;

/// Sources that feed the healer besides its own process: the log-line parser (always),
/// and file tail, Loki, Alertmanager and NATS JetStream behind their features.
pub mod sources {
    pub use selfheal_sources::*;
}

/// The operator surface (feature `admin`): an axum router with the dashboard, the JSON
/// API, live events, metrics and OpenAPI; nest it in the host's router.
#[cfg(feature = "admin")]
pub mod admin {
    pub use selfheal_admin::*;
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
