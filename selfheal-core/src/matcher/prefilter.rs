//! Which regexes can match an ASCII text: the literals each one needs, found in one pass.
//!
//! Each regex is parsed (with the flags of [`Pattern::compile_regex`](crate::Pattern::compile_regex):
//! case-insensitive, Unicode) and reduced to a set of *required literals*: lower-case
//! strings such that every match of the regex in an ASCII text contains one of them,
//! ASCII case-insensitively. One Aho-Corasick automaton over all of them says, in one
//! read of a text, which literals occur; only the regexes needing one of those (and the
//! regexes with no required literal) can match, so only those are run.
//!
//! Only for ASCII texts: under Unicode case folding `(?i)k` also matches the Kelvin sign
//! and `(?i)s` the long s, which an ASCII case-insensitive search does not see.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind};

/// The regexes' required literals, searched for all at once.
#[derive(Debug, Default)]
pub(super) struct Prefilter {
    /// Every distinct required literal; `None` when no regex has one.
    literals: Option<AhoCorasick>,
    /// Per literal (its pattern id in `literals`): the members that need it.
    needed_by: Vec<Vec<usize>>,
    /// The members with no required literal: tried on every text.
    always: Vec<usize>,
    /// How many members (regexes) there are.
    members: usize,
}

impl Prefilter {
    /// The prefilter of these regexes; member `i` is the `i`-th regex.
    pub(super) fn new<'a>(regexes: impl IntoIterator<Item = &'a str>) -> Self {
        let mut ids = foldhash::HashMap::<Vec<u8>, usize>::default();
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut needed_by: Vec<Vec<usize>> = Vec::new();
        let mut always = Vec::new();
        let mut members = 0;
        for (member, regex) in regexes.into_iter().enumerate() {
            members += 1;
            let Some(required) = required_literals(regex) else {
                always.push(member);
                continue;
            };
            for literal in required {
                let id = *ids.entry(literal.clone()).or_insert_with(|| {
                    literals.push(literal);
                    needed_by.push(Vec::new());
                    literals.len() - 1
                });
                needed_by[id].push(member);
            }
        }
        let automaton = if literals.is_empty() {
            None
        } else {
            match AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(Some(AhoCorasickKind::DFA))
                .build(&literals)
            {
                Ok(ac) => Some(ac),
                Err(e) => {
                    // Only a size limit can refuse it: then every regex is tried.
                    tracing::warn!(literals = literals.len(), error = %e, "the regexes' literals do not fit one automaton; trying every regex on each text (slower, same matches)");
                    return Prefilter {
                        literals: None,
                        needed_by: Vec::new(),
                        always: (0..members).collect(),
                        members,
                    };
                }
            }
        };
        Prefilter {
            literals: automaton,
            needed_by,
            always,
            members,
        }
    }

    /// Marks in `candidates` (one bit per member, cleared by the caller) the members
    /// that can match `text`, which must be ASCII.
    pub(super) fn candidates(&self, text: &str, candidates: &mut [u64]) {
        debug_assert!(
            text.is_ascii(),
            "the prefilter is sound for ASCII texts only"
        );
        debug_assert!(candidates.len() * 64 >= self.members);
        for &m in &self.always {
            candidates[m / 64] |= 1 << (m % 64);
        }
        let Some(ac) = &self.literals else { return };
        // The literals already seen (on the stack up to 4,096 of them).
        let words = self.needed_by.len().div_ceil(64);
        let (mut on_stack, mut on_heap) = ([0u64; 64], Vec::new());
        let seen = super::zeroed_words(&mut on_stack, &mut on_heap, words);
        // Overlapping: every occurrence of every literal, not only the leftmost ones.
        for found in ac.find_overlapping_iter(text) {
            let id = found.pattern().as_usize();
            // Each literal's members once, however often it occurs.
            let (word, bit) = (id / 64, 1u64 << (id % 64));
            if seen[word] & bit != 0 {
                continue;
            }
            seen[word] |= bit;
            for &m in &self.needed_by[id] {
                candidates[m / 64] |= 1 << (m % 64);
            }
        }
    }
}

