//! Finds the known pattern behind a signal: regex first, then BM25 keyword scoring.
//!
//! Matching reads each text (the message, each error-bearing field, the stack's first
//! 64 KiB) a bounded number of times, whatever the number of patterns:
//!
//! - Regexes: every enabled pattern's regex is compiled into one [`RegexSet`] (with the
//!   options of [`Pattern::compile_regex`]: case-insensitive unless the regex says
//!   otherwise), so each text is read once and that one read says which patterns'
//!   regexes matched. Bounded repetitions of Unicode classes are what make a set big:
//!   `[^\n]{0,80}` alone compiles to tens of KB, so a thousand regexes each holding one
//!   do not fit the set's 32 MiB; `[^\n]*?` costs a few hundred bytes.
//! - Regexes, when the set is too big (with a warning): each regex alone, behind a
//!   prefilter. Each regex is parsed (by the regex crate's own parser) into literals
//!   every match must contain: `\bkafka\b[^\n]{0,80}?pool drained` needs `pool drained`,
//!   `[a-z]+ failed` needs ` failed`, `\w+` needs nothing. On an ASCII text one
//!   Aho-Corasick pass finds which of them occur, and only the regexes needing one of
//!   those, plus those that need nothing, are run: a thousand patterns cost a handful of
//!   regex runs. A text that is not ASCII runs every regex (slower, the same matches):
//!   Unicode case folding makes `(?i)k` match the Kelvin sign and `(?i)s` the long s,
//!   which an ASCII search does not see.
//! - Keywords: the pattern documents are indexed when the matcher is built (each term
//!   with the patterns that hold it and its BM25 weight in each, and each pattern's
//!   ideal score), so a signal's words are looked up once and only the patterns sharing
//!   a word with it are scored.
//!
//! - Targets: the patterns share a few target restrictions (`*redis*|*cache*`); each
//!   distinct one is split and lower-cased once, when the matcher is built, and asked
//!   at most once per signal, before any regex of its patterns runs.
//!
//! The matches, their order, confidences and reasons are those of trying every pattern
//! in turn.

use std::collections::HashMap;

use regex::{Regex, RegexSet};

use crate::pattern::TargetSpec;
use crate::{Pattern, PatternMatch, PatternMode, Severity, Signal};
use prefilter::Prefilter;

mod prefilter;

/// How much of a stack the regexes read: a 10 MB trace costs what 64 KiB does.
const MATCHED_STACK_BYTES: usize = 64 * 1024;
/// Keyword-only matches are weighted below regex matches: words alone are weaker evidence.
const KEYWORD_WEIGHT: f64 = 0.75;
/// A keyword match needs at least this share of the pattern's ideal BM25 score.
const KEYWORD_MIN_SHARE: f64 = 0.34;
const BM25_K1: f64 = 1.2;
const BM25_B: f64 = 0.75;
/// How big the compiled set of all regexes may grow before the matcher falls back to
/// one regex at a time (each regex alone stays under its own 1 MiB limit).
const SET_SIZE_LIMIT: usize = 32 << 20;
/// The set's lazy DFA cache (per thread using it): room for the states of many
/// patterns, so a large catalog does not thrash it back to the slow engine.
const SET_DFA_CACHE: usize = 8 << 20;

/// A compiled set of patterns. Cheap to query, rebuilt when patterns change.
#[derive(Debug, Default)]
pub struct Matcher {
    entries: Vec<Entry>,
    regexes: Regexes,
    /// Every term of the documents of the patterns that have keywords.
    terms: foldhash::HashMap<String, Term>,
    /// The distinct target restrictions of the patterns, read once.
    targets: Vec<TargetSpec>,
}

#[derive(Debug)]
struct Entry {
    pattern: Pattern,
    /// The BM25 score its own keywords would get: `None` without keyword terms.
    ideal: Option<f64>,
    /// Its target restriction's place among the distinct ones: patterns share a few
    /// (`*redis*|…`), and whether one lets a signal through is asked once per signal.
    target: Option<usize>,
}

/// A term of the keyword index.
#[derive(Debug)]
struct Term {
    /// Its position in the index (to remember which terms a query already used).
    id: usize,
    /// The entries whose document holds it, in entry order, with its BM25 weight there.
    postings: Vec<(usize, f64)>,
}

/// How the regexes are run.
#[derive(Debug, Default)]
struct Regexes {
    /// Every regex, `(entry, regex)` in entry order; member `i` of the prefilter and the
    /// set is `each[i]`.
    each: Vec<(usize, Regex)>,
    /// All of them as one set, which reads each text once for all; `None` when it did
    /// not compile (or there are no regexes).
    set: Option<RegexSet>,
    /// Without the set: which members can match an ASCII text (the others are not run).
    prefilter: Prefilter,
    /// Per member, its place when the members are ranked as their matches are (highest
    /// severity, then confidence, then catalog order): [`Matcher::best`] tries them in
    /// that order and stops at the first that matches.
    rank: Vec<u32>,
}

/// A pattern that matched, before its reasons are written.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    entry: usize,
    /// Its regex matched (else: keywords did, with this share of the ideal score).
    regex: bool,
    share: f64,
    confidence: f64,
    severity: Severity,
}

impl Matcher {
    /// Compiles the enabled patterns. Patterns whose regex does not compile are skipped
    /// (the store refuses them when added, so this only guards against edited rows).
    pub fn new(patterns: &[Pattern]) -> Self {
        Self::with_set_limit(patterns, SET_SIZE_LIMIT)
    }

