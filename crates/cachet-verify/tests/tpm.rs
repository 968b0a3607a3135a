//! TPM 2.0 quotes: the real GCP vTPM and AWS NitroTPM evidence of
//! `cases.json` (tees `tpm` and `nitro-tpm`), tampered variants of it, and
//! quotes built here (ECDSA, RSASSA, RSA-PSS; TPM2B_PUBLIC, PEM and JWK AKs;
//! several banks) with a test PKI, to reach each check.

mod common;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use cachet_verify::tpm::quote::{self, AkPublic, HashAlg};
use cachet_verify::{AnchorKind, Endorsement, Tee, TrustAnchors, Verification, VerifyRequest};
use ciborium::value::Value as Cbor;
use common::{cases, failed_check, run, run_case, ts};
use proptest::prelude::*;
use rcgen::PublicKeyData;
use serde_json::{json, Value};

fn verify(tee: Tee, evidence: &[u8], anchors: &TrustAnchors, at: i64, nonce: Option<&[u8]>) -> Verification {
    cachet_verify::verify(tee, &VerifyRequest { evidence, endorsements: &[], anchors, at, expected_nonce: nonce })
}

fn json_of(c: &common::Case) -> Value {
    serde_json::from_slice(&c.evidence_bytes()).unwrap()
}

fn accept_cases() -> Vec<common::Case> {
    cases(&["tpm", "nitro-tpm"]).into_iter().filter(|c| c.expect == "accept").collect()
}

fn run_json(c: &common::Case, v: &Value, anchors: &TrustAnchors, nonce: Option<&[u8]>) -> Verification {
    cachet_verify::verify(
        c.tee(),
        &VerifyRequest {
            evidence: v.to_string().as_bytes(),
            endorsements: &c.endorsement_files(),
            anchors,
            at: c.verify_at(),
            expected_nonce: nonce,
        },
    )
}

// ---------------------------------------------------------------------------
// Real evidence

#[test]
fn every_real_case_verifies_at_verify_at() {
    let all = accept_cases();
    assert!(all.iter().any(|c| c.tee == "tpm") && all.iter().any(|c| c.tee == "nitro-tpm"));
    for c in &all {
        let v = run_case(c, c.verify_at());
        let claims = v.result.as_ref().unwrap_or_else(|e| panic!("{}: {e}", c.id));
        assert_eq!(claims["tee"], c.tee);
        let j = json_of(c);
        // tpm: the quote's extraData; nitro-tpm: the AWS-signed NSM nonce.
        let nonce = if c.tee == "tpm" { &claims["extra_data"] } else { &claims["nonce"] };
        assert_eq!(nonce, &j["nonce"], "{}: the nonce claim is the fixture's nonce", c.id);
        // Every quoted PCR is reported, with the fixture's value.
        let banks = claims["pcrs"].as_object().unwrap();
        assert!(!banks.is_empty());
        for (bank, values) in banks {
            for (i, val) in values.as_object().unwrap() {
                assert_eq!(&j["pcrs"][bank][i], val, "{} {bank}:{i}", c.id);
            }
        }
        for name in ["TPM quote signature", "PCR digest", "AK binding"] {
            assert!(v.checks.iter().any(|k| k.name == name && k.ok), "{}: {name}", c.id);
        }
        let trust = if c.tee == "tpm" { "AK certificate chain" } else { "Nitro certificate chain" };
        assert!(v.checks.iter().any(|k| k.name == trust && k.ok), "{}: {trust}", c.id);
    }
}

#[test]
fn nitrotpm_quotes_a_sha384_bank_with_a_sha256_digest() {
    let c = accept_cases().into_iter().find(|c| c.tee == "nitro-tpm").unwrap();
    let v = run_case(&c, c.verify_at());
    let claims = v.result.unwrap();
    assert!(v.checks.iter().any(|k| k.ok && k.name == "PCR digest" && k.detail.starts_with("sha256")), "{:?}", v.checks);
    assert_eq!(claims["pcrs"].as_object().unwrap().len(), 1, "only the NSM-signed bank");
    assert_eq!(claims["pcrs"]["sha384"].as_object().unwrap().len(), 24);
}

#[test]
fn refused_once_the_trust_chain_expires() {
    // cases.json gives one window per evidence *set*; for a case whose own
    // leaf outlives that window the evidence is still genuine an hour after
    // valid_to, so this checks one day after it (beyond every AK leaf).
    for c in accept_cases() {
        let v = run_case(&c, c.valid_to() + 86_400);
        let name = failed_check(&v);
        let want = if c.tee == "tpm" { "AK certificate chain validity" } else { "Nitro certificate chain validity" };
        assert_eq!(name, want, "{}", c.id);
    }
}

