//! Where a test finds its server: the URL in the environment, a free port, and what to
//! do without one (skip plainly, or fail under `CI=true`).

use std::fmt::Display;
use std::io;
use std::net::TcpListener;

/// The URL in environment variable `var` (`DATABASE_URL`, `REDIS_URL`), if set.
///
/// Without it, a test should skip; this returns `None` after saying so on stderr, and
/// panics instead when `CI=true`, where a missing server is a failure.
pub fn env_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            unavailable(var, format_args!("{var} is not set"));
            None
        }
    }
}

/// Reports that a test's server is unavailable: a plain "skipped" line on stderr, or a
/// panic when `CI=true`, where every server the tests need must be there.
pub fn unavailable(what: &str, why: impl Display) {
    if in_ci() {
        panic!("{what} is required under CI=true but unavailable: {why}");
    }
    #[allow(clippy::print_stderr)]
    {
        eprintln!("skipped: {what} unavailable ({why}); set it up to run this test");
    }
}

/// Whether `CI=true` (or `CI=1`) is set.
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// A free TCP port on 127.0.0.1 (bound, read and released).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
