//! Any bytes: no panic, and the template is a fixed point (normalized again, unchanged).
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal_core::Normalizer;

fuzz_target!(|data: &[u8]| {
    let n = Normalizer::default();
    let mut once = String::new();
    n.template_into(data, &mut once);
    assert!(!once.starts_with(' ') && !once.ends_with(' '), "{once:?}");
    assert_eq!(n.template(&once), once, "input: {:?}", String::from_utf8_lossy(data));
    assert_eq!(n.fingerprint_bytes("svc", data).id.len(), 16);
});
