//! The Azure confidential VM evidence JSON, in each encoding seen in the
//! wild, read into one shape ([`AzureEvidence`]).
//!
//! Known forms (confidential-containers/trustee `az-snp-vtpm` / `az-tdx-vtpm`
//! attesters, which use kinvolk/azure-cvm-tooling):
//!
//! ```text
//! v0 (SNP):  {"quote": {"signature": [u8], "message": [u8], "pcrs": [[u8; 32]; n]},
//!             "report": [u8] (HCL report), "vcek": "<PEM>"}
//! v0 (TDX):  {"tpm_quote": {..as above..}, "hcl_report": [u8], "td_quote": [u8]}
//! v1, v2:    {"version": 1|2, "tpm_quote": {"signature": hex, "message": hex, "pcrs": [hex]},
//!             "hcl_report": base64url, "vcek": base64url DER | "td_quote": base64url}
//! ```
//!
//! Every byte field may be a JSON array of numbers, hex or base64 (either
//! alphabet, padding optional); where text could be read both ways, the
//! reading with the right structure (an HCL report starts with `HCLA`, a
//! TPM quote with `TPM_GENERATED_VALUE`, a TD quote with a v4/v5 TDX header)
//! is taken. Key names are matched ignoring case, `_` and `-`.
//!
//! `message` is the marshalled `TPMS_ATTEST`; `signature` is the raw RSA
//! (or ECDSA r‖s / DER) signature the vTPM made, or a `TPMT_SIGNATURE`;
//! `pcrs` lists the values of the PCRs the quote selects, in selection
//! order (a `{"sha256": {"0": hex}}` object is accepted as well).

use serde_json::{Map, Value};

use crate::tpm::quote::{self, PcrBanks};
use crate::x509;

/// Largest number of PCR values accepted in a list.
pub const MAX_PCR_VALUES: usize = 256;
/// Largest number of certificates taken from the evidence.
pub const MAX_EVIDENCE_CERTS: usize = 8;
/// How deep an `{"evidence": {...}}` wrapper may nest.
const MAX_WRAPPER_DEPTH: usize = 2;

/// `TPM_GENERATED_VALUE`, the first four bytes of every `TPMS_ATTEST`.
const TPM_GENERATED: [u8; 4] = [0xff, 0x54, 0x43, 0x47];

/// The PCR values as the evidence gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PcrInput {
    /// A list of values, one per PCR the quote selects, in selection order.
    List(Vec<Vec<u8>>),
    /// Values by bank and index.
    Banks(PcrBanks),
    /// Values by index, bank not named (the quote's single bank).
    Indexed(std::collections::BTreeMap<u32, Vec<u8>>),
}

/// Azure CVM evidence, decoded.
#[derive(Debug, Clone)]
pub struct AzureEvidence {
    /// The evidence format version (`version`), 0 when absent.
    pub version: u64,
    /// The HCL report as read from the vTPM NV index (`HCLA` ...).
    pub hcl_report: Vec<u8>,
    /// The marshalled `TPMS_ATTEST` the vTPM AK signed.
    pub quote: Vec<u8>,
    /// The quote signature as given.
    pub signature: Vec<u8>,
    /// The PCR values.
    pub pcrs: PcrInput,
    /// Certificates carried in the evidence (the VCEK on SNP), DER.
    pub certs: Vec<Vec<u8>>,
    /// The TD quote (TDX).
    pub td_quote: Option<Vec<u8>>,
}

/// `hclReport`, `hcl_report`, `HCL-Report` → `hclreport`.
fn norm(key: &str) -> String {
    key.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

/// The value of the first key (normalized) of `names` present in `obj`.
fn field<'a>(obj: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| obj.iter().find(|(k, _)| norm(k) == *n).map(|(_, v)| v))
}

/// Every reading of a JSON byte field: an array of numbers (one reading), or
/// text as hex and/or base64 (hex first).
pub fn byte_readings(v: &Value) -> Result<Vec<Vec<u8>>, String> {
    match v {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item.as_u64() {
                    Some(b) if b <= 0xff => out.push(b as u8),
                    _ => return Err("a byte array holds something other than numbers 0..=255".into()),
                }
            }
            Ok(vec![out])
        }
        Value::String(s) => {
            let t = s.trim();
            let mut out = Vec::new();
            let h = t.strip_prefix("0x").unwrap_or(t);
            if !h.is_empty() && h.len() % 2 == 0 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
                if let Ok(b) = hex::decode(h) {
                    out.push(b);
                }
            }
            let compact: String = t.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            if let Some(b) = crate::encoding::decode_base64(&compact) {
                if !out.contains(&b) {
                    out.push(b);
                }
            }
            if out.is_empty() {
                return Err("text is neither hex nor base64".into());
            }
            Ok(out)
        }
        _ => Err("expected a byte array or a hex/base64 string".into()),
    }
}

