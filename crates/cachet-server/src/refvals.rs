//! Reference values: `/v1/admin/reference-values/...`.
//!
//! Named sets of allowed values (`mr_td`, `snp.measurement`, `nitro.pcr0`,
//! ...) with expiry, in the format of `cachet-appraise` (`RefSet`): what
//! policies read as `data.reference_values.NAME`. Sets can be put whole,
//! deleted, or filled from in-toto / SLSA provenance (the subject digests
//! become allowed values, each with the builder recorded). Every change is
//! audited and takes effect for the next attestation and release.
//!
//! Sets belong to an owner, taken from the caller's API key:
//!
//! * an **operator** key manages the operator's sets: the ones appraisal
//!   policies read (with those of `--reference-values`). An operator set can
//!   be shared with tenants (`"shared_with": ["bank-a"]`, or `["*"]` for every
//!   tenant); only then does a tenant's release policy read it.
//! * a **tenant** key manages its tenant's own sets, which only that
//!   tenant's release policies read (replacing a shared set of the same
//!   name). A tenant cannot share a set, nor change or delete an operator's
//!   or another tenant's; it reads its own sets and those shared with it.
//!
//! So a tenant can never add a value to a set another tenant's policy trusts.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use cachet_appraise::{provenance, RefSet, RefValue, ReferenceValues};
use cachet_keybroker::refvals::OwnerReferenceValues;
use cachet_store::{AuditEntry, ReferenceSetRow};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::{now, AppState};

/// `shared_with` entry meaning every tenant.
pub const EVERY_TENANT: &str = "*";
/// Most entries in one `shared_with` list.
pub const MAX_SHARED_WITH: usize = 1000;

/// A stored set.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RefSetDoc {
    /// Set name.
    pub name: String,
    /// The tenant owning the set; absent: an operator set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// For an operator set, as shown to operators: the tenants whose release
    /// policies read it (`"*"`: every tenant).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_with: Vec<String>,
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

/// What each party's policies read, built from the stored sets.
pub struct Views {
    /// What appraisal policies read: the `--reference-values` file's sets
    /// with the operator's stored sets over them.
    pub operator: ReferenceValues,
    /// What each tenant's release policies read.
    pub release: OwnerReferenceValues,
}

/// Whether an operator set is shared with `tenant`.
fn shared_with(row: &ReferenceSetRow, tenant: &str) -> bool {
    row.owner.is_none() && row.shared_with.iter().any(|t| t == EVERY_TENANT || t == tenant)
}

fn parse_row(row: &ReferenceSetRow) -> Result<RefSet, String> {
    serde_json::from_str(&row.doc).map_err(|e| format!("stored reference set {}: {e}", row.name))
}

/// Build every view from the stored sets (`rows`) and the file's sets:
/// appraisal policies read the file and operator sets; a tenant's release
/// policies read operator sets shared with it, then its own sets (which
/// replace shared ones of the same name). Fails when a set does not parse
/// or a view would exceed the collection limits.
pub fn views(file: Option<&ReferenceValues>, rows: &[ReferenceSetRow]) -> Result<Views, String> {
    let mut operator = file.cloned().unwrap_or_default();
    let mut every = ReferenceValues::new();
    let mut tenants: BTreeMap<&str, ()> = BTreeMap::new();
    let limits = |name: &str, e: cachet_appraise::refvals::RefvalError| format!("reference set {name}: {e}");
    for row in rows {
        let set = parse_row(row)?;
        match &row.owner {
            None => {
                operator.insert_set(&row.name, set.clone()).map_err(|e| limits(&row.name, e))?;
                if row.shared_with.iter().any(|t| t == EVERY_TENANT) {
                    every.insert_set(&row.name, set).map_err(|e| limits(&row.name, e))?;
                }
                tenants.extend(row.shared_with.iter().filter(|t| *t != EVERY_TENANT).map(|t| (t.as_str(), ())));
            }
            Some(t) => {
                tenants.insert(t.as_str(), ());
            }
        }
    }
    let mut by_owner = BTreeMap::new();
    for tenant in tenants.into_keys() {
        let mut view = every.clone();
        // Shared by name first, then the tenant's own (rows are in owner order).
        for row in rows.iter().filter(|r| r.owner.is_none() && r.shared_with.iter().any(|t| t == tenant)) {
            view.insert_set(&row.name, parse_row(row)?).map_err(|e| limits(&row.name, e))?;
        }
        for row in rows.iter().filter(|r| r.owner.as_deref() == Some(tenant)) {
            view.insert_set(&row.name, parse_row(row)?).map_err(|e| limits(&row.name, e))?;
        }
        by_owner.insert(tenant.to_string(), view);
    }
    Ok(Views { operator, release: OwnerReferenceValues::new(every, by_owner) })
}

fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "reference_values_invalid", e.to_string())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    cachet_appraise::refvals::check_name(name).map_err(|e| ApiError::invalid(e.to_string()))
}

/// The stored set `name` of the caller's owner (its tenant, or the operator).
async fn own_set(st: &AppState, p: &Principal, name: &str) -> Result<Option<(RefSet, ReferenceSetRow)>, ApiError> {
    let rows = st.store.list_reference_sets().await?;
    let Some(row) = rows.into_iter().find(|r| r.owner == p.tenant && r.name == name) else { return Ok(None) };
    let set = parse_row(&row).map_err(ApiError::internal)?;
    Ok(Some((set, row)))
}

/// Validate and store a set of the caller's owner, audit it, and make it live.
async fn save(
    st: &AppState,
    p: &Principal,
    name: &str,
    set: RefSet,
    share: Option<Vec<String>>,
    action: &str,
    detail: Value,
) -> Result<RefSetDoc, ApiError> {
    let mut rows = st.store.list_reference_sets().await?;
    let previous = rows.iter().position(|r| r.owner == p.tenant && r.name == name);
    // Sharing is kept unless the request names it anew.
    let shared_with = share.unwrap_or_else(|| previous.map(|i| rows[i].shared_with.clone()).unwrap_or_default());
    let doc = serde_json::to_string(&set).map_err(ApiError::internal)?;
    let row =
        ReferenceSetRow { owner: p.tenant.clone(), name: name.to_string(), doc, updated_at: now(), updated_by: p.actor(), shared_with };
    // Every view the change reaches must stay within the limits.
    match previous {
        Some(i) => rows[i] = row.clone(),
        None => rows.push(row.clone()),
    }
    views(st.appraiser.file_reference_values(), &rows).map_err(invalid)?;
    let mut detail = detail;
    detail["owner"] = json!(p.tenant);
    detail["shared_with"] = json!(row.shared_with);
    let audit =
        AuditEntry { ts: row.updated_at, actor: p.actor(), action: action.into(), outcome: "ok".into(), detail, ..Default::default() };
    st.store.put_reference_set(&row, &audit).await?;
    st.reload_reference_values().await?;
    Ok(RefSetDoc {
        name: row.name,
        owner: row.owner,
        shared_with: row.shared_with,
        set,
        updated_at: row.updated_at,
        updated_by: row.updated_by,
    })
}

/// The `shared_with` of a PUT body (taken out of it), checked: only an
/// operator shares, with tenant names or `"*"`.
fn take_sharing(p: &Principal, body: &mut Value) -> Result<Option<Vec<String>>, ApiError> {
    let Some(v) = body.as_object_mut().and_then(|o| o.remove("shared_with")) else { return Ok(None) };
    if !p.is_operator() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "operator_only",
            "only an operator key shares reference values; a tenant's sets are read by its own release policies only",
        ));
    }
    let list: Vec<String> =
        serde_json::from_value(v).map_err(|_| ApiError::invalid("'shared_with' must be an array of tenant names (or \"*\")"))?;
    if list.len() > MAX_SHARED_WITH {
        return Err(ApiError::invalid(format!("'shared_with' names at most {MAX_SHARED_WITH} tenants")));
    }
    if let Some(bad) = list.iter().find(|t| *t != EVERY_TENANT && !cachet_keybroker::broker::valid_name(t)) {
        return Err(ApiError::invalid(format!("'shared_with': {bad:?} is not a tenant name (1-128 of A-Z a-z 0-9 . _ -) or \"*\"")));
    }
    let mut list = list;
    list.sort();
    list.dedup();
    Ok(Some(list))
}

