//! Mutation testing over every case of `testdata/vectors/cases.json`.
//!
//! Each mutation (bit flips, swapped bytes, inserted bytes, truncation and
//! extension of the evidence and of load-bearing endorsements, swapped JSON
//! fields, dropped endorsement parts, collateral from another case, time
//! outside the window) must be refused by a named check: never accepted,
//! never a panic (see `cachet_verify::selftest` for the oracle). The default
//! run is small and uses a fixed seed so `cargo test` stays quick and
//! repeatable; `CACHET_MUTATIONS=N CACHET_SEED=S` make it longer, and
//! `cachet selftest --mutations N --seed S` is the long run.

mod common;

use std::sync::Arc;

use cachet_verify::cache::VerifyCache;
use cachet_verify::selftest::{parse_cases, Engine, Outcome, Subject};
use cachet_verify::{Endorsement, Tee, TrustAnchors};

/// Default seed of the test run.
const SEED: u64 = 0x00ca_c4e7;
/// Default mutations per case.
const PER_CASE: u64 = 24;

fn read_endorsements(paths: &[String]) -> Vec<Endorsement> {
    let mut out = Vec::new();
    for e in paths {
        let p = common::vectors_dir().join(e);
        if p.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(&p).expect("folder").filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for f in files.into_iter().filter(|f| f.is_file()) {
                out.push(Endorsement { name: f.display().to_string(), bytes: std::fs::read(&f).expect("file") });
            }
        } else {
            out.push(Endorsement { name: e.clone(), bytes: std::fs::read(&p).expect("endorsement file") });
        }
    }
    out
}

/// Every case of cases.json, read.
fn subjects() -> Vec<(Subject, String)> {
    let text = std::fs::read_to_string(common::vectors_dir().join("cases.json")).expect("cases.json");
    let specs = parse_cases(&text).expect("cases.json parses");
    specs
        .into_iter()
        .map(|c| {
            let raw = std::fs::read(common::vectors_dir().join(&c.evidence)).expect("evidence file");
            let s = c.subject(&raw, read_endorsements(&c.endorsements)).expect("case");
            (s, c.expect)
        })
        .collect()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn engine(cache: Option<Arc<VerifyCache>>) -> (Engine, Vec<String>) {
    let (subjects, expects): (Vec<_>, Vec<_>) = subjects().into_iter().unzip();
    (Engine::new(subjects, TrustAnchors::pinned(), cache), expects)
}

#[test]
fn every_case_has_signed_parts_and_accept_cases_verify() {
    let (engine, expects) = engine(None);
    assert!(engine.cases().len() >= 30, "cases.json has the real vectors");
    for (p, expect) in engine.cases().iter().zip(&expects) {
        let (ev, end) = p.signed_blobs();
        println!(
            "{:<28} {:<12} base {:<40} signed parts: {ev} in evidence, {end} in endorsements",
            p.subject.id,
            p.subject.tee.as_str(),
            short(&p.base)
        );
        if p.window != (p.subject.valid_from, p.subject.valid_to) {
            let f = |t: Option<i64>| t.map(cachet_verify::x509::fmt_time).unwrap_or_default();
            println!(
                "    window observed [{}, {}) differs from cases.json [{}, {})",
                f(p.window.0),
                f(p.window.1),
                f(p.subject.valid_from),
                f(p.subject.valid_to)
            );
        }
        assert!(ev > 0, "{}: no signed bytes found in the evidence, nothing would be mutated", p.subject.id);
        if matches!(p.base, Outcome::Accepted(_)) {
            assert!(p.window.0.is_some() || p.window.1.is_some(), "{}: accepted at every instant: no validity check at all", p.subject.id);
        }
        if expect == "accept" {
            assert!(
                matches!(p.base, Outcome::Accepted(_)),
                "{}: an accept case must verify before it is mutated: {}",
                p.subject.id,
                p.base
            );
        }
    }
    // Families whose evidence carries or needs endorsements have signed endorsement parts.
    for tee in [Tee::Sgx, Tee::Tdx, Tee::Snp, Tee::Nvgpu] {
        assert!(
            engine.cases().iter().any(|p| p.subject.tee == tee && p.signed_blobs().1 > 0),
            "{tee}: no load-bearing endorsement found to mutate"
        );
    }
}

fn short(o: &Outcome) -> String {
    let s = o.to_string();
    s.chars().take(40).collect()
}

#[test]
fn mutations_are_refused() {
    let (engine, _) = engine(None);
    let seed = env_u64("CACHET_SEED").unwrap_or(SEED);
    let count = env_u64("CACHET_MUTATIONS").unwrap_or(PER_CASE * engine.cases().len() as u64);
    let report = engine.run(seed, count, 2, &|_| {});
    println!("{report}");
    assert_eq!(report.total.tried, count, "every mutation was generated and run");
    assert_eq!(report.panicked, 0, "panics:\n{report}");
    assert!(report.clean(), "mutations not refused as required:\n{report}");
    assert!(report.total.refused > count / 2, "most mutations are refused outright");
}

#[test]
fn mutations_are_refused_with_a_warm_cache() {
    // The cache is warmed by every unmutated case (Engine::new verifies each
    // through it), then every mutation goes through the same cache: a
    // changed endorsement must miss, a per-evidence signature is never cached.
    let cache = Arc::new(VerifyCache::default());
    let (engine, _) = engine(Some(cache.clone()));
    let count = env_u64("CACHET_MUTATIONS").map(|n| n / 2).unwrap_or(8 * engine.cases().len() as u64);
    let report = engine.run(SEED ^ 1, count, 2, &|_| {});
    println!("{report}");
    println!("cache: {:?}", cache.stats());
    assert!(report.clean(), "mutations not refused with a warm cache:\n{report}");
}

#[test]
fn a_mutation_is_replayed_from_seed_and_index() {
    let (engine, _) = engine(None);
    let a = engine.mutation(7, 123).expect("mutation");
    let b = engine.mutation(7, 123).expect("mutation");
    assert_eq!((a.case, a.kind, &a.detail, a.at), (b.case, b.kind, &b.detail, b.at));
    assert_eq!(a.inputs.evidence, b.inputs.evidence);
    let c = engine.mutation(8, 123).expect("mutation");
    assert!(c.detail != a.detail || c.kind != a.kind || c.at != a.at, "another seed gives another mutation");
}
