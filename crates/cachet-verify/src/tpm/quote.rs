//! TPM 2.0 quotes: the structures of the TCG TPM 2.0 Library specification,
//! Part 2 ("Structures"), that a verifier needs, and the three checks every
//! TPM-based family runs on a quote.
//!
//! * [`parse_attest`]: a `TPMS_ATTEST` of type `TPM_ST_ATTEST_QUOTE`, parsed
//!   strictly by its declared lengths (no trailing bytes).
//! * [`parse_signature`]: a `TPMT_SIGNATURE` (ECDSA, RSASSA, RSAPSS), or a DER
//!   ECDSA signature as some tools export it.
//! * [`AkPublic`]: the attestation key, from a `TPM2B_PUBLIC`/`TPMT_PUBLIC`
//!   (with its TPM name, [`AkPublic::name`]), x/y coordinates, a JWK, or an
//!   SPKI (DER or PEM).
//! * [`verify_quote_signature`]: the AK's signature over the `TPMS_ATTEST`.
//! * [`check_pcr_digest`]: the quote's `pcrDigest` recomputed from supplied
//!   PCR values ([`PcrBanks`]) for every selected bank.
//! * [`check_nonce`]: `extraData` against the nonce the verifier expects.
//!
//! These functions are pure and record nothing; the verifiers wrap them in
//! named checks (see [`super::verify`]). Azure vTPM evidence, NitroTPM and
//! credential activation reuse them.

use std::collections::BTreeMap;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, RsaParameters, RsaPssSaltLength, UnparsedPublicKey};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// `TPM_GENERATED_VALUE`: the magic that starts every structure the TPM signs.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`: the `TPMS_ATTEST` type of a TPM2_Quote.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;

/// `TPM_ALG_RSA`.
pub const TPM_ALG_RSA: u16 = 0x0001;
/// `TPM_ALG_SHA1`.
pub const TPM_ALG_SHA1: u16 = 0x0004;
/// `TPM_ALG_SHA256`.
pub const TPM_ALG_SHA256: u16 = 0x000B;
/// `TPM_ALG_SHA384`.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// `TPM_ALG_SHA512`.
pub const TPM_ALG_SHA512: u16 = 0x000D;
/// `TPM_ALG_NULL`.
pub const TPM_ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_RSASSA` (PKCS#1 v1.5 signatures).
pub const TPM_ALG_RSASSA: u16 = 0x0014;
/// `TPM_ALG_RSAPSS`.
pub const TPM_ALG_RSAPSS: u16 = 0x0016;
/// `TPM_ALG_ECDSA`.
pub const TPM_ALG_ECDSA: u16 = 0x0018;
/// `TPM_ALG_ECDAA` (its scheme carries an extra `count` field).
pub const TPM_ALG_ECDAA: u16 = 0x001A;
/// `TPM_ALG_ECC`.
pub const TPM_ALG_ECC: u16 = 0x0023;

/// `TPMA_OBJECT.fixedTPM`.
pub const TPMA_OBJECT_FIXED_TPM: u32 = 1 << 1;
/// `TPMA_OBJECT.fixedParent`.
pub const TPMA_OBJECT_FIXED_PARENT: u32 = 1 << 4;
/// `TPMA_OBJECT.sensitiveDataOrigin`.
pub const TPMA_OBJECT_SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
/// `TPMA_OBJECT.restricted`: the TPM refuses to sign data that starts with
/// [`TPM_GENERATED_VALUE`] unless it produced it, which is what makes a quote
/// unforgeable with this key.
pub const TPMA_OBJECT_RESTRICTED: u32 = 1 << 16;
/// `TPMA_OBJECT.decrypt`.
pub const TPMA_OBJECT_DECRYPT: u32 = 1 << 17;
/// `TPMA_OBJECT.sign`.
pub const TPMA_OBJECT_SIGN: u32 = 1 << 18;

/// Largest `TPMS_ATTEST` accepted (real quotes are < 1 KiB; the selection
/// and the 2-byte length fields bound it well below this).
pub const MAX_ATTEST_LEN: usize = 4096;
/// Largest `TPM2B_NAME` (`sizeof(TPMU_NAME)` = 2 + 64).
const MAX_NAME_LEN: usize = 66;
/// Largest `TPM2B_DATA` (`sizeof(TPMT_HA)` = 2 + 64).
const MAX_DATA_LEN: usize = 66;
/// Largest `TPM2B_DIGEST` (`sizeof(TPMU_HA)` = 64).
const MAX_DIGEST_LEN: usize = 64;
/// Most banks in a `TPML_PCR_SELECTION` (`HASH_COUNT` is at most a handful).
const MAX_BANKS: u32 = 16;
/// Largest `sizeofSelect` (`PCR_SELECT_MAX` for 256 PCRs).
const MAX_SIZEOF_SELECT: u8 = 32;
/// Highest PCR index accepted in supplied values (256 PCRs at most).
pub const MAX_PCR_INDEX: u32 = 255;
/// Largest RSA modulus accepted (bytes).
const MAX_RSA_BYTES: usize = 1024;

// ---------------------------------------------------------------------------
// Algorithms

/// A hash algorithm a TPM uses for PCR banks, names and signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HashAlg {
    /// SHA-1 (PCR banks only; never accepted for signatures).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlg {
    /// Every supported algorithm.
    pub const ALL: [HashAlg; 4] = [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512];

    /// From a `TPM_ALG_ID`.
    pub fn from_tpm(id: u16) -> Option<HashAlg> {
        HashAlg::ALL.into_iter().find(|h| h.tpm_id() == id)
    }

    /// The `TPM_ALG_ID`.
    pub fn tpm_id(self) -> u16 {
        match self {
            HashAlg::Sha1 => TPM_ALG_SHA1,
            HashAlg::Sha256 => TPM_ALG_SHA256,
            HashAlg::Sha384 => TPM_ALG_SHA384,
            HashAlg::Sha512 => TPM_ALG_SHA512,
        }
    }

    /// The bank name used in JSON (`"sha256"`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }

    /// From a bank name, case-insensitive, with or without a dash
    /// (`"sha256"`, `"SHA-256"`).
    pub fn from_name(name: &str) -> Option<HashAlg> {
        let n: String = name.chars().filter(|c| *c != '-' && *c != '_').collect::<String>().to_ascii_lowercase();
        HashAlg::ALL.into_iter().find(|h| h.name() == n)
    }

    /// Digest size in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// Hash `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlg::Sha256 => &digest::SHA256,
            HashAlg::Sha384 => &digest::SHA384,
            HashAlg::Sha512 => &digest::SHA512,
        };
        digest::digest(alg, data).as_ref().to_vec()
    }
}

