//! JWE (RFC 7516) compact serialization: secrets encrypted to the
//! workload's public key.
//!
//! Key management `ECDH-ES+A256KW` (P-256, P-384) or `RSA-OAEP-256`, content
//! encryption `A256GCM`; nothing else is produced or accepted. In particular
//! `RSA1_5` (padding oracles), `dir` and `none` are refused, as are JWKs
//! that carry private members. Every primitive is aws-lc-rs's: ECDH
//! ([`aws_lc_rs::agreement`]), the Concat KDF of RFC 7518 §4.6 (NIST
//! SP 800-56C single-step KDF with SHA-256, [`aws_lc_rs::kdf::sskdf_digest`]),
//! AES key wrap ([`aws_lc_rs::key_wrap`]), RSA-OAEP with SHA-256 and
//! AES-256-GCM. This module composes them as RFC 7518 specifies.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256, ECDH_P384};
use aws_lc_rs::kdf::{get_sskdf_digest_algorithm, sskdf_digest, SskdfDigestAlgorithmId};
use aws_lc_rs::key_wrap::{KeyWrap, AES_256};
use aws_lc_rs::rsa::{
    OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use crate::secret::{KeyBytes, SecretValue};
use crate::BrokerError;

/// Largest JWE accepted for decryption (bytes).
pub const MAX_JWE_LEN: usize = 1 << 20;

/// The one content encryption produced and accepted.
pub const ENC: &str = "A256GCM";

/// Key management algorithms produced and accepted.
pub const ALG_ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
/// RSAES-OAEP with SHA-256 and MGF1-SHA-256.
pub const ALG_RSA_OAEP_256: &str = "RSA-OAEP-256";

/// JWK members that only a private key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// An elliptic curve for ECDH-ES.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }
    fn coord_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
    fn agreement(self) -> &'static agreement::Algorithm {
        match self {
            Curve::P256 => &ECDH_P256,
            Curve::P384 => &ECDH_P384,
        }
    }
    fn parse(name: &str) -> Option<Curve> {
        match name {
            "P-256" => Some(Curve::P256),
            "P-384" => Some(Curve::P384),
            _ => None,
        }
    }
}

/// A workload's public encryption key, parsed from its JWK.
#[derive(Clone, PartialEq, Eq)]
pub enum WorkloadKey {
    /// EC public key: uncompressed point `04 ‖ x ‖ y`.
    Ec {
        /// The curve.
        curve: Curve,
        /// The point.
        point: Vec<u8>,
    },
    /// RSA public key (≥ 2048 bits).
    Rsa {
        /// Modulus, big-endian without leading zeros.
        n: Vec<u8>,
        /// Public exponent, big-endian without leading zeros.
        e: Vec<u8>,
    },
}

impl std::fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WorkloadKey({} {})", self.alg(), self.thumbprint())
    }
}

fn refuse(msg: impl Into<String>) -> BrokerError {
    BrokerError::WorkloadKey(msg.into())
}

fn b64(s: &str) -> Result<Vec<u8>, BrokerError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| refuse("a JWK member is not base64url"))
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default().to_vec()
}

/// `rsaEncryption` (PKCS #1).
const OID_RSA_ENCRYPTION: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// RSA `n`, `e` as X.509 SubjectPublicKeyInfo DER (what aws-lc-rs takes).
pub(crate) fn rsa_spki_der(n: &[u8], e: &[u8]) -> Result<Vec<u8>, BrokerError> {
    use der::Encode;
    let bad = |_| refuse("RSA key cannot be encoded");
    let pk = pkcs1::RsaPublicKey { modulus: pkcs1::UintRef::new(n).map_err(bad)?, public_exponent: pkcs1::UintRef::new(e).map_err(bad)? };
    let pk_der = pk.to_der().map_err(bad)?;
    let spki = spki::SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifierRef { oid: OID_RSA_ENCRYPTION, parameters: Some(der::asn1::AnyRef::NULL) },
        subject_public_key: der::asn1::BitStringRef::from_bytes(&pk_der).map_err(bad)?,
    };
    spki.to_der().map_err(bad)
}

