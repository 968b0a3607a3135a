//! The SEV-SNP `ATTESTATION_REPORT` structure, as laid out by AMD's
//! *SEV Secure Nested Paging Firmware ABI Specification* (publication 56860,
//! table "ATTESTATION_REPORT Structure"), versions 2 (Milan firmware 1.55),
//! 3 and 4 (CPUID fields added) and 5 (mitigation vectors added).
//!
//! Parsing is pure and bounds-checked: every field is read with `get`, every
//! range the specification marks reserved is required to be zero, and the
//! raw bytes are kept so the signature is checked over exactly what arrived.

use crate::anchors::AmdProduct;

/// Size of an attestation report in bytes (fixed by the ABI).
pub const REPORT_LEN: usize = 0x4A0;
/// The signature covers bytes `0x000..=0x29F`.
pub const SIGNED_LEN: usize = 0x2A0;
/// Offset of the SIGNATURE field.
pub const SIGNATURE_OFFSET: usize = 0x2A0;
/// Each ECDSA component (R, S) is stored little-endian, zero-extended to 72 bytes.
pub const SIG_COMPONENT_LEN: usize = 72;
/// A P-384 scalar is 48 bytes.
pub const P384_SCALAR_LEN: usize = 48;
/// SIGNATURE_ALGO value for ECDSA P-384 with SHA-384, the only one defined.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// Oldest and newest report versions understood here.
pub const MIN_VERSION: u32 = 2;
/// Version 5 adds LAUNCH_MIT_VECTOR and CURRENT_MIT_VECTOR.
pub const MAX_VERSION: u32 = 5;

/// Which key signed the report (SIGNING_KEY, bits 4:2 at offset 0x48).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key: unique to the chip and its TCB.
    Vcek,
    /// Versioned Loaded Endorsement Key: provisioned by a cloud provider.
    Vlek,
    /// Value 7: the report is not signed.
    Unsigned,
    /// Values 2..=6 are reserved.
    Reserved(u8),
}

impl SigningKey {
    /// Decode the 3-bit SIGNING_KEY field.
    pub fn from_bits(v: u8) -> Self {
        match v {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::Unsigned,
            other => SigningKey::Reserved(other),
        }
    }

    /// Lowercase name used in claims (`"vcek"`, `"vlek"`).
    pub fn name(self) -> &'static str {
        match self {
            SigningKey::Vcek => "vcek",
            SigningKey::Vlek => "vlek",
            SigningKey::Unsigned => "none",
            SigningKey::Reserved(_) => "reserved",
        }
    }

    /// Upper-case name used in check names and messages (`"VCEK"`).
    pub fn label(self) -> &'static str {
        match self {
            SigningKey::Vlek => "VLEK",
            _ => "VCEK",
        }
    }
}

/// A TCB_VERSION: eight security patch levels whose layout depends on the
/// product (Turin moved the fields to make room for FMC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcbVersion(pub [u8; 8]);

/// The components of a TCB_VERSION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbParts {
    /// FMC firmware SPL (Turin and later only).
    pub fmc: Option<u8>,
    /// PSP bootloader SPL.
    pub bootloader: u8,
    /// PSP operating system (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// CPU microcode SPL.
    pub microcode: u8,
    /// Reserved bytes, as `(KDS extension number, value)`: Milan/Genoa bytes
    /// 2..=5 are spl_4..spl_7; Turin bytes 4..=6 are spl_5..spl_7.
    pub reserved: Vec<(u8, u8)>,
}

impl TcbVersion {
    /// Split into components using the product's layout.
    ///
    /// Milan/Genoa: `[BOOT_LOADER, TEE, rsvd×4, SNP, MICROCODE]`;
    /// Turin: `[FMC, BOOT_LOADER, TEE, SNP, rsvd×3, MICROCODE]`.
    pub fn parts(&self, product: AmdProduct) -> TcbParts {
        let b = self.0;
        match product {
            AmdProduct::Milan | AmdProduct::Genoa => TcbParts {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
                reserved: vec![(4, b[2]), (5, b[3]), (6, b[4]), (7, b[5])],
            },
            AmdProduct::Turin => TcbParts {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
                reserved: vec![(5, b[4]), (6, b[5]), (7, b[6])],
            },
        }
    }

    /// Claims: the raw bytes and each named component.
    pub fn to_json(&self, product: AmdProduct) -> serde_json::Value {
        let p = self.parts(product);
        let mut m = serde_json::Map::new();
        m.insert("raw".into(), hex::encode(self.0).into());
        if let Some(f) = p.fmc {
            m.insert("fmc".into(), f.into());
        }
        m.insert("bootloader".into(), p.bootloader.into());
        m.insert("tee".into(), p.tee.into());
        m.insert("snp".into(), p.snp.into());
        m.insert("microcode".into(), p.microcode.into());
        serde_json::Value::Object(m)
    }
}

