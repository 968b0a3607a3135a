//! `cachet verify`: evidence file + endorsement files -> verdict, claims, checks.

/// Output to stdout that never panics: `cachet verify … | head` closes the
/// pipe early, and std's `println!` would panic on the broken pipe. Shadows
/// the prelude macro for this module.
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cachet_appraise::{Appraisal, AppraisalInput, Policy, PolicyError, ReferenceValues, Status};
use cachet_endorse::Sources;
use cachet_verify::{encoding, Endorsement, Tee, TrustAnchors, Verification, VerifyRequest};
use clap::{Args, ValueEnum};
use serde_json::json;

/// Largest endorsement file read (bytes).
const MAX_ENDORSEMENT_LEN: u64 = 16 << 20;

#[derive(Args)]
pub struct VerifyArgs {
    /// Evidence file: binary, hex or base64 (detected), or a JSON document.
    pub evidence: PathBuf,
    /// Evidence family; `auto` guesses from the evidence's structure.
    #[arg(long, default_value = "auto", value_parser = parse_tee)]
    pub tee: TeeArg,
    /// Certificates, CRLs, collateral bundles or RIMs (files or folders);
    /// may be repeated.
    #[arg(long = "endorsements", short = 'e')]
    pub endorsements: Vec<PathBuf>,
    /// Verify as of this instant (RFC 3339, e.g. 2025-07-04T10:28:44Z);
    /// default: now.
    #[arg(long)]
    pub at: Option<String>,
    /// Hex nonce the evidence must carry, 8 to 64 bytes. Fixed-size fields
    /// must hold exactly the nonce zero-padded to their size: SGX/TDX/SNP
    /// REPORTDATA and Azure user-data (64 bytes; to check the
    /// SHA-512(nonce || runtime data) binding pass that 64-byte value),
    /// the NVIDIA SPDM nonce (32 bytes). TPM extraData and the Nitro nonce
    /// must equal it exactly.
    #[arg(long)]
    pub nonce: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Appraise the verified claims with this Rego policy (or `default`:
    /// the family's built-in default policy) and print each rule's outcome.
    /// Exit status 1 when the appraisal is contraindicated.
    #[arg(long)]
    pub policy: Option<String>,
    /// Reference values for the policy (JSON or TOML, see `cachet refvals`);
    /// implies `--policy default` when no policy is given.
    #[arg(long)]
    pub refvals: Option<PathBuf>,
    /// Without --endorsements, the vendors' services the endorsements come from.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Fetch nothing: use only the cache folder (or --endorsements).
    /// Refused (exit status 2), naming what is missing, when the cache lacks
    /// something the evidence needs.
    #[arg(long)]
    pub offline: bool,
    /// Where fetched endorsements are kept
    /// [default: $XDG_CACHE_HOME/cachet/endorsements or ~/.cache/cachet/endorsements].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// The vendors' services endorsements are fetched from (`cachet verify`,
/// `cachet endorsements fetch`); `cachet serve` takes the same in its config.
/// Unset, each is the vendor's public service.
#[derive(Args)]
pub struct SourceArgs {
    /// Intel collateral from this Intel PCS API v4 or PCCS [default: https://api.trustedservices.intel.com].
    #[arg(long, value_name = "URL")]
    pub pcs_url: Option<String>,
    /// AMD VCEKs, chains and CRLs from this KDS [default: https://kdsintf.amd.com].
    #[arg(long, value_name = "URL")]
    pub kds_url: Option<String>,
    /// NVIDIA RIMs from this RIM service [default: https://rim.attestation.nvidia.com].
    #[arg(long, value_name = "URL")]
    pub nvidia_rim_url: Option<String>,
    /// NVIDIA OCSP responder [default: https://ocsp.ndis.nvidia.com].
    #[arg(long, value_name = "URL")]
    pub nvidia_ocsp_url: Option<String>,
}

impl SourceArgs {
    /// The sources as `cachet-endorse` takes them.
    pub fn to_sources(&self, offline: bool) -> Sources {
        let url = |u: &Option<String>, default: &str| u.as_deref().unwrap_or(default).trim_end_matches('/').to_string();
        Sources {
            pcs_url: url(&self.pcs_url, cachet_endorse::INTEL_PCS_URL),
            kds_url: url(&self.kds_url, cachet_endorse::AMD_KDS_URL),
            nvidia_rim_url: url(&self.nvidia_rim_url, cachet_endorse::NVIDIA_RIM_URL),
            nvidia_ocsp_url: url(&self.nvidia_ocsp_url, cachet_endorse::NVIDIA_OCSP_URL),
            offline,
            ..Sources::default()
        }
    }

    /// Whether any source was named on the command line.
    pub fn any_named(&self) -> bool {
        self.pcs_url.is_some() || self.kds_url.is_some() || self.nvidia_rim_url.is_some() || self.nvidia_ocsp_url.is_some()
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy)]
pub enum TeeArg {
    Auto,
    Tee(Tee),
}

pub(crate) fn parse_tee(s: &str) -> Result<TeeArg, String> {
    if s == "auto" {
        return Ok(TeeArg::Auto);
    }
    Tee::parse(s).map(TeeArg::Tee).ok_or_else(|| {
        let names: Vec<_> = Tee::ALL.iter().map(|t| t.as_str()).collect();
        format!("unknown TEE '{s}'; expected auto or one of {}", names.join(", "))
    })
}

/// A usage or I/O problem: printed on stderr, exit status 2.
fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("cachet verify: {msg}");
    ExitCode::from(2)
}

pub fn run(args: VerifyArgs) -> ExitCode {
    let raw = match read_limited(&args.evidence, cachet_verify::MAX_EVIDENCE_LEN as u64) {
        Ok(b) => b,
        Err(e) => return usage_error(e),
    };
    let (_, evidence) = encoding::decode_evidence(&raw);
    let mut endorsements = Vec::new();
    for p in &args.endorsements {
        if let Err(e) = collect_endorsements(p, &mut endorsements) {
            return usage_error(e);
        }
    }
    let at = match &args.at {
        Some(s) => match parse_rfc3339(s) {
            Ok(t) => t,
            Err(e) => return usage_error(format!("--at {s:?}: {e} (expected RFC 3339, e.g. 2025-07-04T10:28:44Z)")),
        },
        None => time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let nonce = match &args.nonce {
        Some(h) => match hex_decode(h) {
            Some(n) => Some(n),
            None => return usage_error("--nonce must be hexadecimal"),
        },
        None => None,
    };
    let tee = match args.tee {
        TeeArg::Tee(t) => t,
        TeeArg::Auto => match cachet_verify::detect_tee(&evidence) {
            Some(t) => t,
            None => return usage_error("cannot tell which TEE produced this evidence; pass --tee"),
        },
    };
    // Get what the evidence needs and the given files do not hold (cache,
    // else the vendors). Given ones are used as they are: the CLI user is the
    // operator (e.g. a GPU's device certificates with fetched RIMs).
    match fetch_endorsements(&args, tee, &evidence, at, &endorsements) {
        Ok(fetched) => endorsements.extend(fetched),
        Err(e) => return usage_error(e),
    }
    let appraiser = match load_appraiser(&args, tee) {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    let anchors = TrustAnchors::pinned();
    let req = VerifyRequest { evidence: &evidence, endorsements: &endorsements, anchors: &anchors, at, expected_nonce: nonce.as_deref() };
    let v = cachet_verify::verify(tee, &req);
    let appraisal = appraiser.as_ref().map(|a| a.appraise(&v, args.nonce.as_deref(), at));
    match args.format {
        Format::Json => {
            let mut doc = to_json(&v);
            if let (Some(a), Some(obj)) = (&appraisal, doc.as_object_mut()) {
                obj.insert("appraisal".into(), appraisal_json(a));
            }
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default())
        }
        Format::Text => {
            print_text(&v, at);
            if let Some(a) = &appraisal {
                print_appraisal(a);
            }
        }
    }
    if let Err(e) = &v.result {
        if matches!(args.format, Format::Json) {
            eprintln!("verification failed: {e}");
        }
        return ExitCode::from(1);
    }
    match &appraisal {
        Some(Err(e)) => {
            eprintln!("cachet verify: appraisal failed: {e}");
            ExitCode::from(1)
        }
        Some(Ok(a)) if a.status == Status::Contraindicated => {
            if matches!(args.format, Format::Json) {
                eprintln!("appraisal: contraindicated by policy {}", a.policy_name);
            }
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// What a resource is, for the progress line and messages.
fn describe(r: &cachet_endorse::Resource) -> String {
    use cachet_endorse::Resource as R;
    match r {
        R::TcbInfo { tee, fmspc } => format!("{} TCB Info for FMSPC {fmspc}", tee.as_str().to_uppercase()),
        R::QeIdentity { tee } => format!("{} QE Identity", tee.as_str().to_uppercase()),
        R::PckCrl { ca } => format!("PCK CRL ({})", ca.as_str()),
        R::RootCaCrl => "Intel SGX Root CA CRL".into(),
        R::Vcek { product, .. } => format!("VCEK ({})", product.as_str()),
        R::AmdChain { product, key } => format!("{} certificate chain ({})", key.as_str().to_uppercase(), product.as_str()),
        R::AmdCrl { product, key } => format!("AMD CRL ({}, {})", product.as_str(), key.as_str().to_uppercase()),
        R::Rim { id } => format!("NVIDIA RIM {id}"),
        R::Ocsp { serial, .. } => format!("NVIDIA OCSP answer for certificate {serial}"),
    }
}

/// The endorsements `evidence` needs that `given` does not hold, from the
/// cache folder or fetched (and cached). Errors name what is missing and what
/// to do. With files given, what cannot be had is a warning: the verifier
/// then refuses by name whatever is still short, and optional pieces (AMD
/// CRLs) are not fetched at all, so that complete files never wait on a vendor.
fn fetch_endorsements(args: &VerifyArgs, tee: Tee, evidence: &[u8], at: i64, given: &[Endorsement]) -> Result<Vec<Endorsement>, String> {
    use cachet_endorse::{EndorseError, Endorser, FolderCache, Resource};
    let needed = match cachet_endorse::needs(tee, evidence) {
        Ok(n) if given.is_empty() => n,
        Ok(n) => {
            let held = cachet_endorse::authority::Coverage::of(given);
            n.into_iter().filter(|r| !r.optional() && !held.covers(r)).collect()
        }
        Err(_) if !given.is_empty() => return Ok(Vec::new()),
        Err(e) => return Err(format!("{e}; give the endorsements with --endorsements")),
    };
    // NVIDIA: revocation (OCSP) of the certificates known once the rest is had.
    if needed.is_empty() && tee != Tee::Nvgpu {
        return Ok(Vec::new());
    }
    let dir = match &args.cache_dir {
        Some(d) => d.clone(),
        None => FolderCache::default_dir().ok_or("no cache folder (set HOME or XDG_CACHE_HOME, or pass --cache-dir)")?,
    };
    // With files given, the vendors are asked only when a source is named:
    // the files are the operator's choice, and an air-gapped run of complete
    // files must never wait on a network (the cache is still read).
    let sources = args.sources.to_sources(args.offline || (!given.is_empty() && !args.sources.any_named()));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        // With files given, a piece that cannot be had is only a warning:
        // one attempt, no back-off.
        let retry = if given.is_empty() { Default::default() } else { cachet_endorse::http::Retry { attempts: 1, ..Default::default() } };
        let endorser = Endorser::with_retry(sources, std::sync::Arc::new(FolderCache::new(dir)), retry).map_err(|e| e.to_string())?;
        let (mut out, mut missing) = (Vec::new(), Vec::new());
        for r in &needed {
            let cached_fresh = endorser.cache().get(&r.key()).await.is_some_and(|c| c.next_update.is_none_or(|n| at < n));
            if !cached_fresh && !endorser.sources().offline {
                let from = match r {
                    Resource::Vcek { .. } | Resource::AmdChain { .. } | Resource::AmdCrl { .. } => &endorser.sources().kds_url,
                    Resource::Rim { .. } => &endorser.sources().nvidia_rim_url,
                    _ => &endorser.sources().pcs_url,
                };
                eprintln!("fetching {} from {from} …", describe(r));
            }
            match endorser.get(r, at).await {
                Ok(f) => out.extend(f.endorsements()),
                Err(e) if r.optional() || !given.is_empty() => {
                    eprintln!("cachet verify: {} not available ({e}); going on without it", describe(r))
                }
                Err(EndorseError::Offline(_)) => missing.push(describe(r)),
                Err(e) => return Err(format!("{}: {e}", describe(r))),
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "--offline and not cached: {}; fetch them without --offline, or give them with --endorsements",
                missing.join(", ")
            ));
        }
        if tee != Tee::Nvgpu {
            return Ok(out);
        }
        let known: Vec<Endorsement> = given.iter().chain(&out).cloned().collect();
        let held = cachet_endorse::authority::Coverage::of(&known);
        let asked = cachet_endorse::nvidia::ocsp_needs(&known).iter().filter(|r| !held.covers(r)).count();
        if asked > 0 {
            if !endorser.sources().offline {
                eprintln!("fetching NVIDIA OCSP answers for {asked} certificates from {} …", endorser.sources().nvidia_ocsp_url);
            }
            let answers = endorser.revocation(tee, &known, at).await;
            if answers.len() < asked {
                eprintln!(
                    "cachet verify: NVIDIA OCSP answers for {} of {asked} certificates not available; their revocation is not checked",
                    asked - answers.len()
                );
            }
            out.extend(answers.iter().flat_map(|f| f.endorsements()));
        }
        Ok(out)
    })
}

/// The `--format json` document: `{verified, tee, claims, checks, error}`.
pub fn to_json(v: &Verification) -> serde_json::Value {
    let (claims, error) = match &v.result {
        Ok(c) => (c.clone(), serde_json::Value::Null),
        Err(e) => (json!({}), json!({"code": e.code(), "check": e.check, "message": e.message})),
    };
    json!({
        "verified": v.verified(),
        "tee": v.tee.as_str(),
        "claims": claims,
        "checks": v.checks,
        "error": error,
    })
}

fn print_text(v: &Verification, at: i64) {
    let when = cachet_verify::x509::fmt_time(at);
    match &v.result {
        Ok(claims) => {
            println!("VERIFIED  {} evidence, as of {when}", v.tee);
            if let Some(obj) = claims.as_object() {
                for key in ["tcb_status", "advisory_ids", "debug", "fmspc", "product"] {
                    if let Some(val) = obj.get(key) {
                        println!("  {key:<14} {}", short(val));
                    }
                }
                println!("  claims:");
                for (k, val) in obj {
                    println!("    {k:<18} {}", short(val));
                }
            }
        }
        Err(e) => {
            println!("REFUSED   {} evidence, as of {when}", v.tee);
            println!("  {e}");
        }
    }
    println!("  checks:");
    for c in &v.checks {
        println!("    {} {:<34} {}", if c.ok { "✓" } else { "✗" }, c.name, c.detail);
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.len() > 100 {
        format!("{}…", &s[..s.char_indices().nth(99).map(|(i, _)| i).unwrap_or(s.len())])
    } else {
        s
    }
}

/// Read a file, refusing anything larger than `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > limit {
        return Err(format!("{}: {} bytes is larger than the {limit}-byte limit", path.display(), meta.len()));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Read an endorsement file, or every regular file of a folder (sorted).
fn collect_endorsements(path: &Path, out: &mut Vec<Endorsement>) -> Result<(), String> {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        for p in entries {
            collect_endorsements(&p, out)?;
        }
        return Ok(());
    }
    let bytes = read_limited(path, MAX_ENDORSEMENT_LEN)?;
    out.push(Endorsement { name: path.display().to_string(), bytes });
    Ok(())
}

pub(crate) fn parse_rfc3339(s: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map(|t| t.unix_timestamp()).map_err(|e| e.to_string())
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().trim_start_matches("0x");
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// A policy and its reference values, ready to appraise claims.
pub struct Appraiser {
    policy: Policy,
    refvals: ReferenceValues,
}

impl Appraiser {
    /// Appraise a verification: the policy's verdict on verified claims, or
    /// a contraindicated appraisal naming the failed check.
    fn appraise(&self, v: &Verification, nonce: Option<&str>, at: i64) -> Result<Appraisal, PolicyError> {
        match &v.result {
            Ok(claims) => {
                let mut input = AppraisalInput::new(v.tee.as_str(), claims.clone());
                input.nonce = nonce.map(|n| n.trim().trim_start_matches("0x").to_ascii_lowercase());
                self.policy.evaluate(&input, &self.refvals, at)
            }
            Err(e) => Ok(Appraisal::verification_failed(self.policy.name(), self.policy.hash(), &e.check, &e.message)),
        }
    }
}

/// `--policy FILE|default` and `--refvals FILE`: compile and validate the
/// policy (a broken one is a usage error), read the reference values.
fn load_appraiser(args: &VerifyArgs, tee: Tee) -> Result<Option<Appraiser>, String> {
    let spec = match (&args.policy, &args.refvals) {
        (None, None) => return Ok(None),
        (Some(p), _) => p.clone(),
        (None, Some(_)) => "default".to_string(),
    };
    let policy = if spec == "default" {
        cachet_appraise::defaults::default_policy(tee.as_str()).map_err(|e| format!("--policy default: {e}"))?
    } else {
        let path = Path::new(&spec);
        if !path.exists() {
            return Err(format!("no policy file '{spec}': give a Rego file, or `default` for the family's built-in policy"));
        }
        let bytes = read_limited(path, cachet_appraise::policy::MAX_POLICY_LEN as u64).map_err(|e| format!("--policy {e}"))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("--policy {spec}: not UTF-8 text"))?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| spec.clone());
        Policy::validate(&name, &text).map_err(|e| format!("--policy {spec}: {e}"))?
    };
    let refvals = match &args.refvals {
        None => ReferenceValues::new(),
        Some(path) => {
            let bytes = read_limited(path, cachet_appraise::refvals::MAX_FILE_LEN)?;
            let text = String::from_utf8(bytes).map_err(|_| format!("--refvals {}: not UTF-8 text", path.display()))?;
            let toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
            ReferenceValues::parse(&text, toml).map_err(|e| format!("--refvals {}: {e}", path.display()))?
        }
    };
    Ok(Some(Appraiser { policy, refvals }))
}

/// The `"appraisal"` member of `--format json`: the EAR status, the AR4SI
/// vector, each rule's outcome, extra claims and the policy's hash.
fn appraisal_json(a: &Result<Appraisal, PolicyError>) -> serde_json::Value {
    match a {
        Ok(a) => {
            let mut v = serde_json::to_value(a).unwrap_or_default();
            if let Some(obj) = v.as_object_mut() {
                obj.insert("policy_id".into(), a.policy_id().into());
            }
            v
        }
        Err(e) => json!({"status": "contraindicated", "error": e.to_string()}),
    }
}

fn print_appraisal(a: &Result<Appraisal, PolicyError>) {
    let a = match a {
        Ok(a) => a,
        Err(e) => {
            println!("  appraisal: FAILED  {e}");
            return;
        }
    };
    println!("  appraisal: {}  (policy {}, sha256 {})", a.status.as_str().to_uppercase(), a.policy_name, a.policy_hash);
    for r in &a.reasons {
        let mark = match r.outcome {
            Status::Affirming => "✓",
            Status::Warning => "!",
            Status::Contraindicated => "✗",
            Status::None => "·",
        };
        println!("    {mark} {:<16} {:<30} {}", r.outcome.as_str(), r.rule, r.detail);
    }
    let vector: Vec<String> = cachet_appraise::ear::VECTOR_CLAIMS
        .iter()
        .zip(a.trustworthiness_vector.entries())
        .filter_map(|((rule, ear_name), (_, v))| {
            let v = v?;
            Some(match cachet_appraise::ear::claim_value_tag(rule, v) {
                Some(tag) => format!("{ear_name}={v} ({tag})"),
                None => format!("{ear_name}={v}"),
            })
        })
        .collect();
    println!("  trustworthiness vector: {}", if vector.is_empty() { "(no claims)".to_string() } else { vector.join(", ") });
    for (k, v) in &a.claims {
        println!("  policy claim {k}: {}", short(v));
    }
}
