//! Credential activation: proof that an attestation key (AK) lives in the
//! same TPM as a trusted endorsement key (EK).
//!
//! An AK certificate is not always available (on-premises TPMs ship with an
//! EK certificate from their manufacturer, not an AK certificate). The TPM
//! 2.0 answer is *credential protection* (TPM 2.0 Part 1 §24, Part 3
//! TPM2_MakeCredential / TPM2_ActivateCredential):
//!
//! 1. the verifier checks the EK certificate chains to a manufacturer root
//!    and certifies the EK public key it was given;
//! 2. it runs MakeCredential in software ([`make_credential`]): a random
//!    *seed* is encrypted to the EK (RSA-OAEP with label `"IDENTITY"`, or
//!    one-pass ECDH + KDFe), and a fresh secret is encrypted and integrity-
//!    protected under keys derived (KDFa) from the seed and **the AK's name**;
//! 3. the TPM's ActivateCredential releases the secret only if it holds the
//!    EK private key *and* has the object with that name loaded — and a TPM
//!    loads an AK with `fixedTPM` only if it created it;
//! 4. the verifier compares the returned secret ([`finish_activation`]).
//!
//! KDFa (SP 800-108 counter-mode HMAC) and KDFe (SP 800-56A concatenation)
//! are written here from Part 1 §11.4.10 on top of aws-lc-rs HMAC/digest;
//! every primitive (HMAC, SHA-2, AES-CFB, RSA-OAEP, ECDH) is aws-lc-rs.

use std::borrow::Cow;

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_192, AES_256};
use aws_lc_rs::constant_time;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    OaepAlgorithm, OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384,
    OAEP_SHA512_MGF1SHA512,
};
use serde_json::{json, Value};
use x509_parser::asn1_rs::{BitString, Integer, Null, Sequence, ToDer};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::RSAPublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::quote::{
    decode_bytes, AkKey, AkPublic, EccCurve, HashAlg, TPMA_OBJECT_DECRYPT, TPMA_OBJECT_FIXED_PARENT, TPMA_OBJECT_FIXED_TPM,
    TPMA_OBJECT_RESTRICTED, TPMA_OBJECT_SENSITIVE_DATA_ORIGIN, TPMA_OBJECT_SIGN,
};
use crate::anchors::Anchor;
use crate::check::{Checks, VResult};
use crate::x509;
use crate::UnixTime;

/// `TPM_ALG_AES`.
pub const TPM_ALG_AES: u16 = 0x0006;
/// `TPM_ALG_CFB`.
pub const TPM_ALG_CFB: u16 = 0x0043;
/// Label of the seed encryption for credentials (Part 1 §24.4), NUL added by the KDFs / OAEP.
pub const LABEL_IDENTITY: &str = "IDENTITY";
/// Label of the symmetric key derivation (Part 1 §24.4).
pub const LABEL_STORAGE: &str = "STORAGE";
/// Label of the HMAC key derivation (Part 1 §24.5).
pub const LABEL_INTEGRITY: &str = "INTEGRITY";
/// Largest output a KDF is asked for, in bits (keys and seeds are ≤ 512 bits).
pub const MAX_KDF_BITS: u32 = 8192;
/// Largest AK/EK name accepted (2-byte algorithm + SHA-512 digest).
pub const MAX_NAME_LEN: usize = 66;
/// Largest secret returned by ActivateCredential accepted (a TPM2B_DIGEST).
pub const MAX_SECRET_LEN: usize = 64;
/// Largest EK certificate accepted (DER bytes); real ones are 1-2 KiB.
pub const MAX_EK_CERT_LEN: usize = 16 << 10;

/// Object attributes an EK must have (TCG EK Credential Profile template):
/// a restricted decryption key that cannot leave its TPM.
pub const EK_REQUIRED_ATTRIBUTES: u32 = TPMA_OBJECT_FIXED_TPM | TPMA_OBJECT_FIXED_PARENT | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
/// Object attributes an AK must have for activation to mean anything: a
/// restricted signing key generated inside, and never leaving, the TPM.
pub const AK_REQUIRED_ATTRIBUTES: u32 =
    TPMA_OBJECT_FIXED_TPM | TPMA_OBJECT_FIXED_PARENT | TPMA_OBJECT_SENSITIVE_DATA_ORIGIN | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN;

// ---------------------------------------------------------------------------
// Key derivation

fn hmac_alg(h: HashAlg) -> hmac::Algorithm {
    match h {
        HashAlg::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha256 => hmac::HMAC_SHA256,
        HashAlg::Sha384 => hmac::HMAC_SHA384,
        HashAlg::Sha512 => hmac::HMAC_SHA512,
    }
}

/// The label as the KDFs hash it: the string followed by one 0x00 octet,
/// unless it already ends in one (Part 1 §11.4.10.2 "Label … a NULL-
/// terminated string"; the reference implementation adds the 0 only when
/// missing).
fn label_bytes(label: &str) -> Vec<u8> {
    let mut v = label.as_bytes().to_vec();
    if v.last() != Some(&0) {
        v.push(0);
    }
    v
}

