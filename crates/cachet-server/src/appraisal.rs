//! Appraisal: verified claims → EAR status and trustworthiness vector.
//!
//! This is the ONE seam between verification and the token: [`appraise`].
//! For now it applies a fixed built-in policy; the Rego policy engine
//! (`cachet-appraise`) will replace its body without touching the callers.
//!
//! Built-in policy `cachet:builtin:v1`:
//! - evidence that verified chains to the manufacturer's root:
//!   `instance-identity` and `hardware` affirming;
//! - `debug: true` → `configuration` contraindicated → **contraindicated**;
//!   a family that has a debug mode but reported none → **warning**;
//! - `tcb_status` (Intel DCAP): `UpToDate` affirming; `SWHardeningNeeded`,
//!   `ConfigurationNeeded`, `ConfigurationAndSWHardeningNeeded`, `OutOfDate`,
//!   `OutOfDateConfigurationNeeded` → `hardware` warning → **warning**;
//!   `Revoked` (or anything unknown) → contraindicated / warning;
//! - `rim_status` (vendor golden values, e.g. NVIDIA RIMs): `match` →
//!   `executables` affirming; anything else → `executables` 33
//!   ("unrecognized") → **warning**;
//! - the simulated TEE is never genuine hardware → at best **warning**;
//! - no operator reference values are checked yet: otherwise `executables`
//!   is "no claim".

use cachet_token::ear::{tier, Status, TrustVector};
use cachet_verify::Tee;
use serde_json::Value;

/// Identifier of the built-in policy (`ear.appraisal-policy-id`).
pub const BUILTIN_POLICY_ID: &str = "cachet:builtin:v1";

/// The built-in policy, stated as text; its SHA-256 is the policy hash.
const BUILTIN_POLICY_TEXT: &str = "cachet:builtin:v1\n\
verified -> instance-identity=2 hardware=2\n\
debug=true -> configuration=96 status=contraindicated\n\
debug missing where the family has one -> status=warning\n\
tcb_status UpToDate -> hardware=2; SWHardeningNeeded|ConfigurationNeeded|ConfigurationAndSWHardeningNeeded|OutOfDate|OutOfDateConfigurationNeeded -> hardware=32 status=warning; Revoked -> hardware=96 status=contraindicated; other -> hardware=32 status=warning\n\
rim_status match -> executables=2; other -> executables=33 status=warning\n\
sim -> hardware=32 status=warning\n\
confidential families not in debug -> runtime-opaque=2\n";

/// The appraisal of one verified evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Appraisal {
    /// Overall status.
    pub status: Status,
    /// AR4SI vector.
    pub trust_vector: TrustVector,
    /// Which policy appraised.
    pub policy_id: String,
    /// `sha-256:<hex>` of the policy.
    pub policy_hash: String,
    /// Why the status is not affirming (for logs and the audit log).
    pub reasons: Vec<String>,
}

/// `sha-256:<hex>` of the built-in policy text.
pub fn builtin_policy_hash() -> String {
    format!("sha-256:{}", hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, BUILTIN_POLICY_TEXT.as_bytes())))
}

/// AR4SI `executables` 33: unrecognized executables were loaded.
const UNRECOGNIZED_EXECUTABLES: i8 = 33;

/// Families whose evidence has a debug mode the verifier reports.
fn has_debug_mode(tee: Tee) -> bool {
    matches!(tee, Tee::Sgx | Tee::Tdx | Tee::Snp | Tee::AzSnpVtpm | Tee::AzTdxVtpm | Tee::Nitro | Tee::Simulated)
}

/// Families whose memory is opaque to the host (confidential computing).
fn is_confidential(tee: Tee) -> bool {
    !matches!(tee, Tee::Tpm)
}

