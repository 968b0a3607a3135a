//! Key broker routes: owners' secrets (admin API, scoped to the API key's
//! tenant) and `POST /v1/secrets/release` (public; an attestation token, or
//! evidence attested in the same call, is the credential).
//!
//! Owner scoping: every secret route takes the owner from the caller's API
//! key (its tenant), never from the request, and the store is keyed by
//! `(owner, name)`, so a tenant can neither read, overwrite, delete, list
//! nor see releases of another tenant's secret. Values are write-only over
//! the admin API: only attested workloads receive them, as JWEs.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use cachet_keybroker::{BrokerError, ReleaseRequest, ReleaseResponse, SecretMeta, SecretRecord, SecretStore, SecretValue};
use cachet_store::audit::bound_text;
use cachet_store::{AuditEntry, AuditRecord, SecretRow, Store};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroize;

use cachet_attester::release::{self, StatedResult};

use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::routes::AttestRequest;
use crate::{now, AppState};

/// Most secrets one tenant may list at once (all of them, in practice).
const MAX_LIST: usize = 10_000;

/// Longest valid `owner/name` reference; longer ones are cut (with their
/// hash) where they are logged or audited.
const MAX_SECRET_REF: usize = 2 * cachet_keybroker::broker::MAX_NAME_LEN + 1;

/// The key broker's view of the service store.
pub struct StoreSecrets(pub Arc<dyn Store>);

fn row_of(r: &SecretRecord) -> Result<SecretRow, BrokerError> {
    Ok(SecretRow {
        owner: r.owner.clone(),
        name: r.name.clone(),
        policy: r.policy.clone(),
        policy_hash: r.policy_hash.clone(),
        sealed: serde_json::to_string(&r.sealed).map_err(|e| BrokerError::Store(e.to_string()))?,
        created_at: r.created_at,
        updated_at: r.updated_at,
        version: r.version,
    })
}

fn record_of(r: SecretRow) -> Result<SecretRecord, BrokerError> {
    Ok(SecretRecord {
        sealed: serde_json::from_str(&r.sealed).map_err(|e| BrokerError::Store(format!("corrupt sealed record: {e}")))?,
        owner: r.owner,
        name: r.name,
        policy: r.policy,
        policy_hash: r.policy_hash,
        created_at: r.created_at,
        updated_at: r.updated_at,
        version: r.version,
    })
}

fn store_err(e: cachet_store::StoreError) -> BrokerError {
    match e {
        cachet_store::StoreError::Conflict(m) => BrokerError::Conflict(m),
        e => BrokerError::Store(e.to_string()),
    }
}

fn broker_audit(action: &str, owner: &str, name: &str) -> AuditEntry {
    AuditEntry {
        ts: now(),
        actor: "keybroker".into(),
        action: action.into(),
        outcome: "ok".into(),
        detail: json!({"owner": owner, "name": name}),
        ..Default::default()
    }
}

#[async_trait::async_trait]
impl SecretStore for StoreSecrets {
    async fn put_secret(&self, record: &SecretRecord) -> Result<(), BrokerError> {
        self.0.put_secret(&row_of(record)?, &broker_audit("secret.put", &record.owner, &record.name)).await.map_err(store_err)
    }
    async fn get_secret(&self, owner: &str, name: &str) -> Result<Option<SecretRecord>, BrokerError> {
        self.0.get_secret(owner, name).await.map_err(store_err)?.map(record_of).transpose()
    }
    async fn delete_secret(&self, owner: &str, name: &str) -> Result<bool, BrokerError> {
        self.0.delete_secret(owner, name, &broker_audit("secret.delete", owner, name)).await.map_err(store_err)
    }
    async fn list_secrets(&self, owner: &str) -> Result<Vec<SecretRecord>, BrokerError> {
        self.0.list_secrets(owner).await.map_err(store_err)?.into_iter().map(record_of).collect()
    }
}

fn broker_error(e: BrokerError) -> ApiError {
    match e {
        BrokerError::Invalid(m) => ApiError::invalid(m),
        BrokerError::Policy(m) => ApiError::new(StatusCode::BAD_REQUEST, "policy_invalid", m),
        BrokerError::PolicyNoStatus(m) => ApiError::new(StatusCode::BAD_REQUEST, "policy_no_status", m),
        BrokerError::Store(m) => ApiError::storage(m),
        e @ (BrokerError::PolicyAltered(_) | BrokerError::Conflict(_)) => ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string()),
        e @ (BrokerError::Unavailable(_) | BrokerError::Hsm(_)) => custody_unavailable(e),
        other => ApiError::internal(other),
    }
}

