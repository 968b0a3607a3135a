//! Reference values: `/v1/admin/reference-values/...`.
//!
//! Named sets of allowed values (`mr_td`, `snp.measurement`, `nitro.pcr0`,
//! ...) with expiry, in the format of `cachet-appraise` (`RefSet`): what
//! appraisal policies read as `data.reference_values.NAME`. Sets can be put
//! whole, deleted, or filled from in-toto / SLSA provenance (the subject
//! digests become allowed values, each with the builder recorded). Every
//! change is audited and takes effect for the next attestation (and for the
//! key broker's release policies).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use cachet_appraise::{provenance, RefSet, RefValue, ReferenceValues};
use cachet_store::{AuditEntry, ReferenceSetRow};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::{now, AppState};

/// A stored set.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RefSetDoc {
    /// Set name.
    pub name: String,
    /// The set: `description`, `expires` (RFC 3339), `values` (each with
    /// `value` and optional `expires`, `builder_id`, `digest_alg`, `source`).
    #[schema(value_type = Object)]
    pub set: RefSet,
    /// Last change (Unix seconds).
    pub updated_at: i64,
    /// Who changed it.
    pub updated_by: String,
}

/// Provenance to import.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportProvenance {
    /// The provenance file's text: an in-toto Statement, a DSSE envelope, a
    /// Sigstore bundle, or JSON Lines of those. Signatures are NOT checked
    /// here: verify provenance (slsa-verifier, cosign) before importing it.
    pub provenance: String,
    /// Only digests of this algorithm (`sha256`, `sha384`); default all.
    #[serde(default)]
    pub alg: Option<String>,
    /// When the imported values stop being allowed (RFC 3339).
    #[serde(default)]
    pub expires: Option<String>,
    /// Where the file came from (recorded on each value); default `provenance`.
    #[serde(default)]
    pub source: Option<String>,
}

fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "reference_values_invalid", e.to_string())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    cachet_appraise::refvals::check_name(name).map_err(|e| ApiError::invalid(e.to_string()))
}

async fn stored_set(st: &AppState, name: &str) -> Result<Option<(RefSet, ReferenceSetRow)>, ApiError> {
    let rows = st.store.list_reference_sets().await?;
    let Some(row) = rows.into_iter().find(|r| r.name == name) else { return Ok(None) };
    let set = serde_json::from_str(&row.doc).map_err(|e| ApiError::internal(format!("stored reference set {name}: {e}")))?;
    Ok(Some((set, row)))
}

/// Validate and store a set, audit it, and make it live.
async fn save(st: &AppState, p: &Principal, name: &str, set: RefSet, action: &str, detail: Value) -> Result<RefSetDoc, ApiError> {
    // Validate names, values and limits as a whole collection would.
    let mut all = (*st.appraiser.reference_values()).clone();
    all.insert_set(name, set.clone()).map_err(invalid)?;
    let doc = serde_json::to_string(&set).map_err(ApiError::internal)?;
    let row = ReferenceSetRow { name: name.to_string(), doc, updated_at: now(), updated_by: p.actor() };
    let audit = AuditEntry { ts: row.updated_at, actor: p.actor(), action: action.into(), outcome: "ok".into(), detail, ..Default::default() };
    st.store.put_reference_set(&row, &audit).await?;
    st.reload_reference_values().await?;
    Ok(RefSetDoc { name: row.name, set, updated_at: row.updated_at, updated_by: row.updated_by })
}

/// Every reference value policies see, as a reference-value document
/// (`{"reference_values": {NAME: set}}`; stored sets over the
/// `--reference-values` file's), the format `cachet refvals` files use.
#[utoipa::path(get, path = "/v1/admin/reference-values", tag = "admin", security(("api_key" = ["reader"])),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_reference_values(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    st.reload_reference_values().await?;
    Ok(Json(st.appraiser.reference_values().to_document()))
}

