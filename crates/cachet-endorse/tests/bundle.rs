//! Endorsement bundles (the air-gapped path) on the real recorded Intel
//! collateral: exported, imported into an empty cache, then an offline
//! endorser finds everything the quote needs and the verdict is the
//! recorded files' one; a tampered entry refuses the bundle by name and
//! nothing is imported.

#[path = "../../cachet-verify/tests/common/mod.rs"]
mod common;
#[path = "common/recorded.rs"]
mod recorded;

use std::sync::Arc;

use cachet_endorse::bundle::{self, Bundle, BundleError, FORMAT};
use cachet_endorse::{Cache, Endorser, MemoryCache, Sources};
use cachet_verify::TrustAnchors;

const CASES: &[&str] = &["sgx-dcapqvl", "tdx-dcapqvl-v4", "tdx-near-v4", "tdx-automata-2502", "tdx-cos113"];

fn case(id: &str) -> common::Case {
    common::cases(&["sgx", "tdx"]).into_iter().find(|c| c.id == id).expect("case in cases.json")
}

#[tokio::test]
async fn a_bundle_round_trips_into_an_empty_cache_and_verifies_offline() {
    for id in CASES {
        let c = case(id);
        let source = MemoryCache::default();
        for f in recorded::intel_bundle(&c.endorsements[0]) {
            source.put(&f.resource.key(), &f).await;
        }
        let json = bundle::export(&source).await.to_json();
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&json).unwrap()["format"], FORMAT);

        let target = Arc::new(MemoryCache::default());
        let kept = bundle::import(target.as_ref(), &json).await.unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(kept.len(), 4, "{id}");
        assert_eq!(target.list().await.len(), 4, "{id}");

        let offline = Endorser::new(Sources { offline: true, ..Sources::default() }, target).unwrap();
        let at = c.verify_at();
        let evidence = c.evidence_bytes();
        let got = offline.endorsements_for(c.tee(), &evidence, at).await.unwrap_or_else(|e| panic!("{id}: {e}"));
        let endorsements: Vec<_> = got.iter().flat_map(|f| f.endorsements()).collect();
        let v = common::run(c.tee(), &evidence, &endorsements, &TrustAnchors::pinned(), at);
        assert!(v.verified(), "{id}: {:?}", v.result);
        assert_eq!(v.result.as_ref().ok(), common::run_case(&c, at).result.as_ref().ok(), "{id}: claims");
    }
}

#[tokio::test]
async fn an_empty_cache_offline_names_what_is_missing() {
    let c = case(CASES[0]);
    let offline = Endorser::new(Sources { offline: true, ..Sources::default() }, Arc::new(MemoryCache::default())).unwrap();
    let err = offline.endorsements_for(c.tee(), &c.evidence_bytes(), c.verify_at()).await.unwrap_err();
    assert!(err.to_string().contains("offline and not cached"), "{err}");
}

/// Each recorded entry with one byte of its first part changed (or swapped
/// for another resource's) is refused by name, and nothing is imported.
#[tokio::test]
async fn a_tampered_entry_refuses_the_bundle_by_name_and_imports_nothing() {
    let entries = recorded::intel_bundle(&case(CASES[0]).endorsements[0]);
    let mut tampered: Vec<(String, Bundle)> = Vec::new();
    for i in 0..entries.len() {
        let mut b = Bundle::new(entries.clone());
        let key = b.entries[i].resource.key();
        let bytes = &mut b.entries[i].parts[0].bytes;
        // Inside the body: JSON stays JSON only if a quote/brace is not hit; a CRL's DER breaks.
        let at = bytes.len() / 2;
        bytes[at] = b'"';
        tampered.push((key, b));
    }
    // Still well-formed JSON, one digit of the signed text changed: only Intel's signature tells.
    let mut b = Bundle::new(entries.clone());
    let j = b.entries.iter().position(|e| matches!(e.resource, cachet_endorse::Resource::TcbInfo { .. })).unwrap();
    let text = String::from_utf8(b.entries[j].parts[0].bytes.clone()).unwrap();
    let at = text.find("\"tcbEvaluationDataNumber\":").unwrap() + "\"tcbEvaluationDataNumber\":".len();
    let digit = text.as_bytes()[at];
    assert!(digit.is_ascii_digit());
    b.entries[j].parts[0].bytes[at] = if digit == b'9' { b'8' } else { digit + 1 };
    serde_json::from_slice::<serde_json::Value>(&b.entries[j].parts[0].bytes).expect("still JSON");
    tampered.push((b.entries[j].resource.key(), b));
    // The right kind, the wrong resource: SGX's TCB Info under TDX's key.
    let mut b = Bundle::new(entries.clone());
    let j = b.entries.iter().position(|e| matches!(e.resource, cachet_endorse::Resource::TcbInfo { .. })).unwrap();
    if let cachet_endorse::Resource::TcbInfo { tee, .. } = &mut b.entries[j].resource {
        *tee = cachet_endorse::needs::IntelTee::Tdx;
    }
    tampered.push((b.entries[j].resource.key(), b));
    // The same resource twice.
    let mut b = Bundle::new(entries.clone());
    b.entries.push(b.entries[0].clone());
    tampered.push((b.entries[0].resource.key(), b));

    for (key, b) in tampered {
        let target = MemoryCache::default();
        let err = bundle::import(&target, &b.to_json()).await.expect_err(&key);
        match &err {
            BundleError::Entry { key: named, .. } => assert_eq!(named.as_str(), key.as_str(), "{err}"),
            other => panic!("{key}: {other}"),
        }
        assert!(err.to_string().contains(&key) && err.to_string().contains("nothing imported"), "{err}");
        assert!(target.list().await.is_empty(), "{key}: something was imported");
    }
}

