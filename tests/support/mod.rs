//! Test doubles shared by the end-to-end tests: a strategy that counts what it did and
//! flips a health flag, a verifier that reads it, a notifier that remembers.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use selfheal::{
    ActionContext, ActionOutcome, Executor, FixBinding, HealingEvent, Health, Notification,
    Notifier, Pattern, PatternMode, Phase, RemediationPlan, Result, Severity, Strategy, Verifier,
};
use tokio::sync::broadcast;

/// Health of a fake target, 0-100, shared between strategy and verifier.
#[derive(Debug, Clone)]
pub struct Gauge(pub Arc<AtomicU8>);

impl Gauge {
    pub fn new(v: u8) -> Self {
        Gauge(Arc::new(AtomicU8::new(v)))
    }
    pub fn set(&self, v: u8) {
        self.0.store(v, Ordering::SeqCst);
    }
    pub fn get(&self) -> u8 {
        self.0.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Verifier for Gauge {
    fn name(&self) -> &str {
        "gauge"
    }
    async fn check(&self) -> Result<Health> {
        Ok(Health::new(self.get(), "gauge"))
    }
}

/// A strategy that records its runs and rollbacks and sets the gauge to `heals_to`.
#[derive(Debug, Clone)]
pub struct FakeFix {
    pub name: String,
    pub gauge: Gauge,
    pub heals_to: Option<u8>,
    pub reversible: bool,
    pub destructive: bool,
    pub runs: Arc<AtomicUsize>,
    pub rollbacks: Arc<AtomicUsize>,
    /// How long each run takes, in milliseconds (shared by clones).
    pub takes_ms: Arc<AtomicU64>,
}

impl FakeFix {
    pub fn new(name: &str, gauge: &Gauge, heals_to: Option<u8>) -> Self {
        FakeFix {
            name: name.to_owned(),
            gauge: gauge.clone(),
            heals_to,
            reversible: false,
            destructive: false,
            runs: Arc::default(),
            rollbacks: Arc::default(),
            takes_ms: Arc::default(),
        }
    }
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
    pub fn rollbacks(&self) -> usize {
        self.rollbacks.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Strategy for FakeFix {
    fn name(&self) -> &str {
        &self.name
    }
    fn destructive(&self) -> bool {
        self.destructive
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        Ok(RemediationPlan::new(&self.name, &ctx.target)
            .step(format!("{} {}", self.name, ctx.target)))
    }
    async fn execute(
        &self,
        _plan: &RemediationPlan,
        _executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let takes = Duration::from_millis(self.takes_ms.load(Ordering::SeqCst));
        if !takes.is_zero() {
            tokio::time::sleep(takes).await;
        }
        if let Some(h) = self.heals_to {
            self.gauge.set(h);
        }
        Ok(ActionOutcome::ok(Duration::from_millis(5)))
    }
    async fn rollback(
        &self,
        _plan: &RemediationPlan,
        _executor: Arc<dyn Executor>,
    ) -> Result<Option<ActionOutcome>> {
        if !self.reversible {
            return Ok(None);
        }
        self.rollbacks.fetch_add(1, Ordering::SeqCst);
        Ok(Some(ActionOutcome::ok(Duration::from_millis(1))))
    }
}

/// Remembers every notification.
#[derive(Debug, Clone, Default)]
pub struct Inbox(pub Arc<Mutex<Vec<Notification>>>);

impl Inbox {
    pub fn event_types(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|n| n.event_type.clone())
            .collect()
    }
}

#[async_trait]
impl Notifier for Inbox {
    fn name(&self) -> &str {
        "inbox"
    }
    async fn notify(&self, n: &Notification) -> Result<()> {
        self.0.lock().unwrap().push(n.clone());
        Ok(())
    }
}

/// Waits (in paused time) for the next event of `phase`, failing after an hour of
/// virtual time so a broken pipeline fails the test instead of hanging it.
pub async fn next(rx: &mut broadcast::Receiver<HealingEvent>, phase: Phase) -> HealingEvent {
    tokio::time::timeout(Duration::from_secs(4 * 3600), async {
        loop {
            let e = rx.recv().await.expect("event stream open");
            if e.phase == phase {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {phase:?} event"))
}

/// Waits for the incident to end (resolved, escalated or closed) and returns that
/// event; fails the test when it has not ended `within` (real or paused time).
pub async fn finished(
    rx: &mut broadcast::Receiver<HealingEvent>,
    within: Duration,
) -> HealingEvent {
    tokio::time::timeout(within, async {
        loop {
            let e = rx.recv().await.expect("event stream open");
            if matches!(e.phase, Phase::Resolved | Phase::Escalated | Phase::Closed) {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the healer did not finish within {within:?}"))
}

/// Collects phases until one of `until` arrives (inclusive).
pub async fn phases_until(
    rx: &mut broadcast::Receiver<HealingEvent>,
    until: &[Phase],
) -> Vec<Phase> {
    tokio::time::timeout(Duration::from_secs(4 * 3600), async {
        let mut out = Vec::new();
        loop {
            let e = rx.recv().await.expect("event stream open");
            out.push(e.phase);
            if until.contains(&e.phase) {
                return out;
            }
        }
    })
    .await
    .expect("pipeline reached an end phase")
}

/// A strategy that restarts its target through the executor it is handed, so a
/// dry-run executor really keeps it from running.
#[derive(Debug, Clone)]
pub struct CommandFix {
    pub name: String,
}

impl CommandFix {
    pub fn new(name: &str) -> Self {
        CommandFix {
            name: name.to_owned(),
        }
    }
}

#[async_trait]
impl Strategy for CommandFix {
    fn name(&self) -> &str {
        &self.name
    }
    fn dry_run_safe(&self) -> bool {
        true
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        Ok(
            RemediationPlan::new(&self.name, &ctx.target).command(selfheal::Command::new(
                "systemctl",
                ["restart", ctx.target.as_str()],
            )),
        )
    }
    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        let mut last = ActionOutcome::ok(Duration::ZERO);
        for command in plan.steps.iter().filter_map(|s| s.command.as_ref()) {
            last = executor.run(command).await?;
        }
        Ok(last)
    }
}

/// An executor that runs nothing for real but counts and keeps what reached it.
#[derive(Debug, Clone, Default)]
pub struct CountingExecutor(pub Arc<Mutex<Vec<selfheal::Command>>>);

impl CountingExecutor {
    pub fn ran(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|c| c.preview()).collect()
    }
}

#[async_trait]
impl Executor for CountingExecutor {
    fn name(&self) -> &str {
        "counting"
    }
    async fn run(&self, command: &selfheal::Command) -> Result<ActionOutcome> {
        self.0.lock().unwrap().push(command.clone());
        Ok(ActionOutcome {
            exit_code: Some(0),
            ..ActionOutcome::ok(Duration::from_millis(1))
        })
    }
}

/// A spawned healer with its event stream, its inbox and one pattern added.
pub struct Rig {
    pub healer: selfheal::Healer,
    pub rx: broadcast::Receiver<HealingEvent>,
    pub running: selfheal::Running,
    pub inbox: Inbox,
}

/// Builds `builder` with an [`Inbox`], subscribes, spawns and adds `pattern`.
pub async fn rig(builder: selfheal::HealerBuilder, pattern: selfheal::Pattern) -> Rig {
    let inbox = Inbox::default();
    let healer = builder.notifier(inbox.clone()).build().unwrap();
    let rx = healer.subscribe();
    let running = healer.spawn();
    healer.admin().add_pattern(pattern, "test").await.unwrap();
    Rig {
        healer,
        rx,
        running,
        inbox,
    }
}

/// The audit event types, oldest first, after checking the chain is intact.
pub async fn audit_types(healer: &selfheal::Healer) -> Vec<String> {
    let audit = healer.admin().audit_log(10_000).await.unwrap();
    selfheal::verify_chain(&audit).expect("audit chain intact");
    audit.into_iter().map(|r| r.event_type).collect()
}

/// An active, auto-healable pattern: `regex` three times in a minute runs `fix`.
pub fn auto_pattern(name: &str, regex: &str, fix: &str) -> Pattern {
    Pattern::new(name)
        .regex(regex)
        .severity(Severity::High)
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(0.9)
        .threshold(3, Duration::from_secs(60))
        .fix(FixBinding::new(fix))
}

/// A replica of a fleet: a runtime of its own with one worker (as a process of its own
/// would have), and its own small pool on the shared PostgreSQL store at `url`/`schema`.
#[cfg(feature = "postgres")]
pub fn replica_runtime(
    url: &str,
    schema: &str,
) -> (tokio::runtime::Runtime, selfheal::storage::PostgresStore) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = rt
        .block_on(
            selfheal::storage::PostgresStore::builder(url)
                .schema(schema)
                .max_connections(3)
                .seed_catalog(false)
                // A replica the test hangs or kills may be mid-transaction: the server
                // frees its locks soon, as it would a dead process's.
                .idle_in_transaction_timeout(std::time::Duration::from_secs(3))
                .connect(),
        )
        .unwrap();
    (rt, store)
}
