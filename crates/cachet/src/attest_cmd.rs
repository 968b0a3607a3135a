//! `cachet attest` and `cachet fetch-secret`: the workload side, run inside
//! a TEE (or with the simulated TEE for development).
//!
//! `attest` asks the service for a challenge, collects evidence binding
//! `nonce ‖ runtime_data` (length-prefixed, `cachet_attester::binding`), and
//! prints the attestation token. `fetch-secret` does the same with a fresh
//! ephemeral key as runtime data (its public JWK, canonical JSON), then asks
//! for the named secrets, checks the service's signed release statement
//! (`cachet_attester::release`) and decrypts the JWEs. Plain `http://` to a
//! non-loopback server is refused without `--allow-insecure-http`.
//!
//! Exit status: `0` success (every secret released), `1` the service
//! refused (attestation, or any secret), `2` usage, I/O, evidence or
//! connection error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use cachet_attester::client::{AttestError, Attester, ClientOptions, Release};
use cachet_attester::configfs_tsm::ConfigfsTsm;
use cachet_attester::nsm::NitroNsm;
use cachet_attester::sev_guest::SevGuest;
use cachet_attester::sim_source::SimulatedSource;
use cachet_attester::simulated::{ReportOptions, SimulatedTee};
use cachet_attester::source::{resolve_in, Backend, EvidenceSource};
use cachet_attester::tdx_guest::TdxGuest;
use cachet_attester::tpm::{TpmAk, TpmQuote, DEFAULT_TCTI};
use cachet_verify::Endorsement;
use clap::Args;

/// Largest file read for an option (runtime data, certificates, endorsements).
const MAX_FILE: u64 = 16 << 20;

/// Where evidence comes from and how to reach the service.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// The attestation service (`http(s)://host:port`).
    #[arg(long, env = "CACHET_SERVER")]
    pub server: String,
    /// Evidence back-end: auto (detect: configfs-tsm, sev-guest, tdx-guest,
    /// nsm, tpm, in that order; never sim), configfs-tsm, sev-guest|snp,
    /// tdx-guest|tdx, nsm|nitro, tpm, sim (the INSECURE simulated TEE).
    /// `tdx` and `snp` use configfs-tsm when the kernel offers it.
    #[arg(long, default_value = "auto")]
    pub tee: String,
    /// Extra CA certificate(s) (PEM) to trust for the service's TLS.
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Vec<PathBuf>,
    /// Allow plain http:// to a server that is not on a loopback address
    /// (anyone on the network path could then read the token and answer in
    /// the service's place; trusted test networks only).
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// Endorsement files to send with the evidence (e.g. TDX collateral).
    #[arg(long, value_name = "PATH")]
    pub endorsements: Vec<PathBuf>,
    /// configfs-tsm / sev-guest: the privilege level (SEV-SNP VMPL) to
    /// request the report for.
    #[arg(long)]
    pub privlevel: Option<u32>,
    /// tpm: the TCTI (default device:/dev/tpmrm0; e.g. swtpm:host=127.0.0.1,port=2321).
    #[arg(long, value_name = "TCTI")]
    pub tpm_tcti: Option<String>,
    /// tpm: the attestation key (context file or persistent handle);
    /// without it a new AK is created for the quote.
    #[arg(long, value_name = "CONTEXT")]
    pub tpm_ak: Option<String>,
    /// tpm: the AK certificate chain (PEM file, leaf first).
    #[arg(long, value_name = "PEM")]
    pub tpm_ak_cert: Option<PathBuf>,
    /// tpm: the SHA-256 PCRs to quote (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4,5,6,7")]
    pub tpm_pcrs: Vec<u32>,
    /// sim: the simulated TEE's key folder (the service's
    /// DATA_DIR/simulated-tee; created if absent).
    #[arg(long, value_name = "DIR")]
    pub sim_dir: Option<PathBuf>,
    /// sim: the 48-byte measurement to report (hex).
    #[arg(long, value_name = "HEX")]
    pub sim_measurement: Option<String>,
}

/// `cachet attest`.
#[derive(Args, Debug)]
pub struct AttestArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Bind this file's bytes as runtime data (default: none, only the nonce).
    #[arg(long, value_name = "FILE")]
    pub runtime_data: Option<PathBuf>,
}

