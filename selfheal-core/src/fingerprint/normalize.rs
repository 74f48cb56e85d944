//! The stateless normalizing fingerprinter: one pass over the message bytes, masking what varies.
//!
//! The scan walks the bytes once. A line is cut into *words* at whitespace and the
//! delimiters `, ; ( ) [ ] { } < > = : |`; a word is masked as `<*>` when it varies:
//!
//! | what | how it is recognised |
//! |---|---|
//! | integers, floats, hex, UUIDs, IPv4/IPv6 and ports, MAC addresses, timestamps, durations and sizes (`30ms`, `12MB`), block and request ids (`blk_-42`, `req-9bc3…`) | the word holds a digit |
//! | long hex without digits (`deadbeef`) | 8 or more hex digits |
//! | paths (`/etc/x`, `C:\x`) | the word starts with `/` or `\` |
//! | URLs, scheme and all (`https://h/p`, `redis://h:6379`) | a scheme word followed by `://` |
//! | emails | `@` and `.` in the word |
//! | quoted values (`"…"`, `'…'`, `` `…` ``) | from the opening quote to its closing quote, spaces included |
//! | `key=value` values | the word right after `=` |
//! | time zones (`10:00:00.123 UTC`) | a zone abbreviation right after a time |
//!
//! What tells errors apart stays, even where it looks like a value: an error code in
//! capitals at the start of the message or of a clause after `: `, bare (`WRONGTYPE
//! Operation…`, `FATAL:  sorry…`) or quoted and followed by `:` as redis-rs 1.x prints
//! it (`"OOM": command not allowed…`, `query failed: "NOAUTH": …`). A quoted capital
//! word elsewhere (`mode "FAST"`) and capital hex (`DEADBEEF1`) are still values. A
//! zone name that does not follow a time (`clock is not UTC`) is a word.
//!
//! Masks separated only by whitespace or `:` collapse into one (`10.0.0.7:5432`, `12:30:01`), so variable-length lists
//! (`@0x7fe… @0x7fe… @0xff…`) give one template. Whitespace collapses to one space.
//! Invalid UTF-8 is replaced (U+FFFD), never a panic; only the first
//! [`MAX_MESSAGE_BYTES`](crate::MAX_MESSAGE_BYTES) bytes of a line are read, without copying it.

#[cfg(test)]
mod reference;

use super::{Fingerprint, line_memo, stack_signature};
use crate::{Fingerprinter, MAX_MESSAGE_BYTES, Signal};

/// Masks numbers, hex, UUIDs, IPs, paths, URLs, emails, quoted values, timestamps,
/// durations, sizes and `key=value` values, then hashes the template.
///
/// ```
/// use selfheal_core::Normalizer;
/// let n = Normalizer::default();
/// assert_eq!(
///     n.template("Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106"),
///     "Receiving block <*> src: <*>"
/// );
/// ```
#[derive(Debug, Clone, Default)]
pub struct Normalizer {
    _private: (),
}

/// The mask that replaces every variable part.
pub const MASK: &str = "<*>";

/// Byte classes of the scanner, one table lookup per byte.
const WS: u8 = 1;
const DELIM: u8 = 2;
const QUOTE: u8 = 4;
const DIGIT: u8 = 8;
const HEX: u8 = 16;
const DOT: u8 = 32;
const NAME: u8 = 64;
const AT: u8 = 128;

const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let ws = b" \t\r\n\x0b\x0c";
    let mut i = 0;
    while i < ws.len() {
        t[ws[i] as usize] = WS;
        i += 1;
    }
    let delims = b",;()[]{}<>=:|";
    let mut i = 0;
    while i < delims.len() {
        t[delims[i] as usize] = DELIM;
        i += 1;
    }
    t[b'"' as usize] = QUOTE;
    t[b'\'' as usize] = QUOTE;
    t[b'`' as usize] = QUOTE;
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = DIGIT | HEX;
        c += 1;
    }
    let mut c = b'a';
    while c <= b'z' {
        t[c as usize] = NAME;
        t[(c - 32) as usize] = NAME;
        c += 1;
    }
    let mut c = b'a';
    while c <= b'f' {
        t[c as usize] |= HEX;
        t[(c - 32) as usize] |= HEX;
        c += 1;
    }
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] |= NAME;
        c += 1;
    }
    t[b'.' as usize] = DOT | NAME;
    t[b'-' as usize] = NAME;
    t[b'_' as usize] = NAME;
    t[b'@' as usize] = AT;
    t
};

/// Units that belong to the number before them (`30 ms`, `12 MB`, `1 sec`). A `match`
/// on literals compiles to a few integer comparisons, not one byte comparison per unit.
fn is_unit(word: &[u8]) -> bool {
    matches!(
        word,
        b"b" | b"B"
            | b"byte"
            | b"bytes"
            | b"kB"
            | b"KB"
            | b"MB"
            | b"GB"
            | b"TB"
            | b"KiB"
            | b"MiB"
            | b"GiB"
            | b"TiB"
            | b"ms"
            | b"us"
            | b"ns"
            | b"s"
            | b"sec"
            | b"secs"
            | b"second"
            | b"seconds"
            | b"min"
            | b"mins"
            | b"minute"
            | b"minutes"
            | b"h"
            | b"hr"
            | b"hrs"
            | b"hour"
            | b"hours"
            | b"day"
            | b"days"
    )
}

impl Normalizer {
    /// Masks the variable parts of `message`.
    pub fn template(&self, message: &str) -> String {
        let mut out = String::with_capacity(message.len().min(4096));
        self.template_into(message.as_bytes(), &mut out);
        out
    }

    /// Masks the variable parts of `message` (any bytes: invalid UTF-8 is replaced) into
    /// `out`, which is cleared first. Reusing `out` makes the scan allocation-free.
    /// Only the first [`MAX_MESSAGE_BYTES`] bytes are read.
    ///
    /// The template is a fixed point: normalizing it again gives it back, for every input.
    pub fn template_into(&self, message: &[u8], out: &mut String) {
        let kept_quote = scan(&message[..message.len().min(MAX_MESSAGE_BYTES)], out);
        debug_assert!(
            kept_quote || !out.bytes().any(|b| CLASS[usize::from(b)] & QUOTE != 0),
            "a quote in {out:?} that the scan did not tell"
        );
        if needs_settling(out, kept_quote) {
            settle(out);
        }
    }
}

/// How many more passes a template may take to settle before it becomes one mask.
const SETTLE_PASSES: usize = 4;

