//! The names of the stock strategies the catalog binds fixes to, in one place.
//!
//! A fix names a strategy by the string its [`Strategy::name`](crate::Strategy::name)
//! returns; a pattern whose strategy is not registered on the healer escalates with
//! "strategy `…` is not registered" instead of running anything. Register the stock
//! strategies from `selfheal-strategies` (or your own under these names) to use the
//! catalog's fixes.

/// Notifies and does nothing else.
pub const ALERT_ONLY: &str = "alert_only";
/// Restarts a supervised process (the quickstart's `RestartProcess`).
pub const RESTART_PROCESS: &str = "restart_process";
/// Reconnects the host's Redis client handle.
pub const REDIS_RECONNECT: &str = "redis_reconnect";
/// Evicts Redis keys matching a pattern (`SCAN` + `UNLINK`, bounded).
pub const REDIS_EVICT_KEYS: &str = "redis_evict_keys";
/// Raises Redis `maxmemory` within configured bounds (rollback restores it).
pub const REDIS_RAISE_MAXMEMORY: &str = "redis_raise_maxmemory";
/// `FLUSHDB`: destructive, always behind an approval.
pub const REDIS_FLUSHDB: &str = "redis_flushdb";
/// Terminates idle Postgres connections older than a threshold (`pg_terminate_backend`).
pub const POSTGRES_TERMINATE_IDLE: &str = "postgres_terminate_idle";
/// Resets the host's sqlx pool.
pub const POSTGRES_RESET_POOL: &str = "postgres_reset_pool";
/// Opens the host's circuit breaker: a failing upstream is switched to its fallback.
pub const CIRCUIT_BREAKER: &str = "circuit_breaker";
/// Kills sessions over their time or cost limits (through the host's session control).
pub const KILL_SESSION: &str = "kill_session";
/// Changes one key of a config file, with a backup first.
pub const CONFIG_PATCH: &str = "config_patch";

/// Every name above.
pub const ALL: [&str; 11] = [
    ALERT_ONLY,
    RESTART_PROCESS,
    REDIS_RECONNECT,
    REDIS_EVICT_KEYS,
    REDIS_RAISE_MAXMEMORY,
    REDIS_FLUSHDB,
    POSTGRES_TERMINATE_IDLE,
    POSTGRES_RESET_POOL,
    CIRCUIT_BREAKER,
    KILL_SESSION,
    CONFIG_PATCH,
];