/// A NIST curve a TPM ECC key can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EccCurve {
    /// `TPM_ECC_NIST_P256`.
    P256,
    /// `TPM_ECC_NIST_P384`.
    P384,
    /// `TPM_ECC_NIST_P521`.
    P521,
}

impl EccCurve {
    /// From a `TPM_ECC_CURVE`.
    pub fn from_tpm(id: u16) -> Option<EccCurve> {
        match id {
            0x0003 => Some(EccCurve::P256),
            0x0004 => Some(EccCurve::P384),
            0x0005 => Some(EccCurve::P521),
            _ => None,
        }
    }

    /// From a JOSE / X.509 name (`"P-256"`).
    pub fn from_name(name: &str) -> Option<EccCurve> {
        match name.to_ascii_uppercase().replace(['-', '_'], "").as_str() {
            "P256" | "NISTP256" | "SECP256R1" | "ECCP256" | "ECC_NIST_P256" => Some(EccCurve::P256),
            "P384" | "NISTP384" | "SECP384R1" | "ECCP384" => Some(EccCurve::P384),
            "P521" | "NISTP521" | "SECP521R1" | "ECCP521" => Some(EccCurve::P521),
            _ => None,
        }
    }

    /// Size of one coordinate in bytes.
    pub fn coord_len(self) -> usize {
        match self {
            EccCurve::P256 => 32,
            EccCurve::P384 => 48,
            EccCurve::P521 => 66,
        }
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            EccCurve::P256 => "P-256",
            EccCurve::P384 => "P-384",
            EccCurve::P521 => "P-521",
        }
    }

    /// The hash ECDSA uses with this curve when the key names no scheme.
    pub fn default_hash(self) -> HashAlg {
        match self {
            EccCurve::P256 => HashAlg::Sha256,
            EccCurve::P384 => HashAlg::Sha384,
            EccCurve::P521 => HashAlg::Sha512,
        }
    }
}

// ---------------------------------------------------------------------------
// Byte reader

/// Big-endian reader over TPM marshalled data; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or_else(|| format!("{what}: length overflow"))?;
        let out = self.buf.get(self.pos..end).ok_or_else(|| {
            format!("{what}: needs {n} bytes at offset {}, only {} left", self.pos, self.buf.len() - self.pos.min(self.buf.len()))
        })?;
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.bytes(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        let b = self.bytes(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A `TPM2B_*`: a 2-byte size then that many bytes, at most `max`.
    fn tpm2b(&mut self, max: usize, what: &str) -> Result<&'a [u8], String> {
        let n = self.u16(what)? as usize;
        if n > max {
            return Err(format!("{what}: size {n} exceeds the maximum {max}"));
        }
        self.bytes(n, what)
    }

    fn finish(&self, what: &str) -> Result<(), String> {
        if self.pos != self.buf.len() {
            return Err(format!("{what}: {} trailing bytes", self.buf.len() - self.pos));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// TPMS_ATTEST

/// `TPMS_CLOCK_INFO`: the TPM's clock when it signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since its last clear.
    pub clock: u64,
    /// TPM resets (reboots) since the last clear.
    pub reset_count: u32,
    /// TPM restarts (resume from hibernation) since the last reset.
    pub restart_count: u32,
    /// Whether `clock` is known not to have gone backwards.
    pub safe: bool,
}

/// One `TPMS_PCR_SELECTION`: a bank and the PCRs selected in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    /// The bank.
    pub hash: HashAlg,
    /// Selected PCR indices, ascending (the order the TPM concatenates them).
    pub pcrs: Vec<u32>,
}

/// A parsed `TPMS_ATTEST` of type `TPM_ST_ATTEST_QUOTE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    /// `qualifiedSigner` (`TPM2B_NAME`): qualified name of the signing key.
    pub qualified_signer: Vec<u8>,
    /// `extraData` (`TPM2B_DATA`): the caller's qualifying data, the nonce.
    pub extra_data: Vec<u8>,
    /// `clockInfo`.
    pub clock_info: ClockInfo,
    /// `firmwareVersion`: vendor-defined TPM firmware version.
    pub firmware_version: u64,
    /// `attested.quote.pcrSelect`, in the order given.
    pub pcr_select: Vec<PcrSelection>,
    /// `attested.quote.pcrDigest`.
    pub pcr_digest: Vec<u8>,
}

impl Attest {
    /// The selected PCRs as `{"sha256": [0, 1, ...]}`, for claims.
    pub fn selection_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for s in &self.pcr_select {
            let entry = m.entry(s.hash.name()).or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(a) = entry {
                for p in &s.pcrs {
                    if !a.contains(&serde_json::Value::from(*p)) {
                        a.push(serde_json::Value::from(*p));
                    }
                }
            }
        }
        serde_json::Value::Object(m)
    }
}

/// Parse a `TPMS_ATTEST` that must be a quote: magic `TPM_GENERATED_VALUE`,
/// type `TPM_ST_ATTEST_QUOTE`, every size within its type's maximum, and no
/// byte after `pcrDigest`.
pub fn parse_attest(bytes: &[u8]) -> Result<Attest, String> {
    if bytes.len() > MAX_ATTEST_LEN {
        return Err(format!("TPMS_ATTEST of {} bytes exceeds {MAX_ATTEST_LEN}", bytes.len()));
    }
    let mut r = Reader::new(bytes);
    let magic = r.u32("magic")?;
    if magic != TPM_GENERATED_VALUE {
        return Err(format!("magic {magic:#010x} is not TPM_GENERATED_VALUE ({TPM_GENERATED_VALUE:#010x})"));
    }
    let typ = r.u16("type")?;
    if typ != TPM_ST_ATTEST_QUOTE {
        return Err(format!("type {typ:#06x} is not TPM_ST_ATTEST_QUOTE ({TPM_ST_ATTEST_QUOTE:#06x})"));
    }
    let qualified_signer = r.tpm2b(MAX_NAME_LEN, "qualifiedSigner")?.to_vec();
    let extra_data = r.tpm2b(MAX_DATA_LEN, "extraData")?.to_vec();
    let clock = r.u64("clockInfo.clock")?;
    let reset_count = r.u32("clockInfo.resetCount")?;
    let restart_count = r.u32("clockInfo.restartCount")?;
    let safe = match r.u8("clockInfo.safe")? {
        0 => false,
        1 => true,
        v => return Err(format!("clockInfo.safe is {v}, not a TPMI_YES_NO")),
    };
    let firmware_version = r.u64("firmwareVersion")?;
    let pcr_select = read_pcr_selection(&mut r)?;
    let pcr_digest = r.tpm2b(MAX_DIGEST_LEN, "pcrDigest")?.to_vec();
    r.finish("TPMS_ATTEST")?;
    Ok(Attest {
        qualified_signer,
        extra_data,
        clock_info: ClockInfo { clock, reset_count, restart_count, safe },
        firmware_version,
        pcr_select,
        pcr_digest,
    })
}

