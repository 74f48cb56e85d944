//! Scenario 4 of issue 5 through a real healer: a config patch whose verification fails
//! is rolled back to the byte-identical original; one that heals stays, and its backup
//! is listed and restorable through the healer.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use selfheal::strategies::ConfigPatch;
use selfheal::{
    ActionStatus, ErrorKind, FixBinding, Healer, Health, IncidentFilter, IncidentStatus, Pattern,
    PatternMode, Phase, Result, Severity, Signal, Uuid, Verifier,
};
use support::{Gauge, audit_types, phases_until};

const POOL: &str = "pool timed out while waiting for an open connection";

/// Bytes a naive rewrite would not keep: a comment, odd spacing, CRLF, no final newline.
const ORIGINAL: &[u8] =
    b"# checkout-api\r\n[database]\r\nurl   = \"postgres://db/app\"\r\nmax_size = 10   # per replica\r\n\r\n[cache]\r\nttl=60";

fn pattern() -> Pattern {
    Pattern::new("postgres_connection_pool_exhausted")
        .regex(POOL)
        .severity(Severity::High)
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(0.9)
        .threshold(3, Duration::from_secs(60))
        .fix(
            FixBinding::new(ConfigPatch::NAME).params(serde_json::json!({
                "file": "api", "key": "database.max_size", "value": 50
            })),
        )
}

fn setup() -> (tempfile::TempDir, PathBuf, ConfigPatch) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("api.toml");
    std::fs::write(&config, ORIGINAL).unwrap();
    let patch = ConfigPatch::new(dir.path().join("backups"))
        .file("api", &config)
        .unwrap();
    (dir, config, patch)
}

fn storm(healer: &Healer) {
    for i in 0..3 {
        healer.observe(Signal::new("api", format!("{POOL} (attempt {i})")));
    }
}

#[tokio::test(start_paused = true)]
async fn a_patch_whose_verification_fails_is_rolled_back_byte_for_byte() {
    let (_dir, config, patch) = setup();
    // The target stays unhealthy whatever the patch does.
    let healer = Healer::builder()
        .strategy(patch)
        .verifier("api", Gauge::new(10))
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer.admin().add_pattern(pattern(), "test").await.unwrap();

    storm(&healer);
    let phases = phases_until(&mut rx, &[Phase::Resolved, Phase::Escalated]).await;

    assert!(phases.contains(&Phase::Executing), "{phases:?}");
    assert!(phases.contains(&Phase::RolledBack), "{phases:?}");
    assert_eq!(phases.last(), Some(&Phase::Escalated));
    assert_eq!(
        std::fs::read(&config).unwrap(),
        ORIGINAL,
        "not byte-identical"
    );

    let actions = healer.admin().actions(None).await.unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].status, ActionStatus::RolledBack);
    assert!(
        actions[0].preview.contains("set `database.max_size`"),
        "{}",
        actions[0].preview
    );
    let stdout = &actions[0].outcome.as_ref().unwrap().stdout;
    assert!(stdout.contains("10 → 50"), "{stdout}");

    let backups = healer.admin().backups().await.unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].strategy, ConfigPatch::NAME);
    assert_eq!(backups[0].size, ORIGINAL.len() as u64);
    assert!(backups[0].restored_at.is_some(), "the rollback restored it");
    let types = audit_types(&healer).await;
    assert!(
        types.iter().any(|t| t == "self_heal.rolled_back"),
        "{types:?}"
    );
    running.shutdown().await;
}

/// Healthy once the pool is at least 50, read from the config file itself.
#[derive(Debug)]
struct PoolSize(PathBuf);

#[async_trait]
impl Verifier for PoolSize {
    fn name(&self) -> &str {
        "pool_size"
    }
    async fn check(&self) -> Result<Health> {
        let text = std::fs::read_to_string(&self.0).unwrap_or_default();
        let ok = text.contains("max_size = 50");
        Ok(Health::new(if ok { 100 } else { 20 }, "max_size"))
    }
}

fn patched(config: &Path) -> Vec<u8> {
    std::fs::read(config).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_patch_that_heals_stays_and_its_backup_is_restorable_through_the_healer() {
    let (_dir, config, patch) = setup();
    let healer = Healer::builder()
        .strategy(patch)
        .verifier("api", PoolSize(config.clone()))
        .build()
        .unwrap();
    let mut rx = healer.subscribe();
    let running = healer.spawn();
    healer.admin().add_pattern(pattern(), "test").await.unwrap();

    storm(&healer);
    let phases = phases_until(&mut rx, &[Phase::Resolved, Phase::Escalated]).await;
    assert_eq!(phases.last(), Some(&Phase::Resolved), "{phases:?}");
    let expected = String::from_utf8(ORIGINAL.to_vec())
        .unwrap()
        .replace("max_size = 10", "max_size = 50");
    assert_eq!(
        patched(&config),
        expected.as_bytes(),
        "only the value changed"
    );
    let incidents = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await
        .unwrap();
    assert_eq!(incidents[0].status, IncidentStatus::Resolved);

    let backups = healer.admin().backups().await.unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].restored_at, None);
    assert_eq!(backups[0].location, config.display().to_string());

    let restored = healer
        .admin()
        .restore_backup(backups[0].id, "alice")
        .await
        .unwrap();
    assert!(restored.restored_at.is_some());
    assert_eq!(patched(&config), ORIGINAL);
    let audit = healer.admin().audit_log(100).await.unwrap();
    let record = audit
        .iter()
        .find(|r| r.event_type == "self_heal.backup_restored")
        .expect("restore audited");
    assert_eq!(record.actor, "alice");

    let err = healer
        .admin()
        .restore_backup(Uuid::new_v4(), "alice")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    running.shutdown().await;
}
