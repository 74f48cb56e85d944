//! Lines into a small miner: no panic, `len() <= max_clusters` after every line, and the
//! snapshot (through JSON too) restores with the same clusters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfheal_core::fingerprint::{MinerConfig, MinerSnapshot, TemplateMiner};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, lines)) = data.split_first() else {
        return;
    };
    let config = MinerConfig {
        max_clusters: 1 + usize::from(knobs & 0x07),
        max_variants: 1 + usize::from((knobs >> 3) & 0x03),
        ..MinerConfig::default()
    };
    let miner = TemplateMiner::new(config.clone());
    for line in lines.split(|&b| b == b'\n') {
        let id = miner.add(line);
        assert!(miner.len() <= config.max_clusters);
        assert!(miner.template(id).is_some());
    }
    let snapshot = miner.snapshot();
    let restored = TemplateMiner::restore(config.clone(), snapshot.clone()).expect("restores");
    assert_eq!(restored.len(), miner.len());
    assert_eq!(restored.snapshot().clusters.len(), snapshot.clusters.len());
    let json = serde_json::to_string(&snapshot).unwrap();
    let parsed: MinerSnapshot = serde_json::from_str(&json).unwrap();
    assert!(TemplateMiner::restore(config, parsed).is_ok());
});
