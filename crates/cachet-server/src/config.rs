//! `cachet serve` configuration: flags, environment variables, TOML file.
//!
//! Each setting is looked up in this order: command-line flag, environment
//! variable (`CACHET_...`), the TOML file given by `--config`, then the
//! built-in default. The TOML keys are the flag names with `_` for `-`
//! (e.g. `token_ttl = 600`). Boolean switches are on when either the flag
//! or the file turns them on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cachet_token::Algorithm;
use clap::{Parser, ValueEnum};
use serde::Deserialize;

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8700";

/// Run the attestation service: challenges, evidence verification, signed
/// EAR tokens, JWKS discovery, admin API and audit log.
#[derive(Parser, Debug, Clone, Default)]
#[command(name = "cachet-server", version)]
pub struct ServeArgs {
    /// TOML configuration file (keys as the long flags, with `_` for `-`).
    #[arg(long, env = "CACHET_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8700; port 0 picks a free port].
    #[arg(long, env = "CACHET_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory: the embedded SQLite database (nonces, API keys,
    /// signing keys, audit log) [default: ./cachet-data].
    #[arg(long, env = "CACHET_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL instead of the data directory's SQLite file:
    /// `postgres://USER@HOST/DB` (or `postgresql://`) for PostgreSQL shared
    /// by several replicas, or `sqlite:PATH` [default: DATA_DIR/cachet.db].
    #[arg(long, env = "CACHET_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Token issuer (`iss`) and the base URL of discovery documents
    /// [default: http(s)://LISTEN-ADDRESS].
    #[arg(long, env = "CACHET_ISSUER", value_name = "URL")]
    pub issuer: Option<String>,
    /// TLS certificate chain (PEM); serve HTTPS with rustls (needs --tls-key).
    #[arg(long, env = "CACHET_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "CACHET_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Token signature algorithm for new keys: ES256, ES384 or PS256 [default: ES256].
    #[arg(long, env = "CACHET_TOKEN_ALG", value_name = "ALG")]
    pub token_alg: Option<Algorithm>,
    /// Token lifetime in seconds [default: 600].
    #[arg(long, env = "CACHET_TOKEN_TTL", value_name = "SECONDS")]
    pub token_ttl: Option<u64>,
    /// How long a rotated-in signing key is published before it signs, so
    /// relying parties' cached JWKS already hold it [default: 3600].
    #[arg(long, env = "CACHET_KEY_PUBLISH_LEAD", value_name = "SECONDS")]
    pub key_publish_lead: Option<u64>,
    /// Rotate the signing key automatically once it has signed for this
    /// long; 0 disables automatic rotation [default: 2592000 (30 days)].
    #[arg(long, env = "CACHET_KEY_ROTATE_AFTER", value_name = "SECONDS")]
    pub key_rotate_after: Option<u64>,
    /// Clock difference tolerated with relying parties; retired keys stay
    /// published for token-ttl + this [default: 60].
    #[arg(long, env = "CACHET_CLOCK_SKEW", value_name = "SECONDS")]
    pub clock_skew: Option<u64>,
    /// Lifetime of a challenge nonce in seconds [default: 300].
    #[arg(long, env = "CACHET_NONCE_TTL", value_name = "SECONDS")]
    pub nonce_ttl: Option<u64>,
    /// Largest request body in bytes [default: 16777216].
    #[arg(long, env = "CACHET_BODY_LIMIT", value_name = "BYTES")]
    pub body_limit: Option<usize>,
    /// Time limit for one request in seconds [default: 30].
    #[arg(long, env = "CACHET_REQUEST_TIMEOUT", value_name = "SECONDS")]
    pub request_timeout: Option<u64>,
    /// Verifications run at once; more wait [default: 8].
    #[arg(long, env = "CACHET_MAX_CONCURRENT_VERIFICATIONS", value_name = "N")]
    pub max_concurrent_verifications: Option<usize>,
    /// Requests per minute one client address (an IPv6 client: its /64) may
    /// make to /v1/challenge, /v1/attest and /v1/secrets/release together,
    /// as a token bucket; more get `429 rate_limited` with Retry-After.
    /// 0 = unlimited [default: 1200].
    #[arg(long, env = "CACHET_RATE_LIMIT", value_name = "PER_MINUTE")]
    pub rate_limit: Option<u32>,
    /// Requests one client address may make at once before --rate-limit
    /// applies (the bucket's size) [default: 200].
    #[arg(long, env = "CACHET_RATE_LIMIT_BURST", value_name = "N")]
    pub rate_limit_burst: Option<u32>,
    /// Close a connection that has not sent a whole request head (request
    /// line and headers) this long after it connected or its previous
    /// response [default: 10].
    #[arg(long, env = "CACHET_HEADER_READ_TIMEOUT", value_name = "SECONDS")]
    pub header_read_timeout: Option<u64>,
    /// Close a connection on which a read or a write has waited this long
    /// (slow bodies, slow readers, idle HTTP/2); at least request_timeout
    /// [default: the larger of 60 and request_timeout].
    #[arg(long, env = "CACHET_IDLE_TIMEOUT", value_name = "SECONDS")]
    pub idle_timeout: Option<u64>,
    /// Most connections open at once; more are closed on accept [default: 1024].
    #[arg(long, env = "CACHET_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most connections open at once from one client address (an IPv6
    /// client: its /64), so one client cannot take them all [default: three
    /// quarters of max_connections].
    #[arg(long, env = "CACHET_MAX_CONNECTIONS_PER_CLIENT", value_name = "N")]
    pub max_connections_per_client: Option<usize>,
    /// Accept a per-request verification time (`at`) in POST /v1/attest.
    /// For tests and offline re-verification only: it lets a client verify
    /// evidence as of a past instant, when its certificates were valid.
    #[arg(long, env = "CACHET_ALLOW_VERIFICATION_TIME")]
    pub allow_verification_time: bool,
    /// TESTS ONLY: verify every request's evidence as of this RFC 3339
    /// instant instead of now (tokens still carry the real iat/nbf/exp), so
    /// clients that cannot send `at` (the Azure Attestation SDKs) can be
    /// tested with recorded evidence. Logged as a warning at start.
    #[arg(long, env = "CACHET_FIXED_VERIFICATION_TIME", value_name = "RFC3339")]
    pub fixed_verification_time: Option<String>,
    /// Intel PCS API v4 or a PCCS the service fetches TCB Info, QE Identity
    /// and CRLs from [default: Intel's PCS].
    #[arg(long, env = "CACHET_PCS_URL", value_name = "URL")]
    pub pcs_url: Option<String>,
    /// AMD KDS the service fetches VCEKs, chains and CRLs from [default: AMD's KDS].
    #[arg(long, env = "CACHET_KDS_URL", value_name = "URL")]
    pub kds_url: Option<String>,
    /// NVIDIA RIM service [default: NVIDIA's].
    #[arg(long, env = "CACHET_NVIDIA_RIM_URL", value_name = "URL")]
    pub nvidia_rim_url: Option<String>,
    /// NVIDIA OCSP responder [default: NVIDIA's].
    #[arg(long, env = "CACHET_NVIDIA_OCSP_URL", value_name = "URL")]
    pub nvidia_ocsp_url: Option<String>,
    /// Fetch no endorsements: use only those in the store's cache (and,
    /// for what it lacks, those the attester sends).
    #[arg(long, env = "CACHET_OFFLINE")]
    pub offline: bool,
    /// Refuse Intel collateral (the service's or the attester's) whose
    /// `tcbEvaluationDataNumber` is below N.
    #[arg(long, env = "CACHET_MIN_TCB_EVALUATION_NUMBER", value_name = "N")]
    pub min_tcb_evaluation_number: Option<u64>,
    /// Refuse collateral issued (TCB Info / QE Identity `issueDate`) or
    /// fetched longer ago than this, e.g. `7d`, `12h`, `3600` (seconds).
    #[arg(long, env = "CACHET_MAX_COLLATERAL_AGE", value_name = "DURATION")]
    pub max_collateral_age: Option<String>,
    /// Refuse SNP evidence judged without an AMD CRL, and NVIDIA evidence
    /// without an OCSP response (instead of a warning).
    #[arg(long, env = "CACHET_REQUIRE_REVOCATION")]
    pub require_revocation: bool,
    /// How often cached endorsements near their next update are re-fetched
    /// in the background, e.g. `1h`; `0` = never [default: 1h; never when offline].
    #[arg(long, env = "CACHET_ENDORSEMENT_REFRESH_INTERVAL", value_name = "DURATION")]
    pub endorsement_refresh_interval: Option<String>,
    /// INSECURE, development only: trust a simulated TEE whose root key is
    /// kept in DATA_DIR/simulated-tee/ (anyone with that file can forge
    /// evidence). Its tokens are never `affirming`.
    #[arg(long, env = "CACHET_INSECURE_SIMULATED_TEE")]
    pub insecure_simulated_tee: bool,
    /// Log format on stderr [default: text]. Levels via RUST_LOG (default info).
    #[arg(long, env = "CACHET_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Key broker: the local key-encryption key file wrapping every
    /// secret's data key, created (0600) on first start; refused if group or
    /// others can read it [default: DATA_DIR/secrets-kek.key]. Unused with
    /// --pkcs11-module.
    #[arg(long, env = "CACHET_KEK_FILE", value_name = "PATH")]
    pub kek_file: Option<PathBuf>,
    /// PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so): keep the
    /// key-encryption key in this HSM instead of a file.
    #[arg(long, env = "CACHET_PKCS11_MODULE", value_name = "PATH")]
    pub pkcs11_module: Option<PathBuf>,
    /// Label of the initialised PKCS#11 token to use [default: cachet].
    #[arg(long, env = "CACHET_PKCS11_TOKEN", value_name = "LABEL")]
    pub pkcs11_token: Option<String>,
    /// User PIN of the PKCS#11 token (prefer the environment variable).
    #[arg(long, env = "CACHET_PKCS11_PIN", value_name = "PIN", hide_env_values = true)]
    pub pkcs11_pin: Option<String>,
    /// Label of the AES key-encryption key in the token; generated in the
    /// token (non-extractable) if absent, or imported beforehand by its owner
    /// [default: cachet-kek].
    #[arg(long, env = "CACHET_PKCS11_KEK_LABEL", value_name = "LABEL")]
    pub pkcs11_kek_label: Option<String>,
    /// Where token-signing keys are generated: `local` (the store) or
    /// `pkcs11` (the HSM of --pkcs11-module, non-extractable) [default: local].
    #[arg(long, env = "CACHET_SIGNING_CUSTODY", value_enum)]
    pub signing_custody: Option<SigningCustody>,
    /// Reference values (JSON, or TOML for a `.toml` file; see `cachet
    /// refvals`) that secrets' release policies read as
    /// `data.reference_values.NAME`.
    #[arg(long, env = "CACHET_REFERENCE_VALUES", value_name = "PATH")]
    pub reference_values: Option<PathBuf>,
    /// Policy-signing certificate (PEM or DER; repeatable; comma-separated
    /// in the environment variable). When any is given, PUT
    /// /v1/admin/policies/{name} accepts only {"jws": ...}: the Rego text in
    /// a JWS signed by the key of one of them, valid at upload time (`cachet
    /// admin policy sign` makes one). TOML key: policy_signing_certs (a list).
    #[arg(long = "policy-signing-cert", env = "CACHET_POLICY_SIGNING_CERTS", value_name = "PEM", value_delimiter = ',')]
    pub policy_signing_certs: Vec<PathBuf>,
}

