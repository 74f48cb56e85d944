//! Loghub-2k: how well and how fast both fingerprinters group real logs.
//!
//! ```sh
//! cargo run --release --example loghub_eval -- /path/to/loghub-2k
//! cargo run --release --example loghub_eval -- /path/to/loghub-2k --explain Mac   # what it got wrong
//! ```
//!
//! For each of the 16 systems it splits the header off every line with the system's
//! `log_format` from `settings.json` (the only thing that differs between systems),
//! fingerprints the content with the [`Normalizer`] and with a fresh [`TemplateMiner`]
//! (one configuration for all), and scores the grouping against the
//! `*_structured_corrected.csv` labels:
//!
//! - GA, grouping accuracy (Zhu et al., ICSE-SEIP 2019): the share of lines whose
//!   predicted group holds exactly the lines of their true template;
//! - FGA (Jiang et al., ISSTA 2024): the F1 of predicted groups that are exactly a true one.
//!
//! Throughput is single-threaded over the contents already in memory: each line becomes a
//! full `Fingerprint` (template, 16-hex sha256 id), and the miner learns as it goes (a
//! fresh miner per system and per run). The best of several runs is kept.
//!
//! Loghub: Jieming Zhu, Shilin He, Pinjia He, Jinyang Liu, Michael R. Lyu.
//! "Loghub: A Large Collection of System Log Datasets for AI-driven Log Analytics." ISSRE 2023.
#![allow(clippy::print_stdout, clippy::print_stderr)] // an example talks to its user

use std::collections::HashMap;
use std::error::Error;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use regex::Regex;
use selfheal::Normalizer;
use selfheal::fingerprint::{MinerConfig, TemplateMiner};
use sha2::{Digest, Sha256};

const SYSTEMS: [&str; 16] = [
    "HDFS",
    "Hadoop",
    "Spark",
    "Zookeeper",
    "BGL",
    "HPC",
    "Thunderbird",
    "Windows",
    "Linux",
    "Android",
    "HealthApp",
    "Apache",
    "Proxifier",
    "OpenSSH",
    "OpenStack",
    "Mac",
];

/// Timed runs per system and fingerprinter; the fastest counts.
const RUNS: usize = 7;

