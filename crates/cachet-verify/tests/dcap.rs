//! Intel SGX / TDX DCAP verification against the real evidence of
//! `testdata/vectors/cases.json`, and the ways forged or stale inputs must fail.
//!
//! Every test iterates the `sgx` and `tdx` cases; file names appear only where
//! a test exercises an input format that `cases.json` does not reference (the
//! raw Intel PCS artefacts of the go-tdx-guest and automata folders).

mod common;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use cachet_verify::dcap::{collateral, quote};
use cachet_verify::{AnchorKind, Endorsement, Tee, TrustAnchors, Verification};
use common::{cases, failed_check, run, run_case, ts, vectors_dir, Case};
use proptest::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, RevocationReason, RevokedCertParams, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use serde_json::{json, Value};

const HOUR: i64 = 3600;

fn dcap_cases() -> Vec<Case> {
    cases(&["sgx", "tdx"])
}

fn accept_cases() -> Vec<Case> {
    let v: Vec<Case> = dcap_cases().into_iter().filter(|c| c.expect == "accept").collect();
    assert!(v.len() >= 7, "expected the SGX/TDX accept cases of cases.json, found {}", v.len());
    v
}

fn case(id: &str) -> Case {
    dcap_cases().into_iter().find(|c| c.id == id).unwrap_or_else(|| panic!("case {id} in cases.json"))
}

fn claims(v: &Verification) -> &serde_json::Map<String, Value> {
    match &v.result {
        Ok(Value::Object(m)) => m,
        other => panic!("expected verified claims, got {other:?}\nchecks: {:#?}", v.checks),
    }
}

fn error(v: &Verification) -> (String, String) {
    match &v.result {
        Ok(_) => panic!("expected a failure, but it verified: {:#?}", v.checks),
        Err(e) => (e.check.clone(), e.message.clone()),
    }
}

fn same_claim(want: &Value, got: Option<&Value>) -> bool {
    match (want, got) {
        (Value::Array(w), Some(Value::Array(g))) => {
            let mut w: Vec<String> = w.iter().map(|x| x.to_string()).collect();
            let mut g: Vec<String> = g.iter().map(|x| x.to_string()).collect();
            w.sort();
            g.sort();
            w == g
        }
        (w, g) => Some(w) == g,
    }
}