impl WorkloadKey {
    /// Parse a public JWK. Refuses private members, `use` other than
    /// `enc`, an `alg` other than the two supported (so `RSA1_5`, `dir`,
    /// `none`, plain `ECDH-ES` are refused by name), curves other than P-256
    /// and P-384, points not on the curve, and RSA keys under 2048 bits.
    pub fn from_jwk(jwk: &Value) -> Result<WorkloadKey, BrokerError> {
        let obj = jwk.as_object().ok_or_else(|| refuse("the workload key is not a JSON object (JWK)"))?;
        if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
            return Err(refuse(format!("the workload JWK carries the private member '{m}'; only the public key may be sent")));
        }
        let field = |name: &str| obj.get(name).and_then(Value::as_str);
        if let Some(u) = obj.get("use") {
            if u.as_str() != Some("enc") {
                return Err(refuse(format!("the workload JWK has use {u}, not \"enc\"")));
            }
        }
        let kty = field("kty").ok_or_else(|| refuse("the workload JWK has no 'kty'"))?;
        let key = match kty {
            "EC" => {
                let crv = field("crv").ok_or_else(|| refuse("EC JWK without 'crv'"))?;
                let curve = Curve::parse(crv).ok_or_else(|| refuse(format!("curve {crv:?} is not supported (P-256, P-384)")))?;
                let (x, y) = (b64(field("x").unwrap_or_default())?, b64(field("y").unwrap_or_default())?);
                if x.len() != curve.coord_len() || y.len() != curve.coord_len() {
                    return Err(refuse(format!("EC JWK coordinates are not {} bytes", curve.coord_len())));
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                // Refuse points not on the curve now (aws-lc-rs validates on parse).
                agreement::ParsedPublicKey::try_from(&UnparsedPublicKey::new(curve.agreement(), &point))
                    .map_err(|_| refuse("the EC JWK's point is not on its curve"))?;
                WorkloadKey::Ec { curve, point }
            }
            "RSA" => {
                let n = strip_zeros(&b64(field("n").ok_or_else(|| refuse("RSA JWK without 'n'"))?)?);
                let e = strip_zeros(&b64(field("e").ok_or_else(|| refuse("RSA JWK without 'e'"))?)?);
                if n.len() < 256 {
                    return Err(refuse("RSA keys shorter than 2048 bits are refused"));
                }
                if n.len() > 1024 {
                    return Err(refuse("RSA keys longer than 8192 bits are refused"));
                }
                let k = WorkloadKey::Rsa { n, e };
                k.rsa_key()?;
                k
            }
            other => return Err(refuse(format!("key type {other:?} is not supported (EC, RSA)"))),
        };
        if let Some(alg) = obj.get("alg") {
            if alg.as_str() != Some(key.alg()) {
                return Err(refuse(format!("the workload JWK's alg {alg} is not accepted; use {}", key.alg())));
            }
        }
        Ok(key)
    }