/// What a piece of a regex says about what it matches in an ASCII text.
#[derive(Debug, PartialEq)]
enum Need {
    /// Every match is this string, ASCII case-insensitively (empty: zero-width).
    Exact(Vec<u8>),
    /// Every match contains one of these non-empty strings.
    OneOf(Vec<Vec<u8>>),
    /// Nothing is known.
    Unknown,
}

/// Lower-case strings such that every match of `regex` in an ASCII text contains one of
/// them (ASCII case-insensitively), or `None` when no such set is known.
pub(super) fn required_literals(regex: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(true)
        .build()
        .parse(regex)
        .ok()?;
    match need(&hir) {
        Need::Exact(s) if !s.is_empty() => Some(vec![s]),
        Need::OneOf(set) => Some(set),
        _ => None,
    }
}

fn need(hir: &Hir) -> Need {
    match hir.kind() {
        // Zero-width: `\b`, `^`, `$` do not split the literals around them.
        HirKind::Empty | HirKind::Look(_) => Need::Exact(Vec::new()),
        HirKind::Literal(lit) => Need::Exact(lit.0.to_ascii_lowercase()),
        HirKind::Class(class) => match ascii_byte(class) {
            Some(b) => Need::Exact(vec![b]),
            None => Need::Unknown,
        },
        HirKind::Capture(c) => need(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => match need(&r.sub) {
            Need::Exact(s) => one_of(vec![s]),
            other => other,
        },
        HirKind::Repetition(_) => Need::Unknown,
        HirKind::Concat(subs) => concat(subs),
        HirKind::Alternation(subs) => {
            let mut all = Vec::new();
            for sub in subs {
                match need(sub) {
                    Need::Exact(s) => all.push(s),
                    Need::OneOf(set) => all.extend(set),
                    Need::Unknown => return Need::Unknown,
                }
            }
            all.sort_unstable();
            all.dedup();
            one_of(all)
        }
    }
}

/// Adjacent exact pieces join into runs; of the runs and the pieces' own sets, the one
/// whose shortest string is longest (the rarest, roughly) is kept, and of those, the
/// one with the fewest strings: `\bredis\b…(?:broken pipe|connection reset|…)` needs
/// `redis`, not one of a dozen wordings that other texts hold too.
fn concat(subs: &[Hir]) -> Need {
    let mut run = Vec::new();
    let mut all_exact = true;
    let mut best: Option<Vec<Vec<u8>>> = None;
    let mut consider = |set: Vec<Vec<u8>>| {
        let shortest = |s: &[Vec<u8>]| s.iter().map(Vec::len).min().unwrap_or(0);
        // Longer shortest string first, then fewer strings; equals keep the first.
        let key = |s: &[Vec<u8>]| (shortest(s), std::cmp::Reverse(s.len()));
        if shortest(&set) > 0 && best.as_ref().is_none_or(|b| key(&set) > key(b)) {
            best = Some(set);
        }
    };
    for sub in subs {
        match need(sub) {
            Need::Exact(s) => run.extend(s),
            other => {
                all_exact = false;
                consider(vec![std::mem::take(&mut run)]);
                if let Need::OneOf(set) = other {
                    consider(set);
                }
            }
        }
    }
    if all_exact {
        return Need::Exact(run);
    }
    consider(vec![run]);
    best.map_or(Need::Unknown, Need::OneOf)
}

/// A set, unless it holds the empty string (which every text contains).
fn one_of(set: Vec<Vec<u8>>) -> Need {
    if set.is_empty() || set.iter().any(Vec::is_empty) {
        Need::Unknown
    } else {
        Need::OneOf(set)
    }
}

/// The one lower-case byte all of a class's ASCII members are case variants of
/// (`[Kk\x{212A}]` is `k`); `None` for any other class. Non-ASCII members never match an
/// ASCII text, so they are ignored.
fn ascii_byte(class: &Class) -> Option<u8> {
    let ranges: Vec<(u32, u32)> = match class {
        Class::Unicode(c) => c
            .iter()
            .map(|r| (u32::from(r.start()), u32::from(r.end())))
            .collect(),
        Class::Bytes(c) => c
            .iter()
            .map(|r| (u32::from(r.start()), u32::from(r.end())))
            .collect(),
    };
    let mut byte = None;
    for (start, end) in ranges {
        for c in start..=end.min(0x7F) {
            let lower = (c as u8).to_ascii_lowercase();
            if byte.is_some_and(|b| b != lower) {
                return None;
            }
            byte = Some(lower);
        }
    }
    byte
}

#[cfg(test)]
mod tests {
    use super::*;

    fn required(regex: &str) -> Option<Vec<String>> {
        required_literals(regex).map(|set| {
            set.into_iter()
                .map(|s| String::from_utf8(s).unwrap())
                .collect()
        })
    }

    #[test]
    fn the_longest_run_of_a_concatenation_is_required() {
        assert_eq!(
            required(r"\bkafka\b[^\n]{0,80}?\bconnection\b[^\n]{0,40}pool drained"),
            Some(vec!["pool drained".to_owned()])
        );
        // `\b` is zero-width: the words around it join.
        assert_eq!(required(r"No\bspace"), Some(vec!["nospace".to_owned()]));
        assert_eq!(
            required("(?-i)OOM command"),
            Some(vec!["oom command".to_owned()])
        );
        // `k` and `s` fold to non-ASCII letters too; in ASCII texts they are `k` and `s`.
        assert_eq!(required("(?i)kiss"), Some(vec!["kiss".to_owned()]));
    }

    #[test]
    fn of_equally_long_choices_the_one_with_fewer_strings_is_required() {
        // Both branches need `redis`: a text holding only `connection` runs neither.
        let lost = "broken ?pipe|connection ?reset|epipe";
        assert_eq!(
            required(&format!(
                r"\bredis\b.{{0,9}}?(?:{lost})|(?:{lost}).{{0,9}}?\bredis\b"
            )),
            Some(vec!["redis".to_owned()])
        );
        // A longer shortest string still wins over fewer strings.
        assert_eq!(
            required(r"(?:broken|reset)x{0,3}?pipe"),
            Some(vec!["broken".to_owned(), "reset".to_owned()])
        );
    }

    #[test]
    fn alternations_need_one_of_their_branches() {
        assert_eq!(
            required(r"timed out|E0042: (deadline)+ exceeded"),
            Some(vec![" exceeded".to_owned(), "timed out".to_owned()])
        );
        assert_eq!(required(r"timed out|\d+"), None);
    }

    #[test]
    fn no_literal_means_always_run() {
        assert_eq!(required(r"\d{3}"), None);
        assert_eq!(required(r"(pool)?"), None);
        assert_eq!(required(r"\b"), None);
        assert_eq!(required(r"[a-z]+"), None);
        assert_eq!(required(r"\d{3} ms"), Some(vec![" ms".to_owned()]));
        assert_eq!(required(r"(pool)+"), Some(vec!["pool".to_owned()]));
    }

    #[test]
    fn candidates_are_the_regexes_whose_literals_occur() {
        let pf = Prefilter::new(["kafka", r"\d+", "pool|lease", "POOL drained"]);
        let found = |text: &str| {
            let mut bits = [0u64];
            pf.candidates(text, &mut bits);
            (0..4)
                .filter(|m| bits[0] & (1 << m) != 0)
                .collect::<Vec<_>>()
        };
        assert_eq!(found("nothing"), [1]);
        assert_eq!(found("Pool Drained"), [1, 2, 3]);
        // Overlapping occurrences are all seen.
        assert_eq!(found("kafkafka LEASE"), [0, 1, 2]);
    }
}
