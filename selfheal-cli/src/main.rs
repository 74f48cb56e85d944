//! `selfheal`, the operator's command line: the admin API over HTTP (status, incidents,
//! approvals, silences, dry run, audit, patterns), and audit verification and pattern
//! export straight from a store (`--sqlite`, `--postgres`). Run `selfheal --help`.
#![deny(missing_docs)]

mod cli;
mod client;
mod commands;
mod error;
mod render;
mod store;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return report(
                &error::CliError::failed(format!("cannot start: {e}")),
                false,
            );
        }
    };
    let json = cli.json;
    let mut stdout = std::io::stdout().lock();
    let result = runtime.block_on(commands::run(cli, &mut stdout));
    let flushed = stdout.flush();
    match result {
        Ok(()) => match flushed {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => report(&e.into(), json),
        },
        Err(e) => report(&e, json),
    }
}

/// Says what went wrong on stderr (the API's JSON body as is with `--json`).
fn report(e: &error::CliError, json: bool) -> ExitCode {
    if e.message.is_empty() && e.body.is_none() {
        return e.exit_code();
    }
    let mut stderr = std::io::stderr().lock();
    let _ = match (&e.body, json) {
        (Some(body), true) => writeln!(stderr, "{body}"),
        _ => writeln!(stderr, "selfheal: {}", e.message),
    };
    e.exit_code()
}