fn read_pcr_selection(r: &mut Reader<'_>) -> Result<Vec<PcrSelection>, String> {
    let count = r.u32("pcrSelect.count")?;
    if count > MAX_BANKS {
        return Err(format!("pcrSelect.count {count} exceeds {MAX_BANKS}"));
    }
    let mut out = Vec::new();
    for _ in 0..count {
        let alg = r.u16("pcrSelect.hash")?;
        let hash = HashAlg::from_tpm(alg).ok_or_else(|| format!("unsupported PCR bank algorithm {alg:#06x}"))?;
        let size = r.u8("pcrSelect.sizeofSelect")?;
        if size > MAX_SIZEOF_SELECT {
            return Err(format!("pcrSelect.sizeofSelect {size} exceeds {MAX_SIZEOF_SELECT}"));
        }
        let bits = r.bytes(size as usize, "pcrSelect.pcrSelect")?;
        let mut pcrs = Vec::new();
        for (i, byte) in bits.iter().enumerate() {
            for bit in 0..8u32 {
                if byte & (1 << bit) != 0 {
                    pcrs.push(i as u32 * 8 + bit);
                }
            }
        }
        out.push(PcrSelection { hash, pcrs });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// TPMT_SIGNATURE

/// The signature scheme of a quote or AK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigScheme {
    /// ECDSA.
    Ecdsa,
    /// RSASSA-PKCS1-v1_5.
    RsaSsa,
    /// RSASSA-PSS.
    RsaPss,
}

/// A quote signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuoteSignature {
    /// `TPMT_SIGNATURE` with `TPMS_SIGNATURE_ECDSA`: `r` and `s` as integers.
    Ecdsa {
        /// The hash the TPM signed with.
        hash: HashAlg,
        /// `signatureR`.
        r: Vec<u8>,
        /// `signatureS`.
        s: Vec<u8>,
    },
    /// An ECDSA signature exported as DER `SEQUENCE { r, s }` (no hash named;
    /// the AK's scheme, or its curve's default hash, applies).
    EcdsaDer(Vec<u8>),
    /// `TPMT_SIGNATURE` with `TPMS_SIGNATURE_RSASSA`.
    RsaSsa {
        /// The hash the TPM signed with.
        hash: HashAlg,
        /// The signature, as long as the modulus.
        sig: Vec<u8>,
    },
    /// `TPMT_SIGNATURE` with `TPMS_SIGNATURE_RSAPSS`.
    RsaPss {
        /// The hash the TPM signed with.
        hash: HashAlg,
        /// The signature, as long as the modulus.
        sig: Vec<u8>,
    },
}

impl QuoteSignature {
    /// The scheme.
    pub fn scheme(&self) -> SigScheme {
        match self {
            QuoteSignature::Ecdsa { .. } | QuoteSignature::EcdsaDer(_) => SigScheme::Ecdsa,
            QuoteSignature::RsaSsa { .. } => SigScheme::RsaSsa,
            QuoteSignature::RsaPss { .. } => SigScheme::RsaPss,
        }
    }

    /// The hash named in the signature (none for DER ECDSA).
    pub fn hash(&self) -> Option<HashAlg> {
        match self {
            QuoteSignature::Ecdsa { hash, .. } | QuoteSignature::RsaSsa { hash, .. } | QuoteSignature::RsaPss { hash, .. } => Some(*hash),
            QuoteSignature::EcdsaDer(_) => None,
        }
    }
}

/// Parse a quote signature: a `TPMT_SIGNATURE` (ECDSA, RSASSA or RSAPSS), or
/// a DER-encoded ECDSA signature (recognised by its `SEQUENCE` tag, 0x30,
/// which no `TPMI_ALG_SIG_SCHEME` starts with). No trailing bytes.
pub fn parse_signature(bytes: &[u8]) -> Result<QuoteSignature, String> {
    if bytes.first() == Some(&0x30) {
        if bytes.len() > 256 {
            return Err("DER ECDSA signature longer than 256 bytes".into());
        }
        return Ok(QuoteSignature::EcdsaDer(bytes.to_vec()));
    }
    let mut r = Reader::new(bytes);
    let alg = r.u16("sigAlg")?;
    let hash_id = match alg {
        TPM_ALG_ECDSA | TPM_ALG_RSASSA | TPM_ALG_RSAPSS => r.u16("hash")?,
        TPM_ALG_NULL => return Err("signature algorithm is TPM_ALG_NULL (unsigned)".into()),
        other => return Err(format!("unsupported signature algorithm {other:#06x}")),
    };
    let hash = HashAlg::from_tpm(hash_id).ok_or_else(|| format!("unsupported signature hash {hash_id:#06x}"))?;
    let sig = match alg {
        TPM_ALG_ECDSA => {
            let rr = r.tpm2b(66, "signatureR")?.to_vec();
            let ss = r.tpm2b(66, "signatureS")?.to_vec();
            QuoteSignature::Ecdsa { hash, r: rr, s: ss }
        }
        TPM_ALG_RSASSA => QuoteSignature::RsaSsa { hash, sig: r.tpm2b(MAX_RSA_BYTES, "sig")?.to_vec() },
        _ => QuoteSignature::RsaPss { hash, sig: r.tpm2b(MAX_RSA_BYTES, "sig")?.to_vec() },
    };
    r.finish("TPMT_SIGNATURE")?;
    Ok(sig)
}

// ---------------------------------------------------------------------------
// The attestation key

