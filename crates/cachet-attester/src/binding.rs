//! Freshness binding: how an attester puts a verifier's nonce (and its own
//! runtime data, e.g. a public key) into evidence.
//!
//! `cachet serve` hands out a nonce (`POST /v1/challenge`); the attester
//! binds it, together with any runtime data it wants the token to vouch
//! for, into the field of its evidence the hardware signs:
//!
//! | evidence | field | value |
//! |---|---|---|
//! | SGX, TDX, SEV-SNP, simulated | `report_data` (64 bytes) | `SHA-512(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)` |
//! | TPM quotes (tpm, Azure vTPM, NitroTPM), NVIDIA SPDM | `extraData` / requester nonce (32 bytes) | `SHA-256(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)` |
//! | AWS Nitro Enclaves | `nonce` / `user_data` (or `public_key`) | the nonce itself / the runtime data itself |
//!
//! `len(x)` is the byte length of `x` as a 4-byte big-endian integer. The
//! lengths make the hash input unambiguous: with a plain `nonce ‖
//! runtime_data`, evidence bound to a spent nonce `n` and runtime data `rd`
//! also matched an empty nonce with runtime data `n ‖ rd` (or any other
//! split), so spent evidence could be presented again.
//!
//! The verifier recomputes the same value and refuses evidence that does
//! not carry it. These functions are the single definition both sides use.

use aws_lc_rs::digest;

/// Feed `len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data` to `ctx`.
fn feed(ctx: &mut digest::Context, nonce: &[u8], runtime_data: &[u8]) {
    for part in [nonce, runtime_data] {
        // Inputs are bounded far below 4 GiB (nonces 8-64 bytes, request bodies a few MiB).
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        ctx.update(&len.to_be_bytes());
        ctx.update(part);
    }
}

/// `SHA-512(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)`: the
/// 64-byte `report_data` of SGX, TDX, SEV-SNP and simulated reports.
pub fn report_data(nonce: &[u8], runtime_data: &[u8]) -> [u8; 64] {
    let mut ctx = digest::Context::new(&digest::SHA512);
    feed(&mut ctx, nonce, runtime_data);
    let mut out = [0u8; 64];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// `SHA-256(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)`: the
/// 32-byte qualifying data of TPM quotes (`extraData`) and the NVIDIA SPDM
/// requester nonce.
pub fn tpm_extra_data(nonce: &[u8], runtime_data: &[u8]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    feed(&mut ctx, nonce, runtime_data);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_is_the_hash_of_the_length_prefixed_parts() {
        // Recomputed independently: the hash of the documented byte string.
        let input = [&[0, 0, 0, 1][..], b"a", &[0, 0, 0, 2], b"bc"].concat();
        assert_eq!(report_data(b"a", b"bc").as_slice(), digest::digest(&digest::SHA512, &input).as_ref());
        assert_eq!(tpm_extra_data(b"a", b"bc").as_slice(), digest::digest(&digest::SHA256, &input).as_ref());
        assert_ne!(report_data(b"n1", b""), report_data(b"n2", b""));
    }

    #[test]
    fn moving_bytes_between_nonce_and_runtime_data_changes_the_binding() {
        let (nonce, rd) = (b"0123456789abcdef".as_slice(), b"{\"kty\":\"EC\"}".as_slice());
        let joined = [nonce, rd].concat();
        // The spent-evidence replay: the old nonce moved into the runtime data.
        assert_ne!(report_data(nonce, rd), report_data(b"", &joined));
        assert_ne!(tpm_extra_data(nonce, rd), tpm_extra_data(b"", &joined));
        assert_ne!(report_data(nonce, rd), report_data(&joined, b""));
        assert_ne!(report_data(&nonce[..8], &[&nonce[8..], rd].concat()), report_data(nonce, rd));
    }
}
