//! How domain values are written to columns and read back, the same for every dialect
//! that stores them as text.

use std::time::Duration;

#[cfg(feature = "sqlite")]
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Serialize, de::DeserializeOwned};
#[cfg(feature = "sqlite")]
use uuid::Uuid;

use crate::StorageError;

type Result<T, E = StorageError> = std::result::Result<T, E>;

#[cfg(feature = "sqlite")]
/// A UTC timestamp as RFC 3339 text with exactly six fractional digits, so that
/// text order is time order: `2025-11-25T09:21:00.123456Z`.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.trunc_subsecs(6)
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

#[cfg(feature = "sqlite")]
pub(crate) fn opt_ts(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(ts)
}

#[cfg(feature = "sqlite")]
pub(crate) fn parse_ts(what: &str, s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StorageError::corrupt(what, format!("`{s}` is not an RFC 3339 time: {e}")))
}

#[cfg(feature = "sqlite")]
pub(crate) fn parse_opt_ts(what: &str, s: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    s.map(|s| parse_ts(what, s)).transpose()
}

/// The serde name of a unit enum variant (`awaiting_approval`, `alert_only`, …).
pub(crate) fn enum_text<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        // Every enum stored this way is a unit enum that serializes to a string; anything
        // else is stored as its JSON text and refused when read back.
        Ok(other) => other.to_string(),
        Err(e) => format!("<{e}>"),
    }
}

pub(crate) fn parse_enum<T: DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|e| StorageError::corrupt(what, format!("`{s}`: {e}")))
}

pub(crate) fn json<T: Serialize + ?Sized>(what: &str, v: &T) -> Result<String> {
    serde_json::to_string(v)
        .map_err(|e| StorageError::Unrepresentable(format!("{what} cannot be stored as JSON: {e}")))
}

pub(crate) fn parse_json<T: DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StorageError::corrupt(what, e))
}

/// A column of audit record `seq` that does not decode is logged and replaced by
/// `fallback`: the record keeps its stored position and hash, so the chain continues
/// from them and one bad row never blocks later writes, and `verify_chain` reports the
/// record, whose content no longer hashes to its hash.
pub(crate) fn lossy<T>(seq: i64, decoded: Result<T>, fallback: impl FnOnce() -> T) -> T {
    decoded.unwrap_or_else(|e| {
        tracing::error!(
            seq,
            error = %e,
            "an audit record does not decode; the chain goes on from its position and hash, \
             and the check of the chain reports it"
        );
        fallback()
    })
}

#[cfg(feature = "sqlite")]
pub(crate) fn uuid_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

#[cfg(feature = "sqlite")]
pub(crate) fn parse_uuid(what: &str, s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| StorageError::corrupt(what, format!("`{s}`: {e}")))
}

pub(crate) fn to_i64(what: &str, n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| {
        StorageError::Unrepresentable(format!("{what} {n} is larger than the store can hold"))
    })
}

pub(crate) fn to_u64(what: &str, n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| StorageError::corrupt(what, format!("{n} is negative")))
}

pub(crate) fn to_u32(what: &str, n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| StorageError::corrupt(what, format!("{n} is out of range")))
}

pub(crate) fn to_u8(what: &str, n: i64) -> Result<u8> {
    u8::try_from(n).map_err(|_| StorageError::corrupt(what, format!("{n} is out of range")))
}

pub(crate) fn to_i32(what: &str, n: i64) -> Result<i32> {
    i32::try_from(n).map_err(|_| StorageError::corrupt(what, format!("{n} is out of range")))
}

/// A duration as whole nanoseconds, exact up to 292 years.
pub(crate) fn duration_ns(what: &str, d: Duration) -> Result<i64> {
    i64::try_from(d.as_nanos()).map_err(|_| {
        StorageError::Unrepresentable(format!("{what} {d:?} is longer than the store can hold"))
    })
}

pub(crate) fn parse_duration_ns(what: &str, ns: i64) -> Result<Duration> {
    Ok(Duration::from_nanos(to_u64(what, ns)?))
}

/// `s` cut to at most `max` bytes on a char boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfheal_core::{IncidentStatus, PatternMode};

    #[test]
    fn timestamps_sort_as_text_and_round_trip() {
        let a = DateTime::parse_from_rfc3339("2025-01-02T03:04:05Z")
            .unwrap()
            .to_utc();
        let b = DateTime::parse_from_rfc3339("2025-01-02T03:04:05.5Z")
            .unwrap()
            .to_utc();
        assert_eq!(ts(a), "2025-01-02T03:04:05.000000Z");
        assert!(ts(a) < ts(b));
        assert_eq!(parse_ts("t", &ts(b)).unwrap(), b);
        let now = Utc::now();
        assert_eq!(parse_ts("t", &ts(now)).unwrap(), now.trunc_subsecs(6));
    }

    #[test]
    fn enums_use_their_serde_names() {
        assert_eq!(
            enum_text(&IncidentStatus::AwaitingApproval),
            "awaiting_approval"
        );
        assert_eq!(enum_text(&PatternMode::AlertOnly), "alert_only");
        let back: IncidentStatus = parse_enum("status", "awaiting_approval").unwrap();
        assert_eq!(back, IncidentStatus::AwaitingApproval);
        assert!(parse_enum::<IncidentStatus>("status", "sideways").is_err());
    }

    #[test]
    fn truncation_keeps_whole_chars() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
