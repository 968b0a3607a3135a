//! TPM 2.0 evidence: a quote by an attestation key (AK), the PCR values it
//! covers, and what makes the AK trustworthy.
//!
//! The quote core lives in [`quote`] (structures, signature, PCR digest,
//! nonce) and is shared by every TPM-based family: `tpm` here, `nitro-tpm`
//! (the AK bound by an AWS NitroTPM NSM document), the Azure vTPM families
//! and credential activation ([`activation`]).
//!
//! # Cachet TPM evidence JSON
//!
//! `--tee tpm` and `--tee nitro-tpm` take a JSON document:
//!
//! ```json
//! {
//!   "quote": "<hex TPMS_ATTEST>",
//!   "signature": "<hex TPMT_SIGNATURE, or DER ECDSA>",
//!   "ak_public": "<hex TPM2B_PUBLIC | TPMT_PUBLIC | SPKI DER, or PEM>" | {JWK} | {"x","y","crv"?} | {"n","e"},
//!   "pcrs": {"sha256": {"0": "<hex>", "1": "<hex>", ...}, "sha384": {...}},
//!   "ak_cert_chain": ["<PEM>", ...],          // optional: leaf first (tpm)
//!   "nitro_document": "<hex COSE_Sign1>",     // optional: NitroTPM NSM document (nitro-tpm)
//!   "event_log": "<base64 TCG event log>",    // optional
//!   "nonce": "<hex>"                          // optional: the nonce the attester says it used
//! }
//! ```
//!
//! The fixture JSON of lockboot/vaportpm (`{"nonce", "pcrs", "ak_pubkeys":
//! {"ecc_p256": {"x","y"}}, "attestation": {"tpm": {"ecc_p256":
//! {"attest_data","signature"}}, "gcp": {"ak_cert_chain"} | "nitro":
//! {"document"}}}`) is accepted too; both become a [`TpmEvidence`].

pub mod quote;

use serde_json::{json, Value};

use crate::anchors::AnchorKind;
use crate::x509;
use crate::{Checks, Tee, VResult, VerifyRequest};
use quote::{AkPublic, Attest, HashAlg, PcrBanks};

/// Largest number of certificates accepted in an AK chain.
const MAX_CHAIN_CERTS: usize = 16;
/// Largest event log accepted (bytes, decoded).
pub const MAX_EVENT_LOG_LEN: usize = 2 << 20;

/// TPM evidence in one shape, whichever JSON it came in.
#[derive(Debug, Clone)]
pub struct TpmEvidence {
    /// The marshalled `TPMS_ATTEST` the AK signed.
    pub quote: Vec<u8>,
    /// The signature (`TPMT_SIGNATURE` or DER ECDSA).
    pub signature: Vec<u8>,
    /// The AK as given (parse with [`AkPublic::from_json`]).
    pub ak_public: Value,
    /// The supplied PCR values (not yet checked against the quote).
    pub pcrs: PcrBanks,
    /// AK certificate chain, DER, leaf first (may be empty).
    pub ak_cert_chain: Vec<Vec<u8>>,
    /// An AWS NitroTPM NSM document (COSE_Sign1) binding the AK.
    pub nitro_document: Option<Vec<u8>>,
    /// A TCG event log, decoded.
    pub event_log: Option<Vec<u8>>,
    /// The nonce the attester says it used (informative; the verifier's own
    /// expectation is [`VerifyRequest::expected_nonce`]).
    pub nonce: Option<Vec<u8>>,
    /// The whole JSON document, for fields other parts need (EK certificate,
    /// activation data).
    pub json: Value,
}

fn hex_field(v: &Value, key: &str) -> Result<Vec<u8>, String> {
    let s = v.get(key).and_then(Value::as_str).ok_or_else(|| format!("'{key}' is missing or not a string"))?;
    quote::decode_bytes(s).ok_or_else(|| format!("'{key}' is not hex or base64"))
}

fn cert_chain_from_json(v: &Value) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut add = |s: &str| -> Result<(), String> {
        let pem = x509::certs_from_pem(s.as_bytes());
        if pem.is_empty() {
            let der = quote::decode_bytes(s).ok_or("AK certificate is neither PEM, hex nor base64")?;
            x509::parse_cert(&der)?;
            out.push(der);
        } else {
            out.extend(pem);
        }
        Ok(())
    };
    match v {
        Value::String(s) => add(s)?,
        Value::Array(a) => {
            for item in a {
                add(item.as_str().ok_or("AK certificate chain entries must be strings")?)?;
            }
        }
        _ => return Err("'ak_cert_chain' must be a string or an array of strings".into()),
    }
    if out.len() > MAX_CHAIN_CERTS {
        return Err(format!("AK certificate chain has more than {MAX_CHAIN_CERTS} certificates"));
    }
    Ok(out)
}

