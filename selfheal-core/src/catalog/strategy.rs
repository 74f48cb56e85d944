//! The names of the stock strategies the catalog binds fixes to, in one place.
//!
//! A fix names a strategy by the string its [`Strategy::name`](crate::Strategy::name)
//! returns; a pattern whose strategy is not registered on the healer escalates with
//! "strategy `…` is not registered" instead of running anything. Register the stock
//! strategies from `selfheal-strategies` (or your own under these names) to use the
//! catalog's fixes. The names are those of the stock strategies in
//! `selfheal-strategies` (`RestartProcess::NAME`, …).

/// Notifies and does nothing else.
pub const ALERT_ONLY: &str = "alert_only";
/// Restarts a supervised process (the quickstart's `RestartProcess`).
pub const RESTART_PROCESS: &str = "restart_process";
/// Reconnects the host's Redis client handle.
pub const REDIS_RECONNECT: &str = "redis_reconnect";
/// Restarts the Redis process (an argument-vector template through the executor).
pub const REDIS_RESTART: &str = "redis_restart";
/// Evicts Redis keys matching a pattern (`SCAN` + `UNLINK`, bounded).
pub const REDIS_EVICT_KEYS: &str = "redis_evict_keys";
/// Raises Redis `maxmemory` within configured bounds (rollback restores it).
pub const REDIS_RAISE_MAXMEMORY: &str = "redis_raise_maxmemory";
/// Changes the Redis eviction policy (rollback restores it).
pub const REDIS_EVICTION_POLICY: &str = "redis_eviction_policy";
/// `FLUSHDB`: destructive, always behind an approval.
pub const REDIS_FLUSHDB: &str = "redis_flushdb";
/// Terminates idle Postgres connections older than a threshold (`pg_terminate_backend`).
pub const POSTGRES_TERMINATE_IDLE: &str = "postgres_terminate_idle";
/// Resets the host's sqlx pool.
pub const POSTGRES_RESET_POOL: &str = "postgres_reset_pool";
/// Opens the host's circuit breaker: a failing upstream is switched to its fallback.
pub const CIRCUIT_BREAK: &str = "circuit_break";
/// Ends sessions over their time or cost limits (through the host's session control).
pub const KILL_RUNAWAY_SESSIONS: &str = "kill_runaway_sessions";
/// Changes one key of a config file, with a backup first.
pub const PATCH_CONFIG: &str = "patch_config";

/// Every name above.
pub const ALL: [&str; 13] = [
    ALERT_ONLY,
    RESTART_PROCESS,
    REDIS_RECONNECT,
    REDIS_RESTART,
    REDIS_EVICT_KEYS,
    REDIS_RAISE_MAXMEMORY,
    REDIS_EVICTION_POLICY,
    REDIS_FLUSHDB,
    POSTGRES_TERMINATE_IDLE,
    POSTGRES_RESET_POOL,
    CIRCUIT_BREAK,
    KILL_RUNAWAY_SESSIONS,
    PATCH_CONFIG,
];

/// How to register the stock strategy `name` (from `selfheal-strategies`), for the
/// warning that lists the ones a healer lacks; `None` for a name that is not stock.
pub fn how_to_register(name: &str) -> Option<&'static str> {
    Some(match name {
        ALERT_ONLY => "AlertOnly::new()",
        RESTART_PROCESS => "RestartProcess over a ChildSupervisor",
        REDIS_RECONNECT
        | REDIS_EVICT_KEYS
        | REDIS_RAISE_MAXMEMORY
        | REDIS_EVICTION_POLICY
        | REDIS_FLUSHDB => "RedisIntegration",
        REDIS_RESTART => "RedisIntegration::restart(command)",
        POSTGRES_TERMINATE_IDLE => "PostgresIntegration",
        POSTGRES_RESET_POOL => "PostgresIntegration::for_handle(PgPoolHandle)",
        CIRCUIT_BREAK => "OpenCircuit with your CircuitBreaker",
        KILL_RUNAWAY_SESSIONS => "KillRunawaySessions with your SessionControl",
        PATCH_CONFIG => "ConfigPatch",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_stock_strategy_says_how_to_register_it() {
        for name in super::ALL {
            assert!(super::how_to_register(name).is_some(), "{name}");
        }
        assert_eq!(super::how_to_register("my_own"), None);
    }
}
