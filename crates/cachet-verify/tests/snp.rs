//! AMD SEV-SNP: every real report of `cases.json` verifies, and every way of
//! tampering with it (signed bytes, signature, VCEK, ARK, time, CRL) is
//! refused by name. A synthetic AMD-shaped hierarchy (test ARK/ASK/ASVK made
//! with rcgen, trusted only through a test anchor set) covers what real
//! evidence here cannot: VLEK reports, revocation, Turin binding mismatches.

mod common;

use cachet_verify::anchors::{AmdProduct, AnchorKind};
use cachet_verify::snp::{self, certs, report};
use cachet_verify::{Checks, Endorsement, Tee, TrustAnchors, Verification};
use common::{cases, failed_check, run, run_case, ts, Case};
use proptest::prelude::*;

const REPORT_LEN: usize = 0x4A0;

fn snp_cases() -> Vec<Case> {
    let all: Vec<Case> = cases(&["snp"]).into_iter().filter(|c| c.expect == "accept").collect();
    assert!(!all.is_empty(), "cases.json has no accepted snp case");
    all
}

fn error_message(v: &Verification) -> String {
    v.result.as_ref().err().map(|e| e.message.clone()).unwrap_or_default()
}

fn claims(v: &Verification) -> serde_json::Value {
    match &v.result {
        Ok(c) => c.clone(),
        Err(e) => panic!("not verified: {e} {:?}", v.checks),
    }
}

/// The VCEK/VLEK among a case's endorsements (recognised by content).
fn vek_of(c: &Case) -> Vec<u8> {
    c.endorsement_files()
        .into_iter()
        .find(|e| matches!(certs::vek_cert(&e.bytes), Ok(Some(_))))
        .map(|e| e.bytes)
        .expect("case has a VCEK endorsement")
}

/// A case's endorsements other than its VCEK (the ASK/ARK chain).
fn chain_of(c: &Case) -> Vec<Endorsement> {
    let vek = vek_of(c);
    c.endorsement_files().into_iter().filter(|e| e.bytes != vek).collect()
}

fn product_of(c: &Case) -> String {
    claims(&run_case(c, c.verify_at()))["product"].as_str().unwrap().to_string()
}

fn run_with(c: &Case, evidence: &[u8], endorsements: &[Endorsement]) -> Verification {
    run(Tee::Snp, evidence, endorsements, &TrustAnchors::pinned(), c.verify_at())
}

fn vek_endorsement(der: Vec<u8>) -> Endorsement {
    Endorsement { name: "vcek.der".into(), bytes: der }
}

#[test]
fn every_case_verifies_at_verify_at() {
    for c in snp_cases() {
        let v = run_case(&c, c.verify_at());
        let cl = claims(&v);
        let ev = c.evidence_bytes();
        assert_eq!(cl["tee"], "snp", "{}", c.id);
        assert_eq!(cl["signing_key"], "vcek", "{}", c.id);
        assert_eq!(cl["version"], u32::from_le_bytes(ev[0..4].try_into().unwrap()), "{}", c.id);
        assert_eq!(cl["report_data"], hex::encode(&ev[0x50..0x90]), "{}", c.id);
        assert_eq!(cl["measurement"], hex::encode(&ev[0x90..0xC0]), "{}", c.id);
        assert_eq!(cl["chip_id"], hex::encode(&ev[0x1A0..0x1E0]), "{}", c.id);
        assert_eq!(cl["debug"], cl["policy_flags"]["debug_allowed"], "{}", c.id);
        assert_eq!(cl["debug"], (u64::from_le_bytes(ev[8..16].try_into().unwrap()) >> 19) & 1 == 1);
        assert_eq!(snp::report_data(&cl).map(|d| d.to_vec()), Some(ev[0x50..0x90].to_vec()));
        let product = cl["product"].as_str().unwrap();
        assert!(["Milan", "Genoa", "Turin"].contains(&product));
        // Turin's TCB layout carries FMC; the others do not.
        assert_eq!(cl["reported_tcb"].get("fmc").is_some(), product == "Turin", "{}", c.id);
        assert_eq!(cl["cpuid_family"].is_number(), cl["version"].as_u64().unwrap() >= 3, "{}", c.id);
        assert_eq!(cl["launch_mit_vector"].is_string(), cl["version"].as_u64().unwrap() >= 5, "{}", c.id);
        for name in [
            "Report format",
            "Signature algorithm",
            "Signing key",
            "VCEK certificate",
            "Product",
            "VCEK certificate chain",
            "VCEK certificate chain validity",
            "Certificate chain roles",
            "Report signature",
            "VCEK chip ID",
            "VCEK TCB",
        ] {
            assert!(v.checks.iter().any(|k| k.name == name && k.ok), "{}: check {name} missing", c.id);
        }
    }
}

#[test]
fn every_version_and_product_is_exercised() {
    let mut seen = std::collections::BTreeSet::new();
    for c in snp_cases() {
        let cl = claims(&run_case(&c, c.verify_at()));
        seen.insert(cl["product"].as_str().unwrap().to_string());
        seen.insert(format!("v{}", cl["version"]));
    }
    for want in ["Milan", "Genoa", "Turin", "v2", "v3", "v5"] {
        assert!(seen.contains(want), "no case covers {want}: {seen:?}");
    }
}

