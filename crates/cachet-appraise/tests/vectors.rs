//! Appraisal of real evidence: every verified case of the shared vectors,
//! with the default policy and with a policy requiring reference values.

mod common;

use cachet_appraise::defaults::{default_policy, default_policy_text, requiring_reference_values_text};
use cachet_appraise::provenance;
use cachet_appraise::{AppraisalInput, Policy, RefValue, ReferenceValues, Status};
use common::{pick_measurement, verified_cases};

fn refvals(name: &str, value: &str) -> ReferenceValues {
    let mut r = ReferenceValues::new();
    r.add_values(name, vec![RefValue::new(value).unwrap()]).unwrap();
    r
}

/// A different value of the same shape: one bit changed.
fn other_value(v: &str) -> String {
    let mut s = v.to_string();
    let last = s.pop().unwrap_or('0');
    s.push(if last == '0' { '1' } else { '0' });
    s
}

/// Whether every GPU of nvgpu claims matched both the driver and VBIOS RIMs.
fn rims_matched(claims: &serde_json::Value) -> bool {
    let gpus: Vec<&serde_json::Value> = match claims.get("gpus").and_then(|g| g.as_array()) {
        Some(list) => list.iter().collect(),
        None => vec![claims],
    };
    claims["tee"] == "nvgpu" && gpus.iter().all(|g| g["rim_appraisal"] == "driver+vbios" && g["rim_status"] == "match")
}

/// Whether some GPU's measurements differ from an applicable NVIDIA RIM.
fn rim_mismatch(claims: &serde_json::Value) -> bool {
    let gpus: Vec<&serde_json::Value> = match claims.get("gpus").and_then(|g| g.as_array()) {
        Some(list) => list.iter().collect(),
        None => vec![claims],
    };
    claims["tee"] == "nvgpu" && gpus.iter().any(|g| g["rim_status"] == "mismatch")
}

/// NVIDIA's PROD VBIOS RIM supplied with the `nvgpu-h100-2023` case differs
/// from the sample GPU at 4 of 12 indices: the verifier reports it
/// (`rim_status: "mismatch"`), and the default policy refuses it even when
/// the operator's own reference values match.
#[test]
fn a_gpu_that_differs_from_its_rim_is_refused_by_default() {
    let (cases, _) = verified_cases();
    let bad: Vec<_> = cases.iter().filter(|c| rim_mismatch(&c.claims)).collect();
    assert!(!bad.is_empty(), "the vectors hold a GPU report that differs from an applicable RIM");
    let p = default_policy("nvgpu").unwrap();
    for c in bad {
        let (name, value) = pick_measurement("nvgpu", &c.claims).unwrap();
        let a = p.evaluate(&AppraisalInput::new("nvgpu", c.claims.clone()), &refvals(&name, &value), c.at).unwrap();
        assert_eq!(a.status, Status::Contraindicated, "{}: {:#?}", c.id, a.reasons);
        assert_eq!(a.trustworthiness_vector.executables, Some(96));
        assert!(a.reasons.iter().any(|r| r.rule.starts_with("rim.gpu") && r.outcome == Status::Contraindicated));
    }
}

