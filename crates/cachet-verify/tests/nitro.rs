//! AWS Nitro Enclaves attestation documents: the real documents of
//! `cases.json` (tee `nitro`), tampered variants of them, and documents
//! built here with a test PKI to reach every field check.

mod common;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use cachet_verify::nitro::{self, parse_cose_sign1};
use cachet_verify::{AnchorKind, Tee, TrustAnchors, VerifyRequest};
use ciborium::value::Value as Cbor;
use common::{cases, failed_check, run, run_case, ts};
use proptest::prelude::*;

fn verify_nonce(evidence: &[u8], anchors: &TrustAnchors, at: i64, nonce: Option<&[u8]>) -> cachet_verify::Verification {
    cachet_verify::verify(Tee::Nitro, &VerifyRequest { evidence, endorsements: &[], anchors, at, expected_nonce: nonce })
}

/// Position of `needle` inside `hay` (test helper; panics if absent).
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).expect("sub-slice present")
}

#[test]
fn every_real_document_verifies_at_verify_at() {
    let all = cases(&["nitro"]);
    assert!(all.len() >= 4, "cases.json lists the Nitro documents");
    let (mut debug, mut production) = (0, 0);
    for c in all.iter().filter(|c| c.expect == "accept") {
        let v = run_case(c, c.verify_at());
        let claims = v.result.as_ref().unwrap_or_else(|e| panic!("{}: {e}", c.id));
        assert_eq!(claims["tee"], "nitro", "{}", c.id);
        assert_eq!(claims["digest"], "SHA384");
        assert!(claims["module_id"].as_str().unwrap().starts_with("i-"), "{}", c.id);
        let pcr0 = claims["pcrs"]["0"].as_str().unwrap();
        assert_eq!(pcr0.len(), 96, "SHA-384 PCRs");
        // debug is exactly "PCR0..2 all zero".
        let zero = (0..3).all(|i| claims["pcrs"][i.to_string()].as_str().unwrap().bytes().all(|b| b == b'0'));
        assert_eq!(claims["debug"], zero, "{}", c.id);
        if zero {
            debug += 1
        } else {
            production += 1
        }
        assert!(claims["timestamp"].as_str().unwrap().ends_with('Z'));
        for name in ["COSE signature", "Nitro certificate chain", "Nitro certificate chain validity", "Document timestamp"] {
            assert!(v.checks.iter().any(|k| k.name == name && k.ok), "{}: {name} ran", c.id);
        }
        // The doc's timestamp lies in [valid_from, valid_to].
        let ms = claims["timestamp_ms"].as_u64().unwrap() as i64;
        assert!(ms / 1000 >= c.valid_from() && ms / 1000 <= c.valid_to(), "{}", c.id);
    }
    assert!(debug > 0 && production > 0, "both debug and production enclaves are exercised");
}

#[test]
fn nitrotpm_document_with_indefinite_map_reports_nitrotpm_pcrs() {
    let c = cases(&["nitro"]).into_iter().find(|c| c.evidence_bytes().windows(13).any(|w| w == b"nitrotpm_pcrs")).unwrap();
    let raw = c.evidence_bytes();
    let cose = parse_cose_sign1(&raw).unwrap();
    assert_eq!(cose.payload[0], 0xbf, "this document's payload is an indefinite-length map");
    let v = run_case(&c, c.verify_at());
    let claims = v.result.unwrap();
    assert_eq!(claims["nitrotpm"], true);
    assert_eq!(claims["pcrs"].as_object().unwrap().len(), 24);
}

#[test]
fn refused_after_the_window_and_before_it() {
    for c in cases(&["nitro"]).iter().filter(|c| c.expect == "accept") {
        let v = run_case(c, c.valid_to() + 3600);
        assert_eq!(failed_check(&v), "Nitro certificate chain validity", "{}", c.id);
        let v = run_case(c, c.valid_from() - 3600);
        let name = failed_check(&v);
        assert!(name == "Nitro certificate chain validity" || name == "Document timestamp", "{}: {name}", c.id);
    }
}

