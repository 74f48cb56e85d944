//! [`RaiseMaxmemory`] and [`SetEvictionPolicy`]: reversible `CONFIG SET`s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use selfheal_core::{
    ActionContext, ActionOutcome, Error, ErrorKind, Executor, RemediationPlan, Result, Risk,
    Strategy,
};
use serde_json::{Value, json};
use tracing::{info, instrument};

use super::{RedisHandle, check_plan, human_bytes, params_object, parse_bytes, redis_error};

/// `CONFIG GET <name>` on a fresh connection of `handle`.
pub(super) async fn config_get(handle: &RedisHandle, name: &str) -> Result<String> {
    let mut conn = handle.open_connection().await?;
    let mut reply: HashMap<String, String> = ::redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(&mut conn)
        .await
        .map_err(|e| redis_error(&format!("CONFIG GET {name} failed"), e))?;
    reply.remove(name).ok_or_else(|| {
        Error::new(
            ErrorKind::Execution,
            format!("CONFIG GET {name} returned nothing; the server does not expose `{name}`"),
        )
    })
}

/// `CONFIG SET <name> <value>` on a fresh connection of `handle`.
async fn config_set(handle: &RedisHandle, name: &str, value: &str) -> Result<()> {
    let mut conn = handle.open_connection().await?;
    let _: () = ::redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(&mut conn)
        .await
        .map_err(|e| redis_error(&format!("CONFIG SET {name} {value} failed"), e))?;
    Ok(())
}

/// The `from` and `to` a plan of these strategies recorded.
fn planned<'a>(plan: &'a RemediationPlan, name: &str) -> Result<(&'a Value, &'a Value)> {
    check_plan(plan, name)?;
    match (plan.params.get("from"), plan.params.get("to")) {
        (Some(from), Some(to)) => Ok((from, to)),
        _ => Err(Error::invalid(format!(
            "this `{name}` plan has no `from`/`to`; make plans with {name}'s plan()"
        ))),
    }
}

/// Raises `maxmemory`, never above a ceiling the host configures; the rollback sets the
/// value it found back.
///
/// - **Parameters**: `to` (a size such as `"64mb"`, at most the ceiling) or `factor`
///   (a number in (1, 16], default 2: the current value times it, capped at the
///   ceiling); not both.
/// - **Plan**: reads the current `maxmemory`; risk [`Risk::Low`]; one step
///   `CONFIG SET maxmemory <bytes> (<old> → <new>; ceiling <c>)`. Refuses
///   ([`ErrorKind::Conflict`]) when `maxmemory` is 0 (unlimited: nothing to raise) or
///   already at or above the target, so the healer goes on to the next fix.
/// - **Execute**: refuses a plan whose starting value changed since (someone else set it);
///   otherwise `CONFIG SET`. The server's memory use is not touched: writes succeed again
///   at once, and memory health (`used / maxmemory`) rises.
/// - **Rollback**: `CONFIG SET maxmemory <old>`.
#[derive(Debug, Clone)]
pub struct RaiseMaxmemory {
    handle: Arc<RedisHandle>,
    ceiling: u64,
}

impl RaiseMaxmemory {
    /// The strategy's name, which patterns bind fixes to.
    pub const NAME: &'static str = "redis_raise_maxmemory";

    /// Raises `maxmemory` of the server `handle` talks to, never above `ceiling` bytes.
    pub fn new(handle: Arc<RedisHandle>, ceiling: u64) -> Self {
        RaiseMaxmemory { handle, ceiling }
    }

    /// The most `maxmemory` may be raised to, in bytes.
    pub fn ceiling(&self) -> u64 {
        self.ceiling
    }