/// Whether one pass may have left a template that a second pass would change.
///
/// A template moves when read again only if it holds a quote (a quote opens a value or
/// a phrase depending on what the output holds before it, which masking changes:
/// `':`<2\x0c(<…` moved) or is longer than a line is read (replaced invalid UTF-8 takes
/// three bytes for one, and a second pass would read only the first
/// [`MAX_MESSAGE_BYTES`]). That is what fuzzing and the proptests show: no template
/// without a quote has been seen to move, and the `normalize` fuzz target checks it on
/// every run. Ordinary lines have neither, and the scan tells whether it kept a quote
/// (`kept_quote`), so they pay nothing more; of the 32,000 Loghub lines, 1,290 (4 %)
/// keep a quote and are read a second time.
fn needs_settling(template: &str, kept_quote: bool) -> bool {
    kept_quote || template.len() > MAX_MESSAGE_BYTES
}

/// Normalizes `template` again until a pass leaves it unchanged, so it is a fixed point
/// of [`Normalizer::template_into`]; a template over [`MAX_MESSAGE_BYTES`] is first cut
/// at a char boundary below it. Each pass can only resolve a quote's reading that the
/// pass before changed, so one more pass almost always settles it; a template still
/// moving after [`SETTLE_PASSES`] becomes one [`MASK`], itself a fixed point, and the
/// scan stays bounded.
fn settle(template: &mut String) {
    thread_local! {
        static NEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    let settled = NEXT.try_with(|next| match next.try_borrow_mut() {
        Ok(mut next) => settle_with(template, &mut next),
        Err(_) => settle_with(template, &mut String::new()),
    });
    if settled.is_err() {
        // Only while this thread is torn down.
        settle_with(template, &mut String::new());
    }
}

fn settle_with(template: &mut String, next: &mut String) {
    for _ in 0..SETTLE_PASSES {
        if template.len() > MAX_MESSAGE_BYTES {
            let mut cut = MAX_MESSAGE_BYTES;
            while !template.is_char_boundary(cut) {
                cut -= 1;
            }
            template.truncate(cut);
        }
        scan(template.as_bytes(), next);
        if next == template {
            return;
        }
        std::mem::swap(template, next);
    }
    template.clear();
    template.push_str(MASK);
}

/// One pass over `bytes` (already cut to the limit) into `out`, cleared first. Returns
/// whether it wrote a quote into `out` (a closed phrase may have taken it out again).
fn scan(bytes: &[u8], out: &mut String) -> bool {
    out.clear();
    let n = bytes.len();
    // Checked once: words of valid UTF-8 are copied without checking each again.
    let text = std::str::from_utf8(bytes).ok();
    let mut i = 0;
    // The previous delimiter was `=`: the next word is a value.
    let mut after_eq = false;
    // Whitespace was skipped since the last output.
    let mut pending_space = false;
    // Quote kinds with no closing quote left in the line (keeps the scan linear).
    let mut unclosed = [false; 3];
    // The last output is a number's mask and only whitespace followed: a unit joins it.
    let mut after_number = false;
    // The open quoted phrases, outermost first.
    let mut phrases = Phrases::default();
    // A quote was written to `out`.
    let mut kept_quote = false;
    while i < n {
        phrases.close_before(i, out);
        let c = bytes[i];
        let class = CLASS[c as usize];
        if class & WS != 0 {
            pending_space = !out.is_empty();
            after_eq = false;
            i += 1;
            continue;
        }
        if matches!(c, b'<' | b'>' | b'~') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            // `<1 sec`, `>5`: the comparison belongs to the value.
            i += 1;
            continue;
        }
        if c == b'<' && bytes[i..].starts_with(MASK.as_bytes()) {
            // An already masked value (a template replayed): stays one mask.
            let low = push_mask(out, pending_space);
            phrases.follow(out, low);
            pending_space = false;
            after_eq = false;
            i += MASK.len();
            continue;
        }
        if class & QUOTE != 0 {
            // A quote opens a value at the start, after whitespace or after a
            // delimiter (not after a masked word, so replaying a template is stable).
            let opens = pending_space
                || out.is_empty()
                || (!out.ends_with(MASK)
                    && out
                        .as_bytes()
                        .last()
                        .is_some_and(|&b| CLASS[b as usize] & DELIM != 0));
            let kind = match c {
                b'"' => 0,
                b'\'' => 1,
                _ => 2,
            };
            let end = if opens && !unclosed[kind] {
                closing_quote(bytes, i)
            } else {
                None
            };
            unclosed[kind] |= opens && end.is_none();
            // Quotes nest: one that closes a phrase, or would close past the end of
            // the phrase it is in, opens nothing.
            let end = end.filter(|&end| phrases.admits(i, end));
            if let Some(end) = end {
                let spaced = bytes[i + 1..end]
                    .iter()
                    .any(|&b| CLASS[b as usize] & WS != 0);
                if !after_eq
                    && (out.is_empty() || pending_space && out.ends_with(':'))
                    && matches!(bytes.get(end + 1), None | Some(b':'))
                    && is_error_code(&bytes[i + 1..end])
                {
                    // `"OOM": command not allowed` (redis-rs 1.x), also after a prefix
                    // (`query failed: "OOM": …`): the server's error code says which
                    // error it is, so it stays, quotes and all.
                    if pending_space {
                        out.push(' ');
                    }
                    push_bytes(out, &bytes[i..=end]);
                    kept_quote = true;
                    pending_space = false;
                    after_number = false;
                    i = end + 1;
                    continue;
                }
                if after_eq || !spaced {
                    let low = push_mask(out, pending_space);
                    phrases.follow(out, low);
                    pending_space = false;
                    after_eq = false;
                    i = end + 1;
                    continue;
                }
                // A quoted phrase (`"GET /v2/x HTTP/1.1"`) keeps its words; if none
                // stays apart once masked, it is one value after all.
                phrases.open(Phrase {
                    end,
                    mark: out.len(),
                    space: pending_space,
                });
                // Its opening quote stays apart from its first word, so a mask there
                // never takes the quote with it (a replayed template finds the same
                // phrase again).
                if pending_space {
                    out.push(' ');
                }
                out.push(c as char);
                kept_quote = true;
                pending_space = false;
                after_number = false;
                i += 1;
                continue;
            }
            // An apostrophe or an unclosed quote: part of the word.
        } else if class & DELIM != 0 {
            after_number = false;
            if c == b'(' && pending_space && bytes.get(i + 1) == Some(&b')') {
                // ` ()`: an empty value.
                let low = push_mask(out, true);
                phrases.follow(out, low);
                pending_space = false;
                i += 2;
                continue;
            }
            if c == b')' && out.ends_with(" (<*>") && out[..out.len() - 5].ends_with(MASK) {
                // `451 bytes (0.44 KB)`: a value and its other form are one value.
                out.truncate(out.len() - 5);
                phrases.follow(out, out.len());
                pending_space = false;
                i += 1;
                continue;
            }
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c as char);
            after_eq = c == b'=';
            i += 1;
            continue;
        }
        // A word: up to the next whitespace or delimiter.
        let start = i;
        // Classes seen in the word and classes of every byte. A quote may open the
        // word (an apostrophe, an unclosed quote); any other ends it.
        let mut classes = WordClasses::NONE;
        if class & QUOTE != 0 {
            classes.add(class);
            i += 1;
        }
        i = word_end(bytes, i, &mut classes);
        let digit = classes.any(DIGIT);
        let dot = classes.any(DOT);
        let all_hex = classes.every(HEX);
        let all_name = classes.every(NAME);
        let special = classes.any(AT);
        // `https://h/p`: the scheme is part of the URL, so `http` and `https` give one
        // template.
        let url = bytes[i..].starts_with(b"://") && is_scheme(&bytes[start..i]);
        if bytes[start] == b'/' || url {
            i = path_end(bytes, i);
        }
        let word = &bytes[start..i];
        let variable = after_eq
            || url
            || digit
            || (all_hex && word.len() >= 8)
            || matches!(word[0], b'/' | b'\\') && word.len() > 1
            || (special && dot)
            // A host name: `proxy.example.com` (two dots or more, a lowercase top label).
            || (all_name
                && dot
                && word[0] != b'.'
                && word.iter().filter(|&&b| b == b'.').count() >= 2
                && host_like(word))
            || is_calendar_word(word);
        if variable {
            let low = push_mask(out, pending_space);
            phrases.follow(out, low);
            after_number = digit;
        } else if after_number
            && pending_space
            && (is_unit(word) || is_time_zone(word) && ends_with_time(&bytes[..start]))
        {
            // The unit of the number just masked, or the zone of the time just masked
            // (`10:00:00.123 UTC`).
            after_number = false;
        } else {
            // Only a word's first byte can be a quote (any other ends the word).
            kept_quote |= CLASS[usize::from(word[0])] & QUOTE != 0;
            // The plain words after it stay too: copied with it in one go, unless a
            // phrase closes first (this word is its closing quote).
            if phrases.innermost_end >= i {
                i = plain_words_end(bytes, i);
            }
            if pending_space {
                out.push(' ');
            }
            match text.and_then(|t| t.get(start..i)) {
                Some(kept) => out.push_str(kept),
                None => push_bytes(out, &bytes[start..i]),
            }
            after_number = false;
        }
        pending_space = false;
        after_eq = false;
    }
    phrases.close_before(usize::MAX, out);
    kept_quote
}

