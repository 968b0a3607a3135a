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
        let Ok(mut row) = to_row(entry) else { return };
        row.key = key.to_string();
        if let Err(e) = self.0.put_endorsement(&row).await {
            tracing::warn!("endorsement cache write {key}: {e}");
        }
    }

    async fn put_all(&self, entries: &[Fetched]) -> Result<(), String> {
        let rows = entries.iter().map(to_row).collect::<Result<Vec<_>, _>>()?;
        self.0.put_endorsements(&rows).await.map_err(|e| e.to_string())
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

/// The store's row for one fetched endorsement, under its resource key.
fn to_row(entry: &Fetched) -> Result<EndorsementRow, String> {
    Ok(EndorsementRow {
        key: entry.resource.key(),
        kind: kind_of(entry),
        body: serde_json::to_string(entry).map_err(|e| e.to_string())?,
        fetched_at: entry.fetched_at,
        next_update: entry.next_update,
        source: entry.source.clone(),
    })
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
    // Per piece: what the service got decides even when another piece is
    // unavailable; only the gaps are left to the attester's pieces.
    let (service, missing) = match endorser.available(tee, evidence, at).await {
        Ok(got) => got,
        Err(e) => (Vec::new(), vec![e]),
    };
    let unavailable = (!missing.is_empty()).then(|| missing.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
    if let Some(why) = &unavailable {
        tracing::info!(tee = %tee, "service endorsements unavailable, the attester's may fill the gap: {why}");
    }
    let mut merged = authority::merge(&service, &attester).map_err(refused)?;
    // Revocation of the certificates now known (a GPU's device chain comes
    // with the evidence, the RIM signer chains with the RIMs).
    let revocation = endorser.revocation(tee, &merged, at).await;
    merged.extend(revocation.iter().flat_map(cachet_endorse::Fetched::endorsements));
    let provenance = match (service.is_empty() && revocation.is_empty(), attester.is_empty()) {
        (false, true) => Provenance::Service,
        (false, false) => Provenance::ServiceAndAttester,
        (true, false) => Provenance::Attester,
        (true, true) => Provenance::None,
    };
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

/// The operator's freshness rules (`--min-tcb-evaluation-number`,
/// `--max-collateral-age`, `--require-revocation`), applied to every
/// endorsement that judges the evidence, the service's and the attester's alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreshnessRules {
    /// Lowest Intel `tcbEvaluationDataNumber` accepted.
    pub min_tcb_evaluation_number: Option<u64>,
    /// Oldest TCB Info / QE Identity accepted, in seconds since its `issueDate`.
    pub max_collateral_age: Option<u64>,
    /// SNP evidence judged without an AMD CRL, or NVIDIA evidence without any
    /// OCSP response, is refused rather than warned about.
    pub require_revocation: bool,
}

/// Refuse what the operator's rules refuse, naming what and why, at the
/// verification instant `at` (Unix seconds).
pub fn enforce(rules: &FreshnessRules, tee: Tee, endorsements: &[Endorsement], at: i64) -> Result<(), ApiError> {
    if rules == &FreshnessRules::default() {
        return Ok(());
    }
    let c = cachet_verify::dcap::collateral::from_endorsements(endorsements);
    let signed = c.tcb_infos.iter().map(|s| ("TCB Info", s)).chain(c.qe_identities.iter().map(|s| ("QE Identity", s)));
    for (kind, sj) in signed {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&sj.body) else { continue };
        let id = v.get("fmspc").and_then(|x| x.as_str()).map(|f| format!("{kind} for FMSPC {f}")).unwrap_or_else(|| kind.to_string());
        let eval = v.get("tcbEvaluationDataNumber").and_then(|x| x.as_u64()).unwrap_or(0);
        if let Some(min) = rules.min_tcb_evaluation_number.filter(|m| eval < *m) {
            return Err(outdated(format!(
                "{id} has tcbEvaluationDataNumber {eval}, below the operator's minimum {min} (--min-tcb-evaluation-number); \
                 refresh the service's collateral from Intel PCS / the PCCS"
            )));
        }
        if let Some(max) = rules.max_collateral_age {
            let issued = v.get("issueDate").and_then(|x| x.as_str()).and_then(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .map(|t| (s.to_string(), t.unix_timestamp()))
            });
            match issued {
                Some((text, t)) if at.saturating_sub(t) > i64::try_from(max).unwrap_or(i64::MAX) => {
                    return Err(outdated(format!(
                        "{id} was issued {text}, {} s before the verification time, older than the operator's maximum age of {max} s \
                         (--max-collateral-age); refresh the service's collateral",
                        at.saturating_sub(t)
                    )));
                }
                Some(_) => {}
                None => {
                    return Err(outdated(format!("{id} has no readable issueDate, so its age cannot be checked (--max-collateral-age)")))
                }
            }
        }
    }
    if rules.require_revocation && matches!(tee, Tee::Snp) && c.crls.is_empty() {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "revocation_unavailable",
            message: "Revocation: no AMD CRL was available for this SNP evidence and the operator requires revocation checking \
                      (--require-revocation); let the service reach AMD KDS or import the CRL"
                .into(),
            check: Some("Revocation".into()),
        });
    }
    if rules.require_revocation && matches!(tee, Tee::Nvgpu) && !endorsements.iter().any(cachet_verify::nvgpu::ocsp::is_ocsp) {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "revocation_unavailable",
            message: "Revocation: no NVIDIA OCSP response was available for this GPU evidence and the operator requires \
                      revocation checking (--require-revocation); let the service reach NVIDIA's OCSP responder \
                      (--nvidia-ocsp-url) or send the OCSP responses with the evidence"
                .into(),
            check: Some("Revocation".into()),
        });
    }
    Ok(())
}