    /// What the parameters ask for: an absolute target or a factor.
    fn resolve(&self, params: &Value) -> Result<Target> {
        let Some(map) = params_object(Self::NAME, params, &["to", "factor"])? else {
            return Ok(Target::Factor(2.0));
        };
        match (map.get("to"), map.get("factor")) {
            (Some(_), Some(_)) => Err(Error::invalid(
                "redis_raise_maxmemory takes `to` or `factor`, not both; remove one",
            )),
            (Some(to), None) => {
                let bytes = parse_bytes(to)
                    .map_err(|e| Error::invalid(format!("redis_raise_maxmemory: `to`: {e}")))?;
                if bytes > self.ceiling {
                    return Err(Error::invalid(format!(
                        "redis_raise_maxmemory: `to` is {} but the ceiling is {}; ask for less or raise the ceiling in the strategy's configuration",
                        human_bytes(bytes),
                        human_bytes(self.ceiling)
                    )));
                }
                Ok(Target::Bytes(bytes))
            }
            (None, Some(factor)) => match factor.as_f64() {
                Some(f) if f > 1.0 && f <= 16.0 => Ok(Target::Factor(f)),
                _ => Err(Error::invalid(format!(
                    "redis_raise_maxmemory: `factor` must be a number above 1 and at most 16, got {factor}"
                ))),
            },
            (None, None) => Ok(Target::Factor(2.0)),
        }
    }
}

/// What a [`RaiseMaxmemory`] aims for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Bytes(u64),
    Factor(f64),
}

#[async_trait]
impl Strategy for RaiseMaxmemory {
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
                "to": {"type": ["string", "integer"], "description": format!("new maxmemory, e.g. \"64mb\"; at most {} bytes", self.ceiling)},
                "factor": {"type": "number", "exclusiveMinimum": 1, "maximum": 16, "default": 2}
            },
            "additionalProperties": false
        })
    }

    #[instrument(skip_all, fields(target = %ctx.target), err)]
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        let target = self.resolve(&ctx.params)?;
        let current: u64 = config_get(&self.handle, "maxmemory")
            .await?
            .parse()
            .map_err(|_| Error::new(ErrorKind::Execution, "maxmemory is not a number"))?;
        if current == 0 {
            return Err(Error::new(
                ErrorKind::Conflict,
                "maxmemory is 0 (no limit): there is nothing to raise; the memory pressure comes from the machine",
            ));
        }
        let to = match target {
            Target::Bytes(b) => b,
            // Rounded down to whole bytes; the product of two finite numbers is finite.
            Target::Factor(f) => ((current as f64) * f).min(self.ceiling as f64) as u64,
        };
        if to <= current {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "maxmemory is already {} and the target is {} (ceiling {}); evict keys or raise the ceiling",
                    human_bytes(current),
                    human_bytes(to),
                    human_bytes(self.ceiling)
                ),
            ));
        }
        let mut plan = RemediationPlan::new(Self::NAME, ctx.target.clone())
            .risk(Risk::Low)
            .step(format!(
                "redis {}: CONFIG SET maxmemory {to} ({} → {}; ceiling {})",
                self.handle.address(),
                human_bytes(current),
                human_bytes(to),
                human_bytes(self.ceiling)
            ));
        plan.params = json!({"from": current, "to": to});
        plan.reversible = true;
        Ok(plan)
    }

    #[instrument(skip_all, fields(target = %plan.target), err)]
    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        let (from, to) = planned(plan, Self::NAME)?;
        let (Some(from), Some(to)) = (from.as_u64(), to.as_u64()) else {
            return Err(Error::invalid(
                "maxmemory plan: `from`/`to` are not byte counts",
            ));
        };
        if to > self.ceiling {
            return Err(Error::invalid(format!(
                "this plan raises maxmemory to {} above the ceiling {}; plan again",
                human_bytes(to),
                human_bytes(self.ceiling)
            )));
        }
        let started = Instant::now();
        if executor.dry_run() {
            return Ok(ActionOutcome {
                stdout: format!("dry run: would CONFIG SET maxmemory {to}"),
                ..ActionOutcome::ok(started.elapsed())
            });
        }
        let now: u64 = config_get(&self.handle, "maxmemory")
            .await?
            .parse()
            .unwrap_or(0);
        if now != from {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "maxmemory changed since planned (planned from {}, now {}); plan again",
                    human_bytes(from),
                    human_bytes(now)
                ),
            ));
        }
        config_set(&self.handle, "maxmemory", &to.to_string()).await?;
        info!(from, to, "raised redis maxmemory");
        Ok(ActionOutcome {
            stdout: format!("maxmemory {} → {}", human_bytes(from), human_bytes(to)),
            ..ActionOutcome::ok(started.elapsed())
        })
    }

    #[instrument(skip_all, fields(target = %plan.target), err)]
    async fn rollback(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<Option<ActionOutcome>> {
        let (from, _) = planned(plan, Self::NAME)?;
        let Some(from) = from.as_u64() else {
            return Err(Error::invalid("maxmemory plan: `from` is not a byte count"));
        };
        let started = Instant::now();
        if !executor.dry_run() {
            config_set(&self.handle, "maxmemory", &from.to_string()).await?;
            info!(to = from, "restored redis maxmemory");
        }
        Ok(Some(ActionOutcome {
            stdout: format!("maxmemory restored to {}", human_bytes(from)),
            ..ActionOutcome::ok(started.elapsed())
        }))
    }
}