#[test]
fn altered_pcr_values_are_refused_by_name() {
    for c in accept_cases() {
        let j = json_of(&c);
        let (bank, values) = j["pcrs"].as_object().unwrap().iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
        for idx in ["0", "7", "23"] {
            let mut m = j.clone();
            let old = values[idx].as_str().unwrap();
            let flipped = format!("{}{}", if old.starts_with('0') { "1" } else { "0" }, &old[1..]);
            m["pcrs"][&bank][idx] = json!(flipped);
            assert_eq!(failed_check(&run_json(&c, &m, &TrustAnchors::pinned(), None)), "PCR digest", "{} {bank}:{idx}", c.id);
        }
        // A quoted PCR left out.
        let mut m = j.clone();
        m["pcrs"][&bank].as_object_mut().unwrap().remove("5");
        assert_eq!(failed_check(&run_json(&c, &m, &TrustAnchors::pinned(), None)), "PCR digest", "{}", c.id);
    }
}

#[test]
fn a_quote_from_a_different_ak_is_refused() {
    let all: Vec<_> = accept_cases().into_iter().filter(|c| c.tee == "tpm").collect();
    assert!(all.len() >= 2);
    let (a, b) = (json_of(&all[0]), json_of(&all[1]));
    // a's AK and certificate, b's quote and signature.
    let mut m = a.clone();
    m["attestation"]["tpm"] = b["attestation"]["tpm"].clone();
    m["pcrs"] = b["pcrs"].clone();
    assert_eq!(failed_check(&run_json(&all[0], &m, &TrustAnchors::pinned(), None)), "TPM quote signature");
    // b's AK named in place of a's: a's certificate does not certify it.
    let mut m = a.clone();
    m["ak_pubkeys"] = b["ak_pubkeys"].clone();
    assert_eq!(failed_check(&run_json(&all[0], &m, &TrustAnchors::pinned(), None)), "AK binding");
    // The NitroTPM document binds its own AK, not a GCP one.
    let n = accept_cases().into_iter().find(|c| c.tee == "nitro-tpm").unwrap();
    let mut m = json_of(&n);
    m["ak_pubkeys"] = a["ak_pubkeys"].clone();
    assert_eq!(failed_check(&run_json(&n, &m, &TrustAnchors::pinned(), None)), "AK binding");
}

#[test]
fn expected_nonce_is_compared_with_extra_data() {
    for c in accept_cases() {
        let j = json_of(&c);
        let nonce = hex::decode(j["nonce"].as_str().unwrap()).unwrap();
        assert!(run_json(&c, &j, &TrustAnchors::pinned(), Some(&nonce)).verified(), "{}", c.id);
        let mut wrong = nonce.clone();
        wrong[31] ^= 1;
        assert_eq!(failed_check(&run_json(&c, &j, &TrustAnchors::pinned(), Some(&wrong))), "Quote nonce", "{}", c.id);
    }
}

#[test]
fn a_different_root_is_refused() {
    let other = test_ca("Not Google", &rcgen::PKCS_ECDSA_P256_SHA256);
    for c in accept_cases() {
        let (kind, name) = if c.tee == "tpm" {
            (AnchorKind::GoogleEkAkRoot, "AK certificate chain")
        } else {
            (AnchorKind::AwsNitroRoot, "Nitro certificate chain")
        };
        let anchors = TrustAnchors::pinned().with_replaced(kind, other.der().to_vec());
        let v = run(c.tee(), &c.evidence_bytes(), &c.endorsement_files(), &anchors, c.verify_at());
        assert_eq!(failed_check(&v), name, "{}", c.id);
    }
}

#[test]
fn bit_flips_in_quote_signature_and_document_are_refused() {
    for c in accept_cases() {
        let j = json_of(&c);
        let entry = j["attestation"]["tpm"].as_object().unwrap().keys().next().unwrap().clone();
        for field in ["attest_data", "signature"] {
            let bytes = hex::decode(j["attestation"]["tpm"][&entry][field].as_str().unwrap()).unwrap();
            for i in [0, 7, 40, bytes.len() / 2, bytes.len() - 1] {
                let mut b = bytes.clone();
                b[i] ^= 0x04;
                let mut m = j.clone();
                m["attestation"]["tpm"][&entry][field] = json!(hex::encode(&b));
                let name = failed_check(&run_json(&c, &m, &TrustAnchors::pinned(), None));
                assert!(
                    ["Quote structure", "Quote signature format", "TPM quote signature"].contains(&name.as_str()),
                    "{} {field}[{i}]: {name}",
                    c.id
                );
            }
        }
        if let Some(doc) = j["attestation"]["nitro"]["document"].as_str() {
            let bytes = hex::decode(doc).unwrap();
            let cose = cachet_verify::nitro::parse_cose_sign1(&bytes).unwrap();
            let at = bytes.windows(cose.payload.len()).position(|w| w == cose.payload).unwrap();
            let mut b = bytes.clone();
            b[at + 20] ^= 1; // inside module_id
            let mut m = j.clone();
            m["attestation"]["nitro"]["document"] = json!(hex::encode(&b));
            assert_eq!(failed_check(&run_json(&c, &m, &TrustAnchors::pinned(), None)), "COSE signature");
        }
    }
}

