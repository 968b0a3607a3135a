//! A SIMULATED TEE, for development and tests. It proves nothing.
//!
//! Real TEEs sign their reports with a key fused into (or certified for) the
//! hardware. The simulated TEE signs a small JSON report with an ordinary
//! software key (ECDSA P-256), so anyone holding that key can forge any
//! measurement. It exists so that the attestation protocol — challenge, fresh
//! nonce bound into `report_data`, token — can be exercised end to end on a
//! machine without confidential-computing hardware.
//!
//! It is only trusted against an [`AnchorKind::SimulatedTee`] anchor, which
//! is never among [`TrustAnchors::pinned`](crate::TrustAnchors::pinned): a
//! verifier with the genuine roots refuses every simulated report. The
//! attester side (producing reports) is `cachet_attester::simulated`.
//!
//! # Evidence format (`cachet-simulated-tee-report/v1`)
//!
//! A JSON envelope:
//!
//! ```json
//! {"format": "cachet-simulated-tee-report/v1",
//!  "warning": "SIMULATED TEE ...",
//!  "report": "<base64 of the report body>",
//!  "signature": "<base64 of ES256 (r || s, 64 bytes) over the report body bytes>"}
//! ```
//!
//! The report body is itself JSON with exactly these fields:
//! `format` (same label), `simulated` (must be `true`), `measurement` (hex,
//! 48 bytes), `report_data` (hex, 64 bytes), `debug` (bool), `svn` (integer)
//! and `issued_at` (Unix seconds). The signature covers the body bytes as
//! sent, so there is no canonicalisation to get wrong.

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde::Deserialize;
use serde_json::json;

use crate::anchors::AnchorKind;
use crate::encoding::decode_base64;
use crate::x509::{check_validity, ec_curve, parse_cert};
use crate::{Checks, VResult, VerifyRequest};

/// The format label, in the envelope and inside the signed body.
pub const FORMAT: &str = "cachet-simulated-tee-report/v1";
/// The warning every simulated report carries in its envelope.
pub const WARNING: &str = "SIMULATED TEE: software-signed report, NOT backed by hardware, provides NO security";
/// Largest simulated evidence accepted (bytes); real ones are < 1 KiB.
pub const MAX_LEN: usize = 64 << 10;
/// Length of the `measurement` field (bytes), as a TDX MRTD or SNP measurement.
pub const MEASUREMENT_LEN: usize = 48;
/// Length of the `report_data` field (bytes), as in SGX, TDX and SNP.
pub const REPORT_DATA_LEN: usize = 64;
/// How far in the future `issued_at` may be (clock skew allowance, seconds).
pub const MAX_CLOCK_SKEW: i64 = 300;

/// The unsigned envelope.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: String,
    #[serde(default)]
    #[allow(dead_code)]
    warning: Option<String>,
    report: String,
    signature: String,
}

/// The signed report body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    format: String,
    simulated: bool,
    measurement: String,
    report_data: String,
    debug: bool,
    svn: u32,
    issued_at: i64,
}

/// Verify a simulated report against the [`AnchorKind::SimulatedTee`]
/// anchors of the request.
///
/// Checks, in order: "Evidence format", "Simulated root", "Report
/// signature", "Report body", "Report time", and "Nonce" when the caller
/// names one (then `report_data` must equal it).
pub fn verify(req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<serde_json::Value> {
    let envelope = parse_envelope(req.evidence, checks)?;
    let report = checks.record(
        "Evidence format",
        decode_base64(&envelope.report).ok_or_else(|| "'report' is not base64".to_string()),
        format!("{FORMAT} envelope"),
    )?;
    let signature = checks.record(
        "Report signature",
        decode_base64(&envelope.signature).ok_or_else(|| "'signature' is not base64".to_string()),
        "signature decoded",
    )?;
    let roots = simulated_roots(req, checks)?;
    let root_fingerprint = roots
        .iter()
        .find(|(_, key)| UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key).verify(&report, &signature).is_ok())
        .map(|(fp, _)| fp.clone());
    let root_fingerprint = match root_fingerprint {
        Some(fp) => {
            checks.pass("Report signature", format!("ES256 by simulated root {fp}"));
            fp
        }
        None => return Err(checks.fail("Report signature", "signature does not verify with any trusted simulated root")),
    };
    let body = parse_body(&report, checks)?;
    check_time(&body, req.at, checks)?;
    if let Some(nonce) = req.expected_nonce {
        let got = hex::decode(&body.report_data).unwrap_or_default();
        crate::nonce::record(checks, "Nonce", "report_data", &got, nonce)?;
    }
    Ok(json!({
        "tee": "sim",
        "simulated": true,
        "warning": WARNING,
        "measurement": body.measurement.to_ascii_lowercase(),
        "report_data": body.report_data.to_ascii_lowercase(),
        "debug": body.debug,
        "svn": body.svn,
        "issued_at": body.issued_at,
        "root_fingerprint": root_fingerprint,
    }))
}

