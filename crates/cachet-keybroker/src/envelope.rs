//! Envelope encryption of secrets at rest.
//!
//! Each secret gets its own random 256-bit data key (DEK). The value is
//! encrypted with AES-256-GCM under the DEK, and the DEK is wrapped by the
//! key-encryption key ([`KeyEncryptionKey`]). Both encryptions authenticate
//! what the secret *is* as associated data ([`binding_aad`]): its owner, its
//! name and the SHA-256 of its release policy. So a sealed record copied
//! under another owner or name does not open, and neither does one whose
//! stored policy was edited in the database: whoever can write the database
//! but does not hold the KEK cannot change who a value is released to. Only
//! the sealed form is stored; the DEK exists in memory only while a value
//! is sealed or opened, and is wiped afterwards.
//!
//! Records of format 1 (before the policy was bound) authenticate owner and
//! name only; they still open, and are sealed as format 2 when next written.

use serde::{Deserialize, Serialize};

use crate::kek::{gcm_open, gcm_seal, KeyEncryptionKey};
use crate::secret::{KeyBytes, SecretValue, MAX_SECRET_LEN};
use crate::BrokerError;

/// Format version of [`Sealed`] records written now (owner, name and policy
/// hash bound).
pub const SEALED_VERSION: u32 = 2;

/// The earlier format: owner and name bound, not the policy.
pub const SEALED_VERSION_IDENTITY_ONLY: u32 = 1;

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

