//! # Azure confidential VMs: HCL report + vTPM quote (SEV-SNP and TDX)
//!
//! On an Azure CVM the guest never sees the hardware attestation directly:
//! the paravisor (HCL, running at VMPL0 on SEV-SNP, as the L1 VMM on TDX)
//! asks the hardware for a report whose `report_data` is the hash of its
//! *runtime claims* JSON — which holds the public part of the vTPM's
//! attestation key (`HCLAkPub`) and the VM configuration — and exposes the
//! result (the *HCL report*, see [`hcl`]) at a vTPM NV index. The guest then
//! quotes its PCRs with that AK. Evidence ([`evidence`]) carries the HCL
//! report, the TPM quote with its PCR values, and the VCEK (SNP) or the TD
//! quote made from the TDREPORT (TDX).
//!
//! Checks, in order, each by name:
//!
//! 1. `Evidence format` — the JSON and its byte fields ([`evidence::parse`]).
//! 2. `HCL report format` — [`hcl::parse`]; the report type must be this
//!    family's (SNP for `az-snp-vtpm`, TDX for `az-tdx-vtpm`).
//! 3. The hardware report, verified in full by the family's own verifier,
//!    its checks prefixed: `SNP: …` ([`crate::snp::verify_report`], VCEK from
//!    the evidence, ASK/ARK from the endorsements, pinned ARK), or `TDX: …`
//!    ([`crate::dcap::verify_tdx`] on the TD quote, collateral from the
//!    endorsements).
//! 4. SNP: `HCL VMPL` — the report was requested at VMPL0 (by the HCL; a
//!    guest at a higher VMPL could otherwise request a report over runtime
//!    data of its choosing). TDX: `HCL TD report` — the HCL's TDREPORT is the
//!    report the TD quote signs ([`hcl::check_td_report`]).
//! 5. `HCL runtime data binding` — the signed `report_data` is
//!    `H(var_data)` and zeros ([`hcl::check_binding`]).
//! 6. `HCL runtime data` (the JSON) and `vTPM AK` (the `HCLAkPub` JWK).
//! 7. The TPM quote with that AK ([`crate::tpm::verify_quote`]): `Quote
//!    structure`, `Quote signature format`, `TPM quote signature`, `PCR
//!    digest`, and `Quote nonce` when the caller expects a nonce.
//! 8. `HCL user data` — evidence of version 2 or later promises that the
//!    runtime data's `user-data` is the nonce, zero-padded to its 64 bytes
//!    ([`crate::nonce`]): checked when the caller expects one.
//!
//! ## Claims
//!
//! The wrapped hardware report's claims are merged at the top level (so a
//! policy written for `snp`/`tdx` finds `measurement`, `mr_td`, `rtmr*`,
//! `debug`, `report_data`, `tcb_status` … where it expects them), with
//! `tee` set to this family and `hardware_tee` to `snp`/`tdx`. Then:
//! `pcrs` (`{"sha256": {"0": hex}}`, quoted PCRs only), `ak_public` (hex),
//! `ak_type`, `extra_data` (the quote's nonce field, where Cachet's
//! freshness binding goes), `tpm_quote` (the other quote fields), and `hcl`:
//! `{report_type, runtime_data_hash_alg,
//! runtime_data_hash, user_data, vm_configuration: {secure_boot,
//! tpm_enabled, console_enabled, tpm_persisted, …}, ek_public, keys}`.
//! `report_data` is the hardware report's (it is `H(var_data)`), not the
//! TPM nonce.

pub mod evidence;
pub mod hcl;

use serde_json::{json, Map, Value};

use crate::tpm::quote::{self, AkKey, AkPublic, Attest, HashAlg, PcrBanks};
use crate::tpm::{self as tpm, VerifiedQuote};
use crate::{Checks, Endorsement, Tee, VResult, VerifyError, VerifyRequest};
use evidence::{AzureEvidence, PcrInput};
use hcl::{HclReport, HwKind};