#[test]
fn bit_flips_in_signed_content_are_refused_by_name() {
    for c in cases(&["nitro"]).iter().filter(|c| c.expect == "accept") {
        let raw = c.evidence_bytes();
        let cose = parse_cose_sign1(&raw).unwrap();
        let at = c.verify_at();
        let anchors = TrustAnchors::pinned();
        // The signature itself.
        let sig_at = find(&raw, &cose.signature);
        for i in [0, 40, 95] {
            let mut m = raw.clone();
            m[sig_at + i] ^= 0x01;
            assert_eq!(failed_check(&run(Tee::Nitro, &m, &[], &anchors, at)), "COSE signature", "{}", c.id);
        }
        // A character of module_id and a byte of PCR0, inside the payload.
        let pay_at = find(&raw, &cose.payload);
        let mid = pay_at + find(&cose.payload, b"module_id") + 12;
        let mut m = raw.clone();
        m[mid] ^= 0x01;
        assert_eq!(failed_check(&run(Tee::Nitro, &m, &[], &anchors, at)), "COSE signature", "{}", c.id);
        // The certificate inside the payload: either unparsable or a different key.
        let cert_at = pay_at + find(&cose.payload, b"certificate") + 30;
        let mut m = raw.clone();
        m[cert_at] ^= 0x80;
        assert!(run(Tee::Nitro, &m, &[], &anchors, at).result.is_err());
        // The protected header's algorithm (-35 -> -36 = ES512).
        let mut m = raw.clone();
        let prot_at = find(&raw, &cose.protected);
        assert_eq!(&raw[prot_at..prot_at + 4], &[0xa1, 0x01, 0x38, 0x22]);
        m[prot_at + 3] = 0x23;
        assert_eq!(failed_check(&run(Tee::Nitro, &m, &[], &anchors, at)), "COSE algorithm", "{}", c.id);
    }
}

#[test]
fn a_different_root_is_refused() {
    let other = test_ca("Not AWS");
    for c in cases(&["nitro"]).iter().filter(|c| c.expect == "accept") {
        // The AWS root replaced by another one.
        let anchors = TrustAnchors::pinned().with_replaced(AnchorKind::AwsNitroRoot, other.der().to_vec());
        let v = run(Tee::Nitro, &c.evidence_bytes(), &c.endorsement_files(), &anchors, c.verify_at());
        assert_eq!(failed_check(&v), "Nitro certificate chain", "{}", c.id);
        // A genuine root of another kind does not anchor Nitro documents.
        let mut only_google = TrustAnchors::empty();
        for a in TrustAnchors::pinned().of_kind(AnchorKind::GoogleEkAkRoot) {
            only_google.push(AnchorKind::GoogleEkAkRoot, a.der.clone());
        }
        let v = run(Tee::Nitro, &c.evidence_bytes(), &c.endorsement_files(), &only_google, c.verify_at());
        assert_eq!(failed_check(&v), "Nitro certificate chain", "{}", c.id);
    }
}

