//! `/dev/sev-guest`: SEV-SNP attestation reports through the guest
//! driver's ioctls (include/uapi/linux/sev-guest.h), for kernels without
//! configfs-tsm.
//!
//! `SNP_GET_EXT_REPORT` is tried first (report plus the host's certificate
//! table: VCEK/VLEK, ASK, ARK); when the kernel or host does not offer it,
//! `SNP_GET_REPORT` (report only; the service then needs the VCEK from
//! elsewhere). Both ask the PSP for a report whose REPORT_DATA is
//! `SHA-512(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)`.
//!
//! Not exercised on this build machine (it is no SEV-SNP guest): the
//! structures follow the uapi header, and the response parsing is unit tested.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use cachet_verify::Tee;

use crate::source::{BindingInput, CollectError, Evidence, EvidenceSource};

const NAME: &str = "sev-guest";
/// The device.
pub const DEVICE: &str = "/dev/sev-guest";
/// SEV-SNP attestation report size (ABI spec, Table 22).
pub const REPORT_LEN: usize = 1184;
/// Largest certificate buffer offered to SNP_GET_EXT_REPORT.
const MAX_CERTS: usize = 64 << 10;
const PAGE: usize = 4096;

#[repr(C)]
#[derive(Clone, Copy)]
struct SnpReportReq {
    user_data: [u8; 64],
    vmpl: u32,
    rsvd: [u8; 28],
}

#[repr(C)]
struct SnpReportResp {
    data: [u8; 4000],
}

#[repr(C)]
struct SnpExtReportReq {
    data: SnpReportReq,
    certs_address: u64,
    certs_len: u32,
}

#[repr(C)]
struct SnpGuestRequestIoctl {
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    exitinfo2: u64,
}

nix::ioctl_readwrite!(
    /// `SNP_GET_REPORT` (`_IOWR('S', 0x0, struct snp_guest_request_ioctl)`).
    snp_get_report, b'S', 0x0, SnpGuestRequestIoctl
);
nix::ioctl_readwrite!(
    /// `SNP_GET_EXT_REPORT` (`_IOWR('S', 0x2, struct snp_guest_request_ioctl)`).
    snp_get_ext_report, b'S', 0x2, SnpGuestRequestIoctl
);

/// The VMM error meaning "certificate buffer too small" (length updated).
const VMM_ERR_INVALID_LEN: u64 = 1;

/// The `/dev/sev-guest` back-end.
#[derive(Debug, Clone)]
pub struct SevGuest {
    /// The device ([`DEVICE`]).
    pub device: PathBuf,
    /// The VMPL to request the report for (0 unless the guest runs under an SVSM).
    pub vmpl: u32,
}

impl Default for SevGuest {
    fn default() -> Self {
        Self { device: PathBuf::from(DEVICE), vmpl: 0 }
    }
}

impl EvidenceSource for SevGuest {
    fn name(&self) -> &'static str {
        NAME
    }

    fn collect(&self, input: &BindingInput<'_>) -> Result<Evidence, CollectError> {
        let dev = std::fs::OpenOptions::new().read(true).write(true).open(&self.device).map_err(CollectError::io(NAME, &self.device))?;
        let req = SnpReportReq { user_data: input.report_data(), vmpl: self.vmpl, rsvd: [0; 28] };
        let (resp, certs) = match ext_report(dev.as_raw_fd(), req) {
            Ok(r) => r,
            Err(_) => (report(dev.as_raw_fd(), req)?, Vec::new()),
        };
        let mut evidence = parse_report_response(&resp).map_err(|m| CollectError::failed(NAME, m))?.to_vec();
        if certs.iter().any(|b| *b != 0) {
            evidence.extend_from_slice(&certs);
        }
        Ok(Evidence { tee: Tee::Snp, evidence, endorsements: Vec::new(), backend: NAME })
    }
}

fn ioctl_error(call: &str, e: nix::Error, exitinfo2: u64) -> CollectError {
    CollectError::failed(NAME, format!("{call}: {e} (firmware error {:#x}, VMM error {:#x})", exitinfo2 & 0xffff_ffff, exitinfo2 >> 32))
}

