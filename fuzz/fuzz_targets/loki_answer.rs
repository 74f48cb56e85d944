//! Any bytes as a Loki answer: `parse_query_range` and `parse_tail_frame` never panic;
//! an answer they read counts each entry once (read or malformed); every entry read has
//! a timestamp of zero or more, maps to a signal (or to none, below warn) without
//! panicking, and moves a cursor that then knows it, and the cursor survives JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal_sources::loki::{Answer, Cursor, LokiSource, parse_query_range, parse_tail_frame};

fuzz_target!(|data: &[u8]| {
    let source = LokiSource::new("http://loki:3100", "{app=\"fuzz\"}");
    for answer in [parse_query_range(data), parse_tail_frame(data)] {
        match answer {
            Ok(answer) => check(&source, answer),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
});

fn check(source: &LokiSource, mut answer: Answer) {
    assert!(
        answer.entries.len() <= answer.total,
        "{} entries read of {}",
        answer.entries.len(),
        answer.total
    );
    assert!(answer.malformed.len() >= answer.total - answer.entries.len());
    answer.entries.sort_by_key(|e| e.ts);
    let mut cursor = Cursor::at(0);
    for entry in &answer.entries {
        assert!(entry.ts >= 0);
        if let Some(signal) = source.to_signal(entry) {
            assert!(!signal.target.is_empty());
        }
        cursor.read(entry);
        assert!(!cursor.is_new(entry), "read, then new again");
    }
    let json = serde_json::to_value(&cursor).expect("a cursor is JSON");
    let again: Cursor = serde_json::from_value(json).expect("and reads back");
    assert_eq!(again, cursor);
}
