//! Credential activation (TPM2_MakeCredential on the verifier side): proves an AK lives in the same TPM as a trusted EK. (being written)
