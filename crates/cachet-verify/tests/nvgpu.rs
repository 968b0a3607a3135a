//! NVIDIA H100 GPU evidence: the real reports, chains and RIMs of
//! `testdata/vectors` (cases of tee `nvgpu`), and tampered variants of them.

mod common;

use cachet_verify::{AnchorKind, Endorsement, Tee, TrustAnchors, Verification, VerifyRequest};
use common::{cases, failed_check, run, run_case, vectors_dir, Case};
use proptest::prelude::*;
use std::path::Path;

/// The SPDM request is 37 bytes; the response header (8 bytes) follows.
const REQ: usize = 37;

fn nvgpu_cases() -> Vec<Case> {
    let all = cases(&["nvgpu"]);
    assert!(!all.is_empty(), "no nvgpu cases in cases.json");
    all
}

fn accept_cases() -> Vec<Case> {
    nvgpu_cases().into_iter().filter(|c| c.expect == "accept").collect()
}

fn is_xml(e: &Endorsement) -> bool {
    e.bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

/// The case's endorsements without its RIMs.
fn without_rims(c: &Case) -> Vec<Endorsement> {
    c.endorsement_files().into_iter().filter(|e| !is_xml(e)).collect()
}

/// Every RIM (`*.swidtag`) published in the folder of the case's evidence.
fn folder_rims(c: &Case) -> Vec<Endorsement> {
    let dir = vectors_dir().join(&c.evidence).parent().map(Path::to_path_buf).unwrap_or_default();
    let mut files: Vec<_> = std::fs::read_dir(&dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "swidtag"))
        .map(|p| Endorsement { name: p.display().to_string(), bytes: std::fs::read(&p).unwrap() })
        .collect()
}

fn with(mut base: Vec<Endorsement>, more: Vec<Endorsement>) -> Vec<Endorsement> {
    base.extend(more);
    base
}

fn verify_nonce(c: &Case, evidence: &[u8], endorsements: &[Endorsement], nonce: Option<&[u8]>) -> Verification {
    let anchors = TrustAnchors::pinned();
    cachet_verify::verify(
        Tee::Nvgpu,
        &VerifyRequest { evidence, endorsements, anchors: &anchors, at: c.verify_at(), expected_nonce: nonce },
    )
}

fn claims(v: &Verification) -> &serde_json::Value {
    match &v.result {
        Ok(c) => c,
        Err(e) => panic!("expected verification, got {e}: {:?}", v.checks),
    }
}

/// The case that ships RIMs alongside its report.
fn full_case() -> Case {
    accept_cases().into_iter().find(|c| !folder_rims(c).is_empty()).expect("a case with RIMs in its folder")
}

#[test]
fn every_accept_case_report_chain_and_signature_verify() {
    for c in accept_cases() {
        let v = run(Tee::Nvgpu, &c.evidence_bytes(), &without_rims(&c), &TrustAnchors::pinned(), c.verify_at());
        let cl = claims(&v);
        assert_eq!(cl["tee"], "nvgpu", "{}", c.id);
        assert_eq!(cl["debug"], false);
        assert_eq!(cl["revocation_checked"], false);
        assert_eq!(cl["rim_appraisal"], "none");
        for k in ["nonce", "driver_version", "vbios_version"] {
            assert!(cl[k].is_string(), "{}: claim {k} missing", c.id);
        }
        assert_eq!(cl["measurements"].as_object().map(|m| m.len()), Some(64), "{}", c.id);
        for name in ["SPDM format", "Device certificate chain", "Device certificate chain validity", "SPDM signature"] {
            assert!(v.checks.iter().any(|k| k.name == name && k.ok), "{}: check {name} missing", c.id);
        }
        // The claimed nonce is the one in the request (bytes 4..36).
        assert_eq!(cl["nonce"], hex::encode(&c.evidence_bytes()[4..36]));
    }
}

#[test]
fn accept_cases_verify_with_their_own_endorsements() {
    for c in accept_cases() {
        claims(&run(Tee::Nvgpu, &c.evidence_bytes(), &c.endorsement_files(), &TrustAnchors::pinned(), c.verify_at()));
    }
}

/// The RIM of one component, supplied alone with the case: `(component,
/// all_matched)` as the verifier reports it.
fn alone(c: &Case, rim: &Endorsement) -> (String, bool) {
    let v = run(Tee::Nvgpu, &c.evidence_bytes(), &with(without_rims(c), vec![rim.clone()]), &TrustAnchors::pinned(), c.verify_at());
    let cl = claims(&v);
    let component = cl["rim_appraisal"].as_str().unwrap().to_string();
    let matched = cl["rims"][&component]["all_matched"] == true;
    (component, matched)
}

