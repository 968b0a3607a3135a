//! Shared support for the fuzz targets: the real cases of
//! `testdata/vectors/cases.json`, loaded once, so each target verifies
//! fuzzed evidence against genuine endorsements at a genuine instant and the
//! fuzzer reaches past the first structural check.
//!
//! Input convention: the first byte picks one of the family's cases
//! (modulo their number); the rest is the evidence (or, for the
//! `endorsements` target, the case's first endorsement file).

use std::path::PathBuf;
use std::sync::OnceLock;

use cachet_verify::selftest::{parse_cases, Subject};
use cachet_verify::{Endorsement, Tee, TrustAnchors, VerifyRequest};

/// The vectors folder of the repository.
pub fn vectors_dir() -> PathBuf {
    std::env::var_os("CACHET_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors"))
}

fn read_endorsements(root: &std::path::Path, rel: &str) -> Vec<Endorsement> {
    let p = root.join(rel);
    let mut files = Vec::new();
    if p.is_dir() {
        if let Ok(rd) = std::fs::read_dir(&p) {
            files.extend(rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|f| f.is_file()));
        }
        files.sort();
    } else {
        files.push(p);
    }
    files.into_iter().filter_map(|f| std::fs::read(&f).ok().map(|bytes| Endorsement { name: f.display().to_string(), bytes })).collect()
}

/// Every case of `cases.json`, read once.
pub fn subjects() -> &'static [Subject] {
    static ALL: OnceLock<Vec<Subject>> = OnceLock::new();
    ALL.get_or_init(|| {
        let root = vectors_dir();
        let Ok(text) = std::fs::read_to_string(root.join("cases.json")) else { return Vec::new() };
        let Ok(specs) = parse_cases(&text) else { return Vec::new() };
        specs
            .into_iter()
            .filter_map(|c| {
                let raw = std::fs::read(root.join(&c.evidence)).ok()?;
                let ends = c.endorsements.iter().flat_map(|e| read_endorsements(&root, e)).collect();
                c.subject(&raw, ends).ok()
            })
            .collect()
    })
}

/// The cases of the given families.
pub fn cases_of(tees: &[Tee]) -> Vec<&'static Subject> {
    subjects().iter().filter(|s| tees.contains(&s.tee)).collect()
}

fn anchors() -> &'static TrustAnchors {
    static A: OnceLock<TrustAnchors> = OnceLock::new();
    A.get_or_init(TrustAnchors::pinned)
}

/// Split an input into (case, rest) per the input convention.
pub fn pick<'a>(tees: &[Tee], data: &'a [u8]) -> Option<(&'static Subject, &'a [u8])> {
    let cases = cases_of(tees);
    let (first, rest) = data.split_first()?;
    let c = cases.get(usize::from(*first) % cases.len().max(1))?;
    Some((c, rest))
}

/// Verify `evidence` as the case's family with the case's endorsements, at
/// the case's instant. Any panic is a finding (libFuzzer reports it).
pub fn verify_as(case: &Subject, evidence: &[u8]) {
    verify_named(case, evidence, &case.endorsements);
}

/// Verify the case's genuine evidence with its first endorsement replaced.
pub fn verify_with_endorsement(case: &Subject, endorsement: &[u8]) {
    let mut ends = case.endorsements.clone();
    match ends.first_mut() {
        Some(e) => e.bytes = endorsement.to_vec(),
        None => ends.push(Endorsement { name: "fuzz".into(), bytes: endorsement.to_vec() }),
    }
    verify_named(case, &case.evidence, &ends);
}

/// Verify at the case's instant with the pinned roots: any outcome but a
/// panic or a refusal without a check name is fine.
fn verify_named(case: &Subject, evidence: &[u8], endorsements: &[Endorsement]) {
    let req = VerifyRequest { evidence, endorsements, anchors: anchors(), at: case.verify_at, expected_nonce: None };
    let v = cachet_verify::verify(case.tee, &req);
    if let Err(e) = &v.result {
        assert!(!e.check.is_empty(), "refusal without a check name");
    }
}

/// The families each target covers (also used by `seed-corpus`).
pub const TARGETS: &[(&str, &[Tee])] = &[
    ("dcap_quote", &[Tee::Sgx, Tee::Tdx]),
    ("snp_report", &[Tee::Snp]),
    ("nitro_document", &[Tee::Nitro]),
    ("tpm_evidence", &[Tee::Tpm, Tee::NitroTpm]),
    ("nvgpu_spdm", &[Tee::Nvgpu]),
    ("azure_json", &[Tee::AzSnpVtpm, Tee::AzTdxVtpm]),
    ("endorsements", &Tee::ALL),
    ("http_attest", &Tee::ALL),
];

pub mod http;
