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

/// Most audit records one forecast reads (the rest of the window is left
/// out and the report says `audit_truncated`).
pub const MAX_AUDIT_SCAN: i64 = 1_000_000;
/// Longest window a forecast looks back over.
pub const MAX_FORECAST_DAYS: u32 = 3650;
/// The window when none is given.
pub const DEFAULT_FORECAST_DAYS: u32 = 30;

/// Platforms of the verified attestations (`attest`, outcome `ok`, a
/// `platform` in the detail) since `since`; and whether the scan stopped at
/// [`MAX_AUDIT_SCAN`] records.
pub async fn platforms_seen(
    store: &dyn cachet_store::Store,
    since: i64,
) -> Result<(Vec<cachet_endorse::forecast::Seen>, u64, bool), cachet_store::StoreError> {
    let mut after = crate::admin::audit_seq_before(store, since).await?;
    let start = after;
    let mut details = Vec::new();
    loop {
        let page = store.audit_page(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in page {
            if r.action == "attest" && r.outcome == "ok" && r.ts >= since && r.detail.contains("\"platform\"") {
                if let Ok(d) = serde_json::from_str::<Value>(&r.detail) {
                    details.push((r.ts, d));
                }
            }
        }
        if after - start >= MAX_AUDIT_SCAN {
            let (seen, left_out) = cachet_endorse::forecast::collect_seen(details);
            return Ok((seen, left_out, true));
        }
    }
    let (seen, left_out) = cachet_endorse::forecast::collect_seen(details);
    Ok((seen, left_out, false))
}

/// The forecast over the platforms of the last `days` days of the audit
/// log: the one implementation behind `GET /v1/admin/endorsements/forecast`
/// and `cachet endorsements forecast --data-dir|--database-url`.
pub async fn forecast_from_store(
    store: &dyn cachet_store::Store,
    endorser: &cachet_endorse::Endorser,
    days: u32,
    newest: cachet_endorse::forecast::Newest<'_>,
    amd: &[cachet_endorse::forecast::AmdMinimum],
    now: i64,
) -> Result<Value, cachet_store::StoreError> {
    let days = days.clamp(1, MAX_FORECAST_DAYS);
    let (seen, left_out, truncated) = platforms_seen(store, now - i64::from(days) * 86_400).await?;
    let pairs = cachet_endorse::forecast::tcb_infos(&seen, endorser, newest, now).await;
    let mut report = cachet_endorse::forecast::forecast(&seen, &pairs, amd, left_out, Some(days), now);
    report["audit_truncated"] = json!(truncated);
    Ok(report)
}

/// The forecast's window.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct ForecastQuery {
    /// Platforms seen in the last `days` days (default 30, at most 3650).
    pub days: Option<u32>,
}

/// TCB recovery forecast: which platforms seen attesting in the last `days`
/// days drop from their status (e.g. UpToDate) to a worse one (OutOfDate,
/// not supported) under the TCB Info Intel serves with `update=early` from
/// the service's `--pcs-url`, which component falls short, and from when.
#[utoipa::path(get, path = "/v1/admin/endorsements/forecast", tag = "admin", security(("api_key" = ["reader", "operator"])), params(ForecastQuery),
    responses((status = 200, description = "{format, affected: [{platform, tcb, current_status, next_status, shortfalls, from}], unaffected, not_assessed, tcb_infos, notes}", body = Object),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn forecast_endorsements(
    State(st): State<AppState>,
    crate::error::ApiQuery(q): crate::error::ApiQuery<ForecastQuery>,
) -> Result<Json<Value>, ApiError> {
    let days = q.days.unwrap_or(DEFAULT_FORECAST_DAYS);
    if days == 0 || days > MAX_FORECAST_DAYS {
        return Err(ApiError::invalid(format!("'days' must be 1 to {MAX_FORECAST_DAYS}")));
    }
    let report = forecast_from_store(st.store.as_ref(), &st.endorser, days, cachet_endorse::forecast::Newest::Early, &[], now()).await?;
    Ok(Json(report))
}
