//! Intel DCAP quotes (SGX v3, TDX v4/v5): the quote parser and the whole
//! verification against genuine collateral.
#![no_main]
use cachet_verify::{dcap, Tee};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = dcap::quote::parse(data) {
        let _ = dcap::quote::validate(&q, dcap::quote::QuoteTee::Tdx);
        let _ = dcap::quote::validate(&q, dcap::quote::QuoteTee::Sgx);
    }
    if let Some((case, evidence)) = cachet_fuzz::pick(&[Tee::Sgx, Tee::Tdx], data) {
        cachet_fuzz::verify_as(case, evidence);
    }
});