/// Truncate a KDF stream to `bits`: `ceil(bits/8)` bytes, the excess high
/// bits of the first byte cleared (Part 1 §11.4.10.2).
fn truncate_bits(mut out: Vec<u8>, bits: u32) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    out.truncate(bytes);
    let rem = bits & 7;
    if rem != 0 {
        if let Some(first) = out.first_mut() {
            *first &= (1u8 << rem) - 1;
        }
    }
    out
}

fn check_bits(bits: u32) -> Result<(), String> {
    if bits == 0 || bits > MAX_KDF_BITS {
        return Err(format!("KDF output of {bits} bits is out of range 1..={MAX_KDF_BITS}"));
    }
    Ok(())
}

/// KDFa (TPM 2.0 Part 1 §11.4.10.2): SP 800-108 counter-mode KDF with HMAC,
/// `HMAC(key, [i]₃₂ ‖ label ‖ 00 ‖ contextU ‖ contextV ‖ [bits]₃₂)` for
/// i = 1, 2, …, truncated to `bits`. Derives the credential's AES and HMAC
/// keys from the seed.
pub fn kdfa(hash: HashAlg, key: &[u8], label: &str, context_u: &[u8], context_v: &[u8], bits: u32) -> Result<Vec<u8>, String> {
    check_bits(bits)?;
    let k = hmac::Key::new(hmac_alg(hash), key);
    let label = label_bytes(label);
    let mut out = Vec::new();
    let mut counter: u32 = 0;
    while out.len() * 8 < bits as usize {
        counter += 1;
        let mut ctx = hmac::Context::with_key(&k);
        ctx.update(&counter.to_be_bytes());
        ctx.update(&label);
        ctx.update(context_u);
        ctx.update(context_v);
        ctx.update(&bits.to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
    }
    Ok(truncate_bits(out, bits))
}

/// KDFe (TPM 2.0 Part 1 §11.4.10.3): SP 800-56A concatenation KDF,
/// `H([i]₃₂ ‖ Z ‖ label ‖ 00 ‖ partyUInfo ‖ partyVInfo)` for i = 1, 2, …,
/// truncated to `bits`. Turns an ECDH shared x-coordinate into the seed.
pub fn kdfe(hash: HashAlg, z: &[u8], label: &str, party_u: &[u8], party_v: &[u8], bits: u32) -> Result<Vec<u8>, String> {
    check_bits(bits)?;
    let label = label_bytes(label);
    let mut out = Vec::new();
    let mut counter: u32 = 0;
    while out.len() * 8 < bits as usize {
        counter += 1;
        let block = [&counter.to_be_bytes()[..], z, &label, party_u, party_v].concat();
        out.extend(hash.digest(&block));
    }
    Ok(truncate_bits(out, bits))
}

// ---------------------------------------------------------------------------
// The EK

/// A `TPMT_SYM_DEF_OBJECT`: the symmetric algorithm a storage key (the EK)
/// uses to protect what is sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymDef {
    /// `TPM_ALG_ID` of the cipher (`TPM_ALG_AES`).
    pub alg: u16,
    /// Key size in bits.
    pub key_bits: u16,
    /// Block mode (`TPM_ALG_CFB` for storage keys).
    pub mode: u16,
}

/// An endorsement key: its public key and TPM description, as
/// `TPM2_ReadPublic` / `tpm2_createek -u` give it (`TPM2B_PUBLIC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EkPublic {
    /// The key, nameAlg, attributes and `TPMT_PUBLIC` (via the quote core).
    pub key: AkPublic,
    /// Its symmetric definition (AES-CFB for every TCG EK template).
    pub symmetric: SymDef,
    /// Its nameAlg: the hash of the seed, the KDFs and the HMAC.
    pub name_alg: HashAlg,
}

impl EkPublic {
    /// Parse a `TPM2B_PUBLIC` or `TPMT_PUBLIC` (binary; see
    /// [`decode_bytes`] for text) and check it can receive a credential: a
    /// storage key with an AES-CFB symmetric definition and a nameAlg.
    pub fn parse(bytes: &[u8]) -> Result<EkPublic, String> {
        if bytes.first() == Some(&0x30) || bytes.first() == Some(&b'-') {
            return Err("the EK public key must be a TPM2B_PUBLIC or TPMT_PUBLIC, not an X.509 key".into());
        }
        let key = AkPublic::parse(bytes)?;
        if key.tpmt_public.is_none() {
            return Err("EK public key has no TPMT_PUBLIC".into());
        }
        let name_alg = key.name_alg.ok_or("EK public key has no nameAlg")?;
        let (alg, key_bits, mode) = key.symmetric.ok_or("the EK has no symmetric definition: it is not a storage key")?;
        let symmetric = SymDef { alg, key_bits, mode };
        if symmetric.alg != TPM_ALG_AES || symmetric.mode != TPM_ALG_CFB {
            return Err(format!("EK symmetric definition {:#06x}/{:#06x} is not AES-CFB", symmetric.alg, symmetric.mode));
        }
        if !matches!(symmetric.key_bits, 128 | 192 | 256) {
            return Err(format!("EK AES key size {} bits", symmetric.key_bits));
        }
        Ok(EkPublic { key, symmetric, name_alg })
    }

