//! Client-side JWE decryption for released secrets: compact serialization
//! (RFC 7516 §7.1) with ECDH-ES key agreement and AES key wrapping
//! (`ECDH-ES+A128KW`, `ECDH-ES+A256KW`, RFC 7518 §4.6) and AES-GCM content
//! encryption (`A128GCM`, `A256GCM`, §5.3). Everything else (RSA1_5,
//! direct ECDH-ES, `dir`, compression, critical extensions) is refused by
//! name.
//!
//! Every primitive comes from aws-lc-rs: ECDH (`agreement`, which also
//! checks that the sender's point is on the curve), the Concat KDF of RFC
//! 7518 §4.6.2 (NIST SP 800-56A; it is the one-step KDF of SP 800-56C,
//! `kdf::sskdf_digest` with SHA-256), AES key wrap (`key_wrap`, RFC 3394)
//! and AES-GCM (`aead`). Tested against the RFC 7520 §5.4 example.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::kdf::{get_sskdf_digest_algorithm, sskdf_digest, SskdfDigestAlgorithmId};
use aws_lc_rs::key_wrap::{AesKek, KeyWrap, AES_128, AES_256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// Largest compact JWE accepted (characters).
pub const MAX_JWE_LEN: usize = 8 << 20;
/// Largest protected header (characters, base64url).
const MAX_HEADER_LEN: usize = 16 << 10;

/// Why a JWE was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JweError {
    /// Not five base64url parts of sane sizes.
    #[error("JWE format: {0}")]
    Format(String),
    /// The protected header is not what the algorithms need.
    #[error("JWE header: {0}")]
    Header(String),
    /// An algorithm this client does not accept.
    #[error("JWE algorithm: {0}")]
    Unsupported(String),
    /// The sender's ephemeral key is not usable with ours.
    #[error("JWE key agreement: {0}")]
    KeyAgreement(String),
    /// The wrapped content key does not unwrap with the agreed key.
    #[error("JWE key unwrap: the content key does not unwrap with the agreed key (encrypted to another key, or altered)")]
    Unwrap,
    /// AES-GCM authentication failed.
    #[error("JWE decryption: authentication failed (altered header, IV, ciphertext or tag)")]
    Decrypt,
}

/// A decrypted JWE.
#[derive(Debug)]
pub struct Decrypted {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The plaintext (wiped when dropped).
    pub plaintext: Zeroizing<Vec<u8>>,
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, JweError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| JweError::Format(format!("{what} is not base64url without padding")))
}

/// The key-wrap algorithm of `alg`: (block cipher, key length).
fn key_wrap(alg: &str) -> Result<(&'static aws_lc_rs::key_wrap::AesBlockCipher, usize), JweError> {
    match alg {
        "ECDH-ES+A128KW" => Ok((&AES_128, 16)),
        "ECDH-ES+A256KW" => Ok((&AES_256, 32)),
        other => Err(JweError::Unsupported(format!("alg {other:?} (accepted: ECDH-ES+A128KW, ECDH-ES+A256KW)"))),
    }
}

/// The content encryption of `enc`: (AEAD, key length).
fn content_cipher(enc: &str) -> Result<(&'static aws_lc_rs::aead::Algorithm, usize), JweError> {
    match enc {
        "A128GCM" => Ok((&AES_128_GCM, 16)),
        "A256GCM" => Ok((&AES_256_GCM, 32)),
        other => Err(JweError::Unsupported(format!("enc {other:?} (accepted: A128GCM, A256GCM)"))),
    }
}

/// The JWK curve name and coordinate length of an ECDH key.
fn curve_of(key: &PrivateKey) -> Result<(&'static str, &'static agreement::Algorithm, usize), JweError> {
    let alg = key.algorithm();
    for (name, a, len) in [("P-256", &agreement::ECDH_P256, 32), ("P-384", &agreement::ECDH_P384, 48), ("P-521", &agreement::ECDH_P521, 66)]
    {
        if alg == a {
            return Ok((name, a, len));
        }
    }
    Err(JweError::KeyAgreement("the recipient key is not an ECDH P-256/P-384/P-521 key".into()))
}

