//! Trust anchors: the manufacturers' root certificates evidence must chain to.
//!
//! The genuine roots are compiled in and pinned by SHA-256 fingerprint over
//! their DER encoding (the values published in `testdata/vectors/ROOTS.md`).
//! A root that arrives with the endorsements is never trusted because it is
//! there: a chain is accepted only when it ends at an anchor of the right
//! kind held here. Tests and operators can build other anchor sets (e.g. to
//! show that a chain to Intel's *sample* root is refused).

use crate::x509::{der_from_pem_or_der, sha256_hex};

/// What a root certificate is trusted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnchorKind {
    /// Intel SGX Root CA: PCK chains, TCB signing chain and CRLs (SGX and TDX).
    IntelSgxRoot,
    /// AMD Root Key of one product line.
    AmdArk(AmdProduct),
    /// AWS Nitro Enclaves root G1 (Nitro Enclaves and NitroTPM documents).
    AwsNitroRoot,
    /// NVIDIA Device Identity CA (GPU device certificate chains).
    NvidiaDeviceIdentity,
    /// NVIDIA CoRIM / RIM signing root (reference integrity manifests).
    NvidiaRimRoot,
    /// Google Cloud EK/AK CA root (vTPM attestation-key certificates).
    GoogleEkAkRoot,
    /// The self-signed root of a SIMULATED TEE (development and tests only).
    /// Never part of [`TrustAnchors::pinned`]: only a server started with
    /// `--insecure-simulated-tee` adds its own simulated root to its set.
    SimulatedTee,
    /// A TPM manufacturer's (or an operator's) EK certificate root, for
    /// credential activation. Never compiled in: TPM vendors are many and
    /// the operator chooses which EK CAs to trust.
    TpmEkRoot,
}

/// AMD EPYC product lines with their own ARK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum AmdProduct {
    /// 3rd generation EPYC.
    Milan,
    /// 4th generation EPYC.
    Genoa,
    /// 5th generation EPYC.
    Turin,
}

impl AmdProduct {
    /// The name AMD uses in certificate subjects and KDS URLs.
    pub fn name(self) -> &'static str {
        match self {
            AmdProduct::Milan => "Milan",
            AmdProduct::Genoa => "Genoa",
            AmdProduct::Turin => "Turin",
        }
    }
}

/// One trusted root certificate.
#[derive(Debug, Clone)]
pub struct Anchor {
    /// What it anchors.
    pub kind: AnchorKind,
    /// DER encoding of the certificate.
    pub der: Vec<u8>,
    /// Hex SHA-256 of `der`.
    pub fingerprint: String,
}

/// A set of trust anchors, passed explicitly to every verification.
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    anchors: Vec<Anchor>,
}

/// The compiled-in roots with their pinned fingerprints.
const PINNED: &[(AnchorKind, &str, &str)] = &[
    (
        AnchorKind::IntelSgxRoot,
        include_str!("../roots/intel_sgx_root_ca.pem"),
        "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3",
    ),
    (
        AnchorKind::AmdArk(AmdProduct::Milan),
        include_str!("../roots/amd_ark_milan.pem"),
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    ),
    (
        AnchorKind::AmdArk(AmdProduct::Genoa),
        include_str!("../roots/amd_ark_genoa.pem"),
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    ),
    (
        AnchorKind::AmdArk(AmdProduct::Turin),
        include_str!("../roots/amd_ark_turin.pem"),
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    ),
    (
        AnchorKind::AwsNitroRoot,
        include_str!("../roots/aws_nitro_root_g1.pem"),
        "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b",
    ),
    (
        AnchorKind::NvidiaDeviceIdentity,
        include_str!("../roots/nvidia_device_identity_ca.pem"),
        "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48",
    ),
    (
        AnchorKind::NvidiaRimRoot,
        include_str!("../roots/nvidia_corim_signing_root_ca.pem"),
        "12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1",
    ),
    (
        AnchorKind::GoogleEkAkRoot,
        include_str!("../roots/google_cloud_ekak_ca_root.pem"),
        "594759594b9b61524f6c8ef668f7177f7b9066bc0674f2f49fe9e052be78beb2",
    ),
];

impl TrustAnchors {
    /// The genuine manufacturer roots compiled into Cachet. A compiled-in
    /// file whose fingerprint differs from its pin is left out (and a unit
    /// test fails), so a corrupted build can only trust less, never more.
    pub fn pinned() -> Self {
        let mut set = TrustAnchors::default();
        for (kind, pem, pin) in PINNED {
            if let Ok(der) = der_from_pem_or_der(pem.as_bytes()) {
                if sha256_hex(&der) == *pin {
                    set.push(*kind, der);
                }
            }
        }
        set
    }

    /// An empty set (trusts nothing).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Add a root of the given kind (DER).
    pub fn push(&mut self, kind: AnchorKind, der: Vec<u8>) {
        let fingerprint = sha256_hex(&der);
        self.anchors.push(Anchor { kind, der, fingerprint });
    }

    /// Replace every anchor of `kind` by `der` (tests: "root swapped").
    pub fn with_replaced(mut self, kind: AnchorKind, der: Vec<u8>) -> Self {
        self.anchors.retain(|a| a.kind != kind);
        self.push(kind, der);
        self
    }

    /// The anchors of one kind.
    pub fn of_kind(&self, kind: AnchorKind) -> impl Iterator<Item = &Anchor> + Clone {
        self.anchors.iter().filter(move |a| a.kind == kind)
    }

    /// All anchors.
    pub fn all(&self) -> &[Anchor] {
        &self.anchors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pinned_root_matches_its_fingerprint() {
        let set = TrustAnchors::pinned();
        assert_eq!(set.all().len(), PINNED.len(), "a compiled-in root does not match its pin");
    }

    #[test]
    fn simulated_tee_root_is_never_pinned() {
        assert!(PINNED.iter().all(|(kind, _, _)| *kind != AnchorKind::SimulatedTee));
        assert_eq!(TrustAnchors::pinned().of_kind(AnchorKind::SimulatedTee).count(), 0);
    }
}
