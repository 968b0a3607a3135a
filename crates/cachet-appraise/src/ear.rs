//! The EAR appraisal a policy produces: status, AR4SI trustworthiness vector,
//! per-rule explanations and extra token claims.
//!
//! EAR (EAT Attestation Result, draft-ietf-rats-ear) carries, per attested
//! submodule, an `ear.status` and an `ear.trustworthiness-vector` whose claims
//! are the AR4SI codes (draft-ietf-rats-ar4si §2.3). Cachet keeps those exact
//! codes so any EAR consumer reads Cachet's tokens without translation.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// AR4SI trust tier, used as the EAR `ear.status` and as the outcome of one
/// policy rule. Ordered from least to most severe, so the overall status of
/// an appraisal is the maximum of its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No claim is being made (AR4SI values -1..=1).
    None,
    /// The evidence is trustworthy in this respect (2..=31, -2..=-32).
    Affirming,
    /// Trustworthy with reservations (32..=95, -33..=-96).
    Warning,
    /// Not trustworthy (96..=127, -97..=-128).
    Contraindicated,
}

impl Status {
    /// The four names, as they appear in EAR and in policies.
    pub const NAMES: [&'static str; 4] = ["none", "affirming", "warning", "contraindicated"];

    /// The EAR name of this tier.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::None => "none",
            Status::Affirming => "affirming",
            Status::Warning => "warning",
            Status::Contraindicated => "contraindicated",
        }
    }

    /// Parse an EAR tier name (`"affirming"`, ...).
    pub fn parse(name: &str) -> Option<Status> {
        match name {
            "none" => Some(Status::None),
            "affirming" => Some(Status::Affirming),
            "warning" => Some(Status::Warning),
            "contraindicated" => Some(Status::Contraindicated),
            _ => None,
        }
    }

    /// The tier of an AR4SI trustworthiness-claim value (draft-ietf-rats-ar4si
    /// §2.3.1: -1..=1 none, 2..=31 affirming, 32..=95 warning, 96..=127
    /// contraindicated; negative values mirror the positive ranges).
    pub fn of_claim_value(v: i8) -> Status {
        match v {
            -1..=1 => Status::None,
            2..=31 | -32..=-2 => Status::Affirming,
            32..=95 | -96..=-33 => Status::Warning,
            _ => Status::Contraindicated,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The eight AR4SI trustworthiness claims, as the snake_case rule names a
/// policy defines and the hyphenated names EAR serializes.
pub const VECTOR_CLAIMS: [(&str, &str); 8] = [
    ("instance_identity", "instance-identity"),
    ("configuration", "configuration"),
    ("executables", "executables"),
    ("file_system", "file-system"),
    ("hardware", "hardware"),
    ("runtime_opaque", "runtime-opaque"),
    ("storage_opaque", "storage-opaque"),
    ("sourced_data", "sourced-data"),
];

/// The AR4SI trustworthiness vector. `None` = the policy made no claim
/// (serialized as absent, which EAR reads as 0 / "no claim").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustVector {
    /// Whether the attesting instance is recognized (2) or not (96, 97).
    #[serde(rename = "instance-identity", skip_serializing_if = "Option::is_none", default)]
    pub instance_identity: Option<i8>,
    /// Whether the configuration is approved (2), vulnerable (32) or unsupportable (96).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub configuration: Option<i8>,
    /// Whether the loaded code matches reference values (2, 3) or not (33, 96).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub executables: Option<i8>,
    /// Whether the file system holds only approved files.
    #[serde(rename = "file-system", skip_serializing_if = "Option::is_none", default)]
    pub file_system: Option<i8>,
    /// Whether the hardware/firmware is genuine (2), vulnerable (32) or contraindicated (96, 97).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hardware: Option<i8>,
    /// Whether runtime memory is encrypted (2), isolated (32) or visible (96).
    #[serde(rename = "runtime-opaque", skip_serializing_if = "Option::is_none", default)]
    pub runtime_opaque: Option<i8>,
    /// Whether stored secrets are encrypted with hardware keys.
    #[serde(rename = "storage-opaque", skip_serializing_if = "Option::is_none", default)]
    pub storage_opaque: Option<i8>,
    /// Whether data came from trusted sources.
    #[serde(rename = "sourced-data", skip_serializing_if = "Option::is_none", default)]
    pub sourced_data: Option<i8>,
}

impl TrustVector {
    /// The claim with the given policy (snake_case) name, mutably.
    pub fn slot_mut(&mut self, rule: &str) -> Option<&mut Option<i8>> {
        Some(match rule {
            "instance_identity" => &mut self.instance_identity,
            "configuration" => &mut self.configuration,
            "executables" => &mut self.executables,
            "file_system" => &mut self.file_system,
            "hardware" => &mut self.hardware,
            "runtime_opaque" => &mut self.runtime_opaque,
            "storage_opaque" => &mut self.storage_opaque,
            "sourced_data" => &mut self.sourced_data,
            _ => return None,
        })
    }

    /// Each claim in AR4SI order, as (policy name, value).
    pub fn entries(&self) -> [(&'static str, Option<i8>); 8] {
        [
            ("instance_identity", self.instance_identity),
            ("configuration", self.configuration),
            ("executables", self.executables),
            ("file_system", self.file_system),
            ("hardware", self.hardware),
            ("runtime_opaque", self.runtime_opaque),
            ("storage_opaque", self.storage_opaque),
            ("sourced_data", self.sourced_data),
        ]
    }

    /// Whether the policy made any claim at all.
    pub fn is_empty(&self) -> bool {
        self.entries().iter().all(|(_, v)| v.is_none())
    }

    /// The worst tier of the claims made (`None` when no claim was made).
    pub fn status(&self) -> Status {
        self.entries().iter().filter_map(|(_, v)| *v).map(Status::of_claim_value).max().unwrap_or(Status::None)
    }
}

/// The AR4SI tag of a claim value (`"genuine_hw"`, `"unrecognized_rt"`, ...),
/// for explanations; `None` for values AR4SI does not name.
pub fn claim_value_tag(claim: &str, v: i8) -> Option<&'static str> {
    Some(match (claim, v) {
        (_, -1) => "verifier_malfunction",
        (_, 0) => "no_claim",
        (_, 1) => "unexpected_evidence",
        (_, 99) => "crypto_failed",
        ("instance_identity", 2) => "recognized_instance",
        ("instance_identity", 96) => "untrustworthy_instance",
        ("instance_identity", 97) => "unrecognized_instance",
        ("configuration", 2) => "approved_config",
        ("configuration", 3) => "safe_config",
        ("configuration", 32) => "unsafe_config",
        ("configuration", 36) => "unavailable_config",
        ("configuration", 96) => "unsupportable_config",
        ("executables", 2) => "approved_rt",
        ("executables", 3) => "approved_boot",
        ("executables", 32) => "unsafe_rt",
        ("executables", 33) => "unrecognized_rt",
        ("executables", 96) => "contraindicated_rt",
        ("file_system", 2) => "approved_fs",
        ("file_system", 32) => "unrecognized_fs",
        ("file_system", 96) => "contraindicated_fs",
        ("hardware", 2) => "genuine_hw",
        ("hardware", 32) => "unsafe_hw",
        ("hardware", 96) => "contraindicated_hw",
        ("hardware", 97) => "unrecognized_hw",
        ("runtime_opaque", 2) => "encrypted_rt",
        ("runtime_opaque", 32) => "isolated_rt",
        ("runtime_opaque", 96) => "visible_rt",
        ("storage_opaque", 2) => "hw_encrypted_secrets",
        ("storage_opaque", 32) => "sw_encrypted_secrets",
        ("storage_opaque", 96) => "unencrypted_secrets",
        ("sourced_data", 2) => "trusted_sources",
        ("sourced_data", 32) => "untrusted_sources",
        ("sourced_data", 96) => "contraindicated_sources",
        _ => return None,
    })
}

/// One explained decision of a policy: which rule, what it concluded, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The policy rule or aspect (`"debug"`, `"tcb_status"`, `"reference_value:mr_td"`).
    pub rule: String,
    /// What the rule concluded, as a tier.
    pub outcome: Status,
    /// For a person: the value seen and what was expected.
    pub detail: String,
}

