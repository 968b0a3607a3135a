//! Azure confidential VM evidence (`az-snp-vtpm`, `az-tdx-vtpm`): every real
//! capture of `cases.json` verifies in each encoding, and each way of
//! tampering with it — the wrapped SEV-SNP report or TD quote, the HCL's
//! TDREPORT, the runtime data, the PCRs, the AK, the VCEK, the ARK, the
//! time, the nonce — is refused by name.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cachet_verify::azure::evidence::{self, PcrInput};
use cachet_verify::azure::hcl;
use cachet_verify::{detect_tee, Tee, TrustAnchors, Verification, VerifyRequest};
use common::{cases, failed_check, run, Case};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Offset of the SEV-SNP report's signature inside the report.
const SNP_SIG: usize = 0x2A0;

fn az_cases() -> Vec<Case> {
    let all: Vec<Case> = cases(&["az-snp-vtpm", "az-tdx-vtpm"]).into_iter().filter(|c| c.expect == "accept").collect();
    assert!(all.iter().any(|c| c.tee == "az-snp-vtpm"), "no az-snp-vtpm case");
    assert!(all.iter().any(|c| c.tee == "az-tdx-vtpm"), "no az-tdx-vtpm case");
    all
}

/// Evidence decoded into its parts, re-encodable in either style.
#[derive(Clone)]
struct Ev {
    version: u64,
    hcl: Vec<u8>,
    quote: Vec<u8>,
    sig: Vec<u8>,
    pcrs: Vec<Vec<u8>>,
    certs: Vec<Vec<u8>>,
    td_quote: Option<Vec<u8>>,
}

impl Ev {
    fn of(c: &Case) -> Ev {
        let e = evidence::parse(&c.evidence_bytes()).expect("case evidence parses");
        let PcrInput::List(pcrs) = e.pcrs else { panic!("{}: PCRs are not a list", c.id) };
        Ev { version: e.version, hcl: e.hcl_report, quote: e.quote, sig: e.signature, pcrs, certs: e.certs, td_quote: e.td_quote }
    }

    /// trustee v1/v2 style: hex TPM fields, base64url reports and VCEK DER.
    fn text(&self) -> Vec<u8> {
        let mut v = json!({
            "version": self.version,
            "tpm_quote": {
                "signature": hex::encode(&self.sig),
                "message": hex::encode(&self.quote),
                "pcrs": self.pcrs.iter().map(hex::encode).collect::<Vec<_>>(),
            },
            "hcl_report": URL_SAFE_NO_PAD.encode(&self.hcl),
        });
        if let Some(c) = self.certs.first() {
            v["vcek"] = json!(URL_SAFE_NO_PAD.encode(c));
        }
        if let Some(t) = &self.td_quote {
            v["td_quote"] = json!(URL_SAFE_NO_PAD.encode(t));
        }
        serde_json::to_vec(&v).unwrap()
    }

    /// trustee v0 style: byte arrays, VCEK as PEM.
    fn arrays(&self) -> Vec<u8> {
        let mut v = json!({
            "tpm_quote": {"signature": self.sig, "message": self.quote, "pcrs": self.pcrs},
            "hcl_report": self.hcl,
        });
        if let Some(c) = self.certs.first() {
            let b64 = base64::engine::general_purpose::STANDARD.encode(c);
            let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|l| std::str::from_utf8(l).unwrap()).collect();
            v["vcek"] = json!(format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n")));
        }
        if let Some(t) = &self.td_quote {
            v["td_quote"] = json!(t);
        }
        serde_json::to_vec(&v).unwrap()
    }

    fn var_data_range(&self) -> std::ops::Range<usize> {
        let r = hcl::parse(&self.hcl).expect("HCL report parses");
        hcl::VAR_DATA_OFFSET..hcl::VAR_DATA_OFFSET + r.var_data.len()
    }

    fn var_data(&self) -> Vec<u8> {
        self.hcl[self.var_data_range()].to_vec()
    }

