//! DCAP collateral: where the CRLs, TCB Info, QE Identity and TCB signing
//! certificates come from, in the formats they are found in.
//!
//! Two families of inputs are understood, recognised by content (never by
//! file name):
//!
//! * **single-JSON bundles**: one object carrying every piece, e.g. the
//!   `QuoteCollateralV3` of Phala's `dcap-qvl` (`tcb_info` as the signed JSON
//!   text, `tcb_info_signature` as hex, CRLs as hex DER, issuer chains as PEM).
//!   Keys are matched without regard to case or `_` (`tcbInfo`, `tcb_info`),
//!   and values may be strings (JSON text, PEM, hex, base64, URL-encoded PEM),
//!   byte arrays, or embedded Intel PCS responses;
//! * **raw Intel PCS v4 artefacts**: the TCB Info response
//!   `{"tcbInfo":{...},"signature":"..."}`, the QE Identity response
//!   `{"enclaveIdentity":{...},"signature":"..."}`, CRLs in DER, PEM or hex,
//!   and issuer chains / signing certificates in PEM or DER.
//!
//! What is signed is the exact text Intel signed, kept byte for byte
//! ([`SignedJson::body`]); nothing is re-serialised.
//!
//! [`CollateralSource`] is the seam for other sources: verification asks a
//! source for the collateral of one platform ([`CollateralRequest`]), so an
//! online Intel PCS / PCCS client can be added beside [`EndorsementSource`]
//! without touching the verifier.

use serde_json::value::RawValue;
use std::collections::BTreeMap;

use super::quote::QuoteTee;
use crate::encoding::decode_base64;
use crate::x509::{certs_from_pem, is_der_cert, parse_crl, pem_blocks, MAX_DER_LEN};
use crate::Endorsement;

/// Largest endorsement considered (bytes); a real PCK CRL is ~3 KiB, a TCB Info ~10 KiB.
pub const MAX_ENDORSEMENT_LEN: usize = 4 << 20;
/// Most pieces of one kind kept, so hostile input cannot make the verifier do unbounded work.
pub const MAX_PIECES: usize = 64;

/// A TCB Info or QE Identity: the exact signed JSON text and Intel's signature over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedJson {
    /// The signed text (the value of `tcbInfo` / `enclaveIdentity`), byte for byte.
    pub body: String,
    /// The signature: 64 bytes r || s (as Intel publishes it) or DER.
    pub signature: Vec<u8>,
    /// Certificates that came with it (the issuer chain), DER.
    pub issuer_chain: Vec<Vec<u8>>,
    /// Where it came from, for messages.
    pub source: String,
}

/// A CRL as found (DER), with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlBlob {
    /// DER encoding.
    pub der: Vec<u8>,
    /// Where it came from, for messages.
    pub source: String,
}

/// Everything found in the endorsements, not yet verified or selected.
#[derive(Debug, Clone, Default)]
pub struct Collateral {
    /// CRLs (Root CA CRL and PCK CRLs alike: they are told apart by issuer).
    pub crls: Vec<CrlBlob>,
    /// TCB Info structures.
    pub tcb_infos: Vec<SignedJson>,
    /// QE Identity structures.
    pub qe_identities: Vec<SignedJson>,
    /// Every certificate found (issuer chains, signing certificates, PCK chains), DER.
    pub certs: Vec<Vec<u8>>,
    /// Endorsements that are not DCAP collateral (other files in a folder).
    pub ignored: Vec<String>,
    /// Pieces that looked like collateral but could not be read.
    pub problems: Vec<String>,
}

impl Collateral {
    /// Add what `other` holds.
    fn extend(&mut self, other: &Collateral) {
        self.crls.extend(other.crls.iter().cloned());
        self.tcb_infos.extend(other.tcb_infos.iter().cloned());
        self.qe_identities.extend(other.qe_identities.iter().cloned());
        self.certs.extend(other.certs.iter().cloned());
        self.ignored.extend(other.ignored.iter().cloned());
        self.problems.extend(other.problems.iter().cloned());
    }

