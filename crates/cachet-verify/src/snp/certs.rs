//! AMD certificates for SEV-SNP: recognising endorsements by content, and
//! reading the VCEK/VLEK extensions defined by AMD's *Versioned Chip
//! Endorsement Key (VCEK) Certificate and KDS Interface Specification*
//! (publication 57230) and the VLEK specification (57371).
//!
//! Nothing here is trusted for being present: these helpers only extract
//! values; the chain to the pinned ARK is checked in [`super`].

use x509_parser::certificate::X509Certificate;
use x509_parser::x509::X509Name;

use crate::anchors::AmdProduct;
use crate::x509::{certs_from_pem, is_der_cert, parse_cert, parse_crl, pem_blocks, MAX_DER_LEN};
use crate::Endorsement;

use super::report::SigningKey;

/// AMD's enterprise arc: 1.3.6.1.4.1.3704.1.
const AMD_ARC: &str = "1.3.6.1.4.1.3704.1.";
/// structVersion (INTEGER).
pub const OID_STRUCT_VERSION: &str = "1.3.6.1.4.1.3704.1.1";
/// productName (IA5String), e.g. "Milan-B0", "Genoa", "Turin".
pub const OID_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
/// blSPL, teeSPL, snpSPL, spl_4..spl_7, ucodeSPL, fmcSPL: `…3704.1.3.N`.
pub const OID_SPL_PREFIX: &str = "1.3.6.1.4.1.3704.1.3.";
/// hwID: the chip ID the VCEK belongs to (VCEK only).
pub const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";
/// cspID: the cloud provider a VLEK was issued to (VLEK only).
pub const OID_CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";

/// Most certificates / CRLs taken from the endorsements (bounds chain building).
pub const MAX_POOL_CERTS: usize = 64;
/// Most CRLs considered.
pub const MAX_POOL_CRLS: usize = 16;

/// The endorsements sorted by what they are.
#[derive(Debug, Default, Clone)]
pub struct Pool {
    /// Every certificate found (DER), in order.
    pub certs: Vec<Vec<u8>>,
    /// Every CRL found (DER), in order.
    pub crls: Vec<Vec<u8>>,
    /// Endorsements that were neither (named, for the check detail).
    pub ignored: Vec<String>,
}

impl Pool {
    /// Recognise each endorsement by content: a DER certificate, a DER CRL,
    /// or PEM text holding certificates and/or CRLs (e.g. AMD's ASK+ARK
    /// `cert_chain`, or the ASK+ARK+ASVK bundle).
    pub fn from_endorsements(endorsements: &[Endorsement]) -> Pool {
        let mut pool = Pool::default();
        for e in endorsements {
            let pem_certs = certs_from_pem(&e.bytes);
            let pem_crls = pem_blocks(&e.bytes, "X509 CRL");
            if !pem_certs.is_empty() || !pem_crls.is_empty() {
                pem_certs.into_iter().for_each(|c| pool.add_cert(c));
                pem_crls.into_iter().for_each(|c| pool.add_crl(c));
            } else if e.bytes.len() <= MAX_DER_LEN && is_der_cert(&e.bytes) {
                pool.add_cert(e.bytes.clone());
            } else if e.bytes.len() <= MAX_DER_LEN && parse_crl(&e.bytes).is_ok() {
                pool.add_crl(e.bytes.clone());
            } else {
                pool.ignored.push(e.name.clone());
            }
        }
        pool
    }

    /// Add a certificate (DER), ignoring duplicates and anything past the limit.
    pub fn add_cert(&mut self, der: Vec<u8>) {
        if self.certs.len() < MAX_POOL_CERTS && !self.certs.contains(&der) {
            self.certs.push(der);
        }
    }

    fn add_crl(&mut self, der: Vec<u8>) {
        if self.crls.len() < MAX_POOL_CRLS && !self.crls.contains(&der) {
            self.crls.push(der);
        }
    }
}

