//! NVIDIA Reference Integrity Manifests (RIMs): ISO/IEC 19770-2 SWID tags
//! carrying the golden measurements of a driver or VBIOS release, signed
//! with an enveloped XML-DSig signature (TCG RIM Information Model; nvtrust
//! `local_gpu_verifier/src/verifier/rim/__init__.py`).
//!
//! What a RIM looks like:
//!
//! ```text
//! <SoftwareIdentity xmlns="http://standards.iso.org/iso/19770/-2/2015/schema.xsd" tagId=…>
//!   <Meta colloquialVersion="545.00" product="GH100" …/>
//!   <Payload>
//!     <Resource type="Measurement" index="7" active="True" alternatives="1"
//!               ns2:Hash0="0e0e…" name="Measurement_7" size="48"/> …
//!   </Payload>
//!   <ds:Signature> SignedInfo (C14N 1.1, ecdsa-sha384, one Reference URI=""
//!     with enveloped-signature + C14N 1.1, sha384), SignatureValue (r||s),
//!     KeyInfo/X509Data/X509Certificate (signer first, then its CAs) </ds:Signature>
//! </SoftwareIdentity>
//! ```
//!
//! Verification follows XML-DSig core validation (W3C xmldsig-core1 §3.2)
//! restricted to the shape above, so there is exactly one thing a signature
//! can cover: the whole document minus its one `Signature` element.
//! Anything else (several references, other URIs, XPath or XSLT transforms,
//! a Signature that is not a child of the root, algorithms other than the
//! ones listed) is refused rather than interpreted. Every value read from the
//! manifest (version, product, golden measurements) comes from the same
//! parsed document whose digest was verified, so what is signed is what is
//! used.
//!
//! Parsing and canonicalization (C14N 1.0, 1.1 and exclusive, as the
//! signature declares) are done by the `xml-sec` crate (pure Rust, DTDs
//! refused, size/depth/entity limits); digests and the ECDSA signature by
//! `aws-lc-rs`.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED};
use xml_sec::c14n::{canonicalize, C14nAlgorithm};
use xml_sec::{Document, Node};

use crate::encoding::decode_base64;
use crate::x509::{ec_curve, parse_cert};

/// Largest RIM accepted (bytes); NVIDIA's are ~20 KiB.
pub const MAX_RIM_LEN: usize = 1 << 20;
/// Most golden measurements in one RIM (NVIDIA's have 64).
pub const MAX_RESOURCES: usize = 4096;
/// Most alternative values for one measurement.
pub const MAX_ALTERNATIVES: usize = 64;
/// Most certificates in `KeyInfo`.
pub const MAX_KEYINFO_CERTS: usize = 8;

/// ISO/IEC 19770-2:2015 SWID namespace.
pub const NS_SWID: &str = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd";
/// XML-DSig namespace.
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
/// Exclusive C14N namespace (for `InclusiveNamespaces`).
const NS_EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
/// The enveloped-signature transform.
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// Whether some endorsement bytes look like XML (and so may be a RIM).
pub fn looks_like_xml(bytes: &[u8]) -> bool {
    let b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    b.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'<') && !b.starts_with(b"-----BEGIN")
}

/// One golden measurement of a RIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Golden {
    /// NVIDIA measurement index (0-based; SPDM block index minus one).
    pub index: u32,
    /// The RIM's name for it.
    pub name: String,
    /// Whether it is compared at all (`active="True"`).
    pub active: bool,
    /// Size of each value in bytes.
    pub size: usize,
    /// Accepted values (any one matches).
    pub values: Vec<Vec<u8>>,
}

/// A parsed, not yet authenticated RIM.
#[derive(Debug, Clone)]
pub struct Rim {
    /// `SoftwareIdentity/@tagId`.
    pub tag_id: String,
    /// `Meta/@colloquialVersion`: the driver or VBIOS version it describes.
    pub version: String,
    /// `Meta/@product` (e.g. `GH100`), when given.
    pub product: Option<String>,
    /// The golden measurements, in document order.
    pub golden: Vec<Golden>,
    /// `KeyInfo` certificates (DER), signer first.
    pub certs: Vec<Vec<u8>>,
    /// SHA-256 of the manifest file: tells apart RIMs that share a tagId.
    pub sha256: String,
    signature: SignatureParts,
}