impl TpmEvidence {
    /// Read either JSON form (see the module documentation).
    pub fn from_json(v: &Value) -> Result<TpmEvidence, String> {
        if !v.is_object() {
            return Err("TPM evidence must be a JSON object".into());
        }
        let pcrs = match v.get("pcrs") {
            Some(p) => quote::pcr_banks_from_json(p)?,
            None => return Err("'pcrs' is missing".into()),
        };
        let nonce = match v.get("nonce") {
            Some(Value::String(_)) => Some(hex_field(v, "nonce")?),
            _ => None,
        };
        let event_log = match v.get("event_log") {
            Some(Value::String(s)) => {
                let b = crate::encoding::decode_base64(s).ok_or("'event_log' is not base64")?;
                if b.len() > MAX_EVENT_LOG_LEN {
                    return Err("event log too large".into());
                }
                Some(b)
            }
            Some(Value::Null) | None => None,
            Some(_) => return Err("'event_log' must be a base64 string".into()),
        };
        if v.get("quote").is_some() {
            let ak_public = v.get("ak_public").cloned().ok_or("'ak_public' is missing")?;
            let ak_cert_chain = match v.get("ak_cert_chain") {
                Some(Value::Null) | None => Vec::new(),
                Some(c) => cert_chain_from_json(c)?,
            };
            let nitro_document = match v.get("nitro_document") {
                Some(Value::String(_)) => Some(hex_field(v, "nitro_document")?),
                _ => None,
            };
            return Ok(TpmEvidence {
                quote: hex_field(v, "quote")?,
                signature: hex_field(v, "signature")?,
                ak_public,
                pcrs,
                ak_cert_chain,
                nitro_document,
                event_log,
                nonce,
                json: v.clone(),
            });
        }
        // lockboot/vaportpm fixture form.
        let att = v.get("attestation").ok_or("neither 'quote' nor 'attestation' present")?;
        let tpm = att.get("tpm").and_then(Value::as_object).ok_or("'attestation.tpm' is missing")?;
        let keys = v.get("ak_pubkeys").and_then(Value::as_object).ok_or("'ak_pubkeys' is missing")?;
        let (kind, entry) =
            tpm.iter().find(|(k, _)| keys.contains_key(*k)).ok_or("no 'attestation.tpm' entry has a matching 'ak_pubkeys' entry")?;
        let mut ak_public = keys.get(kind).cloned().unwrap_or(Value::Null);
        if let Value::Object(o) = &mut ak_public {
            if !o.contains_key("crv") && !o.contains_key("kty") {
                let crv = if kind.contains("p384") {
                    "P-384"
                } else if kind.contains("p521") {
                    "P-521"
                } else if kind.contains("p256") {
                    "P-256"
                } else {
                    ""
                };
                if !crv.is_empty() {
                    o.insert("crv".into(), Value::String(crv.into()));
                }
            }
        }
        let ak_cert_chain = match att.get("gcp").and_then(|g| g.get("ak_cert_chain")) {
            Some(c) => cert_chain_from_json(c)?,
            None => Vec::new(),
        };
        let nitro_document = match att.get("nitro") {
            Some(n) => Some(hex_field(n, "document")?),
            None => None,
        };
        Ok(TpmEvidence {
            quote: hex_field(entry, "attest_data")?,
            signature: hex_field(entry, "signature")?,
            ak_public,
            pcrs,
            ak_cert_chain,
            nitro_document,
            event_log,
            nonce,
            json: v.clone(),
        })
    }
}

