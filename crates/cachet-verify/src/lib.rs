//! # cachet-verify: evidence in, claims out
//!
//! The RATS *Verifier* role: parse attestation evidence of every supported
//! TEE family, check it cryptographically against the manufacturer's root,
//! and produce normalized claims. Pure library code: no network, no files,
//! no clock. The verification instant is an input ([`VerifyRequest::at`]),
//! so any evidence can be verified as of any moment, and the collateral
//! (certificates, CRLs, TCB info, RIMs) is passed in as [`Endorsement`]s.
//!
//! Every verifier records each check it ran ([`Check`]) and fails with the
//! name of the check that failed ([`VerifyError`]).

#![deny(missing_docs)]

pub mod anchors;
pub mod budget;
pub mod cache;
pub mod check;
pub mod encoding;
pub mod nonce;
pub mod x509;

pub mod azure;
pub mod dcap;
pub mod nitro;
pub mod nvgpu;
pub mod selftest;
pub mod simulated;
pub mod snp;
pub mod tpm;

pub use anchors::{AnchorKind, TrustAnchors};
pub use check::{Check, Checks, VResult, VerifyError};

use serde::Serialize;

/// Seconds since the Unix epoch, UTC. The only notion of time here.
pub type UnixTime = i64;

/// Largest evidence accepted, in bytes (the largest real evidence seen is
/// ~100 KiB: an 8-GPU NVIDIA report set).
pub const MAX_EVIDENCE_LEN: usize = 4 << 20;

/// The evidence families Cachet verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tee {
    /// Intel SGX enclave, DCAP ECDSA quote (v3).
    Sgx,
    /// Intel TDX trust domain, DCAP quote (v4, v5).
    Tdx,
    /// AMD SEV-SNP attestation report.
    Snp,
    /// Azure confidential VM on SEV-SNP: HCL report + vTPM quote.
    AzSnpVtpm,
    /// Azure confidential VM on TDX: TD quote + HCL report + vTPM quote.
    AzTdxVtpm,
    /// AWS Nitro Enclaves attestation document (COSE_Sign1).
    Nitro,
    /// AWS NitroTPM: a TPM quote whose AK is bound by an NSM document.
    NitroTpm,
    /// TPM 2.0 quote with an attestation-key certificate chain.
    Tpm,
    /// NVIDIA H100 GPU in confidential-computing mode (SPDM measurements).
    Nvgpu,
    /// A SIMULATED TEE for development and tests: a software-signed report
    /// trusted only against an [`AnchorKind::SimulatedTee`] anchor, which is
    /// never pinned (`cachet serve --insecure-simulated-tee` adds one).
    #[serde(rename = "sim")]
    Simulated,
}

impl Tee {
    /// Every family, in the order the CLI lists them.
    pub const ALL: [Tee; 10] =
        [Tee::Sgx, Tee::Tdx, Tee::Snp, Tee::AzSnpVtpm, Tee::AzTdxVtpm, Tee::Nitro, Tee::NitroTpm, Tee::Tpm, Tee::Nvgpu, Tee::Simulated];

    /// The name used on the command line, in JSON and in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Tee::Sgx => "sgx",
            Tee::Tdx => "tdx",
            Tee::Snp => "snp",
            Tee::AzSnpVtpm => "az-snp-vtpm",
            Tee::AzTdxVtpm => "az-tdx-vtpm",
            Tee::Nitro => "nitro",
            Tee::NitroTpm => "nitro-tpm",
            Tee::Tpm => "tpm",
            Tee::Nvgpu => "nvgpu",
            Tee::Simulated => "sim",
        }
    }

    /// Parse a name as printed by [`Tee::as_str`].
    pub fn parse(name: &str) -> Option<Tee> {
        Tee::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// What this family's evidence is called, for messages ("an SNP report").
    pub fn evidence_name(self) -> &'static str {
        match self {
            Tee::Sgx => "an SGX quote",
            Tee::Tdx => "a TDX quote",
            Tee::Snp => "an SNP report",
            Tee::AzSnpVtpm => "Azure SEV-SNP confidential VM evidence",
            Tee::AzTdxVtpm => "Azure TDX confidential VM evidence",
            Tee::Nitro => "a Nitro Enclaves attestation document",
            Tee::NitroTpm => "NitroTPM evidence",
            Tee::Tpm => "TPM quote evidence",
            Tee::Nvgpu => "NVIDIA GPU evidence",
            Tee::Simulated => "a simulated TEE report",
        }
    }

    /// Families whose evidence is the same JSON shape of TPM quote plus
    /// binding (TPM, NitroTPM, Azure vTPM): [`detect_tee`] tells them apart
    /// by optional members, too weakly to refuse one sent as another.
    fn is_tpm_json(self) -> bool {
        matches!(self, Tee::Tpm | Tee::NitroTpm | Tee::AzSnpVtpm | Tee::AzTdxVtpm)
    }
}

impl std::fmt::Display for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One endorsement input: a certificate, chain, CRL, collateral bundle or
/// reference manifest, as the bytes of a file. The name is only used in
/// messages; verifiers recognise endorsements by content.
#[derive(Debug, Clone)]
pub struct Endorsement {
    /// Where it came from (file name), for messages.
    pub name: String,
    /// The content, as read.
    pub bytes: Vec<u8>,
}