    fn with_set_limit(patterns: &[Pattern], set_size_limit: usize) -> Self {
        let mut entries = Vec::new();
        let mut regexes = Vec::new();
        // Per entry: the term frequencies of its document (name, description,
        // keywords), its length, and the terms of its keywords.
        let mut docs: Vec<(HashMap<String, usize>, usize, Vec<String>)> = Vec::new();
        let mut target_ids = HashMap::<&str, usize>::new();
        let mut targets = Vec::new();
        for p in patterns.iter().filter(|p| p.enabled) {
            let regex = match p.compile_regex() {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(pattern = %p.name, error = %e, "skipping pattern with invalid regex");
                    continue;
                }
            };
            if let Some(re) = regex {
                regexes.push((entries.len(), re));
            }
            let mut doc = tokens(&p.name);
            doc.extend(tokens(&p.description));
            let keywords: Vec<String> = p.keywords.iter().flat_map(|k| tokens(k)).collect();
            doc.extend(keywords.iter().cloned());
            let mut terms = HashMap::new();
            for t in &doc {
                *terms.entry(t.clone()).or_insert(0) += 1;
            }
            docs.push((terms, doc.len(), keywords));
            let target = p.target.as_deref().map(|t| {
                *target_ids.entry(t).or_insert_with(|| {
                    targets.push(TargetSpec::new(t));
                    targets.len() - 1
                })
            });
            entries.push(Entry {
                pattern: p.clone(),
                ideal: None,
                target,
            });
        }
        let regexes = Self::one_pass(&entries, regexes, set_size_limit);

