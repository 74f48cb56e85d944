//! Format-preserving JSON edits: find the bytes of the value at a dotted path and
//! replace only those (or insert one member), leaving the rest of the file as it was.

use selfheal_core::{Error, Result};

/// Where a path's value is, or where a new member goes.
enum Spot {
    /// The value occupies `start..end`.
    Value(usize, usize),
    /// The parent object exists without the key: insert at `at`; `first` when the
    /// object is empty; `indent` is the last member's line indentation, if on its own line.
    Insert {
        at: usize,
        first: bool,
        indent: Option<String>,
    },
}

struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
}

fn bad(what: &str) -> Error {
    Error::invalid(format!(
        "the file is not valid JSON ({what}); fix the file first"
    ))
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(bad(&format!("expected `{}` at byte {}", c as char, self.i)))
        }
    }

    /// A string's decoded text; `i` must be at its opening quote.
    fn string(&mut self) -> Result<String> {
        let start = self.i;
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'\\' => self.i += 1,
                b'"' => {
                    let raw = std::str::from_utf8(&self.s[start..self.i])
                        .map_err(|_| bad("invalid UTF-8"))?;
                    return serde_json::from_str(raw).map_err(|_| bad("invalid string"));
                }
                _ => {}
            }
        }
        Err(bad("unterminated string"))
    }

    /// Skips one value.
    fn skip(&mut self, depth: usize) -> Result<()> {
        if depth > 128 {
            return Err(bad("nested too deep"));
        }
        self.ws();
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(bad("expected a key"));
                    }
                    self.string()?;
                    self.expect(b':')?;
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(bad("expected `,` or `}`")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(bad("expected `,` or `]`")),
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while self.peek().is_some_and(|c| {
                    !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                }) {
                    self.i += 1;
                }
                if start == self.i {
                    return Err(bad("expected a value"));
                }
                Ok(())
            }
            None => Err(bad("unexpected end")),
        }
    }

    /// Within the object starting at `i`, the last member named `key`.
    fn member(&mut self, key: &str) -> Result<Option<Spot>> {
        self.ws();
        if self.peek() != Some(b'{') {
            return Ok(None);
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            return Ok(Some(Spot::Insert {
                at: self.i,
                first: true,
                indent: None,
            }));
        }
        let mut found = None;
        let mut last_end;
        let mut last_key_start;
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(bad("expected a key"));
            }
            last_key_start = self.i;
            let name = self.string()?;
            self.expect(b':')?;
            self.ws();
            let start = self.i;
            self.skip(0)?;
            last_end = self.i;
            if name == key {
                found = Some(Spot::Value(start, self.i));
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => break,
                _ => return Err(bad("expected `,` or `}`")),
            }
        }
        Ok(Some(found.unwrap_or_else(|| {
            let line_start = self.s[..last_key_start]
                .iter()
                .rposition(|&c| c == b'\n')
                .map_or(0, |p| p + 1);
            let lead = &self.s[line_start..last_key_start];
            let indent = lead
                .iter()
                .all(|c| matches!(c, b' ' | b'\t'))
                .then(|| String::from_utf8_lossy(lead).into_owned())
                .filter(|_| line_start > 0);
            Spot::Insert {
                at: last_end,
                first: false,
                indent,
            }
        })))
    }
}

/// `text` with the value at `key` (dotted; parents must be objects that exist) set to
/// `value`, every other byte unchanged.
pub(crate) fn set(text: &str, key: &str, value: &serde_json::Value) -> Result<String> {
    let encoded = serde_json::to_string(value)
        .map_err(|e| Error::invalid(format!("could not encode the value: {e}")))?;
    let segments: Vec<&str> = key.split('.').collect();
    let mut scanner = Scanner {
        s: text.as_bytes(),
        i: 0,
    };
    for (n, seg) in segments.iter().enumerate() {
        let last = n + 1 == segments.len();
        let missing = || {
            Error::invalid(format!(
                "cannot set `{key}`: the file has no object `{seg}` on that path; only existing objects are patched"
            ))
        };
        match scanner.member(seg)? {
            Some(Spot::Value(start, end)) if last => {
                return Ok(format!("{}{encoded}{}", &text[..start], &text[end..]));
            }
            Some(Spot::Value(start, _)) => scanner.i = start,
            Some(Spot::Insert { at, first, indent }) if last => {
                let name = serde_json::to_string(seg).unwrap_or_default();
                let member = match (first, indent) {
                    (true, _) => format!("{name}: {encoded}"),
                    (false, Some(indent)) => format!(",\n{indent}{name}: {encoded}"),
                    (false, None) => format!(", {name}: {encoded}"),
                };
                return Ok(format!("{}{member}{}", &text[..at], &text[at..]));
            }
            Some(Spot::Insert { .. }) => return Err(missing()),
            None if n == 0 => return Err(bad("the top level is not an object")),
            None => {
                return Err(Error::invalid(format!(
                    "cannot set `{key}`: its parent is not an object"
                )));
            }
        }
    }
    unreachable!("the loop returns at the last segment")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn replaces_only_the_value_bytes() {
        let text = "{\n  \"name\": \"api\",\n  \"pool\": { \"max\":  10 , \"min\": 1 },\n  \"tags\": [\"a\", {\"max\": 3}]\n}\n";
        let out = set(text, "pool.max", &json!(25)).unwrap();
        assert_eq!(out, text.replace("\"max\":  10 ,", "\"max\":  25 ,"));
        let out = set(text, "name", &json!({"a": [1, "x"]})).unwrap();
        assert_eq!(out, text.replace("\"api\"", "{\"a\":[1,\"x\"]}"));
    }

    #[test]
    fn inserts_a_new_member_in_the_objects_style() {
        let pretty = "{\n  \"pool\": {\n    \"max\": 10\n  }\n}";
        assert_eq!(
            set(pretty, "pool.min", &json!(2)).unwrap(),
            "{\n  \"pool\": {\n    \"max\": 10,\n    \"min\": 2\n  }\n}"
        );
        assert_eq!(
            set("{\"a\": {}}", "a.b", &json!(true)).unwrap(),
            "{\"a\": {\"b\": true}}"
        );
        assert_eq!(
            set("{\"a\": 1}", "b", &json!("x")).unwrap(),
            "{\"a\": 1, \"b\": \"x\"}"
        );
    }

    #[test]
    fn keys_with_escapes_and_strings_with_braces_are_handled() {
        let text = r#"{"note": "a } or \" inside", "k\"ey": 1, "max": 2}"#;
        assert_eq!(
            set(text, "max", &json!(5)).unwrap(),
            text.replace("\"max\": 2", "\"max\": 5")
        );
        assert_eq!(
            set(text, "k\"ey", &json!(7)).unwrap(),
            text.replace("\"k\\\"ey\": 1", "\"k\\\"ey\": 7")
        );
    }

    #[test]
    fn missing_parents_and_non_objects_are_refused() {
        assert!(set("{\"a\": 1}", "b.c", &json!(1)).is_err());
        assert!(set("{\"a\": 1}", "a.c", &json!(1)).is_err());
        assert!(set("[1]", "a", &json!(1)).is_err());
        assert!(set("{\"a\": ", "a", &json!(1)).is_err());
    }
}