    /// Whether the EK attributes are those of an endorsement key
    /// ([`EK_REQUIRED_ATTRIBUTES`], and not a signing key).
    pub fn attributes_ok(&self) -> Result<(), String> {
        let a = self.key.object_attributes.unwrap_or(0);
        if a & EK_REQUIRED_ATTRIBUTES != EK_REQUIRED_ATTRIBUTES || a & TPMA_OBJECT_SIGN != 0 {
            return Err(format!("EK objectAttributes {a:#010x} are not those of a fixedTPM, fixedParent, restricted decryption key"));
        }
        Ok(())
    }

    /// The TPM name of the EK.
    pub fn name(&self) -> Option<Vec<u8>> {
        self.key.name()
    }
}

/// The key an EK certificate certifies, including the RSAES-OAEP key
/// algorithm (1.2.840.113549.1.1.7) some TPM vendors use for RSA EKs.
pub fn ek_cert_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<AkPublic, String> {
    if spki.algorithm.algorithm.to_id_string() == "1.2.840.113549.1.1.7" {
        let (_, k) = RSAPublicKey::from_der(spki.subject_public_key.data.as_ref()).map_err(|e| format!("EK certificate RSA key: {e}"))?;
        return AkPublic::from_rsa(k.modulus, k.exponent);
    }
    AkPublic::from_spki(spki)
}

// ---------------------------------------------------------------------------
// MakeCredential

/// What TPM2_ActivateCredential takes, as the verifier produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialChallenge {
    /// Marshalled `TPM2B_ID_OBJECT`: size, `TPM2B_DIGEST` integrityHMAC, encIdentity.
    pub credential_blob: Vec<u8>,
    /// Marshalled `TPM2B_ENCRYPTED_SECRET`: the seed for the EK.
    pub secret: Vec<u8>,
}

/// tpm2-tools' credential file header (`tpm2_makecredential -o`).
const TPM2_TOOLS_MAGIC: u32 = 0xBADC_C0DE;

impl CredentialChallenge {
    /// The file `tpm2_activatecredential -i` reads: magic `0xBADCC0DE`,
    /// version 1, then the two TPM2Bs. Attesters using tpm2-tools can feed
    /// it directly.
    pub fn to_tpm2_tools(&self) -> Vec<u8> {
        let mut out = TPM2_TOOLS_MAGIC.to_be_bytes().to_vec();
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&self.credential_blob);
        out.extend_from_slice(&self.secret);
        out
    }
}

fn tpm2b(body: &[u8]) -> Result<Vec<u8>, String> {
    let n = u16::try_from(body.len()).map_err(|_| "TPM2B body longer than 65535 bytes".to_string())?;
    let mut out = n.to_be_bytes().to_vec();
    out.extend_from_slice(body);
    Ok(out)
}

/// DER SubjectPublicKeyInfo of an RSA key from its modulus and exponent, for
/// aws-lc-rs's OAEP encryption (encoded with asn1-rs, not by hand).
fn rsa_spki_der(n: &[u8], e: &[u8]) -> Result<Vec<u8>, String> {
    let err = |e: x509_parser::asn1_rs::SerializeError| format!("encoding RSA key: {e}");
    let uint = |v: &[u8]| -> Vec<u8> {
        let mut b: Vec<u8> = v.iter().copied().skip_while(|x| *x == 0).collect();
        if !matches!(b.first(), Some(x) if x & 0x80 == 0) {
            b.insert(0, 0);
        }
        b
    };
    let (n, e) = (uint(n), uint(e));
    let rsa_key =
        Sequence::new(Cow::Owned([Integer::new(&n).to_der_vec().map_err(err)?, Integer::new(&e).to_der_vec().map_err(err)?].concat()))
            .to_der_vec()
            .map_err(err)?;
    let alg = Sequence::new(Cow::Owned(
        [x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION.to_der_vec().map_err(err)?, Null::new().to_der_vec().map_err(err)?].concat(),
    ))
    .to_der_vec()
    .map_err(err)?;
    let spki = Sequence::new(Cow::Owned([alg, BitString::new(0, &rsa_key).to_der_vec().map_err(err)?].concat()));
    spki.to_der_vec().map_err(err)
}

fn oaep_alg(h: HashAlg) -> &'static OaepAlgorithm {
    match h {
        HashAlg::Sha1 => &OAEP_SHA1_MGF1SHA1,
        HashAlg::Sha256 => &OAEP_SHA256_MGF1SHA256,
        HashAlg::Sha384 => &OAEP_SHA384_MGF1SHA384,
        HashAlg::Sha512 => &OAEP_SHA512_MGF1SHA512,
    }
}

fn ecdh_alg(c: EccCurve) -> &'static agreement::Algorithm {
    match c {
        EccCurve::P256 => &agreement::ECDH_P256,
        EccCurve::P384 => &agreement::ECDH_P384,
        EccCurve::P521 => &agreement::ECDH_P521,
    }
}

