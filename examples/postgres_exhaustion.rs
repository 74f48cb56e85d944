//! A Postgres out of connection slots, healed for real (tuned: its own auto-healable
//! pattern, a 1 s quiet window and a headroom that today's usage score verifies).
//!
//! ```sh
//! cargo run --release --example postgres_exhaustion --features postgres
//! ```
//!
//! Needs PostgreSQL's server binaries (`initdb`, `pg_ctl` under
//! `/usr/lib/postgresql/<version>/bin`, or set `PG_BIN`): the example creates a private
//! cluster on a free port of 127.0.0.1 (`max_connections = 20`,
//! `superuser_reserved_connections = 0`) and removes it when it ends; your own
//! database is not touched. As root it runs the cluster as the `postgres` system user.
//!
//! The healer keeps one connection of its own (application `selfheal`), opened up
//! front by `PostgresIntegration`. Then a stuck batch job of the "orders" service opens connections and never
//! closes them, until Postgres refuses new ones with its real error, `sorry, too many
//! clients already`. The service, which connects for a query every 50 ms, reports each
//! failure to the healer as a signal; the healer opens an incident, matches the
//! `postgres_too_many_clients` pattern, terminates the idle sessions of the `app` role
//! with `pg_terminate_backend` (never its own, never a superuser's), verifies that the
//! errors stopped and a new connection is accepted (connection usage, `100 − used /
//! max_connections × 100`, is recorded before and after), and the service connects
//! again. The timeline comes from the healer's event stream; the
//! example exits 0 when the incident is resolved.

#![allow(clippy::print_stdout, clippy::print_stderr)] // an example talks to its user

use std::io::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use selfheal::sqlx::postgres::{PgConnectOptions, PgConnection};
use selfheal::sqlx::{self, Connection, PgPool};
use selfheal::strategies::{PostgresIntegration, PostgresVerifier, ProcessExecutor};
use selfheal::{
    FixBinding, Healer, HealerConfig, HealingEvent, IncidentFilter, Level, MemoryStore, Pattern,
    PatternMode, Phase, Severity, Signal, SignalSource, Verifier,
};
use selfheal_testsupport::PrivatePostgres;
use tokio::sync::watch;

const TARGET: &str = "postgres";

fn too_many_clients() -> Pattern {
    Pattern::new("postgres_too_many_clients")
        .description("Every connection slot of the server is taken")
        .regex(r"sorry, too many clients already|remaining connection slots are reserved")
        .severity(Severity::High)
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(0.9)
        .threshold(3, Duration::from_secs(60))
        // No parameters: short of slots, the strategy ends idle sessions of the
        // service's role `app` however young (the stuck job's are a moment old), oldest
        // first, as many as the headroom needs plus 2.
        .fix(FixBinding::new("postgres_terminate_idle"))
}

fn options(pg: &PrivatePostgres, user: &str, application: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(&pg.url())
        .expect("the private cluster's URL parses")
        .username(user)
        .application_name(application)
}

