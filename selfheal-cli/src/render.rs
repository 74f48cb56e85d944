//! Human-readable output: aligned tables and key/value lists from the API's JSON.

use std::io::{self, Write};

use serde_json::Value;

/// A table with a header row; columns are padded to their widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: Vec<&'static str>) -> Self {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as columns).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes it; the last column is not padded.
    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = widths[i] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// `value` at a `/`-separated path, as display text (`-` when missing or null).
pub fn text(value: &Value, path: &str) -> String {
    match value.pointer(path) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.2}"),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

/// At most `max` characters of `s` on one line, `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    let one_line = s.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// An RFC 3339 time without sub-seconds: `2026-12-04T23:15:42Z`.
pub fn time(value: &Value, path: &str) -> String {
    let t = text(value, path);
    match chrono_like_trim(&t) {
        Some(short) => short,
        None => t,
    }
}

/// `2026-12-04T23:15:42.123456Z` → `2026-12-04T23:15:42Z` (other text is left alone).
fn chrono_like_trim(t: &str) -> Option<String> {
    let (secs, rest) = t.split_once('.')?;
    let zone = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    (secs.len() == 19 && secs.as_bytes().get(10) == Some(&b'T')).then(|| format!("{secs}{zone}"))
}

/// Every scalar of a JSON object, nested keys joined with `.`, one `key  value` per line:
/// the top-level keys named in `order` first, in that order, then the others as the
/// object holds them (so a key the API gains later is still shown).
pub fn write_fields_in_order(value: &Value, order: &[&str], out: &mut dyn Write) -> io::Result<()> {
    let mut pairs = Vec::new();
    match value {
        Value::Object(map) => {
            for key in order {
                if let Some(v) = map.get(*key) {
                    flatten(key, v, &mut pairs);
                }
            }
            for (k, v) in map.iter().filter(|(k, _)| !order.contains(&k.as_str())) {
                flatten(k, v, &mut pairs);
            }
        }
        other => flatten("", other, &mut pairs),
    }
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (k, v) in pairs {
        writeln!(out, "{k:<width$}  {v}")?;
    }
    Ok(())
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let joined: Vec<String> = items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect();
            out.push((
                prefix.to_owned(),
                if joined.is_empty() {
                    "-".to_owned()
                } else {
                    joined.join(", ")
                },
            ));
        }
        Value::Array(items) => out.push((prefix.to_owned(), format!("{} entries", items.len()))),
        Value::Null => out.push((prefix.to_owned(), "-".to_owned())),
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// Writes `value` as pretty JSON.
pub fn write_json(value: &Value, out: &mut dyn Write) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    writeln!(out, "{text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_columns_to_the_widest_cell() {
        let mut t = Table::new(vec!["ID", "NAME"]);
        t.row(vec!["1".into(), "a".into()]);
        t.row(vec!["12345".into(), "b".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID     NAME\n1      a\n12345  b\n"
        );
    }

    #[test]
    fn times_lose_their_fraction_only() {
        let v = serde_json::json!({"a": "2026-12-04T23:15:42.123456Z", "b": "soon"});
        assert_eq!(time(&v, "/a"), "2026-12-04T23:15:42Z");
        assert_eq!(time(&v, "/b"), "soon");
    }

    #[test]
    fn fields_flatten_nested_objects() {
        let v = serde_json::json!({"dry_run": false, "safety": {"breaker_open": true}, "t": ["x", "y"]});
        let mut out = Vec::new();
        write_fields_in_order(&v, &[], &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "dry_run              false\nsafety.breaker_open  true\nt                    x, y\n"
        );
    }

    #[test]
    fn fields_come_in_the_given_order_then_the_rest() {
        let v = serde_json::json!({"a": 1, "dry_run": false, "replica": "web-1", "safety": {"storm": true}, "z": 2});
        let mut out = Vec::new();
        write_fields_in_order(&v, &["replica", "safety", "dry_run", "missing"], &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "replica       web-1\nsafety.storm  true\ndry_run       false\na             1\nz             2\n"
        );
    }

    #[test]
    fn clip_cuts_long_lines() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("a\nb", 4), "a b");
    }
}
