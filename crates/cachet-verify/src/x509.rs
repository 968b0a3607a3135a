//! X.509 certificates, chains and CRLs, as every TEE family needs them.
//!
//! Parsing is done by `x509-parser` (lenient enough for real vendor
//! certificates, e.g. AMD VCEKs with serial number 0); every signature is
//! checked with `aws-lc-rs` (the fastest verifier measured on this machine,
//! see docs). Chain building trusts nothing that arrives with the evidence:
//! the walk must end at a [`TrustAnchors`](crate::anchors::TrustAnchors)
//! entry of the expected kind.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::oid::Oid;
use x509_parser::extensions::{ParsedExtension, X509Extension};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::signature_algorithm::SignatureAlgorithm;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use crate::anchors::Anchor;
use crate::check::{Checks, VResult};
use crate::UnixTime;

/// Largest certificate or CRL accepted (DER bytes); real ones are < 64 KiB.
pub const MAX_DER_LEN: usize = 1 << 20;
/// Longest chain walked before giving up.
pub const MAX_CHAIN_DEPTH: usize = 8;

/// Hex SHA-256 of some bytes (certificate fingerprints, content keys).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// Every `CERTIFICATE` block in PEM text, as DER, in order.
/// Text that is not PEM yields an empty list.
pub fn certs_from_pem(text: &[u8]) -> Vec<Vec<u8>> {
    pem_blocks(text, "CERTIFICATE")
}

/// Every PEM block with the given label (e.g. `"X509 CRL"`), as DER.
pub fn pem_blocks(text: &[u8], label: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(text) {
        match pem {
            Ok(p) if p.label == label && p.contents.len() <= MAX_DER_LEN => out.push(p.contents),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    out
}

/// One certificate given as PEM or DER, returned as DER.
pub fn der_from_pem_or_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if let Some(first) = certs_from_pem(bytes).into_iter().next() {
        return Ok(first);
    }
    parse_cert(bytes).map(|_| bytes.to_vec())
}

/// Whether some bytes look like a single DER certificate.
pub fn is_der_cert(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x30) && parse_cert(bytes).is_ok()
}

/// Parse one DER certificate; trailing bytes are refused, and so is any
/// change outside the signed part (see [`check_signed_envelope`]).
pub fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    if der.len() > MAX_DER_LEN {
        return Err("certificate larger than 1 MiB".into());
    }
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => {
            check_signed_envelope(der)?;
            Ok(cert)
        }
        Ok(_) => Err("trailing bytes after certificate".into()),
        Err(e) => Err(format!("not a valid X.509 certificate: {e}")),
    }
}

/// Parse one DER CRL; trailing bytes are refused, and so is any change
/// outside the signed part (see [`check_signed_envelope`]).
pub fn parse_crl(der: &[u8]) -> Result<CertificateRevocationList<'_>, String> {
    if der.len() > MAX_DER_LEN {
        return Err("CRL larger than 1 MiB".into());
    }
    match CertificateRevocationList::from_der(der) {
        Ok(([], crl)) => {
            check_signed_envelope(der)?;
            Ok(crl)
        }
        Ok(_) => Err("trailing bytes after CRL".into()),
        Err(e) => Err(format!("not a valid X.509 CRL: {e}")),
    }
}

/// `(tag, header length, content length)` of a DER element with a
/// definite, minimally encoded length.
fn der_header(b: &[u8]) -> Result<(u8, usize, usize), String> {
    let bad = || "not DER: malformed length".to_string();
    let tag = *b.first().ok_or_else(bad)?;
    let l0 = *b.get(1).ok_or_else(bad)?;
    if l0 < 0x80 {
        return Ok((tag, 2, usize::from(l0)));
    }
    let n = usize::from(l0 & 0x7f);
    if n == 0 || n > 4 || b.get(2) == Some(&0) {
        return Err(bad());
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | usize::from(*b.get(2 + i).ok_or_else(bad)?);
    }
    if len < 0x80 {
        return Err(bad());
    }
    Ok((tag, 2 + n, len))
}

