//! Linux configfs-tsm: the kernel's vendor-neutral attestation report
//! interface (Linux ≥ 6.7; Documentation/ABI/testing/configfs-tsm), for
//! TDX guests (`provider` = `tdx_guest`, `outblob` = a TDX quote) and
//! SEV-SNP guests (`sev_guest`, `outblob` = the attestation report,
//! `auxblob` = the certificate table of GHCB spec §4.1.8.1).
//!
//! The procedure follows the ABI document:
//!
//! 1. `mkdir /sys/kernel/config/tsm/report/<name>`: one report instance per
//!    request (a fresh random name), which "prevents conflicts";
//! 2. read `generation` *before writing any attribute*;
//! 3. optionally write `privlevel` (SEV-SNP VMPL), then write the 64-byte
//!    `inblob` = `SHA-512(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)`;
//! 4. read `outblob` (the kernel produces the report on this read), then
//!    `auxblob` (when the provider has one) and `provider`;
//! 5. read `generation` again: it must equal the first value plus the
//!    number of writes made, else another writer used the instance between
//!    our write and our read, and the report may not be ours; the attempt is
//!    discarded and retried (a bounded number of times) in a new instance;
//! 6. check that the report carries the report data written (a second,
//!    format-level guard against a report of another request);
//! 7. `rmdir` the instance (best effort).
//!
//! configfs creates an instance's attributes inside `mkdir` itself; the
//! attester nonetheless waits (at most [`ATTRIBUTE_WAIT`]) for `generation`
//! to appear, which costs nothing on a kernel and lets the tests drive this
//! code against a user-space model of the interface.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cachet_verify::{Endorsement, Tee};

use crate::source::{paths, BindingInput, CollectError, Evidence, EvidenceSource};

const NAME: &str = "configfs-tsm";

/// The report folder on a real system.
pub const REPORT_DIR: &str = "/sys/kernel/config/tsm/report";
/// Largest `outblob` / `auxblob` read (a TDX quote with its certification
/// data is a few KiB; an SEV-SNP certificate table a few tens of KiB).
pub const MAX_BLOB: usize = 1 << 20;
/// Largest small attribute (`generation`, `provider`, ...).
const MAX_ATTR: usize = 4096;
/// How long to wait for an instance's attributes after `mkdir`.
pub const ATTRIBUTE_WAIT: Duration = Duration::from_secs(2);

/// The outcome of one instance: the blobs and the generation seen.
#[derive(Debug, Clone)]
pub struct TsmReport {
    /// `provider` (e.g. `tdx_guest`, `sev_guest`), trimmed.
    pub provider: String,
    /// `outblob`: the report.
    pub outblob: Vec<u8>,
    /// `auxblob`, when present and not empty.
    pub auxblob: Option<Vec<u8>>,
    /// `generation` after reading the blobs.
    pub generation: u64,
}

/// The configfs-tsm back-end.
#[derive(Debug, Clone)]
pub struct ConfigfsTsm {
    /// The `report` folder ([`REPORT_DIR`] on a real system).
    pub report_dir: PathBuf,
    /// Value to write to `privlevel` (SEV-SNP VMPL, 0-3), if any.
    pub privlevel: Option<u32>,
    /// How many instances to try when another writer interferes (≥ 1).
    pub attempts: u32,
}

impl Default for ConfigfsTsm {
    fn default() -> Self {
        Self { report_dir: PathBuf::from(REPORT_DIR), privlevel: None, attempts: 3 }
    }
}

impl ConfigfsTsm {
    /// The back-end for the report folder under `root` (`/` normally).
    pub fn under(root: &Path) -> Self {
        Self { report_dir: root.join(paths::CONFIGFS_TSM), ..Self::default() }
    }

    /// Run the ABI procedure for `inblob`, retrying in a fresh instance when
    /// the generation check shows interference.
    pub fn report(&self, inblob: &[u8; 64]) -> Result<TsmReport, CollectError> {
        let mut last = String::new();
        for _ in 0..self.attempts.max(1) {
            match self.attempt(inblob)? {
                Ok(r) => return Ok(r),
                Err(conflict) => last = conflict,
            }
        }
        Err(CollectError::failed(NAME, format!("generation check failed in every attempt: {last}")))
    }

