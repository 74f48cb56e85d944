//! JSON lines: the level read by a scan that allocates nothing, then the whole object
//! flattened to dotted keys (`{"log":{"level":"error"}}` → `log.level`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::level::{self, Seen};
use super::structured::{LEVEL_KEYS, MAX_KEYS};

/// Objects nested deeper than this are kept as JSON text under their key.
const MAX_DEPTH: usize = 4;

/// The level of a JSON line from its first level key (`"level":"ERROR"`,
/// `"log.level":"warn"`, `"level":50`, nested `"log":{"level":"error"}` too), without
/// parsing the line or allocating; `None` when no level key has a level value.
pub(crate) fn hint(line: &str) -> Option<Seen> {
    let b = line.as_bytes();
    let mut i = 0;
    while let Some(q) = find(b, i, b'"') {
        let end = string_end(b, q + 1)?;
        let mut j = skip_ws(b, end + 1);
        if b.get(j) != Some(&b':') {
            i = end + 1;
            continue;
        }
        j = skip_ws(b, j + 1);
        let key = &line[q + 1..end];
        if !LEVEL_KEYS.contains(&key) {
            i = j;
            continue;
        }
        let value = match b.get(j) {
            Some(b'"') => {
                let v_end = string_end(b, j + 1)?;
                i = v_end + 1;
                &line[j + 1..v_end]
            }
            Some(c) if c.is_ascii_digit() => {
                let v_end = (j..b.len())
                    .find(|&k| !b[k].is_ascii_digit())
                    .unwrap_or(b.len());
                i = v_end;
                &line[j..v_end]
            }
            _ => {
                i = j;
                continue;
            }
        };
        if let Some(seen) = level::value(key, value) {
            return Some(seen);
        }
    }
    None
}

fn find(b: &[u8], from: usize, byte: u8) -> Option<usize> {
    b.get(from..)?
        .iter()
        .position(|&c| c == byte)
        .map(|p| p + from)
}

/// The index of the quote closing a string whose text starts at `from`.
fn string_end(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The line's object flattened to dotted keys, each value as text (strings as they
/// are, numbers and booleans printed, arrays and too-deep objects as JSON); `None`
/// when the line is not a JSON object.
pub(crate) fn flatten(line: &str) -> Option<BTreeMap<String, String>> {
    let object: Map<String, Value> = serde_json::from_str(line).ok()?;
    let mut out = BTreeMap::new();
    walk(&mut out, "", object, 0);
    Some(out)
}

fn walk(
    out: &mut BTreeMap<String, String>,
    prefix: &str,
    object: Map<String, Value>,
    depth: usize,
) {
    for (key, value) in object {
        if out.len() >= MAX_KEYS {
            return;
        }
        let key = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        let text = match value {
            Value::Null => continue,
            Value::String(s) => s,
            Value::Object(inner) if depth < MAX_DEPTH => {
                walk(out, &key, inner, depth + 1);
                continue;
            }
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            other => other.to_string(),
        };
        out.insert(key, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfheal_core::Level;

    #[test]
    fn the_level_is_found_without_parsing() {
        assert_eq!(
            hint(
                r#"{"timestamp":"2026-12-04T10:00:00Z","level":"ERROR","fields":{"message":"x"}}"#
            ),
            Some(Seen::At(Level::Error))
        );
        assert_eq!(hint(r#"{"level":"INFO","msg":"ok"}"#), Some(Seen::Below));
        assert_eq!(
            hint(r#"{"level":50,"msg":"boom"}"#),
            Some(Seen::At(Level::Error))
        );
        assert_eq!(
            hint(r#"{"log":{"level":"warn"},"message":"x"}"#),
            Some(Seen::At(Level::Warn))
        );
        assert_eq!(
            hint(r#"{"log.level":"error"}"#),
            Some(Seen::At(Level::Error))
        );
        // A level key inside a string value is not a key.
        assert_eq!(
            hint(r#"{"msg":"\"level\":\"error\"","level":"debug"}"#),
            Some(Seen::Below)
        );
        assert_eq!(hint(r#"{"msg":"no level"}"#), None);
        assert_eq!(hint(r#"{"level":"#), None);
        assert_eq!(hint(r#"{"level":"ERR"#), None);
    }

    #[test]
    fn objects_flatten_to_dotted_keys() {
        let map = flatten(r#"{"level":"error","log":{"logger":"orders"},"n":3,"ok":true,"tags":["a"],"none":null}"#).unwrap();
        assert_eq!(map["log.logger"], "orders");
        assert_eq!(map["n"], "3");
        assert_eq!(map["ok"], "true");
        assert_eq!(map["tags"], r#"["a"]"#);
        assert!(!map.contains_key("none"));
        assert_eq!(flatten("[1,2]"), None);
        assert_eq!(flatten("{not json"), None);
    }
}
