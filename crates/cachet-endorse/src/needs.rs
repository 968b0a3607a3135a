//! What a piece of evidence needs, derived from the evidence alone.
//!
//! Each family module knows its own needs (`pcs::needs`, `kds::needs`,
//! `nvidia::needs`); this is the one list of resources and their cache keys.

use cachet_verify::Tee;
use serde::{Deserialize, Serialize};

use crate::EndorseError;

/// Intel TEE flavour of a PCS resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntelTee {
    /// `/sgx/certification/v4/...`
    Sgx,
    /// `/tdx/certification/v4/...`
    Tdx,
}

impl IntelTee {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            IntelTee::Sgx => "sgx",
            IntelTee::Tdx => "tdx",
        }
    }
}

/// Which PCS channel a TCB Info is asked from (`update=` of
/// `GET /{sgx|tdx}/certification/v4/tcb`). Intel's PCS API v4 documentation:
/// `early` is "early access to updated TCB Info provided as part of a TCB
/// recovery event (commonly the day of public disclosure of the items in
/// scope)", `standard` "standard access ... (commonly approximately 6 weeks
/// after public disclosure)"; without the parameter PCS assumes `standard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcbUpdate {
    /// What verification uses (and what PCS serves without `update`).
    Standard,
    /// A TCB recovery's TCB Info before it reaches the standard channel.
    Early,
}

impl TcbUpdate {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            TcbUpdate::Standard => "standard",
            TcbUpdate::Early => "early",
        }
    }
}

/// Which PCK CA issued the PCK certificate (`ca=` of the PCK CRL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PckCa {
    /// Intel SGX PCK Processor CA.
    Processor,
    /// Intel SGX PCK Platform CA.
    Platform,
}

impl PckCa {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            PckCa::Processor => "processor",
            PckCa::Platform => "platform",
        }
    }
}

/// AMD product line (KDS path segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AmdProduct {
    /// EPYC 7003.
    Milan,
    /// EPYC 9004.
    Genoa,
    /// EPYC 9005.
    Turin,
}

impl AmdProduct {
    /// The KDS path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            AmdProduct::Milan => "Milan",
            AmdProduct::Genoa => "Genoa",
            AmdProduct::Turin => "Turin",
        }
    }
}

/// Which AMD endorsement key signed the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmdKey {
    /// Versioned Chip Endorsement Key (per chip and TCB).
    Vcek,
    /// Versioned Loaded Endorsement Key (per cloud provider); fetched only as a chain.
    Vlek,
}

impl AmdKey {
    /// The KDS path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            AmdKey::Vcek => "vcek",
            AmdKey::Vlek => "vlek",
        }
    }
}

/// The SPLs of an SNP reported TCB, as KDS takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AmdTcb {
    /// Boot loader SPL.
    pub bl: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub ucode: u8,
    /// FMC SPL (Turin only).
    pub fmc: Option<u8>,
}

/// One endorsement a verification needs; its [`Resource::key`] is the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// Intel TCB Info for an FMSPC (with its issuer chain).
    TcbInfo {
        /// SGX or TDX.
        tee: IntelTee,
        /// FMSPC, 12 lowercase hex digits.
        fmspc: String,
    },
    /// Intel QE Identity (QE for SGX, TD_QE for TDX), with its issuer chain.
    QeIdentity {
        /// SGX or TDX.
        tee: IntelTee,
    },
    /// The PCK CRL of a PCK CA, with its issuer chain.
    PckCrl {
        /// Processor or platform.
        ca: PckCa,
    },
    /// The Intel SGX Root CA's CRL.
    RootCaCrl,
    /// An AMD VCEK for a chip at a reported TCB.
    Vcek {
        /// Product line.
        product: AmdProduct,
        /// CHIP_ID, lowercase hex (128 digits; Turin: the first 16).
        hwid: String,
        /// Reported TCB.
        tcb: AmdTcb,
    },
    /// AMD's ASK/ASVK and ARK for a product.
    AmdChain {
        /// Product line.
        product: AmdProduct,
        /// VCEK or VLEK chain.
        key: AmdKey,
    },
    /// AMD's CRL for a product (signed by the ARK).
    AmdCrl {
        /// Product line.
        product: AmdProduct,
        /// VCEK or VLEK.
        key: AmdKey,
    },
    /// An NVIDIA RIM by id (e.g. `NV_GPU_DRIVER_GH100_545.00`).
    Rim {
        /// RIM id as NVIDIA's verifier derives it.
        id: String,
    },
    /// NVIDIA's OCSP answer for one certificate (a GPU's device chain, a RIM
    /// signer chain), by its CertID: SHA-384 of the issuer's name and key, as
    /// NVIDIA's verifier asks.
    Ocsp {
        /// SHA-384 of the issuer's DER subject, lowercase hex.
        issuer_name_hash: String,
        /// SHA-384 of the issuer's public key bits, lowercase hex.
        issuer_key_hash: String,
        /// The certificate's serial number (DER INTEGER contents), lowercase hex.
        serial: String,
    },
}

