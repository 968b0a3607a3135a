//! The workload's decryption against the key broker's encryption (two
//! implementations over the same aws-lc-rs primitives, written apart): a
//! JWE the broker makes for the workload's ephemeral key decrypts; the
//! broker and the workload compute the same RFC 7638 thumbprint (the client
//! refuses a release encrypted to another key by comparing them); a JWE made
//! for another key does not decrypt.

use cachet_attester::ephemeral::EphemeralKey;
use cachet_attester::jwe::JweError;
use cachet_keybroker::jwe::{encrypt, WorkloadKey};
use serde_json::Map;

#[test]
fn broker_jwes_decrypt_with_the_ephemeral_key() {
    let key = EphemeralKey::generate().unwrap();
    // The broker reads the key from the token's runtime data: the canonical JWK.
    let rd: serde_json::Value = serde_json::from_slice(key.runtime_data()).unwrap();
    let wk = WorkloadKey::from_jwk(&rd).expect("the broker accepts the workload's JWK");
    assert_eq!(wk.thumbprint(), key.thumbprint(), "same RFC 7638 thumbprint on both sides");
    for value in [&b"database password"[..], b"", &[0u8; 4096][..]] {
        let jwe = encrypt(&wk, value, &Map::new()).expect("broker encrypts");
        let d = key.decrypt(&jwe).expect("workload decrypts");
        assert_eq!(&d.plaintext[..], value);
        assert_eq!(d.header["alg"], "ECDH-ES+A256KW");
        assert_eq!(d.header["enc"], "A256GCM");
    }
    let other = EphemeralKey::generate().unwrap();
    let jwe = encrypt(&wk, b"x", &Map::new()).unwrap();
    assert_eq!(other.decrypt(&jwe).unwrap_err(), JweError::Unwrap);
}