#[test]
fn vcek_with_serial_zero_parses_and_verifies() {
    let zero = snp_cases().into_iter().find(|c| {
        let der = vek_of(c);
        certs::vek_cert(&der).unwrap().unwrap().raw_serial.iter().all(|b| *b == 0)
    });
    let c = zero.expect("a case with a serial-0 VCEK");
    assert!(run_case(&c, c.verify_at()).verified());
}

#[test]
fn refused_outside_the_certificate_window() {
    for c in snp_cases() {
        for at in [c.valid_to() + 3600, c.valid_from() - 3600] {
            let v = run_case(&c, at);
            assert_eq!(failed_check(&v), "VCEK certificate chain validity", "{} at {at}", c.id);
        }
    }
}

#[test]
fn flipped_bits_in_the_signed_region_are_refused() {
    const EXPECTED: &[&str] = &["Report format", "Signature algorithm", "Signing key", "VLEK certificate", "Product", "Report signature"];
    for c in snp_cases() {
        let ev = c.evidence_bytes();
        let ends = c.endorsement_files();
        for i in (0..report::SIGNED_LEN).step_by(5) {
            let mut m = ev.clone();
            m[i] ^= 1 << (i % 8);
            let v = run_with(&c, &m, &ends);
            let check = failed_check(&v);
            assert!(EXPECTED.contains(&check.as_str()), "{} byte {i:#x}: {check}", c.id);
        }
        // Fields nothing but the signature protects fail exactly there.
        for i in [0x04, 0x50, 0x8F, 0x90, 0xC0, 0x140, 0x1A0, 0x1F0] {
            let mut m = ev.clone();
            m[i] ^= 0x01;
            assert_eq!(failed_check(&run_with(&c, &m, &ends)), "Report signature", "{} byte {i:#x}", c.id);
        }
    }
}

#[test]
fn flipped_signature_bits_are_refused() {
    for c in snp_cases() {
        let ev = c.evidence_bytes();
        let ends = c.endorsement_files();
        for i in (0x2A0..0x2A0 + 48).chain(0x2E8..0x2E8 + 48).step_by(7) {
            let mut m = ev.clone();
            m[i] ^= 0x80;
            assert_eq!(failed_check(&run_with(&c, &m, &ends)), "Report signature", "{} byte {i:#x}", c.id);
        }
        // R and S are 48-byte scalars zero-extended to 72: the high bytes must be zero.
        for i in [0x2A0 + 48, 0x2A0 + 71, 0x2E8 + 50] {
            let mut m = ev.clone();
            m[i] = 1;
            let v = run_with(&c, &m, &ends);
            assert_eq!(failed_check(&v), "Report signature", "{} byte {i:#x}", c.id);
            assert!(error_message(&v).contains("non-zero"), "{}", error_message(&v));
        }
        // The rest of the 512-byte signature field is reserved.
        let mut m = ev.clone();
        m[0x2A0 + 144] = 1;
        assert_eq!(failed_check(&run_with(&c, &m, &ends)), "Report format");
    }
}

#[test]
fn another_chips_or_products_vcek_is_refused() {
    let all = snp_cases();
    let mut tried = 0;
    for a in &all {
        for b in &all {
            if vek_of(a) == vek_of(b) {
                continue;
            }
            tried += 1;
            // b's VCEK with a's chain, and with both chains on offer.
            let mut ends = chain_of(a);
            ends.push(vek_endorsement(vek_of(b)));
            let v = run_with(a, &a.evidence_bytes(), &ends);
            let check = failed_check(&v);
            let same_product = product_of(a) == product_of(b);
            let allowed: &[&str] =
                if same_product { &["Report signature", "VCEK chip ID", "VCEK TCB"] } else { &["Product", "VCEK certificate chain"] };
            assert!(allowed.contains(&check.as_str()), "{} with {}'s VCEK: {check}", a.id, b.id);
            ends.extend(chain_of(b));
            let check = failed_check(&run_with(a, &a.evidence_bytes(), &ends));
            let allowed: &[&str] =
                if same_product { &["Report signature", "VCEK chip ID", "VCEK TCB"] } else { &["Product", "Report signature"] };
            assert!(allowed.contains(&check.as_str()), "{} with {}'s VCEK and chain: {check}", a.id, b.id);
        }
    }
    assert!(tried > 0);
    // A v3+ report names its product in CPUID: another product's VCEK fails by name there.
    let v3 = all.iter().find(|c| c.evidence_bytes()[0] >= 3).expect("a v3+ case");
    let other = all.iter().find(|c| product_of(c) != product_of(v3)).expect("a case of another product");
    let mut ends = chain_of(other);
    ends.push(vek_endorsement(vek_of(other)));
    let v = run_with(v3, &v3.evidence_bytes(), &ends);
    assert_eq!(failed_check(&v), "Product", "{}", error_message(&v));
    assert!(error_message(&v).contains("CPUID"));
}

