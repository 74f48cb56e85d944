//! [`RedisHandle`]: the Redis client a host shares with the healer.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::AsyncConnectionConfig;
use ::redis::aio::MultiplexedConnection;
use selfheal_core::{Error, Result};
use tokio::sync::Mutex;
use tracing::{info, instrument};

use super::redis_error;

/// The host's Redis client, shared with the healer so a strategy can replace its
/// connection ([`ReconnectRedis`](crate::ReconnectRedis)) or act on the same server
/// ([`EvictKeys`](crate::EvictKeys), …).
///
/// The service calls [`connection`](Self::connection) for a (cheap, cloned) multiplexed
/// connection each time it needs one instead of keeping its own: after a reconnect it
/// gets the new one. A connection that broke (the server restarted, the network dropped
/// it) stays broken until someone reconnects; that is what the healer does when the
/// errors say so. The URL's password never shows in `Debug` or messages.
///
/// ```no_run
/// use selfheal_strategies::RedisHandle;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
/// let handle = RedisHandle::open("redis://127.0.0.1:6379/0")?;
/// let mut conn = handle.connection().await?;
/// let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
/// assert_eq!(pong, "PONG");
/// assert_eq!(handle.generation(), 1);
/// handle.reconnect().await?;
/// assert_eq!(handle.generation(), 2);
/// # Ok(()) }
/// ```
pub struct RedisHandle {
    client: ::redis::Client,
    connect_timeout: Duration,
    response_timeout: Duration,
    current: Mutex<Option<MultiplexedConnection>>,
    generation: AtomicU64,
}

impl RedisHandle {
    /// Default time to open a connection.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default time to wait for an answer.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

    /// A handle on the server at `url` (`redis://[:password@]host[:port][/db]`). It
    /// connects on first use.
    ///
    /// Errors: [`ErrorKind::InvalidInput`](selfheal_core::ErrorKind::InvalidInput) for a
    /// URL that does not parse.
    pub fn open(url: &str) -> Result<Self> {
        let client = ::redis::Client::open(url).map_err(|e| {
            Error::invalid(format!(
                "invalid Redis URL: {e}; give one like redis://127.0.0.1:6379/0"
            ))
        })?;
        Ok(RedisHandle {
            client,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
        })
    }

    /// How long opening a connection may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a command may wait for its answer (default 5 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// `host:port` (or the socket path) of the server, without credentials.
    pub fn address(&self) -> String {
        self.client.get_connection_info().addr().to_string()
    }

    /// The underlying client (for a connection of your own, e.g. pub/sub).
    pub fn client(&self) -> &::redis::Client {
        &self.client
    }

    /// How many connections this handle has opened: 0 before first use, +1 on every
    /// (re)connect.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The current connection, opened on first use. Clones share one multiplexed
    /// connection.
    ///
    /// Errors: `Unavailable` or `Timeout` (retryable) when the server cannot be reached.
    pub async fn connection(&self) -> Result<MultiplexedConnection> {
        let mut current = self.current.lock().await;
        if let Some(conn) = current.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.open_connection().await?;
        self.generation.fetch_add(1, Ordering::SeqCst);
        *current = Some(conn.clone());
        Ok(conn)
    }

    /// Replaces the current connection with a new one that answered `PING`; the old one
    /// is dropped (requests in flight on it finish or fail). Returns the new generation.
    /// When the server cannot be reached, the old connection is kept and the error
    /// returned.
    #[instrument(skip_all, fields(redis = %self.address()), err)]
    pub async fn reconnect(&self) -> Result<u64> {
        let mut conn = self.open_connection().await?;
        let _: String = ::redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error("the new connection did not answer PING", e))?;
        let mut current = self.current.lock().await;
        *current = Some(conn);
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        info!(generation, "redis client reconnected");
        Ok(generation)
    }

    /// A new connection with this handle's timeouts, not shared with the host.
    pub(crate) async fn open_connection(&self) -> Result<MultiplexedConnection> {
        open_connection(&self.client, self.connect_timeout, self.response_timeout).await
    }
}

/// A new multiplexed connection to `client` with these timeouts.
pub(crate) async fn open_connection(
    client: &::redis::Client,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(response_timeout));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| {
            redis_error(
                &format!(
                    "could not connect to Redis at {}",
                    client.get_connection_info().addr()
                ),
                e,
            )
        })
}

impl fmt::Debug for RedisHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisHandle")
            .field("address", &self.address())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_refused_and_passwords_stay_hidden() {
        let err = RedisHandle::open("http://nope").unwrap_err();
        assert_eq!(err.kind(), selfheal_core::ErrorKind::InvalidInput);
        let handle = RedisHandle::open("redis://:hunter2@127.0.0.1:6390/0").unwrap();
        let debug = format!("{handle:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("127.0.0.1:6390"), "{debug}");
        assert_eq!(handle.generation(), 0);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_retryable_error_and_keeps_the_generation() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let handle = RedisHandle::open(&format!("redis://127.0.0.1:{port}")).unwrap();
        let err = handle.connection().await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(err.message().contains("could not connect"), "{err}");
        assert!(handle.reconnect().await.is_err());
        assert_eq!(handle.generation(), 0);
    }
}
