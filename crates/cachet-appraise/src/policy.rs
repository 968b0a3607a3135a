//! Compiled Rego appraisal policies: compile once, validate before use,
//! evaluate many times with explanations.
//!
//! ## The policy contract
//!
//! A policy is one Rego (v1 syntax) module, in any package except
//! `reference_values`. It reads
//!
//! * `input.tee` — the family (`"tdx"`, `"nitro"`, ...),
//! * `input.claims` — the verifier's normalized claims,
//! * `input.runtime_data`, `input.nonce` — when the attestation carried them,
//! * `data.reference_values.NAME` — the allowed values of each named set
//!   live at the appraisal instant (an array of strings; hex lowercase),
//!
//! and defines any of these rules of its package:
//!
//! * `instance_identity`, `configuration`, `executables`, `file_system`,
//!   `hardware`, `runtime_opaque`, `storage_opaque`, `sourced_data` — AR4SI
//!   trustworthiness claims (integers -128..=127, e.g. `hardware := 2`),
//! * `status` — `"affirming"`, `"warning"`, `"contraindicated"` or `"none"`,
//! * `reasons` — a set of `{"rule", "outcome", "detail"}` objects explaining
//!   each decision (`outcome` is one of the four status names),
//! * `claims` — an object of extra claims for the attestation token.
//!
//! The overall status is the **worst** of the vector's tiers, `status` and
//! every reason's outcome: a policy cannot affirm what one of its own rules
//! contraindicates. Other rules (helpers) are ignored.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ear::{sort_reasons, Appraisal, Reason, Status, TrustVector, VECTOR_CLAIMS};
use crate::refvals::ReferenceValues;
use crate::UnixTime;

/// Largest policy text accepted (bytes).
pub const MAX_POLICY_LEN: usize = 1 << 20;

/// Wall-clock limit of one evaluation; a policy that loops longer fails
/// instead of holding a server thread.
pub const EVAL_TIME_LIMIT: Duration = Duration::from_secs(1);

/// Prepared engines kept per policy (one per distinct live reference-value
/// content; usually one).
const PREPARED_PER_POLICY: usize = 4;

/// What a policy is given: the verified claims and what came with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppraisalInput {
    /// The evidence family, as `cachet_verify::Tee::as_str` prints it (or `"sim"`).
    pub tee: String,
    /// The verifier's normalized claims (a JSON object).
    pub claims: serde_json::Value,
    /// Runtime data bound into the evidence, when the attestation had some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_data: Option<serde_json::Value>,
    /// The freshness nonce, hex, when the attestation named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl AppraisalInput {
    /// Input with claims only.
    pub fn new(tee: &str, claims: serde_json::Value) -> AppraisalInput {
        AppraisalInput { tee: tee.to_string(), claims, runtime_data: None, nonce: None }
    }
}

/// Why a policy was refused or could not appraise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is larger than [`MAX_POLICY_LEN`] or not usable as Rego source.
    #[error("policy refused: {0}")]
    Refused(String),
    /// The Rego does not parse.
    #[error("policy syntax error: {0}")]
    Syntax(String),
    /// The Rego parses but does not compile (unknown function, unsafe variable, ...).
    #[error("policy does not compile: {0}")]
    Compile(String),
    /// Evaluating the policy failed (a builtin error, conflicting rule values, time limit).
    #[error("policy evaluation failed: {0}")]
    Evaluation(String),
    /// The policy produced a malformed appraisal (a vector value out of range, an unknown status).
    #[error("policy output is malformed: {0}")]
    Output(String),
    /// The policy defines none of the rules an appraisal is made of.
    #[error("policy makes no appraisal: {0}")]
    NoDecision(String),
}

/// A compiled policy. Compiling parses and analyses the Rego once; each
/// evaluation then clones a prepared engine (cheap: the modules and analysis
/// are shared) so evaluations run in parallel without locks held.
pub struct Policy {
    name: String,
    text: Arc<str>,
    hash: String,
    /// `data.<package>`: the query that evaluates every rule of the policy.
    query: String,
    /// Parsed, analysed engine without reference values.
    base: regorus::Engine,
    /// Engines with reference values added and analysis done, by live-content key.
    prepared: Mutex<Vec<([u8; 32], Arc<regorus::Engine>)>>,
    /// Its `tees` declaration, read once ([`Policy::declared_tees`]).
    tees: std::sync::OnceLock<Result<Option<Vec<String>>, PolicyError>>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("name", &self.name).field("hash", &self.hash).field("query", &self.query).finish()
    }
}

