//! Any bytes as an Alertmanager webhook body: `alertmanager::parse` never panics and
//! refuses with a message; a payload it accepts is version 4 with a fingerprint on each
//! alert, writes back to JSON that reads the same, and each firing alert becomes a
//! signal with a target and a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal_core::SignalSource;
use selfheal_sources::alertmanager::{AlertStatus, Alertmanager, VERSION, parse};

fuzz_target!(|data: &[u8]| {
    let webhook = match parse(data) {
        Ok(w) => w,
        Err(why) => {
            assert!(!why.trim().is_empty(), "an empty refusal");
            return;
        }
    };
    assert_eq!(webhook.version, VERSION);
    assert!(webhook.alerts.iter().all(|a| !a.fingerprint.trim().is_empty()));
    let json = serde_json::to_vec(&webhook).expect("a payload is JSON");
    assert_eq!(parse(&json).as_ref(), Ok(&webhook), "read back the same");
    let receiver = Alertmanager::new();
    for alert in &webhook.alerts {
        if alert.status == AlertStatus::Firing {
            let signal = receiver.signal(alert, &webhook);
            assert!(!signal.target.is_empty() && !signal.message.is_empty());
            assert_eq!(signal.source, SignalSource::External);
            assert_eq!(signal.fields["alert.fingerprint"], alert.fingerprint);
        }
    }
});
