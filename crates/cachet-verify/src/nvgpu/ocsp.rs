//! Stored OCSP responses: the revocation status of the GPU's device
//! certificates and of the RIM signing certificates, checked offline.
//!
//! NVIDIA publishes revocation only by OCSP (`ocsp.ndis.nvidia.com`). The
//! verifier never goes online, so a caller who wants revocation checked
//! fetches the responses itself and supplies them as endorsements (DER as
//! the service returns them, or base64 / PEM-armoured text of it); they are
//! recognised by content.
//!
//! For every certificate of a verified chain (except the trust anchor) the
//! responses whose `CertID` names it — issuer name hash and issuer key hash
//! computed from the certificate above it in the *verified* chain, serial
//! number — are used, each only after (RFC 6960 §3.2, §4.2.2.2):
//! `responseStatus` successful and a `BasicOCSPResponse`; its signature
//! verified with the issuing CA's key, or with a delegated responder
//! certificate included in the response that the issuing CA signed, that
//! carries `id-kp-OCSPSigning` and is valid at the verification time; and
//! `thisUpdate <= at <= nextUpdate`. A failure there fails `OCSP response`.
//! `revoked` fails the chain's revocation check by name; `good` marks the
//! certificate checked; `unknown` or no response leaves it unchecked, and
//! the claims list every certificate with its status.

use aws_lc_rs::digest;
use der::{Decode, Encode, Header, Reader, SliceReader};
use serde_json::{json, Value};
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspGeneralizedTime, OcspResponse, OcspResponseStatus, SingleResponse};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::AlgorithmIdentifier;

use crate::encoding::decode_base64;
use crate::x509::{self as x, check_validity, fmt_time, parse_cert};
use crate::{Checks, Endorsement, UnixTime, VResult};

/// Largest stored OCSP response accepted (real ones are a few KiB).
pub const MAX_OCSP_LEN: usize = 256 * 1024;
/// Most single responses read from one OCSP response.
pub const MAX_SINGLE_RESPONSES: usize = 64;
/// Most responder certificates looked at in one OCSP response.
pub const MAX_RESPONDER_CERTS: usize = 8;

/// `id-pkix-ocsp-basic`, the only response type RFC 6960 defines.
const OID_OCSP_BASIC: &str = "1.3.6.1.5.5.7.48.1.1";

/// A stored OCSP response, parsed (not yet authenticated).
#[derive(Debug, Clone)]
pub struct StoredResponse {
    /// Where it came from (endorsement name), for messages.
    pub name: String,
    /// The decoded `BasicOCSPResponse`.
    basic: BasicOcspResponse,
    /// The exact DER bytes of `tbsResponseData` (what is signed).
    tbs: Vec<u8>,
}

