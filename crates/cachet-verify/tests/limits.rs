//! Input limits: every size, depth and count an attacker controls is
//! bounded, and going past a bound is a named refusal, never a panic, a
//! stack overflow or unbounded work.
//!
//! | input | limit | where |
//! |---|---|---|
//! | evidence | `MAX_EVIDENCE_LEN` (4 MiB) | `verify` ("Evidence size") |
//! | JSON nesting | 128 levels (serde_json's recursion limit) | every JSON evidence / collateral |
//! | CBOR nesting | 16 levels (`from_reader_with_recursion_limit`) | Nitro documents |
//! | CBOR declared lengths | no allocation from a declared length | Nitro documents |
//! | certificate / CRL DER | `x509::MAX_DER_LEN` (1 MiB) | every PEM block and DER file |
//! | chain depth | `x509::MAX_CHAIN_DEPTH` (8) | every chain walk |
//! | certificates in a pool | per family (SNP 64, DCAP 64 pieces, Nitro 16, TPM 16) | chain building |
//!
//! Each test runs the verifier on a thread with a small stack (256 KiB), so
//! unbounded recursion would crash the test rather than pass by luck.

mod common;

use cachet_verify::{x509, Endorsement, Tee, TrustAnchors, Verification, VerifyRequest, MAX_EVIDENCE_LEN};

/// Run `f` on a thread with a small stack and return its result (a panic or
/// a stack overflow fails the test).
fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(256 << 10).spawn(f).expect("thread").join().expect("no panic")
}

fn verify(tee: Tee, evidence: Vec<u8>, endorsements: Vec<Endorsement>, at: i64) -> Verification {
    small_stack(move || {
        let anchors = TrustAnchors::pinned();
        cachet_verify::verify(
            tee,
            &VerifyRequest { evidence: &evidence, endorsements: &endorsements, anchors: &anchors, at, expected_nonce: None },
        )
    })
}

fn refused_by(v: &Verification) -> String {
    match &v.result {
        Ok(_) => panic!("accepted: {:?}", v.checks.last()),
        Err(e) => {
            assert!(!e.check.trim().is_empty(), "refusal without a check name: {e:?}");
            e.check.clone()
        }
    }
}

#[test]
fn oversized_evidence_is_refused_by_name_for_every_family() {
    let big = vec![0u8; MAX_EVIDENCE_LEN + 1];
    for tee in Tee::ALL {
        let v = verify(tee, big.clone(), Vec::new(), 0);
        assert_eq!(refused_by(&v), "Evidence size", "{tee}");
    }
}

fn deep_json(depth: usize) -> Vec<u8> {
    let mut s = Vec::new();
    for _ in 0..depth {
        s.extend_from_slice(b"{\"a\":[");
    }
    s.extend_from_slice(b"1");
    for _ in 0..depth {
        s.extend_from_slice(b"]}");
    }
    s
}

#[test]
fn deeply_nested_json_evidence_is_refused_without_overflow() {
    let deep = deep_json(100_000);
    for tee in Tee::ALL {
        let v = verify(tee, deep.clone(), Vec::new(), 1_700_000_000);
        refused_by(&v);
    }
}

#[test]
fn deeply_nested_json_endorsements_do_not_change_a_verdict() {
    // The genuine evidence of each family with a deeply nested JSON file
    // added to its endorsements: refused by name or verified exactly as
    // without it; never a crash.
    for c in common::cases(&["sgx", "tdx", "snp", "az-snp-vtpm", "az-tdx-vtpm", "nitro", "tpm", "nvgpu"]) {
        if c.expect != "accept" {
            continue;
        }
        let base = common::run_case(&c, c.verify_at());
        let mut ends = c.endorsement_files();
        ends.push(Endorsement { name: "deep.json".into(), bytes: deep_json(50_000) });
        let v = verify(c.tee(), c.evidence_bytes(), ends, c.verify_at());
        match &v.result {
            Ok(claims) => assert_eq!(Some(claims), base.result.as_ref().ok(), "{}: claims changed", c.id),
            Err(_) => {
                refused_by(&v);
            }
        }
    }
}

#[test]
fn deeply_nested_cbor_is_refused_without_overflow() {
    // COSE_Sign1 tag and array head, then 100 000 nested one-element arrays.
    let mut doc = vec![0xd2, 0x84];
    doc.extend(std::iter::repeat_n(0x81u8, 100_000));
    doc.push(0x00);
    for tee in [Tee::Nitro, Tee::NitroTpm] {
        refused_by(&verify(tee, doc.clone(), Vec::new(), 1_700_000_000));
    }
    // A protected header that is a deeply nested map inside a byte string.
    let mut inner = Vec::new();
    inner.extend(std::iter::repeat_n(0x81u8, 10_000));
    inner.push(0x00);
    let mut doc = vec![0xd2, 0x84, 0x5a];
    doc.extend_from_slice(&(inner.len() as u32).to_be_bytes());
    doc.extend_from_slice(&inner);
    doc.extend_from_slice(&[0xa0, 0x40, 0x40]);
    refused_by(&verify(Tee::Nitro, doc, Vec::new(), 1_700_000_000));
}

