//! Verification speed per TEE family: cold and warm, against peer verifiers
//! on the same evidence, and against the floor.
//!
//! - **cold**: `cachet_verify::verify`, nothing cached (every certificate,
//!   CRL and collateral signature checked, everything parsed).
//! - **warm**: `cache::verify_cached` with a cache already holding this
//!   evidence's endorsements (checked chains/CRLs/collateral are remembered
//!   by content hash; validity and every per-evidence signature are checked
//!   on every call).
//! - **peers**: `dcap-qvl` (SGX/TDX, ring backend) and `sev` (SNP, pure
//!   Rust backend) verifying the same evidence with the same collateral.
//! - **floor**: the signatures each evidence needs that no cache can skip
//!   (they differ for every evidence), timed with aws-lc-rs in the same
//!   run; achieved time / floor says how much is left above them.
//!
//! `cargo bench -p cachet-verify --bench verify` runs everything and prints
//! a summary table at the end (read back from criterion's estimates).
//! `CACHET_BENCH_QUICK=1` shortens the measurement (CI smoke). No timing is
//! asserted anywhere.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use cachet_verify::cache::{verify_cached, VerifyCache};
use cachet_verify::selftest::{parse_cases, Subject};
use cachet_verify::{Endorsement, Tee, TrustAnchors, VerifyRequest};
use criterion::Criterion;

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors")
}

fn read_endorsements(root: &Path, rel: &str) -> Vec<Endorsement> {
    let p = root.join(rel);
    let mut files = Vec::new();
    if p.is_dir() {
        files.extend(std::fs::read_dir(&p).expect("dir").filter_map(|e| e.ok().map(|e| e.path())).filter(|f| f.is_file()));
        files.sort();
    } else {
        files.push(p);
    }
    files.into_iter().map(|f| Endorsement { name: f.display().to_string(), bytes: std::fs::read(&f).expect("file") }).collect()
}

/// One accepted case per family (the first of cases.json).
fn representatives() -> Vec<Subject> {
    let root = vectors();
    let text = std::fs::read_to_string(root.join("cases.json")).expect("cases.json");
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for c in parse_cases(&text).expect("cases") {
        if c.expect != "accept" || seen.contains(&c.tee) {
            continue;
        }
        let raw = std::fs::read(root.join(&c.evidence)).expect("evidence");
        let ends = c.endorsements.iter().flat_map(|e| read_endorsements(&root, e)).collect();
        let s = c.subject(&raw, ends).expect("case");
        seen.push(c.tee.clone());
        out.push(s);
    }
    out
}

/// Signatures that differ for every evidence, by algorithm: (P-256, P-384, RSA-2048).
fn uncacheable(tee: Tee) -> (u32, u32, u32, &'static str) {
    match tee {
        Tee::Sgx | Tee::Tdx => (2, 0, 0, "quote (attestation key) + QE report (PCK)"),
        Tee::Snp => (0, 1, 0, "report (VCEK)"),
        Tee::AzSnpVtpm => (0, 1, 1, "SNP report (VCEK) + vTPM quote (AK, RSA)"),
        Tee::AzTdxVtpm => (2, 0, 1, "TD quote + QE report + vTPM quote (AK, RSA)"),
        Tee::Nitro => (0, 1, 0, "COSE_Sign1 (enclave leaf)"),
        Tee::NitroTpm => (1, 1, 0, "TPM quote (AK) + NSM document"),
        Tee::Tpm => (1, 0, 0, "TPM quote (AK)"),
        Tee::Nvgpu => (0, 1, 0, "SPDM measurements (device leaf)"),
        Tee::Simulated => (0, 0, 0, ""),
    }
}

fn run(s: &Subject, anchors: &TrustAnchors, cache: Option<&Arc<VerifyCache>>) -> bool {
    let req = VerifyRequest { evidence: &s.evidence, endorsements: &s.endorsements, anchors, at: s.verify_at, expected_nonce: None };
    let v = match cache {
        Some(c) => verify_cached(s.tee, &req, c),
        None => cachet_verify::verify(s.tee, &req),
    };
    v.verified()
}

// ---- peers ----