    /// One instance: `Ok(Err(why))` when the generation check failed.
    fn attempt(&self, inblob: &[u8; 64]) -> Result<Result<TsmReport, String>, CollectError> {
        let entry = Instance::create(&self.report_dir)?;
        let dir = entry.path.as_path();
        wait_for(&dir.join("generation"))?;
        let before = read_generation(dir)?;
        let mut writes = 0u64;
        if let Some(level) = self.privlevel {
            write_attr(&dir.join("privlevel"), format!("{level}\n").as_bytes())?;
            writes += 1;
        }
        write_attr(&dir.join("inblob"), inblob)?;
        writes += 1;
        let outblob = read_attr(&dir.join("outblob"), MAX_BLOB)?;
        let aux_path = dir.join("auxblob");
        let auxblob = if aux_path.exists() { Some(read_attr(&aux_path, MAX_BLOB)?) } else { None };
        let provider = String::from_utf8_lossy(&read_attr(&dir.join("provider"), MAX_ATTR)?).trim().to_string();
        let after = read_generation(dir)?;
        if Some(after) != before.checked_add(writes) {
            return Ok(Err(format!(
                "generation went from {before} to {after} around {writes} write(s) of ours: another writer used the report instance"
            )));
        }
        Ok(Ok(TsmReport { provider, outblob, auxblob: auxblob.filter(|a| !a.is_empty()), generation: after }))
    }
}

impl EvidenceSource for ConfigfsTsm {
    fn name(&self) -> &'static str {
        NAME
    }

    fn collect(&self, input: &BindingInput<'_>) -> Result<Evidence, CollectError> {
        if !self.report_dir.is_dir() {
            return Err(CollectError::Unavailable {
                backend: NAME,
                why: format!("{} is not a folder (Linux ≥ 6.7 with configfs mounted and a TSM provider)", self.report_dir.display()),
            });
        }
        let report_data = input.report_data();
        let r = self.report(&report_data)?;
        evidence_from_report(r, &report_data)
    }
}

/// Turn a configfs-tsm report into evidence, checking that it carries
/// `report_data` where the provider's format puts it.
pub fn evidence_from_report(r: TsmReport, report_data: &[u8; 64]) -> Result<Evidence, CollectError> {
    let (tee, carried) = match r.provider.as_str() {
        "tdx_guest" => (Tee::Tdx, tdx_quote_report_data(&r.outblob)),
        "sev_guest" => (Tee::Snp, snp_report_data(&r.outblob)),
        other => return Err(CollectError::failed(NAME, format!("provider {other:?} is not one Cachet knows (tdx_guest, sev_guest)"))),
    };
    match carried {
        Some(d) if d == report_data.as_slice() => {}
        Some(d) => {
            return Err(CollectError::failed(
                NAME,
                format!(
                    "outblob carries report data {} instead of the {} written to inblob (a report of another request)",
                    hex::encode(d),
                    hex::encode(report_data)
                ),
            ))
        }
        None => {
            return Err(CollectError::failed(
                NAME,
                format!("outblob ({} bytes) is not a {} report Cachet can read", r.outblob.len(), r.provider),
            ))
        }
    }
    let mut evidence = r.outblob;
    let mut endorsements = Vec::new();
    if let Some(aux) = r.auxblob.filter(|a| a.iter().any(|b| *b != 0)) {
        if tee == Tee::Snp {
            // The SEV-SNP verifier reads a certificate table appended to the report.
            evidence.extend_from_slice(&aux);
        } else {
            endorsements.push(Endorsement { name: "configfs-tsm auxblob".into(), bytes: aux });
        }
    }
    Ok(Evidence { tee, evidence, endorsements, backend: NAME })
}

/// REPORTDATA of a TDX quote (v4: TD report body at 48; v5: body
/// descriptor (type u16, size u32) at 48, body at 54; REPORTDATA is at
/// offset 520 of the TD report body of TDX 1.0 and 1.5 alike). `None` when
/// the bytes are not a TDX quote.
pub fn tdx_quote_report_data(quote: &[u8]) -> Option<&[u8]> {
    const TDX_TEE_TYPE: u32 = 0x81;
    let version = u16::from_le_bytes(quote.get(0..2)?.try_into().ok()?);
    let tee_type = u32::from_le_bytes(quote.get(4..8)?.try_into().ok()?);
    if tee_type != TDX_TEE_TYPE {
        return None;
    }
    let body = match version {
        4 => 48,
        5 => 54,
        _ => return None,
    };
    quote.get(body + 520..body + 584)
}

/// REPORT_DATA of an SEV-SNP attestation report (offset 0x50, 64 bytes, in
/// a report of at least 1184 bytes).
pub fn snp_report_data(report: &[u8]) -> Option<&[u8]> {
    if report.len() < 1184 {
        return None;
    }
    report.get(0x50..0x90)
}

