//! Redis (feature `redis`): a client handle the host shares with the healer, a verifier
//! (PING and memory health) and the strategies for a Redis that is out of memory or
//! refuses connections.
//!
//! | strategy | name | what it does | risk | undo |
//! |---|---|---|---|---|
//! | [`EvictKeys`] | `redis_evict_keys` | `SCAN MATCH <pattern>` + `UNLINK`, at most `max_keys` | medium | no |
//! | [`FlushDb`] | `redis_flushdb` | `FLUSHDB` (destructive: approval) | high | no |
//! | [`RaiseMaxmemory`] | `redis_raise_maxmemory` | `CONFIG SET maxmemory`, never above the ceiling | low | restores the old value |
//! | [`SetEvictionPolicy`] | `redis_eviction_policy` | `CONFIG SET maxmemory-policy` | medium | restores the old policy |
//! | [`ReconnectRedis`] | `redis_reconnect` | replaces the [`RedisHandle`]'s connection | low | no |
//! | [`RestartRedis`] | `redis_restart` | runs the host's restart argv, waits for PING, reconnects | medium | no |
//!
//! Every Redis command these strategies send is in their plan's preview as a step (they
//! run in-process on the handle's connection, not through the executor); with a dry-run
//! executor they change nothing.
//!
//! [`RedisIntegration`] registers them all in one call; by hand:
//!
//! ```no_run
//! use std::sync::Arc;
//! use selfheal_core::Healer;
//! use selfheal_strategies::{EvictKeys, RaiseMaxmemory, RedisHandle, RedisVerifier};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
//! // The host's Redis client: the service uses `handle.connection()`, the healer acts on it.
//! let handle = Arc::new(RedisHandle::open("redis://127.0.0.1:6379")?);
//! let healer = Healer::builder()
//!     .strategy(EvictKeys::new(handle.clone()))
//!     .strategy(RaiseMaxmemory::new(handle.clone(), 512 * 1024 * 1024))
//!     .verifier("redis-cache", RedisVerifier::new("redis://127.0.0.1:6379")?)
//!     .build()?;
//! let mut conn = handle.connection().await?;
//! let _: () = redis::cmd("SET").arg("cache:a").arg(1).query_async(&mut conn).await
//!     .map_err(|e| selfheal_core::Error::new(selfheal_core::ErrorKind::Unavailable, e.to_string()))?;
//! # drop(healer); Ok(()) }
//! ```

mod config;
mod evict;
mod handle;
mod integration;
#[cfg(test)]
mod real_tests;
mod reconnect;
mod verifier;

pub use config::{RaiseMaxmemory, SetEvictionPolicy};
pub use evict::{EvictKeys, FlushDb};
pub use handle::RedisHandle;
pub use integration::RedisIntegration;
pub use reconnect::{ReconnectRedis, RestartRedis};
pub use verifier::RedisVerifier;

use std::collections::BTreeMap;

use selfheal_core::{Error, ErrorKind};
use serde_json::Value;

/// Maps a Redis client error into selfheal's error, saying what failed (`what`) and
/// classifying it: refused or broken connections are `Unavailable`, timeouts `Timeout`
/// (both retryable), errors the server returned are `Execution`.
pub(crate) fn redis_error(what: &str, e: ::redis::RedisError) -> Error {
    let (kind, hint) = if e.is_timeout() {
        (
            ErrorKind::Timeout,
            "the server did not answer in time; check its load",
        )
    } else if e.is_connection_refusal() || e.is_io_error() || e.is_connection_dropped() {
        (
            ErrorKind::Unavailable,
            "the server is unreachable; check that it runs and the URL",
        )
    } else if e.kind() == ::redis::ErrorKind::AuthenticationFailed {
        (
            ErrorKind::InvalidInput,
            "authentication failed; fix the credentials in the URL",
        )
    } else {
        (
            ErrorKind::Execution,
            "the server refused the command; check its configuration (renamed or disabled commands, ACLs)",
        )
    };
    Error::new(kind, format!("{what}: {e}; {hint}")).with_source(e)
}

/// Refuses a plan made by another strategy.
pub(crate) fn check_plan(
    plan: &selfheal_core::RemediationPlan,
    name: &str,
) -> selfheal_core::Result<()> {
    if plan.strategy == name {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "this plan belongs to strategy `{}`, not `{name}`",
            plan.strategy
        )))
    }
}

