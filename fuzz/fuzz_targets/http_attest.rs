//! The service's request decoding: `POST /v1/attest` (and challenge, secret
//! release) JSON bodies, base64 evidence and endorsements, on the real
//! server over loopback.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cachet_fuzz::http::post(data);
});
