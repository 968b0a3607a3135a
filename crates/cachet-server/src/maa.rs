//! The Azure Attestation (MAA) REST surface: a thin adapter over the
//! native pipeline ([`routes::attest_adapted`]), so the Azure SDKs can use
//! Cachet as their attestation instance. Same verifier, endorsements,
//! policies (Cachet's Rego), audit log and metrics as `POST /v1/attest`.
//!
//! - `GET /certs`: the published token keys that carry a certificate, as
//!   `{"keys": [JWK with x5c]}` (the SDK reads each key's `x5c`). The MAA
//!   routes sign with an RS256 key of their own (the Python SDK 1.0.0 checks
//!   only RSA PKCS#1 v1.5 signatures) whose self-signed certificate is its
//!   `x5c`; it is made at the first use of these routes if absent
//!   (`KeyService::ensure_compat_signer`), so a service that never serves
//!   them publishes no RS256 key.
//! - `POST /attest/SgxEnclave`, `/attest/OpenEnclave` (api-versions
//!   2020-10-01, 2022-08-01 and later listed in [`SGX_VERSIONS`]),
//!   `/attest/SevSnpVm` (2022-08-01 on), `/attest/TdxVm` (2023-04-01-preview
//!   on): `{quote | report, runtimeData?: {data, dataType}, initTimeData?,
//!   nonce?, draftPolicyForAttestation?}` (binary fields base64url) →
//!   `{"token": JWT}`. MAA's binding: the first 32 bytes of the evidence's
//!   report data are SHA-256 of `runtimeData.data`. There is no challenge
//!   step: freshness is the caller's binding, and the token says
//!   `cachet.freshness: not-established` as the native API does for
//!   evidence without a nonce. `nonce` is echoed in the token.
//! - A draft policy is Cachet Rego text; its token is unsecured (`alg:
//!   none`), as MAA's is.
//! - The SDK's administration calls (policies, policy management
//!   certificates) answer `501` with MAA's error shape, naming Cachet's admin API.
//!
//! Errors are MAA's `{"error": {"code", "message"}}` with `x-ms-error-code`.

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::routes::{self, Adapter, AttestRequest, MAX_RUNTIME_DATA};
use crate::{now, AppState};

/// Common name of the RS256 key's self-signed certificate.
pub const CERT_NAME: &str = "Cachet Azure Attestation compatible token signing";
/// api-versions of the SGX and Open Enclave routes.
pub const SGX_VERSIONS: &[&str] = &["2020-10-01", "2022-08-01", "2022-09-01-preview", "2023-04-01-preview", "2025-06-01"];
/// api-versions of `/attest/SevSnpVm` (added by 2022-08-01).
pub const SNP_VERSIONS: &[&str] = &["2022-08-01", "2022-09-01-preview", "2023-04-01-preview", "2025-06-01"];
/// api-versions of `/attest/TdxVm` (added by the 2023-04-01-preview).
pub const TDX_VERSIONS: &[&str] = &["2023-04-01-preview", "2025-06-01"];
/// Largest draft policy accepted (bytes).
pub const MAX_DRAFT_POLICY: usize = 64 << 10;
/// Largest `nonce` echoed (characters).
pub const MAX_NONCE: usize = 1024;

/// The MAA routes (mounted beside the native ones).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/certs", get(certs))
        .route("/attest/SgxEnclave", attest_route(Kind::Sgx))
        .route("/attest/OpenEnclave", attest_route(Kind::OpenEnclave))
        .route("/attest/SevSnpVm", attest_route(Kind::SevSnpVm))
        .route("/attest/TdxVm", attest_route(Kind::TdxVm))
        .route("/policies/{*rest}", any(not_supported))
        .route("/certificates", any(not_supported))
        .route("/certificates:add", any(not_supported))
        .route("/certificates:remove", any(not_supported))
}

/// An error in MAA's shape.
#[derive(Debug)]
pub struct MaaError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl MaaError {
    fn invalid(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code: "InvalidParameter", message: message.into() }
    }
}