/// The DER of an `OCSPResponse` when the endorsement is one (DER, or base64 /
/// PEM-armoured text of it); `None` for anything else. Recognition is by
/// content: the bytes must decode as an `OCSPResponse`.
pub fn recognise(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() > MAX_OCSP_LEN {
        return None;
    }
    if bytes.first() == Some(&0x30) {
        return OcspResponse::from_der(bytes).is_ok().then(|| bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let body: String =
        text.lines().filter(|l| !l.trim_start().starts_with("-----")).flat_map(str::chars).filter(|c| !c.is_ascii_whitespace()).collect();
    let der = decode_base64(&body)?;
    (der.first() == Some(&0x30) && OcspResponse::from_der(&der).is_ok()).then_some(der)
}

/// Whether an endorsement is a stored OCSP response.
pub fn is_ocsp(e: &Endorsement) -> bool {
    recognise(&e.bytes).is_some()
}

/// Parse a stored OCSP response: it must be `successful` and carry a
/// `BasicOCSPResponse` whose signed part is kept byte for byte.
pub fn parse(name: &str, bytes: &[u8]) -> Result<StoredResponse, String> {
    let der = recognise(bytes).ok_or_else(|| format!("{name}: not an OCSP response"))?;
    let resp = OcspResponse::from_der(&der).map_err(|e| format!("{name}: not an OCSP response: {e}"))?;
    if resp.response_status != OcspResponseStatus::Successful {
        return Err(format!("{name}: responseStatus is {:?}, not successful", resp.response_status));
    }
    let rb = resp.response_bytes.ok_or_else(|| format!("{name}: successful but without responseBytes"))?;
    if rb.response_type.to_string() != OID_OCSP_BASIC {
        return Err(format!("{name}: response type {} is not id-pkix-ocsp-basic", rb.response_type));
    }
    let inner = rb.response.as_bytes();
    let basic = BasicOcspResponse::from_der(inner).map_err(|e| format!("{name}: malformed BasicOCSPResponse: {e}"))?;
    let tbs = tbs_bytes(inner).map_err(|e| format!("{name}: malformed BasicOCSPResponse: {e}"))?;
    if basic.tbs_response_data.responses.len() > MAX_SINGLE_RESPONSES {
        return Err(format!("{name}: more than {MAX_SINGLE_RESPONSES} single responses"));
    }
    if basic.certs.as_ref().is_some_and(|c| c.len() > MAX_RESPONDER_CERTS) {
        return Err(format!("{name}: more than {MAX_RESPONDER_CERTS} responder certificates"));
    }
    Ok(StoredResponse { name: name.to_string(), basic, tbs })
}

/// The first element (`tbsResponseData`) of a `BasicOCSPResponse`, as encoded.
fn tbs_bytes(basic_der: &[u8]) -> Result<Vec<u8>, String> {
    let mut r = SliceReader::new(basic_der).map_err(|e| e.to_string())?;
    Header::decode(&mut r).map_err(|e| e.to_string())?;
    r.tlv_bytes().map(<[u8]>::to_vec).map_err(|e| e.to_string())
}

/// Every stored OCSP response among the endorsements, parsed; recorded as
/// the `OCSP response` check (format). A response that is not `successful`
/// or is malformed fails it: it was given explicitly.
pub fn from_endorsements(list: &[Endorsement], checks: &mut Checks) -> VResult<Vec<StoredResponse>> {
    let mut out = Vec::new();
    for e in list.iter().filter(|e| is_ocsp(e)) {
        out.push(parse(&e.name, &e.bytes).map_err(|m| checks.fail("OCSP response", m))?);
    }
    if !out.is_empty() {
        let n: usize = out.iter().map(|r| r.basic.tbs_response_data.responses.len()).sum();
        checks.pass("OCSP response", format!("{} stored OCSP response(s), {n} certificate status(es): format", out.len()));
    }
    Ok(out)
}

/// The revocation status of one verified chain.
#[derive(Debug, Clone, Default)]
pub struct ChainRevocation {
    /// One JSON entry per certificate (leaf first, anchor excluded).
    pub entries: Vec<Value>,
    /// Certificates with a verified `good` response.
    pub good: usize,
    /// Certificates looked at.
    pub total: usize,
}

impl ChainRevocation {
    /// Add another chain's statuses.
    pub fn merge(&mut self, other: ChainRevocation) {
        self.entries.extend(other.entries);
        self.good += other.good;
        self.total += other.total;
    }

    /// The `revocation_checked` claim: `true` when every certificate has a
    /// verified `good` response, `false` when none has, else `"partial"`.
    pub fn checked_claim(&self) -> Value {
        summarise(self.good, self.total)
    }
}

/// `true` / `false` / `"partial"` from counts of good and total certificates.
pub fn summarise(good: usize, total: usize) -> Value {
    match good {
        0 => json!(false),
        g if g == total => json!(true),
        _ => json!("partial"),
    }
}

/// Check the revocation status of every certificate of a verified `chain`
/// (leaf first, trust anchor last) against the stored `responses` at `at`.
///
/// Records `check` (e.g. `Device certificate revocation`) when responses
/// were supplied: failed when a certificate is revoked, passed otherwise
/// with the covered/uncovered counts. A matching response that is forged,
/// outside its window or signed by an unauthorised responder fails
/// `OCSP response`.
pub fn check_chain(
    check: &str,
    label: &str,
    chain: &[Vec<u8>],
    responses: &[StoredResponse],
    at: UnixTime,
    checks: &mut Checks,
) -> VResult<ChainRevocation> {
    let mut out = ChainRevocation::default();
    for pair in chain.windows(2) {
        let [cert_der, issuer_der] = pair else { continue };
        let cert = parse_cert(cert_der).map_err(|e| checks.fail(check, e))?;
        let issuer = parse_cert(issuer_der).map_err(|e| checks.fail(check, e))?;
        let serial = hex::encode(cert.raw_serial());
        let mut entry = json!({"chain": label, "subject": cert.subject().to_string(), "serial": serial, "status": "not_covered"});
        let mut good = false;
        for resp in responses {
            for single in &resp.basic.tbs_response_data.responses {
                if !names(single, &cert, &issuer) {
                    continue;
                }
                let signer = authenticate(resp, &issuer, at).map_err(|m| checks.fail("OCSP response", format!("{}: {m}", resp.name)))?;
                let (this, next) = window(single, at).map_err(|m| checks.fail("OCSP response", format!("{}: {m}", resp.name)))?;
                checks.pass(
                    "OCSP response",
                    format!("{}: about '{}' (serial {serial}), signed by {signer}, valid {this} .. {next}", resp.name, cert.subject()),
                );
                match &single.cert_status {
                    CertStatus::Revoked(info) => {
                        let reason = info.revocation_reason.map(|r| format!("{r:?}")).unwrap_or_else(|| "unspecified".into());
                        let when = fmt_time(generalized(&info.revocation_time));
                        return Err(checks.fail(
                            check,
                            format!(
                                "certificate revoked (serial {serial}, reason {reason}, at {when}): '{}' per {}",
                                cert.subject(),
                                resp.name
                            ),
                        ));
                    }
                    CertStatus::Good(_) => {
                        good = true;
                        entry = json!({"chain": label, "subject": cert.subject().to_string(), "serial": serial, "status": "good",
                            "this_update": this, "next_update": next, "signer": signer, "response": resp.name});
                    }
                    CertStatus::Unknown(_) if !good => {
                        entry = json!({"chain": label, "subject": cert.subject().to_string(), "serial": serial, "status": "unknown",
                            "this_update": this, "next_update": next, "signer": signer, "response": resp.name});
                    }
                    CertStatus::Unknown(_) => {}
                }
            }
        }
        out.total += 1;
        out.good += usize::from(good);
        out.entries.push(entry);
    }
    if !responses.is_empty() {
        let uncovered: Vec<String> = out
            .entries
            .iter()
            .filter(|e| e["status"] != "good")
            .map(|e| format!("'{}' ({})", e["subject"].as_str().unwrap_or_default(), e["status"].as_str().unwrap_or_default()))
            .collect();
        let mut d = format!("{label}: {}/{} certificates good by a verified OCSP response", out.good, out.total);
        if !uncovered.is_empty() {
            d.push_str(&format!("; not checked: {}", uncovered.join(", ")));
        }
        checks.pass(check, d);
    }
    Ok(out)
}

/// Whether a single response's CertID names `cert` issued by `issuer`.
fn names(single: &SingleResponse, cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    let id = &single.cert_id;
    let Some(alg) = cert_id_digest(&id.hash_algorithm.oid.to_string()) else { return false };
    let name_hash = digest::digest(alg, issuer.subject().as_raw());
    let key_hash = digest::digest(alg, issuer.public_key().subject_public_key.data.as_ref());
    id.serial_number.as_bytes() == cert.raw_serial()
        && id.issuer_name_hash.as_bytes() == name_hash.as_ref()
        && id.issuer_key_hash.as_bytes() == key_hash.as_ref()
}

/// The CertID hash algorithms responders use (SHA-1 is RFC 6960's default;
/// NVIDIA's verifier asks with SHA-384).
fn cert_id_digest(oid: &str) -> Option<&'static digest::Algorithm> {
    match oid {
        "1.3.14.3.2.26" => Some(&digest::SHA1_FOR_LEGACY_USE_ONLY),
        "2.16.840.1.101.3.4.2.1" => Some(&digest::SHA256),
        "2.16.840.1.101.3.4.2.2" => Some(&digest::SHA384),
        "2.16.840.1.101.3.4.2.3" => Some(&digest::SHA512),
        _ => None,
    }
}

/// Verify the response's signature: by the issuing CA, or by a delegated
/// responder the CA issued for OCSP signing (RFC 6960 §4.2.2.2). Returns
/// who signed, for the check detail.
fn authenticate(resp: &StoredResponse, issuer: &X509Certificate<'_>, at: UnixTime) -> Result<String, String> {
    let alg_der = resp.basic.signature_algorithm.to_der().map_err(|e| e.to_string())?;
    let (_, alg) = AlgorithmIdentifier::from_der(&alg_der).map_err(|e| format!("signature algorithm: {e}"))?;
    let sig = resp.basic.signature.as_bytes().ok_or("signature BIT STRING has unused bits")?;
    if x::verify_signature(issuer.public_key(), &alg, &resp.tbs, sig).is_ok() {
        return Ok(format!("the issuing CA '{}'", issuer.subject()));
    }
    let mut why = Vec::new();
    for c in resp.basic.certs.iter().flatten() {
        let der = c.to_der().map_err(|e| e.to_string())?;
        let responder = parse_cert(&der)?;
        match delegated(&responder, issuer, at).and_then(|()| x::verify_signature(responder.public_key(), &alg, &resp.tbs, sig)) {
            Ok(()) => return Ok(format!("delegated responder '{}'", responder.subject())),
            Err(e) => why.push(format!("'{}': {e}", responder.subject())),
        }
    }
    let mut m = format!(
        "signature verifies neither with the key of the issuing CA '{}' nor with an authorised delegated responder",
        issuer.subject()
    );
    if !why.is_empty() {
        m.push_str(&format!(" ({})", why.join("; ")));
    }
    Err(m)
}

/// A delegated OCSP responder for `issuer`: issued and signed by it, with
/// `id-kp-OCSPSigning`, valid at `at`.
fn delegated(responder: &X509Certificate<'_>, issuer: &X509Certificate<'_>, at: UnixTime) -> Result<(), String> {
    if responder.issuer().as_raw() != issuer.subject().as_raw() || x::cert_signed_by(responder, issuer).is_err() {
        return Err(format!("not issued by '{}'", issuer.subject()));
    }
    let eku = responder.extended_key_usage().map_err(|e| format!("bad extendedKeyUsage: {e}"))?;
    if !eku.is_some_and(|e| e.value.ocsp_signing) {
        return Err("lacks id-kp-OCSPSigning".into());
    }
    check_validity(responder, at)
}

/// Check `thisUpdate <= at <= nextUpdate`; returns both as RFC 3339.
fn window(single: &SingleResponse, at: UnixTime) -> Result<(String, String), String> {
    let this = generalized(&single.this_update);
    let next = single.next_update.as_ref().map(generalized).ok_or("no nextUpdate: the response's freshness is unbounded")?;
    if at < this {
        return Err(format!("thisUpdate {} is after the verification time {}", fmt_time(this), fmt_time(at)));
    }
    if at > next {
        return Err(format!("expired: nextUpdate {} is before the verification time {}", fmt_time(next), fmt_time(at)));
    }
    Ok((fmt_time(this), fmt_time(next)))
}

fn generalized(t: &OcspGeneralizedTime) -> UnixTime {
    UnixTime::try_from(t.0.to_unix_duration().as_secs()).unwrap_or(UnixTime::MAX)
}
