//! Appraisal: Rego policies and reference values turn verified claims into an EAR attestation result.