/// Every reference value the caller's policies see, as a reference-value
/// document (`{"reference_values": {NAME: set}}`), the format `cachet
/// refvals` files use: for an operator key what appraisal policies read
/// (stored sets over the `--reference-values` file's), for a tenant key what
/// its release policies read (its own sets and those shared with it).
#[utoipa::path(get, path = "/v1/admin/reference-values", tag = "admin", security(("api_key" = ["reader"])),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_reference_values(State(st): State<AppState>, Extension(p): Extension<Principal>) -> Result<Json<Value>, ApiError> {
    st.reload_reference_values().await?;
    Ok(Json(match &p.tenant {
        None => st.appraiser.reference_values().to_document(),
        Some(t) => st.appraiser.release_reference_values().for_owner(t).to_document(),
    }))
}

/// One stored set of the caller's owner; for a tenant key, else an operator
/// set shared with its tenant (read-only, without its sharing list).
#[utoipa::path(get, path = "/v1/admin/reference-values/{name}", tag = "admin", security(("api_key" = ["reader"])),
    params(("name" = String, Path, description = "Set name")),
    responses((status = 200, body = RefSetDoc), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_reference_set(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<RefSetDoc>, ApiError> {
    check_name(&name)?;
    let rows = st.store.list_reference_sets().await?;
    let found = rows.iter().find(|r| r.owner == p.tenant && r.name == name).cloned().or_else(|| {
        let t = p.tenant.as_deref()?;
        // Another tenant never learns who else a set is shared with.
        rows.iter().find(|r| r.name == name && shared_with(r, t)).map(|r| ReferenceSetRow { shared_with: Vec::new(), ..r.clone() })
    });
    let row = found.ok_or_else(|| ApiError::not_found(format!("no reference set {name:?}")))?;
    let set = parse_row(&row).map_err(ApiError::internal)?;
    Ok(Json(RefSetDoc {
        name,
        owner: row.owner,
        shared_with: row.shared_with,
        set,
        updated_at: row.updated_at,
        updated_by: row.updated_by,
    }))
}

/// Create or replace a set of the caller's owner: `{"description"?, "expires"?, "values": [VALUE | {"value", "expires"?, ...}]}`
/// (or just the array of values). An operator key may add
/// `"shared_with": [TENANT, ...]` (or `["*"]`) to let those tenants' release
/// policies read the set; without it, the stored sharing is kept.
#[utoipa::path(put, path = "/v1/admin/reference-values/{name}", tag = "admin", security(("api_key" = ["admin"])),
    params(("name" = String, Path, description = "Set name, e.g. `tdx.mr_td` or `mr_td`")),
    request_body(content = Object, description = "The set"),
    responses((status = 200, body = RefSetDoc), (status = 422, description = "reference_values_invalid", body = ErrorBody),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, description = "forbidden (role), operator_only (a tenant key sharing a set)", body = ErrorBody)))]
pub async fn put_reference_set(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    ApiJson(mut body): ApiJson<Value>,
) -> Result<Json<RefSetDoc>, ApiError> {
    check_name(&name)?;
    let share = take_sharing(&p, &mut body)?;
    let parsed = ReferenceValues::from_document(&json!({"reference_values": {name.clone(): body}})).map_err(invalid)?;
    let set = parsed.sets().get(&name).cloned().unwrap_or_default();
    let detail = json!({"name": name, "values": set.values.len(), "expires": set.expires});
    Ok(Json(save(&st, &p, &name, set, share, "reference_values.put", detail).await?))
}

