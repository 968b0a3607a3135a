//! Appraisal policy management: `/v1/admin/policies/...`.
//!
//! A policy is Rego (see `cachet_appraise::policy` for the contract). Every
//! version is kept (who stored it, when, its hash); the current one is the
//! highest. A policy is validated — compiled, and run on sample claims of
//! every TEE family (`Policy::validate`) — before it is stored, so a broken
//! or failing policy is refused (`422 policy_invalid`) and never replaces a
//! working one. `default-<tee>` names the TEE's default policy: storing one
//! overrides the default shipped with Cachet for that TEE. Every other
//! stored policy declares the TEE families it judges (`tees := {"tdx"}`),
//! the only families an attester may request it for (`check_tees`).
//! These are operator routes: tenant keys get `403 operator_only`.
//!
//! With policy-signing certificates configured (`--policy-signing-cert`),
//! a policy is accepted only as `{"jws": ...}`, signed by the key of one of
//! them (`crate::policy_signing`); the signature is checked before the
//! policy is validated, so a refused upload never replaces a stored version.
//! Each version stored from a JWS keeps its signer (shown by `GET` and the
//! versions listing) and the JWS itself (so its signature can be checked
//! again later); versions stored unsigned have neither.
//!
//! `POST .../{name}/evaluate` is a dry run: it verifies the given evidence,
//! appraises it, and returns each verification check and each policy rule's
//! outcome, without issuing a token or consuming a nonce.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use cachet_appraise::{Appraisal, Policy};
use cachet_store::{AuditEntry, PolicyRow};
use cachet_verify::VerifyRequest;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use crate::appraisal::{self, hash_label, PolicySource};
use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::policy_signing::{self, SignedPolicy, SignerInfo};
use crate::routes::{self, EndorsementIn};
use crate::{now, AppState};

/// Longest policy name.
pub const MAX_NAME_LEN: usize = 128;

/// A policy version as listed (without its text).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyInfo {
    /// Policy name.
    pub name: String,
    /// Version (from 1); 0 for a shipped default that was never stored.
    pub version: i64,
    /// `sha-256:<hex>` of the text: what tokens record as `cachet.policy_hash`.
    pub hash: String,
    /// `stored` or `builtin` (shipped with Cachet).
    pub source: String,
    /// When this version was stored (absent for builtin policies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    /// Who stored it (`api-key:<id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The certificate whose key signed this version, recorded with it when
    /// it was stored from a JWS (the audit entry `policy.put` names it too).
    /// Absent for versions stored unsigned and for builtin policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<SignerInfo>,
}

impl PolicyInfo {
    /// The listing of a stored version, with its recorded signer. A signer
    /// record that does not parse is an error (500), never shown as
    /// "unsigned": that would misstate who approved the version.
    pub fn stored(r: &PolicyRow) -> Result<Self, ApiError> {
        let signer = match &r.signer {
            None => None,
            Some(json) => Some(serde_json::from_str::<SignerInfo>(json).map_err(|e| {
                ApiError::internal(format!("policy {:?} version {}: stored signer record is corrupt: {e}", r.name, r.version))
            })?),
        };
        Ok(PolicyInfo {
            name: r.name.clone(),
            version: r.version,
            hash: r.hash.clone(),
            source: "stored".into(),
            created_at: Some(r.created_at),
            created_by: Some(r.created_by.clone()),
            signer,
        })
    }
}

/// A policy with its text.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyDoc {
    /// Name, version, hash, provenance.
    #[serde(flatten)]
    pub info: PolicyInfo,
    /// The Rego text.
    pub policy: String,
}

/// A policy to store: exactly one of `policy` and `jws`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutPolicy {
    /// The Rego text (v1 syntax). Refused (`policy_signature_required`)
    /// when the server has policy-signing certificates.
    #[serde(default)]
    pub policy: Option<String>,
    /// The policy as a compact JWS (RFC 7515) whose payload is the Rego
    /// text, signed (ES256, ES384, PS256 or RS256) by the key of a configured
    /// policy-signing certificate (`cachet admin policy sign` makes one).
    #[serde(default)]
    pub jws: Option<String>,
}

/// Which version to read.
#[derive(Debug, Deserialize, IntoParams)]
pub struct VersionQuery {
    /// A version number (default: the current one).
    pub version: Option<i64>,
}