fn product_enum(name: &str) -> AmdProduct {
    match name {
        "Milan" => AmdProduct::Milan,
        "Genoa" => AmdProduct::Genoa,
        _ => AmdProduct::Turin,
    }
}

#[test]
fn an_ark_of_another_product_is_refused() {
    let all = snp_cases();
    let pinned = TrustAnchors::pinned();
    for c in &all {
        let p = product_enum(&product_of(c));
        let Some(other) = all.iter().find(|o| product_of(o) != product_of(c)) else { continue };
        // Endorsed with another product's ASK/ARK bundle instead of its own.
        let mut ends = chain_of(other);
        ends.push(vek_endorsement(vek_of(c)));
        assert_eq!(failed_check(&run_with(c, &c.evidence_bytes(), &ends)), "VCEK certificate chain", "{}", c.id);
        // The anchor for this product swapped for another product's ARK.
        let q = product_enum(&product_of(other));
        let other_ark = pinned.of_kind(AnchorKind::AmdArk(q)).next().unwrap().der.clone();
        let swapped = TrustAnchors::pinned().with_replaced(AnchorKind::AmdArk(p), other_ark);
        let v = run(Tee::Snp, &c.evidence_bytes(), &c.endorsement_files(), &swapped, c.verify_at());
        assert_eq!(failed_check(&v), "VCEK certificate chain", "{}", c.id);
        assert!(error_message(&v).contains("not a trusted anchor"), "{}", error_message(&v));
        // No anchors at all.
        let v = run(Tee::Snp, &c.evidence_bytes(), &c.endorsement_files(), &TrustAnchors::empty(), c.verify_at());
        assert_eq!(failed_check(&v), "VCEK certificate chain");
    }
}

#[test]
fn missing_vcek_and_odd_lengths_are_refused_by_name() {
    let c = &snp_cases()[0];
    let ev = c.evidence_bytes();
    assert_eq!(failed_check(&run_with(c, &ev, &chain_of(c))), "VCEK certificate");
    assert_eq!(failed_check(&run_with(c, &ev[..REPORT_LEN - 1], &c.endorsement_files())), "Report format");
    let mut long = ev.clone();
    long.extend([1u8; 7]);
    assert_eq!(failed_check(&run_with(c, &long, &c.endorsement_files())), "Report format");
}

/// Build an extended-report certificate table holding `certs`.
fn cert_table(certs: &[Vec<u8>]) -> Vec<u8> {
    let header = 24 * (certs.len() + 1);
    let mut table = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    for (i, c) in certs.iter().enumerate() {
        table.extend([i as u8 + 1; 16]);
        table.extend(((header + body.len()) as u32).to_le_bytes());
        table.extend((c.len() as u32).to_le_bytes());
        body.extend(c);
    }
    table.extend([0u8; 24]);
    table.extend(body);
    table
}

#[test]
fn certificates_from_an_extended_report_table_are_used_untrusted() {
    let c = &snp_cases()[0];
    let mut ev = c.evidence_bytes();
    ev.extend(cert_table(&[vek_of(c)]));
    let v = run_with(c, &ev, &chain_of(c));
    assert!(v.verified(), "{:?}", v.result);
    // The table's certificates are not anchors: without the pinned ARK they do not help.
    let v = run(Tee::Snp, &ev, &c.endorsement_files(), &TrustAnchors::empty(), c.verify_at());
    assert_eq!(failed_check(&v), "VCEK certificate chain");
}

#[test]
fn a_nonce_must_be_the_whole_report_data() {
    for c in snp_cases() {
        let ev = c.evidence_bytes();
        let ends = c.endorsement_files();
        let anchors = TrustAnchors::pinned();
        let req = |nonce: &[u8]| {
            cachet_verify::verify(
                Tee::Snp,
                &cachet_verify::VerifyRequest {
                    evidence: &ev,
                    endorsements: &ends,
                    anchors: &anchors,
                    at: c.verify_at(),
                    expected_nonce: Some(nonce),
                },
            )
        };
        let rd = &ev[0x50..0x90];
        assert!(req(rd).verified(), "{}: the full 64-byte REPORT_DATA", c.id);
        // A prefix passes only where the rest of REPORT_DATA is zeros (the
        // nonce zero-padded); a 2-byte prefix never does.
        for n in [8, 16, 32, 63] {
            let padded = rd[n..].iter().all(|b| *b == 0);
            assert_eq!(req(&rd[..n]).verified(), padded, "{}: {n}-byte prefix", c.id);
        }
        let v = req(&rd[..2]);
        assert_eq!(failed_check(&v), "Nonce", "{}", c.id);
        assert!(error_message(&v).contains("8 to 64 bytes"), "{}", error_message(&v));
        let mut wrong = rd.to_vec();
        wrong[63] ^= 1;
        assert_eq!(failed_check(&req(&wrong)), "Nonce", "{}", c.id);
    }
}

