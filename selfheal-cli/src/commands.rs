//! One function per command: ask the API (or the store), print a table or the JSON.

use std::io::Write;

use serde_json::{Value, json};

use crate::cli::{AuditCommand, Cli, Command, OnOff, PatternsCommand};
use crate::client::Api;
use crate::error::{CliError, CliResult};
use crate::render::{Table, clip, text, time, write_fields_in_order, write_json};
use crate::store::ReadStore;

/// The order `status` prints the API's keys in: who answers, what it counted, what
/// waits, then the switches and the safety envelope. Keys the API gains later follow.
const STATUS_ORDER: &[&str] = &[
    "replica",
    "observed",
    "dropped",
    "failed",
    "store_errors",
    "open_incidents",
    "pending_approvals",
    "dry_run",
    "safety",
];

/// Runs the command `cli` names, writing its answer to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> CliResult {
    let api = || Api::new(cli.url.as_deref(), cli.token.clone(), cli.timeout);
    let json = cli.json;
    match &cli.command {
        Command::Status => {
            let status = api()?.get("/api/status", &[]).await?;
            if json {
                write_json(&status, out)?;
            } else {
                write_fields_in_order(&status, STATUS_ORDER, out)?;
            }
        }
        Command::Incidents {
            status,
            target,
            limit,
            offset,
        } => {
            let mut query = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
            if let Some(s) = status {
                query.push(("status", s.clone()));
            }
            if let Some(t) = target {
                query.push(("target", t.clone()));
            }
            let page = api()?.get("/api/incidents", &query).await?;
            if json {
                write_json(&page, out)?;
            } else {
                incidents_table(&page, out)?;
            }
        }
        Command::Approvals => {
            let pending = api()?.get("/api/approvals", &[]).await?;
            if json {
                write_json(&pending, out)?;
            } else {
                approvals_table(&pending, out)?;
            }
        }
        Command::Approve { id } => {
            let decided = api()?
                .post(&format!("/api/approvals/{id}/approve"), None)
                .await?;
            decision(&decided, id, "approved", json, out)?;
        }
        Command::Reject { id, reason } => {
            let decided = api()?
                .post(
                    &format!("/api/approvals/{id}/reject"),
                    Some(json!({ "reason": reason })),
                )
                .await?;
            decision(&decided, id, "rejected", json, out)?;
        }
        Command::Silence {
            target,
            duration,
            reason,
        } => {
            let mut body = json!({ "target": target, "duration": duration });
            if let Some(r) = reason {
                body["reason"] = json!(r);
            }
            let made = api()?.post("/api/silences", Some(body)).await?;
            if json {
                write_json(&made, out)?;
            } else {
                let id = text(&made, "/id");
                writeln!(
                    out,
                    "silenced `{target}` for {duration} (silence {id}; lift it with `selfheal unsilence {id}`)"
                )?;
            }
        }
        Command::Silences => {
            let silences = api()?.get("/api/silences", &[]).await?;
            if json {
                write_json(&silences, out)?;
            } else {
                silences_table(&silences, out)?;
            }
        }
        Command::Unsilence { id } => {
            let answer = api()?.delete(&format!("/api/silences/{id}")).await?;
            if json {
                // 204: the API says nothing; print whatever it did say, if anything.
                if !answer.is_null() {
                    write_json(&answer, out)?;
                }
            } else {
                writeln!(
                    out,
                    "lifted silence {id}: healing of what it matched resumes"
                )?;
            }
        }
        Command::DryRun { state, pattern } => {
            let on = *state == OnOff::On;
            let body = json!({ "on": on, "pattern": pattern });
            let now = api()?.put("/api/dry-run", body).await?;
            if json {
                write_json(&now, out)?;
            } else {
                let shown = now.get("dry_run").and_then(Value::as_bool).unwrap_or(on);
                let scope = match pattern {
                    Some(p) => format!("for pattern `{p}`"),
                    None => "for the whole healer".to_owned(),
                };
                writeln!(
                    out,
                    "dry run {} {scope}{}",
                    if shown { "on" } else { "off" },
                    if shown {
                        ": fixes are planned and logged, none runs"
                    } else {
                        ": fixes run"
                    }
                )?;
            }
        }
        Command::Audit {
            command: AuditCommand::Verify { store },
        } => {
            let (verdict, note) = if store.any() {
                let opened = ReadStore::open(store).await?;
                let verdict = opened.verify().await;
                let note = opened.note.clone();
                opened.close().await;
                (verdict?, note)
            } else {
                (api()?.get("/api/audit/verify", &[]).await?, None)
            };
            if json {
                write_json(&verdict, out)?;
            } else {
                if let Some(note) = note {
                    writeln!(out, "note: {note}")?;
                }
                write_verdict(&verdict, out)?;
            }
            if verdict.get("ok").and_then(Value::as_bool) != Some(true) {
                return Err(CliError::failed(broken_message(&verdict)));
            }
        }
        Command::Patterns {
            command: PatternsCommand::Export { store, source },
        } => {
            let document = if store.any() {
                let opened = ReadStore::open(store).await?;
                let patterns = opened.patterns().await;
                let source = source.clone().unwrap_or_else(|| opened.location.clone());
                opened.close().await;
                let text = selfheal_core::catalog::export(&patterns?, &source)?;
                serde_json::from_str(&text)
                    .map_err(|e| CliError::failed(format!("the export does not read back: {e}")))?
            } else {
                let query: Vec<(&str, String)> =
                    source.iter().map(|s| ("source", s.clone())).collect();
                api()?.get("/api/patterns/export", &query).await?
            };
            // A document to keep or import: JSON either way.
            write_json(&document, out)?;
        }
    }
    Ok(())
}