/// 503 `key_custody_unavailable`: the HSM (or KEK) does not answer.
fn custody_unavailable(detail: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %detail, "key custody unavailable");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "key_custody_unavailable",
        "the key custody (HSM or key-encryption key) does not answer; retry when /readyz reports ready",
    )
}

/// The tenant of the caller's key: secrets belong to tenants.
fn tenant(p: &Principal) -> Result<&str, ApiError> {
    p.tenant.as_deref().ok_or_else(|| {
        ApiError::forbidden("this API key acts for no tenant; secrets belong to tenants (cachet admin create-key --tenant NAME)")
    })
}

/// A secret to create or replace.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// The value, base64 (at most 64 KiB decoded). Never returned by the API.
    pub value: String,
    /// The release policy: Rego over the attestation token's claims; the
    /// secret is released only when its status is `affirming`.
    pub policy: String,
    /// The policy's file name (e.g. `fraud.rego`), for error messages
    /// (default `release.rego`).
    #[serde(default)]
    pub policy_name: Option<String>,
}

impl std::fmt::Debug for PutSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecret").field("policy", &self.policy).finish_non_exhaustive()
    }
}

/// A secret as shown to its owner: everything but the value.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretInfo {
    /// Owner (the API key's tenant).
    pub owner: String,
    /// Name.
    pub name: String,
    /// Release policy (Rego).
    pub policy: String,
    /// SHA-256 of the policy.
    pub policy_hash: String,
    /// Key-encryption key the value is sealed under.
    pub kek: String,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Updated (Unix seconds).
    pub updated_at: i64,
    /// Version, from 1.
    pub version: i64,
    /// Present (true) when the stored policy no longer matches the hash
    /// sealed with the value (edited outside the service): the secret is
    /// not released until its owner writes it again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub policy_altered: bool,
}

impl From<SecretMeta> for SecretInfo {
    fn from(m: SecretMeta) -> Self {
        Self {
            owner: m.owner,
            name: m.name,
            policy: m.policy,
            policy_hash: m.policy_hash,
            kek: m.kek,
            created_at: m.created_at,
            updated_at: m.updated_at,
            version: m.version,
            policy_altered: m.policy_altered,
        }
    }
}

fn audit_of(p: &Principal, action: &str, detail: Value) -> AuditEntry {
    AuditEntry { ts: now(), actor: p.actor(), action: action.into(), outcome: "ok".into(), detail, ..Default::default() }
}

/// Create or replace one of the tenant's secrets.
#[utoipa::path(put, path = "/v1/admin/secrets/{name}", tag = "admin", security(("api_key" = ["admin"])), request_body = PutSecret,
    params(("name" = String, Path, description = "Secret name (the owner is the API key's tenant)")),
    responses((status = 201, description = "Created", body = SecretInfo), (status = 200, description = "Replaced", body = SecretInfo),
              (status = 400, description = "invalid_request, policy_invalid", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, description = "no tenant or role", body = ErrorBody)))]
