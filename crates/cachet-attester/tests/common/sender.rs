//! A stand-in for the key broker's sending side in tests: encrypt to a
//! P-256 public JWK as ECDH-ES+A256KW / A256GCM (RFC 7518), written
//! separately from the client's decryption (its own Concat KDF info).
#![allow(dead_code)]

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey};
use aws_lc_rs::kdf::{get_sskdf_digest_algorithm, sskdf_digest, SskdfDigestAlgorithmId};
use aws_lc_rs::key_wrap::{AesKek, KeyWrap, AES_256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// Compact JWE of `plaintext` for `recipient_jwk` (`{"kty":"EC","crv":"P-256","x","y"}`).
pub fn encrypt(recipient_jwk: &Value, plaintext: &[u8]) -> String {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let eph = EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).expect("ephemeral key");
    let epk = eph.compute_public_key().expect("public key");
    let epk = epk.as_ref();
    let header = json!({
        "alg": "ECDH-ES+A256KW",
        "enc": "A256GCM",
        "epk": {"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&epk[1..33]), "y": URL_SAFE_NO_PAD.encode(&epk[33..65])},
    });
    let header_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("json"));
    let coord = |n: &str| URL_SAFE_NO_PAD.decode(recipient_jwk[n].as_str().expect("coordinate")).expect("base64url");
    let mut peer = vec![4u8];
    peer.extend(coord("x"));
    peer.extend(coord("y"));
    // OtherInfo: len("ECDH-ES+A256KW") "ECDH-ES+A256KW", empty apu, empty apv, 256 bits.
    let mut info = Vec::new();
    info.extend(14u32.to_be_bytes());
    info.extend(b"ECDH-ES+A256KW");
    info.extend(0u32.to_be_bytes());
    info.extend(0u32.to_be_bytes());
    info.extend(256u32.to_be_bytes());
    let kdf = get_sskdf_digest_algorithm(SskdfDigestAlgorithmId::Sha256).expect("kdf");
    let kek = agreement::agree_ephemeral(eph, UnparsedPublicKey::new(&agreement::ECDH_P256, &peer), (), |z| {
        let mut k = vec![0u8; 32];
        sskdf_digest(kdf, z, &info, &mut k).map_err(|_| ())?;
        Ok(k)
    })
    .expect("agree");
    let mut cek = [0u8; 32];
    aws_lc_rs::rand::fill(&mut cek).expect("rand");
    let mut out = [0u8; 40];
    let wrapped = AesKek::new(&AES_256, &kek).expect("kek").wrap(&cek, &mut out).expect("wrap").to_vec();
    let mut iv = [0u8; 12];
    aws_lc_rs::rand::fill(&mut iv).expect("rand");
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).expect("cek"));
    let mut ct = plaintext.to_vec();
    let tag = key.seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(header_b64.as_bytes()), &mut ct).expect("seal");
    [
        header_b64,
        URL_SAFE_NO_PAD.encode(wrapped),
        URL_SAFE_NO_PAD.encode(iv),
        URL_SAFE_NO_PAD.encode(ct),
        URL_SAFE_NO_PAD.encode(tag.as_ref()),
    ]
    .join(".")
}
