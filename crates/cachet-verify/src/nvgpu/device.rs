//! The GPU's device identity: which certificate signed the report, its
//! chain to the pinned NVIDIA Device Identity CA, and the firmware ID (FWID)
//! it certifies.
//!
//! NVIDIA's H100 chain is five certificates: `GH100 A01 GSP FMC LF` (the
//! attestation key, leaf) <- `GH100 A01 GSP BROM` (per-chip) <- `NVIDIA
//! GH100 Provisioner ICA 1` <- `NVIDIA GH100 Identity` <- `NVIDIA Device
//! Identity CA` (root). The leaf carries a TCG DICE extension (OID
//! 2.23.133.5.4.1) whose FWID must equal the report's `FWID` opaque field
//! when the report has one (nvtrust `verify_gpu_certificate_chain`).

use std::collections::HashMap;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
use x509_parser::der_parser::ber::{BerObject, BerObjectContent};
use x509_parser::der_parser::parse_der;

use crate::x509::{ec_curve, parse_cert};

/// TCG DICE TcbInfo extension (NVIDIA Hopper and later put the FWID there).
pub const OID_TCG_DICE_TCB_INFO: &str = "2.23.133.5.4.1";
/// Older / alternative DICE FWID OID that NVIDIA's verifier also accepts.
pub const OID_TCG_DICE_FWID_ALT: &str = "2.23.133.5.4.1.1";
/// Deepest DER nesting walked looking for an FWID.
const MAX_DER_DEPTH: usize = 8;

/// Certificates that could be the device leaf: parsable, P-384, not
/// self-issued, and not the issuer of another certificate in the pool.
/// In pool order; linear in the pool (issuer names are indexed).
pub fn leaf_candidates(pool: &[Vec<u8>]) -> Vec<&[u8]> {
    let parsed: Vec<_> = pool.iter().filter_map(|d| parse_cert(d).ok().map(|c| (d.as_slice(), c))).collect();
    let mut issued_by: HashMap<&[u8], Vec<&[u8]>> = HashMap::new();
    for (d, c) in &parsed {
        issued_by.entry(c.issuer().as_raw()).or_default().push(d);
    }
    parsed
        .iter()
        .filter(|(_, c)| c.subject() != c.issuer())
        .filter(|(_, c)| ec_curve(c.public_key()) == Some("P-384"))
        .filter(|(d, c)| !issued_by.get(c.subject().as_raw()).is_some_and(|ds| ds.iter().any(|d2| d2 != d)))
        .map(|(d, _)| *d)
        .collect()
}

/// The chip a verified device chain certifies, from NVIDIA's signed names:
/// the provisioning CA (`NVIDIA GH100 Provisioner ICA 1`, `NVIDIA LS_10
/// Provisioner ICA 1`), else the first word of the leaf's CN (`GH100 A01
/// GSP FMC LF`). Never from anything the evidence labels itself with.
pub fn chain_chip(chain: &[Vec<u8>]) -> Option<String> {
    let from_ica = chain.iter().filter_map(|d| common_name(d)).find_map(|cn| {
        let rest = cn.strip_prefix("NVIDIA ")?;
        let (chip, tail) = rest.split_once(' ')?;
        tail.starts_with("Provisioner ICA").then(|| chip.to_string())
    });
    from_ica.or_else(|| chain.first().and_then(|l| common_name(l)).and_then(|cn| cn.split_whitespace().next().map(str::to_string)))
}

/// What kind of device a chip is: `HOPPER` / `BLACKWELL` (GPUs, NVIDIA's
/// architecture names as its SDK spells them), `NVSWITCH` (an NVLink
/// switch, never a GPU), or `None` when unknown.
pub fn architecture(chip: &str) -> Option<&'static str> {
    let c = chip.to_ascii_uppercase();
    if c.starts_with("GH1") {
        Some("HOPPER")
    } else if c.starts_with("GB1") || c.starts_with("GB2") {
        Some("BLACKWELL")
    } else if c.starts_with("LS") {
        Some("NVSWITCH")
    } else {
        None
    }
}

