//! Intel DCAP quote parsing: v3 (SGX), v4 (TDX) and v5 (SGX, TDX 1.0, TDX 1.5).
//!
//! Every structure is read by its declared length from a bounds-checked
//! reader, following Intel's Quote Verification Library (QVL) `Quote::parse`
//! and `Quote::validate`:
//!
//! ```text
//! v3/v4:  header(48) | body(384 SGX / 584 TD 1.0) | sig_len(u32) | signature data
//! v5:     header(48) | body_type(u16) | body_size(u32) | body | sig_len(u32) | signature data
//! signature data (v3):    sig(64) | attestation key(64) | QE report(384) | QE report sig(64)
//!                         | auth_len(u16) | auth data | cert type(u16) | cert size(u32) | cert data
//! signature data (v4/v5): sig(64) | attestation key(64) | cert type 6 (u16) | size(u32) |
//!                         [ QE report(384) | QE report sig(64) | auth_len(u16) | auth data
//!                           | cert type(u16) | cert size(u32) | cert data ]
//! ```
//!
//! Bytes after the declared signature data are ignored, as the QVL does
//! (real quotes arrive zero-padded to fixed-size buffers); they are not
//! covered by any signature and carry no meaning.

/// Length of the quote header.
pub const HEADER_LEN: usize = 48;
/// Length of an SGX enclave report (ISV enclave body, QE report).
pub const ENCLAVE_REPORT_LEN: usize = 384;
/// Length of a TDX 1.0 TD report body.
pub const TD_REPORT10_LEN: usize = 584;
/// Length of a TDX 1.5 TD report body.
pub const TD_REPORT15_LEN: usize = 648;
/// Header `tee_type` of SGX quotes.
pub const TEE_TYPE_SGX: u32 = 0x00;
/// Header `tee_type` of TDX quotes.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Attestation key type 2: ECDSA-256 with P-256 (the only one QVL accepts).
pub const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
/// Intel's QE vendor ID (`939A7233-F79C-4CA9-940A-0DB3957F0607`).
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07];
/// Certification data type 5: the PCK certificate chain, PEM.
pub const CERT_TYPE_PCK_CHAIN: u16 = 5;
/// Certification data type 6: QE report certification data (v4/v5 quotes).
pub const CERT_TYPE_QE_REPORT: u16 = 6;

/// Which TEE a quote is from (header `tee_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteTee {
    /// SGX enclave quote.
    Sgx,
    /// TDX trust-domain quote.
    Tdx,
}

impl QuoteTee {
    /// Lower-case name, as in claims.
    pub fn name(self) -> &'static str {
        match self {
            QuoteTee::Sgx => "sgx",
            QuoteTee::Tdx => "tdx",
        }
    }
}

/// The quote header (48 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Quote format version (3, 4 or 5).
    pub version: u16,
    /// Attestation key type (2 = ECDSA P-256).
    pub att_key_type: u16,
    /// TEE type (0 = SGX, 0x81 = TDX).
    pub tee_type: u32,
    /// QE SVN (v3 header; reserved in v4+).
    pub qe_svn: u16,
    /// PCE SVN (v3 header; reserved in v4+).
    pub pce_svn: u16,
    /// QE vendor ID.
    pub qe_vendor_id: [u8; 16],
    /// User data (for Intel's QE: the first 16 bytes are the QE ID).
    pub user_data: [u8; 20],
}

/// An SGX enclave report (the ISV enclave body of SGX quotes, and the QE report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveReport {
    /// CPUSVN at report time.
    pub cpu_svn: [u8; 16],
    /// MISCSELECT, as the little-endian bytes of the report.
    pub misc_select: [u8; 4],
    /// ISV extended product ID.
    pub isv_ext_prod_id: [u8; 16],
    /// ATTRIBUTES (flags || XFRM).
    pub attributes: [u8; 16],
    /// MRENCLAVE.
    pub mr_enclave: [u8; 32],
    /// MRSIGNER.
    pub mr_signer: [u8; 32],
    /// CONFIGID.
    pub config_id: [u8; 64],
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// CONFIGSVN.
    pub config_svn: u16,
    /// ISV family ID.
    pub isv_family_id: [u8; 16],
    /// REPORTDATA.
    pub report_data: [u8; 64],
}

