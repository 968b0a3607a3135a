//! Attestation tokens: EAR results signed as JWTs, JWKS, key custody.
