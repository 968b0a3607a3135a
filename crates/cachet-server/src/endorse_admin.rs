//! `/v1/admin/endorsements`: the service's cached endorsements moved by hand
//! (the air-gapped path), operator keys only. Bundles are those of
//! `cachet endorsements` (`cachet_endorse::bundle`): an import checks every
//! entry again and refuses the whole bundle, naming the bad entry, before
//! anything is kept; imports and their refusals are audited.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use cachet_endorse::bundle::{self, BundleError};
use cachet_store::AuditEntry;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::{now, AppState};

/// What the service holds: key, kind, source, fetch time, age, next update.
#[utoipa::path(get, path = "/v1/admin/endorsements", tag = "admin", security(("api_key" = ["reader", "operator"])),
    responses((status = 200, description = "[{key, kind, source, fetched_at, age_s, next_update, stale}]", body = [Object]),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_endorsements(State(st): State<AppState>) -> Json<Vec<Value>> {
    let t = now();
    let mut held = st.endorser.cache().list().await;
    held.sort_by_key(|f| f.resource.key());
    Json(held.iter().map(|f| bundle::summary(f, t)).collect())
}

/// Everything held, as a bundle (`{"format":"cachet-endorsements/1","entries":[...]}`).
#[utoipa::path(get, path = "/v1/admin/endorsements/export", tag = "admin", security(("api_key" = ["reader", "operator"])),
    responses((status = 200, description = "The bundle", body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn export_endorsements(State(st): State<AppState>) -> Json<bundle::Bundle> {
    Json(bundle::export(st.endorser.cache().as_ref()).await)
}

/// Import a bundle: every entry checked again (what its key names, signed to
/// the pinned roots); one bad entry refuses the bundle (422
/// `endorsement_refused`, naming it) and nothing is kept.
#[utoipa::path(post, path = "/v1/admin/endorsements/import", tag = "admin", security(("api_key" = ["admin", "operator"])),
    request_body(content = Object, description = "A bundle from `cachet endorsements fetch|export` or GET /v1/admin/endorsements/export"),
    responses((status = 200, description = "{imported, keys}", body = Object), (status = 400, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn import_endorsements(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let entry = |outcome: &str, detail: Value| AuditEntry {
        ts: now(),
        actor: p.actor(),
        action: "endorsements.import".into(),
        outcome: outcome.into(),
        detail,
        ..Default::default()
    };
    match bundle::import(st.endorser.cache().as_ref(), &body).await {
        Ok(kept) => {
            let keys: Vec<String> = kept.iter().map(|f| f.resource.key()).collect();
            st.store.append_audit(&entry("ok", json!({"count": keys.len(), "keys": keys}))).await?;
            Ok(Json(json!({"imported": keys.len(), "keys": keys})))
        }
        Err(e) => {
            let (status, code) = match &e {
                BundleError::Malformed(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
                BundleError::Entry { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "endorsement_refused"),
                BundleError::Keep(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            };
            let mut refused = entry("refused", json!({"reason": e.to_string()}));
            refused.failed_check = Some(code.into());
            if let Err(err) = st.store.append_audit(&refused).await {
                tracing::error!(error = %err, "cannot append to the audit log");
            }
            Err(ApiError { status, code, message: e.to_string(), check: None })
        }
    }
}
