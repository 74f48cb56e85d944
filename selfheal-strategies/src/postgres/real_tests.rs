//! The Postgres strategies and verifier against private clusters (`initdb` + `pg_ctl`)
//! whose connection slots are taken for real.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use selfheal_core::{ErrorKind, Executor, Strategy, Verifier};
use selfheal_testsupport::{PrivatePostgres, unavailable};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, PgPool};

use super::*;
use crate::{DryRunExecutor, ProcessExecutor};

fn start() -> Option<PrivatePostgres> {
    PrivatePostgres::start(&[
        ("max_connections", "20"),
        ("superuser_reserved_connections", "0"),
    ])
    .map_err(|e| unavailable("initdb/pg_ctl", e))
    .ok()
}

fn options(pg: &PrivatePostgres, user: &str, application: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(&pg.url())
        .unwrap()
        .username(user)
        .application_name(application)
}

/// The healer's own pool: superuser `postgres`, application `selfheal`, opened up front.
async fn admin(pg: &PrivatePostgres) -> PgPool {
    let pool = PgPoolOptions::new()
        .min_connections(2)
        .max_connections(2)
        .connect_with(options(pg, "postgres", "selfheal"))
        .await
        .unwrap();
    sqlx::query("CREATE ROLE app LOGIN")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

async fn connect(pg: &PrivatePostgres, user: &str, application: &str) -> PgConnection {
    PgConnection::connect_with(&options(pg, user, application))
        .await
        .unwrap()
}

async fn alive(conn: &mut PgConnection) -> bool {
    sqlx::query("SELECT 1").execute(conn).await.is_ok()
}

/// The backend pids of every connection `pool` holds (it holds `n`).
async fn pool_pids(pool: &PgPool, n: usize) -> Vec<i32> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.acquire().await.unwrap());
    }
    let mut pids = Vec::new();
    for conn in &mut held {
        let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        pids.push(pid);
    }
    pids.sort();
    pids
}

fn real() -> Arc<dyn Executor> {
    Arc::new(ProcessExecutor::new())
}

#[tokio::test]
async fn idle_sessions_are_terminated_but_never_the_healers_or_a_superusers() {
    let Some(pg) = start() else { return };
    let pool = admin(&pg).await;
    let own_before = pool_pids(&pool, 2).await;
    let mut apps = Vec::new();
    for _ in 0..5 {
        apps.push(connect(&pg, "app", "orders").await);
    }
    let mut dba = connect(&pg, "postgres", "psql").await;

    let terminate = TerminateIdleConnections::new(pool.clone());
    let plan = terminate
        .plan(&test_ctx("postgres", json!({"idle_for": "0s"})))
        .await
        .unwrap();
    let preview = plan.preview();
    assert_eq!(
        preview.matches("user app application 'orders'").count(),
        5,
        "{preview}"
    );
    assert!(
        !preview.contains("psql") && !preview.contains("selfheal"),
        "{preview}"
    );

    // A dry run ends nothing.
    terminate
        .execute(&plan, Arc::new(DryRunExecutor::new()))
        .await
        .unwrap();
    assert!(alive(&mut apps[0]).await);

    let outcome = terminate.execute(&plan, real()).await.unwrap();
    assert!(outcome.success, "{outcome:?}");
    assert!(
        outcome.stdout.starts_with("terminated 5 of 5 planned"),
        "{}",
        outcome.stdout
    );
    for conn in &mut apps {
        assert!(!alive(conn).await, "an idle app session was terminated");
    }
    assert!(
        alive(&mut dba).await,
        "superusers are spared unless allowed"
    );
    assert_eq!(
        pool_pids(&pool, 2).await,
        own_before,
        "the healer's own sessions survive"
    );

    // Nothing left that qualifies: the plan says so and the healer moves on.
    let none = terminate
        .plan(&test_ctx("postgres", json!({"idle_for": "0s"})))
        .await
        .unwrap_err();
    assert_eq!(none.kind(), ErrorKind::Conflict);
    assert!(none.message().contains("superusers excluded"), "{none}");

    // Allowed superusers: the DBA's session goes too; the healer's still do not.
    let everyone = TerminateIdleConnections::new(pool.clone()).allow_superusers(true);
    let plan = everyone
        .plan(&test_ctx("postgres", json!({"idle_for": 0})))
        .await
        .unwrap();
    everyone.execute(&plan, real()).await.unwrap();
    assert!(!alive(&mut dba).await);
    assert_eq!(pool_pids(&pool, 2).await, own_before);
}

