//! The Trustee KBS protocol (version 0.4.0): a thin adapter over Cachet's
//! own attestation and key release.
//!
//! - `POST /kbs/v0/auth` `{version, tee, extra-params}` → `{nonce, extra-params}`
//!   and a `kbs-session-id` cookie. The nonce is a Cachet challenge (stored,
//!   single use, `nonce_ttl`), sent as Trustee sends it (base64 of 32 bytes).
//! - `POST /kbs/v0/attest` `{init-data?, runtime-data: {nonce, tee-pubkey},
//!   tee-evidence: {primary_evidence, additional_evidence}}` → `{token}`:
//!   the evidence goes through `routes::attest_bound`, the pipeline of
//!   `POST /v1/attest`, with Trustee's binding: the report data holds
//!   SHA-384 of the RFC 8785 (JCS) canonical JSON of
//!   `{"tee-pubkey", "nonce", "additional-evidence"}`, zero-padded to 64
//!   bytes, as Trustee's attestation service computes it (az-snp-vtpm,
//!   az-tdx-vtpm: the vTPM quote's nonce is that hash itself, and from
//!   evidence version 2 the HCL user-data too, [`azure_binding`]). TEEs: tdx,
//!   sgx, snp (Trustee's `SnpEvidence`, the report rebuilt from its JSON
//!   fields, [`snp_report_bytes`]), az-snp-vtpm, az-tdx-vtpm (Trustee's JSON,
//!   which Cachet's azure verifier reads), sample (Cachet's simulated TEE,
//!   with `--insecure-simulated-tee`). The token is Cachet's EAR token; its
//!   runtime data is the TEE public key.
//! - `GET /kbs/v0/resource/{repository}/{type}/{tag}` → the secret
//!   `{repository}/{type}.{tag}` (tenant `repository`, secret name
//!   `type.tag`) as a flattened JWE to the TEE key, decided by
//!   `secrets::release` (the owner's release policy, audit, the same JWE),
//!   authorised by the session cookie or `Authorization: Bearer <token>`.
//!
//! Errors have Trustee's shape, `{"type":
//! "https://github.com/confidential-containers/kbs/errors/<Name>", "detail"}`,
//! with Trustee's statuses (404 for a path that names no resource, else 401).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use kbs_types::{Attestation, Challenge, HashAlgorithm, Request, Tee as KbsTee};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiJson};
use crate::routes::{Adapter, AttestRequest, EndorsementIn};
use crate::secrets::ReleaseBody;
use crate::{now, AppState};

/// The protocol version this adapter speaks (Trustee's `=0.4.0`).
pub const PROTOCOL_VERSION: &str = "0.4.0";
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kbs-session-id";
/// Most sessions held at once (expired ones are dropped first).
pub const MAX_SESSIONS: usize = 4096;
/// Prefix of every error `type`.
pub const ERROR_TYPE_PREFIX: &str = "https://github.com/confidential-containers/kbs/errors";
/// Longest `extra-params` accepted in `/auth` (bytes of JSON).
const MAX_EXTRA_PARAMS: usize = 4096;

/// A KBS protocol error: Trustee's problem type name and a detail.
#[derive(Debug)]
pub struct KbsError {
    status: StatusCode,
    name: &'static str,
    detail: String,
}

impl KbsError {
    fn new(name: &'static str, detail: impl Into<String>) -> Self {
        let status = match name {
            "InvalidRequestPath" | "PluginNotFound" => StatusCode::NOT_FOUND,
            _ => StatusCode::UNAUTHORIZED,
        };
        Self { status, name, detail: detail.into() }
    }
    fn attestation(detail: impl Into<String>) -> Self {
        Self::new("AttestationError", detail)
    }
}

impl IntoResponse for KbsError {
    fn into_response(self) -> Response {
        let body = json!({"type": format!("{ERROR_TYPE_PREFIX}/{}", self.name), "detail": self.detail});
        (self.status, Json(body)).into_response()
    }
}

/// A Cachet error met on a KBS route, in Trustee's shape (its code kept in the detail).
fn from_api(name: &'static str, e: ApiError) -> KbsError {
    let check = e.check.as_deref().map(|c| format!(" (check: {c})")).unwrap_or_default();
    KbsError::new(name, format!("{}: {}{check}", e.code, e.message))
}

/// One KBS session: the challenge it was given, then its token.
#[derive(Debug, Clone)]
struct Session {
    tee: KbsTee,
    /// The nonce as sent (base64 of the raw bytes).
    nonce: String,
    expires_at: i64,
    token: Option<String>,
}