#[test]
fn a_certificate_table_holding_pem_is_read() {
    // The kernel's configfs-tsm auxblob passes the host's table through; some
    // hosts store PEM there (veraison's Genoa capture). The VCEK, ASK and ARK
    // as PEM entries, each zero-padded as a host may store them.
    for c in snp_cases() {
        let mut pems = vec![pem(&vek_of(&c))];
        let chain = certs::Pool::from_endorsements(&chain_of(&c)).certs;
        pems.extend(chain.iter().map(|d| pem(d)));
        let entries: Vec<Vec<u8>> = pems
            .into_iter()
            .map(|p| {
                let mut b = p.into_bytes();
                b.extend([0u8; 5]);
                b
            })
            .collect();
        let mut ev = c.evidence_bytes()[..REPORT_LEN].to_vec();
        ev.extend(cert_table(&entries));
        let v = run_with(&c, &ev, &[]);
        assert!(v.verified(), "{}: {:?}", c.id, v.result);
        // DER entries padded with zeros are read the same way.
        let mut der = vek_of(&c);
        der.extend([0u8; 3]);
        let mut ev = c.evidence_bytes()[..REPORT_LEN].to_vec();
        ev.extend(cert_table(&[der]));
        let v = run_with(&c, &ev, &chain_of(&c));
        assert!(v.verified(), "{}: {:?}", c.id, v.result);
    }
}

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|l| std::str::from_utf8(l).unwrap()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

#[test]
fn a_tdx_quote_sent_as_snp_is_named() {
    let tdx = cases(&["tdx"]).into_iter().find(|c| c.expect == "accept").expect("a tdx case");
    let c = &snp_cases()[0];
    let v = run_with(c, &tdx.evidence_bytes(), &c.endorsement_files());
    assert_eq!(failed_check(&v), "Evidence format");
    assert!(error_message(&v).contains("this looks like a TDX quote, not an SNP report"), "{}", error_message(&v));
}

// ---------------------------------------------------------------------------
// CRLs against the genuine chain: AMD's signature cannot be forged.

fn amd_ca_der(c: &Case, cn: &str) -> Vec<u8> {
    let pool = certs::Pool::from_endorsements(&chain_of(c));
    pool.certs
        .into_iter()
        .find(|d| {
            let cert = cachet_verify::x509::parse_cert(d).unwrap();
            certs::common_name(cert.subject()).as_deref() == Some(cn)
        })
        .unwrap_or_else(|| panic!("{}: no {cn} among the endorsements", c.id))
}

/// An rcgen issuer with exactly the subject name (same string types) of a
/// real AMD CA, no keyUsage restriction, and a fresh key: a forger.
fn impersonate(ca_der: &[u8]) -> rcgen::Issuer<'static, rcgen::KeyPair> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let cert = cachet_verify::x509::parse_cert(ca_der).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    for attr in cert.subject().iter_attributes() {
        let oid: Vec<u64> = attr.attr_type().iter().unwrap().collect();
        let text = attr.as_str().unwrap().to_string();
        let value = match attr.attr_value().tag() {
            Tag::PrintableString => rcgen::DnValue::PrintableString(text.try_into().unwrap()),
            Tag::Ia5String => rcgen::DnValue::Ia5String(text.try_into().unwrap()),
            _ => rcgen::DnValue::Utf8String(text),
        };
        dn.push(rcgen::DnType::from_oid(&oid), value);
    }
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = dn;
    rcgen::Issuer::new(params, p384_key())
}

fn crl_params(at: i64, revoked: &[&[u8]]) -> rcgen::CertificateRevocationListParams {
    let t = |s: i64| time::OffsetDateTime::from_unix_timestamp(s).unwrap();
    rcgen::CertificateRevocationListParams {
        this_update: t(at - 86_400),
        next_update: t(at + 86_400),
        crl_number: rcgen::SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(s),
                revocation_time: t(at - 3600),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
}

fn p384_key() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap()
}

#[test]
fn a_crl_not_signed_by_the_genuine_amd_key_is_refused() {
    for c in snp_cases() {
        let product = product_of(&c);
        let vek_serial = certs::vek_cert(&vek_of(&c)).unwrap().unwrap().raw_serial;
        for (cn, revoked) in [(format!("SEV-{product}"), vek_serial.clone()), (format!("ARK-{product}"), vec![7u8])] {
            let forger = impersonate(&amd_ca_der(&c, &cn));
            let crl = crl_params(c.verify_at(), &[&revoked]).signed_by(&forger).unwrap();
            let mut ends = c.endorsement_files();
            ends.push(Endorsement { name: "forged.crl".into(), bytes: crl.der().to_vec() });
            let v = run_with(&c, &c.evidence_bytes(), &ends);
            assert_eq!(failed_check(&v), "AMD CRL", "{} forged {cn} CRL", c.id);
            // AMD's ASK may not sign CRLs at all; the ARK may, but not with this key.
            let why = if cn.starts_with("ARK") { "signature" } else { "does not permit signing CRLs" };
            assert!(error_message(&v).contains(why), "{}", error_message(&v));
        }
    }
}

