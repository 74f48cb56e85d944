//! How the router is configured: who may call it, and limits.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::{Principal, Role};

/// The environment variable [`AdminConfig::from_env`] reads.
pub const TOKENS_ENV: &str = "SELFHEAL_ADMIN_TOKENS";

/// The default largest request body: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Configuration of [`crate::router`]. The default serves nothing but 503s saying how to
/// configure auth: add tokens ([`AdminConfig::token`], [`AdminConfig::from_env`]) or
/// trust the host's own auth ([`AdminConfig::host_auth`]) first.
///
/// ```
/// use selfheal_admin::{AdminConfig, MetricsAuth, Role};
/// let config = AdminConfig::default()
///     .token(Role::Operator, "alice", "a-long-random-secret")
///     .token(Role::Viewer, "grafana", "another-long-random-secret")
///     .metrics(MetricsAuth::Open)
///     .body_limit(256 * 1024);
/// assert!(!format!("{config:?}").contains("a-long-random-secret"));
/// ```
#[derive(Clone)]
pub struct AdminConfig {
    tokens: Vec<TokenEntry>,
    pub(crate) host_auth: bool,
    pub(crate) metrics: MetricsAuth,
    pub(crate) body_limit: usize,
    pub(crate) public_base_url: Option<String>,
    pub(crate) replay: usize,
    /// The receiver `POST /api/alerts/alertmanager` hands notifications to.
    #[cfg(feature = "alertmanager")]
    pub(crate) alertmanager: Option<selfheal_sources::alertmanager::Alertmanager>,
}

/// A token as kept: its SHA-256 and whose it is. The secret itself is never stored.
#[derive(Clone)]
struct TokenEntry {
    hash: [u8; 32],
    principal: Principal,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            tokens: Vec::new(),
            host_auth: false,
            metrics: MetricsAuth::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            public_base_url: None,
            replay: crate::events::DEFAULT_REPLAY,
            #[cfg(feature = "alertmanager")]
            alertmanager: None,
        }
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tokens: Vec<String> = self
            .tokens
            .iter()
            .map(|t| format!("{}:{}", role_name(t.principal.role), t.principal.name))
            .collect();
        let mut d = f.debug_struct("AdminConfig");
        d.field("tokens", &tokens)
            .field("host_auth", &self.host_auth)
            .field("metrics", &self.metrics)
            .field("body_limit", &self.body_limit)
            .field("public_base_url", &self.public_base_url)
            .field("replay", &self.replay);
        #[cfg(feature = "alertmanager")]
        d.field("alertmanager", &self.alertmanager.is_some());
        d.finish()
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Viewer => "viewer",
        Role::Operator => "operator",
    }
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl AdminConfig {
    /// Reads bearer tokens from `SELFHEAL_ADMIN_TOKENS`: comma-separated
    /// `role:name:secret` entries (`role` is `viewer` or `operator`; `name` is who the
    /// token belongs to and what the audit trail records). An unset or empty variable
    /// gives no tokens; a malformed entry is an `InvalidInput` error naming it (by
    /// position, never by its secret).
    pub fn from_env() -> Result<Self, TokenError> {
        match std::env::var(TOKENS_ENV) {
            Ok(value) => Self::default().tokens_from_str(&value),
            Err(std::env::VarError::NotPresent) => Ok(Self::default()),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(TokenError(format!("{TOKENS_ENV} is not valid UTF-8")))
            }
        }
    }

    /// Adds the tokens of a `role:name:secret,...` list (the format of
    /// `SELFHEAL_ADMIN_TOKENS`).
    /// Each secret must have at least [`MIN_SECRET_LEN`] characters, and a name keeps
    /// one role.
    pub fn tokens_from_str(mut self, list: &str) -> Result<Self, TokenError> {
        for (i, entry) in list.split(',').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let bad = |what: &str| {
                TokenError(format!(
                    "{TOKENS_ENV}: entry {} {what}; write each entry as role:name:secret \
                     (role viewer or operator, a secret of at least {MIN_SECRET_LEN} \
                     characters such as `openssl rand -hex 32`), entries separated by commas",
                    i + 1
                ))
            };
            let mut parts = entry.splitn(3, ':');
            let (Some(role), Some(name), Some(secret)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad("does not have three parts"));
            };
            let role = match role.trim() {
                "viewer" => Role::Viewer,
                "operator" => Role::Operator,
                _ => return Err(bad("has a role that is neither viewer nor operator")),
            };
            if name.trim().is_empty() {
                return Err(bad("has an empty name"));
            }
            if secret.chars().count() < MIN_SECRET_LEN {
                return Err(bad(&format!(
                    "has a secret of {} characters, too short to resist guessing",
                    secret.chars().count()
                )));
            }
            if let Some(other) = self
                .tokens
                .iter()
                .find(|t| t.principal.name == name.trim() && t.principal.role != role)
            {
                return Err(bad(&format!(
                    "gives `{}` a second role ({:?} before): one name, one role, so the \
                     audit trail's actor says what they could do",
                    name.trim(),
                    other.principal.role
                )));
            }
            self = self.token(role, name.trim(), secret);
        }
        Ok(self)
    }

    /// Accepts `secret` as a bearer token of `name` (the principal recorded as the
    /// actor of every change made with it) with `role`. Only its SHA-256 is kept.
    pub fn token(mut self, role: Role, name: impl Into<String>, secret: impl AsRef<str>) -> Self {
        self.tokens.push(TokenEntry {
            hash: hash(secret.as_ref()),
            principal: Principal {
                name: name.into(),
                role,
            },
        });
        self
    }

    /// Trusts the host's own auth: a [`Principal`] that the host's tower layer or
    /// extractor put in the request's extensions is used as is. Requests without one
    /// still need a bearer token.
    pub fn host_auth(mut self) -> Self {
        self.host_auth = true;
        self
    }

    /// Who may scrape `/metrics`.
    pub fn metrics(mut self, auth: MetricsAuth) -> Self {
        self.metrics = auth;
        self
    }

    /// How many of the latest events `/events` keeps for clients that reconnect with
    /// `Last-Event-ID` (default 1024, at least 1); one that reconnects later gets an
    /// `event: gap` first.
    pub fn replay(mut self, events: usize) -> Self {
        self.replay = events.max(1);
        self
    }

    /// The largest request body accepted, in bytes (default 1 MiB); larger ones get 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The URL the router is reached at from outside (e.g.
    /// `https://ops.example.com/selfheal`), given as the server of the OpenAPI document.
    /// Without it the document names the path it was served under.
    pub fn public_base_url(mut self, url: Option<String>) -> Self {
        self.public_base_url = url.map(|u| u.trim_end_matches('/').to_owned());
        self
    }

    /// Takes Alertmanager's webhook at `POST /api/alerts/alertmanager` (feature
    /// `alertmanager`), handing each notification to `receiver`, which must also be a
    /// source of the healer (`HealerBuilder::source(receiver.clone())`). Any token
    /// may post alerts, a viewer's too, so Alertmanager never holds one that can act:
    /// `http_config: {authorization: {credentials_file: /etc/alertmanager/selfheal-token}}`.
    #[cfg(feature = "alertmanager")]
    pub fn alertmanager(mut self, receiver: selfheal_sources::alertmanager::Alertmanager) -> Self {
        self.alertmanager = Some(receiver);
        self
    }

    /// Whether any way of authenticating is configured.
    pub(crate) fn auth_configured(&self) -> bool {
        self.host_auth || !self.tokens.is_empty()
    }

    /// The principal whose token this is. Every configured hash is compared, in constant
    /// time, so the time taken says nothing about which or how much of it matched.
    pub(crate) fn principal_of(&self, token: &str) -> Option<Principal> {
        let candidate = hash(token);
        let mut found = None;
        for entry in &self.tokens {
            if bool::from(entry.hash.ct_eq(&candidate)) && found.is_none() {
                found = Some(entry.principal.clone());
            }
        }
        found
    }
}

