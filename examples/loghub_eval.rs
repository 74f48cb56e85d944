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
//! - FGA (Jiang et al., ISSTA 2024): the F1 of predicted groups that are exactly a true one;
//! - PA, parsing accuracy: the share of lines whose template is exactly their true
//!   template;
//! - FTA (Jiang et al., ISSTA 2024): the F1 of predicted templates that are right: a
//!   predicted group that is exactly a true one and whose template is its true template
//!   (precision over the predicted groups, recall over the true templates).
//!
//! A line's template is the normalizer's template, or the template its miner cluster has
//! at the end (as Drain is scored). Both sides are compared after the usual
//! normalisation of masks (Khan et al., ICSE 2022, as the Loghub-2.0 evaluation applies
//! it): runs of spaces are one space, a token of digits only is a value, a token glued to
//! a value (`blk_<*>`, `<*>ms`) is one value, and values next to each other or joined by
//! `.`, `:`, `/`, `#` or `@` (`<*>.<*>`, `<*>:<*>`) are one value; a quoted lone value
//! (`"<*>"`, `'<*>'`) loses its quotes.
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
    /// `truth_templates` after [`canonical`].
    truth_canonical: Vec<String>,
}

/// How well one fingerprinter did on one system.
#[derive(Default, Clone, Copy)]
struct Scores {
    ga: f64,
    fga: f64,
    pa: f64,
    fta: f64,
}

impl Scores {
    fn add(&mut self, other: Scores) {
        self.ga += other.ga;
        self.fga += other.fga;
        self.pa += other.pa;
        self.fta += other.fta;
    }

    fn divided(self, k: f64) -> Scores {
        Scores {
            ga: self.ga / k,
            fga: self.fga / k,
            pa: self.pa / k,
            fta: self.fta / k,
        }
    }
}

