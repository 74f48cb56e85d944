//! The stateless normalizing fingerprinter: one pass over the message, masking what varies.

use super::{Fingerprint, stack_signature};
use crate::{Fingerprinter, Signal};

/// Masks numbers, hex, UUIDs, IPs, paths, URLs, quoted values, timestamps, durations
/// and `key=value` values, then hashes the template.
#[derive(Debug, Clone, Default)]
pub struct Normalizer {
    _private: (),
}

/// The mask that replaces every variable part.
pub const MASK: &str = "<*>";

impl Normalizer {
    /// Masks the variable parts of `message`.
    pub fn template(&self, message: &str) -> String {
        let mut out = String::with_capacity(message.len().min(4096));
        let bytes = message.as_bytes();
        let mut i = 0;
        let mut after_eq = false;
        while i < bytes.len() {
            let c = bytes[i];
            if c == b'"' || c == b'\'' || c == b'`' {
                // A quoted value: mask through the closing quote (or end of line).
                let end = bytes[i + 1..]
                    .iter()
                    .position(|&b| b == c)
                    .map_or(bytes.len(), |p| i + 1 + p + 1);
                push_mask(&mut out);
                i = end;
                after_eq = false;
                continue;
            }
            if is_delim(c) {
                if c.is_ascii_whitespace() {
                    if !out.ends_with(' ') && !out.is_empty() {
                        out.push(' ');
                    }
                } else {
                    out.push(c as char);
                }
                after_eq = c == b'=';
                i += 1;
                continue;
            }
            // A word: up to the next delimiter.
            let start = i;
            while i < bytes.len() && !is_delim(bytes[i]) && bytes[i] != b'"' && bytes[i] != b'\'' {
                i += 1;
            }
            let word = &message[start..i];
            if after_eq || is_variable(word) {
                push_mask(&mut out);
            } else {
                out.push_str(word);
            }
            after_eq = false;
        }
        while out.ends_with(' ') {
            out.pop();
        }
        out
    }
}

fn push_mask(out: &mut String) {
    // Adjacent masks ("<*>.<*>" stays, "<*><*>" collapses).
    if !out.ends_with(MASK) {
        out.push_str(MASK);
    }
}

fn is_delim(c: u8) -> bool {
    c.is_ascii_whitespace()
        || matches!(
            c,
            b',' | b';'
                | b'('
                | b')'
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b'<'
                | b'>'
                | b'='
                | b':'
                | b'|'
        )
}

/// A word is variable when it holds a digit, is a path or URL, or is long hex.
fn is_variable(word: &str) -> bool {
    let b = word.as_bytes();
    if b.iter().any(u8::is_ascii_digit) {
        return true;
    }
    if b.first() == Some(&b'/') && b.len() > 1 || word.starts_with("//") {
        return true;
    }
    if b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    // emails
    if b.contains(&b'@') && b.contains(&b'.') {
        return true;
    }
    false
}

impl Fingerprinter for Normalizer {
    fn name(&self) -> &str {
        "normalizer"
    }

    fn fingerprint(&self, signal: &Signal) -> Fingerprint {
        let template = self.template(&signal.message);
        let stack = signal
            .stack
            .as_deref()
            .map(stack_signature)
            .filter(|s| !s.is_empty());
        Fingerprint::new(&signal.service, template, stack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> String {
        Normalizer::default().template(s)
    }

    #[test]
    fn masks_what_varies() {
        assert_eq!(
            t("pool timed out while waiting for an open connection"),
            "pool timed out while waiting for an open connection"
        );
        assert_eq!(t("user 42 not found"), "user <*> not found");
        assert_eq!(
            t("GET /api/v1/users failed: status=503"),
            "GET <*> failed: status=<*>"
        );
        assert_eq!(t("key 'session:abc' missing"), "key <*> missing");
        assert_eq!(
            t("request 550e8400-e29b-41d4-a716-446655440000 took 30ms"),
            "request <*> took <*>"
        );
        assert_eq!(
            t("connect https://example.com:443/x refused"),
            "connect https:<*>:<*> refused"
        );
        assert_eq!(t("  spaces   collapse  "), "spaces collapse");
    }

    #[test]
    fn same_shape_same_id_different_service_different_id() {
        let f = Normalizer::default();
        let a = f.fingerprint(&Signal::new("t", "timeout after 100ms"));
        let b = f.fingerprint(&Signal::new("t", "timeout after 2500ms"));
        let c = f.fingerprint(&Signal::new("t", "timeout after 2500ms").service("other"));
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
    }
}
