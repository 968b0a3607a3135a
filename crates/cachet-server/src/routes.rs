//! Public routes: challenge, attest, discovery, operations.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cachet_store::audit::{bound_text, MAX_DETAIL_STRING, MAX_FIELD};
use cachet_store::{AuditEntry, NonceOutcome};
use cachet_token::ear::{Ear, Freshness, Submod};
use cachet_verify::{Endorsement, Tee, VerifyRequest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::freshness::Binding;
use crate::{appraisal, now, AppState};

/// Nonce length issued by `POST /v1/challenge` (bytes).
pub const NONCE_LEN: usize = 32;
/// Largest runtime data accepted (bytes, decoded).
pub const MAX_RUNTIME_DATA: usize = 64 << 10;
/// Most endorsement files in one request.
pub const MAX_ENDORSEMENTS: usize = 256;

/// A fresh challenge.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChallengeResponse {
    /// The nonce, hex (32 bytes). Bind it into the evidence (see the API
    /// description) and send it back in `POST /v1/attest`; it can be used once.
    pub nonce: String,
    /// When it expires (Unix seconds).
    pub expires_at: i64,
}

/// One endorsement file (certificate, CRL, collateral bundle, RIM).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndorsementIn {
    /// A name for messages (e.g. the file name).
    #[serde(default)]
    pub name: Option<String>,
    /// The file's bytes, base64.
    pub data: String,
}

/// Evidence to attest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    /// Evidence family: sgx, tdx, snp, az-snp-vtpm, az-tdx-vtpm, nitro,
    /// nitro-tpm, tpm, nvgpu (and sim when the server trusts the simulated
    /// TEE), or auto: recognised from the evidence, as `cachet verify --tee auto`.
    pub tee: String,
    /// The evidence bytes, base64 (JSON evidence: base64 of the JSON text).
    /// Base64 of hex or base64 text is decoded once more, as `cachet verify`
    /// reads files; text that only looks encoded is `evidence_encoding`.
    pub evidence: String,
    /// Endorsements the verifier needs (collateral, certificates, CRLs).
    #[serde(default)]
    pub endorsements: Vec<EndorsementIn>,
    /// A nonce from `POST /v1/challenge` (hex) that the evidence binds.
    /// Without one the token says `cachet.freshness: not-established`.
    #[serde(default)]
    pub nonce: Option<String>,
    /// Runtime data (base64) bound with the nonce, e.g. a public key; the
    /// token carries it as `cachet.runtime_data` (base64url).
    #[serde(default)]
    pub runtime_data: Option<String>,
    /// Verify as of this instant (RFC 3339) instead of now. Refused unless
    /// the server runs with `--allow-verification-time` (tests, offline).
    #[serde(default)]
    pub at: Option<String>,
    /// The appraisal policy to use (a name from `/v1/admin/policies`); by
    /// default the TEE's: the stored policy `default-<tee>`, else the strict
    /// default shipped with Cachet.
    #[serde(default)]
    pub policy: Option<String>,
}

/// The attestation result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttestResponse {
    /// The EAR attestation token: a JWT signed with a key of the JWKS.
    pub token: String,
}

fn decode_b64(field: &str, s: &str) -> Result<Vec<u8>, ApiError> {
    cachet_verify::encoding::decode_base64(s).ok_or_else(|| ApiError::invalid(format!("'{field}' is not base64")))
}

/// The family of a request's (decoded) evidence: the one it names, or with
/// `auto` the one recognised from the evidence's structure, as
/// `cachet verify --tee auto` does (`cachet_verify::detect_tee`).
/// `unknown_tee` for another name, `tee_undetected` when `auto` does not
/// recognise the evidence.
pub(crate) fn parse_tee(name: &str, evidence: &[u8]) -> Result<Tee, ApiError> {
    if name == "auto" {
        return cachet_verify::detect_tee(evidence).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "tee_undetected",
                "tee \"auto\": the evidence is not a format Cachet recognises (SGX/TDX quote, SNP report, Nitro document, \
                 NVIDIA report, TPM or Azure JSON); name its family in 'tee', and check that 'evidence' is base64 of the raw evidence",
            )
        });
    }
    Tee::parse(name).ok_or_else(|| {
        let names: Vec<_> = Tee::ALL.iter().map(|t| t.as_str()).collect();
        ApiError::new(StatusCode::BAD_REQUEST, "unknown_tee", format!("unknown tee {name:?}; expected auto or one of {}", names.join(", ")))
    })
}