#[test]
fn what_is_not_a_bundle_is_refused() {
    for bad in [&b"{}"[..], b"[]", b"not json", br#"{"format":"cachet-endorsements/2","entries":[]}"#] {
        assert!(matches!(Bundle::parse(bad), Err(BundleError::Malformed(_))), "{:?}", String::from_utf8_lossy(bad));
    }
    assert!(Bundle::parse(&vec![b' '; bundle::MAX_BUNDLE_LEN + 1]).is_err());
    assert!(Bundle::parse(br#"{"format":"cachet-endorsements/1","entries":[]}"#).unwrap().entries.is_empty());
}

fn entry(resource: cachet_endorse::Resource, rel: &str) -> cachet_endorse::Fetched {
    let bytes = std::fs::read(recorded::vectors().join(rel)).unwrap();
    cachet_endorse::Fetched {
        resource,
        parts: vec![cachet_endorse::Part { name: rel.into(), bytes }],
        fetched_at: 0,
        next_update: None,
        source: format!("recorded:{rel}"),
    }
}

/// AMD and NVIDIA entries (recorded VCEK, ASK/ARK chain, RIMs) pass under
/// the key the evidence needs them by, and are refused under another's.
#[test]
fn amd_and_nvidia_entries_must_be_what_their_key_says() {
    use cachet_endorse::bundle::check_entry;
    use cachet_endorse::needs::{AmdKey, AmdProduct};
    use cachet_endorse::Resource;

    let snp = case_of("snp", "snp-virtee-milan");
    let needed = cachet_endorse::needs(snp.tee(), &snp.evidence_bytes()).unwrap();
    let vcek_key = needed.iter().find(|r| matches!(r, Resource::Vcek { .. })).unwrap().clone();
    let vcek = entry(vcek_key.clone(), "sev-snp/virtee-sev/vcek_milan.der");
    check_entry(&vcek).unwrap();
    let chain = entry(Resource::AmdChain { product: AmdProduct::Milan, key: AmdKey::Vcek }, "sev-snp/virtee-sev/cert_chain_milan");
    check_entry(&chain).unwrap();
    let Resource::Vcek { product, hwid, mut tcb } = vcek_key else { unreachable!() };
    // Another chip, another TCB, another product's chain, a chain as a VCEK.
    let other_chip = Resource::Vcek { product, hwid: hwid.replacen(&hwid[..2], if &hwid[..2] == "00" { "01" } else { "00" }, 1), tcb };
    assert!(check_entry(&entry(other_chip, "sev-snp/virtee-sev/vcek_milan.der")).unwrap_err().contains("another chip"));
    tcb.snp = tcb.snp.wrapping_add(1);
    let other_tcb = Resource::Vcek { product, hwid: hwid.clone(), tcb };
    assert!(check_entry(&entry(other_tcb, "sev-snp/virtee-sev/vcek_milan.der")).unwrap_err().contains("another TCB"));
    let turin = Resource::AmdChain { product: AmdProduct::Turin, key: AmdKey::Vcek };
    assert!(check_entry(&entry(turin, "sev-snp/virtee-sev/cert_chain_milan")).is_err());
    let chain_as_crl = Resource::AmdCrl { product: AmdProduct::Milan, key: AmdKey::Vcek };
    assert!(check_entry(&entry(chain_as_crl, "sev-snp/virtee-sev/cert_chain_milan")).is_err());

    let nv = case_of("nvgpu", "nvgpu-h100-2023");
    let rims: Vec<Resource> = cachet_endorse::needs(nv.tee(), &nv.evidence_bytes()).unwrap();
    let driver = rims.iter().find(|r| r.key().contains("DRIVER")).unwrap().clone();
    let vbios = rims.iter().find(|r| r.key().contains("VBIOS")).unwrap().clone();
    check_entry(&entry(driver.clone(), "nvidia/nvtrust-2023-full/Driver_RIM_test_no_gpu.swidtag")).unwrap();
    check_entry(&entry(vbios.clone(), "nvidia/nvtrust-2023-full/1010_0200_882_96005E0001_PROD.swidtag")).unwrap();
    // The VBIOS RIM under the driver's id.
    let swapped = check_entry(&entry(driver, "nvidia/nvtrust-2023-full/1010_0200_882_96005E0001_PROD.swidtag")).unwrap_err();
    assert!(swapped.contains("version"), "{swapped}");
}

fn case_of(tee: &str, id: &str) -> common::Case {
    common::cases(&[tee]).into_iter().find(|c| c.id == id).expect("case in cases.json")
}
