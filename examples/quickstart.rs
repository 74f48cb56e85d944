//! A real end-to-end heal on one machine, nothing to install.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! The example starts a small HTTP service ("orders") as a real child process: this
//! same binary, re-executed with `--serve`. On its first boot the service leaks
//! connections from its sqlx pool (a stuck batch job holds them), so after a few
//! seconds every query fails with sqlx's real error, `pool timed out while waiting for
//! an open connection`, and `/health` answers 503.
//!
//! The healer reads the child's output with its line parser (`selfheal::sources::lines`:
//! its ERROR and WARN lines become signals), opens an incident, matches the pattern this
//! example adds, `orders_pool_exhausted` (the store also holds the stock catalog, whose
//! `postgres_connection_pool_exhausted` only takes Postgres targets and whose generic,
//! alert-only `pool_timeout` ranks below this more severe pattern), restarts the process through the process executor (`kill -TERM <pid>`, then the
//! supervisor respawns it), verifies with an HTTP health check, and stores everything
//! in `selfheal.db`. Run it twice: the second run starts from the confidence the first
//! one learned.

#![allow(clippy::print_stdout, clippy::print_stderr)] // an example talks to its user

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use selfheal::sources::lines::{LineChannel, LineParser};
use selfheal::storage::SqliteStore;
use selfheal::strategies::{ChildSupervisor, HttpVerifier, ProcessExecutor, RestartProcess};
use selfheal::{
    FixBinding, Healer, HealerConfig, IncidentFilter, Pattern, PatternMode, Phase, Severity,
};

const TARGET: &str = "orders";
const PATTERN: &str = "orders_pool_exhausted";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.iter().position(|a| a == "--serve") {
        Some(i) => runtime.block_on(service::serve(&args[i + 1], &args[i + 2])),
        None => runtime.block_on(heal()),
    }
}

/// The pattern this example seeds. `seed_patterns` adds it only when it is missing, so
/// what the first run learned is what the second run starts from.
fn pool_pattern() -> Pattern {
    Pattern::new(PATTERN)
        .description("The connection pool has no free connection: connections leak or the database is saturated")
        .regex(r"pool timed out while waiting for an open connection")
        .keywords(["pool", "timed", "connection", "exhausted"])
        .severity(Severity::High)
        .root_cause("connections held and never returned (a leak or long transactions)")
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(0.75)
        .threshold(3, Duration::from_secs(30))
        .fix(FixBinding::new("restart_process"))
}

async fn heal() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let port = free_port()?;
    let state_dir =
        std::env::temp_dir().join(format!("selfheal-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&state_dir)?;

    println!("selfheal quickstart: heal a real process, store everything in selfheal.db\n");
    let store = SqliteStore::open("selfheal.db").await?;

    // The service: this binary in service mode, supervised so it can be restarted.
    let exe = std::env::current_exe()?.to_string_lossy().into_owned();
    let (supervisor, mut lines) = ChildSupervisor::builder(
        exe,
        [
            "--serve".to_owned(),
            port.to_string(),
            state_dir.to_string_lossy().into_owned(),
        ],
    )
    .spawn()?;
    let supervisor = Arc::new(supervisor);

    let mut config = HealerConfig {
        service: "quickstart".into(),
        ..Default::default()
    };
    config.verification.window = Duration::from_secs(30);
    config.verification.interval = Duration::from_millis(500);
    config.verification.quiet_for = Duration::from_secs(3);
    // Cooldowns survive a restart (they are re-armed from the stored actions), so the
    // default 10 minutes would rightly hold the fix when the demo runs twice in a row.
    config.guards.cooldown = Duration::from_secs(5);
    // Each run breaks the same thing on purpose. In a service, an error that keeps coming
    // back after "successful" fixes doubles the cooldown and is flagged as masking (that
    // state is kept in the store across restarts); here it would stop the demo after a
    // few runs, so the back-off stays at the cooldown and masking is not flagged.
    config.safety.backoff.cap = config.guards.cooldown;
    config.safety.backoff.masking_after = 0;

    // The child's log feeds the healer: selfheal's line parser turns its ERROR and WARN
    // lines into signals (it reads this `timestamp LEVEL target: message` shape, JSON
    // and logfmt, and joins stack traces).
    let (log_tx, log_rx) = tokio::sync::mpsc::channel(1024);
    let healer = Healer::builder()
        .config(config)
        .store(store)
        .source(LineChannel::new(
            "orders-log",
            log_rx,
            LineParser::new(TARGET),
        ))
        .strategy(RestartProcess::new(TARGET, supervisor.clone()))
        .verifier(
            TARGET,
            HttpVerifier::new(format!("http://127.0.0.1:{port}/health"))?,
        )
        .executor(ProcessExecutor::new())
        .build()?;
    let mut events = healer.subscribe();
    let running = healer.spawn();
    healer.admin().seed_patterns([pool_pattern()]).await?;
    let confidence_before = pattern_confidence(&healer).await;
    println!("pattern `{PATTERN}` starts at confidence {confidence_before:.2}\n");

    // The child's log lines on their way to the healer's line source, shown indented so
    // the timeline reads as a story.
    let clock = move |at: Instant| format!("{:>6.2}s", at.duration_since(started).as_secs_f64());
    tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            println!(
                "{}    orders | {}",
                clock(Instant::now()),
                line.split_once(' ').map_or(line.as_str(), |(_, l)| l)
            );
            if log_tx.send(line).await.is_err() {
                break;
            }
        }
    });

    let outcome = tokio::time::timeout(Duration::from_secs(50), async {
        loop {
            let Ok(event) = events.recv().await else {
                return None;
            };
            let detail = event.detail.lines().next().unwrap_or_default().to_owned();
            println!(
                "{}  {:<17} {}",
                clock(Instant::now()),
                format!("{:?}", event.phase),
                detail
            );
            let _ = std::io::stdout().flush();
            if matches!(
                event.phase,
                Phase::Resolved | Phase::Escalated | Phase::Closed
            ) {
                return Some(event);
            }
        }
    })
    .await;

    let healed = matches!(&outcome, Ok(Some(e)) if e.phase == Phase::Resolved);
    print_summary(&healer, confidence_before).await?;
    running.shutdown().await;
    supervisor.shutdown().await?;
    let _ = std::fs::remove_dir_all(&state_dir);
    if healed {
        Ok(())
    } else {
        Err("the incident was not resolved; see the timeline above".into())
    }
}