/// SNP_GET_REPORT: the response message.
fn report(fd: i32, mut req: SnpReportReq) -> Result<Vec<u8>, CollectError> {
    let mut resp = SnpReportResp { data: [0; 4000] };
    let mut io = SnpGuestRequestIoctl {
        msg_version: 1,
        req_data: std::ptr::addr_of_mut!(req) as u64,
        resp_data: std::ptr::addr_of_mut!(resp) as u64,
        exitinfo2: 0,
    };
    // SAFETY: `io` points at `req` and `resp`, live and sized as the uapi
    // header declares, for the duration of the call.
    unsafe { snp_get_report(fd, &mut io) }.map_err(|e| ioctl_error("SNP_GET_REPORT", e, io.exitinfo2))?;
    Ok(resp.data.to_vec())
}

/// SNP_GET_EXT_REPORT: the response message and the certificate table,
/// growing the certificate buffer once if the host asks for more.
fn ext_report(fd: i32, req: SnpReportReq) -> Result<(Vec<u8>, Vec<u8>), CollectError> {
    let mut certs_len = 4 * PAGE;
    for _ in 0..2 {
        let mut certs = vec![0u8; certs_len];
        let mut ext = SnpExtReportReq { data: req, certs_address: certs.as_mut_ptr() as u64, certs_len: certs_len as u32 };
        let mut resp = SnpReportResp { data: [0; 4000] };
        let mut io = SnpGuestRequestIoctl {
            msg_version: 1,
            req_data: std::ptr::addr_of_mut!(ext) as u64,
            resp_data: std::ptr::addr_of_mut!(resp) as u64,
            exitinfo2: 0,
        };
        // SAFETY: `io` points at `ext` and `resp`, and `ext.certs_address`
        // at `certs` of `certs_len` bytes, all live for the call.
        match unsafe { snp_get_ext_report(fd, &mut io) } {
            Ok(_) => return Ok((resp.data.to_vec(), certs)),
            Err(e) if io.exitinfo2 >> 32 == VMM_ERR_INVALID_LEN => {
                let want = ext.certs_len as usize;
                if want <= certs_len || want > MAX_CERTS {
                    return Err(ioctl_error("SNP_GET_EXT_REPORT", e, io.exitinfo2));
                }
                certs_len = want.div_ceil(PAGE) * PAGE;
            }
            Err(e) => return Err(ioctl_error("SNP_GET_EXT_REPORT", e, io.exitinfo2)),
        }
    }
    Err(CollectError::failed(NAME, "SNP_GET_EXT_REPORT: certificate buffer size not settled"))
}

/// The report inside a MSG_REPORT_RSP (SEV-SNP ABI spec, Table 25:
/// status u32, report_size u32, 24 reserved bytes, report).
pub fn parse_report_response(resp: &[u8]) -> Result<&[u8], String> {
    let word = |at: usize| resp.get(at..at + 4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_le_bytes);
    let status = word(0).ok_or("response too short")?;
    if status != 0 {
        return Err(format!("the PSP refused the report request (status {status:#x})"));
    }
    let size = word(4).ok_or("response too short")? as usize;
    if size != REPORT_LEN {
        return Err(format!("report size {size}, expected {REPORT_LEN}"));
    }
    resp.get(32..32 + size).ok_or_else(|| format!("report of {size} bytes does not fit the response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_have_the_uapi_layout() {
        assert_eq!(std::mem::size_of::<SnpReportReq>(), 96);
        assert_eq!(std::mem::size_of::<SnpGuestRequestIoctl>(), 32);
        assert_eq!(std::mem::size_of::<SnpExtReportReq>(), 112);
        // _IOWR('S', 0, 32 bytes) and _IOWR('S', 2, ...).
        assert_eq!(nix::request_code_readwrite!(b'S', 0x0, 32), 0xc020_5300);
        assert_eq!(nix::request_code_readwrite!(b'S', 0x2, 32), 0xc020_5302);
    }

    #[test]
    fn report_response_parsing() {
        let mut resp = vec![0u8; 4000];
        resp[4..8].copy_from_slice(&(REPORT_LEN as u32).to_le_bytes());
        resp[32] = 0xaa;
        let r = parse_report_response(&resp).unwrap();
        assert_eq!(r.len(), REPORT_LEN);
        assert_eq!(r[0], 0xaa);
        resp[0] = 0x16;
        assert!(parse_report_response(&resp).unwrap_err().contains("status 0x16"));
        resp[0] = 0;
        resp[4..8].copy_from_slice(&5000u32.to_le_bytes());
        assert!(parse_report_response(&resp).is_err());
        assert!(parse_report_response(&resp[..6]).is_err());
    }
}