/// Secret sharing to the EK (Part 1 §24.4 / Annex B.10, C.6): returns the
/// seed and the marshalled `TPM2B_ENCRYPTED_SECRET`.
///
/// * RSA: a random seed of nameAlg's digest size, RSA-OAEP with nameAlg as
///   hash and MGF1 hash and label `"IDENTITY\0"`.
/// * ECC: one-pass ECDH with an ephemeral key on the EK's curve; the seed is
///   `KDFe(nameAlg, Z.x, "IDENTITY", Qe.x, Qek.x, digest bits)` and the
///   secret is the ephemeral point (`TPMS_ECC_POINT`). `ephemeral` fixes the
///   ephemeral private key (tests with published vectors only).
fn encapsulate(ek: &EkPublic, ephemeral: Option<&[u8]>) -> Result<(Vec<u8>, Vec<u8>), String> {
    let h = ek.name_alg;
    match &ek.key.key {
        AkKey::Rsa { n, e } => {
            let mut seed = vec![0u8; h.len()];
            SystemRandom::new().fill(&mut seed).map_err(|_| "random number generator failed".to_string())?;
            let der = rsa_spki_der(n, e)?;
            let pk = PublicEncryptingKey::from_der(&der).map_err(|e| format!("EK RSA key rejected: {e}"))?;
            let oaep = OaepPublicEncryptingKey::new(pk).map_err(|_| "EK RSA key unusable for OAEP".to_string())?;
            let mut ct = vec![0u8; oaep.ciphertext_size()];
            let label = label_bytes(LABEL_IDENTITY);
            let written = oaep
                .encrypt(oaep_alg(h), &seed, &mut ct, Some(&label))
                .map_err(|_| "RSA-OAEP encryption of the seed failed".to_string())?
                .len();
            ct.truncate(written);
            Ok((seed, tpm2b(&ct)?))
        }
        AkKey::Ecc { curve, x, y } => {
            let alg = ecdh_alg(*curve);
            let private = match ephemeral {
                Some(d) => PrivateKey::from_private_key(alg, d).map_err(|e| format!("ephemeral key: {e}"))?,
                None => PrivateKey::generate(alg).map_err(|_| "ephemeral ECDH key generation failed".to_string())?,
            };
            let public = private.compute_public_key().map_err(|_| "ephemeral public key".to_string())?;
            let l = curve.coord_len();
            let point = public.as_ref();
            let (ex, ey) = match (point.first(), point.get(1..1 + l), point.get(1 + l..)) {
                (Some(4), Some(ex), Some(ey)) if ey.len() == l => (ex.to_vec(), ey.to_vec()),
                _ => return Err("ephemeral public key is not an uncompressed point".into()),
            };
            let peer = [&[4u8][..], x, y].concat();
            let z = agreement::agree(&private, UnparsedPublicKey::new(alg, &peer), "ECDH with the EK failed", |z| Ok(z.to_vec()))
                .map_err(str::to_string)?;
            let seed = kdfe(h, &z, LABEL_IDENTITY, &ex, x, (h.len() * 8) as u32)?;
            let secret = [tpm2b(&ex)?, tpm2b(&ey)?].concat();
            Ok((seed, tpm2b(&secret)?))
        }
    }
}

/// The credential blob for a given seed (Part 1 §24.4-24.5): `encIdentity =
/// AES-CFB(KDFa(seed, "STORAGE", name), IV 0, TPM2B(credential))`,
/// `integrityHMAC = HMAC(KDFa(seed, "INTEGRITY"), encIdentity ‖ name)`.
fn credential_blob(ek: &EkPublic, seed: &[u8], ak_name: &[u8], credential: &[u8]) -> Result<Vec<u8>, String> {
    let h = ek.name_alg;
    let sym_key = kdfa(h, seed, LABEL_STORAGE, ak_name, &[], u32::from(ek.symmetric.key_bits))?;
    let aes = match ek.symmetric.key_bits {
        128 => &AES_128,
        192 => &AES_192,
        256 => &AES_256,
        b => return Err(format!("AES-{b} is not supported")),
    };
    let key = UnboundCipherKey::new(aes, &sym_key).map_err(|_| "AES key rejected".to_string())?;
    let enc = EncryptingKey::cfb128(key).map_err(|_| "AES-CFB key rejected".to_string())?;
    let mut enc_identity = tpm2b(credential)?;
    enc.less_safe_encrypt(&mut enc_identity, EncryptionContext::Iv128(FixedLength::from([0u8; 16])))
        .map_err(|_| "AES-CFB encryption failed".to_string())?;
    let hmac_key = kdfa(h, seed, LABEL_INTEGRITY, &[], &[], (h.len() * 8) as u32)?;
    let k = hmac::Key::new(hmac_alg(h), &hmac_key);
    let mut ctx = hmac::Context::with_key(&k);
    ctx.update(&enc_identity);
    ctx.update(ak_name);
    let integrity = ctx.sign();
    let body = [tpm2b(integrity.as_ref())?, enc_identity].concat();
    tpm2b(&body)
}

