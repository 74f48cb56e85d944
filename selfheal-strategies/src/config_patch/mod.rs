//! [`ConfigPatch`]: changes one key in a config file, with a backup taken first, an
//! atomic write, and a rollback from the backup.

mod format;
mod json_span;
mod yaml_line;

pub use format::ConfigFormat;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;
use selfheal_core::{
    ActionContext, ActionOutcome, Backup, Error, ErrorKind, Executor, RemediationPlan, Result,
    Risk, Strategy, Uuid,
};
use serde_json::{Value, json};
use tracing::{info, instrument};

/// Changes one key in an allow-listed config file (TOML, JSON, YAML or `.env`).
///
/// Parameters: `{"file": "<alias>", "key": "database.pool.max_size", "value": 50}`.
/// The file is named by the alias it was registered under with
/// [`file`](ConfigPatch::file), never by a path from the parameters, so a pattern (or an
/// advisor) can only touch the files the host listed. With one file registered `file`
/// may be left out. `.env` keys are variable names; the others are dotted paths whose
/// parent tables must exist (the key itself may be new).
///
/// - **Plan**: risk [`Risk::Medium`], reversible; reads the file and previews the
///   change (`max_size: 10 → 50`) and the backup it will take. Changes nothing.
/// - **Execute**: copies the file's bytes to the backup directory first
///   (`<dir>/<id>.bak` plus `<id>.json`, both written atomically, mode 0600), then writes
///   the new text to a temporary file beside the config file (same permissions), syncs
///   it and renames it over the original: readers see the old file or the new one,
///   never half of one. The new text is parsed back and must hold the new value before
///   it is written. With a dry-run executor nothing is written.
/// - **Rollback**: puts the backup's bytes back, byte for byte, by the same atomic
///   write, unless the file changed since the patch wrote it (then `Conflict`: a
///   human's edit is never overwritten automatically). The backups are listed and
///   restorable through the healer (`Admin::backups`, `Admin::restore_backup`, which
///   restores whatever the file holds now); the newest
///   [`keep`](ConfigPatch::keep) (50) are kept.
///
/// TOML files keep their comments and layout (`toml_edit`); in JSON only the value's
/// bytes change; `.env` files change only the key's line; in YAML a plain scalar changes
/// in place, anything else is rewritten without comments (the backup holds the
/// original either way).
///
/// ```
/// use selfheal_core::Strategy;
/// use selfheal_strategies::ConfigPatch;
/// # fn main() -> selfheal_core::Result<()> {
/// let dir = std::env::temp_dir();
/// let patch = ConfigPatch::new(dir.join("selfheal-backups")).file("api", dir.join("api.toml"))?;
/// patch.validate(&serde_json::json!({"file": "api", "key": "pool.max_size", "value": 50}))?;
/// // Only registered files: a path in the parameters is refused.
/// assert!(patch.validate(&serde_json::json!({"file": "/etc/passwd", "key": "x", "value": 1})).is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ConfigPatch {
    files: BTreeMap<String, (PathBuf, ConfigFormat)>,
    backup_dir: PathBuf,
    keep: usize,
    /// One change at a time, so a backup always holds what the previous write left.
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for ConfigPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigPatch")
            .field("files", &self.files)
            .field("backup_dir", &self.backup_dir)
            .finish_non_exhaustive()
    }
}

/// A backup's record on disk: the backup, and a hash of what the patch wrote so an
/// automatic rollback can tell whether someone changed the file since.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    #[serde(flatten)]
    backup: Backup,
    /// sha256 (hex) of the bytes the patch wrote.
    #[serde(default)]
    written: Option<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a plan says to do, read back from its parameters.
struct Change {
    alias: String,
    path: PathBuf,
    format: ConfigFormat,
    key: String,
    value: Value,
}

impl ConfigPatch {
    /// The strategy's name, which patterns bind fixes to.
    pub const NAME: &'static str = "patch_config";
    /// Backups kept by default; older ones are deleted when a new one is taken.
    pub const DEFAULT_KEEP: usize = 50;

    /// A strategy keeping its backups in `backup_dir` (created on first use), with no
    /// files yet.
    pub fn new(backup_dir: impl Into<PathBuf>) -> Self {
        ConfigPatch {
            files: BTreeMap::new(),
            backup_dir: backup_dir.into(),
            keep: Self::DEFAULT_KEEP,
            lock: Arc::default(),
        }
    }