/// Sessions by cookie value: bounded in number, each until it expires.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn insert(&self, id: String, s: Session, t: i64) -> Result<(), KbsError> {
        let mut m = self.map.lock().map_err(|_| KbsError::attestation("session table unavailable"))?;
        if m.len() >= MAX_SESSIONS {
            m.retain(|_, s| s.expires_at > t);
        }
        if m.len() >= MAX_SESSIONS {
            return Err(KbsError::attestation(format!("too many open KBS sessions ({MAX_SESSIONS}); retry when some have expired")));
        }
        m.insert(id, s);
        Ok(())
    }

    /// The live session `id`; an expired one is dropped and refused.
    fn get(&self, id: &str, t: i64) -> Result<Session, KbsError> {
        let mut m = self.map.lock().map_err(|_| KbsError::attestation("session table unavailable"))?;
        match m.get(id) {
            None => Err(KbsError::attestation("unknown KBS session: start again with POST /kbs/v0/auth")),
            Some(s) if s.expires_at <= t => {
                m.remove(id);
                Err(KbsError::attestation("the KBS session has expired: start again with POST /kbs/v0/auth"))
            }
            Some(s) => Ok(s.clone()),
        }
    }

    fn set_token(&self, id: &str, token: String, expires_at: i64) {
        if let Ok(mut m) = self.map.lock() {
            if let Some(s) = m.get_mut(id) {
                s.token = Some(token);
                s.expires_at = expires_at;
            }
        }
    }

    fn remove(&self, id: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(id);
        }
    }
}

/// The KBS routes, with their session table.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/kbs/v0/auth", post(auth))
        .route("/kbs/v0/attest", post(attest))
        .route("/kbs/v0/resource/{repository}/{type}/{tag}", get(resource))
        .layer(Extension(Arc::new(Sessions::default())))
}

/// The Cachet family a KBS TEE name maps onto, if the adapter supports it.
fn cachet_tee(st: &AppState, tee: KbsTee) -> Result<&'static str, KbsError> {
    match tee {
        KbsTee::Tdx => Ok("tdx"),
        KbsTee::Sgx => Ok("sgx"),
        KbsTee::Snp => Ok("snp"),
        KbsTee::AzSnpVtpm => Ok("az-snp-vtpm"),
        KbsTee::AzTdxVtpm => Ok("az-tdx-vtpm"),
        KbsTee::Nvidia => Ok("nvgpu"),
        KbsTee::Sample if st.config.insecure_simulated_tee => Ok("sim"),
        KbsTee::Sample => Err(KbsError::attestation(
            "tee \"sample\" is Cachet's simulated TEE, which this server does not trust (it runs without \
             --insecure-simulated-tee); attest with real hardware evidence",
        )),
        other => Err(KbsError::attestation(format!(
            "tee {:?} is not supported by Cachet's KBS adapter (supported: tdx, sgx, snp, az-snp-vtpm, az-tdx-vtpm, \
             nvidia, and sample with --insecure-simulated-tee); attest it with POST /v1/attest",
            other.as_ref()
        ))),
    }
}

/// The evidence bytes of a KBS `primary_evidence` for a Cachet family, and
/// the endorsements it carries (hints, as the native API's are): tdx
/// `{"cc_eventlog"?, "quote": base64}`, sgx `{"quote": base64}`, snp
/// Trustee's `SnpEvidence` (the report rebuilt from its fields,
/// [`snp_report_bytes`]; its `cert_chain` as endorsements), az-snp-vtpm and
/// az-tdx-vtpm Trustee's evidence JSON as it is (Cachet's azure verifier
/// reads that format, versions 0 to 2); sample: a Cachet simulated report
/// (the JSON object `cachet_attester::simulated` writes, or that text).
fn evidence_of(tee: &str, primary: &Value) -> Result<(Vec<u8>, Vec<EndorsementIn>), KbsError> {
    let bad = |why: String| KbsError::attestation(format!("tee-evidence.primary_evidence: {why}"));
    match tee {
        "snp" => {
            let o = primary
                .as_object()
                .ok_or_else(|| bad("an snp evidence is Trustee's SnpEvidence {attestation_report, cert_chain}".into()))?;
            let report = o.get("attestation_report").ok_or_else(|| {
                bad("'attestation_report' is missing: an snp evidence is Trustee's SnpEvidence {attestation_report, cert_chain}".into())
            })?;
            let report = snp_report_bytes(report).map_err(bad)?;
            let chain = match o.get("cert_chain") {
                None | Some(Value::Null) => Vec::new(),
                Some(c) => snp_cert_chain(c).map_err(bad)?,
            };
            Ok((report, chain))
        }
        "nvgpu" => nvidia_evidence(primary).map(|e| (e, Vec::new())).map_err(bad),
        "az-snp-vtpm" | "az-tdx-vtpm" => match primary {
            Value::Object(_) => Ok((serde_json::to_vec(primary).map_err(|e| bad(e.to_string()))?, Vec::new())),
            _ => Err(bad(format!("an {tee} evidence is Trustee's JSON object {{version?, tpm_quote, hcl_report, ...}}"))),
        },
        _ => evidence_bytes(tee, primary).map(|b| (b, Vec::new())),
    }
}

