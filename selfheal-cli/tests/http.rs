//! Every HTTP command of the `selfheal` binary against the real admin router, nested in
//! a host router on a real socket, in front of a real healer: an approval raised by a
//! real incident is approved from the command line and the fix runs; rejections,
//! silences and dry run reach the healer with the token's name as the actor; the API's
//! error messages come out on stderr with exit 1, usage errors exit 2.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use selfheal_admin::{AdminConfig, Role};
use selfheal_core::{
    ActionContext, ActionOutcome, Executor, FixBinding, Healer, HealerConfig, Health, MemoryStore,
    Pattern, PatternMode, Phase, RemediationPlan, Result, Running, Signal, SilenceScope, Strategy,
    Uuid, Verifier,
};
use serde_json::Value;

/// The health of the fake target: the strategy heals it, the verifier reads it.
#[derive(Debug, Clone)]
struct Gauge(Arc<AtomicU8>);

#[async_trait]
impl Verifier for Gauge {
    fn name(&self) -> &str {
        "gauge"
    }
    async fn check(&self) -> Result<Health> {
        Ok(Health::new(self.0.load(Ordering::SeqCst), "gauge"))
    }
}

/// `cleanup`: heals the gauge and counts its runs.
#[derive(Debug, Clone)]
struct Cleanup {
    gauge: Gauge,
    runs: Arc<AtomicUsize>,
}

#[async_trait]
impl Strategy for Cleanup {
    fn name(&self) -> &str {
        "cleanup"
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        Ok(RemediationPlan::new("cleanup", &ctx.target).step(format!("cleanup {}", ctx.target)))
    }
    async fn execute(&self, _: &RemediationPlan, _: Arc<dyn Executor>) -> Result<ActionOutcome> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.gauge.0.store(100, Ordering::SeqCst);
        Ok(ActionOutcome::ok(Duration::from_millis(1)))
    }
}

/// A pattern whose fix always waits for a human, opening on the first signal.
fn disk_full() -> Pattern {
    Pattern::new("disk_full_db")
        .regex("disk full on")
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(0.95)
        .threshold(1, Duration::from_secs(60))
        .fix(FixBinding::new("cleanup").requires_approval(true))
}

/// A fresh random secret (never a constant in the tests).
fn secret() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// A healer with the admin router nested at `/selfheal` in a host router on 127.0.0.1.
struct Service {
    url: String,
    healer: Healer,
    cleanup: Cleanup,
    operator: String,
    viewer: String,
    running: Running,
}

impl Service {
    async fn start() -> Self {
        let mut config = HealerConfig::default();
        config.verification.interval = Duration::from_millis(20);
        config.verification.window = Duration::from_secs(10);
        config.verification.quiet_for = Duration::ZERO;
        let gauge = Gauge(Arc::new(AtomicU8::new(10)));
        let cleanup = Cleanup {
            gauge: gauge.clone(),
            runs: Arc::default(),
        };
        let healer = Healer::builder()
            .config(config)
            .store(MemoryStore::new())
            .strategy(cleanup.clone())
            .verifier("db", gauge)
            .build()
            .unwrap();
        let running = healer.spawn();
        healer
            .admin()
            .add_pattern(disk_full(), "setup")
            .await
            .unwrap();
        let (operator, viewer) = (secret(), secret());
        let admin = AdminConfig::default()
            .token(Role::Operator, "alice", &operator)
            .token(Role::Viewer, "victor", &viewer);
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "host" }))
            .nest("/selfheal", selfheal_admin::router(healer.clone(), admin));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/selfheal", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Service {
            url,
            healer,
            cleanup,
            operator,
            viewer,
            running,
        }
    }

    /// Runs `selfheal args…` with the operator's token (through SELFHEAL_URL and
    /// SELFHEAL_TOKEN, as an operator's shell would).
    async fn op(&self, args: &[&str]) -> Run {
        run(args, Some(&self.url), Some(&self.operator)).await
    }

    /// Runs `selfheal args…` with the viewer's token.
    async fn view(&self, args: &[&str]) -> Run {
        run(args, Some(&self.url), Some(&self.viewer)).await
    }

    /// Waits (on the healer's events) for `phase`.
    async fn until(
        &self,
        events: &mut tokio::sync::broadcast::Receiver<selfheal_core::HealingEvent>,
        phase: Phase,
    ) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while events.recv().await.unwrap().phase != phase {}
        })
        .await
        .unwrap_or_else(|_| panic!("no {phase:?} within 10 s"));
    }

    /// Raises an incident whose fix waits for approval; returns the approval's id.
    async fn pending_approval(&self) -> String {
        let mut events = self.healer.subscribe();
        self.healer
            .observe(Signal::new("db", "disk full on /var/lib/db"));
        self.until(&mut events, Phase::AwaitingApproval).await;
        let pending = self.healer.admin().pending_approvals().await.unwrap();
        assert_eq!(pending.len(), 1);
        pending[0].id.to_string()
    }
}