    /// Replace the runtime data, fixing the HCL sizes (the header is not
    /// signed), so that only the hardware binding can catch it.
    fn set_var_data(&mut self, var: &[u8]) {
        let total = self.hcl.len().max(hcl::VAR_DATA_OFFSET + var.len());
        let mut b = self.hcl[..hcl::VAR_DATA_OFFSET].to_vec();
        b.extend_from_slice(var);
        b.resize(total, 0);
        let put = |b: &mut Vec<u8>, at: usize, v: usize| b[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes());
        put(&mut b, 8, hcl::VAR_DATA_OFFSET + var.len());
        put(&mut b, hcl::REQUEST_DATA_OFFSET, hcl::REQUEST_DATA_LEN + var.len());
        put(&mut b, hcl::REQUEST_DATA_OFFSET + 16, var.len());
        self.hcl = b;
    }
}

fn verify_bytes(c: &Case, evidence: &[u8], at: i64, nonce: Option<&[u8]>) -> Verification {
    let endorsements = c.endorsement_files();
    let anchors = TrustAnchors::pinned();
    let req = VerifyRequest { evidence, endorsements: &endorsements, anchors: &anchors, at, expected_nonce: nonce };
    cachet_verify::verify(c.tee(), &req)
}

fn verify(c: &Case, evidence: &[u8]) -> Verification {
    verify_bytes(c, evidence, c.verify_at(), None)
}

fn claims(v: &Verification) -> Value {
    match &v.result {
        Ok(c) => c.clone(),
        Err(e) => panic!("not verified: {e} {:#?}", v.checks),
    }
}

fn hw_prefix(c: &Case) -> &'static str {
    if c.tee() == Tee::AzSnpVtpm {
        "SNP: "
    } else {
        "TDX: "
    }
}

fn check_ok(v: &Verification, name: &str) -> bool {
    v.checks.iter().any(|c| c.name == name && c.ok)
}

#[test]
fn every_case_verifies_with_its_claims() {
    for c in az_cases() {
        let v = common::run_case(&c, c.verify_at());
        let cl = claims(&v);
        assert_eq!(cl["tee"], json!(c.tee), "{}", c.id);
        let hw = if c.tee() == Tee::AzSnpVtpm { "snp" } else { "tdx" };
        assert_eq!(cl["hardware_tee"], json!(hw), "{}", c.id);
        assert_eq!(cl["debug"], json!(false), "{}", c.id);
        assert_eq!(cl["report_data"].as_str().map(str::len), Some(128), "{}", c.id);
        assert_eq!(cl["pcrs"]["sha256"].as_object().map(|m| m.len()), Some(24), "{}", c.id);
        assert_eq!(cl["ak_type"], json!("RSA 2048"), "{}", c.id);
        assert!(cl["extra_data"].is_string(), "{}", c.id);
        assert!(cl["tpm_quote"]["pcr_digest"].is_string(), "{}", c.id);
        let vm = &cl["hcl"]["vm_configuration"];
        for k in ["secure_boot", "tpm_enabled", "console_enabled"] {
            assert!(vm[k].is_boolean(), "{}: {k} = {}", c.id, vm[k]);
        }
        assert_eq!(cl["hcl"]["user_data"].as_str().map(str::len), Some(128), "{}", c.id);
        // report_data is H(runtime data) then zeros.
        let rd = cl["report_data"].as_str().unwrap();
        assert_eq!(&rd[..64], cl["hcl"]["runtime_data_hash"].as_str().unwrap(), "{}", c.id);
        assert!(rd[64..].bytes().all(|b| b == b'0'), "{}", c.id);
        if c.tee() == Tee::AzSnpVtpm {
            assert_eq!(cl["vmpl"], json!(0), "{}", c.id);
            assert!(cl["measurement"].is_string() && cl["product"].is_string(), "{}", c.id);
        } else {
            assert!(cl["tcb_status"].is_string() && cl["mr_td"].is_string(), "{}", c.id);
        }
        for name in ["HCL report format", "HCL runtime data binding", "vTPM AK", "TPM quote signature", "PCR digest"] {
            assert!(check_ok(&v, name), "{}: check {name} missing: {:?}", c.id, v.checks);
        }
        assert!(v.checks.iter().any(|k| k.name.starts_with(hw_prefix(&c)) && k.ok), "{}", c.id);
    }
}

