//! The stock patterns, as data. Every regex was checked against the text the real
//! software prints (`selfheal-core/tests/catalog/vectors.json`, re-captured live by the
//! facade test `tests/catalog_capture.rs`).
//!
//! Stock patterns match by regex (and target) only, no keywords: BM25 keyword scoring
//! took near-misses (an `INFO memory` line for `redis_oom`, a statement cancelled by
//! the user for `postgres_statement_timeout`), so it is left to your own patterns.
//!
//! Stock patterns ship in safe modes: patterns with a fix are `Active` (so a match
//! suggests the fix and waits for approval) and destructive fixes require approval even
//! after an operator marks the pattern auto-healable; patterns without a safe fix are
//! alert-only. Only an operator promotes a pattern, with one exception: a Redis
//! connection lost to a restart ([`AUTO_HEALABLE`]) is fixed by reconnecting the
//! client, which is harmless, so it runs with no human involved.

use std::time::Duration;

use super::strategy as s;
use crate::{FixBinding, Pattern, PatternMode, Severity};

/// Targets (or `db.system` / `peer.service` fields) that name a Redis.
pub const REDIS_TARGETS: &str = "*redis*";
/// Targets (or `db.system` / `peer.service` fields) that name a Postgres
/// (OpenTelemetry's `db.system` says `postgresql`).
pub const POSTGRES_TARGETS: &str = "*postgres*|*postgresql*|*pg*";
/// The stock patterns that ship auto-healable: their only fix that runs without approval
/// reconnects the Redis client, which cannot make anything worse.
pub const AUTO_HEALABLE: [&str; 2] = ["redis_connection_lost", "redis_connection_refused"];

/// What a lost or refused connection prints: the OS's and redis-rs's wordings, with the
/// `Debug` forms of `std::io::Error` (`kind: BrokenPipe`) too.
const CONNECTION_LOST: &str = r"broken ?pipe|connection ?reset|connection ?refused|os error (?:32|104|111)\b|ECONNREFUSED|ECONNRESET|\bEPIPE\b|actively refused|connection (?:was )?(?:closed|dropped|aborted)|unexpected ?EOF";
/// Targets that name an LLM provider.
pub const LLM_TARGETS: &str = "*llm*|*openai*|*anthropic*|*ollama*|*gpt*|*claude*|*gemini*";
/// Targets that name a streaming (server-sent events) connection.
pub const STREAM_TARGETS: &str = "*sse*|*stream*";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn approval(strategy: &str, priority: i32) -> FixBinding {
    FixBinding::new(strategy)
        .priority(priority)
        .requires_approval(true)
}

