//! Key custody: where token-signing private keys live and who may use them.
//!
//! Everything above this trait handles keys only by *handle*: an opaque
//! byte string the custody hands out when it creates a key and that the
//! store persists next to the public key. For [`LocalCustody`] the handle is
//! the PKCS#8 private key itself, so the service never stores it as it is:
//! `cachet_keybroker::custody::SealedCustody` wraps it, handing out the
//! PKCS#8 sealed under the key-encryption key; an HSM custody (PKCS#11) returns the object's
//! label/ID instead, and sign inside the token, so the private key never
//! leaves it. The server and the rotation logic do not change either way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};

use crate::{Algorithm, TokenError};

/// A key created (or imported) by a custody.
#[derive(Clone)]
pub struct CustodyKey {
    /// The public key, as X.509 SubjectPublicKeyInfo DER (for the JWKS).
    pub public_spki_der: Vec<u8>,
    /// How the custody finds the private key again; persisted by the caller.
    pub handle: Vec<u8>,
}

impl std::fmt::Debug for CustodyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The handle may be private key material (local custody): never print it.
        f.debug_struct("CustodyKey").field("public_spki_der", &hex::encode(&self.public_spki_der)).finish_non_exhaustive()
    }
}

/// Where private signing keys live. Implementations must be usable from
/// many threads at once.
pub trait KeyCustody: Send + Sync {
    /// A short name recorded with each key (`"local"`, `"pkcs11"`), so a
    /// server refuses to use a handle with the wrong custody.
    fn name(&self) -> &'static str;

    /// Create a new key pair for `alg`. `kid` lets an HSM label the object.
    fn generate(&self, alg: Algorithm, kid: &str) -> Result<CustodyKey, TokenError>;

    /// Sign `message` with the key behind `handle`, returning the signature
    /// in JWS form (ECDSA: fixed-width `r ‖ s`; RSA-PSS: the RSA output).
    fn sign(&self, alg: Algorithm, handle: &[u8], message: &[u8]) -> Result<Vec<u8>, TokenError>;

    /// Bring an existing PKCS#8 private key under custody (e.g. one an
    /// operator's CA certified). Custodies that cannot import refuse.
    fn import_pkcs8(&self, alg: Algorithm, pkcs8: &[u8], kid: &str) -> Result<CustodyKey, TokenError> {
        let _ = (alg, pkcs8, kid);
        Err(TokenError::Key(format!("the {} key custody cannot import private keys", self.name())))
    }

    /// Destroy the private key behind `handle` (after it left the JWKS).
    /// The local custody has nothing to do: deleting the stored handle
    /// deletes the key.
    fn destroy(&self, handle: &[u8]) -> Result<(), TokenError> {
        let _ = handle;
        Ok(())
    }
}

/// A parsed private key, ready to sign.
enum Loaded {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// Keys generated in software by aws-lc-rs; the handle is the PKCS#8 DER
/// private key, which the store keeps. Parsed keys are cached.
#[derive(Default)]
pub struct LocalCustody {
    cache: Mutex<HashMap<Vec<u8>, Arc<Loaded>>>,
}

impl LocalCustody {
    /// A local custody with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn load(&self, alg: Algorithm, handle: &[u8]) -> Result<Arc<Loaded>, TokenError> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, handle).as_ref().to_vec();
        if let Ok(cache) = self.cache.lock() {
            if let Some(k) = cache.get(&digest) {
                return Ok(k.clone());
            }
        }
        let loaded = Arc::new(parse_pkcs8(alg, handle)?);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 64 {
                cache.clear();
            }
            cache.insert(digest, loaded.clone());
        }
        Ok(loaded)
    }
}

fn ec_alg(alg: Algorithm) -> Option<&'static EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Some(&ECDSA_P384_SHA384_FIXED_SIGNING),
        Algorithm::PS256 | Algorithm::RS256 => None,
    }
}