/// Everything a verification depends on, passed explicitly.
#[derive(Debug, Clone, Copy)]
pub struct VerifyRequest<'a> {
    /// The evidence, already decoded from hex/base64 (see [`encoding`]).
    pub evidence: &'a [u8],
    /// Certificates, CRLs, collateral and manifests.
    pub endorsements: &'a [Endorsement],
    /// Roots the evidence must chain to.
    pub anchors: &'a TrustAnchors,
    /// The instant at which to verify (Unix seconds).
    pub at: UnixTime,
    /// A nonce the caller expects the evidence to carry: 8 to 64 bytes,
    /// the whole of the family's nonce field (zero-padded where the field
    /// has a fixed size); see [`nonce`].
    pub expected_nonce: Option<&'a [u8]>,
}

/// The outcome of one verification: claims or the failing check, and the
/// list of every check that ran either way.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The family verified.
    pub tee: Tee,
    /// Normalized claims (a JSON object), or the named failure.
    pub result: Result<serde_json::Value, VerifyError>,
    /// Each check that ran, in order.
    pub checks: Vec<Check>,
}

impl Verification {
    /// Whether every check passed.
    pub fn verified(&self) -> bool {
        self.result.is_ok()
    }
}

/// Verify evidence of the given family.
pub fn verify(tee: Tee, req: &VerifyRequest<'_>) -> Verification {
    let mut checks = Checks::new();
    let result = if req.evidence.len() > MAX_EVIDENCE_LEN {
        Err(checks.fail("Evidence size", format!("{} bytes exceeds the {MAX_EVIDENCE_LEN}-byte limit", req.evidence.len())))
    } else if let Some(found) = detect_tee(req.evidence).filter(|f| *f != tee && !(f.is_tpm_json() && tee.is_tpm_json())) {
        // Evidence of another family would otherwise fail deep in a parser
        // with a message about fields it does not have.
        Err(checks.fail(
            "Evidence format",
            format!("this looks like {}, not {}: send it as tee \"{found}\"", found.evidence_name(), tee.evidence_name()),
        ))
    } else if let Some(e) = req.expected_nonce.map(nonce::check_len).and_then(Result::err) {
        Err(checks.fail("Nonce", e))
    } else {
        match tee {
            Tee::Sgx => dcap::verify_sgx(req, &mut checks),
            Tee::Tdx => dcap::verify_tdx(req, &mut checks),
            Tee::Snp => snp::verify(req, &mut checks),
            Tee::AzSnpVtpm => azure::verify_snp(req, &mut checks),
            Tee::AzTdxVtpm => azure::verify_tdx(req, &mut checks),
            Tee::Nitro => nitro::verify(req, &mut checks),
            Tee::NitroTpm => tpm::verify_nitro_tpm(req, &mut checks),
            Tee::Tpm => tpm::verify(req, &mut checks),
            Tee::Nvgpu => nvgpu::verify(req, &mut checks),
            Tee::Simulated => simulated::verify(req, &mut checks),
        }
    };
    Verification { tee, result, checks: checks.into_vec() }
}

/// Guess the family of some evidence from its structure, for `--tee auto`
/// and for [`verify`]'s refusal of evidence sent as another family ("this
/// looks like an SNP report, not a TDX quote"). Returns `None` when the
/// format is not recognised. The binary layouts recognised are disjoint
/// (a DCAP quote's bytes 2..4 are its key type 2, an SNP report's are the
/// zero high half of its version), so a genuine report of one family is
/// never taken for another.
pub fn detect_tee(evidence: &[u8]) -> Option<Tee> {
    let le16 = |i: usize| evidence.get(i..i + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let le32 = |i: usize| evidence.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if matches!(evidence.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{') | Some(b'[')) {
        let v: serde_json::Value = serde_json::from_slice(evidence).ok()?;
        if nvgpu::detect(&v) {
            return Some(Tee::Nvgpu);
        }
        if v.get("format").and_then(serde_json::Value::as_str) == Some(simulated::FORMAT) {
            return Some(Tee::Simulated);
        }
        return azure::detect(&v).or_else(|| tpm::detect(&v));
    }
    // COSE_Sign1: tag 18 or a bare 4-element array.
    if matches!(evidence.first(), Some(0xd2) | Some(0x84)) {
        return Some(Tee::Nitro);
    }
    // DCAP quote header: version 3/4/5, attestation key type 2 (ECDSA P-256).
    if matches!(le16(0), Some(3..=5)) && le16(2) == Some(2) {
        return match le32(4) {
            Some(0x00) => Some(Tee::Sgx),
            Some(0x81) => Some(Tee::Tdx),
            _ => None,
        };
    }
    // SNP report: version 2..=5, signature algorithm 1 (ECDSA P-384/SHA-384).
    if evidence.len() >= 0x4A0 && matches!(le32(0), Some(2..=5)) && le32(0x34) == Some(1) {
        return Some(Tee::Snp);
    }
    // SPDM GET_MEASUREMENTS request (version 1.x, code 0xE0).
    if evidence.len() > 37 && evidence[1] == 0xE0 && evidence[0] & 0xF0 == 0x10 {
        return Some(Tee::Nvgpu);
    }
    None
}