/// The bytes of a certificate or CRL that its signature does not cover
/// must still be the one valid encoding: `SEQUENCE { SEQUENCE tbs,
/// SEQUENCE signatureAlgorithm, BIT STRING signature }` with universal
/// tags, minimal lengths, nothing after, no unused bits in the signature,
/// and a `signatureAlgorithm` byte for byte equal to the one inside the
/// signed part (RFC 5280 §4.1.1.2, §5.1.1.2). The parser alone is lenient
/// there (it accepted a BIT STRING tagged `[APPLICATION 3]`, an algorithm
/// OID tagged as an OCTET STRING, other PSS parameters outside the signed
/// part), which let one signed certificate be re-encoded into many byte
/// strings with different fingerprints. With this check a certificate or
/// CRL that verifies has exactly one encoding.
pub fn check_signed_envelope(der: &[u8]) -> Result<(), String> {
    let (tag, h, len) = der_header(der)?;
    if tag != 0x30 || h.checked_add(len) != Some(der.len()) {
        return Err("not DER: outer SEQUENCE".into());
    }
    let mut at = h;
    let mut parts: Vec<&[u8]> = Vec::new();
    for want in [0x30u8, 0x30, 0x03] {
        let (t, hh, l) = der_header(der.get(at..).unwrap_or_default())?;
        if t != want {
            return Err(format!("not DER: tag {t:#04x} where {want:#04x} belongs"));
        }
        if want == 0x03 && der.get(at + hh) != Some(&0) {
            return Err("not DER: signature BIT STRING has unused bits".into());
        }
        let end = at.checked_add(hh + l).ok_or("not DER: length overflow")?;
        parts.push(der.get(at..end).ok_or("not DER: truncated")?);
        at = end;
    }
    if at != der.len() {
        return Err("not DER: outer SEQUENCE length".into());
    }
    let (Some(tbs), Some(outer_alg)) = (parts.first(), parts.get(1)) else {
        return Err("not DER: missing parts".into());
    };
    // Inside tbs: [0] version (certificates) and/or INTEGER (serial number,
    // or a CRL's version), then the signed AlgorithmIdentifier.
    let (_, th, _) = der_header(tbs)?;
    let mut i = th;
    for optional in [0xa0u8, 0x02] {
        let rest = tbs.get(i..).unwrap_or_default();
        if rest.first() == Some(&optional) {
            let (_, hh, l) = der_header(rest)?;
            i += hh + l;
        }
    }
    let rest = tbs.get(i..).unwrap_or_default();
    let (_, hh, l) = der_header(rest)?;
    let inner_alg = rest.get(..hh + l).ok_or("not DER: truncated tbs")?;
    if inner_alg != *outer_alg {
        return Err("signatureAlgorithm differs from the signed one (RFC 5280 4.1.1.2)".into());
    }
    Ok(())
}

/// The subject of a certificate, for messages.
pub fn subject_of(der: &[u8]) -> String {
    parse_cert(der).map(|c| c.subject().to_string()).unwrap_or_else(|_| "<unparsable certificate>".into())
}

/// The certificate's validity window as Unix seconds `(not_before, not_after)`.
pub fn validity_window(cert: &X509Certificate<'_>) -> (UnixTime, UnixTime) {
    let v = cert.validity();
    (v.not_before.timestamp(), v.not_after.timestamp())
}

/// Check a certificate is valid at `at` (both bounds inclusive, per RFC 5280).
pub fn check_validity(cert: &X509Certificate<'_>, at: UnixTime) -> Result<(), String> {
    let (nb, na) = validity_window(cert);
    check_window(&format!("certificate '{}'", cert.subject()), ("notBefore", nb), ("notAfter", na), at)
}

/// What to do about endorsements out of their validity window (collateral,
/// CRLs, endorsement certificates), appended to those failures.
pub const REFRESH_ENDORSEMENTS: &str = "get current endorsements: `cachet verify` fetches what -e does not give \
     (unless --offline), `cachet endorsements fetch` writes a bundle for `cachet endorsements import`, and \
     `cachet serve` refreshes its own";

/// The one rule for validity windows (certificates, TCB Info, QE Identity,
/// CRLs): `start <= at <= end`, both inclusive. `start` and `end` are the
/// bounds with their field names (e.g. `("nextUpdate", t)`). A failure says
/// which bound was crossed, when that was, and the verification instant.
pub fn check_window(what: &str, start: (&str, UnixTime), end: (&str, UnixTime), at: UnixTime) -> Result<(), String> {
    if at < start.1 {
        return Err(format!(
            "{what} is not yet valid: its {} is {}, after the verification instant {}",
            start.0,
            fmt_time(start.1),
            fmt_time(at)
        ));
    }
    if at > end.1 {
        return Err(format!("{what} expired at {} (its {}), before the verification instant {}", fmt_time(end.1), end.0, fmt_time(at)));
    }
    Ok(())
}