/// Where the plain words that follow a kept word ending at `i` end: each is one space,
/// then a word of letters, `-` and `_` (no digit, `.` or `@`) that is not long hex, a
/// URL's scheme or a day or month name, so the scan keeps it as it is whatever came
/// before it. Much of what a line keeps is such runs: the scan copies a run with the word
/// before it in one go, instead of a turn of its loop for each space and each word.
///
/// A run stops at anything else, so it never reaches a quote and no quoted phrase closes
/// inside it; the caller checks that none closes before it.
#[inline]
fn plain_words_end(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i) == Some(&b' ') && bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
        let mut classes = WordClasses::NONE;
        let end = word_end(bytes, i + 1, &mut classes);
        let word = &bytes[i + 1..end];
        if classes.any(DIGIT | DOT | AT)
            || (classes.every(HEX) && word.len() >= 8)
            // Maybe a URL's scheme.
            || bytes.get(end) == Some(&b':')
            || is_calendar_word(word)
        {
            break;
        }
        i = end;
    }
    i
}

/// The classes of a word's bytes, in the eight byte lanes of a `u64`: or-ed lane by
/// lane in `seen`, and-ed lane by lane in `all` (a lane no byte reached stays all ones).
#[derive(Debug, Clone, Copy)]
struct WordClasses {
    seen: u64,
    all: u64,
}

impl WordClasses {
    const NONE: Self = WordClasses {
        seen: 0,
        all: u64::MAX,
    };

    /// Counts in one byte of class `k`.
    #[inline]
    fn add(&mut self, k: u8) {
        self.seen |= u64::from(k);
        self.all &= u64::from(k) | !0xFF;
    }

    /// Some byte has `bit`.
    #[inline]
    fn any(self, bit: u8) -> bool {
        self.seen & lanes(bit) != 0
    }

    /// Every byte has `bit`.
    #[inline]
    fn every(self, bit: u8) -> bool {
        self.all & lanes(bit) == lanes(bit)
    }
}

/// `b` in each of the eight bytes of a `u64`.
const fn lanes(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// Where the word that goes on at `i` ends (the next whitespace, delimiter or quote, or
/// the end), adding the classes of its bytes to `classes`.
///
/// Eight bytes at a time: their classes are looked up into one `u64` and the first that
/// ends the word is found with `trailing_zeros`, one branch per eight bytes instead of
/// one per byte.
#[inline]
fn word_end(bytes: &[u8], mut i: usize, classes: &mut WordClasses) -> usize {
    const STOP: u64 = lanes(WS | DELIM | QUOTE);
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut lane = 0u64;
        for (k, &b) in chunk.iter().enumerate() {
            lane |= u64::from(CLASS[usize::from(b)]) << (8 * k);
        }
        let stops = lane & STOP;
        if stops != 0 {
            // The bytes before the first stop.
            let len = stops.trailing_zeros() / 8;
            let before = (1u64 << (8 * len)) - 1;
            classes.seen |= lane & before;
            classes.all &= lane | !before;
            return i + len as usize;
        }
        classes.seen |= lane;
        classes.all &= lane;
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        let k = CLASS[usize::from(b)];
        if k & (WS | DELIM | QUOTE) != 0 {
            break;
        }
        classes.add(k);
        i += 1;
    }
    i
}

/// A quoted phrase (`"GET /v2/x HTTP/1.1"`) being scanned.
#[derive(Debug, Clone, Copy, Default)]
struct Phrase {
    /// The index of its closing quote in the line.
    end: usize,
    /// Where its words begin in the output: always a char boundary of the output, and
    /// never above its length.
    mark: usize,
    /// Whitespace was pending before it.
    space: bool,
}

/// Nested quoted phrases (`"say 'a b' now"`), outermost first. Each closes inside the one
/// around it; deeper ones than [`MAX_PHRASES`] are read as words. Most lines hold none,
/// so an empty stack costs nothing to make and one comparison per word to check.
#[derive(Debug)]
struct Phrases {
    open: Vec<Phrase>,
    /// The closing quote of the innermost open phrase (`usize::MAX` when none is open).
    innermost_end: usize,
}

/// How deep quoted phrases nest before deeper ones are read as words.
const MAX_PHRASES: usize = 64;

impl Default for Phrases {
    fn default() -> Self {
        Phrases {
            open: Vec::new(),
            innermost_end: usize::MAX,
        }
    }
}

impl Phrases {
    /// A quote at `at` closing at `end` may open a value or a phrase: it closes no open
    /// phrase, and it closes inside the innermost one.
    fn admits(&self, at: usize, end: usize) -> bool {
        self.open.iter().all(|p| p.end != at) && end <= self.innermost_end
    }