/// The published RIMs that match the full case's GPU in full (one driver
/// and one VBIOS RIM), chosen by the verifier's own comparison.
fn matching_rims(c: &Case) -> Vec<Endorsement> {
    let rims: Vec<Endorsement> = folder_rims(c).into_iter().filter(|r| alone(c, r).1).collect();
    let components: Vec<String> = rims.iter().map(|r| alone(c, r).0).collect();
    assert_eq!(components.len(), 2, "one matching RIM per component: {components:?}");
    assert_ne!(components[0], components[1]);
    rims
}

#[test]
fn full_case_matches_driver_and_vbios_rims_on_every_index() {
    let c = full_case();
    let e = with(without_rims(&c), matching_rims(&c));
    let v = run(Tee::Nvgpu, &c.evidence_bytes(), &e, &TrustAnchors::pinned(), c.verify_at());
    let cl = claims(&v);
    assert_eq!(cl["rim_appraisal"], "driver+vbios");
    assert_eq!(cl["dbgstat"], "disabled");
    for k in ["driver", "vbios"] {
        let r = &cl["rims"][k];
        assert_eq!(r["all_matched"], true, "{k}: {r}");
        assert_eq!(r["mismatched"].as_array().map(Vec::len), Some(0), "{k}");
        assert!(r["matched"].as_array().map(Vec::len).unwrap_or(0) >= 8, "{k}: {r}");
        assert!(v.checks.iter().any(|x| x.ok && x.name == format!("RIM measurements ({k})")));
        assert!(v.checks.iter().any(|x| x.ok && x.name == format!("RIM signature ({k})")));
        assert!(v.checks.iter().any(|x| x.ok && x.name == format!("RIM certificate chain ({k})")));
    }
    // Together the two RIMs cover every index they mark active, and every
    // matched index holds the value the report carries.
    let matched: Vec<u64> = ["driver", "vbios"]
        .iter()
        .flat_map(|k| cl["rims"][*k]["matched"].as_array().cloned().unwrap_or_default())
        .filter_map(|x| x.as_u64())
        .collect();
    for i in matched {
        assert!(cl["measurements"][i.to_string()].is_string());
    }
}

/// A RIM that applies to this GPU but whose golden values differ is not a
/// forgery (the evidence and the RIM are both authentic): the mismatch is
/// reported, index by index, as `rim_status: "mismatch"` with a failed
/// "RIM measurements (…)" check, and the appraisal policy refuses it — the
/// same split as an out-of-date TCB. (NVIDIA's PROD VBIOS RIM, supplied by
/// the `nvgpu-h100-2023` case, matches 8 of the sample report's 12 VBIOS
/// measurements; the test RIMs NVIDIA published for it match all.) One RIM
/// alone is never a `match`: the other component was not appraised.
#[test]
fn an_applicable_rim_that_does_not_match_is_reported_by_name() {
    let (mut mismatched, mut matched) = (0, 0);
    for c in accept_cases() {
        for rim in folder_rims(&c) {
            let e = with(without_rims(&c), vec![rim.clone()]);
            let v = run(Tee::Nvgpu, &c.evidence_bytes(), &e, &TrustAnchors::pinned(), c.verify_at());
            let cl = claims(&v);
            let component = cl["rim_appraisal"].as_str().unwrap();
            assert!(component == "driver" || component == "vbios", "{}: RIM was not applied ({component})", rim.name);
            let other = if component == "driver" { "vbios" } else { "driver" };
            let failed: Vec<_> = v.checks.iter().filter(|k| !k.ok).collect();
            let missing: Vec<_> = failed.iter().filter(|k| k.name == format!("RIM measurements ({other})")).collect();
            assert_eq!(missing.len(), 1, "{}: {failed:?}", rim.name);
            assert!(missing[0].detail.contains("not appraised") && missing[0].detail.contains("NV_GPU_"), "{missing:?}");
            assert_eq!(cl["dbgstat"], "unknown");
            match cl["rim_status"].as_str() {
                Some("not_appraised") => {
                    matched += 1;
                    assert_eq!(cl["rims"][component]["all_matched"], true);
                    assert_eq!(failed.len(), 1, "{}: {failed:?}", rim.name);
                }
                Some("mismatch") => {
                    mismatched += 1;
                    assert_eq!(failed.len(), 2, "{failed:?}");
                    let differ: Vec<_> = failed.iter().filter(|k| k.name == format!("RIM measurements ({component})")).collect();
                    assert!(differ.len() == 1 && differ[0].detail.contains("differ"), "{failed:?}");
                }
                other => panic!("{}: rim_status {other:?}", rim.name),
            }
        }
    }
    assert!(mismatched >= 1 && matched >= 2, "mismatched {mismatched}, matched {matched}");
}

