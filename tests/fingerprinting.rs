//! The template miner as the healer's fingerprinter, end to end in paused time: an error
//! whose variable part is a word (a tenant name, not a number) becomes one fingerprint
//! once the miner has seen enough names, reaches the pattern's threshold, and heals.

mod support;

use std::time::Duration;

use selfheal::fingerprint::{MinerConfig, TemplateMiner};
use selfheal::{
    FixBinding, Healer, IncidentFilter, IncidentStatus, MemoryStore, Pattern, PatternMode, Phase,
    Severity, Signal,
};
use support::{FakeFix, Gauge, phases_until};

#[tokio::test(start_paused = true)]
async fn the_miner_turns_word_values_into_one_fingerprint_that_heals() {
    let gauge = Gauge::new(20);
    let fix = FakeFix::new("restart", &gauge, Some(100));
    let healer = Healer::builder()
        .store(MemoryStore::new())
        .fingerprinter(TemplateMiner::new(MinerConfig::default()))
        .strategy(fix.clone())
        .verifier("db", gauge.clone())
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(
            Pattern::new("tenant_pool_exhausted")
                .regex("pool exhausted for tenant")
                .severity(Severity::High)
                .mode(PatternMode::Active)
                .auto_healable(true)
                .confidence(0.8)
                .threshold(3, Duration::from_secs(60))
                .fix(FixBinding::new("restart")),
            "test",
        )
        .await
        .unwrap();

    // Seven tenants: the first four are variants of one template (their own ids, one
    // occurrence each, under the threshold); the fifth makes the name a value, and from
    // then on every line counts into the first template's id.
    for tenant in [
        "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne",
    ] {
        healer.observe(Signal::new(
            "db",
            format!("pool exhausted for tenant {tenant}, waited 30s"),
        ));
    }
    let phases = phases_until(&mut rx, &[Phase::Resolved, Phase::Escalated]).await;
    assert_eq!(phases.last(), Some(&Phase::Resolved), "{phases:?}");
    assert_eq!(fix.runs(), 1);

    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].status, IncidentStatus::Resolved);
    // The miner generalizes whole tokens: `acme,` becomes `<*>`.
    assert_eq!(
        incidents[0].template,
        "pool exhausted for tenant <*> waited <*>"
    );
    running.shutdown().await;
}