    /// Opens `p` (deeper phrases than there is room for are read as words).
    fn open(&mut self, p: Phrase) {
        if self.open.len() < MAX_PHRASES {
            self.innermost_end = p.end;
            self.open.push(p);
        }
    }

    /// Closes the phrases whose closing quote lies before `i`, innermost first.
    #[inline]
    fn close_before(&mut self, i: usize, out: &mut String) {
        if self.innermost_end < i {
            self.close_open_before(i, out);
        }
    }

    #[inline(never)]
    fn close_open_before(&mut self, i: usize, out: &mut String) {
        while let Some(&p) = self.open.last()
            && p.end < i
        {
            self.open.pop();
            self.innermost_end = self.open.last().map_or(usize::MAX, |p| p.end);
            let low = p.close(out);
            self.follow(out, low);
        }
    }

    /// Keeps each mark valid after a mask was pushed (or the output cut) and the output
    /// went down to `low` bytes on the way. A mask joins the value before it
    /// (`host.name:'5 x'`): when that reaches below a phrase's start, the phrase's first
    /// word has become part of that value, so the phrase now begins at the mask the
    /// output ends with. Its opening quote is gone from the output, so a template
    /// replayed sees no phrase there either.
    fn follow(&mut self, out: &str, low: usize) {
        for p in &mut self.open {
            if low < p.mark {
                debug_assert!(out.ends_with(MASK));
                p.mark = out.len().saturating_sub(MASK.len());
                p.space = false;
            }
        }
    }
}

impl Phrase {
    /// A quoted phrase whose words all merged into one value becomes one mask. Returns the
    /// shortest length `out` had on the way.
    fn close(self, out: &mut String) -> usize {
        if out.len() > self.mark && !out[self.mark..].trim_start().contains(' ') {
            out.truncate(self.mark);
            return push_mask(out, self.space);
        }
        out.len()
    }
}

/// The index of the quote closing the one at `open`: the next same quote that ends a word
/// (followed by the end, whitespace, a delimiter other than `<` `>`, or `.`).
fn closing_quote(bytes: &[u8], open: usize) -> Option<usize> {
    let q = bytes[open];
    let mut j = open + 1;
    while j < bytes.len() {
        if bytes[j] == q {
            let next = bytes.get(j + 1).copied();
            match next {
                None => return Some(j),
                // Not `<` or `>`: a mask may start there on a second pass.
                Some(b)
                    if (CLASS[b as usize] & (WS | DELIM) != 0 && b != b'<' && b != b'>')
                        || b == b'.' =>
                {
                    return Some(j);
                }
                _ => {}
            }
        }
        j += 1;
    }
    None
}

/// The last label of a dotted name is 2 to 6 lowercase letters (`com`, `hk`, `local`).
fn host_like(word: &[u8]) -> bool {
    let top = word.rsplit(|&b| b == b'.').next().unwrap_or(word);
    (2..=6).contains(&top.len()) && top.iter().all(u8::is_ascii_lowercase)
}

/// Where a path or the rest of a URL that reaches `i` ends: at the next whitespace or
/// quote, query string and all, but before its trailing `:`, `,`, `;` or a closing
/// bracket it did not open (and the punctuation after that: `(https://h/x): timed
/// out`), and before a mask already there.
fn path_end(bytes: &[u8], mut i: usize) -> usize {
    let tail = |at: usize| {
        bytes
            .get(at)
            .is_none_or(|&b| CLASS[usize::from(b)] & WS != 0)
    };
    // Brackets the path opened (`/wiki/Rust_(lang)`, `http://[::1]:80/`).
    let mut open = 0usize;
    while let Some(&b) = bytes.get(i) {
        if CLASS[usize::from(b)] & (WS | QUOTE) != 0 {
            break;
        }
        match b {
            b'(' | b'[' => open += 1,
            b')' | b']' if open > 0 => open -= 1,
            b')' | b']'
                if tail(i + 1)
                    || matches!(bytes.get(i + 1), Some(b':' | b',' | b';')) && tail(i + 2) =>
            {
                break;
            }
            b':' | b',' | b';' if tail(i + 1) => break,
            b'<' if bytes[i..].starts_with(MASK.as_bytes()) => break,
            _ => {}
        }
        i += 1;
    }
    i
}

/// A URL scheme (`https`, `git+ssh`): a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(word: &[u8]) -> bool {
    word.first().is_some_and(u8::is_ascii_alphabetic)
        && word
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// An error code as servers print them (`OOM`, `WRONGTYPE`, `FATAL`): 2 to 20 capital
/// letters, maybe joined by `_`. Hex of 8 digits or more (`DEADBEEF`) is a value.
fn is_error_code(word: &[u8]) -> bool {
    (2..=20).contains(&word.len())
        && word[0].is_ascii_uppercase()
        && word[word.len() - 1].is_ascii_uppercase()
        && word.iter().all(|&b| b.is_ascii_uppercase() || b == b'_')
        && !(word.len() >= 8 && word.iter().all(u8::is_ascii_hexdigit))
}

/// Time-zone abbreviations, masked only right after a time (`10:00:00 CET`).
fn is_time_zone(word: &[u8]) -> bool {
    matches!(
        word,
        b"UTC"
            | b"UT"
            | b"GMT"
            | b"Z"
            | b"WET"
            | b"WEST"
            | b"BST"
            | b"IST"
            | b"CET"
            | b"CEST"
            | b"MET"
            | b"MEST"
            | b"EET"
            | b"EEST"
            | b"MSK"
            | b"EST"
            | b"EDT"
            | b"CST"
            | b"CDT"
            | b"MST"
            | b"MDT"
            | b"PST"
            | b"PDT"
            | b"AKST"
            | b"AKDT"
            | b"HST"
            | b"AST"
            | b"ADT"
            | b"NST"
            | b"NDT"
            | b"BRT"
            | b"ART"
            | b"SAST"
            | b"WAT"
            | b"CAT"
            | b"EAT"
            | b"PKT"
            | b"WIB"
            | b"ICT"
            | b"SGT"
            | b"HKT"
            | b"PHT"
            | b"JST"
            | b"KST"
            | b"AWST"
            | b"ACST"
            | b"ACDT"
            | b"AEST"
            | b"AEDT"
            | b"NZST"
            | b"NZDT"
    )
}

/// `bytes`, once trailing whitespace is dropped, ends with a time of day: `12:30`,
/// `12:30:01`, `10:00:00.123` or `10:00:00,123`.
fn ends_with_time(bytes: &[u8]) -> bool {
    let mut j = bytes.len();
    while j > 0 && CLASS[usize::from(bytes[j - 1])] & WS != 0 {
        j -= 1;
    }
    let digits = |j: &mut usize| {
        let end = *j;
        while *j > 0 && bytes[*j - 1].is_ascii_digit() {
            *j -= 1;
        }
        end - *j
    };
    let last = digits(&mut j);
    if j > 0 && last > 0 && matches!(bytes[j - 1], b'.' | b',') {
        // A fraction of a second.
        j -= 1;
        if digits(&mut j) != 2 {
            return false;
        }
    } else if last != 2 {
        return false;
    }
    j >= 2 && bytes[j - 1] == b':' && bytes[j - 2].is_ascii_digit()
}

