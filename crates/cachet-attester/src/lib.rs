//! The workload side: collect evidence inside a TEE and run the attestation protocol.

#![deny(missing_docs)]

pub mod binding;
pub mod client;
pub mod configfs_tsm;
pub mod ephemeral;
pub mod jwe;
pub mod nsm;
pub mod release;
pub mod sev_guest;
pub mod sim_source;
pub mod simulated;
pub mod source;
pub mod tdx_guest;
pub mod tpm;

pub use client::{Attester, ClientOptions};
pub use source::{Backend, BindingInput, CollectError, Evidence, EvidenceSource};

/// The tests' JWE sender (shared with the integration tests).
#[cfg(test)]
#[path = "../tests/common/sender.rs"]
mod test_sender;
