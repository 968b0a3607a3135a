//! `authority::merge` on real recorded collateral: FMSPC 90c06f000000 has a
//! TCB Info with tcbEvaluationDataNumber 17 (collateral_v5_2502) and one with
//! 18 (tdx_quote_outdated_collateral), both genuine Intel documents.

#[path = "common/recorded.rs"]
mod recorded;

use cachet_endorse::authority::{merge, AuthorityError};
use cachet_verify::dcap::collateral::from_endorsements;
use recorded::{as_attester, intel_bundle};

const EVAL_17: &str = "tdx/automata/collateral_v5_2502.derived.json";
const EVAL_18: &str = "tdx/dcap-qvl/tdx_quote_outdated_collateral.json";

fn evals(e: &[cachet_verify::Endorsement]) -> Vec<u64> {
    from_endorsements(e)
        .tcb_infos
        .iter()
        .map(|t| serde_json::from_str::<serde_json::Value>(&t.body).unwrap()["tcbEvaluationDataNumber"].as_u64().unwrap())
        .collect()
}

#[test]
fn an_attester_tcb_info_older_than_the_services_is_refused_by_name() {
    let service = intel_bundle(EVAL_18);
    let err = merge(&service, &[as_attester(EVAL_17)]).unwrap_err();
    assert!(matches!(&err, AuthorityError::Outdated { theirs: 17, ours: 18, what } if what.contains("90c06f000000")), "{err:?}");
    assert_eq!(err.code(), "endorsement_outdated");
    assert_eq!(err.check(), "Endorsement freshness");
    assert!(err.to_string().contains("older than the service's 18"), "{err}");
}

#[test]
fn an_equal_attester_tcb_info_is_accepted_and_the_services_decides() {
    let service = intel_bundle(EVAL_18);
    let merged = merge(&service, &[as_attester(EVAL_18)]).unwrap();
    // One TCB Info: the service's (the attester's duplicate was not passed on).
    assert_eq!(evals(&merged), vec![18]);
    assert!(merged.iter().all(|e| e.name != EVAL_18), "the attester's bundle is not handed over whole");
}

#[test]
fn a_newer_attester_tcb_info_is_accepted_but_the_services_still_decides() {
    let service = intel_bundle(EVAL_17);
    let merged = merge(&service, &[as_attester(EVAL_18)]).unwrap();
    assert_eq!(evals(&merged), vec![17], "service pieces win");
}

#[test]
fn attester_pieces_fill_only_what_the_service_could_not_get() {
    // The service has the TCB Info only; the QE Identity comes from the attester.
    let service: Vec<_> = intel_bundle(EVAL_18).into_iter().take(1).collect();
    let merged = merge(&service, &[as_attester(EVAL_18)]).unwrap();
    let c = from_endorsements(&merged);
    assert_eq!(evals(&merged), vec![18]);
    assert_eq!(c.qe_identities.len(), 1, "the attester's QE Identity fills the gap");
    assert_eq!(c.crls.len(), 2, "and its CRLs (the service has none)");
    assert!(c.problems.is_empty(), "{:?}", c.problems);
}

#[test]
fn with_nothing_from_the_service_the_attesters_pieces_are_used_as_sent() {
    let sent = as_attester(EVAL_17);
    let merged = merge(&[], std::slice::from_ref(&sent)).unwrap();
    assert_eq!(merged.len(), 1);
    assert_eq!((&merged[0].name, &merged[0].bytes), (&sent.name, &sent.bytes));
    let service = intel_bundle(EVAL_18);
    let alone = merge(&service, &[]).unwrap();
    assert_eq!(alone.len(), service.iter().map(|f| f.parts.len()).sum::<usize>());
}

/// The recorded PCK CRL of a bundle, as an attester would send it alone.
fn pck_crl(rel: &str) -> cachet_verify::Endorsement {
    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(recorded::vectors().join(rel)).unwrap()).unwrap();
    cachet_verify::Endorsement { name: "attester-pck-crl.der".into(), bytes: hex::decode(b["pck_crl"].as_str().unwrap()).unwrap() }
}

#[test]
fn an_attester_crl_older_than_the_services_for_the_same_issuer_is_refused() {
    // PCK Platform CA CRLs of 2025-02-13 (EVAL_17's) and 2026-02-18 (EVAL_18's), both CRL number 1.
    let err = merge(&intel_bundle(EVAL_18), &[pck_crl(EVAL_17)]).unwrap_err();
    assert!(matches!(&err, AuthorityError::OutdatedCrl { issuer, .. } if issuer.contains("Intel SGX PCK Platform CA")), "{err:?}");
    assert_eq!(err.code(), "endorsement_outdated");
    let msg = err.to_string();
    assert!(msg.contains("thisUpdate 2025-02-13") && msg.contains("thisUpdate 2026-02-18"), "{msg}");

    // The same revision, or a newer one, is not refused (the service's still decides).
    merge(&intel_bundle(EVAL_18), &[pck_crl(EVAL_18)]).unwrap();
    let merged = merge(&intel_bundle(EVAL_17), &[pck_crl(EVAL_18)]).unwrap();
    assert!(merged.iter().all(|e| !e.name.starts_with("attester-pck-crl.der")), "the attester's CRL is not handed over");
}

