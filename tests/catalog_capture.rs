//! Captures, live, the error texts the stock catalog's patterns are written for: real
//! Redis and Postgres servers, the `redis` and sqlx clients, reqwest against local
//! HTTP servers, closed ports and unresolvable names, and `std::io` errors from the
//! kernel (`/dev/full`, a lowered `RLIMIT_NOFILE`).
//!
//! Each test asserts that the live text is still matched by its stock pattern, and
//! that its template is still the one checked in as a vector in
//! `selfheal-core/tests/catalog/vectors.json` (which `selfheal-core/tests/catalog.rs`
//! checks without any server). Tests that need a server say they skipped without it
//! and fail under `CI=true`. Run with `--nocapture` to print each capture as a
//! `VECTOR {json}` line, the form the vectors file keeps.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use selfheal::{Matcher, Normalizer, Signal, catalog};
use selfheal_testsupport::{PrivatePostgres, PrivateRedis, env_url, free_port, unavailable};
use sqlx::Connection as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

const VECTORS: &str = include_str!("../selfheal-core/tests/catalog/vectors.json");

/// Checks a live capture: its stock pattern matches it, and its template is the one
/// checked in under `id`.
fn check(id: &str, pattern: &str, signal: Signal, how: &str) {
    let vector = serde_json::json!({
        "id": id,
        "pattern": pattern,
        "target": signal.target,
        "fields": signal.fields,
        "message": signal.message,
        "source": how,
    });
    #[allow(clippy::print_stdout)]
    {
        println!("VECTOR {vector}");
    }
    let matcher = Matcher::new(&catalog::stock());
    let best = matcher.best(&signal);
    assert_eq!(
        best.as_ref().map(|m| m.pattern.as_str()),
        Some(pattern),
        "live text of `{id}` is no longer matched by `{pattern}`: {:?}; all matches: {:?}",
        signal.message,
        matcher.matches(&signal)
    );
    let reasons = best.map(|m| m.reasons).unwrap_or_default();
    assert!(
        reasons.iter().any(|r| r.starts_with("regex")),
        "`{id}` matched `{pattern}` by keywords only, not by its regex: {reasons:?}"
    );
    let file: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let stored = file["captured"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no vector `{id}` in vectors.json; add {vector}"));
    let normalizer = Normalizer::default();
    assert_eq!(
        normalizer.template(&signal.message),
        normalizer.template(stored["message"].as_str().unwrap()),
        "the software's text for `{id}` changed; update vectors.json with {vector}"
    );
}

fn signal_from(target: &str, error: &(dyn std::error::Error + 'static)) -> Signal {
    Signal::from_error(target, error)
}

/// A local HTTP server answering every request with `response` (or never, when `None`).
async fn http_server(response: Option<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let _ = socket.read(&mut buf).await;
            match response {
                Some(r) => {
                    let _ = socket.write_all(r.as_bytes()).await;
                    let _ = socket.flush().await;
                    held.push(socket);
                }
                None => held.push(socket),
            }
        }
    });
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn redis_connection_refused() {
    let port = free_port().unwrap();
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let err = client
        .get_multiplexed_async_connection()
        .await
        .expect_err("nothing listens on a free port");
    check(
        "redis_connection_refused",
        "redis_connection_lost",
        signal_from("redis-cache", &err),
        "redis 1.8 client, get_multiplexed_async_connection to a closed port",
    );
    // The same text on a target that names no Redis: the generic, alert-only pattern.
    let generic = signal_from("sessions", &err);
    let best = Matcher::new(&catalog::stock()).best(&generic).unwrap();
    assert_eq!(best.pattern, "connection_refused");
    let by_field = signal_from("sessions", &err).field("db.system", "redis");
    let best = Matcher::new(&catalog::stock()).best(&by_field).unwrap();
    assert_eq!(best.pattern, "redis_connection_lost");
}

/// The signal `tracing::error!(error = %e, "{message}")` (or `?e`) becomes on a target
/// that names nothing: the error's text in the `error` field, appended to the message.
fn traced(target: &str, message: &str, error: String) -> Signal {
    Signal::new(target, format!("{message}: {error}")).field("error", error)
}