/// The `key:value` lines of an `INFO` reply.
pub(crate) fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// A memory size as Redis writes it in its configuration (`2mb`, `512kb`, `1gb`,
/// `100000`; `k`/`m`/`g` are powers of 1000, `kb`/`mb`/`gb` of 1024), or a JSON number
/// of bytes.
pub(crate) fn parse_bytes(value: &Value) -> Result<u64, String> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("{n} is not a whole number of bytes")),
        Value::String(s) => {
            let t = s.trim().to_ascii_lowercase();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (digits, unit) = t.split_at(split);
            let n: u64 = digits
                .parse()
                .map_err(|_| format!("`{s}` is not a size like `64mb` or `1gb`"))?;
            let factor: u64 = match unit.trim() {
                "" | "b" => 1,
                "k" => 1000,
                "kb" => 1024,
                "m" => 1000 * 1000,
                "mb" => 1024 * 1024,
                "g" => 1000 * 1000 * 1000,
                "gb" => 1024 * 1024 * 1024,
                other => return Err(format!("unknown unit `{other}` in `{s}`; use kb, mb or gb")),
            };
            n.checked_mul(factor)
                .ok_or_else(|| format!("`{s}` is too large"))
        }
        _ => Err("expected a size like \"64mb\" or a number of bytes".to_owned()),
    }
}

/// A byte count for people: `2.0 MiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The parameters as an object (`null` is an empty one), refusing keys outside `allowed`.
pub(crate) fn params_object<'a>(
    strategy: &str,
    params: &'a Value,
    allowed: &[&str],
) -> selfheal_core::Result<Option<&'a serde_json::Map<String, Value>>> {
    let map = match params {
        Value::Null => return Ok(None),
        Value::Object(map) => map,
        _ => {
            return Err(Error::invalid(format!(
                "{strategy} takes an object of parameters ({}); got {params}",
                allowed.join(", ")
            )));
        }
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Error::invalid(format!(
            "{strategy} has no parameter `{unknown}`; use {}",
            allowed
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(Some(map))
}

/// An action context for unit tests.
#[cfg(test)]
pub(crate) fn test_ctx(target: &str, params: Value) -> selfheal_core::ActionContext {
    let now = chrono::Utc::now();
    selfheal_core::ActionContext {
        incident: selfheal_core::Incident {
            stack: None,
            id: uuid::Uuid::new_v4(),
            target: target.into(),
            fingerprint: "0123456789abcdef".into(),
            template: "OOM command not allowed when used memory > <QUOTED>.".into(),
            related: Vec::new(),
            pattern: Some("redis_oom".into()),
            status: selfheal_core::IncidentStatus::Open,
            severity: selfheal_core::Severity::High,
            occurrences: 3,
            samples: Vec::new(),
            opened_at: now,
            last_seen: now,
            closed_at: None,
            reason: String::new(),
        },
        target: target.into(),
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_parse_in_redis_units() {
        assert_eq!(parse_bytes(&json!("2mb")), Ok(2 * 1024 * 1024));
        assert_eq!(parse_bytes(&json!("2m")), Ok(2_000_000));
        assert_eq!(parse_bytes(&json!("512KB")), Ok(512 * 1024));
        assert_eq!(parse_bytes(&json!("1gb")), Ok(1 << 30));
        assert_eq!(parse_bytes(&json!("100000")), Ok(100_000));
        assert_eq!(parse_bytes(&json!(4096)), Ok(4096));
        assert!(
            parse_bytes(&json!("12 parsecs"))
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_bytes(&json!("mb")).is_err());
        assert!(parse_bytes(&json!(-1)).is_err());
        assert!(parse_bytes(&json!([1])).is_err());
        assert!(parse_bytes(&json!("99999999999999999999gb")).is_err());
    }

    #[test]
    fn info_lines_become_a_map() {
        let info = parse_info("# Memory\r\nused_memory:1024\r\nmaxmemory:2097152\r\n\r\n");
        assert_eq!(info.get("used_memory").map(String::as_str), Some("1024"));
        assert_eq!(info.get("maxmemory").map(String::as_str), Some("2097152"));
        assert_eq!(info.len(), 2);
    }

    #[test]
    fn bytes_read_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2 * 1024 * 1024), "2.0 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn unknown_parameters_are_named() {
        let err = params_object("x", &json!({"patern": "a"}), &["pattern"]).unwrap_err();
        assert!(err.message().contains("`patern`"), "{err}");
        assert!(
            params_object("x", &json!(null), &["pattern"])
                .unwrap()
                .is_none()
        );
        assert!(params_object("x", &json!("a"), &["pattern"]).is_err());
    }
}
