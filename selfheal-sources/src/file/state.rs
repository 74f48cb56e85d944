//! The paths a file tail follows and one pass over them: blocking file I/O, run on
//! tokio's blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::Settings;
use super::cursor::{Cursor, Head, Ident, Position, Stored};
use super::discover;
use super::follow::{Counts, Follow, Handed, Known};
use crate::lines::{LineParser, Lines};

/// The most bytes one pass reads from one file, so one busy file neither starves the
/// others nor piles up signals.
const PASS_BUDGET: usize = 1 << 20;

/// A signal read in a pass, with the follow it came from.
pub(crate) type Read = (usize, Handed);

/// Every followed path.
#[derive(Debug)]
pub(crate) struct State {
    settings: Arc<Settings>,
    follows: Vec<Follow>,
    known: Known,
    pub counts: Counts,
    last_rescan: Instant,
    /// The last error of each path, logged once until it changes.
    errors: HashMap<PathBuf, String>,
    /// Places the cursor keeps instead of a follow's own: before signals the healer
    /// did not take in (it stopped).
    held: HashMap<PathBuf, Position>,
}

impl State {
    /// The paths the patterns name now: each where the cursor says the tail stopped,
    /// else at its end (history), or at its start with `from_start`.
    pub(crate) fn start(settings: Arc<Settings>, cursor: &Cursor) -> State {
        let mut state = State {
            follows: Vec::new(),
            known: Known::default(),
            counts: Counts::default(),
            last_rescan: Instant::now(),
            errors: HashMap::new(),
            held: HashMap::new(),
            settings,
        };
        for stored in &cursor.files {
            state.known.remember(
                Ident {
                    id: stored.id,
                    head: stored.head,
                },
                stored.offset,
            );
        }
        let mut paths = discover::paths(&state.settings.patterns, state.settings.max_files);
        // A stored path the globs no longer match (rotated away while stopped, no new
        // file yet) still has the rest of its old file to read.
        for stored in &cursor.files {
            if paths.len() < state.settings.max_files
                && !paths.contains(&stored.path)
                && state.settings.matches(&stored.path)
            {
                paths.push(stored.path.clone());
            }
        }
        for path in paths {
            let mut follow = state.follow(path);
            let opened = match cursor.get(&follow.path) {
                Some(stored) => follow.resume(stored),
                None if state.settings.from_start => follow.resume(&Stored {
                    path: follow.path.clone(),
                    id: None,
                    head: Head::default(),
                    offset: 0,
                }),
                None => follow.open_at_end(),
            };
            match opened {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => state.error(&follow.path, &e),
            }
            state.follows.push(follow);
        }
        state
    }

    fn follow(&self, path: PathBuf) -> Follow {
        let parser = match (&self.settings.parser, &self.settings.target) {
            (Some(parser), _) => parser.clone(),
            (None, Some(target)) => LineParser::new(target.clone()),
            (None, None) => LineParser::new(stem(&path)),
        };
        Follow::new(path, Lines::new(parser), self.settings.max_line_bytes)
    }

    /// Reads what every file got, expanding the globs again first when `changed` or
    /// when it is time. `true` when a file has more to read now.
    pub(crate) fn pass(&mut self, changed: bool) -> (Vec<Read>, bool) {
        if changed || self.last_rescan.elapsed() >= self.settings.rescan_interval {
            self.rescan();
        }
        self.known.open = self.follows.iter().flat_map(Follow::open_ids).collect();
        let mut out = Vec::new();
        let mut more = false;
        for i in 0..self.follows.len() {
            let mut read = Vec::new();
            let mut budget = PASS_BUDGET;
            let follow = &mut self.follows[i];
            match follow.poll(&mut self.known, &mut budget, &mut self.counts, &mut read) {
                Ok(m) => {
                    more |= m;
                    self.errors.remove(&follow.path);
                }
                Err(e) => {
                    let path = follow.path.clone();
                    self.error(&path, &e);
                }
            }
            self.follows[i].flush_idle(self.settings.idle_flush, &mut read);
            out.extend(read.into_iter().map(|h| (i, h)));
        }
        (out, more)
    }

    /// Follows the paths that appeared (from their start: they are new); stops
    /// following glob matches that are gone.
    fn rescan(&mut self) {
        self.last_rescan = Instant::now();
        let paths = discover::paths(&self.settings.patterns, self.settings.max_files);
        let settings = self.settings.clone();
        self.follows.retain(|f| {
            paths.contains(&f.path) || f.is_open() || f.flush_due(settings.idle_flush).is_some()
        });
        for path in paths {
            if self.follows.iter().any(|f| f.path == path) {
                continue;
            }
            if self.follows.len() >= self.settings.max_files {
                tracing::debug!(max = self.settings.max_files, path = %path.display(), "the file tail follows its most files; this one is not read");
                continue;
            }
            tracing::debug!(path = %path.display(), "following a new file");
            let follow = self.follow(path);
            self.follows.push(follow);
        }
    }

    fn error(&mut self, path: &Path, e: &std::io::Error) {
        let text = e.to_string();
        if self.errors.get(path) != Some(&text) {
            tracing::warn!(path = %path.display(), error = %text, "could not read a followed file; trying again");
            self.errors.insert(path.to_owned(), text);
        }
    }

    /// The signals starting at `unread` (follow, place) were not taken in (the healer
    /// stopped): the cursor stays before each follow's first one, so they are read
    /// again next time.
    pub(crate) fn hold(&mut self, unread: impl IntoIterator<Item = (usize, Position)>) {
        for (i, from) in unread {
            let path = self.follows[i].path.clone();
            self.held.entry(path).or_insert(from);
        }
    }

    /// Where every followed path stands.
    pub(crate) fn cursor(&self) -> Cursor {
        let files = self
            .follows
            .iter()
            .map(|f| {
                let place = self.held.get(&f.path).copied().unwrap_or_else(|| f.place());
                Stored {
                    path: f.path.clone(),
                    id: place.file.id,
                    head: place.file.head,
                    offset: place.offset,
                }
            })
            .filter(|s| s.id.is_some() || s.offset > 0)
            .collect();
        Cursor { files }
    }

    /// When the next pass is due: at the poll interval, or sooner when a signal is to
    /// be handed over for want of more of its trace.
    pub(crate) fn next_pass(&self) -> tokio::time::Instant {
        let poll = Instant::now() + self.settings.poll_interval;
        let due = self
            .follows
            .iter()
            .filter_map(|f| f.flush_due(self.settings.idle_flush))
            .fold(poll, Instant::min);
        tokio::time::Instant::from_std(due)
    }

    /// Paths with a file open.
    pub(crate) fn open_files(&self) -> usize {
        self.follows.iter().filter(|f| f.is_open()).count()
    }
}

/// A path's file name without its extensions (`orders` for `/var/log/orders.log`).
fn stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let stem = name.split('.').next().unwrap_or_default();
    if stem.is_empty() {
        "app".to_owned()
    } else {
        stem.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stem_of_a_path_is_its_name_without_extensions() {
        assert_eq!(stem(Path::new("/var/log/orders.log")), "orders");
        assert_eq!(
            stem(Path::new("/var/log/orders.2026-12-04.log.1")),
            "orders"
        );
        assert_eq!(stem(Path::new("/var/log/.hidden")), "app");
        assert_eq!(stem(Path::new("/")), "app");
    }
}
