//! When two different tokens are one value in two shapes, and what the template then
//! shows for both.
//!
//! The normalizer masks what it recognises; the miner still meets a value the
//! normalizer left as a word (`chdir(pwd)` beside `chdir(<*>)`, `isOverlap:false,` beside
//! `isOverlap:true,`) or masked in another shape (`<*>,` beside `LOCAL(<*>),`). Such a
//! pair is one value, not two events: the line joins the cluster, and the template
//! keeps what both tokens share around one `<*>` (`chdir(<*>)`, `isOverlap:<*>,`).
//! Different names stay apart: `uid=<*>` and `pid=<*>` are two fields.

use super::normalize::MASK;

/// `t` and `new` (different tokens) are one value in two shapes:
/// - both hold a value, and one has no letter besides it (`<*>,` and `LOCAL(<*>),`) or both
///   start alike up to their first value (`ws=<*>,` and `ws=<*>{<*>},`);
/// - one holds values and the other fits it, each value standing for any text
///   (`chdir(<*>)` and `chdir(pwd)`);
/// - they differ only in a boolean word (`ret:true` and `ret:false`).
pub(super) fn one_value(t: &str, new: &str) -> bool {
    match (t.contains(MASK), new.contains(MASK)) {
        (true, true) => bare(t) || bare(new) || same_key(t, new),
        (true, false) => fits(t, new),
        (false, true) => fits(new, t),
        (false, false) => {
            let (a, b) = (booleans_masked(t), booleans_masked(new));
            a.is_some() && a == b
        }
    }
}

/// The token a template shows for two shapes of one value: what they share before and
/// after it, around one `<*>` (whole words only: `false,` and `true,` give `<*>,`).
pub(super) fn merged(t: &str, new: &str) -> String {
    let shortest = t.len().min(new.len());
    let mut prefix = common_len(t.bytes(), new.bytes());
    let mut suffix = common_len(t.bytes().rev(), new.bytes().rev()).min(shortest - prefix);
    let (head, tail) = (t.as_bytes(), &t.as_bytes()[t.len() - suffix..]);
    // Whole words and whole masks only, and whole characters.
    while prefix > 0
        && (head[prefix - 1].is_ascii_alphanumeric()
            || !t.is_char_boundary(prefix)
            || !new.is_char_boundary(prefix)
            || t[..prefix].ends_with('<')
            || t[..prefix].ends_with("<*"))
    {
        prefix -= 1;
    }
    let mut skip = 0;
    while skip < suffix
        && (tail[skip].is_ascii_alphanumeric()
            || !t.is_char_boundary(t.len() - suffix + skip)
            || !new.is_char_boundary(new.len() - suffix + skip)
            || tail[skip..].starts_with(b">")
            || tail[skip..].starts_with(b"*>"))
    {
        skip += 1;
    }
    suffix -= skip;
    let mut out = String::with_capacity(prefix + MASK.len() + suffix);
    out.push_str(&t[..prefix]);
    if !out.ends_with(MASK) {
        out.push_str(MASK);
    }
    let end = &t[t.len() - suffix..];
    out.push_str(end.strip_prefix(MASK).unwrap_or(end));
    out
}

fn common_len(a: impl Iterator<Item = u8>, b: impl Iterator<Item = u8>) -> usize {
    a.zip(b).take_while(|(x, y)| x == y).count()
}

/// A token of values and no letter besides (`<*>,`, `(<*>):`).
fn bare(s: &str) -> bool {
    !s.replace(MASK, "").bytes().any(|b| b.is_ascii_alphabetic())
}

/// Both start with the same name and delimiter before their first value (`ws=<*>…`).
fn same_key(t: &str, new: &str) -> bool {
    match (t.find(MASK), new.find(MASK)) {
        (Some(i), Some(j)) => {
            i == j && i > 0 && t[..i] == new[..j] && !t.as_bytes()[i - 1].is_ascii_alphanumeric()
        }
        _ => false,
    }
}

/// `word` is `pattern` with each `<*>` standing for any text (even none).
fn fits(pattern: &str, word: &str) -> bool {
    let mut parts = pattern.split(MASK);
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = word.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let last = parts.pop().unwrap_or("");
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// `s` with each word `true` or `false` (any case) masked, if it has one.
fn booleans_masked(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut found = false;
    let mut rest = s;
    while !rest.is_empty() {
        let word_len = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        if word_len == 0 {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let word = &rest[..word_len];
        if word.eq_ignore_ascii_case("true") || word.eq_ignore_ascii_case("false") {
            out.push_str(MASK);
            found = true;
        } else {
            out.push_str(word);
        }
        rest = &rest[word_len..];
    }
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_of_one_value() {
        for (a, b) in [
            ("<*>,", "LOCAL(<*>),"),
            ("(<*>):", "(<*>:"),
            ("ws=<*>,", "ws=<*>{<*>},"),
            ("FF:<*>:EA:<*>", "FF:<*>:DC"),
            ("chdir(<*>)", "chdir(pwd)"),
            ("<*>:", "./runtime_malloc:"),
            ("isOverlap:false,", "isOverlap:true,"),
            ("false", "TRUE"),
        ] {
            assert!(one_value(a, b), "{a} {b}");
            assert!(one_value(b, a), "{b} {a}");
        }
    }

    #[test]
    fn different_words_and_names_stay_apart() {
        for (a, b) in [
            ("uid=<*>", "pid=<*>"),
            ("(uid=<*>)", "LOGIN(uid=<*>)"),
            ("Started", "Paused"),
            ("chdir(<*>)", "chmod(pwd)"),
            ("truecolor", "falsecolor"),
            ("true", "yes"),
            ("x<*>", "y<*>"),
        ] {
            assert!(!one_value(a, b), "{a} {b}");
            assert!(!one_value(b, a), "{b} {a}");
        }
    }

    #[test]
    fn the_template_keeps_what_both_share() {
        for (a, b, want) in [
            ("<*>,", "LOCAL(<*>),", "<*>,"),
            ("ws=<*>,", "ws=<*>{<*>},", "ws=<*>,"),
            ("chdir(<*>)", "chdir(pwd)", "chdir(<*>)"),
            ("chdir(pwd)", "chdir(<*>)", "chdir(<*>)"),
            ("isOverlap:false,", "isOverlap:true,", "isOverlap:<*>,"),
            ("false", "true", "<*>"),
            ("acme,", "globex,", "<*>,"),
            ("acme,", "hooli", "<*>"),
            // Never half a mask, never half a word.
            ("x<*>", "x<y", "<*>"),
            ("<*>,", "x>,", "<*>,"),
            ("日本,", "中国,", "<*>,"),
            ("é:", "è:", "<*>:"),
        ] {
            assert_eq!(merged(a, b), want, "{a} {b}");
        }
    }

    #[test]
    fn fits_reads_masks_as_any_text() {
        assert!(fits("<*>", "anything"));
        assert!(fits("a<*>b<*>c", "aXbYc"));
        assert!(fits("a<*>b<*>c", "abc"));
        assert!(!fits("a<*>b<*>c", "aXc"));
        assert!(!fits("a<*>", "b"));
    }
}