/// Every `maxmemory-policy` Redis knows.
pub const EVICTION_POLICIES: [&str; 8] = [
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

/// Changes `maxmemory-policy` (e.g. from `noeviction` to `allkeys-lru`, so a full cache
/// evicts instead of refusing writes); the rollback sets the policy it found back.
///
/// - **Parameters**: `policy` (required; one of the allowed policies, by default all
///   eight Redis knows).
/// - **Plan**: reads the current policy; risk [`Risk::Medium`] (an `allkeys-*` policy lets
///   Redis delete keys on its own); refuses ([`ErrorKind::Conflict`]) when the policy is
///   already the one asked for.
/// - **Execute**: refuses a plan whose starting policy changed since; otherwise
///   `CONFIG SET maxmemory-policy`.
/// - **Rollback**: `CONFIG SET maxmemory-policy <old>`.
#[derive(Debug, Clone)]
pub struct SetEvictionPolicy {
    handle: Arc<RedisHandle>,
    allowed: Vec<String>,
}

impl SetEvictionPolicy {
    /// The strategy's name, which patterns bind fixes to.
    pub const NAME: &'static str = "redis_eviction_policy";

    /// Changes the policy of the server `handle` talks to; every policy is allowed.
    pub fn new(handle: Arc<RedisHandle>) -> Self {
        SetEvictionPolicy {
            handle,
            allowed: EVICTION_POLICIES.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// Only these policies may be set (e.g. `["allkeys-lru", "allkeys-lfu"]`); names Redis
    /// does not know are dropped.
    pub fn allow<I, S>(mut self, policies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed = policies
            .into_iter()
            .map(Into::into)
            .filter(|p| EVICTION_POLICIES.contains(&p.as_str()))
            .collect();
        self
    }

    fn resolve(&self, params: &Value) -> Result<String> {
        let policy = params_object(Self::NAME, params, &["policy"])?
            .and_then(|m| m.get("policy"))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "redis_eviction_policy needs a `policy`, one of {}",
                    self.allowed.join(", ")
                ))
            })?;
        match policy.as_str() {
            Some(p) if self.allowed.iter().any(|a| a == p) => Ok(p.to_owned()),
            _ => Err(Error::invalid(format!(
                "redis_eviction_policy: `policy` {policy} is not allowed; use one of {}",
                self.allowed.join(", ")
            ))),
        }
    }
}

#[async_trait]
impl Strategy for SetEvictionPolicy {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn validate(&self, params: &Value) -> Result<()> {
        self.resolve(params).map(|_| ())
    }

