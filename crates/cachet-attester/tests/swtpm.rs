//! The TPM back-end with a real software TPM (Debian's swtpm + tpm2-tools):
//! the attester's quote, bound to `SHA-256(nonce ‖ runtime_data)`, is Cachet
//! TPM evidence that the verifier accepts when the AK is certified by a CA
//! it trusts (a test CA standing in for the AK CA), and refuses by name
//! with another nonce, without that CA, or with an altered PCR value.
//!
//! Prints a loud SKIPPED message when swtpm is not installed (fails under
//! `CI`); `.ci/run` installs it.

#[path = "../../cachet-verify/tests/common/swtpm.rs"]
mod swtpm;

use aws_lc_rs::digest;
use base64::Engine;
use cachet_attester::binding;
use cachet_attester::source::{BindingInput, EvidenceSource};
use cachet_attester::tpm::{Tools, TpmAk, TpmQuote};
use cachet_verify::{verify, AnchorKind, Checks, Tee, TrustAnchors, Verification, VerifyRequest};
use swtpm::Swtpm;

const NONCE: &[u8] = b"a fresh nonce from the verifier";
const RUNTIME: &[u8] = br#"{"crv":"P-256","kty":"EC","x":"...","y":"..."}"#;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn sha256(b: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, b).as_ref().to_vec()
}

/// The AK's public key as rcgen needs it to be certified.
struct AkKey(Vec<u8>);

impl rcgen::PublicKeyData for AkKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

/// A test AK CA and a certificate for the AK: (CA DER, AK certificate PEM).
fn certify(spki_der: &[u8]) -> (Vec<u8>, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).expect("AK SPKI");
    let point = spki.subject_public_key.data.to_vec();
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "Cachet TEST AK CA (swtpm tests only)");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "swtpm attestation key");
    let leaf_cert = leaf.signed_by(&AkKey(point), &ca_cert, &ca_key).unwrap();
    (ca_cert.der().to_vec(), pem(leaf_cert.der()))
}

fn run(evidence: &[u8], anchors: &TrustAnchors, nonce: &[u8]) -> Verification {
    verify(Tee::Tpm, &VerifyRequest { evidence, endorsements: &[], anchors, at: now(), expected_nonce: Some(nonce) })
}

fn failed(v: &Verification) -> String {
    match &v.result {
        Ok(c) => panic!("expected a refusal, got {c}"),
        Err(e) => e.check.clone(),
    }
}

fn tcti(sw: &Swtpm) -> String {
    format!("swtpm:host=127.0.0.1,port={}", sw.port)
}

