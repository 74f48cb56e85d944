//! The fields tracing-subscriber's `fmt` layer writes after an event's message
//! (`query failed error=pool timed out while waiting for an open connection took_ms=3`).

use std::collections::BTreeMap;

use selfheal_core::{ERROR_FIELDS, MAX_FIELDS};

/// Splits the fields off `message` when one of them is an error field
/// ([`ERROR_FIELDS`]): the message becomes the event's message followed by the error's
/// text (`query failed: pool timed out …`), as [`selfheal_core::HealerLayer`] builds it,
/// and every field is kept. A value written with `%` (`Display`) is not quoted and may
/// hold spaces: it runs up to the next ` key=`. `None` when no error field is there.
pub(crate) fn split(message: &str) -> Option<(String, BTreeMap<String, String>)> {
    let at = (0..message.len())
        .filter(|&i| i == 0 || message.as_bytes()[i - 1] == b' ')
        .find(|&i| {
            ERROR_FIELDS
                .iter()
                .any(|k| message[i..].starts_with(k) && message[i + k.len()..].starts_with('='))
        })?;
    let head = message[..at].trim_end();
    let fields = pairs(&message[at..]);
    let mut out = head.to_owned();
    for key in ERROR_FIELDS {
        let Some(text) = fields.get(key).filter(|t| !t.is_empty()) else {
            continue;
        };
        if out.contains(text.as_str()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(text);
    }
    Some((out, fields))
}

/// `key=value key2="quoted"` pairs; an unquoted value runs up to the next ` key=`.
fn pairs(mut s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    while let Some((key, rest)) = s.split_once('=') {
        if out.len() >= MAX_FIELDS {
            break;
        }
        let (value, next) = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (
                quoted[..end].to_owned(),
                quoted.get(end + 1..).unwrap_or(""),
            )
        } else {
            let end = next_key(rest).unwrap_or(rest.len());
            (rest[..end].trim_end().to_owned(), &rest[end..])
        };
        out.insert(key.trim().to_owned(), value);
        s = next.trim_start();
    }
    out
}

/// Where the next ` key=` starts in `s` (after its space).
fn next_key(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (1..b.len()).find(|&i| {
        b[i - 1] == b' ' && (b[i].is_ascii_alphabetic() || b[i] == b'_') && {
            let key_end = b[i..]
                .iter()
                .position(|c| !(c.is_ascii_alphanumeric() || b"_.".contains(c)))
                .map_or(b.len(), |p| p + i);
            b.get(key_end) == Some(&b'=')
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_error_field_joins_the_message() {
        let (message, fields) = split(
            "query failed error=pool timed out while waiting for an open connection took_ms=3",
        )
        .unwrap();
        assert_eq!(
            message,
            "query failed: pool timed out while waiting for an open connection"
        );
        assert_eq!(
            fields["error"],
            "pool timed out while waiting for an open connection"
        );
        assert_eq!(fields["took_ms"], "3");
    }

    #[test]
    fn quoted_and_leading_fields() {
        let (message, fields) = split(r#"err="connection refused" peer=db:5432"#).unwrap();
        assert_eq!(message, "connection refused");
        assert_eq!(fields["peer"], "db:5432");
        let (message, _) = split("request failed: timeout error=timeout").unwrap();
        assert_eq!(message, "request failed: timeout", "the text is there once");
    }

    #[test]
    fn no_error_field_no_split() {
        assert_eq!(split("query failed took_ms=3"), None);
        assert_eq!(split("my_error=3 is not one"), None);
        assert_eq!(split(""), None);
    }
}
