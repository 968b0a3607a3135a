//! NVIDIA RIM service: RIMs by the ids the evidence names.
//!
//! The ids are derived from the evidence's signed driver and VBIOS versions
//! exactly as NVIDIA's verifier (nvtrust) builds them, by the same code the
//! verifier uses for its `rim_ids` claim ([`cachet_verify::nvgpu::rim_ids`]):
//! nobody else chooses which RIMs judge a GPU. `GET {rim_url}/v1/rim/{id}`
//! answers `{"id","rim": base64 of the RIM file,"sha256": hex,…}`; the
//! decoded RIM must hash to `sha256` and be a RIM of the version the id
//! names, and is handed to the verifier as the RIM file itself (the verifier
//! authenticates it against the pinned NVIDIA RIM root).
//!
//! OCSP (`--nvidia-ocsp-url`): for every certificate of the GPU's device
//! chain and of each RIM's signer chain (found among the endorsements that
//! judge the evidence, issuer by issuer), one `POST` of a DER `OCSPRequest`
//! with a SHA-384 CertID, as NVIDIA's verifier sends it. The answer is kept
//! only when it is a successful basic response that answers for that CertID,
//! cached until its `nextUpdate`; the verifier authenticates it (signed by
//! the issuing CA or its delegated responder) and reads good / revoked.

use aws_lc_rs::digest;
use cachet_verify::encoding::{decode_base64, decode_evidence};
use cachet_verify::nvgpu::rim;
use serde::Deserialize;

use crate::http::Http;
use crate::{EndorseError, Fetched, Part, Resource, Sources};

/// Longest RIM id accepted (NVIDIA's are ~40 characters).
const MAX_ID_LEN: usize = 128;

/// What NVIDIA GPU evidence needs: the driver RIM and each distinct VBIOS
/// RIM, by the ids the evidence's (not yet verified) report names. The
/// evidence may be raw, hex or base64, or the SDK's JSON list.
pub fn needs(evidence: &[u8]) -> Result<Vec<Resource>, EndorseError> {
    let (_, decoded) = decode_evidence(evidence);
    let ids = cachet_verify::nvgpu::rim_ids(&decoded)
        .map_err(|e| EndorseError::Evidence(format!("cannot tell which NVIDIA RIMs the evidence needs: {e}")))?;
    ids.into_iter()
        .map(|id| {
            check_id(&id)?;
            Ok(Resource::Rim { id })
        })
        .collect()
}

/// A RIM id is one URL path segment of letters, digits, `_`, `.` and `-`:
/// the report's text fields cannot steer the request elsewhere.
fn check_id(id: &str) -> Result<(), EndorseError> {
    let ok = !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(EndorseError::Evidence(format!("RIM id {id:?} is not a plain id (letters, digits, '_', '.', '-'; at most {MAX_ID_LEN})")))
    }
}

/// The RIM service's answer (other members, e.g. `last_updated`, `rim_format`, are ignored).
#[derive(Deserialize)]
struct RimAnswer {
    #[serde(default)]
    id: Option<String>,
    rim: String,
    sha256: String,
}

/// Fetch one RIM.
pub async fn fetch(http: &Http, sources: &Sources, r: &Resource, now: i64) -> Result<Fetched, EndorseError> {
    let Resource::Rim { id } = r else {
        return Err(EndorseError::Evidence(format!("{} is not an NVIDIA RIM", r.key())));
    };
    check_id(id)?;
    let url = format!("{}/v1/rim/{id}", sources.nvidia_rim_url.trim_end_matches('/'));
    let bad = |message: String| EndorseError::Source { origin: url.clone(), message };
    let answer = http.get(&url).await?;
    match answer.status {
        200 => {}
        404 => return Err(EndorseError::NotFound { origin: url.clone(), what: format!("RIM {id}") }),
        s => return Err(bad(format!("HTTP {s}: the RIM service refused; check --nvidia-rim-url"))),
    }
    let parsed: RimAnswer =
        serde_json::from_slice(&answer.body).map_err(|e| bad(format!("not a RIM service answer (JSON with rim, sha256): {e}")))?;
    if let Some(other) = parsed.id.as_deref().filter(|a| *a != id) {
        return Err(bad(format!("answered RIM {other:?} for id {id}")));
    }
    let bytes = decode_base64(parsed.rim.trim()).ok_or_else(|| bad("the rim member is not base64".into()))?;
    let actual = hex::encode(digest::digest(&digest::SHA256, &bytes));
    if !parsed.sha256.trim().eq_ignore_ascii_case(&actual) {
        return Err(bad(format!("the RIM's SHA-256 is {actual}, the answer says {}: refused", parsed.sha256.trim())));
    }
    let doc = rim::parse(&bytes).map_err(|e| bad(format!("not a RIM: {e}")))?;
    if !names_version(id, &doc.version) {
        return Err(bad(format!("answered a RIM of version {} for id {id}", doc.version)));
    }
    Ok(Fetched {
        resource: r.clone(),
        parts: vec![Part { name: format!("{id}.swidtag"), bytes }],
        fetched_at: now,
        next_update: validity_end(&doc.certs),
        source: url,
    })
}