/// The evidence bytes of a request's `evidence` (base64). Evidence that
/// decodes to hex or base64 text (sent encoded twice) is decoded once more,
/// as `cachet verify` reads evidence files (`cachet_verify::encoding`); text
/// that only looks encoded is `400 evidence_encoding`, rather than reaching
/// the verifier as garbage ("unsupported quote version 13360").
fn evidence_bytes(evidence: &str) -> Result<Vec<u8>, ApiError> {
    use cachet_verify::encoding::{decode_evidence, Encoding};
    let raw = decode_b64("evidence", evidence)?;
    let refuse = |message: String| Err(ApiError::new(StatusCode::BAD_REQUEST, "evidence_encoding", message));
    // Printable text (not JSON): hex or base64 sent inside the base64.
    let text =
        std::str::from_utf8(&raw).ok().filter(|t| !t.trim().is_empty() && t.chars().all(|c| !c.is_control() || c.is_ascii_whitespace()));
    if let Some(text) = text {
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let digits = compact.strip_prefix("0x").unwrap_or(&compact);
        // Every hex digit is base64 too: an odd count is hex cut short, not base64.
        if digits.bytes().all(|b| b.is_ascii_hexdigit()) && digits.len() % 2 == 1 {
            return refuse(format!(
                "the evidence looks hex-encoded but has an odd number of hex digits ({}), so it is cut short or altered; \
                 send 'evidence' as base64 of the raw evidence bytes",
                digits.len()
            ));
        }
    }
    let (encoding, bytes) = decode_evidence(&raw);
    if encoding != Encoding::Binary || text.is_none() {
        return Ok(bytes);
    }
    refuse(
        "the evidence decodes to text that is neither JSON, hex nor base64; send 'evidence' as base64 of the raw evidence \
         bytes (JSON evidence: base64 of the JSON text)"
            .to_string(),
    )
}

/// The verification instant of a request: now, or its `at` when the server
/// allows a verification time (`verification_time_not_allowed` otherwise).
pub(crate) fn verification_time(st: &AppState, at: Option<&str>, now: i64) -> Result<i64, ApiError> {
    match at {
        // The test-only --fixed-verification-time pins the instant of
        // every request that does not name one.
        None => Ok(st.config.fixed_verification_time.unwrap_or(now)),
        Some(_) if !st.config.allow_verification_time => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "verification_time_not_allowed",
            "'at' is only accepted when the server runs with --allow-verification-time",
        )),
        Some(s) => parse_rfc3339(s),
    }
}

