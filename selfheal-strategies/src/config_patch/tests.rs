use std::os::unix::fs::PermissionsExt;

use chrono::Utc;
use selfheal_core::{Incident, IncidentStatus, Severity};

use super::*;
use crate::{DryRunExecutor, ProcessExecutor};

const ORIGINAL: &str = "# api settings\n[database]\nurl = \"postgres://db/app\"  # primary\nmax_size = 10 # per replica\n\n[cache]\nttl = 60\n";

fn ctx(params: Value) -> ActionContext {
    ActionContext {
        incident: Incident {
            stack: None,
            id: Uuid::new_v4(),
            target: "api".into(),
            fingerprint: "0123456789abcdef".into(),
            template: "pool timed out".into(),
            related: Vec::new(),
            pattern: Some("pool_exhausted".into()),
            status: IncidentStatus::Open,
            severity: Severity::High,
            occurrences: 3,
            samples: Vec::new(),
            opened_at: Utc::now(),
            last_seen: Utc::now(),
            closed_at: None,
            reason: String::new(),
        },
        target: "api".into(),
        params,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    config: PathBuf,
    patch: ConfigPatch,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("api.toml");
    std::fs::write(&config, ORIGINAL).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let patch = ConfigPatch::new(dir.path().join("backups"))
        .file("api", &config)
        .unwrap();
    Fixture {
        _dir: dir,
        config,
        patch,
    }
}

fn executor() -> Arc<dyn Executor> {
    Arc::new(ProcessExecutor::new())
}

#[tokio::test]
async fn plan_previews_the_change_and_the_backup_and_changes_nothing() {
    let f = fixture();
    let plan = f
        .patch
        .plan(&ctx(
            json!({"file": "api", "key": "database.max_size", "value": 50}),
        ))
        .await
        .unwrap();
    assert_eq!(plan.risk, Risk::Medium);
    assert!(plan.reversible);
    assert_eq!(plan.steps.len(), 2);
    assert!(plan.steps.iter().all(|s| s.command.is_none()));
    assert!(
        plan.steps[0].preview.starts_with("back up "),
        "{}",
        plan.preview()
    );
    assert!(
        plan.steps[1].preview.contains("set `database.max_size`")
            && plan.steps[1].preview.contains("(toml): 10 → 50"),
        "{}",
        plan.preview()
    );
    assert_eq!(std::fs::read_to_string(&f.config).unwrap(), ORIGINAL);
    assert!(!f.patch.backup_dir().exists(), "planning took a backup");
}

#[tokio::test]
async fn execute_backs_up_then_writes_atomically_and_rollback_is_byte_identical() {
    let f = fixture();
    let plan = f
        .patch
        .plan(&ctx(json!({"key": "database.max_size", "value": 50})))
        .await
        .unwrap();

    let outcome = f.patch.execute(&plan, executor()).await.unwrap();

    assert!(outcome.success);
    assert!(outcome.stdout.contains("10 → 50"), "{}", outcome.stdout);
    let patched = std::fs::read_to_string(&f.config).unwrap();
    assert_eq!(patched, ORIGINAL.replace("max_size = 10", "max_size = 50"));
    let mode = std::fs::metadata(&f.config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "the rewrite kept the file's permissions");
    let leftovers: Vec<_> = std::fs::read_dir(f.config.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".selfheal-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let backups = f.patch.backups().await.unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].location, f.config.display().to_string());
    assert_eq!(backups[0].size, ORIGINAL.len() as u64);
    assert_eq!(backups[0].target, "api");
    let bak = f.patch.backup_dir().join(format!("{}.bak", backups[0].id));
    assert_eq!(std::fs::read(&bak).unwrap(), ORIGINAL.as_bytes());
    let bak_mode = std::fs::metadata(&bak).unwrap().permissions().mode() & 0o777;
    assert_eq!(bak_mode, 0o600, "backups may hold secrets");
    let dir_mode = std::fs::metadata(f.patch.backup_dir())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);

    let rolled = f.patch.rollback(&plan, executor()).await.unwrap();
    assert!(rolled.is_some_and(|o| o.success));
    assert_eq!(std::fs::read(&f.config).unwrap(), ORIGINAL.as_bytes());
    let backups = f.patch.backups().await.unwrap();
    assert!(backups[0].restored_at.is_some());
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_takes_no_backup() {
    let f = fixture();
    let plan = f
        .patch
        .plan(&ctx(json!({"key": "database.max_size", "value": 50})))
        .await
        .unwrap();
    let outcome = f
        .patch
        .execute(&plan, Arc::new(DryRunExecutor::new()))
        .await
        .unwrap();
    assert!(
        outcome.stdout.starts_with("dry run: "),
        "{}",
        outcome.stdout
    );
    assert_eq!(std::fs::read_to_string(&f.config).unwrap(), ORIGINAL);
    assert!(f.patch.backups().await.unwrap().is_empty());
}

#[tokio::test]
async fn restore_backup_puts_an_older_version_back() {
    let f = fixture();
    let first = f
        .patch
        .plan(&ctx(json!({"key": "database.max_size", "value": 20})))
        .await
        .unwrap();
    f.patch.execute(&first, executor()).await.unwrap();
    let second = f
        .patch
        .plan(&ctx(json!({"key": "cache.ttl", "value": 5})))
        .await
        .unwrap();
    f.patch.execute(&second, executor()).await.unwrap();
    let backups = f.patch.backups().await.unwrap();
    assert_eq!(backups.len(), 2);
    let oldest = backups.iter().min_by_key(|b| b.created_at).unwrap();

    let restored = f.patch.restore_backup(oldest.id).await.unwrap().unwrap();

    assert_eq!(restored.id, oldest.id);
    assert_eq!(std::fs::read_to_string(&f.config).unwrap(), ORIGINAL);
    assert_eq!(f.patch.restore_backup(Uuid::new_v4()).await.unwrap(), None);
}

#[tokio::test]
async fn a_file_that_changed_shape_is_refused_and_left_alone() {
    let f = fixture();
    let plan = f
        .patch
        .plan(&ctx(json!({"key": "database.max_size", "value": 50})))
        .await
        .unwrap();
    std::fs::write(&f.config, "database = 1\n").unwrap();
    let err = f.patch.execute(&plan, executor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(
        std::fs::read_to_string(&f.config).unwrap(),
        "database = 1\n"
    );
    assert!(f.patch.backups().await.unwrap().is_empty());
    assert!(f.patch.rollback(&plan, executor()).await.unwrap().is_none());
}

#[test]
fn parameters_name_registered_files_only() {
    let f = fixture();
    let two = f.patch.clone().file("env", "/tmp/x/.env").unwrap();
    for bad in [
        json!(null),
        json!({"file": "/etc/passwd", "key": "a", "value": 1}),
        json!({"file": "api", "key": "a", "value": 1, "path": "/etc/shadow"}),
        json!({"file": "api", "key": "a"}),
        json!({"file": "api", "value": 1}),
        json!({"file": "env", "key": "NOT-VALID", "value": 1}),
    ] {
        let err = two.validate(&bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
    }
    // With two files, `file` is required.
    assert!(two.validate(&json!({"key": "a", "value": 1})).is_err());
    assert!(f.patch.validate(&json!({"key": "a", "value": 1})).is_ok());
    assert!(ConfigPatch::new("/tmp").file("x", "/etc/app.ini").is_err());
}

#[tokio::test]
async fn a_rollback_never_overwrites_a_later_human_edit_but_a_manual_restore_does() {
    let f = fixture();
    let plan = f
        .patch
        .plan(&ctx(json!({"key": "database.max_size", "value": 50})))
        .await
        .unwrap();
    f.patch.execute(&plan, executor()).await.unwrap();
    let edited = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("ttl = 60", "ttl = 90");
    std::fs::write(&f.config, &edited).unwrap();

    let err = f.patch.rollback(&plan, executor()).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message().contains("restore_backup"), "{err}");
    assert_eq!(std::fs::read_to_string(&f.config).unwrap(), edited);
    let id = f.patch.backups().await.unwrap()[0].id;
    f.patch.restore_backup(id).await.unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(&f.config).unwrap(), ORIGINAL);
}

#[tokio::test]
async fn only_the_newest_backups_are_kept() {
    let f = fixture();
    let patch = f.patch.clone().keep(2);
    let mut ids = Vec::new();
    for value in [11, 12, 13] {
        let plan = patch
            .plan(&ctx(json!({"key": "database.max_size", "value": value})))
            .await
            .unwrap();
        patch.execute(&plan, executor()).await.unwrap();
        ids.push(plan.params["backup"].as_str().unwrap().to_owned());
    }
    let kept: Vec<String> = patch
        .backups()
        .await
        .unwrap()
        .iter()
        .map(|b| b.id.to_string())
        .collect();
    assert_eq!(kept, [ids[2].clone(), ids[1].clone()]);
    let files = std::fs::read_dir(patch.backup_dir()).unwrap().count();
    assert_eq!(files, 4, "two .bak and two .json");
}