struct System {
    name: &'static str,
    contents: Vec<String>,
    truth: Vec<u32>,
    truth_templates: Vec<String>,
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let root = args
        .next()
        .ok_or("usage: loghub_eval <path to loghub-2k> [--explain SYSTEM]")?;
    let explain = match (args.next().as_deref(), args.next()) {
        (Some("--explain"), Some(system)) => Some(system),
        (None, _) => None,
        _ => return Err("usage: loghub_eval <path to loghub-2k> [--explain SYSTEM]".into()),
    };
    let root = Path::new(&root);
    let settings: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("settings.json"))
            .map_err(|e| format!("{}: {e}; fix: pass the loghub-2k directory", root.display()))?,
    )?;
    let mut config = MinerConfig::default();
    // For exploring: one value, still applied to all systems alike.
    if let Ok(s) = std::env::var("MINER_SIMILARITY") {
        config.similarity = s.parse()?;
    }
    if let Ok(s) = std::env::var("MINER_MAX_VARIANTS") {
        config.max_variants = s.parse()?;
    }
    println!(
        "Loghub-2k, {} systems; miner config: {config:?}",
        SYSTEMS.len()
    );
    println!(
        "{:<12} {:>7} {:>7} {:>7} {:>7} {:>12} {:>12}",
        "system", "norm GA", "FGA", "miner GA", "FGA", "norm l/s", "miner l/s"
    );
    let (mut sums, mut lines, mut t_norm, mut t_miner) =
        ([0.0f64; 4], 0usize, Duration::ZERO, Duration::ZERO);
    let (mut t_template, mut t_sha, mut t_group) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    // Templates that change when normalized again (replaying them would move them).
    let mut unstable = 0usize;
    for name in SYSTEMS {
        let system = load(root, name, &settings)?;
        let n = system.contents.len();

        let normalizer = Normalizer::default();
        let mut buf = String::new();
        let mut ids: HashMap<String, u32> = HashMap::new();
        let norm_pred: Vec<u32> = system
            .contents
            .iter()
            .map(|c| {
                normalizer.template_into(c.as_bytes(), &mut buf);
                unstable += usize::from(normalizer.template(&buf) != buf);
                let next = ids.len() as u32;
                *ids.entry(buf.clone()).or_insert(next)
            })
            .collect();
        let norm_time = best_of(|| {
            for c in &system.contents {
                black_box(normalizer.fingerprint_bytes("svc", c.as_bytes()));
            }
        });

        t_template += best_of(|| {
            for c in &system.contents {
                normalizer.template_into(c.as_bytes(), &mut buf);
                black_box(&buf);
            }
        });
        t_group += best_of(|| {
            let miner = TemplateMiner::new(config.clone());
            for c in &system.contents {
                black_box(miner.add(c.as_bytes()));
            }
        });
        t_sha += best_of(|| {
            for c in &system.contents {
                black_box(Sha256::digest(c.as_bytes()));
            }
        });

        let miner = TemplateMiner::new(config.clone());
        let miner_pred: Vec<u32> = {
            let clusters: Vec<_> = system
                .contents
                .iter()
                .map(|c| miner.add(c.as_bytes()))
                .collect();
            // Each line's group is the cluster that answers for it at the end (variants
            // merged since answer with their cluster's id), as Drain is scored.
            let mut ids = HashMap::new();
            clusters
                .iter()
                .map(|c| {
                    let next = ids.len() as u32;
                    *ids.entry(miner.resolve(*c)).or_insert(next)
                })
                .collect()
        };
        let miner_time = best_of(|| {
            let miner = TemplateMiner::new(config.clone());
            for c in &system.contents {
                black_box(miner.fingerprint_bytes("svc", c.as_bytes()));
            }
        });

        let (ng, nf) = accuracy(&norm_pred, &system.truth);
        let (mg, mf) = accuracy(&miner_pred, &system.truth);
        println!(
            "{:<12} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>12.0} {:>12.0}",
            name,
            ng,
            nf,
            mg,
            mf,
            n as f64 / norm_time.as_secs_f64(),
            n as f64 / miner_time.as_secs_f64()
        );
        for (s, v) in sums.iter_mut().zip([ng, nf, mg, mf]) {
            *s += v;
        }
        lines += n;
        t_norm += norm_time;
        t_miner += miner_time;

        if explain.as_deref() == Some(name) {
            let templates: Vec<String> = system
                .contents
                .iter()
                .map(|c| {
                    let id = miner.add(c.as_bytes());
                    miner.template(id).unwrap_or_default()
                })
                .collect();
            explain_errors(&system, &miner_pred, &templates);
        }
    }
    let k = SYSTEMS.len() as f64;
    println!(
        "{:<12} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>12.0} {:>12.0}",
        "average",
        sums[0] / k,
        sums[1] / k,
        sums[2] / k,
        sums[3] / k,
        lines as f64 / t_norm.as_secs_f64(),
        lines as f64 / t_miner.as_secs_f64()
    );
    println!(
        "{lines} lines; normalizer {:.0} lines/s, miner {:.0} lines/s (one thread, full Fingerprint per line, best of {RUNS})",
        lines as f64 / t_norm.as_secs_f64(),
        lines as f64 / t_miner.as_secs_f64()
    );
    println!("templates that change when normalized again: {unstable} of {lines}");
    println!(
        "without the sha256 id: normalizer template (reused buffer) {:.0} lines/s, miner cluster id {:.0} lines/s; \
         sha256 of each line alone {:.0} lines/s",
        lines as f64 / t_template.as_secs_f64(),
        lines as f64 / t_group.as_secs_f64(),
        lines as f64 / t_sha.as_secs_f64()
    );
    Ok(())
}

fn best_of(mut f: impl FnMut()) -> Duration {
    (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or(Duration::MAX)
}

/// The header regex of a Loghub `log_format`, as the Loghub benchmark builds it: each
/// `<Field>` becomes a lazy named group, runs of spaces match any whitespace.
fn header_regex(format: &str) -> Result<Regex, Box<dyn Error>> {
    let mut pattern = String::from("^");
    let mut rest = format;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>').map(|c| open + c) else {
            break;
        };
        let field = &rest[open + 1..close];
        if field.contains('<') {
            pattern.push_str(&spaces(&rest[..open + 1]));
            rest = &rest[open + 1..];
            continue;
        }
        pattern.push_str(&spaces(&rest[..open]));
        pattern.push_str(&format!("(?P<{field}>.*?)"));
        rest = &rest[close + 1..];
    }
    pattern.push_str(&spaces(rest));
    pattern.push('$');
    Ok(Regex::new(&pattern)?)
}