/// Decode the evidence and endorsements of a request, within the size
/// limits, and find its family (`tee`, or `auto`; see [`parse_tee`]).
pub(crate) fn decode_evidence(
    tee: &str,
    evidence: &str,
    endorsements: &[EndorsementIn],
) -> Result<(Tee, Vec<u8>, Vec<Endorsement>), ApiError> {
    if tee != "auto" {
        parse_tee(tee, &[])?;
    }
    let evidence = evidence_bytes(evidence)?;
    if evidence.len() > cachet_verify::MAX_EVIDENCE_LEN {
        return Err(ApiError::invalid("evidence exceeds the size limit"));
    }
    let tee = parse_tee(tee, &evidence)?;
    if endorsements.len() > MAX_ENDORSEMENTS {
        return Err(ApiError::invalid(format!("at most {MAX_ENDORSEMENTS} endorsements")));
    }
    let endorsements = endorsements
        .iter()
        .enumerate()
        .map(|(i, e)| {
            Ok(Endorsement {
                name: e.name.clone().unwrap_or_else(|| format!("endorsement[{i}]")),
                bytes: decode_b64(&format!("endorsements[{i}].data"), &e.data)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok((tee, evidence, endorsements))
}

/// Decode optional runtime data (base64, at most [`MAX_RUNTIME_DATA`]).
pub(crate) fn decode_runtime_data(runtime_data: Option<&str>) -> Result<Option<Vec<u8>>, ApiError> {
    match runtime_data {
        Some(s) => {
            let v = decode_b64("runtime_data", s)?;
            if v.len() > MAX_RUNTIME_DATA {
                return Err(ApiError::invalid("runtime_data exceeds 64 KiB"));
            }
            Ok(Some(v))
        }
        None => Ok(None),
    }
}

/// What a policy is given for verified evidence: the claims, and the
/// runtime data (base64) and nonce (hex) the attestation carried.
pub(crate) fn appraisal_input(
    tee: Tee,
    claims: &Value,
    runtime_data: Option<&[u8]>,
    nonce: Option<&[u8]>,
) -> cachet_appraise::AppraisalInput {
    use base64::Engine;
    let mut input = cachet_appraise::AppraisalInput::new(tee.as_str(), claims.clone());
    input.runtime_data = runtime_data.map(|r| Value::String(base64::engine::general_purpose::STANDARD.encode(r)));
    input.nonce = nonce.map(hex::encode);
    input
}

fn parse_rfc3339(s: &str) -> Result<i64, ApiError> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| ApiError::invalid(format!("'at' is not RFC 3339: {e}")))
}

/// Issue a nonce.
#[utoipa::path(post, path = "/v1/challenge", tag = "attestation",
    responses((status = 200, description = "A fresh nonce, usable once before it expires", body = ChallengeResponse),
              (status = 503, description = "Store unavailable", body = ErrorBody)))]
pub async fn challenge(State(st): State<AppState>) -> Result<Json<ChallengeResponse>, ApiError> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| ApiError::internal("no randomness"))?;
    let t = now();
    let expires_at = t + st.config.nonce_ttl;
    quick(st.store.insert_nonce(&nonce, t, expires_at)).await?;
    st.metrics.nonces_issued.with_label_values::<&str>(&[]).inc();
    Ok(Json(ChallengeResponse { nonce: hex::encode(nonce), expires_at }))
}

/// How long the quick store calls of the routes a load balancer or an
/// attester polls (a nonce, a readiness ping) may take before answering
/// 503 `storage_unavailable`: a database that is down must be seen within a
/// second, not after the pool's 30 s wait for a connection.
pub const QUICK_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

async fn quick<T, E: Into<ApiError>>(call: impl std::future::Future<Output = Result<T, E>>) -> Result<T, ApiError> {
    match tokio::time::timeout(QUICK_STORE_TIMEOUT, call).await {
        Ok(answer) => answer.map_err(Into::into),
        Err(_) => Err(ApiError::storage(format!("the store did not answer within {QUICK_STORE_TIMEOUT:?}"))),
    }
}

/// Evidence that verified but does not carry the expected binding: audited,
/// counted, and answered `422 freshness_binding_failed`.
async fn binding_refused(st: &AppState, actor: &str, tee: Tee, why: String) -> ApiError {
    record(st, actor, tee, "refused", Some("Freshness binding".into()), None, json!({"message": why})).await;
    st.metrics.attestations.with_label_values(&[tee.as_str(), "refused"]).inc();
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "freshness_binding_failed",
        message: format!("Freshness binding: {why}"),
        check: Some("Freshness binding".into()),
    }
}

/// Verify evidence, appraise it, and return a signed EAR token.
#[utoipa::path(post, path = "/v1/attest", tag = "attestation", request_body = AttestRequest,
    responses(
        (status = 200, description = "Verified: the EAR token (its ear.status says how it was appraised)", body = AttestResponse),
        (status = 400, description = "Malformed request (invalid_request, unknown_tee, tee_undetected, evidence_encoding, nonce_unknown, nonce_expired, verification_time_not_allowed)", body = ErrorBody),
        (status = 409, description = "nonce_reused: the nonce was already consumed", body = ErrorBody),
        (status = 413, description = "body_too_large", body = ErrorBody),
        (status = 422, description = "verification_failed (the failing check is named), freshness_binding_failed, endorsement_outdated, endorsement_contradicted or revocation_unavailable", body = ErrorBody),
        (status = 503, description = "storage_unavailable, no_signing_key, timeout", body = ErrorBody)))]