/// Check an AK name is well formed: a known `TPM_ALG_ID` then a digest of
/// that size.
fn check_name(name: &[u8]) -> Result<(), String> {
    let alg = name.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    match alg.and_then(HashAlg::from_tpm) {
        Some(h) if name.len() == 2 + h.len() => Ok(()),
        _ => Err(format!("'{}' is not a TPM object name (nameAlg ‖ digest)", hex::encode(name))),
    }
}

/// TPM2_MakeCredential in software: protect `credential` (1..=digest size
/// of the EK's nameAlg bytes, the TPM's limit) so that only the TPM holding
/// `ek` and an object named `ak_name` can recover it.
pub fn make_credential(ek: &EkPublic, ak_name: &[u8], credential: &[u8]) -> Result<CredentialChallenge, String> {
    make_credential_inner(ek, ak_name, credential, None)
}

fn make_credential_inner(
    ek: &EkPublic,
    ak_name: &[u8],
    credential: &[u8],
    ephemeral: Option<&[u8]>,
) -> Result<CredentialChallenge, String> {
    check_name(ak_name)?;
    if credential.is_empty() || credential.len() > ek.name_alg.len() {
        return Err(format!(
            "credential of {} bytes: the TPM accepts 1..={} with a {} EK",
            credential.len(),
            ek.name_alg.len(),
            ek.name_alg.name()
        ));
    }
    let (seed, secret) = encapsulate(ek, ephemeral)?;
    let credential_blob = credential_blob(ek, &seed, ak_name, credential)?;
    Ok(CredentialChallenge { credential_blob, secret })
}

// ---------------------------------------------------------------------------
// The verifier's exchange

/// What the verifier keeps between the challenge and the response. `secret`
/// must stay with the verifier (store it server-side, never send it).
#[derive(Debug, Clone)]
pub struct PendingActivation {
    /// The AK the attester asked to be trusted.
    pub ak: AkPublic,
    /// Its TPM name, which the challenge is bound to.
    pub ak_name: Vec<u8>,
    /// The credential the TPM must give back.
    pub secret: Vec<u8>,
    /// The EK the challenge is encrypted to.
    pub ek: EkPublic,
    /// SHA-256 of the EK certificate (hex).
    pub ek_cert_sha256: String,
    /// Subject of the EK certificate.
    pub ek_cert_subject: String,
    /// Fingerprint of the root the EK certificate chains to.
    pub ek_root_sha256: String,
}

/// An AK proven to live in the TPM of a certified EK.
#[derive(Debug, Clone)]
pub struct ActivatedAk {
    /// The AK: use it as the trusted key for [`super::verify_quote`].
    pub ak: AkPublic,
    /// The exchange it came from.
    pub pending: PendingActivation,
}

impl ActivatedAk {
    /// Claims describing how the AK is trusted.
    pub fn claims(&self) -> Value {
        let p = &self.pending;
        json!({
            "ak_trust": "credential-activation",
            "ak_name": hex::encode(&p.ak_name),
            "ek_type": p.ek.key.describe(),
            "ek_name": p.ek.name().map(hex::encode),
            "ek_certificate": {
                "subject": p.ek_cert_subject,
                "sha256": p.ek_cert_sha256,
                "root_sha256": p.ek_root_sha256,
            },
        })
    }
}

/// EK material that TPM evidence JSON may carry: `"ek_public"` (hex or
/// base64 `TPM2B_PUBLIC`/`TPMT_PUBLIC`) and `"ek_certificate"` (PEM, or hex
/// or base64 DER), plus the certificate's intermediates in
/// `"ek_cert_chain"` (array, PEM or DER text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EkEvidence {
    /// The EK public area, binary.
    pub ek_public: Vec<u8>,
    /// The EK certificate, DER.
    pub ek_certificate: Vec<u8>,
    /// Intermediate certificates, DER.
    pub intermediates: Vec<Vec<u8>>,
}

fn cert_from_text(s: &str) -> Result<Vec<u8>, String> {
    if let Some(der) = x509::certs_from_pem(s.as_bytes()).into_iter().next() {
        return Ok(der);
    }
    let der = decode_bytes(s).ok_or("certificate is neither PEM, hex nor base64")?;
    if der.len() > MAX_EK_CERT_LEN {
        return Err("certificate too large".into());
    }
    x509::parse_cert(&der)?;
    Ok(der)
}

impl EkEvidence {
    /// Read the EK fields of TPM evidence JSON; `Ok(None)` when absent.
    pub fn from_json(v: &Value) -> Result<Option<EkEvidence>, String> {
        let (Some(p), Some(c)) = (v.get("ek_public"), v.get("ek_certificate")) else {
            return Ok(None);
        };
        let p = p.as_str().ok_or("'ek_public' must be a string")?;
        let ek_public = decode_bytes(p).ok_or("'ek_public' is not hex or base64")?;
        let ek_certificate = cert_from_text(c.as_str().ok_or("'ek_certificate' must be a string")?)?;
        let mut intermediates = Vec::new();
        if let Some(chain) = v.get("ek_cert_chain") {
            let arr = chain.as_array().ok_or("'ek_cert_chain' must be an array")?;
            if arr.len() > 8 {
                return Err("'ek_cert_chain' has more than 8 certificates".into());
            }
            for c in arr {
                intermediates.push(cert_from_text(c.as_str().ok_or("'ek_cert_chain' entries must be strings")?)?);
            }
        }
        Ok(Some(EkEvidence { ek_public, ek_certificate, intermediates }))
    }
}

