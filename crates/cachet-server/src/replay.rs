//! What a policy change would do, before it is made: a candidate policy
//! (or the stored one, after reference values changed) appraises the claims
//! of the last attestations the service recorded under that policy, and
//! the answer counts and lists those whose status would change —
//! "this change would refuse 3 of the last 500".
//!
//! The claims replayed are those the verifier produced and the audit log
//! kept (every accepted attestation records them; entries too large were
//! cut and are skipped, as are refused ones: the verifier, not the policy,
//! decided those). Runtime data is not kept, so a policy that reads
//! `input.runtime_data` sees none. Each is judged at its own verification
//! instant with the reference values live then.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use cachet_appraise::{Policy, Status};
use cachet_store::AuditRecord;
use cachet_verify::Tee;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::appraisal::{self, hash_label};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::{routes, AppState};

/// Attestations replayed by default, and at most.
pub const DEFAULT_LAST: usize = 500;
/// The most attestations one replay evaluates.
pub const MAX_LAST: usize = 5_000;
/// The most audit entries read looking for them.
const MAX_SCANNED: i64 = 200_000;
/// The most changed attestations listed (all are counted).
const MAX_LISTED: usize = 100;

/// `POST /v1/admin/policies/{name}/replay`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ReplayRequest {
    /// A candidate policy text (not stored); without it, the stored policy `name`.
    #[serde(default)]
    pub policy: Option<String>,
    /// How many of the latest attestations appraised by `name` to replay (default 500, at most 5000).
    #[serde(default)]
    pub last: Option<usize>,
}

/// One attestation whose status would change.
#[derive(Debug, Serialize, ToSchema)]
pub struct Change {
    /// Its audit sequence number (`/console/attestations/{seq}`).
    pub seq: i64,
    /// TEE family.
    pub tee: String,
    /// The status it was given.
    pub was: String,
    /// The status the candidate gives.
    pub now: String,
    /// The candidate's reasons that are not affirming.
    pub reasons: Value,
}

/// The replay's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayResponse {
    /// The policy replayed: name and hash.
    pub policy: Value,
    /// Attestations appraised again.
    pub evaluated: usize,
    /// Of those, how many the candidate judges differently.
    pub changed: usize,
    /// How many were not contraindicated and would be (refused a release by any policy that requires affirming).
    pub would_refuse: usize,
    /// How many were contraindicated and would no longer be.
    pub would_admit: usize,
    /// Attestations of this policy found but not replayable (no recorded claims: older or cut entries).
    pub skipped: usize,
    /// Audit entries read.
    pub scanned: usize,
    /// The changed attestations, newest first (at most 100).
    pub changes: Vec<Change>,
}

/// Replay a candidate policy (or the stored one) over the claims of the
/// last attestations appraised by `name`; nothing is stored.
#[utoipa::path(post, path = "/v1/admin/policies/{name}/replay", tag = "admin", security(("api_key" = ["reader", "operator"])),
    params(("name" = String, Path, description = "Policy name (as recorded in each attestation's audit entry)")),
    request_body = ReplayRequest,
    responses((status = 200, body = ReplayResponse),
              (status = 422, description = "policy_invalid (a candidate text) or policy_evaluation_failed", body = ErrorBody),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn replay(
    State(st): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<ReplayRequest>,
) -> Result<Json<ReplayResponse>, ApiError> {
    crate::policies::check_name(&name)?;
    let last = req.last.unwrap_or(DEFAULT_LAST);
    if last == 0 || last > MAX_LAST {
        return Err(ApiError::invalid(format!("last must be from 1 to {MAX_LAST}")));
    }
    let policy: Arc<Policy> = match &req.policy {
        Some(text) => {
            let (n, t) = (name.clone(), text.clone());
            Arc::new(
                tokio::task::spawn_blocking(move || Policy::compile(&n, &t))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(crate::policies::policy_invalid)?,
            )
        }
        None => appraisal::named_policy(&st, &name).await?,
    };
    let (found, scanned) = latest_appraised_by(st.store.as_ref(), &name, last).await?;
    let mut out = ReplayResponse {
        policy: json!({"name": policy.name(), "hash": hash_label(policy.hash())}),
        evaluated: 0,
        changed: 0,
        would_refuse: 0,
        would_admit: 0,
        skipped: 0,
        scanned,
        changes: Vec::new(),
    };
    let refvals = st.appraiser.reference_values();
    for (rec, detail) in found {
        let (Some(claims), Some(tee)) = (detail.get("claims").filter(|c| c.is_object()), rec.tee.as_deref().and_then(Tee::parse)) else {
            out.skipped += 1;
            continue;
        };
        let was = detail["status"].as_str().unwrap_or("none").to_string();
        let at = detail["verification_time"].as_i64().unwrap_or(rec.ts);
        let input = routes::appraisal_input(tee, claims, None, None);
        let a = appraisal::run(policy.clone(), input, refvals.clone(), at).await.map_err(|mut e| {
            e.status = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
            e.message = format!("attestation {}: {}", rec.seq, e.message);
            e
        })?;
        out.evaluated += 1;
        let now = a.status.as_str().to_string();
        if now == was {
            continue;
        }
        out.changed += 1;
        let contraindicated = Status::Contraindicated.as_str();
        if now == contraindicated {
            out.would_refuse += 1;
        } else if was == contraindicated {
            out.would_admit += 1;
        }
        if out.changes.len() < MAX_LISTED {
            let reasons: Vec<_> = a.reasons.iter().filter(|r| r.outcome > Status::Affirming).take(16).collect();
            out.changes.push(Change { seq: rec.seq, tee: tee.as_str().to_string(), was, now, reasons: json!(reasons) });
        }
    }
    Ok(Json(out))
}

/// The newest `want` accepted attestations whose recorded policy is
/// `name`, newest first, with their parsed details; and how many entries
/// were read. Reads backwards from the end of the log, a page at a time.
async fn latest_appraised_by(
    store: &dyn cachet_store::Store,
    name: &str,
    want: usize,
) -> Result<(Vec<(AuditRecord, Value)>, usize), ApiError> {
    let mut end = crate::admin::audit_seq_before(store, i64::MAX).await?;
    let (mut found, mut scanned) = (Vec::new(), 0usize);
    while end > 0 && found.len() < want && (scanned as i64) < MAX_SCANNED {
        // The window (from, end], read forward (pages are bounded by bytes too).
        let from = (end - 1000).max(0);
        let mut page: Vec<AuditRecord> = Vec::new();
        let mut after = from;
        while after < end {
            let part = store.audit_page(after, end - after).await?;
            let Some(last) = part.last() else { break };
            after = last.seq;
            page.extend(part.into_iter().filter(|r| r.seq <= end));
        }
        if page.is_empty() {
            break;
        }
        end = from;
        scanned += page.len();
        page.reverse();
        for rec in page {
            if rec.action != "attest" || rec.outcome != "ok" {
                continue;
            }
            let Ok(detail) = serde_json::from_str::<Value>(&rec.detail) else { continue };
            if detail["policy"].as_str() == Some(name) {
                found.push((rec, detail));
                if found.len() >= want {
                    break;
                }
            }
        }
    }
    Ok((found, scanned))
}
