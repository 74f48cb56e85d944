//! The stock patterns, as data. Every regex was checked against the text the real
//! software prints (`selfheal-core/tests/catalog/vectors.json`, re-captured live by the
//! facade test `tests/catalog_capture.rs`).
//!
//! Stock patterns match by regex (and target) only, no keywords: BM25 keyword scoring
//! took near-misses (an `INFO memory` line for `redis_oom`, a statement cancelled by
//! the user for `postgres_statement_timeout`), so it is left to your own patterns.
//!
//! Stock patterns ship in safe modes: none is auto-healable, patterns with a fix are
//! `Active` (so a match suggests the fix and waits for approval) and destructive fixes
//! require approval even after an operator marks the pattern auto-healable; patterns
//! without a safe fix are alert-only. Only an operator promotes a pattern.

use std::time::Duration;

use super::strategy as s;
use crate::{FixBinding, Pattern, PatternMode, Severity};

/// Targets (or `db.system` / `peer.service` fields) that name a Redis.
pub const REDIS_TARGETS: &str = "*redis*";
/// Targets (or `db.system` / `peer.service` fields) that name a Postgres.
pub const POSTGRES_TARGETS: &str = "*postgres*|*pg*";
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
            .description("Redis is not accepting connections (down, restarting or unreachable)")
            .regex(r"connection refused|os error 111|ECONNREFUSED|actively refused")
            .target(REDIS_TARGETS)
            .severity(Severity::Critical)
            .root_cause("the Redis server is down, restarting, or not listening on that address")
            .mode(PatternMode::Active)
            .confidence(0.6)
            .threshold(3, secs(60))
            .fix(FixBinding::new(s::REDIS_RECONNECT).priority(0))
            .fix(approval(s::REDIS_RESTART, 1)),
        Pattern::new("postgres_connection_pool_exhausted")
            .description("The Postgres connection pool has no free connection")
            .regex(r"pool timed out while waiting for an open connection")
            .target(POSTGRES_TARGETS)
            .severity(Severity::High)
            .root_cause("connections held and never returned (a leak, long transactions), or Postgres itself is down: sqlx prints the same text in both cases")
            .mode(PatternMode::Active)
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
        Pattern::new("redis_oom")
            .description("Redis refuses writes (OOM): the dataset is over its memory limit")
            .regex(r#"OOM"?:? command not allowed when used memory > 'maxmemory'"#)
            .severity(Severity::Critical)
            .root_cause("the dataset outgrew maxmemory and the eviction policy is noeviction")
            .mode(PatternMode::Active)
            .confidence(0.8)
            .threshold(3, secs(60))
            .fix(FixBinding::new(s::REDIS_EVICT_KEYS).priority(0))
            .fix(FixBinding::new(s::REDIS_RAISE_MAXMEMORY).priority(1))
            .fix(approval(s::REDIS_FLUSHDB, 2)),
        Pattern::new("postgres_too_many_clients")
            .description("Postgres refuses new connections: every connection slot is taken")
            .regex(r"sorry, too many clients already|remaining connection slots are reserved|too many connections for (role|database)")
            .severity(Severity::Critical)
            .root_cause("idle or leaked connections hold every slot up to max_connections")
            .mode(PatternMode::Active)
            .confidence(0.8)
            .threshold(3, secs(60))
            .fix(approval(s::POSTGRES_TERMINATE_IDLE, 0)),
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