/// Start an activation: check the EK and its certificate, check the AK, and
/// make the challenge. Records:
/// `"EK public key"`, `"EK attributes"`, `"EK certificate chain"` (+
/// `"EK certificate chain validity"`), `"EK binding"` (the certificate
/// certifies this EK), `"AK public key"`, `"AK attributes"`,
/// `"Credential challenge"`.
///
/// `ak_public` must be the AK's `TPM2B_PUBLIC`/`TPMT_PUBLIC` (its name is
/// what the challenge binds). `ek_roots` are the TPM manufacturers' EK CA
/// roots the caller trusts; `pool` holds intermediates.
#[allow(clippy::too_many_arguments)]
pub fn start_activation(
    ek_public: &[u8],
    ek_cert: &[u8],
    pool: &[Vec<u8>],
    ek_roots: &[&Anchor],
    ak_public: &[u8],
    at: UnixTime,
    checks: &mut Checks,
) -> VResult<(CredentialChallenge, PendingActivation)> {
    let ek = checks.record("EK public key", EkPublic::parse(ek_public), "TPM2B_PUBLIC of a storage key")?;
    checks.record("EK attributes", ek.attributes_ok(), format!("{} EK, restricted decryption, fixedTPM", ek.key.describe()))?;
    if ek_cert.len() > MAX_EK_CERT_LEN {
        return Err(checks.fail("EK certificate chain", "EK certificate larger than 16 KiB"));
    }
    let chain = x509::verify_chain("EK certificate chain", ek_cert, pool, ek_roots.iter().copied(), at, checks)?;
    let cert = x509::parse_cert(chain.leaf()).map_err(|e| checks.fail("EK binding", e))?;
    let bound = ek_cert_key(cert.public_key()).map(|k| k.same_key(&ek.key));
    checks.require(
        "EK binding",
        matches!(bound, Ok(true)),
        format!("EK certificate '{}' certifies this EK", cert.subject()),
        match bound {
            Err(e) => format!("EK certificate key unreadable: {e}"),
            _ => format!("the key of EK certificate '{}' is not the EK the challenge would be sent to", cert.subject()),
        },
    )?;
    let ak = checks.record("AK public key", AkPublic::parse(ak_public), "AK public area")?;
    let ak_name = match ak.name() {
        Some(n) => n,
        None => return Err(checks.fail("AK public key", "the AK must be given as a TPM public area (its name is needed)")),
    };
    let attrs = ak.object_attributes.unwrap_or(0);
    checks.require(
        "AK attributes",
        attrs & AK_REQUIRED_ATTRIBUTES == AK_REQUIRED_ATTRIBUTES && attrs & TPMA_OBJECT_DECRYPT == 0,
        format!("{} AK: restricted signing, fixedTPM, fixedParent, sensitiveDataOrigin", ak.describe()),
        format!(
            "AK objectAttributes {attrs:#010x} lack fixedTPM, fixedParent, sensitiveDataOrigin, restricted or sign, \
             or include decrypt"
        ),
    )?;
    let mut secret = vec![0u8; ek.name_alg.len()];
    SystemRandom::new().fill(&mut secret).map_err(|_| checks.fail("Credential challenge", "random number generator failed"))?;
    let challenge = checks.record(
        "Credential challenge",
        make_credential(&ek, &ak_name, &secret),
        format!("MakeCredential for AK name {}", hex::encode(&ak_name)),
    )?;
    let pending = PendingActivation {
        ak,
        ak_name,
        secret,
        ek,
        ek_cert_sha256: x509::sha256_hex(chain.leaf()),
        ek_cert_subject: cert.subject().to_string(),
        ek_root_sha256: chain.anchor_fingerprint.clone(),
    };
    Ok((challenge, pending))
}

/// Finish an activation: the secret the attester's TPM returned from
/// ActivateCredential must equal the one sent (compared in constant time).
/// Records `"Credential activation"`.
pub fn finish_activation(pending: PendingActivation, activated: &[u8], checks: &mut Checks) -> VResult<ActivatedAk> {
    let ok = activated.len() <= MAX_SECRET_LEN && constant_time::verify_slices_are_equal(activated, &pending.secret).is_ok();
    checks.require(
        "Credential activation",
        ok,
        format!("the TPM of the certified EK released the credential bound to AK {}", hex::encode(&pending.ak_name)),
        "the secret returned is not the credential sent: the AK is not proven to be in the EK's TPM",
    )?;
    Ok(ActivatedAk { ak: pending.ak.clone(), pending })
}