    /// The JWE `alg` used with this key.
    pub fn alg(&self) -> &'static str {
        match self {
            WorkloadKey::Ec { .. } => ALG_ECDH_ES_A256KW,
            WorkloadKey::Rsa { .. } => ALG_RSA_OAEP_256,
        }
    }

    /// The public JWK (required members only, plus `alg`).
    pub fn to_jwk(&self) -> Value {
        let mut j = self.required_members();
        j["alg"] = self.alg().into();
        j
    }

    fn required_members(&self) -> Value {
        match self {
            WorkloadKey::Ec { curve, point } => {
                let c = point.get(1..).unwrap_or_default();
                let (x, y) = c.split_at(curve.coord_len().min(c.len()));
                json!({"crv": curve.name(), "kty": "EC", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)})
            }
            WorkloadKey::Rsa { n, e } => json!({"e": URL_SAFE_NO_PAD.encode(e), "kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n)}),
        }
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): the key's name in
    /// headers, audit entries and refusals.
    pub fn thumbprint(&self) -> String {
        // Members in lexicographic order, no whitespace (RFC 7638 §3.2); the
        // values are base64url or fixed names, so need no escaping.
        let m = self.required_members();
        let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let canonical = match self {
            WorkloadKey::Ec { .. } => format!(r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#, s("crv"), s("x"), s("y")),
            WorkloadKey::Rsa { .. } => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e"), s("n")),
        };
        URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
    }

    fn rsa_key(&self) -> Result<OaepPublicEncryptingKey, BrokerError> {
        let WorkloadKey::Rsa { n, e } = self else { return Err(refuse("not an RSA key")) };
        let pk = PublicEncryptingKey::from_der(&rsa_spki_der(n, e)?).map_err(|_| refuse("the RSA JWK is not a usable public key"))?;
        OaepPublicEncryptingKey::new(pk).map_err(|_| refuse("the RSA JWK is not a usable public key"))
    }
}

/// The Concat KDF of RFC 7518 §4.6.2 with SHA-256 (NIST SP 800-56A
/// §5.8.1): `OtherInfo = AlgorithmID ‖ PartyUInfo ‖ PartyVInfo ‖
/// SuppPubInfo`, each of the first three a 32-bit big-endian length and
/// the bytes, SuppPubInfo the output length in bits. aws-lc-rs computes
/// the KDF itself (SSKDF with a digest).
pub fn concat_kdf(z: &[u8], alg_id: &str, apu: &[u8], apv: &[u8], out: &mut [u8]) -> Result<(), BrokerError> {
    let mut info = Vec::with_capacity(alg_id.len() + apu.len() + apv.len() + 16);
    for part in [alg_id.as_bytes(), apu, apv] {
        info.extend_from_slice(&(part.len() as u32).to_be_bytes());
        info.extend_from_slice(part);
    }
    info.extend_from_slice(&((out.len() as u32) * 8).to_be_bytes());
    let alg = get_sskdf_digest_algorithm(SskdfDigestAlgorithmId::Sha256).ok_or_else(|| BrokerError::Crypto("SSKDF SHA-256".into()))?;
    sskdf_digest(alg, z, &info, out).map_err(|_| BrokerError::Crypto("Concat KDF".into()))
}

/// Encrypt `plaintext` to `key` as a compact JWE. `extra` members are
/// added to the protected header (so they are authenticated), e.g. the
/// secret's name; they cannot replace `alg`, `enc`, `epk`, `kid`.
pub fn encrypt(key: &WorkloadKey, plaintext: &[u8], extra: &Map<String, Value>) -> Result<String, BrokerError> {
    let crypto = |what: &str| BrokerError::Crypto(what.to_string());
    let cek = KeyBytes::<32>::random().map_err(|_| crypto("random CEK"))?;
    let mut header = Map::new();
    for (k, v) in extra {
        header.insert(k.clone(), v.clone());
    }
    header.insert("alg".into(), key.alg().into());
    header.insert("enc".into(), ENC.into());
    header.insert("kid".into(), key.thumbprint().into());
    let encrypted_key = match key {
        WorkloadKey::Ec { curve, point } => {
            let eph = EphemeralPrivateKey::generate(curve.agreement(), &aws_lc_rs::rand::SystemRandom::new())
                .map_err(|_| crypto("ephemeral EC key"))?;
            let epk = eph.compute_public_key().map_err(|_| crypto("ephemeral EC public key"))?;
            let epk = WorkloadKey::Ec { curve: *curve, point: epk.as_ref().to_vec() };
            header.insert("epk".into(), epk.required_members());
            let mut kek = Zeroizing::new([0u8; 32]);
            agreement::agree_ephemeral(eph, UnparsedPublicKey::new(curve.agreement(), point), crypto("ECDH"), |z| {
                concat_kdf(z, ALG_ECDH_ES_A256KW, b"", b"", kek.as_mut())
            })?;
            let mut out = vec![0u8; 40];
            let kw = aws_lc_rs::key_wrap::KeyEncryptionKey::new(&AES_256, kek.as_ref()).map_err(|_| crypto("AES-KW key"))?;
            let n = kw.wrap(cek.expose(), &mut out).map_err(|_| crypto("AES-KW"))?.len();
            out.truncate(n);
            out
        }
        WorkloadKey::Rsa { .. } => {
            let pk = key.rsa_key()?;
            let mut out = vec![0u8; pk.ciphertext_size()];
            let n = pk.encrypt(&OAEP_SHA256_MGF1SHA256, cek.expose(), &mut out, None).map_err(|_| crypto("RSA-OAEP"))?.len();
            out.truncate(n);
            out
        }
    };
    let header_b64 = URL_SAFE_NO_PAD.encode(header_text(&header).map_err(|_| crypto("header"))?);
    let mut iv = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut iv).map_err(|_| crypto("random IV"))?;
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, cek.expose()).map_err(|_| crypto("CEK"))?);
    let mut body = plaintext.to_vec();
    let tag = aead
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(header_b64.as_bytes()), &mut body)
        .map_err(|_| crypto("A256GCM"))?;
    Ok(format!(
        "{header_b64}.{}.{}.{}.{}",
        URL_SAFE_NO_PAD.encode(&encrypted_key),
        URL_SAFE_NO_PAD.encode(iv),
        URL_SAFE_NO_PAD.encode(&body),
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    ))
}

