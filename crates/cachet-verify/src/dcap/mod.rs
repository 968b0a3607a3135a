//! (being written)
use crate::{Checks, VResult, VerifyRequest};

/// Not yet supported.
pub fn verify_sgx(_req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<serde_json::Value> {
    Err(checks.fail("Evidence format", "this family is not supported yet"))
}

/// Not yet supported.
pub fn verify_tdx(_req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<serde_json::Value> {
    Err(checks.fail("Evidence format", "this family is not supported yet"))
}