#[test]
fn detect_recognises_both_json_forms() {
    for c in accept_cases() {
        assert_eq!(cachet_verify::tpm::detect(&json_of(&c)), Some(c.tee()), "{}", c.id);
    }
    assert_eq!(cachet_verify::tpm::detect(&json!({"quote": "", "signature": "", "pcrs": {}})), Some(Tee::Tpm));
    assert_eq!(cachet_verify::tpm::detect(&json!({"quote": "", "signature": "", "pcrs": {}, "nitro_document": ""})), Some(Tee::NitroTpm));
    assert_eq!(cachet_verify::tpm::detect(&json!({"report": 1})), None);
}

// ---------------------------------------------------------------------------
// Quotes built here

fn test_ca(cn: &str, alg: &'static rcgen::SignatureAlgorithm) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2040, 1, 1);
    rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate_for(alg).unwrap()).unwrap()
}

const AT: &str = "2025-06-01T00:00:00Z";
const ATTRS_AK: u32 = 0x0005_0072; // fixedTPM fixedParent sensitiveDataOrigin userWithAuth restricted sign
const ATTRS_UNRESTRICTED: u32 = 0x0004_0072;

/// Signs a message and returns a TPMT_SIGNATURE.
type Signer = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// A test AK: its signer, its TPMT_PUBLIC and its certificate.
struct Ak {
    sign: Signer,
    tpmt_public: Vec<u8>,
    spki_der: Vec<u8>,
    cert_der: Vec<u8>,
}

fn to_pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn u16be(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}

fn tpm2b(b: &[u8]) -> Vec<u8> {
    let mut v = u16be(b.len() as u16).to_vec();
    v.extend(b);
    v
}

fn cert_for(rc_key: &rcgen::KeyPair, ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>) -> Vec<u8> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, "test AK");
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2026, 1, 1);
    p.signed_by(rc_key, ca).unwrap().der().to_vec()
}

fn ecc_ak(ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, attrs: u32, p384: bool) -> Ak {
    let (rc_alg, alg, hash, curve) = if p384 {
        (&rcgen::PKCS_ECDSA_P384_SHA384, &ECDSA_P384_SHA384_FIXED_SIGNING, quote::TPM_ALG_SHA384, 0x0004u16)
    } else {
        (&rcgen::PKCS_ECDSA_P256_SHA256, &ECDSA_P256_SHA256_FIXED_SIGNING, quote::TPM_ALG_SHA256, 0x0003u16)
    };
    let rc = rcgen::KeyPair::generate_for(rc_alg).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(alg, &rc.serialize_der()).unwrap();
    let point = key.public_key().as_ref().to_vec();
    let l = (point.len() - 1) / 2;
    let mut t = u16be(quote::TPM_ALG_ECC).to_vec();
    t.extend(u16be(quote::TPM_ALG_SHA256));
    t.extend(attrs.to_be_bytes());
    t.extend(tpm2b(&[]));
    t.extend(u16be(quote::TPM_ALG_NULL));
    t.extend(u16be(quote::TPM_ALG_ECDSA));
    t.extend(u16be(hash));
    t.extend(u16be(curve));
    t.extend(u16be(quote::TPM_ALG_NULL));
    t.extend(tpm2b(&point[1..1 + l]));
    t.extend(tpm2b(&point[1 + l..]));
    let spki_der = rc.subject_public_key_info();
    let cert_der = cert_for(&rc, ca);
    Ak {
        sign: Box::new(move |m: &[u8]| {
            let sig = key.sign(&SystemRandom::new(), m).unwrap();
            let (r, s) = sig.as_ref().split_at(l);
            let mut out = u16be(quote::TPM_ALG_ECDSA).to_vec();
            out.extend(u16be(hash));
            out.extend(tpm2b(r));
            out.extend(tpm2b(s));
            out
        }),
        tpmt_public: t,
        spki_der,
        cert_der,
    }
}