/// The protected header's text: `alg`, `enc`, then the other members in
/// sorted order, compact. That is how `kbs_types::ProtectedHeader`
/// re-serialises a header, and Trustee's guest-components compute the AAD
/// from that re-serialisation, so a JWE released through the KBS protocol
/// (`cachet-server::kbs`) opens there too; JOSE libraries use the bytes as sent.
fn header_text(header: &Map<String, Value>) -> Result<String, serde_json::Error> {
    let mut members: Vec<(&String, &Value)> = header.iter().collect();
    let rank = |k: &str| match k {
        "alg" => 0,
        "enc" => 1,
        _ => 2,
    };
    members.sort_by(|a, b| (rank(a.0), a.0).cmp(&(rank(b.0), b.0)));
    let mut out = String::from("{");
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(k)?);
        out.push(':');
        out.push_str(&serde_json::to_string(v)?);
    }
    out.push('}');
    Ok(out)
}

/// A workload's private key, for decrypting what the broker released.
pub enum DecryptionKey {
    /// EC private key (P-256 or P-384).
    Ec(agreement::PrivateKey),
    /// RSA private key.
    Rsa(PrivateDecryptingKey),
}

/// A decrypted JWE: its protected header and the plaintext.
#[derive(Debug)]
pub struct Decrypted {
    /// The protected header.
    pub header: Value,
    /// The plaintext (wiped on drop, redacted in `Debug`).
    pub plaintext: SecretValue,
}

fn malformed(msg: &str) -> BrokerError {
    BrokerError::Jwe(msg.to_string())
}