fn incidents_table(page: &Value, out: &mut dyn Write) -> CliResult {
    let items = page
        .get("items")
        .or(Some(page))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if items.is_empty() {
        writeln!(out, "no incidents")?;
        return Ok(());
    }
    let mut table = Table::new(vec![
        "ID", "STATUS", "SEVERITY", "TARGET", "PATTERN", "SEEN", "OPENED", "ERROR",
    ]);
    for i in &items {
        table.row(vec![
            text(i, "/id"),
            text(i, "/status"),
            text(i, "/severity"),
            text(i, "/target"),
            text(i, "/pattern"),
            text(i, "/occurrences"),
            time(i, "/opened_at"),
            clip(&text(i, "/template"), 60),
        ]);
    }
    table.write(out)?;
    if let Some(total) = page.get("total").and_then(Value::as_u64) {
        writeln!(
            out,
            "{} of {total} (from {})",
            items.len(),
            text(page, "/offset")
        )?;
    }
    Ok(())
}

fn silences_table(silences: &Value, out: &mut dyn Write) -> CliResult {
    let items = silences.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        writeln!(out, "no silences")?;
        return Ok(());
    }
    let mut table = Table::new(vec![
        "ID",
        "SCOPE",
        "ENDS",
        "ACTIVE",
        "SUPPRESSED",
        "REASON",
    ]);
    for s in &items {
        let scope = match s.pointer("/silence/scope/kind").and_then(Value::as_str) {
            Some(kind) => format!("{kind}:{}", text(s, "/silence/scope/value")),
            None => text(s, "/silence/scope"),
        };
        let reason = text(s, "/silence/reason");
        table.row(vec![
            text(s, "/id"),
            clip(&scope, 40),
            time(s, "/silence/ends_at"),
            match s.get("active").and_then(Value::as_bool) {
                Some(true) => "yes".to_owned(),
                Some(false) => "no".to_owned(),
                None => "-".to_owned(),
            },
            text(s, "/suppressed"),
            if reason.is_empty() {
                "-".to_owned()
            } else {
                clip(&reason, 50)
            },
        ]);
    }
    table.write(out)?;
    Ok(())
}

fn approvals_table(pending: &Value, out: &mut dyn Write) -> CliResult {
    let items = pending.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        writeln!(out, "no approvals pending")?;
        return Ok(());
    }
    let mut table = Table::new(vec![
        "ID",
        "INCIDENT",
        "PATTERN",
        "STRATEGY",
        "TARGET",
        "RISK",
        "CONFIDENCE",
        "REQUESTED",
        "REASON",
    ]);
    for a in &items {
        table.row(vec![
            text(a, "/id"),
            text(a, "/incident"),
            text(a, "/pattern"),
            text(a, "/plan/strategy"),
            text(a, "/plan/target"),
            text(a, "/plan/risk"),
            text(a, "/confidence"),
            time(a, "/requested_at"),
            clip(&text(a, "/reason"), 50),
        ]);
    }
    table.write(out)?;
    Ok(())
}

fn decision(
    decided: &Value,
    id: &uuid::Uuid,
    verb: &str,
    json: bool,
    out: &mut dyn Write,
) -> CliResult {
    if json {
        write_json(decided, out)?;
    } else {
        let state = decided.get("state").and_then(Value::as_str).unwrap_or(verb);
        writeln!(
            out,
            "{state} {id} (by {}; strategy {} on {})",
            text(decided, "/decided_by"),
            text(decided, "/plan/strategy"),
            text(decided, "/plan/target"),
        )?;
    }
    Ok(())
}

fn write_verdict(verdict: &Value, out: &mut dyn Write) -> CliResult {
    let records = text(verdict, "/records");
    if verdict.get("ok").and_then(Value::as_bool) == Some(true) {
        let checkpoint = match verdict.pointer("/checkpoint/seq") {
            Some(seq) => format!(", checkpoint at seq {seq} matches"),
            None => String::new(),
        };
        writeln!(out, "audit chain intact: {records} records{checkpoint}")?;
    } else {
        writeln!(
            out,
            "audit chain BROKEN at seq {}: {} ({records} records read)",
            text(verdict, "/first_broken/seq"),
            text(verdict, "/first_broken/reason"),
        )?;
    }
    Ok(())
}

fn broken_message(verdict: &Value) -> String {
    format!(
        "the audit chain is broken at seq {}: {}",
        text(verdict, "/first_broken/seq"),
        text(verdict, "/first_broken/reason")
    )
}