        let mut df: HashMap<&str, usize> = HashMap::new();
        for (terms, _, _) in &docs {
            for t in terms.keys() {
                *df.entry(t).or_insert(0) += 1;
            }
        }
        let n = entries.len() as f64;
        let avg_len = if docs.is_empty() {
            1.0
        } else {
            docs.iter().map(|(_, len, _)| len).sum::<usize>() as f64 / n
        };
        let weight = |term: &str, tf: usize, len: usize| {
            bm25_weight(n, df[term] as f64, tf as f64, len as f64, avg_len)
        };
        let mut index = foldhash::HashMap::<String, Term>::default();
        for (i, (terms, len, keywords)) in docs.iter().enumerate() {
            if keywords.is_empty() {
                continue;
            }
            let mut seen = std::collections::HashSet::new();
            let ideal = keywords
                .iter()
                .filter(|t| seen.insert(t.as_str()))
                .map(|t| weight(t, terms[t], *len))
                .sum();
            entries[i].ideal = Some(ideal);
            for (t, tf) in terms {
                let next = index.len();
                index
                    .entry(t.clone())
                    .or_insert_with(|| Term {
                        id: next,
                        postings: Vec::new(),
                    })
                    .postings
                    .push((i, weight(t, *tf, *len)));
            }
        }
        Matcher {
            entries,
            regexes,
            terms: index,
            targets,
        }
    }

    /// One set of every regex or, when it is too big, each regex alone behind the
    /// prefilter.
    fn one_pass(entries: &[Entry], each: Vec<(usize, Regex)>, size_limit: usize) -> Regexes {
        if each.is_empty() {
            return Regexes::default();
        }
        let sources = || {
            each.iter()
                .map(|&(i, _)| entries[i].pattern.regex.as_deref().unwrap_or_default())
        };
        let mut order: Vec<usize> = (0..each.len()).collect();
        // Stable: equals keep the catalog's order.
        order.sort_by(|&a, &b| {
            let (a, b) = (&entries[each[a].0].pattern, &entries[each[b].0].pattern);
            b.severity
                .cmp(&a.severity)
                .then_with(|| b.confidence.total_cmp(&a.confidence))
        });
        let mut rank = vec![0; each.len()];
        for (place, &m) in order.iter().enumerate() {
            rank[m] = place as u32;
        }
        match crate::pattern::regex_set(sources(), size_limit, SET_DFA_CACHE) {
            Ok(set) => Regexes {
                each,
                set: Some(set),
                prefilter: Prefilter::default(),
                rank,
            },
            Err(e) => {
                tracing::warn!(
                    patterns = each.len(),
                    size_limit,
                    error = %first_line(&e.to_string()),
                    "the patterns' regexes are too big to run as one set; running only those whose literals occur in an ASCII text, and each in turn on other texts (slower, same matches): disable unused patterns or shorten the largest regexes"
                );
                Regexes {
                    prefilter: Prefilter::new(sources()),
                    each,
                    set: None,
                    rank,
                }
            }
        }
    }

    /// The patterns it holds.
    pub fn patterns(&self) -> impl Iterator<Item = &Pattern> {
        self.entries.iter().map(|e| &e.pattern)
    }

    /// One pattern by name.
    pub fn pattern(&self, name: &str) -> Option<&Pattern> {
        self.patterns().find(|p| p.name == name)
    }

    /// Every pattern that matches `signal`, best first: regex matches before keyword
    /// matches, then the highest severity, then confidence (ties: catalog order).
    ///
    /// A regex is tried against the message, the error-bearing fields
    /// ([`ERROR_FIELDS`](crate::ERROR_FIELDS)) and the stack; keywords are scored over
    /// the message and the error-bearing fields. Each text is read once for all the
    /// regexes when they fit one set; when they do not, only the regexes whose required
    /// literals occur in an ASCII text are run.
    pub fn matches(&self, signal: &Signal) -> Vec<PatternMatch> {
        let mut found = self.candidates(signal);
        // Regex matches first (keywords are weaker evidence: a keyword-only match of a
        // severe pattern must not outrank the pattern whose regex matched), then the
        // highest severity, then confidence. Stable: ties keep the catalog's order.
        found.sort_by(|a, b| rank(b, a));
        found.iter().map(|c| self.explain(c)).collect()
    }

    /// The best match, if any: the first of [`Matcher::matches`], without writing the
    /// others' reasons or sorting them.
    ///
    /// A regex match outranks every keyword match, so the regexes are tried first, best
    /// ranked first, and the first that matches (and whose pattern applies to the
    /// signal) is the answer: the other regexes are not run and no keyword is scored.
    /// Keywords are scored only when no regex match applies.
    pub fn best(&self, signal: &Signal) -> Option<PatternMatch> {
        let best = self
            .best_by_regex(signal)
            .or_else(|| self.best_by_keywords(signal))?;
        Some(self.explain(&best))
    }

    /// The best-ranked pattern whose regex matches one of the signal's texts and that
    /// applies to the signal.
    fn best_by_regex(&self, signal: &Signal) -> Option<Candidate> {
        if self.regexes.each.is_empty() {
            return None;
        }
        let mut buf = [""; MAX_TEXTS];
        let texts = texts_into(signal, &mut buf);
        let mut members = self.regex_members(texts);
        members.sort_unstable_by_key(|&(m, _)| self.regexes.rank[m]);
        let mut targets = TargetAnswers::default();
        members.into_iter().find_map(|(m, on)| {
            let entry = self.regexes.each[m].0;
            if !self.admits(entry, signal, &mut targets) || !self.regex_matches(m, on, texts) {
                return None;
            }
            Some(self.regex_candidate(entry))
        })
    }

    /// The members of the regexes that may match one of `texts`, each once, with the
    /// texts (one bit each) it may match. With the set, one read of each text says
    /// which do match, and the bits are not needed; without it, the prefilter says which
    /// may match an ASCII text, and every member may match another.
    fn regex_members(&self, texts: &[&str]) -> Vec<(usize, u8)> {
        let regexes = &self.regexes;
        let mut members: Vec<(usize, u8)> = Vec::new();
        if let Some(set) = &regexes.set {
            for text in texts {
                members.extend(set.matches(text).iter().map(|m| (m, 0)));
            }
            members.sort_unstable();
            members.dedup();
            return members;
        }
        if regexes.each.is_empty() {
            return Vec::new();
        }
        // Their union, then per text the members that may match it: on the stack up to
        // 4,096 members for one text (fewer for more texts).
        let words = regexes.each.len().div_ceil(64);
        let need = words * (texts.len() + 1);
        let (mut on_stack, mut on_heap) = ([0u64; 128], Vec::new());
        let bits = zeroed_words(&mut on_stack, &mut on_heap, need);
        let (union, per_text) = bits.split_at_mut(words);
        for (maybe, text) in per_text.chunks_exact_mut(words).zip(texts) {
            if text.is_ascii() {
                regexes.prefilter.candidates(text, maybe);
            } else {
                maybe.fill(u64::MAX);
            }
            for (u, m) in union.iter_mut().zip(maybe.iter()) {
                *u |= m;
            }
        }
        let mut members = Vec::new();
        for (w, &bits) in union.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                let m = w * 64 + b as usize;
                if m >= regexes.each.len() {
                    break;
                }
                let on = per_text
                    .chunks_exact(words)
                    .enumerate()
                    .fold(0u8, |on, (t, maybe)| {
                        on | (((maybe[w] >> b) & 1) as u8) << t
                    });
                members.push((m, on));
            }
        }
        members
    }

    /// Whether member `m` of [`Matcher::regex_members`] matches one of the texts `on`
    /// names (always, when the set found it).
    fn regex_matches(&self, m: usize, on: u8, texts: &[&str]) -> bool {
        let re = &self.regexes.each[m].1;
        self.regexes.set.is_some()
            || texts
                .iter()
                .enumerate()
                .any(|(t, text)| on & (1 << t) != 0 && re.is_match(text))
    }

    /// The best-ranked keyword match that applies to the signal (regexes aside).
    fn best_by_keywords(&self, signal: &Signal) -> Option<Candidate> {
        let mut best: Option<Candidate> = None;
        let mut targets = TargetAnswers::default();
        for (entry, score) in self.keyword_scores(signal) {
            let Some(c) = self.keyword_candidate(entry, score) else {
                continue;
            };
            // Only a strictly better one replaces: the first of equals wins, as in the
            // sort of `matches`. Whether it applies is asked last: it is the dearest test.
            if best.is_none_or(|b| rank(&c, &b).is_gt()) && self.admits(entry, signal, &mut targets)
            {
                best = Some(c);
            }
        }
        best
    }

    /// A regex match of `entry`, as a match.
    fn regex_candidate(&self, entry: usize) -> Candidate {
        let p = &self.entries[entry].pattern;
        Candidate {
            entry,
            regex: true,
            share: 1.0,
            confidence: p.confidence,
            severity: p.severity,
        }
    }

    /// A keyword score as a match, when it reaches the minimum share of the ideal.
    fn keyword_candidate(&self, entry: usize, score: f64) -> Option<Candidate> {
        let e = &self.entries[entry];
        let ideal = e.ideal?;
        let share = score / ideal.max(f64::EPSILON);
        if share < KEYWORD_MIN_SHARE {
            return None;
        }
        let p = &e.pattern;
        Some(Candidate {
            entry,
            regex: false,
            share,
            confidence: p.confidence * share.min(1.0) * KEYWORD_WEIGHT,
            severity: p.severity,
        })
    }

    /// Whether the pattern of `entry` applies to the signal: its target and error type.
    /// `targets` holds the answers for the signal's target so far.
    fn admits(&self, entry: usize, signal: &Signal, targets: &mut TargetAnswers) -> bool {
        let e = &self.entries[entry];
        let p = &e.pattern;
        e.target
            .is_none_or(|t| targets.get_or(t, || self.targets[t].admits(signal)))
            && p.error_type
                .as_ref()
                .is_none_or(|t| signal.fields.get("error.type") == Some(t))
    }

    /// The patterns that match `signal`, in catalog order.
    fn candidates(&self, signal: &Signal) -> Vec<Candidate> {
        let regex_hits = self.regex_hits(signal);
        let keyword_hits = self.keyword_scores(signal);
        let mut targets = TargetAnswers::default();
        let mut out = Vec::new();
        let (mut r, mut k) = (regex_hits.iter().peekable(), keyword_hits.iter().peekable());
        loop {
            // Merge the two lists (both in entry order); a regex hit wins over keywords.
            let (entry, regex, score) = match (r.peek(), k.peek()) {
                (None, None) => break,
                (Some(&&i), Some(&&(j, _))) if i == j => {
                    r.next();
                    k.next();
                    (i, true, 0.0)
                }
                (Some(&&i), Some(&&(j, _))) if i < j => {
                    r.next();
                    (i, true, 0.0)
                }
                (Some(&&i), None) => {
                    r.next();
                    (i, true, 0.0)
                }
                (_, Some(&&(j, score))) => {
                    k.next();
                    (j, false, score)
                }
            };
            // The cheap test first: most keyword scores are below the minimum share.
            let candidate = if regex {
                self.regex_candidate(entry)
            } else {
                let Some(c) = self.keyword_candidate(entry, score) else {
                    continue;
                };
                c
            };
            if !self.admits(entry, signal, &mut targets) {
                continue;
            }
            out.push(candidate);
        }
        out
    }

    /// The entries whose regex matches the message, an error text or the stack's
    /// prefix: sorted, once each.
    fn regex_hits(&self, signal: &Signal) -> Vec<usize> {
        let mut buf = [""; MAX_TEXTS];
        let texts = texts_into(signal, &mut buf);
        let mut hits: Vec<usize> = self
            .regex_members(texts)
            .into_iter()
            .filter(|&(m, on)| self.regex_matches(m, on, texts))
            .map(|(m, _)| self.regexes.each[m].0)
            .collect();
        // Members come in member order, which is entry order; sorted all the same, since
        // the answer's order is part of `matches`' contract.
        hits.sort_unstable();
        hits
    }

    /// The BM25 score of every entry with keywords that shares a term with the
    /// message and the error texts, in entry order. Each distinct term counts once.
    fn keyword_scores(&self, signal: &Signal) -> Vec<(usize, f64)> {
        if self.terms.is_empty() {
            return Vec::new();
        }
        let mut seen = vec![0u64; self.terms.len().div_ceil(64)];
        // Per entry, the sum of its weights, the terms in the order the query first uses
        // them (so the sums are the ones scoring the query term by term gives, to the
        // last bit); allocated at the first term found.
        let mut sums: Vec<f64> = Vec::new();
        let mut scored: Vec<u64> = Vec::new();
        let mut lower = String::new();
        for text in std::iter::once(signal.message.as_str()).chain(error_texts(signal)) {
            for word in words(text) {
                let owned;
                let token = if !word.is_ascii() {
                    owned = word.to_lowercase();
                    owned.as_str()
                } else if word.bytes().any(|b| b.is_ascii_uppercase()) {
                    lower.clear();
                    lower.push_str(word);
                    lower.make_ascii_lowercase();
                    lower.as_str()
                } else {
                    word
                };
                let Some(term) = self.terms.get(token) else {
                    continue;
                };
                let (slot, bit) = (term.id / 64, 1u64 << (term.id % 64));
                if seen[slot] & bit != 0 {
                    continue;
                }
                seen[slot] |= bit;
                if sums.is_empty() {
                    sums = vec![0.0; self.entries.len()];
                    scored = vec![0; self.entries.len().div_ceil(64)];
                }
                for &(entry, w) in &term.postings {
                    // `0.0 + w` is `w`: the first weight starts the sum exactly.
                    sums[entry] += w;
                    scored[entry / 64] |= 1 << (entry % 64);
                }
            }
        }
        let mut scores = Vec::new();
        for (w, &bits) in scored.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let entry = w * 64 + bits.trailing_zeros() as usize;
                scores.push((entry, sums[entry]));
                bits &= bits - 1;
            }
        }
        scores
    }

    /// The match as reported: the pattern, confidence, severity and why.
    fn explain(&self, c: &Candidate) -> PatternMatch {
        let p = &self.entries[c.entry].pattern;
        // Joined by hand: `format!` grows its string a piece at a time.
        let quoted = |before: &str, what: &str, after: &str| {
            let mut s = String::with_capacity(before.len() + what.len() + after.len());
            s.push_str(before);
            s.push_str(what);
            s.push_str(after);
            s
        };
        let mut reasons = Vec::with_capacity(3);
        if let Some(t) = &p.target {
            reasons.push(quoted("target matches `", t, "`"));
        }
        if c.regex {
            reasons.push(quoted(
                "regex `",
                p.regex.as_deref().unwrap_or_default(),
                "` matched",
            ));
        } else {
            reasons.push(format!(
                "keywords scored {:.2} of the ideal (BM25)",
                c.share.min(1.0)
            ));
        }
        if p.mode == PatternMode::AlertOnly {
            reasons.push("pattern is alert-only".to_owned());
        }
        PatternMatch {
            pattern: p.name.clone(),
            confidence: c.confidence,
            severity: c.severity,
            reasons,
        }
    }
}

