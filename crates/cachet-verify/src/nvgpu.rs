//! (being written)
use crate::{Checks, VResult, VerifyRequest};

/// Not yet supported.
pub fn verify(_req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<serde_json::Value> {
    Err(checks.fail("Evidence format", "this family is not supported yet"))
}
