//! One followed path: the file open at it (and the one rotated away, read to its end
//! first), its lines cut at a bound, its traces joined, and the place up to which
//! every line was handed over. Blocking I/O: it runs on tokio's blocking pool.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use selfheal_core::Signal;

use super::cursor::{FileId, HEAD_BYTES, Head, Ident, Position, Stored};
use crate::lines::Lines;

/// Bytes read from a file per `read` call.
const CHUNK: usize = 64 * 1024;
/// Entries of a directory looked through for a file rotated away while the tail was
/// stopped.
const MAX_DIR_ENTRIES: usize = 10_000;

/// A signal read from a file, with the place its first line starts.
#[derive(Debug)]
pub(crate) struct Handed {
    pub signal: Signal,
    pub from: Position,
}

/// What reading has met so far (since the tail started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub lines: u64,
    pub rotations: u64,
    pub truncations: u64,
    pub cut_lines: u64,
    pub invalid_utf8: u64,
}

/// The files (by identity) the tail knows: how far each was read, so a file that shows
/// up at another path (renamed by a rotation, matched by a glob again) goes on from
/// there and is never read again from its start; and which are open, so one file is
/// read by one follow at a time.
#[derive(Debug, Default)]
pub(crate) struct Known {
    read: HashMap<FileId, (u64, Head)>,
    /// The files open in some follow (as of the start of the pass, and what the pass
    /// opened since).
    pub open: HashSet<FileId>,
}

/// The most identities remembered in [`Known`].
const MAX_KNOWN: usize = 4096;

impl Known {
    /// Notes that the file `file` was read up to `offset`.
    pub(crate) fn remember(&mut self, file: Ident, offset: u64) {
        let Some(id) = file.id else { return };
        if self.read.len() >= MAX_KNOWN
            && !self.read.contains_key(&id)
            && let Some(old) = self.read.keys().next().copied()
        {
            // Forget an arbitrary one: files come and go slowly, this is only a bound.
            self.read.remove(&old);
        }
        self.read.insert(id, (offset, file.head));
    }

    /// Forgets a deleted file: a new file may get its inode.
    fn forget(&mut self, file: Ident) {
        if let Some(id) = file.id {
            self.read.remove(&id);
        }
    }
}

/// An open file being read.
#[derive(Debug)]
struct Open {
    file: File,
    ident: Ident,
    /// The read position.
    read: u64,
}

impl Open {
    fn at(path: &Path, offset: u64) -> io::Result<Open> {
        let mut file = File::open(path)?;
        let id = FileId::of(&file.metadata()?);
        let head = Head::read(&mut file, HEAD_BYTES, offset)?;
        Ok(Open {
            file,
            ident: Ident { id, head },
            read: offset,
        })
    }

    /// Moves to `offset`.
    fn seek(&mut self, offset: u64) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(offset))?;
        self.read = offset;
        Ok(())
    }

    /// Takes the head again while it is shorter than what was read past it (the file
    /// was short when opened).
    fn refresh_head(&mut self) -> io::Result<()> {
        if u64::from(self.ident.head.head_len) < self.read.min(HEAD_BYTES as u64) {
            self.ident.head = Head::read(&mut self.file, HEAD_BYTES, self.read)?;
        }
        Ok(())
    }
}

/// One followed path.
#[derive(Debug)]
pub(crate) struct Follow {
    pub path: PathBuf,
    current: Option<Open>,
    /// The file that was at `path` before a rotation: read to its end before `current`.
    rotated: Option<Open>,
    /// The line being assembled: the bytes after the last line break, at most
    /// `max_line` of them.
    partial: Vec<u8>,
    /// The line being assembled went over `max_line`; the rest of it is dropped.
    cut: bool,
    /// Where the line being assembled starts.
    line_start: u64,
    max_line: usize,
    lines: Lines,
    /// Where the signal waiting in `lines` starts.
    pending_from: Option<Position>,
    last_line_at: Instant,
}

