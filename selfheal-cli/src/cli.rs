//! The command line: global options and one subcommand per operator verb.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

/// The operator's command line for selfheal.
///
/// Every command talks to the admin API that the service mounts (`--url`, the mount
/// point, e.g. http://127.0.0.1:8080/selfheal) with a bearer token (`--token`): viewer
/// tokens read, operator tokens also act. `audit verify` and `patterns export` can read
/// a store directly instead (`--sqlite`, `--postgres`).
///
/// Exit codes: 0 done, 1 the API, the network or the store failed or the audit chain is
/// broken, 2 the command line is wrong (unknown option, missing URL).
#[derive(Debug, Parser)]
#[command(name = "selfheal", version, about, long_about)]
pub struct Cli {
    /// The admin API's mount point, e.g. http://127.0.0.1:8080/selfheal.
    #[arg(long, env = "SELFHEAL_URL", global = true)]
    pub url: Option<String>,

    /// The bearer token (from SELFHEAL_ADMIN_TOKENS on the service: `role:name:secret`,
    /// pass the secret).
    #[arg(long, env = "SELFHEAL_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,

    /// Print the API's JSON as is instead of a table.
    #[arg(long, global = true)]
    pub json: bool,

    /// How long to wait for the API (humantime: 10s, 1m).
    #[arg(long, global = true, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The healer at a glance: signals observed and dropped, open incidents, pending
    /// approvals, dry run, the safety envelope.
    Status,
    /// Incidents, newest first.
    Incidents {
        /// Only incidents in this state (open, awaiting_approval, queued, remediating,
        /// resolved, escalated, closed).
        #[arg(long)]
        status: Option<String>,
        /// Only incidents of this target.
        #[arg(long)]
        target: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Skip this many first (paging).
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Fixes waiting for an operator, oldest first.
    Approvals,
    /// Approves a pending fix: the healer runs it (operator token).
    Approve {
        /// The approval's id (from `selfheal approvals`).
        id: Uuid,
    },
    /// Rejects a pending fix (operator token).
    Reject {
        /// The approval's id (from `selfheal approvals`).
        id: Uuid,
        /// Why, kept in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Stops healing a target for a while: its incidents are still recorded, no fix
    /// runs (operator token).
    Silence {
        /// The target to silence.
        target: String,
        /// For how long (humantime: 30m, 1h, 2h 30m).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration_text)]
        duration: String,
        /// Why, kept in the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Silences, in force, to come or recently ended: scope, end, whether in force,
    /// how many signals each suppressed.
    Silences,
    /// Lifts a silence now: healing of what it matched resumes (operator token).
    ///
    /// The API answers with no body, so `--json` prints nothing (the exit code says it).
    Unsilence {
        /// The silence's id (from `selfheal silence` or `selfheal silences`).
        id: Uuid,
    },
    /// Turns dry run on or off: fixes are planned and logged, not run (operator token).
    DryRun {
        /// on or off.
        state: OnOff,
        /// Only for this pattern (default: the whole healer).
        #[arg(long)]
        pattern: Option<String>,
    },
    /// The audit log.
    Audit {
        /// What to do with it.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The pattern catalog.
    Patterns {
        /// What to do with it.
        #[command(subcommand)]
        command: PatternsCommand,
    },
}

/// `selfheal audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Checks the hash chain of the audit log and names the first broken link (exit 1
    /// when broken). Through the API, or straight from a store with --sqlite/--postgres.
    ///
    /// Also checks the chain's head kept outside the table (the `<file>.audit-head`
    /// checkpoint beside an SQLite file, a row in PostgreSQL), so a log cut at its end
    /// is noticed.
    ///
    /// Opening a store never creates, migrates, seeds or writes it: a store whose
    /// schema is not exactly the one this version of selfheal knows is refused.
    Verify {
        /// Read a store directly instead of asking the API.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `selfheal patterns …`
#[derive(Debug, Subcommand)]
pub enum PatternsCommand {
    /// Prints the catalog as an export document (JSON), for `POST /api/patterns/import`
    /// or `healer.admin().import_patterns`. Through the API, or straight from a store.
    ///
    /// Opening a store never creates, migrates, seeds or writes it: a store whose
    /// schema is not exactly the one this version of selfheal knows is refused.
    Export {
        /// Read a store directly instead of asking the API.
        #[command(flatten)]
        store: StoreArgs,
        /// The `source` the document names (default: the API's, or the store's location).
        #[arg(long)]
        source: Option<String>,
    },
}

/// Reading a store directly.
///
/// Opening never creates, migrates, seeds or writes the database: a database whose
/// schema is not exactly the one this version of selfheal knows is refused.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Read this SQLite store file directly, not through the API. The file is opened the
    /// way the service opens it (an exclusive lock: stop the service first, or use the
    /// API while it runs) with `query_only` on, so nothing in it can change. If no audit
    /// checkpoint (`<file>.audit-head`) is beside it, opening starts one at the newest
    /// record, as the service does on its next start.
    #[arg(long, value_name = "PATH", conflicts_with = "postgres")]
    pub sqlite: Option<PathBuf>,

    /// Read this PostgreSQL store directly (postgres://user@host:port/db). Every
    /// transaction is read-only; the service may keep running.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,

    /// The PostgreSQL schema the store's tables are in (the service's
    /// `PostgresStore::builder(..).schema(..)`; default: the connection's search path).
    #[arg(long, requires = "postgres")]
    pub schema: Option<String>,
}

impl StoreArgs {
    /// Whether a store was named.
    pub fn any(&self) -> bool {
        self.sqlite.is_some() || self.postgres.is_some()
    }
}

/// on | off
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Plan and log fixes, run none.
    On,
    /// Run fixes.
    Off,
}

/// Checks a humantime duration and keeps its text (the API parses it again).
fn parse_duration_text(s: &str) -> Result<String, String> {
    humantime::parse_duration(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("`{s}` is not a duration like 30m, 1h or 2h 30m: {e}"))
}