fn rsa_ak(ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, pss: bool) -> Ak {
    let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = key.as_der().unwrap();
    let rc = rcgen::KeyPair::try_from(pkcs8.as_ref()).unwrap();
    let n = key.public_key().modulus().big_endian_without_leading_zero().to_vec();
    let scheme = if pss { quote::TPM_ALG_RSAPSS } else { quote::TPM_ALG_RSASSA };
    let mut t = u16be(quote::TPM_ALG_RSA).to_vec();
    t.extend(u16be(quote::TPM_ALG_SHA256));
    t.extend(ATTRS_AK.to_be_bytes());
    t.extend(tpm2b(&[]));
    t.extend(u16be(quote::TPM_ALG_NULL));
    t.extend(u16be(scheme));
    t.extend(u16be(quote::TPM_ALG_SHA256));
    t.extend(2048u16.to_be_bytes());
    t.extend(0u32.to_be_bytes());
    t.extend(tpm2b(&n));
    let spki_der = rc.subject_public_key_info();
    let cert_der = cert_for(&rc, ca);
    Ak {
        sign: Box::new(move |m: &[u8]| {
            let mut sig = vec![0; key.public_modulus_len()];
            key.sign(if pss { &RSA_PSS_SHA256 } else { &RSA_PKCS1_SHA256 }, &SystemRandom::new(), m, &mut sig).unwrap();
            let mut out = u16be(scheme).to_vec();
            out.extend(u16be(quote::TPM_ALG_SHA256));
            out.extend(tpm2b(&sig));
            out
        }),
        tpmt_public: t,
        spki_der,
        cert_der,
    }
}

/// PCR values: `banks` each with PCRs 0..8 set to distinct bytes.
fn pcr_json(banks: &[HashAlg]) -> Value {
    let mut m = serde_json::Map::new();
    for h in banks {
        let vals: serde_json::Map<String, Value> =
            (0..8u8).map(|i| (i.to_string(), json!(hex::encode(vec![i * 3 + h.len() as u8; h.len()])))).collect();
        m.insert(h.name().into(), Value::Object(vals));
    }
    Value::Object(m)
}

/// A TPMS_ATTEST quoting PCRs 0..8 of each bank, digest with `digest_alg`.
fn attest(banks: &[HashAlg], pcrs: &Value, nonce: &[u8], digest_alg: HashAlg) -> Vec<u8> {
    let parsed = quote::pcr_banks_from_json(pcrs).unwrap();
    let mut cat = Vec::new();
    for h in banks {
        for i in 0..8 {
            cat.extend(&parsed[h][&i]);
        }
    }
    let mut v = quote::TPM_GENERATED_VALUE.to_be_bytes().to_vec();
    v.extend(u16be(quote::TPM_ST_ATTEST_QUOTE));
    v.extend(tpm2b(&[0, 0x0b, 1, 2, 3]));
    v.extend(tpm2b(nonce));
    v.extend(123_456u64.to_be_bytes());
    v.extend(3u32.to_be_bytes());
    v.extend(0u32.to_be_bytes());
    v.push(1);
    v.extend(0x2016_0511_0016_2800u64.to_be_bytes());
    v.extend((banks.len() as u32).to_be_bytes());
    for h in banks {
        v.extend(u16be(h.tpm_id()));
        v.extend([3, 0xff, 0, 0]);
    }
    v.extend(tpm2b(&digest_alg.digest(&cat)));
    v
}

struct Built {
    evidence: Value,
    anchors: TrustAnchors,
}

fn build(ak: &Ak, ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, banks: &[HashAlg], digest_alg: HashAlg, nonce: &[u8]) -> Built {
    let pcrs = pcr_json(banks);
    let q = attest(banks, &pcrs, nonce, digest_alg);
    let sig = (ak.sign)(&q);
    let pem = |der: &[u8]| to_pem("CERTIFICATE", der);
    let evidence = json!({
        "quote": hex::encode(&q),
        "signature": hex::encode(&sig),
        "ak_public": hex::encode(tpm2b(&ak.tpmt_public)),
        "pcrs": pcrs,
        "ak_cert_chain": [pem(&ak.cert_der), pem(ca.der())],
    });
    Built { evidence, anchors: TrustAnchors::pinned().with_replaced(AnchorKind::GoogleEkAkRoot, ca.der().to_vec()) }
}

fn check(b: &Built, nonce: Option<&[u8]>) -> Verification {
    verify(Tee::Tpm, b.evidence.to_string().as_bytes(), &b.anchors, ts(AT), nonce)
}

