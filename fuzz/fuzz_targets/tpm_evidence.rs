//! TPM evidence JSON (quote, signature, AK, PCRs, AK chain, NSM document).
#![no_main]
use cachet_verify::Tee;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((case, evidence)) = cachet_fuzz::pick(&[Tee::Tpm, Tee::NitroTpm], data) {
        cachet_fuzz::verify_as(case, evidence);
    }
});
