//! Real faults on the private servers, injected on a timed schedule and marked on the
//! timeline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfheal::strategies::PostgresIntegration;
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
/// the healer starts a fix. The sessions stay open, idle, until dropped; the fault
/// does not take back what a fix freed.
///
/// Once the server refuses, the service's pool still holds its few slots and serves
/// on them until it has to reconnect. Waiting for its `max_lifetime` would race the
/// pool for each freed slot (the pool reconnects within one request, the fault polls),
/// so the fault ends the pool's idle sessions itself from one of its own, as a
/// recycle or a dropped link would (a role may end its own sessions), and grabs the
/// freed slots at once, retrying every 5 ms for 500 ms. Where the pool got a slot back
/// first, the next round ends it again. Active sessions are never ended, so no request
/// of the service fails on a killed connection.
pub async fn fill_pg_slots(
    connect: PgConnectOptions,
    want: usize,
    grab_for: Duration,
    timeline: &Timeline,
) -> HeldSessions {
    timeline.mark(format!(
        "fault: opening up to {want} idle sessions of the service's role (max_connections=20)"
    ));
    let connect = connect.application_name(HOLDER);
    let deadline = tokio::time::Instant::now() + grab_for;
    let mut sessions: Vec<PgConnection> = Vec::new();
    let mut first_refusal = None;
    let mut ended_total = 0;
    let mut grabbing_until = None;
    let fixing = |e: &selfheal::HealingEvent| e.phase == selfheal::Phase::Executing;
    while sessions.len() < want && tokio::time::Instant::now() < deadline && !timeline.seen(fixing)
    {
        let refusal = match connect.connect().await {
            Ok(conn) => {
                sessions.push(conn);
                continue;
            }
            Err(e) => e,
        };
        if first_refusal.is_none() {
            timeline.mark(format!(
                "fault: holding {} sessions; next refused: {refusal}",
                sessions.len()
            ));
            first_refusal = Some(refusal.to_string());
        }
        let now = tokio::time::Instant::now();
        if grabbing_until.is_some_and(|until| now < until) {
            // Slots were just freed: take them before the pool's next request does.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let ended = match sessions.first_mut() {
            Some(own) => end_idle_pool_sessions(own).await,
            None => 0,
        };
        if ended > 0 {
            ended_total += ended;
            grabbing_until = Some(now + Duration::from_millis(500));
            timeline.mark(format!(
                "fault: ended {ended} idle session(s) of the service's pool; grabbing their slots"
            ));
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    timeline.mark(format!(
        "fault: holding {} idle sessions of the service's role ({ended_total} pool session(s) ended)",
        sessions.len()
    ));
    HeldSessions { sessions }
}

/// The `application_name` of the fault's sessions.
const HOLDER: &str = "idle-holder";

/// Ends, from `own`, the idle sessions of its role that are neither the fault's nor the
/// healer's (`selfheal`); returns how many were signalled. It does not wait for them to
/// go (`pg_terminate_backend`'s timeout polls every 100 ms, and the pool's next request
/// comes sooner). An error (the session itself was ended, by a fix) counts as none.
async fn end_idle_pool_sessions(own: &mut PgConnection) -> usize {
    // The target list is evaluated only for rows the WHERE clause kept.
    let ended: Option<i64> = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE ended) FROM ( \
           SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity \
           WHERE usename = current_user AND pid <> pg_backend_pid() AND state = 'idle' \
             AND application_name NOT IN ($1, $2)) AS signalled",
    )
    .bind(HOLDER)
    .bind(PostgresIntegration::APPLICATION_NAME)
    .fetch_one(own)
    .await
    .ok();
    ended.map_or(0, |n| usize::try_from(n).unwrap_or(0))
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