    /// Allows patching `path` under the name `alias`, in the format its name says.
    ///
    /// Errors: `InvalidInput` when the name says no format (use
    /// [`file_as`](ConfigPatch::file_as)).
    pub fn file(self, alias: impl Into<String>, path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let format = ConfigFormat::from_path(&path).ok_or_else(|| {
            Error::invalid(format!(
                "cannot tell the format of `{}` from its name; use ConfigPatch::file_as with a ConfigFormat",
                path.display()
            ))
        })?;
        Ok(self.file_as(alias, path, format))
    }

    /// Allows patching `path` under the name `alias`, in `format`.
    pub fn file_as(
        mut self,
        alias: impl Into<String>,
        path: impl Into<PathBuf>,
        format: ConfigFormat,
    ) -> Self {
        self.files.insert(alias.into(), (path.into(), format));
        self
    }

    /// Keeps the newest `keep` backups (default 50, at least 1); older ones are deleted
    /// when a new one is taken.
    pub fn keep(mut self, keep: usize) -> Self {
        self.keep = keep.max(1);
        self
    }

    /// Where backups are kept.
    pub fn backup_dir(&self) -> &Path {
        &self.backup_dir
    }

    fn change(&self, params: &Value) -> Result<Change> {
        let Value::Object(map) = params else {
            return Err(Error::invalid(
                "patch_config needs parameters {\"file\": \"<alias>\", \"key\": \"a.b\", \"value\": ...}",
            ));
        };
        for k in map.keys() {
            if !matches!(k.as_str(), "file" | "key" | "value" | "backup") {
                return Err(Error::invalid(format!(
                    "patch_config has no parameter `{k}`; it takes `file`, `key` and `value`"
                )));
            }
        }
        let alias = match map.get("file") {
            Some(Value::String(alias)) => alias.clone(),
            None if self.files.len() == 1 => self.files.keys().next().cloned().unwrap_or_default(),
            _ => {
                return Err(Error::invalid(format!(
                    "`file` must name one of the registered config files: {}",
                    self.aliases()
                )));
            }
        };
        let Some((path, format)) = self.files.get(&alias) else {
            return Err(Error::invalid(format!(
                "`{alias}` is not a registered config file; use one of: {} (register more with ConfigPatch::file)",
                self.aliases()
            )));
        };
        let Some(Value::String(key)) = map.get("key") else {
            return Err(Error::invalid(
                "`key` must be a string such as `database.pool.max_size`",
            ));
        };
        let value = map.get("value").cloned().unwrap_or(Value::Null);
        format.check(key, &value)?;
        Ok(Change {
            alias,
            path: path.clone(),
            format: *format,
            key: key.clone(),
            value,
        })
    }

