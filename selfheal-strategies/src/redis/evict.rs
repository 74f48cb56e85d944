//! [`EvictKeys`] and [`FlushDb`]: free a full Redis by deleting keys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use selfheal_core::{
    ActionContext, ActionOutcome, Error, Executor, RemediationPlan, Result, Risk, Strategy,
};
use serde_json::{Value, json};
use tracing::{info, instrument};

use super::{RedisHandle, check_plan, params_object, redis_error};

/// Frees memory by deleting the keys that match a pattern: `SCAN <cursor> MATCH
/// <pattern> COUNT <count>` and `UNLINK` of each batch found (freed in the background
/// by the server), until the keyspace is scanned, `max_keys` are gone or the time limit
/// is reached. `DEL`/`UNLINK` are allowed while Redis refuses writes for lack of memory.
///
/// - **Parameters**: `pattern` (required: a `SCAN MATCH` glob such as `cache:*`; one that
///   matches every key is refused: that is [`FlushDb`]'s job, with approval),
///   `max_keys` (default 100 000, at most the strategy's ceiling), `count` (the `SCAN`
///   hint, default 1000).
/// - **Plan**: risk [`Risk::Medium`] (cached data is lost and rebuilt); one step previewing
///   the commands. Not destructive: it deletes only what the pattern written by the
///   operator names.
/// - **Execute**: the outcome says how many keys were unlinked; none matching is a
///   failed outcome (nothing was freed), so the healer tries the next fix.
/// - **Rollback**: none.
#[derive(Debug, Clone)]
pub struct EvictKeys {
    handle: Arc<RedisHandle>,
    max_keys_ceiling: u64,
    time_limit: Duration,
}

impl EvictKeys {
    /// The strategy's name, which patterns bind fixes to.
    pub const NAME: &'static str = "redis_evict_keys";
    /// Keys unlinked per run unless the parameters say otherwise.
    pub const DEFAULT_MAX_KEYS: u64 = 100_000;
    /// The `SCAN COUNT` hint unless the parameters say otherwise.
    pub const DEFAULT_COUNT: u64 = 1000;

    /// Evicts keys on the server `handle` talks to; at most 1 000 000 keys and 30 s per
    /// run.
    pub fn new(handle: Arc<RedisHandle>) -> Self {
        EvictKeys {
            handle,
            max_keys_ceiling: 1_000_000,
            time_limit: Duration::from_secs(30),
        }
    }

    /// The most keys one run may unlink, whatever the parameters ask (default 1 000 000).
    pub fn max_keys_ceiling(mut self, ceiling: u64) -> Self {
        self.max_keys_ceiling = ceiling.max(1);
        self
    }

    /// How long one run may scan (default 30 s); it stops there with what it freed.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = limit;
        self
    }

    /// The validated parameters: (pattern, max_keys, count).
    fn resolve(&self, params: &Value) -> Result<(String, u64, u64)> {
        let allowed = ["pattern", "max_keys", "count"];
        let Some(map) = params_object(Self::NAME, params, &allowed)? else {
            return Err(Error::invalid(
                "redis_evict_keys needs a `pattern` (e.g. {\"pattern\": \"cache:*\"}); add one to the fix's params",
            ));
        };
        let pattern = match map.get("pattern") {
            Some(Value::String(p)) if !p.trim().is_empty() => p.clone(),
            Some(other) => {
                return Err(Error::invalid(format!(
                    "redis_evict_keys: `pattern` must be a non-empty glob such as \"cache:*\", got {other}"
                )));
            }
            None => {
                return Err(Error::invalid(
                    "redis_evict_keys needs a `pattern` (e.g. \"cache:*\"); add it to the fix's params",
                ));
            }
        };
        if pattern.chars().all(|c| c == '*') {
            return Err(Error::invalid(format!(
                "redis_evict_keys refuses pattern `{pattern}`: it matches every key; use redis_flushdb (which needs approval) to clear the database"
            )));
        }
        let number = |key: &str, default: u64, max: u64| -> Result<u64> {
            match map.get(key) {
                None => Ok(default),
                Some(v) => match v.as_u64() {
                    Some(n) if (1..=max).contains(&n) => Ok(n),
                    _ => Err(Error::invalid(format!(
                        "redis_evict_keys: `{key}` must be a whole number in 1..={max}, got {v}"
                    ))),
                },
            }
        };
        let max_keys = number(
            "max_keys",
            Self::DEFAULT_MAX_KEYS.min(self.max_keys_ceiling),
            self.max_keys_ceiling,
        )?;
        let count = number("count", Self::DEFAULT_COUNT, 100_000)?;
        Ok((pattern, max_keys, count))
    }
}

