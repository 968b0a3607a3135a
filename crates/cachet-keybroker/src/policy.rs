//! Release policies: Rego over the attestation token's claims, evaluated
//! by the project's appraisal engine (`cachet-appraise`).
//!
//! ## The release-policy contract
//!
//! A release policy is an appraisal policy (same Rego v1 language, same
//! engine, limits and `data.reference_values`) evaluated over the
//! **verified attestation token** instead of raw evidence claims:
//!
//! * `input.claims` — the token's claims set (EAR): `iss`, `exp`,
//!   `eat_nonce`, `cachet.freshness`, `submods.<tee>["ear.status"]`,
//!   `submods.<tee>["ear.veraison.annotated-evidence"]` (the verified
//!   claims, e.g. `measurement`), ...
//! * `input.tee` — the token's submodule name (`"sim"`, `"tdx"`, ...) when
//!   it has exactly one; submodule names joined by `+` otherwise.
//! * `input.runtime_data` — the workload's public key (JWK) bound into the
//!   evidence; `input.nonce` — the verifier nonce (hex).
//!
//! The secret is released **only if the policy's appraisal status is
//! `affirming`** — i.e. it sets `status := "affirming"` (or affirming AR4SI
//! claims) and none of its `reasons` says otherwise. A policy that decides
//! nothing refuses. The refusal reason lists the policy's non-affirming
//! reasons (`rule: detail`), so owners can explain refusals.
//!
//! ```rego
//! package release
//! import rego.v1
//! ev := input.claims.submods[input.tee]["ear.veraison.annotated-evidence"]
//! status := "affirming" if {
//!     input.claims.submods[input.tee]["ear.status"] == "affirming"
//!     ev.measurement in data.reference_values.approved
//! }
//! reasons contains {"rule": "measurement", "outcome": "contraindicated",
//!     "detail": sprintf("measurement %v is not approved", [ev.measurement])} if {
//!     not ev.measurement in data.reference_values.approved
//! }
//! ```

use std::sync::Arc;

use cachet_appraise::{AppraisalInput, Policy, PolicyCache, ReferenceValues, Status};
use serde_json::{json, Value};

use crate::BrokerError;

/// Largest release policy accepted (bytes).
pub const MAX_RELEASE_POLICY_LEN: usize = 64 * 1024;

/// The outcome of one policy evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the secret may be released.
    pub allowed: bool,
    /// Why (the policy's reasons; never a secret value).
    pub reason: String,
    /// SHA-256 of the policy text (hex).
    pub policy_hash: String,
}

/// The policy input for a token's claims (see the module docs).
pub fn release_input(claims: &Value) -> AppraisalInput {
    let names: Vec<&str> =
        claims.get("submods").and_then(Value::as_object).map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    let mut input = AppraisalInput::new(&names.join("+"), claims.clone());
    input.nonce = claims.get("eat_nonce").and_then(Value::as_str).map(str::to_string);
    input.runtime_data = crate::broker::runtime_data_json(claims);
    input
}

/// A synthetic, plausible token's claims to test a policy on before it is stored.
fn sample_claims() -> Value {
    json!({
        "iss": "https://cachet.invalid", "iat": 0, "nbf": 0, "exp": 60, "jti": "sample",
        "eat_profile": "tag:github.com,2023:veraison/ear", "eat_nonce": "00".repeat(32),
        "cachet.freshness": "nonce", "cachet.policy_hash": "sha-256:00", "cachet.verification_time": 0,
        "cachet.runtime_data": "eyJrdHkiOiJFQyJ9",
        "submods": {"sim": {"ear.status": "affirming", "ear.trustworthiness-vector": {"instance-identity": 2},
            "ear.appraisal-policy-id": "sample",
            "ear.veraison.annotated-evidence": {"tee": "sim", "measurement": "11".repeat(48), "debug": false, "report_data": "00".repeat(64)}}},
    })
}

/// The rules an appraisal is read from (`cachet_appraise::policy`).
const DECIDING_RULES: [&str; 10] = [
    "status",
    "reasons",
    "instance_identity",
    "configuration",
    "executables",
    "file_system",
    "hardware",
    "runtime_opaque",
    "storage_opaque",
    "sourced_data",
];

/// Whether the text has a rule head (`status := …`, `default status := …`,
/// `reasons contains …`, `hardware = … if …`) for one of [`DECIDING_RULES`].
fn defines_a_deciding_rule(text: &str) -> bool {
    text.lines().any(|line| {
        let l = line.trim_start();
        let l = l.strip_prefix("default ").map(str::trim_start).unwrap_or(l);
        DECIDING_RULES.iter().any(|rule| {
            l.strip_prefix(rule).is_some_and(|rest| {
                let rest = rest.trim_start();
                rest.starts_with(":=")
                    || (rest.starts_with('=') && !rest.starts_with("=="))
                    || rest.starts_with("if ")
                    || rest.starts_with("if{")
                    || rest.starts_with('{')
                    || rest.starts_with("contains ")
                    || rest.starts_with('[')
            })
        })
    })
}

