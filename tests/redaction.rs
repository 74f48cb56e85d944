//! Secrets never leave the healer's memory: a corpus of secret shapes, each inside a
//! realistic error line, goes in through `observe` and through a `tracing::error!`
//! (the layer), opens incidents, is advised on, escalated, notified to a webhook and
//! audited; a strategy that fails with a secret in its plan and error is recorded.
//! Then none of the secret values is found in the SQLite database file (and its WAL),
//! the Postgres rows, the audit log, the webhook bodies, the advisor's requests, the
//! notifications or the event stream.
//!
//! Every "secret" is assembled at run time from obviously fake parts: nothing here is
//! a real credential, and no secret scanner should mistake it for one.
#![cfg(feature = "postgres")]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::{Router, extract::State, routing::post};
use selfheal::storage::{PostgresStore, SqliteOptions, SqliteStore};
use selfheal::strategies::WebhookNotifier;
use selfheal::{
    ActionContext, ActionOutcome, AdviceRequest, Diagnosis, Error, ErrorKind, Executor, FixBinding,
    Healer, HealerConfig, LlmAdvisor, MASK, Notification, Notifier, Pattern, PatternMode, Phase,
    RemediationPlan, Result, Signal, Store, Strategy,
};
use selfheal_testsupport::env_url;
use tracing_subscriber::layer::SubscriberExt;
use uuid::Uuid;

/// `len` pseudo-random characters of `alphabet`, from `seed` (deterministic).
fn fake(seed: u64, len: usize, alphabet: &str) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
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
const HEX: &str = "0123456789abcdef";
const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A host rule, added through the builder.
const HOST_RULE: &str = r"cust-[0-9]{6}";