/// The JWK `kid` of the vTPM attestation key in the runtime claims.
pub const AK_KID: &str = "HCLAkPub";
/// The JWK `kid` of the vTPM endorsement key in the runtime claims.
pub const EK_KID: &str = "HCLEkPub";

const TPM_ALG_RSASSA: u16 = 0x0014;
const TPM_ALG_ECDSA: u16 = 0x0018;

/// Verify Azure SEV-SNP CVM evidence (`az-snp-vtpm`): HCL report with an
/// SEV-SNP report, VCEK, and a vTPM quote.
pub fn verify_snp(req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<Value> {
    let ev = parse_evidence(req, checks)?;
    let hcl = parse_hcl(&ev, HwKind::Snp, checks)?;
    let mut endorsements: Vec<Endorsement> = req.endorsements.to_vec();
    for (i, der) in ev.certs.iter().enumerate() {
        endorsements.push(Endorsement { name: format!("evidence certificate {i}"), bytes: der.clone() });
    }
    let hw = nested("SNP: ", checks, |c| crate::snp::verify_report(hcl.hw_report, &endorsements, req.anchors, req.at, c))?;
    let vmpl = hw.get("vmpl").and_then(Value::as_u64);
    checks.require(
        "HCL VMPL",
        vmpl == Some(0),
        "the SEV-SNP report was requested at VMPL0 (by the HCL)",
        format!("the SEV-SNP report was requested at VMPL {vmpl:?}, not by the HCL at VMPL0"),
    )?;
    let report_data = crate::snp::report_data(&hw).unwrap_or([0u8; 64]);
    binding(&hcl, &report_data, checks)?;
    finish(req, &ev, &hcl, hw, Tee::AzSnpVtpm, checks)
}

/// Verify Azure TDX CVM evidence (`az-tdx-vtpm`): HCL report with a
/// TDREPORT, the TD quote made from it, and a vTPM quote.
pub fn verify_tdx(req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<Value> {
    let ev = parse_evidence(req, checks)?;
    let hcl = parse_hcl(&ev, HwKind::Tdx, checks)?;
    let Some(td_quote) = ev.td_quote.as_deref() else {
        return Err(checks.fail("Evidence format", "no 'td_quote': TDX evidence needs the TD quote made from the HCL's TDREPORT"));
    };
    let inner = VerifyRequest { evidence: td_quote, expected_nonce: None, ..*req };
    let hw = nested("TDX: ", checks, |c| crate::dcap::verify_tdx(&inner, c))?;
    let body = crate::dcap::quote::parse(td_quote).ok().and_then(|q| q.body.td().cloned());
    let Some(body) = body else {
        return Err(checks.fail("HCL TD report", "the TD quote has no TD report body"));
    };
    checks.record(
        "HCL TD report",
        hcl::check_td_report(hcl.hw_report, &body),
        "the HCL's TDREPORT (REPORTDATA, TDINFO, TEE_TCB_INFO) is the one the TD quote signs",
    )?;
    binding(&hcl, &body.report_data, checks)?;
    finish(req, &ev, &hcl, hw, Tee::AzTdxVtpm, checks)
}

/// Recognise Azure CVM evidence JSON (an HCL report is present) and tell
/// SNP from TDX by the HCL report type (or, failing that, a `td_quote`).
pub fn detect(v: &Value) -> Option<Tee> {
    let b = evidence::hcl_report_of(v)?;
    let report_type =
        b.get(hcl::REQUEST_DATA_OFFSET + 8..hcl::REQUEST_DATA_OFFSET + 12).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
    match report_type {
        Some(2) => Some(Tee::AzSnpVtpm),
        Some(4) => Some(Tee::AzTdxVtpm),
        _ => {
            let has_td = v.as_object().is_some_and(|o| o.keys().any(|k| k.to_ascii_lowercase().replace(['_', '-'], "") == "tdquote"));
            Some(if has_td { Tee::AzTdxVtpm } else { Tee::AzSnpVtpm })
        }
    }
}

/// Run a nested verifier with its own record, then append its checks (and
/// name its failure) with `prefix`.
fn nested<T>(prefix: &str, checks: &mut Checks, f: impl FnOnce(&mut Checks) -> VResult<T>) -> VResult<T> {
    let mut inner = Checks::new();
    let r = f(&mut inner);
    checks.extend_prefixed(prefix, inner);
    r.map_err(|e| VerifyError::new(format!("{prefix}{}", e.check), e.message))
}

fn parse_evidence(req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<AzureEvidence> {
    let r = evidence::parse(req.evidence);
    let detail = r
        .as_ref()
        .map(|e| {
            format!(
                "Azure CVM evidence (format version {}): HCL report {} bytes, TPM quote {} bytes, {} certificate(s){}",
                e.version,
                e.hcl_report.len(),
                e.quote.len(),
                e.certs.len(),
                if e.td_quote.is_some() { ", TD quote" } else { "" }
            )
        })
        .unwrap_or_default();
    checks.record("Evidence format", r, detail)
}

fn parse_hcl<'a>(ev: &'a AzureEvidence, want: HwKind, checks: &mut Checks) -> VResult<HclReport<'a>> {
    let r = hcl::parse(&ev.hcl_report).and_then(|h| {
        if h.kind == want {
            Ok(h)
        } else {
            Err(format!("the HCL report wraps a {} report, not {} (verify it as az-{}-vtpm)", h.kind.name(), want.name(), h.kind.name()))
        }
    });
    let detail = r
        .as_ref()
        .map(|h| format!("HCLA v{}, {} report, {} runtime data of {} bytes", h.version, h.kind.name(), h.hash.name(), h.var_data.len()))
        .unwrap_or_default();
    checks.record("HCL report format", r, detail)
}

fn binding(hcl: &HclReport<'_>, report_data: &[u8], checks: &mut Checks) -> VResult<()> {
    match hcl::check_binding(hcl, report_data) {
        Ok(d) => {
            checks.pass("HCL runtime data binding", d);
            Ok(())
        }
        Err(e) => Err(checks.fail("HCL runtime data binding", e)),
    }
}

/// The runtime claims JSON of the HCL report.
#[derive(Debug, Clone)]
pub struct RuntimeClaims {
    /// The `HCLAkPub` JWK.
    pub ak_jwk: Value,
    /// The `HCLEkPub` JWK, if present.
    pub ek_jwk: Option<Value>,
    /// `vm-configuration`, keys in snake_case.
    pub vm_configuration: Map<String, Value>,
    /// `user-data`, as given.
    pub user_data: Option<String>,
    /// The `kid`s of every key.
    pub kids: Vec<String>,
}

/// `console-enabled` → `console_enabled`, `vmUniqueId` → `vm_unique_id`.
fn snake(key: &str) -> String {
    let mut out = String::new();
    for c in key.chars() {
        if c == '-' || c == ' ' {
            out.push('_');
        } else if c.is_ascii_uppercase() {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Parse the runtime claims JSON: `keys` (JWKs by `kid`), `vm-configuration`
/// and `user-data`. Exactly one `HCLAkPub` key must be present, for signing.
pub fn parse_runtime_claims(var_data: &[u8]) -> Result<RuntimeClaims, String> {
    let v: Value = serde_json::from_slice(var_data).map_err(|e| format!("runtime data is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("runtime data is not a JSON object")?;
    let keys = match obj.get("keys") {
        Some(Value::Array(k)) => k.as_slice(),
        Some(_) => return Err("'keys' is not an array".into()),
        None => &[],
    };
    let kid = |k: &Value| k.get("kid").and_then(Value::as_str).map(str::to_string);
    let kids: Vec<String> = keys.iter().filter_map(kid).collect();
    let aks: Vec<&Value> = keys.iter().filter(|k| kid(k).as_deref() == Some(AK_KID)).collect();
    let ak_jwk = match aks.as_slice() {
        [one] => (*one).clone(),
        [] => return Err(format!("no '{AK_KID}' key among the runtime data keys {kids:?}")),
        _ => return Err(format!("{} '{AK_KID}' keys in the runtime data", aks.len())),
    };
    let ek_jwk = keys.iter().find(|k| kid(k).as_deref() == Some(EK_KID)).cloned();
    let mut vm_configuration = Map::new();
    match obj.get("vm-configuration").or_else(|| obj.get("vm_configuration")) {
        Some(Value::Object(m)) => {
            for (k, val) in m {
                let val = match val {
                    Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
                    Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
                    other => other.clone(),
                };
                vm_configuration.insert(snake(k), val);
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => return Err("'vm-configuration' is not an object".into()),
    }
    let user_data = match obj.get("user-data").or_else(|| obj.get("user_data")) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(_) => return Err("'user-data' is not a string".into()),
    };
    Ok(RuntimeClaims { ak_jwk, ek_jwk, vm_configuration, user_data, kids })
}

/// The AK from its JWK; `key_ops`, when given, must allow signing.
fn ak_from_jwk(jwk: &Value) -> Result<AkPublic, String> {
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops.as_array().ok_or("'key_ops' is not an array")?;
        if !ops.iter().any(|o| o.as_str() == Some("sign")) {
            return Err(format!("'{AK_KID}' key_ops {ops:?} do not include 'sign'"));
        }
    }
    AkPublic::from_jwk(jwk)
}

/// The quote signature as a `TPMT_SIGNATURE`: the vTPM's raw RSASSA
/// signature (as long as the modulus) or raw ECDSA `r‖s` is wrapped with
/// the hash the quote's `pcrDigest` was made with (the signing hash); a
/// `TPMT_SIGNATURE` or DER ECDSA passes through.
fn tpmt_signature(sig: &[u8], ak: &AkPublic, hash: HashAlg) -> Vec<u8> {
    let mut out = Vec::new();
    let put16 = |out: &mut Vec<u8>, v: usize| out.extend_from_slice(&(v.min(0xffff) as u16).to_be_bytes());
    match &ak.key {
        AkKey::Rsa { n, .. } if sig.len() == n.len() => {
            out.extend_from_slice(&TPM_ALG_RSASSA.to_be_bytes());
            out.extend_from_slice(&hash.tpm_id().to_be_bytes());
            put16(&mut out, sig.len());
            out.extend_from_slice(sig);
            out
        }
        AkKey::Ecc { curve, .. } if sig.len() == 2 * curve.coord_len() && sig.first() != Some(&0x30) => {
            let (r, s) = sig.split_at(curve.coord_len());
            out.extend_from_slice(&TPM_ALG_ECDSA.to_be_bytes());
            out.extend_from_slice(&hash.tpm_id().to_be_bytes());
            put16(&mut out, r.len());
            out.extend_from_slice(r);
            put16(&mut out, s.len());
            out.extend_from_slice(s);
            out
        }
        _ => sig.to_vec(),
    }
}

/// The supplied PCR values by bank and index. A list holds the values of
/// the PCRs the quote selects, in selection order (or, for a single bank,
/// every PCR by position).
fn pcr_banks(input: &PcrInput, attest: &Attest) -> Result<PcrBanks, String> {
    let selected: Vec<(HashAlg, u32)> = attest.pcr_select.iter().flat_map(|s| s.pcrs.iter().map(move |i| (s.hash, *i))).collect();
    let single_bank = match attest.pcr_select.as_slice() {
        [one] => Some(one.hash),
        _ => None,
    };
    let mut out = PcrBanks::new();
    match input {
        PcrInput::Banks(b) => return Ok(b.clone()),
        PcrInput::Indexed(m) => {
            let bank = single_bank.unwrap_or(HashAlg::Sha256);
            out.insert(bank, m.clone());
        }
        PcrInput::List(values) if values.len() == selected.len() => {
            for ((alg, idx), v) in selected.iter().zip(values) {
                out.entry(*alg).or_default().insert(*idx, v.clone());
            }
        }
        PcrInput::List(values) => match single_bank {
            Some(bank) if selected.iter().all(|(_, i)| (*i as usize) < values.len()) => {
                let m = out.entry(bank).or_default();
                for (i, v) in values.iter().enumerate() {
                    m.insert(i as u32, v.clone());
                }
            }
            _ => {
                return Err(format!(
                    "{} PCR values supplied for the {} PCRs the quote selects ({})",
                    values.len(),
                    selected.len(),
                    attest.selection_json()
                ))
            }
        },
    }
    Ok(out)
}

/// Runtime claims, AK, TPM quote, user data; then the claims.
fn finish(req: &VerifyRequest<'_>, ev: &AzureEvidence, hcl: &HclReport<'_>, hw: Value, tee: Tee, checks: &mut Checks) -> VResult<Value> {
    let rc = checks.record(
        "HCL runtime data",
        parse_runtime_claims(hcl.var_data),
        "runtime claims JSON with keys, vm-configuration and user-data",
    )?;
    let ak = ak_from_jwk(&rc.ak_jwk);
    let detail = ak.as_ref().map(|k| format!("{AK_KID} {} bound by the runtime data", k.describe())).unwrap_or_default();
    let ak = checks.record("vTPM AK", ak, detail)?;

    // The attest is parsed here only to place a PCR list and pick the hash
    // of a raw signature; `verify_quote` parses it again under its check.
    let pre = quote::parse_attest(&ev.quote);
    let (banks, hash) = match &pre {
        Ok(a) => {
            let banks = pcr_banks(&ev.pcrs, a).map_err(|e| checks.fail("PCR digest", e))?;
            let hash = [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512]
                .into_iter()
                .find(|h| h.len() == a.pcr_digest.len())
                .unwrap_or(HashAlg::Sha256);
            (banks, hash)
        }
        Err(_) => (PcrBanks::new(), HashAlg::Sha256),
    };
    let sig = tpmt_signature(&ev.signature, &ak, hash);
    let q = tpm::verify_quote(&ev.quote, &sig, &ak, &banks, req.expected_nonce, checks)?;

    let user_data = rc.user_data.as_deref().map(|s| quote::decode_bytes(s).ok_or(s));
    if let (Some(nonce), true) = (req.expected_nonce, ev.version >= 2) {
        // Version 2 binds the nonce into user-data, zero-padded (crate::nonce).
        let field = match &user_data {
            Some(Ok(b)) => b.as_slice(),
            _ => &[],
        };
        crate::nonce::record(checks, "HCL user data", "the runtime data's user-data", field, nonce)?;
    }
    Ok(claims(tee, hcl, &rc, user_data, hw, &q, &ak))
}

fn claims(
    tee: Tee,
    hcl: &HclReport<'_>,
    rc: &RuntimeClaims,
    user_data: Option<Result<Vec<u8>, &str>>,
    hw: Value,
    q: &VerifiedQuote,
    ak: &AkPublic,
) -> Value {
    let mut out = match hw {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    out.insert("hardware_tee".into(), json!(hcl.kind.name()));
    out.insert("tee".into(), json!(tee.as_str()));
    let mut tq = tpm::quote_claims(tee, q, ak);
    for k in ["pcrs", "ak_public", "ak_type", "extra_data"] {
        if let Some(v) = tq.remove(k) {
            out.insert(k.into(), v);
        }
    }
    tq.remove("tee");
    tq.retain(|_, v| !v.is_null());
    out.insert("tpm_quote".into(), Value::Object(tq));
    let mut h = Map::new();
    // The HCL header (version, request_type) is signed by nothing, so it
    // is checked in `hcl::parse` but never reported: a claim must be
    // something the hardware vouches for.
    h.insert("report_type".into(), json!(hcl.kind.name()));
    h.insert("runtime_data_hash_alg".into(), json!(hcl.hash.name()));
    h.insert("runtime_data_hash".into(), json!(hex::encode(hcl.hash.digest(hcl.var_data))));
    match user_data {
        Some(Ok(b)) => h.insert("user_data".into(), json!(hex::encode(b))),
        Some(Err(s)) => h.insert("user_data".into(), json!(s)),
        None => None,
    };
    h.insert("vm_configuration".into(), Value::Object(rc.vm_configuration.clone()));
    if let Some(ek) = rc.ek_jwk.as_ref().and_then(|j| AkPublic::from_jwk(j).ok()) {
        h.insert("ek_public".into(), json!(ek.to_hex()));
    }
    h.insert("keys".into(), json!(rc.kids));
    out.insert("hcl".into(), Value::Object(h));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_keys() {
        assert_eq!(snake("console-enabled"), "console_enabled");
        assert_eq!(snake("vmUniqueId"), "vm_unique_id");
        assert_eq!(snake("secure_boot"), "secure_boot");
    }

    #[test]
    fn runtime_claims_need_one_signing_ak() {
        let ak = r#"{"kid":"HCLAkPub","key_ops":["sign"],"kty":"RSA","e":"AQAB","n":"AQAB"}"#;
        let ok = format!(r#"{{"keys":[{ak}],"vm-configuration":{{"secure-boot":"true","tpm-enabled":true}},"user-data":"00"}}"#);
        let rc = parse_runtime_claims(ok.as_bytes()).unwrap();
        assert_eq!(rc.vm_configuration.get("secure_boot"), Some(&Value::Bool(true)));
        assert_eq!(rc.vm_configuration.get("tpm_enabled"), Some(&Value::Bool(true)));
        assert_eq!(rc.user_data.as_deref(), Some("00"));
        assert!(parse_runtime_claims(br#"{"keys":[]}"#).unwrap_err().contains("no 'HCLAkPub'"));
        let two = format!(r#"{{"keys":[{ak},{ak}]}}"#);
        assert!(parse_runtime_claims(two.as_bytes()).unwrap_err().contains("2 'HCLAkPub'"));
        assert!(parse_runtime_claims(b"[1]").is_err());
        assert!(parse_runtime_claims(b"{").is_err());
        let enc: Value = serde_json::from_str(r#"{"kid":"HCLAkPub","key_ops":["encrypt"],"kty":"RSA","e":"AQAB","n":"AQAB"}"#).unwrap();
        assert!(ak_from_jwk(&enc).unwrap_err().contains("sign"));
    }

    #[test]
    fn raw_signatures_become_tpmt_signatures() {
        let ak = AkPublic::from_rsa(&[0xc5; 256], &[1, 0, 1]).unwrap();
        let raw = vec![7u8; 256];
        let t = tpmt_signature(&raw, &ak, HashAlg::Sha256);
        assert_eq!(&t[..6], &[0x00, 0x14, 0x00, 0x0b, 0x01, 0x00]);
        assert_eq!(quote::parse_signature(&t), Ok(quote::QuoteSignature::RsaSsa { hash: HashAlg::Sha256, sig: raw }));
        // Anything else passes through untouched.
        assert_eq!(tpmt_signature(&[1, 2, 3], &ak, HashAlg::Sha256), vec![1, 2, 3]);
        let ec = AkPublic::from_ecc_xy(quote::EccCurve::P256, &[1; 32], &[2; 32]).unwrap();
        let t = tpmt_signature(&[9u8; 64], &ec, HashAlg::Sha256);
        assert!(matches!(quote::parse_signature(&t), Ok(quote::QuoteSignature::Ecdsa { .. })));
    }
}