impl EnclaveReport {
    /// SGX ATTRIBUTES.DEBUG (flags bit 1): the enclave can be inspected by a debugger.
    pub fn debug(&self) -> bool {
        self.attributes[0] & 0x02 != 0
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, String> {
        let cpu_svn = r.array()?;
        let misc_select = r.array()?;
        r.skip(12)?;
        let isv_ext_prod_id = r.array()?;
        let attributes = r.array()?;
        let mr_enclave = r.array()?;
        r.skip(32)?;
        let mr_signer = r.array()?;
        r.skip(32)?;
        let config_id = r.array()?;
        let isv_prod_id = r.u16()?;
        let isv_svn = r.u16()?;
        let config_svn = r.u16()?;
        r.skip(42)?;
        let isv_family_id = r.array()?;
        let report_data = r.array()?;
        Ok(Self {
            cpu_svn,
            misc_select,
            isv_ext_prod_id,
            attributes,
            mr_enclave,
            mr_signer,
            config_id,
            isv_prod_id,
            isv_svn,
            config_svn,
            isv_family_id,
            report_data,
        })
    }
}

/// A TDX TD report body (TDX 1.0; the 1.5 fields are `Some` for body type 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    /// TEE_TCB_SVN: [0] TDX module ISVSVN, [1] TDX module major version, [2..] TCB components.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM: measurement of the TDX module.
    pub mr_seam: [u8; 48],
    /// MRSIGNERSEAM: signer of the TDX module (zero for Intel's).
    pub mr_signer_seam: [u8; 48],
    /// SEAMATTRIBUTES (must be zero).
    pub seam_attributes: [u8; 8],
    /// TDATTRIBUTES (bit 0 = DEBUG).
    pub td_attributes: [u8; 8],
    /// XFAM.
    pub xfam: [u8; 8],
    /// MRTD: build-time measurement of the TD.
    pub mr_td: [u8; 48],
    /// MRCONFIGID.
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
    /// RTMR0..3: run-time measurement registers.
    pub rtmr: [[u8; 48]; 4],
    /// REPORTDATA.
    pub report_data: [u8; 64],
    /// TEE_TCB_SVN2 (TDX 1.5 only).
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// MRSERVICETD (TDX 1.5 only).
    pub mr_service_td: Option<[u8; 48]>,
}

impl TdReport {
    /// TDATTRIBUTES.DEBUG (bit 0): the TD runs in debug mode (host can read its state).
    pub fn debug(&self) -> bool {
        self.td_attributes[0] & 0x01 != 0
    }

    fn read(r: &mut Reader<'_>, v15: bool) -> Result<Self, String> {
        let tee_tcb_svn = r.array()?;
        let mr_seam = r.array()?;
        let mr_signer_seam = r.array()?;
        let seam_attributes = r.array()?;
        let td_attributes = r.array()?;
        let xfam = r.array()?;
        let mr_td = r.array()?;
        let mr_config_id = r.array()?;
        let mr_owner = r.array()?;
        let mr_owner_config = r.array()?;
        let rtmr = [r.array()?, r.array()?, r.array()?, r.array()?];
        let report_data = r.array()?;
        let (tee_tcb_svn2, mr_service_td) = if v15 { (Some(r.array()?), Some(r.array()?)) } else { (None, None) };
        Ok(Self {
            tee_tcb_svn,
            mr_seam,
            mr_signer_seam,
            seam_attributes,
            td_attributes,
            xfam,
            mr_td,
            mr_config_id,
            mr_owner,
            mr_owner_config,
            rtmr,
            report_data,
            tee_tcb_svn2,
            mr_service_td,
        })
    }
}

/// The attested body of a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// SGX enclave report.
    Sgx(EnclaveReport),
    /// TDX 1.0 TD report.
    Td10(TdReport),
    /// TDX 1.5 TD report (adds TEE_TCB_SVN2 and MRSERVICETD).
    Td15(TdReport),
}