#[test]
fn expected_nonce_is_compared() {
    let anchors = TrustAnchors::pinned();
    for c in cases(&["nitro"]).iter().filter(|c| c.expect == "accept") {
        let raw = c.evidence_bytes();
        let claims = run_case(c, c.verify_at()).result.unwrap();
        match claims["nonce"].as_str() {
            // The one nonce rule (cachet_verify::nonce): 8 to 64 bytes, compared
            // exactly. evervault's b64 document carries a 256-byte nonce (NSM
            // allows 512), which no caller can expect under that rule.
            Some(n) if (8..=64).contains(&(n.len() / 2)) => {
                let n = hex::decode(n).unwrap();
                assert!(verify_nonce(&raw, &anchors, c.verify_at(), Some(&n)).verified(), "{}", c.id);
                let mut wrong = n.clone();
                wrong[0] ^= 1;
                assert_eq!(failed_check(&verify_nonce(&raw, &anchors, c.verify_at(), Some(&wrong))), "Document nonce");
                // A prefix of the document's nonce is not it.
                assert_eq!(failed_check(&verify_nonce(&raw, &anchors, c.verify_at(), Some(&n[..8]))), "Document nonce");
            }
            Some(n) => {
                let n = hex::decode(n).unwrap();
                assert_eq!(failed_check(&verify_nonce(&raw, &anchors, c.verify_at(), Some(&n))), "Nonce", "{}", c.id);
                assert_eq!(failed_check(&verify_nonce(&raw, &anchors, c.verify_at(), Some(&n[..64]))), "Document nonce");
            }
            None => {
                assert_eq!(failed_check(&verify_nonce(&raw, &anchors, c.verify_at(), Some(b"12345678"))), "Document nonce");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Documents built with a test PKI, to reach each field check.

fn test_ca(cn: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    rcgen::CertifiedIssuer::self_signed(p, key).unwrap()
}

struct TestPki {
    root: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    leaf_der: Vec<u8>,
    leaf_key: EcdsaKeyPair,
}

/// Root -> leaf valid 2024-01-01T00:00Z .. 2024-01-01T03:00Z (like AWS's 3-hour leaves).
fn pki() -> TestPki {
    let root = test_ca("aws.nitro-enclaves test");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, "i-0test-enc0test.us-east-1.aws");
    p.not_before = time::OffsetDateTime::from_unix_timestamp(ts("2024-01-01T00:00:00Z")).unwrap();
    p.not_after = time::OffsetDateTime::from_unix_timestamp(ts("2024-01-01T03:00:00Z")).unwrap();
    let leaf = p.signed_by(&key, &root).unwrap();
    let leaf_key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &key.serialize_der()).unwrap();
    TestPki { leaf_der: leaf.der().to_vec(), root, leaf_key }
}

const DOC_TIME_MS: u64 = 1_704_070_800_000; // 2024-01-01T01:00:00Z
const AT: &str = "2024-01-01T02:00:00Z";

fn t(s: &str) -> Cbor {
    Cbor::Text(s.into())
}

fn b(v: &[u8]) -> Cbor {
    Cbor::Bytes(v.to_vec())
}

fn cbor(v: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).unwrap();
    out
}

/// The fields of a well-formed enclave document.
fn fields(pki: &TestPki, pcr0: u8) -> Vec<(Cbor, Cbor)> {
    let pcrs: Vec<(Cbor, Cbor)> = (0..16).map(|i| (Cbor::Integer(i.into()), b(&[if i < 3 { pcr0 } else { 0 }; 48]))).collect();
    vec![
        (t("module_id"), t("i-0test-enc0test")),
        (t("digest"), t("SHA384")),
        (t("timestamp"), Cbor::Integer(DOC_TIME_MS.into())),
        (t("pcrs"), Cbor::Map(pcrs)),
        (t("certificate"), b(&pki.leaf_der)),
        (t("cabundle"), Cbor::Array(vec![b(pki.root.der())])),
        (t("public_key"), Cbor::Null),
        (t("user_data"), b(b"hello")),
        (t("nonce"), b(&[7; 20])),
    ]
}

/// A COSE_Sign1 over `payload`, with header alg `alg`, signed by the leaf.
fn sign(pki: &TestPki, payload: Vec<u8>, alg: i64, tagged: bool) -> Vec<u8> {
    let protected = cbor(&Cbor::Map(vec![(Cbor::Integer(1.into()), Cbor::Integer(alg.into()))]));
    let tbs = cbor(&Cbor::Array(vec![t("Signature1"), b(&protected), b(&[]), b(&payload)]));
    let sig = pki.leaf_key.sign(&SystemRandom::new(), &tbs).unwrap();
    let arr = Cbor::Array(vec![b(&protected), Cbor::Map(vec![]), Cbor::Bytes(payload), b(sig.as_ref())]);
    cbor(&if tagged { Cbor::Tag(18, Box::new(arr)) } else { arr })
}

/// The payload as an indefinite-length map (0xbf ... 0xff), like NitroTPM's.
fn indefinite(fields: &[(Cbor, Cbor)]) -> Vec<u8> {
    let mut out = vec![0xbf];
    for (k, v) in fields {
        out.extend(cbor(k));
        out.extend(cbor(v));
    }
    out.push(0xff);
    out
}

fn anchors_for(pki: &TestPki) -> TrustAnchors {
    TrustAnchors::pinned().with_replaced(AnchorKind::AwsNitroRoot, pki.root.der().to_vec())
}

fn check_built(pki: &TestPki, doc: &[u8]) -> cachet_verify::Verification {
    verify_nonce(doc, &anchors_for(pki), ts(AT), None)
}

#[test]
fn built_documents_verify_in_every_encoding() {
    let pki = pki();
    let f = fields(&pki, 0x11);
    for (payload, tagged) in [(cbor(&Cbor::Map(f.clone())), false), (indefinite(&f), true)] {
        let doc = sign(&pki, payload, -35, tagged);
        let v = check_built(&pki, &doc);
        let claims = v.result.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(claims["debug"], false);
        assert_eq!(claims["user_data"], hex::encode(b"hello"));
        assert_eq!(claims["public_key"], serde_json::Value::Null);
        assert_eq!(claims["nonce"], hex::encode([7u8; 20]));
        assert_eq!(claims["timestamp"], "2024-01-01T01:00:00Z");
        // The same document with the pinned AWS root is refused.
        assert_eq!(failed_check(&verify_nonce(&doc, &TrustAnchors::pinned(), ts(AT), None)), "Nitro certificate chain");
    }
    // All-zero PCR0..2 is a debug-mode enclave.
    let doc = sign(&pki, cbor(&Cbor::Map(fields(&pki, 0))), -35, false);
    assert_eq!(check_built(&pki, &doc).result.unwrap()["debug"], true);
}

#[test]
fn only_es384_is_accepted() {
    let pki = pki();
    for alg in [-7, -36, -37, 0] {
        let doc = sign(&pki, cbor(&Cbor::Map(fields(&pki, 1))), alg, false);
        assert_eq!(failed_check(&check_built(&pki, &doc)), "COSE algorithm", "alg {alg}");
    }
}

#[test]
fn malformed_fields_are_refused_by_name() {
    let pki = pki();
    type Edit = Box<dyn Fn(&mut Vec<(Cbor, Cbor)>)>;
    let set = |k: &'static str, v: Cbor| -> Edit {
        Box::new(move |f: &mut Vec<(Cbor, Cbor)>| {
            for e in f.iter_mut() {
                if e.0 == t(k) {
                    e.1 = v.clone();
                }
            }
        })
    };
    let remove = |k: &'static str| -> Edit { Box::new(move |f: &mut Vec<(Cbor, Cbor)>| f.retain(|e| e.0 != t(k))) };
    let edits: Vec<(&str, Edit)> = vec![
        ("no module_id", remove("module_id")),
        ("empty module_id", set("module_id", t(""))),
        ("digest SHA256", set("digest", t("SHA256"))),
        ("no timestamp", remove("timestamp")),
        ("zero timestamp", set("timestamp", Cbor::Integer(0.into()))),
        ("no pcrs", remove("pcrs")),
        ("empty pcrs", set("pcrs", Cbor::Map(vec![]))),
        ("pcr index 32", set("pcrs", Cbor::Map(vec![(Cbor::Integer(32.into()), b(&[1; 48]))]))),
        ("pcr of 20 bytes", set("pcrs", Cbor::Map(vec![(Cbor::Integer(0.into()), b(&[1; 20]))]))),
        ("no cabundle", remove("cabundle")),
        ("empty cabundle", set("cabundle", Cbor::Array(vec![]))),
        ("oversized user_data", set("user_data", b(&[0; 1025]))),
        ("oversized nonce", set("nonce", b(&[0; 1025]))),
        ("empty public_key", set("public_key", b(&[]))),
        ("public_key not bytes", set("public_key", t("key"))),
        ("duplicate key", Box::new(|f: &mut Vec<(Cbor, Cbor)>| f.push((t("nonce"), b(&[1]))))),
        (
            "both pcr maps",
            Box::new(|f: &mut Vec<(Cbor, Cbor)>| f.push((t("nitrotpm_pcrs"), Cbor::Map(vec![(Cbor::Integer(0.into()), b(&[1; 48]))])))),
        ),
    ];
    for (what, edit) in edits {
        let mut f = fields(&pki, 1);
        edit(&mut f);
        let doc = sign(&pki, cbor(&Cbor::Map(f)), -35, false);
        assert_eq!(failed_check(&check_built(&pki, &doc)), "Document fields", "{what}");
    }
    // No certificate at all: the document is malformed before any signature check.
    let mut f = fields(&pki, 1);
    f.retain(|e| e.0 != t("certificate"));
    assert_eq!(failed_check(&check_built(&pki, &sign(&pki, cbor(&Cbor::Map(f)), -35, false))), "Document fields");
}