fn outdated(message: String) -> ApiError {
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "endorsement_outdated",
        message: format!("Endorsement freshness: {message}"),
        check: Some("Endorsement freshness".into()),
    }
}

/// Entries whose next update is this close (seconds), or past, are re-fetched.
pub const REFRESH_WINDOW: i64 = 86_400;
/// At most this many background re-fetches at once (AMD KDS rate-limits).
const REFRESH_CONCURRENCY: usize = 4;

/// One pass of the background refresh at `now`: re-fetch every cached
/// endorsement whose next update is within [`REFRESH_WINDOW`] or past, a few
/// at a time. Nothing is done offline; a failure is logged and leaves the
/// cached entry. Returns (refreshed, failed).
pub async fn refresh_once(endorser: &Arc<Endorser>, now: i64) -> (usize, usize) {
    if endorser.sources().offline {
        return (0, 0);
    }
    let due: Vec<_> = endorser
        .cache()
        .list()
        .await
        .into_iter()
        .filter(|f| f.next_update.is_some_and(|n| n.saturating_sub(now) <= REFRESH_WINDOW))
        .map(|f| f.resource)
        .collect();
    let slots = Arc::new(tokio::sync::Semaphore::new(REFRESH_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for r in due {
        let (endorser, slots) = (endorser.clone(), slots.clone());
        tasks.spawn(async move {
            let _permit = slots.acquire_owned().await.ok()?;
            match endorser.refresh(&r, now).await {
                Ok(_) => Some(true),
                Err(e) => {
                    tracing::warn!(endorsement = %r.key(), "background refresh failed, the cached entry stays: {e}");
                    Some(false)
                }
            }
        });
    }
    let (mut ok, mut failed) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Some(true)) => ok += 1,
            _ => failed += 1,
        }
    }
    (ok, failed)
}

/// `cachet serve`'s background refresh: every `interval` seconds (jittered
/// by up to a tenth, so replicas do not ask the vendors in step), one
/// [`refresh_once`]. Off when `interval` is 0 or the service is offline.
pub async fn refresh_loop(endorser: Arc<Endorser>, interval: u64) {
    if interval == 0 || endorser.sources().offline {
        return;
    }
    loop {
        let jitter = u64::from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0))
            % (interval / 10 + 1);
        tokio::time::sleep(std::time::Duration::from_secs(interval + jitter)).await;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (ok, failed) = refresh_once(&endorser, now).await;
        if ok + failed > 0 {
            tracing::info!(refreshed = ok, failed, "endorsements refreshed in the background");
        }
    }
}

/// Age (s) at `now` of the oldest endorsement the service holds, by fetch time.
pub async fn oldest_age(endorser: &Endorser, now: i64) -> Option<i64> {
    endorser.cache().list().await.iter().map(|f| now.saturating_sub(f.fetched_at)).max()
}

/// Which revision of each endorsement judged the evidence, for the claims
/// (`cachet.endorsement-revisions`): Intel `tcb_eval_num` (TCB Info's
/// `tcbEvaluationDataNumber`) and each CRL's issuer, number and thisUpdate.
/// (RIM ids are in the NVIDIA verifier claims, `rim_ids`.)
pub fn revisions(endorsements: &[Endorsement]) -> Option<serde_json::Value> {
    let c = cachet_verify::dcap::collateral::from_endorsements(endorsements);
    let tcb_eval_num = c
        .tcb_infos
        .iter()
        .filter_map(|s| serde_json::from_str::<serde_json::Value>(&s.body).ok()?.get("tcbEvaluationDataNumber")?.as_u64())
        .max();
    let mut seen = std::collections::BTreeSet::new();
    let crls: Vec<serde_json::Value> = c
        .crls
        .iter()
        .filter_map(|b| authority::crl_revision(&b.der))
        .filter(|r| seen.insert((r.issuer_der.clone(), r.number.clone(), r.this_update)))
        .map(|r| serde_json::json!({"issuer": r.issuer, "crl_number": r.number, "this_update": r.this_update}))
        .collect();
    if tcb_eval_num.is_none() && crls.is_empty() {
        return None;
    }
    let mut m = serde_json::Map::new();
    if let Some(n) = tcb_eval_num {
        m.insert("tcb_eval_num".into(), n.into());
    }
    if !crls.is_empty() {
        m.insert("crls".into(), crls.into());
    }
    Some(m.into())
}
