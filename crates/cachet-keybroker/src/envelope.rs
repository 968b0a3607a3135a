//! Envelope encryption of secrets at rest.
//!
//! Each secret gets its own random 256-bit data key (DEK). The value is
//! encrypted with AES-256-GCM under the DEK, and the DEK is wrapped by the
//! key-encryption key ([`KeyEncryptionKey`]). Both encryptions authenticate
//! the secret's identity (owner and name) as associated data, so a sealed
//! record copied under another owner or name does not open. Only the sealed
//! form is stored; the DEK exists in memory only while a value is sealed or
//! opened, and is wiped afterwards.

use serde::{Deserialize, Serialize};

use crate::kek::{gcm_open, gcm_seal, KeyEncryptionKey};
use crate::secret::{KeyBytes, SecretValue, MAX_SECRET_LEN};
use crate::BrokerError;

/// Format version of [`Sealed`] records.
pub const SEALED_VERSION: u32 = 1;

/// A secret as stored: nothing in it reveals the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Record format version ([`SEALED_VERSION`]).
    pub version: u32,
    /// The KEK custodian that wrapped the data key (`local-file`, `pkcs11`).
    pub kek_kind: String,
    /// The wrapping KEK's identifier.
    pub kek_id: String,
    /// The data key wrapped by the KEK (`iv ‖ ct ‖ tag`), hex.
    #[serde(with = "hex_bytes")]
    pub wrapped_dek: Vec<u8>,
    /// The value under the data key (`iv ‖ ct ‖ tag`), hex.
    #[serde(with = "hex_bytes")]
    pub ciphertext: Vec<u8>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// The associated data binding a sealed record to its secret:
/// `"cachet-secret-v1" ‖ 0 ‖ len(owner) ‖ owner ‖ len(name) ‖ name`
/// (lengths as 4-byte big-endian), so no two identities share an encoding.
pub fn identity_aad(owner: &str, name: &str) -> Vec<u8> {
    let mut aad = b"cachet-secret-v1\0".to_vec();
    for part in [owner, name] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// Seal `value` as the secret `owner`/`name` under `kek`.
pub fn seal(kek: &dyn KeyEncryptionKey, owner: &str, name: &str, value: &SecretValue) -> Result<Sealed, BrokerError> {
    if value.len() > MAX_SECRET_LEN {
        return Err(BrokerError::Invalid(format!("a secret value is at most {MAX_SECRET_LEN} bytes")));
    }
    let aad = identity_aad(owner, name);
    let dek = KeyBytes::<32>::random().map_err(|_| BrokerError::Crypto("random data key".into()))?;
    let ciphertext = gcm_seal(dek.expose(), value.expose(), &aad)?;
    let wrapped_dek = kek.wrap(&dek, &aad)?;
    Ok(Sealed {
        version: SEALED_VERSION,
        kek_kind: kek.kind().to_string(),
        kek_id: kek.key_id().to_string(),
        wrapped_dek,
        ciphertext,
    })
}

/// Open a sealed secret. Fails by name when the record was sealed under
/// another KEK, and as an integrity error when anything (record, owner,
/// name) was altered.
pub fn open(kek: &dyn KeyEncryptionKey, owner: &str, name: &str, sealed: &Sealed) -> Result<SecretValue, BrokerError> {
    if sealed.version != SEALED_VERSION {
        return Err(BrokerError::Integrity(format!("unknown sealed record version {}", sealed.version)));
    }
    if sealed.kek_kind != kek.kind() || sealed.kek_id != kek.key_id() {
        return Err(BrokerError::WrongKek { sealed_under: format!("{} {}", sealed.kek_kind, sealed.kek_id), have: format!("{} {}", kek.kind(), kek.key_id()) });
    }
    let aad = identity_aad(owner, name);
    let dek = kek.unwrap(&sealed.wrapped_dek, &aad)?;
    let mut plain = gcm_open(dek.expose(), &sealed.ciphertext, &aad)?;
    Ok(SecretValue::new(std::mem::take(&mut *plain)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kek::LocalFileKek;

    fn kek() -> (tempfile::TempDir, LocalFileKek) {
        let d = tempfile::tempdir().unwrap();
        let k = LocalFileKek::open_or_create(&d.path().join("kek")).unwrap();
        (d, k)
    }

    #[test]
    fn round_trip_and_no_plaintext_in_the_record() {
        let (_d, k) = kek();
        let v = SecretValue::from_slice(b"the database password 0123456789");
        let s = seal(&k, "bank-a", "db", &v).unwrap();
        let stored = serde_json::to_string(&s).unwrap();
        assert!(!stored.contains("database password"));
        assert!(!stored.contains(&hex::encode(v.expose())));
        let back: Sealed = serde_json::from_str(&stored).unwrap();
        assert_eq!(open(&k, "bank-a", "db", &back).unwrap(), v);
        // Each seal uses a fresh data key and IVs.
        assert_ne!(seal(&k, "bank-a", "db", &v).unwrap(), s);
    }

    #[test]
    fn a_record_moved_to_another_owner_or_name_does_not_open() {
        let (_d, k) = kek();
        let s = seal(&k, "bank-a", "db", &SecretValue::from_slice(b"x")).unwrap();
        assert!(matches!(open(&k, "bank-b", "db", &s), Err(BrokerError::Integrity(_))));
        assert!(matches!(open(&k, "bank-a", "db2", &s), Err(BrokerError::Integrity(_))));
        // Length-prefixing: ("ab","c") and ("a","bc") differ.
        assert_ne!(identity_aad("ab", "c"), identity_aad("a", "bc"));
    }

    #[test]
    fn another_kek_or_an_altered_record_is_refused() {
        let (_d, k) = kek();
        let (_d2, k2) = kek();
        let s = seal(&k, "o", "n", &SecretValue::from_slice(b"v")).unwrap();
        assert!(matches!(open(&k2, "o", "n", &s), Err(BrokerError::WrongKek { .. })));
        let mut t = s.clone();
        t.kek_id = k2.key_id().to_string();
        assert!(matches!(open(&k2, "o", "n", &t), Err(BrokerError::Integrity(_))));
        for i in 0..s.ciphertext.len() {
            let mut t = s.clone();
            t.ciphertext[i] ^= 0x80;
            assert!(open(&k, "o", "n", &t).is_err(), "byte {i}");
        }
        for i in 0..s.wrapped_dek.len() {
            let mut t = s.clone();
            t.wrapped_dek[i] ^= 0x01;
            assert!(open(&k, "o", "n", &t).is_err(), "byte {i}");
        }
    }

    #[test]
    fn oversized_values_are_refused() {
        let (_d, k) = kek();
        assert!(seal(&k, "o", "n", &SecretValue::new(vec![0; MAX_SECRET_LEN + 1])).is_err());
    }
}
