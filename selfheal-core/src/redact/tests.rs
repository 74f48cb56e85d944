//! One test per rule, and near misses that must stay as they are.
//!
//! Every "secret" here is assembled at run time from obviously fake parts, so no
//! secret scanner mistakes the repository for a leak.

use super::*;

/// `len` pseudo-random characters of `alphabet`, from `seed` (deterministic).
fn fake(seed: u64, len: usize, alphabet: &str) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            chars[((x >> 33) % chars.len() as u64) as usize]
        })
        .collect()
}

const B62: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn redact(s: &str) -> String {
    Redactor::default().redact(s).into_owned()
}

/// Asserts `secret` is gone from the redacted `line`, the line keeps `kept`, and a
/// second pass changes nothing.
#[track_caller]
fn masks(line: &str, secret: &str, kept: &str) {
    let out = redact(line);
    assert!(!out.contains(secret), "`{secret}` survived in `{out}`");
    assert!(out.contains(MASK), "no mask in `{out}`");
    assert!(out.contains(kept), "`{kept}` was lost from `{out}`");
    assert_eq!(redact(&out), out, "redacting twice changed `{out}`");
}

#[track_caller]
fn keeps(line: &str) {
    assert_eq!(redact(line), line, "redacted a line with no secret");
}

#[test]
fn url_credentials() {
    masks(
        "connect postgres://app:s3cr%40t@db.internal:5432/orders refused",
        "s3cr%40t",
        "postgres://app:[REDACTED]@db.internal:5432/orders refused",
    );
    masks(
        "redis://:hunter2@cache:6379 refused",
        "hunter2",
        "redis://:[REDACTED]@cache:6379",
    );
    masks(
        "jdbc:mysql://root:p@ss@db:3306/x timeout",
        "p@ss",
        "mysql://root:[REDACTED]@db:3306/x",
    );
    keeps("GET http://api.internal:8080/v1/orders?id=3 returned 503");
    keeps("connect postgres://postgres@127.0.0.1/test refused");
}

#[test]
fn key_value_and_key_colon_value() {
    masks(
        "login failed password=hunter2 user=app",
        "hunter2",
        "password=[REDACTED] user=app",
    );
    masks(
        r#"config {"password": "hunter two", "user": "app"}"#,
        "hunter two",
        r#""password": "[REDACTED]", "user": "app""#,
    );
    masks(
        r#"body {\"client_secret\":\"abcdefghij\"}"#,
        "abcdefghij",
        r#"\"client_secret\":\"[REDACTED]\""#,
    );
    masks(
        "DB_PASSWORD=correcthorse PGPASSWORD=x9",
        "correcthorse",
        "DB_PASSWORD=[REDACTED] PGPASSWORD=[REDACTED]",
    );
    masks(
        "auth failed x-api-key: live1234abcd",
        "live1234abcd",
        "x-api-key: [REDACTED]",
    );
    masks(
        "token: abcdefghijklmnop rejected",
        "abcdefghijklmnop",
        "token: [REDACTED]",
    );
    masks(
        "?access_token=abcDEF123&page=2",
        "abcDEF123",
        "access_token=[REDACTED]&page=2",
    );
    masks(
        ":session_id => \"f00dfeed\"",
        "f00dfeed",
        ":session_id => \"[REDACTED]\"",
    );
    // Prose after a colon stays.
    keeps("token: expired at 12:00");
    keeps("auth: permission denied for relation orders");
    keeps("max_tokens=4096 exceeded by the prompt");
    keeps("author=jane committed a fix");
}

#[test]
fn connection_strings() {
    masks(
        "Server=db;Database=orders;User Id=sa;Password=Secr3t!;Encrypt=true",
        "Secr3t!",
        "Password=[REDACTED];Encrypt=true",
    );
    masks(
        "Driver={ODBC};Server=db;UID=sa;PWD={pa;ss};",
        "pa;ss",
        "PWD={[REDACTED]};",
    );
    masks(
        "jdbc:postgresql://db/orders?user=app&password=letmein&ssl=true",
        "letmein",
        "password=[REDACTED]&ssl=true",
    );
    masks(
        "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=QUJDREVGR0g=;",
        "QUJDREVGR0g=",
        "AccountKey=[REDACTED];",
    );
}

