//! The stock catalog against its test vectors: real captured error texts (re-captured
//! live by the facade's `tests/catalog_capture.rs`), host-worded examples for the
//! patterns no third-party software prints, and near-misses each pattern must not take.

use std::collections::{BTreeMap, BTreeSet};

use selfheal_core::{Matcher, Signal, catalog};
use serde::Deserialize;

const VECTORS: &str = include_str!("catalog/vectors.json");

#[derive(Deserialize)]
struct Vectors {
    captured: Vec<Positive>,
    synthetic: Vec<Positive>,
    near_misses: Vec<NearMiss>,
}

#[derive(Deserialize)]
struct Positive {
    id: String,
    pattern: String,
    target: String,
    fields: BTreeMap<String, String>,
    message: String,
    source: String,
}

#[derive(Deserialize)]
struct NearMiss {
    not: String,
    expect: Option<String>,
    target: String,
    fields: BTreeMap<String, String>,
    message: String,
    why: String,
}

fn vectors() -> Vectors {
    serde_json::from_str(VECTORS).expect("vectors.json parses")
}

fn signal(target: &str, fields: &BTreeMap<String, String>, message: &str) -> Signal {
    let mut s = Signal::new(target, message);
    s.fields.extend(fields.clone());
    s
}

#[test]
fn every_vector_is_matched_by_its_pattern_through_the_regex() {
    let matcher = Matcher::new(&catalog::stock());
    let v = vectors();
    assert!(
        v.captured.len() >= 15,
        "{} captured vectors",
        v.captured.len()
    );
    for p in v.captured.iter().chain(&v.synthetic) {
        assert!(
            !p.source.is_empty(),
            "`{}` says not where it came from",
            p.id
        );
        let s = signal(&p.target, &p.fields, &p.message);
        let best = matcher
            .best(&s)
            .unwrap_or_else(|| panic!("`{}` matched nothing: {:?}", p.id, p.message));
        assert_eq!(
            best.pattern,
            p.pattern,
            "`{}`: {:?}",
            p.id,
            matcher.matches(&s)
        );
        assert!(
            best.reasons.iter().any(|r| r.starts_with("regex")),
            "`{}` matched by keywords only: {:?}",
            p.id,
            best.reasons
        );
    }
}

#[test]
fn every_stock_pattern_has_a_vector_and_a_near_miss() {
    let v = vectors();
    let positives: BTreeSet<&str> = v
        .captured
        .iter()
        .chain(&v.synthetic)
        .map(|p| p.pattern.as_str())
        .collect();
    let misses: BTreeSet<&str> = v.near_misses.iter().map(|n| n.not.as_str()).collect();
    for p in catalog::stock() {
        assert!(
            positives.contains(p.name.as_str()),
            "no vector for `{}`",
            p.name
        );
        assert!(
            misses.contains(p.name.as_str()),
            "no near-miss for `{}`",
            p.name
        );
    }
}

#[test]
fn near_misses_are_not_taken_by_the_pattern_they_resemble() {
    let matcher = Matcher::new(&catalog::stock());
    for n in vectors().near_misses {
        assert!(!n.why.is_empty());
        let s = signal(&n.target, &n.fields, &n.message);
        let all = matcher.matches(&s);
        let by_regex = all
            .iter()
            .any(|m| m.pattern == n.not && m.reasons.iter().any(|r| r.starts_with("regex")));
        assert!(
            !by_regex,
            "`{}`'s regex matches {:?} ({})",
            n.not, n.message, n.why
        );
        let best = all.first().map(|m| m.pattern.as_str());
        assert_ne!(best, Some(n.not.as_str()), "{:?}: {}", n.message, n.why);
        if let Some(expect) = &n.expect {
            assert_eq!(best, Some(expect.as_str()), "{:?}: {all:?}", n.message);
        }
    }
}

#[test]
fn a_field_naming_the_system_disambiguates_like_the_target() {
    let matcher = Matcher::new(&catalog::stock());
    let text = "Connection refused (os error 111)";
    let plain = Signal::new("sessions", text);
    assert_eq!(matcher.best(&plain).unwrap().pattern, "connection_refused");
    let redis = Signal::new("sessions", text).field("db.system", "redis");
    assert_eq!(
        matcher.best(&redis).unwrap().pattern,
        "redis_connection_lost"
    );
    let pool = "pool timed out while waiting for an open connection";
    let pg = Signal::new("orders-db", pool).field("db.system.name", "postgresql");
    assert_eq!(
        matcher.best(&pg).unwrap().pattern,
        "postgres_connection_pool_exhausted"
    );
}
