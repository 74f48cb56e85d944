//! Any line: no panic, no space at either end, and the template is a fixed point
//! (normalized again, unchanged).
//!
//! The first byte picks how the rest is read: as raw bytes, or as a list of pieces (one
//! byte each) that put multibyte text (CJK, emoji, combining marks) inside quotes and
//! next to masks, numbers, host names, paths, URLs, error codes, times, time zones and
//! delimiters, the mixes random bytes rarely spell. `SELFHEAL_FUZZ_PANICS_ONLY=1` leaves
//! the fixed-point check out, to hunt panics alone.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use selfheal_core::Normalizer;

static FIXED_POINT: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("SELFHEAL_FUZZ_PANICS_ONLY").is_none());

/// What a piece byte stands for.
const PIECES: &[&str] = &[
    "日本語",
    "設定",
    "中",
    "ぁ",
    "😀",
    "🚀",
    "e\u{301}",
    "\u{fffd}",
    "<*>",
    "'",
    "\"",
    "`",
    " ",
    "\t",
    ":",
    "=",
    ",",
    ";",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "<",
    ">",
    "|",
    ".",
    "@",
    "~",
    "-",
    "/",
    "\\",
    "0",
    "42",
    "5 ms",
    "0x7f",
    "deadbeef",
    "10.0.0.7:5432",
    "a.b",
    "host.example.com",
    "config.yaml",
    "/var/lib/x",
    "https://h.com/p",
    "x",
    "GET",
    "key",
    "ms",
    "MB",
    "Mon",
    "()",
    "\"OOM\"",
    "'ERR'",
    "FATAL",
    "DEADBEEF",
    "12:30:01.5",
    "UTC",
    "://",
    "https",
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let line: Vec<u8> = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        rest.iter()
            .flat_map(|&b| PIECES[usize::from(b) % PIECES.len()].bytes())
            .collect()
    };
    let n = Normalizer::default();
    let mut once = String::new();
    n.template_into(&line, &mut once);
    assert!(!once.starts_with(' ') && !once.ends_with(' '), "{once:?}");
    if *FIXED_POINT {
        assert_eq!(
            n.template(&once),
            once,
            "input: {:?}",
            String::from_utf8_lossy(&line)
        );
    }
    assert_eq!(n.fingerprint_bytes("svc", &line).id.len(), 16);
});