#[test]
fn every_encoding_verifies_and_is_detected() {
    for c in az_cases() {
        let ev = Ev::of(&c);
        for (style, bytes) in [("text", ev.text()), ("arrays", ev.arrays()), ("original", c.evidence_bytes())] {
            claims(&verify(&c, &bytes));
            assert_eq!(detect_tee(&bytes), Some(c.tee()), "{} {style}", c.id);
        }
        // Wrapped in an {"evidence": ...} envelope.
        let wrapped = serde_json::to_vec(&json!({"evidence": serde_json::from_slice::<Value>(&ev.text()).unwrap()})).unwrap();
        claims(&verify(&c, &wrapped));
    }
}

#[test]
fn refused_outside_the_validity_window() {
    for c in az_cases() {
        let after = verify_bytes(&c, &c.evidence_bytes(), c.valid_to() + 3600, None);
        assert!(failed_check(&after).starts_with(hw_prefix(&c)), "{}: {:?}", c.id, after.result);
        let before = verify_bytes(&c, &c.evidence_bytes(), c.valid_from() - 86400, None);
        assert!(failed_check(&before).starts_with(hw_prefix(&c)), "{}: {:?}", c.id, before.result);
    }
}

#[test]
fn flipped_bits_of_the_snp_report_are_refused() {
    for c in az_cases().into_iter().filter(|c| c.tee() == Tee::AzSnpVtpm) {
        let ev = Ev::of(&c);
        // Signed region 0x000..0x2A0 (every 7th byte, rotating bits), then r and s.
        let positions = (0..SNP_SIG).step_by(7).chain((SNP_SIG..SNP_SIG + 48).step_by(5)).chain((SNP_SIG + 72..SNP_SIG + 120).step_by(5));
        for (n, pos) in positions.enumerate() {
            let mut m = ev.clone();
            m.hcl[hcl::HW_REPORT_OFFSET + pos] ^= 1 << (n % 8);
            let v = verify(&c, &m.text());
            let name = failed_check(&v);
            assert!(name.starts_with("SNP: "), "{} byte {pos:#x}: {name}", c.id);
        }
    }
}

#[test]
fn flipped_bits_of_the_td_quote_or_tdreport_are_refused() {
    for c in az_cases().into_iter().filter(|c| c.tee() == Tee::AzTdxVtpm) {
        let ev = Ev::of(&c);
        let tq = ev.td_quote.clone().unwrap();
        // Header and TD report body (signed by the attestation key).
        for (n, pos) in (0..48 + 584).step_by(11).enumerate() {
            let mut m = ev.clone();
            m.td_quote.as_mut().unwrap()[pos] ^= 1 << (n % 8);
            let name = failed_check(&verify(&c, &m.text()));
            assert!(name.starts_with("TDX: "), "{} TD quote byte {pos}: {name}", c.id);
        }
        assert!(tq.len() > 48 + 584 + 64);
        // The HCL's TDREPORT: REPORTDATA (128..192), TEE_TCB_INFO and TDINFO fields.
        for pos in [0usize, 128, 191, 264, 300, 512, 530, 600, 730, 900] {
            let mut m = ev.clone();
            m.hcl[hcl::HW_REPORT_OFFSET + pos] ^= 0x10;
            let name = failed_check(&verify(&c, &m.text()));
            assert_eq!(name, "HCL TD report", "{} TDREPORT byte {pos}", c.id);
        }
    }
}

#[test]
fn altered_runtime_data_is_refused() {
    for c in az_cases() {
        let ev = Ev::of(&c);
        let var = ev.var_data();
        // One character, same length (a hex digit of user-data, a letter of vmUniqueId, a char of the AK).
        for needle in ["\"user-data\":\"", "\"vmUniqueId\":\"", "\"n\":\""] {
            let at = var.windows(needle.len()).position(|w| w == needle.as_bytes()).unwrap() + needle.len() + 3;
            let mut m = ev.clone();
            let r = m.var_data_range();
            m.hcl[r.start + at] = if var[at] == b'A' { b'B' } else { b'A' };
            assert_eq!(failed_check(&verify(&c, &m.text())), "HCL runtime data binding", "{} {needle}", c.id);
        }
        // A different length (sizes fixed up): still caught by the binding.
        let mut m = ev.clone();
        let mut longer = var.clone();
        longer.insert(1, b' ');
        m.set_var_data(&longer);
        assert_eq!(failed_check(&verify(&c, &m.text())), "HCL runtime data binding", "{}", c.id);
        // Unchanged data through set_var_data still verifies (the helper is sound).
        let mut same = ev.clone();
        same.set_var_data(&var);
        claims(&verify(&c, &same.text()));
    }
}