/// What one run of the binary said.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.said()))
    }

    fn said(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

async fn run(args: &[&str], url: Option<&str>, token: Option<&str>) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_selfheal"));
    command
        .args(args)
        .env_remove("SELFHEAL_URL")
        .env_remove("SELFHEAL_TOKEN");
    if let Some(url) = url {
        command.env("SELFHEAL_URL", url);
    }
    if let Some(token) = token {
        command.env("SELFHEAL_TOKEN", token);
    }
    let out = command.output().await.expect("the selfheal binary runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_listed_and_approved_from_the_command_line_runs_the_fix() {
    let s = Service::start().await;
    let id = s.pending_approval().await;

    let listed = s.view(&["approvals"]).await;
    assert_eq!(listed.code, Some(0), "{}", listed.said());
    let header = listed.stdout.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("ID") && header.contains("STRATEGY"),
        "{}",
        listed.said()
    );
    let row = listed
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("the approval is listed: {}", listed.said()));
    assert!(
        row.contains("disk_full_db") && row.contains("cleanup") && row.contains("db"),
        "{row}"
    );

    let status = s.view(&["status", "--json"]).await;
    assert_eq!(status.json()["pending_approvals"], 1, "{}", status.said());
    let table = s.view(&["status"]).await;
    assert!(
        table.stdout.starts_with("replica "),
        "the replica first: {}",
        table.said()
    );
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["pending_approvals", "1"]),
        "{}",
        table.said()
    );

    // A viewer may not decide: the API's 403 message, exit 1.
    let refused = s.view(&["approve", &id]).await;
    assert_eq!(refused.code, Some(1), "{}", refused.said());
    assert!(refused.stderr.contains("(HTTP 403)"), "{}", refused.said());
    assert_eq!(s.cleanup.runs.load(Ordering::SeqCst), 0);

    let mut events = s.healer.subscribe();
    let approved = s.op(&["approve", &id]).await;
    assert_eq!(approved.code, Some(0), "{}", approved.said());
    assert!(
        approved
            .stdout
            .starts_with(&format!("approved {id} (by alice")),
        "{}",
        approved.said()
    );
    s.until(&mut events, Phase::Resolved).await;
    assert_eq!(
        s.cleanup.runs.load(Ordering::SeqCst),
        1,
        "the approved fix ran once"
    );

    // Deciding twice: the API's 409, exit 1; with --json its body as is on stderr.
    let again = s
        .op(&["reject", &id, "--reason", "too late", "--json"])
        .await;
    assert_eq!(again.code, Some(1), "{}", again.said());
    let body: Value = serde_json::from_str(again.stderr.trim()).expect("the API's JSON error");
    assert_eq!(body["status"], 409, "{}", again.said());

    let audit = s.healer.admin().audit_log(usize::MAX).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.event_type == "self_heal.approved" && r.actor == "alice"),
        "the approval is audited with the token's name"
    );
    let verify = s.view(&["audit", "verify"]).await;
    assert_eq!(verify.code, Some(0), "{}", verify.said());
    assert!(
        verify
            .stdout
            .starts_with(&format!("audit chain intact: {} records", audit.len())),
        "{}",
        verify.said()
    );

    let incidents = s
        .view(&["incidents", "--status", "resolved", "--target", "db"])
        .await;
    assert_eq!(incidents.code, Some(0), "{}", incidents.said());
    let incident = s
        .healer
        .admin()
        .incidents(&Default::default())
        .await
        .unwrap()[0]
        .id
        .to_string();
    assert!(
        incidents
            .stdout
            .lines()
            .any(|l| l.starts_with(&incident) && l.contains("resolved")),
        "{}",
        incidents.said()
    );
    let none = s.view(&["incidents", "--status", "open", "--json"]).await;
    assert_eq!(
        none.json()["items"],
        serde_json::json!([]),
        "{}",
        none.said()
    );
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_carries_its_reason_and_the_fix_never_runs() {
    let s = Service::start().await;
    let id = s.pending_approval().await;
    let mut events = s.healer.subscribe();
    let rejected = s
        .op(&["reject", &id, "--reason", "not during the sale"])
        .await;
    assert_eq!(rejected.code, Some(0), "{}", rejected.said());
    assert!(
        rejected.stdout.starts_with(&format!("rejected {id}")),
        "{}",
        rejected.said()
    );
    // The healer closes the incident after it audited the answer.
    s.until(&mut events, Phase::Closed).await;
    assert!(
        s.healer
            .admin()
            .pending_approvals()
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.cleanup.runs.load(Ordering::SeqCst), 0);
    let audit = s.healer.admin().audit_log(usize::MAX).await.unwrap();
    assert!(
        audit.iter().any(|r| r.event_type == "self_heal.rejected"
            && r.actor == "alice"
            && r.result == "not during the sale"),
        "the reason is audited: {audit:#?}"
    );
    let listed = s.view(&["approvals"]).await;
    assert_eq!(listed.stdout, "no approvals pending\n", "{}", listed.said());
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_and_dry_run_reach_the_healer() {
    let s = Service::start().await;

    let silenced = s
        .op(&["silence", "db", "--for", "1h", "--reason", "deploying"])
        .await;
    assert_eq!(silenced.code, Some(0), "{}", silenced.said());
    let silences = s.healer.admin().silences();
    assert_eq!(silences.len(), 1);
    assert_eq!(silences[0].created_by, "alice");
    assert!(matches!(&silences[0].silence.scope, SilenceScope::Target(t) if t == "db"));
    assert_eq!(silences[0].silence.reason, "deploying");
    let hour = silences[0].silence.ends_at - silences[0].silence.starts_at;
    assert_eq!(hour.num_minutes(), 60);
    assert!(
        silenced
            .stdout
            .starts_with(&format!("silenced `db` for 1h (silence {}", silences[0].id)),
        "{}",
        silenced.said()
    );

    assert!(!s.healer.admin().is_dry_run(None));
    let on = s.op(&["dry-run", "on"]).await;
    assert_eq!(on.code, Some(0), "{}", on.said());
    assert!(
        on.stdout.starts_with("dry run on for the whole healer"),
        "{}",
        on.said()
    );
    assert!(s.healer.admin().is_dry_run(None));
    let off = s.op(&["dry-run", "off", "--json"]).await;
    assert_eq!(off.json()["dry_run"], false, "{}", off.said());
    assert!(!s.healer.admin().is_dry_run(None));

    let one = s.op(&["dry-run", "on", "--pattern", "disk_full_db"]).await;
    assert_eq!(one.code, Some(0), "{}", one.said());
    assert!(s.healer.admin().is_dry_run(Some("disk_full_db")));
    assert!(!s.healer.admin().is_dry_run(None));

    // An unknown pattern: the API's 404 message on stderr.
    let unknown = s
        .op(&["dry-run", "on", "--pattern", "no_such_pattern"])
        .await;
    assert_eq!(unknown.code, Some(1), "{}", unknown.said());
    assert!(
        unknown.stderr.contains("no_such_pattern") && unknown.stderr.contains("(HTTP 404)"),
        "{}",
        unknown.said()
    );

    let actors: Vec<String> = s
        .healer
        .admin()
        .audit_log(usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.actor == "alice")
        .map(|r| r.event_type)
        .collect();
    assert!(
        actors.len() >= 4,
        "every change is audited as alice: {actors:?}"
    );
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_are_listed_with_what_they_suppressed_and_lifted_by_id() {
    let s = Service::start().await;
    let none = s.view(&["silences"]).await;
    assert_eq!(none.code, Some(0), "{}", none.said());
    assert_eq!(none.stdout, "no silences\n", "{}", none.said());

    let silenced = s
        .op(&["silence", "db", "--for", "1h", "--reason", "failover drill"])
        .await;
    assert_eq!(silenced.code, Some(0), "{}", silenced.said());
    let id = s.healer.admin().silences()[0].id.to_string();
    assert!(
        silenced
            .stdout
            .ends_with(&format!("lift it with `selfheal unsilence {id}`)\n")),
        "{}",
        silenced.said()
    );

    // A signal of the silenced target: counted into the silence, nothing opens.
    let mut events = s.healer.subscribe();
    s.healer
        .observe(Signal::new("db", "disk full on /var/lib/db"));
    s.until(&mut events, Phase::Silenced).await;

    let listed = s.view(&["silences"]).await;
    assert_eq!(listed.code, Some(0), "{}", listed.said());
    let rows: Vec<Vec<&str>> = listed
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["ID", "SCOPE", "ENDS", "ACTIVE", "SUPPRESSED", "REASON"],
        "{}",
        listed.said()
    );
    assert_eq!(rows.len(), 2, "{}", listed.said());
    let ends = s.healer.admin().silences()[0]
        .silence
        .ends_at
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    assert_eq!(
        rows[1],
        [
            id.as_str(),
            "target:db",
            ends.as_str(),
            "yes",
            "1",
            "failover",
            "drill"
        ],
        "{}",
        listed.said()
    );
    let as_json = s.view(&["silences", "--json"]).await;
    assert_eq!(as_json.json()[0]["id"], id.as_str(), "{}", as_json.said());
    assert_eq!(as_json.json()[0]["suppressed"], 1, "{}", as_json.said());

    // A viewer may not lift it: the API's 403, exit 1, the silence holds.
    let refused = s.view(&["unsilence", &id]).await;
    assert_eq!(refused.code, Some(1), "{}", refused.said());
    assert!(refused.stderr.contains("(HTTP 403)"), "{}", refused.said());
    assert_eq!(s.healer.admin().silences().len(), 1);

    let lifted = s.op(&["unsilence", &id]).await;
    assert_eq!(lifted.code, Some(0), "{}", lifted.said());
    assert_eq!(
        lifted.stdout,
        format!("lifted silence {id}: healing of what it matched resumes\n"),
        "{}",
        lifted.said()
    );
    assert!(s.healer.admin().silences().is_empty());
    let after = s.view(&["silences"]).await;
    assert_eq!(after.stdout, "no silences\n", "{}", after.said());

    // Lifting it again, or an id never given: the API's 404, exit 1.
    let again = s.op(&["unsilence", &id]).await;
    assert_eq!(again.code, Some(1), "{}", again.said());
    assert!(again.stderr.contains("(HTTP 404)"), "{}", again.said());
    let bad = s.op(&["unsilence", "not-a-uuid"]).await;
    assert_eq!(bad.code, Some(2), "{}", bad.said());

    let audit = s.healer.admin().audit_log(usize::MAX).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.event_type == "self_heal.silence_removed" && r.actor == "alice"),
        "lifting is audited as alice: {:?}",
        audit.iter().map(|r| &r.event_type).collect::<Vec<_>>()
    );
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_export_is_a_document_another_healer_imports() {
    let s = Service::start().await;
    let export = s
        .view(&["patterns", "export", "--source", "checkout-api"])
        .await;
    assert_eq!(export.code, Some(0), "{}", export.said());
    let doc = selfheal_core::catalog::parse(&export.stdout).expect("an export document");
    assert_eq!(doc.source, "checkout-api");
    let other = Healer::builder().store(MemoryStore::new()).build().unwrap();
    let report = other
        .admin()
        .import_patterns(&export.stdout, &Default::default(), "carol")
        .await
        .unwrap();
    assert!(report.errors.is_empty());
    assert!(
        other
            .admin()
            .patterns()
            .await
            .unwrap()
            .iter()
            .any(|p| p.name == "disk_full_db")
    );
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_exit_1_from_the_api_and_2_from_the_command_line() {
    let s = Service::start().await;

    let unknown = run(&["status"], Some(&s.url), Some(&secret())).await;
    assert_eq!(unknown.code, Some(1), "{}", unknown.said());
    assert!(unknown.stderr.contains("(HTTP 401)"), "{}", unknown.said());
    let no_token = run(&["status"], Some(&s.url), None).await;
    assert_eq!(no_token.code, Some(1), "{}", no_token.said());
    assert!(
        no_token.stderr.contains("(HTTP 401)"),
        "{}",
        no_token.said()
    );

    let no_url = run(&["status"], None, Some(&s.operator)).await;
    assert_eq!(no_url.code, Some(2), "{}", no_url.said());
    assert!(no_url.stderr.contains("SELFHEAL_URL"), "{}", no_url.said());
    let bad_id = s.op(&["approve", "not-a-uuid"]).await;
    assert_eq!(bad_id.code, Some(2), "{}", bad_id.said());
    let bad_duration = s.op(&["silence", "db", "--for", "soonish"]).await;
    assert_eq!(bad_duration.code, Some(2), "{}", bad_duration.said());
    let no_reason = s.op(&["reject", &Uuid::new_v4().to_string()]).await;
    assert_eq!(no_reason.code, Some(2), "{}", no_reason.said());
    assert!(
        s.healer.admin().silences().is_empty(),
        "nothing reached the healer"
    );

    // Not the mount point: the host answers, not the API.
    let host = run(
        &["status"],
        Some(s.url.trim_end_matches("/selfheal")),
        Some(&s.operator),
    )
    .await;
    assert_eq!(host.code, Some(1), "{}", host.said());
    assert!(host.stderr.contains("mount point"), "{}", host.said());

    let missing = s.op(&["approve", &Uuid::new_v4().to_string()]).await;
    assert_eq!(missing.code, Some(1), "{}", missing.said());
    assert!(missing.stderr.contains("(HTTP 404)"), "{}", missing.said());
    s.running.shutdown().await;
}
