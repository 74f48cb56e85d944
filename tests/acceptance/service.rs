//! The service under test, as a new user writes it from the README: an axum app that
//! keeps sessions and a cache in Redis (through a `RedisHandle`) and reads PostgreSQL
//! through an sqlx pool (5 connections, `max_lifetime` 20 s, shared as a
//! `PgPoolHandle`), logging its failures with `tracing`; and the healer it embeds with
//! the stock catalog and the default configuration.
//!
//! The test's own parts are only [`register`] (the README's wiring of the Redis and
//! Postgres strategies, verifiers and handles), the [`approver`] and the counting
//! [`Inbox`] notifier.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use selfheal::storage::SqliteStore;
use selfheal::strategies::{
    PgPoolHandle, PostgresIntegration, ProcessExecutor, RedisHandle, RedisIntegration,
};
use selfheal::{Healer, HealerBuilder, Notification, Notifier, Running};
use selfheal_testsupport::{PrivatePostgres, PrivateRedis};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::timeline::Timeline;

/// The service's target for Redis failures (the stock Redis patterns take `*redis*`).
pub const REDIS_TARGET: &str = "redis-cache";
/// The service's target for PostgreSQL failures (the stock patterns take `*postgres*`).
pub const PG_TARGET: &str = "postgres";
/// The service's own database role (not a superuser).
pub const APP_ROLE: &str = "app";

/// The private servers of one scenario.
pub struct Servers {
    pub redis: Arc<Mutex<PrivateRedis>>,
    pub redis_url: String,
    pub pg: PrivatePostgres,
}

impl Servers {
    /// A Redis with `maxmemory 2mb` + `noeviction` and a PostgreSQL with
    /// `max_connections=20`, with the service's role `app`. `None` (after saying so,
    /// or a panic under `CI=true`) when the machine has no `redis-server` or `initdb`.
    pub async fn start() -> Option<Servers> {
        let started = tokio::task::spawn_blocking(|| {
            let redis =
                PrivateRedis::start(&[("maxmemory", "2mb"), ("maxmemory-policy", "noeviction")])
                    .map_err(|e| ("redis-server", e))?;
            let pg = PrivatePostgres::start(&[("max_connections", "20")])
                .map_err(|e| ("initdb/pg_ctl", e))?;
            Ok::<_, (&str, std::io::Error)>((redis, pg))
        })
        .await
        .unwrap();
        let (redis, pg) = match started {
            Ok(servers) => servers,
            Err((what, e)) => {
                selfheal_testsupport::unavailable(what, e);
                return None;
            }
        };
        let admin = PgPool::connect(&pg.url())
            .await
            .expect("the private postgres");
        sqlx::query("CREATE ROLE app LOGIN")
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        Some(Servers {
            redis_url: redis.url(),
            redis: Arc::new(Mutex::new(redis)),
            pg,
        })
    }

    /// The service's connection options: role `app`, its own application name.
    pub fn app_connect(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.pg.url())
            .unwrap()
            .username(APP_ROLE)
            .application_name("orders")
    }
}

/// The service's state: its two clients.
#[derive(Debug)]
pub struct App {
    pub redis: Arc<RedisHandle>,
    pub pg: Arc<PgPoolHandle>,
}

