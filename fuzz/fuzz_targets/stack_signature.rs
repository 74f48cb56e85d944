//! Any text as a stack: no panic, and the same signature every time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal_core::fingerprint::stack_signature;

fuzz_target!(|data: &[u8]| {
    let stack = String::from_utf8_lossy(data);
    let signature = stack_signature(&stack);
    assert_eq!(stack_signature(&stack), signature);
});
