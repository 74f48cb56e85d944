//! Reading and setting one key in a TOML, JSON, YAML or `.env` text.

use std::path::Path;

use selfheal_core::{Error, Result};
use serde_json::Value;

/// The format of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigFormat {
    /// TOML, edited in place with `toml_edit`: comments, order and formatting are kept.
    Toml,
    /// JSON: only the value's bytes change (or one member is inserted in the object's
    /// style); everything else stays as it was.
    Json,
    /// YAML: a plain scalar in block style changes in place (comments and layout
    /// kept); anything else is rewritten with `serde-saphyr`, without comments.
    Yaml,
    /// `KEY=value` lines: only the key's line changes (or one is appended).
    Env,
}

impl ConfigFormat {
    /// The format a path's name says: `.toml`, `.json`, `.yaml`/`.yml`, `.env` or a
    /// name ending in `.env` (`prod.env`, `.env`).
    pub fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name == ".env" || name.ends_with(".env") || name.starts_with(".env.") {
            return Some(ConfigFormat::Env);
        }
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "toml" => Some(ConfigFormat::Toml),
            "json" => Some(ConfigFormat::Json),
            "yaml" | "yml" => Some(ConfigFormat::Yaml),
            _ => None,
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigFormat::Toml => "toml",
            ConfigFormat::Json => "json",
            ConfigFormat::Yaml => "yaml",
            ConfigFormat::Env => "env",
        }
    }

    /// Checks that `key` is a key this format can address and `value` a value it can hold.
    pub(crate) fn check(self, key: &str, value: &Value) -> Result<()> {
        if value.is_null() {
            return Err(Error::invalid(
                "`value` is null; give the new value (a string, number, boolean, array or table)",
            ));
        }
        if self == ConfigFormat::Env {
            let mut chars = key.chars();
            let ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok || key.len() > 128 {
                return Err(Error::invalid(format!(
                    "invalid .env key `{key}`: use letters, digits and `_`, not starting with a digit"
                )));
            }
            return match value {
                Value::String(s) if s.contains(['\n', '\r', '\0']) => Err(Error::invalid(
                    "an .env value cannot hold a line break or NUL; give a one-line value",
                )),
                Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
                _ => Err(Error::invalid(
                    "an .env value must be a string, number or boolean",
                )),
            };
        }
        if key.is_empty()
            || key.len() > 256
            || key
                .split('.')
                .any(|seg| seg.is_empty() || seg.chars().any(char::is_control))
        {
            return Err(Error::invalid(format!(
                "invalid key `{key}`: give a dotted path of non-empty names such as `database.pool.max_size`"
            )));
        }
        if self == ConfigFormat::Toml && contains_null(value) {
            return Err(Error::invalid(
                "TOML has no null; remove the nulls from `value`",
            ));
        }
        Ok(())
    }

    /// The value at `key` in `text`, `None` when it is not there.
    pub(crate) fn get(self, text: &str, key: &str) -> Result<Option<Value>> {
        match self {
            ConfigFormat::Toml => {
                let doc = parse_toml(text)?;
                let mut item = doc.as_item();
                for seg in key.split('.') {
                    match item.get(seg) {
                        Some(next) if !next.is_none() => item = next,
                        _ => return Ok(None),
                    }
                }
                Ok(item.as_value().map(toml_to_json))
            }
            ConfigFormat::Json | ConfigFormat::Yaml => {
                let tree = self.parse_tree(text)?;
                Ok(walk(&tree, key).cloned())
            }
            ConfigFormat::Env => Ok(env_find(text, key).map(|(_, _, v)| Value::String(v))),
        }
    }

    /// `text` with `key` set to `value`. Parents must exist; the key itself may be new.
    pub(crate) fn set(self, text: &str, key: &str, value: &Value) -> Result<String> {
        self.check(key, value)?;
        match self {
            ConfigFormat::Toml => Ok(same_endings(text, toml_set(text, key, value)?)),
            ConfigFormat::Json => {
                // Parsed in full first, so a broken file gets serde_json's error.
                self.parse_tree(text)?;
                super::json_span::set(text, key, value)
            }
            ConfigFormat::Yaml => {
                let mut tree = self.parse_tree(text)?;
                set_in_tree(&mut tree, key, value.clone())?;
                // Change only the value's text when the result parses to exactly the
                // document a full rewrite would hold.
                if let Some(edited) = super::yaml_line::set(text, key, value)
                    && self.parse_tree(&edited).is_ok_and(|t| t == tree)
                {
                    return Ok(edited);
                }
                let mut out = serde_saphyr::to_string(&tree)
                    .map_err(|e| Error::invalid(format!("could not write the YAML back: {e}")))?;
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                Ok(same_endings(text, out))
            }
            ConfigFormat::Env => Ok(env_set(text, key, value)),
        }
    }

    /// Whether the value read back equals the value set (`.env` values are strings).
    pub(crate) fn same(self, read: &Value, set: &Value) -> bool {
        match self {
            ConfigFormat::Env => read.as_str() == Some(render_env(set).as_str()),
            _ => read == set,
        }
    }

    fn parse_tree(self, text: &str) -> Result<Value> {
        if self == ConfigFormat::Json {
            serde_json::from_str(text).map_err(|e| {
                Error::invalid(format!(
                    "the file is not valid JSON: {e}; fix the file first"
                ))
            })
        } else if text.trim().is_empty() {
            Ok(Value::Object(serde_json::Map::new()))
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                Error::invalid(format!(
                    "the file is not valid YAML: {e}; fix the file first"
                ))
            })
        }
    }
}