    /// A one-line inventory for the "Collateral" check.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} CRL(s), {} TCB Info, {} QE Identity, {} certificate(s)",
            self.crls.len(),
            self.tcb_infos.len(),
            self.qe_identities.len(),
            self.certs.len()
        );
        if !self.ignored.is_empty() {
            s.push_str(&format!("; {} other file(s) ignored", self.ignored.len()));
        }
        s
    }

    fn push_cert(&mut self, der: Vec<u8>) {
        if self.certs.len() < MAX_PIECES * 4 && !self.certs.contains(&der) {
            self.certs.push(der);
        }
    }

    fn push_crl(&mut self, der: Vec<u8>, source: &str) {
        if self.crls.len() < MAX_PIECES && !self.crls.iter().any(|c| c.der == der) {
            self.crls.push(CrlBlob { der, source: source.to_string() });
        }
    }

    fn push_signed(&mut self, kind: JsonKind, sj: SignedJson) {
        for c in &sj.issuer_chain {
            self.push_cert(c.clone());
        }
        let list = match kind {
            JsonKind::TcbInfo => &mut self.tcb_infos,
            JsonKind::QeIdentity => &mut self.qe_identities,
        };
        if list.len() < MAX_PIECES && !list.iter().any(|x| x.body == sj.body && x.signature == sj.signature) {
            list.push(sj);
        }
    }
}

/// What verification needs collateral for: one platform of one TEE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollateralRequest {
    /// SGX or TDX (selects the TCB Info and QE Identity flavour).
    pub tee: QuoteTee,
    /// The platform's FMSPC, from the PCK certificate.
    pub fmspc: [u8; 6],
    /// The PCE ID, from the PCK certificate.
    pub pce_id: [u8; 2],
    /// `"platform"` or `"processor"`: which PCK CRL (from the PCK issuer's name).
    pub pck_ca: String,
}

/// A provider of DCAP collateral. The offline one reads the endorsements
/// given with the request; an Intel PCS / PCCS client can implement this
/// trait later and be used unchanged by the verifier.
pub trait CollateralSource {
    /// The collateral available for `req` (possibly more than needed; the
    /// verifier selects and checks every piece itself).
    fn collateral(&self, req: &CollateralRequest) -> Result<Collateral, String>;
}

/// Collateral from the endorsement files passed to the verifier.
#[derive(Debug, Clone, Copy)]
pub struct EndorsementSource<'a> {
    /// The endorsements, as read.
    pub endorsements: &'a [Endorsement],
}

impl CollateralSource for EndorsementSource<'_> {
    fn collateral(&self, _req: &CollateralRequest) -> Result<Collateral, String> {
        Ok(from_endorsements(self.endorsements))
    }
}

/// Read every endorsement into one [`Collateral`].
pub fn from_endorsements(endorsements: &[Endorsement]) -> Collateral {
    let mut c = Collateral::default();
    for e in endorsements {
        // Each file is read (JSON, PEM, DER) once per distinct name and
        // bytes while a verification cache is in scope; what it holds is
        // still verified on every call.
        let read = crate::cache::parsed(&format!("dcap-file:{}", e.name), &e.bytes, || {
            let mut one = Collateral::default();
            add_file(&mut one, &e.name, &e.bytes);
            Ok(one)
        });
        match read {
            Ok(one) => c.extend(&one),
            Err(_) => add_file(&mut c, &e.name, &e.bytes),
        }
    }
    c
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonKind {
    TcbInfo,
    QeIdentity,
}

/// Add one endorsement file, recognised by content.
pub fn add_file(c: &mut Collateral, name: &str, bytes: &[u8]) {
    if bytes.len() > MAX_ENDORSEMENT_LEN {
        c.problems.push(format!("{name}: larger than {MAX_ENDORSEMENT_LEN} bytes"));
        return;
    }
    if bytes.first() == Some(&0x30) && add_der(c, name, bytes) {
        return;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        c.ignored.push(name.to_string());
        return;
    };
    let t = trim_text(text);
    if t.starts_with('{') {
        match add_json(c, name, t) {
            Ok(true) => {}
            Ok(false) => c.ignored.push(name.to_string()),
            Err(e) => c.problems.push(format!("{name}: {e}")),
        }
        return;
    }
    if add_pem(c, name, t) {
        return;
    }
    if let Some(der) = decode_text_der(t) {
        if add_der(c, name, &der) {
            return;
        }
    }
    c.ignored.push(name.to_string());
}

/// Trim whitespace and the NUL terminators C APIs leave on collateral strings.
fn trim_text(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || c == '\0')
}