/// Where token-signing private keys live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SigningCustody {
    /// Generated in software, kept in the store.
    #[default]
    Local,
    /// Generated and used inside the PKCS#11 HSM.
    Pkcs11,
}

/// A PIN: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(pub String);

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// The PKCS#11 HSM settings.
#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    /// Module path.
    pub module: PathBuf,
    /// Token label.
    pub token: String,
    /// User PIN.
    pub pin: Pin,
    /// KEK label.
    pub kek_label: String,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The TOML file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    issuer: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    token_alg: Option<String>,
    token_ttl: Option<u64>,
    key_publish_lead: Option<u64>,
    key_rotate_after: Option<u64>,
    clock_skew: Option<u64>,
    nonce_ttl: Option<u64>,
    body_limit: Option<usize>,
    request_timeout: Option<u64>,
    max_concurrent_verifications: Option<usize>,
    rate_limit: Option<u32>,
    rate_limit_burst: Option<u32>,
    header_read_timeout: Option<u64>,
    idle_timeout: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
    allow_verification_time: Option<bool>,
    fixed_verification_time: Option<String>,
    pcs_url: Option<String>,
    kds_url: Option<String>,
    nvidia_rim_url: Option<String>,
    nvidia_ocsp_url: Option<String>,
    offline: Option<bool>,
    min_tcb_evaluation_number: Option<u64>,
    max_collateral_age: Option<String>,
    require_revocation: Option<bool>,
    endorsement_refresh_interval: Option<String>,
    insecure_simulated_tee: Option<bool>,
    log_format: Option<LogFormat>,
    kek_file: Option<PathBuf>,
    pkcs11_module: Option<PathBuf>,
    pkcs11_token: Option<String>,
    pkcs11_pin: Option<String>,
    pkcs11_kek_label: Option<String>,
    signing_custody: Option<SigningCustody>,
    reference_values: Option<PathBuf>,
    #[serde(alias = "policy_signing_cert")]
    policy_signing_certs: Option<Vec<PathBuf>>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Database URL, if not the data directory's file.
    pub database_url: Option<String>,
    /// Issuer; `None` means derived from the bound address.
    pub issuer: Option<String>,
    /// TLS certificate and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Algorithm of new signing keys.
    pub token_alg: Algorithm,
    /// Token lifetime (s).
    pub token_ttl: i64,
    /// Publish lead of new keys (s).
    pub key_publish_lead: i64,
    /// Automatic rotation period (s); 0 = off.
    pub key_rotate_after: i64,
    /// Clock skew allowance (s).
    pub clock_skew: i64,
    /// Nonce lifetime (s).
    pub nonce_ttl: i64,
    /// Body size limit (bytes).
    pub body_limit: usize,
    /// Request timeout (s).
    pub request_timeout: u64,
    /// Concurrent verifications.
    pub max_concurrent_verifications: usize,
    /// Unauthenticated requests per minute per client address; 0 = unlimited.
    pub rate_limit: u32,
    /// Their burst (bucket size).
    pub rate_limit_burst: u32,
    /// Time to send a request head (s).
    pub header_read_timeout: u64,
    /// Longest wait of one read or write on a connection (s).
    pub idle_timeout: u64,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once per client address.
    pub max_connections_per_client: usize,
    /// Whether `at` is accepted.
    pub allow_verification_time: bool,
    /// Test only: the verification instant of every request (Unix seconds).
    pub fixed_verification_time: Option<i64>,
    /// Where the service fetches endorsements from (and whether it does).
    pub endorsement_sources: cachet_endorse::Sources,
    /// The operator's freshness rules for endorsements.
    pub endorsement_rules: crate::endorse::FreshnessRules,
    /// Background refresh period (s); 0 = off.
    pub endorsement_refresh_interval: u64,
    /// Whether the simulated TEE root is trusted.
    pub insecure_simulated_tee: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Local KEK file (when no HSM).
    pub kek_file: PathBuf,
    /// The HSM, when configured.
    pub pkcs11: Option<Pkcs11Config>,
    /// Where signing keys live.
    pub signing_custody: SigningCustody,
    /// Reference values for release policies.
    pub reference_values: Option<PathBuf>,
    /// Policy-signing certificates; empty: unsigned policies are accepted.
    pub policy_signing_certs: Vec<PathBuf>,
}