/// Parse the request's evidence as TPM JSON, under the check
/// `"Evidence format"`.
pub fn parse_evidence(req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<TpmEvidence> {
    let r = serde_json::from_slice::<Value>(req.evidence).map_err(|e| format!("not JSON: {e}")).and_then(|v| TpmEvidence::from_json(&v));
    checks.record("Evidence format", r, "TPM evidence JSON")
}

/// What [`verify_quote`] established.
#[derive(Debug, Clone)]
pub struct VerifiedQuote {
    /// The parsed quote.
    pub attest: Attest,
    /// The hash of the signature and of `pcrDigest`.
    pub hash: HashAlg,
    /// The supplied PCR values the quote covers (and only those).
    pub pcrs: PcrBanks,
}

/// The quote core as named checks: `"Quote structure"`, `"Quote signature
/// format"`, `"TPM quote signature"`, `"PCR digest"`, and `"Quote nonce"`
/// when a nonce is expected. `ak` must already be trusted by the caller's
/// own check (certificate, NSM document, activation, HCL report).
pub fn verify_quote(
    quote_bytes: &[u8],
    signature: &[u8],
    ak: &AkPublic,
    pcrs: &PcrBanks,
    expected_nonce: Option<&[u8]>,
    checks: &mut Checks,
) -> VResult<VerifiedQuote> {
    let attest = checks.record("Quote structure", quote::parse_attest(quote_bytes), "TPMS_ATTEST quote")?;
    let sig = checks.record("Quote signature format", quote::parse_signature(signature), "signature parsed")?;
    let hash = checks.record(
        "TPM quote signature",
        quote::verify_quote_signature(quote_bytes, &sig, ak),
        format!("{:?} signature by the {} AK", sig.scheme(), ak.describe()),
    )?;
    checks.record(
        "PCR digest",
        quote::check_pcr_digest(&attest, pcrs, hash),
        format!("{} over the selected PCRs {}", hash.name(), attest.selection_json()),
    )?;
    if let Some(n) = expected_nonce {
        checks.record("Quote nonce", quote::check_nonce(&attest, n), "extraData equals the expected nonce")?;
    }
    let pcrs = quote::quoted_pcrs(&attest, pcrs);
    Ok(VerifiedQuote { attest, hash, pcrs })
}

/// Parse the AK under the check `"AK public key"`.
pub fn parse_ak(ev: &TpmEvidence, checks: &mut Checks) -> VResult<AkPublic> {
    let r = AkPublic::from_json(&ev.ak_public);
    let detail = r.as_ref().map(|k| k.describe()).unwrap_or_default();
    let ak = checks.record("AK public key", r, detail)?;
    if let Some(ok) = ak.is_restricted_signing() {
        checks.require(
            "AK attributes",
            ok,
            "restricted signing key",
            "the AK is not a restricted signing key, so the TPM would sign forged TPMS_ATTEST data with it",
        )?;
    }
    Ok(ak)
}

/// Replay the evidence's event log, if any, against the quoted PCRs and add
/// it as claim `"event_log"` (checks from [`eventlog::verify_event_log`]).
pub fn add_event_log(ev: &TpmEvidence, q: &VerifiedQuote, claims: &mut serde_json::Map<String, Value>, checks: &mut Checks) -> VResult<()> {
    if let Some(log) = &ev.event_log {
        let v = eventlog::verify_event_log(log, &q.pcrs, checks)?;
        claims.insert("event_log".into(), v);
    }
    Ok(())
}

/// Claims common to every quote-based family.
pub fn quote_claims(tee: Tee, q: &VerifiedQuote, ak: &AkPublic) -> serde_json::Map<String, Value> {
    let a = &q.attest;
    let mut m = serde_json::Map::new();
    m.insert("tee".into(), json!(tee.as_str()));
    m.insert("extra_data".into(), json!(hex::encode(&a.extra_data)));
    m.insert("qualified_signer".into(), json!(hex::encode(&a.qualified_signer)));
    m.insert("clock".into(), json!(a.clock_info.clock));
    m.insert("reset_count".into(), json!(a.clock_info.reset_count));
    m.insert("restart_count".into(), json!(a.clock_info.restart_count));
    m.insert("clock_safe".into(), json!(a.clock_info.safe));
    m.insert("firmware_version".into(), json!(format!("{:016x}", a.firmware_version)));
    m.insert("pcr_selection".into(), a.selection_json());
    m.insert("pcr_digest".into(), json!(hex::encode(&a.pcr_digest)));
    m.insert("pcr_digest_alg".into(), json!(q.hash.name()));
    m.insert("pcrs".into(), quote::pcr_banks_json(&q.pcrs));
    m.insert("ak_type".into(), json!(ak.describe()));
    m.insert("ak_public".into(), json!(ak.to_hex()));
    m.insert("ak_name".into(), json!(ak.name().map(hex::encode)));
    m
}

/// Certificates among the endorsements (PEM or DER files).
fn endorsement_certs(req: &VerifyRequest<'_>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for e in req.endorsements {
        let pem = x509::certs_from_pem(&e.bytes);
        if pem.is_empty() {
            if x509::is_der_cert(&e.bytes) {
                out.push(e.bytes.clone());
            }
        } else {
            out.extend(pem);
        }
    }
    out
}

