//! The configfs-tsm back-end against a SIMULATED kernel (tests/common/fake_tsm.rs:
//! a user-space model of /sys/kernel/config/tsm/report served by test
//! threads). Every test driving it is named `simulated_*`: no real TSM is
//! involved. The reports it serves are real TDX quotes and SEV-SNP reports
//! from testdata/vectors with their report data replaced, so the attester's
//! format checks run on real layouts (their signatures no longer verify).
//!
//! Also: the report-data offsets the attester reads agree with the
//! verifier's claims on the unmodified real evidence, and auto-detection
//! follows the documented order on simulated device trees.

mod common;
#[path = "../../cachet-verify/tests/common/mod.rs"]
mod vectors;

use std::sync::atomic::Ordering;

use cachet_attester::binding;
use cachet_attester::configfs_tsm::{self, ConfigfsTsm};
use cachet_attester::source::{detect_in, paths, resolve_in, Backend, BindingInput, EvidenceSource};
use cachet_verify::Tee;
use common::fake_tsm::{FakeTsm, Interference, Provider};

/// Where REPORTDATA sits in a TDX quote, from Intel's quote layout (v4:
/// 48-byte header + TD report body, REPORTDATA at body offset 520; v5: a
/// 6-byte body descriptor after the header).
fn tdx_offset(quote: &[u8]) -> usize {
    match quote[0] {
        4 => 48 + 520,
        5 => 48 + 6 + 520,
        v => panic!("quote version {v}"),
    }
}

/// REPORT_DATA in an SEV-SNP report (ABI spec Table 22: offset 0x50).
const SNP_OFFSET: usize = 0x50;

fn patched(blob: &[u8], at: usize, inblob: &[u8]) -> Vec<u8> {
    let mut b = blob.to_vec();
    if inblob.len() == 64 {
        b[at..at + 64].copy_from_slice(inblob);
    }
    b
}

fn tdx_provider(quote: Vec<u8>) -> Provider {
    let at = tdx_offset(&quote);
    Provider { name: "tdx_guest".into(), outblob: Box::new(move |inblob| patched(&quote, at, inblob)), auxblob: None }
}

/// An SEV-SNP certificate table (GHCB spec §4.1.8.1) with one entry.
fn cert_table(cert: &[u8]) -> Vec<u8> {
    const VCEK_GUID: [u8; 16] = [0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd];
    let mut t = Vec::new();
    t.extend(VCEK_GUID);
    t.extend(48u32.to_le_bytes());
    t.extend((cert.len() as u32).to_le_bytes());
    t.extend([0u8; 24]);
    t.extend(cert);
    t
}

fn snp_provider(report: Vec<u8>, aux: Vec<u8>) -> Provider {
    Provider { name: "sev_guest".into(), outblob: Box::new(move |inblob| patched(&report, SNP_OFFSET, inblob)), auxblob: Some(aux) }
}

