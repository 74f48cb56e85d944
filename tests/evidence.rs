//! Evidence for texts with two causes (paused time): a pattern that declares its text
//! ambiguous is checked against the target's probe, and the pattern the probe names
//! explains the incident; without such evidence the text's own pattern stands.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use selfheal::{
    Healer, Health, IncidentFilter, Pattern, PatternMode, Phase, Result, Severity, Signal, Verifier,
};
use support::{audit_types, next, rig};

const POOL: &str = "pool timed out while waiting for an open connection";

/// A probe that says what it is told to, and counts how often it was asked.
#[derive(Debug, Clone, Default)]
struct Probe {
    says: Option<&'static str>,
    asked: Arc<AtomicUsize>,
}

#[async_trait]
impl Verifier for Probe {
    fn name(&self) -> &str {
        "probe"
    }
    async fn check(&self) -> Result<Health> {
        Ok(Health::new(100, "fine"))
    }
    async fn diagnose(&self) -> Result<Option<String>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Ok(self.says.map(str::to_owned))
    }
}

fn patterns() -> [Pattern; 2] {
    [
        Pattern::new("pool_saturated")
            .regex(POOL)
            .mode(PatternMode::Active)
            .confidence(0.6)
            .threshold(3, Duration::from_secs(60))
            .ambiguous(true),
        Pattern::new("db_out_of_slots")
            .regex("sorry, too many clients already")
            .severity(Severity::Critical)
            .mode(PatternMode::Active)
            .confidence(0.8),
    ]
}

async fn matched_with(probe: Probe) -> (String, Vec<String>) {
    let [ambiguous, other] = patterns();
    let mut r = rig(Healer::builder().verifier("db", probe), ambiguous).await;
    r.healer.admin().add_pattern(other, "test").await.unwrap();
    for _ in 0..3 {
        r.healer.observe(Signal::new("db", POOL));
    }
    let matched = next(&mut r.rx, Phase::Matched).await;
    next(&mut r.rx, Phase::Escalated).await; // no fix bound: it ends
    let incidents = r
        .healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(
        incidents[0].pattern.as_deref(),
        matched.detail.split('`').nth(1),
        "the incident records the pattern that explains it"
    );
    let types = audit_types(&r.healer).await;
    r.running.shutdown().await;
    (matched.detail, types)
}

#[tokio::test(start_paused = true)]
async fn the_probe_names_the_pattern_that_explains_an_ambiguous_text() {
    let probe = Probe {
        says: Some("db_out_of_slots"),
        ..Probe::default()
    };
    let (matched, audit) = matched_with(probe.clone()).await;
    assert!(
        matched.starts_with("pattern `db_out_of_slots`"),
        "{matched}"
    );
    assert!(matched.contains("the probe of `db` points to"), "{matched}");
    assert!(
        audit.contains(&"self_heal.evidence".to_owned()),
        "{audit:?}"
    );
    assert_eq!(probe.asked.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn without_evidence_the_texts_own_pattern_stands() {
    let probe = Probe::default();
    let (matched, audit) = matched_with(probe.clone()).await;
    assert!(matched.starts_with("pattern `pool_saturated`"), "{matched}");
    assert!(!audit.contains(&"self_heal.evidence".to_owned()));
    assert_eq!(
        probe.asked.load(Ordering::SeqCst),
        1,
        "asked, and it said nothing"
    );
}