#[async_trait]
impl Strategy for EvictKeys {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn validate(&self, params: &Value) -> Result<()> {
        self.resolve(params).map(|_| ())
    }

    fn param_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "minLength": 1, "description": "SCAN MATCH glob of the keys to delete, e.g. cache:*"},
                "max_keys": {"type": "integer", "minimum": 1, "maximum": self.max_keys_ceiling},
                "count": {"type": "integer", "minimum": 1, "maximum": 100_000}
            },
            "required": ["pattern"],
            "additionalProperties": false
        })
    }

    #[instrument(skip_all, fields(target = %ctx.target), err)]
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        let (pattern, max_keys, count) = self.resolve(&ctx.params)?;
        let mut plan = RemediationPlan::new(Self::NAME, ctx.target.clone())
            .risk(Risk::Medium)
            .step(format!(
                "redis {}: SCAN <cursor> MATCH {pattern} COUNT {count}, UNLINK each batch found (at most {max_keys} keys, {}s)",
                self.handle.address(),
                self.time_limit.as_secs()
            ));
        plan.params = json!({"pattern": pattern, "max_keys": max_keys, "count": count});
        Ok(plan)
    }

    #[instrument(skip_all, fields(target = %plan.target), err)]
    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        check_plan(plan, Self::NAME)?;
        let (pattern, max_keys, count) = self.resolve(&plan.params)?;
        let started = Instant::now();
        if executor.dry_run() {
            return Ok(ActionOutcome {
                stdout: format!("dry run: would unlink up to {max_keys} keys matching `{pattern}`"),
                ..ActionOutcome::ok(started.elapsed())
            });
        }
        let mut conn = self.handle.open_connection().await?;
        let (mut cursor, mut unlinked, mut calls) = (0u64, 0u64, 0u64);
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(count)
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error("SCAN failed", e))?;
            calls += 1;
            let room = usize::try_from(max_keys - unlinked).unwrap_or(usize::MAX);
            let batch: Vec<Vec<u8>> = keys.into_iter().take(room).collect();
            if !batch.is_empty() {
                let n: u64 = ::redis::cmd("UNLINK")
                    .arg(&batch)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| redis_error("UNLINK failed", e))?;
                unlinked += n;
            }
            cursor = next;
            if cursor == 0 || unlinked >= max_keys || started.elapsed() >= self.time_limit {
                break;
            }
        }
        let complete = cursor == 0;
        info!(unlinked, calls, complete, pattern = %pattern, "evicted redis keys");
        let mut outcome = ActionOutcome::ok(started.elapsed());
        outcome.stdout = format!(
            "unlinked {unlinked} keys matching `{pattern}` in {calls} SCAN calls{}",
            if complete {
                ""
            } else {
                " (stopped at the key or time limit)"
            }
        );
        if unlinked == 0 {
            outcome.success = false;
            outcome.stderr = format!("no key matches `{pattern}`: nothing was freed");
        }
        Ok(outcome)
    }
}

/// Deletes every key of the handle's database: `FLUSHDB ASYNC` (or `SYNC`).
///
/// - **Parameters**: `async` (default `true`: the server frees memory in the background).
/// - **Plan**: risk [`Risk::High`]; [`destructive`](Strategy::destructive), so the
///   healer waits for a human's approval unless configured otherwise. The step shows
///   the server, the database and how many keys it holds when planned.
/// - **Rollback**: none (the data is gone).
#[derive(Debug, Clone)]
pub struct FlushDb {
    handle: Arc<RedisHandle>,
}