#[test]
fn built_quotes_verify_with_every_signature_scheme() {
    let ca = test_ca("Test EK/AK CA", &rcgen::PKCS_ECDSA_P256_SHA256);
    let nonce = [9u8; 32];
    for (what, ak, digest) in [
        ("ECDSA P-256", ecc_ak(&ca, ATTRS_AK, false), HashAlg::Sha256),
        ("ECDSA P-384", ecc_ak(&ca, ATTRS_AK, true), HashAlg::Sha384),
        ("RSASSA", rsa_ak(&ca, false), HashAlg::Sha256),
        ("RSAPSS", rsa_ak(&ca, true), HashAlg::Sha256),
    ] {
        let b = build(&ak, &ca, &[HashAlg::Sha1, HashAlg::Sha256], digest, &nonce);
        let v = check(&b, Some(&nonce));
        let claims = v.result.unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut name = vec![0, 0x0b];
        name.extend(HashAlg::Sha256.digest(&ak.tpmt_public));
        assert_eq!(claims["ak_name"], hex::encode(&name), "{what}");
        assert_eq!(claims["pcr_digest_alg"], digest.name());
        assert_eq!(claims["pcrs"]["sha1"].as_object().unwrap().len(), 8);
        assert_eq!(claims["firmware_version"], "2016051100162800");
        assert!(v.checks.iter().any(|c| c.name == "AK attributes" && c.ok));
        // The same evidence with the genuine Google root is refused.
        let v = verify(Tee::Tpm, b.evidence.to_string().as_bytes(), &TrustAnchors::pinned(), ts(AT), None);
        assert_eq!(failed_check(&v), "AK certificate chain", "{what}");
        // A replayed nonce (the verifier now expects a fresh one).
        assert_eq!(failed_check(&check(&b, Some(&[8u8; 32]))), "Quote nonce", "{what}");
        // Altered PCR in the second bank.
        let mut m = b.evidence.clone();
        m["pcrs"]["sha256"]["3"] = json!(hex::encode([0u8; 32]));
        assert_eq!(failed_check(&check(&Built { evidence: m, anchors: b.anchors.clone() }, None)), "PCR digest", "{what}");
    }
}

#[test]
fn ak_in_every_public_form() {
    let ca = test_ca("Test EK/AK CA", &rcgen::PKCS_ECDSA_P256_SHA256);
    let ak = ecc_ak(&ca, ATTRS_AK, false);
    let b = build(&ak, &ca, &[HashAlg::Sha256], HashAlg::Sha256, &[1; 16]);
    let k = AkPublic::parse(&ak.spki_der).unwrap();
    let point = hex::decode(k.to_hex()).unwrap();
    let (x, y) = point[1..].split_at(32);
    use base64::Engine;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    for form in [
        json!(to_pem("PUBLIC KEY", &ak.spki_der)),
        json!(hex::encode(&ak.spki_der)),
        json!(hex::encode(&ak.tpmt_public)),
        json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)}),
        json!({"x": hex::encode(x), "y": hex::encode(y)}),
    ] {
        let mut m = b.evidence.clone();
        m["ak_public"] = form.clone();
        let v = check(&Built { evidence: m, anchors: b.anchors.clone() }, None);
        assert!(v.verified(), "{form}: {:?}", v.result);
    }
    // DER ECDSA in place of TPMT_SIGNATURE.
    let sig = quote::parse_signature(&hex::decode(b.evidence["signature"].as_str().unwrap()).unwrap()).unwrap();
    let (r, s) = match sig {
        quote::QuoteSignature::Ecdsa { r, s, .. } => (r, s),
        other => panic!("{other:?}"),
    };
    let int = |v: &[u8]| {
        let mut body = v.iter().skip_while(|b| **b == 0).copied().collect::<Vec<_>>();
        if body[0] & 0x80 != 0 {
            body.insert(0, 0);
        }
        let mut out = vec![2, body.len() as u8];
        out.extend(body);
        out
    };
    let mut seq = int(&r);
    seq.extend(int(&s));
    let mut der = vec![0x30, seq.len() as u8];
    der.extend(seq);
    let mut m = b.evidence.clone();
    m["signature"] = json!(hex::encode(&der));
    assert!(check(&Built { evidence: m, anchors: b.anchors.clone() }, None).verified());
}