/// A report instance, removed (best effort) when dropped.
struct Instance {
    path: PathBuf,
}

impl Instance {
    fn create(report_dir: &Path) -> Result<Self, CollectError> {
        let mut rnd = [0u8; 8];
        aws_lc_rs::rand::fill(&mut rnd).map_err(|_| CollectError::failed(NAME, "no randomness for an instance name"))?;
        let path = report_dir.join(format!("cachet-{}-{}", std::process::id(), hex::encode(rnd)));
        std::fs::create_dir(&path).map_err(CollectError::io(NAME, &path))?;
        Ok(Self { path })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // configfs removes the attributes with the folder.
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Wait (bounded) for an attribute to exist.
fn wait_for(path: &Path) -> Result<(), CollectError> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > ATTRIBUTE_WAIT {
            return Err(CollectError::failed(NAME, format!("{} did not appear after mkdir", path.display())));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Read an attribute, refusing more than `limit` bytes.
fn read_attr(path: &Path, limit: usize) -> Result<Vec<u8>, CollectError> {
    let f = std::fs::File::open(path).map_err(CollectError::io(NAME, path))?;
    let mut out = Vec::new();
    f.take(limit as u64 + 1).read_to_end(&mut out).map_err(CollectError::io(NAME, path))?;
    if out.len() > limit {
        return Err(CollectError::failed(NAME, format!("{} is larger than {limit} bytes", path.display())));
    }
    Ok(out)
}

/// Write an attribute in one write (configfs commits it on close).
fn write_attr(path: &Path, bytes: &[u8]) -> Result<(), CollectError> {
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(path).map_err(CollectError::io(NAME, path))?;
    f.write_all(bytes).map_err(CollectError::io(NAME, path))?;
    f.flush().map_err(CollectError::io(NAME, path))
}

/// The instance's `generation` counter.
fn read_generation(dir: &Path) -> Result<u64, CollectError> {
    let path = dir.join("generation");
    let text = read_attr(&path, MAX_ATTR)?;
    parse_generation(&text)
        .ok_or_else(|| CollectError::failed(NAME, format!("generation {:?} is not a number", String::from_utf8_lossy(&text))))
}

/// `generation` as the kernel prints it (`%u\n`).
fn parse_generation(text: &[u8]) -> Option<u64> {
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_parsing() {
        assert_eq!(parse_generation(b"0\n"), Some(0));
        assert_eq!(parse_generation(b"17"), Some(17));
        assert_eq!(parse_generation(b"x\n"), None);
        assert_eq!(parse_generation(b"-1\n"), None);
    }

    #[test]
    fn report_data_offsets() {
        let mut v4 = vec![0u8; 632];
        v4[0] = 4;
        v4[4] = 0x81;
        v4[568..632].copy_from_slice(&[7; 64]);
        assert_eq!(tdx_quote_report_data(&v4), Some(&[7u8; 64][..]));
        let mut v5 = vec![0u8; 638];
        v5[0] = 5;
        v5[4] = 0x81;
        v5[574..638].copy_from_slice(&[9; 64]);
        assert_eq!(tdx_quote_report_data(&v5), Some(&[9u8; 64][..]));
        // An SGX quote (tee type 0) or a short one is not a TDX quote.
        let mut sgx = v4.clone();
        sgx[4] = 0;
        assert_eq!(tdx_quote_report_data(&sgx), None);
        assert_eq!(tdx_quote_report_data(&v4[..600]), None);
        let mut snp = vec![0u8; 1184];
        snp[0x50..0x90].copy_from_slice(&[3; 64]);
        assert_eq!(snp_report_data(&snp), Some(&[3u8; 64][..]));
        assert_eq!(snp_report_data(&snp[..1000]), None);
    }

    #[test]
    fn unknown_providers_and_foreign_reports_are_refused() {
        let r = TsmReport { provider: "arm_cca_guest".into(), outblob: vec![0; 2000], auxblob: None, generation: 1 };
        assert!(evidence_from_report(r, &[0; 64]).unwrap_err().to_string().contains("arm_cca_guest"));
        let mut snp = vec![0u8; 1184];
        snp[0x50..0x90].copy_from_slice(&[3; 64]);
        let r = TsmReport { provider: "sev_guest".into(), outblob: snp, auxblob: None, generation: 1 };
        assert!(evidence_from_report(r, &[4; 64]).unwrap_err().to_string().contains("another request"));
    }
}