/// A RIM parsed once per distinct bytes (by SHA-256) for the questions asked
/// on every request (which certificates to ask OCSP about, which versions
/// are given): the same few RIMs come with every attestation of a fleet.
/// Only the parse is remembered; the verifier authenticates every RIM.
pub fn parsed_rim(bytes: &[u8]) -> Result<std::sync::Arc<rim::Rim>, String> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    /// Most parsed RIMs kept (all are dropped when full).
    const MAX_PARSED: usize = 256;
    static PARSED: OnceLock<Mutex<HashMap<[u8; 32], Arc<rim::Rim>>>> = OnceLock::new();
    let memo = PARSED.get_or_init(Default::default);
    let mut key = [0u8; 32];
    key.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    if let Some(r) = memo.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(r);
    }
    let r = Arc::new(rim::parse(bytes)?);
    if let Ok(mut m) = memo.lock() {
        if m.len() >= MAX_PARSED {
            m.clear();
        }
        m.insert(key, r.clone());
    }
    Ok(r)
}

/// Most certificates asked about for one verification (a GPU chain is 5, a
/// RIM signer chain 3; eight GPUs share most of theirs).
pub const MAX_OCSP_CERTS: usize = 64;

/// OCSP answers without a `nextUpdate` ("newer information is always
/// available", RFC 6960 §4.2.2.1) are kept this long.
const OCSP_DEFAULT_LIFETIME: i64 = 3600;

/// Every certificate among `endorsements` (PEM / DER files, RIM signer
/// chains) whose issuer is also among them, as an OCSP resource: what
/// NVIDIA's verifier asks its responder about. Self-signed roots are not
/// asked about. Unauthenticated pairing by name: the verifier only uses an
/// answer for a certificate of a chain it verified.
pub fn ocsp_needs(endorsements: &[cachet_verify::Endorsement]) -> Vec<Resource> {
    use x509_parser::prelude::FromDer;
    let mut certs: Vec<Vec<u8>> = Vec::new();
    for e in endorsements {
        if rim::looks_like_xml(&e.bytes) {
            if let Ok(doc) = parsed_rim(&e.bytes) {
                certs.extend(doc.certs.iter().cloned());
            }
        } else if !cachet_verify::nvgpu::ocsp::is_ocsp(e) {
            let mut c = cachet_verify::dcap::collateral::Collateral::default();
            cachet_verify::dcap::collateral::add_file(&mut c, &e.name, &e.bytes);
            certs.extend(c.certs);
        }
    }
    certs.sort();
    certs.dedup();
    let parsed: Vec<_> = certs.iter().filter_map(|d| x509_parser::certificate::X509Certificate::from_der(d).ok().map(|(_, c)| c)).collect();
    let mut out: Vec<Resource> = Vec::new();
    for cert in &parsed {
        if cert.subject().as_raw() == cert.issuer().as_raw() {
            continue;
        }
        let Some(issuer) = parsed.iter().find(|i| i.subject().as_raw() == cert.issuer().as_raw()) else { continue };
        let r = Resource::Ocsp {
            issuer_name_hash: hex::encode(digest::digest(&digest::SHA384, issuer.subject().as_raw())),
            issuer_key_hash: hex::encode(digest::digest(&digest::SHA384, issuer.public_key().subject_public_key.data.as_ref())),
            serial: hex::encode(cert.raw_serial()),
        };
        if !out.contains(&r) {
            out.push(r);
        }
        if out.len() >= MAX_OCSP_CERTS {
            break;
        }
    }
    out
}

/// The DER `OCSPRequest` for one OCSP resource (no nonce: the answer is
/// cached and shared until its `nextUpdate`).
pub fn ocsp_request(r: &Resource) -> Result<Vec<u8>, EndorseError> {
    use der::Encode;
    let Resource::Ocsp { issuer_name_hash, issuer_key_hash, serial } = r else {
        return Err(EndorseError::Evidence(format!("{} is not an OCSP resource", r.key())));
    };
    let bad = |what: &str| EndorseError::Evidence(format!("OCSP resource {}: {what}", r.key()));
    let hex_of = |s: &str, what: &str| hex::decode(s).map_err(|_| bad(&format!("{what} is not hex")));
    let cert_id = x509_ocsp::CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned { oid: OID_SHA384, parameters: Some(der::asn1::Null.into()) },
        issuer_name_hash: der::asn1::OctetString::new(hex_of(issuer_name_hash, "issuer name hash")?)
            .map_err(|_| bad("issuer name hash"))?,
        issuer_key_hash: der::asn1::OctetString::new(hex_of(issuer_key_hash, "issuer key hash")?).map_err(|_| bad("issuer key hash"))?,
        serial_number: x509_cert::serial_number::SerialNumber::new(&hex_of(serial, "serial")?).map_err(|_| bad("serial number"))?,
    };
    let request = x509_ocsp::OcspRequest {
        tbs_request: x509_ocsp::TbsRequest {
            version: x509_ocsp::Version::V1,
            requestor_name: None,
            request_list: vec![x509_ocsp::Request { req_cert: cert_id, single_request_extensions: None }],
            request_extensions: None,
        },
        optional_signature: None,
    };
    request.to_der().map_err(|e| bad(&format!("cannot encode the request: {e}")))
}