/// A DER certificate or CRL. Returns whether it was one.
fn add_der(c: &mut Collateral, name: &str, der: &[u8]) -> bool {
    if der.len() > MAX_DER_LEN {
        return false;
    }
    if is_der_cert(der) {
        c.push_cert(der.to_vec());
        true
    } else if parse_crl(der).is_ok() {
        c.push_crl(der.to_vec(), name);
        true
    } else {
        false
    }
}

/// PEM text (possibly URL-encoded, as in PCS `*-Issuer-Chain` headers):
/// certificates and CRLs. Returns whether anything was found.
fn add_pem(c: &mut Collateral, name: &str, text: &str) -> bool {
    let Some(pem) = pem_text(text) else { return false };
    let certs = certs_from_pem(pem.as_bytes());
    let crls = pem_blocks(pem.as_bytes(), "X509 CRL");
    let found = !certs.is_empty() || !crls.is_empty();
    for der in certs {
        c.push_cert(der);
    }
    for der in crls {
        c.push_crl(der, name);
    }
    found
}

/// The PEM text of `text`. URL-encoded PEM (PCS `*-Issuer-Chain` headers,
/// possibly quoted inside other text) is found block by block and decoded.
fn pem_text(text: &str) -> Option<String> {
    if text.contains("-----BEGIN ") {
        return Some(text.to_string());
    }
    const BEGIN: &str = "-----BEGIN%20";
    const END: &str = "-----END%20";
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let from = rest.get(start..)?;
        let end_at = from.find(END)?;
        let after_end = from.get(end_at + END.len()..)?;
        let close = after_end.find("-----")?;
        let block = from.get(..end_at + END.len() + close + 5)?;
        out.push_str(&percent_decode(block)?);
        out.push('\n');
        rest = after_end.get(close + 5..)?;
    }
    if out.is_empty() {
        None
    } else {
        Some(out)
    }
}

/// Decode `%XX` escapes (URL encoding, as used for PCS issuer-chain headers).
pub fn percent_decode(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&ch) = b.get(i) {
        if ch == b'%' {
            let hexs = b.get(i + 1..i + 3)?;
            let s = std::str::from_utf8(hexs).ok()?;
            out.push(u8::from_str_radix(s, 16).ok()?);
            i += 3;
        } else {
            out.push(ch);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Hex or base64 text holding DER.
fn decode_text_der(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace() && *c != '\0').collect();
    if compact.is_empty() {
        return None;
    }
    let body = compact.strip_prefix("0x").unwrap_or(&compact);
    if body.len().is_multiple_of(2) && body.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(body).ok();
    }
    decode_base64(&compact)
}

/// Normalise a JSON key: lower case, without `_` and `-`.
fn norm(key: &str) -> String {
    key.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

type RawMap = BTreeMap<String, Box<RawValue>>;

/// A JSON endorsement: a PCS response or a bundle. Returns whether it was collateral.
fn add_json(c: &mut Collateral, name: &str, text: &str) -> Result<bool, String> {
    let map: RawMap = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => return Err(format!("not a JSON object: {e}")),
    };
    if let Some((kind, sj)) = pcs_response(&map, name)? {
        c.push_signed(kind, sj);
        return Ok(true);
    }
    add_bundle(c, name, &map)
}

/// `{"tcbInfo":{...},"signature":"..."}` or `{"enclaveIdentity"|"qeIdentity":{...},"signature":"..."}`.
fn pcs_response(map: &RawMap, name: &str) -> Result<Option<(JsonKind, SignedJson)>, String> {
    let mut body = None;
    let mut signature = None;
    for (k, v) in map {
        match norm(k).as_str() {
            "tcbinfo" => body = Some((JsonKind::TcbInfo, v)),
            "enclaveidentity" | "qeidentity" => body = Some((JsonKind::QeIdentity, v)),
            "signature" => signature = Some(v),
            _ => {}
        }
    }
    let (Some((kind, body)), Some(sig)) = (body, signature) else { return Ok(None) };
    let text = body.get().trim();
    if !text.starts_with('{') {
        return Ok(None);
    }
    let signature = value_bytes(sig).map_err(|e| format!("signature: {e}"))?;
    Ok(Some((kind, SignedJson { body: text.to_string(), signature, issuer_chain: Vec::new(), source: name.to_string() })))
}

