//! Freshness: how the verifier's nonce and the attester's runtime data must
//! appear in evidence, per family (see README "Binding a nonce").
//!
//! | family | field | value |
//! |---|---|---|
//! | sgx, tdx, snp, sim | `report_data` (64 bytes) | `SHA-512(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)` |
//! | tpm, az-snp-vtpm, az-tdx-vtpm, nitro-tpm, nvgpu | TPM `extraData` / SPDM nonce (32 bytes) | `SHA-256(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)` |
//! | nitro | `nonce` / `user_data` or `public_key` | the nonce / the runtime data |
//!
//! `len(x)`: the byte length of `x`, 4 bytes big-endian (so no split of the
//! same bytes between nonce and runtime data gives the same value).
//!
//! The same functions as the attester's (`cachet_attester::binding`) compute
//! the expected values; after verification the claims must carry them.

use cachet_attester::binding;
use cachet_verify::{Check, Tee};
use serde_json::Value;

/// Where a family carries the binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingKind {
    /// 64-byte report data = SHA-512(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data).
    ReportData,
    /// 32-byte qualifying data = SHA-256(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data), checked by
    /// the verifier as its expected nonce.
    QualifyingData,
    /// Nitro: the document's own `nonce` and `user_data`/`public_key`.
    NitroFields,
}

/// The binding rule of a family.
pub fn kind(tee: Tee) -> BindingKind {
    match tee {
        Tee::Sgx | Tee::Tdx | Tee::Snp | Tee::Simulated => BindingKind::ReportData,
        Tee::Nitro => BindingKind::NitroFields,
        Tee::Tpm | Tee::AzSnpVtpm | Tee::AzTdxVtpm | Tee::NitroTpm | Tee::Nvgpu => BindingKind::QualifyingData,
    }
}

/// What the evidence must carry for a given nonce and runtime data.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The rule.
    pub kind: BindingKind,
    /// Nonce (may be empty when only runtime data is bound).
    pub nonce: Vec<u8>,
    /// Runtime data (may be empty).
    pub runtime_data: Vec<u8>,
    /// The value the bound field must hold.
    pub expected: Vec<u8>,
}

impl Binding {
    /// The binding of `nonce` and `runtime_data` for `tee`.
    pub fn new(tee: Tee, nonce: &[u8], runtime_data: &[u8]) -> Self {
        let kind = kind(tee);
        let expected = match kind {
            BindingKind::ReportData => binding::report_data(nonce, runtime_data).to_vec(),
            BindingKind::QualifyingData => binding::tpm_extra_data(nonce, runtime_data).to_vec(),
            BindingKind::NitroFields => nonce.to_vec(),
        };
        Self { kind, nonce: nonce.to_vec(), runtime_data: runtime_data.to_vec(), expected }
    }

    /// The `expected_nonce` to hand the verifier (families with a nonce
    /// field of their own).
    pub fn verifier_nonce(&self) -> Option<&[u8]> {
        match self.kind {
            BindingKind::ReportData => None,
            BindingKind::QualifyingData | BindingKind::NitroFields => Some(&self.expected),
        }
    }

    /// Check the verified claims (and the verifier's checks) carry the binding.
    pub fn check(&self, claims: &Value, checks: &[Check]) -> Result<String, String> {
        let hex_claim = |names: &[&str]| names.iter().find_map(|n| claims.get(*n).and_then(Value::as_str)).map(str::to_ascii_lowercase);
        let want = hex::encode(&self.expected);
        match self.kind {
            BindingKind::ReportData => match hex_claim(&["report_data"]) {
                Some(got) if got == want => Ok("report_data = SHA-512(len(nonce) || nonce || len(runtime_data) || runtime_data)".into()),
                Some(got) => {
                    Err(format!("report_data {got} is not SHA-512(len(nonce) || nonce || len(runtime_data) || runtime_data) = {want}"))
                }
                None => Err("the verified claims carry no report_data".into()),
            },
            BindingKind::QualifyingData | BindingKind::NitroFields => {
                let names: &[&str] = if self.kind == BindingKind::NitroFields {
                    &["nonce"]
                } else {
                    &["extra_data", "extradata", "qualifying_data", "nonce"]
                };
                match hex_claim(names) {
                    Some(got) if got == want => {}
                    Some(got) => return Err(format!("the evidence's nonce field {got} is not the expected {want}")),
                    None if verifier_checked_nonce(checks) => {}
                    None => return Err("the verifier confirmed no nonce field".into()),
                }
                if self.kind == BindingKind::NitroFields && !self.runtime_data.is_empty() {
                    let rd = hex::encode(&self.runtime_data);
                    let carried = ["user_data", "public_key"]
                        .iter()
                        .any(|n| claims.get(*n).and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() == Some(&rd));
                    if !carried {
                        return Err("neither user_data nor public_key equals the runtime data".into());
                    }
                }
                Ok(if self.kind == BindingKind::NitroFields {
                    "nonce field = nonce".into()
                } else {
                    "qualifying data = SHA-256(len(nonce) || nonce || len(runtime_data) || runtime_data)".into()
                })
            }
        }
    }
}

/// Whether the verifier recorded a passed check of the nonce it was given.
fn verifier_checked_nonce(checks: &[Check]) -> bool {
    checks.iter().any(|c| {
        let n = c.name.to_ascii_lowercase();
        c.ok && (n.contains("nonce") || n.contains("extradata") || n.contains("extra data") || n.contains("qualifying"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn report_data_binding_must_match_exactly() {
        let b = Binding::new(Tee::Snp, b"nonce", b"key");
        let good = json!({"report_data": hex::encode(binding::report_data(b"nonce", b"key"))});
        assert!(b.check(&good, &[]).is_ok());
        let other = json!({"report_data": hex::encode(binding::report_data(b"nonce", b"other"))});
        assert!(b.check(&other, &[]).is_err());
        assert!(b.check(&json!({}), &[]).is_err());
        assert!(b.verifier_nonce().is_none());
    }

    #[test]
    fn tpm_binding_is_handed_to_the_verifier_and_must_be_confirmed() {
        let b = Binding::new(Tee::Tpm, b"n", b"");
        assert_eq!(b.verifier_nonce().unwrap(), binding::tpm_extra_data(b"n", b""));
        assert!(b.check(&json!({}), &[]).is_err(), "nothing confirms it");
        let ok = Check { name: "Quote extraData".into(), ok: true, detail: String::new() };
        assert!(b.check(&json!({}), &[ok]).is_ok());
        assert!(b.check(&json!({"extra_data": "00"}), &[]).is_err());
    }

    #[test]
    fn nitro_runtime_data_must_be_in_user_data_or_public_key() {
        let b = Binding::new(Tee::Nitro, b"\x01\x02", b"rt");
        let base = json!({"nonce": "0102", "user_data": hex::encode(b"rt")});
        assert!(b.check(&base, &[]).is_ok());
        assert!(b.check(&json!({"nonce": "0102", "public_key": hex::encode(b"rt")}), &[]).is_ok());
        assert!(b.check(&json!({"nonce": "0102", "user_data": "00"}), &[]).is_err());
        assert!(b.check(&json!({"nonce": "0103", "user_data": hex::encode(b"rt")}), &[]).is_err());
    }
}