#[test]
fn a_crl_of_an_unrelated_issuer_is_ignored_and_said_so() {
    let c = &snp_cases()[0];
    let other = rcgen::CertifiedIssuer::self_signed(ca_params("Some Other CA", 9), p384_key()).unwrap();
    let crl = crl_params(c.verify_at(), &[&[0u8]]).signed_by(&other).unwrap();
    let mut ends = c.endorsement_files();
    ends.push(Endorsement { name: "other.crl".into(), bytes: crl.pem().unwrap().into_bytes() });
    let v = run_with(c, &c.evidence_bytes(), &ends);
    assert_eq!(claims(&v)["crl_checked"], false);
    assert!(v.checks.iter().any(|k| k.name == "AMD CRL" && k.detail.contains("ignored")));
}

// ---------------------------------------------------------------------------
// A synthetic AMD-shaped hierarchy, trusted only through a test anchor set.

const AMD_ARC: [u64; 8] = [1, 3, 6, 1, 4, 1, 3704, 1];

fn amd_ext(tail: &[u64], content: Vec<u8>) -> rcgen::CustomExtension {
    let oid: Vec<u64> = AMD_ARC.iter().chain(tail).copied().collect();
    rcgen::CustomExtension::from_oid_content(&oid, content)
}

fn ia5(s: &str) -> Vec<u8> {
    let mut v = vec![0x16, s.len() as u8];
    v.extend(s.as_bytes());
    v
}

fn der_int(v: u8) -> Vec<u8> {
    if v < 0x80 {
        vec![2, 1, v]
    } else {
        vec![2, 2, 0, v]
    }
}

fn base_params(cn: &str, serial: u8) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::OrganizationName, "Advanced Micro Devices");
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&[serial]));
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2031, 1, 1);
    p
}

fn ca_params(cn: &str, serial: u8) -> rcgen::CertificateParams {
    let mut p = base_params(cn, serial);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p
}

/// TCB SPLs as the KDS certifies them: (bl, tee, snp, ucode, fmc).
#[derive(Clone, Copy)]
struct Spl {
    bl: u8,
    tee: u8,
    snp: u8,
    ucode: u8,
    fmc: Option<u8>,
}

impl Spl {
    fn report_bytes(self, product: AmdProduct) -> [u8; 8] {
        match product {
            AmdProduct::Turin => [self.fmc.unwrap_or(0), self.bl, self.tee, self.snp, 0, 0, 0, self.ucode],
            _ => [self.bl, self.tee, 0, 0, 0, 0, self.snp, self.ucode],
        }
    }
}

struct Vek {
    kind: &'static str,
    product_name: String,
    spl: Spl,
    hwid: Option<Vec<u8>>,
    serial: u8,
    p256: bool,
}

fn utf8(s: &str) -> Vec<u8> {
    let mut v = vec![0x0c, s.len() as u8];
    v.extend(s.as_bytes());
    v
}

struct Hierarchy {
    product: AmdProduct,
    ark: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    ask: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    asvk: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Hierarchy {
    fn new(product: AmdProduct) -> Hierarchy {
        let n = product.name();
        let ark = rcgen::CertifiedIssuer::self_signed(ca_params(&format!("ARK-{n}"), 1), p384_key()).unwrap();
        let ask = rcgen::CertifiedIssuer::signed_by(ca_params(&format!("SEV-{n}"), 2), p384_key(), &ark).unwrap();
        let asvk = rcgen::CertifiedIssuer::signed_by(ca_params(&format!("SEV-VLEK-{n}"), 3), p384_key(), &ark).unwrap();
        Hierarchy { product, ark, ask, asvk }
    }

    fn anchors(&self) -> TrustAnchors {
        let mut a = TrustAnchors::empty();
        a.push(AnchorKind::AmdArk(self.product), self.ark.der().to_vec());
        a
    }

    /// The chain bundle as AMD KDS serves it (PEM), with the ASVK too.
    fn bundle(&self) -> Endorsement {
        let pem = format!("{}{}{}", self.ask.pem(), self.ark.pem(), self.asvk.pem());
        Endorsement { name: "ask_ark_asvk.pem".into(), bytes: pem.into_bytes() }
    }

    /// Issue a VCEK/VLEK; returns (DER, PKCS#8 of its key).
    fn issue(&self, v: &Vek, issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>) -> (Vec<u8>, Vec<u8>) {
        let key = if v.p256 { rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap() } else { p384_key() };
        let mut p = base_params(if v.kind == "vlek" { "SEV-VLEK" } else { "SEV-VCEK" }, v.serial);
        let mut exts = vec![amd_ext(&[1], der_int(1))];
        // An empty product name leaves the extension out (and spells cspID as UTF8String).
        if !v.product_name.is_empty() {
            exts.push(amd_ext(&[2], ia5(&v.product_name)));
        }
        exts.extend([
            amd_ext(&[3, 1], der_int(v.spl.bl)),
            amd_ext(&[3, 2], der_int(v.spl.tee)),
            amd_ext(&[3, 3], der_int(v.spl.snp)),
            amd_ext(&[3, 8], der_int(v.spl.ucode)),
        ]);
        if let Some(f) = v.spl.fmc {
            exts.push(amd_ext(&[3, 9], der_int(f)));
        }
        match &v.hwid {
            Some(h) => exts.push(amd_ext(&[4], h.clone())),
            None if v.product_name.is_empty() => exts.push(amd_ext(&[5], utf8("CN=cc-test.example"))),
            None => exts.push(amd_ext(&[5], ia5("TestCloud"))),
        }
        p.custom_extensions = exts;
        let cert = p.signed_by(&key, issuer).unwrap();
        (cert.der().to_vec(), key.serialize_der())
    }
}

struct ReportSpec {
    version: u32,
    cpuid: (u8, u8, u8),
    signing_key: u32,
    chip_id: [u8; 64],
    tcb: [u8; 8],
    policy: u64,
}

fn build_report(s: &ReportSpec, pkcs8: &[u8]) -> Vec<u8> {
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
    let mut r = vec![0u8; REPORT_LEN];
    r[0..4].copy_from_slice(&s.version.to_le_bytes());
    r[0x08..0x10].copy_from_slice(&s.policy.to_le_bytes());
    r[0x34..0x38].copy_from_slice(&1u32.to_le_bytes());
    r[0x48..0x4C].copy_from_slice(&(s.signing_key << 2).to_le_bytes());
    r[0x50..0x90].copy_from_slice(&[0xAB; 64]);
    for off in [0x38, 0x180, 0x1E0, 0x1F0] {
        r[off..off + 8].copy_from_slice(&s.tcb);
    }
    if s.version >= 3 {
        r[0x188] = s.cpuid.0;
        r[0x189] = s.cpuid.1;
        r[0x18A] = s.cpuid.2;
    }
    r[0x1A0..0x1E0].copy_from_slice(&s.chip_id);
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8).unwrap();
    let sig = key.sign(&aws_lc_rs::rand::SystemRandom::new(), &r[..0x2A0]).unwrap();
    let layout = report::signature_to_report_layout(sig.as_ref()).unwrap();
    r[0x2A0..0x2A0 + 144].copy_from_slice(&layout);
    r
}