#[tokio::test]
async fn sessions_that_turned_active_or_are_younger_than_the_threshold_are_spared() {
    let Some(pg) = start() else { return };
    let pool = admin(&pg).await;
    let app = connect(&pg, "app", "orders").await;
    let terminate = TerminateIdleConnections::new(pool.clone());

    let young = terminate
        .plan(&test_ctx("postgres", json!({"idle_for": "1h"})))
        .await
        .unwrap_err();
    assert_eq!(young.kind(), ErrorKind::Conflict);

    let plan = terminate
        .plan(&test_ctx(
            "postgres",
            json!({"idle_for": "0s", "user": "app"}),
        ))
        .await
        .unwrap();
    // Between plan and execute the session ends and a new one (perhaps with the same
    // pid) arrives: the new one started after the plan, so it is not touched.
    app.close().await.unwrap();
    let mut newcomer = connect(&pg, "app", "orders").await;
    let outcome = terminate.execute(&plan, real()).await.unwrap();
    assert!(!outcome.success, "{outcome:?}");
    assert!(
        outcome.stdout.contains("(1 no longer idle or gone)"),
        "{}",
        outcome.stdout
    );
    assert!(alive(&mut newcomer).await);
}

#[tokio::test]
async fn the_probe_tells_a_full_server_and_a_down_one_from_a_saturated_pool() {
    let Some(mut pg) = start() else { return };
    let pool = admin(&pg).await;
    let verifier = PostgresVerifier::new(pool.clone()).connect_as(options(&pg, "app", "probe"));
    assert_eq!(
        verifier.diagnose().await.unwrap(),
        None,
        "a server that accepts"
    );

    let mut held = Vec::new();
    for _ in 0..18 {
        held.push(connect(&pg, "app", "orders").await);
    }
    assert_eq!(
        verifier.diagnose().await.unwrap().as_deref(),
        Some("postgres_too_many_clients")
    );
    // A slot that frees for a moment (a pooled connection reaching its max_lifetime) is
    // still a full server: the probe gets in with no slot left besides its own.
    drop(held.pop());
    let freed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'orders'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if n as usize == held.len() {
                break;
            }
            tokio::task::yield_now().await;
        }
    });
    freed.await.expect("the dropped session ended");
    assert_eq!(
        verifier.diagnose().await.unwrap().as_deref(),
        Some("postgres_too_many_clients"),
        "a full server with one slot free for a moment"
    );
    drop(held);
    pool.close().await;

    pg.stop().unwrap();
    assert_eq!(
        verifier.diagnose().await.unwrap().as_deref(),
        Some("postgres_unavailable")
    );
}

#[tokio::test]
async fn a_new_connection_is_the_verdict_and_slot_usage_only_the_score() {
    let Some(pg) = start() else { return };
    let pool = admin(&pg).await;
    let verifier = PostgresVerifier::new(pool.clone());
    let calm = verifier.check().await.unwrap();
    assert!(calm.passed && calm.score >= 80, "{calm:?}");
    assert!(
        calm.detail
            .starts_with("new connection accepted; `SELECT 1` ok; "),
        "{}",
        calm.detail
    );
    assert!(
        calm.detail.ends_with(" of 20 connections in use"),
        "{}",
        calm.detail
    );

    // A healthy steady state of 7 of 20 slots in use passes.
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect(&pg, "app", "orders").await);
    }
    let steady = verifier.check().await.unwrap();
    assert!(steady.passed, "{steady:?}");
    assert_eq!(steady.score, 65, "{steady:?}");
    assert!(
        steady.detail.ends_with("7 of 20 connections in use"),
        "{}",
        steady.detail
    );
    // As the service's role, or through the service's own pool.
    let as_app = PostgresVerifier::new(pool.clone()).connect_as(options(&pg, "app", "probe"));
    assert!(as_app.check().await.unwrap().passed);
    let app_pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy_with(options(&pg, "app", "orders"));
    let via_pool = PostgresVerifier::new(pool.clone()).service_pool(app_pool);
    let through = via_pool.check().await.unwrap();
    assert!(through.passed, "{through:?}");
    assert!(
        through.detail.starts_with("the service's pool acquired"),
        "{}",
        through.detail
    );
    // The service's pool holds its one connection now: 8 in use from here on.

    // Every slot taken: a new connection is refused, whatever the healer's pool holds.
    for _ in 0..12 {
        held.push(connect(&pg, "app", "orders").await);
    }
    let full = verifier.check().await.unwrap();
    assert!(!full.passed, "{full:?}");
    assert_eq!(full.score, 0, "{full:?}");
    assert!(
        full.detail.starts_with("a new connection was refused")
            && full.detail.contains("too many clients"),
        "{}",
        full.detail
    );
    assert!(!as_app.check().await.unwrap().passed);
    drop(held);

    let failing = PostgresVerifier::new(pool)
        .query("SELECT * FROM no_such_table")
        .check()
        .await
        .unwrap();
    assert!(!failing.passed);
    assert!(
        failing.detail.contains("no_such_table"),
        "{}",
        failing.detail
    );
}

