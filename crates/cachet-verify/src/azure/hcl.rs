//! The Azure HCL (paravisor) attestation report, as the vTPM exposes it at
//! NV index `0x01400001`.
//!
//! Layout (little-endian; OpenHCL `openhcl_attestation_protocol`
//! `IgvmAttestRequestBase` / `CvmAttestationReport`, and
//! kinvolk/azure-cvm-tooling `az-cvm-vtpm/src/hcl`):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0    | 4    | signature `HCLA` (0x414c4348) |
//! | 4    | 4    | version (1, 2) |
//! | 8    | 4    | report_size: bytes up to the end of the runtime data |
//! | 12   | 4    | request_type (1 key release, 2 AK certificate, 3 wrapped key) |
//! | 16   | 4    | status (0 = success) |
//! | 20   | 12   | reserved |
//! | 32   | 1184 | hardware report: SEV-SNP `ATTESTATION_REPORT` (1184 bytes) or TDX `TDREPORT` (1024 bytes, zero-padded) |
//! | 1216 | 4    | data_size: 20 + variable_data_size |
//! | 1220 | 4    | version (1, 2) |
//! | 1224 | 4    | report_type (2 SNP, 4 TDX; 1 VBS and 3 TVM carry no hardware report) |
//! | 1228 | 4    | report_data_hash_type (1 SHA-256, 2 SHA-384, 3 SHA-512) |
//! | 1232 | 4    | variable_data_size |
//! | 1236 | n    | variable data: the runtime claims JSON ("var_data") |
//!
//! The header and request data are not measured; what binds the runtime
//! claims (and with them the vTPM attestation key) to the hardware is that
//! `H(var_data)` fills the hardware report's `report_data` (the rest zero).
//! The vTPM stores the report in a fixed-size NV index, so zero padding may
//! follow `report_size`.

use crate::tpm::quote::HashAlg;

/// `IgvmAttestRequestHeader`.
pub const HEADER_LEN: usize = 32;
/// Room for the hardware report (the SEV-SNP report size).
pub const HW_REPORT_LEN: usize = 1184;
/// A TDX `TDREPORT_STRUCT`.
pub const TD_REPORT_LEN: usize = 1024;
/// `IgvmAttestRequestData` without the variable data.
pub const REQUEST_DATA_LEN: usize = 20;
/// Where the hardware report starts.
pub const HW_REPORT_OFFSET: usize = HEADER_LEN;
/// Where the request data starts.
pub const REQUEST_DATA_OFFSET: usize = HEADER_LEN + HW_REPORT_LEN;
/// Where the runtime claims (var_data) start.
pub const VAR_DATA_OFFSET: usize = REQUEST_DATA_OFFSET + REQUEST_DATA_LEN;
/// Largest HCL report accepted (the NV index is 2600 bytes; runtime claims
/// are a few KiB).
pub const MAX_HCL_REPORT_LEN: usize = 64 * 1024;

/// The hardware report an HCL report wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HwKind {
    /// AMD SEV-SNP attestation report (report type 2).
    Snp,
    /// Intel TDX TDREPORT (report type 4).
    Tdx,
}

impl HwKind {
    /// The IGVM report type code.
    pub fn code(self) -> u32 {
        match self {
            HwKind::Snp => 2,
            HwKind::Tdx => 4,
        }
    }

    /// Name for claims and messages.
    pub fn name(self) -> &'static str {
        match self {
            HwKind::Snp => "snp",
            HwKind::Tdx => "tdx",
        }
    }
}

/// A parsed HCL report, borrowing from the input.
#[derive(Debug, Clone)]
pub struct HclReport<'a> {
    /// Header version (1..=2). Unsigned: checked, never a claim.
    pub version: u32,
    /// Header report_size.
    pub report_size: u32,
    /// Header request_type (1..=3). Unsigned: checked, never a claim.
    pub request_type: u32,
    /// The hardware report: 1184 bytes for SNP, the 1024-byte TDREPORT for TDX.
    pub hw_report: &'a [u8],
    /// Request data version.
    pub data_version: u32,
    /// Which hardware report this is.
    pub kind: HwKind,
    /// The hash of var_data that fills the hardware report_data.
    pub hash: HashAlg,
    /// The runtime claims JSON, exactly as hashed.
    pub var_data: &'a [u8],
}

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_le_bytes).unwrap_or(0)
}

