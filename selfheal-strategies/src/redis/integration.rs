//! [`RedisIntegration`]: the Redis strategies and verifier in one call.

use std::sync::Arc;

use selfheal_core::{Command, HealerBuilder, Integration};

use super::{
    EvictKeys, FlushDb, RaiseMaxmemory, ReconnectRedis, RedisHandle, RedisVerifier, RestartRedis,
    SetEvictionPolicy,
};

/// The stock Redis pieces, registered with
/// [`HealerBuilder::integrate`](selfheal_core::HealerBuilder::integrate): the strategies
/// `redis_evict_keys`, `redis_flushdb` (always behind an approval),
/// `redis_raise_maxmemory` (never above the [ceiling](Self::maxmemory_ceiling), default
/// 1 GiB), `redis_eviction_policy` and `redis_reconnect` on the service's
/// [`RedisHandle`], `redis_restart` when given a [restart command](Self::restart), and
/// the target's [`RedisVerifier`].
///
/// ```no_run
/// use std::sync::Arc;
/// use selfheal_core::Healer;
/// use selfheal_strategies::{RedisHandle, RedisIntegration};
/// # fn main() -> selfheal_core::Result<()> {
/// // The service's client: it takes `redis.connection()` each time, so a reconnect reaches it.
/// let redis = Arc::new(RedisHandle::open("redis://127.0.0.1:6379")?);
/// let healer = Healer::builder()
///     .integrate(RedisIntegration::new("redis-cache", redis.clone()))
///     .build()?;
/// # drop(healer); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisIntegration {
    target: String,
    handle: Arc<RedisHandle>,
    ceiling: u64,
    restart: Option<Command>,
}

impl RedisIntegration {
    /// The default most `redis_raise_maxmemory` raises `maxmemory` to: 1 GiB.
    pub const DEFAULT_MAXMEMORY_CEILING: u64 = 1 << 30;

    /// The pieces for `target`, acting on the server `handle` talks to.
    pub fn new(target: impl Into<String>, handle: Arc<RedisHandle>) -> Self {
        RedisIntegration {
            target: target.into(),
            handle,
            ceiling: Self::DEFAULT_MAXMEMORY_CEILING,
            restart: None,
        }
    }

    /// The most `redis_raise_maxmemory` may raise `maxmemory` to, in bytes.
    pub fn maxmemory_ceiling(mut self, bytes: u64) -> Self {
        self.ceiling = bytes;
        self
    }

    /// Also registers `redis_restart`, restarting the server with `command` (an
    /// argument vector; `{host}` and `{port}` are filled in, see [`RestartRedis`]).
    pub fn restart(mut self, command: Command) -> Self {
        self.restart = Some(command);
        self
    }
}

impl Integration for RedisIntegration {
    fn register(self, builder: HealerBuilder) -> HealerBuilder {
        let handle = self.handle;
        let builder = builder
            .strategy(EvictKeys::new(handle.clone()))
            .strategy(FlushDb::new(handle.clone()))
            .strategy(RaiseMaxmemory::new(handle.clone(), self.ceiling))
            .strategy(SetEvictionPolicy::new(handle.clone()))
            .strategy(ReconnectRedis::new(handle.clone()))
            .verifier(self.target, RedisVerifier::for_handle(&handle));
        match self.restart {
            Some(command) => builder.strategy(RestartRedis::new(handle, command)),
            None => builder,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfheal_core::Healer;

    #[tokio::test]
    async fn one_call_registers_the_strategies_and_the_verifier() {
        let handle = Arc::new(RedisHandle::open("redis://127.0.0.1:6379").unwrap());
        let healer = Healer::builder()
            .integrate(RedisIntegration::new("redis-cache", handle.clone()))
            .build()
            .unwrap();
        let debug = format!("{healer:?}");
        for name in [
            "redis_evict_keys",
            "redis_flushdb",
            "redis_raise_maxmemory",
            "redis_eviction_policy",
            "redis_reconnect",
        ] {
            assert!(debug.contains(name), "{name} in {debug}");
        }
        assert!(!debug.contains("redis_restart"), "{debug}");
        let with_restart = Healer::builder()
            .integrate(
                RedisIntegration::new("redis-cache", handle)
                    .restart(Command::new("systemctl", ["restart", "redis"])),
            )
            .build()
            .unwrap();
        assert!(format!("{with_restart:?}").contains("redis_restart"));
    }

    #[tokio::test]
    async fn the_stock_catalogs_redis_fixes_find_their_strategies() {
        let handle = Arc::new(RedisHandle::open("redis://127.0.0.1:6379").unwrap());
        let healer = Healer::builder()
            .store(selfheal_core::MemoryStore::new())
            .integrate(RedisIntegration::new("redis-cache", handle))
            .build()
            .unwrap();
        healer.admin().seed_catalog().await.unwrap();
        let problems = healer.admin().binding_problems().await.unwrap();
        let unregistered: Vec<_> = problems
            .iter()
            .filter(|p| {
                p.strategy.starts_with("redis_")
                    && p.issue == selfheal_core::BindingIssue::NotRegistered
            })
            .map(|p| p.strategy.as_str())
            .collect();
        // Only the restart, which needs the host's command.
        assert!(
            unregistered.iter().all(|s| *s == "redis_restart"),
            "{unregistered:?}"
        );
    }
}