/// SHA-256 of a policy text, lowercase hex: what tokens record.
pub fn policy_hash(text: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref())
}

/// regorus reports errors as `anyhow::Error`; its alternate Display has the cause chain.
fn engine_error(e: &dyn std::fmt::Display) -> String {
    format!("{e:#}").trim().to_string()
}

impl Policy {
    /// Parse and compile a policy. Refuses text that is too large, does not
    /// parse, does not compile, or uses the reserved `reference_values`
    /// package. Does not run it: see [`Policy::validate`].
    pub fn compile(name: &str, text: &str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_LEN {
            return Err(PolicyError::Refused(format!("{} bytes is larger than the {MAX_POLICY_LEN}-byte limit", text.len())));
        }
        crate::bounds::check_text(text)?;
        let (name, text) = (name.to_string(), text.to_string());
        crate::bounds::run("compiling the policy", move || Self::compile_bounded(&name, &text))
    }

    /// [`Policy::compile`], on the bounded evaluation thread.
    fn compile_bounded(name: &str, text: &str) -> Result<Policy, PolicyError> {
        let mut engine = regorus::Engine::new();
        // The clock is read every 16 steps: a chain of growing steps stops
        // within the limit, long before it can exhaust memory.
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: EVAL_TIME_LIMIT,
            check_interval: NonZeroU32::MIN.saturating_add(15),
        });
        crate::bounds::install(&mut engine)?;
        let file = format!("{}.rego", if name.is_empty() { "policy" } else { name });
        let package = engine.add_policy(file, text.to_string()).map_err(|e| PolicyError::Syntax(engine_error(&e)))?;
        if package == "data.reference_values" || package.starts_with("data.reference_values.") {
            return Err(PolicyError::Refused(format!("package {} is reserved for reference values", package.trim_start_matches("data."))));
        }
        // Analyse once now (with empty reference values) so that errors the
        // parser does not see (unknown functions, unsafe variables) refuse
        // the policy here rather than at the first attestation.
        engine
            .add_data(regorus::Value::from(serde_json::json!({"reference_values": {}})))
            .map_err(|e| PolicyError::Compile(engine_error(&e)))?;
        let mut probe = engine.clone();
        if let Err(e) = probe.eval_query(package.clone(), false) {
            let msg = engine_error(&e);
            return Err(if is_static_error(&msg) { PolicyError::Compile(msg) } else { PolicyError::Evaluation(msg) });
        }
        engine.clear_data();
        Ok(Policy {
            name: name.to_string(),
            text: Arc::from(text),
            hash: policy_hash(text),
            query: package,
            base: engine,
            prepared: Mutex::new(Vec::new()),
            tees: std::sync::OnceLock::new(),
        })
    }

    /// Compile, then evaluate against the built-in sample claims of every
    /// TEE family (with and without reference values): a policy is accepted
    /// only when every evaluation succeeds, its output is well-formed, and
    /// it makes an appraisal for at least one sample. This is the check to
    /// run before storing a policy, so a broken one never replaces a working one.
    pub fn validate(name: &str, text: &str) -> Result<Policy, PolicyError> {
        Self::validate_with(name, text, &crate::samples::sample_inputs())
    }

    /// [`Policy::validate`] against the given sample inputs (e.g. the claims
    /// of real evidence of the family the policy is for).
    pub fn validate_with(name: &str, text: &str, samples: &[AppraisalInput]) -> Result<Policy, PolicyError> {
        let policy = Self::compile(name, text)?;
        let at = 0;
        let empty = ReferenceValues::new();
        let sample_refs = crate::samples::sample_reference_values(samples);
        let mut decided = false;
        for s in samples {
            for refs in [&empty, &sample_refs] {
                let out = policy.evaluate(s, refs, at).map_err(|e| prefix_sample(e, &s.tee))?;
                decided |= !out.trustworthiness_vector.is_empty() || out.status != Status::None;
            }
        }
        if !decided {
            return Err(PolicyError::NoDecision(format!(
                "for none of the sample inputs did it define `status` or an AR4SI claim ({})",
                VECTOR_CLAIMS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(policy)
    }

    /// The name given at compilation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of the text, lowercase hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The Rego text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The policy's package, as a data path (`data.cachet.tdx`).
    pub fn package(&self) -> &str {
        &self.query
    }

    /// The TEE families the policy declares it judges: its `tees` rule, a
    /// set (or array) of family names that does not depend on the input
    /// (it is read without one), e.g. `tees := {"tdx", "az-tdx-vtpm"}`.
    /// `Ok(None)`: the policy declares none. The service lets an attester
    /// request a policy only for evidence of a family it declares, so the
    /// declaration is part of the policy text (its hash and signature).
    pub fn declared_tees(&self) -> Result<Option<Vec<String>>, PolicyError> {
        self.tees.get_or_init(|| self.read_tees()).clone()
    }

    fn read_tees(&self) -> Result<Option<Vec<String>>, PolicyError> {
        let engine = self.engine_for(&ReferenceValues::new(), 0)?;
        let query = format!("{}.tees", self.query);
        let out = crate::bounds::run("reading the policy's tees", move || {
            let mut e = (*engine).clone();
            let results = e.eval_query(query, false).map_err(|err| PolicyError::Evaluation(engine_error(&err)))?;
            results.result.first().and_then(|r| r.expressions.first()).map(|x| output_json(&x.value)).transpose()
        })?;
        let items = match out {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::Array(items)) => items,
            Some(other) => return Err(PolicyError::Output(format!("`tees` must be a set of TEE family names, got {other}"))),
        };
        let mut tees = items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| PolicyError::Output(format!("`tees` must hold TEE family names (strings), got {t}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        tees.sort();
        tees.dedup();
        Ok(Some(tees))
    }

    /// Appraise claims with the reference values live at `at` (Unix seconds).
    /// Runs on a bounded evaluation thread (see [`crate::bounds`]): a policy
    /// that overruns the time limit or makes an oversized value fails with
    /// [`PolicyError::Evaluation`]; an input larger than
    /// [`crate::bounds::MAX_VALUE_BYTES`] is refused before evaluation.
    pub fn evaluate(&self, input: &AppraisalInput, refvals: &ReferenceValues, at: UnixTime) -> Result<Appraisal, PolicyError> {
        let input_json = serde_json::to_value(input).map_err(|err| PolicyError::Evaluation(format!("input: {err}")))?;
        let input_value = regorus::Value::from(input_json);
        if crate::bounds::flat_size(&input_value, crate::bounds::MAX_VALUE_BYTES).is_none() {
            return Err(PolicyError::Evaluation(format!(
                "the appraisal input is larger than {} bytes; send less runtime data",
                crate::bounds::MAX_VALUE_BYTES
            )));
        }
        let engine = self.engine_for(refvals, at)?;
        let query = self.query.clone();
        let out = crate::bounds::run("evaluating the policy", move || {
            let mut e = (*engine).clone();
            e.set_input(input_value);
            let results = e.eval_query(query, false).map_err(|err| PolicyError::Evaluation(engine_error(&err)))?;
            results.result.first().and_then(|r| r.expressions.first()).map_or(Ok(serde_json::Value::Null), |x| output_json(&x.value))
        })?;
        self.appraisal_from_output(&out)
    }

    /// The prepared engine for the reference values live at `at`: from the
    /// cache, or built (reference values added, analysis run) and cached.
    fn engine_for(&self, refvals: &ReferenceValues, at: UnixTime) -> Result<Arc<regorus::Engine>, PolicyError> {
        let key = refvals.live_key(at);
        if let Ok(cache) = self.prepared.lock() {
            if let Some((_, e)) = cache.iter().find(|(k, _)| *k == key) {
                return Ok(e.clone());
            }
        }
        let mut engine = self.base.clone();
        engine
            .add_data(regorus::Value::from(refvals.live_data(at)))
            .map_err(|e| PolicyError::Evaluation(format!("reference values: {}", engine_error(&e))))?;
        // Run the analysis now, once, so clones start prepared. The result of
        // this input-less evaluation is irrelevant; overrunning is not.
        let query = self.query.clone();
        let engine = Arc::new(crate::bounds::run("preparing the policy", move || {
            let _ = engine.eval_query(query, false);
            Ok(engine)
        })?);
        if let Ok(mut cache) = self.prepared.lock() {
            if cache.len() >= PREPARED_PER_POLICY {
                cache.remove(0);
            }
            cache.push((key, engine.clone()));
        }
        Ok(engine)
    }

    /// Read the rules of the policy's package into an appraisal.
    fn appraisal_from_output(&self, out: &serde_json::Value) -> Result<Appraisal, PolicyError> {
        let empty = serde_json::Map::new();
        let obj = match out {
            serde_json::Value::Object(o) => o,
            serde_json::Value::Null => &empty,
            other => return Err(PolicyError::Output(format!("the package evaluated to {other}, not an object of rules"))),
        };
        let mut vector = TrustVector::default();
        for (rule, _) in VECTOR_CLAIMS {
            if let Some(v) = obj.get(rule) {
                let n = v
                    .as_i64()
                    .filter(|n| (-128..=127).contains(n))
                    .ok_or_else(|| PolicyError::Output(format!("`{rule}` must be an AR4SI integer in -128..127, got {v}")))?;
                if let Some(slot) = vector.slot_mut(rule) {
                    *slot = Some(n as i8);
                }
            }
        }
        let explicit = match obj.get("status") {
            None => None,
            Some(serde_json::Value::String(s)) => Some(
                Status::parse(s)
                    .ok_or_else(|| PolicyError::Output(format!("`status` must be one of {}, got {s:?}", Status::NAMES.join(", "))))?,
            ),
            Some(other) => return Err(PolicyError::Output(format!("`status` must be a string, got {other}"))),
        };
        let mut reasons = match obj.get("reasons") {
            None => Vec::new(),
            Some(serde_json::Value::Array(items)) => items.iter().map(parse_reason).collect::<Result<Vec<_>, _>>()?,
            Some(other) => return Err(PolicyError::Output(format!("`reasons` must be a set of objects, got {other}"))),
        };
        sort_reasons(&mut reasons);
        let claims = match obj.get("claims") {
            None => serde_json::Map::new(),
            Some(serde_json::Value::Object(m)) => m.clone(),
            Some(other) => return Err(PolicyError::Output(format!("`claims` must be an object, got {other}"))),
        };
        let status =
            reasons.iter().map(|r| r.outcome).chain(explicit).chain(std::iter::once(vector.status())).max().unwrap_or(Status::None);
        Ok(Appraisal {
            status,
            trustworthiness_vector: vector,
            reasons,
            claims,
            policy_name: self.name.clone(),
            policy_hash: self.hash.clone(),
        })
    }
}

/// A rule value as JSON, refused when larger than the value limit: a
/// policy's rules can hold structures that are cheap to build (shared) but
/// enormous written out.
fn output_json(v: &regorus::Value) -> Result<serde_json::Value, PolicyError> {
    if crate::bounds::flat_size(v, crate::bounds::MAX_VALUE_BYTES).is_none() {
        return Err(PolicyError::Output(format!(
            "the policy's rules hold a value larger than {} bytes written out; keep large intermediate values inside rule bodies",
            crate::bounds::MAX_VALUE_BYTES
        )));
    }
    Ok(serde_json::to_value(v).unwrap_or(serde_json::Value::Null))
}

fn parse_reason(v: &serde_json::Value) -> Result<Reason, PolicyError> {
    let o = v.as_object().ok_or_else(|| PolicyError::Output(format!("a reason must be an object, got {v}")))?;
    let rule = o
        .get("rule")
        .and_then(|r| r.as_str())
        .ok_or_else(|| PolicyError::Output(format!("a reason needs a string `rule`: {v}")))?
        .to_string();
    let outcome = o
        .get("outcome")
        .and_then(|r| r.as_str())
        .and_then(Status::parse)
        .ok_or_else(|| PolicyError::Output(format!("reason `{rule}`: `outcome` must be one of {}", Status::NAMES.join(", "))))?;
    let detail = match o.get("detail") {
        None => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    Ok(Reason { rule, outcome, detail })
}

fn prefix_sample(e: PolicyError, tee: &str) -> PolicyError {
    let p = |m: String| format!("on the sample {tee} claims: {m}");
    match e {
        PolicyError::Evaluation(m) => PolicyError::Evaluation(p(m)),
        PolicyError::Output(m) => PolicyError::Output(p(m)),
        other => other,
    }
}

/// Errors regorus reports while analysing (before evaluating anything).
fn is_static_error(msg: &str) -> bool {
    ["unknown function", "undefined function", "var ", "unsafe", "recursion", "not defined", "unknown builtin", "could not find"]
        .iter()
        .any(|s| msg.contains(s))
}

/// Compiled policies by SHA-256 of their text, so each policy is compiled
/// once however many requests name it. Bounded: the least recently
/// inserted entry is dropped when full.
pub struct PolicyCache {
    capacity: usize,
    entries: Mutex<Vec<Arc<Policy>>>,
}

impl PolicyCache {
    /// A cache holding at most `capacity` compiled policies.
    pub fn new(capacity: usize) -> PolicyCache {
        PolicyCache { capacity: capacity.max(1), entries: Mutex::new(Vec::new()) }
    }

    /// The compiled policy for this text (compiled now if not cached).
    /// Same text under another name gets its own entry so appraisals
    /// name the policy the caller chose.
    pub fn get_or_compile(&self, name: &str, text: &str) -> Result<Arc<Policy>, PolicyError> {
        let hash = policy_hash(text);
        if let Some(p) = self.get(name, &hash) {
            return Ok(p);
        }
        let p = Arc::new(Policy::compile(name, text)?);
        Ok(self.insert(p))
    }

    /// A cached policy by name and hash.
    pub fn get(&self, name: &str, hash: &str) -> Option<Arc<Policy>> {
        let entries = self.entries.lock().ok()?;
        entries.iter().find(|p| p.hash == hash && p.name == name).cloned()
    }

    /// Cache an already compiled (e.g. validated) policy.
    pub fn insert(&self, policy: Arc<Policy>) -> Arc<Policy> {
        if let Ok(mut entries) = self.entries.lock() {
            if let Some(existing) = entries.iter().find(|p| p.hash == policy.hash && p.name == policy.name) {
                return existing.clone();
            }
            if entries.len() >= self.capacity {
                entries.remove(0);
            }
            entries.push(policy.clone());
        }
        policy
    }

    /// Number of cached policies.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
package t
import rego.v1
default hardware := 97
hardware := 2 if input.claims.ok
reasons contains {"rule": "ok", "outcome": "affirming", "detail": "ok"} if input.claims.ok
"#;

    #[test]
    fn engines_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Policy>();
        assert_send_sync::<PolicyCache>();
    }

    #[test]
    fn hash_is_sha256_of_text() {
        let p = Policy::compile("t", SMALL).unwrap();
        assert_eq!(p.hash(), policy_hash(SMALL));
        assert_eq!(p.hash().len(), 64);
        assert_eq!(policy_hash(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn cache_compiles_once_per_text() {
        let c = PolicyCache::new(2);
        let a = c.get_or_compile("t", SMALL).unwrap();
        let b = c.get_or_compile("t", SMALL).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let _ = c.get_or_compile("u", SMALL).unwrap();
        let _ = c.get_or_compile("v", SMALL).unwrap();
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn reason_outcome_cannot_be_outvoted() {
        let p = Policy::compile(
            "t",
            r#"package t
import rego.v1
hardware := 2
status := "affirming"
reasons contains {"rule": "x", "outcome": "contraindicated", "detail": "no"}"#,
        )
        .unwrap();
        let a = p.evaluate(&AppraisalInput::new("sim", serde_json::json!({})), &ReferenceValues::new(), 0).unwrap();
        assert_eq!(a.status, Status::Contraindicated);
    }
}
