//! Redaction: what is masked before any text leaves the process.
//!
//! Built in: bearer tokens, `sk-…` API keys, GitHub tokens, AWS access key ids and
//! secret keys, passwords in connection URLs, `password=…`-style assignments, and
//! email addresses. Add your own patterns with [`Redactor::pattern`].
//!
//! ```
//! use selfheal_llm::Redactor;
//! let r = Redactor::default().pattern(r"tenant-\d+").unwrap();
//! let out = r.redact("postgres://app:hunter2@db:5432/x failed for ops@example.com, tenant-42");
//! assert_eq!(out, "postgres://app:[REDACTED]@db:5432/x failed for [EMAIL], [REDACTED]");
//! ```

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use selfheal_core::{Error, Result};

/// The built-in rules, in the order they run: URL passwords before emails, since
/// `user:pass@host.com` also looks like an address.
static BUILT_IN: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // scheme://user:password@host
        (
            r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+@",
            "${1}[REDACTED]@",
        ),
        (r"(?i)\b(bearer|basic)\s+[a-z0-9\-._~+/]+=*", "$1 [REDACTED]"),
        (r"\bsk-[A-Za-z0-9_\-]{16,}", "[REDACTED_KEY]"),
        (r"\bgh[pousr]_[A-Za-z0-9]{30,}", "[REDACTED_KEY]"),
        (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "[REDACTED_AWS_KEY]"),
        (
            r#"(?i)\b(aws_secret_access_key|password|passwd|pwd|secret|token|api[_-]?key)(["']?\s*[=:]\s*["']?)[^\s"',;&]+"#,
            "$1$2[REDACTED]",
        ),
        (
            r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b",
            "[EMAIL]",
        ),
    ]
    .into_iter()
    .map(|(re, with)| (Regex::new(re).expect("built-in redaction rule compiles"), with))
    .collect()
});

/// Masks secrets and personal data in text bound for a model.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    extra: Vec<Regex>,
}

impl Redactor {
    /// Also masks whatever matches `pattern` (a regex) as `[REDACTED]`.
    pub fn pattern(mut self, pattern: &str) -> Result<Self> {
        let re = Regex::new(pattern).map_err(|e| {
            Error::invalid(format!(
                "invalid redaction pattern `{pattern}`: {e}; fix the pattern"
            ))
        })?;
        self.extra.push(re);
        Ok(self)
    }

    /// Adds every pattern of `patterns` (see [`pattern`](Redactor::pattern)).
    pub fn patterns<S: AsRef<str>>(self, patterns: &[S]) -> Result<Self> {
        patterns.iter().try_fold(self, |r, p| r.pattern(p.as_ref()))
    }

    /// `text` with every secret masked.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for (re, with) in BUILT_IN.iter() {
            if let Cow::Owned(s) = re.replace_all(&out, *with) {
                out = Cow::Owned(s);
            }
        }
        for re in &self.extra {
            if let Cow::Owned(s) = re.replace_all(&out, "[REDACTED]") {
                out = Cow::Owned(s);
            }
        }
        out
    }

    /// `value` with every string in it (keys included) masked.
    pub fn redact_value(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.redact(s).into_owned()),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redact_value(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (self.redact(k).into_owned(), self.redact_value(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(s: &str) -> String {
        Redactor::default().redact(s).into_owned()
    }

    #[test]
    fn masks_every_built_in_kind_of_secret() {
        let cases = [
            (
                "GET /v1 Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc-_ failed",
                "GET /v1 Authorization: Bearer [REDACTED] failed",
            ),
            (
                "openai key sk-proj-AbCdEf0123456789_xyzXYZ rejected",
                "openai key [REDACTED_KEY] rejected",
            ),
            ("using sk-abcdefghijklmnopqrstuvwx", "using [REDACTED_KEY]"),
            (
                "AccessDenied for AKIAIOSFODNN7EXAMPLE in us-east-1",
                "AccessDenied for [REDACTED_AWS_KEY] in us-east-1",
            ),
            (
                "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws_secret_access_key=[REDACTED]",
            ),
            (
                "connect postgres://app:s3cr%40t@db.internal:5432/orders refused",
                "connect postgres://app:[REDACTED]@db.internal:5432/orders refused",
            ),
            (
                "redis://:hunter2@cache:6379 refused",
                "redis://:[REDACTED]@cache:6379 refused",
            ),
            (
                "login failed for jane.doe+ops@example.co.uk",
                "login failed for [EMAIL]",
            ),
            (
                r#"config {"password": "hunter2", "user": "app"} token=abc123"#,
                r#"config {"password": "[REDACTED]", "user": "app"} token=[REDACTED]"#,
            ),
            (
                "push by ghp_0123456789abcdefghijABCDEFGHIJabcdef denied",
                "push by [REDACTED_KEY] denied",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "input: {input}");
        }
    }

    #[test]
    fn leaves_ordinary_text_alone_and_borrows_it() {
        let text = "pool timed out while waiting for an open connection after 30s";
        assert!(matches!(Redactor::default().redact(text), Cow::Borrowed(_)));
    }

    #[test]
    fn configured_patterns_apply_and_invalid_ones_are_refused() {
        let r = Redactor::default()
            .patterns(&[r"tenant-\d+", r"card \d{4}"])
            .unwrap();
        assert_eq!(
            r.redact("tenant-42 paid with card 4242"),
            "[REDACTED] paid with [REDACTED]"
        );
        let err = Redactor::default().pattern("(unclosed").unwrap_err();
        assert!(err.message().contains("fix the pattern"), "{err}");
    }

    #[test]
    fn values_are_redacted_recursively() {
        let v = serde_json::json!({"dsn": "mysql://root:pw@db/x", "owners": ["a@b.io"], "n": 3});
        assert_eq!(
            Redactor::default().redact_value(&v),
            serde_json::json!({"dsn": "mysql://root:[REDACTED]@db/x", "owners": ["[EMAIL]"], "n": 3})
        );
    }
}
