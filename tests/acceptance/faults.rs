//! Real faults on the private servers, injected on a timed schedule and marked on the
//! timeline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfheal_testsupport::PrivateRedis;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use crate::timeline::Timeline;

/// Fills Redis with 8 KiB values on a connection of the test's own until Redis
/// refuses a write (OOM under `noeviction`); returns how many keys fit.
pub async fn fill_redis(url: &str, timeline: &Timeline) -> usize {
    timeline.mark("fault: filling Redis to maxmemory (2mb, noeviction)");
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let value = vec![b'f'; 8 * 1024];
    for i in 0..10_000 {
        let set: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("fill:{i}"))
            .arg(&value)
            .query_async(&mut conn)
            .await;
        if let Err(e) = set {
            timeline.mark(format!("fault: Redis full after {i} keys: {e}"));
            return i;
        }
    }
    panic!("10 000 values of 8 KiB fit in a 2 MB Redis");
}

/// `SHUTDOWN NOSAVE` now, and the same server started again `down_for` later; returns
/// when it is back, with the time it answered again (scenario clock).
pub async fn restart_redis(
    redis: Arc<Mutex<PrivateRedis>>,
    down_for: Duration,
    timeline: &Timeline,
) -> Duration {
    timeline.mark("fault: Redis SHUTDOWN NOSAVE");
    let down = redis.clone();
    tokio::task::spawn_blocking(move || down.lock().unwrap().shutdown_nosave())
        .await
        .unwrap()
        .expect("redis shuts down");
    timeline.mark("fault: Redis is down");
    tokio::time::sleep(down_for).await;
    timeline.mark(format!("fault: starting Redis again after {down_for:?}"));
    tokio::task::spawn_blocking(move || redis.lock().unwrap().start_again())
        .await
        .unwrap()
        .expect("redis starts again");
    timeline.mark("fault: Redis is back (answers PING)")
}

/// Idle sessions of `connect`'s role held open by the fault.
pub struct HeldSessions {
    pub sessions: Vec<PgConnection>,
}

/// Opens idle sessions with `connect` until `want` are held, `grab_for` has passed or
/// the healer starts a fix, retrying refused connections every 50 ms (the service's
/// pool gives its slots up as its connections reach `max_lifetime`). The sessions stay
/// open, idle, until dropped; the fault does not take back what a fix freed.
pub async fn fill_pg_slots(
    connect: PgConnectOptions,
    want: usize,
    grab_for: Duration,
    timeline: &Timeline,
) -> HeldSessions {
    timeline.mark(format!(
        "fault: opening up to {want} idle sessions of the service's role (max_connections=20)"
    ));
    let connect = connect.application_name("idle-holder");
    let deadline = tokio::time::Instant::now() + grab_for;
    let mut sessions = Vec::new();
    let mut first_refusal = None;
    let fixing = |e: &selfheal::HealingEvent| e.phase == selfheal::Phase::Executing;
    while sessions.len() < want && tokio::time::Instant::now() < deadline && !timeline.seen(fixing)
    {
        match connect.connect().await {
            Ok(conn) => sessions.push(conn),
            Err(e) => {
                if first_refusal.is_none() {
                    timeline.mark(format!(
                        "fault: holding {} sessions; next refused: {e}",
                        sessions.len()
                    ));
                    first_refusal = Some(e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    timeline.mark(format!(
        "fault: holding {} idle sessions of the service's role",
        sessions.len()
    ));
    HeldSessions { sessions }
}

impl HeldSessions {
    /// How many of the held sessions still answer (the others were terminated).
    pub async fn alive(&mut self) -> usize {
        let mut alive = 0;
        for conn in &mut self.sessions {
            if tokio::time::timeout(Duration::from_secs(1), conn.ping())
                .await
                .is_ok_and(|r| r.is_ok())
            {
                alive += 1;
            }
        }
        alive
    }
}