const AT: &str = "2026-06-01T00:00:00Z";

fn chip(n: usize) -> [u8; 64] {
    let mut c = [0u8; 64];
    for (i, b) in c.iter_mut().take(n).enumerate() {
        *b = 0x40 + i as u8;
    }
    c
}

const MILAN_SPL: Spl = Spl { bl: 3, tee: 0, snp: 8, ucode: 0xD3, fmc: None };
const TURIN_SPL: Spl = Spl { bl: 1, tee: 0, snp: 2, ucode: 0x47, fmc: Some(5) };

fn milan_vcek() -> Vek {
    Vek { kind: "vcek", product_name: "Milan-B0".into(), spl: MILAN_SPL, hwid: Some(chip(64).to_vec()), serial: 0, p256: false }
}

fn milan_spec() -> ReportSpec {
    ReportSpec {
        version: 3,
        cpuid: (0x19, 0x01, 0x01),
        signing_key: 0,
        chip_id: chip(64),
        tcb: MILAN_SPL.report_bytes(AmdProduct::Milan),
        policy: 0x30000,
    }
}

fn verify_synthetic(h: &Hierarchy, report: &[u8], vek_der: Vec<u8>, extra: Vec<Endorsement>) -> Verification {
    let mut ends = vec![h.bundle(), vek_endorsement(vek_der)];
    ends.extend(extra);
    run(Tee::Snp, report, &ends, &h.anchors(), ts(AT))
}

#[test]
fn synthetic_vcek_report_verifies_only_with_its_test_anchor() {
    let h = Hierarchy::new(AmdProduct::Milan);
    let (der, key) = h.issue(&milan_vcek(), &h.ask);
    let r = build_report(&milan_spec(), &key);
    let v = verify_synthetic(&h, &r, der.clone(), vec![]);
    let cl = claims(&v);
    assert_eq!(cl["product"], "Milan");
    assert_eq!(cl["reported_tcb"]["microcode"], 0xD3);
    assert_eq!(cl["crl_checked"], false);
    // The same chain is not trusted by the pinned roots.
    let ends = vec![h.bundle(), vek_endorsement(der)];
    assert_eq!(failed_check(&run(Tee::Snp, &r, &ends, &TrustAnchors::pinned(), ts(AT))), "VCEK certificate chain");
}

