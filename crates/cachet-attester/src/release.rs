//! The signed release statement: how a workload knows a release response
//! came from the service it attested to.
//!
//! A JWE encrypted to the workload's public key proves nothing about its
//! sender: anyone can encrypt to a public key, so a proxy could turn a
//! refusal into "released" with a value of its own. `POST /v1/secrets/release`
//! therefore also returns `statement`, a compact JWS (`typ`
//! [`STATEMENT_TYP`]) signed with the service's token-signing key, whose
//! claims say which token and workload key the answer is for and, per
//! secret, whether it was released and the SHA-256 of its JWE:
//!
//! ```json
//! {"iss": "...", "iat": 0, "exp": 0,
//!  "cachet.release": {"token_id": "<jti>", "workload_key": "<RFC 7638 thumbprint>",
//!    "results": [{"secret": "owner/name", "released": true, "jwe_sha256": "<hex>"},
//!                {"secret": "owner/other", "released": false, "code": "policy_refused"}]}}
//! ```
//!
//! The client ([`crate::client::Attester::release`]) checks the statement
//! against the service's JWKS, with the same issuer and the `jti` of the
//! attestation token it was given (itself checked against the JWKS), and
//! takes only what the statement vouches for. This module is the single
//! definition both sides use.

use aws_lc_rs::digest;
use serde_json::{json, Value};

/// The JWS `typ` of a release statement (never `JWT`, so it cannot be taken
/// for an attestation token).
pub const STATEMENT_TYP: &str = "cachet-release+jwt";

/// The claim holding the statement.
pub const STATEMENT_CLAIM: &str = "cachet.release";

/// Hex SHA-256 of a compact JWE, as the statement names it.
pub fn jwe_sha256(jwe: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, jwe.as_bytes()))
}

/// One secret's outcome as the statement records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatedResult {
    /// `owner/name`.
    pub secret: String,
    /// Whether it was released.
    pub released: bool,
    /// The refusal's code, if refused.
    pub code: Option<String>,
    /// SHA-256 of the released JWE (hex).
    pub jwe_sha256: Option<String>,
}

/// The statement's claims (the service signs them).
pub fn claims(issuer: &str, iat: i64, exp: i64, token_id: Option<&str>, workload_key: Option<&str>, results: &[StatedResult]) -> Value {
    let results: Vec<Value> = results
        .iter()
        .map(|r| {
            let mut v = json!({"secret": r.secret, "released": r.released});
            if let Some(c) = &r.code {
                v["code"] = c.as_str().into();
            }
            if let Some(h) = &r.jwe_sha256 {
                v["jwe_sha256"] = h.as_str().into();
            }
            v
        })
        .collect();
    json!({
        "iss": issuer, "iat": iat, "exp": exp,
        STATEMENT_CLAIM: {"token_id": token_id, "workload_key": workload_key, "results": results},
    })
}

/// The results a verified statement's claims list (`None` when malformed).
pub fn results_of(claims: &Value) -> Option<Vec<StatedResult>> {
    let list = claims.get(STATEMENT_CLAIM)?.get("results")?.as_array()?;
    list.iter()
        .map(|r| {
            Some(StatedResult {
                secret: r.get("secret")?.as_str()?.to_string(),
                released: r.get("released")?.as_bool()?,
                code: r.get("code").and_then(Value::as_str).map(str::to_string),
                jwe_sha256: r.get("jwe_sha256").and_then(Value::as_str).map(str::to_string),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_round_trip_through_the_claims() {
        let rs = vec![
            StatedResult { secret: "a/b".into(), released: true, code: None, jwe_sha256: Some(jwe_sha256("x.y.z")) },
            StatedResult { secret: "a/c".into(), released: false, code: Some("policy_refused".into()), jwe_sha256: None },
        ];
        let c = claims("https://i", 1, 2, Some("jti"), Some("thumb"), &rs);
        assert_eq!(results_of(&c).unwrap(), rs);
        assert_eq!(c[STATEMENT_CLAIM]["token_id"], "jti");
        assert!(results_of(&json!({STATEMENT_CLAIM: {"results": [{"secret": 1}]}})).is_none());
    }
}