/// Withholding the VBIOS RIM that does not match (the attack of issue 13):
/// the driver RIM alone matches, but the GPU is `not_appraised`, never a
/// `match`, and `dbgstat` is not `disabled`.
#[test]
fn a_withheld_rim_is_not_appraised_never_a_match() {
    let c = full_case();
    for keep in ["driver", "vbios"] {
        let rims: Vec<Endorsement> = matching_rims(&c).into_iter().filter(|r| alone(&c, r).0 == keep).collect();
        let v = run(Tee::Nvgpu, &c.evidence_bytes(), &with(without_rims(&c), rims), &TrustAnchors::pinned(), c.verify_at());
        let cl = claims(&v);
        assert_eq!(cl["rim_appraisal"], keep);
        assert_eq!(cl["rim_status"], "not_appraised", "{keep} alone");
        assert_eq!(cl["dbgstat"], "unknown");
        assert_eq!(cl["rims"][keep]["all_matched"], true);
    }
    // The case as published (the driver RIM and the PROD VBIOS RIM) is a
    // mismatch; without its VBIOS RIM it is still not a match.
    let published = c.endorsement_files();
    let cl = claims(&run(Tee::Nvgpu, &c.evidence_bytes(), &published, &TrustAnchors::pinned(), c.verify_at())).clone();
    assert_eq!((cl["rim_appraisal"].as_str(), cl["rim_status"].as_str()), (Some("driver+vbios"), Some("mismatch")));
    let driver_only: Vec<Endorsement> = published.into_iter().filter(|e| !is_xml(e) || alone(&c, e).0 == "driver").collect();
    let cl = claims(&run(Tee::Nvgpu, &c.evidence_bytes(), &driver_only, &TrustAnchors::pinned(), c.verify_at())).clone();
    assert_eq!((cl["rim_appraisal"].as_str(), cl["rim_status"].as_str()), (Some("driver"), Some("not_appraised")));
}

/// NVIDIA signed a production and a test RIM of the same VBIOS version
/// (same tagId, product and colloquialVersion) with different golden
/// values; which one the evidence's id names is not in their signed
/// content, so supplying both is refused rather than matched against the
/// one that suits the GPU.
#[test]
fn rims_of_one_component_that_disagree_are_refused() {
    let c = full_case();
    let vbios: Vec<Endorsement> = folder_rims(&c).into_iter().filter(|r| alone(&c, r).0 == "vbios").collect();
    assert!(vbios.len() >= 2, "the published VBIOS RIMs");
    assert!(vbios.iter().any(|r| alone(&c, r).1) && vbios.iter().any(|r| !alone(&c, r).1));
    for order in [vbios.clone(), vbios.iter().rev().cloned().collect()] {
        let v = run(Tee::Nvgpu, &c.evidence_bytes(), &with(without_rims(&c), order), &TrustAnchors::pinned(), c.verify_at());
        assert_eq!(failed_check(&v), "RIM conflict (vbios)");
        let detail = &v.checks.last().unwrap().detail;
        assert!(detail.contains("NV_GPU_VBIOS_1010_0200_882_96005E0001") && detail.contains("[1, 2, 3, 9]"), "{detail}");
    }
    // Every published RIM at once: the same refusal.
    let v = run(Tee::Nvgpu, &c.evidence_bytes(), &with(without_rims(&c), folder_rims(&c)), &TrustAnchors::pinned(), c.verify_at());
    assert_eq!(failed_check(&v), "RIM conflict (vbios)");
    // The same RIM twice (or re-signed with the same values) agrees with itself.
    let twice = with(matching_rims(&c), matching_rims(&c));
    let v = run(Tee::Nvgpu, &c.evidence_bytes(), &with(without_rims(&c), twice), &TrustAnchors::pinned(), c.verify_at());
    assert_eq!(claims(&v)["rim_status"], "match");
}

