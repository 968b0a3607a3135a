//! Software token-signing keys sealed under the KEK.
//!
//! [`cachet_token::LocalCustody`] makes the private key's PKCS#8 bytes the
//! custody handle, and the store keeps handles: a copy of the database
//! alone (a backup, a read-only replica) would then be enough to sign
//! tokens the service accepts. [`SealedCustody`] keeps the same software
//! keys but hands out as the handle only the PKCS#8 sealed under the
//! [`KeyEncryptionKey`] (the key file or the HSM), in the secrets' envelope
//! format, so the database holds nothing that signs without the KEK.
//! Keys opened once are kept in memory (as the local custody keeps them
//! parsed), so signing does not call the HSM for every token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cachet_token::{Algorithm, CustodyKey, KeyCustody, LocalCustody, TokenError};
use zeroize::Zeroizing;

use crate::envelope::{self, Sealed};
use crate::kek::KeyEncryptionKey;

/// The custody name recorded with keys this custody made.
pub const SEALED_CUSTODY: &str = "local-sealed";

/// Format version of a sealed signing key.
const SEALED_KEY_VERSION: u32 = 1;

/// Most opened keys kept (a ring holds a handful).
const MAX_CACHED: usize = 64;

/// The associated data of a sealed signing key: it is a signing key, for `alg`.
fn key_aad(alg: Algorithm) -> Vec<u8> {
    let mut aad = b"cachet-signing-key-v1\0".to_vec();
    aad.extend_from_slice(alg.as_str().as_bytes());
    aad
}

/// Token-signing keys generated in software, stored sealed under the KEK.
pub struct SealedCustody {
    kek: Arc<dyn KeyEncryptionKey>,
    local: LocalCustody,
    opened: Mutex<HashMap<Vec<u8>, Zeroizing<Vec<u8>>>>,
}

impl SealedCustody {
    /// A custody sealing its keys under `kek`.
    pub fn new(kek: Arc<dyn KeyEncryptionKey>) -> Self {
        Self { kek, local: LocalCustody::new(), opened: Mutex::new(HashMap::new()) }
    }

    /// Seal a PKCS#8 private key into a handle.
    fn seal(&self, alg: Algorithm, pkcs8: &[u8]) -> Result<Vec<u8>, TokenError> {
        let sealed = envelope::seal_with_aad(self.kek.as_ref(), &key_aad(alg), pkcs8, SEALED_KEY_VERSION)
            .map_err(|e| TokenError::Key(format!("sealing the signing key under the KEK: {e}")))?;
        serde_json::to_vec(&sealed).map_err(|e| TokenError::Key(e.to_string()))
    }

    /// The PKCS#8 key behind a sealed handle (cached after the first open).
    fn open(&self, alg: Algorithm, handle: &[u8]) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&key_aad(alg));
        ctx.update(handle);
        let digest = ctx.finish().as_ref().to_vec();
        if let Some(k) = self.opened.lock().ok().and_then(|c| c.get(&digest).cloned()) {
            return Ok(k);
        }
        let sealed: Sealed = serde_json::from_slice(handle).map_err(|_| TokenError::Key("not a sealed signing key handle".into()))?;
        if sealed.version != SEALED_KEY_VERSION {
            return Err(TokenError::Key(format!("unknown sealed signing key version {}", sealed.version)));
        }
        let pkcs8 = envelope::open_with_aad(self.kek.as_ref(), &key_aad(alg), &sealed)
            .map_err(|e| TokenError::Key(format!("opening the sealed signing key: {e}")))?;
        let pkcs8 = Zeroizing::new(pkcs8.expose().to_vec());
        if let Ok(mut c) = self.opened.lock() {
            if c.len() >= MAX_CACHED {
                c.clear();
            }
            c.insert(digest, pkcs8.clone());
        }
        Ok(pkcs8)
    }
}

impl KeyCustody for SealedCustody {
    fn name(&self) -> &'static str {
        SEALED_CUSTODY
    }

    fn generate(&self, alg: Algorithm, kid: &str) -> Result<CustodyKey, TokenError> {
        let plain = self.local.generate(alg, kid)?;
        let pkcs8 = Zeroizing::new(plain.handle);
        Ok(CustodyKey { public_spki_der: plain.public_spki_der, handle: self.seal(alg, &pkcs8)? })
    }

    fn sign(&self, alg: Algorithm, handle: &[u8], message: &[u8]) -> Result<Vec<u8>, TokenError> {
        let pkcs8 = self.open(alg, handle)?;
        self.local.sign(alg, &pkcs8, message)
    }

    fn import_pkcs8(&self, alg: Algorithm, pkcs8: &[u8], kid: &str) -> Result<CustodyKey, TokenError> {
        let plain = self.local.import_pkcs8(alg, pkcs8, kid)?;
        let pkcs8 = Zeroizing::new(plain.handle);
        Ok(CustodyKey { public_spki_der: plain.public_spki_der, handle: self.seal(alg, &pkcs8)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kek::LocalFileKek;

    fn custody() -> (tempfile::TempDir, SealedCustody) {
        let d = tempfile::tempdir().unwrap();
        let kek = Arc::new(LocalFileKek::open_or_create(&d.path().join("kek")).unwrap());
        (d, SealedCustody::new(kek))
    }

    #[test]
    fn the_handle_is_sealed_and_signs_only_with_the_kek() {
        let (_d, c) = custody();
        let local = LocalCustody::new();
        for alg in Algorithm::ALL {
            let k = c.generate(alg, "k").unwrap();
            assert!(!c.sign(alg, &k.handle, b"m").unwrap().is_empty());
            // The stored handle is no private key: the software custody cannot use it.
            assert!(local.sign(alg, &k.handle, b"m").is_err());
            // Another KEK (a copy of the database without the key file) cannot open it.
            let (_d2, other) = custody();
            let e = other.sign(alg, &k.handle, b"m").unwrap_err();
            assert!(e.to_string().contains("KEK"), "{e}");
        }
    }

    #[test]
    fn an_imported_key_is_sealed_and_keeps_its_public_key() {
        let (_d, c) = custody();
        let plain = LocalCustody::new().generate(Algorithm::ES256, "k").unwrap();
        let k = c.import_pkcs8(Algorithm::ES256, &plain.handle, "k").unwrap();
        assert_eq!(k.public_spki_der, plain.public_spki_der);
        assert!(!k.handle.windows(plain.handle.len()).any(|w| w == plain.handle.as_slice()), "the PKCS#8 is not in the handle");
        assert!(c.sign(Algorithm::ES256, &k.handle, b"m").is_ok());
        // Sealed for ES256: refused as another algorithm, and when altered.
        assert!(c.sign(Algorithm::ES384, &k.handle, b"m").is_err());
        let mut altered: serde_json::Value = serde_json::from_slice(&k.handle).unwrap();
        altered["version"] = 2.into();
        assert!(c.sign(Algorithm::ES256, &serde_json::to_vec(&altered).unwrap(), b"m").is_err());
        assert!(c.sign(Algorithm::ES256, &plain.handle, b"m").is_err(), "a plaintext PKCS#8 handle is refused");
    }
}
