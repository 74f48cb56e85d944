//! The operator surface on a service that really breaks: the dashboard, the JSON API
//! and the `selfheal` CLI, with a fix that waits for an operator's approval.
//!
//! ```sh
//! cargo run --example admin --features admin            # http://127.0.0.1:8080/selfheal/
//! cargo run --example admin --features admin -- --port 0 --exit-after 60
//! ```
//!
//! Like the quickstart, the example supervises a small HTTP service ("orders", this same
//! binary re-executed with `--serve`) whose sqlx pool leaks connections: a few seconds
//! after each boot every query fails with sqlx's real `pool timed out while waiting for
//! an open connection`. The healer matches its pattern, plans a restart of the process,
//! and, because the fix is bound with `requires_approval`, waits for an operator. Approve
//! it in the dashboard, with `selfheal approve <id>`, or with curl; the process is
//! restarted (`kill -TERM`, the supervisor respawns it), verified with its `/health`,
//! and everything lands in `selfheal-admin.db` and its hash-chained audit log.
//!
//! An operator token and a viewer token are generated at start and printed with the
//! URL: the API takes them as `Authorization: Bearer <token>`.

#![allow(clippy::print_stdout, clippy::print_stderr)] // an example talks to its user

use std::sync::Arc;
use std::time::Duration;

use selfheal::admin::{AdminConfig, Role};
use selfheal::sources::lines::{LineChannel, LineParser};
use selfheal::storage::SqliteStore;
use selfheal::strategies::{ChildSupervisor, HttpVerifier, ProcessExecutor, RestartProcess};
use selfheal::{FixBinding, Healer, HealerConfig, Pattern, PatternMode, Severity};

const TARGET: &str = "orders";
const PATTERN: &str = "orders_pool_exhausted";
const DATABASE: &str = "selfheal-admin.db";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        let (port, state_dir) = (required(&args, i + 1)?, required(&args, i + 2)?);
        return runtime.block_on(service::serve(port, state_dir));
    }
    let options = Options::parse(&args)?;
    runtime.block_on(run(options))
}

/// `--port PORT` (default 8080; 0 picks a free one) and `--exit-after SECS`.
struct Options {
    port: u16,
    exit_after: Option<Duration>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, Box<dyn std::error::Error>> {
        let mut options = Options {
            port: 8080,
            exit_after: None,
        };
        let mut i = 1;
        while i < args.len() {
            match args[i].as_str() {
                "--port" => options.port = required(args, i + 1)?.parse()?,
                "--exit-after" => {
                    options.exit_after = Some(Duration::from_secs(required(args, i + 1)?.parse()?));
                }
                other => {
                    return Err(format!(
                        "unknown argument `{other}`; use --port PORT and --exit-after SECS"
                    )
                    .into());
                }
            }
            i += 2;
        }
        Ok(options)
    }
}

fn required(args: &[String], i: usize) -> Result<&str, Box<dyn std::error::Error>> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("`{}` needs a value", args[i - 1]).into())
}

/// The pattern the example seeds: its fix waits for an operator.
fn pool_pattern() -> Pattern {
    Pattern::new(PATTERN)
        .description("The connection pool has no free connection: connections leak or the database is saturated")
        .regex(r"pool timed out while waiting for an open connection")
        .keywords(["pool", "timed", "connection", "exhausted"])
        .severity(Severity::High)
        .root_cause("connections held and never returned (a leak or long transactions)")
        .mode(PatternMode::Active)
        .auto_healable(true)
        .confidence(0.9)
        .threshold(3, Duration::from_secs(30))
        .fix(FixBinding::new("restart_process").requires_approval(true))
}

/// A secret for a bearer token: two random (v4) UUIDs, 244 random bits.
fn secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

async fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let state_dir = std::env::temp_dir().join(format!("selfheal-admin-{}", std::process::id()));
    std::fs::create_dir_all(&state_dir)?;
    let store = SqliteStore::open(DATABASE).await?;

    // The service: this binary in service mode, supervised so it can be restarted.
    let service_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::current_exe()?.to_string_lossy().into_owned();
    let (supervisor, lines) = ChildSupervisor::builder(
        exe,
        [
            "--serve".to_owned(),
            service_port.to_string(),
            state_dir.to_string_lossy().into_owned(),
        ],
    )
    .spawn()?;
    let supervisor = Arc::new(supervisor);

    let mut config = HealerConfig {
        service: "admin-example".into(),
        ..Default::default()
    };
    config.verification.window = Duration::from_secs(30);
    config.verification.interval = Duration::from_millis(500);
    config.verification.quiet_for = Duration::from_secs(3);
    config.guards.cooldown = Duration::from_secs(5);
    config.safety.backoff.cap = config.guards.cooldown;
    config.safety.backoff.masking_after = 0;

    let healer = Healer::builder()
        .config(config)
        .store(store)
        // The service's ERROR and WARN lines become signals.
        .source(LineChannel::new(
            "orders-log",
            lines,
            LineParser::new(TARGET),
        ))
        .strategy(RestartProcess::new(TARGET, supervisor.clone()))
        .verifier(
            TARGET,
            HttpVerifier::new(format!("http://127.0.0.1:{service_port}/health"))?,
        )
        .executor(ProcessExecutor::new())
        .build()?;
    let running = healer.spawn();
    healer.admin().seed_patterns([pool_pattern()]).await?;

    // What the healer does, one line per phase, so the terminal shows when to approve.
    let mut events = healer.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            let detail = event.detail.lines().next().unwrap_or_default().to_owned();
            println!(
                "{}  {:<17} {} {detail}",
                event.at.format("%H:%M:%S"),
                format!("{:?}", event.phase),
                event.target
            );
        }
    });

    // The host's own router, with the operator surface nested under /selfheal.
    let (operator, viewer) = (secret(), secret());
    let admin = AdminConfig::default()
        .token(Role::Operator, "operator", &operator)
        .token(Role::Viewer, "viewer", &viewer);
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async {
                "the host's own routes; the operator surface is at /selfheal/\n"
            }),
        )
        .nest("/selfheal", selfheal::admin::router(healer.clone(), admin));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port)).await?;
    let url = format!("http://{}/selfheal", listener.local_addr()?);
    print_welcome(&url, &operator, &viewer);

    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let stop = async {
        match options.exit_after {
            Some(after) => tokio::time::sleep(after).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        () = stop => {}
        served = server => {
            eprintln!("the HTTP server stopped: {served:?}");
        }
    }

    println!("\nstopping; the store is {DATABASE}");
    running.shutdown().await;
    supervisor.shutdown().await?;
    let _ = std::fs::remove_dir_all(&state_dir);
    println!("check its audit chain offline: selfheal audit verify --sqlite {DATABASE}");
    Ok(())
}

fn print_welcome(url: &str, operator: &str, viewer: &str) {
    println!(
        "selfheal admin example: the `orders` service leaks pool connections a few seconds\n\
         after each boot; its fix (a restart) waits for your approval.\n\
         \n\
         dashboard   {url}   (paste the operator token when asked)\n\
         API         {url}/api/...   OpenAPI at {url}/openapi.json\n\
         operator    {operator}\n\
         viewer      {viewer}\n\
         \n\
         with curl:\n\
         \x20 curl -H 'Authorization: Bearer {operator}' {url}/api/status\n\
         \x20 curl -H 'Authorization: Bearer {operator}' {url}/api/approvals\n\
         \x20 curl -X POST -H 'Authorization: Bearer {operator}' {url}/api/approvals/<id>/approve\n\
         \x20 curl -N -H 'Authorization: Bearer {viewer}' {url}/events\n\
         \n\
         with the CLI (cargo install --path selfheal-cli):\n\
         \x20 export SELFHEAL_URL={url} SELFHEAL_TOKEN={operator}\n\
         \x20 selfheal status\n\
         \x20 selfheal approvals\n\
         \x20 selfheal approve <id>\n\
         \x20 selfheal silence {TARGET} --for 10m --reason 'deploying'\n\
         \x20 selfheal audit verify\n\
         \n\
         Ctrl-C stops it."
    );
}

/// The "orders" service the healer looks after (as in the quickstart, but every boot
/// leaks: there is always something to approve).
mod service {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use sqlx::sqlite::SqlitePoolOptions;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Mutex;

    fn log(level: &str, message: &str) {
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

        // The fault: a stuck batch job takes a connection every 400 ms and never gives
        // it back, 3 s after the first boot and a minute after later ones.
        let after = if boots == 1 { 3 } else { 60 };
        let leaked = Arc::new(Mutex::new(Vec::new()));
        {
            let (pool, leaked) = (pool.clone(), leaked.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(after)).await;
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