/// The ids the evidence names are NVIDIA's RIM service ids, built from the
/// signed report (nvtrust `get_driver_rim_file_id` / `get_vbios_rim_file_id`).
#[test]
fn the_evidence_names_its_rim_ids() {
    let c = full_case();
    let v = run(Tee::Nvgpu, &c.evidence_bytes(), &with(without_rims(&c), matching_rims(&c)), &TrustAnchors::pinned(), c.verify_at());
    let cl = claims(&v);
    assert_eq!(cl["rim_ids"]["driver"], "NV_GPU_DRIVER_GH100_545.00");
    assert_eq!(cl["rim_ids"]["vbios"], "NV_GPU_VBIOS_1010_0200_882_96005E0001");
    assert_eq!(cl["rims"]["vbios"]["rim_id"], "NV_GPU_VBIOS_1010_0200_882_96005E0001");
    assert_eq!(cl["arch"], "HOPPER");
}

#[test]
fn rims_for_other_versions_are_authenticated_but_not_applied() {
    let full = full_case();
    for c in accept_cases().into_iter().filter(|c| folder_rims(c).is_empty()) {
        let e = with(without_rims(&c), with(folder_rims(&full), without_rims(&full)));
        let v = run(Tee::Nvgpu, &c.evidence_bytes(), &e, &TrustAnchors::pinned(), c.verify_at().min(full.verify_at()));
        let cl = claims(&v);
        assert_eq!(cl["rim_appraisal"], "none");
        assert_eq!(cl["rims_ignored"].as_array().map(Vec::len), Some(folder_rims(&full).len()));
    }
}

#[test]
fn refused_after_the_rim_signer_expires() {
    let c = full_case();
    let e = with(without_rims(&c), folder_rims(&c));
    let v = run(Tee::Nvgpu, &c.evidence_bytes(), &e, &TrustAnchors::pinned(), c.valid_to() + 3600);
    let check = failed_check(&v);
    assert!(check.starts_with("RIM certificate chain (") && check.ends_with("validity"), "{check}");
}

#[test]
fn an_expired_copy_beside_a_valid_rim_is_not_an_error() {
    use cachet_verify::nvgpu::rim;
    use cachet_verify::x509::{parse_cert, validity_window};
    let c = full_case();
    let rims = folder_rims(&c);
    // The first instant at which one of the RIMs' signers has expired (an
    // expired RIM is set aside, so it conflicts with nothing).
    let first_expiry = rims
        .iter()
        .filter_map(|e| rim::parse(&e.bytes).ok())
        .filter_map(|r| parse_cert(&r.certs[0]).ok().map(|p| validity_window(&p).1))
        .min()
        .unwrap();
    let e = with(without_rims(&c), rims);
    let v = run(Tee::Nvgpu, &c.evidence_bytes(), &e, &TrustAnchors::pinned(), first_expiry + 1);
    let cl = claims(&v);
    assert_eq!(cl["rim_appraisal"], "driver+vbios");
    let ignored = cl["rims_ignored"].as_array().unwrap();
    assert!(ignored.iter().any(|i| i["reason"].as_str().unwrap_or("").contains("not valid at this time")), "{ignored:?}");
}

#[test]
fn refused_before_the_device_chain_is_valid() {
    use cachet_verify::x509::{certs_from_pem, parse_cert, validity_window};
    for c in accept_cases() {
        let e = without_rims(&c);
        // One second before the youngest certificate of the device chain
        // (the endorsement holding several certificates) becomes valid.
        let latest_start = e
            .iter()
            .map(|x| certs_from_pem(&x.bytes))
            .filter(|certs| certs.len() > 1)
            .flatten()
            .filter_map(|d| parse_cert(&d).ok().map(|p| validity_window(&p).0))
            .max()
            .unwrap();
        let v = run(Tee::Nvgpu, &c.evidence_bytes(), &e, &TrustAnchors::pinned(), latest_start - 1);
        assert_eq!(failed_check(&v), "Device certificate chain validity", "{}", c.id);
    }
}

#[test]
fn case_window_ends_are_enforced_where_a_certificate_ends_them() {
    // Every accept case verifies at verify_at with its own endorsements plus
    // the RIMs published beside it, and is refused one hour after valid_to
    // whenever a certificate it depends on has expired by then.
    for c in accept_cases() {
        let e = with(without_rims(&c), folder_rims(&c));
        let later = run(Tee::Nvgpu, &c.evidence_bytes(), &e, &TrustAnchors::pinned(), c.valid_to() + 3600);
        if !folder_rims(&c).is_empty() {
            assert!(later.result.is_err(), "{} verified after its window", c.id);
        }
    }
}

