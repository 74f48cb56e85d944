//! Redaction: secrets are masked before anything is stored, notified, audited or sent.
//!
//! The healer runs every signal through its [`Redactor`] as it enters the pipeline
//! (message, stack and fields), so samples, templates, fingerprints, incident rows,
//! audit records, notifications and advisor requests never hold the secret. Text that
//! enters later (a strategy's output and errors, plans, approval reasons) is redacted
//! where it is stored, audited, notified or emitted.
//!
//! Built-in rules mask:
//! - credentials in URLs (`postgres://user:pass@host`, `redis://:pass@host`);
//! - `key=value`, `key: value` and `"key": "value"` for secret-ish keys (`password`,
//!   `passwd`, `pwd`, `secret`, `token`, `api_key`, `access_key`, `private_key`,
//!   `client_secret`, `auth`, `credentials`, `session`, `signature`, …), which also
//!   covers ADO/JDBC/ODBC connection strings (`Password=…;`, `PWD={…}`);
//! - `password <value>` (and `secret`, `token`, `api key`) when the value looks like one;
//! - `Authorization:` headers of any scheme, `Bearer …` / `Basic …`, `Cookie:` headers;
//! - JWTs, bare too;
//! - AWS access key ids (`AKIA…`, `ASIA…`) and 40-character secret keys, bare or
//!   after an AWS-ish word;
//! - GCP API keys (`AIza…`), OAuth access tokens (`ya29.…`), service-account
//!   `private_key` values and every PEM private-key block;
//! - GitHub (`ghp_`, `gho_`, `ghs_`, `ghu_`, `ghr_`, `github_pat_`), GitLab (`glpat-`),
//!   Slack (`xox[abposr]-`), Stripe (`sk_live_`, `rk_live_`, `pk_live_`, `whsec_`),
//!   npm (`npm_`) and `sk-…` API keys;
//! - Slack and Discord webhook URLs.
//!
//! Add your own with [`Redactor::pattern`] (or `[redaction] extra = ["…"]`); mask e-mail
//! addresses too with [`Redactor::emails`].
//!
//! ```
//! use selfheal_core::Redactor;
//! let r = Redactor::default().pattern(r"tenant-\d+").unwrap();
//! let out = r.redact("connect postgres://app:hunter2@db:5432/x as tenant-42: password=s3cret;");
//! assert_eq!(out, "connect postgres://app:[REDACTED]@db:5432/x as [REDACTED]: password=[REDACTED];");
//! ```
//!
//! A line with nothing secret-looking costs one pass of a multi-literal search and one
//! byte scan; the rules' regexes run only on lines holding one of their trigger words.

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use regex::{Captures, Regex};

use crate::{Error, Result, Signal};

/// What a secret is replaced with.
pub const MASK: &str = "[REDACTED]";

/// What an e-mail address is replaced with (see [`Redactor::emails`]).
pub const EMAIL_MASK: &str = "[EMAIL]";

/// The words a key holding a secret contains (a regex alternation, case-insensitive).
const SECRET_KEY_WORDS: &str = r"password|passwd|passphrase|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|account[_\-]?key|signing[_\-]?key|encryption[_\-]?key|auth|credentials?|session(?:[_\-]?id)?|sessionid|signature|sig";

/// A key holding a secret: an identifier with one of [`SECRET_KEY_WORDS`] as a word
/// (`db_password`, `aws_secret_access_key`, `x-auth-token`, `clientSecret`), not
/// `max_tokens` or `author`.
fn secret_key_pattern() -> String {
    format!(r"[a-z0-9_.\-]*?(?:{SECRET_KEY_WORDS})(?:[_.\-][a-z0-9]+){{0,3}}")
}

/// Words that follow `token:` or `auth:` in prose, not secrets.
const STOPWORDS: &[&str] = &[
    "a",
    "absent",
    "accepted",
    "an",
    "and",
    "authentication",
    "authorization",
    "bad",
    "cannot",
    "changed",
    "denied",
    "disabled",
    "does",
    "empty",
    "enabled",
    "error",
    "exceeded",
    "expired",
    "expiring",
    "failed",
    "failure",
    "false",
    "for",
    "forbidden",
    "found",
    "from",
    "has",
    "have",
    "in",
    "incorrect",
    "invalid",
    "is",
    "limit",
    "malformed",
    "mismatch",
    "missing",
    "must",
    "nil",
    "no",
    "none",
    "not",
    "null",
    "of",
    "ok",
    "on",
    "or",
    "permission",
    "policy",
    "present",
    "provided",
    "refused",
    "rejected",
    "required",
    "reset",
    "revoked",
    "set",
    "short",
    "the",
    "timeout",
    "to",
    "too",
    "true",
    "unauthorized",
    "unavailable",
    "unknown",
    "unset",
    "updated",
    "valid",
    "verified",
    "was",
    "weak",
    "with",
    "wrong",
    "yes",
];

