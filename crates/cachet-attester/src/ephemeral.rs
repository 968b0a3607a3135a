//! The workload's ephemeral key pair: the key the released secrets are
//! encrypted to, bound into the evidence so the service knows the key
//! belongs to the attested workload.
//!
//! **Runtime data = the public JWK's canonical JSON.** The key is an ECDH
//! P-256 key; its public JWK is serialized with exactly the required
//! members in lexicographic order and no whitespace (RFC 7638 §3.2):
//!
//! ```text
//! {"crv":"P-256","kty":"EC","x":"<base64url x>","y":"<base64url y>"}
//! ```
//!
//! Those UTF-8 bytes are the `runtime_data` sent to `POST /v1/attest` and
//! bound into the evidence (`SHA-512(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)` etc.), so the
//! token's `cachet.runtime_data` is this JWK, and its SHA-256 is the key's
//! RFC 7638 thumbprint. The private key never leaves the process and is
//! used only to decrypt the JWEs of `POST /v1/secrets/release`.

use aws_lc_rs::agreement::{self, PrivateKey};
use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use crate::jwe::{self, Decrypted, JweError};

/// The canonical JSON of an EC public JWK (RFC 7638 member order, no
/// whitespace). `x` and `y` are base64url, so nothing needs escaping.
pub fn canonical_ec_jwk(crv: &str, x_b64: &str, y_b64: &str) -> String {
    format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x_b64}","y":"{y_b64}"}}"#)
}

/// An ephemeral ECDH P-256 key pair.
pub struct EphemeralKey {
    private: PrivateKey,
    jwk: Value,
    runtime_data: Vec<u8>,
}

impl std::fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralKey").field("public_jwk", &self.jwk).finish_non_exhaustive()
    }
}

impl EphemeralKey {
    /// A fresh key pair.
    pub fn generate() -> Result<Self, String> {
        let private = PrivateKey::generate(&agreement::ECDH_P256).map_err(|_| "cannot generate a P-256 key".to_string())?;
        let public = private.compute_public_key().map_err(|_| "cannot compute the public key".to_string())?;
        let point = public.as_ref();
        let (x, y) = match (point.first(), point.get(1..33), point.get(33..65)) {
            (Some(4), Some(x), Some(y)) if point.len() == 65 => (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y)),
            _ => return Err("unexpected public key encoding".into()),
        };
        let canonical = canonical_ec_jwk("P-256", &x, &y);
        let jwk = serde_json::from_str(&canonical).map_err(|e| e.to_string())?;
        Ok(Self { private, jwk, runtime_data: canonical.into_bytes() })
    }

    /// The public JWK.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// The runtime data to bind: the canonical JSON of the public JWK.
    pub fn runtime_data(&self) -> &[u8] {
        &self.runtime_data
    }

    /// The RFC 7638 JWK thumbprint (base64url SHA-256 of the runtime data).
    pub fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &self.runtime_data))
    }

    /// Decrypt a JWE encrypted to this key.
    pub fn decrypt(&self, compact: &str) -> Result<Decrypted, JweError> {
        jwe::decrypt(compact, &self.private)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_data_is_the_canonical_public_jwk() {
        let k = EphemeralKey::generate().unwrap();
        let text = std::str::from_utf8(k.runtime_data()).unwrap();
        assert!(text.starts_with(r#"{"crv":"P-256","kty":"EC","x":""#), "{text}");
        assert!(!text.contains(' ') && !text.contains('\n'));
        // Exactly the four required members, each coordinate 32 bytes.
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 4);
        assert_eq!(&v, k.public_jwk());
        for c in ["x", "y"] {
            assert_eq!(URL_SAFE_NO_PAD.decode(v[c].as_str().unwrap()).unwrap().len(), 32);
        }
        // serde_json's map is ordered, so re-serializing gives the same bytes.
        assert_eq!(serde_json::to_string(&v).unwrap(), text);
        assert_eq!(k.thumbprint().len(), 43);
        assert_ne!(EphemeralKey::generate().unwrap().runtime_data(), k.runtime_data());
        assert!(!format!("{k:?}").contains("private"), "no private material in Debug");
    }
}