/// What the XML-DSig check needs, extracted at parse time.
#[derive(Debug, Clone)]
struct SignatureParts {
    /// Canonical `SignedInfo` bytes.
    signed_info: Vec<u8>,
    /// Canonical bytes of the document minus the `Signature` element.
    referenced: Vec<u8>,
    digest_alg: &'static digest::Algorithm,
    digest_value: Vec<u8>,
    sig_alg: SigAlg,
    signature_value: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SigAlg {
    EcdsaSha256,
    EcdsaSha384,
}

/// Parse a RIM: the SWID structure, the signature structure, and both
/// canonical forms the signature depends on.
pub fn parse(bytes: &[u8]) -> Result<Rim, String> {
    if bytes.len() > MAX_RIM_LEN {
        return Err(format!("{} bytes exceeds the {MAX_RIM_LEN}-byte limit", bytes.len()));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let doc = Document::parse(text).map_err(|e| format!("not well-formed XML: {e}"))?;
    let root = doc.root().children().find(|n| n.is_element()).ok_or("no document element")?;
    if !root.has_tag_name((NS_SWID, "SoftwareIdentity")) {
        return Err(format!(
            "document element is {{{}}}{}, not a SWID SoftwareIdentity",
            root.tag_name().namespace().unwrap_or(""),
            root.tag_name().name()
        ));
    }
    let signature = only(doc.descendants().filter(|n| n.has_tag_name((NS_DSIG, "Signature"))), "ds:Signature")?;
    if signature.parent().map(|p| p.id()) != Some(root.id()) {
        return Err("ds:Signature is not a child of the document element (not an enveloped signature)".into());
    }
    let certs = keyinfo_certs(signature)?;
    let signature = parse_signature(&doc, signature)?;

    let tag_id = root.attribute("tagId").unwrap_or_default().to_string();
    let meta = only(element_children(root, NS_SWID, "Meta"), "Meta")?;
    let version = meta.attribute("colloquialVersion").filter(|v| !v.trim().is_empty()).ok_or("Meta has no colloquialVersion")?;
    let product = meta.attribute("product").map(|p| p.trim().to_string()).filter(|p| !p.is_empty());
    let payload = only(element_children(root, NS_SWID, "Payload"), "Payload")?;
    let golden = parse_payload(payload)?;
    let sha256 = crate::x509::sha256_hex(bytes);
    Ok(Rim { tag_id, version: version.trim().to_string(), product, golden, certs, sha256, signature })
}

/// Check the reference digest and the signature over `SignedInfo` with the
/// first `KeyInfo` certificate (ECDSA, raw `r || s`).
pub fn verify_signature(rim: &Rim) -> Result<String, String> {
    crate::budget::spend()?;
    let s = &rim.signature;
    let got = digest::digest(s.digest_alg, &s.referenced);
    if got.as_ref() != s.digest_value.as_slice() {
        return Err("reference digest does not match the document (the manifest was altered after signing)".into());
    }
    let signer = rim.certs.first().ok_or("KeyInfo carries no certificate")?;
    let cert = parse_cert(signer).map_err(|e| format!("signer certificate: {e}"))?;
    let alg: &'static dyn VerificationAlgorithm = match (s.sig_alg, ec_curve(cert.public_key())) {
        (SigAlg::EcdsaSha384, Some("P-384")) => &ECDSA_P384_SHA384_FIXED,
        (SigAlg::EcdsaSha256, Some("P-256")) => &ECDSA_P256_SHA256_FIXED,
        (a, c) => return Err(format!("signature method {a:?} does not fit the signer's key ({c:?})")),
    };
    let key = cert.public_key().subject_public_key.data.as_ref();
    UnparsedPublicKey::new(alg, key)
        .verify(&s.signed_info, &s.signature_value)
        .map_err(|_| format!("SignedInfo signature does not verify with the key of '{}'", cert.subject()))?;
    Ok(format!("XML-DSig {:?} by '{}', reference digest matches", s.sig_alg, cert.subject()))
}

/// Exactly one item, or an error naming what was expected.
fn only<'a, 'i>(mut it: impl Iterator<Item = Node<'a, 'i>>, what: &str) -> Result<Node<'a, 'i>, String> {
    let first = it.next().ok_or_else(|| format!("no {what} element"))?;
    if it.next().is_some() {
        return Err(format!("more than one {what} element"));
    }
    Ok(first)
}

fn element_children<'a, 'i>(n: Node<'a, 'i>, ns: &'a str, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a
where
    'i: 'a,
{
    n.children().filter(move |c| c.has_tag_name((ns, name)))
}

/// The element children of a node (text that is only whitespace ignored;
/// anything else is refused).
fn child_elements<'a, 'i>(n: Node<'a, 'i>, what: &str) -> Result<Vec<Node<'a, 'i>>, String> {
    let mut out = Vec::new();
    for c in n.children() {
        if c.is_element() {
            out.push(c);
        } else if c.is_text() && c.text().is_some_and(|t| !t.trim().is_empty()) {
            return Err(format!("unexpected text inside {what}"));
        }
    }
    Ok(out)
}

/// The text content of a leaf element (its text children, concatenated).
fn leaf_text(n: Node<'_, '_>, what: &str) -> Result<String, String> {
    let mut s = String::new();
    for c in n.children() {
        if c.is_element() {
            return Err(format!("{what} must contain only text"));
        }
        if c.is_text() {
            s.push_str(c.text().unwrap_or_default());
        }
    }
    Ok(s)
}

fn base64_text(n: Node<'_, '_>, what: &str) -> Result<Vec<u8>, String> {
    let t: String = leaf_text(n, what)?.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    decode_base64(&t).ok_or_else(|| format!("{what} is not base64"))
}

fn dsig<'a, 'i>(n: Node<'a, 'i>, name: &str) -> bool {
    n.has_tag_name((NS_DSIG, name))
}

/// A canonicalization algorithm element (CanonicalizationMethod or a
/// Transform), with an exclusive-C14N prefix list if it has one.
fn c14n_of(el: Node<'_, '_>) -> Result<Option<C14nAlgorithm>, String> {
    let uri = el.attribute("Algorithm").ok_or("algorithm element without Algorithm")?;
    let Some(mut alg) = C14nAlgorithm::from_uri(uri) else { return Ok(None) };
    for c in child_elements(el, "canonicalization method")? {
        if c.has_tag_name((NS_EXC_C14N, "InclusiveNamespaces")) && uri.starts_with(NS_EXC_C14N) {
            alg = alg.with_prefix_list(c.attribute("PrefixList").unwrap_or_default());
        } else {
            return Err(format!("unexpected parameter <{}> of {uri}", c.tag_name().name()));
        }
    }
    Ok(Some(alg))
}

fn digest_alg(uri: &str) -> Option<&'static digest::Algorithm> {
    match uri {
        "http://www.w3.org/2001/04/xmlenc#sha256" => Some(&digest::SHA256),
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => Some(&digest::SHA384),
        "http://www.w3.org/2001/04/xmlenc#sha512" => Some(&digest::SHA512),
        _ => None,
    }
}

fn canonical(doc: &Document<'_>, keep: &dyn Fn(Node) -> bool, alg: &C14nAlgorithm) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    canonicalize(doc, Some(keep), alg, &mut out).map_err(|e| format!("canonicalization failed: {e}"))?;
    Ok(out)
}

/// Check the one supported signature shape and compute both canonical forms.
fn parse_signature(doc: &Document<'_>, sig: Node<'_, '_>) -> Result<SignatureParts, String> {
    let parts = child_elements(sig, "ds:Signature")?;
    let (si, sv) = match parts.as_slice() {
        [si, sv, ki, rest @ ..] if dsig(*si, "SignedInfo") && dsig(*sv, "SignatureValue") && dsig(*ki, "KeyInfo") => {
            if !rest.iter().all(|o| dsig(*o, "Object")) {
                return Err("unexpected element in ds:Signature".into());
            }
            (*si, *sv)
        }
        _ => return Err("ds:Signature must hold SignedInfo, SignatureValue and KeyInfo, in that order".into()),
    };
    let si_parts = child_elements(si, "ds:SignedInfo")?;
    let [cm, sm, reference] = si_parts.as_slice() else {
        return Err("SignedInfo must hold CanonicalizationMethod, SignatureMethod and exactly one Reference".into());
    };
    if !(dsig(*cm, "CanonicalizationMethod") && dsig(*sm, "SignatureMethod") && dsig(*reference, "Reference")) {
        return Err("SignedInfo must hold CanonicalizationMethod, SignatureMethod and exactly one Reference".into());
    }
    let si_c14n =
        c14n_of(*cm)?.ok_or_else(|| format!("unsupported CanonicalizationMethod {}", cm.attribute("Algorithm").unwrap_or_default()))?;
    let sig_alg = match sm.attribute("Algorithm").unwrap_or_default() {
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384" => SigAlg::EcdsaSha384,
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => SigAlg::EcdsaSha256,
        other => return Err(format!("unsupported SignatureMethod {other}")),
    };
    if !child_elements(*sm, "SignatureMethod")?.is_empty() {
        return Err("SignatureMethod parameters are not supported".into());
    }

    // The one Reference: URI="" (the whole document, without comments).
    if reference.attribute("URI") != Some("") {
        return Err(format!("Reference URI {:?} is not supported (only URI=\"\", the whole document)", reference.attribute("URI")));
    }
    let ref_parts = child_elements(*reference, "ds:Reference")?;
    let (transforms, dm, dv) = match ref_parts.as_slice() {
        [t, dm, dv] if dsig(*t, "Transforms") => (Some(*t), *dm, *dv),
        [dm, dv] => (None, *dm, *dv),
        _ => return Err("Reference must hold Transforms, DigestMethod and DigestValue".into()),
    };
    if !(dsig(dm, "DigestMethod") && dsig(dv, "DigestValue")) {
        return Err("Reference must hold DigestMethod and DigestValue".into());
    }
    let transforms = match transforms {
        Some(t) => child_elements(t, "Transforms")?,
        None => Vec::new(),
    };
    let (enveloped, rest) = transforms.split_first().ok_or("Reference has no enveloped-signature transform")?;
    if !dsig(*enveloped, "Transform") || enveloped.attribute("Algorithm") != Some(ENVELOPED) {
        return Err("the first transform must be enveloped-signature".into());
    }
    // After enveloped-signature, at most one canonicalization; without one
    // the node-set is serialized with Canonical XML 1.0 (xmldsig-core §4.4.3.2).
    let ref_c14n = match rest {
        [] => C14nAlgorithm::from_uri("http://www.w3.org/TR/2001/REC-xml-c14n-20010315").ok_or("C14N 1.0 unavailable")?,
        [t] if dsig(*t, "Transform") => {
            c14n_of(*t)?.ok_or_else(|| format!("unsupported transform {}", t.attribute("Algorithm").unwrap_or_default()))?
        }
        _ => return Err("only enveloped-signature followed by one canonicalization transform is supported".into()),
    };
    let digest_alg = digest_alg(dm.attribute("Algorithm").unwrap_or_default())
        .ok_or_else(|| format!("unsupported DigestMethod {}", dm.attribute("Algorithm").unwrap_or_default()))?;
    let digest_value = base64_text(dv, "DigestValue")?;
    let signature_value = base64_text(sv, "SignatureValue")?;

    // URI="" selects every node but comments; enveloped-signature removes
    // the Signature element and everything in it.
    let sig_id = sig.id();
    let keep_doc = move |n: Node| !n.is_comment() && !n.ancestors().any(|a| a.id() == sig_id);
    let referenced = canonical(doc, &keep_doc, &ref_c14n)?;
    let si_id = si.id();
    let with_comments = si_c14n.with_comments();
    let keep_si = move |n: Node| (with_comments || !n.is_comment()) && n.ancestors().any(|a| a.id() == si_id);
    let signed_info = canonical(doc, &keep_si, &si_c14n)?;
    Ok(SignatureParts { signed_info, referenced, digest_alg, digest_value, sig_alg, signature_value })
}

/// `Signature/KeyInfo/X509Data/X509Certificate`, in order (DER).
fn keyinfo_certs(sig: Node<'_, '_>) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let sig_id = sig.id();
    for n in sig.descendants().filter(|n| dsig(*n, "X509Certificate")) {
        let keyinfo = n.parent().filter(|p| dsig(*p, "X509Data")).and_then(|p| p.parent()).filter(|k| dsig(*k, "KeyInfo"));
        let in_keyinfo = keyinfo.and_then(|k| k.parent()).is_some_and(|s| s.id() == sig_id);
        if !in_keyinfo {
            return Err("X509Certificate outside Signature/KeyInfo/X509Data".into());
        }
        if out.len() == MAX_KEYINFO_CERTS {
            return Err(format!("more than {MAX_KEYINFO_CERTS} KeyInfo certificates"));
        }
        out.push(base64_text(n, "X509Certificate")?);
    }
    if out.is_empty() {
        return Err("KeyInfo carries no X509Certificate".into());
    }
    Ok(out)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "True" | "true" => Some(true),
        "False" | "false" => Some(false),
        _ => None,
    }
}