/// Public key material of an AK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AkKey {
    /// An ECC point, each coordinate exactly the curve's size.
    Ecc {
        /// The curve.
        curve: EccCurve,
        /// X coordinate, big-endian, left-padded to the curve size.
        x: Vec<u8>,
        /// Y coordinate, big-endian, left-padded to the curve size.
        y: Vec<u8>,
    },
    /// An RSA key.
    Rsa {
        /// Modulus, big-endian, no leading zero.
        n: Vec<u8>,
        /// Public exponent, big-endian, no leading zero.
        e: Vec<u8>,
    },
}

/// An attestation key, with what its TPM description says about it when it
/// came as a `TPMT_PUBLIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkPublic {
    /// The key.
    pub key: AkKey,
    /// The key's signing scheme and hash, if its `TPMT_PUBLIC` names one.
    pub scheme: Option<(SigScheme, HashAlg)>,
    /// `nameAlg`, if known.
    pub name_alg: Option<HashAlg>,
    /// `objectAttributes` (`TPMA_OBJECT`), if known.
    pub object_attributes: Option<u32>,
    /// The marshalled `TPMT_PUBLIC`, if the key came as one (its hash is the
    /// TPM name).
    pub tpmt_public: Option<Vec<u8>>,
    /// `parameters.symmetric` (`TPMT_SYM_DEF_OBJECT`) as `(algorithm,
    /// keyBits, mode)`, when the key came as a `TPMT_PUBLIC` and it is not
    /// `TPM_ALG_NULL` (an EK's, which credential activation needs).
    pub symmetric: Option<(u16, u16, u16)>,
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let n = b.iter().take_while(|x| **x == 0).count();
    b[n..].to_vec()
}

fn pad_coord(c: &[u8], len: usize, what: &str) -> Result<Vec<u8>, String> {
    let s = strip_zeros(c);
    if s.len() > len {
        return Err(format!("{what} coordinate is {} bytes, longer than the curve's {len}", s.len()));
    }
    let mut out = vec![0u8; len - s.len()];
    out.extend_from_slice(&s);
    Ok(out)
}

impl AkPublic {
    fn bare(key: AkKey) -> Self {
        AkPublic { key, scheme: None, name_alg: None, object_attributes: None, tpmt_public: None, symmetric: None }
    }

    /// An ECC key from its coordinates (left-padded to the curve size).
    pub fn from_ecc_xy(curve: EccCurve, x: &[u8], y: &[u8]) -> Result<Self, String> {
        let l = curve.coord_len();
        Ok(Self::bare(AkKey::Ecc { curve, x: pad_coord(x, l, "x")?, y: pad_coord(y, l, "y")? }))
    }