#[test]
fn one_bit_flips_in_the_signed_region_or_signature_are_refused() {
    for c in accept_cases() {
        let ev = c.evidence_bytes();
        let endorsements = without_rims(&c);
        let record_len = usize::from(ev[REQ + 5]) | usize::from(ev[REQ + 6]) << 8 | usize::from(ev[REQ + 7]) << 16;
        let at = REQ + 8 + record_len + 32;
        let opaque_len = usize::from(ev[at]) | usize::from(ev[at + 1]) << 8;
        let sig = at + 2 + opaque_len;
        assert_eq!(sig + 96, ev.len(), "{}", c.id);
        let positions: Vec<usize> = (0..sig).step_by(61).chain([0, 1, 4, 36, REQ, REQ + 4, at, sig - 1]).chain(sig..sig + 96).collect();
        for i in positions {
            let mut m = ev.clone();
            m[i] ^= 1 << (i % 8);
            let v = run(Tee::Nvgpu, &m, &endorsements, &TrustAnchors::pinned(), c.verify_at());
            let check = failed_check(&v);
            let expected: &[&str] =
                if i >= sig { &["SPDM signature"] } else { &["SPDM format", "SPDM signature", "Device certificate FWID"] };
            assert!(expected.contains(&check.as_str()), "{}: flip at {i} failed {check}", c.id);
        }
    }
}

#[test]
fn only_zero_padding_is_tolerated_after_the_signature() {
    let c = &accept_cases()[0];
    let e = without_rims(c);
    let mut ev = c.evidence_bytes();
    ev.push(0);
    let v = run(Tee::Nvgpu, &ev, &e, &TrustAnchors::pinned(), c.verify_at());
    assert!(v.verified(), "{:?}", v.result);
    *ev.last_mut().unwrap() = 7;
    assert_eq!(failed_check(&run(Tee::Nvgpu, &ev, &e, &TrustAnchors::pinned(), c.verify_at())), "SPDM format");
}

#[test]
fn nonce_is_checked_when_expected() {
    let c = &accept_cases()[0];
    let ev = c.evidence_bytes();
    let e = without_rims(c);
    let good = ev[4..36].to_vec();
    let v = verify_nonce(c, &ev, &e, Some(&good));
    assert!(v.verified() && v.checks.iter().any(|k| k.name == "Nonce" && k.ok));
    let mut bad = good.clone();
    bad[0] ^= 1;
    assert_eq!(failed_check(&verify_nonce(c, &ev, &e, Some(&bad))), "Nonce");
    assert_eq!(failed_check(&verify_nonce(c, &ev, &e, Some(&good[..16]))), "Nonce");
}

#[test]
fn wrong_device_root_is_refused() {
    for c in accept_cases() {
        let other = TrustAnchors::pinned().of_kind(AnchorKind::NvidiaRimRoot).next().unwrap().der.clone();
        let anchors = TrustAnchors::pinned().with_replaced(AnchorKind::NvidiaDeviceIdentity, other);
        let v = run(Tee::Nvgpu, &c.evidence_bytes(), &without_rims(&c), &anchors, c.verify_at());
        assert_eq!(failed_check(&v), "Device certificate chain", "{}", c.id);
        let v = run(Tee::Nvgpu, &c.evidence_bytes(), &without_rims(&c), &TrustAnchors::empty(), c.verify_at());
        assert_eq!(failed_check(&v), "Device certificate chain", "{}", c.id);
    }
}

#[test]
fn wrong_rim_root_is_refused() {
    let c = full_case();
    let other = TrustAnchors::pinned().of_kind(AnchorKind::NvidiaDeviceIdentity).next().unwrap().der.clone();
    let anchors = TrustAnchors::pinned().with_replaced(AnchorKind::NvidiaRimRoot, other);
    let e = with(without_rims(&c), folder_rims(&c));
    let check = failed_check(&run(Tee::Nvgpu, &c.evidence_bytes(), &e, &anchors, c.verify_at()));
    assert!(check.starts_with("RIM certificate chain ("), "{check}");
}

#[test]
fn missing_device_chain_is_refused() {
    let c = &accept_cases()[0];
    let v = run(Tee::Nvgpu, &c.evidence_bytes(), &[], &TrustAnchors::pinned(), c.verify_at());
    assert_eq!(failed_check(&v), "Device certificate chain");
}

/// Replace the first occurrence of `from` in a RIM's text.
fn alter(rim: &Endorsement, from: &str, to: &str) -> Endorsement {
    let text = String::from_utf8(rim.bytes.clone()).unwrap();
    assert!(text.contains(from), "{from} not in {}", rim.name);
    Endorsement { name: rim.name.clone(), bytes: text.replacen(from, to, 1).into_bytes() }
}

