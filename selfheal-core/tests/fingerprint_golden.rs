//! Golden vectors: fingerprint ids are a versioned contract.
//!
//! `fingerprint_golden.json` holds inputs and the ids they must give under
//! `FINGERPRINT_VERSION`. A change that alters any id must bump the version; then
//! regenerate the file with `SELFHEAL_BLESS=1 cargo test -p selfheal-core --test fingerprint_golden`
//! and commit both together.

use selfheal_core::fingerprint::FINGERPRINT_VERSION;
use selfheal_core::{Fingerprinter, Normalizer, Signal};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Golden {
    version: u32,
    vectors: Vec<Vector>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Vector {
    service: String,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stack: Option<String>,
    template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stack_signature: Option<String>,
    id: String,
}

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fingerprint_golden.json");

fn compute(v: &Vector) -> Vector {
    let mut signal = Signal::new("target", v.message.clone()).service(v.service.clone());
    if let Some(stack) = &v.stack {
        signal = signal.stack(stack.clone());
    }
    let f = Normalizer::default().fingerprint(&signal);
    assert_eq!(f.version, FINGERPRINT_VERSION);
    Vector {
        service: v.service.clone(),
        message: v.message.clone(),
        stack: v.stack.clone(),
        template: f.template.to_string(),
        stack_signature: f.stack,
        id: f.id.to_string(),
    }
}

#[test]
fn golden_ids_change_only_with_a_version_bump() {
    let text = std::fs::read_to_string(PATH).expect("read fingerprint_golden.json");
    let golden: Golden = serde_json::from_str(&text).expect("parse fingerprint_golden.json");
    assert!(golden.vectors.len() >= 20, "keep the golden set broad");
    let now: Vec<Vector> = golden.vectors.iter().map(compute).collect();

    if std::env::var_os("SELFHEAL_BLESS").is_some() {
        let blessed = Golden {
            version: FINGERPRINT_VERSION,
            vectors: now,
        };
        let json = serde_json::to_string_pretty(&blessed).expect("serialize") + "\n";
        std::fs::write(PATH, json).expect("write fingerprint_golden.json");
        return;
    }

    let changed: Vec<String> = golden
        .vectors
        .iter()
        .zip(&now)
        .filter(|(was, is)| was != is)
        .map(|(was, is)| {
            format!(
                "  {:?}\n    was {} {:?} {:?}\n    now {} {:?} {:?}",
                was.message,
                was.id,
                was.template,
                was.stack_signature,
                is.id,
                is.template,
                is.stack_signature
            )
        })
        .collect();
    if golden.version == FINGERPRINT_VERSION {
        assert!(
            changed.is_empty(),
            "fingerprint ids changed without a version bump (FINGERPRINT_VERSION is still {}):\n{}\n\
             fix: bump FINGERPRINT_VERSION, then run SELFHEAL_BLESS=1 cargo test -p selfheal-core --test fingerprint_golden",
            FINGERPRINT_VERSION,
            changed.join("\n")
        );
    } else {
        panic!(
            "FINGERPRINT_VERSION is {} but the golden vectors are for version {}; \
             fix: run SELFHEAL_BLESS=1 cargo test -p selfheal-core --test fingerprint_golden and commit the file",
            FINGERPRINT_VERSION, golden.version
        );
    }
}

#[test]
fn templates_of_real_messages_are_fixed_points() {
    // Replaying a template (the miner does) must not change it.
    let text = std::fs::read_to_string(PATH).expect("read fingerprint_golden.json");
    let golden: Golden = serde_json::from_str(&text).expect("parse fingerprint_golden.json");
    let n = Normalizer::default();
    for v in &golden.vectors {
        let once = n.template(&v.message);
        assert_eq!(n.template(&once), once, "message {:?}", v.message);
    }
}

#[test]
fn ids_are_sixteen_hex_digits_and_differ_by_service() {
    let n = Normalizer::default();
    let a = n.fingerprint(&Signal::new("t", "disk full on /dev/sda1").service("a"));
    let b = n.fingerprint(&Signal::new("t", "disk full on /dev/sdb2").service("a"));
    let c = n.fingerprint(&Signal::new("t", "disk full on /dev/sda1").service("b"));
    assert_eq!(a.id, b.id);
    assert_ne!(a.id, c.id);
    assert_eq!(a.id.len(), 16);
    assert!(a.id.bytes().all(|b| b.is_ascii_hexdigit()));
}