#[test]
fn synthetic_crl_revoking_the_vcek_or_ask_is_refused() {
    let h = Hierarchy::new(AmdProduct::Milan);
    let (der, key) = h.issue(&milan_vcek(), &h.ask);
    let r = build_report(&milan_spec(), &key);
    let at = ts(AT);
    let crl = |issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, serials: &[&[u8]]| Endorsement {
        name: "amd.crl".into(),
        bytes: crl_params(at, serials).signed_by(issuer).unwrap().der().to_vec(),
    };
    // ASK's CRL revoking the serial-0 VCEK.
    let v = verify_synthetic(&h, &r, der.clone(), vec![crl(&h.ask, &[&[5], &[0]])]);
    assert_eq!(failed_check(&v), "AMD CRL");
    assert!(error_message(&v).contains("revoked"), "{}", error_message(&v));
    // ARK's CRL revoking the ASK (serial 2).
    let v = verify_synthetic(&h, &r, der.clone(), vec![crl(&h.ark, &[&[2]])]);
    assert_eq!(failed_check(&v), "AMD CRL");
    assert!(error_message(&v).contains("SEV-Milan"), "{}", error_message(&v));
    // CRLs that revoke others: checked and accepted.
    let v = verify_synthetic(&h, &r, der.clone(), vec![crl(&h.ark, &[&[3]]), crl(&h.ask, &[&[9]])]);
    assert_eq!(claims(&v)["crl_checked"], true);
    // An expired CRL is refused.
    let old = crl_params(at - 10 * 86_400, &[]).signed_by(&h.ask).unwrap().der().to_vec();
    let v = verify_synthetic(&h, &r, der.clone(), vec![Endorsement { name: "old.crl".into(), bytes: old }]);
    assert_eq!(failed_check(&v), "AMD CRL");
    assert!(error_message(&v).contains("expired"));
    // A CRL bearing the ASK's name but signed by another key.
    let forger = rcgen::Issuer::from_ca_cert_der(h.ask.der(), p384_key()).unwrap();
    let forged = crl_params(at, &[]).signed_by(&forger).unwrap().der().to_vec();
    let v = verify_synthetic(&h, &r, der, vec![Endorsement { name: "forged.crl".into(), bytes: forged }]);
    assert_eq!(failed_check(&v), "AMD CRL");
}

#[test]
fn synthetic_vlek_report_verifies_through_the_asvk() {
    let h = Hierarchy::new(AmdProduct::Genoa);
    let spl = Spl { bl: 9, tee: 0, snp: 0x17, ucode: 0x48, fmc: None };
    let vlek = Vek { kind: "vlek", product_name: "Genoa".into(), spl, hwid: None, serial: 4, p256: false };
    let (der, key) = h.issue(&vlek, &h.asvk);
    let spec = ReportSpec {
        version: 5,
        cpuid: (0x19, 0x11, 0x01),
        signing_key: 1,
        chip_id: [0u8; 64],
        tcb: spl.report_bytes(AmdProduct::Genoa),
        policy: 0x30000,
    };
    let r = build_report(&spec, &key);
    let v = verify_synthetic(&h, &r, der.clone(), vec![]);
    let cl = claims(&v);
    assert_eq!(cl["signing_key"], "vlek");
    assert_eq!(cl["csp_id"], "TestCloud");
    assert!(v.checks.iter().any(|k| k.name == "VLEK certificate chain" && k.ok));
    assert!(!v.checks.iter().any(|k| k.name == "VCEK chip ID"));
    // A VLEK issued by the ASK (the VCEK signer) is refused.
    let (wrong, key2) = h.issue(&vlek, &h.ask);
    let v = verify_synthetic(&h, &build_report(&spec, &key2), wrong, vec![]);
    assert_eq!(failed_check(&v), "Product");
    // A VLEK report endorsed only with a VCEK is refused.
    let gvcek = Vek { kind: "vcek", product_name: "Genoa".into(), spl, hwid: Some(chip(64).to_vec()), serial: 5, p256: false };
    let (vcek_der, _) = h.issue(&gvcek, &h.ask);
    assert_eq!(failed_check(&verify_synthetic(&h, &r, vcek_der, vec![])), "VLEK certificate");
    // A VLEK without productName, its cspID a UTF8String: the issuer and CPUID name the product.
    let bare = Vek { product_name: String::new(), ..vlek };
    let (bare_der, bare_key) = h.issue(&bare, &h.asvk);
    let cl = claims(&verify_synthetic(&h, &build_report(&spec, &bare_key), bare_der, vec![]));
    assert_eq!((cl["product"].as_str(), cl["csp_id"].as_str()), (Some("Genoa"), Some("CN=cc-test.example")));
    // TCB still binds.
    let mut bad = spec;
    bad.tcb[0] = 8;
    assert_eq!(failed_check(&verify_synthetic(&h, &build_report(&bad, &key), der, vec![])), "VLEK TCB");
}

#[test]
fn synthetic_turin_binds_the_8_byte_hwid_and_fmc() {
    let h = Hierarchy::new(AmdProduct::Turin);
    let vcek =
        Vek { kind: "vcek", product_name: "Turin".into(), spl: TURIN_SPL, hwid: Some(chip(8)[..8].to_vec()), serial: 0, p256: false };
    let (der, key) = h.issue(&vcek, &h.ask);
    let spec = |chip_id: [u8; 64], tcb: [u8; 8]| ReportSpec {
        version: 5,
        cpuid: (0x1A, 0x02, 0x01),
        signing_key: 0,
        chip_id,
        tcb,
        policy: 0x30000,
    };
    let good = TURIN_SPL.report_bytes(AmdProduct::Turin);
    let cl = claims(&verify_synthetic(&h, &build_report(&spec(chip(8), good), &key), der.clone(), vec![]));
    assert_eq!(cl["reported_tcb"]["fmc"], 5);
    assert_eq!(cl["reported_tcb"]["snp"], 2);
    // FMC differs.
    let mut tcb = good;
    tcb[0] = 4;
    let v = verify_synthetic(&h, &build_report(&spec(chip(8), tcb), &key), der.clone(), vec![]);
    assert_eq!(failed_check(&v), "VCEK TCB");
    assert!(error_message(&v).contains("fmc"));
    // Read with the Milan layout this TCB would be different: the SNP SPL is byte 3 on Turin.
    let mut tcb = good;
    tcb[6] = 2;
    tcb[3] = 0;
    assert_eq!(failed_check(&verify_synthetic(&h, &build_report(&spec(chip(8), tcb), &key), der.clone(), vec![])), "VCEK TCB");
    // Chip ID: another chip, and the right 8 bytes followed by non-zero bytes.
    let mut other = chip(8);
    other[0] ^= 1;
    assert_eq!(failed_check(&verify_synthetic(&h, &build_report(&spec(other, good), &key), der.clone(), vec![])), "VCEK chip ID");
    assert_eq!(failed_check(&verify_synthetic(&h, &build_report(&spec(chip(9), good), &key), der.clone(), vec![])), "VCEK chip ID");
    assert_eq!(failed_check(&verify_synthetic(&h, &build_report(&spec([0; 64], good), &key), der, vec![])), "VCEK chip ID");
}