#[test]
fn a_rim_altered_by_one_character_is_refused() {
    let c = full_case();
    for rim in folder_rims(&c) {
        let text = String::from_utf8(rim.bytes.clone()).unwrap();
        // An active golden value: change its first hex digit.
        let at = text.find("active=\"True\"").unwrap();
        let h = at + text[at..].find("Hash0=\"").unwrap() + 7;
        let digit = &text[h..h + 1];
        let swapped = if digit == "0" { "1" } else { "0" };
        let mut altered = text.clone();
        altered.replace_range(h..h + 1, swapped);
        // The version, the signature value, a character of the signed digest
        // and of whitespace between elements.
        let dv = text.find("<ds:DigestValue>").unwrap() + "<ds:DigestValue>".len();
        let mut altered_digest = text.clone();
        let d = &text[dv..dv + 1];
        altered_digest.replace_range(dv..dv + 1, if d == "A" { "B" } else { "A" });
        let variants = vec![
            Endorsement { name: rim.name.clone(), bytes: altered.into_bytes() },
            Endorsement { name: rim.name.clone(), bytes: altered_digest.into_bytes() },
            alter(&rim, "colloquialVersion=\"", "colloquialVersion=\" "),
            alter(&rim, "<ds:SignatureValue>", "<ds:SignatureValue>A"),
            alter(&rim, "    <ns0:Payload", "   <ns0:Payload"),
            alter(&rim, "active=\"False\"", "active=\"True\""),
        ];
        for (n, bad) in variants.into_iter().enumerate() {
            let e = with(without_rims(&c), vec![bad]);
            let v = run(Tee::Nvgpu, &c.evidence_bytes(), &e, &TrustAnchors::pinned(), c.verify_at());
            let check = failed_check(&v);
            assert!(check.starts_with("RIM signature (") || check == "RIM format", "{} variant {n}: {check}", rim.name);
        }
    }
}

#[test]
fn a_rim_without_its_signature_is_refused() {
    let c = full_case();
    let rim = folder_rims(&c).remove(0);
    let text = String::from_utf8(rim.bytes.clone()).unwrap();
    let start = text.find("<ds:Signature").unwrap();
    let end = text.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let stripped = format!("{}{}", &text[..start], &text[end..]);
    let e = with(without_rims(&c), vec![Endorsement { name: rim.name, bytes: stripped.into_bytes() }]);
    assert_eq!(failed_check(&run(Tee::Nvgpu, &c.evidence_bytes(), &e, &TrustAnchors::pinned(), c.verify_at())), "RIM format");
}

/// The 8-GPU evidence set NVIDIA's PPCIe verifier tests use (no case in
/// cases.json carries a JSON set, so it is named here).
fn ppcie_set() -> Vec<u8> {
    std::fs::read(vectors_dir().join("nvidia/nvtrust-head-partial/ppcie_gpu_evidence.json")).unwrap()
}

fn ppcie_at() -> i64 {
    common::ts("2026-01-30T12:00:00Z")
}

#[test]
fn multi_gpu_json_set_verifies_each_gpu_with_its_own_chain() {
    let v = run(Tee::Nvgpu, &ppcie_set(), &[], &TrustAnchors::pinned(), ppcie_at());
    let cl = claims(&v);
    assert_eq!(cl["gpu_count"], 8);
    let gpus = cl["gpus"].as_array().unwrap();
    assert!(gpus.iter().all(|g| g["device_cert"]["fwid"] == g["device_cert"]["report_fwid"] && g["device_cert"]["fwid"].is_string()));
    assert!(v.checks.iter().any(|k| k.name == "GPU 7: SPDM signature" && k.ok));
    // The architecture is the signed chain's; the SDK's format version is
    // unsigned and not a claim.
    assert!(gpus.iter().all(|g| g["arch"] == "HOPPER" && g.get("evidence_version").is_none()), "{gpus:?}");
    assert!(v.checks.iter().any(|k| k.name == "GPU 7: Distinct devices" && k.ok));
}

/// The NVSwitch evidence NVIDIA's PPCIe verifier collects beside the GPUs'.
fn switch_set() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(vectors_dir().join("nvidia/nvtrust-head-partial/ppcie_switch_evidence.json")).unwrap()).unwrap()
}

