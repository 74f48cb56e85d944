//! Time limits on plug-in calls (`[limits]`): a strategy, advisor or notifier that
//! hangs must not hold its incident, its target lock or its fleet lease forever. A
//! call over its limit is abandoned and becomes a `Timeout` error naming the limit, so
//! the pipeline's ordinary error paths (skip the fix, fail it, escalate) take over.

use std::future::Future;
use std::time::Duration;

use crate::{Error, ErrorKind, Result};

/// Awaits `call` for at most `limit`; over it, a `Timeout` error that names `what`
/// and the config key `limits.<key>`.
pub(super) async fn limited<T>(
    limit: Duration,
    what: &str,
    key: &str,
    call: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => {
            tracing::error!(
                call = what,
                limit_secs = limit.as_secs_f64(),
                "plug-in call timed out"
            );
            Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "{what} timed out after {limit:?} (limits.{key}); it was abandoned: \
                     check the plug-in, or raise limits.{key}"
                ),
            ))
        }
    }
}
