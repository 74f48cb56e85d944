//! Strict input: an unknown key in a config file or a pattern import is an error, and
//! the error names the nearest valid key. A typo in a safety key (`dryrun = true`,
//! `require_aproval_for`) must never run live with the default.

/// Adds "did you mean `…`?" to a serde "unknown field" message when a valid key is
/// close to the unknown one; other messages come back unchanged.
///
/// serde words it as ``unknown field `dryrun`, expected one of `storm`, `dry_run` ``
/// (or ``expected `a` or `b` ``, or ``there are no fields``).
pub(crate) fn explain(message: &str) -> String {
    let Some(rest) = message
        .find("unknown field `")
        .map(|at| &message[at + "unknown field `".len()..])
    else {
        return message.to_owned();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_owned();
    };
    let valid: Vec<&str> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .take_while(|k| !k.contains('\n'))
        .collect();
    match nearest(unknown, &valid) {
        Some(key) => format!("{}; did you mean `{key}`?", message.trim_end()),
        None => message.to_owned(),
    }
}

/// The valid key closest to `unknown`, if it is close enough to be a typo.
fn nearest<'a>(unknown: &str, valid: &[&'a str]) -> Option<&'a str> {
    let unknown_l = unknown.to_lowercase();
    valid
        .iter()
        .map(|k| (distance(&unknown_l, &k.to_lowercase()), *k))
        .filter(|(d, k)| *d <= (k.chars().count() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over chars, two rows.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use crate::{HealerConfig, PatternStore};

    fn refused(toml: &str) -> String {
        HealerConfig::from_toml(toml)
            .expect_err("an unknown key is refused")
            .to_string()
    }

    #[test]
    fn a_typo_in_a_safety_key_is_refused_with_the_nearest_key() {
        let e = refused("[safety]\ndryrun = true\n");
        assert!(e.contains("unknown field `dryrun`"), "{e}");
        assert!(e.contains("did you mean `dry_run`?"), "{e}");
        let e = refused("[policy]\nrequire_aproval_for = [\"restart\"]\n");
        assert!(e.contains("did you mean `require_approval_for`?"), "{e}");
    }

    #[test]
    fn an_unknown_section_is_refused() {
        let e = refused("[polcy]\nauto_threshold = 0.9\n");
        assert!(e.contains("did you mean `policy`?"), "{e}");
        let e = refused("[safety.storm]\nmax_unhealthy = 3\nwhatever = 1\n");
        assert!(e.contains("unknown field `whatever`"), "{e}");
        assert!(!e.contains("did you mean"), "nothing close: no guess: {e}");
    }

    #[test]
    fn known_keys_still_load() {
        let c =
            HealerConfig::from_toml("[safety]\ndry_run = true\n[policy]\nauto_threshold = 0.9\n")
                .unwrap();
        assert!(c.safety.dry_run);
    }

    #[tokio::test]
    async fn a_pattern_import_refuses_unknown_keys_and_names_the_nearest() {
        let store = crate::MemoryStore::new();
        let doc = serde_json::json!({
            "format": crate::catalog::EXPORT_FORMAT,
            "version": 1,
            "exported_at": "2026-12-04T00:00:00Z",
            "patterns": [
                {"name": "ok", "regex": "boom"},
                {"name": "typo", "regx": "boom"},
                {"name": "fix_typo", "regex": "boom", "fixes": [{"strategy": "restart", "parms": {}}]}
            ]
        });
        let report = crate::catalog::import(&store, &doc.to_string(), &Default::default())
            .await
            .unwrap();
        let errors: Vec<String> = report.errors.iter().map(|e| e.message.clone()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("did you mean `regex`?"), "{errors:?}");
        assert!(errors[1].contains("did you mean `params`?"), "{errors:?}");
        assert_eq!(
            store.list_patterns().await.unwrap().len(),
            1,
            "the good one arrives"
        );

        let mut bad = doc.clone();
        bad["versoin"] = serde_json::json!(1);
        let e = crate::catalog::import(&store, &bad.to_string(), &Default::default())
            .await
            .expect_err("an unknown key in the document is refused");
        assert!(e.to_string().contains("did you mean `version`?"), "{e}");
    }

    #[test]
    fn distance_and_nearest() {
        assert_eq!(super::distance("dryrun", "dry_run"), 1);
        assert_eq!(super::distance("", "abc"), 3);
        assert_eq!(
            super::nearest("polcy", &["policy", "guards"]),
            Some("policy")
        );
        assert_eq!(super::nearest("zzz", &["policy", "guards"]), None);
        assert_eq!(super::explain("other error"), "other error");
    }
}