/// `id-sha384`.
const OID_SHA384: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");

/// Ask NVIDIA's OCSP responder about one certificate.
pub async fn fetch_ocsp(http: &Http, sources: &Sources, r: &Resource, now: i64) -> Result<Fetched, EndorseError> {
    let Resource::Ocsp { serial, .. } = r else {
        return Err(EndorseError::Evidence(format!("{} is not an OCSP resource", r.key())));
    };
    let request = ocsp_request(r)?;
    let url = sources.nvidia_ocsp_url.trim_end_matches('/').to_string();
    let bad = |message: String| EndorseError::Source { origin: url.clone(), message };
    let answer = http.post(&url, "application/ocsp-request", request).await?;
    if answer.status != 200 {
        return Err(bad(format!("HTTP {}: the OCSP responder refused; check --nvidia-ocsp-url", answer.status)));
    }
    let next_update = check_ocsp_answer(r, &answer.body, now).map_err(bad)?;
    Ok(Fetched {
        resource: r.clone(),
        parts: vec![Part { name: format!("ocsp-{serial}.der"), bytes: answer.body }],
        fetched_at: now,
        next_update: Some(next_update),
        source: url,
    })
}

/// An OCSP answer is kept only when it is a successful basic response with a
/// single response for `r`'s CertID; returns until when it may be used.
/// Its signature is the verifier's to check (against the verified chain).
pub fn check_ocsp_answer(r: &Resource, body: &[u8], now: i64) -> Result<i64, String> {
    use der::Decode;
    let Resource::Ocsp { issuer_name_hash, issuer_key_hash, serial } = r else {
        return Err(format!("{} is not an OCSP resource", r.key()));
    };
    let response = x509_ocsp::OcspResponse::from_der(body).map_err(|e| format!("not an OCSP response: {e}"))?;
    if response.response_status != x509_ocsp::OcspResponseStatus::Successful {
        return Err(format!("the responder answered {:?}", response.response_status));
    }
    let bytes = response.response_bytes.ok_or("a successful OCSP response without responseBytes")?;
    let basic = x509_ocsp::BasicOcspResponse::from_der(bytes.response.as_bytes()).map_err(|e| format!("not a basic OCSP response: {e}"))?;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|s| {
            s.cert_id.hash_algorithm.oid == OID_SHA384
                && hex::encode(s.cert_id.issuer_name_hash.as_bytes()) == *issuer_name_hash
                && hex::encode(s.cert_id.issuer_key_hash.as_bytes()) == *issuer_key_hash
                && hex::encode(s.cert_id.serial_number.as_bytes()) == *serial
        })
        .ok_or_else(|| format!("the OCSP response does not answer for certificate serial {serial}"))?;
    Ok(match &single.next_update {
        Some(t) => i64::try_from(t.0.to_unix_duration().as_secs()).unwrap_or(i64::MAX),
        None => now.saturating_add(OCSP_DEFAULT_LIFETIME),
    })
}

/// Whether `id` ends with `version` as nvtrust writes it in ids (driver
/// `_545.00`; VBIOS `_96005E0001`, dots removed, upper case).
pub(crate) fn names_version(id: &str, version: &str) -> bool {
    let up = id.to_ascii_uppercase();
    let v = version.trim().to_ascii_uppercase();
    !v.is_empty() && (up.ends_with(&format!("_{v}")) || up.ends_with(&format!("_{}", v.replace('.', ""))))
}

/// The RIM's validity: the earliest `notAfter` of its signer chain (NVIDIA
/// re-signs RIMs when that expires). `None` when no certificate parses.
fn validity_end(certs: &[Vec<u8>]) -> Option<i64> {
    certs.iter().filter_map(|der| x509_parser::parse_x509_certificate(der).ok()).map(|(_, c)| c.validity().not_after.timestamp()).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_path_segments() {
        assert!(check_id("NV_GPU_DRIVER_GH100_545.00").is_ok());
        for bad in ["", "a/b", "..%2f", "x?y", "a b", &"A".repeat(MAX_ID_LEN + 1)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn version_must_be_the_ids() {
        assert!(names_version("NV_GPU_DRIVER_GH100_545.00", "545.00"));
        assert!(names_version("NV_GPU_VBIOS_1010_0200_882_96005E0001", "96.00.5E.00.01"));
        assert!(!names_version("NV_GPU_DRIVER_GH100_545.00", "550.90.07"));
        assert!(!names_version("NV_GPU_DRIVER_GH100_545.00", ""));
    }
}
