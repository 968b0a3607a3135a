//! Evidence collection: one trait, one implementation per kind of TEE
//! interface, and auto-detection.
//!
//! Every back-end receives the verifier's nonce and the attester's runtime
//! data and binds them itself, with the single definition in
//! [`crate::binding`] (so the service recomputes exactly the same value):
//!
//! | back-end | produces | binding |
//! |---|---|---|
//! | [`ConfigfsTsm`](crate::configfs_tsm::ConfigfsTsm) (`/sys/kernel/config/tsm/report`) | `tdx` quote or `snp` report + certificate table | `inblob` = `SHA-512(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)` |
//! | [`SevGuest`](crate::sev_guest::SevGuest) (`/dev/sev-guest`) | `snp` report + certificate table | `REPORT_DATA` = `SHA-512(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)` |
//! | [`TdxGuest`](crate::tdx_guest::TdxGuest) (`/dev/tdx_guest`) | a TDREPORT only (see its docs) | `REPORTDATA` = `SHA-512(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)` |
//! | [`NitroNsm`](crate::nsm::NitroNsm) (`/dev/nsm`) | `nitro` attestation document | `nonce` = nonce, `user_data` = runtime data |
//! | [`TpmQuote`](crate::tpm::TpmQuote) (`/dev/tpmrm0`, swtpm) | `tpm` evidence JSON | `extraData` = `SHA-256(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)` |
//! | [`SimulatedSource`](crate::sim_source::SimulatedSource) | `sim` report (INSECURE, development) | `report_data` = `SHA-512(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)` |
//!
//! Auto-detection ([`detect`]) tries, in this order: configfs-tsm (the
//! kernel's vendor-neutral interface, preferred when present), `/dev/sev-guest`,
//! `/dev/tdx_guest`, `/dev/nsm`, `/dev/tpmrm0`. It never picks the simulated
//! TEE: that must be asked for by name.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use cachet_verify::{Endorsement, Tee};

/// What the verifier asked for and what the attester wants vouched for.
#[derive(Debug, Clone, Copy)]
pub struct BindingInput<'a> {
    /// The nonce from `POST /v1/challenge` (raw bytes; may be empty when
    /// no challenge was asked for).
    pub nonce: &'a [u8],
    /// The runtime data (e.g. the canonical JSON of a public JWK; may be empty).
    pub runtime_data: &'a [u8],
}

impl BindingInput<'_> {
    /// `SHA-512(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)`, for 64-byte report data fields.
    pub fn report_data(&self) -> [u8; 64] {
        crate::binding::report_data(self.nonce, self.runtime_data)
    }

    /// `SHA-256(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)`, for TPM qualifying data.
    pub fn tpm_extra_data(&self) -> [u8; 32] {
        crate::binding::tpm_extra_data(self.nonce, self.runtime_data)
    }
}

/// Evidence ready for `POST /v1/attest`.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The family the service verifies it as.
    pub tee: Tee,
    /// The evidence bytes (sent base64).
    pub evidence: Vec<u8>,
    /// Endorsements that came with it (e.g. the certificate table of an
    /// SEV-SNP extended report, split into certificates).
    pub endorsements: Vec<Endorsement>,
    /// The back-end that produced it, for messages.
    pub backend: &'static str,
}

/// Why evidence could not be collected; always names the back-end.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The interface is absent or unusable on this machine.
    #[error("{backend}: not available: {why}")]
    Unavailable {
        /// Back-end name.
        backend: &'static str,
        /// What is missing.
        why: String,
    },
    /// Reading or writing a file or device failed.
    #[error("{backend}: {}: {source}", path.display())]
    Io {
        /// Back-end name.
        backend: &'static str,
        /// The file or device.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The interface answered, but not with usable evidence.
    #[error("{backend}: {message}")]
    Failed {
        /// Back-end name.
        backend: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl CollectError {
    /// A [`CollectError::Failed`].
    pub fn failed(backend: &'static str, message: impl Into<String>) -> Self {
        Self::Failed { backend, message: message.into() }
    }

    /// A [`CollectError::Io`] builder for `map_err`.
    pub fn io(backend: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { backend, path, source }
    }
}

/// A way to obtain attestation evidence inside a TEE.
///
/// Implementations block (device ioctls, file I/O, tool processes); the
/// protocol client runs them on a blocking thread.
pub trait EvidenceSource: Send + Sync {
    /// Back-end name (as accepted by [`Backend::from_str`]).
    fn name(&self) -> &'static str;

    /// Collect evidence binding `input` (see the module table for where).
    fn collect(&self, input: &BindingInput<'_>) -> Result<Evidence, CollectError>;
}

/// The back-ends, by name (`--tee` on the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Detect ([`detect`]).
    Auto,
    /// Linux configfs-tsm (TDX or SEV-SNP guests, Linux ≥ 6.7).
    ConfigfsTsm,
    /// `/dev/sev-guest` ioctls.
    SevGuest,
    /// `/dev/tdx_guest` ioctl.
    TdxGuest,
    /// The AWS Nitro Secure Module, `/dev/nsm`.
    Nsm,
    /// A TPM 2.0 through tpm2-tools.
    Tpm,
    /// The simulated TEE (insecure, development).
    Simulated,
}

impl Backend {
    /// Every back-end with its accepted names (first = canonical).
    pub const NAMES: [(Backend, &'static [&'static str]); 7] = [
        (Backend::Auto, &["auto"]),
        (Backend::ConfigfsTsm, &["configfs-tsm", "tsm"]),
        (Backend::SevGuest, &["sev-guest", "snp"]),
        (Backend::TdxGuest, &["tdx-guest", "tdx"]),
        (Backend::Nsm, &["nsm", "nitro"]),
        (Backend::Tpm, &["tpm"]),
        (Backend::Simulated, &["sim", "simulated"]),
    ];

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        Self::NAMES.iter().find(|(b, _)| *b == self).and_then(|(_, n)| n.first().copied()).unwrap_or("auto")
    }
}