pub async fn attest(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<AttestRequest>,
) -> Result<Json<AttestResponse>, ApiError> {
    let actor = format!("client:{}", peer.ip());
    let (token, _claims) = attest_core(&st, &actor, req).await?;
    Ok(Json(AttestResponse { token }))
}

/// Verify, appraise and sign: the work of `POST /v1/attest`, shared with
/// `POST /v1/secrets/release` (evidence attested in the same call).
/// Returns the signed token and its claims.
pub(crate) async fn attest_core(st: &AppState, actor: &str, req: AttestRequest) -> Result<(String, Value), ApiError> {
    attest_bound(st, actor, req, None).await
}

/// [`attest_core`] with the report data the evidence must carry given by
/// the caller instead of Cachet's binding of the nonce and runtime data:
/// the Trustee KBS protocol (`kbs.rs`) binds its own hash of the nonce and
/// TEE key. The nonce is still consumed and the token still carries the
/// nonce and runtime data; everything else is the same pipeline.
pub(crate) async fn attest_bound(
    st: &AppState,
    actor: &str,
    req: AttestRequest,
    report_data: Option<Vec<u8>>,
) -> Result<(String, Value), ApiError> {
    attest_adapted(st, actor, req, report_data, &Adapter::default()).await
}

/// An adapter's binding check: `Err(why)` refuses the verified claims.
pub(crate) type BindingCheck = dyn Fn(&Value) -> Result<(), String> + Send + Sync;

/// What an adapter for another protocol's surface (`maa.rs`: Azure
/// Attestation) changes in the one pipeline of [`attest_core`]; nothing
/// else differs (verification, endorsements, appraisal, audit, metrics).
#[derive(Default)]
pub(crate) struct Adapter<'a> {
    /// The adapter's own binding, checked on the verified claims (a
    /// refusal is `422 freshness_binding_failed`, audited). When set it
    /// replaces Cachet's binding of the nonce and runtime data (the nonce is
    /// still consumed, and both are still carried in the token).
    pub binding: Option<&'a BindingCheck>,
    /// Claims the adapter adds to the token, given the finished EAR claims.
    pub claims: Option<&'a (dyn Fn(&mut Value) + Send + Sync)>,
    /// Appraise with this Rego text (the caller's draft) instead of a
    /// stored policy; the token is then unsecured (`alg: none`), so a
    /// policy the caller wrote never yields a signed token.
    pub draft_policy: Option<&'a str>,
    /// Sign with the RS256 key of the Azure Attestation compatible routes
    /// (`KeyService::sign_compat`) instead of the EAR key.
    pub compat_key: bool,
}

/// An unsecured JWT (RFC 7519 §6: `alg: none`, empty signature).
fn unsecured_jwt(claims: &Value) -> String {
    use base64::Engine;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(claims.to_string().as_bytes()))
}

