//! Appraisal: verified claims → EAR status and trustworthiness vector, by a
//! Rego policy (`cachet-appraise`).
//!
//! This is the ONE seam between verification and the token: [`appraise`].
//! The policy is the one the request names (a stored policy), or else the
//! TEE's default: a stored policy named `default-<tee>` when there is one,
//! otherwise the strict default policy shipped with `cachet-appraise`
//! (`crates/cachet-appraise/policies/<tee>.rego`). It sees the operator's
//! reference values of the store (plus those of `--reference-values`) live
//! at the verification instant; tenants' sets are for their release
//! policies only (`crate::refvals`).
//!
//! The attester does not choose what judges it: a policy it names must
//! declare the evidence's family (its `tees` rule; `default-<tee>` also
//! judges `<tee>`), else `403 policy_not_allowed`. Simulated evidence is
//! never affirming, whatever the policy says ([`run`] caps it at warning).
//!
//! Speed: the policy text is looked up in the store per request (a plain
//! SQL query, so several replicas sharing a database agree), but compiled
//! only once per distinct text: [`Appraiser`] keeps compiled policies in a
//! [`PolicyCache`] keyed by the policy's SHA-256, so a changed policy (a new
//! hash) is compiled once at its first use and the old one ages out.

use std::sync::{Arc, RwLock};

use axum::http::StatusCode;
use cachet_appraise::defaults::{default_policy_name, default_policy_text};
use cachet_appraise::{Appraisal, AppraisalInput, Policy, PolicyCache, ReferenceValues};
use cachet_keybroker::refvals::OwnerReferenceValues;
use cachet_store::Store;
use cachet_token::ear::{Status, TrustVector};
use cachet_verify::Tee;

use crate::error::ApiError;
use crate::AppState;

/// Compiled policies kept in memory.
pub const POLICY_CACHE_CAPACITY: usize = 64;

/// The compiled-policy cache and the live reference values of a server.
pub struct Appraiser {
    cache: PolicyCache,
    /// The operator's store sets merged over the `--reference-values` file's sets.
    refvals: RwLock<Arc<ReferenceValues>>,
    /// What each tenant's release policies read.
    release: RwLock<Arc<OwnerReferenceValues>>,
    /// The `--reference-values` file, if any (read once at start).
    file_refvals: Option<ReferenceValues>,
}

impl Appraiser {
    /// An appraiser with the reference values of `file_refvals` (store sets
    /// are added by [`Appraiser::reload_reference_values`]).
    pub fn new(file_refvals: Option<ReferenceValues>) -> Appraiser {
        let initial = file_refvals.clone().unwrap_or_default();
        Appraiser {
            cache: PolicyCache::new(POLICY_CACHE_CAPACITY),
            refvals: RwLock::new(Arc::new(initial)),
            release: RwLock::default(),
            file_refvals,
        }
    }

    /// The reference values policies see now.
    pub fn reference_values(&self) -> Arc<ReferenceValues> {
        self.refvals.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// What each tenant's release policies read now.
    pub fn release_reference_values(&self) -> Arc<OwnerReferenceValues> {
        self.release.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// The sets of the `--reference-values` file, if one is configured.
    pub fn file_reference_values(&self) -> Option<&ReferenceValues> {
        self.file_refvals.as_ref()
    }

    /// Re-read the reference-value sets of the store (after a change, and at
    /// start): operator sets replace file sets of the same name for
    /// appraisal; each tenant gets its release view
    /// ([`crate::refvals::views`]). Returns the tenants' views.
    pub async fn reload_reference_values(&self, store: &dyn Store) -> Result<Arc<OwnerReferenceValues>, ApiError> {
        let rows = store.list_reference_sets().await?;
        let views = crate::refvals::views(self.file_refvals.as_ref(), &rows).map_err(ApiError::internal)?;
        let release = Arc::new(views.release);
        if let Ok(mut r) = self.refvals.write() {
            *r = Arc::new(views.operator);
        }
        if let Ok(mut r) = self.release.write() {
            *r = release.clone();
        }
        Ok(release)
    }

    /// Keep an already validated policy so its first attestation does not compile it again.
    pub fn remember(&self, policy: Policy) -> Arc<Policy> {
        self.cache.insert(Arc::new(policy))
    }

    /// The compiled policy for `(name, text)`: cached, or compiled now.
    fn compiled(&self, name: &str, text: &str) -> Result<Arc<Policy>, ApiError> {
        self.cache
            .get_or_compile(name, text)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "policy_invalid", format!("policy {name}: {e}")))
    }
}

/// `sha-256:<hex>`, the form tokens and the admin API give a policy hash in.
pub fn hash_label(hex: &str) -> String {
    format!("sha-256:{hex}")
}

/// The text of policy `name`: the current stored version, or for
/// `default-<tee>` names without one, the shipped default. `None`: no such policy.
pub async fn policy_text(store: &dyn Store, name: &str) -> Result<Option<(String, PolicySource)>, ApiError> {
    if let Some(row) = store.get_policy(name, None).await? {
        return Ok(Some((row.text, PolicySource::Stored(row.version))));
    }
    let shipped = name.strip_prefix("default-").and_then(default_policy_text);
    Ok(shipped.map(|t| (t.to_string(), PolicySource::Builtin)))
}

/// Where a policy's text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    /// A stored version.
    Stored(i64),
    /// Shipped with Cachet (`cachet-appraise/policies/`).
    Builtin,
}

/// The compiled policy named `name` (stored, or a shipped default),
/// whatever it judges: for dry runs.
pub async fn named_policy(st: &AppState, name: &str) -> Result<Arc<Policy>, ApiError> {
    let (text, _) = policy_text(st.store.as_ref(), name)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "policy_unknown", format!("no policy named {name:?}")))?;
    st.appraiser.compiled(name, &text)
}