impl FromStr for Backend {
    type Err = String;

    /// Parse a back-end name. `tdx` and `snp` name their device back-ends,
    /// but [`resolve`] prefers configfs-tsm for them when it is present.
    fn from_str(s: &str) -> Result<Self, String> {
        Self::NAMES.iter().find(|(_, names)| names.contains(&s)).map(|(b, _)| *b).ok_or_else(|| {
            let all: Vec<&str> = Self::NAMES.iter().flat_map(|(_, n)| n.iter().copied()).collect();
            format!("unknown TEE back-end {s:?}; expected one of {}", all.join(", "))
        })
    }
}

/// Well-known locations, relative to a root (`/` on a real system; a test
/// folder in the simulations).
pub mod paths {
    /// configfs-tsm report folder.
    pub const CONFIGFS_TSM: &str = "sys/kernel/config/tsm/report";
    /// SEV-SNP guest device.
    pub const SEV_GUEST: &str = "dev/sev-guest";
    /// TDX guest device.
    pub const TDX_GUEST: &str = "dev/tdx_guest";
    /// Nitro Secure Module device.
    pub const NSM: &str = "dev/nsm";
    /// TPM with the kernel's resource manager.
    pub const TPMRM: &str = "dev/tpmrm0";
}

/// The first available back-end under `root`, in the documented order
/// (configfs-tsm, sev-guest, tdx_guest, nsm, tpmrm0); `None` when there is
/// none. Never the simulated TEE.
pub fn detect_in(root: &Path) -> Option<Backend> {
    let order = [
        (paths::CONFIGFS_TSM, Backend::ConfigfsTsm),
        (paths::SEV_GUEST, Backend::SevGuest),
        (paths::TDX_GUEST, Backend::TdxGuest),
        (paths::NSM, Backend::Nsm),
        (paths::TPMRM, Backend::Tpm),
    ];
    order
        .into_iter()
        .find(|(p, b)| {
            let p = root.join(p);
            if *b == Backend::ConfigfsTsm {
                p.is_dir()
            } else {
                p.exists()
            }
        })
        .map(|(_, b)| b)
}

/// [`detect_in`] on this machine.
pub fn detect() -> Option<Backend> {
    detect_in(Path::new("/"))
}

/// The back-end to use for a request: `Auto` is detected; `tdx` / `snp`
/// (`TdxGuest` / `SevGuest`) use configfs-tsm when it is present, as the
/// kernel's preferred interface, else their device.
pub fn resolve_in(root: &Path, wanted: Backend) -> Result<Backend, CollectError> {
    match wanted {
        Backend::Auto => detect_in(root).ok_or_else(|| CollectError::Unavailable {
            backend: "auto",
            why: format!(
                "no TEE interface found (looked for /{}, /{}, /{}, /{}, /{}); the simulated TEE must be named (--tee sim)",
                paths::CONFIGFS_TSM,
                paths::SEV_GUEST,
                paths::TDX_GUEST,
                paths::NSM,
                paths::TPMRM
            ),
        }),
        Backend::TdxGuest | Backend::SevGuest if root.join(paths::CONFIGFS_TSM).is_dir() => Ok(Backend::ConfigfsTsm),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for (b, names) in Backend::NAMES {
            for n in names {
                assert_eq!(n.parse::<Backend>().unwrap(), b);
            }
            assert_eq!(b.as_str().parse::<Backend>().unwrap(), b);
        }
        let e = "sgx".parse::<Backend>().unwrap_err();
        assert!(e.contains("configfs-tsm") && e.contains("sim"), "{e}");
    }

    #[test]
    fn binding_input_uses_the_binding_module() {
        let i = BindingInput { nonce: b"n", runtime_data: b"rd" };
        assert_eq!(i.report_data(), crate::binding::report_data(b"n", b"rd"));
        assert_eq!(i.tpm_extra_data(), crate::binding::tpm_extra_data(b"n", b"rd"));
    }
}
