//! Any bytes: no panic, and the template is a fixed point (normalized again, unchanged).
//! `SELFHEAL_FUZZ_PANICS_ONLY=1` leaves the fixed-point check out, to hunt panics alone.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use selfheal_core::Normalizer;

static FIXED_POINT: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("SELFHEAL_FUZZ_PANICS_ONLY").is_none());

fuzz_target!(|data: &[u8]| {
    let n = Normalizer::default();
    let mut once = String::new();
    n.template_into(data, &mut once);
    assert!(!once.starts_with(' ') && !once.ends_with(' '), "{once:?}");
    if *FIXED_POINT {
        assert_eq!(n.template(&once), once, "input: {:?}", String::from_utf8_lossy(data));
    }
    assert_eq!(n.fingerprint_bytes("svc", data).id.len(), 16);
});