/// The `Resource type="Measurement"` entries of the payload. Each value is
/// the attribute `Hash<i>` (any namespace: NVIDIA binds it to the hash
/// algorithm's URI) and must decode to `size` bytes.
fn parse_payload(payload: Node<'_, '_>) -> Result<Vec<Golden>, String> {
    let mut out: Vec<Golden> = Vec::new();
    for r in child_elements(payload, "Payload")? {
        if !r.has_tag_name((NS_SWID, "Resource")) || r.attribute("type") != Some("Measurement") {
            continue;
        }
        if out.len() == MAX_RESOURCES {
            return Err(format!("more than {MAX_RESOURCES} measurements"));
        }
        let attr = |name: &str| r.attribute(name).ok_or_else(|| format!("Resource without {name}"));
        let index: u32 = attr("index")?.trim().parse().map_err(|_| "Resource index is not a number".to_string())?;
        let what = format!("measurement {index}");
        let active = parse_bool(attr("active")?).ok_or_else(|| format!("{what}: active is not True/False"))?;
        let alternatives: usize = attr("alternatives")?.trim().parse().map_err(|_| format!("{what}: alternatives is not a number"))?;
        let size: usize = attr("size")?.trim().parse().map_err(|_| format!("{what}: size is not a number"))?;
        if alternatives == 0 || alternatives > MAX_ALTERNATIVES {
            return Err(format!("{what}: {alternatives} alternatives (1..{MAX_ALTERNATIVES} allowed)"));
        }
        let mut values = Vec::with_capacity(alternatives);
        for i in 0..alternatives {
            let key = format!("Hash{i}");
            let mut found = r.attributes().filter(|a| a.name() == key && a.namespace().is_some());
            let v = found.next().ok_or_else(|| format!("{what}: no {key}"))?;
            if found.next().is_some() {
                return Err(format!("{what}: {key} given twice"));
            }
            let bytes = hex::decode(v.value().trim()).map_err(|_| format!("{what}: {key} is not hex"))?;
            if bytes.len() != size {
                return Err(format!("{what}: {key} is {} bytes, size says {size}", bytes.len()));
            }
            values.push(bytes);
        }
        if out.iter().any(|g| g.index == index) {
            return Err(format!("{what} appears twice"));
        }
        let name = r.attribute("name").unwrap_or_default().to_string();
        out.push(Golden { index, name, active, size, values });
    }
    if out.is_empty() {
        return Err("the payload has no measurements".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_xml() {
        assert!(looks_like_xml(b"\n  <SoftwareIdentity/>"));
        assert!(looks_like_xml(b"\xEF\xBB\xBF<a/>"));
        assert!(!looks_like_xml(b"-----BEGIN CERTIFICATE-----"));
        assert!(!looks_like_xml(&[0x30, 0x82]));
    }

    #[test]
    fn refuses_non_swid_and_unsigned_documents() {
        assert!(parse(b"<a/>").unwrap_err().contains("SoftwareIdentity"));
        let unsigned = format!("<SoftwareIdentity xmlns=\"{NS_SWID}\"><Meta colloquialVersion=\"1\"/></SoftwareIdentity>");
        assert!(parse(unsigned.as_bytes()).unwrap_err().contains("Signature"));
        assert!(parse(b"<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>").is_err());
        assert!(parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn reads_booleans_strictly() {
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}

/// Test support: a RIM with given golden values and no signature.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A RIM holding `golden`, with placeholder identity and signature.
    pub(crate) fn rim_with(golden: Vec<Golden>) -> Rim {
        Rim {
            tag_id: "test".into(),
            version: "1.0".into(),
            product: None,
            golden,
            certs: Vec::new(),
            sha256: String::new(),
            signature: SignatureParts {
                signed_info: Vec::new(),
                referenced: Vec::new(),
                digest_alg: &digest::SHA384,
                digest_value: Vec::new(),
                sig_alg: SigAlg::EcdsaSha384,
                signature_value: Vec::new(),
            },
        }
    }
}