#[test]
fn synthetic_product_and_key_mismatches_are_named() {
    let h = Hierarchy::new(AmdProduct::Milan);
    let (der, key) = h.issue(&milan_vcek(), &h.ask);
    // The report's CPUID says Genoa.
    let mut s = milan_spec();
    s.cpuid = (0x19, 0x11, 0x01);
    assert_eq!(failed_check(&verify_synthetic(&h, &build_report(&s, &key), der.clone(), vec![])), "Product");
    // Unknown CPUID.
    s.cpuid = (0x17, 0x31, 0x00);
    assert_eq!(failed_check(&verify_synthetic(&h, &build_report(&s, &key), der.clone(), vec![])), "Product");
    // productName of another product.
    let mut v = milan_vcek();
    v.product_name = "Genoa-B1".into();
    let (der2, key2) = h.issue(&v, &h.ask);
    assert_eq!(failed_check(&verify_synthetic(&h, &build_report(&milan_spec(), &key2), der2, vec![])), "Product");
    // hwID of another chip.
    let mut v = milan_vcek();
    v.hwid = Some(chip(63).to_vec());
    let (der3, key3) = h.issue(&v, &h.ask);
    assert_eq!(failed_check(&verify_synthetic(&h, &build_report(&milan_spec(), &key3), der3, vec![])), "VCEK chip ID");
    // A VCEK with a P-256 key cannot have signed an SNP report.
    let mut v = milan_vcek();
    v.p256 = true;
    let (der4, _) = h.issue(&v, &h.ask);
    let v = verify_synthetic(&h, &build_report(&milan_spec(), &key), der4, vec![]);
    assert_eq!(failed_check(&v), "Report signature");
    assert!(error_message(&v).contains("P-384"));
    // Debug policy is reported as a claim.
    let mut s = milan_spec();
    s.policy |= 1 << 19;
    let cl = claims(&verify_synthetic(&h, &build_report(&s, &key), der.clone(), vec![]));
    assert_eq!(cl["debug"], true);
    // An unsigned report (SIGNING_KEY 7) is refused.
    let mut s = milan_spec();
    s.signing_key = 7;
    assert_eq!(failed_check(&verify_synthetic(&h, &build_report(&s, &key), der, vec![])), "Signing key");
}

#[test]
fn verify_report_is_reusable_with_found_endorsements() {
    // The Azure verifier's path: a report and a VCEK it found, no request.
    let c = &snp_cases()[0];
    let mut checks = Checks::new();
    let claims = snp::verify_report(&c.evidence_bytes(), &c.endorsement_files(), &TrustAnchors::pinned(), c.verify_at(), &mut checks)
        .expect("verifies");
    assert_eq!(snp::report_data(&claims).unwrap().to_vec(), c.evidence_bytes()[0x50..0x90].to_vec());
    assert!(checks.as_slice().iter().all(|k| k.ok));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_inputs_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1600), ends in proptest::collection::vec(any::<u8>(), 0..300)) {
        let e = vec![Endorsement { name: "x".into(), bytes: ends }];
        let v = run(Tee::Snp, &bytes, &e, &TrustAnchors::pinned(), 1_700_000_000);
        prop_assert!(!v.verified());
    }

    #[test]
    fn truncated_or_mutated_reports_never_panic(case in 0usize..16, cut in 0usize..2000, flips in proptest::collection::vec((0usize..REPORT_LEN, any::<u8>()), 0..4)) {
        let all = snp_cases();
        let c = &all[case % all.len()];
        let original = c.evidence_bytes();
        let mut ev = original.clone();
        for (i, x) in &flips {
            ev[*i] ^= x;
        }
        let changed = ev != original;
        ev.truncate(cut.min(ev.len()));
        let v = run_with(c, &ev, &c.endorsement_files());
        if changed || ev.len() < REPORT_LEN {
            // Only a flip confined to bytes nothing reads could keep it valid; there are none.
            prop_assert!(!v.verified(), "{} accepted after {:?}", c.id, flips);
        }
    }
}
