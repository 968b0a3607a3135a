//! AWS Nitro Enclaves (and NitroTPM) attestation documents.
//!
//! A document is a COSE_Sign1 (RFC 9052) whose payload is a CBOR map
//! defined by AWS ("Verifying the root of trust",
//! aws-nitro-enclaves-nsm-api `docs/attestation_process.md`):
//!
//! ```text
//! { module_id: text, digest: "SHA384", timestamp: uint (ms),
//!   pcrs: { index 0..31 => bytes(32/48/64) }   ; or nitrotpm_pcrs (NitroTPM)
//!   certificate: bytes(1..1024), cabundle: [+ bytes(1..1024)],
//!   ? public_key: bytes(1..1024), ? user_data: bytes(0..1024), ? nonce: bytes(0..1024) }
//! ```
//!
//! Checks, by name: `"COSE structure"`, `"COSE algorithm"` (ES384 only),
//! `"Document fields"`, `"COSE signature"` (ES384 by the leaf certificate over
//! the Sig_structure), `"Nitro certificate chain"` and `"Nitro certificate
//! chain validity"` (cabundle to the pinned AWS Nitro root G1 at the
//! verification time), `"Document timestamp"` (inside the leaf's validity and
//! not after the verification time) and `"Document nonce"` when a nonce is
//! expected.
//!
//! CBOR is decoded by `ciborium` (definite and indefinite lengths) with a
//! nesting limit; sizes are bounded before decoding.

use std::collections::BTreeMap;

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use ciborium::value::Value as Cbor;
use serde_json::{json, Value};

use crate::anchors::{AnchorKind, TrustAnchors};
use crate::x509;
use crate::{Checks, UnixTime, VResult, VerifyRequest};

/// Largest attestation document accepted (bytes). Real ones are ~5 KiB; the
/// AWS format bounds each field to 1 KiB.
pub const MAX_DOCUMENT_LEN: usize = 64 * 1024;
/// Deepest CBOR nesting accepted (a document needs 3).
const MAX_CBOR_DEPTH: usize = 16;
/// The COSE algorithm identifier of ECDSA P-384 with SHA-384.
pub const COSE_ALG_ES384: i64 = -35;
/// Largest certificate, public key, user data or nonce (AWS: 1024 bytes).
const MAX_FIELD_LEN: usize = 1024;
/// Most entries in `cabundle` (AWS uses 4; the chain walk is bounded anyway).
const MAX_CABUNDLE: usize = 16;

/// The three byte strings of a COSE_Sign1 the signature depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoseSign1 {
    /// The serialized protected header map, as signed.
    pub protected: Vec<u8>,
    /// The payload, as signed.
    pub payload: Vec<u8>,
    /// The signature (r || s for ECDSA).
    pub signature: Vec<u8>,
}

impl CoseSign1 {
    /// The Sig_structure of RFC 9052 §4.4 that the signature covers:
    /// `["Signature1", protected, external_aad = h'', payload]`.
    pub fn to_be_signed(&self) -> Result<Vec<u8>, String> {
        let s = Cbor::Array(vec![
            Cbor::Text("Signature1".into()),
            Cbor::Bytes(self.protected.clone()),
            Cbor::Bytes(Vec::new()),
            Cbor::Bytes(self.payload.clone()),
        ]);
        let mut out = Vec::new();
        ciborium::into_writer(&s, &mut out).map_err(|e| format!("cannot encode Sig_structure: {e}"))?;
        Ok(out)
    }
}

/// Decode one CBOR item that must span all of `bytes`.
fn decode_cbor(bytes: &[u8], what: &str) -> Result<Cbor, String> {
    let mut rest: &[u8] = bytes;
    let v: Cbor =
        ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_CBOR_DEPTH).map_err(|e| format!("{what} is not valid CBOR: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{what}: {} trailing bytes", rest.len()));
    }
    Ok(v)
}