    /// An RSA key from modulus and exponent (big-endian).
    pub fn from_rsa(n: &[u8], e: &[u8]) -> Result<Self, String> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        if n.is_empty() || n.len() > MAX_RSA_BYTES || e.is_empty() || e.len() > 8 {
            return Err("RSA modulus or exponent empty or too large".into());
        }
        Ok(Self::bare(AkKey::Rsa { n, e }))
    }

    /// An uncompressed SEC1 point `04 || x || y` (the curve follows from the length).
    pub fn from_sec1(point: &[u8]) -> Result<Self, String> {
        let curve = match point.len() {
            65 => EccCurve::P256,
            97 => EccCurve::P384,
            133 => EccCurve::P521,
            n => return Err(format!("{n}-byte EC point is not an uncompressed P-256/P-384/P-521 point")),
        };
        if point.first() != Some(&0x04) {
            return Err("EC point is not uncompressed (0x04)".into());
        }
        let l = curve.coord_len();
        Self::from_ecc_xy(curve, &point[1..1 + l], &point[1 + l..])
    }

    /// From a parsed X.509 `SubjectPublicKeyInfo`.
    pub fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, String> {
        match spki.parsed() {
            Ok(PublicKey::RSA(k)) => Self::from_rsa(k.modulus, k.exponent),
            Ok(PublicKey::EC(p)) => {
                let want = crate::x509::ec_curve(spki).ok_or("EC key on an unsupported curve")?;
                let k = Self::from_sec1(p.data())?;
                match &k.key {
                    AkKey::Ecc { curve, .. } if curve.name() == want => Ok(k),
                    _ => Err("EC point does not match the key's curve".into()),
                }
            }
            Ok(_) => Err("public key is neither RSA nor EC".into()),
            Err(e) => Err(format!("invalid public key: {e}")),
        }
    }

    /// From a DER `SubjectPublicKeyInfo`; trailing bytes refused.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, String> {
        match SubjectPublicKeyInfo::from_der(der) {
            Ok(([], spki)) => Self::from_spki(&spki),
            Ok(_) => Err("trailing bytes after SubjectPublicKeyInfo".into()),
            Err(e) => Err(format!("not a SubjectPublicKeyInfo: {e}")),
        }
    }

    /// From PEM text holding a `PUBLIC KEY` (SPKI) block, or a certificate
    /// (its subject key).
    pub fn from_pem(text: &[u8]) -> Result<Self, String> {
        if let Some(der) = crate::x509::pem_blocks(text, "PUBLIC KEY").into_iter().next() {
            return Self::from_spki_der(&der);
        }
        if let Some(der) = crate::x509::certs_from_pem(text).into_iter().next() {
            let cert = crate::x509::parse_cert(&der)?;
            return Self::from_spki(cert.public_key());
        }
        Err("no PUBLIC KEY or CERTIFICATE block in PEM text".into())
    }

    /// From a JWK (`{"kty":"EC","crv":"P-256","x":..,"y":..}` or
    /// `{"kty":"RSA","n":..,"e":..}`, base64url values).
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, String> {
        let field = |k: &str| -> Result<Vec<u8>, String> {
            let s = jwk.get(k).and_then(|v| v.as_str()).ok_or_else(|| format!("JWK lacks '{k}'"))?;
            crate::encoding::decode_base64(s).ok_or_else(|| format!("JWK '{k}' is not base64url"))
        };
        match jwk.get("kty").and_then(|v| v.as_str()) {
            Some("EC") => {
                let crv = jwk.get("crv").and_then(|v| v.as_str()).ok_or("JWK lacks 'crv'")?;
                let curve = EccCurve::from_name(crv).ok_or_else(|| format!("unsupported JWK curve {crv}"))?;
                Self::from_ecc_xy(curve, &field("x")?, &field("y")?)
            }
            Some("RSA") => Self::from_rsa(&field("n")?, &field("e")?),
            other => Err(format!("unsupported JWK key type {other:?}")),
        }
    }

    /// From a `TPM2B_PUBLIC` (2-byte size, then exactly that `TPMT_PUBLIC`).
    pub fn from_tpm2b_public(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader::new(bytes);
        let inner = r.tpm2b(bytes.len(), "TPM2B_PUBLIC")?;
        r.finish("TPM2B_PUBLIC")?;
        Self::from_tpmt_public(inner)
    }

    /// From a marshalled `TPMT_PUBLIC` of type RSA or ECC; no trailing bytes.
    pub fn from_tpmt_public(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > 4096 {
            return Err("TPMT_PUBLIC larger than 4096 bytes".into());
        }
        let mut r = Reader::new(bytes);
        let typ = r.u16("type")?;
        let name_id = r.u16("nameAlg")?;
        let name_alg = HashAlg::from_tpm(name_id).ok_or_else(|| format!("unsupported nameAlg {name_id:#06x}"))?;
        let attrs = r.u32("objectAttributes")?;
        r.tpm2b(MAX_DIGEST_LEN, "authPolicy")?;
        // TPMT_SYM_DEF_OBJECT: algorithm, then keyBits and mode unless NULL.
        let sym = r.u16("symmetric.algorithm")?;
        let symmetric = if sym != TPM_ALG_NULL { Some((sym, r.u16("symmetric.keyBits")?, r.u16("symmetric.mode")?)) } else { None };
        let read_scheme = |r: &mut Reader<'_>| -> Result<Option<(u16, u16)>, String> {
            let scheme = r.u16("scheme")?;
            if scheme == TPM_ALG_NULL {
                return Ok(None);
            }
            let hash = r.u16("scheme.hashAlg")?;
            if scheme == TPM_ALG_ECDAA {
                r.u16("scheme.count")?;
            }
            Ok(Some((scheme, hash)))
        };
        let (key, scheme_raw) = match typ {
            TPM_ALG_RSA => {
                let scheme = read_scheme(&mut r)?;
                let bits = r.u16("keyBits")?;
                let exp = r.u32("exponent")?;
                let n = r.tpm2b(MAX_RSA_BYTES, "unique.rsa")?;
                if n.len() * 8 != bits as usize {
                    return Err(format!("RSA modulus of {} bytes does not match keyBits {bits}", n.len()));
                }
                let e = if exp == 0 { 65537u32 } else { exp };
                let k = Self::from_rsa(n, &e.to_be_bytes())?;
                (k.key, scheme)
            }
            TPM_ALG_ECC => {
                let scheme = read_scheme(&mut r)?;
                let curve_id = r.u16("curveID")?;
                let curve = EccCurve::from_tpm(curve_id).ok_or_else(|| format!("unsupported ECC curve {curve_id:#06x}"))?;
                let kdf = r.u16("kdf.scheme")?;
                if kdf != TPM_ALG_NULL {
                    r.u16("kdf.hashAlg")?;
                }
                let x = r.tpm2b(66, "unique.ecc.x")?;
                let y = r.tpm2b(66, "unique.ecc.y")?;
                (Self::from_ecc_xy(curve, x, y)?.key, scheme)
            }
            other => return Err(format!("key type {other:#06x} is neither RSA nor ECC")),
        };
        r.finish("TPMT_PUBLIC")?;
        let scheme = match scheme_raw {
            None => None,
            Some((s, h)) => {
                let hash = HashAlg::from_tpm(h).ok_or_else(|| format!("unsupported scheme hash {h:#06x}"))?;
                let sch = match (s, &key) {
                    (TPM_ALG_ECDSA, AkKey::Ecc { .. }) => SigScheme::Ecdsa,
                    (TPM_ALG_RSASSA, AkKey::Rsa { .. }) => SigScheme::RsaSsa,
                    (TPM_ALG_RSAPSS, AkKey::Rsa { .. }) => SigScheme::RsaPss,
                    (other, _) => return Err(format!("unsupported signing scheme {other:#06x}")),
                };
                Some((sch, hash))
            }
        };
        Ok(AkPublic { key, scheme, name_alg: Some(name_alg), object_attributes: Some(attrs), tpmt_public: Some(bytes.to_vec()), symmetric })
    }

    /// Any binary form: `TPM2B_PUBLIC`, `TPMT_PUBLIC`, DER SPKI, PEM, or an
    /// uncompressed SEC1 point.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.windows(10).any(|w| w == b"-----BEGIN") {
            return Self::from_pem(bytes);
        }
        if bytes.first() == Some(&0x30) {
            return Self::from_spki_der(bytes);
        }
        if bytes.first() == Some(&0x04) && matches!(bytes.len(), 65 | 97 | 133) {
            return Self::from_sec1(bytes);
        }
        let declared = bytes.get(0..2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize);
        if declared == Some(bytes.len().wrapping_sub(2)) {
            return Self::from_tpm2b_public(bytes);
        }
        Self::from_tpmt_public(bytes)
    }

    /// From JSON: a string (hex or base64 of a binary form, or PEM), a JWK,
    /// `{"x","y"[,"crv"|"curve"]}` (hex; P-256 unless named or longer), or
    /// `{"n","e"}` (hex).
    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        match v {
            serde_json::Value::String(s) => {
                if s.contains("-----BEGIN") {
                    return Self::from_pem(s.as_bytes());
                }
                Self::parse(&decode_bytes(s).ok_or("AK public key is neither hex, base64 nor PEM")?)
            }
            serde_json::Value::Object(o) if o.contains_key("kty") => Self::from_jwk(v),
            serde_json::Value::Object(o) if o.contains_key("x") => {
                let get = |k: &str| -> Result<Vec<u8>, String> {
                    o.get(k).and_then(|v| v.as_str()).and_then(decode_bytes).ok_or_else(|| format!("AK '{k}' is not hex"))
                };
                let (x, y) = (get("x")?, get("y")?);
                let named = o.get("crv").or_else(|| o.get("curve")).and_then(|v| v.as_str());
                let curve = match named {
                    Some(n) => EccCurve::from_name(n).ok_or_else(|| format!("unsupported curve {n}"))?,
                    None => match x.len().max(y.len()) {
                        0..=32 => EccCurve::P256,
                        33..=48 => EccCurve::P384,
                        _ => EccCurve::P521,
                    },
                };
                Self::from_ecc_xy(curve, &x, &y)
            }
            serde_json::Value::Object(o) if o.contains_key("n") => {
                let get = |k: &str| -> Result<Vec<u8>, String> {
                    o.get(k).and_then(|v| v.as_str()).and_then(decode_bytes).ok_or_else(|| format!("AK '{k}' is not hex"))
                };
                let e = match o.get("e") {
                    Some(serde_json::Value::Number(n)) => n.as_u64().ok_or("AK 'e' is not an integer")?.to_be_bytes().to_vec(),
                    _ => get("e")?,
                };
                Self::from_rsa(&get("n")?, &e)
            }
            _ => Err("unrecognised AK public key form".into()),
        }
    }

    /// The TPM name: `nameAlg || H_nameAlg(TPMT_PUBLIC)` (TPM 2.0 Part 1,
    /// "Names"). Only known when the key came as a `TPMT_PUBLIC`.
    pub fn name(&self) -> Option<Vec<u8>> {
        let alg = self.name_alg?;
        let public = self.tpmt_public.as_ref()?;
        let mut out = alg.tpm_id().to_be_bytes().to_vec();
        out.extend(alg.digest(public));
        Some(out)
    }

    /// Whether the key is a restricted signing key (what an AK must be), if
    /// its attributes are known.
    pub fn is_restricted_signing(&self) -> Option<bool> {
        self.object_attributes.map(|a| a & TPMA_OBJECT_RESTRICTED != 0 && a & TPMA_OBJECT_SIGN != 0 && a & TPMA_OBJECT_DECRYPT == 0)
    }

    /// The hash the key signs with when the signature does not name one: its
    /// scheme's, else SHA-256 for RSA and the curve's natural hash for ECC.
    pub fn default_hash(&self) -> HashAlg {
        match (&self.scheme, &self.key) {
            (Some((_, h)), _) => *h,
            (None, AkKey::Ecc { curve, .. }) => curve.default_hash(),
            (None, AkKey::Rsa { .. }) => HashAlg::Sha256,
        }
    }

    /// Whether two descriptions hold the same key material (scheme and
    /// attributes are not compared).
    pub fn same_key(&self, other: &AkPublic) -> bool {
        self.key == other.key
    }

    /// Whether this is the key in an X.509 `SubjectPublicKeyInfo` (e.g. of
    /// an AK certificate).
    pub fn matches_spki(&self, spki: &SubjectPublicKeyInfo<'_>) -> bool {
        AkPublic::from_spki(spki).map(|k| self.same_key(&k)).unwrap_or(false)
    }

    /// A description for messages and claims (`"ECC P-256"`, `"RSA 2048"`).
    pub fn describe(&self) -> String {
        match &self.key {
            AkKey::Ecc { curve, .. } => format!("ECC {}", curve.name()),
            AkKey::Rsa { n, .. } => format!("RSA {}", n.len() * 8),
        }
    }

    /// The key as an uncompressed SEC1 point (ECC) or `n` (RSA), hex, for claims.
    pub fn to_hex(&self) -> String {
        match &self.key {
            AkKey::Ecc { x, y, .. } => format!("04{}{}", hex::encode(x), hex::encode(y)),
            AkKey::Rsa { n, .. } => hex::encode(n),
        }
    }
}

