//! What can go wrong while asking a model, and how it maps to [`selfheal_core::Error`].

use std::time::Duration;

use selfheal_core::{Error, ErrorKind};

/// An advisor's own error. Converted into [`selfheal_core::Error`] at the trait
/// boundary; the kind decides whether a retry or another provider may help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The endpoint could not be reached (connection refused, DNS, TLS).
    #[error("`{provider}` could not be reached: {detail}; check the base URL and the network")]
    Unreachable {
        /// The advisor's name.
        provider: String,
        /// What the HTTP client said.
        detail: String,
    },
    /// No answer within the configured timeout.
    #[error(
        "`{provider}` did not answer within {timeout:?}; raise the timeout or check the endpoint"
    )]
    Timeout {
        /// The advisor's name.
        provider: String,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// HTTP 429: the provider's rate limit or quota.
    #[error("`{provider}` rate-limited the request ({code}): {message}{}", retry_hint(*.retry_after))]
    RateLimited {
        /// The advisor's name.
        provider: String,
        /// The provider's error code (`rate_limit_exceeded`, `insufficient_quota`, …).
        code: String,
        /// The provider's message.
        message: String,
        /// How long the provider asked to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Any other non-success HTTP status.
    #[error("`{provider}` answered HTTP {status}: {message}")]
    Status {
        /// The advisor's name.
        provider: String,
        /// The HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// A response that is not the provider's documented shape.
    #[error("`{provider}` sent a response that is not the documented shape: {detail}")]
    Malformed {
        /// The advisor's name.
        provider: String,
        /// What was wrong.
        detail: String,
    },
    /// The model's answer is unusable or unsafe: not JSON, an unregistered strategy,
    /// a command. The incident is escalated, nothing runs.
    #[error(
        "the answer of `{provider}` was refused: {reason}; nothing runs, the incident is escalated"
    )]
    Refused {
        /// The advisor's name.
        provider: String,
        /// Why.
        reason: String,
    },
    /// The hourly token budget is spent.
    #[error(
        "the token budget of {limit} tokens per hour is spent; advice resumes in {resets_in:?}, or raise the budget"
    )]
    BudgetSpent {
        /// Tokens allowed per hour.
        limit: u64,
        /// Until the budget renews.
        resets_in: Duration,
    },
}

fn retry_hint(retry_after: Option<Duration>) -> String {
    retry_after.map_or_else(String::new, |d| format!(" (retry after {d:?})"))
}

impl LlmError {
    /// Whether the same request may succeed if sent again after a pause.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Unreachable { .. } | LlmError::RateLimited { .. } => true,
            LlmError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            LlmError::Timeout { .. } => ErrorKind::Timeout,
            LlmError::Unreachable { .. }
            | LlmError::RateLimited { .. }
            | LlmError::Malformed { .. }
            | LlmError::BudgetSpent { .. } => ErrorKind::Unavailable,
            LlmError::Status { status, .. } if *status >= 500 => ErrorKind::Unavailable,
            LlmError::Status { .. } | LlmError::Refused { .. } => ErrorKind::InvalidInput,
        }
    }
}

impl From<LlmError> for Error {
    fn from(e: LlmError) -> Self {
        Error::new(e.kind(), e.to_string()).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_drive_retries_and_fallback() {
        let p = || "openai".to_owned();
        let limited = LlmError::RateLimited {
            provider: p(),
            code: "rate_limit_exceeded".into(),
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert!(limited.is_retryable());
        assert!(limited.to_string().contains("retry after 2s"));
        let e = Error::from(limited);
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());

        let refused = LlmError::Refused {
            provider: p(),
            reason: "not JSON".into(),
        };
        assert!(!refused.is_retryable());
        assert_eq!(Error::from(refused).kind(), ErrorKind::InvalidInput);
        let server = LlmError::Status {
            provider: p(),
            status: 503,
            message: "overloaded".into(),
        };
        assert!(server.is_retryable());
        let auth = LlmError::Status {
            provider: p(),
            status: 401,
            message: "bad key".into(),
        };
        assert!(!auth.is_retryable());
        assert_eq!(Error::from(auth).kind(), ErrorKind::InvalidInput);
    }
}