/// Whether each distinct target restriction lets one signal through, asked once each.
#[derive(Default)]
struct TargetAnswers {
    /// Restrictions 0..64: asked, and the answer (one bit each).
    asked: u64,
    yes: u64,
    /// The others (few catalogs have them): 0 not asked yet, 1 no, 2 yes.
    more: Vec<u8>,
}

impl TargetAnswers {
    /// The answer for restriction `t`, from `ask` the first time.
    fn get_or(&mut self, t: usize, ask: impl FnOnce() -> bool) -> bool {
        if t < 64 {
            let bit = 1u64 << t;
            if self.asked & bit == 0 {
                self.asked |= bit;
                if ask() {
                    self.yes |= bit;
                }
            }
            return self.yes & bit != 0;
        }
        let i = t - 64;
        if self.more.len() <= i {
            self.more.resize(i + 1, 0);
        }
        if self.more[i] == 0 {
            self.more[i] = 1 + u8::from(ask());
        }
        self.more[i] == 2
    }
}

/// How `a` ranks against `b`: a regex match above a keyword match, then severity, then
/// confidence; `Greater` is better.
fn rank(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    a.regex
        .cmp(&b.regex)
        .then_with(|| a.severity.cmp(&b.severity))
        .then_with(|| a.confidence.total_cmp(&b.confidence))
}

/// `len` zeroed words: the start of `stack` (fresh zeroes) when they fit, else `heap`,
/// allocated here. Scratch bitsets live on the stack for the usual catalog sizes.
fn zeroed_words<'a>(stack: &'a mut [u64], heap: &'a mut Vec<u64>, len: usize) -> &'a mut [u64] {
    if len <= stack.len() {
        &mut stack[..len]
    } else {
        *heap = vec![0; len];
        heap
    }
}