#[test]
fn cbor_declared_lengths_do_not_allocate() {
    // Byte string, array and map heads declaring 2^64-1 elements: refused
    // without trying to reserve that much memory.
    for head in [&[0x5bu8][..], &[0x9b], &[0xbb], &[0x7b]] {
        let mut doc = vec![0xd2, 0x84];
        doc.extend_from_slice(head);
        doc.extend_from_slice(&[0xff; 8]);
        refused_by(&verify(Tee::Nitro, doc, Vec::new(), 1_700_000_000));
    }
}

#[test]
fn oversized_pem_and_der_are_ignored_or_refused() {
    // A 2 MiB PEM certificate block and a 2 MiB DER-looking file next to the
    // genuine endorsements of SNP and TDX cases.
    let mut pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    for _ in 0..(2 << 20) / 64 {
        pem.extend_from_slice(&[b'A'; 64]);
        pem.push(b'\n');
    }
    pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    let mut der = vec![0x30, 0x83, 0x20, 0x00, 0x00];
    der.resize(0x200005, 0x41);
    assert!(x509::parse_cert(&der).is_err(), "DER over MAX_DER_LEN is refused by the parser");
    assert!(x509::certs_from_pem(&pem).is_empty(), "PEM block over MAX_DER_LEN is not returned");
    for c in common::cases(&["snp", "tdx", "nvgpu"]).into_iter().filter(|c| c.expect == "accept") {
        let base = common::run_case(&c, c.verify_at());
        let mut ends = c.endorsement_files();
        ends.push(Endorsement { name: "big.pem".into(), bytes: pem.clone() });
        ends.push(Endorsement { name: "big.der".into(), bytes: der.clone() });
        let v = verify(c.tee(), c.evidence_bytes(), ends, c.verify_at());
        match &v.result {
            Ok(claims) => assert_eq!(Some(claims), base.result.as_ref().ok(), "{}", c.id),
            Err(_) => {
                refused_by(&v);
            }
        }
    }
}

#[test]
fn many_certificates_are_bounded() {
    // 5 000 copies of every endorsement certificate: refused by name (a pool
    // limit) or verified as before; the work stays bounded because every
    // family caps the pool it walks.
    for c in common::cases(&["snp", "sgx", "tpm", "nvgpu"]).into_iter().filter(|c| c.expect == "accept") {
        let base = common::run_case(&c, c.verify_at());
        let mut ends = c.endorsement_files();
        let certs: Vec<Vec<u8>> = ends.iter().flat_map(|e| x509::certs_from_pem(&e.bytes)).collect();
        let Some(one) = certs.first() else { continue };
        let text = pem_of(one);
        let mut many = Vec::new();
        for _ in 0..5000 {
            many.extend_from_slice(&text);
        }
        ends.push(Endorsement { name: "many.pem".into(), bytes: many });
        let t0 = std::time::Instant::now();
        let v = verify(c.tee(), c.evidence_bytes(), ends, c.verify_at());
        println!("{}: {} in {:?}", c.id, v.result.as_ref().map(|_| "verified".to_string()).unwrap_or_else(|e| e.to_string()), t0.elapsed());
        match &v.result {
            Ok(claims) => assert_eq!(Some(claims), base.result.as_ref().ok(), "{}", c.id),
            Err(_) => {
                refused_by(&v);
            }
        }
    }
}

fn pem_of(der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    for line in b.as_bytes().chunks(64) {
        s.extend_from_slice(line);
        s.push(b'\n');
    }
    s.extend_from_slice(b"-----END CERTIFICATE-----\n");
    s
}

#[test]
fn chains_longer_than_the_limit_are_refused() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2040, 1, 1);
        p
    };
    let root_k = KeyPair::generate().expect("key");
    let root_p = ca("root");
    let root = root_p.self_signed(&root_k).expect("root").der().to_vec();
    let mut anchors = TrustAnchors::empty();
    anchors.push(cachet_verify::AnchorKind::SimulatedTee, root);
    // root <- ca1 <- ... <- ca12 <- leaf
    let (mut issuer_p, mut issuer_k) = (root_p, root_k);
    let mut pool = Vec::new();
    for i in 1..=12 {
        let k = KeyPair::generate().expect("key");
        let p = ca(&format!("ca{i}"));
        let der = p.signed_by(&k, &Issuer::from_params(&issuer_p, &issuer_k)).expect("ca").der().to_vec();
        pool.push(der);
        (issuer_p, issuer_k) = (p, k);
    }
    let leaf_k = KeyPair::generate().expect("key");
    let mut leaf_p = ca("leaf");
    leaf_p.is_ca = IsCa::NoCa;
    let leaf = leaf_p.signed_by(&leaf_k, &Issuer::from_params(&issuer_p, &issuer_k)).expect("leaf").der().to_vec();
    pool.reverse();
    let mut checks = cachet_verify::Checks::new();
    let at = 1_800_000_000;
    let r = x509::verify_chain("Test chain", &leaf, &pool, anchors.all().iter(), at, &mut checks);
    let e = r.expect_err("a 14-certificate chain exceeds MAX_CHAIN_DEPTH");
    assert_eq!(e.check, "Test chain");
    assert!(e.message.contains("too long"), "{e}");
    // The same walk with the chain within the limit verifies (the test PKI is sound).
    let short_pool: Vec<Vec<u8>> = pool.iter().rev().take(0).cloned().collect();
    let mut checks = cachet_verify::Checks::new();
    let r = x509::verify_chain("Test chain", pool.last().expect("ca1"), &short_pool, anchors.all().iter(), at, &mut checks);
    assert!(r.is_ok(), "ca1 chains directly to the root: {r:?}");
}
