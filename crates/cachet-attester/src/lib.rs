//! The workload side: collect evidence inside a TEE and run the attestation protocol.

pub mod binding;
pub mod simulated;