impl Resource {
    /// The cache key: what it is, never where it came from.
    pub fn key(&self) -> String {
        match self {
            Resource::TcbInfo { tee, fmspc } => format!("intel/{}/tcb/{fmspc}", tee.as_str()),
            Resource::QeIdentity { tee } => format!("intel/{}/qe-identity", tee.as_str()),
            Resource::PckCrl { ca } => format!("intel/pckcrl/{}", ca.as_str()),
            Resource::RootCaCrl => "intel/rootcacrl".into(),
            Resource::Vcek { product, hwid, tcb } => format!(
                "amd/{}/vcek/{hwid}/{}-{}-{}-{}{}",
                product.as_str(),
                tcb.bl,
                tcb.tee,
                tcb.snp,
                tcb.ucode,
                tcb.fmc.map(|f| format!("-{f}")).unwrap_or_default()
            ),
            Resource::AmdChain { product, key } => format!("amd/{}/{}/cert_chain", product.as_str(), key.as_str()),
            Resource::AmdCrl { product, key } => format!("amd/{}/{}/crl", product.as_str(), key.as_str()),
            Resource::Rim { id } => format!("nvidia/rim/{id}"),
            Resource::Ocsp { issuer_key_hash, serial, .. } => format!("nvidia/ocsp/{issuer_key_hash}/{serial}"),
        }
    }

    /// Whether the verifier can do without it (revocation lists that the vendor
    /// may not publish): a failure to get it is reported, not fatal.
    pub fn optional(&self) -> bool {
        matches!(self, Resource::AmdCrl { .. } | Resource::Ocsp { .. })
    }
}

/// Everything `evidence` of family `tee` needs from the manufacturers. Families
/// whose evidence carries its own endorsements (Nitro, TPM) need nothing.
pub fn needs(tee: Tee, evidence: &[u8]) -> Result<Vec<Resource>, EndorseError> {
    match tee {
        Tee::Sgx | Tee::Tdx => crate::pcs::needs(tee, evidence),
        Tee::Snp => crate::kds::needs(evidence),
        Tee::Nvgpu => crate::nvidia::needs(evidence),
        Tee::AzSnpVtpm | Tee::AzTdxVtpm => azure_needs(tee, evidence),
        _ => Ok(Vec::new()),
    }
}

/// What Azure CVM evidence needs: for TDX, the Intel collateral of the TD
/// quote it embeds; for SNP, AMD's chain for the product of the VCEK the
/// evidence carries (its issuer, `SEV-Milan` / `SEV-Genoa` / `SEV-Turin`,
/// names the product even where the report does not), and the VCEK itself
/// only when the evidence lacks it.
fn azure_needs(tee: Tee, evidence: &[u8]) -> Result<Vec<Resource>, EndorseError> {
    let (_, raw) = cachet_verify::encoding::decode_evidence(evidence);
    let ev = cachet_verify::azure::evidence::parse(&raw)
        .map_err(|e| EndorseError::Evidence(format!("cannot read the Azure CVM evidence to tell what it needs: {e}")))?;
    if tee == Tee::AzTdxVtpm {
        let quote = ev.td_quote.ok_or_else(|| EndorseError::Evidence("the Azure TDX evidence carries no td_quote".into()))?;
        return crate::pcs::needs(Tee::Tdx, &quote);
    }
    let hcl = cachet_verify::azure::hcl::parse(&ev.hcl_report)
        .map_err(|e| EndorseError::Evidence(format!("cannot read the Azure HCL report to tell what it needs: {e}")))?;
    let product = ev.certs.iter().find_map(|der| amd_product_of(der));
    let mut out = crate::kds::needs_for(hcl.hw_report, product)?;
    if !ev.certs.is_empty() {
        out.retain(|r| !matches!(r, Resource::Vcek { .. }));
    }
    Ok(out)
}

/// The product an AMD VCEK / VLEK certificate belongs to, from its issuer
/// (`SEV-Milan`, `SEV-VLEK-Genoa`, …). Unsigned as read here: the verifier
/// checks the chain, and a wrong product only fetches a chain that fails it.
fn amd_product_of(der: &[u8]) -> Option<AmdProduct> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let cn = cert.issuer().iter_common_name().next()?.as_str().ok()?;
    [AmdProduct::Milan, AmdProduct::Genoa, AmdProduct::Turin].into_iter().find(|p| cn.ends_with(p.as_str()))
}