/// The two VBIOS RIMs NVIDIA signed for one version (production and a test one)
/// and the id the 2023 report names.
const VBIOS_ID: &str = "NV_GPU_VBIOS_1010_0200_882_96005E0001";
const NV: &str = "nvidia/nvtrust-2023-full/";

fn rim_file(name: &str) -> cachet_verify::Endorsement {
    let path = format!("{}/../../testdata/vectors/{NV}{name}", env!("CARGO_MANIFEST_DIR"));
    cachet_verify::Endorsement { name: name.into(), bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")) }
}

fn service_rim(name: &str) -> cachet_endorse::Fetched {
    let e = rim_file(name);
    cachet_endorse::Fetched {
        resource: cachet_endorse::Resource::Rim { id: VBIOS_ID.into() },
        parts: vec![cachet_endorse::Part { name: e.name, bytes: e.bytes }],
        fetched_at: 0,
        next_update: None,
        source: "test".into(),
    }
}

#[test]
fn an_attester_rim_that_contradicts_the_rim_services_is_refused_by_name() {
    let service = [service_rim("1010_0200_882_96005E0001_PROD.swidtag")];
    // The test RIM of the same VBIOS version, genuinely NVIDIA-signed, sent to
    // replace the production one the RIM service serves for that id.
    let e = merge(&service, &[rim_file("1010_0200_882_96005E0001_test_no_gpu.swidtag")]).unwrap_err();
    assert!(matches!(&e, AuthorityError::Contradicted { id, .. } if id == VBIOS_ID), "{e}");
    assert_eq!((e.code(), e.check()), ("endorsement_contradicted", "Endorsement authority"));
    // The same RIM as the service's is no contradiction (dropped: the service's copy decides),
    // and a RIM for another id (the driver's) is dropped, not refused.
    let same = merge(&service, &[rim_file("1010_0200_882_96005E0001_PROD.swidtag")]).unwrap();
    let other = merge(&service, &[rim_file("Driver_RIM_test_no_gpu.swidtag")]).unwrap();
    for out in [same, other] {
        assert_eq!(out.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["1010_0200_882_96005E0001_PROD.swidtag"]);
    }
}

/// The given files of every accepted real case hold every required piece its
/// evidence needs (so `cachet verify -e` with complete files fetches nothing),
/// and pieces of another platform or an empty set hold none.
#[test]
fn given_files_cover_what_their_evidence_needs_and_nothing_else() {
    use cachet_endorse::authority::covered;
    let v = recorded::vectors();
    let cases: serde_json::Value = serde_json::from_slice(&std::fs::read(v.join("cases.json")).unwrap()).unwrap();
    let mut checked = 0;
    for c in cases["cases"].as_array().or(cases.as_array()).unwrap() {
        let Some(tee) = c["tee"].as_str().and_then(cachet_verify::Tee::parse) else { continue };
        if c["expect"] != "accept" {
            continue;
        }
        let raw = std::fs::read(v.join(c["evidence"].as_str().unwrap())).unwrap();
        let (_, evidence) = cachet_verify::encoding::decode_evidence(&raw);
        let needed = cachet_endorse::needs(tee, &evidence).unwrap_or_else(|e| panic!("{}: {e}", c["id"]));
        if needed.is_empty() {
            continue; // Nitro, TPM: the evidence carries its own endorsements.
        }
        let given: Vec<cachet_verify::Endorsement> = c["endorsements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let p = p.as_str().unwrap();
                cachet_verify::Endorsement { name: p.into(), bytes: std::fs::read(v.join(p)).unwrap() }
            })
            .collect();
        // A RIM is covered when given (nvgpu-h100-head's are not recorded anywhere).
        for r in needed.iter().filter(|r| !r.optional()) {
            let rim_given = given.iter().any(|e| e.name.ends_with(".swidtag"));
            if matches!(r, cachet_endorse::Resource::Rim { .. }) && !rim_given {
                assert!(!covered(r, &given), "{}: {} is not in its files", c["id"], r.key());
                continue;
            }
            assert!(covered(r, &given), "{}: {} is in its files", c["id"], r.key());
            assert!(!covered(r, &[]), "nothing covers {}", r.key());
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} cases checked (SGX, TDX, SNP, both Azure families and NVIDIA)");

    // Another platform's TCB Info does not hold this one's; an SGX QE Identity is not TDX's.
    let tdx = as_attester(EVAL_17);
    let other = cachet_endorse::Resource::TcbInfo { tee: cachet_endorse::needs::IntelTee::Tdx, fmspc: "00606a000000".into() };
    assert!(!covered(&other, std::slice::from_ref(&tdx)));
    let own = cachet_endorse::Resource::TcbInfo { tee: cachet_endorse::needs::IntelTee::Tdx, fmspc: "90c06f000000".into() };
    assert!(covered(&own, std::slice::from_ref(&tdx)));
    let sgx_qe = cachet_endorse::Resource::QeIdentity { tee: cachet_endorse::needs::IntelTee::Sgx };
    assert!(!covered(&sgx_qe, &[tdx]));
}
