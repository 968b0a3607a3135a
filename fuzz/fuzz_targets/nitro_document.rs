//! AWS Nitro attestation documents: COSE_Sign1 and CBOR payload parsers and
//! the whole verification.
#![no_main]
use cachet_verify::{nitro, Tee};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cose) = nitro::parse_cose_sign1(data) {
        let _ = nitro::protected_alg(&cose.protected);
        let _ = nitro::parse_document(&cose.payload);
    }
    let _ = nitro::parse_document(data);
    if let Some((case, evidence)) = cachet_fuzz::pick(&[Tee::Nitro], data) {
        cachet_fuzz::verify_as(case, evidence);
    }
});