/// Verify a TPM quote whose AK is certified by a chain to the Google Cloud
/// EK/AK CA root (GCP vTPM): checks `"AK certificate chain"` (+ validity),
/// `"AK binding"` (the leaf certifies this AK) and the quote core.
pub fn verify(req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<Value> {
    let ev = parse_evidence(req, checks)?;
    let ak = parse_ak(&ev, checks)?;
    let pool_extra = endorsement_certs(req);
    // The leaf: the first certificate of the chain in the evidence, else an
    // endorsement certificate for this AK.
    let leaf = match ev.ak_cert_chain.first() {
        Some(l) => l.clone(),
        None => match pool_extra.iter().find(|d| x509::parse_cert(d).map(|c| ak.matches_spki(c.public_key())).unwrap_or(false)) {
            Some(l) => l.clone(),
            None => return Err(checks.fail("AK certificate chain", "no AK certificate in the evidence or endorsements")),
        },
    };
    let mut pool: Vec<Vec<u8>> = ev.ak_cert_chain.iter().skip(1).cloned().collect();
    pool.extend(pool_extra);
    let roots: Vec<&crate::anchors::Anchor> = req.anchors.of_kind(AnchorKind::GoogleEkAkRoot).collect();
    let chain = crate::cache::verify_chain("AK certificate chain", &leaf, &pool, roots.iter().copied(), req.at, checks)?;
    let leaf_cert = x509::parse_cert(chain.leaf()).map_err(|e| checks.fail("AK binding", e))?;
    checks.require(
        "AK binding",
        ak.matches_spki(leaf_cert.public_key()),
        format!("AK certificate '{}' certifies the quoting AK", leaf_cert.subject()),
        format!("the key of AK certificate '{}' is not the key that signed the quote", leaf_cert.subject()),
    )?;
    let q = verify_quote(&ev.quote, &ev.signature, &ak, &ev.pcrs, req.expected_nonce, checks)?;
    let mut m = quote_claims(Tee::Tpm, &q, &ak);
    add_event_log(&ev, &q, &mut m, checks)?;
    m.insert("ak_trust".into(), json!("certificate"));
    m.insert(
        "ak_certificate".into(),
        json!({
            "subject": leaf_cert.subject().to_string(),
            "issuer": leaf_cert.issuer().to_string(),
            "serial": leaf_cert.raw_serial_as_string().replace(':', ""),
            "sha256": x509::sha256_hex(chain.leaf()),
            "root_sha256": chain.anchor_fingerprint,
        }),
    );
    Ok(Value::Object(m))
}

/// Verify an AWS NitroTPM quote: the NSM document (checked as Nitro evidence,
/// to the AWS Nitro root) must come from a NitroTPM (`nitrotpm_pcrs`), name
/// the AK as its `public_key` (`"AK binding"`), and its PCRs must equal the
/// quoted ones (`"NitroTPM PCRs"`). An expected nonce must be both the
/// quote's extraData (`"Quote nonce"`) and the document's `nonce`
/// (`"NSM document nonce"`).
///
/// Claims are what the NSM document signs: `pcrs` (only its `sha384`
/// bank), `nonce`, `module_id`, `nsm_*`, the AK it names (`ak_*`) and an
/// `event_log` replayed against those PCRs. Quoted banks the document does
/// not carry and the `TPMS_ATTEST` metadata are not claims.
pub fn verify_nitro_tpm(req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<Value> {
    let ev = parse_evidence(req, checks)?;
    let doc_bytes = match &ev.nitro_document {
        Some(d) => d.clone(),
        None => return Err(checks.fail("Evidence format", "no NitroTPM NSM document ('nitro_document') in the evidence")),
    };
    let doc = crate::nitro::verify_document(&doc_bytes, req.anchors, req.at, checks)?;
    let ak = parse_ak(&ev, checks)?;
    let bound = match &doc.public_key {
        Some(pk) => AkPublic::parse(pk).map(|k| k.same_key(&ak)).unwrap_or(false),
        None => false,
    };
    checks.require(
        "AK binding",
        bound,
        "the NSM document's public_key is the quoting AK",
        "the NSM document's public_key is absent or is not the key that signed the quote",
    )?;
    let q = verify_quote(&ev.quote, &ev.signature, &ak, &ev.pcrs, req.expected_nonce, checks)?;
    if let Some(want) = req.expected_nonce {
        // The AK in an NSM document is whatever key the requester named, so
        // freshness is asked of the AWS-signed document too, not only of the
        // quote that key signed.
        checks.require(
            "NSM document nonce",
            doc.nonce.as_deref() == Some(want),
            "the NSM document carries the expected nonce",
            format!(
                "NSM document nonce {} is not the expected {}",
                doc.nonce.as_ref().map(hex::encode).unwrap_or_else(|| "(absent)".into()),
                hex::encode(want)
            ),
        )?;
    }
    checks.record("NitroTPM PCRs", nitro_pcrs_match(&doc, &q.pcrs), format!("{} NSM PCRs equal the quoted values", doc.pcrs.len()))?;
    // The AK is whatever key the requester named to the NSM (root on the
    // instance can bind a software key and sign any TPMS_ATTEST), so only
    // what AWS signed is a claim: the NSM document's PCRs (its SHA-384
    // bank) and fields, and the AK it names. Other quoted banks and the
    // quote's metadata (clock, reset count, firmware version, qualified
    // signer, extraData) are the attester's word and are not reported.
    let signed = nsm_pcr_banks(&doc);
    let mut m = serde_json::Map::new();
    m.insert("tee".into(), json!(Tee::NitroTpm.as_str()));
    m.insert("pcrs".into(), quote::pcr_banks_json(&signed));
    m.insert("ak_type".into(), json!(ak.describe()));
    m.insert("ak_public".into(), json!(ak.to_hex()));
    m.insert("ak_name".into(), json!(ak.name().map(hex::encode)));
    if let Some(log) = &ev.event_log {
        // Replayed against the signed PCRs only.
        let v = eventlog::verify_event_log(log, &signed, checks)?;
        m.insert("event_log".into(), v);
    }
    m.insert("ak_trust".into(), json!("nitro-nsm"));
    m.insert("nonce".into(), json!(doc.nonce.as_ref().map(hex::encode)));
    m.insert("module_id".into(), json!(doc.module_id));
    m.insert("nsm_timestamp".into(), json!(crate::nitro::fmt_ms(doc.timestamp_ms)));
    m.insert("nsm_timestamp_ms".into(), json!(doc.timestamp_ms));
    m.insert("nsm_nonce".into(), json!(doc.nonce.as_ref().map(hex::encode)));
    m.insert("nsm_user_data".into(), json!(doc.user_data.as_ref().map(hex::encode)));
    Ok(Value::Object(m))
}

/// The NSM document's PCRs as banks (by digest size: NitroTPM documents
/// carry SHA-384), the only PCR values of a NitroTPM quote AWS vouches for.
fn nsm_pcr_banks(doc: &crate::nitro::NitroDocument) -> PcrBanks {
    let mut out = PcrBanks::new();
    for (i, v) in &doc.pcrs {
        if let Some(bank) = HashAlg::ALL.into_iter().find(|h| h.len() == v.len()) {
            out.entry(bank).or_default().insert(*i, v.clone());
        }
    }
    out
}

/// Every PCR of a NitroTPM NSM document must be quoted, in the bank of its
/// size, with the same value.
fn nitro_pcrs_match(doc: &crate::nitro::NitroDocument, quoted: &PcrBanks) -> Result<(), String> {
    if !doc.nitrotpm {
        return Err("the NSM document carries enclave 'pcrs', not 'nitrotpm_pcrs': it is not from a NitroTPM".into());
    }
    for (i, v) in &doc.pcrs {
        let bank = HashAlg::ALL.into_iter().find(|h| h.len() == v.len()).ok_or_else(|| format!("NSM PCR {i} has {} bytes", v.len()))?;
        match quoted.get(&bank).and_then(|b| b.get(i)) {
            Some(q) if q == v => {}
            Some(q) => {
                return Err(format!(
                    "PCR {}:{i} is {} in the quote but {} in the NSM document",
                    bank.name(),
                    hex::encode(q),
                    hex::encode(v)
                ))
            }
            None => return Err(format!("NSM PCR {}:{i} is not covered by the quote", bank.name())),
        }
    }
    Ok(())
}

/// Recognise TPM evidence JSON (either form): `nitro-tpm` when it carries an
/// NSM document, else `tpm`.
pub fn detect(v: &Value) -> Option<Tee> {
    if v.get("quote").is_some() && v.get("signature").is_some() && v.get("pcrs").is_some() {
        return Some(if v.get("nitro_document").is_some() { Tee::NitroTpm } else { Tee::Tpm });
    }
    let att = v.get("attestation")?;
    att.get("tpm")?;
    if att.get("nitro").is_some() {
        Some(Tee::NitroTpm)
    } else {
        Some(Tee::Tpm)
    }
}

pub mod activation;
pub mod eventlog;