/// Day and month names, which only ever say when.
fn is_calendar_word(word: &[u8]) -> bool {
    if !(3..=9).contains(&word.len()) || !word[0].is_ascii_uppercase() {
        return false;
    }
    matches!(
        word,
        b"Mon"
            | b"Tue"
            | b"Wed"
            | b"Thu"
            | b"Fri"
            | b"Sat"
            | b"Sun"
            | b"Jan"
            | b"Feb"
            | b"Mar"
            | b"Apr"
            | b"Jun"
            | b"Jul"
            | b"Aug"
            | b"Sep"
            | b"Oct"
            | b"Nov"
            | b"Dec"
            | b"Monday"
            | b"Tuesday"
            | b"Wednesday"
            | b"Thursday"
            | b"Friday"
            | b"Saturday"
            | b"Sunday"
            | b"January"
            | b"February"
            | b"March"
            | b"April"
            | b"June"
            | b"July"
            | b"August"
            | b"September"
            | b"October"
            | b"November"
            | b"December"
    )
}

/// Pushes a mask, joining it with a value right before it. Returns the shortest length
/// `out` had on the way (a join cuts what it joins).
#[inline]
fn push_mask(out: &mut String, space: bool) -> usize {
    // Masks next to each other, or apart only by whitespace, collapse into one.
    if out.ends_with(MASK) {
        return out.len();
    }
    if !space && out.ends_with(':') {
        return join_mask(out);
    }
    let low = out.len();
    if space {
        out.push(' ');
    }
    out.push_str(MASK);
    low
}

/// [`push_mask`] right after a `:`, where the mask may join the value before it.
#[inline(never)]
fn join_mask(out: &mut String) -> usize {
    // `<*>:<*>` (address and port, a time, a MAC or IPv6 address) is one value, and so
    // is `host.name:<*>`.
    let joined = out.trim_end_matches(':');
    if joined.ends_with(MASK) {
        out.truncate(joined.len());
        return out.len();
    }
    let start = joined
        .rfind(|c: char| c == ' ' || (c.is_ascii() && CLASS[c as usize] & DELIM != 0))
        .map_or(0, |p| p + 1);
    if joined[start..].contains('.') {
        out.truncate(start);
        if out.ends_with("<*> ") {
            out.truncate(out.len() - 1);
            return out.len();
        }
        // What is left may join the mask in turn (`<*>:host.name:<*>`).
        return push_mask(out, false).min(start);
    }
    let low = out.len();
    out.push_str(MASK);
    low
}

fn push_bytes(out: &mut String, word: &[u8]) {
    match std::str::from_utf8(word) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(word)),
    }
}

impl Normalizer {
    /// The fingerprint of a raw line for `service`: any bytes, any length (only the
    /// first [`MAX_MESSAGE_BYTES`](crate::MAX_MESSAGE_BYTES) are read, as in
    /// [`template_into`](Self::template_into)).
    ///
    /// A line this thread fingerprinted recently for the same service (and, through
    /// [`Fingerprinter::fingerprint`], the same stack signature) is answered from a
    /// per-thread memo, without scanning it again: an error storm repeats one line word
    /// for word. The answer is the same either way; the memo keeps at most 1,024 lines
    /// of up to 512 bytes per thread (a longer line, service or stack signature is never
    /// kept), each only once it was seen twice.
    pub fn fingerprint_bytes(&self, service: &str, line: &[u8]) -> Fingerprint {
        line_memo::fingerprint(service, line, None, |stack| {
            self.with_template(line, |template| Fingerprint::new(service, template, stack))
        })
    }

    /// Runs `f` on the template of `line`, made in this thread's reusable buffer.
    fn with_template<T>(&self, line: &[u8], f: impl FnOnce(&str) -> T) -> T {
        thread_local! {
            static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        let mut f = Some(f);
        let shared = SCRATCH.try_with(|scratch| {
            let mut buf = scratch.try_borrow_mut().ok()?;
            self.template_into(line, &mut buf);
            f.take().map(|f| f(&buf))
        });
        if let Ok(Some(out)) = shared {
            return out;
        }
        // Only while this thread is torn down, or re-entered from `f`.
        let mut buf = String::new();
        self.template_into(line, &mut buf);
        let f = f
            .take()
            .expect("f runs once: the shared path did not call it");
        f(&buf)
    }
}

impl Fingerprinter for Normalizer {
    fn name(&self) -> &str {
        "normalizer"
    }