/// Evidence to appraise in a dry run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// Evidence family (as in `POST /v1/attest`).
    pub tee: String,
    /// The evidence bytes, base64.
    pub evidence: String,
    /// Endorsements the verifier needs.
    #[serde(default)]
    pub endorsements: Vec<EndorsementIn>,
    /// Verify as of this instant (RFC 3339); only with `--allow-verification-time`.
    #[serde(default)]
    pub at: Option<String>,
    /// Runtime data (base64) to show the policy as `input.runtime_data`.
    #[serde(default)]
    pub runtime_data: Option<String>,
    /// A candidate policy text to evaluate instead of the stored one (not stored).
    #[serde(default)]
    pub policy: Option<String>,
}

/// One verification check.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckOut {
    /// Check name, e.g. `PCK CRL`.
    pub name: String,
    /// Passed?
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// The explanation of a dry run.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EvaluateResponse {
    /// The family.
    pub tee: String,
    /// Whether the evidence verified.
    pub verified: bool,
    /// Each verification check, in order.
    pub checks: Vec<CheckOut>,
    /// The failing check, when the evidence did not verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// The verified claims (what the policy saw).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<Value>,
    /// The policy used: name and `sha-256:<hex>` hash.
    pub policy: Value,
    /// The appraisal: `status`, `trustworthiness_vector`, `reasons` (each
    /// rule's outcome), `claims` (extra token claims).
    #[schema(value_type = Object)]
    pub appraisal: Appraisal,
}

/// Policy names: letters, digits, `_`, `-`, `.`; at most [`MAX_NAME_LEN`].
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("policy name must be 1..{MAX_NAME_LEN} letters, digits, '_', '-', '.'")))
    }
}

/// A stored policy says which TEE families it judges (its `tees` rule),
/// naming only known families: an attester may request it only for
/// evidence of those. `default-<tee>` judges `<tee>` by its name; if it
/// declares families, `<tee>` must be among them.
fn check_tees(name: &str, policy: &Policy) -> Result<(), cachet_appraise::PolicyError> {
    use cachet_appraise::PolicyError::Refused;
    let declared = policy.declared_tees()?;
    let known: Vec<&str> = cachet_verify::Tee::ALL.iter().map(|t| t.as_str()).collect();
    if let Some(bad) = declared.iter().flatten().find(|t| !known.contains(&t.as_str())) {
        return Err(Refused(format!("`tees` names {bad:?}, which is not a TEE family (one of {})", known.join(", "))));
    }
    match (name.strip_prefix("default-"), declared) {
        (Some(tee), Some(d)) if !d.iter().any(|t| t == tee) => {
            Err(Refused(format!("policy {name} judges {tee} evidence: its `tees` must include {tee:?}")))
        }
        (None, None) => Err(Refused(
            "declare the TEE families this policy judges, e.g. `tees := {\"tdx\"}`: an attester may request it only for evidence of those"
                .into(),
        )),
        (None, Some(d)) if d.is_empty() => Err(Refused("`tees` is empty: declare at least one TEE family this policy judges".into())),
        _ => Ok(()),
    }
}

pub(crate) fn policy_invalid(e: cachet_appraise::PolicyError) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "policy_invalid", e.to_string())
}

fn builtin_info(name: &str, text: &str) -> PolicyInfo {
    PolicyInfo {
        name: name.to_string(),
        version: 0,
        hash: hash_label(&cachet_appraise::policy_hash(text)),
        source: "builtin".into(),
        created_at: None,
        created_by: None,
        signer: None,
    }
}

