//! A per-thread memo of recent lines and their fingerprints.
//!
//! An error storm repeats one line word for word: a pool that times out logs the same
//! message hundreds of times a minute. The normalizer's fingerprint is a function of
//! the service, the line and the stack signature alone, so a line seen again needs no
//! scan and no id: this keeps, per thread, the template and id of one recent line for
//! each of [`SLOTS`] hash buckets, and answers a byte-equal repeat with a comparison.
//!
//! A line is kept only on its second sighting (a bucket remembers the hash of the last
//! line it missed), so a log that never repeats a line pays a hash and a comparison per
//! line, and copies nothing. Memory is bounded: at most [`SLOTS`] lines per thread, none
//! (nor its service or stack signature) longer than [`MAX_LINE`] bytes, with their
//! shared template and id: about 3 MB per thread at worst, a few hundred KB for lines of
//! ordinary length. Only the threads that fingerprint have one.

use std::cell::RefCell;
use std::sync::Arc;

use super::{FINGERPRINT_VERSION, Fingerprint};

/// Buckets per thread (a power of two).
pub const SLOTS: usize = 1024;

/// Longest line, service or stack signature kept, in bytes.
pub const MAX_LINE: usize = 512;

struct Kept {
    line: Vec<u8>,
    service: Box<str>,
    stack: Option<Box<str>>,
    template: Arc<str>,
    id: Arc<str>,
}

impl Kept {
    fn is(&self, service: &str, line: &[u8], stack: Option<&str>) -> bool {
        self.line == line && *self.service == *service && self.stack.as_deref() == stack
    }
}

/// A bucket's hashes, apart from what it keeps, so a line that misses reads 16 bytes
/// of a small array and touches nothing else.
#[derive(Debug, Clone, Copy, Default)]
struct Hashes {
    /// The hash of the last line this bucket missed (0: none).
    seen: u64,
    /// The hash of the kept line (0: none).
    kept: u64,
}

struct Memo {
    hashes: Vec<Hashes>,
    kept: Vec<Option<Kept>>,
}

thread_local! {
    static MEMO: RefCell<Memo> = const {
        RefCell::new(Memo { hashes: Vec::new(), kept: Vec::new() })
    };
}

/// The fingerprint of `line` for `service` with `stack`: from this thread's memo when
/// the same three were fingerprinted recently, else `make()`'s (remembered when the
/// line was seen before). `make` must be a function of the three alone.
pub(super) fn fingerprint(
    service: &str,
    line: &[u8],
    stack: Option<String>,
    make: impl FnOnce(Option<String>) -> Fingerprint,
) -> Fingerprint {
    let too_long = |n: usize| n > MAX_LINE;
    if too_long(line.len())
        || too_long(service.len())
        || stack.as_ref().is_some_and(|s| too_long(s.len()))
    {
        return make(stack);
    }
    let hash = line_hash(service, line, stack.as_deref());
    let bucket = (hash >> (64 - SLOTS.trailing_zeros())) as usize;
    // Some(admit) on a miss: keep the line's fingerprint once made.
    let looked = MEMO.try_with(|memo| {
        let mut memo = memo.try_borrow_mut().ok()?;
        if memo.hashes.is_empty() {
            memo.hashes.resize(SLOTS, Hashes::default());
            memo.kept.resize_with(SLOTS, || None);
        }
        let hashes = memo.hashes[bucket];
        if hashes.kept == hash
            && let Some(k) = &memo.kept[bucket]
            && k.is(service, line, stack.as_deref())
        {
            return Some(Err((k.template.clone(), k.id.clone())));
        }
        let admit = hashes.seen == hash;
        if !admit {
            memo.hashes[bucket].seen = hash;
        }
        Some(Ok(admit))
    });
    let admit = match looked {
        Ok(Some(Err((template, id)))) => {
            return Fingerprint {
                id,
                template,
                stack,
                version: FINGERPRINT_VERSION,
            };
        }
        Ok(Some(Ok(admit))) => admit,
        // Torn down, or re-entered: made without the memo.
        _ => false,
    };
    let fp = make(stack);
    if admit {
        keep(bucket, hash, service, line, &fp);
    }
    fp
}

