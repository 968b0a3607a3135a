//! `cachet verify`: evidence file + endorsement files -> verdict, claims, checks.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    /// Hex nonce the evidence must carry (TPM extraData, Nitro nonce).
    #[arg(long)]
    pub nonce: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
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

fn parse_tee(s: &str) -> Result<TeeArg, String> {
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
    let anchors = TrustAnchors::pinned();
    let req = VerifyRequest {
        evidence: &evidence,
        endorsements: &endorsements,
        anchors: &anchors,
        at,
        expected_nonce: nonce.as_deref(),
    };
    let v = cachet_verify::verify(tee, &req);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&to_json(&v)).unwrap_or_default()),
        Format::Text => print_text(&v, at),
    }
    if let Err(e) = &v.result {
        if matches!(args.format, Format::Json) {
            eprintln!("verification failed: {e}");
        }
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
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

fn parse_rfc3339(s: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| e.to_string())
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().trim_start_matches("0x");
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}
