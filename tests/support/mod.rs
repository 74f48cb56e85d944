//! Test doubles shared by the end-to-end tests: a strategy that counts what it did and
//! flips a health flag, a verifier that reads it, a notifier that remembers.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use selfheal::{
    ActionContext, ActionOutcome, Executor, HealingEvent, Health, Notification, Notifier, Phase,
    RemediationPlan, Result, Strategy, Verifier,
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
