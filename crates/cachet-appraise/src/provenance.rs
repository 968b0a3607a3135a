//! Reference values from in-toto attestations and SLSA provenance.
//!
//! A build system that produces a workload image (a UKI, a firmware, an
//! enclave) states what it built in an in-toto Statement: each `subject` is
//! an artefact name with its digests, and a SLSA provenance `predicate`
//! names the builder. The subject digests are the values a measurement must
//! equal, so importing them makes "the thing our CI built" the allowed
//! measurement, with the builder recorded beside each value.
//!
//! Accepted containers: a bare Statement; a DSSE envelope
//! (`payloadType` = `application/vnd.in-toto+json`); a Sigstore bundle (its
//! `dsseEnvelope`); and JSON Lines of those (`.intoto.jsonl`). Signatures on
//! envelopes are **not** checked here: verify provenance with the signer's
//! tooling (slsa-verifier, cosign) before importing it.

use base64::Engine as _;

use crate::refvals::{normalize_value, RefValue, RefvalError};

/// The in-toto payload type of a DSSE envelope.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Largest provenance document read (bytes).
pub const MAX_PROVENANCE_LEN: usize = 16 << 20;

/// Most subjects taken from one document.
pub const MAX_SUBJECTS: usize = 10_000;

/// One subject digest of a statement, with its provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectDigest {
    /// The subject's `name` (an artefact file name).
    pub subject: String,
    /// The digest algorithm (`sha256`, `sha384`, ...).
    pub alg: String,
    /// The digest, lowercase hex.
    pub digest: String,
    /// The SLSA builder id, when the predicate is SLSA provenance.
    pub builder_id: Option<String>,
    /// The statement's `predicateType`.
    pub predicate_type: Option<String>,
}

fn err(msg: impl Into<String>) -> RefvalError {
    RefvalError(msg.into())
}

/// Whether a parsed JSON document looks like an in-toto Statement, DSSE
/// envelope or Sigstore bundle (rather than a plain reference-value file).
pub fn looks_like_provenance(doc: &serde_json::Value) -> bool {
    let Some(o) = doc.as_object() else { return false };
    o.contains_key("payloadType")
        || o.contains_key("dsseEnvelope")
        || o.get("_type").and_then(|t| t.as_str()).is_some_and(|t| t.starts_with("https://in-toto.io/Statement/"))
}

/// Read every subject digest of a provenance document (see the module
/// documentation for the accepted containers).
pub fn subject_digests(bytes: &[u8]) -> Result<Vec<SubjectDigest>, RefvalError> {
    if bytes.len() > MAX_PROVENANCE_LEN {
        return Err(err(format!("provenance of {} bytes is larger than {MAX_PROVENANCE_LEN}", bytes.len())));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| err("provenance is not UTF-8 text"))?;
    let mut out = Vec::new();
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(doc) => collect(&doc, &mut out)?,
        Err(_) => {
            // JSON Lines: one envelope or statement per non-empty line.
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let doc: serde_json::Value = serde_json::from_str(line).map_err(|e| err(format!("line {}: not JSON: {e}", i + 1)))?;
                collect(&doc, &mut out).map_err(|e| err(format!("line {}: {}", i + 1, e.0)))?;
            }
        }
    }
    if out.is_empty() {
        return Err(err("the provenance names no subject digest"));
    }
    Ok(out)
}

fn collect(doc: &serde_json::Value, out: &mut Vec<SubjectDigest>) -> Result<(), RefvalError> {
    let o = doc.as_object().ok_or_else(|| err("provenance must be a JSON object"))?;
    if let Some(env) = o.get("dsseEnvelope") {
        return collect(env, out);
    }
    if let Some(pt) = o.get("payloadType") {
        if pt.as_str() != Some(IN_TOTO_PAYLOAD_TYPE) {
            return Err(err(format!("DSSE payloadType {pt} is not {IN_TOTO_PAYLOAD_TYPE}")));
        }
        let payload = o.get("payload").and_then(|p| p.as_str()).ok_or_else(|| err("DSSE envelope without payload"))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(payload.trim())
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(payload.trim()))
            .map_err(|_| err("DSSE payload is not base64"))?;
        let stmt: serde_json::Value =
            serde_json::from_slice(&raw).map_err(|e| err(format!("DSSE payload is not a JSON statement: {e}")))?;
        return statement(&stmt, out);
    }
    statement(doc, out)
}

