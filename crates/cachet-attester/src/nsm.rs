//! AWS Nitro Enclaves: an attestation document from the Nitro Secure
//! Module (`/dev/nsm`), through AWS's `aws-nitro-enclaves-nsm-api` crate.
//!
//! Binding (the service's rule for `nitro`): the document's `nonce` is the
//! verifier's nonce itself and `user_data` is the runtime data itself (NSM
//! limits each to 512 bytes).
//!
//! Not exercised on this build machine (it is no enclave).

use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use aws_nitro_enclaves_nsm_api::driver;
use cachet_verify::Tee;
use serde_bytes::ByteBuf;

use crate::source::{BindingInput, CollectError, Evidence, EvidenceSource};

const NAME: &str = "nsm";
/// The device the crate opens.
pub const DEVICE: &str = "/dev/nsm";
/// NSM's limit on `nonce` and `user_data`.
pub const MAX_FIELD: usize = 512;

/// The Nitro Secure Module back-end.
#[derive(Debug, Clone, Default)]
pub struct NitroNsm;

impl EvidenceSource for NitroNsm {
    fn name(&self) -> &'static str {
        NAME
    }

    fn collect(&self, input: &BindingInput<'_>) -> Result<Evidence, CollectError> {
        if input.nonce.len() > MAX_FIELD || input.runtime_data.len() > MAX_FIELD {
            return Err(CollectError::failed(NAME, format!("the NSM takes at most {MAX_FIELD} bytes of nonce and of user data")));
        }
        if !std::path::Path::new(DEVICE).exists() {
            return Err(CollectError::Unavailable { backend: NAME, why: format!("{DEVICE} does not exist (not a Nitro enclave)") });
        }
        let fd = driver::nsm_init();
        if fd < 0 {
            return Err(CollectError::failed(NAME, format!("cannot open {DEVICE}")));
        }
        let non_empty = |b: &[u8]| (!b.is_empty()).then(|| ByteBuf::from(b.to_vec()));
        let request = Request::Attestation { user_data: non_empty(input.runtime_data), nonce: non_empty(input.nonce), public_key: None };
        let response = driver::nsm_process_request(fd, request);
        driver::nsm_exit(fd);
        match response {
            Response::Attestation { document } => {
                Ok(Evidence { tee: Tee::Nitro, evidence: document, endorsements: Vec::new(), backend: NAME })
            }
            Response::Error(code) => Err(CollectError::failed(NAME, format!("the NSM refused: {code:?}"))),
            other => Err(CollectError::failed(NAME, format!("unexpected NSM response {other:?}"))),
        }
    }
}