fn is_hex(v: Option<&Value>, bytes: usize) -> bool {
    v.and_then(Value::as_str).is_some_and(|s| s.len() == bytes * 2 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn every_accept_case_verifies_with_its_expected_claims() {
    for c in accept_cases() {
        let v = run_case(&c, c.verify_at());
        let got = claims(&v);
        for (k, want) in &c.expected_claims {
            assert!(same_claim(want, got.get(k)), "{}: claim {k} = {:?}, expected {want}", c.id, got.get(k));
        }
        assert_eq!(got.get("tee").and_then(Value::as_str), Some(c.tee.as_str()), "{}", c.id);
        assert!(is_hex(got.get("report_data"), 64), "{}: report_data", c.id);
        assert!(got.get("debug").is_some_and(Value::is_boolean), "{}: debug", c.id);
        assert!(got.get("advisory_ids").is_some_and(Value::is_array), "{}: advisory_ids", c.id);
        assert!(is_hex(got.get("fmspc"), 6) && is_hex(got.get("pce_id"), 2), "{}: fmspc/pce_id", c.id);
        for k in
            ["tcb_status", "tcb_date", "tcb_info_issue_date", "tcb_info_next_update", "qe_identity_issue_date", "qe_identity_next_update"]
        {
            assert!(got.get(k).is_some_and(Value::is_string), "{}: {k}", c.id);
        }
        assert!(got.get("quote_version").is_some_and(Value::is_u64), "{}: quote_version", c.id);
        if c.tee == "tdx" {
            for k in
                ["mr_td", "mr_config_id", "mr_owner", "mr_owner_config", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mr_seam", "mr_signer_seam"]
            {
                assert!(is_hex(got.get(k), 48), "{}: {k}", c.id);
            }
            for k in ["td_attributes", "xfam", "seam_attributes"] {
                assert!(is_hex(got.get(k), 8), "{}: {k}", c.id);
            }
            assert!(is_hex(got.get("tee_tcb_svn"), 16), "{}: tee_tcb_svn", c.id);
            assert!(got.get("tdx_module_tcb_status").is_some(), "{}: tdx_module_tcb_status", c.id);
        } else {
            assert!(is_hex(got.get("mr_enclave"), 32) && is_hex(got.get("mr_signer"), 32), "{}", c.id);
            assert!(got.get("isv_prod_id").is_some_and(Value::is_u64) && got.get("isv_svn").is_some_and(Value::is_u64));
        }
        assert!(v.checks.iter().all(|ch| ch.ok), "{}: a failed check in a verified result", c.id);
    }
}

/// A failure of a validity window: a `... validity` check (certificates, TCB
/// Info, QE Identity) or a CRL that is not yet valid / expired.
fn is_window_failure(check: &str, message: &str) -> bool {
    check.ends_with("validity") || (check.ends_with("CRL") && (message.contains("expired") || message.contains("not yet valid")))
}

#[test]
fn every_accept_case_fails_outside_its_window() {
    for c in accept_cases() {
        for at in [c.valid_from() - HOUR, c.valid_to() + HOUR] {
            let v = run_case(&c, at);
            let (check, message) = error(&v);
            assert!(is_window_failure(&check, &message), "{} at {at}: failed by {check}: {message}", c.id);
        }
        // The window is inclusive at both ends.
        assert!(run_case(&c, c.valid_from()).verified(), "{} at valid_from", c.id);
        assert!(run_case(&c, c.valid_to()).verified(), "{} at valid_to", c.id);
    }
}

/// Byte offsets of the signed parts of a quote's signature data.
struct Layout {
    signed_len: usize,
    isv_sig: usize,
    att_key: usize,
    qe_report: usize,
    qe_sig: usize,
}

fn layout(ev: &[u8]) -> Layout {
    let q = quote::parse(ev).expect("real quote parses");
    let signed_len = q.signed.len();
    let isv_sig = signed_len + 4;
    let att_key = isv_sig + 64;
    let qe_report = if q.header.version == 3 { att_key + 64 } else { att_key + 64 + 6 };
    Layout { signed_len, isv_sig, att_key, qe_report, qe_sig: qe_report + 384 }
}

#[test]
fn flipped_bytes_fail_with_the_check_they_break() {
    for c in accept_cases() {
        let ev = c.evidence_bytes();
        let l = layout(&ev);
        let end = &c.endorsement_files();
        let flips: Vec<(usize, &str)> = vec![
            (28, "Quote signature"),                    // header: user data
            (l.signed_len - 1, "Quote signature"),      // last byte of the body
            (l.signed_len - 70, "Quote signature"),     // report data
            (l.signed_len / 2, "Quote signature"),      // body
            (l.isv_sig, "Quote signature"),             // ISV signature (r)
            (l.isv_sig + 63, "Quote signature"),        // ISV signature (s)
            (l.att_key + 10, "QE report data"),         // attestation key: no longer the one the QE report binds
            (l.qe_report + 64, "QE report signature"),  // QE report: MRENCLAVE
            (l.qe_report + 320, "QE report signature"), // QE report: report data
            (l.qe_sig + 5, "QE report signature"),      // QE report signature
        ];
        for (i, want) in flips {
            let mut m = ev.clone();
            m[i] ^= 0x01;
            let v = run(c.tee(), &m, end, &TrustAnchors::pinned(), c.verify_at());
            assert_eq!(failed_check(&v), want, "{}: byte {i:#x} flipped", c.id);
        }
        // Header fields the format check owns.
        let mut m = ev.clone();
        m[0] ^= 0x40; // version
        assert_eq!(failed_check(&run(c.tee(), &m, end, &TrustAnchors::pinned(), c.verify_at())), "Quote format");
        let mut m = ev.clone();
        m[12] ^= 0x01; // QE vendor ID
        assert_eq!(failed_check(&run(c.tee(), &m, end, &TrustAnchors::pinned(), c.verify_at())), "Quote format");
        // The other family's verifier refuses it, naming what it is.
        let other = if c.tee() == Tee::Sgx { Tee::Tdx } else { Tee::Sgx };
        assert_eq!(failed_check(&run(other, &ev, end, &TrustAnchors::pinned(), c.verify_at())), "Evidence format");
    }
}

fn fmspc_of(c: &Case) -> String {
    let c2 = collateral::from_endorsements(&c.endorsement_files());
    let info: Value = serde_json::from_str(&c2.tcb_infos[0].body).expect("TCB Info JSON");
    info["fmspc"].as_str().expect("fmspc").to_ascii_lowercase()
}

#[test]
fn collateral_of_another_fmspc_is_refused_by_name() {
    let all = dcap_cases();
    for c in accept_cases() {
        let mine = fmspc_of(&c);
        // The TCB Info (the FMSPC-bound piece) of the case nearest in time
        // with another FMSPC, so that everything before the FMSPC comparison
        // (signing chain, signature) is current.
        let other = all
            .iter()
            .filter(|o| o.verify_at.is_some() && fmspc_of(o) != mine)
            .min_by_key(|o| (o.verify_at() - c.verify_at()).abs())
            .expect("another FMSPC");
        let theirs = bundle(other);
        let mut m = bundle(&c);
        for k in ["tcb_info", "tcb_info_signature", "tcb_info_issuer_chain"] {
            m.insert(k.into(), theirs[k].clone());
        }
        let v = run(c.tee(), &c.evidence_bytes(), &as_endorsement(&m), &TrustAnchors::pinned(), c.verify_at());
        let (check, message) = error(&v);
        assert_eq!(check, "TCB Info FMSPC", "{} with {}'s TCB Info: {message}", c.id, other.id);
        assert!(message.contains(&mine), "{message}");
        // The other case's whole bundle is refused too (by the FMSPC, or
        // earlier: another CA's PCK CRL, windows).
        let v = run(c.tee(), &c.evidence_bytes(), &other.endorsement_files(), &TrustAnchors::pinned(), c.verify_at());
        assert!(!v.verified(), "{} verified with {}'s collateral", c.id, other.id);
    }
}

/// The bundle of a case, as a JSON object (all accept cases use single-JSON bundles).
fn bundle(c: &Case) -> serde_json::Map<String, Value> {
    let files = c.endorsement_files();
    assert_eq!(files.len(), 1, "{}: one bundle", c.id);
    match serde_json::from_slice(&files[0].bytes) {
        Ok(Value::Object(m)) => m,
        _ => panic!("{}: not a JSON bundle", c.id),
    }
}

fn as_endorsement(m: &serde_json::Map<String, Value>) -> Vec<Endorsement> {
    vec![Endorsement { name: "bundle.json".into(), bytes: serde_json::to_vec(m).expect("json") }]
}

/// Change one character of the signed JSON text: the first digit of the TCB
/// evaluation data number, or the case of the first hex letter of a field.
fn alter_one_char(text: &str, key: &str) -> String {
    let at = text.find(key).unwrap_or_else(|| panic!("{key} in {text}")) + key.len();
    let mut chars: Vec<char> = text.chars().collect();
    let (i, ch) = chars.iter().enumerate().skip(at).find(|(_, c)| c.is_ascii_alphanumeric()).map(|(i, c)| (i, *c)).expect("char");
    chars[i] = match ch {
        '0'..='8' => ((ch as u8) + 1) as char,
        '9' => '0',
        c if c.is_ascii_lowercase() => c.to_ascii_uppercase(),
        c => c.to_ascii_lowercase(),
    };
    chars.into_iter().collect()
}

#[test]
fn tcb_info_or_qe_identity_altered_by_one_character_is_refused() {
    for c in accept_cases() {
        let b = bundle(&c);
        for (field, key, want) in [
            ("tcb_info", "\"tcbEvaluationDataNumber\":", "TCB Info signature"),
            ("tcb_info", "\"fmspc\":\"", "TCB Info signature"),
            ("tcb_info", "\"tcbStatus\":\"", "TCB Info signature"),
            ("qe_identity", "\"tcbEvaluationDataNumber\":", "QE Identity signature"),
            ("qe_identity", "\"mrsigner\":\"", "QE Identity signature"),
        ] {
            let mut m = b.clone();
            let text = m[field].as_str().expect("signed JSON text").to_string();
            let altered = alter_one_char(&text, key);
            assert_eq!(altered.len(), text.len());
            assert_ne!(altered, text);
            m.insert(field.into(), Value::String(altered));
            let v = run(c.tee(), &c.evidence_bytes(), &as_endorsement(&m), &TrustAnchors::pinned(), c.verify_at());
            assert_eq!(failed_check(&v), want, "{}: {field} altered after {key}", c.id);
        }
        // And the untouched bundle, re-serialised, still verifies.
        assert!(run(c.tee(), &c.evidence_bytes(), &as_endorsement(&b), &TrustAnchors::pinned(), c.verify_at()).verified());
    }
}

#[test]
fn missing_collateral_is_named() {
    let c = accept_cases().remove(0);
    for (field, phrase) in [
        ("pck_crl", "no PCK CRL in the endorsements"),
        ("root_ca_crl", "no Root CA CRL in the endorsements"),
        ("tcb_info", "no TCB Info in the endorsements"),
        ("qe_identity", "no QE Identity in the endorsements"),
    ] {
        let mut m = bundle(&c);
        m.remove(field);
        let v = run(c.tee(), &c.evidence_bytes(), &as_endorsement(&m), &TrustAnchors::pinned(), c.verify_at());
        let (check, message) = error(&v);
        assert_eq!(check, "Collateral");
        assert!(message.contains(phrase), "{message}");
    }
    let v = run(c.tee(), &c.evidence_bytes(), &[], &TrustAnchors::pinned(), c.verify_at());
    assert_eq!(failed_check(&v), "Collateral");
}

// ------------------------------------------------------------ test PKI

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d.push(DnType::OrganizationName, "Intel Corporation");
    d.push(DnType::CountryName, "US");
    d
}

fn params(cn: &str, ca: bool, serial: &[u8]) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.is_ca = if ca { IsCa::Ca(BasicConstraints::Unconstrained) } else { IsCa::ExplicitNoCa };
    p.serial_number = Some(SerialNumber::from(serial.to_vec()));
    p.not_before = rcgen::date_time_ymd(2018, 1, 1);
    p.not_after = rcgen::date_time_ymd(2049, 1, 1);
    p
}

/// A look-alike of Intel's PKI: a self-signed "Intel SGX Root CA", a PCK
/// Platform CA, a PCK leaf carrying the real leaf's SGX extensions, and a TCB
/// signing certificate. None of it chains to the pinned Intel root.
struct TestPki {
    root: (CertificateParams, KeyPair, Vec<u8>),
    ca: (CertificateParams, KeyPair, Vec<u8>),
    leaf: (KeyPair, Vec<u8>),
    signer: (KeyPair, Vec<u8>),
}

const LEAF_SERIAL: [u8; 8] = [0x3c, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
const CA_SERIAL: [u8; 4] = [0x0c, 0xa0, 0x00, 0x01];

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("P-256 key")
}

fn test_pki(real_leaf_der: &[u8]) -> TestPki {
    test_pki_with(real_leaf_der, true)
}

fn test_pki_with(real_leaf_der: &[u8], with_sgx_extensions: bool) -> TestPki {
    let (_, real) = x509_parser::parse_x509_certificate(real_leaf_der).expect("real PCK leaf");
    let sgx_ext =
        real.extensions().iter().find(|e| e.oid.to_id_string() == "1.2.840.113741.1.13.1").expect("SGX extensions").value.to_vec();
    let root_p = params("Intel SGX Root CA", true, &[0x01]);
    let root_k = key();
    let root_der = root_p.self_signed(&root_k).expect("root").der().to_vec();
    let ca_p = params("Intel SGX PCK Platform CA", true, &CA_SERIAL);
    let ca_k = key();
    let ca_der = ca_p.signed_by(&ca_k, &Issuer::from_params(&root_p, &root_k)).expect("ca").der().to_vec();
    let mut leaf_p = params("Intel SGX PCK Certificate", false, &LEAF_SERIAL);
    if with_sgx_extensions {
        leaf_p.custom_extensions.push(CustomExtension::from_oid_content(&[1, 2, 840, 113741, 1, 13, 1], sgx_ext));
    }
    let leaf_k = key();
    let leaf_der = leaf_p.signed_by(&leaf_k, &Issuer::from_params(&ca_p, &ca_k)).expect("leaf").der().to_vec();
    let signer_p = params("Intel SGX TCB Signing", false, &[0x7b]);
    let signer_k = key();
    let signer_der = signer_p.signed_by(&signer_k, &Issuer::from_params(&root_p, &root_k)).expect("signer").der().to_vec();
    TestPki { root: (root_p, root_k, root_der), ca: (ca_p, ca_k, ca_der), leaf: (leaf_k, leaf_der), signer: (signer_k, signer_der) }
}

fn sign_raw(k: &KeyPair, msg: &[u8]) -> Vec<u8> {
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &k.serialize_der()).expect("pkcs8");
    kp.sign(&SystemRandom::new(), msg).expect("sign").as_ref().to_vec()
}

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