/// Delete a set of the caller's owner.
#[utoipa::path(delete, path = "/v1/admin/reference-values/{name}", tag = "admin", security(("api_key" = ["admin"])),
    params(("name" = String, Path, description = "Set name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delete_reference_set(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_name(&name)?;
    let detail = json!({"name": name, "owner": p.tenant});
    let audit = AuditEntry {
        ts: now(),
        actor: p.actor(),
        action: "reference_values.delete".into(),
        outcome: "ok".into(),
        detail,
        ..Default::default()
    };
    if !st.store.delete_reference_set(p.tenant.as_deref(), &name, &audit).await? {
        return Err(ApiError::not_found(format!("no reference set {name:?}")));
    }
    st.reload_reference_values().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add the subject digests of in-toto / SLSA provenance to a set of the
/// caller's owner (created if absent), each with its SLSA builder,
/// algorithm and source recorded.
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
    let mut set = own_set(&st, &p, &name).await?.map(|(s, _)| s).unwrap_or_default();
    let builders: Vec<_> = values.iter().filter_map(|v| v.builder_id.clone()).collect();
    let digests: Vec<_> = values.iter().map(|v| v.value.clone()).collect();
    for v in values {
        set.upsert(v);
    }
    let detail = json!({"name": name, "source": source, "digests": digests, "builders": builders});
    Ok(Json(save(&st, &p, &name, set, None, "reference_values.import", detail).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(owner: Option<&str>, name: &str, value: &str, shared: &[&str]) -> ReferenceSetRow {
        ReferenceSetRow {
            owner: owner.map(str::to_string),
            name: name.into(),
            doc: json!({"values": [{"value": value}]}).to_string(),
            updated_at: 0,
            updated_by: "t".into(),
            shared_with: shared.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn values(r: &ReferenceValues, name: &str) -> Vec<String> {
        r.sets().get(name).map(|s| s.values.iter().map(|v| v.value.clone()).collect()).unwrap_or_default()
    }

    #[test]
    fn each_tenant_reads_its_own_and_shared_sets_never_anothers() {
        let rows = [
            row(None, "intel", "01", &["*"]),
            row(None, "lab", "02", &["bank-a"]),
            row(None, "private", "03", &[]),
            row(Some("bank-a"), "approved", "aa", &[]),
            row(Some("bank-b"), "approved", "bb", &[]),
            row(Some("bank-b"), "intel", "b1", &[]),
        ];
        let file = ReferenceValues::from_document(&json!({"from_file": ["ff"]})).unwrap();
        let v = views(Some(&file), &rows).unwrap();
        // Appraisal policies: the file and every operator set, no tenant set.
        let names: Vec<&String> = v.operator.sets().keys().collect();
        assert_eq!(names, ["from_file", "intel", "lab", "private"]);
        let a = v.release.for_owner("bank-a");
        assert_eq!(a.sets().keys().collect::<Vec<_>>(), ["approved", "intel", "lab"]);
        assert_eq!(values(&a, "approved"), ["aa"]);
        let b = v.release.for_owner("bank-b");
        assert_eq!(b.sets().keys().collect::<Vec<_>>(), ["approved", "intel"]);
        assert_eq!(
            (values(&b, "approved"), values(&b, "intel")),
            (vec!["bb".to_string()], vec!["b1".to_string()]),
            "own sets replace shared ones"
        );
        // A tenant with nothing of its own reads what is shared with everyone.
        assert_eq!(v.release.for_owner("bank-c").sets().keys().collect::<Vec<_>>(), ["intel"]);
        // A stored set that does not parse is an error, never an empty view.
        let mut broken = rows.to_vec();
        broken[3].doc = "{".into();
        assert!(views(None, &broken).is_err());
    }
}