/// CPUID family/model/stepping reported by version 3+ reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpuid {
    /// Combined extended family + family (CPUID_FAM_ID).
    pub family: u8,
    /// Combined extended model + model (CPUID_MOD_ID).
    pub model: u8,
    /// Stepping (CPUID_STEP).
    pub stepping: u8,
}

impl Cpuid {
    /// The EPYC product line of this CPU, from the family/model ranges in
    /// AMD's processor programming references (the same table AMD KDS uses
    /// to name products): family 19h models 00h-0Fh Milan, 10h-1Fh and
    /// A0h-AFh Genoa (incl. Bergamo/Siena); family 1Ah models 00h-1Fh Turin.
    pub fn product(&self) -> Option<AmdProduct> {
        match (self.family, self.model) {
            (0x19, 0x00..=0x0F) => Some(AmdProduct::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some(AmdProduct::Genoa),
            (0x1A, 0x00..=0x1F) => Some(AmdProduct::Turin),
            _ => None,
        }
    }
}

/// A firmware version (major.minor.build).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareVersion {
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Build number.
    pub build: u8,
}

impl std::fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// The guest policy (POLICY, offset 0x08), decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy(pub u64);

impl Policy {
    const SMT: u64 = 1 << 16;
    const RESERVED_ONE: u64 = 1 << 17;
    const MIGRATE_MA: u64 = 1 << 18;
    const DEBUG: u64 = 1 << 19;
    const SINGLE_SOCKET: u64 = 1 << 20;
    const CXL_ALLOW: u64 = 1 << 21;
    const MEM_AES_256_XTS: u64 = 1 << 22;
    const RAPL_DIS: u64 = 1 << 23;
    const CIPHERTEXT_HIDING: u64 = 1 << 24;
    const PAGE_SWAP_DISABLE: u64 = 1 << 25;
    /// Bits 63:26 are reserved and must be zero.
    const MBZ: u64 = !((1u64 << 26) - 1);

    /// Whether the host may decrypt guest memory for debugging (bit 19).
    pub fn debug_allowed(self) -> bool {
        self.0 & Self::DEBUG != 0
    }

    /// Check the reserved bits: bit 17 must be one, bits 63:26 zero.
    pub fn validate(self) -> Result<(), String> {
        if self.0 & Self::RESERVED_ONE == 0 {
            return Err(format!("policy {:#x}: reserved bit 17 must be one", self.0));
        }
        if self.0 & Self::MBZ != 0 {
            return Err(format!("policy {:#x}: reserved bits 63:26 must be zero", self.0));
        }
        Ok(())
    }

    /// Named booleans and the minimum ABI version, for claims.
    pub fn to_json(self) -> serde_json::Value {
        let bit = |m: u64| self.0 & m != 0;
        serde_json::json!({
            "abi_major": (self.0 >> 8) & 0xff,
            "abi_minor": self.0 & 0xff,
            "smt_allowed": bit(Self::SMT),
            "migration_agent_allowed": bit(Self::MIGRATE_MA),
            "debug_allowed": bit(Self::DEBUG),
            "single_socket": bit(Self::SINGLE_SOCKET),
            "cxl_allowed": bit(Self::CXL_ALLOW),
            "mem_aes_256_xts": bit(Self::MEM_AES_256_XTS),
            "rapl_disabled": bit(Self::RAPL_DIS),
            "ciphertext_hiding": bit(Self::CIPHERTEXT_HIDING),
            "page_swap_disabled": bit(Self::PAGE_SWAP_DISABLE),
        })
    }
}

/// PLATFORM_INFO (offset 0x40), decoded. Bits the specification leaves
/// reserved are reported, not refused: newer firmware defines new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformInfo(pub u64);

impl PlatformInfo {
    /// Named booleans for claims.
    pub fn to_json(self) -> serde_json::Value {
        let bit = |n: u32| self.0 & (1 << n) != 0;
        serde_json::json!({
            "smt_enabled": bit(0),
            "tsme_enabled": bit(1),
            "ecc_enabled": bit(2),
            "rapl_disabled": bit(3),
            "ciphertext_hiding_enabled": bit(4),
            "alias_check_complete": bit(5),
            "tio_enabled": bit(7),
            "unknown_bits": format!("{:#x}", self.0 & !0xBF),
        })
    }
}

