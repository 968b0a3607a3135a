//! The one nonce rule of every family ([`VerifyRequest::expected_nonce`]).
//!
//! An expected nonce is 8 to 64 bytes (shorter ones are guessable; no
//! evidence field holds more). Where the evidence has a fixed-size field
//! for it (SGX/TDX/SEV-SNP `REPORTDATA` and Azure's HCL `user-data`, 64
//! bytes; NVIDIA's SPDM request nonce, 32 bytes) the *whole* field must
//! equal the nonce followed by zero bytes up to the field's size: a nonce
//! of the field's size is compared as it is, so a caller checking the
//! documented binding (`SHA-512(nonce ‖ runtime_data)` in report data)
//! passes that 64-byte value. A prefix never suffices: with a prefix rule
//! any report whose data merely begins with a 2-byte nonce passed. Where
//! the field has a variable length (TPM `extraData`, the Nitro document's
//! `nonce`) it must equal the nonce exactly.
//!
//! [`VerifyRequest::expected_nonce`]: crate::VerifyRequest::expected_nonce

use crate::check::{Checks, VResult};

/// Shortest expected nonce accepted (bytes).
pub const MIN_LEN: usize = 8;
/// Longest expected nonce accepted (bytes): the largest nonce field.
pub const MAX_LEN: usize = 64;

/// Check the length of an expected nonce.
pub fn check_len(nonce: &[u8]) -> Result<(), String> {
    if (MIN_LEN..=MAX_LEN).contains(&nonce.len()) {
        Ok(())
    } else {
        Err(format!("the expected nonce is {} bytes; a nonce must be {MIN_LEN} to {MAX_LEN} bytes (16 to 128 hex digits)", nonce.len()))
    }
}

/// Check a fixed-size evidence field (`what`, e.g. `"REPORTDATA"`) against
/// an expected nonce: the whole field must be the nonce zero-padded to the
/// field's size. Returns the pass detail, or the failure message.
pub fn check_field(what: &str, field: &[u8], nonce: &[u8]) -> Result<String, String> {
    check_len(nonce)?;
    if nonce.len() > field.len() {
        return Err(format!("the expected nonce is {} bytes but {what} holds {}", nonce.len(), field.len()));
    }
    let (head, pad) = field.split_at(nonce.len());
    if head == nonce && pad.iter().all(|b| *b == 0) {
        Ok(if pad.is_empty() {
            format!("{what} equals the expected {}-byte nonce", nonce.len())
        } else {
            format!("{what} equals the expected {}-byte nonce zero-padded to {} bytes", nonce.len(), field.len())
        })
    } else {
        Err(format!("{what} {} is not the expected nonce {} zero-padded to {} bytes", hex::encode(field), hex::encode(nonce), field.len()))
    }
}

/// [`check_field`], recorded as the check `name`.
pub fn record(checks: &mut Checks, name: &str, what: &str, field: &[u8], nonce: &[u8]) -> VResult<()> {
    match check_field(what, field, nonce) {
        Ok(detail) => {
            checks.pass(name, detail);
            Ok(())
        }
        Err(e) => Err(checks.fail(name, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert!(check_len(&[1; 7]).is_err());
        assert!(check_len(&[1; 8]).is_ok());
        assert!(check_len(&[1; 64]).is_ok());
        assert!(check_len(&[1; 65]).is_err());
        assert!(check_len(&[]).is_err());
    }

    #[test]
    fn the_whole_field_is_compared() {
        let mut field = [0u8; 64];
        field[..8].copy_from_slice(b"abcdefgh");
        assert!(check_field("REPORTDATA", &field, b"abcdefgh").is_ok());
        // A prefix of the nonce, or a nonce followed by other bytes, is not it.
        assert!(check_field("REPORTDATA", &field, b"abcdefg").is_err());
        field[63] = 1;
        assert!(check_field("REPORTDATA", &field, b"abcdefgh").is_err());
        // A nonce of the field's size is compared as it is.
        assert!(check_field("REPORTDATA", &field, &field.clone()).is_ok());
        // Too short to be a nonce, even when it matches.
        assert!(check_field("REPORTDATA", &[0u8; 64], &[0u8; 4]).is_err());
        // Longer than the field.
        assert!(check_field("nonce", &[0u8; 32], &[0u8; 33]).is_err());
    }
}