/// The corpus: an error line holding a secret, and the secret.
fn corpus() -> Vec<(String, String)> {
    let mut n = 0u64;
    let mut f = |len: usize, alphabet: &str| {
        n += 1;
        fake(n, len, alphabet)
    };
    let mixed = |s: String| format!("{s}Q7z");
    let shapes: Vec<(&str, String)> = vec![
        (
            "connect postgres://orders:{}@db.internal:5432/orders: connection refused",
            mixed(f(12, B62)),
        ),
        (
            "redis error: redis://:{}@cache.internal:6379/0 NOAUTH",
            mixed(f(16, B62)),
        ),
        (
            "mongo: dial mongodb+srv://app:{}@cluster0.example.net/db failed",
            mixed(f(14, B62)),
        ),
        ("login failed: password={} for user app", f(14, LOWER)),
        (
            r#"bad config {{"password": "{}", "user": "app"}}"#,
            f(15, LOWER),
        ),
        (
            "env check failed: DB_PASSWORD={} is rejected by the server",
            f(13, LOWER),
        ),
        (
            "oauth refresh failed: client_secret: {} invalid_client",
            mixed(f(24, B62)),
        ),
        ("upstream 401 with api_key={} on /v2/charge", f(32, HEX)),
        (
            "request headers x-api-key: {} were rejected",
            mixed(f(20, B62)),
        ),
        (
            "GET /v1/items?access_token={}&page=2 returned 403",
            mixed(f(30, B62)),
        ),
        (
            "ldap bind as cn=svc with password {} failed",
            format!("Pw{}9!", f(8, LOWER)),
        ),
        ("upstream said 401: Authorization: Bearer {}", f(40, B62)),
        (
            "proxy refused Authorization: Basic {}",
            format!("{}==", f(22, B62)),
        ),
        (
            "GitHub API: Authorization: token {} bad credentials",
            f(40, HEX),
        ),
        (
            "jwt rejected: {} (exp in the past)",
            format!("eyJ{}.eyJ{}.{}", f(20, B62), f(48, B62), f(43, B62)),
        ),
        (
            "session lookup failed, Cookie: sid={}; theme=dark",
            mixed(f(26, B62)),
        ),
        (
            "AccessDenied: user key {} is not authorized for s3:GetObject",
            format!("AKIA{}", f(16, UPPER)),
        ),
        (
            "ExpiredToken for temporary key {} in us-east-1",
            format!("ASIA{}", f(16, UPPER)),
        ),
        (
            "SignatureDoesNotMatch computing with {} (check your key)",
            format!("{}Fz9", f(37, B64)),
        ),
        ("aws secret key {} rejected by sts", f(40, LOWER)),
        (
            "boto: aws_secret_access_key={} is invalid",
            format!("{}K8m", f(37, B64)),
        ),
        (
            "maps API denied key {} (billing)",
            format!("AIza{}", f(35, B62)),
        ),
        (
            r#"loading service account {{"type": "service_account", "private_key": "{}"}}"#,
            format!(
                "-----BEGIN PRIVATE KEY-----\\n{}\\n-----END PRIVATE KEY-----\\n",
                f(64, B64)
            ),
        ),
        (
            "gcs 401 for access token {} (expired)",
            format!("ya29.{}", f(60, B62)),
        ),
        ("git push with {} denied", format!("ghp_{}", f(36, B62))),
        (
            "cloning with {} failed: 403",
            format!("github_pat_{}_{}", f(22, B62), f(59, B62)),
        ),
        (
            "app token {} lacks scope repo",
            format!("ghs_{}", f(36, B62)),
        ),
        (
            "slack chat.postMessage with {} not_authed",
            format!("xoxb-{}-{}", f(12, HEX), f(24, B62)),
        ),
        (
            "alert delivery to https://hooks.slack.com/services/{} failed: 404",
            format!("T{}/B{}/{}", f(8, UPPER), f(8, UPPER), f(24, B62)),
        ),
        (
            "stripe charge failed with {}: card_declined",
            format!("sk_live_{}", f(24, B62)),
        ),
        (
            "stripe restricted key {} lacks permission",
            format!("rk_live_{}", f(24, B62)),
        ),
        (
            "checkout misconfigured: publishable key {} mismatch",
            format!("pk_live_{}", f(24, B62)),
        ),
        (
            "tls setup failed: -----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY----- unreadable",
            f(64, B64),
        ),
        (
            "mssql login failed: Server=db;Database=orders;User Id=sa;Password={};Encrypt=true",
            format!("{}!x2", f(10, B62)),
        ),
        (
            "odbc connect failed: Driver={{ODBC}};Server=db;UID=sa;PWD={{{}}};",
            format!("{};{}", f(6, B62), f(6, B62)),
        ),
        (
            "jdbc:postgresql://db/orders?user=app&password={}&ssl=true refused",
            f(12, LOWER),
        ),
        (
            "azure blob: DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={};",
            format!("{}==", f(42, B64)),
        ),
        (
            "openai 401: incorrect API key {}",
            format!("sk-proj-{}", f(40, B62)),
        ),
        (
            "discord webhook https://discord.com/api/webhooks/{} returned 401",
            format!("{}/{}", f(18, "0123456789"), f(68, B62)),
        ),
        (
            "gitlab clone with {} failed",
            format!("glpat-{}", f(20, B62)),
        ),
        (
            "billing lookup failed for customer {} (host rule)",
            format!("cust-{}", f(6, "0123456789")),
        ),
    ];
    shapes
        .into_iter()
        .map(|(line, secret)| (line.replacen("{}", &secret, 1), secret))
        .collect()
}

/// What the failing strategy puts in its plan and its error.
fn leaky_secrets() -> Vec<String> {
    vec![fake(900, 14, B62), fake(901, 32, HEX), fake(902, 18, LOWER)]
}

/// Every secret the run lets loose.
fn all_secrets(corpus: &[(String, String)]) -> Vec<String> {
    let mut all: Vec<String> = corpus.iter().map(|(_, s)| s.clone()).collect();
    all.extend(leaky_secrets());
    all
}

/// Asks nothing of a model: records the request and fails, so the incident escalates.
#[derive(Debug, Default)]
struct RecordingAdvisor(Mutex<Vec<String>>);

#[async_trait]
impl LlmAdvisor for RecordingAdvisor {
    fn name(&self) -> &str {
        "recorder"
    }
    async fn advise(&self, request: &AdviceRequest) -> Result<Diagnosis> {
        self.0.lock().unwrap().push(format!("{request:?}"));
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "model down; first sample was: {}",
                request.incident.samples[0]
            ),
        ))
    }
}

#[derive(Debug, Default)]
struct RecordingNotifier(Mutex<Vec<String>>);