/// [`attest_bound`] with an [`Adapter`].
pub(crate) async fn attest_adapted(
    st: &AppState,
    actor: &str,
    req: AttestRequest,
    report_data: Option<Vec<u8>>,
    adapter: &Adapter<'_>,
) -> Result<(String, Value), ApiError> {
    let st = st.clone();
    let actor = actor.to_string();
    let t = now();
    let at = verification_time(&st, req.at.as_deref(), t)?;
    let (tee, evidence, attester_endorsements) = decode_evidence(&req.tee, &req.evidence, &req.endorsements)?;
    let runtime_data = decode_runtime_data(req.runtime_data.as_deref())?;
    let nonce = match &req.nonce {
        Some(h) => {
            let n = hex::decode(h.trim()).map_err(|_| ApiError::invalid("'nonce' is not hex"))?;
            if !(8..=64).contains(&n.len()) {
                return Err(ApiError::invalid("'nonce' must be 8 to 64 bytes"));
            }
            Some(n)
        }
        None => None,
    };

    // Consume the nonce before verifying: of concurrent uses exactly one
    // proceeds, and a nonce is spent even when its evidence is refused.
    if let Some(n) = &nonce {
        let refuse = |status, code, msg: &str| Err(ApiError::new(status, code, msg));
        let outcome = st.store.consume_nonce(n, t).await?;
        let refused = match outcome {
            NonceOutcome::Consumed => Ok(()),
            NonceOutcome::Unknown => refuse(StatusCode::BAD_REQUEST, "nonce_unknown", "this nonce was not issued by this service"),
            NonceOutcome::Expired => refuse(StatusCode::BAD_REQUEST, "nonce_expired", "this nonce has expired; request a new challenge"),
            NonceOutcome::AlreadyUsed => refuse(StatusCode::CONFLICT, "nonce_reused", "this nonce was already used"),
        };
        if let Err(e) = refused {
            record(&st, &actor, tee, "refused", Some(e.code.to_string()), None, json!({"reason": e.message})).await;
            st.metrics.attestations.with_label_values(&[tee.as_str(), "refused"]).inc();
            return Err(e);
        }
    }
    // The service's own endorsements decide; the attester's are hints
    // (cachet_endorse::authority), used for what the service cannot get.
    let (endorsements, provenance, unavailable) =
        match crate::endorse::resolve(&st.endorser, tee, &evidence, attester_endorsements, at).await {
            Ok(r) => r,
            Err(e) => {
                record(&st, &actor, tee, "refused", e.check.clone(), None, json!({"message": e.message})).await;
                st.metrics.attestations.with_label_values(&[tee.as_str(), "refused"]).inc();
                return Err(e);
            }
        };
    let revisions = crate::endorse::revisions(&endorsements);
    if let Err(e) = crate::endorse::enforce(&st.config.endorsement_rules, tee, &endorsements, at) {
        record(&st, &actor, tee, "refused", e.check.clone(), None, json!({"message": e.message})).await;
        st.metrics.attestations.with_label_values(&[tee.as_str(), "refused"]).inc();
        return Err(e);
    }
    let binding = (adapter.binding.is_none() && (nonce.is_some() || runtime_data.is_some()))
        .then(|| Binding::new(tee, nonce.as_deref().unwrap_or_default(), runtime_data.as_deref().unwrap_or_default()))
        .map(|b| match report_data {
            Some(expected) => Binding { kind: crate::freshness::BindingKind::ReportData, expected, ..b },
            None => b,
        });

    // Verify (CPU-bound) on the blocking pool, a bounded number at once.
    let permit = st.verify_slots.clone().acquire_owned().await.map_err(ApiError::internal)?;
    let anchors = st.anchors.clone();
    let cache = st.verify_cache.clone();
    let verifier_nonce = binding.as_ref().and_then(|b| b.verifier_nonce().map(<[u8]>::to_vec));
    // The platform's TCB as the quote states it, recorded below once verified (TCB recovery forecast).
    let platform_hint = cachet_endorse::forecast::platform_hint(tee, &evidence);
    let started = Instant::now();
    let verification = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        cachet_verify::cache::verify_cached(
            tee,
            &VerifyRequest {
                evidence: &evidence,
                endorsements: &endorsements,
                anchors: &anchors,
                at,
                expected_nonce: verifier_nonce.as_deref(),
            },
            &cache,
        )
    })
    .await
    .map_err(ApiError::internal)?;
    st.metrics.verification_seconds.with_label_values(&[tee.as_str()]).observe(started.elapsed().as_secs_f64());

    let claims = match verification.result {
        Ok(c) => c,
        Err(e) => {
            let mut detail = crate::console::audit_report(&verification.checks, None, None, None);
            detail.insert("message".into(), json!(e.message));
            record(&st, &actor, tee, "refused", Some(e.check.clone()), None, Value::Object(detail)).await;
            st.metrics.attestations.with_label_values(&[tee.as_str(), "refused"]).inc();
            // The message can quote the evidence: bounded like the audit's.
            tracing::info!(tee = %tee, check = %bound_text(&e.check, MAX_FIELD), "attestation refused: {}", bound_text(&e.message, MAX_DETAIL_STRING));
            // Say so when the service could not get its own endorsements.
            let message = match &unavailable {
                Some(why) => format!("{e} (the service could not get its own endorsements: {why})"),
                None => e.to_string(),
            };
            return Err(ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, code: "verification_failed", message, check: Some(e.check) });
        }
    };
    if let Some(b) = &binding {
        if let Err(why) = b.check(&claims, &verification.checks) {
            return Err(binding_refused(&st, &actor, tee, why).await);
        }
    }
    if let Some(Err(why)) = adapter.binding.map(|check| check(&claims)) {
        return Err(binding_refused(&st, &actor, tee, why).await);
    }

    let platform = cachet_endorse::forecast::platform_seen(tee, platform_hint, &claims);
    let input = appraisal_input(tee, &claims, runtime_data.as_deref(), nonce.as_deref());
    let appraised = match adapter.draft_policy {
        Some(text) => {
            let text = text.to_string();
            let policy = tokio::task::spawn_blocking(move || cachet_appraise::Policy::compile("draft", &text))
                .await
                .map_err(ApiError::internal)?
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "policy_invalid", format!("the draft policy: {e}")))?;
            appraisal::run(std::sync::Arc::new(policy), input, st.appraiser.reference_values(), at).await
        }
        None => appraisal::appraise(&st, tee, req.policy.as_deref(), input, at).await,
    };
    let a = appraised.inspect_err(|e| {
        tracing::error!(tee = %tee, code = e.code, "appraisal failed: {}", bound_text(&e.message, MAX_DETAIL_STRING));
    })?;
    let status = appraisal::token_status(a.status);
    // The console's report of this attestation (bounded): checks, claims, rules, revisions.
    let report = crate::console::audit_report(&verification.checks, Some(&claims), Some(json!(a.reasons)), revisions.as_ref());
    let mut token_id = [0u8; 16];
    aws_lc_rs::rand::fill(&mut token_id).map_err(|_| ApiError::internal("no randomness"))?;
    let token_id = hex::encode(token_id);
    let mut submods = BTreeMap::new();
    submods.insert(
        tee.as_str().to_string(),
        Submod {
            status,
            trust_vector: appraisal::token_vector(&a.trustworthiness_vector),
            annotated_evidence: claims,
            policy_id: a.policy_id(),
        },
    );
    let ear = Ear {
        issuer: st.issuer.to_string(),
        issued_at: t,
        expires_at: t + st.config.token_ttl,
        token_id: token_id.clone(),
        verifier_build: format!("cachet {}", env!("CARGO_PKG_VERSION")),
        submods,
        nonce: nonce.clone(),
        runtime_data: runtime_data.clone(),
        policy_hash: appraisal::hash_label(&a.policy_hash),
        freshness: if nonce.is_some() { Freshness::Nonce } else { Freshness::NotEstablished },
        verification_time: at,
    };
    let mut claims = ear.to_claims();
    if let Some(m) = claims.as_object_mut() {
        // Which endorsements judged the evidence: the service's own, the attester's, or both.
        m.insert("cachet.endorsements".into(), json!(provenance.as_str()));
        // And which revision of each decided.
        if let Some(r) = revisions {
            m.insert("cachet.endorsement-revisions".into(), r);
        }
    }
    // Each rule's outcome, and the policy's extra claims, beside the EAR claims.
    if let (Some(sub), Value::Object(extra)) = (claims["submods"].get_mut(tee.as_str()).and_then(Value::as_object_mut), a.to_ear_submod()) {
        for (k, v) in extra {
            if k.starts_with("cachet.") && k != "cachet.policy-hash" {
                sub.insert(k, v);
            }
        }
    }
    if let Some(add) = adapter.claims {
        add(&mut claims);
    }
    let signed = match (adapter.draft_policy, adapter.compat_key) {
        (Some(_), _) => Ok((unsecured_jwt(&claims), "none (draft policy)".to_string())),
        (None, true) => st.keys.sign_compat(&claims, t, "Cachet Azure Attestation compatible token signing").await,
        (None, false) => st.keys.sign(&claims, t).await,
    };
    let (token, kid) = signed.map_err(|e| {
        tracing::error!(error = %e, "cannot sign a token");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_signing_key", "no token signing key is available")
    })?;
    let not_affirming: Vec<_> = a.reasons.iter().filter(|r| r.outcome > cachet_appraise::Status::Affirming).collect();
    let mut detail = json!({"status": a.status.as_str(), "policy": a.policy_name, "policy_hash": appraisal::hash_label(&a.policy_hash), "reasons": not_affirming, "kid": kid, "freshness": ear.freshness.as_str(), "verification_time": at});
    if let Some(d) = detail.as_object_mut() {
        d.extend(report);
    }
    if let Some(p) = platform {
        detail["platform"] = json!(p);
    }
    let entry = AuditEntry {
        ts: t,
        actor,
        action: "attest".into(),
        tee: Some(tee.as_str().into()),
        outcome: "ok".into(),
        failed_check: None,
        token_id: Some(token_id),
        detail,
    };
    // A token is only handed out once its decision is in the audit log.
    st.store.append_audit(&entry).await?;
    st.metrics.attestations.with_label_values(&[tee.as_str(), a.status.as_str()]).inc();
    tracing::info!(tee = %tee, status = a.status.as_str(), kid = %kid, freshness = ear.freshness.as_str(), "attestation token issued");
    Ok((token, claims))
}