fn statement(stmt: &serde_json::Value, out: &mut Vec<SubjectDigest>) -> Result<(), RefvalError> {
    let ty = stmt.get("_type").and_then(|t| t.as_str()).unwrap_or_default();
    if !ty.starts_with("https://in-toto.io/Statement/") {
        return Err(err(format!("not an in-toto Statement (_type {ty:?})")));
    }
    let predicate_type = stmt.get("predicateType").and_then(|t| t.as_str()).map(str::to_string);
    let builder_id = builder_id(stmt);
    let subjects = stmt.get("subject").and_then(|s| s.as_array()).ok_or_else(|| err("statement without `subject` array"))?;
    if subjects.len() > MAX_SUBJECTS {
        return Err(err(format!("more than {MAX_SUBJECTS} subjects")));
    }
    for s in subjects {
        let name = s.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string();
        let digests = s.get("digest").and_then(|d| d.as_object()).ok_or_else(|| err(format!("subject {name:?} has no digest")))?;
        for (alg, v) in digests {
            let hex = v.as_str().ok_or_else(|| err(format!("subject {name:?}: digest {alg} is not a string")))?;
            let norm = normalize_value(hex)?;
            if norm.is_empty() || norm.len() % 2 != 0 || !norm.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(err(format!("subject {name:?}: digest {alg} is not hexadecimal")));
            }
            out.push(SubjectDigest {
                subject: name.clone(),
                alg: alg.to_ascii_lowercase(),
                digest: norm,
                builder_id: builder_id.clone(),
                predicate_type: predicate_type.clone(),
            });
        }
    }
    Ok(())
}

/// The SLSA builder id: `runDetails.builder.id` (v1) or `builder.id` (v0.x).
fn builder_id(stmt: &serde_json::Value) -> Option<String> {
    let p = stmt.get("predicate")?;
    p.pointer("/runDetails/builder/id").or_else(|| p.pointer("/builder/id")).and_then(|v| v.as_str()).map(str::to_string)
}

/// Turn subject digests into reference values: all algorithms, or only
/// `alg` when given; `source` recorded on each (with the subject name).
pub fn to_ref_values(
    digests: &[SubjectDigest],
    alg: Option<&str>,
    source: &str,
    expires: Option<crate::UnixTime>,
) -> Result<Vec<RefValue>, RefvalError> {
    let picked: Vec<RefValue> = digests
        .iter()
        .filter(|d| alg.is_none_or(|a| d.alg.eq_ignore_ascii_case(a)))
        .map(|d| RefValue {
            value: d.digest.clone(),
            expires,
            builder_id: d.builder_id.clone(),
            digest_alg: Some(d.alg.clone()),
            source: Some(if d.subject.is_empty() { source.to_string() } else { format!("{source}#{}", d.subject) }),
        })
        .collect();
    if picked.is_empty() {
        let algs: Vec<&str> = digests.iter().map(|d| d.alg.as_str()).collect();
        return Err(err(format!("no subject digest uses {} (found: {})", alg.unwrap_or("any algorithm"), algs.join(", "))));
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement_v1() -> serde_json::Value {
        serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "image.uki", "digest": {"sha256": "AB".repeat(32), "sha384": "cd".repeat(48)}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {"buildDefinition": {}, "runDetails": {"builder": {"id": "https://ci.example/builder@v1"}}}
        })
    }

    #[test]
    fn reads_statement_envelope_bundle_and_jsonl() {
        let stmt = statement_v1();
        let payload = base64::engine::general_purpose::STANDARD.encode(stmt.to_string());
        let env = serde_json::json!({"payloadType": IN_TOTO_PAYLOAD_TYPE, "payload": payload, "signatures": []});
        let bundle = serde_json::json!({"mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.2", "dsseEnvelope": env});
        let jsonl = format!("{}\n\n{}\n", env, env);
        for doc in [stmt.to_string(), env.to_string(), bundle.to_string(), jsonl] {
            let d = subject_digests(doc.as_bytes()).unwrap();
            assert!(d.len() == 2 || d.len() == 4, "{d:?}");
            assert_eq!(d[0].builder_id.as_deref(), Some("https://ci.example/builder@v1"));
            assert_eq!(d[0].digest, "ab".repeat(32));
        }
    }

    #[test]
    fn slsa_v02_builder_and_algorithm_filter() {
        let stmt = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "subject": [{"name": "a", "digest": {"sha256": "00".repeat(32)}}, {"name": "b", "digest": {"sha384": "11".repeat(48)}}],
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "predicate": {"builder": {"id": "https://github.com/slsa-framework/slsa-github-generator"}}
        });
        let d = subject_digests(stmt.to_string().as_bytes()).unwrap();
        let v = to_ref_values(&d, Some("sha384"), "prov.json", None).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].value, "11".repeat(48));
        assert_eq!(v[0].source.as_deref(), Some("prov.json#b"));
        assert!(v[0].builder_id.as_deref().unwrap().contains("slsa-github-generator"));
        assert!(to_ref_values(&d, Some("sha512"), "p", None).is_err());
    }

    #[test]
    fn refuses_non_statements() {
        assert!(subject_digests(br#"{"payloadType": "text/plain", "payload": ""}"#).is_err());
        assert!(subject_digests(br#"{"_type": "other", "subject": []}"#).is_err());
        assert!(subject_digests(br#"{"_type": "https://in-toto.io/Statement/v1", "subject": []}"#).is_err());
        assert!(subject_digests(
            br#"{"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "x", "digest": {"sha256": "zz"}}]}"#
        )
        .is_err());
    }
}
