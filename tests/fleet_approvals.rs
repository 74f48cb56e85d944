//! Approvals any replica can answer, against a real PostgreSQL (`DATABASE_URL`): two
//! healers share one store; replica A raises an approval, an operator approves it
//! through replica B's admin router over real HTTP, and A runs the fix exactly once. A learns from Postgres
//! `LISTEN`/`NOTIFY`: its poll is set to a minute, so a pass within seconds shows the
//! wake-up worked. A second answer, on either replica, is refused and names the first.
#![cfg(feature = "postgres")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use selfheal::admin::{AdminConfig, Role};
use selfheal::storage::{PostgresStore, sqlx};
use selfheal::{
    ActionContext, ActionOutcome, ErrorKind, Executor, FixBinding, Healer, HealerConfig, Pattern,
    PatternMode, PatternStore, Phase, RemediationPlan, Result, Severity, Signal, Strategy,
};
use selfheal_testsupport::env_url;
use uuid::Uuid;

const TARGET: &str = "orders-db";
const ERROR: &str = "pool timed out while waiting for an open connection";

#[derive(Debug)]
struct ResetPool(Arc<AtomicUsize>);

#[async_trait]
impl Strategy for ResetPool {
    fn name(&self) -> &str {
        "reset_pool"
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        Ok(RemediationPlan::new("reset_pool", &ctx.target).step("reset the pool"))
    }
    async fn execute(&self, _: &RemediationPlan, _: Arc<dyn Executor>) -> Result<ActionOutcome> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(ActionOutcome::ok(Duration::from_millis(5)))
    }
}

fn config(replica: &str) -> HealerConfig {
    let mut c = HealerConfig {
        service: "orders".into(),
        ..HealerConfig::default()
    };
    c.guards.fleet.enabled = true;
    c.guards.fleet.replica = replica.into();
    c.guards.fleet.poll = Duration::from_millis(50);
    // Only a wake-up (NOTIFY) can make A learn within the test's deadline.
    c.safety.approval_poll = Duration::from_secs(60);
    c.verification.interval = Duration::from_millis(50);
    c.verification.quiet_for = Duration::from_millis(200);
    c.verification.window = Duration::from_secs(10);
    c
}

async fn store(url: &str, schema: &str) -> PostgresStore {
    PostgresStore::builder(url)
        .schema(schema)
        .max_connections(4)
        .seed_catalog(false)
        .connect()
        .await
        .expect("connect and migrate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_raised_by_one_replica_is_approved_through_another() {
    let Some(url) = env_url("DATABASE_URL") else {
        return;
    };
    let schema = format!("selfheal_approve_{}", Uuid::new_v4().simple());
    let shared = store(&url, &schema).await;
    shared
        .add_pattern(
            &Pattern::new("pool_exhausted")
                .regex(ERROR)
                .severity(Severity::High)
                .mode(PatternMode::Active)
                .auto_healable(true)
                .confidence(0.9)
                .threshold(3, Duration::from_secs(60))
                .fix(FixBinding::new("reset_pool").requires_approval(true)),
        )
        .await
        .unwrap();

    let runs_a = Arc::new(AtomicUsize::new(0));
    let runs_b = Arc::new(AtomicUsize::new(0));
    let a = Healer::builder()
        .config(config("replica-a"))
        .store(store(&url, &schema).await)
        .strategy(ResetPool(runs_a.clone()))
        .build()
        .unwrap();
    let b = Healer::builder()
        .config(config("replica-b"))
        .store(store(&url, &schema).await)
        .strategy(ResetPool(runs_b.clone()))
        .build()
        .unwrap();
    let mut events = a.subscribe();
    let (running_a, running_b) = (a.spawn(), b.spawn());

    for _ in 0..3 {
        a.observe(Signal::new(TARGET, ERROR));
    }
    let asked = next(&mut events, Phase::AwaitingApproval).await;
    let id = asked.approval.expect("the event names the approval");
    let plan = asked.plan.expect("the event carries the plan");
    assert_eq!(plan.strategy, "reset_pool");

    // B's router lists it pending from the shared store, and bob approves it there.
    let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let admin = AdminConfig::default().token(Role::Operator, "bob", &secret);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/selfheal", listener.local_addr().unwrap());
    let app = axum::Router::new().nest("/selfheal", selfheal::admin::router(b.clone(), admin));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    let pending: serde_json::Value = http
        .get(format!("{base}/api/approvals"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending[0]["id"], id.to_string(), "{pending}");
    let answer = http
        .post(format!("{base}/api/approvals/{id}/approve"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let decided: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(decided["state"], "approved");
    assert_eq!(decided["decided_by"], "bob");

    let approved = next(&mut events, Phase::Approved).await;
    assert_eq!(approved.actor.as_deref(), Some("bob"));
    next(&mut events, Phase::Verified).await;
    assert_eq!(runs_a.load(Ordering::SeqCst), 1, "A runs the fix once");
    assert_eq!(runs_b.load(Ordering::SeqCst), 0, "B never runs it");

    // A second answer, from either replica, is refused and names the first.
    for (healer, who) in [(&a, "carol"), (&b, "dave")] {
        let err = healer
            .admin()
            .reject(id, who, "too late")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(err.message().contains("approved already, by bob"), "{err}");
    }
    // The approval is audited on the trail with the approver as the actor.
    let audit = a.admin().audit_log(1000).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.event_type == "self_heal.approved" && r.actor == "bob"),
        "no self_heal.approved by bob in {audit:#?}"
    );

    running_a.shutdown().await;
    running_b.shutdown().await;
    let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    sqlx::query(sqlx::AssertSqlSafe(drop))
        .execute(shared.pool())
        .await
        .unwrap();
}

async fn next(
    rx: &mut tokio::sync::broadcast::Receiver<selfheal::HealingEvent>,
    phase: Phase,
) -> selfheal::HealingEvent {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match rx.recv().await {
                Ok(e) if e.phase == phase => return e,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {phase:?} event within 20 s"))
}