/// `label ‖ 0 ‖ (len(part) ‖ part)*`, lengths 4-byte big-endian, so no two
/// lists of parts share an encoding.
fn length_prefixed(label: &[u8], parts: &[&str]) -> Vec<u8> {
    let mut aad = label.to_vec();
    aad.push(0);
    for part in parts {
        aad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// The format-1 associated data: `"cachet-secret-v1" ‖ 0 ‖ len(owner) ‖
/// owner ‖ len(name) ‖ name`.
pub fn identity_aad(owner: &str, name: &str) -> Vec<u8> {
    length_prefixed(b"cachet-secret-v1", &[owner, name])
}

/// The associated data binding a sealed record to its secret and its
/// release policy: `"cachet-secret-v2" ‖ 0 ‖ len(owner) ‖ owner ‖ len(name)
/// ‖ name ‖ len(policy_hash) ‖ policy_hash`.
pub fn binding_aad(owner: &str, name: &str, policy_hash: &str) -> Vec<u8> {
    length_prefixed(b"cachet-secret-v2", &[owner, name, policy_hash])
}

/// Seal `value` under `kek` with `aad` authenticated by both encryptions.
pub fn seal_with_aad(kek: &dyn KeyEncryptionKey, aad: &[u8], value: &[u8], version: u32) -> Result<Sealed, BrokerError> {
    let dek = KeyBytes::<32>::random().map_err(|_| BrokerError::Crypto("random data key".into()))?;
    let ciphertext = gcm_seal(dek.expose(), value, aad)?;
    let wrapped_dek = kek.wrap(&dek, aad)?;
    Ok(Sealed { version, kek_kind: kek.kind().to_string(), kek_id: kek.key_id().to_string(), wrapped_dek, ciphertext })
}

/// Open what [`seal_with_aad`] sealed, refusing another KEK by name.
pub fn open_with_aad(kek: &dyn KeyEncryptionKey, aad: &[u8], sealed: &Sealed) -> Result<SecretValue, BrokerError> {
    if sealed.kek_kind != kek.kind() || sealed.kek_id != kek.key_id() {
        return Err(BrokerError::WrongKek {
            sealed_under: format!("{} {}", sealed.kek_kind, sealed.kek_id),
            have: format!("{} {}", kek.kind(), kek.key_id()),
        });
    }
    let dek = kek.unwrap(&sealed.wrapped_dek, aad)?;
    let mut plain = gcm_open(dek.expose(), &sealed.ciphertext, aad)?;
    Ok(SecretValue::new(std::mem::take(&mut *plain)))
}

/// Seal `value` as the secret `owner`/`name` released under the policy
/// whose hash is `policy_hash`, under `kek`.
pub fn seal(kek: &dyn KeyEncryptionKey, owner: &str, name: &str, policy_hash: &str, value: &SecretValue) -> Result<Sealed, BrokerError> {
    if value.len() > MAX_SECRET_LEN {
        return Err(BrokerError::Invalid(format!("a secret value is at most {MAX_SECRET_LEN} bytes")));
    }
    seal_with_aad(kek, &binding_aad(owner, name, policy_hash), value.expose(), SEALED_VERSION)
}

/// Open a sealed secret, given the hash of the policy about to release it.
/// Fails by name when the record was sealed under another KEK, and as an
/// integrity error when anything (record, owner, name, policy) was altered.
pub fn open(kek: &dyn KeyEncryptionKey, owner: &str, name: &str, policy_hash: &str, sealed: &Sealed) -> Result<SecretValue, BrokerError> {
    let aad = match sealed.version {
        SEALED_VERSION => binding_aad(owner, name, policy_hash),
        SEALED_VERSION_IDENTITY_ONLY => identity_aad(owner, name),
        v => return Err(BrokerError::Integrity(format!("unknown sealed record version {v}"))),
    };
    open_with_aad(kek, &aad, sealed)
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
        let s = seal(&k, "bank-a", "db", "p1", &v).unwrap();
        let stored = serde_json::to_string(&s).unwrap();
        assert!(!stored.contains("database password"));
        assert!(!stored.contains(&hex::encode(v.expose())));
        let back: Sealed = serde_json::from_str(&stored).unwrap();
        assert_eq!(open(&k, "bank-a", "db", "p1", &back).unwrap(), v);
        // Each seal uses a fresh data key and IVs.
        assert_ne!(seal(&k, "bank-a", "db", "p1", &v).unwrap(), s);
    }

    #[test]
    fn a_record_moved_to_another_owner_or_name_does_not_open() {
        let (_d, k) = kek();
        let s = seal(&k, "bank-a", "db", "p1", &SecretValue::from_slice(b"x")).unwrap();
        assert!(matches!(open(&k, "bank-b", "db", "p1", &s), Err(BrokerError::Integrity(_))));
        assert!(matches!(open(&k, "bank-a", "db2", "p1", &s), Err(BrokerError::Integrity(_))));
        // Length-prefixing: ("ab","c") and ("a","bc") differ.
        assert_ne!(identity_aad("ab", "c"), identity_aad("a", "bc"));
        assert_ne!(binding_aad("a", "b", "cd"), binding_aad("a", "bc", "d"));
    }

    #[test]
    fn another_kek_or_an_altered_record_is_refused() {
        let (_d, k) = kek();
        let (_d2, k2) = kek();
        let s = seal(&k, "o", "n", "p", &SecretValue::from_slice(b"v")).unwrap();
        assert!(matches!(open(&k2, "o", "n", "p", &s), Err(BrokerError::WrongKek { .. })));
        let mut t = s.clone();
        t.kek_id = k2.key_id().to_string();
        assert!(matches!(open(&k2, "o", "n", "p", &t), Err(BrokerError::Integrity(_))));
        for i in 0..s.ciphertext.len() {
            let mut t = s.clone();
            t.ciphertext[i] ^= 0x80;
            assert!(open(&k, "o", "n", "p", &t).is_err(), "byte {i}");
        }
        for i in 0..s.wrapped_dek.len() {
            let mut t = s.clone();
            t.wrapped_dek[i] ^= 0x01;
            assert!(open(&k, "o", "n", "p", &t).is_err(), "byte {i}");
        }
    }

    #[test]
    fn a_record_opened_for_another_release_policy_does_not_open() {
        let (_d, k) = kek();
        let s = seal(&k, "bank-a", "db", "hash-of-the-owners-policy", &SecretValue::from_slice(b"x")).unwrap();
        assert!(matches!(open(&k, "bank-a", "db", "hash-of-an-edited-policy", &s), Err(BrokerError::Integrity(_))));
        // Claiming the older format (no policy bound) does not help either.
        let mut downgraded = s.clone();
        downgraded.version = SEALED_VERSION_IDENTITY_ONLY;
        assert!(matches!(open(&k, "bank-a", "db", "hash-of-an-edited-policy", &downgraded), Err(BrokerError::Integrity(_))));
        assert!(open(&k, "bank-a", "db", "hash-of-the-owners-policy", &s).is_ok());
    }

    #[test]
    fn a_format_1_record_still_opens() {
        let (_d, k) = kek();
        let old = seal_with_aad(&k, &identity_aad("o", "n"), b"v", SEALED_VERSION_IDENTITY_ONLY).unwrap();
        assert_eq!(open(&k, "o", "n", "any", &old).unwrap().expose(), b"v");
        assert!(open(&k, "o", "m", "any", &old).is_err());
    }

    #[test]
    fn oversized_values_are_refused() {
        let (_d, k) = kek();
        assert!(seal(&k, "o", "n", "p", &SecretValue::new(vec![0; MAX_SECRET_LEN + 1])).is_err());
    }
}
