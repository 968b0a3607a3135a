//! # cachet-keybroker: secure key release to attested workloads
//!
//! The server side of key release, as a library:
//!
//! - **Secrets with owners** ([`KeyBroker::put_secret`]): each secret
//!   belongs to one owner (an API key's tenant) and carries that owner's
//!   **release policy** (Rego over the attestation token's claims, run by
//!   `cachet-appraise`; see [`policy`]). Every operation is keyed by
//!   `(owner, name)`, so an owner cannot name — let alone read or replace —
//!   another owner's secret.
//! - **Envelope encryption at rest** ([`envelope`]): a fresh AES-256-GCM
//!   data key per secret, wrapped by a [`KeyEncryptionKey`]: a local key
//!   file ([`LocalFileKek`], 0600, created on first start) or a PKCS#11 HSM
//!   ([`pkcs11::Pkcs11Kek`], generated in the HSM or imported by its owner,
//!   never exportable). The secret's identity is the associated data of both
//!   encryptions.
//! - **Release** ([`KeyBroker::release`]): verified token claims and
//!   `owner/name` references in; per secret, released or refused with the
//!   reason, under its own owner's policy; released values as compact
//!   [`jwe`]s (`ECDH-ES+A256KW` or `RSA-OAEP-256`, `A256GCM`) encrypted to
//!   the public key the workload bound into its evidence (the token's
//!   runtime data). A request naming another key is refused (key
//!   substitution).
//! - **Redaction**: values are [`SecretValue`]s — `Debug` shows only the
//!   length, memory is zeroized on drop — and no error, result or audit
//!   record type carries one.
//!
//! The token-signing key can also live in the HSM: [`pkcs11::Pkcs11Custody`]
//! implements `cachet_token::KeyCustody`. Software signing keys are stored
//! sealed under the KEK ([`custody::SealedCustody`]), so the database alone
//! signs nothing.

#![deny(missing_docs)]

pub mod broker;
pub mod custody;
pub mod envelope;
pub mod jwe;
pub mod kek;
pub mod pkcs11;
pub mod policy;
pub mod refvals;
pub mod secret;
pub mod store;

pub use broker::{BrokerConfig, KeyBroker, ReleaseRequest, ReleaseResponse, ReleaseResult, SecretMeta};
pub use kek::{KeyEncryptionKey, LocalFileKek};
pub use secret::SecretValue;
pub use store::{MemorySecretStore, SecretRecord, SecretStore};

/// Why a broker operation failed. No variant ever carries a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The request is malformed (bad name, empty value, too many secrets).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A release policy does not compile or fails on a sample token.
    #[error("release policy refused: {0}")]
    Policy(String),
    /// A release policy never sets `status` (nor any AR4SI claim or
    /// reason), so it would refuse every release (e.g. OPA's `allow := true`).
    #[error("release policy refused: {0}")]
    PolicyNoStatus(String),
    /// A cryptographic primitive failed (random generation, key setup).
    #[error("cryptography: {0}")]
    Crypto(String),
    /// A sealed record or wrapped key failed authentication.
    #[error("integrity: {0}")]
    Integrity(String),
    /// A record was sealed under another KEK than the broker's.
    #[error("sealed under KEK {sealed_under}, but the broker holds {have}")]
    WrongKek {
        /// The KEK recorded in the sealed record.
        sealed_under: String,
        /// The broker's KEK.
        have: String,
    },
    /// The local KEK file is unusable (permissions, size, type).
    #[error("KEK file: {0}")]
    KeyFile(String),
    /// The local KEK file does not exist.
    #[error("KEK file {0} does not exist")]
    KeyFileMissing(String),
    /// The PKCS#11 module or token failed or refused.
    #[error("HSM: {0}")]
    Hsm(String),
    /// The workload's public key (JWK) is unusable.
    #[error("workload key: {0}")]
    WorkloadKey(String),
    /// A JWE is malformed or does not decrypt.
    #[error("JWE: {0}")]
    Jwe(String),
    /// The secret store failed.
    #[error("secret store: {0}")]
    Store(String),
    /// A secret's stored release policy is not the one sealed with its value
    /// (the policy or its hash was edited outside the service).
    #[error("the stored release policy was altered: {0}")]
    PolicyAltered(String),
    /// The key custody (the HSM holding the KEK) cannot be reached or
    /// refused the session; nothing about the record is known to be wrong.
    #[error("key custody unavailable: {0}")]
    Unavailable(String),
    /// Someone else wrote the secret at the same time (compare-and-swap lost).
    #[error("concurrent change: {0}")]
    Conflict(String),
}

impl BrokerError {
    /// The stable code naming this failure (API errors, release refusals).
    pub fn code(&self) -> &'static str {
        match self {
            BrokerError::Invalid(_) => "invalid_request",
            BrokerError::Policy(_) => "policy_invalid",
            BrokerError::PolicyNoStatus(_) => "policy_no_status",
            BrokerError::Crypto(_) => "crypto_failed",
            BrokerError::Integrity(_) => "secret_record_altered",
            BrokerError::WrongKek { .. } => "wrong_kek",
            BrokerError::KeyFile(_) | BrokerError::KeyFileMissing(_) => "kek_file_unusable",
            BrokerError::Hsm(_) | BrokerError::Unavailable(_) => "key_custody_unavailable",
            BrokerError::WorkloadKey(_) => "workload_key_unusable",
            BrokerError::Jwe(_) => "encryption_failed",
            BrokerError::Store(_) => "storage_error",
            BrokerError::PolicyAltered(_) => "secret_policy_altered",
            BrokerError::Conflict(_) => "secret_conflict",
        }
    }
}