    fn fingerprint(&self, signal: &Signal) -> Fingerprint {
        let stack = signal
            .stack
            .as_deref()
            .map(stack_signature)
            .filter(|s| !s.is_empty());
        let line = signal.message.as_bytes();
        line_memo::fingerprint(&signal.service, line, stack, |stack| {
            self.with_template(line, |template| {
                Fingerprint::new(&signal.service, template, stack)
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn t(s: &str) -> String {
        Normalizer::default().template(s)
    }

    /// Each input gives its template.
    fn assert_templates(cases: &[(&str, &str)]) {
        for &(input, want) in cases {
            assert_eq!(t(input), want, "input: {input}");
        }
    }

    #[test]
    fn masks_what_varies() {
        assert_eq!(
            t("pool timed out while waiting for an open connection"),
            "pool timed out while waiting for an open connection"
        );
        assert_eq!(t("user 42 not found"), "user <*> not found");
        assert_eq!(
            t("GET /api/v1/users failed: status=503"),
            "GET <*> failed: status=<*>"
        );
        assert_eq!(t("key 'session:abc' missing"), "key <*> missing");
        assert_eq!(
            t("request 550e8400-e29b-41d4-a716-446655440000 took 30ms"),
            "request <*> took <*>"
        );
        assert_eq!(
            t("connect https://example.com:443/x refused"),
            "connect <*> refused"
        );
        assert_eq!(t("  spaces   collapse  "), "spaces collapse");
    }

    #[test]
    fn error_codes_stay_quoted_or_not() {
        // redis-rs 1.x quotes the codes it has no kind for; the server and other
        // clients print them bare. Each code is what tells the errors apart.
        let cases = [
            (
                "\"OOM\": command not allowed when used memory > 'maxmemory'.",
                "\"OOM\": command not allowed when used memory > <*>.",
            ),
            (
                "OOM command not allowed when used memory > 'maxmemory'.",
                "OOM command not allowed when used memory > <*>.",
            ),
            (
                "\"NOAUTH\": Authentication required.",
                "\"NOAUTH\": Authentication required.",
            ),
            (
                "\"WRONGTYPE\": Operation against a key holding the wrong kind of value",
                "\"WRONGTYPE\": Operation against a key holding the wrong kind of value",
            ),
            (
                "\"BUSY\": Redis is busy running a script.",
                "\"BUSY\": Redis is busy running a script.",
            ),
            (
                "\"NOSCRIPT\": No matching script.",
                "\"NOSCRIPT\": No matching script.",
            ),
            (
                "\"ERR\": unknown command 'FOO'",
                "\"ERR\": unknown command <*>",
            ),
            ("'READONLY': replica", "'READONLY': replica"),
            ("\"LOADING\"", "\"LOADING\""),
            (
                "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
                "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to <*>.",
            ),
            // After a prefix: the first word of the clause.
            (
                "query failed: \"OOM\": command not allowed when used memory > 'maxmemory'.",
                "query failed: \"OOM\": command not allowed when used memory > <*>.",
            ),
            (
                "Pipeline failure: [(Index 0, error: \"OOM\": command not allowed)]",
                "Pipeline failure: [(Index <*>, error: \"OOM\": command not allowed)]",
            ),
            (
                "An error was signalled by the server - ResponseError: OOM command not allowed",
                "An error was signalled by the server - ResponseError: OOM command not allowed",
            ),
            // PostgreSQL severities.
            (
                "FATAL:  sorry, too many clients already",
                "FATAL: sorry, too many clients already",
            ),
            (
                "db error: \"PANIC\": could not write to file",
                "db error: \"PANIC\": could not write to file",
            ),
            ("ERROR:  deadlock detected", "ERROR: deadlock detected"),
        ];
        assert_templates(&cases);
        let oom = |m: &str| Normalizer::default().fingerprint(&Signal::new("t", m)).id;
        assert_ne!(
            oom("\"OOM\": command not allowed when used memory > 'maxmemory'."),
            oom("\"BUSY\": command not allowed when used memory > 'maxmemory'.")
        );
    }

    #[test]
    fn capitals_that_are_values_are_still_masked() {
        let cases = [
            // Quoted capitals in the middle of a message are a value.
            ("key 'ABC' missing", "key <*> missing"),
            (
                "unknown mode \"FAST\" requested",
                "unknown mode <*> requested",
            ),
            ("error: \"FAST\" mode rejected", "error: <*> mode rejected"),
            ("tag=\"SCREEN_FROZEN\", uid=7", "tag=<*>, uid=<*>"),
            ("code=\"OOM\": full", "code=<*>: full"),
            // Hex and ids in capitals, first or not.
            ("id DEADBEEF1 not found", "id <*> not found"),
            ("\"DEADBEEF1\": not found", "<*>: not found"),
            ("\"DEADBEEF\": not found", "<*>: not found"),
            ("DEADBEEFCAFE: not found", "<*>: not found"),
            // Not all capitals.
            ("\"Oom\": full", "<*>: full"),
            ("\"X\": full", "<*>: full"),
        ];
        assert_templates(&cases);
    }

    #[test]
    fn a_url_is_one_mask_scheme_and_all() {
        assert_templates(&[
            (
                "error sending request for url (http://127.0.0.1:45691/v1/charge): timed out",
                "error sending request for url (<*>): timed out",
            ),
            (
                "error sending request for url (https://api.example.com/v1/charge): timed out",
                "error sending request for url (<*>): timed out",
            ),
            ("open file:///etc/app.toml failed", "open <*> failed"),
            ("dial redis://127.0.0.1:6379/0 refused", "dial <*> refused"),
            ("url=jdbc:postgresql://db:5432/app", "url=<*>"),
            ("fetch git+ssh://git@host/repo.git", "fetch <*>"),
            // A closing bracket and the punctuation after it are not the URL's.
            ("open (/var/lib/x.db): denied", "open (<*>): denied"),
            ("hosts [https://a/x], ok", "hosts [<*>], ok"),
            ("wiki https://w/Rust_(lang) page", "wiki <*> page"),
        ]);
        // Near misses: `word:word` without `//` is not a URL.
        assert_templates(&[
            ("key session:abc missing", "key session:abc missing"),
            ("error:timeout while reading", "error:timeout while reading"),
            ("mode http: disabled", "mode http: disabled"),
            ("see http:/x", "see http:<*>"),
        ]);
    }

    #[test]
    fn a_time_zone_goes_with_its_time() {
        assert_templates(&[
            // PostgreSQL's log prefix, in two zones.
            (
                "2026-12-04 10:00:00.123 UTC [123] FATAL:  sorry, too many clients already",
                "<*> [<*>] FATAL: sorry, too many clients already",
            ),
            (
                "2026-12-04 11:00:00.456 CET [9] FATAL:  sorry, too many clients already",
                "<*> [<*>] FATAL: sorry, too many clients already",
            ),
            ("at 10:00 PDT", "at <*>"),
            ("Fri Jul 01 08:16:53 PDT 2005", "<*>"),
            ("built on 06/10/2013 17:26 GMT", "built on <*>"),
            ("at 2026-12-04T10:00:00.5 CEST done", "at <*> done"),
            // Near misses: a zone not right after a time is a word.
            ("clock is not UTC", "clock is not UTC"),
            ("at 5 UTC", "at <*> UTC"),
            ("at 10:00:00 then UTC", "at <*> then UTC"),
            (
                "10:00:00 UTC expected, UTC given",
                "<*> expected, UTC given",
            ),
            // Nor is a capital word that is not a zone (a level after a time).
            ("10:00:00 ERROR boom", "<*> ERROR boom"),
            ("v 1:2 UTC", "v <*> UTC"),
        ]);
    }

    #[test]
    fn masks_each_kind_the_issue_names() {
        let cases = [
            ("took 1.5s", "took <*>"),
            ("ptr 0x7fed806eb5d", "ptr <*>"),
            ("digest deadbeefcafe", "digest <*>"),
            ("from 10.0.0.7:5432", "from <*>"),
            ("from [fe80::1ff:fe23:4567:890a]:443", "from [<*>]:<*>"),
            ("mac 00:1a:2b:3c:4d:5e up", "mac <*> up"),
            ("open /var/lib/x.db", "open <*>"),
            ("open C:\\Windows\\x.dll", "open C:<*>"),
            ("mail bob@example.com", "mail <*>"),
            ("at 2024-01-02T03:04:05Z", "at <*>"),
            ("used 12MB of 4GiB", "used <*> of <*>"),
            ("user=alice role=admin", "user=<*> role=<*>"),
            ("tag=\"View Lock\", name=x", "tag=<*>, name=<*>"),
            ("block blk_-42 and req-9bc3", "block <*> and <*>"),
            ("stack @0x7fe @0x7ff @0xff8", "stack <*>"),
        ];
        assert_templates(&cases);
    }

    #[test]
    fn apostrophes_are_not_quotes() {
        assert_eq!(t("don't retry, it's over"), "don't retry, it's over");
        assert_eq!(t("can't open 'ab' now"), "can't open <*> now");
        assert_eq!(t("can't open 'a b' now"), "can't open 'a b' now");
        assert_eq!(
            t(r#"10.0.0.1 "GET /v2/servers?all=True HTTP/1.1" status: 200"#),
            r#"<*> "GET <*>" status: <*>"#
        );
        assert_eq!(t("said '5 ms' then"), "said <*> then");
    }

    #[test]
    fn the_poison_lines_are_no_panic() {
        // A quoted phrase right after `host.name:`, with multibyte text in it: its first
        // word's mask used to join the value before the phrase, cutting the output below
        // where the phrase began, and the phrase's check then sliced inside a character.
        assert_eq!(
            t("config.yaml:'8 日本語の設定'"),
            "config.yaml:'<*> 日本語の設定'"
        );
        assert_eq!(t(".中:'0 中'"), ".中:'<*> 中'");
        // A phrase that is one value after all still joins the value before it.
        assert_eq!(t("a.b:'5 6'"), "<*>");
        assert_eq!(t("key a.b:'5 6' end"), "key <*> end");
        // An inner phrase that joins past the outer phrase's start.
        assert_eq!(t("a.b:\"c.d:'5 6' 日本\""), "<*> 日本\"");
        for line in [
            "config.yaml:'8 日本語の設定'",
            ".中:'0 中'",
            "a.b:\"c.d:'5 6' 日本\"",
        ] {
            let once = t(line);
            assert_eq!(t(&once), once, "{line}");
            let f = Normalizer::default().fingerprint(&Signal::new("t", line));
            assert_eq!(f.id.len(), 16);
        }
    }

    #[test]
    fn fuzz_found_nested_quotes() {
        // Nine phrases deep: more than the phrase stack held.
        let line = "' '\0]'\u{fffd}]'6 '6 '\0]'6 '6 '6 /]'";
        let once = t(line);
        assert_eq!(t(&once), once, "{line}");
    }

    #[test]
    fn fuzz_found_lines_are_fixed_points() {
        // Odd mixes of quotes and delimiters whose one-pass template moved when read
        // again: a quote's reading depends on what the output holds before it.
        for line in [
            "':`<2\u{c}(<\u{fffd}<`>=@@>=':`",
            "\0(<'\u{c}`=':`",
            "d:'5 &'.dc:5 2' ia'",
            ":'7 \"'.dc:5\"2' 日本\"<",
            "\t\u{c}:'5 \"'.dc:2' \n\0\t`",
        ] {
            let once = t(line);
            assert_eq!(t(&once), once, "{line}");
        }
    }

    #[test]
    fn a_template_longer_than_a_line_is_read_is_still_a_fixed_point() {
        // Each invalid byte becomes U+FFFD, three bytes: the first pass gives a template
        // three times the limit, of which a second pass would read only the limit.
        let n = Normalizer::default();
        let mut once = String::new();
        n.template_into(&vec![0xff; MAX_MESSAGE_BYTES], &mut once);
        assert!(once.len() <= MAX_MESSAGE_BYTES, "{}", once.len());
        assert!(once.len() > MAX_MESSAGE_BYTES - 4);
        assert_eq!(n.template(&once), once);
        // Quoted phrases with replaced bytes and numbers, past the limit.
        let mut line = Vec::new();
        while line.len() < MAX_MESSAGE_BYTES {
            line.extend_from_slice(b"x '\xff\xfe 5 \xfd' ");
        }
        n.template_into(&line, &mut once);
        assert!(once.len() <= MAX_MESSAGE_BYTES);
        assert_eq!(n.template(&once), once);
    }

    #[test]
    fn ordinary_lines_take_one_pass() {
        // No quote kept in the template and within the limit: nothing to settle.
        let settles = |line: &str| {
            let mut out = String::new();
            let kept_quote = scan(line.as_bytes(), &mut out);
            // The scan's word agrees with the template.
            assert_eq!(kept_quote, out.contains(['\'', '"', '`']), "{line}");
            needs_settling(&out, kept_quote)
        };
        for line in [
            "user 42 not found",
            "key 'session:abc' missing",
            "connect https://example.com:443/x refused",
        ] {
            assert!(!settles(line), "{line}");
        }
        for line in ["can't open 'a b' now", "\"OOM\": full", "x \"a b\" y"] {
            assert!(settles(line), "{line}");
        }
    }

    #[test]
    fn nested_quotes_close_inside_out() {
        assert_eq!(t("said \"run 'a b' now\" ok"), "said \"run 'a b' now\" ok");
        assert_eq!(t("said \"run '5 6' now\" ok"), "said \"run <*> now\" ok");
        // A quote closing past the phrase it is in opens nothing.
        for line in ["a<' a>':0 0'", "[`{} \"/中\"0 0`{\"]", "``𫝀 `<*> <*>``"] {
            let once = t(line);
            assert_eq!(t(&once), once, "{line}");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_a_panic() {
        let n = Normalizer::default();
        let mut out = String::new();
        n.template_into(b"bad \xff\xfe byte 7", &mut out);
        assert_eq!(out, "bad \u{fffd}\u{fffd} byte <*>");
        // A multi-byte char cut by the length limit is replaced too (the collapsed
        // spaces leave room for the replacement within the limit).
        let mut long = b"    ".to_vec();
        long.resize(MAX_MESSAGE_BYTES - 1, b'a');
        long.extend_from_slice("é tail".as_bytes());
        n.template_into(&long, &mut out);
        assert!(
            out.ends_with('\u{fffd}'),
            "{:?}",
            &out[out.len().saturating_sub(8)..]
        );
        // Without that room the template is cut at the limit, before the replacement.
        let mut long = vec![b'x'; MAX_MESSAGE_BYTES - 1];
        long.extend_from_slice("é tail".as_bytes());
        n.template_into(&long, &mut out);
        assert_eq!(out.len(), MAX_MESSAGE_BYTES - 1);
        assert!(out.bytes().all(|b| b == b'x'));
    }

    #[test]
    fn ten_megabyte_line_reads_only_the_limit() {
        let n = Normalizer::default();
        let mut line = b"boom ".repeat(2 * 1024 * 1024);
        line.extend_from_slice(b"tail-marker");
        assert!(line.len() >= 10 * 1024 * 1024);
        let f = n.fingerprint_bytes("svc", &line);
        assert!(f.template.len() <= MAX_MESSAGE_BYTES);
        assert!(!f.template.contains("tail-marker"));
        assert_eq!(
            f.id,
            n.fingerprint_bytes("svc", &line[..MAX_MESSAGE_BYTES]).id
        );
    }

    #[test]
    fn same_shape_same_id_different_service_different_id() {
        let f = Normalizer::default();
        let a = f.fingerprint(&Signal::new("t", "timeout after 100ms"));
        let b = f.fingerprint(&Signal::new("t", "timeout after 2500ms"));
        let c = f.fingerprint(&Signal::new("t", "timeout after 2500ms").service("other"));
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
    }

    pub(crate) mod props {
        use super::*;
        use proptest::prelude::*;

        /// Pieces that reach the scanner's corners: multibyte text (CJK, emoji, combining
        /// marks), values that get masked (numbers, hex, paths, URLs, host names, masks
        /// already there), quotes, delimiters and whitespace.
        pub(crate) fn piece() -> impl Strategy<Value = String> {
            prop_oneof![
                "[\\p{Han}ぁ-ゖ]{1,4}",
                "[😀-🙏🚀-🛿]{1,2}",
                "[a-zé][\u{300}-\u{36f}]{1,2}",
                "[a-zA-Z]{1,6}",
                any::<u32>().prop_map(|n| n.to_string()),
                "0x[0-9a-f]{1,8}",
                "[0-9]{1,3}\\.[0-9]{1,3}(ms|MB| ms| bytes)?",
                "/[a-z日中]{1,4}(/[a-z語]{1,3}){0,2}",
                "https://[a-z]{1,5}\\.com(:[0-9]{2,4})?/[a-z中]{0,3}",
                "[a-z中]{1,5}\\.[a-z]{2,4}(\\.[a-z]{2,3})?",
                Just(MASK.to_owned()),
                "[:=,;()\\[\\]{}<>|.@~-]",
                "['\"`]",
                "[ \t]{1,2}",
            ]
        }

        /// Up to 24 pieces, glued or apart.
        pub(crate) fn tricky_line() -> impl Strategy<Value = String> {
            proptest::collection::vec(piece(), 0..24).prop_map(|p| p.concat())
        }

        /// Quotes and brackets nested a few levels deep around tricky text.
        pub(crate) fn nested_line() -> impl Strategy<Value = String> {
            let leaf = proptest::collection::vec(piece(), 0..6).prop_map(|p| p.concat());
            leaf.prop_recursive(4, 24, 3, |inner| {
                (
                    proptest::collection::vec(inner, 1..4),
                    "['\"`(\\[{]",
                    proptest::collection::vec(piece(), 0..4).prop_map(|p| p.concat()),
                )
                    .prop_map(|(parts, open, before)| {
                        let close = match open.as_str() {
                            "(" => ")",
                            "[" => "]",
                            "{" => "}",
                            q => q,
                        }
                        .to_owned();
                        format!("{before}{open}{}{close}", parts.join(" "))
                    })
            })
        }

        /// A line with quoted spans whose insides mix multibyte text with masks, numbers,
        /// host names joined by `:` and more quotes: where one pass used to panic or move.
        pub(crate) fn quoted_multibyte() -> impl Strategy<Value = String> {
            let inside = proptest::collection::vec(
                prop_oneof![
                    "[\\p{Han}ぁ-ゖ]{1,3}",
                    "[😀-🙏]",
                    "[a-zé][\u{300}-\u{36f}]",
                    Just(MASK.to_owned()),
                    "[0-9]{1,3}",
                    "[a-z中]{1,3}\\.[a-z]{2,3}:",
                    "['\"`]",
                    "[ :=(<>]",
                ],
                1..8,
            )
            .prop_map(|p| p.concat());
            let span = (piece(), "['\"`]", inside, "['\"`]?", "[ .:,]?").prop_map(
                |(before, open, inside, close, after)| {
                    format!("{before}{open}{inside}{close}{after}")
                },
            );
            proptest::collection::vec(span, 1..4).prop_map(|s| s.concat())
        }

        /// Bytes drawn from quotes, delimiters, digits, multibyte characters whole and
        /// cut, and invalid UTF-8.
        pub(crate) fn quote_heavy_bytes() -> impl Strategy<Value = Vec<u8>> {
            let chunk = prop::sample::select(vec![
                &b"'"[..],
                b"\"",
                b"`",
                b" ",
                b":",
                b"=",
                b"(",
                b")",
                b"<",
                b">",
                b"[",
                b"]",
                b"{",
                b"}",
                b",",
                b"|",
                b".",
                b"@",
                b"~",
                b"/",
                b"*",
                b"<*>",
                b"0",
                b"42",
                b"a",
                b"x.y",
                b"\x0c",
                b"\xff",
                "日本".as_bytes(),
                "😀".as_bytes(),
                "e\u{301}".as_bytes(),
                &"中".as_bytes()[..2],
            ]);
            proptest::collection::vec(chunk, 0..48).prop_map(|c| c.concat())
        }

        proptest! {
            #[test]
            fn any_bytes_no_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let n = Normalizer::default();
                let mut out = String::new();
                n.template_into(&bytes, &mut out);
                prop_assert!(!out.starts_with(' ') && !out.ends_with(' '));
                // A template normalized again is unchanged.
                prop_assert_eq!(n.template(&out), out);
                let f = n.fingerprint_bytes("s", &bytes);
                prop_assert_eq!(f.id.len(), 16);
            }

            #[test]
            fn log_like_text_normalizes_to_a_fixed_point(line in "[a-zA-Z0-9 :.=/'\"`<>*(),@_-]{0,64}") {
                // Built from the bytes the scanner treats specially, so their mixes come up.
                let n = Normalizer::default();
                let once = n.template(&line);
                prop_assert_eq!(n.template(&once), once);
            }

            #[test]
            fn multibyte_next_to_masks_no_panic_and_idempotent(line in tricky_line()) {
                let n = Normalizer::default();
                let once = n.template(&line);
                prop_assert!(!once.starts_with(' ') && !once.ends_with(' '));
                prop_assert_eq!(n.template(&once), once, "line: {:?}", line);
            }

            #[test]
            fn nested_quotes_no_panic_and_idempotent(line in nested_line()) {
                let n = Normalizer::default();
                let once = n.template(&line);
                prop_assert_eq!(n.template(&once), once, "line: {:?}", line);
            }

            #[test]
            fn multibyte_inside_quotes_and_masks_is_a_fixed_point(line in quoted_multibyte()) {
                let n = Normalizer::default();
                let once = n.template(&line);
                prop_assert!(!once.starts_with(' ') && !once.ends_with(' '));
                prop_assert_eq!(n.template(&once), once, "line: {:?}", line);
            }

            #[test]
            fn bytes_around_quotes_are_a_fixed_point(bytes in quote_heavy_bytes()) {
                let n = Normalizer::default();
                let mut once = String::new();
                n.template_into(&bytes, &mut once);
                prop_assert_eq!(n.template(&once), once, "bytes: {:?}", bytes);
            }

            #[test]
            fn numbers_never_change_the_id(a in 0u64.., b in 0u64.., word in "[a-z]{1,12}") {
                let n = Normalizer::default();
                let x = n.fingerprint_bytes("s", format!("{word} failed after {a}ms on port {b}").as_bytes());
                let y = n.fingerprint_bytes("s", format!("{word} failed after {b}ms on port {a}").as_bytes());
                prop_assert_eq!(x.id, y.id);
            }
        }
    }
}