/// Parse and validate an HCL report: signature, versions, status, the sizes
/// (which must agree with each other and with the input), report type, hash
/// type, zero padding after the report and after a TDREPORT.
pub fn parse(b: &[u8]) -> Result<HclReport<'_>, String> {
    if b.len() < VAR_DATA_OFFSET {
        return Err(format!("{} bytes; an HCL report has at least {VAR_DATA_OFFSET}", b.len()));
    }
    if b.len() > MAX_HCL_REPORT_LEN {
        return Err(format!("{} bytes exceeds the {MAX_HCL_REPORT_LEN}-byte limit", b.len()));
    }
    if !b.starts_with(b"HCLA") {
        return Err(format!("signature {} is not 'HCLA'", hex::encode(b.get(..4).unwrap_or_default())));
    }
    let version = le32(b, 4);
    if !(1..=2).contains(&version) {
        return Err(format!("header version {version} is not 1 or 2"));
    }
    let report_size = le32(b, 8);
    let request_type = le32(b, 12);
    // Not covered by any signature: only the documented values are let
    // through, and the value is not reported as a claim.
    if !(1..=3).contains(&request_type) {
        return Err(format!("request type {request_type} is not 1 (key release), 2 (AK certificate) or 3 (wrapped key)"));
    }
    let status = le32(b, 16);
    if status != 0 {
        return Err(format!("status {status:#x}: the HCL did not produce a report"));
    }
    let data_size = le32(b, REQUEST_DATA_OFFSET);
    let data_version = le32(b, REQUEST_DATA_OFFSET + 4);
    let report_type = le32(b, REQUEST_DATA_OFFSET + 8);
    let hash_type = le32(b, REQUEST_DATA_OFFSET + 12);
    let var_size = le32(b, REQUEST_DATA_OFFSET + 16) as usize;
    if !(1..=2).contains(&data_version) {
        return Err(format!("request data version {data_version} is not 1 or 2"));
    }
    let kind = match report_type {
        2 => HwKind::Snp,
        4 => HwKind::Tdx,
        1 => return Err("report type 1 (VBS) has no SEV-SNP or TDX report".into()),
        3 => return Err("report type 3 (trusted launch VM) has no hardware report".into()),
        t => return Err(format!("unknown report type {t}")),
    };
    let hash = match hash_type {
        1 => HashAlg::Sha256,
        2 => HashAlg::Sha384,
        3 => HashAlg::Sha512,
        t => return Err(format!("unknown report data hash type {t}")),
    };
    if var_size == 0 {
        return Err("no runtime data (variable_data_size 0)".into());
    }
    let end = VAR_DATA_OFFSET
        .checked_add(var_size)
        .filter(|e| *e <= b.len())
        .ok_or_else(|| format!("runtime data of {var_size} bytes runs past the {}-byte report", b.len()))?;
    if data_size as usize != REQUEST_DATA_LEN + var_size {
        return Err(format!("request data size {data_size} is not {REQUEST_DATA_LEN} + runtime data size {var_size}"));
    }
    if report_size as usize != end {
        return Err(format!("report size {report_size} is not {VAR_DATA_OFFSET} + runtime data size {var_size} = {end}"));
    }
    let padding = b.get(end..).unwrap_or_default();
    if padding.iter().any(|x| *x != 0) {
        return Err(format!("the {} bytes after the report are not zero padding", padding.len()));
    }
    let hw_full = b.get(HW_REPORT_OFFSET..REQUEST_DATA_OFFSET).unwrap_or_default();
    let hw_report = match kind {
        HwKind::Snp => hw_full,
        HwKind::Tdx => {
            let (td, pad) = hw_full.split_at_checked(TD_REPORT_LEN).ok_or("hardware report area too short")?;
            if pad.iter().any(|x| *x != 0) {
                return Err("the bytes after the 1024-byte TDREPORT are not zero".into());
            }
            td
        }
    };
    let var_data = b.get(VAR_DATA_OFFSET..end).unwrap_or_default();
    Ok(HclReport { version, report_size, request_type, hw_report, data_version, kind, hash, var_data })
}

/// Check that `report_data` (the signed hardware field) is `H(var_data)`
/// followed by zeros.
pub fn check_binding(hcl: &HclReport<'_>, report_data: &[u8]) -> Result<String, String> {
    let digest = hcl.hash.digest(hcl.var_data);
    let (head, rest) = report_data
        .split_at_checked(digest.len())
        .ok_or_else(|| format!("report_data has {} bytes, fewer than a {} digest", report_data.len(), hcl.hash.name()))?;
    if head != digest.as_slice() {
        return Err(format!(
            "{}(runtime data) = {} but the hardware report_data begins {}",
            hcl.hash.name(),
            hex::encode(&digest),
            hex::encode(head)
        ));
    }
    if rest.iter().any(|x| *x != 0) {
        return Err(format!("report_data after the {} digest is not zero: {}", hcl.hash.name(), hex::encode(rest)));
    }
    Ok(format!("report_data = {}(runtime data) = {}", hcl.hash.name(), hex::encode(&digest)))
}