impl Body {
    /// The v5 body type code (1 SGX, 2 TD 1.0, 3 TD 1.5).
    pub fn type_code(&self) -> u16 {
        match self {
            Body::Sgx(_) => 1,
            Body::Td10(_) => 2,
            Body::Td15(_) => 3,
        }
    }

    /// The TD report, for TDX bodies.
    pub fn td(&self) -> Option<&TdReport> {
        match self {
            Body::Td10(t) | Body::Td15(t) => Some(t),
            Body::Sgx(_) => None,
        }
    }
}

/// A parsed quote, borrowing the variable-length parts from the input.
#[derive(Debug, Clone)]
pub struct Quote<'a> {
    /// The header.
    pub header: Header,
    /// The attested body.
    pub body: Body,
    /// The bytes signed by the attestation key: header (+ v5 body descriptor) + body.
    pub signed: &'a [u8],
    /// ECDSA P-256 signature (r || s) by the attestation key over `signed`.
    pub signature: [u8; 64],
    /// The attestation public key (x || y).
    pub attestation_key: [u8; 64],
    /// The QE report, raw (what the PCK signs).
    pub qe_report_raw: &'a [u8],
    /// The QE report, parsed.
    pub qe_report: EnclaveReport,
    /// ECDSA P-256 signature (r || s) by the PCK key over the QE report.
    pub qe_report_signature: [u8; 64],
    /// QE authentication data (hashed into the QE report data).
    pub qe_auth_data: &'a [u8],
    /// Type of the inner certification data (5 = PCK chain).
    pub cert_data_type: u16,
    /// The inner certification data (for type 5: a PEM chain).
    pub cert_data: &'a [u8],
    /// Bytes after the declared signature data (ignored padding).
    pub trailing_len: usize,
}

impl Quote<'_> {
    /// The TEE this quote is from.
    pub fn tee(&self) -> QuoteTee {
        if self.header.tee_type == TEE_TYPE_TDX {
            QuoteTee::Tdx
        } else {
            QuoteTee::Sgx
        }
    }

    /// A one-line description for the "Quote format" check.
    pub fn describe(&self) -> String {
        let body = match self.body {
            Body::Sgx(_) => "SGX enclave report",
            Body::Td10(_) => "TDX 1.0 TD report",
            Body::Td15(_) => "TDX 1.5 TD report",
        };
        let mut s = format!(
            "v{} {} quote, {body}, certification data type {}",
            self.header.version,
            self.tee().name().to_uppercase(),
            self.cert_data_type
        );
        if self.trailing_len > 0 {
            s.push_str(&format!(", {} unsigned trailing bytes ignored", self.trailing_len));
        }
        s
    }
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| format!("truncated: needs {n} bytes at offset {}, {} available", self.pos, self.remaining()))?;
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        self.take(n).map(|_| ())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

/// The parts of the QE report certification data (type 6 in v4/v5, inline in v3).
struct QeParts<'a> {
    qe_report_raw: &'a [u8],
    qe_report: EnclaveReport,
    qe_report_signature: [u8; 64],
    qe_auth_data: &'a [u8],
    cert_data_type: u16,
    cert_data: &'a [u8],
}

fn read_qe_parts<'a>(r: &mut Reader<'a>) -> Result<QeParts<'a>, String> {
    let qe_report_raw = r.take(ENCLAVE_REPORT_LEN)?;
    let qe_report = EnclaveReport::read(&mut Reader::new(qe_report_raw))?;
    let qe_report_signature = r.array()?;
    let auth_len = r.u16()?;
    let qe_auth_data = r.take(usize::from(auth_len)).map_err(|e| format!("QE authentication data: {e}"))?;
    let cert_data_type = r.u16()?;
    let cert_len = r.u32()?;
    let cert_data = r.take(cert_len as usize).map_err(|e| format!("certification data: {e}"))?;
    Ok(QeParts { qe_report_raw, qe_report, qe_report_signature, qe_auth_data, cert_data_type, cert_data })
}

