//! The diagnosis cache check, for stores that keep one (not part of `run_all`: a store
//! without a cache keeps the trait's "no cache" default).

use std::time::Duration;

use uuid::Uuid;

use crate::{Diagnosis, Store};

fn diagnosis(root_cause: &str) -> Diagnosis {
    Diagnosis {
        root_cause: root_cause.into(),
        strategy: Some("restart".into()),
        params: serde_json::json!({"keys": ["a", "b"], "ratio": 0.1}),
        confidence: 0.42,
        explanation: "why".into(),
        advisor: "openai".into(),
    }
}

/// One diagnosis per fingerprint: the latest replaces the older one and comes back
/// exactly; an expired one (zero TTL) is gone; a TTL too long for the calendar
/// saturates instead of failing. Uses fresh fingerprints, so it can run more than once.
pub async fn diagnosis_cache_keeps_one_per_fingerprint(store: &dyn Store) {
    let name = store.name();
    let fp = |what: &str| format!("{what}-{}", Uuid::new_v4().simple());
    let (kept, gone, far, never) = (fp("kept"), fp("gone"), fp("far"), fp("never"));
    let hour = Duration::from_secs(3600);
    for (fp, d, ttl) in [
        (&kept, diagnosis("old"), hour),
        (&kept, diagnosis("new"), hour),
        (&gone, diagnosis("x"), Duration::ZERO),
        (&far, diagnosis("y"), Duration::MAX),
    ] {
        store
            .cache_diagnosis(fp, &d, ttl)
            .await
            .unwrap_or_else(|e| panic!("{name}: cache_diagnosis failed: {e}"));
    }
    for (fp, want, why) in [
        (
            kept,
            Some(diagnosis("new")),
            "the latest replaces the older one",
        ),
        (gone, None, "a zero TTL expires at once"),
        (far, Some(diagnosis("y")), "a huge TTL saturates"),
        (never, None, "an unknown fingerprint has none"),
    ] {
        let got = store
            .cached_diagnosis(&fp)
            .await
            .unwrap_or_else(|e| panic!("{name}: cached_diagnosis failed: {e}"));
        assert_eq!(got, want, "{name}: {why}");
    }
}