fn dcap_collateral(s: &Subject) -> Option<dcap_qvl::QuoteCollateralV3> {
    let v: serde_json::Value = serde_json::from_slice(&s.endorsements.first()?.bytes).ok()?;
    let st = |k: &str| v.get(k).and_then(|x| x.as_str()).map(|x| x.trim_end_matches('\0').to_string());
    let hx = |k: &str| st(k).and_then(|x| hex::decode(x).ok());
    Some(dcap_qvl::QuoteCollateralV3 {
        pck_crl_issuer_chain: st("pck_crl_issuer_chain")?,
        root_ca_crl: hx("root_ca_crl")?,
        pck_crl: hx("pck_crl")?,
        tcb_info_issuer_chain: st("tcb_info_issuer_chain")?,
        tcb_info: st("tcb_info")?,
        tcb_info_signature: hx("tcb_info_signature")?,
        qe_identity_issuer_chain: st("qe_identity_issuer_chain")?,
        qe_identity: st("qe_identity")?,
        qe_identity_signature: hx("qe_identity_signature")?,
        pck_certificate_chain: None,
    })
}

/// dcap-qvl on the same quote and collateral (collateral rebuilt per call,
/// as Cachet parses its endorsements per call).
fn dcap_qvl_verify(s: &Subject) -> bool {
    match dcap_collateral(s) {
        Some(c) => dcap_qvl::verify::verify(&s.evidence, &c, s.verify_at as u64).is_ok(),
        None => false,
    }
}

/// `sev` on the same report, VCEK and ASK/ARK (all parsed per call).
fn sev_verify(s: &Subject) -> bool {
    use sev::certs::snp::{ca, Certificate, Chain, Verifiable};
    use sev::firmware::guest::AttestationReport;
    use sev::parser::ByteParser;
    let Ok(report) = AttestationReport::from_bytes(&s.evidence) else { return false };
    let mut vek = None;
    let mut pems = Vec::new();
    for e in &s.endorsements {
        if e.bytes.starts_with(b"-----BEGIN") || e.bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            pems.extend(cachet_verify::x509::certs_from_pem(&e.bytes));
        } else if let Ok(c) = Certificate::from_der(&e.bytes) {
            vek = Some(c);
        }
    }
    // ASK first, ARK second in AMD's cert_chain files.
    let (Some(vek), Some(ask), Some(ark)) = (vek, pems.first(), pems.get(1)) else { return false };
    let (Ok(ask), Ok(ark)) = (Certificate::from_der(ask), Certificate::from_der(ark)) else { return false };
    let chain = Chain { ca: ca::Chain { ark, ask }, vek };
    (&chain, &report).verify().is_ok()
}

// ---- floor ----

struct Floor {
    p256: (UnparsedPublicKey<Vec<u8>>, Vec<u8>),
    p384: (UnparsedPublicKey<Vec<u8>>, Vec<u8>),
    rsa: (UnparsedPublicKey<Vec<u8>>, Vec<u8>),
}

const MSG: &[u8] = &[0x5a; 1024];

fn floor_keys() -> Floor {
    let rng = SystemRandom::new();
    let ec = |alg_sign: &'static signature::EcdsaSigningAlgorithm, alg_verify: &'static signature::EcdsaVerificationAlgorithm| {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg_sign, &rng).expect("keygen");
        let kp = EcdsaKeyPair::from_pkcs8(alg_sign, pkcs8.as_ref()).expect("key");
        let sig = kp.sign(&rng, MSG).expect("sign").as_ref().to_vec();
        (UnparsedPublicKey::new(alg_verify, kp.public_key().as_ref().to_vec()), sig)
    };
    let rsa_kp = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa keygen");
    let mut rsa_sig = vec![0u8; rsa_kp.public_modulus_len()];
    rsa_kp.sign(&signature::RSA_PKCS1_SHA256, &rng, MSG, &mut rsa_sig).expect("rsa sign");
    Floor {
        p256: ec(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &signature::ECDSA_P256_SHA256_FIXED),
        p384: ec(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &signature::ECDSA_P384_SHA384_FIXED),
        rsa: (UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, rsa_kp.public_key().as_ref().to_vec()), rsa_sig),
    }
}

// ---- criterion ----

fn configure() -> Criterion {
    let quick = std::env::var_os("CACHET_BENCH_QUICK").is_some();
    let c = Criterion::default().output_directory(&criterion_dir());
    let c = if quick {
        c.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1)).sample_size(10)
    } else {
        c.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(30)
    };
    c.configure_from_args()
}

fn criterion_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("criterion")
}

/// Median time (ns) of a finished benchmark, from criterion's estimates.
fn median_ns(group: &str, bench: &str) -> Option<f64> {
    let p = criterion_dir().join(group).join(bench).join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
    v.get("median")?.get("point_estimate")?.as_f64()
}