/// Parse a quote by its declared lengths. Structural problems only; the
/// semantic checks of QVL's `Quote::validate` are in [`validate`].
pub fn parse(raw: &[u8]) -> Result<Quote<'_>, String> {
    let mut r = Reader::new(raw);
    let mut h = Reader::new(r.take(HEADER_LEN).map_err(|e| format!("header: {e}"))?);
    let header = Header {
        version: h.u16()?,
        att_key_type: h.u16()?,
        tee_type: h.u32()?,
        qe_svn: h.u16()?,
        pce_svn: h.u16()?,
        qe_vendor_id: h.array()?,
        user_data: h.array()?,
    };
    let body = match header.version {
        3 | 4 => {
            if header.tee_type == TEE_TYPE_TDX {
                Body::Td10(TdReport::read(&mut r, false).map_err(|e| format!("TD report: {e}"))?)
            } else {
                Body::Sgx(EnclaveReport::read(&mut r).map_err(|e| format!("enclave report: {e}"))?)
            }
        }
        5 => {
            let body_type = r.u16().map_err(|e| format!("body type: {e}"))?;
            let body_len = r.u32().map_err(|e| format!("body size: {e}"))? as usize;
            let (expect, what) = match body_type {
                1 => (ENCLAVE_REPORT_LEN, "SGX enclave report"),
                2 => (TD_REPORT10_LEN, "TD report 1.0"),
                3 => (TD_REPORT15_LEN, "TD report 1.5"),
                t => return Err(format!("unknown v5 body type {t}")),
            };
            if body_len != expect {
                return Err(format!("{what} declared {body_len} bytes, expected {expect}"));
            }
            let mut b = Reader::new(r.take(body_len).map_err(|e| format!("body: {e}"))?);
            match body_type {
                1 => Body::Sgx(EnclaveReport::read(&mut b)?),
                2 => Body::Td10(TdReport::read(&mut b, false)?),
                _ => Body::Td15(TdReport::read(&mut b, true)?),
            }
        }
        v => return Err(format!("unsupported quote version {v} (supported: 3, 4, 5)")),
    };
    let signed = raw.get(..r.pos).ok_or("internal: signed range")?;
    let sig_len = r.u32().map_err(|e| format!("signature data length: {e}"))? as usize;
    let sig_data = r.take(sig_len).map_err(|e| format!("signature data: {e}"))?;
    let trailing_len = r.remaining();

    let mut s = Reader::new(sig_data);
    let signature = s.array().map_err(|e| format!("quote signature: {e}"))?;
    let attestation_key = s.array().map_err(|e| format!("attestation key: {e}"))?;
    let parts = if header.version == 3 {
        read_qe_parts(&mut s)?
    } else {
        let outer_type = s.u16().map_err(|e| format!("certification data type: {e}"))?;
        if outer_type != CERT_TYPE_QE_REPORT {
            return Err(format!(
                "v{} quotes carry certification data type {CERT_TYPE_QE_REPORT} (QE report), found {outer_type}",
                header.version
            ));
        }
        let outer_len = s.u32().map_err(|e| format!("certification data size: {e}"))? as usize;
        let outer = s.take(outer_len).map_err(|e| format!("QE report certification data: {e}"))?;
        let mut o = Reader::new(outer);
        let parts = read_qe_parts(&mut o)?;
        if o.remaining() != 0 {
            return Err(format!("{} unexpected bytes inside the QE report certification data", o.remaining()));
        }
        parts
    };
    if s.remaining() != 0 {
        return Err(format!("signature data declares {sig_len} bytes but its structure ends {} bytes early", s.remaining()));
    }
    Ok(Quote {
        header,
        body,
        signed,
        signature,
        attestation_key,
        qe_report_raw: parts.qe_report_raw,
        qe_report: parts.qe_report,
        qe_report_signature: parts.qe_report_signature,
        qe_auth_data: parts.qe_auth_data,
        cert_data_type: parts.cert_data_type,
        cert_data: parts.cert_data,
        trailing_len,
    })
}