    fn param_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"policy": {"type": "string", "enum": self.allowed}},
            "required": ["policy"],
            "additionalProperties": false
        })
    }

    #[instrument(skip_all, fields(target = %ctx.target), err)]
    async fn plan(&self, ctx: &ActionContext) -> Result<RemediationPlan> {
        let policy = self.resolve(&ctx.params)?;
        let current = config_get(&self.handle, "maxmemory-policy").await?;
        if current == policy {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("maxmemory-policy is already {policy}; nothing to change"),
            ));
        }
        let mut plan = RemediationPlan::new(Self::NAME, ctx.target.clone())
            .risk(Risk::Medium)
            .step(format!(
                "redis {}: CONFIG SET maxmemory-policy {policy} (was {current})",
                self.handle.address()
            ));
        plan.params = json!({"from": current, "to": policy});
        plan.reversible = true;
        Ok(plan)
    }

    #[instrument(skip_all, fields(target = %plan.target), err)]
    async fn execute(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<ActionOutcome> {
        let (from, to) = planned(plan, Self::NAME)?;
        let (Some(from), Some(to)) = (from.as_str(), to.as_str()) else {
            return Err(Error::invalid(
                "eviction policy plan: `from`/`to` are not names",
            ));
        };
        if !self.allowed.iter().any(|a| a == to) {
            return Err(Error::invalid(format!(
                "this plan sets maxmemory-policy {to}, which is not allowed; plan again"
            )));
        }
        let started = Instant::now();
        if executor.dry_run() {
            return Ok(ActionOutcome {
                stdout: format!("dry run: would CONFIG SET maxmemory-policy {to}"),
                ..ActionOutcome::ok(started.elapsed())
            });
        }
        let now = config_get(&self.handle, "maxmemory-policy").await?;
        if now != from {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "maxmemory-policy changed since planned (planned from {from}, now {now}); plan again"
                ),
            ));
        }
        config_set(&self.handle, "maxmemory-policy", to).await?;
        info!(from, to, "changed redis eviction policy");
        Ok(ActionOutcome {
            stdout: format!("maxmemory-policy {from} → {to}"),
            ..ActionOutcome::ok(started.elapsed())
        })
    }

    #[instrument(skip_all, fields(target = %plan.target), err)]
    async fn rollback(
        &self,
        plan: &RemediationPlan,
        executor: Arc<dyn Executor>,
    ) -> Result<Option<ActionOutcome>> {
        let (from, _) = planned(plan, Self::NAME)?;
        let Some(from) = from.as_str().filter(|f| EVICTION_POLICIES.contains(f)) else {
            return Err(Error::invalid(
                "eviction policy plan: `from` is not a policy",
            ));
        };
        let started = Instant::now();
        if !executor.dry_run() {
            config_set(&self.handle, "maxmemory-policy", from).await?;
            info!(to = from, "restored redis eviction policy");
        }
        Ok(Some(ActionOutcome {
            stdout: format!("maxmemory-policy restored to {from}"),
            ..ActionOutcome::ok(started.elapsed())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> Arc<RedisHandle> {
        Arc::new(RedisHandle::open("redis://127.0.0.1:1").unwrap())
    }

    #[test]
    fn raise_params_stay_under_the_ceiling() {
        let s = RaiseMaxmemory::new(handle(), 16 * 1024 * 1024);
        assert_eq!(s.resolve(&json!(null)).unwrap(), Target::Factor(2.0));
        assert_eq!(
            s.resolve(&json!({"to": "8mb"})).unwrap(),
            Target::Bytes(8 * 1024 * 1024)
        );
        for (bad, says) in [
            (json!({"to": "32mb"}), "ceiling is 16.0 MiB"),
            (json!({"to": "8mb", "factor": 2}), "not both"),
            (json!({"factor": 1}), "above 1"),
            (json!({"factor": 100}), "at most 16"),
            (json!({"to": "lots"}), "`to`"),
            (json!({"shell": "rm"}), "no parameter `shell`"),
        ] {
            let err = s.validate(&bad).unwrap_err();
            assert!(err.message().contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn only_allowed_policies_are_accepted() {
        let s = SetEvictionPolicy::new(handle()).allow(["allkeys-lru", "bogus"]);
        s.validate(&json!({"policy": "allkeys-lru"})).unwrap();
        let err = s.validate(&json!({"policy": "volatile-ttl"})).unwrap_err();
        assert!(err.message().contains("use one of allkeys-lru"), "{err}");
        assert!(s.validate(&json!({})).is_err());
        assert!(s.validate(&json!({"policy": 3})).is_err());
    }
}