/// Appraise the verified `claims` of evidence of family `tee`.
pub fn appraise(tee: Tee, claims: &Value) -> Appraisal {
    let mut v = TrustVector { instance_identity: tier::AFFIRMING, hardware: tier::AFFIRMING, ..Default::default() };
    let mut status = Status::Affirming;
    let mut reasons = Vec::new();
    let mut worsen = |s: Status, why: String, reasons: &mut Vec<String>| {
        status = status.max(s);
        reasons.push(why);
    };

    match claims.get("debug").and_then(Value::as_bool) {
        Some(true) => {
            v.configuration = tier::CONTRAINDICATED;
            worsen(Status::Contraindicated, "the TEE runs in debug mode".into(), &mut reasons);
        }
        Some(false) => {
            v.configuration = tier::AFFIRMING;
            if is_confidential(tee) {
                v.runtime_opaque = tier::AFFIRMING;
            }
        }
        None if has_debug_mode(tee) => {
            worsen(Status::Warning, "the verifier reported no debug state".into(), &mut reasons);
        }
        None => {}
    }

    if let Some(tcb) = claims.get("tcb_status").and_then(Value::as_str) {
        match tcb {
            "UpToDate" => {}
            "Revoked" => {
                v.hardware = tier::CONTRAINDICATED;
                worsen(Status::Contraindicated, "TCB status Revoked".into(), &mut reasons);
            }
            other => {
                v.hardware = tier::WARNING;
                worsen(Status::Warning, format!("TCB status {other}"), &mut reasons);
            }
        }
    }

    match claims.get("rim_status").and_then(Value::as_str) {
        Some("match") => v.executables = tier::AFFIRMING,
        Some(other) => {
            v.executables = UNRECOGNIZED_EXECUTABLES;
            worsen(Status::Warning, format!("firmware measurements vs. vendor golden values: {other}"), &mut reasons);
        }
        None => {}
    }

    if tee == Tee::Simulated {
        v.hardware = tier::WARNING;
        worsen(Status::Warning, "simulated TEE: no hardware protection".into(), &mut reasons);
    }

    Appraisal { status, trust_vector: v, policy_id: BUILTIN_POLICY_ID.into(), policy_hash: builtin_policy_hash(), reasons }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn up_to_date_non_debug_is_affirming() {
        let a = appraise(Tee::Tdx, &json!({"debug": false, "tcb_status": "UpToDate"}));
        assert_eq!(a.status, Status::Affirming, "{:?}", a.reasons);
        assert_eq!(a.trust_vector.hardware, tier::AFFIRMING);
        assert_eq!(a.trust_vector.configuration, tier::AFFIRMING);
        assert!(a.policy_hash.starts_with("sha-256:"));
    }

    #[test]
    fn debug_is_contraindicated_and_outdated_tcb_a_warning() {
        assert_eq!(appraise(Tee::Sgx, &json!({"debug": true, "tcb_status": "UpToDate"})).status, Status::Contraindicated);
        let a = appraise(Tee::Sgx, &json!({"debug": false, "tcb_status": "OutOfDate"}));
        assert_eq!((a.status, a.trust_vector.hardware), (Status::Warning, tier::WARNING));
        assert_eq!(appraise(Tee::Sgx, &json!({"debug": false, "tcb_status": "Revoked"})).status, Status::Contraindicated);
    }

    #[test]
    fn missing_debug_state_where_one_exists_is_a_warning_not_affirming() {
        assert_eq!(appraise(Tee::Snp, &json!({})).status, Status::Warning);
        assert_eq!(appraise(Tee::Tpm, &json!({})).status, Status::Affirming);
    }

    #[test]
    fn vendor_golden_value_mismatch_is_a_warning() {
        let a = appraise(Tee::Nvgpu, &json!({"debug": false, "rim_status": "mismatch"}));
        assert_eq!((a.status, a.trust_vector.executables), (Status::Warning, UNRECOGNIZED_EXECUTABLES));
        let a = appraise(Tee::Nvgpu, &json!({"debug": false, "rim_status": "match"}));
        assert_eq!((a.status, a.trust_vector.executables), (Status::Affirming, tier::AFFIRMING));
    }

    #[test]
    fn the_simulated_tee_is_never_affirming() {
        assert_eq!(appraise(Tee::Simulated, &json!({"debug": false})).status, Status::Warning);
        assert_eq!(appraise(Tee::Simulated, &json!({"debug": true})).status, Status::Contraindicated);
    }
}
