//! The default appraisal policies shipped with Cachet, one per TEE family.
//!
//! Strict by default: debug refused (contraindicated); TCB status
//! `UpToDate` affirming, the `*Needed` / `OutOfDate` statuses a warning,
//! `Revoked` contraindicated; measurements affirming only when they match a
//! reference value, a value outside its set a warning, and no claim at all
//! when no reference set is configured. The Rego sources live in
//! `crates/cachet-appraise/policies/` and are readable on their own.

use crate::policy::{Policy, PolicyError};

/// The families with a default policy, and each policy's source.
pub const DEFAULT_POLICIES: [(&str, &str); 10] = [
    ("sgx", include_str!("../policies/sgx.rego")),
    ("tdx", include_str!("../policies/tdx.rego")),
    ("snp", include_str!("../policies/snp.rego")),
    ("az-snp-vtpm", include_str!("../policies/az-snp-vtpm.rego")),
    ("az-tdx-vtpm", include_str!("../policies/az-tdx-vtpm.rego")),
    ("nitro", include_str!("../policies/nitro.rego")),
    ("nitro-tpm", include_str!("../policies/nitro-tpm.rego")),
    ("tpm", include_str!("../policies/tpm.rego")),
    ("nvgpu", include_str!("../policies/nvgpu.rego")),
    ("sim", include_str!("../policies/sim.rego")),
];

/// The name a default policy is known by (`default-tdx`, ...).
pub fn default_policy_name(tee: &str) -> String {
    format!("default-{tee}")
}

/// The Rego source of a family's default policy.
pub fn default_policy_text(tee: &str) -> Option<&'static str> {
    DEFAULT_POLICIES.iter().find(|(t, _)| *t == tee).map(|(_, text)| *text)
}

/// A family's default policy, compiled.
pub fn default_policy(tee: &str) -> Result<Policy, PolicyError> {
    let text = default_policy_text(tee).ok_or_else(|| PolicyError::Refused(format!("no default policy for TEE {tee:?}")))?;
    Policy::compile(&default_policy_name(tee), text)
}

/// A family's default policy made to *require* reference values: a
/// measurement outside its set, or evidence with no configured set at all,
/// is contraindicated. This is the default policy with its two strictness
/// settings changed, as a user would do by copying it.
pub fn requiring_reference_values_text(tee: &str) -> Option<String> {
    let text = default_policy_text(tee)?;
    let a = r#"mismatch_outcome := "warning""#;
    let b = "require_reference_values := false";
    if !text.contains(a) || !text.contains(b) {
        return None;
    }
    Some(text.replacen(a, r#"mismatch_outcome := "contraindicated""#, 1).replacen(b, "require_reference_values := true", 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{samples, AppraisalInput, ReferenceValues, Status};

    #[test]
    fn every_default_policy_validates() {
        for (tee, text) in DEFAULT_POLICIES {
            if let Err(e) = Policy::validate(&default_policy_name(tee), text) {
                panic!("default policy for {tee}: {e}");
            }
        }
    }

    #[test]
    fn default_policies_on_their_samples() {
        for input in samples::sample_inputs() {
            let p = default_policy(&input.tee).unwrap();
            let a = p.evaluate(&input, &ReferenceValues::new(), 0).unwrap();
            // Nothing is affirming without reference values: no measurement
            // was appraised (a warning saying so), and the SNP / NVIDIA
            // samples carry no CRL / OCSP (revocation not checked: a warning).
            assert_eq!(a.status, Status::Warning, "{}: {:#?}", input.tee, a);
            // No reference values: no executables claim, except for GPUs,
            // whose RIMs (NVIDIA's golden values) matched.
            let exec = if input.tee == "nvgpu" { Some(2) } else { None };
            assert_eq!(a.trustworthiness_vector.executables, exec, "{}", input.tee);
            let unappraised = a.reasons.iter().find(|r| r.rule == "reference_values").expect("a reference_values reason");
            if input.tee == "nvgpu" {
                assert_eq!(unappraised.outcome, Status::None, "the RIMs were compared");
            } else {
                assert_eq!(unappraised.outcome, Status::Warning, "{}", input.tee);
                assert!(unappraised.detail.contains("measurements not appraised"), "{}", unappraised.detail);
            }
            if matches!(input.tee.as_str(), "snp" | "nvgpu") {
                let r = a.reasons.iter().find(|r| r.rule == "revocation").expect("a revocation reason");
                assert_eq!(r.outcome, Status::Warning, "{}", input.tee);
                assert!(r.detail.contains("revocation not checked"), "{}", r.detail);
            }
        }
    }

    #[test]
    fn default_policies_affirm_only_what_they_compared_and_checked() {
        // Samples whose measurements are all in reference sets, with
        // revocation checked: affirming.
        let samples = samples::sample_inputs();
        let refs = samples::sample_reference_values(&samples);
        for mut input in samples.into_iter().filter(|i| matches!(i.tee.as_str(), "sgx" | "tdx" | "snp")) {
            if let Some(c) = input.claims.as_object_mut() {
                if c.contains_key("crl_checked") {
                    c.insert("crl_checked".into(), true.into());
                }
                if c.contains_key("revocation_checked") {
                    c.insert("revocation_checked".into(), true.into());
                }
            }
            let p = default_policy(&input.tee).unwrap();
            let a = p.evaluate(&input, &refs, 0).unwrap();
            assert_eq!(a.status, Status::Affirming, "{}: {:#?}", input.tee, a.reasons);
            // The same without the CRL: a warning.
            if input.tee == "snp" {
                input.claims["crl_checked"] = false.into();
                assert_eq!(p.evaluate(&input, &refs, 0).unwrap().status, Status::Warning);
            }
            assert!(
                !a.reasons.iter().any(|r| r.detail.contains("not appraised") || r.detail.contains("not checked")),
                "{}: {:#?}",
                input.tee,
                a.reasons
            );
        }
    }

    #[test]
    fn requiring_variants_validate_and_refuse_unappraised_evidence() {
        for input in samples::sample_inputs() {
            let text = requiring_reference_values_text(&input.tee).unwrap();
            let p = Policy::validate("strict", &text).unwrap();
            let a = p.evaluate(&input, &ReferenceValues::new(), 0).unwrap();
            if input.tee == "nvgpu" {
                // NVIDIA's RIMs matched: those are reference values too.
                assert_eq!(a.trustworthiness_vector.executables, Some(2));
                continue;
            }
            assert_eq!(a.status, Status::Contraindicated, "{}", input.tee);
            assert_eq!(a.trustworthiness_vector.executables, Some(96), "{}", input.tee);
        }
    }

    #[test]
    fn unknown_family_has_no_default() {
        assert!(default_policy_text("sev").is_none());
        assert!(matches!(default_policy("sev"), Err(PolicyError::Refused(_))));
        let _ = AppraisalInput::new("x", serde_json::json!({}));
    }
}