impl std::fmt::Display for Scores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>6.3} {:>6.3} {:>6.3} {:>6.3}",
            self.ga, self.fga, self.pa, self.fta
        )
    }
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
        "{:<12} {:>27} | {:>27} | {:>10} {:>10}",
        "", "normalizer", "miner", "normalizer", "miner"
    );
    println!(
        "{:<12} {:>6} {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6} {:>6} | {:>10} {:>10}",
        "system", "GA", "FGA", "PA", "FTA", "GA", "FGA", "PA", "FTA", "lines/s", "lines/s"
    );
    let (mut norm_sum, mut miner_sum) = (Scores::default(), Scores::default());
    let (mut lines, mut t_norm, mut t_miner) = (0usize, Duration::ZERO, Duration::ZERO);
    let (mut t_template, mut t_sha, mut t_group) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    // Templates that change when normalized again (replaying them would move them).
    let mut unstable = 0usize;
    for name in SYSTEMS {
        let system = load(root, name, &settings)?;
        let n = system.contents.len();

        let normalizer = Normalizer::default();
        let mut buf = String::new();
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut norm_templates = Vec::with_capacity(n);
        let norm_pred: Vec<u32> = system
            .contents
            .iter()
            .map(|c| {
                normalizer.template_into(c.as_bytes(), &mut buf);
                unstable += usize::from(normalizer.template(&buf) != buf);
                norm_templates.push(buf.clone());
                let next = ids.len() as u32;
                *ids.entry(buf.clone()).or_insert(next)
            })
            .collect();
        // Each pass fingerprints for a service of its own: a system is only 2,000 lines,
        // and the per-thread line and id memos would answer a pass from the one before.
        let mut pass = 0;
        let norm_time = best_of(|| {
            pass += 1;
            let service = format!("svc-{pass}");
            for c in &system.contents {
                black_box(normalizer.fingerprint_bytes(&service, c.as_bytes()));
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
        let (miner_pred, miner_templates): (Vec<u32>, Vec<String>) = {
            let clusters: Vec<_> = system
                .contents
                .iter()
                .map(|c| miner.add(c.as_bytes()))
                .collect();
            // Each line's group is the cluster that answers for it at the end (variants
            // merged since answer with their cluster's id), with the template it has
            // then, as Drain is scored.
            let mut ids = HashMap::new();
            clusters
                .iter()
                .map(|c| {
                    let next = ids.len() as u32;
                    let root = miner.resolve(*c);
                    let template = miner.template(root).unwrap_or_default();
                    (*ids.entry(root).or_insert(next), template)
                })
                .unzip()
        };
        let miner_time = best_of(|| {
            let miner = TemplateMiner::new(config.clone());
            for c in &system.contents {
                black_box(miner.fingerprint_bytes("svc", c.as_bytes()));
            }
        });

        let norm = accuracy(&norm_pred, &norm_templates, &system);
        let mined = accuracy(&miner_pred, &miner_templates, &system);
        println!(
            "{:<12} {norm} | {mined} | {:>10.0} {:>10.0}",
            name,
            n as f64 / norm_time.as_secs_f64(),
            n as f64 / miner_time.as_secs_f64()
        );
        norm_sum.add(norm);
        miner_sum.add(mined);
        lines += n;
        t_norm += norm_time;
        t_miner += miner_time;

        if explain.as_deref() == Some(name) {
            explain_errors(&system, &miner_pred, &miner_templates);
        }
    }
    let k = SYSTEMS.len() as f64;
    println!(
        "{:<12} {} | {} | {:>10.0} {:>10.0}",
        "average",
        norm_sum.divided(k),
        miner_sum.divided(k),
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
    let mut truth_canonical = Vec::new();
    let mut differing = 0;
    for (i, record) in csv.records().enumerate() {
        let record = record?;
        let template = record[template_col].to_owned();
        if contents.get(i).map(|c| c.trim()) != Some(record[content_col].trim()) {
            differing += 1;
        }
        let next = truth_ids.len() as u32;
        truth.push(*truth_ids.entry(template.clone()).or_insert(next));
        truth_canonical.push(canonical(&template));
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
        truth_canonical,
    })
}

/// GA, FGA, PA and FTA of `pred` (a group id per line) and `templates` (a template per
/// line) against the system's truth.
fn accuracy(pred: &[u32], templates: &[String], system: &System) -> Scores {
    let truth = &system.truth;
    let mut pred_groups: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, p) in pred.iter().enumerate() {
        pred_groups.entry(*p).or_default().push(i);
    }
    let mut truth_sizes: HashMap<u32, usize> = HashMap::new();
    for t in truth {
        *truth_sizes.entry(*t).or_default() += 1;
    }
    let mut canonical_of: HashMap<&str, String> = HashMap::new();
    let mut right_template = |i: usize| {
        let produced = canonical_of
            .entry(templates[i].as_str())
            .or_insert_with(|| canonical(&templates[i]));
        *produced == system.truth_canonical[i]
    };
    let (mut correct_lines, mut correct_groups, mut correct_templates) = (0, 0, 0);
    for lines in pred_groups.values() {
        let t = truth[lines[0]];
        if lines.iter().all(|&i| truth[i] == t) && truth_sizes[&t] == lines.len() {
            correct_lines += lines.len();
            correct_groups += 1;
            // One template per group: its first line's.
            correct_templates += usize::from(right_template(lines[0]));
        }
    }
    let parsed = (0..pred.len()).filter(|&i| right_template(i)).count();
    let n = pred.len().max(1) as f64;
    let (produced, expected) = (
        pred_groups.len().max(1) as f64,
        truth_sizes.len().max(1) as f64,
    );
    Scores {
        ga: correct_lines as f64 / n,
        fga: f1(
            correct_groups as f64 / produced,
            correct_groups as f64 / expected,
        ),
        pa: parsed as f64 / n,
        fta: f1(
            correct_templates as f64 / produced,
            correct_templates as f64 / expected,
        ),
    }
}

fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// A template after the usual normalisation of masks, so that `<*>` written by a tool and
/// by the labels compare equal however the value was split: runs of whitespace become
/// one space; a token (split at spaces and punctuation, which is kept) that is all
/// digits, or that holds a value and no `/`, is one value; values next to each other or
/// joined by `.`, `:`, `/`, `#` or `@` are one value; a quoted lone value loses its quotes.
fn canonical(template: &str) -> String {
    const MASK: &str = "<*>";
    let spaced = template.split_whitespace().collect::<Vec<_>>().join(" ");
    let is_delimiter = |c: char| c.is_whitespace() || ",!;:=|\"'[](){}.-+@#$%&".contains(c);
    let mut out = String::with_capacity(spaced.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
        let glued = token.contains(MASK) && !token.contains('/');
        out.push_str(if digits || glued { MASK } else { token });
        token.clear();
    };
    for c in spaced.chars() {
        if is_delimiter(c) {
            flush(&mut token, &mut out);
            out.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out);
    let joined = [
        "<*><*>", "<*>.<*>", "<*>:<*>", "<*>#<*>", "<*>/<*>", "<*>@<*>",
    ];
    let quoted = [
        (" \"<*>\" ", " <*> "),
        (" '<*>' ", " <*> "),
        (" #<*># ", " <*> "),
        (" #<*> ", " <*> "),
    ];
    loop {
        let before = out.len();
        for j in joined {
            while out.contains(j) {
                out = out.replace(j, MASK);
            }
        }
        for (from, to) in quoted {
            while out.contains(from) {
                out = out.replace(from, to);
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

/// Prints the predicted groups that are not exactly a true one, then those that are but
/// whose template is not the true one.
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
    println!(
        "\n{}: right groups with another template (both after the normalisation of masks)",
        system.name
    );
    let mut shown = 0;
    for lines in &groups {
        let (first, t) = (lines[0], system.truth[lines[0]]);
        let right_group =
            lines.iter().all(|&i| system.truth[i] == t) && truth_groups[&t].len() == lines.len();
        let produced = canonical(&templates[first]);
        if !right_group || produced == system.truth_canonical[first] {
            continue;
        }
        shown += 1;
        if shown <= 40 {
            println!(
                "- miner {produced:?} ({} lines)\n    truth {:?}",
                lines.len(),
                system.truth_canonical[first]
            );
        }
    }
    println!("({shown} right groups with another template)");
}