impl Config {
    /// Check the files the configuration names before any state is touched
    /// (data directory, database, keys): the TLS certificate chain and key
    /// exist, parse and belong together, and the reference-value and
    /// policy-signing files exist. `start` calls it first, so a mistyped
    /// path leaves nothing behind.
    pub fn check_files(&self) -> Result<(), String> {
        if let Some((cert, key)) = &self.tls {
            check_tls_files(cert, key)?;
        }
        let named = self.reference_values.iter().map(|p| ("--reference-values", p));
        for (flag, path) in named.chain(self.policy_signing_certs.iter().map(|p| ("--policy-signing-cert", p))) {
            if let Err(e) = std::fs::metadata(path) {
                return Err(format!("{flag} {}: {e}; check the path", path.display()));
            }
        }
        Ok(())
    }
}

/// The TLS certificate chain and private key (PEM) load into a rustls
/// server configuration.
fn check_tls_files(cert: &Path, key: &Path) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |flag: &str, path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| format!("{flag} {}: {e}; give the {what} (PEM) the service presents", path.display()))
    };
    let cert_pem = read("--tls-cert", cert, "certificate chain")?;
    let key_pem = read("--tls-key", key, "private key")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {}: not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("--tls-cert {}: no CERTIFICATE block; give the certificate chain in PEM, leaf first", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("--tls-key {}: no usable PEM private key ({e}); give the key of the --tls-cert certificate", key.display()))?;
    rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            format!("--tls-cert {} / --tls-key {}: {e}; give a certificate and the key it certifies", cert.display(), key.display())
        })?;
    Ok(())
}

