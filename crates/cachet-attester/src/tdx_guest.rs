//! `/dev/tdx_guest`: the TDX guest driver's `TDX_CMD_GET_REPORT0` ioctl
//! (include/uapi/linux/tdx-guest.h), which returns a 1024-byte TDREPORT
//! whose REPORTDATA is `SHA-512(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)`.
//!
//! A TDREPORT is MAC-protected with a key of *this* platform: only the
//! platform's quoting enclave can check it, so no remote verifier (Cachet
//! included) can. Turning it into a signed TDX quote is the host's Quote
//! Generation Service's job, which upstream Linux exposes through
//! configfs-tsm (Linux ≥ 6.7); `--tee tdx` therefore uses configfs-tsm
//! whenever it is present. This back-end obtains the TDREPORT
//! ([`td_report`]) and then refuses to pass it off as evidence, saying why.
//!
//! Not exercised on this build machine (it is no TDX guest).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::source::{BindingInput, CollectError, Evidence, EvidenceSource};

const NAME: &str = "tdx-guest";
/// The device.
pub const DEVICE: &str = "/dev/tdx_guest";
/// TDREPORT size.
pub const TDREPORT_LEN: usize = 1024;

#[repr(C)]
struct TdxReportReq {
    reportdata: [u8; 64],
    tdreport: [u8; TDREPORT_LEN],
}

nix::ioctl_readwrite!(
    /// `TDX_CMD_GET_REPORT0` (`_IOWR('T', 1, struct tdx_report_req)`).
    tdx_cmd_get_report0, b'T', 1, TdxReportReq
);

/// A TDREPORT for `report_data` from the TDX module, via `device`.
pub fn td_report(device: &Path, report_data: &[u8; 64]) -> Result<Vec<u8>, CollectError> {
    let dev = std::fs::OpenOptions::new().read(true).write(true).open(device).map_err(CollectError::io(NAME, device))?;
    let mut req = TdxReportReq { reportdata: *report_data, tdreport: [0; TDREPORT_LEN] };
    // SAFETY: `req` is the uapi `struct tdx_report_req`, live for the call.
    unsafe { tdx_cmd_get_report0(dev.as_raw_fd(), &mut req) }
        .map_err(|e| CollectError::failed(NAME, format!("TDX_CMD_GET_REPORT0: {e}")))?;
    Ok(req.tdreport.to_vec())
}

/// The `/dev/tdx_guest` back-end (see the module documentation).
#[derive(Debug, Clone)]
pub struct TdxGuest {
    /// The device ([`DEVICE`]).
    pub device: PathBuf,
}

impl Default for TdxGuest {
    fn default() -> Self {
        Self { device: PathBuf::from(DEVICE) }
    }
}

impl EvidenceSource for TdxGuest {
    fn name(&self) -> &'static str {
        NAME
    }

    fn collect(&self, input: &BindingInput<'_>) -> Result<Evidence, CollectError> {
        let report = td_report(&self.device, &input.report_data())?;
        Err(CollectError::failed(
            NAME,
            format!(
                "obtained a {}-byte TDREPORT, but a TDREPORT is MAC-bound to this platform and cannot be verified \
                 remotely; a TDX quote needs the host's quoting service, which Linux exposes through configfs-tsm \
                 (/sys/kernel/config/tsm/report, Linux ≥ 6.7): mount configfs or upgrade the guest kernel",
                report.len()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_the_uapi_layout() {
        assert_eq!(std::mem::size_of::<TdxReportReq>(), 64 + 1024);
        // _IOWR('T', 1, struct tdx_report_req) = 0xc4405401.
        assert_eq!(nix::request_code_readwrite!(b'T', 1, 1088), 0xc440_5401);
    }

    #[test]
    fn a_missing_device_is_an_io_error_naming_it() {
        let e = td_report(Path::new("/nonexistent/tdx_guest"), &[0; 64]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/tdx_guest"), "{e}");
    }
}