/// How a rule finds and masks.
enum Apply {
    /// Every match of the regex becomes what the function returns (`None` keeps it).
    Regex(Regex, fn(&Captures<'_>) -> Option<String>),
    /// A function over the whole text (`None` when it masked nothing).
    Scan(fn(&str) -> Option<String>),
}

/// One built-in rule.
struct Rule {
    /// Lowercase words one of which the text must contain for the rule to run; empty:
    /// always runs.
    triggers: &'static [&'static str],
    apply: Apply,
}

/// The built-in rules in the order they run (the specific ones first, so the generic
/// `key=value` rule sees their masks), the e-mail rule last.
struct BuiltIn {
    rules: Vec<Rule>,
    /// Finds every rule's triggers in one pass; pattern i belongs to rule `owner[i]`.
    prefilter: AhoCorasick,
    owner: Vec<usize>,
    /// Rules with no trigger, as a bit set.
    always: u64,
    /// A whole field name that holds a secret.
    secret_key: Regex,
}

static BUILT_IN: LazyLock<BuiltIn> = LazyLock::new(BuiltIn::new);

/// The index of the e-mail rule, skipped unless [`Redactor::emails`] is on.
const EMAIL_RULE: usize = 11;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("built-in redaction rule compiles")
}

impl BuiltIn {
    fn new() -> Self {
        let key = secret_key_pattern();
        let rules = vec![
            // 0: PEM private-key blocks, to their END line (or the end of the text).
            Rule {
                triggers: &["private key"],
                apply: Apply::Regex(
                    re(
                        r"(?s)(-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----).*?(-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)",
                    ),
                    |c| Some(format!("{}{MASK}{}", &c[1], &c[2])),
                ),
            },
            // 1: JWTs, bare or not.
            Rule {
                triggers: &["eyj"],
                apply: Apply::Regex(
                    re(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
                    |_| Some(MASK.to_owned()),
                ),
            },
            // 2: scheme://user:password@host (the last @ before the path).
            Rule {
                triggers: &["://"],
                apply: Apply::Regex(
                    re(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@?#]*:)([^\s/?#]+)@"),
                    |c| keep_masked(&c[2]).then(|| format!("{}{MASK}@", &c[1])),
                ),
            },
            // 3: Authorization headers, whatever the scheme.
            Rule {
                triggers: &["authorization"],
                apply: Apply::Regex(
                    re(
                        r#"(?i)\b((?:proxy-)?authorization\\?["']?\s*[:=]\s*\\?["']?)(?:(bearer|basic|token|digest|negotiate|ntlm|apikey|api-key|key|sso-key|hmac|aws4-hmac-sha256)\s+)?([^\s"',;\\]+)"#,
                    ),
                    |c| {
                        keep_masked(&c[3]).then(|| match c.get(2) {
                            Some(scheme) => format!("{}{} {MASK}", &c[1], scheme.as_str()),
                            None => format!("{}{MASK}", &c[1]),
                        })
                    },
                ),
            },
            // 4: Bearer / Basic credentials outside a header.
            Rule {
                triggers: &["bearer", "basic"],
                apply: Apply::Regex(
                    re(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9\-._~+/]+=*)"),
                    |c| {
                        let v = &c[3];
                        (looks_secret(v) || v.len() >= 20)
                            .then(|| format!("{}{}{MASK}", &c[1], &c[2]))
                    },
                ),
            },
            // 5: Cookie headers: every cookie is a session.
            Rule {
                triggers: &["cookie"],
                apply: Apply::Regex(
                    re(r#"(?i)\b((?:set-)?cookie\\?["']?\s*[:=]\s*\\?["']?)([^\r\n"'\\]+)"#),
                    |c| keep_masked(&c[2]).then(|| format!("{}{MASK}", &c[1])),
                ),
            },
            // 6: provider tokens and AWS access key ids.
            Rule {
                triggers: &[
                    "sk_",
                    "rk_",
                    "pk_",
                    "whsec_",
                    "sk-",
                    "ghp_",
                    "gho_",
                    "ghu_",
                    "ghs_",
                    "ghr_",
                    "github_pat_",
                    "glpat-",
                    "xox",
                    "aiza",
                    "ya29.",
                    "npm_",
                    "a3t",
                    "akia",
                    "asia",
                    "abia",
                    "acca",
                    "agpa",
                    "aida",
                    "aipa",
                    "anpa",
                    "anva",
                    "aroa",
                ],
                apply: Apply::Regex(
                    re(concat!(
                        r"\b(?:(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}|whsec_[A-Za-z0-9]{16,}",
                        r"|sk-[A-Za-z0-9_\-]{16,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}",
                        r"|glpat-[A-Za-z0-9_\-]{20,}|xox[abposr]-[A-Za-z0-9\-]{10,}|AIza[0-9A-Za-z_\-]{35}",
                        r"|ya29\.[0-9A-Za-z_\-]{20,}|npm_[A-Za-z0-9]{36}",
                        r"|(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA)[A-Z0-9]{16}\b)",
                    )),
                    |_| Some(MASK.to_owned()),
                ),
            },
            // 7: Slack and Discord webhook URLs: the path is the secret.
            Rule {
                triggers: &["hooks.slack.com", "discord"],
                apply: Apply::Regex(
                    re(
                        r"(?i)\b(hooks\.slack\.com/(?:services|workflows|triggers)/|discord(?:app)?\.com/api/webhooks/)([A-Za-z0-9/_\-]+)",
                    ),
                    |c| Some(format!("{}{MASK}", &c[1])),
                ),
            },
            // 8: key=value, key: value, "key": "value", key => value for secret-ish keys.
            Rule {
                triggers: &[
                    "pass",
                    "pwd",
                    "secret",
                    "token",
                    "key",
                    "auth",
                    "credential",
                    "session",
                    "sig",
                ],
                apply: Apply::Regex(
                    re(&format!(
                        r#"(?i)(\b{key})((?:\\?["'])?\s*(?:=>|=|:)\s*)(\\"[^"]*?\\"|"[^"]*"|'[^']*'|\{{[^}}]*\}}|[^\s"',;&}}\])]+)"#
                    )),
                    mask_assignment,
                ),
            },
            // 9: `password hunter2`, `token 8f3a…`: a keyword, then a value that looks like one.
            Rule {
                triggers: &["pass", "secret", "token", "api"],
                apply: Apply::Regex(
                    re(
                        r#"(?i)\b(password|passwd|passphrase|secret|token|api[ _\-]?key)(\s+(?:is\s+|was\s+)?)("[^"]*"|'[^']*'|[^\s"',;]+)"#,
                    ),
                    mask_after_keyword,
                ),
            },
            // 10: 40-character AWS secret keys, after an AWS-ish word or bare.
            Rule {
                triggers: &[],
                apply: Apply::Scan(mask_aws_secrets),
            },
            // 11 (EMAIL_RULE): e-mail addresses, when asked for.
            Rule {
                triggers: &["@"],
                apply: Apply::Regex(
                    re(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b"),
                    |c| (&c[0] != EMAIL_MASK).then(|| EMAIL_MASK.to_owned()),
                ),
            },
        ];
        let mut words = Vec::new();
        let mut owner = Vec::new();
        let mut always = 0u64;
        for (i, rule) in rules.iter().enumerate() {
            if rule.triggers.is_empty() {
                always |= 1 << i;
            }
            for w in rule.triggers {
                words.push(*w);
                owner.push(i);
            }
        }
        let prefilter = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&words)
            .expect("redaction triggers compile");
        BuiltIn {
            rules,
            prefilter,
            owner,
            always,
            secret_key: re(&format!("(?i)^(?:{key})$")),
        }
    }

    /// The rules whose triggers occur in `text`, as a bit set.
    fn triggered(&self, text: &str) -> u64 {
        let mut set = self.always;
        for m in self.prefilter.find_overlapping_iter(text) {
            set |= 1 << self.owner[m.pattern().as_usize()];
        }
        set
    }
}

/// Whether a captured value is not already a mask (so redacting twice changes nothing).
fn keep_masked(value: &str) -> bool {
    let v = value.trim_start_matches(['"', '\'', '\\']);
    !(v.starts_with(MASK) || v.starts_with("[REDACTED") || v.starts_with(EMAIL_MASK))
}

/// Whether `value` looks like a secret rather than a word: it holds a digit or a
/// symbol, or mixes cases past its first letter. At least 4 characters.
fn looks_secret(value: &str) -> bool {
    let v = value.trim_end_matches(['.', ',', ';', ':', ')', ']', '}', '!', '?']);
    if v.chars().count() < 4 {
        return false;
    }
    let symbol = v.chars().any(|c| !c.is_alphabetic());
    let upper_inside = v.chars().skip(1).any(char::is_uppercase);
    let lower = v.chars().any(char::is_lowercase);
    symbol || (upper_inside && lower)
}

/// Whether `value` looks generated rather than named: 8 characters or more, with
/// letters and digits, or mixed case past the first letter (`db-creds` is a name).
fn looks_random(value: &str) -> bool {
    let v = value.trim_end_matches(['.', ',', ';', ':', ')', ']', '}', '!', '?']);
    let letters = v.chars().any(char::is_alphabetic);
    let digits = v.chars().any(|c| c.is_ascii_digit());
    let mixed = v.chars().skip(1).any(char::is_uppercase) && v.chars().any(char::is_lowercase);
    v.chars().count() >= 8 && ((letters && digits) || mixed)
}

/// Splits a captured value into its quotes and what they hold.
fn unquote(value: &str) -> (&str, &str, &str) {
    for q in ["\\\"", "\"", "'"] {
        if value.len() >= 2 * q.len() && value.starts_with(q) && value.ends_with(q) {
            return (q, &value[q.len()..value.len() - q.len()], q);
        }
    }
    if value.starts_with('{') && value.ends_with('}') {
        return ("{", &value[1..value.len() - 1], "}");
    }
    ("", value, "")
}

/// `key = value`: masked always; `key: value`: masked when quoted, when it looks like
/// a secret, or when it is a word that is not ordinary prose (`token: expired` stays).
fn mask_assignment(c: &Captures<'_>) -> Option<String> {
    let (sep, value) = (&c[2], &c[3]);
    let (open, inner, close) = unquote(value);
    if inner.is_empty() || !keep_masked(inner) {
        return None;
    }
    let key = c[1].to_ascii_lowercase();
    let strong_key = ["pass", "pwd", "secret", "token", "key", "credential"]
        .iter()
        .any(|w| key.contains(w));
    let mask = sep.contains('=')
        || !open.is_empty()
        || looks_secret(inner)
        || (strong_key
            && inner.chars().count() >= 3
            && inner.chars().all(char::is_alphabetic)
            && !STOPWORDS.contains(&inner.to_lowercase().as_str()));
    mask.then(|| format!("{}{sep}{open}{MASK}{close}", &c[1]))
}

/// `password hunter2`: masked when the value looks like a secret (or, after a password
/// word, is quoted); `password authentication failed` stays.
fn mask_after_keyword(c: &Captures<'_>) -> Option<String> {
    let (word, gap, value) = (&c[1], &c[2], &c[3]);
    let (open, inner, close) = unquote(value);
    if inner.is_empty() || !keep_masked(inner) {
        return None;
    }
    let lower = word.to_ascii_lowercase();
    let mask = if lower.starts_with("pass") {
        !open.is_empty() || looks_secret(inner)
    } else {
        looks_random(inner)
    };
    mask.then(|| format!("{word}{gap}{open}{MASK}{close}"))
}

/// Masks runs of exactly 40 base64 characters that are an AWS secret key: after an
/// AWS-ish word (`aws`, `secret`), or bare when they mix upper case, lower case and
/// digits and are not a path (a lowercase hex digest never qualifies).
fn mask_aws_secrets(text: &str) -> Option<String> {
    const LEN: usize = 40;
    if text.len() < LEN {
        return None;
    }
    let bytes = text.as_bytes();
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'/' || b == b'+';
    let mut hits: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !is_b64(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_b64(bytes[i]) {
            i += 1;
        }
        if i - start != LEN {
            continue;
        }
        let run = &bytes[start..i];
        let diverse = run.iter().any(u8::is_ascii_uppercase)
            && run.iter().any(u8::is_ascii_lowercase)
            && run.iter().any(u8::is_ascii_digit)
            && run.iter().filter(|b| **b == b'/').count() < 5;
        let mut from = start.saturating_sub(48);
        while !text.is_char_boundary(from) {
            from -= 1;
        }
        let before = text[from..start].to_ascii_lowercase();
        if diverse || before.contains("aws") || before.contains("secret") {
            hits.push((start, i));
        }
    }
    if hits.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (s, e) in hits {
        out.push_str(&text[last..s]);
        out.push_str(MASK);
        last = e;
    }
    out.push_str(&text[last..]);
    Some(out)
}

/// Masks secrets in text. Cheap to clone.
///
/// The healer holds one built from `[redaction]` in its configuration (see
/// [`HealerBuilder::redact`](crate::HealerBuilder::redact)); it is usable on its own too.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    extra: Vec<Regex>,
    emails: bool,
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

    /// Also masks e-mail addresses as `[EMAIL]` (off by default; the LLM advisors
    /// turn it on).
    pub fn emails(mut self, on: bool) -> Self {
        self.emails = on;
        self
    }

    /// The redactor `[redaction]` describes.
    pub fn from_config(config: &crate::RedactionConfig) -> Result<Self> {
        Redactor::default()
            .emails(config.emails)
            .patterns(&config.extra)
    }

    /// `text` with every secret masked; borrowed when nothing was.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let built_in = &*BUILT_IN;
        let mut triggered = built_in.triggered(text);
        if !self.emails {
            triggered &= !(1 << EMAIL_RULE);
        }
        let mut out = Cow::Borrowed(text);
        for (i, rule) in built_in.rules.iter().enumerate() {
            if triggered & (1 << i) == 0 {
                continue;
            }
            match &rule.apply {
                Apply::Regex(re, f) => {
                    let mut changed = false;
                    let replaced = re.replace_all(&out, |c: &Captures<'_>| match f(c) {
                        Some(s) => {
                            changed = true;
                            s
                        }
                        None => c[0].to_owned(),
                    });
                    if changed {
                        out = Cow::Owned(replaced.into_owned());
                    }
                }
                Apply::Scan(f) => {
                    if let Some(s) = f(&out) {
                        out = Cow::Owned(s);
                    }
                }
            }
        }
        for re in &self.extra {
            if let Cow::Owned(s) = re.replace_all(&out, MASK) {
                out = Cow::Owned(s);
            }
        }
        out
    }

    /// `text` redacted, in place.
    pub fn redact_in_place(&self, text: &mut String) {
        if let Cow::Owned(s) = self.redact(text) {
            *text = s;
        }
    }

    /// Whether a field or JSON key named `key` holds a secret (`password`,
    /// `db_password`, `x-api-key`, …): its whole value is masked.
    pub fn is_secret_key(&self, key: &str) -> bool {
        BUILT_IN.secret_key.is_match(key)
    }

    /// `value` with every string in it (keys included) masked, and every value under a
    /// secret-ish key masked whole.
    pub fn redact_value(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.redact(s).into_owned()),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redact_value(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::String(s) if self.is_secret_key(k) && keep_masked(s) => {
                                Value::String(MASK.to_owned())
                            }
                            other => self.redact_value(other),
                        };
                        (self.redact(k).into_owned(), v)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// `signal` with its message, stack and fields redacted (a field named like a
    /// secret is masked whole).
    pub fn redact_signal(&self, mut signal: Signal) -> Signal {
        self.redact_in_place(&mut signal.message);
        if let Some(stack) = &mut signal.stack {
            self.redact_in_place(stack);
        }
        for (k, v) in &mut signal.fields {
            if self.is_secret_key(k) && !v.is_empty() && keep_masked(v) {
                *v = MASK.to_owned();
            } else {
                self.redact_in_place(v);
            }
        }
        signal
    }
}