/// The HCL header (offsets 0..32) is signed by nothing: its fields are
/// checked but never reported, so a flipped bit there can neither change
/// the claims nor pass unnoticed (mutation finding F2: request_type 2 →
/// 8390146 was accepted and reported as `hcl.request_type`).
#[test]
fn unsigned_hcl_header_fields_are_checked_and_never_claims() {
    for c in az_cases() {
        let ev = Ev::of(&c);
        let good = claims(&verify(&c, &ev.text()));
        let h = good["hcl"].as_object().expect("hcl claims");
        assert!(!h.contains_key("request_type") && !h.contains_key("version"), "{}: unsigned header in claims {h:?}", c.id);
        for (value, what) in [(0u32, "request type 0"), (4, "request type 4"), (8390146, "request type 8390146")] {
            let mut m = ev.clone();
            m.hcl[12..16].copy_from_slice(&value.to_le_bytes());
            assert_eq!(failed_check(&verify(&c, &m.text())), "HCL report format", "{} {what}", c.id);
        }
        // Every documented request type is let through with the same claims.
        for value in 1u32..=3 {
            let mut m = ev.clone();
            m.hcl[12..16].copy_from_slice(&value.to_le_bytes());
            assert_eq!(claims(&verify(&c, &m.text())), good, "{} request type {value}", c.id);
        }
    }
}

/// The `HCLAkPub` JWK text of some runtime data.
fn ak_jwk(var: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(var).unwrap();
    v["keys"].as_array().unwrap().iter().find(|k| k["kid"] == "HCLAkPub").unwrap().clone()
}

#[test]
fn a_quote_by_a_different_ak_is_refused() {
    let all = az_cases();
    for c in &all {
        let ev = Ev::of(c);
        let other = all.iter().map(Ev::of).find(|o| ak_jwk(&o.var_data()) != ak_jwk(&ev.var_data())).expect("a case with another AK");
        // The other capture's quote, signature and PCRs: not signed by this HCLAkPub.
        let mut m = ev.clone();
        m.quote = other.quote.clone();
        m.sig = other.sig.clone();
        m.pcrs = other.pcrs.clone();
        assert_eq!(failed_check(&verify(c, &m.text())), "TPM quote signature", "{}", c.id);
        // The other AK put into the runtime data: the hardware binding breaks.
        let var = String::from_utf8(ev.var_data()).unwrap();
        let mine = ak_jwk(ev.var_data().as_slice())["n"].as_str().unwrap().to_string();
        let theirs = ak_jwk(other.var_data().as_slice())["n"].as_str().unwrap().to_string();
        let mut m = ev.clone();
        m.set_var_data(var.replace(&mine, &theirs).as_bytes());
        m.quote = other.quote.clone();
        m.sig = other.sig.clone();
        m.pcrs = other.pcrs.clone();
        assert_eq!(failed_check(&verify(c, &m.text())), "HCL runtime data binding", "{}", c.id);
        // A signature with one bit flipped.
        let mut m = ev.clone();
        m.sig[17] ^= 4;
        assert_eq!(failed_check(&verify(c, &m.text())), "TPM quote signature", "{}", c.id);
    }
}

#[test]
fn altered_pcrs_are_refused() {
    for c in az_cases() {
        let ev = Ev::of(&c);
        for i in [0usize, 7, 23] {
            let mut m = ev.clone();
            m.pcrs[i][5] ^= 0x80;
            assert_eq!(failed_check(&verify(&c, &m.text())), "PCR digest", "{} PCR {i}", c.id);
        }
        let mut m = ev.clone();
        m.pcrs.swap(1, 2);
        assert_eq!(failed_check(&verify(&c, &m.text())), "PCR digest", "{} swapped", c.id);
        let mut m = ev.clone();
        m.pcrs.truncate(20);
        assert_eq!(failed_check(&verify(&c, &m.text())), "PCR digest", "{} missing", c.id);
    }
}