#[test]
fn swtpm_quote_binds_the_nonce_and_verifies_with_a_certified_ak() {
    if !swtpm::available() {
        return;
    }
    let sw = Swtpm::blank();
    sw.extend(0, &[("sha256", sha256(b"firmware"))]);
    sw.extend(7, &[("sha256", sha256(b"secure boot policy"))]);
    let tools = Tools::new(&tcti(&sw));
    let ak_dir = tempfile::tempdir().unwrap();
    let ak = TpmAk::create(&tools, ak_dir.path()).expect("AK");
    assert_eq!(ak.public.len(), u16::from_be_bytes([ak.public[0], ak.public[1]]) as usize + 2, "TPM2B_PUBLIC");
    let (ca_der, ak_cert) = certify(&ak.spki_der);

    let mut source = TpmQuote::new(&tools.tcti);
    source.ak = Some(ak);
    source.pcrs = vec![7, 0, 1];
    source.ak_cert_chain = vec![ak_cert];
    let input = BindingInput { nonce: NONCE, runtime_data: RUNTIME };
    let ev = source.collect(&input).expect("quote");
    assert_eq!(ev.tee, Tee::Tpm);
    let doc: serde_json::Value = serde_json::from_slice(&ev.evidence).unwrap();
    let extra = binding::tpm_extra_data(NONCE, RUNTIME);
    assert_eq!(doc["nonce"], hex::encode(extra));

    let mut anchors = TrustAnchors::pinned();
    anchors.push(AnchorKind::GoogleEkAkRoot, ca_der);
    let v = run(&ev.evidence, &anchors, &extra);
    let claims = v.result.unwrap_or_else(|e| panic!("{e} {:?}", v.checks));
    assert_eq!(claims["tee"], "tpm");
    assert_eq!(claims["extra_data"], hex::encode(extra));
    // The PCRs reported are the TPM's, in every selected index.
    for (bank, i, value) in sw.pcr_read("sha256:0,1,7") {
        assert_eq!(claims["pcrs"][bank.as_str()][i.to_string()], hex::encode(value), "PCR {i}");
    }
    assert_eq!(
        claims["pcrs"]["sha256"]["7"],
        hex::encode({
            let mut pcr = vec![0u8; 32];
            pcr.extend(sha256(b"secure boot policy"));
            sha256(&pcr)
        })
    );

    // Refusals, by name.
    let other = binding::tpm_extra_data(b"another nonce", RUNTIME);
    assert_eq!(failed(&run(&ev.evidence, &anchors, &other)), "Quote nonce");
    let key_swapped = binding::tpm_extra_data(NONCE, b"another key");
    assert_eq!(failed(&run(&ev.evidence, &anchors, &key_swapped)), "Quote nonce");
    assert_eq!(failed(&run(&ev.evidence, &TrustAnchors::pinned(), &extra)), "AK certificate chain");
    let mut altered = doc.clone();
    altered["pcrs"]["sha256"]["7"] = serde_json::Value::String(hex::encode([0u8; 32]));
    assert_eq!(failed(&run(&serde_json::to_vec(&altered).unwrap(), &anchors, &extra)), "PCR digest");
}

#[test]
fn swtpm_without_a_provisioned_ak_quotes_with_a_fresh_one() {
    if !swtpm::available() {
        return;
    }
    let sw = Swtpm::blank();
    let source = TpmQuote::new(&tcti(&sw));
    let input = BindingInput { nonce: NONCE, runtime_data: b"" };
    let ev = source.collect(&input).expect("quote with a per-quote AK");
    let extra = binding::tpm_extra_data(NONCE, b"");
    // The quote itself verifies against the AK it carries ...
    let req = VerifyRequest {
        evidence: &ev.evidence,
        endorsements: &[],
        anchors: &TrustAnchors::pinned(),
        at: now(),
        expected_nonce: Some(&extra),
    };
    let mut checks = Checks::new();
    let parsed = cachet_verify::tpm::parse_evidence(&req, &mut checks).unwrap();
    let ak = cachet_verify::tpm::parse_ak(&parsed, &mut checks).unwrap();
    cachet_verify::tpm::verify_quote(&parsed.quote, &parsed.signature, &ak, &parsed.pcrs, Some(&extra), &mut checks)
        .unwrap_or_else(|e| panic!("{e}"));
    // ... but nothing vouches for that AK.
    assert_eq!(failed(&run(&ev.evidence, &TrustAnchors::pinned(), &extra)), "AK certificate chain");
    // Two quotes: two different AKs (nothing persists between them).
    let ev2 = source.collect(&input).unwrap();
    let ak_of = |e: &[u8]| serde_json::from_slice::<serde_json::Value>(e).unwrap()["ak_public"].clone();
    assert_ne!(ak_of(&ev.evidence), ak_of(&ev2.evidence));
}

#[test]
fn unreachable_tpm_fails_naming_the_tool() {
    let source = TpmQuote::new("swtpm:host=127.0.0.1,port=1");
    let e = source.collect(&BindingInput { nonce: NONCE, runtime_data: b"" }).unwrap_err().to_string();
    assert!(e.starts_with("tpm: ") && e.contains("tpm2_"), "{e}");
}
