//! The HTTP attestation service (`cachet serve`).
