//! Any text as a healer config file: `HealerConfig::from_toml` (parse, then validate)
//! never panics, every refusal is a clean `InvalidInput` error with a message, and a
//! config it accepts validates again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal_core::{ErrorKind, HealerConfig};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match HealerConfig::from_toml(&text) {
        Ok(config) => {
            assert!(
                config.validate().is_ok(),
                "accepted, then refused: {text:?}"
            );
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e} for {text:?}");
            assert!(
                !e.message().trim().is_empty(),
                "an empty error for {text:?}"
            );
            assert!(!e.to_string().is_empty());
        }
    }
});