#[cfg(test)]
mod tests {
    //! Known-answer tests. KDFa SHA-1/256/384/512 vectors: the TPM reference
    //! implementation's self-test (libtpms `KdfTestData.h`, TCG source
    //! licence). KDFa/KDFe/ECC vectors: github.com/chrisfenner/tpm-test-vectors
    //! (Apache-2.0, commit e7db4de), generated with go-tpm and validated
    //! against a TPM simulator (`TPM2_ActivateCredential`).
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn kdfa_reference_implementation_self_test() {
        let key = h("271FA08BBDC5060EC3DFA928FF9B73123A12DA0C");
        let (u, v) = (h("CE244F395DCA7391"), h("DA504031DDF12E83"));
        for (alg, want) in [
            (HashAlg::Sha1, "55b5a7184aa07423c47dae766c26a2377d7cf851"),
            (HashAlg::Sha256, "bb0259e1c8ba607e6a2cd704b69a902e9ade84c4"),
            (HashAlg::Sha384, "1dce70c9113eb2dba47bd9cfc72bf46f45b09312"),
            (HashAlg::Sha512, "8be2c1b85b78569b9fa759f5857c56d684810fd3"),
        ] {
            // The label is "KDFSELFTESTLABEL\0": with or without the NUL.
            assert_eq!(hex::encode(kdfa(alg, &key, "KDFSELFTESTLABEL", &u, &v, 160).unwrap()), want);
            assert_eq!(hex::encode(kdfa(alg, &key, "KDFSELFTESTLABEL\0", &u, &v, 160).unwrap()), want);
        }
    }

    #[test]
    fn kdfa_vectors_with_odd_bit_counts() {
        // (hash, key, label, contextU, contextV, bits, result)
        let cases = [
            (
                HashAlg::Sha1,
                "ff",
                "CFB",
                "86ed23c15d086e70a8eae700680e75d20cff",
                "51122c5879b277ff",
                140,
                "0d0be71c885d10eb61f2219000885c2d7658",
            ),
            (
                HashAlg::Sha1,
                "",
                "IDENTITY",
                "4e462df0430f697bdb85c61a4ec7628943",
                "ff80c59598996ff148c6574472ece01c608a02",
                283,
                "04512482418b546925489d197cadb96768cfe9744a9142f1360de6021a94bc8dda277697",
            ),
            (
                HashAlg::Sha1,
                "4599ec1b3c30340e8b4f2b5869",
                "STORAGE",
                "ff",
                "5a2b980322a96c6db49b15ff16ff",
                297,
                "00f47f8fdd0bdaf9f22ec614a8ccc370fb822fa3dd80758fddc0140a45443e4be4cbc41fe74d",
            ),
        ];
        for (alg, key, label, u, v, bits, want) in cases {
            assert_eq!(hex::encode(kdfa(alg, &h(key), label, &h(u), &h(v), bits).unwrap()), want);
        }
    }

    #[test]
    fn kdfe_vectors() {
        let cases = [
            (
                HashAlg::Sha256,
                "c3e3c34e82ccfa82d8999bf2635bb7cd01f3d65f03ff",
                "CFB",
                "55576a51c0e45b86557535e9ea50d5e7f4a80bb426e7ff",
                "dffdece923181dc335c1e936ff",
                109,
                "1106264c89948737c140d2f5b40e",
            ),
            (
                HashAlg::Sha256,
                "ffcead5817fa51",
                "OBFUSCATE",
                "3a25c7420a6ea094aff570c12fd40d2b8eff",
                "8505ad0684d7196c4153860ece58c62c20fa07f18fff",
                215,
                "7e20d953e93f3760753b0aeba83c1114c440493bd8101f12665868",
            ),
            (
                HashAlg::Sha1,
                "9b050039c8e5ca60deeb978f2faf573c94af61",
                "IDENTITY",
                "ff1a1852db7b60a5c963f17eb306f3a905d100ae",
                "0047ee45771a256d58b091b6d6",
                32,
                "94c3c160",
            ),
            (
                HashAlg::Sha256,
                "e89fc5304cf46c1cf7d1f5de5d3d1ec7eddc80b0386700",
                "SECRET",
                "e602bc959fd97af0405649e0c80e02e9dd64e9d79e698292b043c79dfa9f9261",
                "",
                431,
                "3a8e893b8b76cdddbf87845b2567fa7152577829f6a55b73cb82d4a1f0342a051d6e50e20ec2f96bc4de38d7d0d79a9caf99e1d574b9",
            ),
        ];
        for (alg, z, label, u, v, bits, want) in cases {
            assert_eq!(hex::encode(kdfe(alg, &h(z), label, &h(u), &h(v), bits).unwrap()), want);
        }
    }