/// Keeps `fp` as the fingerprint of the line in `bucket`, reusing the bucket's buffers.
#[cold]
fn keep(bucket: usize, hash: u64, service: &str, line: &[u8], fp: &Fingerprint) {
    let _ = MEMO.try_with(|memo| {
        let Ok(mut memo) = memo.try_borrow_mut() else {
            return;
        };
        let Memo { hashes, kept } = &mut *memo;
        let (Some(hashes), Some(kept)) = (hashes.get_mut(bucket), kept.get_mut(bucket)) else {
            return;
        };
        hashes.kept = hash;
        match kept {
            Some(k) => {
                k.line.clear();
                k.line.extend_from_slice(line);
                k.template = fp.template.clone();
                k.id = fp.id.clone();
                if *k.service != *service {
                    k.service = service.into();
                }
                if k.stack.as_deref() != fp.stack.as_deref() {
                    k.stack = fp.stack.as_deref().map(Into::into);
                }
            }
            None => {
                *kept = Some(Kept {
                    line: line.to_vec(),
                    service: service.into(),
                    stack: fp.stack.as_deref().map(Into::into),
                    template: fp.template.clone(),
                    id: fp.id.clone(),
                });
            }
        }
    });
}

/// A hash of the three for picking a bucket and telling a line seen before. Never 0
/// (0 is a bucket that saw nothing). A collision only costs a miss (a hit needs
/// byte-equal inputs) or one line kept that was not seen before.
fn line_hash(service: &str, line: &[u8], stack: Option<&str>) -> u64 {
    let shape = (line.len() as u64)
        | ((service.len() as u64) << 32)
        | ((stack.map_or(0, str::len) as u64) << 48);
    // A service name is short and one thread sees few: its length and first and last
    // eight bytes pick the bucket, and the comparison on a hit tells the rest.
    let service = service.as_bytes();
    let service_ends = match (service.first_chunk::<8>(), service.last_chunk::<8>()) {
        (Some(head), Some(tail)) => {
            u64::from_le_bytes(*head) ^ u64::from_le_bytes(*tail).rotate_left(31)
        }
        _ => service.iter().fold(0u64, |w, &b| (w << 8) | u64::from(b)),
    };
    let h = mix(line)
        ^ service_ends.wrapping_mul(K).rotate_left(21)
        ^ stack.map_or(0, |s| mix(s.as_bytes()).rotate_left(42))
        ^ shape.wrapping_mul(K);
    (h.wrapping_mul(K) ^ (h >> 29)).max(1)
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// Four independent lanes of eight bytes, one multiply each, so a 100-byte line costs a
/// few nanoseconds; the lengths are mixed in by the caller.
#[inline]
fn mix(bytes: &[u8]) -> u64 {
    let mut lanes = [
        0x243F_6A88_85A3_08D3_u64,
        0x1319_8A2E_0370_7344,
        0xA409_3822_299F_31D0,
        0x082E_FA98_EC4E_6C89,
    ];
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = (*lane ^ word_at(word)).wrapping_mul(K);
        }
    }
    let mut words = blocks.remainder().chunks_exact(8);
    for (lane, word) in lanes.iter_mut().zip(&mut words) {
        *lane = (*lane ^ word_at(word)).wrapping_mul(K);
    }
    let tail = match bytes.last_chunk::<8>() {
        // The last eight bytes, overlapping what came before: one load, not a loop.
        Some(last) if !words.remainder().is_empty() => u64::from_le_bytes(*last),
        Some(_) => 0,
        None => bytes.iter().fold(0u64, |w, &b| (w << 8) | u64::from(b)),
    };
    lanes[0]
        ^ lanes[1].rotate_left(16)
        ^ lanes[2].rotate_left(32)
        ^ lanes[3].rotate_left(48)
        ^ tail.wrapping_mul(K)
}

