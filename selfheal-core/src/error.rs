//! The one error type every selfheal trait returns.

use std::fmt;

/// What went wrong, coarse enough to drive retries and user messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller passed something invalid (bad regex, bad parameters, bad config).
    InvalidInput,
    /// The thing asked for does not exist.
    NotFound,
    /// The thing already exists or the operation conflicts with current state.
    Conflict,
    /// A backend (store, server, provider) is unreachable or refused; retrying may help.
    Unavailable,
    /// An operation ran out of time; retrying may help.
    Timeout,
    /// A strategy or executor failed to carry out an action.
    Execution,
    /// The healer is shut down or the operation is not allowed in its state.
    Closed,
    /// A bug or an unexpected state inside selfheal.
    Internal,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Execution => "execution failed",
            ErrorKind::Closed => "closed",
            ErrorKind::Internal => "internal error",
        }
    }
}

/// The error of every selfheal trait method: a kind, a message that says what to do,
/// and the underlying cause when there is one.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with selfheal's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message that tells the reader what to do.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Shorthand for an [`ErrorKind::InvalidInput`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for an [`ErrorKind::NotFound`] error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind or the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable | ErrorKind::Timeout)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_kind_and_message_and_keeps_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = Error::new(
            ErrorKind::Unavailable,
            "store unreachable; check DATABASE_URL",
        )
        .with_source(io);
        assert_eq!(
            err.to_string(),
            "unavailable: store unreachable; check DATABASE_URL"
        );
        assert!(err.is_retryable());
        let source = std::error::Error::source(&err).expect("source kept");
        assert_eq!(source.to_string(), "refused");
        assert!(!Error::invalid("x").is_retryable());
    }
}