    /// A restricted P-256 storage key (nameAlg SHA-256, AES-128-CFB) and a
    /// fixed ephemeral key: the seed and TPM2B_ENCRYPTED_SECRET contents must
    /// be exactly the ones a TPM simulator decapsulated with
    /// TPM2_ActivateCredential (vector 05_R_P256_SHA256_128).
    #[test]
    fn ecc_identity_encapsulation_vector() {
        let public = h("0023000b000304600020bef56b8c1cc84e11edd717528d2cd99356bd2bbf8f015209c3f84aeeaba8e8a20006008000430010000300100020f126562cedff2fa344c6234085de4250112ecf72d0714336970de012ba977da9002017436ee1160921fdd2ed033e11ba04ed0cedf2ca462246118a359f8eb469b531");
        let ek = EkPublic::parse(&public).unwrap();
        assert_eq!(ek.symmetric, SymDef { alg: TPM_ALG_AES, key_bits: 128, mode: TPM_ALG_CFB });
        let d = h("85e55f8e90f1ca33eb4fc4b2e347e6062127d4975bc48c520afdbcdd49b1c6d7");
        let (seed, secret) = encapsulate(&ek, Some(&d)).unwrap();
        assert_eq!(hex::encode(seed), "88d8f97b4b8fd8bd1751ca32b5a3aa14c91163ad984b5c732e400572a8525edc");
        let ct = "00200173de00ffb1981886c1fd3039b2de4e6dd1eb34634be4d9ce27a46455633606002083ba87eb7c9a032cc36ab674fc48266c4255aeb312d069893b6ea74fbcb21c3f";
        assert_eq!(hex::encode(&secret[2..]), ct);
        assert_eq!(usize::from(u16::from_be_bytes([secret[0], secret[1]])), secret.len() - 2);
    }

    /// The RSA path, decrypted with the matching private key: OAEP with the
    /// nameAlg hash and the "IDENTITY\0" label, a seed of digest size.
    #[test]
    fn rsa_seed_is_oaep_with_identity_label() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rsa::{KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey};
        use x509_parser::public_key::PublicKey;
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let spki_der = private.public_key().as_der().unwrap();
        let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der.as_ref()).unwrap();
        let PublicKey::RSA(k) = spki.parsed().unwrap() else { panic!() };
        // A TPMT_PUBLIC like the default EK template, with this modulus.
        let mut t = h("0001000b000300b2"); // RSA, SHA-256, EK attributes
        t.extend(h("0020"));
        t.extend([0u8; 32]); // authPolicy
        t.extend(h("00060080004300100800")); // AES-128-CFB, scheme NULL, 2048 bits
        t.extend(h("00000000")); // exponent 0 = 65537
        let n: Vec<u8> = k.modulus.iter().copied().skip_while(|b| *b == 0).collect();
        t.extend((n.len() as u16).to_be_bytes());
        t.extend(&n);
        let ek = EkPublic::parse(&t).unwrap();
        ek.attributes_ok().unwrap();
        let (seed, secret) = encapsulate(&ek, None).unwrap();
        assert_eq!(seed.len(), 32);
        let dec = OaepPrivateDecryptingKey::new(private).unwrap();
        let mut out = vec![0u8; 256];
        let label = b"IDENTITY\0";
        let plain = dec.decrypt(&OAEP_SHA256_MGF1SHA256, &secret[2..], &mut out, Some(label)).unwrap();
        assert_eq!(plain, seed.as_slice());
        assert!(dec.decrypt(&OAEP_SHA256_MGF1SHA256, &secret[2..], &mut out, Some(b"IDENTITY")).is_err());

        // Credential limits and name format.
        let name = [&[0x00, 0x0b][..], &[7u8; 32]].concat();
        assert!(make_credential(&ek, &name, &[1; 33]).is_err());
        assert!(make_credential(&ek, &name, &[]).is_err());
        assert!(make_credential(&ek, &name[..20], &[1; 16]).is_err());
        let c = make_credential(&ek, &name, &[1; 32]).unwrap();
        // TPM2B_ID_OBJECT: size, TPM2B_DIGEST(32), encIdentity = TPM2B(32) encrypted.
        assert_eq!(c.credential_blob.len(), 2 + 2 + 32 + 2 + 32);
        assert_eq!(&c.to_tpm2_tools()[..8], &h("badcc0de00000001")[..]);
    }

    #[test]
    fn wrong_secret_is_refused_by_name() {
        let public = h("0023000b000304600020bef56b8c1cc84e11edd717528d2cd99356bd2bbf8f015209c3f84aeeaba8e8a20006008000430010000300100020f126562cedff2fa344c6234085de4250112ecf72d0714336970de012ba977da9002017436ee1160921fdd2ed033e11ba04ed0cedf2ca462246118a359f8eb469b531");
        let ek = EkPublic::parse(&public).unwrap();
        let pending = PendingActivation {
            ak: ek.key.clone(),
            ak_name: vec![0, 0x0b],
            secret: vec![5; 32],
            ek,
            ek_cert_sha256: String::new(),
            ek_cert_subject: String::new(),
            ek_root_sha256: String::new(),
        };
        let mut checks = Checks::new();
        let err = finish_activation(pending.clone(), &[6; 32], &mut checks).unwrap_err();
        assert_eq!(err.check, "Credential activation");
        assert!(finish_activation(pending.clone(), &[5; 31], &mut Checks::new()).is_err());
        assert!(finish_activation(pending, &[5; 32], &mut Checks::new()).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn random_ek_public_and_evidence_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = EkPublic::parse(&bytes);
            let mut t = h("013a0001000b000300b20020");
            t.extend(&bytes);
            let _ = EkPublic::parse(&t);
            let v = json!({"ek_public": hex::encode(&bytes), "ek_certificate": hex::encode(&bytes)});
            let _ = EkEvidence::from_json(&v);
        }
    }
}