/// A CRL is current at `at` (`thisUpdate <= at <= nextUpdate`); a stale
/// one says so with both instants and what to do.
pub fn check_crl_window(this_update: UnixTime, next_update: UnixTime, at: UnixTime) -> Result<(), String> {
    check_window("the CRL", ("thisUpdate", this_update), ("nextUpdate", next_update), at)
        .map_err(|e| format!("{e}; {REFRESH_ENDORSEMENTS}"))
}

/// The message of a chain whose certificates are not all valid at the
/// verification instant: each problem, then what to do.
pub fn stale_chain_message(problems: &[String]) -> String {
    format!(
        "{}; a certificate that came with the endorsements (VCEK, PCK, RIM signer) is renewed when you {REFRESH_ENDORSEMENTS}; \
         one inside the evidence means collecting the evidence again",
        problems.join("; ")
    )
}

/// RFC 3339 rendering of Unix seconds (UTC), for messages and claims.
pub fn fmt_time(t: UnixTime) -> String {
    match x509_parser::time::ASN1Time::from_timestamp(t) {
        Ok(a) => a.to_datetime().format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string()),
        Err(_) => t.to_string(),
    }
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
const OID_SHA512: &str = "2.16.840.1.101.3.4.2.3";

/// Elliptic curve of an EC public key, if it is one.
pub fn ec_curve(spki: &SubjectPublicKeyInfo<'_>) -> Option<&'static str> {
    if spki.algorithm.algorithm.to_id_string() != OID_EC_PUBLIC_KEY {
        return None;
    }
    let params = spki.algorithm.parameters.as_ref()?;
    let oid: Oid = params.as_oid().ok()?;
    match oid.to_id_string().as_str() {
        OID_P256 => Some("P-256"),
        OID_P384 => Some("P-384"),
        _ => None,
    }
}

/// Verify `sig` over `msg` with the public key `spki`, using the X.509
/// signature algorithm `alg` (ECDSA with SHA-256/384 on P-256/P-384,
/// RSA PKCS#1 v1.5 and RSASSA-PSS with SHA-256/384/512). Each call is
/// charged to the request's [`crate::budget`] when one is in scope.
pub fn verify_signature(spki: &SubjectPublicKeyInfo<'_>, alg: &AlgorithmIdentifier<'_>, msg: &[u8], sig: &[u8]) -> Result<(), String> {
    crate::budget::spend()?;
    let key = spki.subject_public_key.data.as_ref();
    let key_alg = spki.algorithm.algorithm.to_id_string();
    let sig_alg = SignatureAlgorithm::try_from(alg).map_err(|e| format!("unsupported signature algorithm: {e}"))?;
    let v: &'static dyn VerificationAlgorithm = match sig_alg {
        SignatureAlgorithm::ECDSA => {
            let hash = alg.algorithm.to_id_string();
            match (ec_curve(spki), hash.as_str()) {
                (Some("P-256"), "1.2.840.10045.4.3.2") => &signature::ECDSA_P256_SHA256_ASN1,
                (Some("P-256"), "1.2.840.10045.4.3.3") => &signature::ECDSA_P256_SHA384_ASN1,
                (Some("P-384"), "1.2.840.10045.4.3.2") => &signature::ECDSA_P384_SHA256_ASN1,
                (Some("P-384"), "1.2.840.10045.4.3.3") => &signature::ECDSA_P384_SHA384_ASN1,
                (c, h) => return Err(format!("unsupported ECDSA curve/hash {c:?}/{h}")),
            }
        }
        SignatureAlgorithm::RSA if key_alg == OID_RSA => match alg.algorithm.to_id_string().as_str() {
            "1.2.840.113549.1.1.11" => &signature::RSA_PKCS1_2048_8192_SHA256,
            "1.2.840.113549.1.1.12" => &signature::RSA_PKCS1_2048_8192_SHA384,
            "1.2.840.113549.1.1.13" => &signature::RSA_PKCS1_2048_8192_SHA512,
            other => return Err(format!("unsupported RSA signature algorithm {other}")),
        },
        SignatureAlgorithm::RSASSA_PSS(params) if key_alg == OID_RSA => match params.hash_algorithm_oid().to_id_string().as_str() {
            OID_SHA256 => &signature::RSA_PSS_2048_8192_SHA256,
            OID_SHA384 => &signature::RSA_PSS_2048_8192_SHA384,
            OID_SHA512 => &signature::RSA_PSS_2048_8192_SHA512,
            other => return Err(format!("unsupported RSASSA-PSS hash {other}")),
        },
        _ => return Err(format!("unsupported signature algorithm {}", alg.algorithm.to_id_string())),
    };
    UnparsedPublicKey::new(v, key).verify(msg, sig).map_err(|_| "signature does not verify".to_string())
}