impl IntoResponse for MaaError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response();
        r.headers_mut().insert("x-ms-error-code", HeaderValue::from_static(self.code));
        r
    }
}

/// A native error in MAA's shape: 422 (evidence refused) is MAA's 400, the
/// native code leads the message.
impl From<ApiError> for MaaError {
    fn from(e: ApiError) -> Self {
        let (status, code) = match e.status {
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST | StatusCode::CONFLICT => {
                (StatusCode::BAD_REQUEST, "InvalidParameter")
            }
            StatusCode::FORBIDDEN => (StatusCode::FORBIDDEN, "Forbidden"),
            StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLarge"),
            StatusCode::TOO_MANY_REQUESTS => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
            StatusCode::SERVICE_UNAVAILABLE => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
        };
        let check = e.check.map(|c| format!(" (check: {c})")).unwrap_or_default();
        Self { status, code, message: format!("{}: {}{check}", e.code, e.message) }
    }
}

#[derive(Debug, Deserialize)]
struct ApiVersion {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
}

/// `UnsupportedApiVersion` (Azure REST API guidelines) unless `v` is one of `known`.
fn check_version(v: &ApiVersion, known: &[&str]) -> Result<(), MaaError> {
    match v.api_version.as_deref() {
        Some(s) if known.contains(&s) => Ok(()),
        Some(s) => Err(MaaError {
            status: StatusCode::BAD_REQUEST,
            code: "UnsupportedApiVersion",
            message: format!(
                "api-version '{}' is not supported by this route; supported: {}",
                s.chars().take(64).collect::<String>(),
                known.join(", ")
            ),
        }),
        None => Err(MaaError {
            status: StatusCode::BAD_REQUEST,
            code: "MissingApiVersionParameter",
            message: format!("the api-version query parameter is required; supported: {}", known.join(", ")),
        }),
    }
}

/// `runtimeData` / `initTimeData`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Data {
    data: Option<String>,
    #[serde(rename = "dataType")]
    data_type: Option<String>,
}

/// The body of every attest route (`quote` or `report`, as the route says).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaaRequest {
    quote: Option<String>,
    report: Option<String>,
    #[serde(rename = "runtimeData")]
    runtime_data: Option<Data>,
    #[serde(rename = "initTimeData")]
    init_time_data: Option<Data>,
    nonce: Option<String>,
    #[serde(rename = "draftPolicyForAttestation")]
    draft_policy: Option<String>,
}

/// base64url as MAA sends it (padding and the standard alphabet tolerated).
fn b64url(field: &str, s: &str) -> Result<Vec<u8>, MaaError> {
    let t: String = s
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| {
            if c == '+' {
                '-'
            } else if c == '/' {
                '_'
            } else {
                c
            }
        })
        .collect();
    URL_SAFE_NO_PAD.decode(t).map_err(|_| MaaError::invalid(format!("'{field}' is not base64url")))
}

/// Decoded `runtimeData`/`initTimeData`: its bytes and, for `dataType: JSON`, the JSON.
type DecodedData = Option<(Vec<u8>, Option<Value>)>;

/// Decode `runtimeData`/`initTimeData` (at most [`MAX_RUNTIME_DATA`] bytes).
fn decode_data(field: &str, d: &Option<Data>) -> Result<DecodedData, MaaError> {
    let Some(d) = d else { return Ok(None) };
    let Some(data) = &d.data else { return Ok(None) };
    let bytes = b64url(&format!("{field}.data"), data)?;
    if bytes.len() > MAX_RUNTIME_DATA {
        return Err(MaaError::invalid(format!("'{field}.data' exceeds 64 KiB")));
    }
    let parsed = match d.data_type.as_deref() {
        None | Some("Binary") => None,
        Some("JSON") => Some(
            serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| MaaError::invalid(format!("'{field}.dataType' is JSON but the data is not JSON: {e}")))?,
        ),
        Some(other) => {
            return Err(MaaError::invalid(format!(
                "'{field}.dataType' {:?} is neither Binary nor JSON",
                other.chars().take(32).collect::<String>()
            )))
        }
    };
    Ok(Some((bytes, parsed)))
}