#[test]
fn default_policies_appraise_every_verified_case() {
    let (cases, missing) = verified_cases();
    eprintln!("{} verified cases; families not verifying yet: {missing:?}", cases.len());
    assert!(!cases.is_empty(), "no case verifies: nothing to appraise");
    for c in &cases {
        assert!(default_policy_text(&c.tee).is_some(), "{}: no default policy for {}", c.id, c.tee);
        let p = default_policy(&c.tee).unwrap();
        let a = p.evaluate(&AppraisalInput::new(&c.tee, c.claims.clone()), &ReferenceValues::new(), c.at).unwrap();
        eprintln!("{:<24} {:<16} {:?}", c.id, a.status.as_str(), a.trustworthiness_vector);
        assert!(!a.reasons.is_empty(), "{}: every appraisal is explained", c.id);
        assert_eq!(a.policy_hash, p.hash());
        let debug = c.claims.get("debug").and_then(|d| d.as_bool()).unwrap_or(false);
        let tcb = c.claims.get("tcb_status").and_then(|t| t.as_str()).unwrap_or("");
        if rim_mismatch(&c.claims) {
            assert_eq!(a.status, Status::Contraindicated, "{}: a RIM mismatch is refused", c.id);
        } else if debug {
            assert_eq!(a.status, Status::Contraindicated, "{}: debug evidence is refused", c.id);
            assert!(a.reasons.iter().any(|r| r.rule == "debug" && r.outcome == Status::Contraindicated), "{}", c.id);
        } else if tcb == "UpToDate" {
            // Current hardware, but no measurement compared: a warning that
            // says so; with its measurement allowed, affirming.
            assert_eq!(a.status, Status::Warning, "{}: {:#?}", c.id, a.reasons);
            assert!(
                a.reasons.iter().any(|r| r.rule == "reference_values"
                    && r.outcome == Status::Warning
                    && r.detail.contains("measurements not appraised")),
                "{}: {:#?}",
                c.id,
                a.reasons
            );
            let (name, value) = pick_measurement(&c.tee, &c.claims).unwrap();
            let a = p.evaluate(&AppraisalInput::new(&c.tee, c.claims.clone()), &refvals(&name, &value), c.at).unwrap();
            assert_eq!(a.status, Status::Affirming, "{}: {:#?}", c.id, a.reasons);
        } else if tcb.contains("OutOfDate") || tcb.contains("Needed") {
            assert_eq!(a.status, Status::Warning, "{}: {:#?}", c.id, a.reasons);
        } else if c.tee != "sim" {
            assert_ne!(a.status, Status::Contraindicated, "{}: {:#?}", c.id, a.reasons);
        }
    }
}

#[test]
fn a_debug_nitro_document_is_refused_by_default() {
    let (cases, missing) = verified_cases();
    if missing.iter().any(|t| t == "nitro") {
        eprintln!("nitro verifier not ready: skipped");
        return;
    }
    let debug: Vec<_> = cases.iter().filter(|c| c.tee == "nitro" && c.claims["debug"] == true).collect();
    assert!(!debug.is_empty(), "the vectors hold a debug-mode Nitro document");
    let p = default_policy("nitro").unwrap();
    for c in debug {
        // Even with every PCR allowed, debug mode is refused.
        let (name, value) = pick_measurement("nitro", &c.claims).unwrap();
        let a = p.evaluate(&AppraisalInput::new("nitro", c.claims.clone()), &refvals(&name, &value), c.at).unwrap();
        assert_eq!(a.status, Status::Contraindicated, "{}", c.id);
        assert_eq!(a.trustworthiness_vector.configuration, Some(96));
    }
}

#[test]
fn an_out_of_date_tdx_quote_is_a_warning() {
    let (cases, missing) = verified_cases();
    if missing.iter().any(|t| t == "tdx") {
        eprintln!("tdx verifier not ready: skipped");
        return;
    }
    let outdated: Vec<_> = cases.iter().filter(|c| c.tee == "tdx" && c.claims["tcb_status"] == "OutOfDate").collect();
    assert!(!outdated.is_empty(), "the vectors hold OutOfDate TDX quotes");
    let p = default_policy("tdx").unwrap();
    for c in outdated {
        let (name, value) = pick_measurement("tdx", &c.claims).unwrap();
        let a = p.evaluate(&AppraisalInput::new("tdx", c.claims.clone()), &refvals(&name, &value), c.at).unwrap();
        assert_eq!(a.status, Status::Warning, "{}: {:#?}", c.id, a.reasons);
        assert_eq!(a.trustworthiness_vector.hardware, Some(32));
        assert_eq!(a.trustworthiness_vector.executables, Some(2), "the measurement itself matched");
        assert!(a.reasons.iter().any(|r| r.rule == "tcb_status" && r.outcome == Status::Warning && r.detail.contains("INTEL-SA-")));
    }
}