fn check_len(text: &str) -> Result<(), BrokerError> {
    if text.len() > MAX_RELEASE_POLICY_LEN {
        return Err(BrokerError::Policy(format!("a release policy is at most {MAX_RELEASE_POLICY_LEN} bytes")));
    }
    Ok(())
}

/// Run the policy on a sample token: it must evaluate, and it must be able
/// to decide (define `status`, an AR4SI claim or `reasons`), since only
/// `status` "affirming" releases.
fn check_decides(p: &Policy) -> Result<(), BrokerError> {
    let a = p.evaluate(&release_input(&sample_claims()), &ReferenceValues::new(), 0).map_err(|e| BrokerError::Policy(e.to_string()))?;
    let decided = a.status != Status::None || !a.trustworthiness_vector.is_empty() || !a.reasons.is_empty();
    if decided || defines_a_deciding_rule(p.text()) {
        return Ok(());
    }
    let allow = if p.text().lines().any(|l| l.trim_start().starts_with("allow")) {
        " (it defines `allow`, which Cachet does not read: OPA's `allow := true` convention is not a release decision)"
    } else {
        ""
    };
    Err(BrokerError::PolicyNoStatus(format!(
        "the policy never sets `status`{allow}, so it would refuse every release: a secret is released only when the \
         policy sets `status := \"affirming\"`, e.g. `status := \"affirming\" if {{ <your conditions> }}` \
         (the release-policy contract is in the API description, crates/cachet-server/src/api.md)"
    )))
}

/// Compiled release policies, cached by text hash.
pub struct ReleasePolicies {
    cache: PolicyCache,
}

impl Default for ReleasePolicies {
    fn default() -> Self {
        Self { cache: PolicyCache::new(256) }
    }
}

impl ReleasePolicies {
    /// Compile `text` and run it once on a sample token, so a policy that
    /// does not parse, does not compile or fails at evaluation is refused
    /// before it is stored.
    /// A policy that never sets `status` (nor an AR4SI claim or a reason)
    /// would refuse every release, and is refused too
    /// ([`BrokerError::PolicyNoStatus`]).
    pub fn validate(&self, text: &str) -> Result<Arc<Policy>, BrokerError> {
        check_len(text)?;
        let p = self.cache.get_or_compile("release", text).map_err(|e| BrokerError::Policy(e.to_string()))?;
        check_decides(&p)?;
        Ok(p)
    }

    /// [`ReleasePolicies::validate`], with errors naming the policy's file
    /// (`label`, e.g. `bad.rego`, as uploaded) instead of `release.rego`.
    /// Not cached: it runs once per upload.
    pub fn validate_named(&self, label: &str, text: &str) -> Result<(), BrokerError> {
        check_len(text)?;
        let name = label.strip_suffix(".rego").unwrap_or(label);
        let p = Policy::compile(name, text).map_err(|e| BrokerError::Policy(e.to_string()))?;
        check_decides(&p)
    }

    /// Decide whether a policy releases a secret to the workload these
    /// claims describe. An unusable policy refuses (with its error).
    pub fn decide(&self, text: &str, claims: &Value, refvals: &ReferenceValues, at: i64) -> Decision {
        let policy_hash = cachet_appraise::policy_hash(text);
        let refused = |reason: String| Decision { allowed: false, reason, policy_hash: policy_hash.clone() };
        let policy = match self.cache.get_or_compile("release", text) {
            Ok(p) => p,
            Err(e) => return refused(format!("the release policy is unusable: {e}")),
        };
        let appraisal = match policy.evaluate(&release_input(claims), refvals, at) {
            Ok(a) => a,
            Err(e) => return refused(format!("the release policy failed: {e}")),
        };
        if appraisal.status == Status::Affirming {
            let why: Vec<String> = appraisal.reasons.iter().map(|r| format!("{}: {}", r.rule, r.detail)).collect();
            return Decision {
                allowed: true,
                reason: if why.is_empty() {
                    "the release policy affirms".into()
                } else {
                    format!("the release policy affirms ({})", why.join("; "))
                },
                policy_hash,
            };
        }
        let why: Vec<String> =
            appraisal.reasons.iter().filter(|r| r.outcome != Status::Affirming).map(|r| format!("{}: {}", r.rule, r.detail)).collect();
        refused(if why.is_empty() {
            format!("the release policy's status is {} (release needs affirming)", appraisal.status.as_str())
        } else {
            format!("the release policy's status is {}: {}", appraisal.status.as_str(), why.join("; "))
        })
    }
}