/// Append a refusal to the audit log (logged, not fatal, if the store fails).
async fn record(st: &AppState, actor: &str, tee: Tee, outcome: &str, check: Option<String>, token_id: Option<String>, detail: Value) {
    let entry = AuditEntry {
        ts: now(),
        actor: actor.into(),
        action: "attest".into(),
        tee: Some(tee.as_str().into()),
        outcome: outcome.into(),
        failed_check: check,
        token_id,
        detail,
    };
    if let Err(e) = st.store.append_audit(&entry).await {
        tracing::error!(error = %e, "cannot append to the audit log");
    }
}

/// OpenID Connect discovery document (issuer and JWKS location).
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery",
    responses((status = 200, description = "Discovery document", body = Object)))]
pub async fn openid_configuration(State(st): State<AppState>) -> Json<Value> {
    let algs: Vec<&str> = cachet_token::Algorithm::ALL.iter().map(|a| a.as_str()).collect();
    Json(json!({
        "issuer": st.issuer.as_str(),
        "jwks_uri": format!("{}/.well-known/jwks.json", st.issuer),
        "id_token_signing_alg_values_supported": algs,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "claims_supported": ["iss", "iat", "exp", "jti", "eat_profile", "eat_nonce", "ear.verifier-id", "submods"],
    }))
}