/// List policies: the current version of each stored policy, and each
/// shipped default not overridden by a stored one.
#[utoipa::path(get, path = "/v1/admin/policies", tag = "admin", security(("api_key" = ["reader", "operator"])),
    responses((status = 200, body = [PolicyInfo]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_policies(State(st): State<AppState>) -> Result<Json<Vec<PolicyInfo>>, ApiError> {
    let stored = st.store.list_policies().await?;
    let mut out: Vec<PolicyInfo> = stored.iter().map(PolicyInfo::stored).collect::<Result<_, _>>()?;
    for (tee, text) in cachet_appraise::defaults::DEFAULT_POLICIES {
        let name = cachet_appraise::defaults::default_policy_name(tee);
        if !stored.iter().any(|r| r.name == name) {
            out.push(builtin_info(&name, text));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out))
}

/// Read a policy (current version, or `?version=N`); shipped defaults
/// (`default-<tee>`) are readable too.
#[utoipa::path(get, path = "/v1/admin/policies/{name}", tag = "admin", security(("api_key" = ["reader", "operator"])),
    params(("name" = String, Path, description = "Policy name"), VersionQuery),
    responses((status = 200, body = PolicyDoc), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_policy(
    State(st): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> Result<Json<PolicyDoc>, ApiError> {
    check_name(&name)?;
    if let Some(row) = st.store.get_policy(&name, q.version).await? {
        return Ok(Json(PolicyDoc { info: PolicyInfo::stored(&row)?, policy: row.text }));
    }
    if q.version.is_none_or(|v| v == 0) {
        if let Some((text, PolicySource::Builtin)) = appraisal::policy_text(st.store.as_ref(), &name).await? {
            return Ok(Json(PolicyDoc { info: builtin_info(&name, &text), policy: text }));
        }
    }
    Err(ApiError::not_found(format!("no policy {name:?}{}", q.version.map(|v| format!(" version {v}")).unwrap_or_default())))
}

/// Every stored version of a policy (who stored it, when, hash, and who
/// signed it if it was uploaded signed), oldest first.
#[utoipa::path(get, path = "/v1/admin/policies/{name}/versions", tag = "admin", security(("api_key" = ["reader", "operator"])),
    params(("name" = String, Path, description = "Policy name")),
    responses((status = 200, body = [PolicyInfo]), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn policy_versions(State(st): State<AppState>, Path(name): Path<String>) -> Result<Json<Vec<PolicyInfo>>, ApiError> {
    check_name(&name)?;
    let rows = st.store.policy_versions(&name).await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!("no stored policy {name:?}")));
    }
    Ok(Json(rows.iter().map(PolicyInfo::stored).collect::<Result<_, _>>()?))
}

/// Append a `policy.put` refusal to the audit log (a failure to do so is
/// logged: the refusal stands either way).
async fn audit_refusal(st: &AppState, p: &Principal, code: &str, detail: Value) {
    let entry = AuditEntry {
        ts: now(),
        actor: p.actor(),
        action: "policy.put".into(),
        outcome: "refused".into(),
        failed_check: Some(code.into()),
        detail,
        ..Default::default()
    };
    if let Err(err) = st.store.append_audit(&entry).await {
        tracing::error!(error = %err, "cannot append to the audit log");
    }
}

/// A verified policy signature, as it is stored with the version.
struct Signature {
    /// Who signed.
    signer: SignerInfo,
    /// The compact JWS as verified (surrounding whitespace removed).
    jws: String,
}

/// The policy text of a `PUT` body, and its verified signature: plain Rego
/// when no policy-signing certificate is configured, else only a JWS that
/// one of them verifies (at the current time). Refusals are audited.
async fn policy_text(st: &AppState, p: &Principal, name: &str, req: PutPolicy) -> Result<(String, Option<Signature>), ApiError> {
    let signers = &st.policy_signers;
    match (req.policy, req.jws) {
        (Some(_), Some(_)) => Err(ApiError::invalid("give either 'policy' (Rego text) or 'jws' (a signed policy), not both")),
        (None, None) => Err(ApiError::invalid("the body needs 'policy' (Rego text) or 'jws' (a signed policy)")),
        (Some(text), None) if signers.is_empty() => Ok((text, None)),
        (Some(text), None) => {
            let message = format!(
                "this server accepts only signed policies ({} policy-signing certificate(s) configured): sign the Rego text with \
                 `cachet admin policy sign --name {name} --version N --key KEY.pem --cert CERT.pem POLICY.rego > POLICY.jws` \
                 and send {{\"jws\": <its content>}}",
                signers.signers().len()
            );
            let hash = hash_label(&cachet_appraise::policy_hash(&text));
            audit_refusal(st, p, policy_signing::SIGNATURE_REQUIRED, json!({"name": name, "hash": hash, "error": message})).await;
            Err(ApiError::new(StatusCode::BAD_REQUEST, policy_signing::SIGNATURE_REQUIRED, message))
        }
        (None, Some(_)) if signers.is_empty() => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            policy_signing::SIGNING_NOT_CONFIGURED,
            "this server has no policy-signing certificates (--policy-signing-cert), so it cannot check a signature: \
             send the Rego text as {\"policy\": ...}, or configure the signer's certificate",
        )),
        (None, Some(jws)) => {
            let signed = match signers.verify(&jws, now()) {
                Ok(signed) => signed,
                Err(e) => {
                    audit_refusal(st, p, e.code(), json!({"name": name, "error": e.to_string()})).await;
                    return Err(e.into());
                }
            };
            if let Err(e) = check_binding(st, name, &signed).await {
                audit_refusal(st, p, e.code, json!({"name": name, "signer": signed.signer, "error": e.message})).await;
                return Err(e);
            }
            // The JWS exactly as verified (`verify` ignores only surrounding
            // whitespace), so it verifies again later.
            let jws = jws.trim_matches(|c: char| c.is_ascii_whitespace()).to_string();
            Ok((signed.text, Some(Signature { signer: signed.signer, jws })))
        }
    }
}