/// The fields of a TDX `TDREPORT_STRUCT` a TD quote body repeats (Intel TDX
/// module ABI: REPORTMACSTRUCT, TEE_TCB_INFO, TDINFO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReportFields<'a> {
    /// REPORTTYPE.TYPE (0x81 for TDX).
    pub report_type: u8,
    /// REPORTDATA.
    pub report_data: &'a [u8],
    /// TEE_TCB_INFO.TEE_TCB_SVN.
    pub tee_tcb_svn: &'a [u8],
    /// TEE_TCB_INFO.MRSEAM.
    pub mr_seam: &'a [u8],
    /// TEE_TCB_INFO.MRSIGNERSEAM.
    pub mr_signer_seam: &'a [u8],
    /// TEE_TCB_INFO.ATTRIBUTES (SEAM attributes).
    pub seam_attributes: &'a [u8],
    /// TEE_TCB_INFO.TEE_TCB_SVN2 (TDX 1.5).
    pub tee_tcb_svn2: &'a [u8],
    /// TDINFO.ATTRIBUTES.
    pub td_attributes: &'a [u8],
    /// TDINFO.XFAM.
    pub xfam: &'a [u8],
    /// TDINFO.MRTD.
    pub mr_td: &'a [u8],
    /// TDINFO.MRCONFIGID.
    pub mr_config_id: &'a [u8],
    /// TDINFO.MROWNER.
    pub mr_owner: &'a [u8],
    /// TDINFO.MROWNERCONFIG.
    pub mr_owner_config: &'a [u8],
    /// TDINFO.RTMR[0..4].
    pub rtmr: [&'a [u8]; 4],
    /// TDINFO.SERVTD_HASH (TDX 1.5).
    pub mr_service_td: &'a [u8],
}

/// Read the fields of a 1024-byte TDREPORT.
pub fn td_report_fields(td: &[u8]) -> Result<TdReportFields<'_>, String> {
    if td.len() != TD_REPORT_LEN {
        return Err(format!("TDREPORT has {} bytes, not {TD_REPORT_LEN}", td.len()));
    }
    let f = |at: usize, len: usize| td.get(at..at + len).unwrap_or_default();
    const TCB: usize = 256;
    const INFO: usize = 512;
    Ok(TdReportFields {
        report_type: td.first().copied().unwrap_or(0),
        report_data: f(128, 64),
        tee_tcb_svn: f(TCB + 8, 16),
        mr_seam: f(TCB + 24, 48),
        mr_signer_seam: f(TCB + 72, 48),
        seam_attributes: f(TCB + 120, 8),
        tee_tcb_svn2: f(TCB + 128, 16),
        td_attributes: f(INFO, 8),
        xfam: f(INFO + 8, 8),
        mr_td: f(INFO + 16, 48),
        mr_config_id: f(INFO + 64, 48),
        mr_owner: f(INFO + 112, 48),
        mr_owner_config: f(INFO + 160, 48),
        rtmr: [f(INFO + 208, 48), f(INFO + 256, 48), f(INFO + 304, 48), f(INFO + 352, 48)],
        mr_service_td: f(INFO + 400, 48),
    })
}