/// Whether `issuer` signed the certificate `child`.
pub fn cert_signed_by(child: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Result<(), String> {
    verify_signature(issuer.public_key(), &child.signature_algorithm, child.tbs_certificate.as_ref(), child.signature_value.data.as_ref())
}

/// A verified certificate path, leaf first, ending at a trust anchor.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    /// DER of each certificate, leaf first; the last one is the anchor.
    pub certs: Vec<Vec<u8>>,
    /// Fingerprint of the anchor reached.
    pub anchor_fingerprint: String,
}

impl VerifiedChain {
    /// The leaf certificate's DER.
    pub fn leaf(&self) -> &[u8] {
        &self.certs[0]
    }
}

/// Build and verify the path from `leaf` to one of `anchors`, using the
/// certificates in `pool` as candidate intermediates.
///
/// Records two checks: `"{name}"` (signatures, CA constraints, a trusted
/// root) and `"{name} validity"` (every certificate valid at `at`).
/// The pool may contain the root itself and unrelated certificates; a chain
/// that ends at any root other than an anchor is refused by name.
pub fn verify_chain<'a>(
    name: &str,
    leaf: &[u8],
    pool: &[Vec<u8>],
    anchors: impl Iterator<Item = &'a Anchor> + Clone,
    at: UnixTime,
    checks: &mut Checks,
) -> VResult<VerifiedChain> {
    match build_path(leaf, pool, anchors).and_then(|chain| check_path_rules(&chain.certs).map(|()| chain)) {
        Ok(chain) => {
            let n = chain.certs.len();
            checks.pass(name, format!("{n} certificates to trusted root {}", &chain.anchor_fingerprint));
            let mut problems = Vec::new();
            for der in &chain.certs {
                if let Ok(c) = parse_cert(der) {
                    if let Err(e) = check_validity(&c, at) {
                        problems.push(e);
                    }
                }
            }
            let validity = format!("{name} validity");
            if problems.is_empty() {
                checks.pass(&validity, format!("all {n} certificates valid at {}", fmt_time(at)));
                Ok(chain)
            } else {
                Err(checks.fail(&validity, stale_chain_message(&problems)))
            }
        }
        Err(e) => Err(checks.fail(name, e)),
    }
}

fn build_path<'a>(leaf: &[u8], pool: &[Vec<u8>], anchors: impl Iterator<Item = &'a Anchor> + Clone) -> Result<VerifiedChain, String> {
    let mut path: Vec<Vec<u8>> = vec![leaf.to_vec()];
    let leaf_cert = parse_cert(leaf).map_err(|e| format!("leaf: {e}"))?;
    let mut current = leaf_cert;
    for _ in 0..MAX_CHAIN_DEPTH {
        let cur_der = path.last().cloned().unwrap_or_default();
        // Reached an anchor itself?
        if let Some(a) = anchors.clone().find(|a| a.der == cur_der) {
            return Ok(VerifiedChain { certs: path, anchor_fingerprint: a.fingerprint.clone() });
        }
        // Issued directly by an anchor?
        for a in anchors.clone() {
            let Ok(root) = parse_cert(&a.der) else { continue };
            if root.subject() == current.issuer() && cert_signed_by(&current, &root).is_ok() {
                path.push(a.der.clone());
                return Ok(VerifiedChain { certs: path, anchor_fingerprint: a.fingerprint.clone() });
            }
        }
        // Otherwise climb through the pool.
        let mut next: Option<Vec<u8>> = None;
        let mut bad_sig = None;
        for cand in pool {
            if *cand == cur_der || path.contains(cand) {
                continue;
            }
            let Ok(c) = parse_cert(cand) else { continue };
            if c.subject() != current.issuer() {
                continue;
            }
            match cert_signed_by(&current, &c) {
                Ok(()) => {
                    if !is_ca(&c) {
                        return Err(format!("'{}' signs certificates but is not a CA", c.subject()));
                    }
                    next = Some(cand.clone());
                    break;
                }
                Err(e) => bad_sig = Some(format!("signature of '{}' by '{}': {e}", current.subject(), c.subject())),
            }
        }
        match next {
            Some(der) => {
                path.push(der);
                let last = path.last().map(|d| d.as_slice()).unwrap_or_default();
                current = parse_cert(last).map_err(|e| format!("intermediate: {e}"))?;
            }
            None => {
                if let Some(e) = bad_sig {
                    return Err(e);
                }
                if current.subject() == current.issuer() && cert_signed_by(&current, &current).is_ok() {
                    return Err(format!(
                        "chain ends at self-signed root '{}' (sha256 {}) which is not a trusted anchor",
                        current.subject(),
                        sha256_hex(&cur_der)
                    ));
                }
                return Err(format!("no issuer found for '{}' (issuer '{}')", current.subject(), current.issuer()));
            }
        }
    }
    Err("certificate chain too long".into())
}

