//! Endorsements: DCAP collateral JSON (TCB Info, QE Identity, CRLs, PEM
//! chains), AMD VCEK/ASK/ARK, NVIDIA RIM XML and certificate chains, each
//! fuzzed next to its genuine evidence.
#![no_main]
use cachet_verify::Tee;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((case, endorsement)) = cachet_fuzz::pick(&Tee::ALL, data) {
        cachet_fuzz::verify_with_endorsement(case, endorsement);
    }
});