#[test]
fn timestamp_outside_the_leaf_or_after_the_verification_time_is_refused() {
    let pki = pki();
    for (ms, at) in [
        (DOC_TIME_MS + 4 * 3_600_000, AT),      // after the leaf expired (verified while the leaf is valid)
        (DOC_TIME_MS - 2 * 3_600_000, AT),      // before the leaf was issued
        (DOC_TIME_MS + 3_600_000 + 60_000, AT), // one minute after the verification instant
    ] {
        let mut f = fields(&pki, 1);
        for e in f.iter_mut() {
            if e.0 == t("timestamp") {
                e.1 = Cbor::Integer(ms.into());
            }
        }
        let doc = sign(&pki, cbor(&Cbor::Map(f)), -35, false);
        assert_eq!(failed_check(&verify_nonce(&doc, &anchors_for(&pki), ts(at), None)), "Document timestamp", "{ms}");
    }
}

#[test]
fn a_document_signed_by_another_key_is_refused() {
    let pki = pki();
    let other = pki_other_leaf(&pki);
    // Signed by `other`'s key but naming pki's leaf as its certificate.
    let payload = cbor(&Cbor::Map(fields(&pki, 1)));
    let doc = sign(&other, payload, -35, false);
    assert_eq!(failed_check(&check_built(&pki, &doc)), "COSE signature");
}