/// A parsed attestation report. `raw` is exactly [`REPORT_LEN`] bytes.
#[derive(Debug, Clone)]
pub struct Report {
    /// The report as received.
    pub raw: Vec<u8>,
    /// VERSION.
    pub version: u32,
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// POLICY.
    pub policy: Policy,
    /// FAMILY_ID supplied at launch.
    pub family_id: [u8; 16],
    /// IMAGE_ID supplied at launch.
    pub image_id: [u8; 16],
    /// VMPL the report was requested from.
    pub vmpl: u32,
    /// SIGNATURE_ALGO.
    pub signature_algo: u32,
    /// CURRENT_TCB.
    pub current_tcb: TcbVersion,
    /// PLATFORM_INFO.
    pub platform_info: PlatformInfo,
    /// AUTHOR_KEY_EN (bit 0 at 0x48).
    pub author_key_en: bool,
    /// MASK_CHIP_KEY (bit 1 at 0x48).
    pub mask_chip_key: bool,
    /// SIGNING_KEY (bits 4:2 at 0x48).
    pub signing_key: SigningKey,
    /// REPORT_DATA supplied by the guest.
    pub report_data: [u8; 64],
    /// MEASUREMENT of the launched guest.
    pub measurement: [u8; 48],
    /// HOST_DATA supplied by the hypervisor at launch.
    pub host_data: [u8; 32],
    /// ID_KEY_DIGEST.
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST.
    pub author_key_digest: [u8; 48],
    /// REPORT_ID.
    pub report_id: [u8; 32],
    /// REPORT_ID_MA.
    pub report_id_ma: [u8; 32],
    /// REPORTED_TCB: the TCB the VCEK was derived from.
    pub reported_tcb: TcbVersion,
    /// CPUID family/model/stepping (version 3+).
    pub cpuid: Option<Cpuid>,
    /// CHIP_ID (zero when MASK_CHIP_ID is set; 8 significant bytes on Turin).
    pub chip_id: [u8; 64],
    /// COMMITTED_TCB.
    pub committed_tcb: TcbVersion,
    /// CURRENT_BUILD/MINOR/MAJOR.
    pub current_version: FirmwareVersion,
    /// COMMITTED_BUILD/MINOR/MAJOR.
    pub committed_version: FirmwareVersion,
    /// LAUNCH_TCB.
    pub launch_tcb: TcbVersion,
    /// LAUNCH_MIT_VECTOR (version 5+).
    pub launch_mit_vector: Option<u64>,
    /// CURRENT_MIT_VECTOR (version 5+).
    pub current_mit_vector: Option<u64>,
}

fn take<const N: usize>(b: &[u8], off: usize) -> Result<[u8; N], String> {
    b.get(off..off.saturating_add(N))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or_else(|| format!("report too short for the field at {off:#x}"))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, String> {
    take::<4>(b, off).map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], off: usize) -> Result<u64, String> {
    take::<8>(b, off).map(u64::from_le_bytes)
}

fn byte_at(b: &[u8], off: usize) -> Result<u8, String> {
    b.get(off).copied().ok_or_else(|| format!("report too short for the byte at {off:#x}"))
}

/// Require `b[lo..hi]` to be all zero (a reserved range).
fn mbz(b: &[u8], lo: usize, hi: usize) -> Result<(), String> {
    let s = b.get(lo..hi).ok_or_else(|| format!("report too short for reserved range {lo:#x}..{hi:#x}"))?;
    match s.iter().position(|x| *x != 0) {
        None => Ok(()),
        Some(i) => Err(format!("reserved byte {:#x} is {:#04x}, must be zero", lo + i, s.get(i).copied().unwrap_or(0))),
    }
}