/// [`evidence_of`] for the families whose evidence is bytes alone.
fn evidence_bytes(tee: &str, primary: &Value) -> Result<Vec<u8>, KbsError> {
    let bad = |why: String| KbsError::attestation(format!("tee-evidence.primary_evidence: {why}"));
    match tee {
        "tdx" | "sgx" => {
            let quote = primary.get("quote").and_then(Value::as_str).ok_or_else(|| {
                bad(format!(
                    "a {tee} evidence is {{\"quote\": base64 of the quote}}{}",
                    if tee == "tdx" { " (and cc_eventlog)" } else { "" }
                ))
            })?;
            STANDARD
                .decode(quote.trim())
                .or_else(|_| URL_SAFE_NO_PAD.decode(quote.trim().trim_end_matches('=')))
                .map_err(|_| bad("'quote' is not base64".into()))
        }
        _ => match primary {
            Value::Object(o) if o.contains_key("report") && o.contains_key("signature") => {
                serde_json::to_vec(primary).map_err(|e| bad(e.to_string()))
            }
            Value::String(s) => Ok(s.as_bytes().to_vec()),
            Value::Object(o) if o.contains_key("svn") => {
                Err(bad("Trustee's unsigned sample evidence {svn, report_data} is not accepted: Cachet's sample TEE is its \
                 simulated TEE, send a signed simulated report (cachet_attester::simulated) instead"
                    .into()))
            }
            _ => Err(bad("a sample evidence is a Cachet simulated report (JSON object with 'report' and 'signature')".into())),
        },
    }
}

/// Size of an SEV-SNP attestation report (bytes).
pub const SNP_REPORT_LEN: usize = 1184;
/// Most entries of a Trustee `cert_chain` taken.
const MAX_CERT_CHAIN: usize = 8;

/// The raw SEV-SNP report Trustee's `SnpEvidence.attestation_report` was
/// read from: the `sev` crate's `AttestationReport` serialised by serde
/// (numbers, byte arrays as arrays of numbers, `policy`/`plat_info`/
/// `key_info` as integers, TCB versions as `{fmc, bootloader, tee, snp,
/// microcode}`, `current`/`committed` as `{major, minor, build}`, `signature`
/// as `{r, s}` of 72 bytes each), written back as the `sev` crate's encoder
/// writes it: reserved bytes zero, CPUID fields from version 3, mitigation
/// vectors from version 5, a TCB version in Turin's layout when it has an
/// `fmc` (the `sev` crate reads `fmc` from Turin reports only) and in the
/// Milan/Genoa layout otherwise. Nothing is taken from the JSON but these
/// bytes: the verifier checks their signature and reads its claims from them,
/// so a field rebuilt wrongly is a refused signature, never a wrong claim.
pub fn snp_report_bytes(r: &Value) -> Result<Vec<u8>, String> {
    let o = r.as_object().ok_or("'attestation_report' is not an object")?;
    let field = |k: &str| o.get(k).filter(|v| !v.is_null()).ok_or_else(|| format!("attestation_report.{k} is missing"));
    let uint = |v: &Value, k: &str, max: u64| {
        v.as_u64().filter(|n| *n <= max).ok_or_else(|| format!("attestation_report.{k} is not an integer from 0 to {max}"))
    };
    let num = |k: &str, max: u64| field(k).and_then(|v| uint(v, k, max));
    let opt = |k: &str, max: u64| match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => uint(v, k, max).map(Some),
    };
    let bytes_of = |v: &Value, k: &str, n: usize| -> Result<Vec<u8>, String> {
        let a = v.as_array().filter(|a| a.len() == n).ok_or_else(|| format!("attestation_report.{k} is not an array of {n} bytes"))?;
        a.iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()).ok_or_else(|| format!("attestation_report.{k} holds a non-byte")))
            .collect()
    };
    let bytes = |k: &str, n: usize| field(k).and_then(|v| bytes_of(v, k, n));
    let tcb = |k: &str| -> Result<[u8; 8], String> {
        let t = field(k)?;
        let part = |p: &str| {
            t.get(p).ok_or_else(|| format!("attestation_report.{k}.{p} is missing")).and_then(|v| uint(v, &format!("{k}.{p}"), 255))
        };
        let (bl, tee, snp, ucode) = (part("bootloader")? as u8, part("tee")? as u8, part("snp")? as u8, part("microcode")? as u8);
        Ok(match t.get("fmc").filter(|v| !v.is_null()) {
            Some(f) => [uint(f, &format!("{k}.fmc"), 255)? as u8, bl, tee, snp, 0, 0, 0, ucode],
            None => [bl, tee, 0, 0, 0, 0, snp, ucode],
        })
    };
    let fw = |k: &str| -> Result<[u8; 3], String> {
        let v = field(k)?;
        let part = |p: &str| {
            v.get(p).ok_or_else(|| format!("attestation_report.{k}.{p} is missing")).and_then(|x| uint(x, &format!("{k}.{p}"), 255))
        };
        Ok([part("build")? as u8, part("minor")? as u8, part("major")? as u8])
    };
    let version = num("version", u64::from(u32::MAX))?;
    if !(2..=5).contains(&version) {
        return Err(format!("attestation_report.version {version}: SEV-SNP reports of versions 2 to 5 are known"));
    }
    let u32le = |n: u64| (n as u32).to_le_bytes();
    let mut out = Vec::with_capacity(SNP_REPORT_LEN);
    out.extend(u32le(version));
    out.extend(u32le(num("guest_svn", u64::from(u32::MAX))?));
    out.extend(num("policy", u64::MAX)?.to_le_bytes());
    out.extend(bytes("family_id", 16)?);
    out.extend(bytes("image_id", 16)?);
    out.extend(u32le(num("vmpl", u64::from(u32::MAX))?));
    out.extend(u32le(num("sig_algo", u64::from(u32::MAX))?));
    out.extend(tcb("current_tcb")?);
    out.extend(num("plat_info", u64::MAX)?.to_le_bytes());
    out.extend(u32le(num("key_info", u64::from(u32::MAX))?));
    out.extend([0u8; 4]);
    out.extend(bytes("report_data", 64)?);
    out.extend(bytes("measurement", 48)?);
    out.extend(bytes("host_data", 32)?);
    out.extend(bytes("id_key_digest", 48)?);
    out.extend(bytes("author_key_digest", 48)?);
    out.extend(bytes("report_id", 32)?);
    out.extend(bytes("report_id_ma", 32)?);
    out.extend(tcb("reported_tcb")?);
    if version == 2 {
        out.extend([0u8; 24]);
    } else {
        for k in ["cpuid_fam_id", "cpuid_mod_id", "cpuid_step"] {
            out.push(opt(k, 255)?.unwrap_or(0) as u8);
        }
        out.extend([0u8; 21]);
    }
    out.extend(bytes("chip_id", 64)?);
    out.extend(tcb("committed_tcb")?);
    out.extend(fw("current")?);
    out.push(0);
    out.extend(fw("committed")?);
    out.push(0);
    out.extend(tcb("launch_tcb")?);
    if version >= 5 {
        out.extend(opt("launch_mit_vector", u64::MAX)?.unwrap_or(0).to_le_bytes());
        out.extend(opt("current_mit_vector", u64::MAX)?.unwrap_or(0).to_le_bytes());
        out.extend([0u8; 152]);
    } else {
        out.extend([0u8; 168]);
    }
    let sig = field("signature")?;
    for part in ["r", "s"] {
        let v = sig.get(part).ok_or_else(|| format!("attestation_report.signature.{part} is missing"))?;
        out.extend(bytes_of(v, &format!("signature.{part}"), 72)?);
    }
    out.resize(SNP_REPORT_LEN, 0);
    Ok(out)
}