/// Who may scrape `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsAuth {
    /// The same bearer tokens as the API (viewer or operator).
    #[default]
    Tokens,
    /// Anyone who reaches the endpoint (bind it to a private interface).
    Open,
}

/// The shortest bearer secret `tokens_from_str` (and so `from_env`) accepts.
pub const MIN_SECRET_LEN: usize = 32;

/// A token list that cannot be used: says which entry and how to write it, never the
/// secret. Its `Debug` is its message, so `?` in `main` prints it readably.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenError(String);

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TokenError {}

impl From<TokenError> for std::io::Error {
    fn from(e: TokenError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "s3cr:et-0123456789abcdef0123456789ab";
    const B: &str = "other-0123456789abcdef0123456789abcd";

    #[test]
    fn tokens_parse_and_match_by_hash() {
        let c = AdminConfig::default()
            .tokens_from_str(&format!("operator:alice:{A}, viewer:bob:{B}"))
            .unwrap();
        assert_eq!(c.principal_of(A).unwrap().name, "alice");
        assert_eq!(c.principal_of(B).unwrap().role, Role::Viewer);
        assert!(c.principal_of("s3cr").is_none());
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cr") && !debug.contains("other"),
            "{debug}"
        );
        assert!(debug.contains("operator:alice"), "{debug}");
    }

    #[test]
    fn a_bad_entry_is_refused_without_echoing_it() {
        for bad in [
            "admin:alice:x",
            "operator:alice",
            "operator::x",
            "viewer:bob:",
            "viewer:bob:short",
        ] {
            let err = AdminConfig::default().tokens_from_str(bad).unwrap_err();
            assert!(err.to_string().contains("entry 1"), "{err}");
            assert!(!err.to_string().contains(":x"), "{err}");
            assert_eq!(
                format!("{err:?}"),
                err.to_string(),
                "Debug reads as the message"
            );
        }
        let twice = format!("operator:alice:{A},viewer:alice:{B}");
        let err = AdminConfig::default().tokens_from_str(&twice).unwrap_err();
        assert!(
            err.to_string()
                .contains("entry 2 gives `alice` a second role"),
            "{err}"
        );
    }
}