async fn print_summary(healer: &Healer, confidence_before: f64) -> selfheal::Result<()> {
    let incident = healer
        .admin()
        .incidents(&IncidentFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await?
        .into_iter()
        .next();
    println!("\nsummary");
    let Some(incident) = incident else {
        println!("  no incident was opened");
        return Ok(());
    };
    let action = healer
        .admin()
        .actions(Some(incident.id))
        .await?
        .into_iter()
        .next();
    let health = |h: Option<u8>| h.map_or("n/a".to_owned(), |h| h.to_string());
    println!(
        "  incident         {} ({})",
        incident.id,
        incident.status.as_str()
    );
    println!("  error            {}", incident.template);
    println!("  occurrences      {}", incident.occurrences);
    println!(
        "  pattern          {}",
        incident.pattern.as_deref().unwrap_or("none")
    );
    println!(
        "  confidence       {confidence_before:.2} -> {:.2}",
        pattern_confidence(healer).await
    );
    if let Some(a) = &action {
        println!("  action           {} ({})", a.strategy, a.status.as_str());
        for line in a.preview.lines() {
            println!("                     {line}");
        }
        println!(
            "  health           {} -> {}",
            health(a.health_before),
            health(a.health_after)
        );
    }
    if let Some(ttr) = incident.time_to_recover() {
        println!("  time to recover  {:.1}s", ttr.as_secs_f64());
    }
    let audit = healer.admin().audit_log(10_000).await?;
    println!(
        "  audit            {} records, chain {}",
        audit.len(),
        if selfheal::verify_chain(&audit).is_ok() {
            "intact"
        } else {
            "BROKEN"
        }
    );
    println!("  stored in        selfheal.db (run again to see the learned confidence)");
    Ok(())
}

async fn pattern_confidence(healer: &Healer) -> f64 {
    healer
        .admin()
        .patterns()
        .await
        .ok()
        .and_then(|ps| ps.into_iter().find(|p| p.name == PATTERN))
        .map_or(0.0, |p| p.confidence)
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The "orders" service the healer looks after.
mod service {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use sqlx::sqlite::SqlitePoolOptions;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Mutex;

    fn log(level: &str, message: &str) {
        // The service's own log, in the usual `timestamp LEVEL target: message` shape.
        eprintln!(
            "{} {level} orders: {message}",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ")
        );
    }

    pub async fn serve(port: &str, state_dir: &str) -> Result<(), Box<dyn std::error::Error>> {
        let boots_file = Path::new(state_dir).join("boots");
        let boots: u32 = std::fs::read_to_string(&boots_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
            + 1;
        std::fs::write(&boots_file, boots.to_string())?;

        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_millis(250))
            .connect("sqlite::memory:")
            .await?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
        log(
            "INFO",
            &format!("listening on 127.0.0.1:{port} (boot {boots})"),
        );

        // The fault: on the first boot a stuck batch job takes a connection every
        // 400 ms and never gives it back. A restart clears it.
        let leaked = Arc::new(Mutex::new(Vec::new()));
        if boots == 1 {
            let (pool, leaked) = (pool.clone(), leaked.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                log("WARN", "batch job stuck; holding its connections");
                loop {
                    if let Ok(conn) = pool.acquire().await {
                        leaked.lock().await.push(conn);
                    }
                    tokio::time::sleep(Duration::from_millis(400)).await;
                }
            });
        }

        // Steady traffic: one query every 300 ms.
        let worker = pool.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = sqlx::query("SELECT 1").execute(&worker).await {
                    log("ERROR", &format!("query failed: {e}"));
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });

        loop {
            let (mut socket, _) = listener.accept().await?;
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let (status, body) = match pool.acquire().await {
                    Ok(_) => ("200 OK", "ok".to_owned()),
                    Err(e) => ("503 Service Unavailable", e.to_string()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    }
}