/// Decrypt a compact JWE made by [`encrypt`] (or any producer using the
/// same two algorithm pairs). Refuses any other `alg`/`enc`, `zip`, `crit`.
pub fn decrypt(key: &DecryptionKey, jwe: &str) -> Result<Decrypted, BrokerError> {
    if jwe.len() > MAX_JWE_LEN {
        return Err(malformed("JWE too large"));
    }
    let parts: Vec<&str> = jwe.split('.').collect();
    let [h, ek, iv, ct, tag] = parts.as_slice() else { return Err(malformed("a compact JWE has five parts")) };
    let d = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| malformed("a JWE part is not base64url"));
    let header: Value = serde_json::from_slice(&d(h)?).map_err(|_| malformed("header is not JSON"))?;
    let hs = |n: &str| header.get(n).and_then(Value::as_str);
    if hs("enc") != Some(ENC) {
        return Err(malformed("only enc A256GCM is accepted"));
    }
    if header.get("zip").is_some() || header.get("crit").is_some() {
        return Err(malformed("'zip' and 'crit' are not accepted"));
    }
    let ek = d(ek)?;
    let mut cek = Zeroizing::new(vec![0u8; 32]);
    match (key, hs("alg")) {
        (DecryptionKey::Ec(pk), Some(ALG_ECDH_ES_A256KW)) => {
            let epk = WorkloadKey::from_jwk(header.get("epk").ok_or_else(|| malformed("no 'epk'"))?)?;
            let WorkloadKey::Ec { curve, point } = epk else { return Err(malformed("'epk' is not an EC key")) };
            if curve.agreement() != pk.algorithm() {
                return Err(malformed("'epk' is on another curve than the key"));
            }
            let apu = hs("apu").map(d).transpose()?.unwrap_or_default();
            let apv = hs("apv").map(d).transpose()?.unwrap_or_default();
            let mut kek = Zeroizing::new([0u8; 32]);
            agreement::agree(pk, UnparsedPublicKey::new(curve.agreement(), &point), malformed("ECDH"), |z| {
                concat_kdf(z, ALG_ECDH_ES_A256KW, &apu, &apv, kek.as_mut())
            })?;
            let kw = aws_lc_rs::key_wrap::KeyEncryptionKey::new(&AES_256, kek.as_ref()).map_err(|_| malformed("AES-KW key"))?;
            if ek.len() != 40 {
                return Err(malformed("wrapped CEK is not 40 bytes"));
            }
            kw.unwrap(&ek, &mut cek).map_err(|_| malformed("AES key unwrap failed"))?;
        }
        (DecryptionKey::Rsa(pk), Some(ALG_RSA_OAEP_256)) => {
            let oaep = OaepPrivateDecryptingKey::new(pk.clone()).map_err(|_| malformed("RSA key"))?;
            let mut out = Zeroizing::new(vec![0u8; oaep.min_output_size()]);
            let n = oaep.decrypt(&OAEP_SHA256_MGF1SHA256, &ek, &mut out, None).map_err(|_| malformed("RSA-OAEP decryption failed"))?.len();
            if n != 32 {
                return Err(malformed("CEK is not 32 bytes"));
            }
            cek.copy_from_slice(out.get(..32).unwrap_or_default());
        }
        (_, alg) => return Err(malformed(&format!("alg {alg:?} is not accepted for this key"))),
    }
    let iv = d(iv)?;
    let nonce = Nonce::try_assume_unique_for_key(&iv).map_err(|_| malformed("IV is not 96 bits"))?;
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).map_err(|_| malformed("CEK"))?);
    let mut buf = Zeroizing::new(d(ct)?);
    buf.extend_from_slice(&d(tag)?);
    let n = aead
        .open_in_place(nonce, Aad::from(h.as_bytes()), buf.as_mut_slice())
        .map_err(|_| malformed("content authentication failed"))?
        .len();
    buf.truncate(n);
    Ok(Decrypted { header, plaintext: SecretValue::new(std::mem::take(&mut *buf)) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rsa::KeySize;

    fn ec_pair(curve: Curve) -> (DecryptionKey, WorkloadKey) {
        let sk = agreement::PrivateKey::generate(curve.agreement()).unwrap();
        let pk = WorkloadKey::Ec { curve, point: sk.compute_public_key().unwrap().as_ref().to_vec() };
        (DecryptionKey::Ec(sk), pk)
    }

    fn rsa_pair() -> (DecryptionKey, WorkloadKey) {
        let sk = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let spki = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(&sk.public_key()).unwrap();
        let (_, spki) = <spki::SubjectPublicKeyInfoRef as der::Decode>::from_der(spki.as_ref()).map(|s| ((), s)).unwrap();
        let rsa: pkcs1::RsaPublicKey = der::Decode::from_der(spki.subject_public_key.raw_bytes()).unwrap();
        let pk = WorkloadKey::Rsa { n: strip_zeros(rsa.modulus.as_bytes()), e: strip_zeros(rsa.public_exponent.as_bytes()) };
        (DecryptionKey::Rsa(sk), pk)
    }

    #[test]
    fn concat_kdf_matches_rfc7518_appendix_c() {
        // RFC 7518 Appendix C: ECDH-ES, A128GCM, apu "Alice", apv "Bob".
        let z = [
            158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110, 163, 218, 128, 106, 72, 246, 218, 167,
            121, 140, 254, 144, 196,
        ];
        let mut out = [0u8; 16];
        concat_kdf(&z, "A128GCM", b"Alice", b"Bob", &mut out).unwrap();
        assert_eq!(out, [86, 170, 141, 234, 248, 35, 109, 32, 92, 34, 40, 205, 113, 167, 16, 26]);
        assert_eq!(URL_SAFE_NO_PAD.encode(out), "VqqN6vgjbSBcIijNcacQGg");
        // And Z itself from the appendix's keys (Alice's ephemeral d, Bob's public key).
        let d = URL_SAFE_NO_PAD.decode("0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo").unwrap();
        let alice = agreement::PrivateKey::from_private_key(&ECDH_P256, &d).unwrap();
        let bob = WorkloadKey::from_jwk(&json!({"kty": "EC", "crv": "P-256",
            "x": "weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ", "y": "e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck"}))
        .unwrap();
        let WorkloadKey::Ec { point, .. } = bob else { panic!() };
        let got = agreement::agree(&alice, UnparsedPublicKey::new(&ECDH_P256, &point), (), |z| Ok(z.to_vec())).unwrap();
        assert_eq!(got, z);
    }

    #[test]
    fn round_trip_for_each_key_type_with_authenticated_header() {
        for (sk, pk) in [ec_pair(Curve::P256), ec_pair(Curve::P384), rsa_pair()] {
            let mut extra = Map::new();
            extra.insert("cachet.secret".into(), "bank-a/db".into());
            let jwe = encrypt(&pk, b"s3cret value", &extra).unwrap();
            assert!(!jwe.contains("s3cret"));
            let out = decrypt(&sk, &jwe).unwrap();
            assert_eq!(out.plaintext.expose(), b"s3cret value");
            assert_eq!(out.header["alg"], pk.alg());
            assert_eq!(out.header["kid"], pk.thumbprint());
            assert_eq!(out.header["cachet.secret"], "bank-a/db");
            // Any altered character of any part is refused.
            let bytes = jwe.as_bytes();
            for i in (0..bytes.len()).step_by(5) {
                let mut t = bytes.to_vec();
                t[i] = if t[i] == b'A' { b'B' } else { b'A' };
                let t = String::from_utf8(t).unwrap();
                if t != jwe {
                    assert!(decrypt(&sk, &t).is_err(), "{} byte {i}", pk.alg());
                }
            }
        }
    }

    #[test]
    fn another_key_cannot_decrypt() {
        let (_, pk) = ec_pair(Curve::P256);
        let (other, _) = ec_pair(Curve::P256);
        assert!(decrypt(&other, &encrypt(&pk, b"x", &Map::new()).unwrap()).is_err());
        let (_, rpk) = rsa_pair();
        let (rother, _) = rsa_pair();
        assert!(decrypt(&rother, &encrypt(&rpk, b"x", &Map::new()).unwrap()).is_err());
    }

    #[test]
    fn unsafe_or_unsupported_jwks_are_refused_by_name() {
        let (_, ec) = ec_pair(Curve::P256);
        let (_, rsa) = rsa_pair();
        let with = |k: &WorkloadKey, m: &str, v: Value| {
            let mut j = k.to_jwk();
            j[m] = v;
            WorkloadKey::from_jwk(&j)
        };
        for alg in ["RSA1_5", "RSA-OAEP", "dir", "none", "A256KW"] {
            let e = with(&rsa, "alg", alg.into()).unwrap_err();
            assert!(e.to_string().contains(alg), "{e}");
        }
        for alg in ["ECDH-ES", "dir", "none", "RSA-OAEP-256"] {
            assert!(with(&ec, "alg", alg.into()).is_err(), "{alg}");
        }
        assert!(with(&ec, "d", "AAAA".into()).unwrap_err().to_string().contains("private member 'd'"));
        assert!(with(&ec, "use", "sig".into()).is_err());
        assert!(with(&ec, "crv", "P-521".into()).is_err());
        assert!(WorkloadKey::from_jwk(&json!({"kty": "oct", "k": "AAAA"})).is_err());
        // A point not on the curve.
        let mut j = ec.to_jwk();
        j["y"] = URL_SAFE_NO_PAD.encode([7u8; 32]).into();
        assert!(WorkloadKey::from_jwk(&j).unwrap_err().to_string().contains("not on its curve"));
        // A 1024-bit RSA key.
        let short = json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc5u8; 128]), "e": "AQAB"});
        assert!(WorkloadKey::from_jwk(&short).unwrap_err().to_string().contains("2048"));
        // The JWK round-trips.
        assert_eq!(WorkloadKey::from_jwk(&ec.to_jwk()).unwrap(), ec);
        assert_eq!(WorkloadKey::from_jwk(&rsa.to_jwk()).unwrap(), rsa);
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1.
        let jwk = json!({"kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB", "alg": "RSA-OAEP-256"});
        assert_eq!(WorkloadKey::from_jwk(&jwk).unwrap().thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn other_algorithms_are_refused_on_decryption() {
        let (sk, pk) = ec_pair(Curve::P256);
        let jwe = encrypt(&pk, b"x", &Map::new()).unwrap();
        let parts: Vec<&str> = jwe.split('.').collect();
        for (alg, enc) in [("RSA1_5", "A256GCM"), ("dir", "A256GCM"), ("ECDH-ES", "A256GCM"), ("ECDH-ES+A256KW", "A128CBC-HS256")] {
            let mut h: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
            h["alg"] = alg.into();
            h["enc"] = enc.into();
            let t = format!("{}.{}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&h).unwrap()), parts[1..].join("."));
            assert!(decrypt(&sk, &t).is_err(), "{alg}/{enc}");
        }
    }
}