#[tokio::test]
async fn redis_connection_lost_on_restart() {
    let mut server = match PrivateRedis::start(&[]) {
        Ok(s) => s,
        Err(e) => return unavailable("redis-server", e),
    };
    let client = redis::Client::open(server.url()).unwrap();
    let mut mux = client.get_multiplexed_async_connection().await.unwrap();
    let mut manager = redis::aio::ConnectionManager::new(client.clone())
        .await
        .unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    // The server exits without replying: the error is the dropped connection.
    let _ = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query_async::<()>(&mut admin)
        .await;
    server.stop();
    let set = || {
        let mut cmd = redis::cmd("SET");
        cmd.arg("session:1").arg("v");
        cmd
    };
    let err = set()
        .query_async::<()>(&mut mux)
        .await
        .expect_err("the server is gone");
    check(
        "redis_broken_pipe",
        "redis_connection_lost",
        signal_from("redis-sessions", &err),
        "redis 1.8 MultiplexedConnection: SET after the server's SHUTDOWN NOSAVE",
    );
    // Named only by the `db.system` field, as an OpenTelemetry-style event says it.
    check(
        "redis_broken_pipe_by_field",
        "redis_connection_lost",
        signal_from("app::sessions", &err).field("db.system", "redis"),
        "redis 1.8 MultiplexedConnection: SET after SHUTDOWN NOSAVE; target names nothing, db.system = redis",
    );
    // On a target that names nothing, a message that names Redis is enough, whether the
    // error was recorded with `%e` or `?e` (redis-rs prints the same for both).
    check(
        "redis_broken_pipe_named_display",
        "redis_connection_refused",
        traced("app::sessions", "redis SET failed", format!("{err}")),
        "redis 1.8 MultiplexedConnection after SHUTDOWN NOSAVE, as tracing::error!(error = %e, \"redis SET failed\")",
    );
    check(
        "redis_broken_pipe_named_debug",
        "redis_connection_refused",
        traced("app::sessions", "redis SET failed", format!("{err:?}")),
        "redis 1.8 MultiplexedConnection after SHUTDOWN NOSAVE, as tracing::error!(error = ?e, \"redis SET failed\")",
    );
    let first = set()
        .query_async::<()>(&mut manager)
        .await
        .expect_err("the server is gone");
    check(
        "redis_manager_broken_pipe",
        "redis_connection_lost",
        signal_from("redis-sessions", &first),
        "redis 1.8 ConnectionManager: first SET after the server's SHUTDOWN NOSAVE",
    );
    // The manager reconnects in the background; while the server is away it is refused.
    let mut refused = None;
    for _ in 0..50 {
        if let Err(e) = set().query_async::<()>(&mut manager).await
            && e.to_string() != first.to_string()
        {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("the manager reports the refused reconnection");
    check(
        "redis_manager_refused_while_down",
        "redis_connection_lost",
        signal_from("redis-sessions", &refused),
        "redis 1.8 ConnectionManager: SET while the server is down after SHUTDOWN NOSAVE",
    );
}

#[tokio::test]
async fn redis_readonly_masterdown_and_auth() {
    let master = match PrivateRedis::start(&[]) {
        Ok(s) => s,
        Err(e) => return unavailable("redis-server", e),
    };
    let replicaof = format!("127.0.0.1 {}", master.port());
    let replica = PrivateRedis::start(&[("replicaof", replicaof.as_str())]).unwrap();
    let mut conn = redis::Client::open(replica.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let err = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async::<()>(&mut conn)
        .await
        .expect_err("a replica is read-only");
    check(
        "redis_readonly",
        "redis_readonly",
        signal_from("app::cache", &err),
        "redis-server 7 started with --replicaof; SET through redis 1.8",
    );

    // A replica of a master that is not there, told not to serve stale data.
    let stale = PrivateRedis::start(&[("replica-serve-stale-data", "no")]).unwrap();
    let mut conn = redis::Client::open(stale.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(free_port().unwrap())
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let err = redis::cmd("GET")
        .arg("k")
        .query_async::<Option<String>>(&mut conn)
        .await
        .expect_err("the link with the master is down");
    check(
        "redis_masterdown",
        "redis_masterdown",
        signal_from("app::cache", &err),
        "redis-server 7, replica-serve-stale-data no, REPLICAOF a closed port; GET through redis 1.8",
    );

    // A password set while clients run; made up here, never a real secret.
    let auth = PrivateRedis::start(&[]).unwrap();
    let client = redis::Client::open(auth.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let password = format!("capture-{}", free_port().unwrap());
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(&password)
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let err = redis::cmd("GET")
        .arg("k")
        .query_async::<Option<String>>(&mut conn)
        .await
        .expect_err("no password given");
    check(
        "redis_noauth",
        "redis_auth_failed",
        signal_from("app::cache", &err),
        "redis-server 7 with requirepass; GET through redis 1.8 without a password",
    );
    let template = Normalizer::default().template(&err.to_string());
    assert!(template.starts_with("\"NOAUTH\": "), "{template}");
    let wrong = auth
        .url()
        .replacen("redis://", "redis://:wrong-password@", 1);
    let err = redis::Client::open(wrong)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect_err("wrong password");
    check(
        "redis_wrongpass",
        "redis_auth_failed",
        signal_from("app::cache", &err),
        "redis-server 7 with requirepass; redis 1.8 connects with a wrong password",
    );
}

#[tokio::test]
async fn redis_oom() {
    let server =
        match PrivateRedis::start(&[("maxmemory", "1mb"), ("maxmemory-policy", "noeviction")]) {
            Ok(s) => s,
            Err(e) => return unavailable("redis-server", e),
        };
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let value = "x".repeat(16 * 1024);
    let mut failure = None;
    for i in 0..1000 {
        let r: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("capture:{i}"))
            .arg(&value)
            .query_async(&mut conn)
            .await;
        if let Err(e) = r {
            failure = Some(e);
            break;
        }
    }
    let err = failure.expect("writes fail once maxmemory is reached");
    check(
        "redis_oom",
        "redis_oom",
        signal_from("redis-cache", &err),
        "redis-server with maxmemory 1mb, noeviction; SET until it fails (redis 1.8 client)",
    );
    // The server's error code is what tells this reply from the others: redis 1.8
    // quotes it, and the template keeps it.
    let template = Normalizer::default().template(&err.to_string());
    assert!(template.starts_with("\"OOM\": "), "{template}");
}

#[tokio::test]
async fn redis_loading() {
    let server = match PrivateRedis::start(&[("enable-debug-command", "yes")]) {
        Ok(s) => s,
        Err(e) => return unavailable("redis-server", e),
    };
    let client = redis::Client::open(server.url()).unwrap();
    // Populating and reloading take longer than the default response timeout.
    let slow = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut loader = client
        .get_multiplexed_async_connection_with_config(&slow)
        .await
        .unwrap();
    let mut reader = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(600_000)
        .arg("capture")
        .arg(100)
        .query_async::<()>(&mut loader)
        .await
        .unwrap();
    // While it reloads its dataset, Redis answers other clients LOADING.
    let reload = tokio::spawn(async move {
        redis::cmd("DEBUG")
            .arg("RELOAD")
            .query_async::<()>(&mut loader)
            .await
    });
    let mut loading = None;
    while !reload.is_finished() {
        if let Err(e) = redis::cmd("GET")
            .arg("capture:1")
            .query_async::<Option<String>>(&mut reader)
            .await
            && e.to_string().contains("loading")
        {
            loading = Some(e);
            break;
        }
        tokio::task::yield_now().await;
    }
    match loading {
        Some(err) => check(
            "redis_loading",
            "redis_loading",
            signal_from("app::cache", &err),
            "redis-server 7, DEBUG POPULATE 600000 then DEBUG RELOAD; GET through redis 1.8 meanwhile",
        ),
        #[allow(clippy::print_stdout)]
        None => println!("redis_loading: the reload ended before a GET saw it"),
    }
}

#[tokio::test]
async fn postgres_connection_pool_exhausted() {
    let Some(url) = env_url("DATABASE_URL") else {
        return;
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(300))
        .connect(&url)
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let err = pool
        .acquire()
        .await
        .expect_err("the only connection is held");
    drop(held);
    pool.close().await;
    check(
        "postgres_pool_timed_out",
        "postgres_connection_pool_exhausted",
        signal_from("orders-postgres", &err),
        "sqlx 0.9 PgPool with max_connections 1, the connection held, acquire again",
    );
    // The same text on a target that names no Postgres: the generic, alert-only pattern.
    check(
        "pool_timed_out_unnamed_target",
        "pool_timeout",
        signal_from("orders-db", &err),
        "sqlx 0.9 PgPool with max_connections 1, the connection held, acquire again; target `orders-db`",
    );
}

#[tokio::test]
async fn postgres_pool_timeout_when_postgres_is_down() {
    let port = free_port().unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/none"))
        .unwrap();
    let err = pool.acquire().await.expect_err("nothing listens there");
    // sqlx says the same as for an exhausted pool: the text cannot tell them apart.
    check(
        "postgres_pool_timed_out_when_down",
        "postgres_connection_pool_exhausted",
        signal_from("orders-postgres", &err),
        "sqlx 0.9 PgPool (lazy) to a closed port, acquire",
    );
}

#[tokio::test]
async fn postgres_too_many_clients() {
    let server = match PrivatePostgres::start(&[
        ("max_connections", "3"),
        ("superuser_reserved_connections", "0"),
    ]) {
        Ok(s) => s,
        Err(e) => return unavailable("initdb/pg_ctl", e),
    };
    let url = server.url();
    let mut held = Vec::new();
    let mut failure = None;
    for _ in 0..6 {
        match sqlx::PgConnection::connect(&url).await {
            Ok(c) => held.push(c),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let err = failure.expect("connections beyond max_connections are refused");
    assert!(held.len() <= 3, "{} connections were accepted", held.len());
    check(
        "postgres_too_many_clients",
        "postgres_too_many_clients",
        signal_from("orders-postgres", &err),
        "private Postgres 15 with max_connections 3; sqlx 0.9 connections until refused",
    );
}

#[tokio::test]
async fn postgres_reserved_slots_and_refused_connections() {
    let server = match PrivatePostgres::start(&[
        ("max_connections", "3"),
        ("superuser_reserved_connections", "1"),
    ]) {
        Ok(s) => s,
        Err(e) => return unavailable("initdb/pg_ctl", e),
    };
    let url = server.url();
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE ROLE app LOGIN")
        .execute(&mut admin)
        .await
        .unwrap();
    drop(admin);
    let app_url = url.replacen("postgres@", "app@", 1);
    assert_ne!(app_url, url, "the private server's URL names its user");
    let mut held = Vec::new();
    let mut failure = None;
    for _ in 0..6 {
        match sqlx::PgConnection::connect(&app_url).await {
            Ok(c) => held.push(c),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let err = failure.expect("an ordinary role cannot take the reserved slot");
    check(
        "postgres_reserved_slots",
        "postgres_too_many_clients",
        signal_from("orders-postgres", &err),
        "private Postgres 15 with max_connections 3, superuser_reserved_connections 1; sqlx 0.9 connections as a plain role until refused",
    );
    drop(held);

    // A refused connection to Postgres: the text names no server, so no Redis pattern
    // and no Postgres one takes it; the generic pattern does.
    let port = free_port().unwrap();
    let err = sqlx::PgConnection::connect(&format!("postgres://postgres@127.0.0.1:{port}/x"))
        .await
        .expect_err("nothing listens on a free port");
    check(
        "postgres_connection_refused",
        "postgres_unavailable",
        signal_from("orders-postgres", &err),
        "sqlx 0.9 PgConnection::connect to a closed port",
    );
}

/// Runs `pg_ctl` of the machine's Postgres on `data` (as the `postgres` user when root).
fn pg_ctl(data: &str, args: &[&str]) -> std::process::Output {
    use std::os::unix::fs::MetadataExt as _;
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin/pg_ctl"))
        .find(|p| p.exists())
        .expect("pg_ctl under /usr/lib/postgresql");
    let as_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let mut cmd = if as_root {
        let mut cmd = std::process::Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(&bin);
        cmd
    } else {
        std::process::Command::new(&bin)
    };
    let out = cmd.args(args).args(["-D", data]).output().unwrap();
    assert!(out.status.success(), "pg_ctl {args:?}: {out:?}");
    out
}

#[tokio::test]
async fn postgres_unavailable() {
    let server = match PrivatePostgres::start(&[]) {
        Ok(s) => s,
        Err(e) => return unavailable("initdb/pg_ctl", e),
    };
    let url = server.url();
    let mut held = sqlx::PgConnection::connect(&url).await.unwrap();
    let data: String = sqlx::query_scalar("SHOW data_directory")
        .fetch_one(&mut held)
        .await
        .unwrap();

    // A smart shutdown waits for `held` and refuses new connections meanwhile.
    pg_ctl(&data, &["stop", "-m", "smart", "-W"]);
    let mut shutting = None;
    for _ in 0..500 {
        match sqlx::PgConnection::connect(&url).await {
            Ok(c) => drop(c),
            Err(e) => {
                shutting = Some(e);
                break;
            }
        }
    }
    let err = shutting.expect("a server shutting down refuses new connections");
    check(
        "postgres_shutting_down",
        "postgres_unavailable",
        signal_from("orders-postgres", &err),
        "private Postgres 15 in a smart shutdown (pg_ctl stop -m smart); sqlx 0.9 connect",
    );
    check(
        "postgres_shutting_down_debug",
        "postgres_unavailable",
        traced("app::orders", "query failed", format!("{err:?}")),
        "the same, as tracing::error!(error = ?e, \"query failed\") (sqlx 0.9 Debug)",
    );

    // A fast shutdown ends the sessions it waited for.
    pg_ctl(&data, &["stop", "-m", "fast", "-w"]);
    let err = sqlx::query("SELECT 1")
        .execute(&mut held)
        .await
        .expect_err("the server ended the session");
    check(
        "postgres_admin_shutdown",
        "postgres_unavailable",
        signal_from("orders-postgres", &err),
        "private Postgres 15, pg_ctl stop -m fast; sqlx 0.9 query on a session it ended",
    );
    let err = sqlx::PgConnection::connect(&url)
        .await
        .expect_err("the server is down");
    check(
        "postgres_refused_while_down",
        "postgres_unavailable",
        traced("app::orders", "query failed", format!("{err}")),
        "private Postgres 15 stopped; sqlx 0.9 connect, as tracing::error!(error = %e, \"query failed\")",
    );
    let libpq = std::process::Command::new("psql")
        .arg(&url)
        .args(["-c", "SELECT 1"])
        .output();
    if let Ok(out) = libpq {
        let text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let port = server.port().to_string();
        check(
            "libpq_connection_refused",
            "postgres_unavailable",
            Signal::new("app::orders", text.replace(&port, "5432")),
            "psql 15 (libpq) to the stopped private Postgres",
        );
    }

    // Starting again: connections before it is ready are told so.
    let log = format!("{data}/../capture.log");
    pg_ctl(&data, &["start", "-l", &log, "-W"]);
    let mut starting = None;
    for _ in 0..5000 {
        match sqlx::PgConnection::connect(&url).await {
            Ok(_) => break,
            Err(e) if e.to_string().contains("starting up") => {
                starting = Some(e);
                break;
            }
            Err(_) => tokio::task::yield_now().await,
        }
    }
    match starting {
        Some(err) => check(
            "postgres_starting_up",
            "postgres_unavailable",
            signal_from("orders-postgres", &err),
            "private Postgres 15 just started (pg_ctl start without waiting); sqlx 0.9 connect",
        ),
        #[allow(clippy::print_stdout)]
        None => {
            println!("postgres_starting_up: the server was ready before a connection saw it start")
        }
    }
    let mut ready = None;
    for _ in 0..300 {
        if let Ok(c) = sqlx::PgConnection::connect(&url).await {
            ready = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut conn = ready.expect("the server comes back");

    // A crash (immediate stop): the session's socket just closes.
    pg_ctl(&data, &["stop", "-m", "immediate", "-w"]);
    let err = sqlx::query("SELECT 1")
        .execute(&mut conn)
        .await
        .expect_err("the server is gone");
    check(
        "postgres_closed_eof",
        "postgres_unavailable",
        signal_from("orders-postgres", &err),
        "private Postgres 15, pg_ctl stop -m immediate; sqlx 0.9 query on an open session",
    );
}

#[tokio::test]
async fn postgres_statement_timeout() {
    let Some(url) = env_url("DATABASE_URL") else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("SET statement_timeout = 50")
        .execute(&mut conn)
        .await
        .unwrap();
    let err = sqlx::query("SELECT pg_sleep(5)")
        .execute(&mut conn)
        .await
        .expect_err("statement_timeout cancels it");
    check(
        "postgres_statement_timeout",
        "postgres_statement_timeout",
        signal_from("orders-postgres", &err),
        "sqlx 0.9: SET statement_timeout = 50; SELECT pg_sleep(5)",
    );
}

#[tokio::test]
async fn postgres_deadlock() {
    let Some(url) = env_url("DATABASE_URL") else {
        return;
    };
    let schema = format!(
        "selfheal_capture_{}_{}",
        std::process::id(),
        free_port().unwrap()
    );
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    for sql in [
        format!("CREATE SCHEMA {schema}"),
        format!("CREATE TABLE {schema}.t (id int PRIMARY KEY, v int)"),
        format!("INSERT INTO {schema}.t VALUES (1, 0), (2, 0)"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let mut a = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut b = sqlx::PgConnection::connect(&url).await.unwrap();
    // The schema name is made of numbers this test chose: nothing outside flows in.
    let update =
        |id: i32| sqlx::AssertSqlSafe(format!("UPDATE {schema}.t SET v = v + 1 WHERE id = {id}"));
    sqlx::query("BEGIN").execute(&mut a).await.unwrap();
    sqlx::query("BEGIN").execute(&mut b).await.unwrap();
    sqlx::query(update(1)).execute(&mut a).await.unwrap();
    sqlx::query(update(2)).execute(&mut b).await.unwrap();
    let (ra, rb) = tokio::join!(
        sqlx::query(update(2)).execute(&mut a),
        sqlx::query(update(1)).execute(&mut b)
    );
    let err = match (ra, rb) {
        (Err(e), _) | (_, Err(e)) => e,
        _ => panic!("crossed updates in two transactions must deadlock"),
    };
    drop((a, b));
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
    check(
        "postgres_deadlock",
        "postgres_deadlock",
        signal_from("orders-postgres", &err),
        "sqlx 0.9: two transactions updating two rows in opposite orders",
    );
}

#[tokio::test]
async fn upstream_http_5xx_and_429() {
    let base = http_server(Some(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    ))
    .await;
    let resp = client()
        .get(format!("{base}/v1/charge"))
        .send()
        .await
        .unwrap();
    let err = resp.error_for_status().expect_err("503 is an error");
    check(
        "upstream_http_503",
        "upstream_http_5xx",
        signal_from("payments-api", &err),
        "reqwest 0.13 error_for_status on a local server answering 503",
    );

    let base = http_server(Some(
        "HTTP/1.1 429 Too Many Requests\r\nretry-after: 20\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    ))
    .await;
    let resp = client()
        .get(format!("{base}/v1/geocode"))
        .send()
        .await
        .unwrap();
    let err = resp.error_for_status().expect_err("429 is an error");
    check(
        "upstream_http_429",
        "upstream_http_429",
        signal_from("geo-api", &err),
        "reqwest 0.13 error_for_status on a local server answering 429",
    );
    // The same 429 from an LLM provider's endpoint: the LLM pattern, by target.
    check(
        "llm_http_429",
        "llm_rate_limit_exceeded",
        signal_from("openai", &err),
        "reqwest 0.13 error_for_status on a local server answering 429, target `openai`",
    );
}

#[tokio::test]
async fn connection_refused_dns_and_timeouts() {
    let port = free_port().unwrap();
    let err = client()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .expect_err("nothing listens on a free port");
    check(
        "http_connection_refused",
        "connection_refused",
        signal_from("payments-api", &err),
        "reqwest 0.13 GET to a closed port",
    );

    let err = client()
        .get("http://selfheal-capture.invalid/")
        .send()
        .await
        .expect_err(".invalid never resolves");
    check(
        "http_dns_failure",
        "dns_resolution_failed",
        signal_from("payments-api", &err),
        "reqwest 0.13 GET to a name under .invalid (getaddrinfo)",
    );

    let stalled = http_server(None).await;
    let err = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap()
        .get(format!("{stalled}/slow"))
        .send()
        .await
        .expect_err("the server never answers");
    assert!(err.is_timeout());
    check(
        "http_request_timeout",
        "request_timeout",
        signal_from("payments-api", &err),
        "reqwest 0.13 with a 200 ms timeout against a server that never answers",
    );

    let err = tokio::time::timeout(Duration::from_millis(10), std::future::pending::<()>())
        .await
        .expect_err("pending never finishes");
    check(
        "tokio_timeout_elapsed",
        "request_timeout",
        signal_from("worker", &err),
        "tokio::time::timeout around a future that never finishes",
    );
}

#[tokio::test]
async fn tls_certificate_expired() {
    use tokio_rustls::rustls;

    // A certificate that expired on 2 January 2020, trusted by the client, so the only
    // thing wrong with it is its age.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 2);
    let cert = params.self_signed(&key).unwrap();

    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            // The client refuses the certificate: the handshake fails on this side too.
            let _ = acceptor.accept(socket).await;
        }
    });

    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let err = client
        .get(format!("https://{addr}/"))
        .send()
        .await
        .expect_err("the certificate expired");
    check(
        "tls_certificate_expired",
        "tls_certificate_expired",
        signal_from("payments-api", &err),
        "reqwest 0.13 (rustls) to a local tokio-rustls server whose trusted certificate expired on 2020-01-02 (rcgen)",
    );
}

#[tokio::test]
async fn sse_stream_timeout() {
    let base = http_server(Some(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\ndata: {\"delta\":\"hel\"}\n\n",
    ))
    .await;
    let mut resp = reqwest::Client::builder()
        .no_proxy()
        .read_timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .get(format!("{base}/v1/stream"))
        .send()
        .await
        .unwrap();
    let err = loop {
        match resp.chunk().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream must hang, not end"),
            Err(e) => break e,
        }
    };
    check(
        "sse_read_timeout",
        "sse_stream_timeout",
        signal_from("chat-sse", &err),
        "reqwest 0.13 with a 300 ms read timeout on an event stream that stops sending",
    );
}

#[tokio::test]
async fn disk_full() {
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .and_then(|mut f| {
            f.write_all(&[0u8; 4096])?;
            f.flush()
        })
        .expect_err("/dev/full is always full");
    check(
        "disk_full_dev_full",
        "disk_full",
        signal_from("uploads", &err),
        "std::io: write to /dev/full (ENOSPC)",
    );
}

const EMFILE_CHILD: &str = "SELFHEAL_CAPTURE_EMFILE_CHILD";

/// Runs in a child process (this test binary again) whose `RLIMIT_NOFILE` it lowers,
/// so the other tests keep their descriptors.
#[test]
#[ignore = "run by too_many_open_files in a child process"]
fn emfile_child() {
    // Lowering the limit in a test process shared with other tests would starve them:
    // only the child that `too_many_open_files` starts (with this variable) does it.
    if std::env::var_os(EMFILE_CHILD).is_none() {
        return;
    }
    rlimit::setrlimit(rlimit::Resource::NOFILE, 32, 32).unwrap();
    let mut files = Vec::new();
    let err = loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => files.push(f),
            Err(e) => break e,
        }
        assert!(files.len() < 64, "the limit of 32 did not hold");
    };
    #[allow(clippy::print_stdout)]
    {
        println!("EMFILE_TEXT:{err}");
    }
}

#[test]
fn too_many_open_files() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "emfile_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(EMFILE_CHILD, "1")
        .output()
        .unwrap();
    let stdout = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout
        .lines()
        .find_map(|l| l.split_once("EMFILE_TEXT:").map(|(_, text)| text))
        .unwrap_or_else(|| panic!("the child printed no error: {stdout}"));
    let io = std::io::Error::other(text.to_owned());
    check(
        "too_many_open_files",
        "too_many_open_files",
        signal_from("worker", &io),
        "std::io: File::open until EMFILE with RLIMIT_NOFILE 32 (rlimit crate, child process)",
    );
}

#[test]
fn the_readme_lists_every_stock_pattern() {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## Pattern catalog")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Pattern catalog section");
    for p in catalog::stock() {
        assert!(
            section.contains(&format!("| `{}` |", p.name)),
            "README's pattern table lacks `{}`",
            p.name
        );
    }
}

#[test]
fn the_vectors_file_has_no_capture_this_file_does_not_make() {
    let file: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let source = include_str!("catalog_capture.rs");
    let mut ids = BTreeMap::new();
    for v in file["captured"].as_array().unwrap() {
        let id = v["id"].as_str().unwrap();
        ids.insert(id, source.contains(&format!("\"{id}\"")));
    }
    let orphans: Vec<_> = ids.iter().filter(|(_, made)| !**made).collect();
    assert!(
        orphans.is_empty(),
        "captured vectors with no live capture: {orphans:?}"
    );
}