#[test]
fn unrestricted_keys_wrong_keys_and_malformed_quotes_are_refused_by_name() {
    let ca = test_ca("Test EK/AK CA", &rcgen::PKCS_ECDSA_P256_SHA256);
    // An unrestricted signing key could sign a forged TPMS_ATTEST.
    let weak = ecc_ak(&ca, ATTRS_UNRESTRICTED, false);
    let b = build(&weak, &ca, &[HashAlg::Sha256], HashAlg::Sha256, &[1; 16]);
    assert_eq!(failed_check(&check(&b, None)), "AK attributes");

    let ak = ecc_ak(&ca, ATTRS_AK, false);
    let other = ecc_ak(&ca, ATTRS_AK, false);
    let b = build(&ak, &ca, &[HashAlg::Sha256], HashAlg::Sha256, &[1; 16]);
    // Signed by another AK (certified by the same CA) while naming this one.
    let q = hex::decode(b.evidence["quote"].as_str().unwrap()).unwrap();
    let mut m = b.evidence.clone();
    m["signature"] = json!(hex::encode((other.sign)(&q)));
    assert_eq!(failed_check(&check(&Built { evidence: m, anchors: b.anchors.clone() }, None)), "TPM quote signature");
    // The other AK's certificate with this AK.
    let mut m = b.evidence.clone();
    m["ak_cert_chain"][0] = json!(to_pem("CERTIFICATE", &other.cert_der));
    assert_eq!(failed_check(&check(&Built { evidence: m, anchors: b.anchors.clone() }, None)), "AK binding");
    // A trailing byte after pcrDigest, re-signed by the genuine AK.
    let mut q2 = q.clone();
    q2.push(0);
    let mut m = b.evidence.clone();
    m["quote"] = json!(hex::encode(&q2));
    m["signature"] = json!(hex::encode((ak.sign)(&q2)));
    assert_eq!(failed_check(&check(&Built { evidence: m, anchors: b.anchors.clone() }, None)), "Quote structure");
    // A PCR digest computed with a hash other than the signature's.
    let b384 = build(&ak, &ca, &[HashAlg::Sha256], HashAlg::Sha384, &[1; 16]);
    assert_eq!(failed_check(&check(&b384, None)), "PCR digest");
    // Not yet valid / expired AK certificate.
    for at in ["2024-06-01T00:00:00Z", "2026-06-01T00:00:00Z"] {
        let v = verify(Tee::Tpm, b.evidence.to_string().as_bytes(), &b.anchors, ts(at), None);
        assert_eq!(failed_check(&v), "AK certificate chain validity");
    }
    // No AK certificate at all.
    let mut m = b.evidence.clone();
    m.as_object_mut().unwrap().remove("ak_cert_chain");
    assert_eq!(failed_check(&check(&Built { evidence: m.clone(), anchors: b.anchors.clone() }, None)), "AK certificate chain");
    // ... which may come as an endorsement instead.
    let e = [Endorsement { name: "ak.der".into(), bytes: ak.cert_der.clone() }];
    let v = cachet_verify::verify(
        Tee::Tpm,
        &VerifyRequest { evidence: m.to_string().as_bytes(), endorsements: &e, anchors: &b.anchors, at: ts(AT), expected_nonce: None },
    );
    assert!(v.verified(), "{:?}", v.result);
}

// ---------------------------------------------------------------------------
// NitroTPM evidence built here: the NSM document binds the AK and the PCRs.

fn cbor(v: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).unwrap();
    out
}

/// An NSM document (COSE_Sign1 ES384) with `public_key` and a PCR map named
/// `pcr_field`, signed by a leaf under `root`.
fn nsm_document(
    root: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    public_key: &[u8],
    pcr_field: &str,
    pcrs: &[(u32, Vec<u8>)],
) -> Vec<u8> {
    nsm_document_with_nonce(root, public_key, pcr_field, pcrs, &[5; 32])
}

fn nsm_document_with_nonce(
    root: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    public_key: &[u8],
    pcr_field: &str,
    pcrs: &[(u32, Vec<u8>)],
    nonce: &[u8],
) -> Vec<u8> {
    let rc = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, "i-0test-tpm0000.us-east-1.aws");
    p.not_before = rcgen::date_time_ymd(2025, 5, 31);
    p.not_after = rcgen::date_time_ymd(2025, 6, 2);
    let leaf = p.signed_by(&rc, root).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rc.serialize_der()).unwrap();
    let t = |s: &str| Cbor::Text(s.into());
    let pcr_map = Cbor::Map(pcrs.iter().map(|(i, v)| (Cbor::Integer((*i).into()), Cbor::Bytes(v.clone()))).collect());
    let payload = cbor(&Cbor::Map(vec![
        (t("module_id"), t("i-0test-tpm0000")),
        (t("digest"), t("SHA384")),
        (t("timestamp"), Cbor::Integer((ts("2025-05-31T23:00:00Z") as u64 * 1000).into())),
        (t(pcr_field), pcr_map),
        (t("certificate"), Cbor::Bytes(leaf.der().to_vec())),
        (t("cabundle"), Cbor::Array(vec![Cbor::Bytes(root.der().to_vec())])),
        (t("public_key"), Cbor::Bytes(public_key.to_vec())),
        (t("user_data"), Cbor::Null),
        (t("nonce"), Cbor::Bytes(nonce.to_vec())),
    ]));
    let protected = cbor(&Cbor::Map(vec![(Cbor::Integer(1.into()), Cbor::Integer((-35).into()))]));
    let tbs = cbor(&Cbor::Array(vec![t("Signature1"), Cbor::Bytes(protected.clone()), Cbor::Bytes(vec![]), Cbor::Bytes(payload.clone())]));
    let sig = key.sign(&SystemRandom::new(), &tbs).unwrap();
    cbor(&Cbor::Array(vec![Cbor::Bytes(protected), Cbor::Map(vec![]), Cbor::Bytes(payload), Cbor::Bytes(sig.as_ref().to_vec())]))
}