/// The security patch levels a VCEK/VLEK certifies (`…3704.1.3.N`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSpl {
    /// `.3.1` blSPL.
    pub bootloader: Option<u8>,
    /// `.3.2` teeSPL.
    pub tee: Option<u8>,
    /// `.3.3` snpSPL.
    pub snp: Option<u8>,
    /// `.3.4`..`.3.7` reserved SPLs, indexed 4..=7 (slots 0..=3 unused).
    pub reserved: [Option<u8>; 8],
    /// `.3.8` ucodeSPL.
    pub microcode: Option<u8>,
    /// `.3.9` fmcSPL (Turin).
    pub fmc: Option<u8>,
}

/// What a versioned endorsement key certificate (VCEK or VLEK) says.
#[derive(Debug, Clone)]
pub struct VekCert {
    /// The certificate (DER).
    pub der: Vec<u8>,
    /// VCEK when it carries hwID, VLEK when it carries cspID.
    pub kind: SigningKey,
    /// productName extension (empty when absent).
    pub product_name: String,
    /// Common name of the issuer (e.g. "SEV-Milan", "SEV-VLEK-Genoa").
    pub issuer_cn: String,
    /// hwID (VCEK): raw bytes of the extension value.
    pub hwid: Option<Vec<u8>>,
    /// cspID (VLEK).
    pub csp_id: Option<String>,
    /// The certified TCB.
    pub spl: CertSpl,
    /// Raw serial number (serial 0 is real and allowed).
    pub raw_serial: Vec<u8>,
}

/// First common name of an X.509 name, if any.
pub fn common_name(name: &X509Name<'_>) -> Option<String> {
    name.iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string)
}

fn der_u8(value: &[u8], what: &str) -> Result<u8, String> {
    match x509_parser::der_parser::der::parse_der_integer(value) {
        Ok((&[], obj)) => match obj.as_u32() {
            Ok(v) if v <= 255 => Ok(v as u8),
            _ => Err(format!("{what} is not an integer in 0..=255")),
        },
        _ => Err(format!("{what} is not a DER INTEGER")),
    }
}

/// A DER string value: IA5String as the KDS specification says, but also
/// UTF8String or PrintableString (these are names, never compared bytewise
/// for trust; the chain is what is trusted).
fn der_string(value: &[u8], what: &str) -> Result<String, String> {
    use x509_parser::der_parser::der;
    let parsed =
        der::parse_der_ia5string(value).or_else(|_| der::parse_der_utf8string(value)).or_else(|_| der::parse_der_printablestring(value));
    match parsed {
        Ok((&[], obj)) => obj.as_str().map(str::to_string).map_err(|_| format!("{what} is not a string")),
        _ => Err(format!("{what} is not a DER IA5String")),
    }
}

/// hwID values are the raw chip ID (AMD KDS omits the OCTET STRING tag):
/// 64 bytes, or 8 on Turin. A tagged OCTET STRING is accepted too.
fn hwid_bytes(value: &[u8]) -> Vec<u8> {
    if value.len() == 64 || value.len() == 8 {
        return value.to_vec();
    }
    match x509_parser::der_parser::der::parse_der_octetstring(value) {
        Ok((&[], obj)) => obj.as_slice().map(<[u8]>::to_vec).unwrap_or_else(|_| value.to_vec()),
        _ => value.to_vec(),
    }
}