#[async_trait]
impl Notifier for RecordingNotifier {
    fn name(&self) -> &str {
        "recorder"
    }
    async fn notify(&self, notification: &Notification) -> Result<()> {
        self.0.lock().unwrap().push(format!("{notification:?}"));
        Ok(())
    }
}

/// A strategy whose plan and failure carry secrets from outside the signal.
#[derive(Debug)]
struct LeakyHook(Vec<String>);

#[async_trait]
impl Strategy for LeakyHook {
    fn name(&self) -> &str {
        "leaky_hook"
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        Ok(
            RemediationPlan::new("leaky_hook", &ctx.target).step(format!(
                "POST https://deploy:{}@hooks.internal/run",
                self.0[0]
            )),
        )
    }
    async fn execute(&self, _: &RemediationPlan, _: Arc<dyn Executor>) -> Result<ActionOutcome> {
        Err(Error::new(
            ErrorKind::Execution,
            format!(
                "hook answered 401 for token={}; body: {{\"secret\": \"{}\"}}",
                self.0[1], self.0[2]
            ),
        ))
    }
}

/// A local HTTP server that keeps every body posted to it.
async fn webhook_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(b): State<Arc<Mutex<Vec<String>>>>, body: String| async move {
                    b.lock().unwrap().push(body);
                    "ok"
                },
            ),
        )
        .with_state(bodies.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), bodies)
}

/// Everything the healer let out, as text.
struct Leaks {
    advisor: Vec<String>,
    notifications: Vec<String>,
    webhook: Vec<String>,
    audit: String,
    events: Vec<String>,
}

/// Runs the corpus through a healer on `store`; returns what left it.
async fn run(store: Arc<dyn Store>, corpus: &[(String, String)]) -> Leaks {
    let leaky_secrets = leaky_secrets();
    store
        .add_pattern(
            &Pattern::new("deploy_hook")
                .regex("deploy hook failed")
                .mode(PatternMode::Active)
                .auto_healable(true)
                .confidence(0.95)
                .threshold(1, Duration::from_secs(60))
                .fix(FixBinding::new("leaky_hook")),
        )
        .await
        .unwrap();
    let (url, webhook) = webhook_server().await;
    let advisor = Arc::new(RecordingAdvisor::default());
    let notes = Arc::new(RecordingNotifier::default());
    let mut config = HealerConfig::default();
    config.detection.default_min_occurrences = 1;
    config.safety.storm.max_unhealthy = 10_000;
    config.safety.storm.max_unhealthy_share = 1.0;
    config.safety.breaker.max_failures = 10_000;
    config.guards.max_actions_per_hour = 10_000;
    let healer = Healer::builder()
        .config(config)
        .redact(HOST_RULE)
        .store_arc(store.clone())
        .advisor(ArcAdvisor(advisor.clone()))
        .notifier(ArcNotifier(notes.clone()))
        .notifier(WebhookNotifier::new(&url).unwrap())
        .strategy(LeakyHook(leaky_secrets.clone()))
        .build()
        .unwrap();
    let mut events = healer.subscribe();
    let running = healer.spawn();

    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(healer.layer()));
    for (i, (line, secret)) in corpus.iter().enumerate() {
        healer.observe(
            Signal::new(format!("obs-{i}"), line.clone())
                .stack(format!(
                    "   0: app::handler::call\n             while: {line}\n   1: tokio::runtime::task::raw::poll\n"
                ))
                .field("api_token", secret.clone())
                .field("request", line.clone()),
        );
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::error!(heal.target = %format!("trc-{i}"), db.password = %secret, "{line}");
        });
    }
    healer.observe(Signal::new(
        "deploy",
        "deploy hook failed with status 502, retrying",
    ));

    // Every incident escalates once: the advisor fails, the strategy fails.
    let expected = corpus.len() * 2 + 1;
    let mut escalated = BTreeSet::new();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        while escalated.len() < expected {
            let e = events.recv().await.expect("event stream open");
            if e.phase == Phase::Escalated {
                escalated.insert(e.incident);
            }
            seen.push(format!("{e:?}"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {expected} incidents escalated", escalated.len()));
    // Shutting down waits for every incident task, so the notifications in flight
    // (each notifier is awaited in turn) have landed after it.
    running.shutdown().await;

    let actions = healer.admin().actions(None).await.unwrap();
    assert!(
        actions
            .iter()
            .any(|a| a.error.as_deref().is_some_and(|e| e.contains(MASK))),
        "the failed action was recorded, redacted: {actions:?}"
    );
    let audit = healer.admin().audit_log(100_000).await.unwrap();
    assert!(audit.len() > expected, "the audit log was written");
    let audit = serde_json::to_string(&audit).unwrap();
    let leaks = Leaks {
        advisor: advisor.0.lock().unwrap().clone(),
        notifications: notes.0.lock().unwrap().clone(),
        webhook: webhook.lock().unwrap().clone(),
        audit,
        events: seen,
    };
    assert_eq!(
        leaks.advisor.len(),
        corpus.len() * 2,
        "every unmatched incident was advised on"
    );
    assert!(
        leaks.webhook.len() >= expected,
        "every escalation reached the webhook"
    );
    let all = all_secrets(corpus);
    assert_clean("the advisor requests", &leaks.advisor.join("\n"), &all);
    assert_clean("the notifications", &leaks.notifications.join("\n"), &all);
    assert_clean("the webhook bodies", &leaks.webhook.join("\n"), &all);
    assert_clean("the audit log", &leaks.audit, &all);
    assert_clean("the event stream", &leaks.events.join("\n"), &all);
    assert!(leaks.audit.contains(MASK) && leaks.webhook.join("").contains(MASK));
    leaks
}

/// Adapters so the test keeps a handle on what the healer owns.
#[derive(Debug)]
struct ArcAdvisor(Arc<RecordingAdvisor>);
#[async_trait]
impl LlmAdvisor for ArcAdvisor {
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn advise(&self, request: &AdviceRequest) -> Result<Diagnosis> {
        self.0.advise(request).await
    }
}
#[derive(Debug)]
struct ArcNotifier(Arc<RecordingNotifier>);
#[async_trait]
impl Notifier for ArcNotifier {
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn notify(&self, notification: &Notification) -> Result<()> {
        self.0.notify(notification).await
    }
}

#[track_caller]
fn assert_clean(place: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "`{secret}` reached {place}: …{}…",
            around(text, secret)
        );
    }
}

