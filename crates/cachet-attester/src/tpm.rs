//! A TPM 2.0 quote through tpm2-tools (`/dev/tpmrm0`, or swtpm in tests),
//! as Cachet's TPM evidence JSON (`--tee tpm`):
//!
//! ```json
//! {"quote": "<hex TPMS_ATTEST>", "signature": "<hex TPMT_SIGNATURE>",
//!  "ak_public": "<hex TPM2B_PUBLIC>", "pcrs": {"sha256": {"0": "<hex>", ...}},
//!  "ak_cert_chain": ["<PEM>", ...], "nonce": "<hex extraData>"}
//! ```
//!
//! The quote's qualifying data (`extraData`) is `SHA-256(nonce ‖
//! runtime_data)`. The service trusts the AK through its certificate chain
//! (`ak_cert_chain`, leaf first: give the AK certificate your CA issued, e.g.
//! after credential activation) — a quote by an uncertified AK verifies as a
//! quote but is refused at "AK certificate chain".
//!
//! The AK is either provisioned once ([`TpmAk::create`], kept in a folder
//! and reused, the normal deployment) or, when none is given, created for
//! each quote under a fresh ECC EK (useful only with an AK that the service
//! trusts otherwise). The tools are run as child processes with the TCTI
//! given (`TPM2TOOLS_TCTI`). Without a resource manager (swtpm, `/dev/tpm0`)
//! transient objects and sessions are flushed after each command, or the
//! TPM runs out of object slots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cachet_verify::Tee;
use serde_json::{json, Value};

use crate::source::{BindingInput, CollectError, Evidence, EvidenceSource};

const NAME: &str = "tpm";
/// The TCTI used when none is given: the kernel's resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
/// Largest file read back from the tools.
const MAX_FILE: u64 = 1 << 20;

/// How to run tpm2-tools against one TPM.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The TCTI (`device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`, ...).
    pub tcti: String,
    /// Flush transient objects and sessions after each command (needed
    /// without a resource manager).
    pub flush: bool,
}

impl Tools {
    /// Tools for `tcti`; flushing is on for TCTIs that reach a TPM without
    /// a resource manager (swtpm, mssim, `/dev/tpm0`).
    pub fn new(tcti: &str) -> Self {
        let raw = tcti.starts_with("swtpm") || tcti.starts_with("mssim") || tcti.contains("/dev/tpm0");
        Self { tcti: tcti.to_string(), flush: raw }
    }

    /// Run one tool in `dir`; the error carries its stderr.
    pub fn run(&self, dir: &Path, tool: &str, args: &[&str]) -> Result<String, CollectError> {
        let out = Command::new(tool)
            .args(args)
            .current_dir(dir)
            .env("TPM2TOOLS_TCTI", &self.tcti)
            .output()
            .map_err(|e| CollectError::failed(NAME, format!("cannot run {tool} (is tpm2-tools installed?): {e}")))?;
        let result = if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(CollectError::failed(NAME, format!("{tool} failed: {}", err.trim())))
        };
        if self.flush {
            self.flush_all(dir);
        }
        result
    }

    fn flush_all(&self, dir: &Path) {
        for kind in ["-t", "-s"] {
            let _ = Command::new("tpm2_flushcontext").arg(kind).current_dir(dir).env("TPM2TOOLS_TCTI", &self.tcti).output();
        }
    }
}

/// An attestation key: where its context is and its public parts.
#[derive(Debug)]
pub struct TpmAk {
    /// What tpm2-tools' `-c` takes: a saved context file or a persistent handle.
    pub context: String,
    /// TPM2B_PUBLIC.
    pub public: Vec<u8>,
    /// SubjectPublicKeyInfo (DER), e.g. for a CA to certify.
    pub spki_der: Vec<u8>,
}

impl TpmAk {
    /// Create an ECC P-256 ECDSA/SHA-256 AK under a fresh ECC EK, keeping its
    /// files (`ak.ctx`, `ak.pub`, `ak.der`) in `dir`.
    pub fn create(tools: &Tools, dir: &Path) -> Result<Self, CollectError> {
        tools.run(dir, "tpm2_createek", &["-c", "ek.ctx", "-G", "ecc", "-u", "ek.pub"])?;
        tools.run(
            dir,
            "tpm2_createak",
            &["-C", "ek.ctx", "-c", "ak.ctx", "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-u", "ak.pub", "-n", "ak.name"],
        )?;
        Self::load(tools, dir, &dir.join("ak.ctx").to_string_lossy())
    }

    /// An existing AK (`context`: a context file or persistent handle); its
    /// public parts are read into `dir`.
    pub fn load(tools: &Tools, dir: &Path, context: &str) -> Result<Self, CollectError> {
        tools.run(dir, "tpm2_readpublic", &["-c", context, "-f", "tss", "-o", "ak-public.tss"])?;
        tools.run(dir, "tpm2_readpublic", &["-c", context, "-f", "der", "-o", "ak-public.der"])?;
        Ok(Self {
            context: context.to_string(),
            public: read_file(&dir.join("ak-public.tss"))?,
            spki_der: read_file(&dir.join("ak-public.der"))?,
        })
    }
}

/// The TPM back-end.
#[derive(Debug)]
pub struct TpmQuote {
    /// How to reach the TPM.
    pub tools: Tools,
    /// The AK; `None` creates one per quote (see the module docs).
    pub ak: Option<TpmAk>,
    /// The PCR bank quoted (`sha1`, `sha256`, `sha384`, `sha512`).
    pub bank: String,
    /// PCR indices quoted.
    pub pcrs: Vec<u32>,
    /// AK certificate chain (PEM strings, leaf first) for the evidence.
    pub ak_cert_chain: Vec<String>,
}