/// Hex (optionally `0x`) or base64 text to bytes.
pub fn decode_bytes(s: &str) -> Option<Vec<u8>> {
    let t = s.trim();
    let h = t.strip_prefix("0x").unwrap_or(t);
    #[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; the workspace targets 1.80
    if h.len() % 2 == 0 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(h).ok();
    }
    crate::encoding::decode_base64(t)
}

// ---------------------------------------------------------------------------
// Signature verification

/// DER `SEQUENCE { INTEGER r, INTEGER s }` from unsigned big-endian r, s.
fn ecdsa_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn int(v: &[u8]) -> Vec<u8> {
        let mut body = strip_zeros(v);
        if body.is_empty() || body[0] & 0x80 != 0 {
            body.insert(0, 0);
        }
        let mut out = vec![0x02];
        out.extend(der_len(body.len()));
        out.extend(body);
        out
    }
    fn der_len(n: usize) -> Vec<u8> {
        if n < 0x80 {
            vec![n as u8]
        } else if n < 0x100 {
            vec![0x81, n as u8]
        } else {
            vec![0x82, (n >> 8) as u8, n as u8]
        }
    }
    let mut body = int(r);
    body.extend(int(s));
    let mut out = vec![0x30];
    out.extend(der_len(body.len()));
    out.extend(body);
    out
}