/// The token signing keys (JWKS): pending, active and retired-but-unexpired keys.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    responses((status = 200, description = "JSON Web Key Set", body = Object)))]
pub async fn jwks(State(st): State<AppState>) -> Result<Response, ApiError> {
    let doc = st.keys.jwks(now()).await.map_err(ApiError::storage)?;
    Ok(([(header::CACHE_CONTROL, "public, max-age=60")], Json(doc)).into_response())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = Object)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the store answers, a key can sign, and the key custody (the
/// HSM holding the KEK, when there is one) answers — reconnecting to it
/// when its session was lost.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = Object),
              (status = 503, description = "Not ready: storage_unavailable, no_signing_key, key_custody_unavailable", body = ErrorBody)))]
pub async fn readyz(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    quick(st.store.ping()).await?;
    let broker = st.broker.clone();
    // An HSM call blocks: off the async threads.
    if let Err(e) = tokio::task::spawn_blocking(move || broker.kek().check()).await.map_err(ApiError::internal)? {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "key_custody_unavailable",
            format!("the key custody does not answer ({e}); secrets cannot be released until it does"),
        ));
    }
    // The custody answers: the active key must also open and sign.
    match st.keys.check_signer(now()).await {
        Ok(_) => Ok(Json(json!({"status": "ready", "key_custody": "ok"}))),
        Err(e) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_signing_key", format!("no token signing key can sign ({e})"))),
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "cachet_attestations_total, cachet_verification_seconds, ...", body = String, content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>) -> Response {
    let oldest = crate::endorse::oldest_age(&st.endorser, crate::now()).await;
    st.metrics.observe_endorsements(&st.endorser.stats(), oldest);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render(st.verify_cache.stats())).into_response()
}