fn pki_other_leaf(pki: &TestPki) -> TestPki {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, "other");
    let leaf = p.signed_by(&key, &pki.root).unwrap();
    TestPki {
        root: test_ca("unused"),
        leaf_der: leaf.der().to_vec(),
        leaf_key: EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &key.serialize_der()).unwrap(),
    }
}

#[test]
fn trailing_bytes_and_wrong_shapes_are_refused() {
    let pki = pki();
    let mut doc = sign(&pki, cbor(&Cbor::Map(fields(&pki, 1))), -35, false);
    doc.push(0);
    assert_eq!(failed_check(&check_built(&pki, &doc)), "COSE structure");
    for bad in [cbor(&Cbor::Array(vec![])), cbor(&Cbor::Map(vec![])), cbor(&Cbor::Tag(17, Box::new(Cbor::Array(vec![])))), vec![]] {
        assert_eq!(failed_check(&check_built(&pki, &bad)), "COSE structure");
    }
    // Deep nesting is refused, not a stack overflow.
    let mut deep = vec![0x81u8; 100_000];
    deep.push(0x00);
    assert_eq!(failed_check(&check_built(&pki, &deep)), "COSE structure");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn random_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let anchors = TrustAnchors::pinned();
        let _ = verify_nonce(&data, &anchors, 0, None);
        let _ = nitro::parse_document(&data);
    }

    #[test]
    fn mutated_real_documents_never_panic_and_are_refused(idx in 0usize..4, cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let all: Vec<_> = cases(&["nitro"]).into_iter().filter(|c| c.expect == "accept").collect();
        let c = &all[idx % all.len()];
        let raw = c.evidence_bytes();
        let anchors = TrustAnchors::pinned();
        let truncated = &raw[..cut.index(raw.len())];
        prop_assert!(!verify_nonce(truncated, &anchors, c.verify_at(), None).verified());
        let mut m = raw.clone();
        let i = flip.index(m.len());
        m[i] ^= 1 << bit;
        let v = verify_nonce(&m, &anchors, c.verify_at(), None);
        // A flip is refused unless it landed in the (unsigned) unprotected header,
        // which in these documents is the one byte of an empty map.
        if v.verified() {
            let cose = parse_cose_sign1(&m).unwrap();
            prop_assert_eq!(cose, parse_cose_sign1(&raw).unwrap());
        }
    }
}