fn parse_pkcs8(alg: Algorithm, pkcs8: &[u8]) -> Result<Loaded, TokenError> {
    match ec_alg(alg) {
        Some(ec) => {
            EcdsaKeyPair::from_pkcs8(ec, pkcs8).map(Loaded::Ec).map_err(|e| TokenError::Key(format!("not a PKCS#8 {alg} private key: {e}")))
        }
        None => {
            let k = RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| TokenError::Key(format!("not a PKCS#8 RSA private key: {e}")))?;
            if k.public_modulus_len() < 256 {
                return Err(TokenError::Key("RSA keys shorter than 2048 bits are refused".into()));
            }
            Ok(Loaded::Rsa(k))
        }
    }
}

fn public_spki(loaded: &Loaded) -> Result<Vec<u8>, TokenError> {
    let der = match loaded {
        Loaded::Ec(k) => k.public_key().as_der().map(|d| d.as_ref().to_vec()),
        Loaded::Rsa(k) => k.public_key().as_der().map(|d| d.as_ref().to_vec()),
    };
    der.map_err(|_| TokenError::Key("cannot encode the public key".into()))
}

impl KeyCustody for LocalCustody {
    fn name(&self) -> &'static str {
        "local"
    }

    fn generate(&self, alg: Algorithm, _kid: &str) -> Result<CustodyKey, TokenError> {
        let pkcs8 = match ec_alg(alg) {
            Some(ec) => EcdsaKeyPair::generate(ec).and_then(|k| k.to_pkcs8v1()).map(|d| d.as_ref().to_vec()),
            None => RsaKeyPair::generate(KeySize::Rsa3072)
                .map_err(|_| aws_lc_rs::error::Unspecified)
                .and_then(|k| k.as_der().map(|d| d.as_ref().to_vec())),
        }
        .map_err(|_| TokenError::Key(format!("cannot generate a {alg} key")))?;
        self.import_pkcs8(alg, &pkcs8, _kid)
    }

    fn sign(&self, alg: Algorithm, handle: &[u8], message: &[u8]) -> Result<Vec<u8>, TokenError> {
        let rng = SystemRandom::new();
        match &*self.load(alg, handle)? {
            Loaded::Ec(k) => k.sign(&rng, message).map(|s| s.as_ref().to_vec()).map_err(|_| TokenError::Sign("ECDSA".into())),
            Loaded::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                let (padding, name) =
                    if alg == Algorithm::RS256 { (&RSA_PKCS1_SHA256, "RSA PKCS#1 v1.5") } else { (&RSA_PSS_SHA256, "RSA-PSS") };
                k.sign(padding, &rng, message, &mut sig).map_err(|_| TokenError::Sign(name.into()))?;
                Ok(sig)
            }
        }
    }

    fn import_pkcs8(&self, alg: Algorithm, pkcs8: &[u8], _kid: &str) -> Result<CustodyKey, TokenError> {
        let loaded = parse_pkcs8(alg, pkcs8)?;
        Ok(CustodyKey { public_spki_der: public_spki(&loaded)?, handle: pkcs8.to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_algorithm_generates_signs_and_reimports() {
        let c = LocalCustody::new();
        for alg in Algorithm::ALL {
            let k = c.generate(alg, "k1").unwrap();
            let sig = c.sign(alg, &k.handle, b"msg").unwrap();
            assert!(!sig.is_empty());
            let again = c.import_pkcs8(alg, &k.handle, "k1").unwrap();
            assert_eq!(again.public_spki_der, k.public_spki_der);
        }
    }

    #[test]
    fn a_key_of_another_algorithm_is_refused() {
        let c = LocalCustody::new();
        let k = c.generate(Algorithm::ES256, "k").unwrap();
        assert!(c.sign(Algorithm::ES384, &k.handle, b"m").is_err());
        assert!(c.sign(Algorithm::PS256, &k.handle, b"m").is_err());
        assert!(c.sign(Algorithm::ES256, b"garbage", b"m").is_err());
    }

    #[test]
    fn debug_output_never_shows_the_private_key() {
        let c = LocalCustody::new();
        let k = c.generate(Algorithm::ES256, "k").unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains(&hex::encode(&k.handle)));
    }
}