#[test]
fn built_nitrotpm_evidence_binds_ak_and_pcrs() {
    let ca = test_ca("unused", &rcgen::PKCS_ECDSA_P256_SHA256);
    let root = test_ca("aws.nitro-enclaves test", &rcgen::PKCS_ECDSA_P384_SHA384);
    let anchors = TrustAnchors::pinned().with_replaced(AnchorKind::AwsNitroRoot, root.der().to_vec());
    let ak = ecc_ak(&ca, ATTRS_AK, false);
    let point = hex::decode(AkPublic::parse(&ak.spki_der).unwrap().to_hex()).unwrap();
    let b = build(&ak, &ca, &[HashAlg::Sha384], HashAlg::Sha256, &[5; 32]);
    let quoted = quote::pcr_banks_from_json(&b.evidence["pcrs"]).unwrap()[&HashAlg::Sha384].clone();
    let pcrs: Vec<(u32, Vec<u8>)> = quoted.into_iter().collect();
    let at = ts("2025-06-01T00:00:00Z");
    let with_doc = |doc: Vec<u8>| {
        let mut m = b.evidence.clone();
        m.as_object_mut().unwrap().remove("ak_cert_chain");
        m["nitro_document"] = json!(hex::encode(doc));
        m
    };
    let ev = with_doc(nsm_document(&root, &point, "nitrotpm_pcrs", &pcrs));
    let v = verify(Tee::NitroTpm, ev.to_string().as_bytes(), &anchors, at, Some(&[5; 32]));
    let claims = v.result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["ak_trust"], "nitro-nsm");
    assert_eq!(claims["module_id"], "i-0test-tpm0000");
    // A document from another session (another nonce) with a fresh quote.
    let stale = with_doc(nsm_document_with_nonce(&root, &point, "nitrotpm_pcrs", &pcrs, &[4; 32]));
    assert!(verify(Tee::NitroTpm, stale.to_string().as_bytes(), &anchors, at, None).verified());
    assert_eq!(failed_check(&verify(Tee::NitroTpm, stale.to_string().as_bytes(), &anchors, at, Some(&[5; 32]))), "NSM document nonce");
    // The genuine AWS root does not anchor the test document.
    assert_eq!(
        failed_check(&verify(Tee::NitroTpm, ev.to_string().as_bytes(), &TrustAnchors::pinned(), at, None)),
        "Nitro certificate chain"
    );
    // An NSM PCR that differs from the quoted one.
    let mut bad = pcrs.clone();
    bad[4].1[0] ^= 1;
    let ev = with_doc(nsm_document(&root, &point, "nitrotpm_pcrs", &bad));
    assert_eq!(failed_check(&verify(Tee::NitroTpm, ev.to_string().as_bytes(), &anchors, at, None)), "NitroTPM PCRs");
    // An NSM PCR the quote does not cover.
    let mut more = pcrs.clone();
    more.push((20, vec![0; 48]));
    let ev = with_doc(nsm_document(&root, &point, "nitrotpm_pcrs", &more));
    assert_eq!(failed_check(&verify(Tee::NitroTpm, ev.to_string().as_bytes(), &anchors, at, None)), "NitroTPM PCRs");
    // An enclave document (plain 'pcrs') cannot bind a TPM AK.
    let ev = with_doc(nsm_document(&root, &point, "pcrs", &pcrs));
    assert_eq!(failed_check(&verify(Tee::NitroTpm, ev.to_string().as_bytes(), &anchors, at, None)), "NitroTPM PCRs");
    // A document naming another key.
    let other = ecc_ak(&ca, ATTRS_AK, false);
    let other_point = hex::decode(AkPublic::parse(&other.spki_der).unwrap().to_hex()).unwrap();
    let ev = with_doc(nsm_document(&root, &other_point, "nitrotpm_pcrs", &pcrs));
    assert_eq!(failed_check(&verify(Tee::NitroTpm, ev.to_string().as_bytes(), &anchors, at, None)), "AK binding");
    // No document at all.
    assert_eq!(failed_check(&verify(Tee::NitroTpm, b.evidence.to_string().as_bytes(), &anchors, at, None)), "Evidence format");
}