/// One request: read and refresh the session, query the database, write the cache.
async fn item(State(app): State<Arc<App>>, Path(id): Path<u32>) -> StatusCode {
    match serve(&app, id).await {
        Ok(()) => StatusCode::OK,
        Err(()) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn redis_failed(what: &str, e: &(dyn std::error::Error + 'static)) {
    tracing::error!(component = REDIS_TARGET, error = e, "{what}");
}

async fn serve(app: &App, id: u32) -> Result<(), ()> {
    let mut conn = app
        .redis
        .connection()
        .await
        .map_err(|e| redis_failed("redis connection failed", &e))?;
    let session_key = format!("session:{}", id % 100);
    let session: Option<String> = redis::cmd("GET")
        .arg(&session_key)
        .query_async(&mut conn)
        .await
        .map_err(|e| redis_failed("session read failed", &e))?;
    let session = session.unwrap_or_else(|| format!("user-{}", id % 100));
    redis::cmd("SET")
        .arg(&session_key)
        .arg(&session)
        .arg("EX")
        .arg(600)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| redis_failed("session write failed", &e))?;
    let price: i64 = sqlx::query_scalar("SELECT $1::int8 * 3")
        .bind(i64::from(id))
        .fetch_one(&app.pg.pool())
        .await
        .map_err(|e| {
            tracing::error!(
                component = PG_TARGET,
                error = &e as &(dyn std::error::Error + 'static),
                "price query failed"
            );
        })?;
    redis::cmd("SET")
        .arg(format!("cache:item:{}", id % 200))
        .arg(format!("{price}:{}", "x".repeat(512)))
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| redis_failed("cache write failed", &e))?;
    Ok(())
}

/// Serves the app on a free loopback port; returns `http://127.0.0.1:<port>`.
pub async fn serve_http(app: Arc<App>) -> String {
    let router = Router::new().route("/item/{id}", get(item)).with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// Counts the notifications the healer sends: the user's channel (a page each).
#[derive(Debug, Clone, Default)]
pub struct Inbox(pub Arc<Mutex<Vec<Notification>>>);

impl Inbox {
    /// Their event types (`self_heal.suggested`, `self_heal.escalated`, …).
    pub fn event_types(&self) -> Vec<String> {
        let inbox = self.0.lock().unwrap();
        inbox.iter().map(|n| n.event_type.clone()).collect()
    }
}

#[async_trait::async_trait]
impl Notifier for Inbox {
    fn name(&self) -> &str {
        "inbox"
    }
    async fn notify(&self, notification: &Notification) -> selfheal::Result<()> {
        self.0.lock().unwrap().push(notification.clone());
        Ok(())
    }
}

/// The README's Redis and Postgres wiring: one call per integration registers the
/// stock strategies the catalog binds, their verifiers and the handles (and opens the
/// healer's own Postgres connection).
pub async fn register(
    builder: HealerBuilder,
    redis: &Arc<RedisHandle>,
    pg: &Arc<PgPoolHandle>,
) -> HealerBuilder {
    let postgres = PostgresIntegration::for_handle(PG_TARGET, pg.clone())
        .await
        .expect("the healer's own Postgres connection");
    builder
        .integrate(RedisIntegration::new(REDIS_TARGET, redis.clone()))
        .integrate(postgres)
}

/// The embedded service: its clients, its healer (running), its HTTP address.
pub struct Service {
    pub app: Arc<App>,
    pub healer: Healer,
    pub running: Running,
    pub inbox: Inbox,
    pub base: String,
    _store_dir: tempfile::TempDir,
}

impl Service {
    /// Builds the service and its healer on `servers` (stock catalog, default
    /// configuration, `SqliteStore` on a temp file) and starts both. The caller
    /// installs `healer.layer()` in its subscriber.
    pub async fn start(servers: &Servers) -> Service {
        let redis = Arc::new(RedisHandle::open(&servers.redis_url).unwrap());
        let pg = Arc::new(PgPoolHandle::new(
            PgPoolOptions::new()
                .max_connections(5)
                .max_lifetime(Duration::from_secs(20))
                .acquire_timeout(Duration::from_secs(3)),
            servers.app_connect(),
        ));
        let store_dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(store_dir.path().join("selfheal.db").to_str().unwrap())
            .await
            .expect("the sqlite store");
        let inbox = Inbox::default();
        let builder = Healer::builder()
            .store(store)
            .executor(ProcessExecutor::new())
            .notifier(inbox.clone());
        let healer = register(builder, &redis, &pg)
            .await
            .build()
            .expect("the healer builds");
        let running = healer.spawn();
        let app = Arc::new(App { redis, pg });
        let base = serve_http(app.clone()).await;
        Service {
            app,
            healer,
            running,
            inbox,
            base,
            _store_dir: store_dir,
        }
    }
}

/// Approves every approval the healer asks for, `after` the request (a human who reads
/// the page and clicks), marking each on the timeline. Returns the strategies approved
/// so far (shared with the task).
pub fn approver(
    healer: &Healer,
    timeline: &Arc<Timeline>,
    after: Duration,
) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let approved = Arc::new(Mutex::new(Vec::new()));
    let (healer, timeline, out) = (healer.clone(), timeline.clone(), approved.clone());
    let handled = AtomicUsize::new(0);
    let task = tokio::spawn(async move {
        loop {
            let n = handled.load(Ordering::SeqCst);
            // The (n+1)-th approval request on the stream.
            let seen = AtomicUsize::new(0);
            let asked = timeline
                .wait_for(Duration::from_secs(3600), |e| {
                    e.phase == selfheal::Phase::AwaitingApproval
                        && seen.fetch_add(1, Ordering::SeqCst) == n
                })
                .await;
            let Some((_, event)) = asked else { return };
            handled.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(after).await;
            let pending = healer.admin().pending_approvals().await.unwrap_or_default();
            for approval in pending
                .into_iter()
                .filter(|a| Some(a.incident) == event.incident)
            {
                let result = healer.admin().approve(approval.id, "approver").await;
                timeline.mark(format!(
                    "approver: approve `{}` ({}) → {}",
                    approval.plan.strategy,
                    approval.id,
                    match &result {
                        Ok(_) => "ok".to_owned(),
                        Err(e) => format!("refused: {e}"),
                    }
                ));
                if result.is_ok() {
                    out.lock().unwrap().push(approval.plan.strategy.clone());
                }
            }
        }
    });
    (approved, task)
}