/// A signature binds the text to one name and version: refuse it under
/// another name, and unless its version is greater than every signed
/// version stored under this name (so an older signed version cannot be
/// re-uploaded to roll back, nor the current one replayed).
async fn check_binding(st: &AppState, name: &str, signed: &SignedPolicy) -> Result<(), ApiError> {
    if signed.name != name {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            policy_signing::NAME_MISMATCH,
            format!(
                "this policy was signed for the name {:?}, not {name:?}: store it under {:?}, or have it signed for {name:?} \
                 (cachet admin policy sign --name {name} ...)",
                signed.name, signed.name
            ),
        ));
    }
    let newest = st
        .store
        .policy_versions(name)
        .await?
        .iter()
        .filter_map(|row| row.signer.as_deref().and_then(|s| serde_json::from_str::<SignerInfo>(s).ok()).and_then(|s| s.version))
        .max();
    if let Some(newest) = newest.filter(|n| signed.version <= *n) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            policy_signing::ROLLBACK,
            format!(
                "signed version {} of {name:?} is not newer than signed version {newest} already stored: an older (or the same) \
                 signed policy cannot be stored again; sign the text with --version {}",
                signed.version,
                newest + 1
            ),
        ));
    }
    Ok(())
}

/// Store a new version of a policy, after validating it: compiled, and run
/// on sample claims of every TEE family. A policy that fails is refused with
/// `422 policy_invalid` and the previous version keeps serving. With
/// policy-signing certificates configured, only `{"jws": ...}` signed by one
/// of them is accepted, and its signer and the JWS are stored with the version.
#[utoipa::path(put, path = "/v1/admin/policies/{name}", tag = "admin", security(("api_key" = ["admin", "operator"])),
    params(("name" = String, Path, description = "Policy name (`default-<tee>` overrides that TEE's default)")),
    request_body = PutPolicy,
    responses((status = 201, body = PolicyInfo),
              (status = 422, description = "policy_invalid: does not parse, compile, or run cleanly on the sample claims; \
                policy_signature_invalid, policy_signer_unknown, policy_signer_not_valid, policy_signature_unbound, \
                policy_signature_name_mismatch, policy_signature_rollback: a signed policy refused", body = ErrorBody),
              (status = 400, description = "policy_signature_required (signing configured, plain Rego sent), \
                policy_signing_not_configured (a JWS sent, no signing configured), invalid_request", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_policy(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<PutPolicy>,
) -> Result<(StatusCode, Json<PolicyInfo>), ApiError> {
    check_name(&name)?;
    let (text, signature) = policy_text(&st, &p, &name, req).await?;
    let signer = signature.as_ref().map(|s| s.signer.clone());
    let n = name.clone();
    let t = text.clone();
    let validated = tokio::task::spawn_blocking(move || Policy::validate(&n, &t).and_then(|p| check_tees(&n, &p).map(|()| p)))
        .await
        .map_err(ApiError::internal)?;
    let policy = match validated {
        Ok(policy) => policy,
        Err(e) => {
            let mut detail = json!({"name": name, "hash": hash_label(&cachet_appraise::policy_hash(&text)), "error": e.to_string()});
            if let Some(s) = &signer {
                detail["signer"] = json!(s);
            }
            audit_refusal(&st, &p, "policy_invalid", detail).await;
            return Err(policy_invalid(e));
        }
    };
    let signer_json = signer.as_ref().map(serde_json::to_string).transpose().map_err(ApiError::internal)?;
    let mut row = PolicyRow {
        name: name.clone(),
        version: 0,
        hash: hash_label(policy.hash()),
        text,
        created_at: now(),
        created_by: p.actor(),
        signer: signer_json,
        jws: signature.map(|s| s.jws),
    };
    let audit = AuditEntry {
        ts: row.created_at,
        actor: p.actor(),
        action: "policy.put".into(),
        outcome: "ok".into(),
        detail: match &signer {
            Some(s) => json!({"name": name, "hash": row.hash, "signer": s}),
            None => json!({"name": name, "hash": row.hash}),
        },
        ..Default::default()
    };
    row.version = st.store.put_policy(&row, &audit).await?;
    st.appraiser.remember(policy);
    tracing::info!(policy = %name, version = row.version, hash = %row.hash, signer = ?signer.as_ref().map(|s| &s.subject), "policy stored");
    Ok((StatusCode::CREATED, Json(PolicyInfo::stored(&row)?)))
}

/// Dry run: verify the evidence and appraise it with this policy (or the
/// candidate text in the body); returns each verification check and each
/// policy rule's outcome. Issues no token and consumes no nonce.
#[utoipa::path(post, path = "/v1/admin/policies/{name}/evaluate", tag = "admin", security(("api_key" = ["reader", "operator"])),
    params(("name" = String, Path, description = "Policy name")),
    request_body = EvaluateRequest,
    responses((status = 200, body = EvaluateResponse),
              (status = 422, description = "policy_invalid (a candidate text) or policy_evaluation_failed", body = ErrorBody),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn evaluate(
    State(st): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<EvaluateRequest>,
) -> Result<Json<EvaluateResponse>, ApiError> {
    check_name(&name)?;
    let at = routes::verification_time(&st, req.at.as_deref(), now())?;
    let (tee, evidence, endorsements) = routes::decode_evidence(&req.tee, &req.evidence, &req.endorsements)?;
    let runtime_data = routes::decode_runtime_data(req.runtime_data.as_deref())?;
    let policy: Arc<Policy> = match &req.policy {
        Some(text) => {
            let (n, t) = (name.clone(), text.clone());
            Arc::new(
                tokio::task::spawn_blocking(move || Policy::compile(&n, &t)).await.map_err(ApiError::internal)?.map_err(policy_invalid)?,
            )
        }
        None => {
            if appraisal::policy_text(st.store.as_ref(), &name).await?.is_none() {
                return Err(ApiError::not_found(format!("no policy {name:?}")));
            }
            // A dry run tries any policy on any evidence (operators only).
            appraisal::named_policy(&st, &name).await?
        }
    };
    let permit = st.verify_slots.clone().acquire_owned().await.map_err(ApiError::internal)?;
    let anchors = st.anchors.clone();
    let verification = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        cachet_verify::verify(
            tee,
            &VerifyRequest { evidence: &evidence, endorsements: &endorsements, anchors: &anchors, at, expected_nonce: None },
        )
    })
    .await
    .map_err(ApiError::internal)?;
    let checks = verification.checks.iter().map(|c| CheckOut { name: c.name.clone(), ok: c.ok, detail: c.detail.clone() }).collect();
    let policy_info = json!({"name": policy.name(), "hash": hash_label(policy.hash())});
    let (verified, error, claims, appraisal) = match verification.result {
        Ok(claims) => {
            let input = routes::appraisal_input(tee, &claims, runtime_data.as_deref(), None);
            let a = appraisal::run(policy.clone(), input, st.appraiser.reference_values(), at).await.map_err(|mut e| {
                e.status = StatusCode::UNPROCESSABLE_ENTITY;
                e
            })?;
            (true, None, Some(claims), a)
        }
        Err(e) => {
            let a = Appraisal::verification_failed(policy.name(), policy.hash(), &e.check, &e.message);
            (false, Some(json!({"check": e.check, "message": e.message})), None, a)
        }
    };
    Ok(Json(EvaluateResponse { tee: tee.as_str().to_string(), verified, checks, error, claims, policy: policy_info, appraisal }))
}