/// Trustee's `cert_chain` (`[{cert_type: "ARK"|"ASK"|"VCEK"|"VLEK"|"CRL"|…,
/// data: [bytes]}]`, the `sev` crate's `CertTableEntry`) as endorsements:
/// hints, used only for what the service's own endorsements do not hold.
/// Entries of other types are ignored, as Trustee ignores them.
fn snp_cert_chain(c: &Value) -> Result<Vec<EndorsementIn>, String> {
    let a = c.as_array().ok_or("'cert_chain' is not an array")?;
    if a.len() > MAX_CERT_CHAIN {
        return Err(format!("'cert_chain' has more than {MAX_CERT_CHAIN} entries"));
    }
    let mut out = Vec::new();
    for (i, e) in a.iter().enumerate() {
        let Some(kind) = e.get("cert_type").and_then(Value::as_str) else { continue };
        let name = match kind {
            "ARK" => "ark.der",
            "ASK" => "ask.der",
            "VCEK" => "vcek.der",
            "VLEK" => "vlek.der",
            "CRL" => "crl.der",
            _ => continue,
        };
        let data = e.get("data").and_then(Value::as_array).ok_or_else(|| format!("cert_chain[{i}].data is not an array of bytes"))?;
        let data: Vec<u8> = data
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("cert_chain[{i}].data holds a non-byte"))?;
        out.push(EndorsementIn { name: Some(format!("kbs-cert-chain/{name}")), data: STANDARD.encode(data) });
    }
    Ok(out)
}

/// Most devices in one Trustee NVIDIA evidence.
const MAX_NVIDIA_DEVICES: usize = 16;

/// Trustee's NVIDIA evidence `{device_evidence_list: [{arch, uuid?,
/// evidence: base64 SPDM report, certificate: base64 PEM chain}]}` as the
/// per-GPU evidence set Cachet's nvgpu verifier reads (NVIDIA's SDK
/// shape): each entry's `nonce` label is read from its own SPDM request,
/// which the verifier checks again against the signed report; `uuid` is an
/// unsigned label and is dropped. Nothing else is taken from the JSON.
pub fn nvidia_evidence(primary: &Value) -> Result<Vec<u8>, String> {
    let shape = "an nvidia evidence is Trustee's {\"device_evidence_list\": [{\"arch\", \"evidence\", \"certificate\"}]}";
    let list = primary.get("device_evidence_list").and_then(Value::as_array).ok_or_else(|| shape.to_string())?;
    if list.is_empty() || list.len() > MAX_NVIDIA_DEVICES {
        return Err(format!("{} devices in device_evidence_list (1 to {MAX_NVIDIA_DEVICES})", list.len()));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, d) in list.iter().enumerate() {
        let field = |k: &str| d.get(k).and_then(Value::as_str).ok_or_else(|| format!("device {i}: '{k}' is missing ({shape})"));
        let (arch, evidence, certificate) = (field("arch")?, field("evidence")?, field("certificate")?);
        let report = STANDARD.decode(evidence.trim()).map_err(|_| format!("device {i}: 'evidence' is not base64"))?;
        let parsed = cachet_verify::nvgpu::spdm::parse_report(&report).map_err(|e| format!("device {i}: the SPDM report: {e}"))?;
        out.push(json!({"arch": arch, "evidence": evidence, "certificate": certificate, "nonce": hex::encode(parsed.request.nonce)}));
    }
    serde_json::to_vec(&out).map_err(|e| e.to_string())
}