impl TpmQuote {
    /// Quote PCRs 0-7 of the SHA-256 bank through `tcti`, with no AK yet.
    pub fn new(tcti: &str) -> Self {
        Self { tools: Tools::new(tcti), ak: None, bank: "sha256".into(), pcrs: (0..8).collect(), ak_cert_chain: Vec::new() }
    }

    fn digest_len(&self) -> Result<usize, CollectError> {
        match self.bank.as_str() {
            "sha1" => Ok(20),
            "sha256" => Ok(32),
            "sha384" => Ok(48),
            "sha512" => Ok(64),
            other => Err(CollectError::failed(NAME, format!("unknown PCR bank {other:?}"))),
        }
    }

    /// The PCR selection, ascending and without duplicates.
    fn selection(&self) -> Result<Vec<u32>, CollectError> {
        let mut p = self.pcrs.clone();
        p.sort_unstable();
        p.dedup();
        if p.is_empty() || p.iter().any(|i| *i > 23) {
            return Err(CollectError::failed(NAME, "the PCR selection must name PCRs 0 to 23"));
        }
        Ok(p)
    }
}

impl EvidenceSource for TpmQuote {
    fn name(&self) -> &'static str {
        NAME
    }

    fn collect(&self, input: &BindingInput<'_>) -> Result<Evidence, CollectError> {
        let work = tempfile::tempdir().map_err(|e| CollectError::failed(NAME, format!("temporary folder: {e}")))?;
        let dir = work.path();
        let created;
        let ak = match &self.ak {
            Some(ak) => ak,
            None => {
                created = TpmAk::create(&self.tools, dir)?;
                &created
            }
        };
        let pcrs = self.selection()?;
        let list: Vec<String> = pcrs.iter().map(u32::to_string).collect();
        let selection = format!("{}:{}", self.bank, list.join(","));
        let extra = input.tpm_extra_data();
        let qualification = hex::encode(extra);
        self.tools.run(
            dir,
            "tpm2_quote",
            &[
                "-c",
                &ak.context,
                "-l",
                &selection,
                "-q",
                &qualification,
                "-m",
                "quote.msg",
                "-s",
                "quote.sig",
                "-o",
                "quote.pcrs",
                "-F",
                "values",
                "-g",
                "sha256",
            ],
        )?;
        let quote = read_file(&dir.join("quote.msg"))?;
        let signature = read_file(&dir.join("quote.sig"))?;
        let values = read_file(&dir.join("quote.pcrs"))?;
        let bank = pcr_bank(&pcrs, &values, self.digest_len()?)?;
        let mut doc = json!({
            "quote": hex::encode(quote),
            "signature": hex::encode(signature),
            "ak_public": hex::encode(&ak.public),
            "pcrs": {self.bank.as_str(): bank},
            "nonce": qualification,
        });
        if !self.ak_cert_chain.is_empty() {
            doc["ak_cert_chain"] = json!(self.ak_cert_chain);
        }
        let evidence = serde_json::to_vec(&doc).map_err(|e| CollectError::failed(NAME, e.to_string()))?;
        Ok(Evidence { tee: Tee::Tpm, evidence, endorsements: Vec::new(), backend: NAME })
    }
}

/// Split tpm2_quote's `-F values` output (the selected PCRs' digests,
/// ascending) into `{"index": "hex"}`.
pub fn pcr_bank(pcrs: &[u32], values: &[u8], digest_len: usize) -> Result<BTreeMap<String, Value>, CollectError> {
    if digest_len == 0 || values.len() != pcrs.len() * digest_len {
        return Err(CollectError::failed(
            NAME,
            format!("tpm2_quote wrote {} bytes of PCR values for {} PCRs of {digest_len} bytes", values.len(), pcrs.len()),
        ));
    }
    Ok(pcrs.iter().zip(values.chunks(digest_len)).map(|(i, d)| (i.to_string(), Value::String(hex::encode(d)))).collect())
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>, CollectError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(CollectError::io(NAME, path))?;
    let mut out = Vec::new();
    f.take(MAX_FILE + 1).read_to_end(&mut out).map_err(CollectError::io(NAME, path))?;
    if out.len() as u64 > MAX_FILE {
        return Err(CollectError::failed(NAME, format!("{} is too large", path.display())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_values_are_split_in_selection_order() {
        let mut values = vec![1u8; 32];
        values.extend([2u8; 32]);
        let b = pcr_bank(&[0, 7], &values, 32).unwrap();
        assert_eq!(b["0"], hex::encode([1u8; 32]));
        assert_eq!(b["7"], hex::encode([2u8; 32]));
        assert!(pcr_bank(&[0, 7], &values[..40], 32).is_err());
    }

    #[test]
    fn selection_is_sorted_and_bounded() {
        let mut q = TpmQuote::new("swtpm:port=1");
        assert!(q.tools.flush);
        assert!(!TpmQuote::new(DEFAULT_TCTI).tools.flush);
        q.pcrs = vec![7, 0, 7, 3];
        assert_eq!(q.selection().unwrap(), vec![0, 3, 7]);
        q.pcrs = vec![24];
        assert!(q.selection().is_err());
        q.bank = "md5".into();
        assert!(q.digest_len().is_err());
    }
}
