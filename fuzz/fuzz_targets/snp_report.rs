//! AMD SEV-SNP attestation reports, verified against genuine VCEK/ASK/ARK.
#![no_main]
use cachet_verify::Tee;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((case, evidence)) = cachet_fuzz::pick(&[Tee::Snp], data) {
        cachet_fuzz::verify_as(case, evidence);
    }
});