/// Which MAA route: its evidence field, Cachet family and attestation type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sgx,
    OpenEnclave,
    SevSnpVm,
    TdxVm,
}

impl Kind {
    /// The api-versions that define this attestation type.
    fn versions(self) -> &'static [&'static str] {
        match self {
            Kind::Sgx | Kind::OpenEnclave => SGX_VERSIONS,
            Kind::SevSnpVm => SNP_VERSIONS,
            Kind::TdxVm => TDX_VERSIONS,
        }
    }
    fn tee(self) -> &'static str {
        match self {
            Kind::Sgx | Kind::OpenEnclave => "sgx",
            Kind::SevSnpVm => "snp",
            Kind::TdxVm => "tdx",
        }
    }
    fn attestation_type(self) -> &'static str {
        match self {
            Kind::Sgx | Kind::OpenEnclave => "sgx",
            Kind::SevSnpVm => "sevsnpvm",
            Kind::TdxVm => "tdxvm",
        }
    }
    fn evidence_field(self) -> &'static str {
        match self {
            Kind::Sgx | Kind::TdxVm => "quote",
            Kind::OpenEnclave | Kind::SevSnpVm => "report",
        }
    }
}

/// An Open Enclave remote report: `oe_report_header_t` (version 1, type
/// `OE_REPORT_TYPE_SGX_REMOTE` = 2, the size of what follows, little-endian)
/// followed by the SGX quote. Returns the quote.
pub fn open_enclave_quote(report: &[u8]) -> Result<&[u8], String> {
    let (Some(version), Some(kind), Some(size), Some(rest)) = (
        report.get(0..4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_le_bytes),
        report.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_le_bytes),
        report.get(8..16).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes),
        report.get(16..),
    ) else {
        return Err("the report is shorter than an Open Enclave report header (16 bytes)".into());
    };
    if version != 1 {
        return Err(format!("Open Enclave report header version {version} is not 1; send the oe_get_report output"));
    }
    if kind != 2 {
        return Err(format!("Open Enclave report type {kind} is not a remote SGX report (2); a local report cannot be attested"));
    }
    if u64::try_from(rest.len()).ok() != Some(size) {
        return Err(format!("the Open Enclave report header says {size} bytes follow, {} do", rest.len()));
    }
    Ok(rest)
}

/// An SEV-SNP `report`: the raw report, or MAA's JSON `{SnpReport,
/// VcekCertChain?, Endorsements?}` (base64url). Returns the report and the
/// certificate chain given (a hint, as the native API's endorsements are).
fn snp_evidence(bytes: Vec<u8>) -> Result<(Vec<u8>, Vec<routes::EndorsementIn>), MaaError> {
    let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(&bytes) else { return Ok((bytes, Vec::new())) };
    let report = o.get("SnpReport").and_then(Value::as_str).ok_or_else(|| MaaError::invalid("the SNP report JSON has no 'SnpReport'"))?;
    let report = b64url("report.SnpReport", report)?;
    let mut endorsements = Vec::new();
    if let Some(chain) = o.get("VcekCertChain").and_then(Value::as_str) {
        endorsements.push(routes::EndorsementIn {
            name: Some("VcekCertChain".into()),
            data: STANDARD.encode(b64url("report.VcekCertChain", chain)?),
        });
    }
    Ok((report, endorsements))
}

/// MAA's binding: the first 32 bytes of the verified report data are
/// SHA-256 of the runtime data.
pub fn check_binding(claims: &Value, runtime_data: &[u8]) -> Result<(), String> {
    let want = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, runtime_data));
    let got =
        claims.get("report_data").and_then(Value::as_str).map(str::to_ascii_lowercase).ok_or("the verified claims carry no report data")?;
    match got.get(..64) {
        Some(prefix) if prefix == want => Ok(()),
        _ => Err(format!(
            "the first 32 bytes of the report data ({}) are not SHA-256 of runtimeData.data ({want}); put SHA-256(runtime data) there, \
             or send the runtime data the evidence was made with",
            got.get(..64).unwrap_or(&got)
        )),
    }
}

