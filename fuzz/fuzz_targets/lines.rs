//! Any text as log lines through the line parser and the trace joiner: no panic, every
//! signal within its bounds, the same signals every time, and a line `parse` calls not
//! a signal (below WARN, no level) is never one on its own in the joiner either.
//!
//! The first byte picks how the rest is read: as raw bytes, or as a list of pieces (one
//! byte each) that spell the shapes loggers write (level words, JSON keys, logfmt
//! pairs, trace lines, ANSI colours), which random bytes rarely do. Small bounds
//! (8 lines, 512 bytes a trace) so traces are cut often.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal_core::{MAX_FIELD_BYTES, MAX_FIELDS, MAX_MESSAGE_BYTES, Signal};
use selfheal_sources::lines::{LineParser, Lines};

/// What a piece byte stands for.
const PIECES: &[&str] = &[
    "\n",
    "\n",
    "\n",
    " ",
    "\t",
    "2026-12-04T10:00:00.123Z ",
    "ERROR ",
    " WARN ",
    " INFO ",
    "[error] ",
    "E1204 ",
    "orders: ",
    "span{a=1 b=\"x y\"}:",
    "query failed",
    " error=pool timed out",
    " err=\"refused\"",
    "{\"level\":\"error\",",
    "\"level\":50,",
    "\"msg\":\"boom\",",
    "\"error\":{\"message\":\"x\",\"stack\":\"a\\n  at b\"},",
    "\"fields\":{\"message\":\"m\"}",
    "}",
    "level=error ",
    "msg=\"a \\\"b\\\"\" ",
    "\tat com.acme.F.g(F.java:1)",
    "Caused by: java.io.IOException: x",
    "\t... 3 more",
    "java.lang.IllegalStateException: boom",
    "Traceback (most recent call last):",
    "  File \"a.py\", line 1, in f",
    "ValueError: bad",
    "During handling of the above exception, another exception occurred:",
    "thread 'main' panicked at src/a.rs:1:1:",
    "stack backtrace:",
    "   0: app::f",
    "note: run with `RUST_BACKTRACE=1`",
    "panic: runtime error",
    "goroutine 1 [running]:",
    "main.f(0x1)",
    "    at f (a.js:1:2)",
    "\x1b[31m",
    "\x1b[0m",
    "\r",
    "é",
    "日本",
    "\u{fffd}",
    ":",
    "=",
    "\"",
    "\\",
];

const MAX_STACK: usize = 512;

/// What a signal says, without the time it was read.
fn key(s: &Signal) -> (String, String, Option<String>, Vec<(String, String)>) {
    let fields = s.fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    (s.target.clone(), s.message.clone(), s.stack.clone(), fields)
}

fn run(parser: &LineParser, text: &str) -> Vec<Signal> {
    let mut lines = Lines::new(parser.clone());
    let mut out: Vec<Signal> = text.split('\n').filter_map(|l| lines.push(l)).collect();
    out.extend(lines.flush());
    assert!(!lines.is_pending());
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes: Vec<u8> = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        rest.iter()
            .flat_map(|&b| PIECES[usize::from(b) % PIECES.len()].bytes())
            .collect()
    };
    let text = String::from_utf8_lossy(&bytes);
    let parser = LineParser::new("fuzz")
        .target_key(if mode & 2 == 0 { "logger" } else { "service" })
        .max_stack_lines(8)
        .max_stack_bytes(MAX_STACK);

    let signals = run(&parser, &text);
    for s in &signals {
        assert!(s.message.len() <= MAX_MESSAGE_BYTES);
        assert!(s.target.len() <= MAX_FIELD_BYTES);
        assert!(s.stack.as_ref().is_none_or(|st| st.len() <= MAX_STACK), "{:?}", s.stack);
        assert!(s.fields.len() <= MAX_FIELDS);
        assert!(s.fields.values().all(|v| v.len() <= MAX_FIELD_BYTES));
    }
    let again = run(&parser, &text);
    assert_eq!(
        signals.iter().map(key).collect::<Vec<_>>(),
        again.iter().map(key).collect::<Vec<_>>()
    );
    for line in text.split('\n') {
        if let Some(s) = parser.parse(line) {
            assert!(s.message.len() <= MAX_MESSAGE_BYTES);
        }
    }
});