/// QVL's `Quote::validate`, plus the TEE the caller asked for.
pub fn validate(q: &Quote<'_>, want: QuoteTee) -> Result<(), String> {
    let h = &q.header;
    if h.att_key_type != ATT_KEY_TYPE_ECDSA_P256 {
        return Err(format!("attestation key type {} is not supported (only 2, ECDSA P-256)", h.att_key_type));
    }
    let tee = match h.tee_type {
        TEE_TYPE_SGX => QuoteTee::Sgx,
        TEE_TYPE_TDX => QuoteTee::Tdx,
        t => return Err(format!("unknown TEE type {t:#x}")),
    };
    if h.qe_vendor_id != INTEL_QE_VENDOR_ID {
        return Err(format!("QE vendor ID {} is not Intel's", hex::encode(h.qe_vendor_id)));
    }
    if h.version == 3 && tee != QuoteTee::Sgx {
        return Err("v3 quotes are SGX only".into());
    }
    let body_is_sgx = matches!(q.body, Body::Sgx(_));
    if body_is_sgx != (tee == QuoteTee::Sgx) {
        return Err(format!("body type {} does not match TEE type {:#x}", q.body.type_code(), h.tee_type));
    }
    if !(1..=5).contains(&q.cert_data_type) {
        return Err(format!("certification data type {} is not supported (1 to 5)", q.cert_data_type));
    }
    if tee != want {
        return Err(format!("this is an {} quote, not {}", tee.name().to_uppercase(), want.name().to_uppercase()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(version: u16, tee: u32) -> Vec<u8> {
        let mut q = Vec::new();
        q.extend_from_slice(&version.to_le_bytes());
        q.extend_from_slice(&2u16.to_le_bytes());
        q.extend_from_slice(&tee.to_le_bytes());
        q.extend_from_slice(&[0; 4]);
        q.extend_from_slice(&INTEL_QE_VENDOR_ID);
        q.extend_from_slice(&[0; 20]);
        let body = if tee == TEE_TYPE_TDX { TD_REPORT10_LEN } else { ENCLAVE_REPORT_LEN };
        q.extend(std::iter::repeat_n(0u8, body));
        let cert = b"PEM";
        let mut inner = vec![0u8; ENCLAVE_REPORT_LEN + 64];
        inner.extend_from_slice(&0u16.to_le_bytes());
        inner.extend_from_slice(&5u16.to_le_bytes());
        inner.extend_from_slice(&(cert.len() as u32).to_le_bytes());
        inner.extend_from_slice(cert);
        let mut sig = vec![0u8; 128];
        if version == 3 {
            sig.extend_from_slice(&inner);
        } else {
            sig.extend_from_slice(&6u16.to_le_bytes());
            sig.extend_from_slice(&(inner.len() as u32).to_le_bytes());
            sig.extend_from_slice(&inner);
        }
        q.extend_from_slice(&(sig.len() as u32).to_le_bytes());
        q.extend_from_slice(&sig);
        q
    }

    #[test]
    fn parses_minimal_v3_and_v4_and_ignores_padding() {
        let q3 = minimal(3, TEE_TYPE_SGX);
        let p = parse(&q3).expect("v3");
        assert_eq!(p.cert_data, b"PEM");
        assert_eq!(p.signed.len(), HEADER_LEN + ENCLAVE_REPORT_LEN);
        validate(&p, QuoteTee::Sgx).expect("valid");
        let mut q4 = minimal(4, TEE_TYPE_TDX);
        q4.extend_from_slice(&[0; 100]);
        let p = parse(&q4).expect("v4");
        assert_eq!(p.trailing_len, 100);
        assert!(validate(&p, QuoteTee::Sgx).is_err(), "TDX quote verified as SGX");
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let q = minimal(4, TEE_TYPE_TDX);
        for n in 0..q.len() {
            assert!(parse(&q[..n]).is_err(), "truncated to {n} parsed");
        }
    }

    #[test]
    fn declared_lengths_must_agree() {
        let mut q = minimal(4, TEE_TYPE_TDX);
        // Grow the outer signature-data length by one and append a byte: the
        // structure then ends early and must be refused.
        let off = HEADER_LEN + TD_REPORT10_LEN;
        let len = u32::from_le_bytes([q[off], q[off + 1], q[off + 2], q[off + 3]]) + 1;
        q[off..off + 4].copy_from_slice(&len.to_le_bytes());
        q.push(0);
        assert!(parse(&q).unwrap_err().contains("ends 1 bytes early"));
    }
}