fn input<'a>() -> BindingInput<'a> {
    BindingInput { nonce: b"0123456789abcdef0123456789abcdef", runtime_data: br#"{"crv":"P-256","kty":"EC","x":"x","y":"y"}"# }
}

fn expected_report_data() -> [u8; 64] {
    let i = input();
    binding::report_data(i.nonce, i.runtime_data)
}

#[test]
fn simulated_tdx_quotes_carry_the_bound_report_data() {
    let cases = vectors::cases(&["tdx"]);
    assert!(!cases.is_empty());
    let mut versions = std::collections::BTreeSet::new();
    for c in cases {
        let quote = c.evidence_bytes();
        versions.insert(quote[0]);
        let fake = FakeTsm::start(tdx_provider(quote.clone()));
        let ev = ConfigfsTsm::under(fake.root.path()).collect(&input()).unwrap_or_else(|e| panic!("{}: {e}", c.id));
        assert_eq!(ev.tee, Tee::Tdx, "{}", c.id);
        assert_eq!(ev.backend, "configfs-tsm");
        let at = tdx_offset(&quote);
        assert_eq!(&ev.evidence[at..at + 64], &expected_report_data()[..], "{}", c.id);
        assert_eq!(ev.evidence, patched(&quote, at, &expected_report_data()), "{}: only the report data differs", c.id);
        assert!(ev.endorsements.is_empty());
        assert_eq!(fake.shared.instances.lock().unwrap().len(), 1, "{}: one instance per request", c.id);
    }
    assert!(versions.contains(&4) && versions.contains(&5), "v4 and v5 quotes exercised: {versions:?}");
}

#[test]
fn simulated_snp_report_with_certificate_table() {
    for c in vectors::cases(&["snp"]) {
        let report = c.evidence_bytes()[..1184].to_vec();
        let vcek = c.endorsement_files().into_iter().next().expect("a VCEK").bytes;
        let table = cert_table(&vcek);
        let fake = FakeTsm::start(snp_provider(report.clone(), table.clone()));
        let ev = ConfigfsTsm::under(fake.root.path()).collect(&input()).unwrap_or_else(|e| panic!("{}: {e}", c.id));
        assert_eq!(ev.tee, Tee::Snp);
        assert_eq!(&ev.evidence[..1184], &patched(&report, SNP_OFFSET, &expected_report_data())[..], "{}", c.id);
        assert_eq!(&ev.evidence[1184..], &table[..], "{}: the auxblob certificate table follows the report", c.id);
        // The verifier finds the VCEK in the appended table.
        let certs = cachet_verify::snp::certs::certs_from_table(&ev.evidence[1184..]).expect("table parses");
        assert_eq!(certs, vec![vcek], "{}", c.id);
    }
}

#[test]
fn simulated_privlevel_is_written_and_counted() {
    let report = vectors::cases(&["snp"])[0].evidence_bytes()[..1184].to_vec();
    let fake = FakeTsm::start(snp_provider(report, Vec::new()));
    let tsm = ConfigfsTsm { privlevel: Some(2), ..ConfigfsTsm::under(fake.root.path()) };
    let ev = tsm.collect(&input()).expect("privlevel write plus inblob write = generation + 2");
    assert_eq!(ev.evidence.len(), 1184, "an empty auxblob adds nothing");
    assert_eq!(*fake.shared.privlevels.lock().unwrap(), vec!["2\n".to_string()]);
}

#[test]
fn simulated_concurrent_writer_is_detected_and_the_request_retried() {
    let quote = vectors::cases(&["tdx"])[0].evidence_bytes();
    for interference in [Interference::SameInblob, Interference::OtherInblob] {
        let fake = FakeTsm::start(tdx_provider(quote.clone()));
        *fake.shared.interference.lock().unwrap() = Some(interference);
        fake.shared.interfere.store(1, Ordering::SeqCst);
        let ev = ConfigfsTsm::under(fake.root.path()).collect(&input()).expect("the second instance is clean");
        let at = tdx_offset(&quote);
        assert_eq!(&ev.evidence[at..at + 64], &expected_report_data()[..]);
        assert_eq!(fake.shared.instances.lock().unwrap().len(), 2, "{interference:?}: retried in a new instance");
    }
}

#[test]
fn simulated_persistent_interference_fails_naming_the_generation_check() {
    let quote = vectors::cases(&["tdx"])[0].evidence_bytes();
    let fake = FakeTsm::start(tdx_provider(quote));
    *fake.shared.interference.lock().unwrap() = Some(Interference::SameInblob);
    fake.shared.interfere.store(100, Ordering::SeqCst);
    let e = ConfigfsTsm::under(fake.root.path()).collect(&input()).unwrap_err().to_string();
    assert!(e.contains("generation check failed in every attempt"), "{e}");
    assert!(e.contains("another writer"), "{e}");
    assert_eq!(fake.shared.instances.lock().unwrap().len(), 3, "three attempts by default");
}

#[test]
fn simulated_report_of_another_request_is_refused() {
    let quote = vectors::cases(&["tdx"])[0].evidence_bytes();
    let fake = FakeTsm::start(tdx_provider(quote));
    fake.shared.stale.store(true, Ordering::SeqCst);
    let e = ConfigfsTsm::under(fake.root.path()).collect(&input()).unwrap_err().to_string();
    assert!(e.contains("instead of the") && e.contains("another request"), "{e}");
}

#[test]
fn simulated_unknown_provider_is_refused() {
    let fake = FakeTsm::start(Provider { name: "arm_cca_guest".into(), outblob: Box::new(|_| vec![0u8; 2048]), auxblob: None });
    let e = ConfigfsTsm::under(fake.root.path()).collect(&input()).unwrap_err().to_string();
    assert!(e.contains("arm_cca_guest"), "{e}");
}

#[test]
fn missing_configfs_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let e = ConfigfsTsm::under(dir.path()).collect(&input()).unwrap_err().to_string();
    assert!(e.contains("not available"), "{e}");
}

#[test]
fn report_data_offsets_agree_with_the_verifier_on_real_evidence() {
    let mut checked = 0;
    for c in vectors::cases(&["tdx", "snp"]).into_iter().filter(|c| c.expect == "accept") {
        let v = vectors::run_case(&c, c.verify_at());
        let claims = v.result.unwrap_or_else(|e| panic!("{}: {e}", c.id));
        let want = claims["report_data"].as_str().unwrap_or_else(|| panic!("{}: no report_data claim", c.id)).to_string();
        let ev = c.evidence_bytes();
        let got = match c.tee() {
            Tee::Tdx => configfs_tsm::tdx_quote_report_data(&ev),
            _ => configfs_tsm::snp_report_data(&ev),
        };
        assert_eq!(hex::encode(got.expect("report data found")), want, "{}", c.id);
        checked += 1;
    }
    assert!(checked >= 5);
}

#[test]
fn simulated_detection_follows_the_documented_order() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    assert_eq!(detect_in(r), None);
    assert!(resolve_in(r, Backend::Auto).unwrap_err().to_string().contains("--tee sim"));
    let touch = |p: &str| {
        let p = r.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    };
    touch(paths::TPMRM);
    assert_eq!(detect_in(r), Some(Backend::Tpm));
    touch(paths::NSM);
    assert_eq!(detect_in(r), Some(Backend::Nsm));
    touch(paths::TDX_GUEST);
    assert_eq!(detect_in(r), Some(Backend::TdxGuest));
    assert_eq!(resolve_in(r, Backend::TdxGuest).unwrap(), Backend::TdxGuest);
    touch(paths::SEV_GUEST);
    assert_eq!(detect_in(r), Some(Backend::SevGuest));
    // A configfs-tsm *file* is not the interface; the folder is.
    std::fs::create_dir_all(r.join(paths::CONFIGFS_TSM)).unwrap();
    assert_eq!(detect_in(r), Some(Backend::ConfigfsTsm));
    assert_eq!(resolve_in(r, Backend::TdxGuest).unwrap(), Backend::ConfigfsTsm, "tdx prefers configfs-tsm");
    assert_eq!(resolve_in(r, Backend::SevGuest).unwrap(), Backend::ConfigfsTsm, "snp prefers configfs-tsm");
    assert_eq!(resolve_in(r, Backend::Simulated).unwrap(), Backend::Simulated);
    assert_eq!(resolve_in(r, Backend::Auto).unwrap(), Backend::ConfigfsTsm);
}