/// The result of appraising one piece of verified evidence with one policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Appraisal {
    /// Overall status: the worst of the vector, the policy's own `status`
    /// and every reason's outcome, so an explanation can never contradict it.
    pub status: Status,
    /// The AR4SI trustworthiness vector.
    pub trustworthiness_vector: TrustVector,
    /// Each rule's outcome, sorted by rule name.
    pub reasons: Vec<Reason>,
    /// Extra claims the policy asks to put in the attestation token.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The policy's name, as given when it was compiled.
    pub policy_name: String,
    /// SHA-256 of the policy text, lowercase hex.
    pub policy_hash: String,
}

impl Appraisal {
    /// The appraisal of evidence that failed verification: contraindicated,
    /// with the failing check as the reason. Policies never see such
    /// evidence: it has no trustworthy claims.
    pub fn verification_failed(policy_name: &str, policy_hash: &str, check: &str, message: &str) -> Appraisal {
        let vector = TrustVector { instance_identity: Some(99), hardware: Some(99), ..TrustVector::default() };
        Appraisal {
            status: Status::Contraindicated,
            trustworthiness_vector: vector,
            reasons: vec![Reason { rule: "verification".into(), outcome: Status::Contraindicated, detail: format!("{check}: {message}") }],
            claims: serde_json::Map::new(),
            policy_name: policy_name.to_string(),
            policy_hash: policy_hash.to_string(),
        }
    }

