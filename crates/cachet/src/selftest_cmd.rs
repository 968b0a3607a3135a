//! `cachet selftest`: the mutation self-test over the real vectors.
//!
//! Runs `cachet_verify::selftest` over every case of `cases.json`: each
//! mutation (forged signed bytes, truncated or extended evidence, dropped or
//! swapped endorsements, collateral from another case, time outside the
//! window) must be refused by a named check. This is the long run of what
//! `cargo test --test mutations` does with a small count; it exits 1 if any
//! mutation was accepted, refused without a name, or panicked.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use cachet_verify::cache::VerifyCache;
use cachet_verify::selftest::{parse_cases, Engine, Subject};
use cachet_verify::{Endorsement, TrustAnchors};
use clap::Args;

/// The vectors folder when none is given: the repository's, from its root.
const DEFAULT_VECTORS: &str = "testdata/vectors";

/// Largest file read from the vectors folder (bytes).
const MAX_FILE_LEN: u64 = 16 << 20;

#[derive(Args)]
pub struct SelftestArgs {
    /// Number of mutations to run (spread round-robin over the cases).
    #[arg(long, default_value_t = 10_000)]
    pub mutations: u64,
    /// Seed: the same seed gives the same mutations.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Folder with `cases.json` and the evidence it names (the repository's
    /// testdata/vectors).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_VECTORS, env = "CACHET_VECTORS")]
    pub vectors: PathBuf,
    /// Only these cases (by id; may be repeated).
    #[arg(long = "case")]
    pub cases: Vec<String>,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Verify through a shared endorsement cache, warmed by the unmutated
    /// cases, to show the warm path refuses every forgery too.
    #[arg(long)]
    pub cached: bool,
    /// Replay one mutation by its index (as printed in a finding) and show
    /// what was changed and what the verifier said.
    #[arg(long)]
    pub index: Option<u64>,
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    crate::exit::usage("selftest", msg)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    crate::verify_cmd::read_limited(path, MAX_FILE_LEN)
}

/// The files of an endorsement path (a folder's regular files, sorted).
fn endorsement_files(root: &Path, rel: &str) -> Result<Vec<Endorsement>, String> {
    let p = root.join(rel);
    let mut paths = Vec::new();
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&p)
            .map_err(|e| format!("{}: {e}", p.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.is_file())
            .collect();
        entries.sort();
        paths.extend(entries);
    } else {
        paths.push(p);
    }
    paths.into_iter().map(|f| Ok(Endorsement { name: f.display().to_string(), bytes: read(&f)? })).collect()
}

fn subjects(args: &SelftestArgs) -> Result<Vec<Subject>, String> {
    let cases = args.vectors.join("cases.json");
    let text = std::fs::read_to_string(&cases).map_err(|e| {
        let default = args.vectors == Path::new(DEFAULT_VECTORS);
        format!(
            "no test vectors at {} ({e}){}: pass --vectors DIR (or set CACHET_VECTORS) to the folder holding cases.json, \
             testdata/vectors in the Cachet repository",
            cases.display(),
            if default { ", the default, read relative to the current directory" } else { "" }
        )
    })?;
    let mut out = Vec::new();
    for c in parse_cases(&text)? {
        if !args.cases.is_empty() && !args.cases.contains(&c.id) {
            continue;
        }
        let mut ends = Vec::new();
        for e in &c.endorsements {
            ends.extend(endorsement_files(&args.vectors, e)?);
        }
        let raw = read(&args.vectors.join(&c.evidence))?;
        out.push(c.subject(&raw, ends)?);
    }
    if out.is_empty() {
        return Err("no cases selected".into());
    }
    Ok(out)
}

pub fn run(args: SelftestArgs) -> ExitCode {
    let subjects = match subjects(&args) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    let cache = args.cached.then(|| Arc::new(VerifyCache::default()));
    let started = Instant::now();
    let engine = Engine::new(subjects, TrustAnchors::pinned(), cache.clone());
    eprintln!("prepared {} cases in {:.1} s", engine.cases().len(), started.elapsed().as_secs_f64());
    if let Some(i) = args.index {
        return replay(&engine, args.seed, i);
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let total = args.mutations;
    let t0 = Instant::now();
    let progress = |n: u64| {
        if n.is_multiple_of(10_000) {
            eprintln!("  {n}/{total} mutations, {:.0} s", t0.elapsed().as_secs_f64());
        }
    };
    let report = engine.run(args.seed, total, threads, &progress);
    let secs = t0.elapsed().as_secs_f64();
    println!("{report}");
    println!(
        "{} cases, {} threads, {:.1} s ({:.0} mutations/s){}",
        engine.cases().len(),
        threads,
        secs,
        report.total.tried as f64 / secs.max(1e-9),
        cache.map(|c| format!(", cache {:?}", c.stats())).unwrap_or_default()
    );
    if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn replay(engine: &Engine, seed: u64, index: u64) -> ExitCode {
    let Some(m) = engine.mutation(seed, index) else {
        return usage_error("no mutation for that index");
    };
    let case = engine.cases().get(m.case).map(|c| c.subject.id.as_str()).unwrap_or("?");
    let (out, verdict) = engine.judge(&m);
    println!("case      {case}");
    println!("mutation  #{index} (seed {seed}) {}", m.kind.name());
    println!("change    {}", m.detail);
    println!("at        {}", cachet_verify::x509::fmt_time(m.at));
    println!("expected  {:?}", m.expect);
    println!("result    {out}");
    println!("verdict   {verdict:?}");
    let base = engine.cases().get(m.case).map(|c| &c.base);
    if let (cachet_verify::selftest::Outcome::Accepted(now), Some(cachet_verify::selftest::Outcome::Accepted(was))) = (&out, base) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        flatten("", was, &mut a);
        flatten("", now, &mut b);
        for (k, v) in &b {
            match a.iter().find(|(k2, _)| k2 == k) {
                Some((_, v0)) if v0 == v => {}
                Some((_, v0)) => println!("claim     {k}: {v0} -> {v}"),
                None => println!("claim     {k}: (absent) -> {v}"),
            }
        }
        for (k, v0) in &a {
            if !b.iter().any(|(k2, _)| k2 == k) {
                println!("claim     {k}: {v0} -> (absent)");
            }
        }
    }
    if verdict.is_finding() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Claims as (JSON pointer, value) pairs, for showing what a mutation changed.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => m.iter().for_each(|(k, x)| flatten(&format!("{prefix}/{k}"), x, out)),
        serde_json::Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| flatten(&format!("{prefix}/{i}"), x, out)),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}