/// MAA's claims for verified `evidence` claims of route `kind`.
fn maa_claims(kind: Kind, ev: &Value, ms: &mut Map<String, Value>) {
    let s = |k: &str| ev.get(k).cloned().unwrap_or(Value::Null);
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            ms.insert(k.to_string(), v);
        }
    };
    match kind {
        Kind::Sgx | Kind::OpenEnclave => {
            put("x-ms-sgx-is-debuggable", s("debug"));
            put("x-ms-sgx-mrenclave", s("mr_enclave"));
            put("x-ms-sgx-mrsigner", s("mr_signer"));
            put("x-ms-sgx-product-id", s("isv_prod_id"));
            put("x-ms-sgx-svn", s("isv_svn"));
            put("x-ms-sgx-config-id", s("config_id"));
            put("x-ms-sgx-config-svn", s("config_svn"));
            put("x-ms-sgx-isv-extended-product-id", s("isv_ext_prod_id"));
            put("x-ms-sgx-isv-family-id", s("isv_family_id"));
            put("x-ms-sgx-report-data", s("report_data"));
        }
        Kind::SevSnpVm => {
            put("x-ms-sevsnpvm-is-debuggable", s("debug"));
            put("x-ms-sevsnpvm-launchmeasurement", s("measurement"));
            put("x-ms-sevsnpvm-hostdata", s("host_data"));
            put("x-ms-sevsnpvm-idkeydigest", s("id_key_digest"));
            put("x-ms-sevsnpvm-authorkeydigest", s("author_key_digest"));
            put("x-ms-sevsnpvm-familyId", s("family_id"));
            put("x-ms-sevsnpvm-imageId", s("image_id"));
            put("x-ms-sevsnpvm-guestsvn", s("guest_svn"));
            put("x-ms-sevsnpvm-vmpl", s("vmpl"));
            put("x-ms-sevsnpvm-reportid", s("report_id"));
            put("x-ms-sevsnpvm-reportdata", s("report_data"));
            let tcb = ev.get("reported_tcb");
            let part = |k: &str| tcb.and_then(|t| t.get(k)).cloned().unwrap_or(Value::Null);
            put("x-ms-sevsnpvm-bootloader-svn", part("bootloader"));
            put("x-ms-sevsnpvm-tee-svn", part("tee"));
            put("x-ms-sevsnpvm-snpfw-svn", part("snp"));
            put("x-ms-sevsnpvm-microcode-svn", part("microcode"));
            let flags = ev.get("policy_flags");
            let flag = |k: &str| flags.and_then(|f| f.get(k)).cloned().unwrap_or(Value::Null);
            put("x-ms-sevsnpvm-smt-allowed", flag("smt_allowed"));
            put("x-ms-sevsnpvm-migration-allowed", flag("migration_agent_allowed"));
        }
        Kind::TdxVm => {
            put("tdx_mrtd", s("mr_td"));
            put("tdx_mrconfigid", s("mr_config_id"));
            put("tdx_mrowner", s("mr_owner"));
            put("tdx_mrownerconfig", s("mr_owner_config"));
            for i in 0..4 {
                put(&format!("tdx_rtmr{i}"), s(&format!("rtmr{i}")));
            }
            put("tdx_td_attributes", s("td_attributes"));
            put("tdx_td_attributes_debug", s("debug"));
            put("tdx_xfam", s("xfam"));
            put("tdx_tee_tcb_svn", s("tee_tcb_svn"));
            put("tdx_mrseam", s("mr_seam"));
            put("tdx_mrsignerseam", s("mr_signer_seam"));
            put("tdx_seam_attributes", s("seam_attributes"));
            put("tdx_report_data", s("report_data"));
        }
    }
}

