//! The control-state check: keyed JSON documents, replaced by key, listed by prefix.

use serde_json::json;

use super::{ok, unique};
use crate::Store;

/// A document comes back exactly as it was put (nested, unicode, numbers), a second
/// put replaces it, `list_control` returns exactly the keys that start with the prefix
/// (sorted; `%` and `_` in a prefix are plain characters, not SQL wildcards), and
/// `delete_control` says whether there was something to delete. Uses a fresh prefix,
/// so it can run more than once.
pub async fn control_documents_round_trip_by_key(store: &dyn Store) {
    let s = store.name();
    let base = unique("control");
    let prefix = format!("{base}/a_%/");
    let (one, two) = (format!("{prefix}1"), format!("{prefix}2 ünïcödé"));
    // Would match `a_%` as a LIKE pattern, but does not start with the prefix.
    let lookalike = format!("{base}/aX%/1");
    let first = json!({"scope": {"kind": "target", "value": "orders-db"}, "n": 3, "ok": true});
    let second = json!({"reason": "планово — 計画", "at": "2026-12-04T10:00:00.000001Z", "list": [1, 2.5, null]});

    ok(s, "put_control", store.put_control(&one, &first).await);
    ok(s, "put_control", store.put_control(&two, &first).await);
    ok(s, "put_control", store.put_control(&two, &second).await);
    ok(
        s,
        "put_control",
        store.put_control(&lookalike, &first).await,
    );

    let listed = ok(s, "list_control", store.list_control(&prefix).await);
    assert_eq!(
        listed,
        vec![(one.clone(), first.clone()), (two.clone(), second.clone())],
        "[{s}] list_control(prefix) must return exactly the documents under the prefix, \
         sorted by key, the latest put of each"
    );
    let all = ok(s, "list_control", store.list_control("").await);
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "[{s}] list_control must be sorted by key, without duplicates"
    );
    assert!(
        all.iter().any(|(k, v)| *k == lookalike && *v == first),
        "[{s}] list_control(\"\") must return every document"
    );

    assert!(
        ok(s, "delete_control", store.delete_control(&one).await),
        "[{s}] deleting a stored key must answer true"
    );
    assert!(
        !ok(s, "delete_control", store.delete_control(&one).await),
        "[{s}] deleting a missing key must answer false"
    );
    assert_eq!(
        ok(s, "list_control", store.list_control(&prefix).await),
        vec![(two.clone(), second)],
        "[{s}] a deleted document must be gone"
    );
    ok(s, "delete_control", store.delete_control(&two).await);
    ok(s, "delete_control", store.delete_control(&lookalike).await);
    assert!(
        ok(s, "list_control", store.list_control(&base).await).is_empty(),
        "[{s}] nothing must remain under a prefix whose keys were all deleted"
    );
}
