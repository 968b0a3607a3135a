//! Admin API under `/v1/admin/...`: every route needs an API key; routes
//! that change state need the `admin` role, the others `reader`.
//!
//! The role of each route is declared once, in its OpenAPI `security`
//! (`api_key = ["admin"]` or `["reader"]`, with `"operator"` added for
//! routes only operator keys may call), and enforced by the router it is
//! registered in ([`reader_routes`] / [`admin_routes`] /
//! [`operator_reader_routes`] / [`operator_admin_routes`]); a test walks
//! the OpenAPI document and checks every admin route against both.
//!
//! API keys are tenant-scoped: a tenant key lists, creates and revokes only
//! keys of its own tenant (never an operator key), and a key that expires
//! creates only keys that expire no later than itself.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use cachet_store::{ApiKeyRecord, AuditEntry, AuditRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::keys::{KeyError, KeyInfo};
use crate::{now, AppState};

/// An API key as listed (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyInfo {
    /// Key id (the part after `cachet_`).
    pub id: String,
    /// Label.
    pub name: String,
    /// `admin` or `reader`.
    pub role: String,
    /// Created at (Unix seconds).
    pub created_at: i64,
    /// Revoked at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// The tenant the key acts for (owner of secrets); absent: an operator key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// When the key stops being accepted (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl From<ApiKeyRecord> for ApiKeyInfo {
    fn from(r: ApiKeyRecord) -> Self {
        Self {
            id: r.id,
            name: r.name,
            role: r.role,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
            tenant: r.tenant,
            expires_at: r.expires_at,
        }
    }
}

/// A request to create an API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// Label (empty when omitted, as `cachet admin create-key` makes it).
    #[serde(default)]
    pub name: String,
    /// Role of the new key.
    pub role: Role,
    /// The tenant the key acts for: it owns the secrets put with this key
    /// and sees only those (key broker). Absent: an operator key when an
    /// operator asks, the caller's own tenant when a tenant key asks (a
    /// tenant key cannot name another tenant: `tenant_mismatch`).
    #[serde(default)]
    pub tenant: Option<String>,
    /// When the key stops being accepted (RFC 3339), e.g.
    /// `2026-12-31T00:00:00Z`; absent: never (or, when the calling key
    /// expires, the caller's own expiry, which the new key may not outlive).
    #[serde(default)]
    pub expires: Option<String>,
}

/// A created API key: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    /// The key to present as `Authorization: Bearer <key>`.
    pub key: String,
    /// Its id.
    pub id: String,
    /// Its role.
    pub role: String,
    /// Its tenant; absent: an operator key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// When it expires (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// Paging of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Entries after this sequence number (default 0).
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000); a page also ends at
    /// about 4 MiB of entries, so continue from its last `seq` until empty.
    pub limit: Option<i64>,
}

fn key_error(e: KeyError) -> ApiError {
    match e {
        KeyError::Store(s) => ApiError::storage(s),
        KeyError::Token(t) => ApiError::invalid(t.to_string()),
        KeyError::Invalid(m) => ApiError::invalid(m),
    }
}

fn audit(p: &Principal, action: &str, detail: Value) -> AuditEntry {
    AuditEntry { ts: now(), actor: p.actor(), action: action.into(), outcome: "ok".into(), detail, ..Default::default() }
}

/// Whether `p` may see and manage the key `k`: an operator every key, a
/// tenant the keys of its own tenant.
fn manages(p: &Principal, k: &ApiKeyRecord) -> bool {
    p.is_operator() || (k.tenant.is_some() && k.tenant == p.tenant)
}

/// List API keys: every key for an operator key, the tenant's own for a tenant key.
#[utoipa::path(get, path = "/v1/admin/api-keys", tag = "admin", security(("api_key" = ["reader"])),
    responses((status = 200, body = [ApiKeyInfo]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_api_keys(State(st): State<AppState>, Extension(p): Extension<Principal>) -> Result<Json<Vec<ApiKeyInfo>>, ApiError> {
    Ok(Json(st.store.list_api_keys().await?.into_iter().filter(|k| manages(&p, k)).map(ApiKeyInfo::from).collect()))
}

/// Create an API key. A tenant key creates keys of its own tenant only; a
/// key with an expiry creates keys expiring no later. The response (the
/// only copy of the key) is sent with `Cache-Control: no-store`.
#[utoipa::path(post, path = "/v1/admin/api-keys", tag = "admin", security(("api_key" = ["admin"])), request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey, headers(("Cache-Control" = String, description = "no-store"))),
              (status = 400, description = "invalid_request (bad name, tenant or expiry)", body = ErrorBody),
              (status = 401, description = "unauthorized, api_key_expired", body = ErrorBody),
              (status = 403, description = "forbidden (role), tenant_mismatch (another tenant's or an operator key asked by a tenant key), \
                expiry_not_allowed (outliving the calling key)", body = ErrorBody)))]