#[test]
fn the_nonce_is_checked_when_expected() {
    for c in az_cases() {
        let ev = Ev::of(&c);
        let extra = hex::decode(claims(&verify(&c, &ev.text()))["extra_data"].as_str().unwrap()).unwrap();
        let ok = verify_bytes(&c, &ev.text(), c.verify_at(), Some(&extra));
        claims(&ok);
        assert!(check_ok(&ok, "Quote nonce"), "{}", c.id);
        let mut wrong = extra.clone();
        wrong[0] ^= 1;
        let v = verify_bytes(&c, &ev.text(), c.verify_at(), Some(&wrong));
        assert_eq!(failed_check(&v), "Quote nonce", "{}", c.id);
        if ev.version >= 2 {
            assert!(check_ok(&ok, "HCL user data"), "{}", c.id);
        } else {
            // Claiming format version 2 promises the nonce in user-data, which these captures do not carry.
            let user_data = claims(&ok)["hcl"]["user_data"].as_str().unwrap().to_string();
            if !user_data.starts_with(&hex::encode(&extra)) {
                let mut m = ev.clone();
                m.version = 2;
                let v = verify_bytes(&c, &m.text(), c.verify_at(), Some(&extra));
                assert_eq!(failed_check(&v), "HCL user data", "{}", c.id);
            }
        }
    }
}

#[test]
fn another_chips_vcek_or_another_products_ark_is_refused() {
    let snp: Vec<Case> = az_cases().into_iter().filter(|c| c.tee() == Tee::AzSnpVtpm).collect();
    let chip = |c: &Case| claims(&verify(c, &c.evidence_bytes()))["chip_id"].clone();
    let product = |c: &Case| claims(&verify(c, &c.evidence_bytes()))["product"].clone();
    let mut other_chip_tested = false;
    let mut other_product_tested = false;
    for c in &snp {
        let ev = Ev::of(c);
        for o in snp.iter().filter(|o| chip(o) != chip(c)) {
            let mut m = ev.clone();
            m.certs = Ev::of(o).certs;
            let name = failed_check(&verify(c, &m.text()));
            assert!(name.starts_with("SNP: "), "{} with {}'s VCEK: {name}", c.id, o.id);
            other_chip_tested = true;
        }
        for o in snp.iter().filter(|o| product(o) != product(c)) {
            // This evidence with the other product's ASK/ARK bundle.
            let v = run(c.tee(), &c.evidence_bytes(), &o.endorsement_files(), &TrustAnchors::pinned(), c.verify_at());
            let name = failed_check(&v);
            assert!(name.starts_with("SNP: "), "{} with {}'s ARK: {name}", c.id, o.id);
            other_product_tested = true;
        }
        // No VCEK at all.
        let mut m = ev.clone();
        m.certs.clear();
        assert_eq!(failed_check(&verify(c, &m.text())), "SNP: VCEK certificate", "{}", c.id);
    }
    assert!(other_chip_tested && other_product_tested);
}