/// Verify the AK's signature over the marshalled `TPMS_ATTEST` (exactly the
/// bytes the TPM signed). Returns the hash algorithm the signature used,
/// which is also the algorithm of the quote's `pcrDigest`.
///
/// The scheme must fit the key (ECDSA with ECC, RSASSA/RSAPSS with RSA) and,
/// when the AK's `TPMT_PUBLIC` names a scheme, agree with it. SHA-1
/// signatures are refused. RSA-PSS accepts the salt lengths TPMs use (the
/// digest length, or the maximum for the key).
pub fn verify_quote_signature(attest: &[u8], sig: &QuoteSignature, ak: &AkPublic) -> Result<HashAlg, String> {
    let hash = sig.hash().unwrap_or_else(|| ak.default_hash());
    if hash == HashAlg::Sha1 {
        return Err("SHA-1 quote signatures are not accepted".into());
    }
    if let Some((scheme, h)) = ak.scheme {
        if scheme != sig.scheme() || h != hash {
            return Err(format!("signature scheme {:?}/{} differs from the AK's {:?}/{}", sig.scheme(), hash.name(), scheme, h.name()));
        }
    }
    match (&ak.key, sig) {
        (AkKey::Ecc { curve, x, y }, QuoteSignature::Ecdsa { .. } | QuoteSignature::EcdsaDer(_)) => {
            let der = match sig {
                QuoteSignature::Ecdsa { r, s, .. } => {
                    let l = curve.coord_len();
                    if strip_zeros(r).len() > l || strip_zeros(s).len() > l {
                        return Err("ECDSA r or s longer than the curve order".into());
                    }
                    ecdsa_der(r, s)
                }
                QuoteSignature::EcdsaDer(d) => d.clone(),
                _ => return Err("unreachable signature kind".into()),
            };
            use EccCurve::*;
            use HashAlg::*;
            let alg: &'static signature::EcdsaVerificationAlgorithm = match (curve, hash) {
                (P256, Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
                (P256, Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
                (P256, Sha512) => &signature::ECDSA_P256_SHA512_ASN1,
                (P384, Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
                (P384, Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
                (P384, Sha512) => &signature::ECDSA_P384_SHA512_ASN1,
                (P521, Sha256) => &signature::ECDSA_P521_SHA256_ASN1,
                (P521, Sha384) => &signature::ECDSA_P521_SHA384_ASN1,
                (P521, Sha512) => &signature::ECDSA_P521_SHA512_ASN1,
                (c, h) => return Err(format!("unsupported ECDSA {}/{}", c.name(), h.name())),
            };
            let mut point = vec![0x04];
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            UnparsedPublicKey::new(alg, &point)
                .verify(attest, &der)
                .map_err(|_| format!("ECDSA {}/{} signature does not verify with the AK", curve.name(), hash.name()))?;
        }
        (AkKey::Rsa { n, e }, QuoteSignature::RsaSsa { sig: s, .. } | QuoteSignature::RsaPss { sig: s, .. }) => {
            const PSS256_MAX: RsaParameters = signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);
            const PSS384_MAX: RsaParameters = signature::RSA_PSS_2048_8192_SHA384.with_pss_salt_length(RsaPssSaltLength::Max);
            const PSS512_MAX: RsaParameters = signature::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(RsaPssSaltLength::Max);
            let params: Vec<&RsaParameters> = match (sig.scheme(), hash) {
                (SigScheme::RsaSsa, HashAlg::Sha256) => vec![&signature::RSA_PKCS1_2048_8192_SHA256],
                (SigScheme::RsaSsa, HashAlg::Sha384) => vec![&signature::RSA_PKCS1_2048_8192_SHA384],
                (SigScheme::RsaSsa, HashAlg::Sha512) => vec![&signature::RSA_PKCS1_2048_8192_SHA512],
                (SigScheme::RsaPss, HashAlg::Sha256) => vec![&signature::RSA_PSS_2048_8192_SHA256, &PSS256_MAX],
                (SigScheme::RsaPss, HashAlg::Sha384) => vec![&signature::RSA_PSS_2048_8192_SHA384, &PSS384_MAX],
                (SigScheme::RsaPss, HashAlg::Sha512) => vec![&signature::RSA_PSS_2048_8192_SHA512, &PSS512_MAX],
                (sc, h) => return Err(format!("unsupported RSA scheme {sc:?}/{}", h.name())),
            };
            let key = signature::RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() };
            if !params.iter().any(|p| key.verify(p, attest, s).is_ok()) {
                return Err(format!("RSA {:?}/{} signature does not verify with the AK", sig.scheme(), hash.name()));
            }
        }
        (k, s) => {
            return Err(format!(
                "a {:?} signature cannot come from the {} AK",
                s.scheme(),
                match k {
                    AkKey::Ecc { .. } => "ECC",
                    AkKey::Rsa { .. } => "RSA",
                }
            ))
        }
    }
    Ok(hash)
}

// ---------------------------------------------------------------------------
// PCRs

/// PCR values by bank and index: `banks[HashAlg::Sha256][&0]` is PCR 0 of
/// the SHA-256 bank.
pub type PcrBanks = BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>>;

/// Parse PCR values from JSON: `{"sha256": {"0": "hex", ...}, ...}` (an
/// array of hex strings, index = position, is also accepted). Each value must
/// be as long as its bank's digest.
pub fn pcr_banks_from_json(v: &serde_json::Value) -> Result<PcrBanks, String> {
    let obj = v.as_object().ok_or("PCRs must be an object of banks")?;
    let mut out = PcrBanks::new();
    for (bank, values) in obj {
        let alg = HashAlg::from_name(bank).ok_or_else(|| format!("unknown PCR bank '{bank}'"))?;
        let entries: Vec<(String, &serde_json::Value)> = match values {
            serde_json::Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
            serde_json::Value::Array(a) => a.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
            _ => return Err(format!("PCR bank '{bank}' must be an object or array")),
        };
        let m = out.entry(alg).or_default();
        for (k, val) in entries {
            let idx: u32 = k.trim().parse().map_err(|_| format!("PCR index '{k}' is not a number"))?;
            if idx > MAX_PCR_INDEX {
                return Err(format!("PCR index {idx} out of range"));
            }
            let hexs = val.as_str().ok_or_else(|| format!("PCR {bank}:{idx} is not a string"))?;
            let bytes = decode_bytes(hexs).ok_or_else(|| format!("PCR {bank}:{idx} is not hex"))?;
            if bytes.len() != alg.len() {
                return Err(format!("PCR {bank}:{idx} is {} bytes, a {bank} value is {}", bytes.len(), alg.len()));
            }
            if m.insert(idx, bytes).is_some() {
                return Err(format!("PCR {bank}:{idx} given twice"));
            }
        }
    }
    Ok(out)
}

/// Recompute the quote's `pcrDigest`: `H(PCR[sel0][i0] || PCR[sel0][i1] ||
/// ... || PCR[sel1][j0] || ...)`, the selected values of every bank in
/// selection order, hashed with `digest_alg` (the quote signature's hash,
/// which may differ from the banks'; e.g. NitroTPM quotes a SHA-384 bank with
/// a SHA-256 digest). Every selected PCR must be supplied.
pub fn check_pcr_digest(attest: &Attest, banks: &PcrBanks, digest_alg: HashAlg) -> Result<(), String> {
    if attest.pcr_digest.len() != digest_alg.len() {
        return Err(format!("pcrDigest is {} bytes, a {} digest is {}", attest.pcr_digest.len(), digest_alg.name(), digest_alg.len()));
    }
    let mut concat = Vec::new();
    for sel in &attest.pcr_select {
        let bank = banks.get(&sel.hash);
        for i in &sel.pcrs {
            let v = bank
                .and_then(|b| b.get(i))
                .ok_or_else(|| format!("PCR {}:{i} is quoted but its value was not supplied", sel.hash.name()))?;
            if v.len() != sel.hash.len() {
                return Err(format!("PCR {}:{i} has {} bytes", sel.hash.name(), v.len()));
            }
            concat.extend_from_slice(v);
        }
    }
    let got = digest_alg.digest(&concat);
    if got != attest.pcr_digest {
        return Err(format!(
            "{} of the supplied PCR values is {}, the quote's pcrDigest is {}",
            digest_alg.name(),
            hex::encode(&got),
            hex::encode(&attest.pcr_digest)
        ));
    }
    Ok(())
}

/// The supplied PCR values the quote covers (the only ones a verifier may
/// report), by bank and index.
pub fn quoted_pcrs(attest: &Attest, banks: &PcrBanks) -> PcrBanks {
    let mut out = PcrBanks::new();
    for sel in &attest.pcr_select {
        if let Some(bank) = banks.get(&sel.hash) {
            for i in &sel.pcrs {
                if let Some(v) = bank.get(i) {
                    out.entry(sel.hash).or_default().insert(*i, v.clone());
                }
            }
        }
    }
    out
}

/// PCR banks as `{"sha256": {"0": "hex", ...}}`, for claims.
pub fn pcr_banks_json(banks: &PcrBanks) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (alg, values) in banks {
        let inner: serde_json::Map<String, serde_json::Value> =
            values.iter().map(|(i, v)| (i.to_string(), serde_json::Value::String(hex::encode(v)))).collect();
        m.insert(alg.name().to_string(), serde_json::Value::Object(inner));
    }
    serde_json::Value::Object(m)
}