fn crl(issuer: &(CertificateParams, KeyPair, Vec<u8>), at: i64, revoked: &[&[u8]]) -> Vec<u8> {
    let t = |s: i64| time::OffsetDateTime::from_unix_timestamp(s).expect("time");
    let p = CertificateRevocationListParams {
        this_update: t(at - 24 * HOUR),
        next_update: t(at + 30 * 24 * HOUR),
        crl_number: SerialNumber::from(7u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(s.to_vec()),
                revocation_time: t(at - 48 * HOUR),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    p.signed_by(&Issuer::from_params(&issuer.0, &issuer.1)).expect("crl").der().to_vec()
}

/// The case's quote with the QE report re-signed by the test PCK key and the
/// test chain as certification data (the attestation key, body and ISV
/// signature are untouched: the PCK chain is not covered by them).
fn requote(ev: &[u8], pki: &TestPki) -> Vec<u8> {
    let q = quote::parse(ev).expect("quote");
    let chain = format!("{}{}{}", pem(&pki.leaf.1), pem(&pki.ca.2), pem(&pki.root.2));
    rebuild_quote(ev, &sign_raw(&pki.leaf.0, q.qe_report_raw), 5, chain.as_bytes())
}

/// The case's quote with the given QE report signature and certification
/// data (type `typ`), in the v3 layout or inside type 6 for v4/v5; header,
/// body, attestation key, QE report and authentication data kept.
fn rebuild_quote(ev: &[u8], qe_report_signature: &[u8], typ: u16, data: &[u8]) -> Vec<u8> {
    let q = quote::parse(ev).expect("quote");
    let mut inner = q.qe_report_raw.to_vec();
    inner.extend(qe_report_signature);
    inner.extend((q.qe_auth_data.len() as u16).to_le_bytes());
    inner.extend(q.qe_auth_data);
    inner.extend(typ.to_le_bytes());
    inner.extend((data.len() as u32).to_le_bytes());
    inner.extend(data);
    let mut sig = q.signature.to_vec();
    sig.extend(q.attestation_key);
    if q.header.version == 3 {
        sig.extend(inner);
    } else {
        sig.extend(6u16.to_le_bytes());
        sig.extend((inner.len() as u32).to_le_bytes());
        sig.extend(inner);
    }
    let mut out = q.signed.to_vec();
    out.extend((sig.len() as u32).to_le_bytes());
    out.extend(sig);
    out
}

/// The case's TCB Info and QE Identity re-signed by the test TCB signing key,
/// with test CRLs revoking the given serials.
fn test_bundle(c: &Case, pki: &TestPki, revoked_by_root: &[&[u8]], revoked_by_ca: &[&[u8]]) -> Vec<Endorsement> {
    let b = bundle(c);
    let tcb = b["tcb_info"].as_str().expect("tcb_info");
    let qe = b["qe_identity"].as_str().expect("qe_identity");
    test_bundle_with(c, pki, tcb, qe, revoked_by_root, revoked_by_ca)
}

fn test_bundle_with(c: &Case, pki: &TestPki, tcb: &str, qe: &str, revoked_by_root: &[&[u8]], revoked_by_ca: &[&[u8]]) -> Vec<Endorsement> {
    let at = c.verify_at();
    let m = json!({
        "pck_crl_issuer_chain": format!("{}{}", pem(&pki.ca.2), pem(&pki.root.2)),
        "root_ca_crl": hex::encode(crl(&pki.root, at, revoked_by_root)),
        "pck_crl": hex::encode(crl(&pki.ca, at, revoked_by_ca)),
        "tcb_info_issuer_chain": format!("{}{}", pem(&pki.signer.1), pem(&pki.root.2)),
        "tcb_info": tcb,
        "tcb_info_signature": hex::encode(sign_raw(&pki.signer.0, tcb.as_bytes())),
        "qe_identity_issuer_chain": format!("{}{}", pem(&pki.signer.1), pem(&pki.root.2)),
        "qe_identity": qe,
        "qe_identity_signature": hex::encode(sign_raw(&pki.signer.0, qe.as_bytes())),
    });
    vec![Endorsement { name: "test-bundle.json".into(), bytes: serde_json::to_vec(&m).expect("json") }]
}

fn real_leaf(ev: &[u8]) -> Vec<u8> {
    let q = quote::parse(ev).expect("quote");
    cachet_verify::x509::certs_from_pem(q.cert_data).remove(0)
}

#[test]
fn the_intel_root_replaced_by_a_test_root_is_refused() {
    for c in accept_cases() {
        let ev = c.evidence_bytes();
        let pki = test_pki(&real_leaf(&ev));
        let swapped = TrustAnchors::pinned().with_replaced(AnchorKind::IntelSgxRoot, pki.root.2.clone());
        let v = run(c.tee(), &ev, &c.endorsement_files(), &swapped, c.verify_at());
        let (check, message) = error(&v);
        assert_eq!(check, "PCK certificate chain", "{}: {message}", c.id);
        assert!(message.contains("not a trusted anchor"), "{message}");
        // No anchor at all: the same refusal.
        let v = run(c.tee(), &ev, &c.endorsement_files(), &TrustAnchors::empty(), c.verify_at());
        assert_eq!(failed_check(&v), "PCK certificate chain");
    }
}

#[test]
fn a_chain_through_a_test_ca_is_refused_and_a_revoked_serial_is_reported() {
    for c in accept_cases() {
        let ev = c.evidence_bytes();
        let pki = test_pki(&real_leaf(&ev));
        let forged = requote(&ev, &pki);
        let clean = test_bundle(&c, &pki, &[], &[]);
        // Against the pinned Intel root, the look-alike chain is refused.
        let v = run(c.tee(), &forged, &clean, &TrustAnchors::pinned(), c.verify_at());
        let (check, message) = error(&v);
        assert_eq!(check, "PCK certificate chain", "{}: {message}", c.id);

        // With the test root as the only anchor, the same inputs verify with
        // the case's own status: the harness is faithful, so the refusals
        // below are due to the CRLs alone.
        let mut test_anchors = TrustAnchors::empty();
        test_anchors.push(AnchorKind::IntelSgxRoot, pki.root.2.clone());
        let v = run(c.tee(), &forged, &clean, &test_anchors, c.verify_at());
        let got = claims(&v);
        if let Some(want) = c.expected_claims.get("tcb_status") {
            assert_eq!(got.get("tcb_status"), Some(want), "{}", c.id);
        }

        let revoked_leaf = test_bundle(&c, &pki, &[], &[&LEAF_SERIAL]);
        let v = run(c.tee(), &forged, &revoked_leaf, &test_anchors, c.verify_at());
        let (check, message) = error(&v);
        assert_eq!(check, "PCK CRL", "{}: {message}", c.id);
        assert!(message.contains(&format!("certificate revoked (serial {})", hex::encode(LEAF_SERIAL))), "{message}");

        let revoked_ca = test_bundle(&c, &pki, &[&CA_SERIAL], &[]);
        let v = run(c.tee(), &forged, &revoked_ca, &test_anchors, c.verify_at());
        let (check, message) = error(&v);
        assert_eq!(check, "Root CA CRL", "{}: {message}", c.id);
        assert!(message.contains(&format!("certificate revoked (serial {})", hex::encode(CA_SERIAL))), "{message}");

        // A PCK CRL signed by a key other than the PCK CA's is refused.
        let stranger = (pki.ca.0.clone(), key(), Vec::new());
        let mut m = bundle_map(&clean);
        m.insert("pck_crl".into(), json!(hex::encode(crl(&stranger, c.verify_at(), &[]))));
        let v = run(c.tee(), &forged, &as_endorsement(&m), &test_anchors, c.verify_at());
        let (check, message) = error(&v);
        assert_eq!(check, "PCK CRL", "{}: {message}", c.id);
        assert!(message.contains("signature"), "{message}");
    }
}

fn bundle_map(e: &[Endorsement]) -> serde_json::Map<String, Value> {
    match serde_json::from_slice(&e[0].bytes) {
        Ok(Value::Object(m)) => m,
        _ => panic!("bundle"),
    }
}

type Edit = fn(&mut Value);

/// Verify the case's quote through the test PKI with its TCB Info and QE
/// Identity edited and re-signed (as if Intel had published them).
fn with_signed_edits(c: &Case, pki: &TestPki, tcb_edit: Edit, qe_edit: Edit) -> Verification {
    let b = bundle(c);
    let mut tcb: Value = serde_json::from_str(b["tcb_info"].as_str().expect("tcb_info")).expect("json");
    let mut qe: Value = serde_json::from_str(b["qe_identity"].as_str().expect("qe_identity")).expect("json");
    tcb_edit(&mut tcb);
    qe_edit(&mut qe);
    let e = test_bundle_with(c, pki, &tcb.to_string(), &qe.to_string(), &[], &[]);
    let mut anchors = TrustAnchors::empty();
    anchors.push(AnchorKind::IntelSgxRoot, pki.root.2.clone());
    run(c.tee(), &requote(&c.evidence_bytes(), pki), &e, &anchors, c.verify_at())
}

fn levels(v: &mut Value) -> &mut Vec<Value> {
    v["tcbLevels"].as_array_mut().expect("tcbLevels")
}

fn module_01(v: &mut Value) -> &mut Value {
    v["tdxModuleIdentities"].as_array_mut().expect("tdxModuleIdentities").iter_mut().find(|m| m["id"] == json!("TDX_01")).expect("TDX_01")
}

/// Each TCB / identity rule, broken in collateral that is validly signed
/// (through a test PKI), fails by its own name; statuses combine as QVL's.
#[test]
fn every_tcb_and_identity_rule_fails_by_name_in_validly_signed_collateral() {
    let none: Edit = |_| {};
    // TDX: tdx-dcapqvl-v4 runs TDX module major version 1 (identity TDX_01).
    let c = case("tdx-dcapqvl-v4");
    let pki = test_pki(&real_leaf(&c.evidence_bytes()));
    assert_eq!(claims(&with_signed_edits(&c, &pki, none, none))["tcb_status"], json!("UpToDate"));
    let failing: Vec<(&str, Edit, Edit, &str)> = vec![
        ("TCB Info id SGX", |t| t["id"] = json!("SGX"), none, "TCB Info TEE"),
        ("unparsable TCB Info", |t| *t = json!({"id": "TDX", "version": 3}), none, "TCB Info format"),
        ("every level Revoked", |t| levels(t).iter_mut().for_each(|l| l["tcbStatus"] = json!("Revoked")), none, "TCB status"),
        (
            "TDX components out of reach",
            |t| levels(t).iter_mut().for_each(|l| l["tcb"]["tdxtcbcomponents"][2]["svn"] = json!(250)),
            none,
            "TCB level",
        ),
        (
            "SGX components out of reach",
            |t| levels(t).iter_mut().for_each(|l| l["tcb"]["sgxtcbcomponents"][0]["svn"] = json!(250)),
            none,
            "TCB level",
        ),
        (
            "no tdxModuleIdentities",
            |t| {
                t.as_object_mut().map(|o| o.remove("tdxModuleIdentities"));
            },
            none,
            "TDX module identity",
        ),
        ("other module signer", |t| module_01(t)["mrsigner"] = json!("11".repeat(48)), none, "TDX module identity"),
        (
            "module ISVSVN out of reach",
            |t| module_01(t)["tcbLevels"].as_array_mut().expect("levels").iter_mut().for_each(|l| l["tcb"]["isvsvn"] = json!(250)),
            none,
            "TDX module TCB level",
        ),
        (
            "module Revoked",
            |t| module_01(t)["tcbLevels"].as_array_mut().expect("levels").iter_mut().for_each(|l| l["tcbStatus"] = json!("Revoked")),
            none,
            "TCB status",
        ),
        ("QE Identity id QE", none, |q| q["id"] = json!("QE"), "QE Identity TEE"),
        ("other QE signer", none, |q| q["mrsigner"] = json!("22".repeat(32)), "QE Identity match"),
        ("other QE product", none, |q| q["isvprodid"] = json!(q["isvprodid"].as_u64().unwrap_or(0) + 1), "QE Identity match"),
        ("QE ISVSVN out of reach", none, |q| levels(q).iter_mut().for_each(|l| l["tcb"]["isvsvn"] = json!(60000)), "QE TCB level"),
        ("QE Revoked", none, |q| levels(q).iter_mut().for_each(|l| l["tcbStatus"] = json!("Revoked")), "TCB status"),
        ("unparsable QE Identity", none, |q| *q = json!({"id": "TD_QE"}), "QE Identity format"),
    ];
    for (what, t, q, want) in failing {
        let v = with_signed_edits(&c, &pki, t, q);
        assert_eq!(failed_check(&v), want, "{what}");
    }
    // An out-of-date TDX module makes the platform OutOfDate, with the module's advisories.
    let v = with_signed_edits(
        &c,
        &pki,
        |t| {
            for l in module_01(t)["tcbLevels"].as_array_mut().expect("levels") {
                l["tcbStatus"] = json!("OutOfDate");
                l["advisoryIDs"] = json!(["INTEL-SA-MODULE"]);
            }
        },
        none,
    );
    let got = claims(&v);
    assert_eq!((&got["tcb_status"], &got["advisory_ids"]), (&json!("OutOfDate"), &json!(["INTEL-SA-MODULE"])));
    // An out-of-date QE does too, with the QE level's advisories.
    let v = with_signed_edits(&c, &pki, none, |q| {
        for l in levels(q) {
            l["tcbStatus"] = json!("OutOfDate");
            l["advisoryIDs"] = json!(["INTEL-SA-QE"]);
        }
    });
    let got = claims(&v);
    assert_eq!((&got["tcb_status"], &got["advisory_ids"]), (&json!("OutOfDate"), &json!(["INTEL-SA-QE"])));

    // SGX: ConfigurationAndSWHardeningNeeded with an out-of-date QE becomes
    // OutOfDateConfigurationNeeded (QVL convergeTcbStatusWithQeTcbStatus).
    let c = case("sgx-dcapqvl");
    let pki = test_pki(&real_leaf(&c.evidence_bytes()));
    let v = with_signed_edits(&c, &pki, none, |q| levels(q).iter_mut().for_each(|l| l["tcbStatus"] = json!("OutOfDate")));
    assert_eq!(claims(&v)["tcb_status"], json!("OutOfDateConfigurationNeeded"));
    // A (well-formed) TDX TCB Info for this SGX platform's FMSPC.
    let mut tdx_info: Value = serde_json::from_str(bundle(&case("tdx-dcapqvl-v4"))["tcb_info"].as_str().expect("tcb")).expect("json");
    let sgx_info: Value = serde_json::from_str(bundle(&c)["tcb_info"].as_str().expect("tcb")).expect("json");
    tdx_info["fmspc"] = sgx_info["fmspc"].clone();
    tdx_info["pceId"] = sgx_info["pceId"].clone();
    let qe = bundle(&c)["qe_identity"].as_str().expect("qe").to_string();
    let e = test_bundle_with(&c, &pki, &tdx_info.to_string(), &qe, &[], &[]);
    let mut anchors = TrustAnchors::empty();
    anchors.push(AnchorKind::IntelSgxRoot, pki.root.2.clone());
    let v = run(c.tee(), &requote(&c.evidence_bytes(), &pki), &e, &anchors, c.verify_at());
    assert_eq!(failed_check(&v), "TCB Info TEE");
    assert_eq!(failed_check(&with_signed_edits(&c, &pki, |t| t["id"] = json!("TDX"), none)), "TCB Info format");
    // The same platform judged by a TCB Info v2 (SGX only: no id, components
    // as sgxtcbcompNNsvn) gives the same level and status.
    let v = with_signed_edits(
        &c,
        &pki,
        |t| {
            let o = t.as_object_mut().expect("object");
            o.remove("id");
            o.insert("version".into(), json!(2));
            for l in o.get_mut("tcbLevels").and_then(Value::as_array_mut).expect("levels") {
                let comps = l["tcb"]["sgxtcbcomponents"].as_array().expect("components").clone();
                let pce = l["tcb"]["pcesvn"].clone();
                let mut tcb = serde_json::Map::new();
                for (i, comp) in comps.iter().enumerate() {
                    tcb.insert(format!("sgxtcbcomp{:02}svn", i + 1), comp["svn"].clone());
                }
                tcb.insert("pcesvn".into(), pce);
                l["tcb"] = Value::Object(tcb);
            }
        },
        none,
    );
    let got = claims(&v);
    assert_eq!(got["tcb_status"], c.expected_claims["tcb_status"]);
    assert!(same_claim(&c.expected_claims["advisory_ids"], got.get("advisory_ids")));
    assert_eq!(failed_check(&with_signed_edits(&c, &pki, none, |q| q["id"] = json!("TD_QE"))), "QE Identity TEE");
    assert_eq!(
        failed_check(&with_signed_edits(&c, &pki, |t| levels(t).iter_mut().for_each(|l| l["tcbStatus"] = json!("Revoked")), none)),
        "TCB status"
    );
}

/// A PCK leaf without the SGX extensions, and Intel's TCB Info signed by a
/// key that does not chain to the pinned root, are refused by name.
#[test]
fn pck_without_sgx_extensions_and_foreign_tcb_signer_are_refused() {
    let c = case("tdx-dcapqvl-v4");
    let ev = c.evidence_bytes();
    let pki = test_pki_with(&real_leaf(&ev), false);
    let mut anchors = TrustAnchors::empty();
    anchors.push(AnchorKind::IntelSgxRoot, pki.root.2.clone());
    let v = run(c.tee(), &requote(&ev, &pki), &test_bundle(&c, &pki, &[], &[]), &anchors, c.verify_at());
    let (check, message) = error(&v);
    assert_eq!(check, "PCK certificate");
    assert!(message.contains("SGX extensions"), "{message}");

    // The real quote and CRLs, with the TCB Info re-signed by a look-alike "Intel SGX TCB Signing".
    let pki = test_pki(&real_leaf(&ev));
    let mut m = bundle(&c);
    let tcb = m["tcb_info"].as_str().expect("tcb_info").to_string();
    m.insert("tcb_info_signature".into(), json!(hex::encode(sign_raw(&pki.signer.0, tcb.as_bytes()))));
    m.insert("tcb_info_issuer_chain".into(), json!(format!("{}{}", pem(&pki.signer.1), pem(&pki.root.2))));
    let v = run(c.tee(), &ev, &as_endorsement(&m), &TrustAnchors::pinned(), c.verify_at());
    let (check, message) = error(&v);
    assert_eq!(check, "TCB Info signing chain", "{message}");
}

#[test]
fn an_expected_nonce_must_be_the_whole_report_data() {
    for c in accept_cases() {
        let (ev, end) = (c.evidence_bytes(), c.endorsement_files());
        let rd = hex::decode(claims(&run_case(&c, c.verify_at()))["report_data"].as_str().expect("report_data")).expect("hex");
        let anchors = TrustAnchors::pinned();
        let req = |nonce: &[u8]| {
            cachet_verify::verify(
                c.tee(),
                &cachet_verify::VerifyRequest {
                    evidence: &ev,
                    endorsements: &end,
                    anchors: &anchors,
                    at: c.verify_at(),
                    expected_nonce: Some(nonce),
                },
            )
        };
        assert!(req(&rd).verified(), "{}", c.id);
        // A prefix is the nonce only when the rest is zero padding; 2 bytes never are.
        for n in [8, 32] {
            assert_eq!(req(&rd[..n]).verified(), rd[n..].iter().all(|b| *b == 0), "{}: {n}-byte prefix", c.id);
        }
        assert_eq!(failed_check(&req(&rd[..2])), "Nonce", "{}", c.id);
        let mut other = rd.clone();
        other[63] ^= 0xff;
        assert_eq!(failed_check(&req(&other)), "Nonce", "{}", c.id);
    }
}

#[test]
fn an_snp_report_sent_as_tdx_is_named() {
    let snp = cases(&["snp"]).into_iter().find(|c| c.expect == "accept").expect("an snp case");
    let c = accept_cases().into_iter().find(|c| c.tee() == Tee::Tdx).expect("a tdx case");
    let v = run(Tee::Tdx, &snp.evidence_bytes(), &c.endorsement_files(), &TrustAnchors::pinned(), c.verify_at());
    let (check, message) = error(&v);
    assert_eq!(check, "Evidence format");
    assert!(message.contains("this looks like an SNP report, not a TDX quote"), "{message}");
    // And an SGX quote is not a TDX quote either.
    let sgx = accept_cases().into_iter().find(|c| c.tee() == Tee::Sgx).expect("an sgx case");
    let v = run(Tee::Tdx, &sgx.evidence_bytes(), &sgx.endorsement_files(), &TrustAnchors::pinned(), sgx.verify_at());
    let (check, message) = error(&v);
    assert_eq!(check, "Evidence format");
    assert!(message.contains("this looks like an SGX quote, not a TDX quote"), "{message}");
}

// ------------------------------------------------------ unsettled cases

/// `tdx-dcapqvl-v5-outdated`: REFUSED by "TCB level".
///
/// The PCK certificate's SGX TCB components are 03 03 02 02 04 01 00 03 ...;
/// every level of this TCB Info (FMSPC 90c06f000000, evaluation data number
/// 18) requires component 8 >= 5. QVL `matchTcbLevels` selects no SGX level,
/// and `checkTcbLevel` returns `STATUS_TCB_NOT_SUPPORTED`: an error, not an
/// out-of-date status (OutOfDate needs a matching level marked OutOfDate).
/// dcap-qvl only accepts this quote in its own test by overriding the TCB
/// Info (`danger-allow-tcb-override`). Every signature, chain, CRL and window
/// check passes first: the refusal is about the TCB alone.
#[test]
fn unsettled_dcapqvl_v5_outdated_is_not_supported_by_its_tcb_info() {
    let c = case("tdx-dcapqvl-v5-outdated");
    let v = run_case(&c, c.verify_at());
    let (check, message) = error(&v);
    assert_eq!(check, "TCB level");
    assert!(message.contains("TCB not supported"), "{message}");
    assert!(v.checks.iter().filter(|ch| ch.name != "TCB level").all(|ch| ch.ok), "{:#?}", v.checks);
}

/// `tdx-gotdx-spr-e4`: REFUSED by "TCB level".
///
/// This Sapphire Rapids E4 platform's PCK TCB components are 03 03 02 02 02
/// 01 00 02 ... with PCESVN 11; the lowest level of TCB Info 50806f000000
/// (evaluation data number 15) needs 05 05 02 02 03 01 00 03 ... So no SGX
/// level matches (QVL `STATUS_TCB_NOT_SUPPORTED`), as go-tdx-guest's own
/// README describes ("If no TCB level matches ... the TCB level is not
/// supported"). The same verdict comes from the raw Intel PCS artefacts in
/// the folder (TCB Info and QE Identity responses, PCK CRL in DER, Root CA
/// CRL in DER, issuer chains in PEM or URL-encoded in the Go test file).
#[test]
fn unsettled_gotdx_spr_e4_is_not_supported_by_its_tcb_info_bundle_or_raw_pcs() {
    let c = case("tdx-gotdx-spr-e4");
    let v = run_case(&c, c.verify_at());
    assert_eq!(failed_check(&v), "TCB level");

    let dir = vectors_dir().join("tdx/go-tdx-guest");
    let read = |p: &str| Endorsement { name: p.into(), bytes: std::fs::read(dir.join(p)).expect(p) };
    let raw: Vec<Endorsement> = [
        "sample_tcbInfo_response",
        "sample_qeIdentity_response",
        "pckcrl",
        "rootcrl.der",
        "derived/tcb_info_issuer_chain.pem",
        "derived/qe_identity_issuer_chain.pem",
    ]
    .into_iter()
    .map(read)
    .collect();
    let v = run(Tee::Tdx, &c.evidence_bytes(), &raw, &TrustAnchors::pinned(), c.verify_at());
    let (check, message) = error(&v);
    assert_eq!(check, "TCB level", "{message}");
    for name in ["Collateral", "TCB Info signature", "QE Identity signature", "Root CA CRL", "PCK CRL", "TCB Info validity"] {
        assert!(v.checks.iter().any(|ch| ch.name == name && ch.ok), "raw PCS: {name} did not pass: {:#?}", v.checks);
    }
    // The same with the signing chain only as URL-encoded PCS headers inside the Go test file.
    let mut via_go: Vec<Endorsement> = raw.into_iter().filter(|e| !e.name.ends_with(".pem")).collect();
    via_go.push(read("test_cases.go"));
    let v = run(Tee::Tdx, &c.evidence_bytes(), &via_go, &TrustAnchors::pinned(), c.verify_at());
    assert_eq!(failed_check(&v), "TCB level");
    // Without any TCB signing certificate, the collateral is incomplete by name.
    let v = run(Tee::Tdx, &c.evidence_bytes(), &via_go[..4], &TrustAnchors::pinned(), c.verify_at());
    let (check, message) = error(&v);
    assert_eq!(check, "Collateral");
    assert!(message.contains("no TCB signing certificate"), "{message}");
}

/// `tdx-gotdx-v5`: REFUSED at its stated verify_at by "TCB Info validity".
///
/// The composite collateral pairs go-tdx-guest's TCB Info v5 sample (issued
/// 2026-02-01T14:49:26Z, nextUpdate 2026-03-03T14:49:26Z) with dcap-qvl's QE
/// Identity and CRLs (issued 2026-02-18). The stated verify_at
/// (2026-03-05T10:50:03Z) is after the TCB Info's nextUpdate, which QVL
/// reports as `STATUS_SGX_TCB_INFO_EXPIRED`. Inside the real common window
/// (2026-02-18T10:42:15Z .. 2026-03-03T14:49:26Z) the quote verifies: SGX and
/// TDX levels of 2024-11-13 are UpToDate, module TDX_01 ISVSVN 11 >= 6 is
/// UpToDate, QE UpToDate; no TD relaunch rule applies.
#[test]
fn unsettled_gotdx_v5_collateral_expired_at_verify_at_but_verifies_inside_its_window() {
    let c = case("tdx-gotdx-v5");
    let v = run_case(&c, c.verify_at());
    let (check, message) = error(&v);
    assert_eq!(check, "TCB Info validity");
    assert!(message.contains("expired"), "{message}");
    let inside = ts("2026-02-25T00:00:00Z");
    let v = run_case(&c, inside);
    let got = claims(&v);
    assert_eq!(got["tcb_status"], json!("UpToDate"));
    assert_eq!(got["advisory_ids"], json!([]));
    assert_eq!(got["tdx_version"], json!("1.5"));
    assert!(!run_case(&c, ts("2026-03-03T14:49:27Z")).verified());
    // The raw PCS TCB Info v5 response with the same QE Identity and CRLs: same verdicts.
    let mut raw = vec![Endorsement {
        name: "sample_tcbinfo_response_v5".into(),
        bytes: std::fs::read(vectors_dir().join("tdx/go-tdx-guest/sample_tcbinfo_response_v5")).expect("v5 response"),
    }];
    let mut m = bundle(&c);
    m.remove("tcb_info");
    m.remove("tcb_info_signature");
    raw.extend(as_endorsement(&m));
    let v = run(Tee::Tdx, &c.evidence_bytes(), &raw, &TrustAnchors::pinned(), inside);
    assert_eq!(claims(&v)["tcb_status"], json!("UpToDate"));
    let v = run(Tee::Tdx, &c.evidence_bytes(), &raw, &TrustAnchors::pinned(), c.verify_at());
    assert_eq!(failed_check(&v), "TCB Info validity");
}

/// `tdx-automata-v5`: REFUSED by "TCB level".
///
/// The PCK TCB components are 01 01 02 02 03 01 00 03 ...; both levels of the
/// 2025-02 TCB Info for 90c06f000000 need components 1-2 >= 2 and 8 >= 5. No
/// SGX level matches: QVL `STATUS_TCB_NOT_SUPPORTED`. (Its MRSERVICETD is
/// non-zero, but QVL does not judge MRSERVICETD; the TCB decides first.)
#[test]
fn unsettled_automata_v5_is_not_supported_by_its_tcb_info() {
    let c = case("tdx-automata-v5");
    let v = run_case(&c, c.verify_at());
    let (check, message) = error(&v);
    assert_eq!(check, "TCB level");
    assert!(message.contains("TCB not supported"), "{message}");
}

/// `tdx-alibaba-v5`: VERIFIED, status OutOfDate.
///
/// The collateral is Intel's genuine, signed collateral for FMSPC
/// 90c06f000000 (TCB Info is per FMSPC, so it applies to every platform of
/// that FMSPC; the PCK CRL is the Platform CA's, which issued this PCK).
/// TCB level: the 2024-03-13 level (SGX 02 02 02 02 03 01 00 05, PCESVN 13,
/// TDX 05 00 02) is OutOfDate with INTEL-SA-01036/01079/01099/01103/01111;
/// TEE_TCB_SVN[1] = 1 selects module identity TDX_01, whose ISVSVN 5 matches
/// the OutOfDate level (>= 4). QVL converges OutOfDate; the TD 1.5 relaunch
/// rule does not apply (SGX status is not current); QE is UpToDate.
/// MRSERVICETD is non-zero: dcap-qvl refuses that by its own default policy,
/// but Intel's QVL performs no MRSERVICETD check — a service-TD binding is a
/// measurement for appraisal policy, so it is reported as `mr_service_td`.
#[test]
fn unsettled_alibaba_v5_verifies_out_of_date_with_its_service_td_reported() {
    let c = case("tdx-alibaba-v5");
    let v = run_case(&c, c.verify_at());
    let got = claims(&v);
    assert_eq!(got["tcb_status"], json!("OutOfDate"));
    let want = ["INTEL-SA-01036", "INTEL-SA-01079", "INTEL-SA-01099", "INTEL-SA-01103", "INTEL-SA-01111"];
    assert!(same_claim(&json!(want), got.get("advisory_ids")), "{:?}", got.get("advisory_ids"));
    assert_eq!(got["tdx_module_tcb_status"], json!("OutOfDate"));
    let mr_service_td = got["mr_service_td"].as_str().expect("mr_service_td");
    assert!(mr_service_td.len() == 96 && mr_service_td.bytes().any(|b| b != b'0'));
    assert!(!run_case(&c, c.valid_to() + HOUR).verified());
}

// ----------------------------------------------- raw Intel PCS artefacts

/// The automata 2507 folder holds the raw PCS artefacts of the
/// `tdx-automata-2507` bundle (TCB Info and QE Identity responses, CRLs in
/// DER, the TCB signing certificate and root in DER): the verdict and every
/// claim must be the same as with the bundle.
#[test]
fn raw_pcs_artefacts_give_the_same_result_as_the_bundle() {
    let c = case("tdx-automata-2507");
    let bundle_claims = claims(&run_case(&c, c.verify_at())).clone();
    let dir = vectors_dir().join("tdx/automata/2507");
    let mut raw = Vec::new();
    for f in std::fs::read_dir(&dir).expect("folder") {
        let p = f.expect("entry").path();
        raw.push(Endorsement { name: p.display().to_string(), bytes: std::fs::read(&p).expect("file") });
    }
    let v = run(Tee::Tdx, &c.evidence_bytes(), &raw, &TrustAnchors::pinned(), c.verify_at());
    assert_eq!(claims(&v), &bundle_claims);
    assert!(!run(Tee::Tdx, &c.evidence_bytes(), &raw, &TrustAnchors::pinned(), c.valid_to() + HOUR).verified());
    // Dropping the PCK CRL file is named.
    let without: Vec<Endorsement> = raw.iter().filter(|e| !e.name.contains("pck_platform_crl")).cloned().collect();
    let v = run(Tee::Tdx, &c.evidence_bytes(), &without, &TrustAnchors::pinned(), c.verify_at());
    let (check, message) = error(&v);
    assert_eq!(check, "Collateral");
    assert!(message.contains("no PCK CRL in the endorsements"), "{message}");
    // The DER CRLs as PEM and hex text are read the same way.
    let mut texts = Vec::new();
    for e in &raw {
        if e.name.ends_with("pck_platform_crl.der") {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&e.bytes);
            texts.push(Endorsement {
                name: "pck.pem".into(),
                bytes: format!("-----BEGIN X509 CRL-----\n{b64}\n-----END X509 CRL-----\n").into_bytes(),
            });
        } else if e.name.ends_with("intel_root_ca_crl.der") {
            texts.push(Endorsement { name: "root.hex".into(), bytes: hex::encode(&e.bytes).into_bytes() });
        } else {
            texts.push(e.clone());
        }
    }
    let v = run(Tee::Tdx, &c.evidence_bytes(), &texts, &TrustAnchors::pinned(), c.verify_at());
    assert_eq!(claims(&v), &bundle_claims);
}

// ------------------------------------------------------------- robustness

fn real_quotes() -> Vec<(Tee, Vec<u8>, Vec<Endorsement>, i64)> {
    accept_cases().into_iter().map(|c| (c.tee(), c.evidence_bytes(), c.endorsement_files(), c.verify_at())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..6000), sgx in any::<bool>()) {
        let tee = if sgx { Tee::Sgx } else { Tee::Tdx };
        let v = run(tee, &data, &[], &TrustAnchors::pinned(), 0);
        prop_assert!(!v.verified());
    }

    #[test]
    fn truncated_and_mutated_quotes_never_panic(pick in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>(),
                                                 flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4)) {
        let quotes = real_quotes();
        let (tee, ev, end, at) = &quotes[pick.index(quotes.len())];
        // Truncated anywhere inside the declared structure: refused, never a panic.
        let l = quote::parse(ev).map(|q| q.signed.len() + 4).unwrap_or(0);
        let n = cut.index(ev.len());
        let v = run(*tee, &ev[..n], end, &TrustAnchors::pinned(), *at);
        if n < l {
            prop_assert!(!v.verified());
        }
        // Random byte changes anywhere (including lengths): never a panic.
        let mut m = ev.clone();
        for (i, b) in &flips {
            let i = i.index(m.len());
            m[i] ^= b | 1;
        }
        let _ = run(*tee, &m, end, &TrustAnchors::pinned(), *at);
        // A real quote prefix followed by random bytes parses deeper.
        let mut tail = ev[..n.min(l)].to_vec();
        tail.extend(flips.iter().map(|(_, b)| *b));
        let _ = run(*tee, &tail, end, &TrustAnchors::pinned(), *at);
    }

    #[test]
    fn mutated_collateral_never_panics(pick in any::<prop::sample::Index>(),
                                       edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
                                       cut in any::<prop::sample::Index>()) {
        let quotes = real_quotes();
        let (tee, ev, end, at) = &quotes[pick.index(quotes.len())];
        let mut bytes = end[0].bytes.clone();
        for (i, b) in &edits {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        let e = vec![Endorsement { name: "m".into(), bytes }];
        let _ = run(*tee, ev, &e, &TrustAnchors::pinned(), *at);
        let n = cut.index(end[0].bytes.len());
        let e = vec![Endorsement { name: "t".into(), bytes: end[0].bytes[..n].to_vec() }];
        let v = run(*tee, ev, &e, &TrustAnchors::pinned(), *at);
        let whole = end[0].bytes[n..].iter().all(u8::is_ascii_whitespace);
        prop_assert!(!v.verified() || whole);
    }
}