#[test]
fn an_nvswitch_is_never_counted_as_a_gpu() {
    let switches = switch_set();
    // As sent (arch "LS10"), relabelled "HOPPER", alone or spliced into the
    // GPU list: refused, by what its signed device chain says.
    let bytes = serde_json::to_vec(&switches).unwrap();
    assert_eq!(failed_check(&run(Tee::Nvgpu, &bytes, &[], &TrustAnchors::pinned(), ppcie_at())), "GPU 0: Evidence format");
    let mut relabelled = switches.clone();
    for e in relabelled.as_array_mut().unwrap() {
        e["arch"] = serde_json::json!("HOPPER");
    }
    let v = run(Tee::Nvgpu, &serde_json::to_vec(&relabelled).unwrap(), &[], &TrustAnchors::pinned(), ppcie_at());
    assert_eq!(failed_check(&v), "GPU 0: Device architecture");
    assert!(v.checks.last().unwrap().detail.contains("NVSwitch"), "{:?}", v.checks.last());
    let mut mixed: serde_json::Value = serde_json::from_slice(&ppcie_set()).unwrap();
    mixed.as_array_mut().unwrap().insert(2, relabelled[0].clone());
    let v = run(Tee::Nvgpu, &serde_json::to_vec(&mixed).unwrap(), &[], &TrustAnchors::pinned(), ppcie_at());
    assert_eq!(failed_check(&v), "GPU 2: Device architecture");
    // One switch report on its own (not a JSON set) is not GPU evidence either.
    let report = cachet_verify::encoding::decode_base64(switches[0]["evidence"].as_str().unwrap()).unwrap();
    let chain = cachet_verify::encoding::decode_base64(switches[0]["certificate"].as_str().unwrap()).unwrap();
    let e = vec![Endorsement { name: "switch chain".into(), bytes: chain }];
    assert_eq!(failed_check(&run(Tee::Nvgpu, &report, &e, &TrustAnchors::pinned(), ppcie_at())), "Device architecture");
}

#[test]
fn one_gpu_twice_is_refused() {
    let set: serde_json::Value = serde_json::from_slice(&ppcie_set()).unwrap();
    let first = set[0].clone();
    let eight_times = serde_json::Value::Array(vec![first; 8]);
    let v = run(Tee::Nvgpu, &serde_json::to_vec(&eight_times).unwrap(), &[], &TrustAnchors::pinned(), ppcie_at());
    assert_eq!(failed_check(&v), "GPU 1: Distinct devices");
    let mut repeated = set.clone();
    repeated.as_array_mut().unwrap().push(set[3].clone());
    let v = run(Tee::Nvgpu, &serde_json::to_vec(&repeated).unwrap(), &[], &TrustAnchors::pinned(), ppcie_at());
    assert_eq!(failed_check(&v), "GPU 8: Distinct devices");
    assert!(v.checks.last().unwrap().detail.contains("GPU 3"), "{:?}", v.checks.last());
}

/// 24 000 certificates in one request (the device chain repeated) are
/// refused by the pool limit before any chain building or signature work.
#[test]
fn an_oversized_certificate_pool_is_refused() {
    let c = full_case();
    let chain = without_rims(&c).into_iter().map(|e| e.bytes).max_by_key(|b| cachet_verify::x509::certs_from_pem(b).len()).unwrap();
    let per = cachet_verify::x509::certs_from_pem(&chain).len();
    let big = chain.repeat(24_000 / per);
    assert_eq!(cachet_verify::x509::certs_from_pem(&big).len(), 24_000);
    let e = vec![Endorsement { name: "pool.pem".into(), bytes: big }];
    let v = run(Tee::Nvgpu, &c.evidence_bytes(), &e, &TrustAnchors::pinned(), c.verify_at());
    assert_eq!(failed_check(&v), "Endorsement limits");
    assert!(!v.checks.iter().any(|k| k.name.starts_with("Device certificate chain")), "refused before chain building");
    // As many separate endorsements, and as a JSON set's extra pool: the same.
    let many: Vec<Endorsement> = (0..cachet_verify::nvgpu::MAX_POOL_CERTS + 1)
        .map(|i| Endorsement { name: format!("c{i}.pem"), bytes: cachet_verify::x509::certs_from_pem(&chain)[0].clone() })
        .collect();
    assert_eq!(failed_check(&run(Tee::Nvgpu, &c.evidence_bytes(), &many, &TrustAnchors::pinned(), c.verify_at())), "Endorsement limits");
    assert_eq!(failed_check(&run(Tee::Nvgpu, &ppcie_set(), &many, &TrustAnchors::pinned(), ppcie_at())), "Endorsement limits");
    // Too many RIMs.
    let rims: Vec<Endorsement> = (0..=cachet_verify::nvgpu::MAX_RIMS).map(|_| folder_rims(&c).remove(0)).collect();
    assert_eq!(
        failed_check(&run(Tee::Nvgpu, &c.evidence_bytes(), &with(without_rims(&c), rims), &TrustAnchors::pinned(), c.verify_at())),
        "Endorsement limits"
    );
}