/// Verify the raw `r || s` ECDSA P-384/SHA-384 signature of `msg` with the
/// certificate's public key (charged to the request's signature budget).
pub fn verify_p384(cert_der: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), String> {
    crate::budget::spend()?;
    let cert = parse_cert(cert_der)?;
    if ec_curve(cert.public_key()) != Some("P-384") {
        return Err(format!("'{}' does not hold a P-384 key", cert.subject()));
    }
    let key = cert.public_key().subject_public_key.data.as_ref();
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, key)
        .verify(msg, sig)
        .map_err(|_| format!("ECDSA P-384/SHA-384 signature does not verify with the key of '{}'", cert.subject()))
}

/// The first FWID (`SEQUENCE { hashAlg OID, digest OCTET STRING }`) in the
/// certificate's DICE extension, or `None` when it has none. Both layouts
/// NVIDIA uses are covered: Hopper's `SEQUENCE { INTEGER, SPKI, FWID }` and
/// the TCG `DiceTcbInfo` with `fwids [6] IMPLICIT SEQUENCE OF FWID`.
pub fn cert_fwid(cert_der: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let cert = parse_cert(cert_der)?;
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if oid == OID_TCG_DICE_TCB_INFO || oid == OID_TCG_DICE_FWID_ALT {
            return Ok(find_fwid(ext.value, 0));
        }
    }
    Ok(None)
}

/// Walk concatenated DER objects for the first FWID-shaped sequence.
fn find_fwid(mut bytes: &[u8], depth: usize) -> Option<Vec<u8>> {
    if depth > MAX_DER_DEPTH {
        return None;
    }
    while !bytes.is_empty() {
        let (rest, obj) = parse_der(bytes).ok()?;
        if let Some(f) = fwid_in(&obj, depth) {
            return Some(f);
        }
        bytes = rest;
    }
    None
}

fn fwid_in(obj: &BerObject<'_>, depth: usize) -> Option<Vec<u8>> {
    match &obj.content {
        BerObjectContent::Sequence(items) | BerObjectContent::Set(items) => {
            if let [a, b] = items.as_slice() {
                if let (BerObjectContent::OID(_), BerObjectContent::OctetString(d)) = (&a.content, &b.content) {
                    return Some(d.to_vec());
                }
            }
            items.iter().find_map(|i| if depth < MAX_DER_DEPTH { fwid_in(i, depth + 1) } else { None })
        }
        BerObjectContent::Tagged(_, _, inner) => fwid_in(inner, depth + 1),
        BerObjectContent::Unknown(any) if any.header.is_constructed() => find_fwid(any.data, depth + 1),
        _ => None,
    }
}

/// A text attribute (CN) of a certificate's subject, for claims.
pub fn common_name(cert_der: &[u8]) -> Option<String> {
    let cert = parse_cert(cert_der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fwid_in_hopper_layout() {
        // SEQUENCE { INTEGER 1, SEQUENCE { OID, OID }, SEQUENCE { OID sha384, OCTET STRING 'dead' } }:
        // the algorithm-identifier sequence (OID, OID) is not mistaken for an FWID.
        let der = [
            0x30, 0x1e, 0x02, 0x01, 0x01, 0x30, 0x08, 0x06, 0x01, 0x2a, 0x06, 0x03, 0x2b, 0x81, 0x04, 0x30, 0x0f, 0x06, 0x09, 0x60, 0x86,
            0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x04, 0x02, 0xde, 0xad,
        ];
        assert_eq!(find_fwid(&der, 0), Some(vec![0xde, 0xad]));
    }

    #[test]
    fn finds_fwid_in_implicit_context_tag() {
        // SEQUENCE { [6] IMPLICIT { SEQUENCE { OID, OCTET STRING(2) } } }
        let der = [0x30, 0x0b, 0xa6, 0x09, 0x30, 0x07, 0x06, 0x01, 0x2a, 0x04, 0x02, 0x01, 0x02];
        assert_eq!(find_fwid(&der, 0), Some(vec![1, 2]));
    }

    #[test]
    fn architectures_by_chip() {
        assert_eq!(architecture("GH100"), Some("HOPPER"));
        assert_eq!(architecture("GB100"), Some("BLACKWELL"));
        assert_eq!(architecture("LS_10"), Some("NVSWITCH"));
        assert_eq!(architecture("XY1"), None);
    }

    #[test]
    fn garbage_has_no_fwid() {
        assert_eq!(find_fwid(&[0x30, 0x80, 0x00], 0), None);
        assert_eq!(find_fwid(&[], 0), None);
    }
}