    fn aliases(&self) -> String {
        if self.files.is_empty() {
            return "none registered".to_owned();
        }
        self.files
            .keys()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn backup_paths(&self, id: Uuid) -> (PathBuf, PathBuf) {
        (
            self.backup_dir.join(format!("{id}.bak")),
            self.backup_dir.join(format!("{id}.json")),
        )
    }

    /// Copies `bytes` of `change`'s file into backup `id`.
    fn take_backup(
        &self,
        id: Uuid,
        target: &str,
        path: &Path,
        bytes: &[u8],
        written: &[u8],
    ) -> Result<Backup> {
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        // Backups may hold secrets: only the service's user may list them.
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        dir.create(&self.backup_dir).map_err(|e| {
            io_error(
                format!(
                    "could not create the backup directory {}",
                    self.backup_dir.display()
                ),
                e,
            )
        })?;
        let backup = Backup {
            id,
            strategy: Self::NAME.to_owned(),
            target: target.to_owned(),
            location: path.display().to_string(),
            size: bytes.len() as u64,
            created_at: Utc::now(),
            restored_at: None,
        };
        let (data, meta) = self.backup_paths(id);
        write_atomic(&data, bytes, None)?;
        write_meta(
            &meta,
            &Record {
                backup: backup.clone(),
                written: Some(sha256_hex(written)),
            },
        )?;
        self.prune();
        Ok(backup)
    }

    /// Deletes the backups beyond the newest `keep`.
    fn prune(&self) {
        let Ok(all) = self.list() else { return };
        for old in all.iter().skip(self.keep) {
            let (data, meta) = self.backup_paths(old.id);
            // The record last, so a half-deleted backup is never listed.
            let _ = std::fs::remove_file(&data);
            if let Err(e) = std::fs::remove_file(&meta) {
                tracing::warn!(backup = %old.id, error = %e, "could not delete an old backup");
            }
        }
    }

    fn read_backup(&self, id: Uuid) -> Result<Option<(Record, Vec<u8>)>> {
        let (data, meta) = self.backup_paths(id);
        let text = match std::fs::read(&meta) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(format!("could not read {}", meta.display()), e)),
        };
        let record: Record = serde_json::from_slice(&text).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("backup record {} is damaged: {e}", meta.display()),
            )
        })?;
        let bytes = std::fs::read(&data)
            .map_err(|e| io_error(format!("could not read backup {}", data.display()), e))?;
        if bytes.len() as u64 != record.backup.size {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "backup {} holds {} bytes, its record says {}: it was changed; restore by hand",
                    data.display(),
                    bytes.len(),
                    record.backup.size
                ),
            ));
        }
        Ok(Some((record, bytes)))
    }

    /// Writes backup `id` back to where it came from. With `only_if_unchanged` (an
    /// automatic rollback) it refuses when the file no longer holds what the patch
    /// wrote: someone changed it since, and their change is not overwritten.
    fn restore(&self, id: Uuid, only_if_unchanged: bool) -> Result<Option<Backup>> {
        let Some((mut record, bytes)) = self.read_backup(id)? else {
            return Ok(None);
        };
        let location = PathBuf::from(&record.backup.location);
        if only_if_unchanged && let Some(written) = &record.written {
            let now = std::fs::read(&location).map(|b| sha256_hex(&b)).ok();
            if now.as_ref() != Some(written) {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{} changed since selfheal patched it, so the rollback does not overwrite it; \
                         restore backup {id} by hand with Admin::restore_backup if that is what you want",
                        location.display()
                    ),
                ));
            }
        }
        let mode = std::fs::metadata(&location).ok().map(|m| m.permissions());
        write_atomic(&location, &bytes, mode)?;
        record.backup.restored_at = Some(Utc::now());
        write_meta(&self.backup_paths(id).1, &record)?;
        info!(backup = %id, location = %record.backup.location, "config file restored from backup");
        Ok(Some(record.backup))
    }

    fn list(&self) -> Result<Vec<Backup>> {
        let entries = match std::fs::read_dir(&self.backup_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(io_error(
                    format!("could not list {}", self.backup_dir.display()),
                    e,
                ));
            }
        };
        let mut backups = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Ok(text) = std::fs::read(&path) else {
                continue;
            };
            match serde_json::from_slice::<Record>(&text) {
                Ok(r) if r.backup.strategy == Self::NAME => backups.push(r.backup),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "skipping a damaged backup record")
                }
            }
        }
        backups.sort_by_key(|b| std::cmp::Reverse(b.created_at));
        Ok(backups)
    }
}

fn io_error(what: String, e: std::io::Error) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorKind::Execution,
        _ => ErrorKind::Execution,
    };
    Error::new(kind, format!("{what}: {e}")).with_source(e)
}

fn write_meta(path: &Path, record: &Record) -> Result<()> {
    let meta = serde_json::to_vec_pretty(record).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("could not encode a backup record: {e}"),
        )
    })?;
    write_atomic(path, &meta, None)
}

/// Writes `bytes` to `path` through a temporary file in the same directory, synced and
/// renamed over it. A symlink is followed: the file it points to is replaced. The new
/// file gets `mode` (the replaced file's permissions), or 0600 for a new one.
fn write_atomic(path: &Path, bytes: &[u8], mode: Option<std::fs::Permissions>) -> Result<()> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = real
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".selfheal-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| {
            io_error(
                format!("could not create a temporary file in {}", dir.display()),
                e,
            )
        })?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io_error(format!("could not write {}", tmp.path().display()), e))?;
    if let Some(mode) = mode {
        std::fs::set_permissions(tmp.path(), mode).map_err(|e| {
            io_error(
                format!("could not set the permissions of {}", tmp.path().display()),
                e,
            )
        })?;
    }
    tmp.persist(&real)
        .map_err(|e| io_error(format!("could not replace {}", real.display()), e.error))?;
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "(unset)".to_owned(), Value::to_string)
}

#[async_trait]
impl Strategy for ConfigPatch {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn validate(&self, params: &Value) -> Result<()> {
        self.change(params).map(|_| ())
    }