/// Signature work is bounded per request: a verification that needs more
/// than the budget left is refused by name (here a budget smaller than
/// eight GPUs' chains; an enclosing scope never widens the verifier's own).
#[test]
fn signature_work_beyond_the_budget_is_refused_by_name() {
    let (v, exhausted) = cachet_verify::budget::scoped(20, || run(Tee::Nvgpu, &ppcie_set(), &[], &TrustAnchors::pinned(), ppcie_at()));
    assert!(exhausted);
    assert_eq!(failed_check(&v), "Signature budget");
    let (v, exhausted) = cachet_verify::budget::scoped(cachet_verify::nvgpu::SIGNATURE_BUDGET, || {
        run(Tee::Nvgpu, &ppcie_set(), &[], &TrustAnchors::pinned(), ppcie_at())
    });
    assert!(v.verified() && !exhausted, "{:?}", v.result);
}

#[test]
fn multi_gpu_json_set_tampering_is_refused() {
    let text = String::from_utf8(ppcie_set()).unwrap();
    let mut set: serde_json::Value = serde_json::from_str(&text).unwrap();
    let tamper = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut s = set.clone();
        f(&mut s);
        let bytes = serde_json::to_vec(&s).unwrap();
        failed_check(&run(Tee::Nvgpu, &bytes, &[], &TrustAnchors::pinned(), ppcie_at()))
    };
    assert_eq!(tamper(&|s| s[3]["nonce"] = serde_json::json!("00".repeat(32))), "GPU 3: Evidence nonce");
    assert_eq!(tamper(&|s| s[1]["driver_version"] = serde_json::json!("590.13")), "GPU 1: Evidence versions");
    assert_eq!(tamper(&|s| s[0]["arch"] = serde_json::json!("HOPPEZ")), "GPU 0: Evidence format");
    assert_eq!(tamper(&|s| s[0]["arch"] = serde_json::json!("BLACKWELL")), "GPU 0: Device architecture");
    assert_eq!(tamper(&|s| s[0]["extra"] = serde_json::json!(1)), "Evidence format");
    // Another GPU's chain for this GPU's report.
    let other = set[1]["certificate"].clone();
    set[0]["certificate"] = other;
    let bytes = serde_json::to_vec(&set).unwrap();
    let check = failed_check(&run(Tee::Nvgpu, &bytes, &[], &TrustAnchors::pinned(), ppcie_at()));
    assert!(check == "GPU 0: Device certificate FWID" || check == "GPU 0: SPDM signature", "{check}");
}

#[test]
fn case_runner_agrees_with_direct_runs() {
    // run_case uses exactly the case's endorsements; whatever the verdict,
    // a failure is always named.
    for c in nvgpu_cases() {
        let v = run_case(&c, c.verify_at());
        if let Err(e) = &v.result {
            assert!(v.checks.iter().any(|k| !k.ok && k.name == e.check), "{}: {e}", c.id);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let v = run(Tee::Nvgpu, &bytes, &[], &TrustAnchors::pinned(), 0);
        prop_assert!(!v.verified());
    }

    #[test]
    fn truncated_and_mutated_reports_never_panic_nor_verify(cut in 0usize..4200, pos in 0usize..4200, bit in 0u8..8) {
        let c = &accept_cases()[0];
        let ev = c.evidence_bytes();
        let e = without_rims(c);
        let cut = cut.min(ev.len().saturating_sub(1));
        let v = run(Tee::Nvgpu, &ev[..cut], &e, &TrustAnchors::pinned(), c.verify_at());
        prop_assert!(!v.verified());
        let mut m = ev.clone();
        let p = pos % m.len();
        m[p] ^= 1 << bit;
        let v = run(Tee::Nvgpu, &m, &e, &TrustAnchors::pinned(), c.verify_at());
        prop_assert!(!v.verified());
    }

    #[test]
    fn random_rims_and_json_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let c = &accept_cases()[0];
        let mut xml = b"<SoftwareIdentity xmlns=\"http://standards.iso.org/iso/19770/-2/2015/schema.xsd\">".to_vec();
        xml.extend(&bytes);
        let e = with(without_rims(c), vec![Endorsement { name: "random.swidtag".into(), bytes: xml }]);
        let v = run(Tee::Nvgpu, &c.evidence_bytes(), &e, &TrustAnchors::pinned(), c.verify_at());
        prop_assert!(!v.verified());
        let mut json = b"[{\"arch\":\"HOPPER\",\"evidence\":\"".to_vec();
        json.extend(&bytes);
        let _ = run(Tee::Nvgpu, &json, &[], &TrustAnchors::pinned(), 0);
    }
}