/// Trustee's NVIDIA binding: the SPDM request nonce (signed into every
/// device's report; the verifier's `nonce` claim when all devices share it)
/// is the first 32 bytes of the SHA-384 of the canonical runtime data.
pub fn nvidia_binding(claims: &Value, want: &[u8]) -> Result<(), String> {
    let want_hex = hex::encode(&want[..want.len().min(32)]);
    match claims.get("nonce").and_then(Value::as_str).map(str::to_ascii_lowercase) {
        Some(g) if g == want_hex => Ok(()),
        Some(g) => Err(format!(
            "the GPUs' SPDM request nonce {g} is not the first 32 bytes of SHA-384 of the canonical (RFC 8785) JSON \
             {{\"additional-evidence\", \"nonce\", \"tee-pubkey\"}} ({want_hex})"
        )),
        None => Err("the devices' SPDM request nonces differ (or none was verified): one nonce binds them all".into()),
    }
}

/// Trustee's binding of the Azure vTPM families, checked on the verified
/// claims: the vTPM quote's nonce (`extraData`, signed by the AK the HCL
/// report vouches for) is the runtime data's hash itself, and evidence of
/// version 2 or later also carries it in the HCL `user-data`, zero-padded to
/// its 64 bytes (Cachet's rule for that fixed-size field; Trustee's
/// guest-components write it so).
pub fn azure_binding(claims: &Value, want: &[u8], version: u64) -> Result<(), String> {
    let want_hex = hex::encode(want);
    let got = claims.get("extra_data").and_then(Value::as_str).map(str::to_ascii_lowercase);
    match got {
        Some(g) if g == want_hex => {}
        Some(g) => {
            return Err(format!(
                "the vTPM quote's nonce (extraData) {g} is not SHA-384 of the canonical (RFC 8785) JSON {{\"additional-evidence\", \
                 \"nonce\", \"tee-pubkey\"}} ({want_hex})"
            ))
        }
        None => return Err("the verified claims carry no vTPM quote nonce (extra_data)".into()),
    }
    if version >= 2 {
        let mut padded = want.to_vec();
        padded.resize(64, 0);
        let padded = hex::encode(padded);
        let user = claims.pointer("/hcl/user_data").and_then(Value::as_str).map(str::to_ascii_lowercase);
        if user.as_deref() != Some(padded.as_str()) {
            return Err(format!(
                "evidence version {version}: the HCL user-data {} is not SHA-384 of the canonical JSON zero-padded to 64 bytes ({padded})",
                user.as_deref().unwrap_or("(absent)")
            ));
        }
    }
    Ok(())
}

/// RFC 8785 (JCS) canonical JSON, as Trustee's attestation service hashes
/// runtime data (`serde_json_canonicalizer`): object members sorted by
/// their UTF-16 code units, no whitespace, strings escaped as ECMAScript
/// does (which is serde_json's escaping). Numbers other than integers do
/// not occur in KBS runtime data and are refused.
pub fn canonical_json(v: &Value) -> Result<String, String> {
    let mut out = String::new();
    write_canonical(v, &mut out, 0)?;
    Ok(out)
}

fn write_canonical(v: &Value, out: &mut String, depth: usize) -> Result<(), String> {
    if depth > 32 {
        return Err("runtime data nested too deeply".into());
    }
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => out.push_str(&v.to_string()),
        Value::Number(n) if n.is_i64() || n.is_u64() => out.push_str(&n.to_string()),
        Value::Number(n) => return Err(format!("number {n} in runtime data: only integers are canonicalised")),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out, depth + 1)?;
            }
            out.push(']');
        }
        Value::Object(o) => {
            let mut members: Vec<(&String, &Value)> = o.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, x)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(x, out, depth + 1)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// The 64-byte report data Trustee binds for `runtime_data`: its JCS form
/// hashed with `alg`, zero-padded (or cut) to 64 bytes, as Trustee's TDX,
/// SGX and SNP verifiers regularise it.
pub fn expected_report_data(runtime_data: &Value, alg: HashAlgorithm) -> Result<Vec<u8>, String> {
    let canon = canonical_json(runtime_data)?;
    let mut d = alg.digest(canon.as_bytes());
    d.resize(64, 0);
    Ok(d)
}

fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn session_cookie(id: &str, max_age: i64) -> Result<HeaderValue, KbsError> {
    HeaderValue::from_str(&format!("{SESSION_COOKIE}={id}; Path=/kbs; Max-Age={}; HttpOnly; SameSite=Strict", max_age.max(0)))
        .map_err(|_| KbsError::attestation("cannot build the session cookie"))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, KbsError> {
    serde_json::from_slice(body).map_err(|e| KbsError::new("SerdeError", format!("the body is not a KBS {what} payload: {e}")))
}

fn random_hex(n: usize) -> Result<(String, Vec<u8>), KbsError> {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| KbsError::attestation("no randomness"))?;
    Ok((hex::encode(&b), b))
}

