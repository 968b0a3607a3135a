//! Recorded Intel collateral (dcap-qvl `QuoteCollateralV3` bundles in
//! testdata/vectors) cut into the pieces Intel PCS v4 serves, as the service
//! caches them: `{"tcbInfo":<exact signed text>,"signature":"<hex>"}` with its
//! issuer chain, the same for the QE Identity, the DER PCK and root CA CRLs.
//! Nothing is re-signed: the signed texts and signatures are the recorded ones.
//! Shared by the cachet-endorse and cachet-server tests (`#[path]`).
#![allow(dead_code)]

use std::path::PathBuf;

use cachet_endorse::needs::{IntelTee, PckCa};
use cachet_endorse::{Fetched, Part, Resource};
use serde_json::Value;

/// testdata/vectors.
pub fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors")
}

fn unix(rfc3339: &str) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok().map(|t| t.unix_timestamp())
}

fn part(name: &str, bytes: impl Into<Vec<u8>>) -> Part {
    Part { name: name.into(), bytes: bytes.into() }
}

/// The pieces of one recorded bundle (path relative to testdata/vectors).
pub fn intel_bundle(rel: &str) -> Vec<Fetched> {
    let text = std::fs::read_to_string(vectors().join(rel)).expect("recorded collateral");
    let b: Value = serde_json::from_str(&text).expect("collateral JSON");
    let s = |k: &str| b[k].as_str().unwrap_or_else(|| panic!("{rel}: no {k}")).to_string();
    let tcb: Value = serde_json::from_str(&s("tcb_info")).unwrap();
    let qe: Value = serde_json::from_str(&s("qe_identity")).unwrap();
    let tee = if tcb["id"].as_str() == Some("TDX") { IntelTee::Tdx } else { IntelTee::Sgx };
    let fmspc = tcb["fmspc"].as_str().unwrap().to_ascii_lowercase();
    let source = format!("recorded:{rel}");
    let pck_crl = hex::decode(s("pck_crl")).unwrap();
    // The PCK CRL's issuer names its CA.
    let ca = if pck_crl.windows(9).any(|w| w == b"Processor") { PckCa::Processor } else { PckCa::Platform };
    let fetched = |resource: Resource, parts: Vec<Part>, next_update: Option<i64>| Fetched {
        resource,
        parts,
        fetched_at: 0,
        next_update,
        source: source.clone(),
    };
    vec![
        fetched(
            Resource::TcbInfo { tee, fmspc: fmspc.clone() },
            vec![
                part(
                    &format!("tcb-info-{fmspc}.json"),
                    format!("{{\"tcbInfo\":{},\"signature\":\"{}\"}}", s("tcb_info"), s("tcb_info_signature")),
                ),
                part("tcb-info-issuer-chain.pem", s("tcb_info_issuer_chain")),
            ],
            tcb["nextUpdate"].as_str().and_then(unix),
        ),
        fetched(
            Resource::QeIdentity { tee },
            vec![
                part(
                    "qe-identity.json",
                    format!("{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}", s("qe_identity"), s("qe_identity_signature")),
                ),
                part("qe-identity-issuer-chain.pem", s("qe_identity_issuer_chain")),
            ],
            qe["nextUpdate"].as_str().and_then(unix),
        ),
        fetched(
            Resource::PckCrl { ca },
            vec![part("pck-crl.der", pck_crl), part("pck-crl-issuer-chain.pem", s("pck_crl_issuer_chain"))],
            None,
        ),
        fetched(Resource::RootCaCrl, vec![part("root-ca-crl.der", hex::decode(s("root_ca_crl")).unwrap())], None),
    ]
}

/// The whole recorded bundle file, as an attester would send it.
pub fn as_attester(rel: &str) -> cachet_verify::Endorsement {
    cachet_verify::Endorsement { name: rel.into(), bytes: std::fs::read(vectors().join(rel)).expect("recorded collateral") }
}

/// URL-encode as JavaScript's `encodeURIComponent` (what PCS and PCCS do to
/// issuer-chain headers): the loopback PCS mirrors send headers as Intel does.
pub fn encode_uri_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
