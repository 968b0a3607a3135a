//! The attester side of the SIMULATED TEE: produce reports bound to a nonce.
//!
//! A simulated report is signed by an ordinary software key, so it proves
//! nothing about hardware; it lets the attestation protocol (challenge →
//! evidence bound to the nonce → token) run end to end on any machine. The
//! verifier side and the format are `cachet_verify::simulated`; a verifier
//! trusts these reports only when given this root as an
//! `AnchorKind::SimulatedTee` anchor, which `cachet serve` does only with
//! `--insecure-simulated-tee`.

use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;

/// The format label (same as `cachet_verify::simulated::FORMAT`).
pub const FORMAT: &str = "cachet-simulated-tee-report/v1";
/// The warning carried by every simulated report.
pub const WARNING: &str = "SIMULATED TEE: software-signed report, NOT backed by hardware, provides NO security";
/// File name of the root private key (PKCS#8 DER) inside a key folder.
pub const KEY_FILE: &str = "simulated-tee-root.pk8";
/// File name of the self-signed root certificate (DER) inside a key folder.
pub const CERT_FILE: &str = "simulated-tee-root.der";

/// Why a simulated TEE could not be created, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The key or certificate could not be generated or parsed.
    #[error("simulated TEE key: {0}")]
    Key(String),
    /// Reading or writing the key folder failed.
    #[error("simulated TEE files in {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What a simulated report says about the (pretend) workload.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The 48-byte launch measurement to report.
    pub measurement: [u8; 48],
    /// Whether the pretend TEE runs in debug mode (appraisal refuses it).
    pub debug: bool,
    /// Security version number.
    pub svn: u32,
    /// Issue time (Unix seconds); `None` means now.
    pub issued_at: Option<i64>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self { measurement: [0x5a; 48], debug: false, svn: 1, issued_at: None }
    }
}

/// A simulated TEE: its root key and self-signed root certificate.
pub struct SimulatedTee {
    key: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    root_der: Vec<u8>,
}

impl std::fmt::Debug for SimulatedTee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedTee").field("root_der_len", &self.root_der.len()).finish_non_exhaustive()
    }
}

impl SimulatedTee {
    /// A new simulated TEE with a fresh P-256 root key and a self-signed
    /// root certificate valid from one day ago for ten years.
    pub fn generate() -> Result<Self, SimError> {
        let doc = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|k| k.to_pkcs8v1())
            .map_err(|e| SimError::Key(format!("generate: {e}")))?;
        let pkcs8 = doc.as_ref().to_vec();
        let root_der = self_signed_root(&pkcs8)?;
        Self::from_parts(pkcs8, root_der)
    }

    /// A simulated TEE from its PKCS#8 key and root certificate (DER).
    pub fn from_parts(pkcs8: Vec<u8>, root_der: Vec<u8>) -> Result<Self, SimError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).map_err(|e| SimError::Key(format!("PKCS#8: {e}")))?;
        Ok(Self { key, pkcs8, root_der })
    }

    /// Load the simulated TEE kept in `dir` ([`KEY_FILE`], [`CERT_FILE`]),
    /// creating it (files mode 0600) when absent. The server and a local
    /// attester share it this way.
    pub fn load_or_create(dir: &Path) -> Result<Self, SimError> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SimError::Io { path, source }
        };
        if key_path.exists() && cert_path.exists() {
            let pkcs8 = std::fs::read(&key_path).map_err(io(&key_path))?;
            let der = std::fs::read(&cert_path).map_err(io(&cert_path))?;
            return Self::from_parts(pkcs8, der);
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let sim = Self::generate()?;
        write_private(&key_path, &sim.pkcs8).map_err(io(&key_path))?;
        std::fs::write(&cert_path, &sim.root_der).map_err(io(&cert_path))?;
        Ok(sim)
    }

    /// The root certificate (DER), to trust as an `AnchorKind::SimulatedTee`.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// A signed simulated report carrying `report_data` (see
    /// [`crate::binding::report_data`] to bind a nonce), as evidence bytes.
    pub fn report(&self, report_data: &[u8; 64], opts: &ReportOptions) -> Result<Vec<u8>, SimError> {
        let issued_at = opts.issued_at.unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp());
        let body = json!({
            "format": FORMAT,
            "simulated": true,
            "measurement": hex::encode(opts.measurement),
            "report_data": hex::encode(report_data),
            "debug": opts.debug,
            "svn": opts.svn,
            "issued_at": issued_at,
        });
        let body = serde_json::to_vec(&body).map_err(|e| SimError::Key(e.to_string()))?;
        let sig = self.key.sign(&SystemRandom::new(), &body).map_err(|e| SimError::Key(format!("sign: {e}")))?;
        let envelope = json!({
            "format": FORMAT,
            "warning": WARNING,
            "report": STANDARD.encode(&body),
            "signature": STANDARD.encode(sig.as_ref()),
        });
        serde_json::to_vec(&envelope).map_err(|e| SimError::Key(e.to_string()))
    }

    /// The root public key (uncompressed P-256 point).
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }
}

/// A self-signed CA certificate for the simulated root key, labelled as such.
fn self_signed_root(pkcs8: &[u8]) -> Result<Vec<u8>, SimError> {
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
    let key = KeyPair::try_from(pkcs8).map_err(|e| SimError::Key(format!("rcgen key: {e}")))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Cachet SIMULATED TEE root - INSECURE, development only");
    dn.push(DnType::OrganizationName, "Cachet (simulated, not hardware)");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key).map_err(|e| SimError::Key(format!("root certificate: {e}")))?;
    Ok(cert.der().to_vec())
}

/// Write a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