/// Compare `extraData` with the nonce the verifier expects (exact bytes).
pub fn check_nonce(attest: &Attest, expected: &[u8]) -> Result<(), String> {
    if attest.extra_data != expected {
        return Err(format!("quote extraData {} is not the expected nonce {}", hex::encode(&attest.extra_data), hex::encode(expected)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_attest(select: &[u8], digest: &[u8]) -> Vec<u8> {
        let mut v = TPM_GENERATED_VALUE.to_be_bytes().to_vec();
        v.extend(TPM_ST_ATTEST_QUOTE.to_be_bytes());
        v.extend([0, 2, 0xaa, 0xbb]); // qualifiedSigner
        v.extend([0, 3, 1, 2, 3]); // extraData
        v.extend(7u64.to_be_bytes());
        v.extend(1u32.to_be_bytes());
        v.extend(0u32.to_be_bytes());
        v.push(1);
        v.extend(9u64.to_be_bytes());
        v.extend(1u32.to_be_bytes());
        v.extend(TPM_ALG_SHA256.to_be_bytes());
        v.push(select.len() as u8);
        v.extend(select);
        v.extend((digest.len() as u16).to_be_bytes());
        v.extend(digest);
        v
    }

    #[test]
    fn parses_selection_bits_in_order() {
        let a = parse_attest(&sample_attest(&[0b0000_0101, 0, 0b1000_0000], &[0; 32])).unwrap();
        assert_eq!(a.pcr_select, vec![PcrSelection { hash: HashAlg::Sha256, pcrs: vec![0, 2, 23] }]);
        assert_eq!(a.extra_data, vec![1, 2, 3]);
        assert_eq!(a.clock_info, ClockInfo { clock: 7, reset_count: 1, restart_count: 0, safe: true });
        assert_eq!(a.firmware_version, 9);
    }

    #[test]
    fn refuses_trailing_bytes_wrong_magic_and_type() {
        let good = sample_attest(&[1, 0, 0], &[0; 32]);
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(parse_attest(&trailing).unwrap_err().contains("trailing"));
        let mut magic = good.clone();
        magic[0] ^= 1;
        assert!(parse_attest(&magic).unwrap_err().contains("magic"));
        let mut typ = good.clone();
        typ[5] = 0x17; // TPM_ST_ATTEST_CERTIFY
        assert!(parse_attest(&typ).unwrap_err().contains("type"));
        for n in 0..good.len() {
            assert!(parse_attest(&good[..n]).is_err());
        }
    }

    #[test]
    fn pcr_digest_is_hash_of_concatenation_in_selection_order() {
        let mut banks = PcrBanks::new();
        let bank = banks.entry(HashAlg::Sha256).or_default();
        bank.insert(0, vec![1; 32]);
        bank.insert(2, vec![2; 32]);
        let mut cat = vec![1u8; 32];
        cat.extend([2u8; 32]);
        let digest = HashAlg::Sha256.digest(&cat);
        let a = parse_attest(&sample_attest(&[0b101, 0, 0], &digest)).unwrap();
        assert!(check_pcr_digest(&a, &banks, HashAlg::Sha256).is_ok());
        banks.get_mut(&HashAlg::Sha256).unwrap().insert(2, vec![3; 32]);
        assert!(check_pcr_digest(&a, &banks, HashAlg::Sha256).is_err());
        banks.get_mut(&HashAlg::Sha256).unwrap().remove(&2);
        assert!(check_pcr_digest(&a, &banks, HashAlg::Sha256).unwrap_err().contains("not supplied"));
    }

    #[test]
    fn der_encoding_of_r_s() {
        assert_eq!(ecdsa_der(&[0x80], &[0, 1]), vec![0x30, 0x07, 0x02, 0x02, 0x00, 0x80, 0x02, 0x01, 0x01]);
    }

    #[test]
    fn tpmt_public_round_trip_and_name() {
        // An ECC P-256 restricted signing key, ECDSA/SHA-256, as tpm2-tools creates.
        let mut t = TPM_ALG_ECC.to_be_bytes().to_vec();
        t.extend(TPM_ALG_SHA256.to_be_bytes());
        t.extend(0x0005_0072u32.to_be_bytes());
        t.extend([0, 0]);
        t.extend(TPM_ALG_NULL.to_be_bytes());
        t.extend(TPM_ALG_ECDSA.to_be_bytes());
        t.extend(TPM_ALG_SHA256.to_be_bytes());
        t.extend(3u16.to_be_bytes());
        t.extend(TPM_ALG_NULL.to_be_bytes());
        t.extend([0, 32]);
        t.extend([1; 32]);
        t.extend([0, 32]);
        t.extend([2; 32]);
        let mut b = (t.len() as u16).to_be_bytes().to_vec();
        b.extend(&t);
        let k = AkPublic::parse(&b).unwrap();
        assert_eq!(k.scheme, Some((SigScheme::Ecdsa, HashAlg::Sha256)));
        assert_eq!(k.is_restricted_signing(), Some(true));
        let mut name = vec![0, 0x0b];
        name.extend(HashAlg::Sha256.digest(&t));
        assert_eq!(k.name(), Some(name));
        let mut bad = b.clone();
        bad.push(0);
        assert!(AkPublic::from_tpm2b_public(&bad).is_err());
    }
}