/// The case's quote with its certification data replaced by `typ`/`data`
/// (everything signed — header, body, QE report and its signature — kept).
fn with_cert_data(ev: &[u8], typ: u16, data: &[u8]) -> Vec<u8> {
    let q = quote::parse(ev).expect("quote");
    rebuild_quote(ev, &q.qe_report_signature, typ, data)
}

/// A quote whose certification data is not the PCK chain (type 3:
/// encrypted PPID, CPUSVN, PCESVN, PCE ID) needs the PCK certificate from
/// the endorsements. PCS gives one per TCB level, and a bundle may carry
/// other platforms' too, each with its own key: the verifier must use the
/// one whose key signed the QE report, wherever it stands in the list.
#[test]
fn a_pck_certificate_from_the_endorsements_is_chosen_by_the_qe_report_signature() {
    let all = accept_cases();
    for c in &all {
        let ev = c.evidence_bytes();
        let want = run_case(c, c.verify_at());
        let want = claims(&want);
        let q = quote::parse(&ev).expect("quote");
        let own_chain = String::from_utf8(q.cert_data.to_vec()).expect("PEM chain");
        // Other platforms' PCK certificates, listed first.
        let own_leaf = real_leaf(&ev);
        let decoys: Vec<Vec<u8>> = all.iter().map(|o| real_leaf(&o.evidence_bytes())).filter(|l| *l != own_leaf).collect();
        assert!(!decoys.is_empty(), "{}: no other platform's PCK certificate among the cases", c.id);
        let decoy_pem: String = decoys.iter().map(|d| pem(d)).collect();
        let type3 = with_cert_data(&ev, 3, &[0x5a; 384 + 16 + 2 + 2]);

        let mut endorsements = vec![Endorsement { name: "other-pcks.pem".into(), bytes: decoy_pem.clone().into_bytes() }];
        endorsements.push(Endorsement { name: "pck-chain.pem".into(), bytes: own_chain.into_bytes() });
        endorsements.extend(c.endorsement_files());
        let v = run(c.tee(), &type3, &endorsements, &TrustAnchors::pinned(), c.verify_at());
        let got = claims(&v);
        for k in ["tcb_status", "fmspc", "report_data", "advisory_ids"] {
            assert_eq!(got.get(k), want.get(k), "{}: claim {k}", c.id);
        }

        // Only other platforms' certificates: refused, by name.
        let mut only_decoys = vec![Endorsement { name: "other-pcks.pem".into(), bytes: decoy_pem.into_bytes() }];
        only_decoys.extend(c.endorsement_files());
        let v = run(c.tee(), &type3, &only_decoys, &TrustAnchors::pinned(), c.verify_at());
        let (check, _) = error(&v);
        assert!(["QE report signature", "PCK certificate chain"].contains(&check.as_str()), "{}: refused by {check}", c.id);
        // No PCK certificate at all: the collateral is named.
        let v = run(c.tee(), &type3, &c.endorsement_files(), &TrustAnchors::pinned(), c.verify_at());
        assert_eq!(error(&v).0, "Collateral", "{}", c.id);
    }
}
