//! EAT Attestation Result (EAR) claims, as in the IETF RATS draft
//! "EAT Attestation Results" and the AR4SI trustworthiness vector.
//!
//! A token says, per evidence family ("submodule"), whether the attester
//! was appraised as trustworthy (`ear.status`), on which dimensions
//! (`ear.trustworthiness-vector`), and on which verified claims
//! (`ear.veraison.annotated-evidence`). Cachet adds the freshness facts a
//! relying party needs to bind the result to its own session: the nonce
//! (`eat_nonce`), the attester's runtime data, and which policy appraised.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The EAR profile identifier (`eat_profile`).
pub const EAT_PROFILE: &str = "tag:github.com,2023:veraison/ear";

/// Overall appraisal of one submodule (the AR4SI tiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing could be said.
    None,
    /// Trustworthy.
    Affirming,
    /// Usable, with known issues (e.g. an out-of-date TCB).
    Warning,
    /// Must not be trusted.
    Contraindicated,
}

impl Status {
    /// The EAR name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::None => "none",
            Status::Affirming => "affirming",
            Status::Warning => "warning",
            Status::Contraindicated => "contraindicated",
        }
    }
}

/// AR4SI trustworthiness claim values used by Cachet (a subset of the
/// registry: 0 no claim, 2 affirming, 32 warning, 96 contraindicated, with
/// the claim-specific meanings of draft-ietf-rats-ar4si §2.3).
pub mod tier {
    /// No claim is made.
    pub const NONE: i8 = 0;
    /// Affirming ("approved", "genuine", "trustworthy").
    pub const AFFIRMING: i8 = 2;
    /// Warning ("unsafe": known vulnerabilities, out-of-date TCB).
    pub const WARNING: i8 = 32;
    /// Contraindicated (e.g. debug mode: the configuration is not trustworthy).
    pub const CONTRAINDICATED: i8 = 96;
    /// Contraindicated hardware or identity ("unrecognized", "not genuine").
    pub const UNRECOGNIZED: i8 = 97;
}

/// The AR4SI trustworthiness vector; 0 ("no claim") entries are omitted
/// when serialised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrustVector {
    /// Is the attester the instance it claims to be (signed by a recognised key)?
    #[serde(default, skip_serializing_if = "is_zero")]
    pub instance_identity: i8,
    /// Is its configuration (debug mode, policy bits) acceptable?
    #[serde(default, skip_serializing_if = "is_zero")]
    pub configuration: i8,
    /// Are the measured executables the expected ones?
    #[serde(default, skip_serializing_if = "is_zero")]
    pub executables: i8,
    /// Is the file system as expected?
    #[serde(default, skip_serializing_if = "is_zero")]
    pub file_system: i8,
    /// Is the hardware genuine and its TCB up to date?
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hardware: i8,
    /// Is its runtime memory opaque to the host?
    #[serde(default, skip_serializing_if = "is_zero")]
    pub runtime_opaque: i8,
    /// Is its storage opaque to the host?
    #[serde(default, skip_serializing_if = "is_zero")]
    pub storage_opaque: i8,
    /// Is the data it sources trustworthy?
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sourced_data: i8,
}

fn is_zero(v: &i8) -> bool {
    *v == 0
}

/// The appraisal of one submodule (one evidence family).
#[derive(Debug, Clone, PartialEq)]
pub struct Submod {
    /// Overall status.
    pub status: Status,
    /// Per-dimension claims.
    pub trust_vector: TrustVector,
    /// The verified claims the appraisal looked at.
    pub annotated_evidence: Value,
    /// Which policy appraised (`ear.appraisal-policy-id`).
    pub policy_id: String,
}

/// Whether the evidence was bound to a verifier nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The evidence carries the nonce this verifier issued, consumed once.
    Nonce,
    /// No nonce was given: the evidence may be a replay.
    NotEstablished,
}

impl Freshness {
    /// The claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            Freshness::Nonce => "nonce",
            Freshness::NotEstablished => "not-established",
        }
    }
}

/// A complete attestation result, ready to be signed.
#[derive(Debug, Clone)]
pub struct Ear {
    /// `iss`: the service's issuer URL.
    pub issuer: String,
    /// `iat`.
    pub issued_at: i64,
    /// `exp`.
    pub expires_at: i64,
    /// `jti`: a unique token id (also in the audit log).
    pub token_id: String,
    /// `ear.verifier-id.build`, e.g. `cachet 0.1.0`.
    pub verifier_build: String,
    /// Submodules by family name (`sgx`, `snp`, ...).
    pub submods: BTreeMap<String, Submod>,
    /// The verifier nonce bound in the evidence, if any.
    pub nonce: Option<Vec<u8>>,
    /// The attester's runtime data bound with the nonce, if any.
    pub runtime_data: Option<Vec<u8>>,
    /// Hash of the appraisal policy (`sha-256:<hex>`).
    pub policy_hash: String,
    /// Whether freshness was established.
    pub freshness: Freshness,
    /// The instant the evidence was verified as of (Unix seconds).
    pub verification_time: i64,
}

impl Ear {
    /// The JWT claims set.
    pub fn to_claims(&self) -> Value {
        let submods: Map<String, Value> = self
            .submods
            .iter()
            .map(|(name, s)| {
                (
                    name.clone(),
                    json!({
                        "ear.status": s.status.as_str(),
                        "ear.trustworthiness-vector": s.trust_vector,
                        "ear.appraisal-policy-id": s.policy_id,
                        "ear.veraison.annotated-evidence": s.annotated_evidence,
                    }),
                )
            })
            .collect();
        let mut c = json!({
            "iss": self.issuer,
            "iat": self.issued_at,
            "nbf": self.issued_at,
            "exp": self.expires_at,
            "jti": self.token_id,
            "eat_profile": EAT_PROFILE,
            "ear.verifier-id": {"developer": "Cachet", "build": self.verifier_build},
            "submods": submods,
            "cachet.policy_hash": self.policy_hash,
            "cachet.freshness": self.freshness.as_str(),
            "cachet.verification_time": self.verification_time,
        });
        if let Some(n) = &self.nonce {
            c["eat_nonce"] = hex::encode(n).into();
        }
        if let Some(r) = &self.runtime_data {
            c["cachet.runtime_data"] = URL_SAFE_NO_PAD.encode(r).into();
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_follow_the_ear_shape() {
        let mut submods = BTreeMap::new();
        submods.insert(
            "snp".to_string(),
            Submod {
                status: Status::Warning,
                trust_vector: TrustVector { hardware: tier::WARNING, instance_identity: tier::AFFIRMING, ..Default::default() },
                annotated_evidence: json!({"tee": "snp"}),
                policy_id: "builtin".into(),
            },
        );
        let ear = Ear {
            issuer: "https://x".into(),
            issued_at: 10,
            expires_at: 20,
            token_id: "t".into(),
            verifier_build: "cachet 0".into(),
            submods,
            nonce: Some(vec![0xab]),
            runtime_data: Some(b"hi".to_vec()),
            policy_hash: "sha-256:00".into(),
            freshness: Freshness::Nonce,
            verification_time: 9,
        };
        let c = ear.to_claims();
        assert_eq!(c["eat_profile"], EAT_PROFILE);
        assert_eq!(c["submods"]["snp"]["ear.status"], "warning");
        assert_eq!(c["submods"]["snp"]["ear.trustworthiness-vector"], json!({"instance-identity": 2, "hardware": 32}));
        assert_eq!(c["eat_nonce"], "ab");
        assert_eq!(c["cachet.runtime_data"], "aGk");
        assert_eq!(c["cachet.freshness"], "nonce");
    }
}