/// `cachet fetch-secret`.
#[derive(Args, Debug)]
pub struct FetchArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Write each secret to DIR/OWNER/NAME (mode 0600) instead of printing it.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// The secrets, as OWNER/NAME.
    #[arg(required = true, value_name = "OWNER/NAME")]
    pub names: Vec<String>,
}

fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    f.take(MAX_FILE + 1).read_to_end(&mut out).map_err(|e| format!("{}: {e}", path.display()))?;
    if out.len() as u64 > MAX_FILE {
        return Err(format!("{}: larger than {MAX_FILE} bytes", path.display()));
    }
    Ok(out)
}

/// The evidence source the arguments name.
pub fn evidence_source(a: &SourceArgs) -> Result<Arc<dyn EvidenceSource>, String> {
    let wanted: Backend = a.tee.parse()?;
    let backend = resolve_in(Path::new("/"), wanted).map_err(|e| e.to_string())?;
    Ok(match backend {
        Backend::ConfigfsTsm => Arc::new(ConfigfsTsm { privlevel: a.privlevel, ..ConfigfsTsm::default() }),
        Backend::SevGuest => Arc::new(SevGuest { vmpl: a.privlevel.unwrap_or(0), ..SevGuest::default() }),
        Backend::TdxGuest => Arc::new(TdxGuest::default()),
        Backend::Nsm => Arc::new(NitroNsm),
        Backend::Tpm => {
            let mut q = TpmQuote::new(a.tpm_tcti.as_deref().unwrap_or(DEFAULT_TCTI));
            q.pcrs = a.tpm_pcrs.clone();
            if let Some(ctx) = &a.tpm_ak {
                let dir = tempfile_dir()?;
                q.ak = Some(TpmAk::load(&q.tools, dir.path(), ctx).map_err(|e| e.to_string())?);
            }
            if let Some(p) = &a.tpm_ak_cert {
                let pem = String::from_utf8(read_limited(p)?).map_err(|_| format!("{}: not PEM text", p.display()))?;
                q.ak_cert_chain = split_pem(&pem);
                if q.ak_cert_chain.is_empty() {
                    return Err(format!("{}: no PEM certificate", p.display()));
                }
            }
            Arc::new(q)
        }
        Backend::Simulated => {
            let dir = a.sim_dir.clone().ok_or("--tee sim needs --sim-dir (the service's DATA_DIR/simulated-tee)")?;
            let tee = SimulatedTee::load_or_create(&dir).map_err(|e| e.to_string())?;
            let mut options = ReportOptions::default();
            if let Some(h) = &a.sim_measurement {
                let m = hex::decode(h.trim()).map_err(|_| "--sim-measurement is not hex")?;
                options.measurement = m.try_into().map_err(|_| "--sim-measurement must be 48 bytes")?;
            }
            eprintln!("cachet: WARNING: using the SIMULATED TEE: its evidence proves nothing about hardware");
            Arc::new(SimulatedSource { tee, options })
        }
        Backend::Auto => return Err("no back-end resolved".into()),
    })
}

fn tempfile_dir() -> Result<tempfile::TempDir, String> {
    tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))
}

/// The PEM blocks of a bundle, each as its own string.
fn split_pem(text: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[start..].find(END) else { break };
        out.push(format!("{}\n", &rest[start..start + end + END.len()]));
        rest = &rest[start + end + END.len()..];
    }
    out
}

/// The protocol client for the arguments.
pub fn attester(a: &SourceArgs) -> Result<Attester, String> {
    let source = evidence_source(a)?;
    let mut options = ClientOptions { allow_insecure_http: a.allow_insecure_http, ..ClientOptions::default() };
    for p in &a.ca_cert {
        options.ca_pem.push(read_limited(p)?);
    }
    let mut endorsements = Vec::new();
    for p in &a.endorsements {
        endorsements.push(Endorsement { name: p.display().to_string(), bytes: read_limited(p)? });
    }
    Ok(Attester::new(&a.server, source, &options).map_err(|e| e.to_string())?.with_endorsements(endorsements))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
}