/// Attest one MAA request through the native pipeline.
async fn attest(st: AppState, peer: std::net::SocketAddr, kind: Kind, body: Bytes) -> Result<Response, MaaError> {
    let req: MaaRequest = serde_json::from_slice(&body)
        .map_err(|e| MaaError::invalid(format!("the request body is not a {kind:?} attestation request: {e}")))?;
    let field = kind.evidence_field();
    let (evidence, other) = if field == "quote" { (&req.quote, &req.report) } else { (&req.report, &req.quote) };
    if other.is_some() {
        return Err(MaaError::invalid(format!(
            "/attest/{kind:?} takes '{field}', not '{}'",
            if field == "quote" { "report" } else { "quote" }
        )));
    }
    let evidence = b64url(field, evidence.as_deref().ok_or_else(|| MaaError::invalid(format!("'{field}' is required")))?)?;
    if evidence.len() > cachet_verify::MAX_EVIDENCE_LEN {
        return Err(MaaError::invalid(format!("'{field}' exceeds the evidence size limit")));
    }
    let (evidence, endorsements) = match kind {
        Kind::OpenEnclave => (open_enclave_quote(&evidence).map_err(MaaError::invalid)?.to_vec(), Vec::new()),
        Kind::SevSnpVm => snp_evidence(evidence)?,
        Kind::Sgx | Kind::TdxVm => (evidence, Vec::new()),
    };
    let runtime = decode_data("runtimeData", &req.runtime_data)?;
    let inittime = decode_data("initTimeData", &req.init_time_data)?;
    if req.nonce.as_ref().is_some_and(|n| n.len() > MAX_NONCE) {
        return Err(MaaError::invalid(format!("'nonce' exceeds {MAX_NONCE} characters")));
    }
    if req.draft_policy.as_ref().is_some_and(|p| p.len() > MAX_DRAFT_POLICY) {
        return Err(MaaError::invalid("'draftPolicyForAttestation' exceeds 64 KiB"));
    }
    let native = AttestRequest {
        tee: kind.tee().into(),
        evidence: STANDARD.encode(&evidence),
        endorsements,
        nonce: None,
        runtime_data: None,
        at: None,
        policy: None,
    };
    let tee = kind.tee();
    let rt_bytes = runtime.as_ref().map(|(b, _)| b.clone());
    let binding = move |claims: &Value| match &rt_bytes {
        Some(rd) => check_binding(claims, rd),
        None => Ok(()),
    };
    let nonce = req.nonce.clone();
    let (rt, it) = (runtime.clone(), inittime.clone());
    let add = move |claims: &mut Value| {
        let ev = claims.pointer(&format!("/submods/{tee}/ear.veraison.annotated-evidence")).cloned().unwrap_or(Value::Null);
        let policy_hash = claims
            .get("cachet.policy_hash")
            .and_then(Value::as_str)
            .and_then(|h| h.strip_prefix("sha-256:"))
            .and_then(|h| hex::decode(h).ok())
            .map(|h| URL_SAFE_NO_PAD.encode(h));
        let Some(m) = claims.as_object_mut() else { return };
        m.insert("x-ms-ver".into(), json!("1.0"));
        m.insert("x-ms-attestation-type".into(), json!(kind.attestation_type()));
        if let Some(h) = policy_hash {
            m.insert("x-ms-policy-hash".into(), json!(h));
        }
        maa_claims(kind, &ev, m);
        if let Some((bytes, parsed)) = &rt {
            if matches!(kind, Kind::Sgx | Kind::OpenEnclave) {
                m.insert("x-ms-sgx-ehd".into(), json!(URL_SAFE_NO_PAD.encode(bytes)));
            }
            m.insert("x-ms-runtime".into(), parsed.clone().unwrap_or_else(|| json!({"data": URL_SAFE_NO_PAD.encode(bytes)})));
        }
        if let Some((bytes, parsed)) = &it {
            m.insert("x-ms-inittime".into(), parsed.clone().unwrap_or_else(|| json!({"data": URL_SAFE_NO_PAD.encode(bytes)})));
        }
        if let Some(n) = &nonce {
            m.insert("nonce".into(), json!(n));
        }
    };
    let adapter = Adapter { binding: Some(&binding), claims: Some(&add), draft_policy: req.draft_policy.as_deref(), compat_key: true };
    let actor = format!("client:{} (azure-attestation)", peer.ip());
    let (token, _) = routes::attest_adapted(&st, &actor, native, None, &adapter).await?;
    Ok(Json(json!({"token": token})).into_response())
}