/// `POST /kbs/v0/auth`: a challenge and a session.
async fn auth(State(st): State<AppState>, Extension(sessions): Extension<Arc<Sessions>>, body: Bytes) -> Result<Response, KbsError> {
    let req: Request = parse_json(&body, "Request {version, tee, extra-params}")?;
    if req.version.trim() != PROTOCOL_VERSION {
        return Err(KbsError::attestation(format!(
            "KBS protocol version mismatch: this server speaks ={PROTOCOL_VERSION}, the request says {:?}",
            req.version.chars().take(32).collect::<String>()
        )));
    }
    if req.extra_params.to_string().len() > MAX_EXTRA_PARAMS {
        return Err(KbsError::new("SerdeError", format!("extra-params is larger than {MAX_EXTRA_PARAMS} bytes")));
    }
    cachet_tee(&st, req.tee)?;
    // The nonce is a Cachet challenge: stored, spent by the attestation.
    let crate::routes::ChallengeResponse { nonce, expires_at } =
        crate::routes::challenge(State(st.clone())).await.map_err(|e| from_api("AttestationError", e)).map(|Json(c)| c)?;
    let raw = hex::decode(&nonce).map_err(|_| KbsError::attestation("challenge nonce is not hex"))?;
    let nonce = STANDARD.encode(raw);
    let (id, _) = random_hex(16)?;
    let t = now();
    sessions.insert(id.clone(), Session { tee: req.tee, nonce: nonce.clone(), expires_at, token: None }, t)?;
    let challenge = Challenge { nonce, extra_params: Value::String(String::new()) };
    let mut resp = Json(challenge).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie(&id, expires_at - t)?);
    Ok(resp)
}

/// `POST /kbs/v0/attest`: evidence bound to the session's nonce and the TEE key → `{token}`.
async fn attest(
    State(st): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, KbsError> {
    let id = cookie_of(&headers).ok_or_else(|| KbsError::attestation("no kbs-session-id cookie: call POST /kbs/v0/auth first"))?;
    let t = now();
    let session = sessions.get(&id, t)?;
    if let Some(token) = &session.token {
        // As Trustee: an attested session answers its token again.
        return token_response(token, &id, session.expires_at - t);
    }
    let att: Attestation = parse_json(&body, "Attestation {runtime-data, tee-evidence}")?;
    if att.runtime_data.nonce != session.nonce {
        return Err(KbsError::attestation("runtime-data.nonce is not the nonce of this session's challenge"));
    }
    if att.init_data.is_some() {
        return Err(KbsError::attestation(
            "init-data is not supported by Cachet's KBS adapter (its hash would not be checked against the evidence); omit it",
        ));
    }
    let additional = att.tee_evidence.additional_evidence.trim();
    if !(additional.is_empty() || additional == "{}") {
        return Err(KbsError::attestation(
            "additional_evidence (other devices' evidence) is not supported by Cachet's KBS adapter; send it empty",
        ));
    }
    let tee = cachet_tee(&st, session.tee)?;
    let (evidence, endorsements) = evidence_of(tee, &att.tee_evidence.primary_evidence)?;
    let tee_pubkey = serde_json::to_value(&att.runtime_data.tee_pubkey).map_err(|e| KbsError::new("SerdeError", e.to_string()))?;
    // Trustee's runtime data for the primary evidence, and its hash.
    let runtime = json!({
        "tee-pubkey": tee_pubkey,
        "nonce": session.nonce,
        "additional-evidence": att.tee_evidence.additional_evidence,
    });
    let report_data = expected_report_data(&runtime, HashAlgorithm::Sha384).map_err(KbsError::attestation)?;
    let jwk = canonical_json(&tee_pubkey).map_err(KbsError::attestation)?;
    let nonce = STANDARD.decode(&session.nonce).map_err(|_| KbsError::attestation("session nonce is not base64"))?;
    let req = AttestRequest {
        tee: tee.into(),
        evidence: STANDARD.encode(&evidence),
        endorsements,
        nonce: Some(hex::encode(nonce)),
        runtime_data: Some(STANDARD.encode(jwk.as_bytes())),
        at: None,
        policy: None,
    };
    let actor = format!("client:{} (kbs)", peer.ip());
    let azure = matches!(tee, "az-snp-vtpm" | "az-tdx-vtpm");
    let own_binding = azure || tee == "nvgpu";
    let result = if tee == "nvgpu" {
        let want = report_data[..48].to_vec();
        let check = move |claims: &Value| nvidia_binding(claims, &want);
        let adapter = Adapter { binding: Some(&check), ..Default::default() };
        crate::routes::attest_adapted(&st, &actor, req, None, &adapter).await
    } else if azure {
        // The vTPM quote's nonce holds the hash itself (Trustee's
        // verify_tpm_nonce), not the hash padded into a report data.
        let want = report_data[..48].to_vec();
        let version = att.tee_evidence.primary_evidence.get("version").and_then(Value::as_u64).unwrap_or(0);
        let check = move |claims: &Value| azure_binding(claims, &want, version);
        let adapter = Adapter { binding: Some(&check), ..Default::default() };
        crate::routes::attest_adapted(&st, &actor, req, None, &adapter).await
    } else {
        crate::routes::attest_bound(&st, &actor, req, Some(report_data.clone())).await
    };
    let (token, claims) = match result {
        Ok(r) => r,
        Err(e) => {
            // The nonce is spent: this session cannot attest again.
            sessions.remove(&id);
            if e.code == "freshness_binding_failed" && own_binding {
                return Err(KbsError::attestation(format!(
                    "freshness_binding_failed: {}; bind the challenge nonce and this tee-pubkey as Trustee's protocol does",
                    e.message
                )));
            }
            if e.code == "freshness_binding_failed" {
                return Err(KbsError::attestation(format!(
                    "freshness_binding_failed: the evidence's report data is not SHA-384 of the canonical (RFC 8785) JSON \
                     {{\"additional-evidence\", \"nonce\", \"tee-pubkey\"}} zero-padded to 64 bytes ({}); bind the \
                     challenge nonce and this tee-pubkey as Trustee's protocol does",
                    hex::encode(&report_data)
                )));
            }
            return Err(from_api("AttestationError", e));
        }
    };
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(t);
    sessions.set_token(&id, token.clone(), exp);
    token_response(&token, &id, exp - t)
}

fn token_response(token: &str, id: &str, max_age: i64) -> Result<Response, KbsError> {
    let mut resp = Json(json!({"token": token})).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie(id, max_age)?);
    Ok(resp)
}