/// The stock catalog: every pattern, in a stable order.
pub fn stock() -> Vec<Pattern> {
    vec![
        // --- the seeds' six -------------------------------------------------------
        Pattern::new("redis_connection_refused")
            .description("A message that names Redis says its connection was refused or lost (broken pipe, reset), on any target")
            .regex(format!(r"\bredis\b[^\n]{{0,200}}?(?:{CONNECTION_LOST})|(?:{CONNECTION_LOST})[^\n]{{0,200}}?\bredis\b"))
            .severity(Severity::Critical)
            .root_cause("the Redis server restarted, is down, or is not listening on that address; the client must reconnect once it is back")
            .mode(PatternMode::Active)
            .auto_healable(true)
            .confidence(0.75)
            .threshold(3, secs(60))
            .fix(FixBinding::new(s::REDIS_RECONNECT).priority(0))
            .fix(approval(s::REDIS_RESTART, 1)),
        Pattern::new("postgres_connection_pool_exhausted")
            .description("The Postgres connection pool has no free connection")
            .regex(r"pool timed out while waiting for an open connection")
            .target(POSTGRES_TARGETS)
            .severity(Severity::High)
            .root_cause("connections held and never returned (a leak, long transactions); sqlx prints the same text when Postgres is down or out of slots, so the target's probe decides (postgres_unavailable, postgres_too_many_clients)")
            .mode(PatternMode::Active)
            .ambiguous(true)
            .confidence(0.6)
            .threshold(3, secs(60))
            .fix(approval(s::POSTGRES_TERMINATE_IDLE, 0))
            .fix(approval(s::POSTGRES_RESET_POOL, 1)),
        Pattern::new("llm_rate_limit_exceeded")
            .description("An LLM provider answers 429: rate or token limit reached")
            .regex(r"\b429\b|rate.?limit|too many requests")
            .target(LLM_TARGETS)
            .severity(Severity::High)
            .root_cause("requests or tokens per minute over the provider's quota")
            .mode(PatternMode::Active)
            .confidence(0.7)
            .threshold(3, secs(60))
            .fix(FixBinding::new(s::CIRCUIT_BREAK)),
        Pattern::new("sse_stream_timeout")
            .description("A streaming (SSE) connection hung: no data within the read timeout")
            .regex(r"timed out|timeout|deadline has elapsed")
            .target(STREAM_TARGETS)
            .severity(Severity::High)
            .root_cause("the upstream stopped sending events without closing the stream")
            .mode(PatternMode::Active)
            .confidence(0.6)
            .threshold(3, secs(60))
            .fix(FixBinding::new(s::CIRCUIT_BREAK)),
        Pattern::new("memory_threshold_exceeded")
            .description("The process or container uses more memory than its threshold")
            .regex(r"memory[^\n]{0,40}\b(exceed\w*|above|over)\b[^\n]{0,20}threshold|memory\.current|memory allocation of \d+ bytes failed|out of memory")
            .severity(Severity::High)
            .root_cause("a leak or an unbounded cache; the cgroup limit is close")
            .mode(PatternMode::Active)
            .confidence(0.6)
            .threshold(2, secs(120))
            .fix(approval(s::RESTART_PROCESS, 0)),
        Pattern::new("session_runaway")
            .description("A session runs over its time or cost limit")
            .regex(r"session[^\n]{0,80}\b(exceed\w*|over|runaway|beyond)\b[^\n]{0,40}\b(limit|budget|cost|time|duration)")
            .severity(Severity::Medium)
            .root_cause("a loop in an agent or a client that never ends its session")
            .mode(PatternMode::Active)
            .confidence(0.6)
            .threshold(1, secs(60))
            .fix(approval(s::KILL_RUNAWAY_SESSIONS, 0)),
        // --- Redis and Postgres ---------------------------------------------------
        Pattern::new("redis_connection_lost")
            .description("The connection to Redis was lost or refused (restart, crash, network): broken pipe, reset, refused")
            .regex(CONNECTION_LOST)
            .target(REDIS_TARGETS)
            .severity(Severity::Critical)
            .root_cause("the Redis server restarted or is down; redis-rs prints `broken pipe` on a connection it held and `Connection refused` while the server is away")
            .mode(PatternMode::Active)
            .auto_healable(true)
            .confidence(0.8)
            .threshold(3, secs(60))
            .fix(FixBinding::new(s::REDIS_RECONNECT).priority(0))
            .fix(approval(s::REDIS_RESTART, 1)),
        Pattern::new("redis_readonly")
            .description("Redis refuses a write: the client talks to a read-only replica")
            .regex(r"(?:READONLY|ReadOnly:) You can't write against a read only (?:replica|slave)")
            .severity(Severity::High)
            .root_cause("a failover demoted the node the client is connected to, or the address points at a replica")
            .mode(PatternMode::Active)
            .confidence(0.8)
            .threshold(3, secs(60))
            .fix(FixBinding::new(s::REDIS_RECONNECT).priority(0)),
        Pattern::new("redis_loading")
            .description("Redis is loading its dataset after a restart and refuses commands until done")
            .regex(r"(?:LOADING|BusyLoading:) Redis is loading the dataset in memory")
            .severity(Severity::Medium)
            .root_cause("the server restarted and is reading its RDB or AOF file; it answers once loaded")
            .mode(PatternMode::AlertOnly)
            .confidence(0.8)
            .threshold(5, secs(60))
            .fix(FixBinding::new(s::ALERT_ONLY)),
        Pattern::new("redis_masterdown")
            .description("A Redis replica refuses commands: its link with the master is down and it may not serve stale data")
            .regex(r"\bMASTERDOWN\b|MasterDown: Link with MASTER is down")
            .severity(Severity::Critical)
            .root_cause("the master is down or unreachable from the replica, and replica-serve-stale-data is no")
            .mode(PatternMode::AlertOnly)
            .confidence(0.8)
            .threshold(3, secs(60))
            .fix(FixBinding::new(s::ALERT_ONLY)),
        Pattern::new("redis_auth_failed")
            .description("Redis refuses the client: no password given (NOAUTH) or a wrong one (WRONGPASS)")
            .regex(r#"NOAUTH"?:? Authentication required|\bWRONGPASS\b|invalid username-password pair|Password authentication failed - AuthenticationFailed"#)
            .severity(Severity::High)
            .root_cause("the server's password or ACL changed, or the client's secret is wrong or missing")
            .mode(PatternMode::AlertOnly)
            .confidence(0.8)
            .threshold(3, secs(60))
            .fix(FixBinding::new(s::ALERT_ONLY)),
        Pattern::new("redis_oom")
            .description("Redis refuses writes (OOM): the dataset is over its memory limit")
            .regex(r#"OOM"?:? command not allowed when used memory > 'maxmemory'"#)
            .severity(Severity::Critical)
            .root_cause("the dataset outgrew maxmemory and the eviction policy is noeviction")
            .mode(PatternMode::Active)
            .confidence(0.8)
            .threshold(3, secs(60))
            // No evict-keys fix: it needs a key pattern only the service knows. No
            // FLUSHDB: it deletes sessions with the cache. Bind them yourself.
            .fix(FixBinding::new(s::REDIS_RAISE_MAXMEMORY).priority(0))
            .fix(approval(s::REDIS_EVICTION_POLICY, 1).params(serde_json::json!({"policy": "volatile-lru"}))),
        Pattern::new("postgres_too_many_clients")
            .description("Postgres refuses new connections: every connection slot is taken")
            .regex(r"sorry, too many clients already|remaining connection slots are reserved|too many connections for (role|database)")
            .severity(Severity::Critical)
            .root_cause("idle or leaked connections hold every slot up to max_connections")
            .mode(PatternMode::Active)
            .confidence(0.8)
            .threshold(3, secs(60))
            .fix(approval(s::POSTGRES_TERMINATE_IDLE, 0)),
        Pattern::new("postgres_unavailable")
            .description("Postgres is unreachable: refused, starting up, shutting down, or the connection closed under the client")
            .regex(r#"the database system is (?:starting up|shutting down|in recovery mode|not yet accepting connections)|server closed the connection unexpectedly|terminating connection due to (?:administrator command|crash of another server process|unexpected postmaster exit)|connection to server (?:at|on socket) [^\n]{0,200}failed|could not connect to server|error connecting to server|error communicating with database: [^\n]{0,200}?(?:connection refused|connection reset|broken pipe|os error (?:32|104|111)\b|bytes at EOF)|code: "57P0[1-3]""#)
            .severity(Severity::Critical)
            .root_cause("the server is down, restarting or shutting down (a deploy, a crash, a failover); sqlx prints `error communicating with database` for MySQL too")
            .mode(PatternMode::AlertOnly)
            .confidence(0.8)
            .threshold(3, secs(60))
            .fix(FixBinding::new(s::ALERT_ONLY)),
        Pattern::new("postgres_statement_timeout")
            .description("Postgres cancelled a statement that ran longer than statement_timeout")
            .regex(r"canceling statement due to statement timeout")
            .severity(Severity::Medium)
            .root_cause("a slow query (missing index, lock wait, bloated table) or a too-low statement_timeout")
            .mode(PatternMode::AlertOnly)
            .confidence(0.8)
            .threshold(5, secs(300))
            .fix(FixBinding::new(s::ALERT_ONLY)),
        Pattern::new("postgres_deadlock")
            .description("Postgres aborted a transaction to break a deadlock")
            .regex(r"deadlock detected")
            .severity(Severity::Medium)
            .root_cause("two transactions lock the same rows in opposite orders")
            .mode(PatternMode::AlertOnly)
            .confidence(0.8)
            .threshold(3, secs(300))
            .fix(FixBinding::new(s::ALERT_ONLY)),
        // --- HTTP upstreams -------------------------------------------------------
        Pattern::new("upstream_http_5xx")
            .description("An upstream HTTP service answers 5xx")
            .regex(r"HTTP status server error \(5\d\d|\bHTTP 5\d\d\b|\bstatus(?: code)?[ =:]+5\d\d\b|\b5\d\d (Internal Server Error|Bad Gateway|Service Unavailable|Gateway Timeout)\b")
            .severity(Severity::High)
            .root_cause("the upstream is failing or overloaded")
            .mode(PatternMode::Active)
            .confidence(0.6)
            .threshold(5, secs(60))
            .fix(FixBinding::new(s::CIRCUIT_BREAK)),
        Pattern::new("upstream_http_429")
            .description("An upstream HTTP service answers 429 Too Many Requests")
            .regex(r"HTTP status client error \(429|\b429 Too Many Requests\b|\bstatus(?: code)?[ =:]+429\b")
            .severity(Severity::Medium)
            .root_cause("we call the upstream faster than its rate limit allows")
            .mode(PatternMode::Active)
            .confidence(0.6)
            .threshold(5, secs(60))
            .fix(FixBinding::new(s::CIRCUIT_BREAK)),
        // --- generic network and OS failures --------------------------------------
        Pattern::new("connection_refused")
            .description("A connection was refused: nothing listens on that address (the text does not say which server)")
            .regex(r"connection refused|os error 111|ECONNREFUSED|actively refused")
            .severity(Severity::Medium)
            .root_cause("the server is down or listens elsewhere; name the target to get the server-specific pattern")
            .mode(PatternMode::AlertOnly)
            .confidence(0.5)
            .threshold(3, secs(60))
            .fix(FixBinding::new(s::ALERT_ONLY)),
        Pattern::new("dns_resolution_failed")
            .description("A host name could not be resolved")
            .regex(r"failed to lookup address information|Name or service not known|Temporary failure in name resolution|nodename nor servname provided|No such host is known|\bdns error\b")
            .severity(Severity::High)
            .root_cause("a wrong host name, or the resolver is unreachable")
            .mode(PatternMode::AlertOnly)
            .confidence(0.7)
            .threshold(3, secs(60))
            .fix(FixBinding::new(s::ALERT_ONLY)),
        Pattern::new("tls_certificate_expired")
            .description("A TLS peer presented an expired certificate")
            .regex(r"certificate (has )?expired|certificate is not valid after|\bCertExpired\b|invalid peer certificate: Expired")
            .severity(Severity::High)
            .root_cause("the peer's certificate was not renewed")
            .mode(PatternMode::AlertOnly)
            .confidence(0.8)
            .threshold(1, secs(60))
            .fix(FixBinding::new(s::ALERT_ONLY)),
        Pattern::new("disk_full")
            .description("A write failed: no space left on the device")
            .regex(r"No space left on device|os error 28\b|\bENOSPC\b|Disk quota exceeded")
            .severity(Severity::Critical)
            .root_cause("logs, temp files or data filled the filesystem")
            .mode(PatternMode::AlertOnly)
            .confidence(0.8)
            .threshold(1, secs(60))
            .fix(FixBinding::new(s::ALERT_ONLY)),
        Pattern::new("too_many_open_files")
            .description("The process hit its open-file limit (RLIMIT_NOFILE)")
            .regex(r"Too many open files|os error 24\b|\bEMFILE\b")
            .severity(Severity::High)
            .root_cause("a descriptor leak, or a limit too low for the load")
            .mode(PatternMode::Active)
            .confidence(0.7)
            .threshold(3, secs(60))
            .fix(approval(s::RESTART_PROCESS, 0)),
        Pattern::new("pool_timeout")
            .description("A connection pool timed out waiting for a free connection (any pool)")
            .regex(r"pool timed out|timed out waiting for (an open|a free|a) connection|connection pool (is )?exhausted")
            .severity(Severity::Medium)
            .root_cause("the pool is too small for the load, or connections leak")
            .mode(PatternMode::AlertOnly)
            .confidence(0.5)
            .threshold(3, secs(60))
            .fix(FixBinding::new(s::ALERT_ONLY)),
        Pattern::new("request_timeout")
            .description("A request or an awaited operation timed out")
            .regex(r"operation timed out|deadline has elapsed|request timed out|connection timed out|os error 110\b|context deadline exceeded")
            .severity(Severity::Medium)
            .root_cause("the peer is slow or unreachable, or the timeout is too tight")
            .mode(PatternMode::AlertOnly)
            .confidence(0.5)
            .threshold(5, secs(60))
            .fix(FixBinding::new(s::ALERT_ONLY)),
    ]
}