/// Exit status for a protocol error: 1 when the service refused, else 2.
fn failure(cmd: &str, e: &AttestError) -> ExitCode {
    eprintln!("cachet {cmd}: {e}");
    match e {
        AttestError::Server { .. } => ExitCode::from(1),
        _ => ExitCode::from(2),
    }
}

/// `cachet attest`: print the token.
pub fn run(args: AttestArgs) -> ExitCode {
    let prepared = (|| {
        let rd = match &args.runtime_data {
            Some(p) => read_limited(p)?,
            None => Vec::new(),
        };
        Ok::<_, String>((attester(&args.source)?, rd, runtime()?))
    })();
    let (a, rd, rt) = match prepared {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cachet attest: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(a.attest(&rd)) {
        Ok(att) => {
            eprintln!(
                "cachet attest: {} evidence from {} bound to nonce {}",
                att.evidence.tee,
                att.evidence.backend,
                hex::encode(&att.nonce)
            );
            println!("{}", att.token);
            ExitCode::SUCCESS
        }
        Err(e) => failure("attest", &e),
    }
}

/// A printable rendering of a secret value: UTF-8 text as is, else base64.
pub fn printable(value: &[u8]) -> String {
    use base64::Engine;
    match std::str::from_utf8(value) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => s.to_string(),
        _ => format!("base64:{}", base64::engine::general_purpose::STANDARD.encode(value)),
    }
}

/// Whether `s` is a safe owner or secret name (the key broker's rule).
fn safe_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Write a secret to DIR/OWNER/NAME, owner-only.
fn write_secret(dir: &Path, reference: &str, value: &[u8]) -> Result<PathBuf, String> {
    use std::io::Write;
    let (owner, name) = reference.split_once('/').ok_or_else(|| format!("{reference:?} is not OWNER/NAME"))?;
    if !safe_component(owner) || !safe_component(name) {
        return Err(format!("{reference:?}: unsafe file name"));
    }
    let folder = dir.join(owner);
    std::fs::create_dir_all(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    let path = folder.join(name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(value).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// `cachet fetch-secret`: print or write the released secrets.
pub fn run_fetch(args: FetchArgs) -> ExitCode {
    for n in &args.names {
        if !n.split_once('/').is_some_and(|(o, s)| safe_component(o) && safe_component(s)) {
            eprintln!("cachet fetch-secret: {n:?} is not OWNER/NAME (letters, digits, . _ -)");
            return ExitCode::from(2);
        }
    }
    let (a, rt) = match attester(&args.source).and_then(|a| Ok((a, runtime()?))) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cachet fetch-secret: {e}");
            return ExitCode::from(2);
        }
    };
    let release: Release = match rt.block_on(a.fetch_secrets(&args.names)) {
        Ok((_, r)) => r,
        Err(e) => return failure("fetch-secret", &e),
    };
    for s in &release.secrets {
        match &args.out_dir {
            Some(dir) => match write_secret(dir, &s.name, &s.value) {
                Ok(p) => println!("{}: written to {}", s.name, p.display()),
                Err(e) => {
                    eprintln!("cachet fetch-secret: {e}");
                    return ExitCode::from(2);
                }
            },
            None => println!("{}: {}", s.name, printable(&s.value)),
        }
    }
    for r in &release.refused {
        eprintln!("cachet fetch-secret: refused {}: {}", r.name, r.reason);
    }
    if release.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_bundles_split_into_certificates() {
        let b = "junk\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        let v = split_pem(b);
        assert_eq!(v.len(), 2);
        assert!(v[1].contains("BBB") && !v[1].contains("AAA"));
    }

    #[test]
    fn secret_files_stay_inside_the_folder() {
        let d = tempfile::tempdir().unwrap();
        for bad in ["../x", "a/../b", "a/.hidden", "noslash", "a/b/c", "/abs"] {
            assert!(write_secret(d.path(), bad, b"v").is_err(), "{bad}");
        }
        let p = write_secret(d.path(), "bank-a/fraud.key", b"v").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn printable_values() {
        assert_eq!(printable(b"hunter2"), "hunter2");
        assert_eq!(printable(&[0, 1, 2]), "base64:AAEC");
    }
}
