//! [`RedisVerifier`]: PING, a write probe and memory usage.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use selfheal_core::{Error, Health, Result, Verifier};
use tracing::{debug, instrument};

use super::handle::open_connection;
use super::{human_bytes, parse_info};

/// Checks a Redis server from a fresh connection: `PING`, a write probe, then `INFO
/// memory`.
///
/// - **Verdict** ([`Health::passed`]): the server answers `PING`, the **write probe**
///   works (`SET selfheal:probe 1 PX 10000`, then `DEL`; refused while the server is out
///   of memory under `noeviction`, read-only or loading) and used memory is **below
///   `maxmemory`**, the limit whose crossing makes Redis refuse writes. A Redis at 60 %
///   of `maxmemory` passes. Turn the write probe off with
///   [`write_probe(false)`](Self::write_probe) for a read-only replica.
/// - **Score** (recorded as health before/after, not judged): `100 − used_memory /
///   maxmemory × 100`, rounded, clamped to 0..=100. Without a `maxmemory` (0:
///   unlimited) the machine's `total_system_memory` is the limit; when Redis reports
///   neither, 100.
/// - No answer to `PING` (refused, timed out, an error reply): score 0, failed, the
///   error in the detail.
///
/// Each check opens its own connection, so it sees what a new client would see (a
/// server that refuses connections fails even if an old connection still works).
///
/// ```no_run
/// use selfheal_core::Verifier;
/// use selfheal_strategies::RedisVerifier;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> selfheal_core::Result<()> {
/// let health = RedisVerifier::new("redis://127.0.0.1:6379")?.check().await?;
/// // true 97 (PONG; write ok; memory 1.1 MiB of 64.0 MiB maxmemory)
/// println!("{} {} ({})", health.passed, health.score, health.detail);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisVerifier {
    client: ::redis::Client,
    timeout: Duration,
    write_probe: bool,
}

impl RedisVerifier {
    /// The key the write probe sets (with a 10 s expiry) and deletes.
    pub const PROBE_KEY: &'static str = "selfheal:probe";

    /// Default time to connect and to wait for each answer.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// A verifier of the server at `url`.
    ///
    /// Errors: [`ErrorKind::InvalidInput`](selfheal_core::ErrorKind::InvalidInput) for a
    /// URL that does not parse.
    pub fn new(url: &str) -> Result<Self> {
        let client = ::redis::Client::open(url).map_err(|e| {
            Error::invalid(format!(
                "invalid Redis URL: {e}; give one like redis://127.0.0.1:6379/0"
            ))
        })?;
        Ok(RedisVerifier {
            client,
            timeout: Self::DEFAULT_TIMEOUT,
            write_probe: true,
        })
    }

    /// A verifier of the server a [`RedisHandle`](crate::RedisHandle) talks to.
    pub fn for_handle(handle: &super::RedisHandle) -> Self {
        RedisVerifier {
            client: handle.client().clone(),
            timeout: Self::DEFAULT_TIMEOUT,
            write_probe: true,
        }
    }

    /// How long connecting and each answer may take (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether the verdict needs the write probe (`SET` + `DEL` of [`Self::PROBE_KEY`];
    /// default on). Off for a read-only replica or a role without write access: the
    /// verdict is then `PING` and memory below `maxmemory`.
    pub fn write_probe(mut self, on: bool) -> Self {
        self.write_probe = on;
        self
    }

    /// `SET` of the probe key with a short expiry, then `DEL`: `Err` with the reply
    /// when Redis refuses the write.
    async fn write(&self, conn: &mut ::redis::aio::MultiplexedConnection) -> Result<(), String> {
        let _: () = ::redis::cmd("SET")
            .arg(Self::PROBE_KEY)
            .arg(1)
            .arg("PX")
            .arg(10_000)
            .query_async(conn)
            .await
            .map_err(|e| format!("write probe refused: {e}"))?;
        let _: i64 = ::redis::cmd("DEL")
            .arg(Self::PROBE_KEY)
            .query_async(conn)
            .await
            .map_err(|e| format!("write probe's DEL refused: {e}"))?;
        Ok(())
    }