/// The BM25 weight of a term in one document.
fn bm25_weight(n: f64, df: f64, tf: f64, len: f64, avg_len: f64) -> f64 {
    let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
    let norm = BM25_K1 * (1.0 - BM25_B + BM25_B * len / avg_len);
    idf * tf * (BM25_K1 + 1.0) / (tf + norm)
}

/// The texts the regexes read: the message, the error texts and the stack's prefix.
fn texts(signal: &Signal) -> impl Iterator<Item = &str> {
    let stack = signal
        .stack
        .as_deref()
        .map(|s| crate::signal::prefix(s, MATCHED_STACK_BYTES));
    std::iter::once(signal.message.as_str())
        .chain(error_texts(signal))
        .chain(stack)
}

/// The most texts a signal has: the message, the error fields and the stack.
const MAX_TEXTS: usize = crate::ERROR_FIELDS.len() + 2;
/// At most 8 texts: one bit each in `regex_members`.
const _: () = assert!(MAX_TEXTS <= 8);

/// [`texts`] into `buf`, without allocating.
fn texts_into<'a>(signal: &'a Signal, buf: &'a mut [&'a str; MAX_TEXTS]) -> &'a [&'a str] {
    let mut n = 0;
    for (slot, text) in buf.iter_mut().zip(texts(signal)) {
        *slot = text;
        n += 1;
    }
    &buf[..n]
}

/// The values of the signal's error-bearing fields that the message does not already hold.
fn error_texts(signal: &Signal) -> impl Iterator<Item = &str> {
    crate::ERROR_FIELDS
        .iter()
        .filter_map(|f| signal.fields.get(*f))
        .map(String::as_str)
        .filter(|t| !t.is_empty() && !signal.message.contains(*t))
}

/// Alphanumeric words of two or more bytes, not all digits; `_` and punctuation split.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 2 && !w.chars().all(|c| c.is_ascii_digit()))
}