    /// `ear.appraisal-policy-id`: names the policy and pins its text.
    pub fn policy_id(&self) -> String {
        format!("policy:{}@sha256:{}", self.policy_name, self.policy_hash)
    }

    /// The EAR submodule object for this appraisal: `ear.status`,
    /// `ear.trustworthiness-vector`, `ear.appraisal-policy-id`, plus the
    /// policy's extra claims and the explanations under Cachet's own keys.
    pub fn to_ear_submod(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("ear.status".into(), self.status.as_str().into());
        m.insert("ear.trustworthiness-vector".into(), serde_json::to_value(self.trustworthiness_vector).unwrap_or_default());
        m.insert("ear.appraisal-policy-id".into(), self.policy_id().into());
        m.insert("cachet.policy-hash".into(), self.policy_hash.clone().into());
        m.insert("cachet.reasons".into(), serde_json::to_value(&self.reasons).unwrap_or_default());
        if !self.claims.is_empty() {
            m.insert("cachet.policy-claims".into(), serde_json::Value::Object(self.claims.clone()));
        }
        serde_json::Value::Object(m)
    }
}

/// Order reasons for display: most severe first, then by rule name.
pub(crate) fn sort_reasons(reasons: &mut [Reason]) {
    reasons.sort_by(|a, b| match b.outcome.cmp(&a.outcome) {
        Ordering::Equal => a.rule.cmp(&b.rule).then_with(|| a.detail.cmp(&b.detail)),
        o => o,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_ar4si_ranges() {
        for (v, s) in [
            (0, Status::None),
            (1, Status::None),
            (-1, Status::None),
            (2, Status::Affirming),
            (31, Status::Affirming),
            (-2, Status::Affirming),
            (-32, Status::Affirming),
            (32, Status::Warning),
            (95, Status::Warning),
            (-33, Status::Warning),
            (-96, Status::Warning),
            (96, Status::Contraindicated),
            (127, Status::Contraindicated),
            (-97, Status::Contraindicated),
            (-128, Status::Contraindicated),
        ] {
            assert_eq!(Status::of_claim_value(v), s, "value {v}");
        }
    }

    #[test]
    fn vector_status_is_worst_claim() {
        let mut v = TrustVector::default();
        assert_eq!(v.status(), Status::None);
        v.hardware = Some(2);
        assert_eq!(v.status(), Status::Affirming);
        v.executables = Some(33);
        assert_eq!(v.status(), Status::Warning);
        v.configuration = Some(96);
        assert_eq!(v.status(), Status::Contraindicated);
    }

    #[test]
    fn failed_verification_is_contraindicated_and_named() {
        let a = Appraisal::verification_failed("p", "ab", "PCK CRL", "certificate revoked");
        assert_eq!(a.status, Status::Contraindicated);
        assert_eq!(a.trustworthiness_vector.hardware, Some(99));
        assert_eq!(a.reasons[0].detail, "PCK CRL: certificate revoked");
        assert_eq!(claim_value_tag("hardware", 99), Some("crypto_failed"));
    }

    #[test]
    fn ear_submod_uses_ar4si_names() {
        let a = Appraisal {
            status: Status::Affirming,
            trustworthiness_vector: TrustVector { hardware: Some(2), runtime_opaque: Some(2), ..Default::default() },
            reasons: vec![],
            claims: Default::default(),
            policy_name: "p".into(),
            policy_hash: "00".into(),
        };
        let e = a.to_ear_submod();
        assert_eq!(e["ear.status"], "affirming");
        assert_eq!(e["ear.trustworthiness-vector"]["runtime-opaque"], 2);
        assert!(e["ear.trustworthiness-vector"].get("executables").is_none());
        assert_eq!(e["ear.appraisal-policy-id"], "policy:p@sha256:00");
    }
}