/// Parse a COSE_Sign1 (tagged with 18 or not): a 4-element array of
/// protected header (bstr), unprotected header (map), payload (bstr) and
/// signature (bstr). No trailing bytes.
pub fn parse_cose_sign1(bytes: &[u8]) -> Result<CoseSign1, String> {
    if bytes.len() > MAX_DOCUMENT_LEN {
        return Err(format!("{} bytes exceeds the {MAX_DOCUMENT_LEN}-byte limit", bytes.len()));
    }
    let v = match decode_cbor(bytes, "COSE_Sign1")? {
        Cbor::Tag(18, inner) => *inner,
        Cbor::Tag(t, _) => return Err(format!("CBOR tag {t} is not COSE_Sign1 (18)")),
        v => v,
    };
    let items = match v {
        Cbor::Array(a) if a.len() == 4 => a,
        Cbor::Array(a) => return Err(format!("COSE_Sign1 array has {} elements, expected 4", a.len())),
        _ => return Err("COSE_Sign1 is not a CBOR array".into()),
    };
    let mut it = items.into_iter();
    let (protected, unprotected, payload, signature) = (it.next(), it.next(), it.next(), it.next());
    let protected = match protected {
        Some(Cbor::Bytes(b)) => b,
        _ => return Err("protected header is not a byte string".into()),
    };
    if !matches!(unprotected, Some(Cbor::Map(_))) {
        return Err("unprotected header is not a map".into());
    }
    let payload = match payload {
        Some(Cbor::Bytes(b)) => b,
        _ => return Err("payload is not a byte string (detached payloads are not used by AWS)".into()),
    };
    let signature = match signature {
        Some(Cbor::Bytes(b)) => b,
        _ => return Err("signature is not a byte string".into()),
    };
    Ok(CoseSign1 { protected, payload, signature })
}

/// The `alg` of a protected header; refuses duplicate labels and any
/// `crit` (label 2) header, which this verifier does not understand.
pub fn protected_alg(protected: &[u8]) -> Result<i64, String> {
    let entries = match decode_cbor(protected, "protected header")? {
        Cbor::Map(m) => m,
        _ => return Err("protected header is not a CBOR map".into()),
    };
    let mut alg = None;
    let mut seen = Vec::new();
    for (k, v) in entries {
        let label = match k {
            Cbor::Integer(i) => i128::from(i),
            _ => continue,
        };
        if seen.contains(&label) {
            return Err(format!("protected header label {label} appears twice"));
        }
        seen.push(label);
        match label {
            1 => match v {
                Cbor::Integer(i) => alg = i64::try_from(i128::from(i)).ok(),
                _ => return Err("alg is not an integer".into()),
            },
            2 => return Err("protected header has critical parameters ('crit')".into()),
            _ => {}
        }
    }
    alg.ok_or_else(|| "protected header has no alg".into())
}

/// The fields of an attestation document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NitroDocument {
    /// `module_id`: the issuing Nitro module (instance and enclave/TPM).
    pub module_id: String,
    /// `digest`: the PCR hash function (always `"SHA384"`).
    pub digest: String,
    /// `timestamp`: creation time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// `pcrs` or `nitrotpm_pcrs`, by index.
    pub pcrs: BTreeMap<u32, Vec<u8>>,
    /// Whether the PCRs came as `nitrotpm_pcrs` (a NitroTPM document).
    pub nitrotpm: bool,
    /// `certificate`: the leaf (DER) whose key signed the document.
    pub certificate: Vec<u8>,
    /// `cabundle`: the issuing chain, root first (DER).
    pub cabundle: Vec<Vec<u8>>,
    /// `public_key`, if present and not null.
    pub public_key: Option<Vec<u8>>,
    /// `user_data`, if present and not null.
    pub user_data: Option<Vec<u8>>,
    /// `nonce`, if present and not null.
    pub nonce: Option<Vec<u8>>,
}

impl NitroDocument {
    /// Whether this is a debug-mode enclave: AWS zeroes PCR0..2 in debug
    /// mode, so all three zero (or absent) means debug.
    pub fn debug(&self) -> bool {
        (0..3).all(|i| self.pcrs.get(&i).map(|v| v.iter().all(|b| *b == 0)).unwrap_or(true))
    }
}

fn bytes_field(v: Cbor, name: &str, min: usize, max: usize) -> Result<Vec<u8>, String> {
    match v {
        Cbor::Bytes(b) if b.len() >= min && b.len() <= max => Ok(b),
        Cbor::Bytes(b) => Err(format!("'{name}' is {} bytes, allowed {min}..={max}", b.len())),
        _ => Err(format!("'{name}' is not a byte string")),
    }
}

fn optional_bytes(v: Option<Cbor>, name: &str, min: usize) -> Result<Option<Vec<u8>>, String> {
    match v {
        None | Some(Cbor::Null) => Ok(None),
        Some(v) => bytes_field(v, name, min, MAX_FIELD_LEN).map(Some),
    }
}