/// Compare the HCL's TDREPORT with the body of the TD quote made from it:
/// every field the quote repeats must be equal (the TDREPORT itself carries
/// only a platform MAC, so the quote is what makes it genuine).
pub fn check_td_report(td: &[u8], body: &crate::dcap::quote::TdReport) -> Result<(), String> {
    let r = td_report_fields(td)?;
    if r.report_type != 0x81 {
        return Err(format!("TDREPORT type {:#04x} is not TDX (0x81)", r.report_type));
    }
    let mut pairs: Vec<(&str, &[u8], &[u8])> = vec![
        ("REPORTDATA", r.report_data, &body.report_data),
        ("TEE_TCB_SVN", r.tee_tcb_svn, &body.tee_tcb_svn),
        ("MRSEAM", r.mr_seam, &body.mr_seam),
        ("MRSIGNERSEAM", r.mr_signer_seam, &body.mr_signer_seam),
        ("SEAMATTRIBUTES", r.seam_attributes, &body.seam_attributes),
        ("TDATTRIBUTES", r.td_attributes, &body.td_attributes),
        ("XFAM", r.xfam, &body.xfam),
        ("MRTD", r.mr_td, &body.mr_td),
        ("MRCONFIGID", r.mr_config_id, &body.mr_config_id),
        ("MROWNER", r.mr_owner, &body.mr_owner),
        ("MROWNERCONFIG", r.mr_owner_config, &body.mr_owner_config),
        ("RTMR0", r.rtmr[0], &body.rtmr[0]),
        ("RTMR1", r.rtmr[1], &body.rtmr[1]),
        ("RTMR2", r.rtmr[2], &body.rtmr[2]),
        ("RTMR3", r.rtmr[3], &body.rtmr[3]),
    ];
    if let Some(s) = &body.tee_tcb_svn2 {
        pairs.push(("TEE_TCB_SVN2", r.tee_tcb_svn2, s));
    }
    if let Some(m) = &body.mr_service_td {
        pairs.push(("MRSERVICETD", r.mr_service_td, m));
    }
    let differ: Vec<String> = pairs
        .iter()
        .filter(|(_, a, b)| a != b)
        .map(|(n, a, b)| format!("{n}: HCL TDREPORT {} vs TD quote {}", hex::encode(a), hex::encode(b)))
        .collect();
    if differ.is_empty() {
        Ok(())
    } else {
        Err(format!("the HCL's TDREPORT is not the TD report the quote signs: {}", differ.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal well-formed HCL report around `var` (SHA-256, SNP).
    fn build(var: &[u8], pad: usize) -> Vec<u8> {
        let mut b = vec![0u8; VAR_DATA_OFFSET];
        b[..4].copy_from_slice(b"HCLA");
        b[4..8].copy_from_slice(&2u32.to_le_bytes());
        b[8..12].copy_from_slice(&((VAR_DATA_OFFSET + var.len()) as u32).to_le_bytes());
        b[12..16].copy_from_slice(&2u32.to_le_bytes());
        let d = REQUEST_DATA_OFFSET;
        b[d..d + 4].copy_from_slice(&((REQUEST_DATA_LEN + var.len()) as u32).to_le_bytes());
        b[d + 4..d + 8].copy_from_slice(&1u32.to_le_bytes());
        b[d + 8..d + 12].copy_from_slice(&2u32.to_le_bytes());
        b[d + 12..d + 16].copy_from_slice(&1u32.to_le_bytes());
        b[d + 16..d + 20].copy_from_slice(&(var.len() as u32).to_le_bytes());
        b.extend_from_slice(var);
        b.extend(std::iter::repeat_n(0u8, pad));
        b
    }

    fn set32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn parses_a_well_formed_report() {
        let b = build(b"{}", 100);
        let r = parse(&b).unwrap();
        assert_eq!(r.kind, HwKind::Snp);
        assert_eq!(r.var_data, b"{}");
        assert_eq!(r.hw_report.len(), HW_REPORT_LEN);
        assert_eq!(r.hash, HashAlg::Sha256);
    }

    #[test]
    fn refuses_each_malformation() {
        let good = build(b"{}", 8);
        let bad = |f: &dyn Fn(&mut Vec<u8>), what: &str| {
            let mut b = good.clone();
            f(&mut b);
            let e = parse(&b).expect_err(what);
            assert!(e.contains(what), "{what}: {e}");
        };
        bad(&|b| b[0] = b'X', "signature");
        bad(&|b| set32(b, 4, 3), "header version");
        bad(&|b| set32(b, 16, 1), "status");
        bad(&|b| set32(b, 12, 0), "request type 0");
        bad(&|b| set32(b, 12, 8390146), "request type 8390146");
        bad(&|b| set32(b, 8, 1), "report size");
        bad(&|b| set32(b, REQUEST_DATA_OFFSET, 5), "request data size");
        bad(&|b| set32(b, REQUEST_DATA_OFFSET + 4, 9), "request data version");
        bad(&|b| set32(b, REQUEST_DATA_OFFSET + 8, 3), "report type 3");
        bad(&|b| set32(b, REQUEST_DATA_OFFSET + 8, 7), "unknown report type");
        bad(&|b| set32(b, REQUEST_DATA_OFFSET + 12, 0), "hash type");
        bad(&|b| set32(b, REQUEST_DATA_OFFSET + 16, 1000), "runs past");
        bad(&|b| set32(b, REQUEST_DATA_OFFSET + 16, 0), "no runtime data");
        bad(&|b| *b.last_mut().unwrap() = 1, "zero padding");
        bad(&|b| b.truncate(100), "at least");
        // TDX: the area after the TDREPORT must be zero.
        bad(
            &|b| {
                set32(b, REQUEST_DATA_OFFSET + 8, 4);
                b[HW_REPORT_OFFSET + TD_REPORT_LEN] = 1;
            },
            "TDREPORT",
        );
    }

    #[test]
    fn binding_needs_digest_then_zeros() {
        let b = build(b"{\"a\":1}", 0);
        let r = parse(&b).unwrap();
        let mut rd = [0u8; 64];
        rd[..32].copy_from_slice(&HashAlg::Sha256.digest(b"{\"a\":1}"));
        assert!(check_binding(&r, &rd).is_ok());
        let mut tail = rd;
        tail[40] = 1;
        assert!(check_binding(&r, &tail).unwrap_err().contains("not zero"));
        let mut head = rd;
        head[0] ^= 1;
        assert!(check_binding(&r, &head).is_err());
        assert!(check_binding(&r, &rd[..16]).is_err());
    }
}