/// RFC 7518 §4.6.2 OtherInfo: AlgorithmID ‖ PartyUInfo ‖ PartyVInfo ‖
/// SuppPubInfo, each datum prefixed by its 32-bit big-endian length.
pub fn concat_kdf_info(alg: &str, apu: &[u8], apv: &[u8], key_bits: u32) -> Vec<u8> {
    let mut info = Vec::with_capacity(16 + alg.len() + apu.len() + apv.len());
    for datum in [alg.as_bytes(), apu, apv] {
        info.extend_from_slice(&(datum.len() as u32).to_be_bytes());
        info.extend_from_slice(datum);
    }
    info.extend_from_slice(&key_bits.to_be_bytes());
    info
}

/// Decrypt a compact JWE encrypted to `key`.
pub fn decrypt(compact: &str, key: &PrivateKey) -> Result<Decrypted, JweError> {
    if compact.len() > MAX_JWE_LEN {
        return Err(JweError::Format(format!("longer than {MAX_JWE_LEN} characters")));
    }
    let parts: Vec<&str> = compact.trim().split('.').collect();
    let [header_b64, wrapped_b64, iv_b64, ct_b64, tag_b64] = parts.as_slice() else {
        return Err(JweError::Format(format!("{} parts; a compact JWE has 5", parts.len())));
    };
    if header_b64.len() > MAX_HEADER_LEN {
        return Err(JweError::Format("protected header too large".into()));
    }
    let header: Map<String, Value> =
        serde_json::from_slice(&b64(header_b64, "protected header")?).map_err(|e| JweError::Header(format!("not a JSON object: {e}")))?;
    let text = |name: &str| header.get(name).and_then(Value::as_str);
    if header.contains_key("zip") {
        return Err(JweError::Unsupported("compressed content (zip) is not accepted".into()));
    }
    if header.contains_key("crit") {
        return Err(JweError::Unsupported("critical header extensions (crit) are not understood".into()));
    }
    let alg = text("alg").ok_or_else(|| JweError::Header("no alg".into()))?;
    let enc = text("enc").ok_or_else(|| JweError::Header("no enc".into()))?;
    let (kw, kek_len) = key_wrap(alg)?;
    let (aead, cek_len) = content_cipher(enc)?;

    // The sender's ephemeral public key.
    let (crv, ecdh, coord) = curve_of(key)?;
    let epk = header.get("epk").and_then(Value::as_object).ok_or_else(|| JweError::Header("no epk object".into()))?;
    let field = |n: &str| epk.get(n).and_then(Value::as_str);
    if field("kty") != Some("EC") || field("crv") != Some(crv) {
        return Err(JweError::KeyAgreement(format!(
            "epk is {}/{}, the recipient key is EC/{crv}",
            field("kty").unwrap_or("?"),
            field("crv").unwrap_or("?")
        )));
    }
    let x = b64(field("x").unwrap_or_default(), "epk.x")?;
    let y = b64(field("y").unwrap_or_default(), "epk.y")?;
    if x.len() != coord || y.len() != coord {
        return Err(JweError::KeyAgreement(format!("epk coordinates must be {coord} bytes each")));
    }
    let mut point = Vec::with_capacity(1 + 2 * coord);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let apu = match text("apu") {
        Some(s) => b64(s, "apu")?,
        None => Vec::new(),
    };
    let apv = match text("apv") {
        Some(s) => b64(s, "apv")?,
        None => Vec::new(),
    };

    // Z, then the key-encryption key by the Concat KDF.
    let info = concat_kdf_info(alg, &apu, &apv, (kek_len * 8) as u32);
    let kdf = get_sskdf_digest_algorithm(SskdfDigestAlgorithmId::Sha256)
        .ok_or_else(|| JweError::KeyAgreement("SHA-256 KDF unavailable".into()))?;
    let kek = agreement::agree(
        key,
        UnparsedPublicKey::new(ecdh, &point),
        JweError::KeyAgreement("epk is not a valid point of the recipient's curve".into()),
        |z| {
            let mut kek = Zeroizing::new(vec![0u8; kek_len]);
            sskdf_digest(kdf, z, &info, &mut kek).map_err(|_| JweError::KeyAgreement("KDF failed".into()))?;
            Ok(kek)
        },
    )?;

    // The content-encryption key.
    let wrapped = b64(wrapped_b64, "encrypted key")?;
    if wrapped.len() != cek_len + 8 {
        return Err(JweError::Format(format!("encrypted key is {} bytes; {enc} needs {}", wrapped.len(), cek_len + 8)));
    }
    let kek = AesKek::new(kw, &kek).map_err(|_| JweError::Unwrap)?;
    let mut cek = Zeroizing::new(vec![0u8; cek_len + 8]);
    let cek_len_out = kek.unwrap(&wrapped, &mut cek).map_err(|_| JweError::Unwrap)?.len();
    if cek_len_out != cek_len {
        return Err(JweError::Unwrap);
    }
    cek.truncate(cek_len);

    // The content.
    let iv = b64(iv_b64, "IV")?;
    let tag = b64(tag_b64, "tag")?;
    if tag.len() != 16 {
        return Err(JweError::Format(format!("tag is {} bytes; AES-GCM tags are 16", tag.len())));
    }
    let nonce =
        Nonce::try_assume_unique_for_key(&iv).map_err(|_| JweError::Format(format!("IV is {} bytes; AES-GCM uses 12", iv.len())))?;
    let mut in_out = Zeroizing::new(b64(ct_b64, "ciphertext")?);
    in_out.extend_from_slice(&tag);
    let key = LessSafeKey::new(UnboundKey::new(aead, &cek).map_err(|_| JweError::Decrypt)?);
    let plain_len = key.open_in_place(nonce, Aad::from(header_b64.as_bytes()), &mut in_out).map_err(|_| JweError::Decrypt)?.len();
    in_out.truncate(plain_len);
    Ok(Decrypted { header, plaintext: in_out })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_sender as sender;

    /// RFC 7520 §5.4 (Peregrin Took's P-384 key, ECDH-ES+A128KW, A128GCM).
    const RFC7520_D: &str = "iTx2pk7wW-GqJkHcEkFQb2EFyYcO7RugmaW3mRrQVAOUiPommT0IdnYK2xDlZh-j";
    const RFC7520_JWE: &str = "eyJhbGciOiJFQ0RILUVTK0ExMjhLVyIsImtpZCI6InBlcmVncmluLnRvb2tAdHVja2Jvcm91Z2guZXhhbXBsZSIsImVwayI6eyJrdHkiOiJFQyIsImNydiI6IlAtMzg0IiwieCI6InVCbzRrSFB3Nmtiang1bDB4b3dyZF9vWXpCbWF6LUdLRlp1NHhBRkZrYllpV2d1dEVLNml1RURzUTZ3TmROZzMiLCJ5Ijoic3AzcDVTR2haVkMyZmFYdW1JLWU5SlUyTW84S3BvWXJGRHI1eVBOVnRXNFBnRXdaT3lRVEEtSmRhWTh0YjdFMCJ9LCJlbmMiOiJBMTI4R0NNIn0.0DJjBXri_kBcC46IkU5_Jk9BqaQeHdv2.mH-G2zVqgztUtnW_.tkZuOO9h95OgHJmkkrfLBisku8rGf6nzVxhRM3sVOhXgz5NJ76oID7lpnAi_cPWJRCjSpAaUZ5dOR3Spy7QuEkmKx8-3RCMhSYMzsXaEwDdXta9Mn5B7cCBoJKB0IgEnj_qfo1hIi-uEkUpOZ8aLTZGHfpl05jMwbKkTe2yK3mjF6SBAsgicQDVCkcY9BLluzx1RmC3ORXaM0JaHPB93YcdSDGgpgBWMVrNU1ErkjcMqMoT_wtCex3w03XdLkjXIuEr2hWgeP-nkUZTPU9EoGSPj6fAS-bSz87RCPrxZdj_iVyC6QWcqAu07WNhjzJEPc4jVntRJ6K53NgPQ5p99l3Z408OUqj4ioYezbS6vTPlQ.WuGzxmcreYjpHGJoa17EBg";
    const RFC7520_PLAINTEXT: &str = "You can trust us to stick with you through thick and thin\u{2013}to the bitter end. And you can trust us to keep any secret of yours\u{2013}closer than you keep it yourself. But you cannot trust us to let you face trouble alone, and go off without a word. We are your friends, Frodo.";

    fn rfc_key() -> PrivateKey {
        PrivateKey::from_private_key(&agreement::ECDH_P384, &URL_SAFE_NO_PAD.decode(RFC7520_D).unwrap()).unwrap()
    }

    fn replace_part(jwe: &str, i: usize, f: impl Fn(&mut Vec<u8>)) -> String {
        let mut parts: Vec<String> = jwe.split('.').map(str::to_string).collect();
        let mut b = URL_SAFE_NO_PAD.decode(&parts[i]).unwrap();
        f(&mut b);
        parts[i] = URL_SAFE_NO_PAD.encode(b);
        parts.join(".")
    }

    #[test]
    fn rfc7520_example_decrypts() {
        let d = decrypt(RFC7520_JWE, &rfc_key()).unwrap();
        assert_eq!(std::str::from_utf8(&d.plaintext).unwrap(), RFC7520_PLAINTEXT);
        assert_eq!(d.header["kid"], "peregrin.took@tuckborough.example");
    }

    #[test]
    fn every_altered_part_is_refused_by_name() {
        let key = rfc_key();
        assert_eq!(decrypt(&replace_part(RFC7520_JWE, 1, |b| b[3] ^= 1), &key).unwrap_err(), JweError::Unwrap);
        assert_eq!(decrypt(&replace_part(RFC7520_JWE, 2, |b| b[0] ^= 1), &key).unwrap_err(), JweError::Decrypt);
        assert_eq!(decrypt(&replace_part(RFC7520_JWE, 3, |b| b[10] ^= 1), &key).unwrap_err(), JweError::Decrypt);
        assert_eq!(decrypt(&replace_part(RFC7520_JWE, 4, |b| b[15] ^= 1), &key).unwrap_err(), JweError::Decrypt);
        // The header is authenticated: a change that keeps it valid JSON
        // (the kid) fails authentication.
        let h = replace_part(RFC7520_JWE, 0, |b| {
            let s = String::from_utf8(b.clone()).unwrap().replace("peregrin", "peregriN");
            *b = s.into_bytes();
        });
        assert_eq!(decrypt(&h, &key).unwrap_err(), JweError::Decrypt);
        // A different ephemeral point: another KEK, so the unwrap fails, or the point is refused.
        let e = decrypt(
            &replace_part(RFC7520_JWE, 0, |b| {
                let mut h: Value = serde_json::from_slice(b).unwrap();
                let x = h["epk"]["x"].as_str().unwrap().to_string();
                h["epk"]["x"] = Value::String(format!("{}A{}", &x[..10], &x[11..]));
                *b = serde_json::to_vec(&h).unwrap();
            }),
            &key,
        )
        .unwrap_err();
        assert!(matches!(e, JweError::KeyAgreement(_) | JweError::Unwrap), "{e:?}");
    }

    #[test]
    fn another_recipient_key_cannot_unwrap() {
        let other = PrivateKey::generate(&agreement::ECDH_P384).unwrap();
        assert_eq!(decrypt(RFC7520_JWE, &other).unwrap_err(), JweError::Unwrap);
        let p256 = PrivateKey::generate(&agreement::ECDH_P256).unwrap();
        assert!(matches!(decrypt(RFC7520_JWE, &p256).unwrap_err(), JweError::KeyAgreement(_)));
    }

    #[test]
    fn unaccepted_algorithms_and_features_are_refused() {
        let key = rfc_key();
        let with = |k: &str, v: Value| {
            replace_part(RFC7520_JWE, 0, |b| {
                let mut h: Value = serde_json::from_slice(b).unwrap();
                h[k] = v.clone();
                *b = serde_json::to_vec(&h).unwrap();
            })
        };
        for alg in ["RSA1_5", "RSA-OAEP", "ECDH-ES", "dir", "ECDH-ES+A192KW", "none"] {
            assert!(matches!(decrypt(&with("alg", alg.into()), &key).unwrap_err(), JweError::Unsupported(_)), "{alg}");
        }
        for enc in ["A128CBC-HS256", "A192GCM", "none"] {
            assert!(matches!(decrypt(&with("enc", enc.into()), &key).unwrap_err(), JweError::Unsupported(_)), "{enc}");
        }
        assert!(matches!(decrypt(&with("zip", "DEF".into()), &key).unwrap_err(), JweError::Unsupported(_)));
        assert!(matches!(decrypt(&with("crit", serde_json::json!(["exp"])), &key).unwrap_err(), JweError::Unsupported(_)));
        assert!(matches!(decrypt("a.b.c", &key).unwrap_err(), JweError::Format(_)));
        assert!(matches!(decrypt(&format!("{RFC7520_JWE}="), &key).unwrap_err(), JweError::Format(_)));
    }

    #[test]
    fn p256_round_trip_with_the_brokers_algorithms() {
        let key = PrivateKey::generate(&agreement::ECDH_P256).unwrap();
        let public = key.compute_public_key().unwrap();
        let p = public.as_ref();
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])});
        let jwe = sender::encrypt(&jwk, b"s3cret");
        let d = decrypt(&jwe, &key).unwrap();
        assert_eq!(&d.plaintext[..], b"s3cret");
        assert_eq!(d.header["alg"], "ECDH-ES+A256KW");
    }
}