fn pcr_map(v: Cbor, name: &str) -> Result<BTreeMap<u32, Vec<u8>>, String> {
    let entries = match v {
        Cbor::Map(m) => m,
        _ => return Err(format!("'{name}' is not a map")),
    };
    if entries.is_empty() || entries.len() > 32 {
        return Err(format!("'{name}' has {} entries, allowed 1..=32", entries.len()));
    }
    let mut out = BTreeMap::new();
    for (k, val) in entries {
        let idx = match k {
            Cbor::Integer(i) => u32::try_from(i128::from(i)).ok().filter(|i| *i < 32),
            _ => None,
        }
        .ok_or_else(|| format!("'{name}' has a key that is not an index 0..31"))?;
        let bytes = match val {
            Cbor::Bytes(b) if matches!(b.len(), 32 | 48 | 64) => b,
            _ => return Err(format!("{name}[{idx}] is not a 32-, 48- or 64-byte string")),
        };
        if out.insert(idx, bytes).is_some() {
            return Err(format!("{name}[{idx}] appears twice"));
        }
    }
    Ok(out)
}

/// Parse and syntactically validate the payload, per AWS's rules (required
/// fields and types, sizes, PCR indices and lengths, no duplicate keys).
/// Unknown fields are ignored.
pub fn parse_document(payload: &[u8]) -> Result<NitroDocument, String> {
    let entries = match decode_cbor(payload, "payload")? {
        Cbor::Map(m) => m,
        _ => return Err("payload is not a CBOR map".into()),
    };
    let mut fields: BTreeMap<String, Cbor> = BTreeMap::new();
    for (k, v) in entries {
        let key = match k {
            Cbor::Text(t) => t,
            _ => return Err("payload has a key that is not text".into()),
        };
        if fields.contains_key(&key) {
            return Err(format!("'{key}' appears twice"));
        }
        fields.insert(key, v);
    }
    let mut take = |k: &str| fields.remove(k);
    let module_id = match take("module_id") {
        Some(Cbor::Text(t)) if !t.is_empty() && t.len() <= MAX_FIELD_LEN => t,
        Some(_) => return Err("'module_id' is not a non-empty text string".into()),
        None => return Err("'module_id' is missing".into()),
    };
    let digest = match take("digest") {
        Some(Cbor::Text(t)) if t == "SHA384" => t,
        Some(Cbor::Text(t)) => return Err(format!("'digest' is {t:?}, AWS documents use \"SHA384\"")),
        Some(_) => return Err("'digest' is not text".into()),
        None => return Err("'digest' is missing".into()),
    };
    let timestamp_ms = match take("timestamp") {
        Some(Cbor::Integer(i)) => u64::try_from(i128::from(i)).ok().filter(|t| *t > 0 && *t < (1u64 << 53)),
        Some(_) => None,
        None => return Err("'timestamp' is missing".into()),
    }
    .ok_or("'timestamp' is not a positive integer of milliseconds")?;
    let (pcrs, nitrotpm) = match (take("pcrs"), take("nitrotpm_pcrs")) {
        (Some(p), None) => (pcr_map(p, "pcrs")?, false),
        (None, Some(p)) => (pcr_map(p, "nitrotpm_pcrs")?, true),
        (Some(_), Some(_)) => return Err("both 'pcrs' and 'nitrotpm_pcrs' are present".into()),
        (None, None) => return Err("'pcrs' is missing".into()),
    };
    let certificate = bytes_field(take("certificate").ok_or("'certificate' is missing")?, "certificate", 1, MAX_FIELD_LEN)?;
    let cabundle = match take("cabundle") {
        Some(Cbor::Array(a)) if !a.is_empty() && a.len() <= MAX_CABUNDLE => {
            a.into_iter().map(|c| bytes_field(c, "cabundle entry", 1, MAX_FIELD_LEN)).collect::<Result<Vec<_>, _>>()?
        }
        Some(Cbor::Array(a)) => return Err(format!("'cabundle' has {} entries, allowed 1..={MAX_CABUNDLE}", a.len())),
        Some(_) => return Err("'cabundle' is not an array".into()),
        None => return Err("'cabundle' is missing".into()),
    };
    let public_key = optional_bytes(take("public_key"), "public_key", 1)?;
    let user_data = optional_bytes(take("user_data"), "user_data", 0)?;
    let nonce = optional_bytes(take("nonce"), "nonce", 0)?;
    Ok(NitroDocument { module_id, digest, timestamp_ms, pcrs, nitrotpm, certificate, cabundle, public_key, user_data, nonce })
}