    async fn probe(&self) -> std::result::Result<Health, String> {
        let mut conn = open_connection(&self.client, self.timeout, self.timeout)
            .await
            .map_err(|e| e.message().to_owned())?;
        let pong: String = ::redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("PING failed: {e}"))?;
        let write = if self.write_probe {
            self.write(&mut conn).await.map(|()| "write ok")
        } else {
            Ok("no write probe")
        };
        let info: String = ::redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("INFO memory failed: {e}"))?;
        let info = parse_info(&info);
        let number = |key: &str| info.get(key).and_then(|v| v.parse::<u64>().ok());
        let used = number("used_memory").unwrap_or(0);
        let maxmemory = number("maxmemory").unwrap_or(0);
        let wrote = match &write {
            Ok(w) => (*w).to_owned(),
            Err(e) => e.clone(),
        };
        // Over `maxmemory` Redis refuses writes (noeviction) or evicts on every write.
        let under_limit = maxmemory == 0 || used < maxmemory;
        let passed = write.is_ok() && under_limit;
        let (limit, of_what) = match (maxmemory, number("total_system_memory")) {
            (max, _) if max > 0 => (max, "maxmemory"),
            (_, Some(total)) if total > 0 => (total, "system memory (no maxmemory)"),
            _ => {
                return Ok(
                    Health::new(100, format!("{pong}; {wrote}; no memory limit known"))
                        .with_passed(passed),
                );
            }
        };
        Ok(Health::new(
            memory_score(used, limit),
            format!(
                "{pong}; {wrote}; memory {} of {} {of_what}{}",
                human_bytes(used),
                human_bytes(limit),
                if under_limit { "" } else { " (at the limit)" }
            ),
        )
        .with_passed(passed))
    }
}

/// `100 − used / limit × 100`, rounded and clamped to 0..=100.
pub(crate) fn memory_score(used: u64, limit: u64) -> u8 {
    if limit == 0 {
        return 100;
    }
    let share = used as f64 / limit as f64 * 100.0;
    // Clamped to 0..=100 first, so the cast is exact.
    (100.0 - share).round().clamp(0.0, 100.0) as u8
}

impl fmt::Debug for RedisVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisVerifier")
            .field(
                "address",
                &self.client.get_connection_info().addr().to_string(),
            )
            .field("timeout", &self.timeout)
            .field("write_probe", &self.write_probe)
            .finish()
    }
}

#[async_trait]
impl Verifier for RedisVerifier {
    fn name(&self) -> &str {
        "redis"
    }

    #[instrument(skip_all, fields(redis = %self.client.get_connection_info().addr()), err)]
    async fn check(&self) -> Result<Health> {
        let health = self.probe().await.unwrap_or_else(Health::down);
        debug!(passed = health.passed, score = health.score, detail = %health.detail, "redis check");
        Ok(health)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_score_follows_the_formula() {
        assert_eq!(memory_score(0, 100), 100);
        assert_eq!(memory_score(25, 100), 75);
        assert_eq!(memory_score(2 * 1024 * 1024, 2 * 1024 * 1024), 0);
        assert_eq!(memory_score(3, 2), 0, "over the limit clamps to 0");
        assert_eq!(memory_score(1, 3), 67);
        assert_eq!(memory_score(5, 0), 100);
    }

    #[tokio::test]
    async fn an_unreachable_server_scores_0_with_the_reason() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let health = RedisVerifier::new(&format!("redis://:secret@127.0.0.1:{port}"))
            .unwrap()
            .check()
            .await
            .unwrap();
        assert_eq!(health.score, 0);
        assert!(!health.passed);
        assert!(
            health.detail.contains("could not connect"),
            "{}",
            health.detail
        );
        assert!(!health.detail.contains("secret"), "{}", health.detail);
    }
}
