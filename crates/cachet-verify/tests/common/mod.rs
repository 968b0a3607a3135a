//! Shared test support: the real-evidence cases of `testdata/vectors/cases.json`.
//!
//! Tests iterate the cases rather than naming files, so new evidence added to
//! `cases.json` is exercised without changing the tests.
#![allow(dead_code)]

use cachet_verify::{encoding, Endorsement, Tee, TrustAnchors, Verification, VerifyRequest};
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
    pub encoding: String,
    #[serde(default)]
    pub endorsements: Vec<String>,
    pub valid_from: Option<String>,
    pub valid_to: Option<String>,
    pub verify_at: Option<String>,
    pub expect: String,
    #[serde(default)]
    pub expected_claims: serde_json::Map<String, serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct CasesFile {
    cases: Vec<Case>,
}

/// All cases of the given families.
pub fn cases(tees: &[&str]) -> Vec<Case> {
    let text = std::fs::read_to_string(vectors_dir().join("cases.json")).expect("cases.json");
    let file: CasesFile = serde_json::from_str(&text).expect("cases.json parses");
    file.cases.into_iter().filter(|c| tees.contains(&c.tee.as_str())).collect()
}

/// Parse RFC 3339 into Unix seconds.
pub fn ts(s: &str) -> i64 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).expect("RFC 3339").unix_timestamp()
}

impl Case {
    pub fn tee(&self) -> Tee {
        Tee::parse(&self.tee).expect("known tee")
    }
    /// The evidence, decoded.
    pub fn evidence_bytes(&self) -> Vec<u8> {
        let raw = std::fs::read(vectors_dir().join(&self.evidence)).expect("evidence file");
        encoding::decode_evidence(&raw).1
    }
    /// The endorsement files, read (folders expanded).
    pub fn endorsement_files(&self) -> Vec<Endorsement> {
        let mut out = Vec::new();
        for e in &self.endorsements {
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
    pub fn verify_at(&self) -> i64 {
        ts(self.verify_at.as_deref().expect("verify_at"))
    }
    pub fn valid_to(&self) -> i64 {
        ts(self.valid_to.as_deref().expect("valid_to"))
    }
    pub fn valid_from(&self) -> i64 {
        ts(self.valid_from.as_deref().expect("valid_from"))
    }
}

/// Verify evidence bytes with given endorsements, anchors and time.
pub fn run(tee: Tee, evidence: &[u8], endorsements: &[Endorsement], anchors: &TrustAnchors, at: i64) -> Verification {
    cachet_verify::verify(tee, &VerifyRequest { evidence, endorsements, anchors, at, expected_nonce: None })
}

/// Verify a case as given, at `at`, with the pinned roots.
pub fn run_case(c: &Case, at: i64) -> Verification {
    run(c.tee(), &c.evidence_bytes(), &c.endorsement_files(), &TrustAnchors::pinned(), at)
}

/// The name of the failing check, or panic if it verified.
pub fn failed_check(v: &Verification) -> String {
    match &v.result {
        Ok(_) => panic!("expected a failure, but it verified: {:?}", v.checks),
        Err(e) => e.check.clone(),
    }
}