#[tokio::test]
async fn a_wedged_pool_is_replaced_by_a_working_one() {
    let Some(pg) = start() else { return };
    let _admin = admin(&pg).await;
    let handle = Arc::new(PgPoolHandle::new(
        PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_millis(300)),
        options(&pg, "app", "orders"),
    ));
    // A stuck task holds every connection of the pool and never gives them back.
    let old = handle.pool();
    let leaked = vec![old.acquire().await.unwrap(), old.acquire().await.unwrap()];
    let err = sqlx::query("SELECT 1")
        .execute(&handle.pool())
        .await
        .unwrap_err();
    assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err}");
    assert_eq!(pg_error("query failed", err).kind(), ErrorKind::Unavailable);

    let reset = ResetPgPool::new(handle.clone());
    let plan = reset
        .plan(&test_ctx("postgres", json!(null)))
        .await
        .unwrap();
    assert!(
        plan.preview().contains("(generation 1 → 2)"),
        "{}",
        plan.preview()
    );
    let outcome = reset.execute(&plan, real()).await.unwrap();
    assert_eq!(outcome.stdout, "pool reset: generation 2");
    sqlx::query("SELECT 1")
        .execute(&handle.pool())
        .await
        .expect("the new pool answers");
    assert!(old.is_closed(), "the old pool is closed");
    drop(leaked);
}

/// The acceptance scenario: a service pool of 5 (role `app`), `max_connections = 20`
/// with the default 3 reserved for superusers, and idle sessions of `app` filling every
/// other slot. Through the integration's own connection, the healer skips the pool reset
/// (it cannot work with no free slot) and ends just enough of the oldest idle sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_filled_by_the_services_role_are_freed_through_the_integration() {
    use selfheal_core::{
        FixBinding, Healer, MemoryStore, Pattern, PatternMode, PatternStore, Phase, Signal,
    };

    let Some(pg) = PrivatePostgres::start(&[("max_connections", "20")])
        .map_err(|e| unavailable("initdb/pg_ctl", e))
        .ok()
    else {
        return;
    };
    let mut setup = connect(&pg, "postgres", "setup").await;
    sqlx::query("CREATE ROLE app LOGIN")
        .execute(&mut setup)
        .await
        .unwrap();
    setup.close().await.unwrap();

    let service = Arc::new(PgPoolHandle::new(
        PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_millis(500)),
        options(&pg, "app", "orders"),
    ));
    let integration = PostgresIntegration::for_handle("postgres", service.clone())
        .await
        .unwrap();
    let own = integration.own_pool().clone();
    let (own_pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
        .fetch_one(&own)
        .await
        .unwrap();

    // Idle sessions of the service's role take every slot an ordinary role may use.
    let mut idle = Vec::new();
    let refused = loop {
        match PgConnection::connect_with(&options(&pg, "app", "batch")).await {
            Ok(conn) => idle.push(conn),
            Err(e) => break e,
        }
        assert!(idle.len() <= 20, "max_connections = 20 did not hold");
    };
    assert_eq!(
        idle.len(),
        16,
        "17 slots for ordinary roles, one is the healer's"
    );
    assert!(refused.to_string().contains("reserved"), "{refused}");
    assert!(
        sqlx::query("SELECT 1")
            .execute(&service.pool())
            .await
            .is_err()
    );

    let store = Arc::new(MemoryStore::new());
    store
        .add_pattern(
            &Pattern::new("slots")
                .regex("remaining connection slots are reserved")
                .mode(PatternMode::Active)
                .auto_healable(true)
                .confidence(0.95)
                .threshold(1, Duration::from_secs(60))
                .fix(FixBinding::new(ResetPgPool::NAME).priority(0))
                .fix(FixBinding::new(TerminateIdleConnections::NAME).priority(1)),
        )
        .await
        .unwrap();
    let healer = Healer::builder()
        .store_arc(store)
        .integrate(integration)
        .executor(ProcessExecutor::new())
        .build()
        .unwrap();
    let mut events = healer.subscribe();
    let running = healer.spawn();
    healer.observe(Signal::new("postgres", refused.to_string()));
    let (mut skipped, mut output) = (Vec::new(), None);
    tokio::time::timeout(Duration::from_secs(30), async {
        while output.is_none() {
            let event = events.recv().await.unwrap();
            match event.phase {
                Phase::Skipped => skipped.push(event.detail),
                Phase::Output => output = Some(event.detail),
                Phase::Escalated | Phase::Failed => panic!("{}", event.detail),
                _ => {}
            }
        }
    })
    .await
    .expect("the fix ran within 30 s");
    running.shutdown().await;

    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].contains("`postgres_reset_pool` cannot work in the current state")
            && skipped[0].contains("no free connection slot"),
        "{}",
        skipped[0]
    );
    let actions = healer.admin().actions(None).await.unwrap();
    let outcome = actions[0].outcome.clone().unwrap();
    // The pool's 5 plus a margin of 2, however young the sessions: no more.
    assert!(
        outcome.stdout.starts_with("terminated 7 of 7 planned"),
        "{}",
        outcome.stdout
    );
    let mut still_alive = Vec::new();
    for conn in &mut idle {
        still_alive.push(alive(conn).await);
    }
    let expected: Vec<bool> = (0..16).map(|i| i >= 7).collect();
    assert_eq!(still_alive, expected, "the 7 idle longest went, no more");
    let (still,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
        .fetch_one(&own)
        .await
        .unwrap();
    assert_eq!(still, own_pid, "the healer's own session survives");
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(
            service
                .pool()
                .acquire()
                .await
                .expect("the service pool fills"),
        );
    }
}
