//! Any bytes as a NATS message through `selfheal_sources::nats::decode`, the one door a
//! healer's `NatsSource` reads the stream by. No panic; a refused message says why
//! without quoting it; a signal that decodes encodes and decodes again unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal_sources::nats::{decode, encode};

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(signal) => {
            let again = decode(&encode(&signal)).expect("a decoded signal encodes and decodes");
            assert_eq!(again, signal);
        }
        Err(why) => {
            let text = why.to_string();
            assert!(!text.trim().is_empty());
            // Never the message itself: only its size and where reading stopped.
            assert!(text.len() < 160, "{text}");
        }
    }
});