/// Root on the instance can name any key to the NSM and sign any
/// TPMS_ATTEST with it: here a quote covering the NSM-signed SHA-384 PCRs
/// plus a SHA-256 bank of the attester's choosing (PCR 7 forged). Only what
/// AWS signed is a claim, and the default policy does not affirm the forged
/// PCR 7 even with a reference value equal to it.
#[test]
fn nitrotpm_claims_only_what_the_nsm_document_signs() {
    use cachet_appraise::{defaults::default_policy, AppraisalInput, RefValue, ReferenceValues, Status};
    let ca = test_ca("unused", &rcgen::PKCS_ECDSA_P256_SHA256);
    let root = test_ca("aws.nitro-enclaves test", &rcgen::PKCS_ECDSA_P384_SHA384);
    let anchors = TrustAnchors::pinned().with_replaced(AnchorKind::AwsNitroRoot, root.der().to_vec());
    let ak = ecc_ak(&ca, ATTRS_AK, false);
    let point = hex::decode(AkPublic::parse(&ak.spki_der).unwrap().to_hex()).unwrap();
    let b = build(&ak, &ca, &[HashAlg::Sha256, HashAlg::Sha384], HashAlg::Sha256, &[5; 32]);
    let banks = quote::pcr_banks_from_json(&b.evidence["pcrs"]).unwrap();
    let signed: Vec<(u32, Vec<u8>)> = banks[&HashAlg::Sha384].clone().into_iter().collect();
    let forged = hex::encode(&banks[&HashAlg::Sha256][&7]);
    let genuine = hex::encode(&banks[&HashAlg::Sha384][&7]);
    let mut ev = b.evidence.clone();
    ev.as_object_mut().unwrap().remove("ak_cert_chain");
    ev["nitro_document"] = json!(hex::encode(nsm_document(&root, &point, "nitrotpm_pcrs", &signed)));
    let at = ts("2025-06-01T00:00:00Z");
    let v = verify(Tee::NitroTpm, ev.to_string().as_bytes(), &anchors, at, Some(&[5; 32]));
    let claims = v.result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["pcrs"].as_object().unwrap().keys().collect::<Vec<_>>(), ["sha384"], "{claims}");
    assert_eq!(claims["pcrs"]["sha384"]["7"], genuine.as_str());
    for unsigned in [
        "extra_data",
        "qualified_signer",
        "clock",
        "reset_count",
        "restart_count",
        "clock_safe",
        "firmware_version",
        "pcr_selection",
        "pcr_digest",
    ] {
        assert!(claims.get(unsigned).is_none(), "{unsigned} is not signed by the NSM document: {claims}");
    }
    assert_eq!(claims["nonce"], hex::encode([5u8; 32]), "the NSM document's nonce");

    let policy = default_policy("nitro-tpm").unwrap();
    let pcr7 = |value: &str| {
        let mut r = ReferenceValues::new();
        r.add_values("pcr7", vec![RefValue::new(value).unwrap()]).unwrap();
        r
    };
    let appraise =
        |claims: &Value, refs: &ReferenceValues| policy.evaluate(&AppraisalInput::new("nitro-tpm", claims.clone()), refs, at).unwrap();
    assert_ne!(appraise(&claims, &pcr7(&forged)).status, Status::Affirming);
    assert_eq!(appraise(&claims, &pcr7(&genuine)).status, Status::Affirming);
    // Claims that did carry the forged bank (another verifier, a
    // regression) still do not match it: the policy reads SHA-384 only.
    let mut with_bank = claims.clone();
    with_bank["pcrs"]["sha256"] = json!({"7": forged});
    let a = appraise(&with_bank, &pcr7(&forged));
    assert_ne!(a.status, Status::Affirming, "{:?}", a.reasons);
}

// ---------------------------------------------------------------------------
// Robustness

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = quote::parse_attest(&data);
        let _ = quote::parse_signature(&data);
        let _ = AkPublic::parse(&data);
        let _ = AkPublic::from_tpm2b_public(&data);
        let anchors = TrustAnchors::pinned();
        let _ = verify(Tee::Tpm, &data, &anchors, 0, None);
        let _ = verify(Tee::NitroTpm, &data, &anchors, 0, None);
    }

    #[test]
    fn truncated_and_mutated_real_quotes_are_refused(idx in 0usize..3, cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let all = accept_cases();
        let c = &all[idx % all.len()];
        let j = json_of(c);
        let entry = j["attestation"]["tpm"].as_object().unwrap().keys().next().unwrap().clone();
        let q = hex::decode(j["attestation"]["tpm"][&entry]["attest_data"].as_str().unwrap()).unwrap();
        let short = &q[..cut.index(q.len())];
        prop_assert!(quote::parse_attest(short).is_err());
        let mut m = j.clone();
        m["attestation"]["tpm"][&entry]["attest_data"] = json!(hex::encode(short));
        prop_assert!(!run_json(c, &m, &TrustAnchors::pinned(), None).verified());
        let mut q2 = q.clone();
        let i = flip.index(q2.len());
        q2[i] ^= 1 << bit;
        let _ = quote::parse_attest(&q2);
        m["attestation"]["tpm"][&entry]["attest_data"] = json!(hex::encode(&q2));
        prop_assert!(!run_json(c, &m, &TrustAnchors::pinned(), None).verified());
        // Random JSON text in each field.
        let text = hex::encode(&q2[..i]);
        for field in ["signature", "attest_data"] {
            let mut m = j.clone();
            m["attestation"]["tpm"][&entry][field] = json!(text.clone());
            prop_assert!(!run_json(c, &m, &TrustAnchors::pinned(), None).verified());
        }
    }
}