/// Whether a certificate may act as a CA (basicConstraints cA=TRUE).
pub fn is_ca(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

/// Certificate extensions whose meaning this verifier honours when they are
/// marked critical (RFC 5280 §4.2: a critical extension that is not
/// understood makes the certificate unusable). basicConstraints and
/// keyUsage are enforced by [`check_path_rules`]; subjectAltName (critical
/// on TPM EK certificates with an empty subject) names nothing this
/// verifier matches; extKeyUsage and certificatePolicies are accepted as
/// any purpose / any policy (RFC 5280 §6.1.1 with `anyPolicy`). Name and
/// policy constraints are not processed, so a critical one refuses the path.
const UNDERSTOOD_CRITICAL: &[&str] = &["2.5.29.19", "2.5.29.15", "2.5.29.17", "2.5.29.37", "2.5.29.32"];

/// The RFC 5280 §6.1 rules on a built path (leaf first, anchor last) that
/// signatures alone do not give: no certificate carries a critical
/// extension outside [`UNDERSTOOD_CRITICAL`] (or one that does not parse);
/// every issuer whose keyUsage is present has `keyCertSign` (§4.2.1.3:
/// absent keyUsage permits every use); and no issuer's pathLenConstraint is
/// exceeded by the non-self-issued intermediates below it (§4.2.1.9). The
/// anchor's own constraints are honoured too (RFC 5937): vendors' roots
/// state them on purpose. cA=TRUE on intermediates is checked while the
/// path is built.
pub fn check_path_rules(certs: &[Vec<u8>]) -> Result<(), String> {
    let parsed = certs.iter().map(|d| parse_cert(d)).collect::<Result<Vec<_>, _>>()?;
    for c in &parsed {
        check_critical_extensions(c.extensions(), UNDERSTOOD_CRITICAL)
            .map_err(|e| format!("'{}' carries {e} (RFC 5280 4.2)", c.subject()))?;
    }
    for (i, issuer) in parsed.iter().enumerate().skip(1) {
        match issuer.key_usage() {
            Ok(Some(ku)) if !ku.value.key_cert_sign() => {
                return Err(format!(
                    "'{}' signs certificates but its keyUsage does not include keyCertSign (RFC 5280 4.2.1.3)",
                    issuer.subject()
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("'{}': unusable keyUsage extension: {e}", issuer.subject())),
        }
        let max = match issuer.basic_constraints() {
            Ok(Some(bc)) => bc.value.path_len_constraint,
            Ok(None) => None,
            Err(e) => return Err(format!("'{}': unusable basicConstraints extension: {e}", issuer.subject())),
        };
        if let Some(max) = max {
            let below = parsed.get(1..i).unwrap_or_default().iter().filter(|c| c.subject() != c.issuer()).count();
            if u64::try_from(below).unwrap_or(u64::MAX) > u64::from(max) {
                return Err(format!(
                    "'{}' has pathLenConstraint {max} but {below} intermediate CA certificates follow it (RFC 5280 4.2.1.9)",
                    issuer.subject()
                ));
            }
        }
    }
    Ok(())
}

/// Refuse a critical extension whose OID is not in `understood`, and a
/// critical one that does not parse.
fn check_critical_extensions(exts: &[X509Extension<'_>], understood: &[&str]) -> Result<(), String> {
    for e in exts.iter().filter(|e| e.critical) {
        let oid = e.oid.to_id_string();
        if !understood.contains(&oid.as_str()) {
            return Err(format!("a critical extension {oid} that this verifier does not process"));
        }
        if let ParsedExtension::ParseError { error } = e.parsed_extension() {
            return Err(format!("a critical extension {oid} that does not parse: {error}"));
        }
    }
    Ok(())
}

/// CRL extensions honoured when critical: none needs processing beyond
/// reading (cRLNumber, authorityKeyIdentifier). A critical
/// issuingDistributionPoint or deltaCRLIndicator narrows what the CRL
/// covers, so such a CRL is refused rather than misread as complete
/// (RFC 5280 §5.2).
const UNDERSTOOD_CRITICAL_CRL: &[&str] = &["2.5.29.20", "2.5.29.35"];
/// CRL entry extensions honoured when critical: reasonCode and
/// invalidityDate (either way the serial is revoked). certificateIssuer
/// (indirect CRLs) is not processed (RFC 5280 §5.3).
const UNDERSTOOD_CRITICAL_CRL_ENTRY: &[&str] = &["2.5.29.21", "2.5.29.24"];

/// A CRL whose signature and freshness were checked.
#[derive(Debug, Clone)]
pub struct VerifiedCrl {
    /// Raw serial numbers (big-endian, minimal) of revoked certificates.
    pub revoked: Vec<Vec<u8>>,
    /// thisUpdate, Unix seconds.
    pub this_update: UnixTime,
    /// nextUpdate, Unix seconds (a CRL without one is refused: it would
    /// count as current forever).
    pub next_update: UnixTime,
}

impl VerifiedCrl {
    /// Whether the certificate with this raw serial is revoked.
    pub fn is_revoked(&self, raw_serial: &[u8]) -> bool {
        let want = strip_leading_zeros(raw_serial);
        self.revoked.iter().any(|s| strip_leading_zeros(s) == want)
    }
}

fn strip_leading_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| **b == 0).count();
    &s[n.min(s.len().saturating_sub(1))..]
}

/// Verify a CRL: signed by `issuer` (whose subject must be the CRL issuer
/// and whose keyUsage, when present, includes cRLSign), no critical
/// extension it does not process, and current at `at` (thisUpdate <= at <=
/// nextUpdate; a CRL without nextUpdate is refused). Records one check
/// named `name`.
pub fn verify_crl(name: &str, crl_der: &[u8], issuer_der: &[u8], at: UnixTime, checks: &mut Checks) -> VResult<VerifiedCrl> {
    let r = (|| {
        let crl = parse_crl(crl_der)?;
        let issuer = parse_cert(issuer_der).map_err(|e| format!("CRL issuer: {e}"))?;
        if crl.issuer() != issuer.subject() {
            return Err(format!("CRL issued by '{}', expected '{}'", crl.issuer(), issuer.subject()));
        }
        match issuer.key_usage() {
            Ok(Some(ku)) if !ku.value.crl_sign() => {
                return Err(format!(
                    "CRL issuer '{}' has a keyUsage without cRLSign: it does not permit signing CRLs (RFC 5280 4.2.1.3)",
                    issuer.subject()
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("CRL issuer '{}': unusable keyUsage extension: {e}", issuer.subject())),
        }
        check_critical_extensions(crl.extensions(), UNDERSTOOD_CRITICAL_CRL).map_err(|e| format!("the CRL carries {e} (RFC 5280 5.2)"))?;
        for entry in crl.iter_revoked_certificates() {
            check_critical_extensions(entry.extensions(), UNDERSTOOD_CRITICAL_CRL_ENTRY)
                .map_err(|e| format!("a CRL entry carries {e} (RFC 5280 5.3)"))?;
        }
        verify_signature(issuer.public_key(), &crl.signature_algorithm, crl.tbs_cert_list.as_ref(), crl.signature_value.data.as_ref())
            .map_err(|e| format!("CRL signature: {e}"))?;
        let this_update = crl.last_update().timestamp();
        let next_update = crl.next_update().map(|t| t.timestamp()).ok_or(
            "the CRL has no nextUpdate, so nothing says when it stops being current; use the issuer's current CRL (it carries a nextUpdate)",
        )?;
        check_crl_window(this_update, next_update, at)?;
        let revoked = crl.iter_revoked_certificates().map(|r| r.raw_serial().to_vec()).collect();
        Ok(VerifiedCrl { revoked, this_update, next_update })
    })();
    match r {
        Ok(v) => {
            checks.pass(name, format!("signed by issuer, current; {} revoked serials", v.revoked.len()));
            Ok(v)
        }
        Err(e) => Err(checks.fail(name, e)),
    }
}