fn secs(v: u64, name: &str) -> Result<i64, String> {
    i64::try_from(v).ok().filter(|s| *s <= 10 * 365 * 86_400).ok_or_else(|| format!("{name}: {v} seconds is too large"))
}

impl ServeArgs {
    /// Merge flags/environment with the configuration file and defaults.
    pub fn resolve(&self) -> Result<Config, String> {
        let file = match &self.config {
            Some(p) => read_file_config(p)?,
            None => FileConfig::default(),
        };
        let default_listen: SocketAddr = DEFAULT_LISTEN.parse().map_err(|e| format!("{e}"))?;
        let token_alg = match (&self.token_alg, &file.token_alg) {
            (Some(a), _) => *a,
            (None, Some(s)) => s.parse::<Algorithm>()?,
            (None, None) => Algorithm::ES256,
        };
        let tls = match (self.tls_cert.clone().or(file.tls_cert), self.tls_key.clone().or(file.tls_key)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("TLS needs both tls_cert and tls_key".into()),
        };
        let token_ttl = secs(self.token_ttl.or(file.token_ttl).unwrap_or(600), "token_ttl")?;
        if token_ttl < 1 {
            return Err("token_ttl must be at least 1 second".into());
        }
        let nonce_ttl = secs(self.nonce_ttl.or(file.nonce_ttl).unwrap_or(300), "nonce_ttl")?;
        if nonce_ttl < 1 {
            return Err("nonce_ttl must be at least 1 second".into());
        }
        let max_concurrent_verifications = self.max_concurrent_verifications.or(file.max_concurrent_verifications).unwrap_or(8).max(1);
        let request_timeout = self.request_timeout.or(file.request_timeout).unwrap_or(30).max(1);
        let header_read_timeout = self.header_read_timeout.or(file.header_read_timeout).unwrap_or(10);
        secs(header_read_timeout, "header_read_timeout")?;
        if header_read_timeout < 1 {
            return Err("header_read_timeout must be at least 1 second".into());
        }
        let idle_timeout = self.idle_timeout.or(file.idle_timeout).unwrap_or(request_timeout.max(60));
        secs(idle_timeout, "idle_timeout")?;
        if idle_timeout < request_timeout {
            return Err(format!(
                "idle_timeout ({idle_timeout} s) must be at least request_timeout ({request_timeout} s), or slow requests would be cut off"
            ));
        }
        let max_connections = self.max_connections.or(file.max_connections).unwrap_or(1024).max(1);
        let max_connections_per_client = self
            .max_connections_per_client
            .or(file.max_connections_per_client)
            .unwrap_or(max_connections - max_connections / 4)
            .clamp(1, max_connections);
        let data_dir = self.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("cachet-data"));
        let pkcs11 = match self.pkcs11_module.clone().or(file.pkcs11_module) {
            None => None,
            Some(module) => Some(Pkcs11Config {
                module,
                token: self.pkcs11_token.clone().or(file.pkcs11_token).unwrap_or_else(|| "cachet".into()),
                pin: Pin(self.pkcs11_pin.clone().or(file.pkcs11_pin).ok_or("pkcs11_module needs pkcs11_pin (CACHET_PKCS11_PIN)")?),
                kek_label: self.pkcs11_kek_label.clone().or(file.pkcs11_kek_label).unwrap_or_else(|| "cachet-kek".into()),
            }),
        };
        let defaults = cachet_endorse::Sources::default();
        let source_url = |flag: &Option<String>, file: Option<String>, default: String, name: &str| -> Result<String, String> {
            let u = flag.clone().or(file).unwrap_or(default);
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(format!("{name}: '{u}' is not an http(s) URL"));
            }
            Ok(u.trim_end_matches('/').to_string())
        };
        let endorsement_sources = cachet_endorse::Sources {
            pcs_url: source_url(&self.pcs_url, file.pcs_url, defaults.pcs_url, "pcs_url")?,
            kds_url: source_url(&self.kds_url, file.kds_url, defaults.kds_url, "kds_url")?,
            nvidia_rim_url: source_url(&self.nvidia_rim_url, file.nvidia_rim_url, defaults.nvidia_rim_url, "nvidia_rim_url")?,
            nvidia_ocsp_url: source_url(&self.nvidia_ocsp_url, file.nvidia_ocsp_url, defaults.nvidia_ocsp_url, "nvidia_ocsp_url")?,
            offline: self.offline || file.offline.unwrap_or(false),
            timeout: defaults.timeout,
        };
        let endorsement_rules = crate::endorse::FreshnessRules {
            min_tcb_evaluation_number: self.min_tcb_evaluation_number.or(file.min_tcb_evaluation_number),
            max_collateral_age: match self.max_collateral_age.clone().or(file.max_collateral_age) {
                Some(d) => Some(duration(&d, "max_collateral_age")?),
                None => None,
            },
            require_revocation: self.require_revocation || file.require_revocation.unwrap_or(false),
        };
        let endorsement_refresh_interval = match self.endorsement_refresh_interval.clone().or(file.endorsement_refresh_interval) {
            Some(d) => duration(&d, "endorsement_refresh_interval")?,
            None => 3600,
        };
        let signing_custody = self.signing_custody.or(file.signing_custody).unwrap_or_default();
        if signing_custody == SigningCustody::Pkcs11 && pkcs11.is_none() {
            return Err("signing_custody = pkcs11 needs pkcs11_module".into());
        }
        Ok(Config {
            kek_file: self.kek_file.clone().or(file.kek_file).unwrap_or_else(|| data_dir.join("secrets-kek.key")),
            pkcs11,
            signing_custody,
            reference_values: self.reference_values.clone().or(file.reference_values),
            policy_signing_certs: if self.policy_signing_certs.is_empty() {
                file.policy_signing_certs.unwrap_or_default()
            } else {
                self.policy_signing_certs.clone()
            },
            listen: self.listen.or(file.listen).unwrap_or(default_listen),
            data_dir,
            database_url: self.database_url.clone().or(file.database_url),
            issuer: self.issuer.clone().or(file.issuer).map(|s| s.trim_end_matches('/').to_string()),
            tls,
            token_alg,
            token_ttl,
            key_publish_lead: secs(self.key_publish_lead.or(file.key_publish_lead).unwrap_or(3600), "key_publish_lead")?,
            key_rotate_after: secs(self.key_rotate_after.or(file.key_rotate_after).unwrap_or(30 * 86_400), "key_rotate_after")?,
            clock_skew: secs(self.clock_skew.or(file.clock_skew).unwrap_or(60), "clock_skew")?,
            nonce_ttl,
            body_limit: self.body_limit.or(file.body_limit).unwrap_or(16 << 20).max(1024),
            request_timeout,
            max_concurrent_verifications,
            rate_limit: self.rate_limit.or(file.rate_limit).unwrap_or(1200),
            rate_limit_burst: self.rate_limit_burst.or(file.rate_limit_burst).unwrap_or(200).max(1),
            header_read_timeout,
            idle_timeout,
            max_connections,
            max_connections_per_client,
            allow_verification_time: self.allow_verification_time || file.allow_verification_time.unwrap_or(false),
            fixed_verification_time: match self.fixed_verification_time.clone().or(file.fixed_verification_time) {
                Some(t) => Some(
                    time::OffsetDateTime::parse(t.trim(), &time::format_description::well_known::Rfc3339)
                        .map_err(|e| format!("fixed_verification_time: '{t}' is not an RFC 3339 time (e.g. 2025-07-04T10:28:44Z): {e}"))?
                        .unix_timestamp(),
                ),
                None => None,
            },
            endorsement_sources,
            endorsement_rules,
            endorsement_refresh_interval,
            insecure_simulated_tee: self.insecure_simulated_tee || file.insecure_simulated_tee.unwrap_or(false),
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
        })
    }
}

