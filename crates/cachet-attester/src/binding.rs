//! Freshness binding: how an attester puts a verifier's nonce (and its own
//! runtime data, e.g. a public key) into evidence.
//!
//! `cachet serve` hands out a nonce (`POST /v1/challenge`); the attester
//! binds it, together with any runtime data it wants the token to vouch
//! for, into the field of its evidence the hardware signs:
//!
//! | evidence | field | value |
//! |---|---|---|
//! | SGX, TDX, SEV-SNP, simulated | `report_data` (64 bytes) | `SHA-512(nonce ‖ runtime_data)` |
//! | TPM quotes (tpm, Azure vTPM, NitroTPM), NVIDIA SPDM | `extraData` / requester nonce (32 bytes) | `SHA-256(nonce ‖ runtime_data)` |
//! | AWS Nitro Enclaves | `nonce` / `user_data` (or `public_key`) | the nonce itself / the runtime data itself |
//!
//! The verifier recomputes the same value and refuses evidence that does
//! not carry it. These functions are the single definition both sides use.

use aws_lc_rs::digest;

/// `SHA-512(nonce ‖ runtime_data)`: the 64-byte `report_data` of SGX, TDX,
/// SEV-SNP and simulated reports.
pub fn report_data(nonce: &[u8], runtime_data: &[u8]) -> [u8; 64] {
    let mut ctx = digest::Context::new(&digest::SHA512);
    ctx.update(nonce);
    ctx.update(runtime_data);
    let mut out = [0u8; 64];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// `SHA-256(nonce ‖ runtime_data)`: the 32-byte qualifying data of TPM
/// quotes (`extraData`) and the NVIDIA SPDM requester nonce.
pub fn tpm_extra_data(nonce: &[u8], runtime_data: &[u8]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(nonce);
    ctx.update(runtime_data);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_is_the_hash_of_the_concatenation() {
        // SHA-512("abc") and SHA-256("abc") from FIPS 180-2, split across both inputs.
        assert_eq!(
            hex::encode(report_data(b"a", b"bc")),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(
            hex::encode(tpm_extra_data(b"ab", b"c")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(report_data(b"n1", b""), report_data(b"n2", b""));
    }
}