fn around<'a>(text: &'a str, secret: &str) -> &'a str {
    let at = text.find(secret).unwrap_or(0);
    let mut from = at.saturating_sub(80);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (at + secret.len() + 80).min(text.len());
    while !text.is_char_boundary(to) {
        to += 1;
    }
    &text[from..to]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_sqlite_file_or_anything_sent() {
    let corpus = corpus();
    assert!(corpus.len() >= 30, "{} shapes", corpus.len());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("selfheal.db");
    let store = SqliteStore::open_with(
        path.to_str().unwrap(),
        SqliteOptions::default().seed_catalog(false),
    )
    .await
    .unwrap();
    run(Arc::new(store.clone()), &corpus).await;
    store.close().await;

    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        let file = dir.path().join(format!("selfheal.db{suffix}"));
        if let Ok(b) = std::fs::read(&file) {
            bytes.extend(b);
        }
    }
    assert!(
        memfind(&bytes, MASK.as_bytes()),
        "the incidents were stored, redacted"
    );
    for secret in all_secrets(&corpus) {
        assert!(
            !memfind(&bytes, secret.as_bytes()),
            "`{secret}` is in the SQLite file"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_postgres_rows() {
    let Some(url) = env_url("DATABASE_URL") else {
        return;
    };
    let schema = format!("selfheal_redact_{}", Uuid::new_v4().simple());
    let store = PostgresStore::builder(&url)
        .schema(&schema)
        .seed_catalog(false)
        .connect()
        .await
        .expect("connect and migrate");
    let corpus = corpus();
    run(Arc::new(store.clone()), &corpus).await;

    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(&schema)
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(tables.len() >= 4, "{tables:?}");
    let mut dump = String::new();
    for (table,) in &tables {
        let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM \"{schema}\".\"{table}\" t"
        )))
        .fetch_all(store.pool())
        .await
        .unwrap();
        for (row,) in rows {
            dump.push_str(&row);
            dump.push('\n');
        }
    }
    store.drop_schema().await.unwrap();
    assert!(dump.contains(MASK), "the incidents were stored, redacted");
    assert_clean("the Postgres rows", &dump, &all_secrets(&corpus));
}

fn memfind(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
