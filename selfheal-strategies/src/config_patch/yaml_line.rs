//! Format-preserving YAML edits for the common case: a block-mapping key whose value is
//! a plain scalar on the same line. Only the value changes; comments and layout stay.
//! Anything else (flow style, block scalars, anchors, a new key) returns `None` and the
//! caller falls back to rewriting the document.

use serde_json::Value;

/// `text` with the scalar at dotted `key` replaced by `value`, or `None` when the
/// key is not a plain one-line scalar in block style.
pub(crate) fn set(text: &str, key: &str, value: &Value) -> Option<String> {
    let rendered = match value {
        // A JSON string is a valid YAML double-quoted scalar.
        Value::String(_) | Value::Number(_) | Value::Bool(_) => {
            serde_json::to_string(value).ok()?
        }
        _ => return None,
    };
    let segments: Vec<&str> = key.split('.').collect();
    // (indent, key) of the mappings we are inside, outermost first.
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let body = line.trim_end_matches(['\n', '\r']);
        let trimmed = body.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        if trimmed.starts_with('-') || body.contains('\t') {
            // Sequences and tabs: not the simple case.
            return None;
        }
        let indent = body.len() - trimmed.len();
        let (name, rest) = trimmed.split_once(':')?;
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return None;
        }
        let name = name
            .trim_end()
            .trim_matches('"')
            .trim_matches('\'')
            .to_owned();
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let depth = stack.len();
        let on_path = depth < segments.len()
            && stack.iter().zip(&segments).all(|((_, k), s)| k == s)
            && name == segments[depth];
        let value_part = rest.trim_start();
        if on_path && depth + 1 == segments.len() {
            let (scalar, comment) = match value_part.find(" #") {
                Some(i) => (&value_part[..i], &value_part[i..]),
                None => (value_part, ""),
            };
            let scalar = scalar.trim_end();
            if scalar.is_empty() || scalar.starts_with(['|', '>', '&', '*', '{', '[', '!']) {
                return None;
            }
            if (scalar.starts_with('"') || scalar.starts_with('\''))
                && comment.contains(['"', '\''])
            {
                return None; // a quote inside: the comment split may be wrong
            }
            let value_start = start + (body.len() - value_part.len());
            let gap = &value_part[scalar.len()..value_part.len() - comment.len()];
            let line_end = start + body.len();
            return Some(format!(
                "{}{rendered}{gap}{comment}{}",
                &text[..value_start],
                &text[line_end..]
            ));
        }
        if value_part.is_empty() || value_part.starts_with('#') {
            stack.push((indent, name));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn replaces_the_scalar_and_keeps_comments_and_layout() {
        let text = "# api\ndatabase:\n  url: postgres://db/app   # primary\n  pool:\n    max: 10  # per replica\n    min: 1\ncache:\n  max: 99\n";
        assert_eq!(
            set(text, "database.pool.max", &json!(25)).unwrap(),
            text.replace("max: 10  #", "max: 25  #")
        );
        assert_eq!(
            set(text, "cache.max", &json!("lots")).unwrap(),
            text.replace("max: 99", "max: \"lots\"")
        );
        assert_eq!(
            set(text, "database.url", &json!(false)).unwrap(),
            text.replace("postgres://db/app   #", "false   #")
        );
    }

    #[test]
    fn anything_but_a_plain_scalar_falls_back() {
        assert!(set("a:\n  b: [1, 2]\n", "a.b", &json!(1)).is_none());
        assert!(set("a:\n  b: |\n    text\n", "a.b", &json!(1)).is_none());
        assert!(set("a:\n  - b: 1\n", "a.b", &json!(1)).is_none());
        assert!(set("a:\n  b: 1\n", "a.c", &json!(1)).is_none(), "a new key");
        assert!(set("a:\n  b: 1\n", "a.b", &json!([1])).is_none());
        assert!(set("a: {b: 1}\n", "a.b", &json!(2)).is_none());
    }
}