/// The `POST /attest/{kind}` route of one attestation type: its api-versions, then the one path.
fn attest_route(kind: Kind) -> axum::routing::MethodRouter<AppState> {
    post(
        move |State(st): State<AppState>,
              ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
              Query(v): Query<ApiVersion>,
              body: Bytes| async move {
            check_version(&v, kind.versions())?;
            attest(st, peer, kind, body).await
        },
    )
}

/// `GET /certs`: every published key that has a certificate, with `x5c`.
async fn certs(State(st): State<AppState>) -> Result<Response, MaaError> {
    let t = now();
    st.keys.ensure_compat_signer("server", t, CERT_NAME).await.map_err(|e| MaaError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "ServiceUnavailable",
        message: format!("no token signing key is available: {e}"),
    })?;
    let jwks = st.keys.jwks(t).await.map_err(|e| MaaError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "ServiceUnavailable",
        message: format!("the signing keys cannot be read: {e}"),
    })?;
    let keys: Vec<Value> =
        jwks["keys"].as_array().map(|k| k.iter().filter(|k| k.get("x5c").is_some()).cloned().collect()).unwrap_or_default();
    Ok(([(axum::http::header::CACHE_CONTROL, "public, max-age=60")], Json(json!({ "keys": keys }))).into_response())
}

/// The administration calls (policies, policy management certificates).
async fn not_supported() -> MaaError {
    MaaError {
        status: StatusCode::NOT_IMPLEMENTED,
        code: "NotSupported",
        message: "Cachet does not implement Azure Attestation's policy administration: its policies are Rego, managed with \
                  /v1/admin/policies (cachet admin policy ...); a draft policy (draftPolicyForAttestation) is Rego text"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_is_sha256_of_the_runtime_data_in_the_first_32_bytes() {
        let rd = b"a workload key";
        let h = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, rd));
        let good = json!({"report_data": format!("{h}{}", "ab".repeat(32))});
        assert!(check_binding(&good, rd).is_ok());
        assert!(check_binding(&good, b"another key").unwrap_err().contains("not SHA-256"));
        assert!(check_binding(&json!({"report_data": "00"}), rd).is_err());
        assert!(check_binding(&json!({}), rd).is_err());
    }

    #[test]
    fn an_open_enclave_report_is_a_header_and_a_quote() {
        let quote = vec![7u8; 40];
        let mut r = Vec::new();
        r.extend(1u32.to_le_bytes());
        r.extend(2u32.to_le_bytes());
        r.extend(40u64.to_le_bytes());
        r.extend(&quote);
        assert_eq!(open_enclave_quote(&r).unwrap(), quote.as_slice());
        assert!(open_enclave_quote(&r[..10]).is_err());
        assert!(open_enclave_quote(&r[..50]).unwrap_err().contains("40"));
        let mut local = r.clone();
        local[4] = 1;
        assert!(open_enclave_quote(&local).unwrap_err().contains("local"));
    }

    #[test]
    fn api_versions_are_checked_per_route() {
        let v = |s: &str| ApiVersion { api_version: Some(s.into()) };
        assert!(check_version(&v("2020-10-01"), SGX_VERSIONS).is_ok());
        assert!(check_version(&v("2020-10-01"), TDX_VERSIONS).is_err());
        let e = check_version(&v("1999-01-01"), SGX_VERSIONS).unwrap_err();
        assert_eq!(e.code, "UnsupportedApiVersion");
        assert_eq!(check_version(&ApiVersion { api_version: None }, SGX_VERSIONS).unwrap_err().code, "MissingApiVersionParameter");
    }

    #[test]
    fn base64url_with_or_without_padding() {
        assert_eq!(b64url("x", "-_8").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(b64url("x", "+/8=").unwrap(), vec![0xfb, 0xff]);
        assert!(b64url("x", "not base64!").is_err());
    }
}