    fn param_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "file": {"type": "string", "enum": self.files.keys().collect::<Vec<_>>()},
                "key": {"type": "string", "description": "dotted path, or an .env variable name"},
                "value": {"description": "the new value (not null)"}
            },
            "required": ["key", "value"],
            "additionalProperties": false
        })
    }

    #[instrument(skip_all, fields(target = %ctx.target), err)]
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        let change = self.change(&ctx.params)?;
        let text = tokio::fs::read_to_string(&change.path).await.map_err(|e| {
            io_error(
                format!(
                    "could not read config file `{}` ({})",
                    change.alias,
                    change.path.display()
                ),
                e,
            )
        })?;
        let current = change.format.get(&text, &change.key)?;
        // Refuse now what execute would refuse (missing parents, a table).
        change.format.set(&text, &change.key, &change.value)?;
        let id = Uuid::new_v4();
        let mut plan = RemediationPlan::new(Self::NAME, ctx.target.clone())
            .risk(Risk::Medium)
            .step(format!(
                "back up {} to {}",
                change.path.display(),
                self.backup_paths(id).0.display()
            ))
            .step(format!(
                "set `{}` in {} ({}): {} → {} (temp file + rename)",
                change.key,
                change.path.display(),
                change.format.as_str(),
                show(current.as_ref()),
                change.value
            ));
        plan.reversible = true;
        plan.params = json!({
            "file": change.alias,
            "key": change.key,
            "value": change.value,
            "backup": id,
        });
        Ok(plan)
    }

    #[instrument(skip_all, fields(target = %plan.target), err)]
    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        let started = Instant::now();
        let change = self.change(&plan.params)?;
        let id = planned_backup(plan)?;
        if executor.dry_run() {
            return Ok(ActionOutcome {
                stdout: format!(
                    "dry run: would back up {} and set `{}` to {}",
                    change.path.display(),
                    change.key,
                    change.value
                ),
                ..ActionOutcome::ok(started.elapsed())
            });
        }
        let _one_at_a_time = self.lock.lock().await;
        let this = self.clone();
        let target = plan.target.clone();
        tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&change.path).map_err(|e| {
                io_error(format!("could not read {}", change.path.display()), e)
            })?;
            let text = String::from_utf8(bytes.clone()).map_err(|_| {
                Error::invalid(format!(
                    "{} is not UTF-8 text; patch_config edits text files only",
                    change.path.display()
                ))
            })?;
            let before = change.format.get(&text, &change.key)?;
            let new_text = change.format.set(&text, &change.key, &change.value)?;
            let after = change.format.get(&new_text, &change.key)?;
            if !after.is_some_and(|a| change.format.same(&a, &change.value)) {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("the edited {} does not read back `{}` = {}; nothing was written", change.path.display(), change.key, change.value),
                ));
            }
            let backup =
                this.take_backup(id, &target, &change.path, &bytes, new_text.as_bytes())?;
            let mode = std::fs::metadata(&change.path).ok().map(|m| m.permissions());
            write_atomic(&change.path, new_text.as_bytes(), mode)?;
            info!(file = %change.path.display(), key = %change.key, backup = %backup.id, "config patched");
            Ok(ActionOutcome {
                stdout: format!(
                    "set `{}` in {}: {} → {}; backup {}\n",
                    change.key,
                    change.path.display(),
                    show(before.as_ref()),
                    change.value,
                    backup.id
                ),
                ..ActionOutcome::ok(started.elapsed())
            })
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("the patch task failed: {e}")))?
    }

    #[instrument(skip_all, fields(target = %plan.target), err)]
    async fn rollback(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<Option<ActionOutcome>> {
        let started = Instant::now();
        let id = planned_backup(plan)?;
        if executor.dry_run() {
            return Ok(Some(ActionOutcome {
                stdout: format!("dry run: would restore backup {id}"),
                ..ActionOutcome::ok(started.elapsed())
            }));
        }
        let _one_at_a_time = self.lock.lock().await;
        let this = self.clone();
        let restored = tokio::task::spawn_blocking(move || this.restore(id, true))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Internal, format!("the restore task failed: {e}"))
            })??;
        match restored {
            Some(b) => Ok(Some(ActionOutcome {
                stdout: format!("restored {} from backup {id}\n", b.location),
                ..ActionOutcome::ok(started.elapsed())
            })),
            // No backup: execute failed before it changed anything.
            None => Ok(None),
        }
    }

    async fn backups(&self) -> Result<Vec<Backup>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.list())
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("the listing task failed: {e}")))?
    }

    async fn restore_backup(&self, id: Uuid) -> Result<Option<Backup>> {
        let _one_at_a_time = self.lock.lock().await;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.restore(id, false))
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("the restore task failed: {e}")))?
    }
}

fn planned_backup(plan: &RemediationPlan) -> Result<Uuid> {
    plan.params
        .get("backup")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::invalid("the plan has no backup id; make it with ConfigPatch::plan"))
}

#[cfg(test)]
mod tests;