#[test]
fn password_without_equals() {
    masks(
        "login as app with password hunter2 failed",
        "hunter2",
        "password [REDACTED] failed",
    );
    masks(
        "password 'correct horse' rejected",
        "correct horse",
        "password '[REDACTED]' rejected",
    );
    masks(
        "the password is Tr0ub4dor&3",
        "Tr0ub4dor&3",
        "password is [REDACTED]",
    );
    let token = fake(1, 32, "0123456789abcdef");
    masks(
        &format!("invalid token {token} for tenant"),
        &token,
        "for tenant",
    );
    keeps("password policy updated");
    keeps("password authentication failed for user \"app\"");
    keeps("FATAL: password authentication failed for user app");
    keeps("password is incorrect");
    keeps("token expired, refreshing");
    keeps("secret \"db-creds\" not found");
}

#[test]
fn authorization_headers() {
    let t = fake(2, 40, B62);
    masks(
        &format!("GET /v1 Authorization: Bearer {t} failed"),
        &t,
        "Authorization: Bearer [REDACTED] failed",
    );
    masks(
        &format!("Authorization: token {t}"),
        &t,
        "Authorization: token [REDACTED]",
    );
    masks(
        "authorization=Basic YXBwOmh1bnRlcjI=",
        "YXBwOmh1bnRlcjI=",
        "authorization=Basic [REDACTED]",
    );
    masks(
        &format!(r#"headers {{"authorization": "{t}"}}"#),
        &t,
        r#""authorization": "[REDACTED]""#,
    );
    masks(
        "upstream said: basic YXBwOmh1bnRlcjI= is not valid",
        "YXBwOmh1bnRlcjI=",
        "basic [REDACTED] is not valid",
    );
    masks(
        "Cookie: sid=abc123; theme=dark",
        "abc123",
        "Cookie: [REDACTED]",
    );
    keeps("basic auth failed for user app");
    keeps("bearer token expired, refreshing");
    keeps("authorization failed: role app lacks SELECT");
}

#[test]
fn jwts() {
    let jwt = format!(
        "eyJ{}.eyJ{}.{}",
        fake(3, 20, B62),
        fake(4, 40, B62),
        fake(5, 43, B62)
    );
    masks(
        &format!("rejected {jwt} (expired)"),
        &jwt,
        "rejected [REDACTED] (expired)",
    );
    masks(&format!("jwt={jwt}"), &jwt, "jwt=[REDACTED]");
}

#[test]
fn aws_keys() {
    let id = format!("AKIA{}", fake(6, 16, UPPER));
    masks(
        &format!("AccessDenied for {id} in us-east-1"),
        &id,
        "AccessDenied for [REDACTED] in us-east-1",
    );
    let sts = format!("ASIA{}", fake(7, 16, UPPER));
    masks(
        &format!("creds {sts} expired"),
        &sts,
        "creds [REDACTED] expired",
    );
    let secret = format!("{}Fz9{}", fake(8, 18, B64), fake(9, 19, B64));
    masks(
        &format!("aws_secret_access_key={secret}"),
        &secret,
        "aws_secret_access_key=[REDACTED]",
    );
    masks(
        &format!("signing with {secret} failed"),
        &secret,
        "signing with [REDACTED] failed",
    );
    // After an AWS-ish word, a 40-character key is masked even when it is all lower case.
    let lower = fake(10, 40, "abcdefghijklmnopqrstuvwxyz");
    masks(
        &format!("aws secret key {lower} rejected"),
        &lower,
        "rejected",
    );
    // A lowercase hex digest (a commit, a fingerprint) and a path are not secrets.
    keeps("deployed commit 4f6d3c2b1a0e9f8d7c6b5a4f3e2d1c0b9a8f7e6d on canary");
    keeps("could not open /var/lib/postgresql/data/base/16384/2619 file");
}

#[test]
fn provider_tokens() {
    let cases = [
        format!("ghp_{}", fake(11, 36, B62)),
        format!("gho_{}", fake(12, 36, B62)),
        format!("ghs_{}", fake(13, 36, B62)),
        format!("ghu_{}", fake(14, 36, B62)),
        format!("github_pat_{}_{}", fake(15, 22, B62), fake(16, 59, B62)),
        format!("glpat-{}", fake(17, 20, B62)),
        format!("xoxb-{}-{}", fake(18, 12, "0123456789"), fake(19, 24, B62)),
        format!("xoxp-{}", fake(20, 30, B62)),
        format!("sk_live_{}", fake(21, 24, B62)),
        format!("rk_live_{}", fake(22, 24, B62)),
        format!("pk_live_{}", fake(23, 24, B62)),
        format!("whsec_{}", fake(24, 32, B62)),
        format!("sk-proj-{}", fake(25, 40, B62)),
        format!("AIza{}", fake(26, 35, B62)),
        format!("ya29.{}", fake(27, 60, B62)),
        format!("npm_{}", fake(28, 36, B62)),
    ];
    for token in &cases {
        masks(
            &format!("push with {token} denied"),
            token,
            "push with [REDACTED] denied",
        );
    }
}

#[test]
fn webhooks_and_private_keys() {
    let path = format!(
        "T{}/B{}/{}",
        fake(29, 8, UPPER),
        fake(30, 8, UPPER),
        fake(31, 24, B62)
    );
    masks(
        &format!("POST https://hooks.slack.com/services/{path} returned 404"),
        &path,
        "https://hooks.slack.com/services/[REDACTED] returned 404",
    );
    let discord = format!("{}/{}", fake(32, 18, "0123456789"), fake(33, 68, B62));
    masks(
        &format!("https://discord.com/api/webhooks/{discord} failed"),
        &discord,
        "discord.com/api/webhooks/[REDACTED] failed",
    );
    let body = fake(34, 64, B64);
    let pem = format!("-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----");
    masks(
        &format!("bad key:\n{pem}\nat load"),
        &body,
        "-----BEGIN RSA PRIVATE KEY-----[REDACTED]-----END RSA PRIVATE KEY-----\nat load",
    );
    // A service-account file, escaped in one log line.
    let sa = format!(
        r#"{{"type": "service_account", "private_key_id": "{}", "private_key": "-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"}}"#,
        fake(35, 40, "0123456789abcdef")
    );
    let out = redact(&sa);
    assert!(
        !out.contains(&body) && !out.contains(&fake(35, 40, "0123456789abcdef")),
        "{out}"
    );
    // A truncated block is masked to the end.
    masks(
        &format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{body}"),
        &body,
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    );
}

#[test]
fn near_misses_stay() {
    for line in [
        "pool timed out while waiting for an open connection after 30s",
        "incident 0b6e3f0c-2f57-4d8e-9a57-1d3c5e7f9a2b opened",
        "fingerprint 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d08",
        "OOM command not allowed when used memory > 'maxmemory'",
        "session abc exceeded its time limit",
        "Signal: SIGTERM received, shutting down",
        "key user:42 has the wrong type",
        "password reset email sent",
        "too many tokens: 8192 > 4096",
        "the keyboard is disconnected",
        "ERROR: relation \"sessions\" does not exist",
        "Basic",
        "",
    ] {
        keeps(line);
    }
}

#[test]
fn emails_only_when_asked() {
    let r = Redactor::default().emails(true);
    assert_eq!(
        r.redact("login failed for jane.doe+ops@example.co.uk"),
        "login failed for [EMAIL]"
    );
    assert_eq!(
        r.redact("login failed for [EMAIL]"),
        "login failed for [EMAIL]"
    );
    keeps("login failed for jane.doe+ops@example.co.uk");
}

#[test]
fn extra_patterns_apply_and_invalid_ones_are_refused() {
    let r = Redactor::default()
        .patterns(&[r"tenant-\d+", r"card \d{4}"])
        .unwrap();
    assert_eq!(
        r.redact("tenant-42 paid with card 4242"),
        "[REDACTED] paid with [REDACTED]"
    );
    let err = Redactor::default().pattern("(unclosed").unwrap_err();
    assert!(err.message().contains("fix the pattern"), "{err}");
    let config = crate::HealerConfig::from_toml("[redaction]\nextra = ['(']").unwrap_err();
    assert!(config.message().contains("redaction.extra"), "{config}");
    let typo = crate::HealerConfig::from_toml("[redaction]\nextras = []").unwrap_err();
    assert!(typo.message().contains("extra"), "{typo}");
}

#[test]
fn ordinary_text_is_borrowed() {
    let text = "pool timed out while waiting for an open connection after 30s";
    assert!(matches!(Redactor::default().redact(text), Cow::Borrowed(_)));
}

#[test]
fn signals_and_values() {
    let signal = Signal::new("db", "connect postgres://app:pw1@db/x failed")
        .stack("at connect(password=hunter2)")
        .field("password", "plainword")
        .field("db.user", "app");
    let s = Redactor::default().redact_signal(signal);
    assert_eq!(s.message, "connect postgres://app:[REDACTED]@db/x failed");
    assert_eq!(s.stack.as_deref(), Some("at connect(password=[REDACTED])"));
    assert_eq!(s.fields["password"], MASK);
    assert_eq!(s.fields["db.user"], "app");

    let v = serde_json::json!({"dsn": "mysql://root:pw@db/x", "api_key": "plain", "n": 3, "list": ["token=abc"]});
    assert_eq!(
        Redactor::default().redact_value(&v),
        serde_json::json!({"dsn": "mysql://root:[REDACTED]@db/x", "api_key": MASK, "n": 3, "list": ["token=[REDACTED]"]})
    );
}

#[test]
fn multibyte_text_never_panics() {
    let key = fake(36, 40, B64);
    for line in [
        format!("日本語の設定 password=秘密 {key} é"),
        format!("é{key}"),
        "ééééééééééééééééééééééééééééééééééééééééééééééééé token: 秘密の値".to_owned(),
    ] {
        let out = redact(&line);
        assert_eq!(redact(&out), out);
    }
}

/// A plan that quotes a secret waits for approval: the stored approval, the
/// notification and the events hold the mask, while the plan in memory is intact.
#[tokio::test]
async fn stored_approvals_and_their_notifications_are_redacted() {
    use std::sync::Arc;

    use async_trait::async_trait;

    use crate::{
        ActionContext, ActionOutcome, Executor, FixBinding, Healer, HealerConfig, MemoryStore,
        Pattern, PatternMode, Phase, RemediationPlan, Strategy,
    };

    #[derive(Debug)]
    struct Hook(String);
    #[async_trait]
    impl Strategy for Hook {
        fn name(&self) -> &str {
            "hook"
        }
        async fn plan(&self, ctx: &ActionContext) -> crate::Result<RemediationPlan> {
            Ok(RemediationPlan::new("hook", &ctx.target)
                .step(format!("POST https://deploy:{}@hooks.internal/run", self.0)))
        }
        async fn execute(
            &self,
            _: &RemediationPlan,
            _: Arc<dyn Executor>,
        ) -> crate::Result<ActionOutcome> {
            Ok(ActionOutcome::ok(std::time::Duration::ZERO))
        }
    }

    let secret = fake(40, 16, B62);
    let mut config = HealerConfig::default();
    config.detection.default_min_occurrences = 1;
    let healer = Healer::builder()
        .config(config)
        .store(MemoryStore::new())
        .strategy(Hook(secret.clone()))
        .build()
        .unwrap();
    let mut events = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(
            Pattern::new("deploy_hook")
                .regex("deploy hook failed")
                .mode(PatternMode::Active)
                .auto_healable(true)
                .confidence(0.95)
                .threshold(1, std::time::Duration::from_secs(60))
                .fix(FixBinding::new("hook").requires_approval(true)),
            "test",
        )
        .await
        .unwrap();
    healer.observe(Signal::new("deploy", "deploy hook failed with 502"));
    let mut seen = Vec::new();
    loop {
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
            .await
            .unwrap_or_else(|_| panic!("the healer asks for approval: {seen:?}"))
            .unwrap();
        seen.push(format!("{:?}: {}", e.phase, e.detail));
        if e.phase == Phase::AwaitingApproval {
            break;
        }
    }
    let pending = healer.admin().pending_approvals().await.unwrap();
    let stored = format!("{pending:?}");
    assert!(
        !stored.contains(&secret) && stored.contains(MASK),
        "{stored}"
    );
    assert!(!seen.join("\n").contains(&secret), "{seen:?}");
    running.shutdown().await;
}
