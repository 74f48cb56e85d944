//! Redaction: what is masked before any text leaves the process for a model.
//!
//! The rules are selfheal-core's [`selfheal_core::Redactor`] (URL credentials,
//! `key=value` secrets, `password <value>`, every `Authorization` scheme, JWTs, AWS,
//! GCP, GitHub, Slack and Stripe tokens, private-key blocks, connection strings), with
//! e-mail addresses masked too. Add your own patterns with [`Redactor::pattern`].
//!
//! The healer already redacts every signal as it enters, so a model sees what the
//! store holds; this is the second pass, for text an advisor adds on its own.
//!
//! ```
//! use selfheal_llm::Redactor;
//! let r = Redactor::default().pattern(r"tenant-\d+").unwrap();
//! let out = r.redact("postgres://app:hunter2@db:5432/x failed for ops@example.com, tenant-42");
//! assert_eq!(out, "postgres://app:[REDACTED]@db:5432/x failed for [EMAIL], [REDACTED]");
//! ```

use std::borrow::Cow;

use selfheal_core::Result;

/// Masks secrets and personal data in text bound for a model: the core rules plus
/// e-mail addresses.
#[derive(Debug, Clone)]
pub struct Redactor(selfheal_core::Redactor);

impl Default for Redactor {
    fn default() -> Self {
        Redactor(selfheal_core::Redactor::default().emails(true))
    }
}

impl From<selfheal_core::Redactor> for Redactor {
    /// The host's redactor (its extra rules included), with e-mails masked too.
    fn from(core: selfheal_core::Redactor) -> Self {
        Redactor(core.emails(true))
    }
}

impl Redactor {
    /// Also masks whatever matches `pattern` (a regex) as `[REDACTED]`.
    pub fn pattern(self, pattern: &str) -> Result<Self> {
        self.0.pattern(pattern).map(Redactor)
    }

    /// Adds every pattern of `patterns` (see [`pattern`](Redactor::pattern)).
    pub fn patterns<S: AsRef<str>>(self, patterns: &[S]) -> Result<Self> {
        self.0.patterns(patterns).map(Redactor)
    }

    /// `text` with every secret masked.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.0.redact(text)
    }

    /// `value` with every string in it (keys included) masked.
    pub fn redact_value(&self, value: &serde_json::Value) -> serde_json::Value {
        self.0.redact_value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(s: &str) -> String {
        Redactor::default().redact(s).into_owned()
    }

    /// The four shapes that used to reach the prompt.
    #[test]
    fn masks_what_used_to_reach_the_model() {
        let jwt = format!(
            "eyJ{}.eyJ{}.{}",
            "hbGciOiJIUzI1NiJ9x", "zdWIiOiIxMjM0In0x", "c2lnbmF0dXJlLWZha2U"
        );
        let aws = format!("{}{}", "wJalrXUtnFEMIK7MDENGbPxRfi", "CYFAKEFAKE0123");
        for (line, secret) in [
            (format!("rejected {jwt}"), jwt.clone()),
            (format!("signing with {aws} failed"), aws.clone()),
            (
                "login with password Hunter2! failed".to_owned(),
                "Hunter2!".to_owned(),
            ),
            (
                "Authorization: token abcdef0123456789fake".to_owned(),
                "abcdef0123456789fake".to_owned(),
            ),
        ] {
            let out = redact(&line);
            assert!(!out.contains(&secret), "{out}");
        }
    }

    #[test]
    fn emails_are_masked_and_ordinary_text_borrowed() {
        assert_eq!(
            redact("login failed for jane@example.com"),
            "login failed for [EMAIL]"
        );
        let text = "pool timed out while waiting for an open connection after 30s";
        assert!(matches!(Redactor::default().redact(text), Cow::Borrowed(_)));
    }

    #[test]
    fn the_hosts_rules_come_along() {
        let host = selfheal_core::Redactor::default()
            .pattern("tenant-\\d+")
            .unwrap();
        let r = Redactor::from(host).pattern(r"card \d{4}").unwrap();
        assert_eq!(
            r.redact("tenant-7 at a@b.io paid with card 4242"),
            "[REDACTED] at [EMAIL] paid with [REDACTED]"
        );
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