/// A single-JSON bundle (e.g. dcap-qvl's `QuoteCollateralV3`).
fn add_bundle(c: &mut Collateral, name: &str, map: &RawMap) -> Result<bool, String> {
    let mut tcb: (Option<SignedJson>, Option<Vec<u8>>, Vec<Vec<u8>>) = (None, None, Vec::new());
    let mut qe: (Option<SignedJson>, Option<Vec<u8>>, Vec<Vec<u8>>) = (None, None, Vec::new());
    let mut recognised = false;
    for (k, v) in map {
        let key = norm(k);
        let what = |e: String| format!("{k}: {e}");
        match key.as_str() {
            "tcbinfo" => tcb.0 = Some(json_body(v, name).map_err(what)?),
            "tcbinfosignature" => tcb.1 = Some(value_bytes(v).map_err(what)?),
            "tcbinfoissuerchain" => tcb.2 = value_certs(v).map_err(what)?,
            "qeidentity" | "enclaveidentity" => qe.0 = Some(json_body(v, name).map_err(what)?),
            "qeidentitysignature" | "enclaveidentitysignature" => qe.1 = Some(value_bytes(v).map_err(what)?),
            "qeidentityissuerchain" | "enclaveidentityissuerchain" => qe.2 = value_certs(v).map_err(what)?,
            "rootcacrl" | "pckcrl" | "rootcrl" | "intermediatecacrl" => {
                for der in value_crls(v).map_err(what)? {
                    c.push_crl(der, &format!("{name}:{k}"));
                }
            }
            "pckcrlissuerchain" | "pckcertificatechain" | "pckcertchain" | "pckcert" | "pckcertificate" => {
                for der in value_certs(v).map_err(what)? {
                    c.push_cert(der);
                }
            }
            _ => continue,
        }
        recognised = true;
    }
    for (kind, (body, sig, chain)) in [(JsonKind::TcbInfo, tcb), (JsonKind::QeIdentity, qe)] {
        if let Some(mut sj) = body {
            if let Some(s) = sig {
                sj.signature = s;
            }
            if sj.signature.is_empty() {
                let what = if kind == JsonKind::TcbInfo { "TCB Info" } else { "QE Identity" };
                c.problems.push(format!("{name}: {what} without a signature"));
                continue;
            }
            sj.issuer_chain = chain;
            c.push_signed(kind, sj);
        } else {
            for der in chain {
                c.push_cert(der);
            }
        }
    }
    Ok(recognised)
}

/// The signed JSON text carried by a bundle field: a string holding the text
/// (or hex/base64 of it, or a whole PCS response), or an object.
fn json_body(v: &RawValue, name: &str) -> Result<SignedJson, String> {
    let raw = v.get().trim();
    let text = if raw.starts_with('{') {
        raw.to_string()
    } else {
        let bytes = value_bytes(v)?;
        String::from_utf8(bytes).map_err(|_| "not UTF-8 JSON text".to_string())?
    };
    let text_trim = trim_text(&text);
    if !text_trim.starts_with('{') {
        return Err("not JSON text".into());
    }
    // An embedded PCS response carries its own signature.
    if let Ok(map) = serde_json::from_str::<RawMap>(text_trim) {
        if let Some((_, sj)) = pcs_response(&map, name)? {
            return Ok(sj);
        }
    }
    Ok(SignedJson { body: text_trim.to_string(), signature: Vec::new(), issuer_chain: Vec::new(), source: name.to_string() })
}

/// Bytes from a JSON value: a string (JSON text and PEM kept as text; hex,
/// base64 decoded) or an array of byte values.
fn value_bytes(v: &RawValue) -> Result<Vec<u8>, String> {
    let raw = v.get().trim();
    if raw.starts_with('[') {
        let arr: Vec<u8> = serde_json::from_str(raw).map_err(|e| format!("not a byte array: {e}"))?;
        return Ok(arr);
    }
    let s: String = serde_json::from_str(raw).map_err(|e| format!("expected a string or byte array: {e}"))?;
    let t = trim_text(&s);
    if t.starts_with('{') || t.contains("-----BEGIN") || t.contains("BEGIN%20") {
        return Ok(t.as_bytes().to_vec());
    }
    decode_text_der(t).ok_or_else(|| "neither hex nor base64".to_string())
}