impl Report {
    /// Parse exactly one report ([`REPORT_LEN`] bytes).
    ///
    /// Refuses unknown versions and non-zero reserved fields (policy bit 17
    /// must be one, bits 63:26 zero; signer-info bits 31:5; 0x4C..0x50; the
    /// unused bytes around CPUID, the firmware versions and up to the
    /// signature; the signature bytes past R and S for ECDSA).
    pub fn parse(b: &[u8]) -> Result<Report, String> {
        if b.len() != REPORT_LEN {
            return Err(format!("a report is {REPORT_LEN} bytes, got {}", b.len()));
        }
        let version = u32_at(b, 0x00)?;
        if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
            return Err(format!("report version {version} is not supported (expected {MIN_VERSION}..={MAX_VERSION})"));
        }
        let policy = Policy(u64_at(b, 0x08)?);
        policy.validate()?;
        let signer_info = u32_at(b, 0x48)?;
        if signer_info >> 5 != 0 {
            return Err(format!("signer info {signer_info:#x}: reserved bits 31:5 must be zero"));
        }
        mbz(b, 0x4C, 0x50)?;
        let has_cpuid = version >= 3;
        let cpuid = if has_cpuid {
            Some(Cpuid { family: byte_at(b, 0x188)?, model: byte_at(b, 0x189)?, stepping: byte_at(b, 0x18A)? })
        } else {
            None
        };
        mbz(b, if has_cpuid { 0x18B } else { 0x188 }, 0x1A0)?;
        mbz(b, 0x1EB, 0x1EC)?;
        mbz(b, 0x1EF, 0x1F0)?;
        let has_mit = version >= 5;
        mbz(b, if has_mit { 0x208 } else { 0x1F8 }, SIGNATURE_OFFSET)?;
        let signature_algo = u32_at(b, 0x34)?;
        if signature_algo == SIG_ALGO_ECDSA_P384_SHA384 {
            mbz(b, SIGNATURE_OFFSET + 2 * SIG_COMPONENT_LEN, REPORT_LEN)?;
        }
        let version_at = |off: usize| -> Result<FirmwareVersion, String> {
            Ok(FirmwareVersion { build: byte_at(b, off)?, minor: byte_at(b, off + 1)?, major: byte_at(b, off + 2)? })
        };
        Ok(Report {
            raw: b.to_vec(),
            version,
            guest_svn: u32_at(b, 0x04)?,
            policy,
            family_id: take(b, 0x10)?,
            image_id: take(b, 0x20)?,
            vmpl: u32_at(b, 0x30)?,
            signature_algo,
            current_tcb: TcbVersion(take(b, 0x38)?),
            platform_info: PlatformInfo(u64_at(b, 0x40)?),
            author_key_en: signer_info & 1 != 0,
            mask_chip_key: signer_info & 2 != 0,
            signing_key: SigningKey::from_bits(((signer_info >> 2) & 7) as u8),
            report_data: take(b, 0x50)?,
            measurement: take(b, 0x90)?,
            host_data: take(b, 0xC0)?,
            id_key_digest: take(b, 0xE0)?,
            author_key_digest: take(b, 0x110)?,
            report_id: take(b, 0x140)?,
            report_id_ma: take(b, 0x160)?,
            reported_tcb: TcbVersion(take(b, 0x180)?),
            cpuid,
            chip_id: take(b, 0x1A0)?,
            committed_tcb: TcbVersion(take(b, 0x1E0)?),
            current_version: version_at(0x1E8)?,
            committed_version: version_at(0x1EC)?,
            launch_tcb: TcbVersion(take(b, 0x1F0)?),
            launch_mit_vector: if has_mit { Some(u64_at(b, 0x1F8)?) } else { None },
            current_mit_vector: if has_mit { Some(u64_at(b, 0x200)?) } else { None },
        })
    }

    /// The bytes the signature covers (`0x000..=0x29F`).
    pub fn signed_bytes(&self) -> &[u8] {
        self.raw.get(..SIGNED_LEN).unwrap_or_default()
    }

    /// The signature as the fixed-width big-endian `r || s` (96 bytes) that
    /// `ECDSA_P384_SHA384_FIXED` expects. Each component is stored
    /// little-endian in 72 bytes; the 24 high bytes must be zero.
    pub fn signature_fixed(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(2 * P384_SCALAR_LEN);
        for (i, name) in ["R", "S"].iter().enumerate() {
            let off = SIGNATURE_OFFSET + i * SIG_COMPONENT_LEN;
            let comp: [u8; SIG_COMPONENT_LEN] = take(&self.raw, off)?;
            let (low, high) = comp.split_at(P384_SCALAR_LEN);
            if high.iter().any(|x| *x != 0) {
                return Err(format!("signature {name} has non-zero bytes above the 48-byte P-384 scalar"));
            }
            out.extend(low.iter().rev());
        }
        Ok(out)
    }
}

