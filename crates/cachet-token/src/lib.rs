//! Attestation tokens: EAR results signed as JWTs, JWKS, key custody.
//!
//! - [`ear`]: the claims of an EAT Attestation Result (IETF RATS EAR).
//! - [`jws`]: compact JWS signing and verification (ES256, ES384, PS256; RS256
//!   for the Azure Attestation compatible key only).
//! - [`cert`]: self-signed certificates (`x5c`) for keys that have no CA's.
//! - [`jwk`]: public keys as JWKs and the JWKS document relying parties fetch.
//! - [`custody`]: where private keys live, behind [`custody::KeyCustody`]
//!   (a local implementation now; PKCS#11 can implement the same trait).
//! - [`keyring`]: which key signs and which keys are published, over time:
//!   a new key is published before it is used, and a retired key stays
//!   published until every token it signed has expired.

#![deny(missing_docs)]

pub mod alg;
pub mod cert;
pub mod custody;
pub mod ear;
pub mod jwk;
pub mod jws;
pub mod keyring;

pub use alg::Algorithm;
pub use custody::{CustodyKey, KeyCustody, LocalCustody};
pub use keyring::{KeyRing, RotationPolicy, SigningKey};

/// Why a token operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// A key could not be generated, parsed or used.
    #[error("key: {0}")]
    Key(String),
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(String),
    /// A token is malformed.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// A token's signature, key or claims are not acceptable.
    #[error("token refused: {0}")]
    Refused(String),
    /// No key may sign now (none active).
    #[error("no active signing key")]
    NoSigningKey,
}
