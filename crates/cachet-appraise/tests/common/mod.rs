//! Test support: the real-evidence cases of `testdata/vectors/cases.json`,
//! verified with `cachet-verify` to get real claims to appraise (a copy of
//! the small loader of `cachet-verify`'s tests).
#![allow(dead_code)]

use cachet_verify::{encoding, Endorsement, Tee, TrustAnchors, VerifyRequest};
use std::path::PathBuf;

/// The vectors folder inside the repository.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors")
}

/// One case of `cases.json`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Case {
    pub id: String,
    pub tee: String,
    pub evidence: String,
    #[serde(default)]
    pub endorsements: Vec<String>,
    pub verify_at: Option<String>,
    pub expect: String,
}

#[derive(serde::Deserialize)]
struct CasesFile {
    cases: Vec<Case>,
}

/// Every case of `cases.json`.
pub fn all_cases() -> Vec<Case> {
    let text = std::fs::read_to_string(vectors_dir().join("cases.json")).expect("cases.json");
    let file: CasesFile = serde_json::from_str(&text).expect("cases.json parses");
    file.cases
}

/// Parse RFC 3339 into Unix seconds.
pub fn ts(s: &str) -> i64 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).expect("RFC 3339").unix_timestamp()
}

fn endorsement_files(c: &Case) -> Vec<Endorsement> {
    let mut out = Vec::new();
    for e in &c.endorsements {
        let p = vectors_dir().join(e);
        if p.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            for f in files.into_iter().filter(|f| f.is_file()) {
                out.push(Endorsement { name: f.display().to_string(), bytes: std::fs::read(&f).unwrap() });
            }
        } else {
            out.push(Endorsement { name: e.clone(), bytes: std::fs::read(&p).expect("endorsement file") });
        }
    }
    out
}

/// A verified case: its id, family, instant and claims.
pub struct Verified {
    pub id: String,
    pub tee: String,
    pub at: i64,
    pub claims: serde_json::Value,
}

/// Verify every `accept` case at its `verify_at`; returns the verified
/// ones, and the families of which no case verified (verifier not ready).
pub fn verified_cases() -> (Vec<Verified>, Vec<String>) {
    let mut ok = Vec::new();
    let mut tried: Vec<(String, bool)> = Vec::new();
    for c in all_cases().into_iter().filter(|c| c.expect == "accept") {
        let Some(tee) = Tee::parse(&c.tee) else {
            continue;
        };
        let Some(at) = c.verify_at.as_deref().map(ts) else {
            continue;
        };
        let raw = std::fs::read(vectors_dir().join(&c.evidence)).expect("evidence file");
        let evidence = encoding::decode_evidence(&raw).1;
        let endorsements = endorsement_files(&c);
        let anchors = TrustAnchors::pinned();
        let v = cachet_verify::verify(
            tee,
            &VerifyRequest { evidence: &evidence, endorsements: &endorsements, anchors: &anchors, at, expected_nonce: None },
        );
        let passed = v.result.is_ok();
        tried.push((c.tee.clone(), passed));
        match v.result {
            Ok(claims) => ok.push(Verified { id: c.id.clone(), tee: c.tee.clone(), at, claims }),
            Err(e) => eprintln!("note: case {} ({}) does not verify yet: {e}", c.id, c.tee),
        }
    }
    let mut missing: Vec<String> = tried.iter().filter(|(t, _)| !tried.iter().any(|(u, p)| u == t && *p)).map(|(t, _)| t.clone()).collect();
    missing.sort();
    missing.dedup();
    (ok, missing)
}

/// A measurement of the claims that reference values can name, per family:
/// (reference-set name, value as the claims spell it).
pub fn pick_measurement(tee: &str, claims: &serde_json::Value) -> Option<(String, String)> {
    let direct = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(|v| (k.to_string(), v.to_ascii_lowercase()));
    let nested = |outer: &str, k: &str| {
        claims.get(outer).and_then(|o| o.get(k)).and_then(|v| v.as_str()).map(|v| (k.to_string(), v.to_ascii_lowercase()))
    };
    let banked_pcr = || {
        let banks = claims.get("pcrs")?.as_object()?;
        for (alg, bank) in banks {
            if alg == "sha1" {
                continue;
            }
            let bank = bank.as_object()?;
            for i in ["0", "4", "7", "1", "2", "3", "5", "6", "8", "9", "10", "11", "12", "13", "14", "15"] {
                if let Some(v) = bank.get(i).and_then(|v| v.as_str()) {
                    return Some((format!("pcr{i}"), v.to_ascii_lowercase()));
                }
            }
        }
        None
    };
    match tee {
        "sgx" => direct("mr_enclave"),
        "tdx" => direct("mr_td"),
        "snp" => direct("measurement"),
        "az-snp-vtpm" => direct("measurement").or_else(|| nested("snp", "measurement")).or_else(banked_pcr),
        "az-tdx-vtpm" => direct("mr_td").or_else(|| nested("tdx", "mr_td")).or_else(banked_pcr),
        "nitro" => claims.get("pcrs")?.get("0")?.as_str().map(|v| ("pcr0".to_string(), v.to_ascii_lowercase())),
        "nitro-tpm" | "tpm" => banked_pcr(),
        "nvgpu" => direct("driver_version").or_else(|| {
            let g = claims.get("gpus")?.get(0)?;
            g.get("driver_version")?.as_str().map(|v| ("driver_version".to_string(), v.to_ascii_lowercase()))
        }),
        "sim" => direct("measurement"),
        _ => None,
    }
}