pub async fn create_api_key(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<CreateApiKey>,
) -> Result<impl IntoResponse, ApiError> {
    if req.name.len() > 200 {
        return Err(ApiError::invalid("name longer than 200 bytes"));
    }
    let t = now();
    // A tenant key acts for its tenant only: the new key's tenant is its own.
    let tenant = match (&p.tenant, req.tenant) {
        (None, asked) => asked,
        (Some(own), None) => Some(own.clone()),
        (Some(own), Some(asked)) if asked == *own => Some(asked),
        (Some(own), Some(asked)) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_mismatch",
                format!("a key of tenant {own:?} creates keys of tenant {own:?} only, not of {asked:?}; ask an operator"),
            ))
        }
    };
    let asked = req.expires.as_deref().map(|e| crate::auth::parse_expiry(e, t)).transpose().map_err(ApiError::invalid)?;
    // A key may not outlive the key that made it.
    let expires_at = match (asked, p.expires_at) {
        (Some(e), Some(own)) if e > own => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "expiry_not_allowed",
                format!("this key expires at {}; a key it creates must expire no later", crate::auth::format_time(own)),
            ))
        }
        (asked, own) => asked.or(own),
    };
    let k = crate::auth::new_expiring_api_key(&req.name, req.role, tenant.as_deref(), expires_at, t).map_err(ApiError::invalid)?;
    let a = audit(
        &p,
        "api_key.create",
        json!({"id": k.record.id, "name": req.name, "role": req.role.as_str(), "tenant": tenant, "expires_at": expires_at}),
    );
    st.store.insert_api_key(&k.record, &a).await?;
    let body = CreatedApiKey { key: k.key, id: k.record.id, role: k.record.role, tenant, expires_at };
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(body)))
}

/// Revoke an API key.
#[utoipa::path(delete, path = "/v1/admin/api-keys/{id}", tag = "admin", security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "API key id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn revoke_api_key(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Another tenant's (or an operator's) key is not there for a tenant key.
    if !st.store.find_api_key(&id).await?.is_some_and(|k| manages(&p, &k)) {
        return Err(ApiError::not_found("no such active API key"));
    }
    if st.store.revoke_api_key(&id, now(), &audit(&p, "api_key.revoke", json!({"id": id}))).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such active API key"))
    }
}