/// The reading of `v` that `fits`, else an error naming `what`.
fn bytes_where(v: &Value, what: &str, fits: impl Fn(&[u8]) -> bool) -> Result<Vec<u8>, String> {
    let readings = byte_readings(v).map_err(|e| format!("'{what}': {e}"))?;
    readings.into_iter().find(|b| fits(b)).ok_or_else(|| format!("'{what}' does not decode to {what} bytes of the expected structure"))
}

/// Whether `b` starts like an HCL report.
pub fn looks_like_hcl(b: &[u8]) -> bool {
    b.starts_with(b"HCLA")
}

/// Whether `b` starts like a TDX DCAP quote (v4/v5 header, TEE type 0x81).
fn looks_like_td_quote(b: &[u8]) -> bool {
    let le16 = |i: usize| b.get(i..i + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let le32 = |i: usize| b.get(i..i + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
    matches!(le16(0), Some(4..=5)) && le32(4) == Some(0x81)
}

/// The JSON object holding the evidence fields: the document itself, or an
/// `{"evidence": ...}` wrapper's content (object or JSON text).
fn evidence_object(v: &Value, depth: usize) -> Option<Map<String, Value>> {
    let obj = v.as_object()?;
    if field(obj, &["hclreport", "report"]).is_some() {
        return Some(obj.clone());
    }
    if depth >= MAX_WRAPPER_DEPTH {
        return None;
    }
    match field(obj, &["evidence", "teeevidence"])? {
        Value::String(s) => serde_json::from_str::<Value>(s).ok().and_then(|inner| evidence_object(&inner, depth + 1)),
        inner => evidence_object(inner, depth + 1),
    }
}

/// The HCL report bytes of a JSON document, if it has one (for detection).
pub fn hcl_report_of(v: &Value) -> Option<Vec<u8>> {
    let obj = evidence_object(v, 0)?;
    let raw = field(&obj, &["hclreport", "report"])?;
    bytes_where(raw, "hcl_report", looks_like_hcl).ok()
}

/// Certificates from a string (PEM, or DER as hex/base64) or an array of such.
fn certs_from(v: &Value, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
    match v {
        Value::String(s) if s.contains("-----BEGIN") => {
            let found = x509::certs_from_pem(s.as_bytes());
            if found.is_empty() {
                return Err("PEM text holds no certificate".into());
            }
            out.extend(found);
        }
        Value::Array(items) if items.iter().all(Value::is_string) => {
            for item in items {
                certs_from(item, out)?;
            }
        }
        other => out.push(bytes_where(other, "certificate", x509::is_der_cert)?),
    }
    if out.len() > MAX_EVIDENCE_CERTS {
        return Err(format!("more than {MAX_EVIDENCE_CERTS} certificates in the evidence"));
    }
    Ok(())
}

/// PCR values: a list (of byte arrays or hex strings), `{"sha256": {...}}`
/// banks, or `{"0": hex, ...}` by index.
fn pcrs_from(v: &Value) -> Result<PcrInput, String> {
    match v {
        Value::Array(items) => {
            if items.len() > MAX_PCR_VALUES {
                return Err(format!("more than {MAX_PCR_VALUES} PCR values"));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let b =
                    bytes_where(item, "PCR value", |b| matches!(b.len(), 20 | 32 | 48 | 64)).map_err(|e| format!("PCR value {i}: {e}"))?;
                out.push(b);
            }
            Ok(PcrInput::List(out))
        }
        Value::Object(m) if !m.is_empty() && m.keys().all(|k| k.trim().parse::<u32>().is_ok()) => {
            if m.len() > MAX_PCR_VALUES {
                return Err(format!("more than {MAX_PCR_VALUES} PCR values"));
            }
            let mut out = std::collections::BTreeMap::new();
            for (k, item) in m {
                let idx: u32 = k.trim().parse().map_err(|_| format!("PCR index '{k}' is not a number"))?;
                let b = bytes_where(item, "PCR value", |b| matches!(b.len(), 20 | 32 | 48 | 64)).map_err(|e| format!("PCR {idx}: {e}"))?;
                out.insert(idx, b);
            }
            Ok(PcrInput::Indexed(out))
        }
        Value::Object(_) => Ok(PcrInput::Banks(quote::pcr_banks_from_json(v)?)),
        _ => Err("'pcrs' must be a list or an object".into()),
    }
}

/// Read Azure CVM evidence JSON (see the module documentation).
pub fn parse(bytes: &[u8]) -> Result<AzureEvidence, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    from_json(&doc)
}

/// Read Azure CVM evidence from a parsed JSON document.
pub fn from_json(doc: &Value) -> Result<AzureEvidence, String> {
    let obj = evidence_object(doc, 0).ok_or("no 'hcl_report' (or 'report') field: not Azure CVM evidence")?;
    let version = match field(&obj, &["version"]) {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or("'version' is not a non-negative integer")?,
    };
    let hcl_raw = field(&obj, &["hclreport", "report"]).ok_or("'hcl_report' is missing")?;
    let hcl_report = bytes_where(hcl_raw, "hcl_report", looks_like_hcl)?;
    let q = field(&obj, &["tpmquote", "quote"]).and_then(Value::as_object).ok_or("'tpm_quote' (or 'quote') is missing or not an object")?;
    let msg = field(q, &["message", "quote", "attest", "quoted"]).ok_or("'tpm_quote.message' is missing")?;
    let quote = bytes_where(msg, "tpm_quote.message", |b| b.starts_with(&TPM_GENERATED))?;
    let sig = field(q, &["signature", "sig"]).ok_or("'tpm_quote.signature' is missing")?;
    let signature = bytes_where(sig, "tpm_quote.signature", |b| !b.is_empty())?;
    let pcrs = pcrs_from(field(q, &["pcrs", "pcrvalues"]).ok_or("'tpm_quote.pcrs' is missing")?)?;
    let mut certs = Vec::new();
    for names in [&["vcek", "vcekcert", "vcekder", "vcekpem"][..], &["vlek", "vlekcert"], &["certchain", "certs", "certificates"]] {
        if let Some(v) = field(&obj, names) {
            if !v.is_null() {
                certs_from(v, &mut certs).map_err(|e| format!("'{}': {e}", names[0]))?;
            }
        }
    }
    let td_quote = match field(&obj, &["tdquote"]) {
        None | Some(Value::Null) => None,
        Some(v) => Some(bytes_where(v, "td_quote", looks_like_td_quote)?),
    };
    Ok(AzureEvidence { version, hcl_report, quote, signature, pcrs, certs, td_quote })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn byte_fields_in_every_encoding() {
        assert_eq!(byte_readings(&json!([1, 2, 255])).unwrap(), vec![vec![1, 2, 255]]);
        assert!(byte_readings(&json!([256])).is_err());
        assert!(byte_readings(&json!([-1])).is_err());
        // "abcd" is both hex and base64: both readings, hex first.
        assert_eq!(byte_readings(&json!("abcd")).unwrap(), vec![vec![0xab, 0xcd], vec![0x69, 0xb7, 0x1d]]);
        assert_eq!(byte_readings(&json!("SENMQQ")).unwrap(), vec![b"HCLA".to_vec()]);
        assert!(byte_readings(&json!("not base64!")).is_err());
        assert!(byte_readings(&json!(3)).is_err());
    }

    #[test]
    fn structure_decides_between_readings() {
        // "48434c41" is hex for HCLA and also base64 text.
        let v = json!("48434c41");
        assert_eq!(bytes_where(&v, "hcl_report", looks_like_hcl).unwrap(), b"HCLA".to_vec());
        assert!(bytes_where(&json!("00000000"), "hcl_report", looks_like_hcl).is_err());
    }

    #[test]
    fn keys_match_ignoring_case_and_separators() {
        let obj = json!({"HCL-Report": 1, "tpmQuote": 2}).as_object().cloned().unwrap();
        assert_eq!(field(&obj, &["hclreport"]), Some(&json!(1)));
        assert_eq!(field(&obj, &["tpmquote"]), Some(&json!(2)));
        assert_eq!(field(&obj, &["tdquote"]), None);
    }

    #[test]
    fn pcr_forms() {
        let list = pcrs_from(&json!([hex::encode([1u8; 32]), vec![2u8; 32]])).unwrap();
        assert_eq!(list, PcrInput::List(vec![vec![1; 32], vec![2; 32]]));
        let idx = pcrs_from(&json!({"3": hex::encode([3u8; 32])})).unwrap();
        assert!(matches!(idx, PcrInput::Indexed(m) if m.get(&3) == Some(&vec![3u8; 32])));
        let banks = pcrs_from(&json!({"sha256": {"0": hex::encode([0u8; 32])}})).unwrap();
        assert!(matches!(banks, PcrInput::Banks(_)));
        assert!(pcrs_from(&json!([hex::encode([1u8; 7])])).is_err());
        assert!(pcrs_from(&json!("x")).is_err());
    }

    #[test]
    fn missing_fields_are_named() {
        let e = from_json(&json!({"hcl_report": "SENMQQ"})).unwrap_err();
        assert!(e.contains("tpm_quote"), "{e}");
        let e = from_json(&json!({"tpm_quote": {}})).unwrap_err();
        assert!(e.contains("hcl_report"), "{e}");
        let e = from_json(&json!({"hcl_report": "AAAA", "tpm_quote": {}})).unwrap_err();
        assert!(e.contains("hcl_report"), "{e}");
    }

    #[test]
    fn wrapped_evidence_is_found() {
        let inner = json!({"hcl_report": "SENMQQ"});
        assert!(hcl_report_of(&json!({"evidence": inner})).is_some());
        assert!(hcl_report_of(&json!({"evidence": inner.to_string()})).is_some());
        assert!(hcl_report_of(&json!({"quote": "ff544347"})).is_none());
    }
}