fn fmt(ns: Option<f64>) -> String {
    match ns {
        Some(n) if n >= 1e6 => format!("{:.2} ms", n / 1e6),
        Some(n) => format!("{:.0} µs", n / 1e3),
        None => "-".into(),
    }
}

fn main() {
    let mut c = configure();
    let anchors = TrustAnchors::pinned();
    let subjects = representatives();
    let floor = floor_keys();

    let mut g = c.benchmark_group("floor");
    g.bench_function("p256", |b| b.iter(|| floor.p256.0.verify(black_box(MSG), black_box(&floor.p256.1)).is_ok()));
    g.bench_function("p384", |b| b.iter(|| floor.p384.0.verify(black_box(MSG), black_box(&floor.p384.1)).is_ok()));
    g.bench_function("rsa2048", |b| b.iter(|| floor.rsa.0.verify(black_box(MSG), black_box(&floor.rsa.1)).is_ok()));
    g.finish();

    for s in &subjects {
        assert!(run(s, &anchors, None), "{}: the benchmark evidence must verify", s.id);
        let cache = Arc::new(VerifyCache::default());
        assert!(run(s, &anchors, Some(&cache)), "{}: warm-up", s.id);
        let mut g = c.benchmark_group(format!("verify-{}", s.tee.as_str()));
        g.bench_function("cold", |b| b.iter(|| run(black_box(s), &anchors, None)));
        g.bench_function("warm", |b| b.iter(|| run(black_box(s), &anchors, Some(&cache))));
        match s.tee {
            Tee::Sgx | Tee::Tdx => {
                assert!(dcap_qvl_verify(s), "{}: dcap-qvl verifies the same quote", s.id);
                g.bench_function("dcap-qvl", |b| b.iter(|| dcap_qvl_verify(black_box(s))));
            }
            Tee::Snp => {
                assert!(sev_verify(s), "{}: sev verifies the same report", s.id);
                g.bench_function("sev", |b| b.iter(|| sev_verify(black_box(s))));
            }
            _ => {}
        }
        g.finish();
    }
    c.final_summary();

    // Summary: read the medians back.
    let (p256, p384, rsa) = (median_ns("floor", "p256"), median_ns("floor", "p384"), median_ns("floor", "rsa2048"));
    println!();
    println!("aws-lc-rs floor: P-256 verify {}, P-384 verify {}, RSA-2048 verify {}", fmt(p256), fmt(p384), fmt(rsa));
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>12} {:>12} {:>10} {:>11} {:>11}  uncacheable signatures",
        "family", "cold", "warm", "peer", "cold/peer", "warm/peer", "floor", "cold/floor", "warm/floor"
    );
    let mut rows = BTreeMap::new();
    for s in &subjects {
        let group = format!("verify-{}", s.tee.as_str());
        let cold = median_ns(&group, "cold");
        let warm = median_ns(&group, "warm");
        let (peer_name, peer) = match s.tee {
            Tee::Sgx | Tee::Tdx => ("dcap-qvl", median_ns(&group, "dcap-qvl")),
            Tee::Snp => ("sev", median_ns(&group, "sev")),
            _ => ("", None),
        };
        let (n256, n384, nrsa, what) = uncacheable(s.tee);
        let fl = match (p256, p384, rsa) {
            (Some(a), Some(b), Some(r)) => Some(f64::from(n256) * a + f64::from(n384) * b + f64::from(nrsa) * r),
            _ => None,
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        let mut sigs = Vec::new();
        if n256 > 0 {
            sigs.push(format!("{n256}×P-256"));
        }
        if n384 > 0 {
            sigs.push(format!("{n384}×P-384"));
        }
        if nrsa > 0 {
            sigs.push(format!("{nrsa}×RSA-2048"));
        }
        let peer_col = if peer.is_some() { format!("{} {}", fmt(peer), peer_name) } else { "-".into() };
        rows.insert(
            s.tee.as_str().to_string(),
            format!(
                "{:<12} {:>10} {:>10} {:>10} {:>12} {:>12} {:>10} {:>11} {:>11}  {} ({what}) [{}]",
                s.tee.as_str(),
                fmt(cold),
                fmt(warm),
                peer_col,
                ratio(cold, peer),
                ratio(warm, peer),
                fmt(fl),
                ratio(cold, fl),
                ratio(warm, fl),
                sigs.join(" + "),
                s.id
            ),
        );
    }
    for r in rows.values() {
        println!("{r}");
    }
}