#[test]
fn reference_values_decide_the_measurements_of_every_family() {
    let (cases, _) = verified_cases();
    // (GPUs that differ from their RIM are refused whatever the reference
    // values say: a_gpu_that_differs_from_its_rim_is_refused_by_default.)
    for c in cases.iter().filter(|c| c.claims.get("debug").and_then(|d| d.as_bool()) != Some(true) && !rim_mismatch(&c.claims)) {
        let Some((name, value)) = pick_measurement(&c.tee, &c.claims) else {
            panic!("{}: no measurement found in the claims", c.id);
        };
        let input = AppraisalInput::new(&c.tee, c.claims.clone());
        let default = default_policy(&c.tee).unwrap();
        let strict = Policy::validate("strict", &requiring_reference_values_text(&c.tee).unwrap()).unwrap();
        // The status apart from the measurements (which, without reference
        // values, are "not appraised": a warning).
        let unappraised = default.evaluate(&input, &ReferenceValues::new(), c.at).unwrap();
        let base = unappraised
            .reasons
            .iter()
            .filter(|r| r.rule != "reference_values")
            .map(|r| r.outcome)
            .chain([unappraised.trustworthiness_vector.status()])
            .max()
            .unwrap_or(Status::None);

        // Matching: executables affirmed; the status is the hardware's (affirming when current).
        for p in [&default, &strict] {
            let a = p.evaluate(&input, &refvals(&name, &value), c.at).unwrap();
            assert_eq!(a.trustworthiness_vector.executables, Some(2), "{} {}: {:#?}", c.id, p.name(), a.reasons);
            assert_eq!(a.status, base.max(Status::Affirming), "{} {}", c.id, p.name());
            // A family-scoped set ("tdx.mr_td") is used before a plain one.
            let mut scoped = refvals(&name, &other_value(&value));
            scoped.add_values(&format!("{}.{name}", c.tee), vec![RefValue::new(&value).unwrap()]).unwrap();
            assert_eq!(p.evaluate(&input, &scoped, c.at).unwrap().trustworthiness_vector.executables, Some(2), "{}", c.id);
        }
        // Mismatching: a warning by default, refused by the requiring policy.
        let wrong = refvals(&name, &other_value(&value));
        let a = default.evaluate(&input, &wrong, c.at).unwrap();
        assert_eq!(a.trustworthiness_vector.executables, Some(33), "{}", c.id);
        assert!(a.status >= Status::Warning, "{}", c.id);
        let a = strict.evaluate(&input, &wrong, c.at).unwrap();
        assert_eq!(a.status, Status::Contraindicated, "{}: {:#?}", c.id, a.reasons);
        let rule = format!("reference_values.{name}");
        assert!(a.reasons.iter().any(|r| r.rule == rule && r.outcome == Status::Contraindicated), "{}: {:#?}", c.id, a.reasons);
        // No reference values at all: refused by the requiring policy —
        // except GPUs whose measurements matched NVIDIA's RIMs (the vendor's
        // reference values).
        let none = strict.evaluate(&input, &ReferenceValues::new(), c.at).unwrap();
        if rims_matched(&c.claims) {
            assert_eq!(none.trustworthiness_vector.executables, Some(2), "{}", c.id);
        } else {
            assert_eq!(none.status, Status::Contraindicated, "{}", c.id);
        }
    }
}

#[test]
fn an_expired_reference_value_no_longer_matches() {
    let (cases, _) = verified_cases();
    let Some(c) = cases.iter().find(|c| c.claims.get("debug").and_then(|d| d.as_bool()) != Some(true)) else {
        return;
    };
    let (name, value) = pick_measurement(&c.tee, &c.claims).unwrap();
    let mut v = RefValue::new(&value).unwrap();
    v.expires = Some(c.at + 60);
    let mut r = ReferenceValues::new();
    r.add_values(&name, vec![v]).unwrap();
    let p = default_policy(&c.tee).unwrap();
    let input = AppraisalInput::new(&c.tee, c.claims.clone());
    assert_eq!(p.evaluate(&input, &r, c.at).unwrap().trustworthiness_vector.executables, Some(2));
    assert_eq!(p.evaluate(&input, &r, c.at + 60).unwrap().trustworthiness_vector.executables, Some(33));
}