/// Encode a fixed-width big-endian P-384 `r || s` signature into the
/// report's little-endian, zero-extended layout (tests build reports with it).
pub fn signature_to_report_layout(fixed: &[u8]) -> Option<[u8; 2 * SIG_COMPONENT_LEN]> {
    if fixed.len() != 2 * P384_SCALAR_LEN {
        return None;
    }
    let mut out = [0u8; 2 * SIG_COMPONENT_LEN];
    for (i, chunk) in fixed.chunks(P384_SCALAR_LEN).enumerate() {
        for (j, b) in chunk.iter().rev().enumerate() {
            if let Some(slot) = out.get_mut(i * SIG_COMPONENT_LEN + j) {
                *slot = *b;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(version: u32) -> Vec<u8> {
        let mut b = vec![0u8; REPORT_LEN];
        b[0..4].copy_from_slice(&version.to_le_bytes());
        b[0x08..0x10].copy_from_slice(&(1u64 << 17).to_le_bytes());
        b[0x34..0x38].copy_from_slice(&1u32.to_le_bytes());
        b
    }

    #[test]
    fn parses_each_version_layout() {
        for v in [2, 3, 4, 5] {
            let mut b = minimal(v);
            b[0x188] = 0x19;
            let r = Report::parse(&b);
            if v == 2 {
                assert!(r.is_err(), "v2 has no CPUID: byte 0x188 is reserved");
            } else {
                let r = r.unwrap();
                assert_eq!(r.cpuid.map(|c| c.family), Some(0x19));
                assert_eq!(r.launch_mit_vector.is_some(), v >= 5);
            }
        }
        assert!(Report::parse(&minimal(1)).unwrap_err().contains("version 1"));
        assert!(Report::parse(&minimal(6)).unwrap_err().contains("version 6"));
    }

    #[test]
    fn mit_vectors_are_reserved_before_v5() {
        let mut b = minimal(3);
        b[0x1F8] = 1;
        assert!(Report::parse(&b).unwrap_err().contains("0x1f8"));
        let mut b = minimal(5);
        b[0x1F8] = 1;
        assert_eq!(Report::parse(&b).unwrap().launch_mit_vector, Some(1));
    }

    #[test]
    fn policy_reserved_bits() {
        let mut b = minimal(2);
        b[0x08..0x10].copy_from_slice(&0u64.to_le_bytes());
        assert!(Report::parse(&b).unwrap_err().contains("bit 17"));
        b[0x08..0x10].copy_from_slice(&((1u64 << 17) | (1 << 40)).to_le_bytes());
        assert!(Report::parse(&b).unwrap_err().contains("63:26"));
    }

    #[test]
    fn signer_info_and_reserved_ranges() {
        let mut b = minimal(2);
        b[0x48] = 1 << 5;
        assert!(Report::parse(&b).is_err());
        let mut b = minimal(2);
        b[0x48] = 1 << 2;
        assert_eq!(Report::parse(&b).unwrap().signing_key, SigningKey::Vlek);
        for off in [0x4C, 0x1EB, 0x1EF, 0x250, 0x330, 0x49F] {
            let mut b = minimal(5);
            b[off] = 1;
            assert!(Report::parse(&b).is_err(), "byte {off:#x} is reserved");
        }
    }

    #[test]
    fn turin_tcb_layout_has_fmc_first() {
        let t = TcbVersion([0, 1, 0, 2, 0, 0, 0, 0x47]);
        let p = t.parts(AmdProduct::Turin);
        assert_eq!((p.fmc, p.bootloader, p.tee, p.snp, p.microcode), (Some(0), 1, 0, 2, 0x47));
        let m = TcbVersion([3, 0, 0, 0, 0, 0, 8, 0x73]).parts(AmdProduct::Milan);
        assert_eq!((m.fmc, m.bootloader, m.tee, m.snp, m.microcode), (None, 3, 0, 8, 0x73));
    }

    #[test]
    fn signature_high_bytes_must_be_zero_and_roundtrip() {
        let mut b = minimal(2);
        let fixed: Vec<u8> = (1..=96).collect();
        let layout = signature_to_report_layout(&fixed).unwrap();
        b[SIGNATURE_OFFSET..SIGNATURE_OFFSET + 144].copy_from_slice(&layout);
        let r = Report::parse(&b).unwrap();
        assert_eq!(r.signature_fixed().unwrap(), fixed);
        b[SIGNATURE_OFFSET + 60] = 1;
        assert!(Report::parse(&b).unwrap().signature_fixed().unwrap_err().contains("R"));
    }

    #[test]
    fn cpuid_products() {
        let c = |family, model| Cpuid { family, model, stepping: 0 }.product();
        assert_eq!(c(0x19, 0x01), Some(AmdProduct::Milan));
        assert_eq!(c(0x19, 0x11), Some(AmdProduct::Genoa));
        assert_eq!(c(0x19, 0xA0), Some(AmdProduct::Genoa));
        assert_eq!(c(0x1A, 0x02), Some(AmdProduct::Turin));
        assert_eq!(c(0x1A, 0x50), None);
        assert_eq!(c(0x17, 0x31), None);
    }
}