/// Redaction of what the pipeline stores: text that entered after intake (a
/// strategy's output and errors, its plan) may hold secrets too.
impl Redactor {
    pub(crate) fn redact_command(&self, command: &mut crate::Command) {
        for arg in &mut command.args {
            self.redact_in_place(arg);
        }
        for (name, value) in &mut command.env {
            if self.is_secret_key(name) {
                MASK.clone_into(value);
            } else {
                self.redact_in_place(value);
            }
        }
    }

    pub(crate) fn redact_plan(&self, plan: &mut crate::RemediationPlan) {
        for step in &mut plan.steps {
            self.redact_in_place(&mut step.preview);
            if let Some(command) = &mut step.command {
                self.redact_command(command);
            }
        }
        plan.params = self.redact_value(&plan.params);
    }

    pub(crate) fn redact_action(&self, action: &mut crate::ActionRecord) {
        self.redact_in_place(&mut action.preview);
        if let Some(error) = &mut action.error {
            self.redact_in_place(error);
        }
        if let Some(outcome) = &mut action.outcome {
            self.redact_in_place(&mut outcome.stdout);
            self.redact_in_place(&mut outcome.stderr);
        }
    }

    pub(crate) fn redact_incident(&self, incident: &mut crate::Incident) {
        self.redact_in_place(&mut incident.reason);
        for sample in &mut incident.samples {
            self.redact_in_place(sample);
        }
    }
}

#[cfg(test)]
mod tests;
