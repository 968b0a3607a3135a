//! (being written)
use crate::{Checks, VResult, VerifyRequest};

/// Not yet supported.
pub fn verify(_req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<serde_json::Value> {
    Err(checks.fail("Evidence format", "this family is not supported yet"))
}

/// Not yet supported.
pub fn verify_nitro_tpm(_req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<serde_json::Value> {
    Err(checks.fail("Evidence format", "this family is not supported yet"))
}

/// Recognise this family's JSON evidence.
pub fn detect(_v: &serde_json::Value) -> Option<crate::Tee> {
    None
}

pub mod activation;
pub mod eventlog;
