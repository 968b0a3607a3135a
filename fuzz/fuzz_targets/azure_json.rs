//! Azure CVM evidence JSON (HCL report, vTPM quote, VCEK / TD quote) and the
//! HCL report and runtime-claims parsers.
#![no_main]
use cachet_verify::{azure, Tee};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = azure::hcl::parse(data) {
        let _ = azure::parse_runtime_claims(h.var_data);
    }
    if let Some((case, evidence)) = cachet_fuzz::pick(&[Tee::AzSnpVtpm, Tee::AzTdxVtpm], data) {
        cachet_fuzz::verify_as(case, evidence);
    }
});