/// `out` with the line endings of `original`: CRLF if it used CRLF, and a final line
/// break only if it had one.
fn same_endings(original: &str, out: String) -> String {
    let mut out = if original.contains("\r\n") {
        out.replace("\r\n", "\n").replace('\n', "\r\n")
    } else {
        out
    };
    if !original.is_empty() && !original.ends_with('\n') {
        while out.ends_with('\n') {
            out.pop();
            if out.ends_with('\r') {
                out.pop();
            }
        }
    }
    out
}

fn contains_null(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(a) => a.iter().any(contains_null),
        Value::Object(o) => o.values().any(contains_null),
        _ => false,
    }
}

fn walk<'a>(tree: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(tree, |node, seg| match node {
        Value::Object(map) => map.get(seg),
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn set_in_tree(tree: &mut Value, key: &str, value: Value) -> Result<()> {
    let (last, parents) = key
        .rsplit_once('.')
        .map_or((key, None), |(p, l)| (l, Some(p)));
    let parent = match parents {
        None => tree,
        Some(p) => {
            let mut node = tree;
            for seg in p.split('.') {
                node = match node {
                    Value::Object(map) => map.get_mut(seg),
                    _ => None,
                }
                .ok_or_else(|| missing_parent(key, seg))?;
            }
            node
        }
    };
    match parent {
        Value::Object(map) => {
            map.insert(last.to_owned(), value);
            Ok(())
        }
        _ => Err(Error::invalid(format!(
            "cannot set `{key}`: its parent is not a table/object"
        ))),
    }
}

fn missing_parent(key: &str, seg: &str) -> Error {
    Error::invalid(format!(
        "cannot set `{key}`: the file has no table `{seg}` on that path; only existing tables are patched"
    ))
}

fn parse_toml(text: &str) -> Result<toml_edit::DocumentMut> {
    text.parse::<toml_edit::DocumentMut>().map_err(|e| {
        Error::invalid(format!(
            "the file is not valid TOML: {e}; fix the file first"
        ))
    })
}

fn toml_set(text: &str, key: &str, value: &Value) -> Result<String> {
    let mut doc = parse_toml(text)?;
    let (last, parents) = key
        .rsplit_once('.')
        .map_or((key, None), |(p, l)| (l, Some(p)));
    let mut item = doc.as_item_mut();
    for seg in parents.into_iter().flat_map(|p| p.split('.')) {
        item = item
            .get_mut(seg)
            .filter(|i| !i.is_none())
            .ok_or_else(|| missing_parent(key, seg))?;
    }
    let mut new = json_to_toml(value);
    let table = item
        .as_table_like_mut()
        .ok_or_else(|| Error::invalid(format!("cannot set `{key}`: its parent is not a table")))?;
    match table.get_mut(last) {
        Some(existing) => {
            let Some(old) = existing.as_value() else {
                return Err(Error::invalid(format!(
                    "`{key}` is a table; set one of its keys instead"
                )));
            };
            // Keep the spacing and a trailing comment (`max = 10 # per replica`).
            *new.decor_mut() = old.decor().clone();
            *existing = toml_edit::Item::Value(new);
        }
        None => {
            table.insert(last, toml_edit::Item::Value(new));
        }
    }
    Ok(doc.to_string())
}