/// Certificates from a JSON value: PEM text (URL-encoded or not), an array of
/// PEM strings, or DER bytes.
fn value_certs(v: &RawValue) -> Result<Vec<Vec<u8>>, String> {
    let raw = v.get().trim();
    if raw.starts_with('[') {
        if let Ok(list) = serde_json::from_str::<Vec<Box<RawValue>>>(raw) {
            if list.iter().all(|x| x.get().trim_start().starts_with('"')) {
                let mut out = Vec::new();
                for item in &list {
                    out.extend(value_certs(item)?);
                }
                return Ok(out);
            }
        }
    }
    let bytes = value_bytes(v)?;
    if let Some(pem) = std::str::from_utf8(&bytes).ok().and_then(pem_text) {
        return Ok(certs_from_pem(pem.as_bytes()));
    }
    if is_der_cert(&bytes) {
        return Ok(vec![bytes]);
    }
    Err("no certificate found".into())
}

/// CRLs from a JSON value: hex/base64 DER, PEM, or a byte array.
fn value_crls(v: &RawValue) -> Result<Vec<Vec<u8>>, String> {
    let bytes = value_bytes(v)?;
    if bytes.first() == Some(&0x30) {
        parse_crl(&bytes)?;
        return Ok(vec![bytes]);
    }
    if let Some(pem) = std::str::from_utf8(&bytes).ok().and_then(pem_text) {
        let crls = pem_blocks(pem.as_bytes(), "X509 CRL");
        if !crls.is_empty() {
            return Ok(crls);
        }
    }
    Err("no CRL found".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("-----BEGIN%20CERTIFICATE-----%0A").as_deref(), Some("-----BEGIN CERTIFICATE-----\n"));
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        let embedded = "x = \"-----BEGIN%20CERTIFICATE-----%0AAB%2BC%0A-----END%20CERTIFICATE-----%0A\" %v";
        assert_eq!(pem_text(embedded).as_deref(), Some("-----BEGIN CERTIFICATE-----\nAB+C\n-----END CERTIFICATE-----\n"));
    }

    #[test]
    fn pcs_responses_keep_the_exact_signed_text() {
        let text = r#"{"tcbInfo":{"id":"TDX", "version" :3},"signature":"00ff"}"#;
        let mut c = Collateral::default();
        add_file(&mut c, "t", text.as_bytes());
        assert_eq!(c.tcb_infos.len(), 1);
        assert_eq!(c.tcb_infos[0].body, r#"{"id":"TDX", "version" :3}"#);
        assert_eq!(c.tcb_infos[0].signature, vec![0x00, 0xff]);
        let qe = r#"{"enclaveIdentity":{"id":"QE"},"signature":"0a"}"#;
        add_file(&mut c, "q", qe.as_bytes());
        assert_eq!(c.qe_identities[0].body, r#"{"id":"QE"}"#);
    }

    #[test]
    fn bundle_fields_in_any_spelling_and_encoding() {
        let text = r#"{"tcbInfo":"{\"id\":\"SGX\"}","TCB_INFO_SIGNATURE":[1,2,3],"qe_identity":{"id":"QE"},"qeIdentitySignature":"AQID"}"#;
        let mut c = Collateral::default();
        add_file(&mut c, "b", text.as_bytes());
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.tcb_infos[0].body, r#"{"id":"SGX"}"#);
        assert_eq!(c.tcb_infos[0].signature, vec![1, 2, 3]);
        assert_eq!(c.qe_identities[0].body, r#"{"id":"QE"}"#);
        assert_eq!(c.qe_identities[0].signature, vec![1, 2, 3]);
    }

    #[test]
    fn unrelated_files_are_ignored_not_errors() {
        let mut c = Collateral::default();
        add_file(&mut c, "README.md", b"# hello\n");
        add_file(&mut c, "x.go", b"package main");
        add_file(&mut c, "bin", &[0x30, 0x01, 0xff]);
        assert_eq!(c.ignored.len(), 3);
        assert!(c.problems.is_empty());
    }
}