fn spaces(literal: &str) -> String {
    let mut out = String::new();
    let mut in_space = false;
    for c in literal.chars() {
        if c == ' ' {
            if !in_space {
                out.push_str(r"\s+");
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

fn load(
    root: &Path,
    name: &'static str,
    settings: &serde_json::Value,
) -> Result<System, Box<dyn Error>> {
    let format = settings[name]["log_format"]
        .as_str()
        .ok_or_else(|| format!("settings.json has no log_format for {name}"))?;
    let re = header_regex(format)?;
    let log = std::fs::read(root.join(name).join(format!("{name}_2k.log")))?;
    let log = String::from_utf8_lossy(&log);
    let contents: Vec<String> = log
        .lines()
        .filter_map(|line| {
            re.captures(line.trim())
                .and_then(|c| c.name("Content").map(|m| m.as_str().to_owned()))
        })
        .collect();

    let mut csv = csv::Reader::from_path(
        root.join(name)
            .join(format!("{name}_2k.log_structured_corrected.csv")),
    )?;
    let headers = csv.headers()?.clone();
    let col = |h: &str| {
        headers
            .iter()
            .position(|x| x == h)
            .ok_or_else(|| format!("{name}: no {h} column"))
    };
    let (template_col, content_col) = (col("EventTemplate")?, col("Content")?);
    let mut truth_ids: HashMap<String, u32> = HashMap::new();
    let mut truth = Vec::new();
    let mut truth_templates = Vec::new();
    let mut differing = 0;
    for (i, record) in csv.records().enumerate() {
        let record = record?;
        let template = record[template_col].to_owned();
        if contents.get(i).map(|c| c.trim()) != Some(record[content_col].trim()) {
            differing += 1;
        }
        let next = truth_ids.len() as u32;
        truth.push(*truth_ids.entry(template.clone()).or_insert(next));
        truth_templates.push(template);
    }
    if truth.len() != contents.len() {
        return Err(format!(
            "{name}: {} lines parsed but {} labels; fix: check settings.json's log_format",
            contents.len(),
            truth.len()
        )
        .into());
    }
    if differing > 0 {
        eprintln!("{name}: {differing} parsed contents differ from the labelled Content column");
    }
    Ok(System {
        name,
        contents,
        truth,
        truth_templates,
    })
}

/// (GA, FGA) of `pred` against `truth`, both one group id per line.
fn accuracy(pred: &[u32], truth: &[u32]) -> (f64, f64) {
    let mut pred_groups: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, p) in pred.iter().enumerate() {
        pred_groups.entry(*p).or_default().push(i);
    }
    let mut truth_sizes: HashMap<u32, usize> = HashMap::new();
    for t in truth {
        *truth_sizes.entry(*t).or_default() += 1;
    }
    let mut correct_lines = 0;
    let mut correct_groups = 0;
    for lines in pred_groups.values() {
        let t = truth[lines[0]];
        if lines.iter().all(|&i| truth[i] == t) && truth_sizes[&t] == lines.len() {
            correct_lines += lines.len();
            correct_groups += 1;
        }
    }
    let ga = correct_lines as f64 / pred.len().max(1) as f64;
    let p = correct_groups as f64 / pred_groups.len().max(1) as f64;
    let r = correct_groups as f64 / truth_sizes.len().max(1) as f64;
    let fga = if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    };
    (ga, fga)
}

/// Prints the predicted groups that are not exactly a true one.
fn explain_errors(system: &System, pred: &[u32], templates: &[String]) {
    let mut groups: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, p) in pred.iter().enumerate() {
        groups.entry(*p).or_default().push(i);
    }
    let mut truth_groups: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, t) in system.truth.iter().enumerate() {
        truth_groups.entry(*t).or_default().push(i);
    }
    println!(
        "\n{}: groups that are not exactly one true template",
        system.name
    );
    let mut shown = 0;
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    for lines in &groups {
        let t = system.truth[lines[0]];
        let mixed: std::collections::BTreeSet<u32> =
            lines.iter().map(|&i| system.truth[i]).collect();
        if mixed.len() == 1 && truth_groups[&t].len() == lines.len() {
            continue;
        }
        shown += 1;
        if shown > 40 {
            continue;
        }
        println!("- miner {:?} ({} lines)", templates[lines[0]], lines.len());
        for m in &mixed {
            let first = truth_groups[m][0];
            let here = lines.iter().filter(|&&i| system.truth[i] == *m).count();
            println!(
                "    truth {:?}: {here} here of {}; e.g. {:?}",
                system.truth_templates[first],
                truth_groups[m].len(),
                system.contents[*lines
                    .iter()
                    .find(|&&i| system.truth[i] == *m)
                    .unwrap_or(&first)]
            );
        }
    }
    println!("({shown} wrong groups)");
}
