//! Lines into a small miner: no panic, `len() <= max_clusters` after every line, and the
//! snapshot (through JSON too) restores under eviction, with the same clusters, into a
//! miner that keeps its bound as more lines arrive.
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
    let lines: Vec<&[u8]> = lines.split(|&b| b == b'\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let id = miner.add(line);
        assert!(miner.len() <= config.max_clusters);
        assert!(miner.template(id).is_some());
        if i % 4 == 3 {
            // A snapshot taken mid-stream, under eviction, restores too.
            TemplateMiner::restore(config.clone(), miner.snapshot()).expect("restores");
        }
    }
    let snapshot = miner.snapshot();
    let restored = TemplateMiner::restore(config.clone(), snapshot.clone()).expect("restores");
    assert_eq!(restored.len(), miner.len());
    assert_eq!(restored.snapshot().clusters, snapshot.clusters);
    let json = serde_json::to_string(&snapshot).unwrap();
    let parsed: MinerSnapshot = serde_json::from_str(&json).unwrap();
    let reloaded = TemplateMiner::restore(config.clone(), parsed).expect("restores from JSON");
    for line in lines.iter().rev() {
        let id = reloaded.add(line);
        assert!(reloaded.len() <= config.max_clusters);
        assert!(reloaded.template(id).is_some());
    }
    TemplateMiner::restore(config, reloaded.snapshot()).expect("restores after more lines");
});