fn word_at(word: &[u8]) -> u64 {
    u64::from_le_bytes(word.try_into().expect("chunks of 8 bytes"))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::fingerprint::Normalizer;

    /// The memo's answer for the three, counting in `made` each time it had to make it.
    fn memo(service: &str, line: &str, stack: Option<&str>, made: &Cell<usize>) -> Fingerprint {
        fingerprint(
            service,
            line.as_bytes(),
            stack.map(str::to_owned),
            |stack| {
                made.set(made.get() + 1);
                direct(service, line, stack)
            },
        )
    }

    fn direct(service: &str, line: &str, stack: Option<String>) -> Fingerprint {
        Fingerprint::new(service, &Normalizer::default().template(line), stack)
    }

    #[test]
    fn a_line_is_kept_on_its_second_sighting_and_answered_from_the_third() {
        let made = Cell::new(0);
        let line = "pool timed out while waiting for an open connection (31 waiting)";
        for sighting in 1..=5 {
            let fp = memo("kept-api", line, None, &made);
            assert_eq!(fp, direct("kept-api", line, None));
            assert_eq!(made.get(), sighting.min(2), "made on sighting {sighting}");
        }
    }

    #[test]
    fn service_stack_and_line_each_tell_the_answer_apart() {
        let made = Cell::new(0);
        let line = "cache write failed: \"OOM\": command not allowed";
        let inputs = [
            ("api", line, None),
            ("worker", line, None),
            ("api", line, Some("app::cache::write")),
            ("api", line, Some("app::cache::read")),
            (
                "api",
                "cache write failed: \"OOM\": command not allowed.",
                None,
            ),
        ];
        for _ in 0..4 {
            for (service, line, stack) in inputs {
                let fp = memo(service, line, stack, &made);
                assert_eq!(fp, direct(service, line, stack.map(str::to_owned)));
                assert_eq!(fp.stack.as_deref(), stack);
            }
        }
        // Each made on its first two sightings only.
        assert_eq!(made.get(), 2 * inputs.len());
    }

    #[test]
    fn long_lines_and_more_lines_than_slots_still_get_the_made_answer() {
        let made = Cell::new(0);
        let long = format!("job failed: {}", "x".repeat(MAX_LINE));
        for _ in 0..3 {
            assert_eq!(memo("w", &long, None, &made), direct("w", &long, None));
        }
        assert_eq!(made.get(), 3, "a line over MAX_LINE is never kept");
        for round in 0..3 {
            for i in 0..(SLOTS * 3) {
                let line = format!("job {i} of batch b{} failed", i % 7);
                assert_eq!(
                    memo("w", &line, None, &made),
                    direct("w", &line, None),
                    "round {round}, line {i}"
                );
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Through the normalizer, as a user calls it: lines (some the same, some over
        /// the length limit) seen again and again get the made fingerprint every time.
        #[test]
        fn repeated_lines_get_the_made_fingerprint(
            lines in proptest::collection::vec("[a-z0-9 :.=\"'<>*-]{0,40}|x{510,515}", 1..8),
            order in proptest::collection::vec(0usize..64, 1..48),
        ) {
            let n = Normalizer::default();
            for i in order {
                let line = &lines[i % lines.len()];
                let direct = Fingerprint::new("svc", &n.template(line), None);
                proptest::prop_assert_eq!(n.fingerprint_bytes("svc", line.as_bytes()), direct);
            }
        }
    }

    #[test]
    fn the_hash_reads_every_byte_and_is_never_zero() {
        let base = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNO".to_vec();
        let h = line_hash("s", &base, None);
        assert_ne!(h, 0);
        for at in 0..base.len() {
            let mut other = base.clone();
            other[at] ^= 1;
            assert_ne!(line_hash("s", &other, None), h, "a change at byte {at}");
        }
        assert_ne!(line_hash("t", &base, None), h);
        assert_ne!(
            line_hash("service-a", &base, None),
            line_hash("service-b", &base, None)
        );
        assert_ne!(
            line_hash("s", &base, Some("")),
            line_hash("s", &base, Some("x"))
        );
        assert_ne!(line_hash("", b"", None), 0);
    }
}
