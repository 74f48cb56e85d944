//! Alertmanager's webhook payload, version 4 (what a `webhook_config` receiver gets):
//! one notification of one alert group.
//!
//! Read strictly where the meaning depends on it (`version` must be `"4"`; `status`,
//! `alerts[].status`, `labels`, `startsAt` and a non-empty `fingerprint` must be there
//! with their types) and leniently elsewhere: the group fields default when missing,
//! and keys Alertmanager may add later are ignored.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The payload version this receiver reads.
pub const VERSION: &str = "4";

/// Whether an alert (or a group) fires or has resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Its condition holds.
    Firing,
    /// Its condition is gone.
    Resolved,
}

/// One notification: the alerts of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// The payload version: `"4"`.
    pub version: String,
    /// The group's key in Alertmanager.
    #[serde(default)]
    pub group_key: String,
    /// Alerts left out of this notification by the receiver's `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// `firing` when any alert of the group fires.
    pub status: AlertStatus,
    /// The receiver's name in Alertmanager's configuration.
    #[serde(default)]
    pub receiver: String,
    /// The labels the group is grouped by.
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    /// The labels every alert of the notification has.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// The annotations every alert of the notification has.
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// Alertmanager's own URL.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<Alert>,
}

/// One alert of a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Its labels (`alertname`, `severity`, `service`, …): its identity.
    pub labels: BTreeMap<String, String>,
    /// Its annotations (`summary`, `description`, `runbook_url`, …).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When it started firing.
    pub starts_at: DateTime<Utc>,
    /// When it resolved (or will time out); `0001-01-01T00:00:00Z` while it fires.
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    /// The alert rule's page in the system that raised it.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's identity of the alert (a hash of its labels): the same while it
    /// fires and when it resolves.
    pub fingerprint: String,
}

/// Reads a webhook payload; the error names the field that is wrong
/// (`alerts[0]: missing field `fingerprint``).
pub fn parse(body: &[u8]) -> Result<Webhook, String> {
    let webhook: Webhook = match axum::Json::<Webhook>::from_bytes(body) {
        Ok(axum::Json(w)) => w,
        // axum says "Failed to deserialize the JSON body into the target type: <path>:
        // <what>"; the part after its own words is serde's, with the field's path.
        Err(rejection) => {
            let text = rejection.body_text();
            return Err(match text.split_once(": ") {
                // A syntax error: say so, serde's words alone ("key must be a string")
                // do not.
                Some((axums, serdes)) if axums.starts_with("Failed to parse") => {
                    format!("not JSON: {serdes}")
                }
                Some((axums, serdes)) if axums.starts_with("Failed to") => serdes.to_owned(),
                _ => text,
            });
        }
    };
    if webhook.version != VERSION {
        return Err(format!(
            "version: `{}` is not a webhook payload version this receiver reads; it reads \
             version {VERSION} (Alertmanager 0.16 and later)",
            webhook.version
        ));
    }
    if i64::try_from(webhook.truncated_alerts).is_err() {
        return Err(format!(
            "truncatedAlerts: {} is beyond a signed 64-bit count (what Alertmanager's JSON \
             readers take)",
            webhook.truncated_alerts
        ));
    }
    if let Some(i) = webhook
        .alerts
        .iter()
        .position(|a| a.fingerprint.trim().is_empty())
    {
        return Err(format!(
            "alerts[{i}].fingerprint: empty; the fingerprint ties an alert's resolution to \
             its firing"
        ));
    }
    Ok(webhook)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notification as Alertmanager 0.25 sends it.
    const SENT: &str = r#"{"receiver":"selfheal","status":"firing","alerts":[
        {"status":"firing","labels":{"alertname":"RedisDown","service":"cache","severity":"critical"},
         "annotations":{"summary":"redis on cache-1 is down"},"startsAt":"2024-05-01T10:00:00.123Z",
         "endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph?g0.expr=up",
         "fingerprint":"c6f3a0b6e2b1d7aa"}],
        "groupLabels":{"alertname":"RedisDown"},"commonLabels":{"alertname":"RedisDown"},
        "commonAnnotations":{},"externalURL":"http://alertmanager:9093","version":"4",
        "groupKey":"{}:{alertname=\"RedisDown\"}","truncatedAlerts":0,"future":"ignored"}"#;

    #[test]
    fn alertmanagers_payload_is_read() {
        let w = parse(SENT.as_bytes()).unwrap();
        assert_eq!(w.status, AlertStatus::Firing);
        assert_eq!(w.external_url, "http://alertmanager:9093");
        let a = &w.alerts[0];
        assert_eq!(a.fingerprint, "c6f3a0b6e2b1d7aa");
        assert_eq!(a.labels["service"], "cache");
        assert_eq!(a.generator_url, "http://prometheus:9090/graph?g0.expr=up");
        assert_eq!(a.starts_at.timestamp_subsec_millis(), 123);
    }

    #[test]
    fn a_missing_field_or_a_wrong_type_is_named() {
        for (body, says) in [
            (
                SENT.replace(r#""fingerprint":"c6f3a0b6e2b1d7aa""#, r#""x":1"#),
                "alerts[0]: missing field `fingerprint`",
            ),
            (
                SENT.replace(
                    r#""status":"firing","labels""#,
                    r#""status":"burning","labels""#,
                ),
                "alerts[0].status: unknown variant `burning`",
            ),
            (
                SENT.replace(r#""version":"4""#, r#""version":4"#),
                "version: invalid type: integer `4`",
            ),
            (
                SENT.replace(r#""version":"4""#, r#""version":"3""#),
                "version: `3`",
            ),
            (
                SENT.replace(
                    r#""startsAt":"2024-05-01T10:00:00.123Z""#,
                    r#""startsAt":"yesterday""#,
                ),
                "alerts[0].startsAt",
            ),
            (
                SENT.replace("c6f3a0b6e2b1d7aa", " "),
                "alerts[0].fingerprint: empty",
            ),
            ("[]".to_owned(), "expected struct Webhook"),
            ("{nope".to_owned(), "not JSON: key must be a string"),
            ("{".to_owned(), "EOF"),
        ] {
            let err = parse(body.as_bytes()).unwrap_err();
            assert!(err.contains(says), "`{says}` not in: {err}");
        }
    }
}
