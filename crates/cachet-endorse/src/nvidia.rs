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
//! OCSP (`--nvidia-ocsp-url`) is not fetched here yet: revocation of device
//! and RIM certificates stays "not checked" unless responses are supplied.

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