/// Verify the ES384 signature of the COSE_Sign1 with the leaf certificate's
/// P-384 key.
pub fn verify_cose_signature(cose: &CoseSign1, leaf_der: &[u8]) -> Result<(), String> {
    let leaf = x509::parse_cert(leaf_der).map_err(|e| format!("leaf certificate: {e}"))?;
    let spki = leaf.public_key();
    if x509::ec_curve(spki) != Some("P-384") {
        return Err("the leaf certificate's key is not ECDSA P-384".into());
    }
    if cose.signature.len() != 96 {
        return Err(format!("ES384 signature is {} bytes, expected 96 (r || s)", cose.signature.len()));
    }
    let tbs = cose.to_be_signed()?;
    UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, spki.subject_public_key.data.as_ref())
        .verify(&tbs, &cose.signature)
        .map_err(|_| format!("ES384 signature does not verify with '{}'", leaf.subject()))
}

/// Verify a document up to, not including, the nonce: structure, algorithm,
/// fields, signature, chain to the pinned AWS Nitro root at `at`, and the
/// document timestamp. Used by `nitro` and `nitro-tpm`.
pub fn verify_document(bytes: &[u8], anchors: &TrustAnchors, at: UnixTime, checks: &mut Checks) -> VResult<NitroDocument> {
    let cose = checks.record("COSE structure", parse_cose_sign1(bytes), "COSE_Sign1")?;
    let alg =
        protected_alg(&cose.protected).and_then(
            |alg| {
                if alg == COSE_ALG_ES384 {
                    Ok(())
                } else {
                    Err(format!("alg {alg} is not ES384 (-35)"))
                }
            },
        );
    checks.record("COSE algorithm", alg, "ES384 (-35)")?;
    let doc = checks.record("Document fields", parse_document(&cose.payload), "all required fields well-formed")?;
    checks.record("COSE signature", verify_cose_signature(&cose, &doc.certificate), "ES384 by the leaf certificate")?;
    let roots: Vec<&crate::anchors::Anchor> = anchors.of_kind(AnchorKind::AwsNitroRoot).collect();
    let chain = crate::cache::verify_chain("Nitro certificate chain", &doc.certificate, &doc.cabundle, roots.iter().copied(), at, checks)?;
    let leaf = x509::parse_cert(chain.leaf()).map_err(|e| checks.fail("Document timestamp", e))?;
    let (nb, na) = x509::validity_window(&leaf);
    let ts = (doc.timestamp_ms / 1000) as i64;
    let r = if ts < nb || ts > na {
        Err(format!(
            "timestamp {} is outside the leaf certificate's validity {} .. {}",
            fmt_ms(doc.timestamp_ms),
            x509::fmt_time(nb),
            x509::fmt_time(na)
        ))
    } else if ts > at {
        Err(format!("timestamp {} is after the verification time {}", fmt_ms(doc.timestamp_ms), x509::fmt_time(at)))
    } else {
        Ok(())
    };
    checks.record("Document timestamp", r, format!("{} inside the leaf's validity", fmt_ms(doc.timestamp_ms)))?;
    Ok(doc)
}

/// RFC 3339 rendering of a millisecond timestamp.
pub fn fmt_ms(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// The claims of a verified document.
pub fn claims(doc: &NitroDocument) -> Value {
    let pcrs: serde_json::Map<String, Value> = doc.pcrs.iter().map(|(i, v)| (i.to_string(), json!(hex::encode(v)))).collect();
    let subject = x509::subject_of(&doc.certificate);
    json!({
        "tee": "nitro",
        "module_id": doc.module_id,
        "digest": doc.digest,
        "timestamp": fmt_ms(doc.timestamp_ms),
        "timestamp_ms": doc.timestamp_ms,
        "pcrs": pcrs,
        "nitrotpm": doc.nitrotpm,
        "debug": doc.debug(),
        "public_key": doc.public_key.as_ref().map(hex::encode),
        "user_data": doc.user_data.as_ref().map(hex::encode),
        "nonce": doc.nonce.as_ref().map(hex::encode),
        "certificate_subject": subject,
    })
}

/// Verify an AWS Nitro Enclaves attestation document (binary COSE_Sign1),
/// and its `nonce` against the expected one when given.
pub fn verify(req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<Value> {
    let doc = verify_document(req.evidence, req.anchors, req.at, checks)?;
    if let Some(want) = req.expected_nonce {
        checks.require(
            "Document nonce",
            doc.nonce.as_deref() == Some(want),
            "nonce equals the expected nonce",
            format!(
                "document nonce {} is not the expected {}",
                doc.nonce.as_ref().map(hex::encode).unwrap_or_else(|| "(absent)".into()),
                hex::encode(want)
            ),
        )?;
    }
    Ok(claims(&doc))
}