/// "Evidence format": size, JSON envelope, format label.
fn parse_envelope(evidence: &[u8], checks: &mut Checks) -> VResult<Envelope> {
    if evidence.len() > MAX_LEN {
        return Err(checks.fail("Evidence format", format!("{} bytes exceeds the {MAX_LEN}-byte limit", evidence.len())));
    }
    let env: Envelope = serde_json::from_slice(evidence)
        .map_err(|e| checks.fail("Evidence format", format!("not a simulated TEE report envelope: {e}")))?;
    if env.format != FORMAT {
        return Err(checks.fail("Evidence format", format!("format {:?} is not {FORMAT:?}", env.format)));
    }
    Ok(env)
}

/// "Simulated root": the trusted simulated roots valid at `at`, as
/// (fingerprint, uncompressed P-256 point). Fails when there are none.
fn simulated_roots(req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<Vec<(String, Vec<u8>)>> {
    let mut roots = Vec::new();
    let mut problems = Vec::new();
    for anchor in req.anchors.of_kind(AnchorKind::SimulatedTee) {
        let cert = match parse_cert(&anchor.der) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("root {}: {e}", anchor.fingerprint));
                continue;
            }
        };
        if ec_curve(cert.public_key()) != Some("P-256") {
            problems.push(format!("root {}: key is not ECDSA P-256", anchor.fingerprint));
            continue;
        }
        if let Err(e) = check_validity(&cert, req.at) {
            problems.push(e);
            continue;
        }
        roots.push((anchor.fingerprint.clone(), cert.public_key().subject_public_key.data.to_vec()));
    }
    if roots.is_empty() {
        let why = if problems.is_empty() {
            "no simulated TEE root is trusted (only `cachet serve --insecure-simulated-tee` trusts one)".to_string()
        } else {
            problems.join("; ")
        };
        return Err(checks.fail("Simulated root", why));
    }
    checks.pass("Simulated root", format!("{} simulated root(s) trusted — INSECURE, development only", roots.len()));
    Ok(roots)
}

/// "Report body": the signed JSON and its field sizes.
fn parse_body(report: &[u8], checks: &mut Checks) -> VResult<Body> {
    let body: Body = serde_json::from_slice(report).map_err(|e| checks.fail("Report body", format!("not a simulated report body: {e}")))?;
    let hex_len = |s: &str| hex::decode(s).map(|v| v.len()).ok();
    let problem = if body.format != FORMAT {
        Some(format!("signed format {:?} is not {FORMAT:?}", body.format))
    } else if !body.simulated {
        Some("'simulated' must be true".to_string())
    } else if hex_len(&body.measurement) != Some(MEASUREMENT_LEN) {
        Some(format!("measurement must be {MEASUREMENT_LEN} bytes of hex"))
    } else if hex_len(&body.report_data) != Some(REPORT_DATA_LEN) {
        Some(format!("report_data must be {REPORT_DATA_LEN} bytes of hex"))
    } else {
        None
    };
    match problem {
        Some(p) => Err(checks.fail("Report body", p)),
        None => {
            checks.pass("Report body", format!("svn {}, debug {}", body.svn, body.debug));
            Ok(body)
        }
    }
}

/// "Report time": not issued after the verification instant (beyond skew).
fn check_time(body: &Body, at: i64, checks: &mut Checks) -> VResult<()> {
    checks.require(
        "Report time",
        body.issued_at <= at.saturating_add(MAX_CLOCK_SKEW),
        format!("issued at {}", crate::x509::fmt_time(body.issued_at)),
        format!("issued at {}, after the verification time {}", crate::x509::fmt_time(body.issued_at), crate::x509::fmt_time(at)),
    )
}
