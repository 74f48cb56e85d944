//! Which paths a file tail follows (its patterns, globs expanded), and the watcher
//! that wakes it when something changes in their directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// Whether `pattern` holds glob syntax (else it is one path, followed even before it
/// exists).
pub(crate) fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The paths `patterns` name now: each plain path as it is, each glob's matching
/// files, at most `max` in all (in pattern order, each glob's matches sorted).
pub(crate) fn paths(patterns: &[String], max: usize) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for pattern in patterns {
        if !is_glob(pattern) {
            push(&mut out, PathBuf::from(pattern), max);
            continue;
        }
        match glob::glob(pattern) {
            Ok(matches) => {
                for path in matches.filter_map(Result::ok) {
                    if path.is_file() {
                        push(&mut out, path, max);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(pattern, error = %e, "not a glob pattern; it follows nothing");
            }
        }
    }
    out
}

fn push(out: &mut Vec<PathBuf>, path: PathBuf, max: usize) {
    if out.len() >= max {
        tracing::debug!(max, path = %path.display(), "the file tail follows its most files; this one is not read");
    } else if !out.contains(&path) {
        out.push(path);
    }
}

/// The directory to watch for `pattern`, and whether below it too: its leading part
/// without glob syntax (`/var/log/app` for `/var/log/app/*.log`, recursive with `**`),
/// or a plain path's parent.
pub(crate) fn watch_dir(pattern: &str) -> (PathBuf, RecursiveMode) {
    let mode = if pattern.contains("**") {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    };
    let mut dir = PathBuf::new();
    for part in Path::new(pattern).components() {
        if is_glob(&part.as_os_str().to_string_lossy()) {
            break;
        }
        dir.push(part);
    }
    if !is_glob(pattern) {
        dir.pop();
    }
    if dir.as_os_str().is_empty() {
        dir.push(".");
    }
    (dir, mode)
}

/// Wakes the tail when a watched directory changes, and says when files may have come
/// or gone there (so the globs are expanded again at once).
pub(crate) struct Watch {
    watcher: Option<notify::RecommendedWatcher>,
    watched: Vec<PathBuf>,
    /// Files came, went or were renamed since the tail last looked.
    pub changed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("watched", &self.watched)
            .finish()
    }
}

impl Watch {
    /// A watcher that notifies `wake`; without one (the platform has none, or it is
    /// turned off) the tail polls.
    pub(crate) fn new(enabled: bool, wake: Arc<Notify>) -> Watch {
        let changed = Arc::new(AtomicBool::new(false));
        let flag = changed.clone();
        let watcher = if enabled {
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let files_changed = match &event {
                    Ok(event) => matches!(
                        event.kind,
                        EventKind::Create(_)
                            | EventKind::Remove(_)
                            | EventKind::Modify(notify::event::ModifyKind::Name(_))
                    ),
                    // An overflowed queue or a watch error: look again at everything.
                    Err(_) => true,
                };
                if files_changed {
                    flag.store(true, Ordering::Relaxed);
                }
                wake.notify_one();
            })
            .map_err(|e| {
                tracing::info!(error = %e, "no file watcher on this platform; the file tail polls");
            })
            .ok()
        } else {
            None
        };
        Watch {
            watcher,
            watched: Vec::new(),
            changed,
        }
    }

    /// Watches the directories of `patterns` not watched yet (one that does not exist
    /// yet is tried again next time).
    pub(crate) fn add(&mut self, patterns: &[String]) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        for pattern in patterns {
            let (dir, mode) = watch_dir(pattern);
            if self.watched.contains(&dir) || !dir.is_dir() {
                continue;
            }
            match watcher.watch(&dir, mode) {
                Ok(()) => self.watched.push(dir),
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "could not watch a log directory; polling it");
                }
            }
        }
    }

    /// Whether any directory is watched.
    pub(crate) fn is_watching(&self) -> bool {
        !self.watched.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_dirs_of_patterns() {
        assert_eq!(
            watch_dir("/var/log/app/*.log"),
            (PathBuf::from("/var/log/app"), RecursiveMode::NonRecursive)
        );
        assert_eq!(
            watch_dir("/var/log/**/*.log"),
            (PathBuf::from("/var/log"), RecursiveMode::Recursive)
        );
        assert_eq!(
            watch_dir("/var/log/app.log"),
            (PathBuf::from("/var/log"), RecursiveMode::NonRecursive)
        );
        assert_eq!(watch_dir("app.log").0, PathBuf::from("."));
        assert_eq!(watch_dir("*.log").0, PathBuf::from("."));
    }

    #[test]
    fn globs_expand_to_files_and_plain_paths_stay() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.log", "b.log", "c.txt"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("d.log")).unwrap();
        let glob = format!("{}/*.log", dir.path().display());
        let missing = format!("{}/later.log", dir.path().display());
        let got = paths(&[glob.clone(), missing.clone(), glob], 10);
        assert_eq!(
            got,
            [
                dir.path().join("a.log"),
                dir.path().join("b.log"),
                PathBuf::from(&missing)
            ]
        );
        assert_eq!(
            paths(&[format!("{}/*.log", dir.path().display())], 1).len(),
            1
        );
        assert!(paths(&["[".to_owned()], 10).is_empty());
    }
}