fn json_to_toml(value: &Value) -> toml_edit::Value {
    match value {
        Value::String(s) => s.as_str().into(),
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Value::Array(items) => {
            let array: toml_edit::Array = items.iter().map(json_to_toml).collect();
            toml_edit::Value::Array(array)
        }
        Value::Object(map) => {
            let mut table = toml_edit::InlineTable::new();
            for (k, v) in map {
                table.insert(k, json_to_toml(v));
            }
            toml_edit::Value::InlineTable(table)
        }
        // Refused by `check` before we get here.
        Value::Null => "".into(),
    }
}

fn toml_to_json(value: &toml_edit::Value) -> Value {
    match value {
        toml_edit::Value::String(s) => Value::String(s.value().clone()),
        toml_edit::Value::Integer(i) => Value::from(*i.value()),
        toml_edit::Value::Float(f) => Value::from(*f.value()),
        toml_edit::Value::Boolean(b) => Value::Bool(*b.value()),
        toml_edit::Value::Datetime(d) => Value::String(d.value().to_string()),
        toml_edit::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml_edit::Value::InlineTable(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.to_owned(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// The line index, the `export ` prefix (or empty) and the unquoted value of `key`.
fn env_find(text: &str, key: &str) -> Option<(usize, String, String)> {
    text.lines()
        .collect::<Vec<_>>()
        .into_iter()
        .enumerate()
        .rev()
        .find_map(|(i, line)| {
            let trimmed = line.trim_start();
            let (prefix, rest) = match trimmed.strip_prefix("export ") {
                Some(rest) => ("export ", rest.trim_start()),
                None => ("", trimmed),
            };
            let (name, value) = rest.split_once('=')?;
            (name.trim_end() == key).then(|| (i, prefix.to_owned(), unquote(value.trim())))
        })
}

fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let inner = &v[1..v.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        out
    } else if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        v[1..v.len() - 1].to_owned()
    } else {
        // An unquoted value ends at an inline comment.
        v.split(" #")
            .next()
            .unwrap_or_default()
            .trim_end()
            .to_owned()
    }
}

fn render_env(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn quote_env(value: &Value) -> String {
    let raw = render_env(value);
    if !raw.is_empty()
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@,+%".contains(c))
    {
        return raw;
    }
    let mut out = String::from("\"");
    for c in raw.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn env_set(text: &str, key: &str, value: &Value) -> String {
    let rendered = quote_env(value);
    match env_find(text, key) {
        Some((index, prefix, _)) => {
            let mut out = String::with_capacity(text.len() + rendered.len());
            for (i, line) in text.split_inclusive('\n').enumerate() {
                if i == index {
                    let indent = &line[..line.len() - line.trim_start().len()];
                    let ending = if line.ends_with("\r\n") {
                        "\r\n"
                    } else if line.ends_with('\n') {
                        "\n"
                    } else {
                        ""
                    };
                    out.push_str(&format!("{indent}{prefix}{key}={rendered}{ending}"));
                } else {
                    out.push_str(line);
                }
            }
            out
        }
        None => {
            let mut out = text.to_owned();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("{key}={rendered}\n"));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn toml_keeps_comments_order_and_the_trailing_comment_of_the_value() {
        let text = "# service config\n[database]\nurl = \"postgres://db/app\"\nmax_size = 10 # per replica\n\n[cache]\nttl = 60\n";
        let out = ConfigFormat::Toml
            .set(text, "database.max_size", &json!(50))
            .unwrap();
        assert_eq!(
            out,
            "# service config\n[database]\nurl = \"postgres://db/app\"\nmax_size = 50 # per replica\n\n[cache]\nttl = 60\n"
        );
        assert_eq!(
            ConfigFormat::Toml.get(&out, "database.max_size").unwrap(),
            Some(json!(50))
        );
        let added = ConfigFormat::Toml
            .set(text, "cache.mode", &json!("lru"))
            .unwrap();
        assert!(added.ends_with("ttl = 60\nmode = \"lru\"\n"), "{added}");
    }

    #[test]
    fn toml_refuses_missing_tables_and_replacing_a_table() {
        let text = "[database]\nmax_size = 10\n";
        let err = ConfigFormat::Toml
            .set(text, "nope.max_size", &json!(1))
            .unwrap_err();
        assert!(err.message().contains("no table `nope`"), "{err}");
        let err = ConfigFormat::Toml
            .set(text, "database", &json!(1))
            .unwrap_err();
        assert!(err.message().contains("is a table"), "{err}");
        let err = ConfigFormat::Toml.set("x = [", "x", &json!(1)).unwrap_err();
        assert!(err.message().contains("not valid TOML"), "{err}");
    }

    #[test]
    fn json_and_yaml_set_nested_keys() {
        let json_text = "{\n  \"pool\": {\"max\": 10, \"min\": 1}\n}\n";
        let out = ConfigFormat::Json
            .set(json_text, "pool.max", &json!(25))
            .unwrap();
        assert!(out.ends_with('\n'));
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            json!({"pool": {"max": 25, "min": 1}})
        );
        let yaml = "pool:\n  max: 10\n  min: 1\nname: api\n";
        let out = ConfigFormat::Yaml
            .set(yaml, "pool.max", &json!(25))
            .unwrap();
        assert_eq!(
            ConfigFormat::Yaml.get(&out, "pool.max").unwrap(),
            Some(json!(25))
        );
        assert_eq!(
            ConfigFormat::Yaml.get(&out, "name").unwrap(),
            Some(json!("api"))
        );
        assert!(ConfigFormat::Json.set("{", "a", &json!(1)).is_err());
        // A plain scalar changes in place, comments kept; a new key rewrites the file.
        let commented = "# pool\npool:\n  max: 10 # per replica\n";
        assert_eq!(
            ConfigFormat::Yaml
                .set(commented, "pool.max", &json!(25))
                .unwrap(),
            "# pool\npool:\n  max: 25 # per replica\n"
        );
        let added = ConfigFormat::Yaml
            .set(commented, "pool.min", &json!(1))
            .unwrap();
        assert_eq!(
            ConfigFormat::Yaml.get(&added, "pool.min").unwrap(),
            Some(json!(1))
        );
        assert_eq!(
            ConfigFormat::Yaml.get(&added, "pool.max").unwrap(),
            Some(json!(10))
        );
    }

    #[test]
    fn env_changes_only_the_keys_line_and_quotes_when_needed() {
        let text = "# app\nexport POOL_MAX=10\nNAME=api # the name\r\nOTHER='x y'\n";
        let out = ConfigFormat::Env.set(text, "POOL_MAX", &json!(50)).unwrap();
        assert_eq!(
            out,
            "# app\nexport POOL_MAX=50\nNAME=api # the name\r\nOTHER='x y'\n"
        );
        let out = ConfigFormat::Env
            .set(text, "NAME", &json!("my api $HOME"))
            .unwrap();
        assert_eq!(
            out,
            "# app\nexport POOL_MAX=10\nNAME=\"my api \\$HOME\"\r\nOTHER='x y'\n"
        );
        assert_eq!(
            ConfigFormat::Env.get(&out, "NAME").unwrap(),
            Some(json!("my api $HOME"))
        );
        assert_eq!(
            ConfigFormat::Env.get(text, "OTHER").unwrap(),
            Some(json!("x y"))
        );
        assert_eq!(
            ConfigFormat::Env.get(text, "NAME").unwrap(),
            Some(json!("api"))
        );
        let out = ConfigFormat::Env.set("A=1", "B", &json!(true)).unwrap();
        assert_eq!(out, "A=1\nB=true\n");
    }

    #[test]
    fn bad_keys_and_values_are_refused_with_a_fix() {
        for (format, key, value) in [
            (ConfigFormat::Env, "1ABC", json!(1)),
            (ConfigFormat::Env, "A-B", json!(1)),
            (ConfigFormat::Env, "A", json!("two\nlines")),
            (ConfigFormat::Env, "A", json!([1])),
            (ConfigFormat::Toml, "a..b", json!(1)),
            (ConfigFormat::Toml, "a", json!(null)),
            (ConfigFormat::Toml, "a", json!([1, null])),
            (ConfigFormat::Json, "", json!(1)),
        ] {
            let err = format.check(key, &value).unwrap_err();
            assert_eq!(
                err.kind(),
                selfheal_core::ErrorKind::InvalidInput,
                "{key} {value}"
            );
        }
    }

    #[test]
    fn formats_come_from_file_names() {
        for (name, format) in [
            ("app.toml", Some(ConfigFormat::Toml)),
            ("a/b/APP.JSON", Some(ConfigFormat::Json)),
            ("x.yml", Some(ConfigFormat::Yaml)),
            ("x.yaml", Some(ConfigFormat::Yaml)),
            (".env", Some(ConfigFormat::Env)),
            ("prod.env", Some(ConfigFormat::Env)),
            (".env.local", Some(ConfigFormat::Env)),
            ("app.ini", None),
        ] {
            assert_eq!(ConfigFormat::from_path(Path::new(name)), format, "{name}");
        }
    }
}
