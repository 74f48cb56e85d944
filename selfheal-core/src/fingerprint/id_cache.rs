//! A per-thread memo of recent fingerprint ids and templates.
//!
//! Log lines repeat a handful of templates, so most lines would hash the same
//! `service:template:stack` bytes with sha256 again. This keeps the last id computed
//! for each of [`SLOTS`] hash buckets, per thread, and answers a repeat with a string
//! comparison instead of a digest. It changes no id: a hit is only taken when service,
//! template and stack are byte-equal to the ones the id was computed from. Memory is
//! bounded: at most [`SLOTS`] entries per thread, and a service, template or stack longer
//! than [`MAX_CACHED_TEMPLATE`] bytes is never kept.

use std::cell::RefCell;
use std::sync::Arc;

use super::id_hex;

/// Buckets per thread (a power of two).
pub const SLOTS: usize = 1024;

/// Longest service, template or stack kept in the memo, in bytes.
pub const MAX_CACHED_TEMPLATE: usize = 512;

struct Slot {
    hash: u64,
    service: Box<str>,
    template: Arc<str>,
    stack: Option<Box<str>>,
    id: Arc<str>,
}

thread_local! {
    // Made empty (a `const` thread local costs no check of its own on each access) and
    // given its slots on first use.
    static MEMO: RefCell<Vec<Option<Slot>>> = const { RefCell::new(Vec::new()) };
}

/// The shared template and id of `service:template:stack`, from this thread's memo
/// when they were made recently, else made (and remembered), the id with
/// [`fingerprint_id`](super::fingerprint_id).
pub(super) fn lookup(service: &str, template: &str, stack: Option<&str>) -> (Arc<str>, Arc<str>) {
    let fresh = || {
        (
            Arc::from(template),
            Arc::from(id_hex(service, template, stack).as_str()),
        )
    };
    let too_long = |s: &str| s.len() > MAX_CACHED_TEMPLATE;
    if too_long(template) || too_long(service) || stack.is_some_and(too_long) {
        return fresh();
    }
    let hash = bucket_hash(service, template, stack);
    let lookup = MEMO.try_with(|memo| {
        let mut memo = memo.borrow_mut();
        if memo.is_empty() {
            memo.resize_with(SLOTS, || None);
        }
        let slot = &mut memo[(hash >> (64 - SLOTS.trailing_zeros())) as usize];
        if let Some(s) = slot
            && s.hash == hash
            && &*s.template == template
            && &*s.service == service
            && s.stack.as_deref() == stack
        {
            return (s.template.clone(), s.id.clone());
        }
        let (template, id) = fresh();
        match slot {
            // A miss on a taken bucket: its service and stack are most often the same
            // ones, and stay without being made again.
            Some(s) => {
                s.hash = hash;
                s.template = template.clone();
                s.id = id.clone();
                if &*s.service != service {
                    s.service = service.into();
                }
                if s.stack.as_deref() != stack {
                    s.stack = stack.map(Into::into);
                }
            }
            None => {
                *slot = Some(Slot {
                    hash,
                    service: service.into(),
                    template: template.clone(),
                    stack: stack.map(Into::into),
                    id: id.clone(),
                });
            }
        }
        (template, id)
    });
    // The memo is gone only while this thread is being torn down.
    lookup.unwrap_or_else(|_| fresh())
}

/// A cheap hash for picking a bucket: the lengths and the first and last 8 bytes of the
/// template. Collisions only cost a miss: a hit still needs byte-equal inputs.
fn bucket_hash(service: &str, template: &str, stack: Option<&str>) -> u64 {
    let t = template.as_bytes();
    let (head, tail) = match (t.first_chunk::<8>(), t.last_chunk::<8>()) {
        (Some(head), Some(tail)) => (u64::from_le_bytes(*head), u64::from_le_bytes(*tail)),
        // Shorter than a word: all of it, once.
        _ => (t.iter().fold(0, |w, &b| (w << 8) | u64::from(b)), 0),
    };
    let lens = (t.len() as u64)
        | ((service.len() as u64) << 32)
        | ((stack.map_or(0, str::len) as u64) << 48);
    // One multiply mixes them; the bucket is the top bits of the product, which every
    // bit of the input reaches.
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    (head ^ tail.rotate_left(29) ^ lens.wrapping_mul(K)).wrapping_mul(K)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::fingerprint_id;

    #[test]
    fn a_memoized_id_is_the_computed_one_and_never_another_inputs() {
        let inputs = [
            ("db", "connect to <*> failed", None),
            ("db", "connect to <*> failed", Some("app::db::connect")),
            ("api", "connect to <*> failed", None),
            ("db", "connect to <*> refused", None),
        ];
        for _ in 0..3 {
            for (service, template, stack) in inputs {
                let (t, i) = lookup(service, template, stack);
                assert_eq!(
                    (&*t, &*i),
                    (template, &*fingerprint_id(service, template, stack))
                );
            }
        }
        // Far more distinct templates than slots: every answer still matches.
        for i in 0..(SLOTS * 3) {
            let t = format!("job {i} failed");
            assert_eq!(&*lookup("w", &t, None).1, fingerprint_id("w", &t, None));
        }
        let long = "x".repeat(MAX_CACHED_TEMPLATE + 1);
        assert_eq!(
            &*lookup("w", &long, None).1,
            fingerprint_id("w", &long, None)
        );
    }
}