/// Read the AMD extensions of a certificate. `Ok(None)` when it is not a
/// versioned endorsement key certificate (a CA, or none of productName,
/// hwID, cspID).
pub fn vek_cert(der: &[u8]) -> Result<Option<VekCert>, String> {
    let cert = parse_cert(der)?;
    let is_vek = [OID_PRODUCT_NAME, OID_HWID, OID_CSP_ID].iter().any(|oid| has_ext(&cert, oid));
    if crate::x509::is_ca(&cert) || !is_vek {
        return Ok(None);
    }
    let mut product_name = None;
    let mut hwid = None;
    let mut csp_id = None;
    let mut spl = CertSpl::default();
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if !oid.starts_with(AMD_ARC) {
            continue;
        }
        let value = ext.value;
        if oid == OID_PRODUCT_NAME {
            product_name = Some(der_string(value, "productName")?);
        } else if oid == OID_HWID {
            hwid = Some(hwid_bytes(value));
        } else if oid == OID_CSP_ID {
            csp_id = Some(der_string(value, "cspID")?);
        } else if let Some(n) = oid.strip_prefix(OID_SPL_PREFIX) {
            let v = der_u8(value, &format!("SPL extension .3.{n}"))?;
            match n {
                "1" => spl.bootloader = Some(v),
                "2" => spl.tee = Some(v),
                "3" => spl.snp = Some(v),
                "4" => spl.reserved[4] = Some(v),
                "5" => spl.reserved[5] = Some(v),
                "6" => spl.reserved[6] = Some(v),
                "7" => spl.reserved[7] = Some(v),
                "8" => spl.microcode = Some(v),
                "9" => spl.fmc = Some(v),
                _ => {}
            }
        }
    }
    let kind = match (&hwid, &csp_id) {
        (Some(_), None) => SigningKey::Vcek,
        (None, Some(_)) => SigningKey::Vlek,
        (Some(_), Some(_)) => return Err("certificate carries both hwID and cspID".into()),
        (None, None) => return Err("AMD certificate carries neither hwID (VCEK) nor cspID (VLEK)".into()),
    };
    Ok(Some(VekCert {
        der: der.to_vec(),
        kind,
        product_name: product_name.unwrap_or_default(),
        issuer_cn: common_name(cert.issuer()).unwrap_or_default(),
        hwid,
        csp_id,
        spl,
        raw_serial: cert.raw_serial().to_vec(),
    }))
}

fn has_ext(cert: &X509Certificate<'_>, oid: &str) -> bool {
    cert.extensions().iter().any(|e| e.oid.to_id_string() == oid)
}

/// Product line named by a productName value ("Milan-B0" → Milan).
pub fn product_from_product_name(name: &str) -> Option<AmdProduct> {
    product_from_line(name.split('-').next().unwrap_or_default())
}

/// Product line from its exact name ("Milan", "Genoa", "Turin").
pub fn product_from_line(line: &str) -> Option<AmdProduct> {
    [AmdProduct::Milan, AmdProduct::Genoa, AmdProduct::Turin].into_iter().find(|p| p.name() == line)
}

/// Common name AMD gives the intermediate that issues this kind of key:
/// "SEV-Milan" (ASK, issues VCEKs) or "SEV-VLEK-Milan" (ASVK, issues VLEKs).
pub fn intermediate_cn(kind: SigningKey, product: AmdProduct) -> String {
    match kind {
        SigningKey::Vlek => format!("SEV-VLEK-{}", product.name()),
        _ => format!("SEV-{}", product.name()),
    }
}

/// Common name of the product's root: "ARK-Milan".
pub fn root_cn(product: AmdProduct) -> String {
    format!("ARK-{}", product.name())
}

/// Product line named by an intermediate's common name, for either role.
pub fn product_from_intermediate_cn(cn: &str) -> Option<AmdProduct> {
    let rest = cn.strip_prefix("SEV-")?;
    product_from_line(rest.strip_prefix("VLEK-").unwrap_or(rest))
}