/// A duration in seconds: `N`, `Ns`, `Nm`, `Nh` or `Nd`.
fn duration(text: &str, name: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("{name}: '{text}' is not a duration (e.g. 7d, 12h, 30m, 3600)")),
    };
    let n: u64 = digits.trim().parse().map_err(|_| format!("{name}: '{text}' is not a duration (e.g. 7d, 12h, 30m, 3600)"))?;
    let v = n.checked_mul(mult).ok_or_else(|| format!("{name}: '{text}' is too large"))?;
    secs(v, name)?;
    Ok(v)
}

fn read_file_config(path: &Path) -> Result<FileConfig, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > 1 << 20 {
        return Err(format!("{}: configuration file larger than 1 MiB", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("cachet-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "token_ttl = 42\nnonce_ttl = 7\ntoken_alg = \"PS256\"\nallow_verification_time = true\n").unwrap();
        let args = ServeArgs { config: Some(file.clone()), token_ttl: Some(99), ..Default::default() };
        let c = args.resolve().unwrap();
        assert_eq!(c.token_ttl, 99);
        assert_eq!(c.nonce_ttl, 7);
        assert_eq!(c.token_alg, Algorithm::PS256);
        assert!(c.allow_verification_time);
        assert!(!c.insecure_simulated_tee);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        std::fs::write(&file, "no_such_key = 1\n").unwrap();
        assert!(args.resolve().is_err(), "unknown keys are refused");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_fixed_verification_time_is_read_from_flag_or_file_and_must_be_rfc3339() {
        assert_eq!(ServeArgs::default().resolve().unwrap().fixed_verification_time, None);
        let a = ServeArgs { fixed_verification_time: Some("2025-07-04T10:28:44Z".into()), ..Default::default() };
        assert_eq!(a.resolve().unwrap().fixed_verification_time, Some(1_751_624_924));
        let dir = std::env::temp_dir().join(format!("cachet-cfg-fixed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "fixed_verification_time = \"2025-07-04T10:28:44Z\"\n").unwrap();
        let f = ServeArgs { config: Some(file), ..Default::default() };
        assert_eq!(f.resolve().unwrap().fixed_verification_time, Some(1_751_624_924));
        let bad = ServeArgs { fixed_verification_time: Some("yesterday".into()), ..Default::default() };
        assert!(bad.resolve().unwrap_err().contains("RFC 3339"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn endorsement_sources_default_to_the_vendors_and_take_flags_and_file_keys() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.endorsement_sources, cachet_endorse::Sources::default(), "the vendors' services, online");
        let dir = std::env::temp_dir().join(format!("cachet-cfg-endorse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "pcs_url = \"http://pccs.local:8081/\"\nkds_url = \"http://kds.local\"\noffline = true\n").unwrap();
        let args = ServeArgs { config: Some(file.clone()), kds_url: Some("https://kds.example".into()), ..Default::default() };
        let s = args.resolve().unwrap().endorsement_sources;
        assert_eq!(s.pcs_url, "http://pccs.local:8081");
        assert_eq!(s.kds_url, "https://kds.example", "the flag wins over the file");
        assert_eq!(s.nvidia_rim_url, cachet_endorse::NVIDIA_RIM_URL);
        assert!(s.offline);
        let bad = ServeArgs { pcs_url: Some("file:///etc/passwd".into()), ..Default::default() };
        assert!(bad.resolve().unwrap_err().contains("pcs_url"), "only http(s) sources");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn connection_and_rate_limits_have_safe_defaults_and_file_keys() {
        let c = ServeArgs::default().resolve().unwrap();
        assert!(c.header_read_timeout <= 30, "a half-sent request is closed within 30 s by default");
        assert_eq!((c.idle_timeout, c.max_connections, c.max_connections_per_client), (60, 1024, 768));
        assert_eq!((c.rate_limit, c.rate_limit_burst), (1200, 200));
        let slow = ServeArgs { request_timeout: Some(120), ..Default::default() }.resolve().unwrap();
        assert_eq!(slow.idle_timeout, 120, "the idle timeout never cuts a request the request timeout allows");
        let e = ServeArgs { request_timeout: Some(30), idle_timeout: Some(10), ..Default::default() }.resolve().unwrap_err();
        assert!(e.contains("idle_timeout"), "{e}");
        assert!(ServeArgs { header_read_timeout: Some(0), ..Default::default() }.resolve().is_err());

        let dir = std::env::temp_dir().join(format!("cachet-cfg-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "rate_limit = 0\nrate_limit_burst = 5\nheader_read_timeout = 3\nidle_timeout = 40\nmax_connections = 10\nmax_connections_per_client = 50\n",
        )
        .unwrap();
        let c = ServeArgs { config: Some(file), ..Default::default() }.resolve().unwrap();
        assert_eq!((c.rate_limit, c.rate_limit_burst, c.header_read_timeout, c.idle_timeout), (0, 5, 3, 40));
        assert_eq!((c.max_connections, c.max_connections_per_client), (10, 10), "per client never above the total");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn endorsement_freshness_rules_and_refresh_interval_from_flags_and_file() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.endorsement_rules, crate::endorse::FreshnessRules::default(), "no rules unless the operator sets them");
        assert_eq!(c.endorsement_refresh_interval, 3600);
        assert_eq!(duration("7d", "x").unwrap(), 7 * 86_400);
        assert_eq!(duration("12h", "x").unwrap(), 12 * 3600);
        assert_eq!(duration("30m", "x").unwrap(), 1800);
        assert_eq!(duration("45", "x").unwrap(), 45);
        assert_eq!(duration("0", "x").unwrap(), 0);
        for bad in ["", "d", "7w", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(duration(bad, "max_collateral_age").unwrap_err().contains("max_collateral_age"), "{bad}");
        }

        let dir = std::env::temp_dir().join(format!("cachet-cfg-freshness-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "min_tcb_evaluation_number = 17\nmax_collateral_age = \"7d\"\nrequire_revocation = true\nendorsement_refresh_interval = \"0\"\n",
        )
        .unwrap();
        let c = ServeArgs { config: Some(file.clone()), ..Default::default() }.resolve().unwrap();
        assert_eq!(c.endorsement_rules.min_tcb_evaluation_number, Some(17));
        assert_eq!(c.endorsement_rules.max_collateral_age, Some(7 * 86_400));
        assert!(c.endorsement_rules.require_revocation);
        assert_eq!(c.endorsement_refresh_interval, 0, "0 turns the refresh off");
        let flag = ServeArgs { config: Some(file), min_tcb_evaluation_number: Some(19), ..Default::default() }.resolve().unwrap();
        assert_eq!(flag.endorsement_rules.min_tcb_evaluation_number, Some(19), "the flag wins over the file");
        let bad = ServeArgs { max_collateral_age: Some("soon".into()), ..Default::default() }.resolve().unwrap_err();
        assert!(bad.contains("max_collateral_age"), "{bad}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