#[test]
fn the_wrong_family_or_missing_parts_are_refused() {
    for c in az_cases() {
        let ev = Ev::of(&c);
        let other = if c.tee() == Tee::AzSnpVtpm { Tee::AzTdxVtpm } else { Tee::AzSnpVtpm };
        let v = run(other, &c.evidence_bytes(), &c.endorsement_files(), &TrustAnchors::pinned(), c.verify_at());
        assert_eq!(failed_check(&v), "HCL report format", "{}", c.id);
        if c.tee() == Tee::AzTdxVtpm {
            let mut m = ev.clone();
            m.td_quote = None;
            assert_eq!(failed_check(&verify(&c, &m.text())), "Evidence format", "{}", c.id);
        }
        // Truncated HCL report, a bad header, nonzero padding after the report.
        let mut m = ev.clone();
        m.hcl.truncate(hcl::VAR_DATA_OFFSET + 10);
        assert_eq!(failed_check(&verify(&c, &m.text())), "HCL report format", "{}", c.id);
        let mut m = ev.clone();
        m.hcl[16] = 1;
        assert_eq!(failed_check(&verify(&c, &m.text())), "HCL report format", "{}", c.id);
        let mut m = ev.clone();
        *m.hcl.last_mut().unwrap() = 1;
        assert_eq!(failed_check(&verify(&c, &m.text())), "HCL report format", "{}", c.id);
        // Not JSON, or no TPM quote.
        assert_eq!(failed_check(&verify(&c, b"\x00\x01")), "Evidence format");
        let mut doc: Value = serde_json::from_slice(&ev.text()).unwrap();
        doc.as_object_mut().unwrap().remove("tpm_quote");
        assert_eq!(failed_check(&verify(&c, &serde_json::to_vec(&doc).unwrap())), "Evidence format");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let anchors = TrustAnchors::pinned();
        for tee in [Tee::AzSnpVtpm, Tee::AzTdxVtpm] {
            let v = run(tee, &data, &[], &anchors, 0);
            prop_assert!(v.result.is_err());
        }
        let _ = detect_tee(&data);
    }

    #[test]
    fn truncated_or_flipped_evidence_never_panics(cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8, which in any::<prop::sample::Index>()) {
        let all = az_cases();
        let c = which.get(&all);
        let ev = Ev::of(c);
        for doc in [c.evidence_bytes(), ev.text(), ev.arrays()] {
            let truncated = &doc[..cut.index(doc.len())];
            prop_assert!(verify(c, truncated).result.is_err());
            let _ = detect_tee(truncated);
            let mut flipped = doc.clone();
            flipped[flip.index(doc.len())] ^= 1 << bit;
            let _ = verify(c, &flipped);
            let _ = detect_tee(&flipped);
        }
        // Binary parts truncated or flipped at random.
        // (Only the zero padding after the report may go: cut inside the report.)
        let mut m = ev.clone();
        m.hcl.truncate(cut.index(m.var_data_range().end));
        prop_assert!(verify(c, &m.text()).result.is_err());
        let mut m = ev.clone();
        m.quote.truncate(cut.index(m.quote.len()));
        prop_assert!(verify(c, &m.text()).result.is_err());
        let mut m = ev.clone();
        let i = flip.index(m.hcl.len());
        m.hcl[i] ^= 1 << bit;
        let _ = verify(c, &m.text());
        if let Some(t) = m.td_quote.as_mut() {
            // Cut inside the header, body and quote signature (bytes after
            // the declared signature data are unsigned padding).
            let len = cut.index(48 + 584 + 4 + 64);
            t.truncate(len);
            prop_assert!(verify(c, &m.text()).result.is_err());
        }
    }

    #[test]
    fn random_hcl_reports_never_panic(body in proptest::collection::vec(any::<u8>(), 0..3000), var in "[ -~]{0,200}", kind in prop::sample::select(vec![2u32, 4]), hash in 0u32..5) {
        let mut b = b"HCLA".to_vec();
        b.extend_from_slice(&body);
        b.resize(hcl::VAR_DATA_OFFSET.max(b.len()), 0);
        let put = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put(&mut b, 4, 2);
        put(&mut b, 16, 0);
        put(&mut b, hcl::REQUEST_DATA_OFFSET + 4, 1);
        put(&mut b, hcl::REQUEST_DATA_OFFSET + 8, kind);
        put(&mut b, hcl::REQUEST_DATA_OFFSET + 12, hash);
        put(&mut b, hcl::REQUEST_DATA_OFFSET + 16, var.len() as u32);
        b.truncate(hcl::VAR_DATA_OFFSET);
        b.extend_from_slice(var.as_bytes());
        if let Ok(r) = hcl::parse(&b) {
            let _ = hcl::check_binding(&r, &[0u8; 64]);
            let _ = cachet_verify::azure::parse_runtime_claims(r.var_data);
            let _ = hcl::td_report_fields(r.hw_report);
        }
        let doc = json!({"hcl_report": URL_SAFE_NO_PAD.encode(&b), "tpm_quote": {"message": "ff544347", "signature": "00", "pcrs": []}});
        let bytes = serde_json::to_vec(&doc).unwrap();
        let anchors = TrustAnchors::pinned();
        for tee in [Tee::AzSnpVtpm, Tee::AzTdxVtpm] {
            prop_assert!(run(tee, &bytes, &[], &anchors, 0).result.is_err());
        }
    }
}