impl Follow {
    /// A path not opened yet.
    pub(crate) fn new(path: PathBuf, lines: Lines, max_line: usize) -> Follow {
        Follow {
            path,
            current: None,
            rotated: None,
            partial: Vec::new(),
            cut: false,
            line_start: 0,
            max_line,
            lines,
            pending_from: None,
            last_line_at: Instant::now(),
        }
    }

    /// Opens the file at its end (a file that was there before the tail started, with
    /// no stored place): what it holds is history.
    pub(crate) fn open_at_end(&mut self) -> io::Result<()> {
        let mut open = Open::at(&self.path, 0)?;
        open.read = open.file.seek(SeekFrom::End(0))?;
        self.line_start = open.read;
        self.current = Some(open);
        Ok(())
    }

    /// Opens the file where `stored` says the tail stopped. When the file at the path
    /// is another one (rotated while the tail was stopped), the one it had read is
    /// looked for in the same directory (by identity: `app.log.1`) and read from the
    /// stored offset to its end first; when it is gone, the new file is read from its
    /// start, and what the old one got after the stored offset is lost (logged).
    pub(crate) fn resume(&mut self, stored: &Stored) -> io::Result<()> {
        let mut now = match Open::at(&self.path, 0) {
            Ok(open) => Some(open),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some(open) = &mut now
            && (stored.id.is_none()
                || (open.ident.id == stored.id && stored.head.matches(&mut open.file, 0)?))
        {
            if open.file.metadata()?.len() >= stored.offset {
                open.seek(stored.offset)?;
            } else {
                tracing::warn!(path = %self.path.display(), "the file shrank while the tail was stopped; reading it from its start");
            }
            self.line_start = open.read;
            self.current = now;
            return Ok(());
        }
        match stored.id.and_then(|id| find(&self.path, id, stored.head)) {
            Some((old, mut open)) => {
                tracing::info!(path = %self.path.display(), rotated = %old.display(), "the file was rotated while the tail was stopped; reading the rest of the old one first");
                let offset = stored.offset.min(open.file.metadata()?.len());
                open.seek(offset)?;
                self.line_start = offset;
                self.rotated = Some(open);
            }
            None => {
                tracing::warn!(path = %self.path.display(), "the file was rotated while the tail was stopped and the old one is gone; reading the new one from its start (lines the old one got after the stored place are lost)");
                self.line_start = 0;
            }
        }
        self.current = now;
        Ok(())
    }

    /// Reads what the file got since the last call, at most `budget` bytes (less what
    /// it used), handing each finished signal to `out`. Follows a rotation (the old
    /// file to its end, then the new one from its start) and a truncation (from the
    /// start again). `true` when there is more to read now (the budget ran out).
    pub(crate) fn poll(
        &mut self,
        known: &mut Known,
        budget: &mut usize,
        counts: &mut Counts,
        out: &mut Vec<Handed>,
    ) -> io::Result<bool> {
        // A rotation leads to one more step (the new file); a few in a row are a bound.
        for _ in 0..4 {
            if let Some(more) = self.step(known, budget, counts, out)? {
                return Ok(more);
            }
        }
        Ok(true)
    }

    /// One step of [`Follow::poll`]: `Some(more)` when done, `None` to step again.
    fn step(
        &mut self,
        known: &mut Known,
        budget: &mut usize,
        counts: &mut Counts,
        out: &mut Vec<Handed>,
    ) -> io::Result<Option<bool>> {
        if let Some(mut rotated) = self.rotated.take() {
            match self.drain(&mut rotated, budget, counts, out) {
                Ok(true) => {}
                Ok(false) => {
                    self.rotated = Some(rotated);
                    return Ok(Some(true));
                }
                Err(e) => {
                    self.rotated = Some(rotated);
                    return Err(e);
                }
            }
            self.end_of_file(&rotated, counts, out);
            known.remember(rotated.ident, rotated.read);
            self.line_start = self.current.as_ref().map_or(0, |c| c.read);
        }
        if self.current.is_none() {
            match self.open_new(known) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(false)),
                Err(e) => return Err(e),
            }
        }
        let Some(mut current) = self.current.take() else {
            return Ok(Some(false));
        };
        let drained = match self.read_current(&mut current, budget, counts, out) {
            Ok(drained) => drained,
            Err(e) => {
                self.current = Some(current);
                return Err(e);
            }
        };
        known.remember(current.ident, self.line_start);
        if !drained {
            self.current = Some(current);
            return Ok(Some(true));
        }
        match std::fs::metadata(&self.path) {
            Ok(meta) if FileId::of(&meta).is_some() && FileId::of(&meta) != current.ident.id => {
                // Rotated: a new file is at the path. The old one is read to its end
                // (a last write may have come since), then the new one from its start.
                counts.rotations += 1;
                tracing::info!(path = %self.path.display(), "the file was rotated; reading the new one");
                self.rotated = Some(current);
                match self.open_new(known) {
                    Ok(()) => Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e),
                }
            }
            Ok(_) => {
                self.current = Some(current);
                Ok(Some(false))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Moved or deleted, no new file yet: done with this one (holding it
                // open would keep a deleted file's space); a file that appears at the
                // path later is read from its start.
                self.end_of_file(&current, counts, out);
                known.forget(current.ident);
                self.line_start = 0;
                Ok(Some(false))
            }
            Err(e) => {
                self.current = Some(current);
                Err(e)
            }
        }
    }

    /// Reads the current file to its end (`true`) or until the budget runs out, from
    /// its start again when it was truncated.
    fn read_current(
        &mut self,
        current: &mut Open,
        budget: &mut usize,
        counts: &mut Counts,
        out: &mut Vec<Handed>,
    ) -> io::Result<bool> {
        if current.file.metadata()?.len() < current.read {
            counts.truncations += 1;
            tracing::info!(path = %self.path.display(), "the file was truncated; reading it from its start");
            self.partial.clear();
            self.cut = false;
            self.flush(out);
            current.file.seek(SeekFrom::Start(0))?;
            current.read = 0;
            self.line_start = 0;
        }
        self.drain(current, budget, counts, out)
    }

    /// Opens the file now at the path from its start, or from where it was read up to
    /// when it is a file already seen.
    fn open_new(&mut self, known: &mut Known) -> io::Result<()> {
        let mut open = Open::at(&self.path, 0)?;
        if let Some(id) = open.ident.id {
            if known.open.contains(&id) {
                // Another follow reads it (the glob matched its rotated name): this one
                // takes it once that one is done with it.
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "read by another follow",
                ));
            }
            known.open.insert(id);
        }
        if let Some(&(offset, head)) = open.ident.id.as_ref().and_then(|id| known.read.get(id))
            && offset <= open.file.metadata()?.len()
            && head.matches(&mut open.file, 0)?
        {
            open.seek(offset)?;
        }
        if self.rotated.is_none() {
            self.line_start = open.read;
        }
        self.current = Some(open);
        Ok(())
    }

    /// Reads `open` to its end or until the budget runs out (`false` then).
    fn drain(
        &mut self,
        open: &mut Open,
        budget: &mut usize,
        counts: &mut Counts,
        out: &mut Vec<Handed>,
    ) -> io::Result<bool> {
        let mut buf = [0u8; CHUNK];
        loop {
            open.refresh_head()?;
            if *budget == 0 {
                return Ok(false);
            }
            let want = buf.len().min(*budget);
            let n = match open.file.read(&mut buf[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(true);
            }
            *budget -= n;
            let base = open.read;
            open.read += n as u64;
            self.take(&buf[..n], base, open.ident, counts, out);
        }
    }

    /// Splits `bytes` (read from offset `base`) into lines.
    fn take(
        &mut self,
        bytes: &[u8],
        base: u64,
        file: Ident,
        counts: &mut Counts,
        out: &mut Vec<Handed>,
    ) {
        let mut at = 0;
        while let Some(nl) = bytes[at..].iter().position(|&b| b == b'\n') {
            self.extend(&bytes[at..at + nl]);
            at += nl + 1;
            self.end_line(base + at as u64, file, counts, out);
        }
        self.extend(&bytes[at..]);
    }

    /// Adds to the line being assembled what fits under the bound.
    fn extend(&mut self, piece: &[u8]) {
        let room = self.max_line.saturating_sub(self.partial.len());
        if piece.len() > room {
            self.cut = true;
        }
        self.partial
            .extend_from_slice(&piece[..piece.len().min(room)]);
    }

    /// The line being assembled is complete; the next one starts at `next`.
    fn end_line(&mut self, next: u64, file: Ident, counts: &mut Counts, out: &mut Vec<Handed>) {
        let start = Position {
            file,
            offset: self.line_start,
        };
        counts.lines += 1;
        if self.cut {
            counts.cut_lines += 1;
        }
        let text = String::from_utf8_lossy(&self.partial);
        if matches!(text, std::borrow::Cow::Owned(_)) {
            counts.invalid_utf8 += 1;
        }
        if let Some(signal) = self.lines.push(&text) {
            out.push(Handed {
                signal,
                from: self.pending_from.take().unwrap_or(start),
            });
        }
        if !self.lines.is_pending() {
            self.pending_from = None;
        } else if self.pending_from.is_none() {
            self.pending_from = Some(start);
        }
        self.partial.clear();
        self.cut = false;
        self.line_start = next;
        self.last_line_at = Instant::now();
    }

    /// A file was read to its end for good (rotated away, deleted): its last line, even
    /// without a line break, is complete, and so is any trace it ended with.
    fn end_of_file(&mut self, open: &Open, counts: &mut Counts, out: &mut Vec<Handed>) {
        if !self.partial.is_empty() || self.cut {
            self.end_line(open.read, open.ident, counts, out);
        }
        self.flush(out);
    }

    /// Hands over the signal waiting for more of its trace.
    fn flush(&mut self, out: &mut Vec<Handed>) {
        if let Some(signal) = self.lines.flush() {
            let from = self.pending_from.take().unwrap_or(Position {
                file: Ident::default(),
                offset: self.line_start,
            });
            out.push(Handed { signal, from });
        }
    }

    /// Hands over the signal waiting for more of its trace when no line came for
    /// `idle`.
    pub(crate) fn flush_idle(&mut self, idle: Duration, out: &mut Vec<Handed>) {
        if self.lines.is_pending() && self.last_line_at.elapsed() >= idle {
            self.flush(out);
        }
    }

    /// When a waiting signal is to be handed over if no line comes.
    pub(crate) fn flush_due(&self, idle: Duration) -> Option<Instant> {
        self.lines.is_pending().then(|| self.last_line_at + idle)
    }

    /// The place up to which every line was handed over: the start of the signal
    /// waiting for its trace, else of the line being assembled; in the rotated-away
    /// file while it is being read.
    pub(crate) fn place(&self) -> Position {
        self.pending_from.unwrap_or(Position {
            file: self
                .rotated
                .as_ref()
                .or(self.current.as_ref())
                .map(|o| o.ident)
                .unwrap_or_default(),
            offset: self.line_start,
        })
    }

    /// Whether a file is open at the path (or the one rotated away from it).
    pub(crate) fn is_open(&self) -> bool {
        self.current.is_some() || self.rotated.is_some()
    }

    /// The files this follow has open.
    pub(crate) fn open_ids(&self) -> impl Iterator<Item = FileId> + '_ {
        [&self.current, &self.rotated]
            .into_iter()
            .filter_map(|o| o.as_ref().and_then(|o| o.ident.id))
    }
}

/// The file in `path`'s directory (not `path` itself) with the identity `id` and the
/// head `head`, opened.
fn find(path: &Path, id: FileId, head: Head) -> Option<(PathBuf, Open)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::read_dir(dir)
        .ok()?
        .take(MAX_DIR_ENTRIES)
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p != path)
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && FileId::of(&m) == Some(id)))
        .find_map(|p| {
            let mut open = Open::at(&p, 0).ok()?;
            head.matches(&mut open.file, 0).ok()?.then_some((p, open))
        })
}