/// The TEE families a policy judges: those its `tees` rule declares, and
/// `<tee>` for a policy named `default-<tee>`.
pub fn judged_tees(policy: &Policy) -> Result<Vec<String>, ApiError> {
    let mut tees = policy
        .declared_tees()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "policy_invalid", format!("policy {}: {e}", policy.name())))?
        .unwrap_or_default();
    tees.extend(policy.name().strip_prefix("default-").map(str::to_string));
    tees.sort();
    tees.dedup();
    Ok(tees)
}

/// The compiled policy that appraises evidence of `tee`: `requested` (a
/// policy name) when it judges `tee` (`403 policy_not_allowed` otherwise:
/// the attester cannot pick a lenient policy written for another family),
/// else the TEE's default (`default-<tee>`, stored or shipped).
pub async fn resolve_policy(st: &AppState, tee: &str, requested: Option<&str>) -> Result<Arc<Policy>, ApiError> {
    let Some(name) = requested else {
        let name = default_policy_name(tee);
        let (text, _) = policy_text(st.store.as_ref(), &name)
            .await?
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "policy_unknown", format!("no default policy for TEE {tee:?}")))?;
        return st.appraiser.compiled(&name, &text);
    };
    let policy = named_policy(st, name).await?;
    let judged = judged_tees(&policy)?;
    if !judged.iter().any(|t| t == tee) {
        let declared = if judged.is_empty() { "no TEE family".to_string() } else { judged.join(", ") };
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "policy_not_allowed",
            format!(
                "policy {name:?} judges {declared}, not {tee} evidence; omit 'policy' to use default-{tee}, or ask the operator \
                 for a policy whose `tees` declares {tee:?}"
            ),
        ));
    }
    Ok(policy)
}

/// Appraise verified evidence of `tee` (its claims, runtime data and nonce
/// in `input`) with the policy `requested` or the TEE's default, and the
/// reference values live at `at`. The policy runs on the blocking pool.
pub async fn appraise(st: &AppState, tee: Tee, requested: Option<&str>, input: AppraisalInput, at: i64) -> Result<Appraisal, ApiError> {
    let policy = resolve_policy(st, tee.as_str(), requested).await?;
    let refvals = st.appraiser.reference_values();
    run(policy, input, refvals, at).await
}

/// Evaluate a compiled policy off the async threads. Simulated evidence
/// comes out at best `warning` ([`cap_simulated`]).
pub async fn run(policy: Arc<Policy>, input: AppraisalInput, refvals: Arc<ReferenceValues>, at: i64) -> Result<Appraisal, ApiError> {
    let name = policy.name().to_string();
    let simulated = input.tee == Tee::Simulated.as_str();
    let mut a = tokio::task::spawn_blocking(move || policy.evaluate(&input, &refvals, at))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "policy_evaluation_failed", format!("policy {name}: {e}")))?;
    if simulated {
        cap_simulated(&mut a);
    }
    Ok(a)
}

/// Simulated evidence is never affirming, whatever policy appraised it: a
/// software key signed it, so nothing about hardware was shown. An
/// affirming appraisal becomes a warning, with the reason.
pub fn cap_simulated(a: &mut Appraisal) {
    if a.status == cachet_appraise::Status::Affirming {
        a.status = cachet_appraise::Status::Warning;
        a.reasons.push(cachet_appraise::Reason {
            rule: "simulated_tee".into(),
            outcome: cachet_appraise::Status::Warning,
            detail: "simulated evidence is never affirming: a software key signed it (--insecure-simulated-tee)".into(),
        });
    }
}

/// The EAR status of an appraisal, as the token crate names it.
pub fn token_status(s: cachet_appraise::Status) -> Status {
    match s {
        cachet_appraise::Status::None => Status::None,
        cachet_appraise::Status::Affirming => Status::Affirming,
        cachet_appraise::Status::Warning => Status::Warning,
        cachet_appraise::Status::Contraindicated => Status::Contraindicated,
    }
}

/// The AR4SI vector of an appraisal, as the token crate holds it (no claim = 0).
pub fn token_vector(v: &cachet_appraise::TrustVector) -> TrustVector {
    TrustVector {
        instance_identity: v.instance_identity.unwrap_or(0),
        configuration: v.configuration.unwrap_or(0),
        executables: v.executables.unwrap_or(0),
        file_system: v.file_system.unwrap_or(0),
        hardware: v.hardware.unwrap_or(0),
        runtime_opaque: v.runtime_opaque.unwrap_or(0),
        storage_opaque: v.storage_opaque.unwrap_or(0),
        sourced_data: v.sourced_data.unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_vector_convert_without_loss() {
        for (a, t) in [
            (cachet_appraise::Status::None, Status::None),
            (cachet_appraise::Status::Affirming, Status::Affirming),
            (cachet_appraise::Status::Warning, Status::Warning),
            (cachet_appraise::Status::Contraindicated, Status::Contraindicated),
        ] {
            assert_eq!(token_status(a), t);
            assert_eq!(a.as_str(), t.as_str());
        }
        let v = cachet_appraise::TrustVector { hardware: Some(32), executables: Some(96), ..Default::default() };
        let t = token_vector(&v);
        assert_eq!((t.hardware, t.executables, t.configuration), (32, 96, 0));
        assert_eq!(serde_json::to_value(t).unwrap(), serde_json::to_value(v).unwrap());
    }

    #[test]
    fn hash_label_matches_the_token_form() {
        assert_eq!(hash_label("ab"), "sha-256:ab");
    }
}