pub async fn put_secret(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    ApiJson(mut req): ApiJson<PutSecret>,
) -> Result<(StatusCode, Json<SecretInfo>), ApiError> {
    let owner = tenant(&p)?;
    let value = cachet_verify::encoding::decode_base64(&req.value).map(SecretValue::new);
    req.value.zeroize();
    let value = value.ok_or_else(|| ApiError::invalid("'value' is not base64"))?;
    let previous = SecretStore::get_secret(&StoreSecrets(st.store.clone()), owner, &name).await.map_err(broker_error)?;
    let t = now();
    let broker = st.broker.clone();
    let (o, n, policy, prev) = (owner.to_string(), name.clone(), req.policy.clone(), previous.clone());
    let label = req.policy_name.clone().filter(|l| !l.is_empty() && l.len() <= 256 && !l.chars().any(char::is_control));
    // Policy compilation and sealing (possibly in an HSM) block: off the async threads.
    let mut record = tokio::task::spawn_blocking(move || {
        // Errors name the uploaded file when the client says which it is.
        if let Some(label) = &label {
            broker.release_policies().validate_named(label, &policy)?;
        }
        broker.prepare_secret(&o, &n, &value, &policy, prev.as_ref(), t)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(broker_error)?;
    // A compare-and-swap on the version: a concurrent PUT that wrote first
    // makes this one the next version (the sealed value does not change).
    let mut attempts = 0;
    loop {
        let action = if record.version == 1 { "secret.create" } else { "secret.update" };
        let detail = json!({"owner": owner, "name": name, "version": record.version, "policy_hash": record.policy_hash, "kek": record.sealed.kek_id});
        match st.store.put_secret(&row_of(&record).map_err(broker_error)?, &audit_of(&p, action, detail)).await {
            Ok(()) => break,
            Err(cachet_store::StoreError::Conflict(_)) if attempts + 1 < cachet_keybroker::broker::MAX_PUT_ATTEMPTS => {
                attempts += 1;
                let now_stored = SecretStore::get_secret(&StoreSecrets(st.store.clone()), owner, &name).await.map_err(broker_error)?;
                record.follow(now_stored.as_ref());
            }
            Err(cachet_store::StoreError::Conflict(m)) => {
                return Err(ApiError::new(StatusCode::CONFLICT, "secret_conflict", format!("{m}; other writers kept changing it: retry")))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let status = if record.version == 1 { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(SecretMeta::from(&record).into())))
}

/// One of the tenant's secrets, without its value.
#[utoipa::path(get, path = "/v1/admin/secrets/{name}", tag = "admin", security(("api_key" = ["reader"])),
    params(("name" = String, Path, description = "Secret name")),
    responses((status = 200, body = SecretInfo), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_secret(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<SecretInfo>, ApiError> {
    let owner = tenant(&p)?;
    match st.broker.get_secret(owner, &name).await.map_err(broker_error)? {
        Some(m) => Ok(Json(m.into())),
        None => Err(ApiError::not_found("no such secret")),
    }
}

/// The tenant's secrets, without values.
#[utoipa::path(get, path = "/v1/admin/secrets", tag = "admin", security(("api_key" = ["reader"])),
    responses((status = 200, body = [SecretInfo]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_secrets(State(st): State<AppState>, Extension(p): Extension<Principal>) -> Result<Json<Vec<SecretInfo>>, ApiError> {
    let owner = tenant(&p)?;
    let list = st.broker.list_secrets(owner).await.map_err(broker_error)?;
    Ok(Json(list.into_iter().take(MAX_LIST).map(SecretInfo::from).collect()))
}

/// Delete one of the tenant's secrets.
#[utoipa::path(delete, path = "/v1/admin/secrets/{name}", tag = "admin", security(("api_key" = ["admin"])),
    params(("name" = String, Path, description = "Secret name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delete_secret(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let owner = tenant(&p)?;
    if !cachet_keybroker::broker::valid_name(&name) {
        return Err(ApiError::invalid("bad secret name"));
    }
    let a = audit_of(&p, "secret.delete", json!({"owner": owner, "name": name}));
    if st.store.delete_secret(owner, &name, &a).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such secret"))
    }
}

/// Paging of a tenant's audit entries.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ReleasesQuery {
    /// Entries after this sequence number (default 0).
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000); a page also ends at
    /// about 4 MiB of entries, so continue from its last `seq` until empty.
    pub limit: Option<i64>,
}

/// The audit entries concerning the tenant's secrets: every release and
/// refusal of them (with the token, workload key and reason) and every
/// change to them. Never another tenant's.
#[utoipa::path(get, path = "/v1/admin/secret-releases", tag = "admin", security(("api_key" = ["reader"])), params(ReleasesQuery),
    responses((status = 200, body = [Object]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn secret_releases(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<ReleasesQuery>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    let owner = tenant(&p)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(st.store.owner_audit_page(owner, q.after.unwrap_or(0).max(0), limit).await?))
}

/// A release request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    /// A Cachet attestation token (from `POST /v1/attest`) whose runtime
    /// data is the workload's public JWK. Give this or `attest`.
    #[serde(default)]
    pub token: Option<String>,
    /// Evidence to attest in this call instead of a token (same fields as
    /// `POST /v1/attest`; its `runtime_data` must be the workload's JWK).
    #[serde(default)]
    pub attest: Option<AttestRequest>,
    /// Secrets wanted, as `owner/name` (at most 32).
    pub secrets: Vec<String>,
    /// The public JWK the caller expects the secrets encrypted to; refused
    /// unless it is the key bound in the attestation (key substitution).
    #[serde(default)]
    pub workload_key: Option<Value>,
}

/// One secret's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseItem {
    /// `owner/name`.
    pub secret: String,
    /// Whether it was released.
    pub released: bool,
    /// Why (the owner's policy's reasons); never the value.
    pub reason: String,
    /// A refusal's stable code: `policy_refused`, `no_such_secret`,
    /// `secret_policy_altered`, `secret_record_altered`,
    /// `key_custody_unavailable`, `token_expired`, `key_substitution`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// SHA-256 of the policy that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    /// The value as a compact JWE (ECDH-ES+A256KW or RSA-OAEP-256, A256GCM)
    /// encrypted to the workload key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwe: Option<String>,
}

/// The answer to a release request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseAnswer {
    /// The attestation token's `jti`.
    pub token_id: Option<String>,
    /// RFC 7638 thumbprint of the key the JWEs are encrypted to.
    pub workload_key: Option<String>,
    /// One result per requested secret.
    pub results: Vec<ReleaseItem>,
    /// The token issued when evidence was attested in this call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The release statement: a compact JWS (`typ` `cachet-release+jwt`)
    /// signed with a key of this service's JWKS, binding `token_id`,
    /// `workload_key` and each result (with the SHA-256 of its JWE), so the
    /// workload can tell this answer from a forged one
    /// (`cachet_attester::release`).
    pub statement: String,
}

fn owner_of(reference: &str) -> Option<String> {
    reference.split_once('/').map(|(o, _)| o.to_string()).filter(|o| cachet_keybroker::broker::valid_name(o))
}

/// Audit a request refused before any policy ran, for every owner named.
async fn audit_refusal(st: &AppState, actor: &str, secrets: &[String], code: &str, reason: &str) {
    let mut owners: Vec<String> = secrets.iter().filter_map(|s| owner_of(s)).collect();
    owners.sort();
    owners.dedup();
    let entry = AuditEntry {
        ts: now(),
        actor: actor.into(),
        action: "secret.release".into(),
        outcome: "refused".into(),
        failed_check: Some(code.into()),
        // The references are the caller's: each kept to a valid one's length.
        detail: json!({"secrets": secrets.iter().map(|s| bound_text(s, MAX_SECRET_REF)).collect::<Vec<_>>(), "reason": reason}),
        ..Default::default()
    };
    if let Err(e) = st.store.append_owner_audit(&entry, &owners).await {
        tracing::error!(error = %e, "cannot append to the audit log");
    }
}

/// Release secrets to an attested workload: each requested secret
/// (`owner/name`) is decided by its own owner's release policy over the
/// token's claims, and returned as a JWE encrypted to the workload key bound
/// in the attestation. Every decision is audited for the secret's owner.
#[utoipa::path(post, path = "/v1/secrets/release", tag = "attestation", request_body = ReleaseBody,
    responses((status = 200, description = "Per-secret decisions (released ones carry a JWE)", body = ReleaseAnswer),
              (status = 400, description = "invalid_request", body = ErrorBody),
              (status = 403, description = "token_refused: expired, foreign issuer, unknown key, bad signature", body = ErrorBody),
              (status = 422, description = "verification_failed (evidence attested in the call)", body = ErrorBody)))]
pub async fn release(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<ReleaseBody>,
) -> Result<Json<ReleaseAnswer>, ApiError> {
    let actor = format!("client:{}", peer.ip());
    if req.secrets.is_empty() || req.secrets.len() > cachet_keybroker::broker::MAX_SECRETS_PER_REQUEST {
        return Err(ApiError::invalid(format!("name 1 to {} secrets", cachet_keybroker::broker::MAX_SECRETS_PER_REQUEST)));
    }
    let t = now();
    let (claims, issued) = match (req.token, req.attest) {
        (Some(token), None) => {
            let keys: Vec<cachet_token::jwk::PublicKey> = st
                .keys
                .jwks(t)
                .await
                .map_err(ApiError::storage)?
                .get("keys")
                .and_then(Value::as_array)
                .map(|ks| ks.iter().filter_map(|k| cachet_token::jwk::PublicKey::from_jwk(k).ok()).collect())
                .unwrap_or_default();
            let want = cachet_token::jws::Expectations { now: t, leeway: 0, issuer: Some(st.issuer.as_str()) };
            // Only an attestation token (`typ` JWT) is a credential, never a
            // release statement signed with the same key.
            let typ = cachet_token::jws::decode(&token).ok().and_then(|d| d.header.get("typ").and_then(Value::as_str).map(str::to_string));
            let verified = match typ.as_deref() {
                Some("JWT") => cachet_token::jws::verify(&token, &keys, &want),
                other => Err(cachet_token::TokenError::Refused(format!("is not an attestation token (typ {other:?})"))),
            };
            match verified {
                Ok(c) => (c, None),
                Err(e) => {
                    let reason = match e {
                        cachet_token::TokenError::Refused(why) => format!("attestation token refused: {why}"),
                        other => format!("attestation token: {other}"),
                    };
                    audit_refusal(&st, &actor, &req.secrets, "token_refused", &reason).await;
                    return Err(ApiError::new(StatusCode::FORBIDDEN, "token_refused", reason));
                }
            }
        }
        (None, Some(attest)) => match crate::routes::attest_core(&st, &actor, attest).await {
            Ok((token, claims)) => (claims, Some(token)),
            Err(e) => {
                audit_refusal(&st, &actor, &req.secrets, e.code, &e.message).await;
                return Err(e);
            }
        },
        _ => return Err(ApiError::invalid("give exactly one of 'token' or 'attest'")),
    };
    let tee = claims.get("submods").and_then(Value::as_object).map(|m| m.keys().cloned().collect::<Vec<_>>().join("+"));
    let request = ReleaseRequest { claims, secrets: req.secrets, workload_key: req.workload_key };
    let broker = st.broker.clone();
    let handle = tokio::runtime::Handle::current();
    // Opening sealed values may call the HSM: off the async threads.
    let out: ReleaseResponse = tokio::task::spawn_blocking(move || handle.block_on(broker.release(&request, t)))
        .await
        .map_err(ApiError::internal)?
        .map_err(broker_error)?;
    for r in &out.results {
        let entry = AuditEntry {
            ts: t,
            actor: actor.clone(),
            action: "secret.release".into(),
            tee: tee.clone(),
            outcome: if r.released { "released".into() } else { "refused".into() },
            failed_check: None,
            token_id: out.token_id.clone(),
            detail: json!({"secret": r.secret, "owner": r.owner, "reason": r.reason, "code": r.code, "policy_hash": r.policy_hash, "workload_key": out.workload_key}),
        };
        let owners: Vec<String> = if r.owner.is_empty() { Vec::new() } else { vec![r.owner.clone()] };
        // A value is handed out only once its release is in the audit log.
        st.store.append_owner_audit(&entry, &owners).await?;
        tracing::info!(secret = %bound_text(&r.secret, MAX_SECRET_REF), released = r.released, token_id = ?out.token_id, "secret release decision");
    }
    let stated: Vec<StatedResult> = out
        .results
        .iter()
        .map(|r| StatedResult {
            secret: r.secret.clone(),
            released: r.released,
            code: r.code.clone(),
            jwe_sha256: r.jwe.as_deref().map(release::jwe_sha256),
        })
        .collect();
    let claims = release::claims(
        &st.issuer,
        t,
        t.saturating_add(st.keys.policy().token_ttl),
        out.token_id.as_deref(),
        out.workload_key.as_deref(),
        &stated,
    );
    // No value leaves without the statement that vouches for it.
    let (statement, _) = st.keys.sign_typed(&claims, t, release::STATEMENT_TYP).await.map_err(custody_unavailable)?;
    Ok(Json(ReleaseAnswer {
        token_id: out.token_id,
        workload_key: out.workload_key,
        results: out
            .results
            .into_iter()
            .map(|r| ReleaseItem {
                secret: r.secret,
                released: r.released,
                reason: r.reason,
                code: r.code,
                policy_hash: r.policy_hash,
                jwe: r.jwe,
            })
            .collect(),
        token: issued,
        statement,
    }))
}
