//! Shared helpers: token claims shaped as cachet serve issues them, and workload keys.
#![allow(dead_code)]

use std::collections::BTreeMap;

use aws_lc_rs::agreement::{PrivateKey, ECDH_P256};
use cachet_keybroker::jwe::{Curve, DecryptionKey, WorkloadKey};
use cachet_token::ear::{tier, Ear, Freshness, Status, Submod, TrustVector};
use serde_json::{json, Value};

pub const GOOD: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub const OTHER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
pub const NOW: i64 = 1_800_000_000;

/// A workload's P-256 key pair.
pub fn workload_key() -> (DecryptionKey, WorkloadKey) {
    let sk = PrivateKey::generate(&ECDH_P256).unwrap();
    let pk = WorkloadKey::Ec { curve: Curve::P256, point: sk.compute_public_key().unwrap().as_ref().to_vec() };
    (DecryptionKey::Ec(sk), pk)
}

/// The canonical JSON of a public JWK (what an attester binds as runtime data).
pub fn runtime_data(key: &WorkloadKey) -> Vec<u8> {
    let mut j = key.to_jwk();
    j.as_object_mut().unwrap().remove("alg");
    serde_json::to_vec(&j).unwrap()
}

/// Token claims as `cachet serve` issues them for a simulated TEE with `measurement`.
pub fn claims(measurement: &str, runtime: Option<Vec<u8>>, freshness: Freshness, exp: i64) -> Value {
    let mut submods = BTreeMap::new();
    submods.insert(
        "sim".to_string(),
        Submod {
            status: Status::Affirming,
            trust_vector: TrustVector { instance_identity: tier::AFFIRMING, configuration: tier::AFFIRMING, ..Default::default() },
            annotated_evidence: json!({"tee": "sim", "simulated": true, "measurement": measurement, "debug": false, "svn": 1}),
            policy_id: "builtin".into(),
        },
    );
    Ear {
        issuer: "https://cachet.test".into(),
        issued_at: NOW - 10,
        expires_at: exp,
        token_id: "tok-1".into(),
        verifier_build: "cachet test".into(),
        submods,
        nonce: Some(vec![7; 32]),
        runtime_data: runtime,
        policy_hash: "sha-256:00".into(),
        freshness,
        verification_time: NOW - 10,
    }
    .to_claims()
}

/// A release policy: affirming sim evidence with exactly `measurement`.
pub fn policy_for(measurement: &str) -> String {
    format!(
        r#"package release
import rego.v1

ev := input.claims.submods[input.tee]["ear.veraison.annotated-evidence"]

status := "affirming" if {{
    input.tee == "sim"
    input.claims.submods.sim["ear.status"] == "affirming"
    ev.measurement == "{measurement}"
}}

reasons contains {{"rule": "measurement", "outcome": "contraindicated", "detail": sprintf("measurement %v is not the approved one", [ev.measurement])}} if {{
    ev.measurement != "{measurement}"
}}
"#
    )
}