/// One stored set.
#[utoipa::path(get, path = "/v1/admin/reference-values/{name}", tag = "admin", security(("api_key" = ["reader"])),
    params(("name" = String, Path, description = "Set name")),
    responses((status = 200, body = RefSetDoc), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_reference_set(State(st): State<AppState>, Path(name): Path<String>) -> Result<Json<RefSetDoc>, ApiError> {
    check_name(&name)?;
    let (set, row) = stored_set(&st, &name).await?.ok_or_else(|| ApiError::not_found(format!("no reference set {name:?}")))?;
    Ok(Json(RefSetDoc { name, set, updated_at: row.updated_at, updated_by: row.updated_by }))
}

/// Create or replace a set: `{"description"?, "expires"?, "values": [VALUE | {"value", "expires"?, ...}]}`
/// (or just the array of values).
#[utoipa::path(put, path = "/v1/admin/reference-values/{name}", tag = "admin", security(("api_key" = ["admin"])),
    params(("name" = String, Path, description = "Set name, e.g. `tdx.mr_td` or `mr_td`")),
    request_body(content = Object, description = "The set"),
    responses((status = 200, body = RefSetDoc), (status = 422, description = "reference_values_invalid", body = ErrorBody),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_reference_set(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<RefSetDoc>, ApiError> {
    check_name(&name)?;
    let parsed = ReferenceValues::from_document(&json!({"reference_values": {name.clone(): body}})).map_err(invalid)?;
    let set = parsed.sets().get(&name).cloned().unwrap_or_default();
    let detail = json!({"name": name, "values": set.values.len(), "expires": set.expires});
    Ok(Json(save(&st, &p, &name, set, "reference_values.put", detail).await?))
}

/// Delete a set.
#[utoipa::path(delete, path = "/v1/admin/reference-values/{name}", tag = "admin", security(("api_key" = ["admin"])),
    params(("name" = String, Path, description = "Set name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delete_reference_set(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_name(&name)?;
    let audit = AuditEntry { ts: now(), actor: p.actor(), action: "reference_values.delete".into(), outcome: "ok".into(), detail: json!({"name": name}), ..Default::default() };
    if !st.store.delete_reference_set(&name, &audit).await? {
        return Err(ApiError::not_found(format!("no reference set {name:?}")));
    }
    st.reload_reference_values().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add the subject digests of in-toto / SLSA provenance to a set (created
/// if absent), each with its SLSA builder, algorithm and source recorded.
#[utoipa::path(post, path = "/v1/admin/reference-values/{name}/import", tag = "admin", security(("api_key" = ["admin"])),
    params(("name" = String, Path, description = "Set name")),
    request_body = ImportProvenance,
    responses((status = 200, body = RefSetDoc), (status = 422, description = "reference_values_invalid: not provenance, or no digest of `alg`", body = ErrorBody),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn import_provenance(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<ImportProvenance>,
) -> Result<Json<RefSetDoc>, ApiError> {
    check_name(&name)?;
    let expires = req.expires.as_deref().map(cachet_appraise::refvals::parse_time).transpose().map_err(invalid)?;
    let digests = provenance::subject_digests(req.provenance.as_bytes()).map_err(invalid)?;
    let source = req.source.as_deref().unwrap_or("provenance");
    let values: Vec<RefValue> = provenance::to_ref_values(&digests, req.alg.as_deref(), source, expires).map_err(invalid)?;
    let mut set = stored_set(&st, &name).await?.map(|(s, _)| s).unwrap_or_default();
    let builders: Vec<_> = values.iter().filter_map(|v| v.builder_id.clone()).collect();
    let digests: Vec<_> = values.iter().map(|v| v.value.clone()).collect();
    for v in values {
        set.upsert(v);
    }
    let detail = json!({"name": name, "source": source, "digests": digests, "builders": builders});
    Ok(Json(save(&st, &p, &name, set, "reference_values.import", detail).await?))
}
