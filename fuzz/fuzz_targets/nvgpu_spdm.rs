//! NVIDIA GPU attestation reports: SPDM GET_MEASUREMENTS request/response
//! parser and the whole verification (device chain, RIMs).
#![no_main]
use cachet_verify::{nvgpu, Tee};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = nvgpu::spdm::parse_report(data);
    if let Some((case, evidence)) = cachet_fuzz::pick(&[Tee::Nvgpu], data) {
        cachet_fuzz::verify_as(case, evidence);
    }
});