/// The certificates in one certificate-table entry: DER as AMD and the
/// SNP_GET_EXT_REPORT ioctl give them (also when the host padded the entry
/// with zeros), or PEM text, which some hosts store and the kernel's
/// configfs-tsm `auxblob` passes through unchanged. Anything else yields
/// nothing (and is then named by the VCEK selection, not trusted).
pub fn entry_certs(body: &[u8]) -> Vec<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    if is_der_cert(body) {
        return vec![body.to_vec()];
    }
    if body.first() == Some(&0x30) {
        if let Ok((rest, _)) = X509Certificate::from_der(body) {
            let der = body.get(..body.len() - rest.len()).unwrap_or_default();
            if rest.iter().all(|b| *b == 0) && is_der_cert(der) {
                return vec![der.to_vec()];
            }
        }
        return Vec::new();
    }
    let text_end = body.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    certs_from_pem(body.get(..text_end).unwrap_or_default())
}

/// Extract certificates from the certificate table an extended report
/// (SNP_GET_EXT_REPORT) appends: 24-byte entries `{GUID, offset u32,
/// length u32}` ended by an all-zero entry, offsets from the table start.
pub fn certs_from_table(table: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    const ENTRY: usize = 24;
    const MAX_ENTRIES: usize = 16;
    let mut out = Vec::new();
    for i in 0..=MAX_ENTRIES {
        let e = table.get(i * ENTRY..(i + 1) * ENTRY).ok_or("certificate table ends without a terminating entry")?;
        let field = |a: usize| e.get(a..a + 4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_le_bytes);
        let (off, len) = (field(16).unwrap_or(0) as usize, field(20).unwrap_or(0) as usize);
        if e.iter().all(|b| *b == 0) {
            return Ok(out);
        }
        if i == MAX_ENTRIES {
            break;
        }
        let body = off
            .checked_add(len)
            .and_then(|end| table.get(off..end))
            .ok_or_else(|| format!("certificate table entry {i} points outside the table"))?;
        if body.iter().any(|b| *b != 0) {
            out.push(body.to_vec());
        }
    }
    Err(format!("certificate table has more than {MAX_ENTRIES} entries"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_names() {
        assert_eq!(product_from_product_name("Milan-B0"), Some(AmdProduct::Milan));
        assert_eq!(product_from_product_name("Genoa"), Some(AmdProduct::Genoa));
        assert_eq!(product_from_product_name("Turin-C1"), Some(AmdProduct::Turin));
        assert_eq!(product_from_product_name("Venice"), None);
        assert_eq!(product_from_intermediate_cn("SEV-VLEK-Genoa"), Some(AmdProduct::Genoa));
        assert_eq!(product_from_intermediate_cn("SEV-Turin"), Some(AmdProduct::Turin));
        assert_eq!(product_from_intermediate_cn("ARK-Turin"), None);
    }

    #[test]
    fn der_values() {
        assert_eq!(der_u8(&[2, 1, 0x73], "x"), Ok(0x73));
        assert_eq!(der_u8(&[2, 2, 0, 0xd3], "x"), Ok(0xd3));
        assert!(der_u8(&[2, 2, 1, 0], "x").is_err());
        assert!(der_u8(&[2, 1, 1, 0], "x").is_err());
        assert_eq!(der_string(b"\x16\x08Milan-B0", "x").as_deref(), Ok("Milan-B0"));
        assert_eq!(der_string(b"\x0c\x02ab", "x").as_deref(), Ok("ab"));
        assert!(der_string(b"\x02\x01\x01", "x").is_err());
        assert_eq!(hwid_bytes(&[4, 2, 9, 9]), vec![9, 9]);
    }

    #[test]
    fn cert_table_bounds() {
        assert_eq!(certs_from_table(&[0u8; 24]), Ok(vec![]));
        assert!(certs_from_table(&[0u8; 10]).is_err());
        let mut t = vec![1u8; 16];
        t.extend(48u32.to_le_bytes());
        t.extend(4u32.to_le_bytes());
        t.extend([0u8; 24]);
        t.extend([7u8; 4]);
        assert_eq!(certs_from_table(&t), Ok(vec![vec![7u8; 4]]));
        t[16] = 200;
        assert!(certs_from_table(&t).is_err());
    }
}