impl FlushDb {
    /// The strategy's name, which patterns bind fixes to.
    pub const NAME: &'static str = "redis_flushdb";

    /// Flushes the database `handle` talks to.
    pub fn new(handle: Arc<RedisHandle>) -> Self {
        FlushDb { handle }
    }

    fn is_async(params: &Value) -> Result<bool> {
        let Some(map) = params_object(Self::NAME, params, &["async"])? else {
            return Ok(true);
        };
        match map.get("async") {
            None => Ok(true),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(Error::invalid(format!(
                "redis_flushdb: `async` must be true or false, got {other}"
            ))),
        }
    }
}

#[async_trait]
impl Strategy for FlushDb {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn destructive(&self) -> bool {
        true
    }

    fn validate(&self, params: &Value) -> Result<()> {
        Self::is_async(params).map(|_| ())
    }

    fn param_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"async": {"type": "boolean", "default": true}},
            "additionalProperties": false
        })
    }

    #[instrument(skip_all, fields(target = %ctx.target), err)]
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        let asynchronous = Self::is_async(&ctx.params)?;
        let mut conn = self.handle.open_connection().await?;
        let keys: u64 = ::redis::cmd("DBSIZE")
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error("DBSIZE failed", e))?;
        let db = self
            .handle
            .client()
            .get_connection_info()
            .redis_settings()
            .db();
        let mut plan = RemediationPlan::new(Self::NAME, ctx.target.clone())
            .risk(Risk::High)
            .step(format!(
                "redis {} db {db}: FLUSHDB {} (deletes all {keys} keys)",
                self.handle.address(),
                if asynchronous { "ASYNC" } else { "SYNC" }
            ));
        plan.params = json!({"async": asynchronous});
        Ok(plan)
    }

    #[instrument(skip_all, fields(target = %plan.target), err)]
    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        check_plan(plan, Self::NAME)?;
        let asynchronous = Self::is_async(&plan.params)?;
        let started = Instant::now();
        if executor.dry_run() {
            return Ok(ActionOutcome {
                stdout: "dry run: would FLUSHDB".into(),
                ..ActionOutcome::ok(started.elapsed())
            });
        }
        let mut conn = self.handle.open_connection().await?;
        let before: u64 = ::redis::cmd("DBSIZE")
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error("DBSIZE failed", e))?;
        let _: () = ::redis::cmd("FLUSHDB")
            .arg(if asynchronous { "ASYNC" } else { "SYNC" })
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error("FLUSHDB failed", e))?;
        info!(keys = before, "flushed redis database");
        Ok(ActionOutcome {
            stdout: format!("flushed {before} keys"),
            ..ActionOutcome::ok(started.elapsed())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evict() -> EvictKeys {
        EvictKeys::new(Arc::new(RedisHandle::open("redis://127.0.0.1:1").unwrap()))
            .max_keys_ceiling(500)
    }

    #[test]
    fn evict_params_are_checked() {
        let s = evict();
        assert_eq!(
            s.resolve(&json!({"pattern": "cache:*"})).unwrap(),
            ("cache:*".to_owned(), 500, 1000)
        );
        for (bad, says) in [
            (json!(null), "needs a `pattern`"),
            (json!({}), "needs a `pattern`"),
            (json!({"pattern": "*"}), "matches every key"),
            (json!({"pattern": ""}), "non-empty"),
            (json!({"pattern": "a*", "max_keys": 501}), "1..=500"),
            (json!({"pattern": "a*", "max_keys": 0}), "1..=500"),
            (json!({"pattern": "a*", "cmd": "x"}), "no parameter `cmd`"),
        ] {
            let err = s.validate(&bad).unwrap_err();
            assert!(err.message().contains(says), "{bad}: {err}");
        }
        assert!(!s.destructive());
    }

    #[test]
    fn flushdb_is_destructive_and_checks_async() {
        let s = FlushDb::new(Arc::new(RedisHandle::open("redis://127.0.0.1:1").unwrap()));
        assert!(s.destructive());
        s.validate(&json!({"async": false})).unwrap();
        s.validate(&json!(null)).unwrap();
        assert!(s.validate(&json!({"async": "yes"})).is_err());
    }
}