/// The lower-cased [`words`].
fn tokens(text: &str) -> Vec<String> {
    words(text).map(str::to_lowercase).collect()
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;

    /// The matcher as it was before one-pass matching: every pattern in turn. The
    /// one-pass matcher must agree with it on everything.
    mod reference {
        use std::collections::HashMap;

        use regex::Regex;

        use super::super::{
            BM25_B, BM25_K1, KEYWORD_MIN_SHARE, KEYWORD_WEIGHT, MATCHED_STACK_BYTES, error_texts,
            tokens,
        };
        use crate::{Pattern, PatternMatch, PatternMode, Signal};

        /// A compiled set of patterns. Cheap to query, rebuilt when patterns change.
        pub(super) struct Reference {
            entries: Vec<Entry>,
            /// Document frequency of each term over the pattern documents.
            df: HashMap<String, usize>,
            avg_len: f64,
        }

        struct Entry {
            pattern: Pattern,
            regex: Option<Regex>,
            /// Term frequencies of the pattern's document (name, description, keywords).
            terms: HashMap<String, usize>,
            len: usize,
            /// Terms of its keywords: the query that would score it best.
            keywords: Vec<String>,
        }

        impl Reference {
            /// Compiles the enabled patterns. Patterns whose regex does not compile are skipped
            /// (the store refuses them when added, so this only guards against edited rows).
            pub(super) fn new(patterns: &[Pattern]) -> Self {
                let mut entries = Vec::new();
                for p in patterns.iter().filter(|p| p.enabled) {
                    let regex = match p.compile_regex() {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(pattern = %p.name, error = %e, "skipping pattern with invalid regex");
                            continue;
                        }
                    };
                    let mut doc = tokens(&p.name);
                    doc.extend(tokens(&p.description));
                    let keywords: Vec<String> = p.keywords.iter().flat_map(|k| tokens(k)).collect();
                    doc.extend(keywords.iter().cloned());
                    let mut terms = HashMap::new();
                    for t in &doc {
                        *terms.entry(t.clone()).or_insert(0) += 1;
                    }
                    entries.push(Entry {
                        pattern: p.clone(),
                        regex,
                        len: doc.len(),
                        terms,
                        keywords,
                    });
                }
                let mut df = HashMap::new();
                for e in &entries {
                    for t in e.terms.keys() {
                        *df.entry(t.clone()).or_insert(0) += 1;
                    }
                }
                let avg_len = if entries.is_empty() {
                    1.0
                } else {
                    entries.iter().map(|e| e.len).sum::<usize>() as f64 / entries.len() as f64
                };
                Reference {
                    entries,
                    df,
                    avg_len,
                }
            }

            /// Every pattern that matches `signal`, best first: highest severity, then confidence.
            ///
            /// A regex is tried against the message, the error-bearing fields
            /// ([`ERROR_FIELDS`](crate::ERROR_FIELDS)) and the stack; keywords are scored over
            /// the message and the error-bearing fields.
            pub(super) fn matches(&self, signal: &Signal) -> Vec<PatternMatch> {
                let mut query = tokens(&signal.message);
                for text in error_texts(signal) {
                    query.extend(tokens(text));
                }
                let mut out = Vec::new();
                for e in &self.entries {
                    let p = &e.pattern;
                    if !p.applies_to(signal) {
                        continue;
                    }
                    if p.error_type
                        .as_ref()
                        .is_some_and(|t| signal.fields.get("error.type") != Some(t))
                    {
                        continue;
                    }
                    let mut reasons = Vec::new();
                    if let Some(t) = &p.target {
                        reasons.push(format!("target matches `{t}`"));
                    }
                    let regex_hit = e.regex.as_ref().is_some_and(|re| {
                        re.is_match(&signal.message)
                            || error_texts(signal).any(|t| re.is_match(t))
                            || signal.stack.as_deref().is_some_and(|s| {
                                re.is_match(crate::signal::prefix(s, MATCHED_STACK_BYTES))
                            })
                    });
                    let confidence = if regex_hit {
                        reasons.push(format!(
                            "regex `{}` matched",
                            p.regex.as_deref().unwrap_or_default()
                        ));
                        p.confidence
                    } else if !e.keywords.is_empty() {
                        let share =
                            self.bm25(e, &query) / self.bm25(e, &e.keywords).max(f64::EPSILON);
                        if share < KEYWORD_MIN_SHARE {
                            continue;
                        }
                        reasons.push(format!(
                            "keywords scored {:.2} of the ideal (BM25)",
                            share.min(1.0)
                        ));
                        p.confidence * share.min(1.0) * KEYWORD_WEIGHT
                    } else {
                        continue;
                    };
                    if p.mode == PatternMode::AlertOnly {
                        reasons.push("pattern is alert-only".to_owned());
                    }
                    out.push(PatternMatch {
                        pattern: p.name.clone(),
                        confidence,
                        severity: p.severity,
                        reasons,
                    });
                }
                // Regex matches first (keywords are weaker evidence: a keyword-only match of a
                // severe pattern must not outrank the pattern whose regex matched), then the
                // highest severity, then confidence.
                out.sort_by(|a, b| {
                    by_regex(b)
                        .cmp(&by_regex(a))
                        .then_with(|| b.severity.cmp(&a.severity))
                        .then_with(|| b.confidence.total_cmp(&a.confidence))
                });
                out
            }

            fn bm25(&self, e: &Entry, query: &[String]) -> f64 {
                let n = self.entries.len() as f64;
                let mut seen = std::collections::HashSet::new();
                query
                    .iter()
                    .filter(|t| seen.insert(t.as_str()))
                    .filter_map(|t| {
                        let tf = *e.terms.get(t)? as f64;
                        let df = *self.df.get(t).unwrap_or(&0) as f64;
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        let norm = BM25_K1 * (1.0 - BM25_B + BM25_B * e.len as f64 / self.avg_len);
                        Some(idf * tf * (BM25_K1 + 1.0) / (tf + norm))
                    })
                    .sum()
            }
        }

        fn by_regex(m: &PatternMatch) -> bool {
            m.reasons.iter().any(|r| r.starts_with("regex"))
        }
    }

    fn catalog() -> Vec<Pattern> {
        vec![
            Pattern::new("postgres_pool_exhausted")
                .regex(r"pool timed out while waiting for an open connection")
                .severity(Severity::High)
                .confidence(0.8),
            Pattern::new("redis_connection_refused")
                .description("Redis is not accepting connections")
                .keywords(["redis", "connection", "refused"])
                .confidence(0.9),
            Pattern::new("disk_full")
                .regex("No space left on device")
                .severity(Severity::Critical),
        ]
    }

    #[test]
    fn regex_match_carries_the_pattern_confidence_and_reason() {
        let m = Matcher::new(&catalog());
        let best = m
            .best(&Signal::new(
                "db",
                "error: pool timed out while waiting for an open connection",
            ))
            .unwrap();
        assert_eq!(best.pattern, "postgres_pool_exhausted");
        assert_eq!(best.confidence, 0.8);
        assert!(best.reasons[0].contains("regex"));
    }

    #[test]
    fn keywords_match_below_regex_confidence() {
        let m = Matcher::new(&catalog());
        let best = m
            .best(&Signal::new(
                "cache",
                "Redis connection refused by 10.0.0.1:6379",
            ))
            .unwrap();
        assert_eq!(best.pattern, "redis_connection_refused");
        assert!(
            best.confidence < 0.9 && best.confidence > 0.3,
            "{}",
            best.confidence
        );
        assert!(m.best(&Signal::new("cache", "user logged in")).is_none());
    }

    #[test]
    fn a_regex_match_outranks_a_more_severe_keyword_match() {
        let patterns = vec![
            Pattern::new("upstream_5xx")
                .keywords(["upstream", "http", "server", "error"])
                .severity(Severity::High),
            Pattern::new("refused").regex("connection refused"),
        ];
        let m = Matcher::new(&patterns);
        let all = m.matches(&Signal::new(
            "api",
            "error sending request: tcp connect error: Connection refused (os error 111); upstream server http error",
        ));
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].pattern, "refused");
    }

    #[test]
    fn error_fields_are_matched_like_the_message() {
        let m = Matcher::new(&catalog());
        for field in crate::ERROR_FIELDS {
            let s = Signal::new("db", "query failed")
                .field(field, "pool timed out while waiting for an open connection");
            assert_eq!(
                m.best(&s).map(|b| b.pattern),
                Some("postgres_pool_exhausted".to_owned()),
                "{field}"
            );
        }
        let other = Signal::new("db", "query failed").field(
            "detail",
            "pool timed out while waiting for an open connection",
        );
        assert!(m.best(&other).is_none(), "only error-bearing fields count");
    }

    #[test]
    fn highest_severity_wins_and_target_filters() {
        let mut patterns = catalog();
        patterns.push(Pattern::new("generic_io").regex("device").confidence(1.0));
        patterns.push(Pattern::new("only_redis").regex("space").target("redis"));
        let m = Matcher::new(&patterns);
        let all = m.matches(&Signal::new(
            "disk",
            "write failed: No space left on device",
        ));
        assert_eq!(all[0].pattern, "disk_full");
        assert!(all.iter().all(|x| x.pattern != "only_redis"));
    }

    /// A seeded xorshift: the same patterns and signals on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 16) as usize
        }
        fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
            words[self.next() % words.len()]
        }
    }

    const VOCAB: [&str; 40] = [
        "connection",
        "refused",
        "pool",
        "timed",
        "out",
        "redis",
        "postgres",
        "memory",
        "disk",
        "full",
        "quota",
        "lease",
        "shard",
        "replica",
        "lag",
        "leader",
        "kafka",
        "broker",
        "offset",
        "commit",
        "timeout",
        "deadline",
        "socket",
        "closed",
        "reset",
        "tls",
        "certificate",
        "expired",
        "dns",
        "lookup",
        "failed",
        "upstream",
        "http",
        "server",
        "error",
        "queue",
        "overflow",
        "Größe",
        "ÜBERLAUF",
        "io",
    ];

    /// `n` patterns over a small vocabulary, so that many match a random signal: regex
    /// only, keywords only and both; targets, error types, severities, confidences and
    /// modes of every kind; a few disabled.
    fn generated(n: usize, rng: &mut Rng) -> Vec<Pattern> {
        (0..n)
            .map(|i| {
                let mut p = Pattern::new(format!("gen_{}_{i}", rng.pick(&VOCAB)))
                    .description(format!(
                        "{} {} {}",
                        rng.pick(&VOCAB),
                        rng.pick(&VOCAB),
                        rng.pick(&VOCAB)
                    ))
                    .severity(
                        [
                            Severity::Low,
                            Severity::Medium,
                            Severity::High,
                            Severity::Critical,
                        ][rng.next() % 4],
                    )
                    .confidence((rng.next() % 11) as f64 / 10.0)
                    .mode(if i % 2 == 0 {
                        PatternMode::Active
                    } else {
                        PatternMode::AlertOnly
                    });
                if i % 3 != 1 {
                    let (a, b) = (rng.pick(&VOCAB), rng.pick(&VOCAB));
                    let a = if i % 5 == 0 {
                        a.to_uppercase()
                    } else {
                        a.to_owned()
                    };
                    p = p.regex(format!(r"\b{a}\b[^\n]{{0,30}}{b}"));
                }
                if i % 3 != 0 {
                    let k = 1 + rng.next() % 4;
                    let words: Vec<String> = (0..k)
                        .map(|j| {
                            if j == 2 {
                                format!("{} {}", rng.pick(&VOCAB), rng.pick(&VOCAB))
                            } else {
                                rng.pick(&VOCAB).to_owned()
                            }
                        })
                        .collect();
                    p = p.keywords(words);
                }
                match i % 13 {
                    0 => p = p.target("*redis*|*pg*"),
                    1 => p = p.target("api"),
                    2 => p.error_type = Some("io".to_owned()),
                    3 => p.enabled = false,
                    _ => {}
                }
                p
            })
            .collect()
    }

    fn random_signal(rng: &mut Rng) -> Signal {
        let text = |rng: &mut Rng, n: usize| {
            (0..n)
                .map(|_| {
                    let w = rng.pick(&VOCAB);
                    match rng.next() % 4 {
                        0 => w.to_uppercase(),
                        1 => format!("{w}:"),
                        _ => w.to_owned(),
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let target = ["api", "redis-cache", "orders-pg", "billing"][rng.next() % 4];
        let n = 1 + rng.next() % 8;
        let mut s = Signal::new(target, text(rng, n));
        if rng.next().is_multiple_of(3) {
            let field = crate::ERROR_FIELDS[rng.next() % crate::ERROR_FIELDS.len()];
            s = s.field(field, text(rng, 4));
        }
        if rng.next().is_multiple_of(4) {
            s = s.field("error.type", "io");
        }
        if rng.next().is_multiple_of(5) {
            s = s.stack(text(rng, 12));
        }
        s
    }

    #[test]
    fn a_thousand_patterns_match_exactly_as_trying_each_in_turn() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let mut patterns = crate::catalog::stock();
        patterns.extend(generated(1_000, &mut rng));
        patterns.extend(edge_patterns());
        let fast = Matcher::new(&patterns);
        assert!(fast.regexes.set.is_some(), "one pass, not a fallback");
        // Without the set: each regex alone, behind the prefilter.
        let each = Matcher::with_set_limit(&patterns, 1 << 10);
        assert!(each.regexes.set.is_none());
        let slow = reference::Reference::new(&patterns);
        let (mut by_regex, mut by_keywords, mut none) = (0, 0, 0);
        // `best` scores keywords only when no regex match applies: that path too.
        let mut best_by_keywords = 0;
        for _ in 0..400 {
            let signal = random_signal(&mut rng);
            let expected = slow.matches(&signal);
            assert_eq!(fast.matches(&signal), expected, "{signal:?}");
            assert_eq!(fast.best(&signal), expected.first().cloned(), "{signal:?}");
            assert_eq!(each.matches(&signal), expected, "{signal:?}");
            assert_eq!(each.best(&signal), expected.first().cloned(), "{signal:?}");
            match expected.first() {
                None => none += 1,
                Some(m) if m.reasons.iter().any(|r| r.starts_with("regex")) => by_regex += 1,
                Some(_) => best_by_keywords += 1,
            }
            by_keywords += expected
                .iter()
                .filter(|m| m.reasons.iter().any(|r| r.starts_with("keywords")))
                .count();
        }
        // The comparison covered every path.
        assert!(
            by_regex > 50 && by_keywords > 50 && best_by_keywords > 20 && none > 0,
            "{by_regex} {by_keywords} {best_by_keywords} {none}"
        );
        // The texts at the prefilter's edges, as messages, error fields and stacks.
        for text in EDGE_TEXTS {
            for signal in [
                Signal::new("api", text),
                Signal::new("api", "query failed").field("error.message", text),
                Signal::new("api", "query failed").stack(text),
            ] {
                let expected = slow.matches(&signal);
                assert_eq!(fast.matches(&signal), expected, "{signal:?}");
                assert_eq!(each.matches(&signal), expected, "{signal:?}");
            }
        }
        // The stock catalog's own texts, too.
        let stock = crate::catalog::stock();
        let (fast, slow) = (Matcher::new(&stock), reference::Reference::new(&stock));
        for text in [
            "OOM command not allowed when used memory > 'maxmemory'.",
            "pool timed out while waiting for an open connection",
            "tcp connect error: Connection refused (os error 111)",
            "nothing to see here",
        ] {
            for target in ["redis-cache", "orders-postgres", "api"] {
                let signal = Signal::new(target, text);
                assert_eq!(fast.matches(&signal), slow.matches(&signal), "{signal:?}");
            }
        }
    }

    /// Regexes at the edges of the prefilter (see [`EDGE_TEXTS`]).
    fn edge_patterns() -> Vec<Pattern> {
        [
            ("kafka_broker", r"\bkafka\b[^\n]{0,20}broker"),
            ("lost_session", "lost session"),
            ("either", r"timed out|E0042: (deadline)+ exceeded"),
            ("no_literal", r"\d{3} ms"),
            ("strict", "(?-i)OOM command"),
            ("scoped", "(?-i:ERR) (?:timeout)"),
            ("split", r"no\b \bspace\b"),
            ("unicode", "Größe überschritten"),
            ("digits", r"E\d+: disk"),
        ]
        .into_iter()
        .map(|(name, re)| Pattern::new(name).regex(re))
        .collect()
    }

    /// Texts at the prefilter's edges: mixed case, the Kelvin sign and the long s (which
    /// `(?i)k` and `(?i)s` match in a text that is not ASCII), alternations, no literal,
    /// `(?-i)`, literals split by `\b`, non-ASCII literals.
    const EDGE_TEXTS: [&str; 18] = [
        "KaFkA says: BROKER gone",
        "\u{212A}afka says: broker gone",
        "kafka\u{212A} says: broker gone",
        "lo\u{17F}t \u{17F}e\u{17F}\u{17F}ion",
        "LoSt SeSsIoN",
        "Timed Out",
        "e0042: DEADLINEdeadline EXCEEDED",
        "took 250 ms",
        "took 25 ms",
        "OOM command not allowed",
        "oom command not allowed",
        "ERR TIMEOUT",
        "err timeout",
        "No Space left",
        "nospace left",
        "GRÖSSE ÜBERSCHRITTEN",
        "größe Überschritten",
        "e12: DISK",
    ];

    /// The names of the patterns matching `text`, sorted.
    fn names(m: &Matcher, text: &str) -> Vec<String> {
        let mut v: Vec<String> = m
            .matches(&Signal::new("svc", text))
            .into_iter()
            .map(|x| x.pattern)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_prefilter_skips_no_regex_that_matches() {
        let patterns = edge_patterns();
        let slow = reference::Reference::new(&patterns);
        // With the set for texts that are not ASCII, and without (each regex in turn).
        for m in [
            Matcher::new(&patterns),
            Matcher::with_set_limit(&patterns, 1 << 10),
        ] {
            for text in EDGE_TEXTS {
                let signal = Signal::new("svc", text);
                assert_eq!(m.matches(&signal), slow.matches(&signal), "{text}");
            }
            let expected: [(&str, &[&str]); 18] = [
                ("KaFkA says: BROKER gone", &["kafka_broker"]),
                ("\u{212A}afka says: broker gone", &["kafka_broker"]),
                ("kafka\u{212A} says: broker gone", &[]),
                ("lo\u{17F}t \u{17F}e\u{17F}\u{17F}ion", &["lost_session"]),
                ("LoSt SeSsIoN", &["lost_session"]),
                ("Timed Out", &["either"]),
                ("e0042: DEADLINEdeadline EXCEEDED", &["either"]),
                ("took 250 ms", &["no_literal"]),
                ("took 25 ms", &[]),
                ("OOM command not allowed", &["strict"]),
                ("oom command not allowed", &[]),
                ("ERR TIMEOUT", &["scoped"]),
                ("err timeout", &[]),
                ("No Space left", &["split"]),
                ("nospace left", &[]),
                ("GRÖSSE ÜBERSCHRITTEN", &[]),
                ("größe Überschritten", &["unicode"]),
                ("e12: DISK", &["digits"]),
            ];
            for (text, want) in expected {
                assert_eq!(names(&m, text), want, "{text}");
            }
        }
    }

    #[test]
    fn the_set_keeps_each_regexs_case_insensitivity_and_its_own_flags() {
        let patterns = vec![
            Pattern::new("strict").regex("(?-i)OOM command"),
            Pattern::new("loose").regex("no space left"),
            Pattern::new("scoped").regex("(?-i:ERR) (?:timeout)"),
        ];
        let m = Matcher::new(&patterns);
        assert!(m.regexes.set.is_some());
        let names = |text: &str| names(&m, text);
        assert_eq!(names("NO SPACE LEFT on device"), ["loose"]);
        assert_eq!(names("oom command not allowed"), Vec::<String>::new());
        assert_eq!(names("OOM command not allowed"), ["strict"]);
        // `(?-i)` of one member does not leak into the next.
        assert_eq!(names("OOM command; No Space Left"), ["loose", "strict"]);
        assert_eq!(names("ERR TIMEOUT"), ["scoped"]);
        assert_eq!(names("err timeout"), Vec::<String>::new());
    }

    #[test]
    fn an_invalid_regex_is_skipped_and_the_others_still_match() {
        let patterns = vec![
            Pattern::new("broken").regex("OOM (command"),
            Pattern::new("huge").regex(r"\w{1000}\w{1000}"),
            Pattern::new("disk_full").regex("No space left on device"),
        ];
        let m = Matcher::new(&patterns);
        assert_eq!(
            m.patterns().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["disk_full"]
        );
        let best = m
            .best(&Signal::new("svc", "write: No space left on device"))
            .unwrap();
        assert_eq!(best.pattern, "disk_full");
        assert!(m.best(&Signal::new("svc", "OOM (command")).is_none());
    }

    #[test]
    fn a_set_too_big_falls_back_to_each_regex_with_the_same_matches() {
        let mut rng = Rng(0x5eed_0000_0000_0002);
        let mut patterns = crate::catalog::stock();
        patterns.extend(generated(200, &mut rng));
        let set = Matcher::new(&patterns);
        let each = Matcher::with_set_limit(&patterns, 1 << 10);
        assert!(set.regexes.set.is_some());
        assert!(each.regexes.set.is_none() && !each.regexes.each.is_empty());
        let mut matched = 0;
        for _ in 0..200 {
            let signal = random_signal(&mut rng);
            let expected = set.matches(&signal);
            matched += usize::from(!expected.is_empty());
            assert_eq!(each.matches(&signal), expected, "{signal:?}");
        }
        assert!(matched > 50, "{matched}");
    }

    #[test]
    fn an_empty_matcher_matches_nothing() {
        let m = Matcher::default();
        assert!(m.matches(&Signal::new("svc", "anything at all")).is_empty());
        let m = Matcher::new(&[Pattern::new("kw").keywords(["pool"])]);
        assert!(m.regexes.each.is_empty() && m.regexes.set.is_none());
        assert_eq!(m.best(&Signal::new("svc", "pool")).unwrap().pattern, "kw");
    }
}