#[test]
fn in_toto_provenance_makes_a_matching_measurement_affirming() {
    let (cases, _) = verified_cases();
    // Prefer a current TDX quote (affirming hardware); else any evidence whose
    // default appraisal is affirming once its measurement is allowed.
    let pick = cases
        .iter()
        .filter(|c| c.claims.get("debug").and_then(|d| d.as_bool()) != Some(true))
        .filter(|c| {
            let p = default_policy(&c.tee).unwrap();
            let Some((name, value)) = pick_measurement(&c.tee, &c.claims) else {
                return false;
            };
            p.evaluate(&AppraisalInput::new(&c.tee, c.claims.clone()), &refvals(&name, &value), c.at).unwrap().status == Status::Affirming
        })
        .min_by_key(|c| if c.tee == "tdx" { 0 } else { 1 });
    let Some(c) = pick else { panic!("no verified case with an affirming platform") };
    let (name, value) = pick_measurement(&c.tee, &c.claims).unwrap();
    let alg = match value.len() {
        64 => "sha256",
        96 => "sha384",
        _ => "sha512",
    };
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "workload.img", "digest": {alg: value}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://example.com/build"}, "runDetails": {"builder": {"id": "https://ci.example.com/builder"}}}
    });
    let digests = provenance::subject_digests(statement.to_string().as_bytes()).unwrap();
    let values = provenance::to_ref_values(&digests, None, "provenance.json", None).unwrap();
    let mut r = ReferenceValues::new();
    r.add_values(&name, values).unwrap();
    assert_eq!(r.sets()[&name].values[0].builder_id.as_deref(), Some("https://ci.example.com/builder"));
    let input = AppraisalInput::new(&c.tee, c.claims.clone());
    let strict = Policy::validate("strict", &requiring_reference_values_text(&c.tee).unwrap()).unwrap();
    let a = strict.evaluate(&input, &r, c.at).unwrap();
    assert_eq!(a.status, Status::Affirming, "{}: {:#?}", c.id, a.reasons);
    assert_eq!(a.trustworthiness_vector.executables, Some(2));
    // The same provenance for another artefact does not match.
    let other = statement.to_string().replace(&value, &other_value(&value));
    let digests = provenance::subject_digests(other.as_bytes()).unwrap();
    let mut r = ReferenceValues::new();
    r.add_values(&name, provenance::to_ref_values(&digests, None, "other.json", None).unwrap()).unwrap();
    assert_eq!(strict.evaluate(&input, &r, c.at).unwrap().status, Status::Contraindicated);
}

/// A GPU version as NVIDIA writes it ("96.00.5E.00.01", upper case) matches
/// the claim, which nvidia-smi and the evidence spell in lower case.
#[test]
fn nvidia_versions_match_whatever_their_case() {
    let p = default_policy("nvgpu").unwrap();
    let mut seen = 0;
    for c in verified_cases().0.into_iter().filter(|c| c.tee == "nvgpu") {
        let claim = c.claims.get("vbios_version").or_else(|| c.claims["gpus"].get(0).and_then(|g| g.get("vbios_version")));
        let Some(vbios) = claim.and_then(serde_json::Value::as_str).map(str::to_string) else { continue };
        if !vbios.chars().any(|ch| ch.is_ascii_alphabetic()) {
            continue;
        }
        for written in [vbios.to_uppercase(), vbios.to_lowercase()] {
            let a = p.evaluate(&AppraisalInput::new("nvgpu", c.claims.clone()), &refvals("nvgpu.vbios_version", &written), c.at).unwrap();
            assert!(
                a.reasons.iter().any(|r| r.rule == "reference_values.vbios_version" && r.outcome == Status::Affirming),
                "{}: {written} must match: {:?}",
                c.id,
                a.reasons
            );
        }
        let a = p
            .evaluate(
                &AppraisalInput::new("nvgpu", c.claims.clone()),
                &refvals("nvgpu.vbios_version", &other_value(&vbios.to_uppercase())),
                c.at,
            )
            .unwrap();
        assert!(a.reasons.iter().any(|r| r.rule == "reference_values.vbios_version" && r.outcome != Status::Affirming), "{:?}", a.reasons);
        seen += 1;
    }
    assert!(seen > 0, "an NVIDIA case whose VBIOS version has letters");
}