/// The backend pid of the healer's own connection.
async fn own_pids(pool: &PgPool) -> Result<Vec<i32>, sqlx::Error> {
    let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
        .fetch_one(pool)
        .await?;
    Ok(vec![pid])
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let pg = PrivatePostgres::start(&[
        ("max_connections", "20"),
        ("superuser_reserved_connections", "0"),
    ])
    .map_err(|e| format!("could not start a private Postgres ({e}); install the PostgreSQL server (initdb, pg_ctl) or set PG_BIN"))?;
    println!(
        "selfheal example: a Postgres out of connection slots, healed (private cluster on 127.0.0.1:{}, max_connections 20)\n",
        pg.port()
    );
    let clock = move || format!("{:>6.2}s", started.elapsed().as_secs_f64());

    let mut setup = PgConnection::connect_with(&options(&pg, "postgres", "setup")).await?;
    sqlx::query("CREATE ROLE app LOGIN")
        .execute(&mut setup)
        .await?;
    setup.close().await?;
    // The healer's own connection, opened before trouble starts and named `selfheal`:
    // a superuser here, acting for the service's role `app`. Freeing 17 slots (tuned)
    // lets today's usage score (pass mark 80) verify.
    let integration =
        PostgresIntegration::connect_with(TARGET, options(&pg, "postgres", "selfheal"))
            .await?
            .service_role("app")
            .headroom(17);
    let admin = integration.own_pool().clone();
    let own_before = own_pids(&admin).await?;
    let verifier = PostgresVerifier::new(admin.clone());

    let mut config = HealerConfig {
        service: "orders".into(),
        ..Default::default()
    };
    config.verification.window = Duration::from_secs(30);
    config.verification.interval = Duration::from_millis(200);
    config.verification.quiet_for = Duration::from_secs(1);
    let healer = Healer::builder()
        .config(config)
        .store(MemoryStore::new())
        .integrate(integration)
        .executor(ProcessExecutor::new())
        .build()?;
    let mut events = healer.subscribe();
    let running = healer.spawn();
    healer.admin().seed_patterns([too_many_clients()]).await?;

    // The stuck batch job: opens connections, never uses or closes them.
    println!(
        "{}  {:<10} the healer holds its own connection (pid {own_before:?})",
        clock(),
        "healer"
    );
    println!(
        "{}  {:<10} a stuck batch job opens connections and never closes them",
        clock(),
        "app"
    );
    let mut stuck = Vec::new();
    let first_error = loop {
        match PgConnection::connect_with(&options(&pg, "app", "batch")).await {
            Ok(conn) => stuck.push(conn),
            Err(e) => break e.to_string(),
        }
        if stuck.len() > 20 {
            return Err("max_connections = 20 did not hold".into());
        }
    };
    let first_at = Instant::now();
    println!(
        "{}  {:<10} {} connections held; the next one fails: {first_error}",
        clock(),
        "app",
        stuck.len()
    );
    healer.observe(
        Signal::new(TARGET, first_error)
            .source(SignalSource::Log)
            .level(Level::Error),
    );

    // The service: connects for a query every 50 ms and reports every failure.
    let failed = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let (connected_tx, mut connected) = watch::channel(None::<Instant>);
    let service = {
        let (options, healer, failed) = (
            options(&pg, "app", "orders"),
            healer.clone(),
            failed.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !*stopped.borrow() {
                tick.tick().await;
                match PgConnection::connect_with(&options).await {
                    Ok(mut conn) => {
                        if sqlx::query("SELECT 1").execute(&mut conn).await.is_ok() {
                            connected_tx.send_if_modified(|at| {
                                at.get_or_insert_with(Instant::now);
                                false
                            });
                        }
                        let _ = conn.close().await;
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        healer.observe(
                            Signal::new(TARGET, e.to_string())
                                .source(SignalSource::Log)
                                .level(Level::Error),
                        );
                    }
                }
            }
        })
    };

    let ended = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let Ok(event) = events.recv().await else {
                return None;
            };
            print_event(&clock(), &event);
            if matches!(
                event.phase,
                Phase::Resolved | Phase::Escalated | Phase::Closed
            ) {
                return Some(event);
            }
        }
    })
    .await;
    let recovered = Instant::now();
    stop.send(true)?;
    service.await?;
    let healed = matches!(&ended, Ok(Some(e)) if e.phase == Phase::Resolved);

    println!("\nsummary");
    println!(
        "  first error → verified recovery  {:.2}s",
        recovered.duration_since(first_at).as_secs_f64()
    );
    if let Some(at) = *connected.borrow_and_update() {
        println!(
            "  first error → service connects   {:.2}s",
            at.duration_since(first_at).as_secs_f64()
        );
    }
    println!(
        "  failed connections reported     {}",
        failed.load(Ordering::Relaxed)
    );
    if let Some(incident) = healer
        .admin()
        .incidents(&IncidentFilter::default())
        .await?
        .into_iter()
        .next()
    {
        println!(
            "  incident                        {} ({}, {} occurrences)",
            incident.id,
            incident.status.as_str(),
            incident.occurrences
        );
        if let Some(action) = healer
            .admin()
            .actions(Some(incident.id))
            .await?
            .into_iter()
            .next()
        {
            let show = |h: Option<u8>| h.map_or("n/a".to_owned(), |h| h.to_string());
            println!(
                "  action                          {} ({})",
                action.strategy,
                action.status.as_str()
            );
            if let Some(outcome) = &action.outcome {
                let stdout = outcome.stdout.trim();
                println!(
                    "  result                          {}",
                    stdout.split_once(": [").map_or(stdout, |(head, _)| head)
                );
            }
            println!(
                "  health                          {} → {}",
                show(action.health_before),
                show(action.health_after)
            );
        }
    }
    let own_after = own_pids(&admin).await?;
    println!(
        "  the healer's connections        {own_after:?} ({})",
        if own_after == own_before {
            "the same sessions: they survived"
        } else {
            "CHANGED"
        }
    );
    let now = verifier.check().await?;
    println!(
        "  postgres now                    {} ({})",
        now.score, now.detail
    );
    let fresh = PgConnection::connect_with(&options(&pg, "app", "check")).await;
    println!(
        "  a new connection                {}",
        match &fresh {
            Ok(_) => "succeeds".to_owned(),
            Err(e) => format!("fails: {e}"),
        }
    );
    if let Ok(conn) = fresh {
        let _ = conn.close().await;
    }
    running.shutdown().await;
    drop(stuck);
    admin.close().await;
    drop(pg);
    if healed && own_after == own_before {
        Ok(())
    } else {
        Err("the incident was not resolved; see the timeline above".into())
    }
}

/// One line of the timeline per healer event, labelled like a terminal log.
fn print_event(clock: &str, event: &HealingEvent) {
    let label = match event.phase {
        Phase::Detected => "detected",
        Phase::Matched | Phase::Decided | Phase::Diagnosed => "thinking",
        Phase::Executing => "command",
        Phase::Output => "result",
        Phase::Verifying => "verifying",
        Phase::Verified => "verified",
        Phase::Resolved => "complete",
        Phase::Escalated | Phase::Failed => "failed",
        _ => "event",
    };
    let mut lines = event.detail.lines();
    println!("{clock}  {label:<10} {}", lines.next().unwrap_or_default());
    for line in lines {
        println!("{clock}  {label:<10} {line}");
    }
    if event.phase == Phase::Executing {
        println!("{clock}  {:<10} running it", "executing");
    }
    let _ = std::io::stdout().flush();
}
