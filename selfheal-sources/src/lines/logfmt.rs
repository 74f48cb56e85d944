//! logfmt lines (`time=… level=error msg="query failed" err="pool timed out"`), as Go's
//! slog and logrus, Heroku and many others write them.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::level::{self, Seen};
use super::structured::{LEVEL_KEYS, MAX_KEYS};

/// Whether the line starts like logfmt: `key=`.
pub(crate) fn looks_like(line: &str) -> bool {
    let line = line.trim_start().as_bytes();
    // The first token, up to `=` or a space: a key when it ends at `=`.
    match line.iter().position(|&b| !is_key_byte(b)) {
        Some(eq) => eq > 0 && line[eq] == b'=',
        None => false,
    }
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_.-@/".contains(&b)
}

/// The level of the first level pair with a level value, allocating nothing.
pub(crate) fn hint(line: &str) -> Option<Seen> {
    Pairs::new(line)
        .filter(|(k, _)| LEVEL_KEYS.contains(k))
        .find_map(|(k, v)| {
            level::value(
                k,
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v),
            )
        })
}

/// Every pair, values unquoted.
pub(crate) fn map(line: &str) -> BTreeMap<String, String> {
    Pairs::new(line)
        .filter(|(k, _)| !k.is_empty())
        .take(MAX_KEYS)
        .map(|(k, v)| (k.to_owned(), unquote(v).into_owned()))
        .collect()
}

/// `"a \"b\""` → `a "b"`; bare values as they are.
fn unquote(raw: &str) -> Cow<'_, str> {
    let Some(inner) = raw.strip_prefix('"') else {
        return Cow::Borrowed(raw);
    };
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// The `key=value` pairs of a logfmt line; a value keeps its quotes.
struct Pairs<'a> {
    line: &'a str,
    at: usize,
}

impl<'a> Pairs<'a> {
    fn new(line: &'a str) -> Self {
        Pairs { line, at: 0 }
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.line.as_bytes();
        let mut i = self.at;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &self.line[key_start..i];
        if b.get(i) != Some(&b'=') {
            // A bare word: a key without a value.
            self.at = i;
            return Some((key, ""));
        }
        i += 1;
        let value_start = i;
        if b.get(i) == Some(&b'"') {
            i += 1;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => {
                        i += 1;
                        break;
                    }
                    _ => i += 1,
                }
            }
            i = i.min(b.len());
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
        }
        self.at = i;
        Some((key, &self.line[value_start..i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfheal_core::Level;

    #[test]
    fn pairs_with_quotes_and_escapes() {
        let line = r#"time=2026-12-04T10:00:00Z level=error msg="query failed: \"orders\"" err="pool timed out" bare"#;
        assert!(looks_like(line));
        assert_eq!(hint(line), Some(Seen::At(Level::Error)));
        let map = map(line);
        assert_eq!(map["msg"], r#"query failed: "orders""#);
        assert_eq!(map["err"], "pool timed out");
        assert_eq!(map["bare"], "");
    }

    #[test]
    fn a_quoted_level_word_inside_a_value_is_not_the_level() {
        assert_eq!(hint(r#"msg="level=error" level=info"#), Some(Seen::Below));
        assert_eq!(hint(r#"level="WARN" msg=x"#), Some(Seen::At(Level::Warn)));
    }

    #[test]
    fn not_logfmt() {
        assert!(!looks_like("2026-12-04 ERROR x=1"));
        assert!(!looks_like("=x"));
        assert!(!looks_like("plain words"));
    }

    #[test]
    fn an_unclosed_quote_ends_at_the_line_end() {
        let map = map(r#"level=error msg="never closed \"#);
        assert_eq!(map["msg"], "never closed \\");
    }
}