/// List token signing keys with their state.
#[utoipa::path(get, path = "/v1/admin/signing-keys", tag = "admin", security(("api_key" = ["reader", "operator"])),
    responses((status = 200, body = [KeyInfo]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_signing_keys(State(st): State<AppState>) -> Result<Json<Vec<KeyInfo>>, ApiError> {
    st.keys.list(now()).await.map(Json).map_err(key_error)
}

/// Rotate: publish a new signing key now; it signs after the publish lead.
#[utoipa::path(post, path = "/v1/admin/signing-keys/rotate", tag = "admin", security(("api_key" = ["admin", "operator"])),
    responses((status = 200, body = KeyInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn rotate_signing_key(State(st): State<AppState>, Extension(p): Extension<Principal>) -> Result<Json<KeyInfo>, ApiError> {
    st.keys.rotate(&p.actor(), now()).await.map(Json).map_err(key_error)
}

/// Revoke a signing key (compromise): removed from the JWKS at once.
#[utoipa::path(delete, path = "/v1/admin/signing-keys/{kid}", tag = "admin", security(("api_key" = ["admin", "operator"])),
    params(("kid" = String, Path, description = "Key ID")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn revoke_signing_key(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(kid): Path<String>,
) -> Result<StatusCode, ApiError> {
    if st.keys.revoke(&kid, &p.actor(), now()).await.map_err(key_error)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such unrevoked signing key"))
    }
}

/// Delete expired and revoked signing keys.
#[utoipa::path(post, path = "/v1/admin/signing-keys/prune", tag = "admin", security(("api_key" = ["admin", "operator"])),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn prune_signing_keys(State(st): State<AppState>, Extension(p): Extension<Principal>) -> Result<Json<Value>, ApiError> {
    let kids = st.keys.prune(&p.actor(), now()).await.map_err(key_error)?;
    Ok(Json(json!({"deleted": kids})))
}

/// Read the audit log.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", security(("api_key" = ["reader", "operator"])), params(AuditQuery),
    responses((status = 200, body = [Object]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn audit_log(State(st): State<AppState>, ApiQuery(q): ApiQuery<AuditQuery>) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(st.store.audit_page(q.after.unwrap_or(0).max(0), limit).await?))
}

/// Check the audit log's hash chain.
#[utoipa::path(get, path = "/v1/admin/audit/verify", tag = "admin", security(("api_key" = ["reader", "operator"])),
    responses((status = 200, description = "{ok, entries, head} or {ok: false, seq, reason}", body = Object),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn audit_verify(State(st): State<AppState>) -> Json<Value> {
    Json(match cachet_store::verify_audit_chain(st.store.as_ref()).await {
        Ok((n, head)) => json!({"ok": true, "entries": n, "head": head}),
        Err(e) => json!({"ok": false, "seq": e.seq, "reason": e.reason}),
    })
}

/// The effective configuration (no secrets).
#[utoipa::path(get, path = "/v1/admin/config", tag = "admin", security(("api_key" = ["reader", "operator"])),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn config(State(st): State<AppState>) -> Json<Value> {
    let c = &st.config;
    Json(json!({
        "issuer": st.issuer.as_str(),
        "tls": c.tls.is_some(),
        "token_alg": c.token_alg.as_str(),
        "token_ttl": c.token_ttl,
        "key_publish_lead": c.key_publish_lead,
        "key_rotate_after": c.key_rotate_after,
        "clock_skew": c.clock_skew,
        "nonce_ttl": c.nonce_ttl,
        "body_limit": c.body_limit,
        "request_timeout": c.request_timeout,
        "allow_verification_time": c.allow_verification_time,
        "insecure_simulated_tee": c.insecure_simulated_tee,
    }))
}

/// Admin routes open to `reader` (and `admin`) keys of operators and
/// tenants; each handler confines a tenant key to its own tenant.
pub fn reader_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(crate::secrets::get_secret))
        .routes(routes!(crate::secrets::list_secrets))
        .routes(routes!(crate::secrets::secret_releases))
        .routes(routes!(crate::refvals::list_reference_values))
        .routes(routes!(crate::refvals::get_reference_set))
        .routes(routes!(list_api_keys))
}

/// Admin routes that change state: `admin` keys of operators and tenants;
/// each handler confines a tenant key to its own tenant.
pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(crate::secrets::put_secret))
        .routes(routes!(crate::secrets::delete_secret))
        .routes(routes!(crate::refvals::put_reference_set))
        .routes(routes!(crate::refvals::delete_reference_set))
        .routes(routes!(crate::refvals::import_provenance))
        .routes(routes!(create_api_key))
        .routes(routes!(revoke_api_key))
}

/// Read-only routes about the whole service: operator keys (no tenant) only.
pub fn operator_reader_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(crate::policies::list_policies))
        .routes(routes!(crate::policies::get_policy))
        .routes(routes!(crate::policies::policy_versions))
        .routes(routes!(crate::policies::evaluate))
        .routes(routes!(crate::replay::replay))
        .routes(routes!(list_signing_keys))
        .routes(routes!(audit_log))
        .routes(routes!(audit_verify))
        .routes(routes!(config))
        .routes(routes!(crate::endorse_admin::list_endorsements))
        .routes(routes!(crate::endorse_admin::export_endorsements))
}

/// Routes that change the service: operator `admin` keys only.
pub fn operator_admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(crate::policies::put_policy))
        .routes(routes!(rotate_signing_key))
        .routes(routes!(revoke_signing_key))
        .routes(routes!(prune_signing_keys))
        .routes(routes!(crate::endorse_admin::import_endorsements))
}

/// The last audit sequence number whose entry is older than `since` (Unix
/// seconds; `i64::MAX`: the newest entry; 0 when none): entries are
/// numbered from 1 without gaps and appended in time order, so a doubling
/// then a bisection reads a few entries, not the log from its start.
pub(crate) async fn audit_seq_before(store: &dyn cachet_store::Store, since: i64) -> Result<i64, cachet_store::StoreError> {
    let at = |seq: i64| async move { store.audit_page(seq - 1, 1).await.map(|p| p.first().map(|r| r.ts)) };
    // Invariant: every record up to `lo` is older than `since`; record `hi` is in the window or absent.
    let (mut lo, mut hi) = (0i64, 1i64);
    while let Some(ts) = at(hi).await? {
        if ts >= since || hi > i64::MAX / 4 {
            break;
        }
        lo = hi;
        hi *= 2;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match at(mid).await? {
            Some(ts) if ts < since => lo = mid,
            _ => hi = mid,
        }
    }
    Ok(lo)
}
