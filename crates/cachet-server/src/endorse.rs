//! The service's own endorsements: fetched through `cachet-endorse` and kept
//! in the store (SQLite, or PostgreSQL shared by every replica), then merged
//! with what the attester sent, the service's pieces deciding
//! (`cachet_endorse::authority`).

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::StatusCode;
use cachet_endorse::authority::{self, AuthorityError};
use cachet_endorse::{Cache, Endorser, Fetched};
use cachet_store::{EndorsementRow, Store};
use cachet_verify::{Endorsement, Tee};

use crate::error::ApiError;

/// [`cachet_endorse::Cache`] over the store's `endorsements` table. A store
/// error is a miss (get) or a logged loss (put): the cache never decides a
/// verdict, the verifier does.
pub struct StoreCache(pub Arc<dyn Store>);

/// The kind column: the `Resource` tag (`tcb_info`, `vcek`, `rim`, ...).
fn kind_of(f: &Fetched) -> String {
    serde_json::to_value(&f.resource).ok().and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string)).unwrap_or_default()
}

fn from_row(row: &EndorsementRow) -> Option<Fetched> {
    let f: Fetched = serde_json::from_str(&row.body).ok()?;
    (f.resource.key() == row.key).then_some(f)
}

#[async_trait]
impl Cache for StoreCache {
    async fn get(&self, key: &str) -> Option<Fetched> {
        match self.0.get_endorsement(key).await {
            Ok(row) => row.as_ref().and_then(from_row),
            Err(e) => {
                tracing::warn!("endorsement cache read {key}: {e}");
                None
            }
        }
    }

    async fn put(&self, key: &str, entry: &Fetched) {
        let Ok(body) = serde_json::to_string(entry) else { return };
        let row = EndorsementRow {
            key: key.to_string(),
            kind: kind_of(entry),
            body,
            fetched_at: entry.fetched_at,
            next_update: entry.next_update,
            source: entry.source.clone(),
        };
        if let Err(e) = self.0.put_endorsement(&row).await {
            tracing::warn!("endorsement cache write {key}: {e}");
        }
    }

    async fn list(&self) -> Vec<Fetched> {
        match self.0.list_endorsements().await {
            Ok(rows) => rows.iter().filter_map(from_row).collect(),
            Err(e) => {
                tracing::warn!("endorsement cache list: {e}");
                Vec::new()
            }
        }
    }
}

/// Which endorsements judged the evidence, for the claims
/// (`cachet.endorsements`) and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Only the service's own.
    Service,
    /// The service's, and the attester's for what the service could not get.
    ServiceAndAttester,
    /// Only the attester's: the service could not get its own (source down,
    /// nothing cached, offline) or the family needs none.
    Attester,
    /// None at all.
    None,
}

impl Provenance {
    /// The claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Service => "service",
            Provenance::ServiceAndAttester => "service+attester",
            Provenance::Attester => "attester",
            Provenance::None => "none",
        }
    }
}

/// The endorsements that judge `evidence`: the service's own (cache, else
/// fetched), merged with the attester's hints. When the service cannot get
/// its own, the attester's are used as before (the verifier may need none,
/// e.g. NVIDIA without RIMs), and why is returned for the log and for a
/// refusal's message (what is missing, or stale and since when).
/// `at` is the verification instant: cached endorsements must be valid then.
pub async fn resolve(
    endorser: &Endorser,
    tee: Tee,
    evidence: &[u8],
    attester: Vec<Endorsement>,
    at: i64,
) -> Result<(Vec<Endorsement>, Provenance, Option<String>), ApiError> {
    let (service, unavailable) = match endorser.endorsements_for(tee, evidence, at).await {
        Ok(s) => (s, None),
        Err(e) => {
            tracing::info!(tee = %tee, "service endorsements unavailable, using the attester's: {e}");
            (Vec::new(), Some(e.to_string()))
        }
    };
    let provenance = match (service.is_empty(), attester.is_empty()) {
        (false, true) => Provenance::Service,
        (false, false) => Provenance::ServiceAndAttester,
        (true, false) => Provenance::Attester,
        (true, true) => Provenance::None,
    };
    let merged = authority::merge(&service, &attester).map_err(refused)?;
    Ok((merged, provenance, unavailable))
}

/// An attester endorsement older than the service's: its own code and check.
fn refused(e: AuthorityError) -> ApiError {
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: e.code(),
        message: format!("{}: {e}", e.check()),
        check: Some(e.check().into()),
    }
}