/// The Cachet secret a KBS resource path names: `repository/type.tag`.
pub fn secret_reference(repository: &str, kind: &str, tag: &str) -> Result<String, KbsError> {
    use cachet_keybroker::broker::valid_name;
    let name = format!("{kind}.{tag}");
    if !valid_name(repository) || !valid_name(kind) || kind.contains('.') || !valid_name(tag) || !valid_name(&name) {
        return Err(KbsError::new(
            "InvalidRequestPath",
            "a KBS resource path is /kbs/v0/resource/<repository>/<type>/<tag>, naming the tenant's secret '<type>.<tag>': \
             each part 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit, no '.' in <type>, <type>.<tag> at most 128",
        ));
    }
    Ok(format!("{repository}/{name}"))
}

/// `GET /kbs/v0/resource/{repository}/{type}/{tag}`: the secret as a JWE to the TEE key.
async fn resource(
    State(st): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((repository, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, KbsError> {
    let reference = secret_reference(&repository, &kind, &tag)?;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|v| v.trim().to_string());
    let token = match (bearer, cookie_of(&headers)) {
        (Some(token), _) => token,
        (None, Some(id)) => {
            let s = sessions.get(&id, now()).map_err(|e| KbsError::new("TokenNotFound", e.detail))?;
            s.token.ok_or_else(|| {
                KbsError::new("TokenNotFound", "this KBS session has not attested: POST /kbs/v0/attest with evidence first")
            })?
        }
        (None, None) => {
            return Err(KbsError::new(
                "TokenNotFound",
                "no kbs-session-id cookie and no 'Authorization: Bearer <attestation token>': attest first",
            ))
        }
    };
    // The native release path: token check, the owner's policy, audit, JWE.
    let body = ReleaseBody { token: Some(token), attest: None, secrets: vec![reference.clone()], workload_key: None };
    let answer = crate::secrets::release(State(st), ConnectInfo(peer), ApiJson(body)).await;
    let Json(answer) = answer.map_err(|e| match e.code {
        "token_refused" => from_api("TokenVerifierError", e),
        _ => from_api("PluginInternalError", e),
    })?;
    let item = answer.results.into_iter().next().ok_or_else(|| KbsError::new("PluginInternalError", "the release answered no result"))?;
    if !item.released {
        let code = item.code.unwrap_or_default();
        let detail = format!("{reference}: {code}: {}", item.reason);
        return Err(match code.as_str() {
            "policy_refused" => KbsError::new("PolicyDeny", detail),
            "no_such_secret" | "invalid_reference" => KbsError::new("InvalidRequestPath", detail),
            "token_expired" | "freshness_not_established" => KbsError::new("TokenVerifierError", detail),
            "no_workload_key" | "workload_key_unusable" | "key_substitution" | "encryption_failed" => KbsError::new("JweError", detail),
            _ => KbsError::new("PluginInternalError", detail),
        });
    }
    let jwe = item.jwe.ok_or_else(|| KbsError::new("JweError", "released without a JWE"))?;
    Ok(Json(flattened(&jwe)?).into_response())
}

/// A compact JWE as the flattened JSON serialization Trustee answers
/// (`kbs_types::Response`), the protected header kept byte for byte.
fn flattened(compact: &str) -> Result<Value, KbsError> {
    let parts: Vec<&str> = compact.split('.').collect();
    let [protected, encrypted_key, iv, ciphertext, tag] = parts[..] else {
        return Err(KbsError::new("JweError", "the release produced a malformed JWE"));
    };
    Ok(json!({"protected": protected, "encrypted_key": encrypted_key, "iv": iv, "ciphertext": ciphertext, "tag": tag}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_members_and_has_no_whitespace() {
        let v = json!({"tee-pubkey": {"y": "b", "kty": "EC", "x": "a", "crv": "P-256", "alg": "ECDH-ES+A256KW"}, "nonce": "n/+=", "additional-evidence": ""});
        assert_eq!(
            canonical_json(&v).unwrap(),
            r#"{"additional-evidence":"","nonce":"n/+=","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"a","y":"b"}}"#
        );
        // RFC 8785 3.2.3: UTF-16 code unit order (U+10000 sorts before U+FB33 there, not in UTF-8 order).
        let v = json!({"\u{fb33}": 1, "\u{10000}": 2});
        assert_eq!(canonical_json(&v).unwrap(), "{\"\u{10000}\":2,\"\u{fb33}\":1}");
        assert_eq!(canonical_json(&json!({"a": "\u{1}\n"})).unwrap(), r#"{"a":"\u0001\n"}"#);
        assert!(canonical_json(&json!({"a": 1.5})).is_err());
    }

    #[test]
    fn report_data_is_sha384_of_the_canonical_form_padded() {
        use aws_lc_rs::digest::{digest, SHA384};
        let v = json!({"nonce": "x", "tee-pubkey": {"kty": "EC"}, "additional-evidence": ""});
        let rd = expected_report_data(&v, HashAlgorithm::Sha384).unwrap();
        assert_eq!(rd.len(), 64);
        assert_eq!(&rd[..48], digest(&SHA384, br#"{"additional-evidence":"","nonce":"x","tee-pubkey":{"kty":"EC"}}"#).as_ref());
        assert_eq!(&rd[48..], &[0u8; 16]);
    }

    #[test]
    fn the_azure_binding_is_the_quote_nonce_and_from_version_2_the_user_data() {
        let want = [7u8; 48];
        let mut padded = want.to_vec();
        padded.resize(64, 0);
        let good = json!({"extra_data": hex::encode(want), "hcl": {"user_data": hex::encode(&padded)}});
        assert!(azure_binding(&good, &want, 0).is_ok());
        assert!(azure_binding(&good, &want, 2).is_ok());
        let no_user = json!({"extra_data": hex::encode(want), "hcl": {}});
        assert!(azure_binding(&no_user, &want, 1).is_ok(), "versions 0 and 1 carry no user-data");
        assert!(azure_binding(&no_user, &want, 2).unwrap_err().contains("user-data"));
        let unpadded = json!({"extra_data": hex::encode(want), "hcl": {"user_data": hex::encode(want)}});
        assert!(azure_binding(&unpadded, &want, 2).is_err(), "the whole 64-byte field");
        let other = json!({"extra_data": hex::encode([8u8; 48])});
        assert!(azure_binding(&other, &want, 0).unwrap_err().contains("extraData"));
        assert!(azure_binding(&json!({}), &want, 0).is_err());
    }

    #[test]
    fn a_malformed_snp_report_is_refused_without_panicking() {
        assert!(snp_report_bytes(&json!([])).is_err());
        assert!(snp_report_bytes(&json!({"version": 3})).unwrap_err().contains("guest_svn"));
        assert!(snp_report_bytes(&json!({"version": 6})).unwrap_err().contains("versions 2 to 5"));
        assert!(snp_report_bytes(&json!({"version": -1})).is_err());
        let chain = json!([{"cert_type": "VCEK", "data": [1, 2, 300]}]);
        assert!(snp_cert_chain(&chain).unwrap_err().contains("non-byte"));
        assert_eq!(snp_cert_chain(&json!([{"cert_type": "Empty", "data": []}])).unwrap().len(), 0);
        assert!(snp_cert_chain(&json!(vec![json!({"cert_type": "ARK", "data": [1]}); 9])).is_err());
    }

    #[test]
    fn resource_paths_map_onto_tenant_and_secret_names() {
        assert_eq!(secret_reference("default", "key", "1").unwrap(), "default/key.1");
        assert_eq!(secret_reference("bank-a", "image-kek", "v1.json").unwrap(), "bank-a/image-kek.v1.json");
        for (r, k, t) in [("..", "key", "1"), ("a", "k.x", "1"), ("a", "key", ""), ("a/b", "key", "1"), ("a", "key", ".hidden")] {
            let e = secret_reference(r, k, t).unwrap_err();
            assert_eq!((e.status, e.name), (StatusCode::NOT_FOUND, "InvalidRequestPath"), "{r}/{k}/{t}");
        }
        assert!(secret_reference("a", &"k".repeat(100), &"t".repeat(40)).is_err(), "name over 128");
    }

    #[test]
    fn only_the_session_cookie_of_the_right_form_is_read() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=b; kbs-session-id=00112233445566778899aabbccddeeff"));
        assert_eq!(cookie_of(&h).as_deref(), Some("00112233445566778899aabbccddeeff"));
        h.insert(header::COOKIE, HeaderValue::from_static("kbs-session-id=../../etc"));
        assert_eq!(cookie_of(&h), None);
    }
}
