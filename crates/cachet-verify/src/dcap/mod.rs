//! Intel SGX (quote v3) and TDX (quote v4, v5) verification with DCAP ECDSA
//! collateral, following Intel's Quote Verification Library (QVL).
//!
//! Checks, in order, each recorded by name:
//!
//! 1. `Quote format`: parsing by declared lengths and QVL's `Quote::validate`.
//! 2. `PCK certificate` (SGX extensions), `PCK certificate chain` and
//!    `PCK certificate chain validity`: the chain in the quote (certification
//!    data type 5) ends at the pinned Intel SGX Root CA.
//! 3. `QE report signature` (by the PCK key), `QE report data`
//!    (= SHA-256(attestation key || QE auth data)), `Quote signature` (by the
//!    attestation key over header and body).
//! 4. `Collateral`: the Root CA CRL, the PCK CRL of the PCK's issuer, a TCB
//!    Info, a QE Identity and a TCB signing certificate are all present.
//! 5. `TCB Info signing chain` (+ `validity`), `TCB Info signature`,
//!    `TCB Info FMSPC`, `TCB Info TEE`, `TCB Info validity`; the same for
//!    `QE Identity`.
//! 6. `Root CA CRL` and `PCK CRL`: signature, freshness, revocation of the PCK
//!    CA, the TCB signing certificate and the PCK certificate.
//! 7. `QE Identity match`, `QE TCB level`; for TDX `TDX module identity` and
//!    `TDX module TCB level`; `TCB level`; `TCB status` (the QVL combination;
//!    `Revoked` fails).
//!
//! Verification fails on any failed signature, chain, CRL or window check,
//! when no TCB level matches (QVL: `STATUS_TCB_NOT_SUPPORTED`), or when the
//! combined status is `Revoked`. Every other status is a verified result
//! carried in the claims (`tcb_status`, `advisory_ids`) for appraisal policy.

pub mod collateral;
pub mod pck;
pub mod quote;
pub mod tcb;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED};
use serde_json::{json, Map, Value};
use x509_parser::certificate::X509Certificate;

use crate::anchors::AnchorKind;
use crate::x509::{self, fmt_time, parse_cert, VerifiedChain};
use crate::{Checks, UnixTime, VResult, VerifyRequest};
use collateral::{Collateral, CollateralRequest, CollateralSource, EndorsementSource, SignedJson};
use pck::PckExtensions;
use quote::{Body, Quote, QuoteTee};
use tcb::{QeIdentity, TcbInfo, TcbStatus};

/// Verify an Intel SGX DCAP quote (v3, or v5 with an SGX body) against the
/// collateral in the endorsements; with an expected nonce, REPORTDATA must
/// begin with it.
pub fn verify_sgx(req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<Value> {
    let claims = verify_with_source(req, checks, QuoteTee::Sgx, &EndorsementSource { endorsements: req.endorsements })?;
    check_nonce(req, &claims, checks)?;
    Ok(claims)
}

/// Verify an Intel TDX DCAP quote (v4, v5 with a TD 1.0 or 1.5 body) against
/// the collateral in the endorsements; with an expected nonce, REPORTDATA
/// must be it (see [`crate::nonce`]). Also used on the TD quote inside Azure TDX evidence.
pub fn verify_tdx(req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<Value> {
    let claims = verify_with_source(req, checks, QuoteTee::Tdx, &EndorsementSource { endorsements: req.endorsements })?;
    check_nonce(req, &claims, checks)?;
    Ok(claims)
}

/// The caller's freshness nonce, when given, is the whole of REPORTDATA
/// (zero-padded, see [`crate::nonce`]): the only field of a quote the
/// workload chooses.
fn check_nonce(req: &VerifyRequest<'_>, claims: &Value, checks: &mut Checks) -> VResult<()> {
    let Some(nonce) = req.expected_nonce else { return Ok(()) };
    let data = claims.get("report_data").and_then(Value::as_str).and_then(|h| hex::decode(h).ok()).unwrap_or_default();
    crate::nonce::record(checks, "Nonce", "REPORTDATA", &data, nonce)
}

const CN_PCK: &str = "SGX PCK Certificate";
const CN_INTERMEDIATE: &str = "CA";
const CN_TCB_SIGNING: &str = "SGX TCB Signing";

/// Verify a quote of the expected TEE with collateral from `source` (the
/// endorsements, or later an Intel PCS / PCCS client).
pub fn verify_with_source(req: &VerifyRequest<'_>, checks: &mut Checks, want: QuoteTee, source: &dyn CollateralSource) -> VResult<Value> {
    let at = req.at;
    let q = match quote::parse(req.evidence).and_then(|q| quote::validate(&q, want).map(|()| q)) {
        Ok(q) => {
            checks.pass("Quote format", q.describe());
            q
        }
        Err(e) => return Err(checks.fail("Quote format", e)),
    };

    // --- PCK certificate and chain to the pinned root ---------------------
    let (leaf_der, pool) = pck_chain_input(&q, req, checks)?;
    let leaf = match parse_cert(&leaf_der) {
        Ok(c) => c,
        Err(e) => return Err(checks.fail("PCK certificate", format!("PCK leaf: {e}"))),
    };
    let pck = match check_pck_leaf(&leaf) {
        Ok(p) => {
            checks
                .pass("PCK certificate", format!("FMSPC {}, PCE ID {}, PCESVN {}", hex::encode(p.fmspc), hex::encode(p.pce_id), p.pce_svn));
            p
        }
        Err(e) => return Err(checks.fail("PCK certificate", e)),
    };
    let chain = verified_chain(
        "PCK certificate chain",
        &leaf_der,
        &pool,
        req,
        checks,
        ChainShape { len: 3, intermediate_cn: Some(CN_INTERMEDIATE) },
    )?;
    let intermediate_der = chain.certs.get(1).cloned().unwrap_or_default();
    let root_der = chain.certs.last().cloned().unwrap_or_default();

    // --- QE report and quote signatures ------------------------------------
    verify_raw_p256(
        checks,
        "QE report signature",
        leaf.public_key().subject_public_key.data.as_ref(),
        q.qe_report_raw,
        &q.qe_report_signature,
        "QE report signed by the PCK key",
    )?;
    let mut hashed = Vec::with_capacity(64 + q.qe_auth_data.len());
    hashed.extend_from_slice(&q.attestation_key);
    hashed.extend_from_slice(q.qe_auth_data);
    let expect = digest::digest(&digest::SHA256, &hashed);
    checks.require(
        "QE report data",
        q.qe_report.report_data.get(..32) == Some(expect.as_ref()),
        "SHA-256(attestation key || QE authentication data) matches",
        format!(
            "QE report data {} is not SHA-256(attestation key || QE authentication data) = {}",
            hex::encode(q.qe_report.report_data.get(..32).unwrap_or_default()),
            hex::encode(expect.as_ref())
        ),
    )?;
    let mut ak = Vec::with_capacity(65);
    ak.push(0x04);
    ak.extend_from_slice(&q.attestation_key);
    verify_raw_p256(checks, "Quote signature", &ak, q.signed, &q.signature, "header and body signed by the attestation key")?;

    // --- Collateral ---------------------------------------------------------
    let request = CollateralRequest {
        tee: want,
        fmspc: pck.fmspc,
        pce_id: pck.pce_id,
        pck_ca: if issuer_cn(&leaf).to_ascii_lowercase().contains("processor") { "processor".into() } else { "platform".into() },
    };
    let coll = match source.collateral(&request) {
        Ok(c) => c,
        Err(e) => return Err(checks.fail("Collateral", e)),
    };
    let sel = select(&coll, want, &pck, &leaf, &root_der, at, checks)?;

    // --- TCB Info -------------------------------------------------------------
    let tcb_signer = verify_signed_json("TCB Info", sel.tcb_info_raw, &sel.signing_certs, &coll, req, checks)?;
    let info = match &sel.tcb_info {
        Ok(i) => i,
        Err(e) => return Err(checks.fail("TCB Info format", format!("{e} ({})", sel.tcb_info_raw.source))),
    };
    checks.require(
        "TCB Info FMSPC",
        info.fmspc == pck.fmspc && info.pce_id == pck.pce_id,
        format!("FMSPC {} and PCE ID {} match the PCK certificate", hex::encode(info.fmspc), hex::encode(info.pce_id)),
        format!(
            "TCB Info is for FMSPC {} / PCE ID {}, the PCK certificate for FMSPC {} / PCE ID {}",
            hex::encode(info.fmspc),
            hex::encode(info.pce_id),
            hex::encode(pck.fmspc),
            hex::encode(pck.pce_id)
        ),
    )?;
    let info_tee_ok = match want {
        QuoteTee::Tdx => info.is_tdx(),
        QuoteTee::Sgx => info.id == "SGX",
    };
    checks.require(
        "TCB Info TEE",
        info_tee_ok,
        format!("TCB Info v{} {}", info.version, info.id),
        format!("TCB Info v{} {} cannot assess a {} quote", info.version, info.id, want.name().to_uppercase()),
    )?;
    window_check(checks, "TCB Info validity", info.issue_date, info.next_update, at)?;

    // --- QE Identity ----------------------------------------------------------
    let qe_signer = verify_signed_json("QE Identity", sel.qe_identity_raw, &sel.signing_certs, &coll, req, checks)?;
    let qe_id = match &sel.qe_identity {
        Ok(i) => i,
        Err(e) => return Err(checks.fail("QE Identity format", format!("{e} ({})", sel.qe_identity_raw.source))),
    };
    let (want_qe, qe_versions) = match want {
        QuoteTee::Sgx => ("QE", 2..=3),
        QuoteTee::Tdx => ("TD_QE", 2..=3),
    };
    checks.require(
        "QE Identity TEE",
        qe_id.id == want_qe && qe_versions.contains(&qe_id.version),
        format!("QE Identity v{} {}", qe_id.version, qe_id.id),
        format!("QE Identity v{} {} cannot assess a {} quote (needs {want_qe} v2)", qe_id.version, qe_id.id, want.name().to_uppercase()),
    )?;
    window_check(checks, "QE Identity validity", qe_id.issue_date, qe_id.next_update, at)?;

    // --- CRLs ---------------------------------------------------------------
    let mut root_subjects = vec![("PCK CA", intermediate_der.as_slice()), ("TCB signing certificate", tcb_signer.as_slice())];
    if qe_signer != tcb_signer {
        root_subjects.push(("TCB signing certificate", qe_signer.as_slice()));
    }
    crl_check(checks, "Root CA CRL", sel.root_crl, &root_der, &root_subjects, at)?;
    crl_check(checks, "PCK CRL", sel.pck_crl, &intermediate_der, &[("PCK certificate", leaf_der.as_slice())], at)?;

    // --- QE Identity and QE TCB -------------------------------------------------
    let qr = &q.qe_report;
    checks.record(
        "QE Identity match",
        tcb::match_qe_identity(qe_id, &qr.misc_select, &qr.attributes, &qr.mr_signer, qr.isv_prod_id),
        format!("MRSIGNER, ISVPRODID {}, MISCSELECT and ATTRIBUTES match {}", qr.isv_prod_id, qe_id.id),
    )?;
    let qe_level = match tcb::match_simple_level(&qe_id.levels, qr.isv_svn) {
        Some(l) => {
            checks.pass("QE TCB level", format!("QE ISVSVN {} -> {} ({})", qr.isv_svn, l.status, l.tcb_date));
            l
        }
        None => {
            return Err(
                checks.fail("QE TCB level", format!("QE ISVSVN {} is below every level of the QE Identity: TCB not supported", qr.isv_svn))
            )
        }
    };

    // --- Platform TCB ---------------------------------------------------------------
    let td = q.body.td();
    let tee_tcb_svn = td.map(|t| &t.tee_tcb_svn);
    let module_ident = match td {
        Some(t) if info.is_tdx() => Some(check_module_identity(info, &q, t, checks)?),
        _ => None,
    };
    let matched = tcb::match_levels(info, &pck.cpu_svn_components, pck.pce_svn, tee_tcb_svn.filter(|_| info.is_tdx()));
    let Some(sgx_level) = matched.sgx else {
        return Err(checks.fail("TCB level", no_level_message(info, &pck, None)));
    };
    let platform_level = if td.is_some() {
        match matched.tdx {
            Some(l) => l,
            None => return Err(checks.fail("TCB level", no_level_message(info, &pck, tee_tcb_svn))),
        }
    } else {
        sgx_level
    };
    checks.pass(
        "TCB level",
        format!(
            "PCK SGX components {} PCESVN {}{} meet the level of {}: {}",
            hex::encode(pck.cpu_svn_components),
            pck.pce_svn,
            tee_tcb_svn.map(|t| format!(", TEE_TCB_SVN {}", hex::encode(t))).unwrap_or_default(),
            platform_level.tcb_date,
            platform_level.status
        ),
    );
    let mut advisories = platform_level.advisory_ids.clone();
    let mut module_status = None;
    let status = match (td, module_ident) {
        (Some(t), Some(ident)) => {
            let (mstatus, madv) = module_tcb_level(&q, t, ident, checks)?;
            tcb::merge_advisories(&mut advisories, &madv);
            module_status = Some(mstatus);
            let mut s = tcb::converge_with_module(platform_level.status, mstatus);
            if s != TcbStatus::Revoked {
                if let (Body::Td15(_), Some(svn2)) = (&q.body, t.tee_tcb_svn2.as_ref()) {
                    s = match tcb::check_relaunch(info, svn2, sgx_level.status, s, mstatus, qe_level.status) {
                        Ok(s) => s,
                        Err(tcb::RelaunchError::ModuleMismatch(e)) => {
                            return Err(checks.fail("TDX module identity", format!("TEE_TCB_SVN2: {e}")))
                        }
                        Err(tcb::RelaunchError::NotSupported(e)) => return Err(checks.fail("TCB level", e)),
                    };
                }
                s = tcb::converge_with_qe(s, qe_level.status);
            }
            s
        }
        _ => tcb::converge_with_qe(platform_level.status, qe_level.status),
    };
    tcb::merge_advisories(&mut advisories, &qe_level.advisory_ids);
    let parts = format!(
        "platform {}{}, QE {}",
        platform_level.status,
        module_status.map(|m| format!(", TDX module {m}")).unwrap_or_default(),
        qe_level.status
    );
    checks.require("TCB status", status != TcbStatus::Revoked, format!("{status} ({parts})"), format!("TCB is Revoked ({parts})"))?;

    let mut claims = body_claims(&q);
    let c = &mut claims;
    c.insert("tcb_status".into(), json!(status.as_str()));
    c.insert("advisory_ids".into(), json!(advisories));
    c.insert("platform_tcb_status".into(), json!(platform_level.status.as_str()));
    c.insert("qe_tcb_status".into(), json!(qe_level.status.as_str()));
    if let Some(m) = module_status {
        c.insert("tdx_module_tcb_status".into(), json!(m.as_str()));
    }
    c.insert("tcb_date".into(), json!(platform_level.tcb_date));
    c.insert("qe_tcb_date".into(), json!(qe_level.tcb_date));
    c.insert("fmspc".into(), json!(hex::encode(pck.fmspc)));
    c.insert("pce_id".into(), json!(hex::encode(pck.pce_id)));
    c.insert("pck_cpu_svn".into(), json!(hex::encode(pck.cpu_svn)));
    c.insert("pck_pce_svn".into(), json!(pck.pce_svn));
    c.insert("ppid".into(), json!(hex::encode(&pck.ppid)));
    c.insert("pck_ca".into(), json!(request.pck_ca));
    c.insert("tcb_info_issue_date".into(), json!(info.issue_date_str));
    c.insert("tcb_info_next_update".into(), json!(info.next_update_str));
    c.insert("tcb_evaluation_data_number".into(), json!(info.tcb_evaluation_data_number));
    c.insert("qe_identity_issue_date".into(), json!(qe_id.issue_date_str));
    c.insert("qe_identity_next_update".into(), json!(qe_id.next_update_str));
    c.insert("qe_isv_svn".into(), json!(qr.isv_svn));
    Ok(Value::Object(claims))
}

/// The PCK leaf and candidate intermediates: from the quote (type 5), else
/// from the endorsements (types 1-4 carry only platform identifiers).
fn pck_chain_input(q: &Quote<'_>, req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<(Vec<u8>, Vec<Vec<u8>>)> {
    if q.cert_data_type == quote::CERT_TYPE_PCK_CHAIN {
        let mut certs = x509::certs_from_pem(q.cert_data);
        if certs.is_empty() {
            return Err(checks.fail("PCK certificate chain", "the certification data holds no PEM certificate"));
        }
        let leaf = certs.remove(0);
        return Ok((leaf, certs));
    }
    let coll = collateral::from_endorsements(req.endorsements);
    // PCS returns one PCK certificate per TCB level of a platform (and a
    // bundle may hold several platforms'), each with its own key: the one
    // that signed this quote's QE report is the one to verify; failing
    // that, the first, so that the checks below name what is wrong.
    let pcks: Vec<&Vec<u8>> =
        coll.certs.iter().filter(|der| parse_cert(der).map(|c| cert_cn(&c).contains(CN_PCK)).unwrap_or(false)).collect();
    let signed_qe_report = |der: &&&Vec<u8>| {
        parse_cert(der)
            .map(|c| {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, c.public_key().subject_public_key.data.as_ref())
                    .verify(q.qe_report_raw, &q.qe_report_signature)
                    .is_ok()
            })
            .unwrap_or(false)
    };
    let leaf = pcks.iter().find(signed_qe_report).or(pcks.first()).map(|d| (*d).clone());
    match leaf {
        Some(l) => Ok((l, coll.certs.clone())),
        None => Err(checks.fail(
            "Collateral",
            format!(
                "the quote's certification data (type {}) carries no PCK certificate chain, and no PCK certificate is in the endorsements",
                q.cert_data_type
            ),
        )),
    }
}

fn issuer_cn(c: &X509Certificate<'_>) -> String {
    c.issuer().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or("").to_string()
}

fn cert_cn(c: &X509Certificate<'_>) -> String {
    c.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or("").to_string()
}

/// QVL 4.1.2.4.4: the leaf is a PCK certificate with P-256 key and SGX extensions.
fn check_pck_leaf(leaf: &X509Certificate<'_>) -> Result<PckExtensions, String> {
    let cn = cert_cn(leaf);
    if !cn.contains(CN_PCK) {
        return Err(format!("leaf CN \"{cn}\" is not an \"{CN_PCK}\""));
    }
    if x509::ec_curve(leaf.public_key()) != Some("P-256") {
        return Err("the PCK key is not an ECDSA P-256 key".into());
    }
    pck::parse_pck_extensions(leaf)
}

/// Expected shape of a chain (QVL: PCK chains have 3 certificates, TCB signing chains 2).
#[derive(Debug, Clone, Copy)]
struct ChainShape {
    len: usize,
    intermediate_cn: Option<&'static str>,
}

/// [`x509::verify_chain`] to the Intel SGX Root CA anchors, plus QVL's shape checks.
fn verified_chain(
    name: &str,
    leaf: &[u8],
    pool: &[Vec<u8>],
    req: &VerifyRequest<'_>,
    checks: &mut Checks,
    shape: ChainShape,
) -> VResult<VerifiedChain> {
    let mut tmp = Checks::new();
    let roots: Vec<&crate::anchors::Anchor> = req.anchors.of_kind(AnchorKind::IntelSgxRoot).collect();
    // Cached by content when a cache is in scope (validity re-checked at `at`).
    let res = crate::cache::verify_chain(name, leaf, pool, roots.iter().copied(), req.at, &mut tmp);
    let chain = match res {
        Ok(c) => c,
        Err(e) => {
            checks.extend_prefixed("", tmp);
            return Err(e);
        }
    };
    if chain.certs.len() != shape.len {
        return Err(checks.fail(name, format!("{} certificates to the root, Intel's chains have {}", chain.certs.len(), shape.len)));
    }
    if let Some(phrase) = shape.intermediate_cn {
        let cn = chain.certs.get(1).and_then(|d| parse_cert(d).ok()).map(|c| cert_cn(&c)).unwrap_or_default();
        if !cn.contains(phrase) {
            return Err(checks.fail(name, format!("intermediate CN \"{cn}\" is not a CA of the SGX PKI")));
        }
    }
    checks.extend_prefixed("", tmp);
    Ok(chain)
}

/// Verify an ECDSA P-256 signature given as raw r || s (64 bytes) with an
/// uncompressed SEC1 public key, recording `name`.
fn verify_raw_p256(checks: &mut Checks, name: &str, key: &[u8], msg: &[u8], sig: &[u8], ok: &str) -> VResult<()> {
    let r = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key).verify(msg, sig);
    checks.require(name, r.is_ok(), ok, "signature does not verify")
}

/// `issue <= at <= next` (both inclusive); `name` is the check, e.g.
/// "TCB Info validity" for the document "TCB Info".
fn window_check(checks: &mut Checks, name: &str, issue: UnixTime, next: UnixTime, at: UnixTime) -> VResult<()> {
    let what = name.strip_suffix(" validity").unwrap_or(name);
    if let Err(e) = x509::check_window(what, ("issueDate", issue), ("nextUpdate", next), at) {
        return Err(checks.fail(name, format!("{e}; {}", x509::REFRESH_ENDORSEMENTS)));
    }
    checks.pass(name, format!("issued {}, next update {}", fmt_time(issue), fmt_time(next)));
    Ok(())
}

/// The pieces of collateral chosen for this quote.
struct Selected<'c> {
    root_crl: &'c [u8],
    pck_crl: &'c [u8],
    tcb_info_raw: &'c SignedJson,
    tcb_info: Result<std::sync::Arc<TcbInfo>, String>,
    qe_identity_raw: &'c SignedJson,
    qe_identity: Result<std::sync::Arc<QeIdentity>, String>,
    signing_certs: Vec<Vec<u8>>,
}

/// Among candidates with an issue time, the newest already issued at `at`,
/// else the earliest (which then fails its window check by name).
fn pick_by_time<T>(mut items: Vec<(UnixTime, T)>, at: UnixTime) -> Option<T> {
    items.sort_by_key(|(t, _)| *t);
    let idx = items.iter().rposition(|(t, _)| *t <= at).unwrap_or(0);
    if idx < items.len() {
        Some(items.swap_remove(idx).1)
    } else {
        None
    }
}

/// A filter over parse results, for [`pick_preferred`].
type Tier<'a, T> = dyn Fn(&Result<T, String>) -> bool + 'a;

/// Choose among parsed candidates: those `preferred` (fitting the platform),
/// else any parsed one, else an unparsable one; by issue time (see
/// [`pick_by_time`]).
fn pick_preferred<'c, T: Clone>(
    items: &[(&'c SignedJson, Result<T, String>)],
    preferred: impl Fn(&Result<T, String>) -> bool,
    issued: impl Fn(&Result<T, String>) -> Option<UnixTime>,
    at: UnixTime,
) -> Option<(&'c SignedJson, Result<T, String>)> {
    let tiers: [&Tier<'_, T>; 3] = [&preferred, &|r| r.is_ok(), &|_| true];
    for tier in tiers {
        let cands: Vec<_> =
            items.iter().filter(|(_, r)| tier(r)).map(|(sj, r)| (issued(r).unwrap_or(UnixTime::MIN), (*sj, r.clone()))).collect();
        if !cands.is_empty() {
            return pick_by_time(cands, at);
        }
    }
    None
}

/// Choose the CRLs, TCB Info and QE Identity for this platform; name every
/// missing piece in one `Collateral` failure.
#[allow(clippy::too_many_arguments)]
fn select<'c>(
    coll: &'c Collateral,
    want: QuoteTee,
    pck: &PckExtensions,
    leaf: &X509Certificate<'_>,
    root_der: &[u8],
    at: UnixTime,
    checks: &mut Checks,
) -> VResult<Selected<'c>> {
    let mut missing: Vec<String> = Vec::new();
    let root_subject = parse_cert(root_der).map(|c| c.subject().as_raw().to_vec()).unwrap_or_default();
    let pck_issuer = leaf.issuer().as_raw();
    let mut root_crls = Vec::new();
    let mut pck_crls = Vec::new();
    for c in &coll.crls {
        let Ok(crl) = x509::parse_crl(&c.der) else { continue };
        let issuer = crl.issuer().as_raw();
        let when = crl.last_update().timestamp();
        if issuer == root_subject.as_slice() {
            root_crls.push((when, c.der.as_slice()));
        } else if issuer == pck_issuer {
            pck_crls.push((when, c.der.as_slice()));
        }
    }
    let root_crl = pick_by_time(root_crls, at);
    if root_crl.is_none() {
        missing.push("no Root CA CRL in the endorsements".into());
    }
    let pck_crl = pick_by_time(pck_crls, at);
    if pck_crl.is_none() {
        missing.push(format!("no PCK CRL in the endorsements (issued by \"{}\")", leaf.issuer()));
    }

    let problems = coll.problems.clone();
    // Parsed structures that fit the platform are preferred; an unparsable one
    // is still selected when it is all there is, so that tampering is reported
    // by its signature check rather than as a missing piece.
    // Parsed once per distinct signed text while a verification cache is in
    // scope (the signature over it is still checked on every call).
    let infos: Vec<(&SignedJson, Result<std::sync::Arc<TcbInfo>, String>)> = coll
        .tcb_infos
        .iter()
        .map(|sj| (sj, crate::cache::parsed("dcap-tcb-info", sj.body.as_bytes(), || TcbInfo::parse(&sj.body))))
        .collect();
    let fits = |i: &TcbInfo| i.fmspc == pck.fmspc && i.pce_id == pck.pce_id && (i.is_tdx() == (want == QuoteTee::Tdx));
    let tcb = pick_preferred(&infos, |r| r.as_ref().is_ok_and(|i| fits(i)), |r| r.as_ref().map(|i| i.issue_date).ok(), at);
    if tcb.is_none() {
        missing.push("no TCB Info in the endorsements".into());
    }
    let ids: Vec<(&SignedJson, Result<std::sync::Arc<QeIdentity>, String>)> = coll
        .qe_identities
        .iter()
        .map(|sj| (sj, crate::cache::parsed("dcap-qe-identity", sj.body.as_bytes(), || QeIdentity::parse(&sj.body))))
        .collect();
    let want_id = if want == QuoteTee::Tdx { "TD_QE" } else { "QE" };
    let qe = pick_preferred(&ids, |r| r.as_ref().is_ok_and(|i| i.id == want_id), |r| r.as_ref().map(|i| i.issue_date).ok(), at);
    if qe.is_none() {
        missing.push("no QE Identity in the endorsements".into());
    }

    let mut signing_certs: Vec<Vec<u8>> = Vec::new();
    let chains = coll.tcb_infos.iter().chain(&coll.qe_identities).flat_map(|s| s.issuer_chain.iter());
    for der in chains.chain(coll.certs.iter()) {
        let is_signer = parse_cert(der).map(|c| cert_cn(&c).contains(CN_TCB_SIGNING)).unwrap_or(false);
        if is_signer && !signing_certs.contains(der) {
            signing_certs.push(der.clone());
        }
    }
    if signing_certs.is_empty() {
        missing.push("no TCB signing certificate in the endorsements".into());
    }

    match (root_crl, pck_crl, tcb, qe, missing.is_empty()) {
        (Some(root_crl), Some(pck_crl), Some((tsj, tinfo)), Some((qsj, qinfo)), true) => {
            checks.pass("Collateral", coll.summary());
            Ok(Selected { root_crl, pck_crl, tcb_info_raw: tsj, tcb_info: tinfo, qe_identity_raw: qsj, qe_identity: qinfo, signing_certs })
        }
        _ => {
            let mut msg = missing.join("; ");
            if !problems.is_empty() {
                msg.push_str(&format!(" (unreadable: {})", problems.join("; ")));
            }
            Err(checks.fail("Collateral", msg))
        }
    }
}

/// Verify Intel's signature over a TCB Info / QE Identity text with a TCB
/// signing certificate, and that certificate's chain to the root. Records
/// `"{what} signing chain"` (+ `validity`) and `"{what} signature"`; returns
/// the signing certificate (DER) for the Root CA CRL check.
fn verify_signed_json(
    what: &str,
    sj: &SignedJson,
    signing_certs: &[Vec<u8>],
    coll: &Collateral,
    req: &VerifyRequest<'_>,
    checks: &mut Checks,
) -> VResult<Vec<u8>> {
    let sig_name = format!("{what} signature");
    // Candidates: the structure's own issuer chain first, then any other;
    // certificates valid at `at` before expired ones (Intel re-issued the TCB
    // signing certificate with the same key).
    let mut cands: Vec<&Vec<u8>> = signing_certs
        .iter()
        .filter(|d| sj.issuer_chain.contains(d))
        .chain(signing_certs.iter().filter(|d| !sj.issuer_chain.contains(d)))
        .collect();
    cands.sort_by_key(|d| parse_cert(d).map(|c| x509::check_validity(&c, req.at).is_err()).unwrap_or(true));
    // Collateral, not evidence: a signature that verified once for the same
    // signer, body and signature bytes is remembered when a cache is in scope.
    let verifies = |der: &[u8]| -> bool {
        crate::cache::collateral_signature("dcap-signed-json-p256", der, sj.body.as_bytes(), &sj.signature, || {
            let c = parse_cert(der)?;
            let key = c.public_key().subject_public_key.data.as_ref();
            let alg: &'static dyn aws_lc_rs::signature::VerificationAlgorithm =
                if sj.signature.len() == 64 { &ECDSA_P256_SHA256_FIXED } else { &ECDSA_P256_SHA256_ASN1 };
            if x509::ec_curve(c.public_key()) != Some("P-256") {
                return Err("not a P-256 key".into());
            }
            UnparsedPublicKey::new(alg, key).verify(sj.body.as_bytes(), &sj.signature).map_err(|_| "does not verify".to_string())
        })
        .is_ok()
    };
    let Some(signer) = cands.into_iter().find(|d| verifies(d)).cloned() else {
        return Err(checks.fail(
            &sig_name,
            format!("the signature over the {what} JSON does not verify with any TCB signing certificate ({})", sj.source),
        ));
    };
    let mut pool = sj.issuer_chain.clone();
    pool.extend(coll.certs.iter().cloned());
    verified_chain(&format!("{what} signing chain"), &signer, &pool, req, checks, ChainShape { len: 2, intermediate_cn: None })?;
    checks.pass(&sig_name, format!("signed by \"{}\"", x509::subject_of(&signer)));
    Ok(signer)
}

/// Verify a CRL (issuer, signature, thisUpdate <= at <= nextUpdate) and that
/// none of `subjects` is revoked by it. One check named `name`.
fn crl_check(checks: &mut Checks, name: &str, crl_der: &[u8], issuer_der: &[u8], subjects: &[(&str, &[u8])], at: UnixTime) -> VResult<()> {
    let mut tmp = Checks::new();
    let crl = match crate::cache::verify_crl(name, crl_der, issuer_der, at, &mut tmp) {
        Ok(c) => c,
        Err(e) => {
            checks.extend_prefixed("", tmp);
            return Err(e);
        }
    };
    for (what, der) in subjects {
        let Ok(cert) = parse_cert(der) else { continue };
        let serial = cert.raw_serial();
        if crl.is_revoked(serial) {
            return Err(
                checks.fail(name, format!("certificate revoked (serial {}): the {what} \"{}\"", hex::encode(serial), cert.subject()))
            );
        }
    }
    checks.extend_prefixed("", tmp);
    Ok(())
}

/// QVL 4.1.2.4.11: MRSIGNERSEAM and SEAMATTRIBUTES against `tdxModule`, or
/// against the identity `TDX_<TEE_TCB_SVN[1]>` when the module version is set.
fn check_module_identity<'i>(info: &'i TcbInfo, q: &Quote<'_>, td: &quote::TdReport, checks: &mut Checks) -> VResult<ModuleIdent<'i>> {
    let name = "TDX module identity";
    let Some(base) = info.tdx_module.as_ref() else {
        return Err(checks.fail(name, "the TDX TCB Info has no tdxModule"));
    };
    let version = td.tee_tcb_svn[1];
    let ident = if q.header.version > 3 && version > 0 {
        if info.tdx_module_identities.is_none() {
            return Err(checks.fail(name, format!("TDX module version {version} but the TCB Info has no tdxModuleIdentities")));
        }
        match tcb::find_module_identity(info, version) {
            Some(m) => ModuleIdent::Identity(m),
            None => {
                return Err(checks.fail(
                    name,
                    format!("the TCB Info has no TDX module identity {} for TEE_TCB_SVN[1] = {version}", tcb::module_id(version)),
                ))
            }
        }
    } else {
        ModuleIdent::Base
    };
    let expected = match ident {
        ModuleIdent::Identity(m) => m,
        ModuleIdent::Base => base,
    };
    if td.mr_signer_seam != expected.mrsigner {
        return Err(checks.fail(name, format!("MRSIGNERSEAM {} is not {}", hex::encode(td.mr_signer_seam), hex::encode(expected.mrsigner))));
    }
    // QVL requires SEAMATTRIBUTES to be zero and equal to the expected value.
    if td.seam_attributes != [0u8; 8] || td.seam_attributes != expected.attributes {
        return Err(checks.fail(
            name,
            format!("SEAMATTRIBUTES {} are not zero / not {}", hex::encode(td.seam_attributes), hex::encode(expected.attributes)),
        ));
    }
    let which = if expected.id.is_empty() { "tdxModule".to_string() } else { expected.id.clone() };
    checks.pass(name, format!("MRSIGNERSEAM and SEAMATTRIBUTES match {which}"));
    Ok(ident)
}

/// Which module expectations applied.
#[derive(Debug, Clone, Copy)]
enum ModuleIdent<'i> {
    /// The base `tdxModule` (module version 0): no module TCB levels.
    Base,
    /// A `tdxModuleIdentities` entry with its own TCB levels.
    Identity(&'i tcb::TdxModule),
}

/// QVL `checkTdxModuleTcbStatus`: the module's ISVSVN (TEE_TCB_SVN[0]) against
/// the identity's levels. Version 0 modules are up to date by definition.
fn module_tcb_level(q: &Quote<'_>, td: &quote::TdReport, ident: ModuleIdent<'_>, checks: &mut Checks) -> VResult<(TcbStatus, Vec<String>)> {
    let name = "TDX module TCB level";
    let (isv, version) = (td.tee_tcb_svn[0], td.tee_tcb_svn[1]);
    match ident {
        ModuleIdent::Identity(m) => match tcb::match_simple_level(&m.levels, u16::from(isv)) {
            Some(l) => {
                checks.pass(name, format!("{} ISVSVN {isv} -> {} ({})", m.id, l.status, l.tcb_date));
                Ok((l.status, l.advisory_ids.clone()))
            }
            None => Err(checks.fail(name, format!("TDX module ISVSVN {isv} is below every level of {}: TCB not supported", m.id))),
        },
        ModuleIdent::Base if q.header.version > 3 && version == 0 => {
            checks.pass(name, "TDX module version 0: judged by the TDX TCB components");
            Ok((TcbStatus::UpToDate, Vec::new()))
        }
        ModuleIdent::Base => Err(checks.fail(name, format!("no TDX module identity for module version {version}"))),
    }
}

fn no_level_message(info: &TcbInfo, pck: &PckExtensions, tee: Option<&[u8; 16]>) -> String {
    let lowest = info
        .levels
        .last()
        .map(|l| {
            format!(
                "; the lowest level ({}) needs SGX components {} PCESVN {}{}",
                l.tcb_date,
                hex::encode(l.sgx),
                l.pce_svn,
                l.tdx.map(|t| format!(" TDX components {}", hex::encode(t))).unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let what = match tee {
        None => format!(
            "no TCB level is met by the platform's SGX components {} and PCESVN {}",
            hex::encode(pck.cpu_svn_components),
            pck.pce_svn
        ),
        Some(t) => format!(
            "no TCB level is met by the platform's SGX components {}, PCESVN {} and TEE_TCB_SVN {}",
            hex::encode(pck.cpu_svn_components),
            pck.pce_svn,
            hex::encode(t)
        ),
    };
    format!(
        "{what} in the TCB Info for FMSPC {} (evaluation data number {}): TCB not supported{lowest}",
        hex::encode(info.fmspc),
        info.tcb_evaluation_data_number.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
    )
}

/// Claims from the quote itself: identity of the workload and its measurements.
fn body_claims(q: &Quote<'_>) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("tee".into(), json!(q.tee().name()));
    c.insert("quote_version".into(), json!(q.header.version));
    match &q.body {
        Body::Sgx(r) => {
            c.insert("mr_enclave".into(), json!(hex::encode(r.mr_enclave)));
            c.insert("mr_signer".into(), json!(hex::encode(r.mr_signer)));
            c.insert("isv_prod_id".into(), json!(r.isv_prod_id));
            c.insert("isv_svn".into(), json!(r.isv_svn));
            c.insert("attributes".into(), json!(hex::encode(r.attributes)));
            c.insert("misc_select".into(), json!(hex::encode(r.misc_select)));
            c.insert("cpu_svn".into(), json!(hex::encode(r.cpu_svn)));
            c.insert("config_id".into(), json!(hex::encode(r.config_id)));
            c.insert("config_svn".into(), json!(r.config_svn));
            c.insert("isv_ext_prod_id".into(), json!(hex::encode(r.isv_ext_prod_id)));
            c.insert("isv_family_id".into(), json!(hex::encode(r.isv_family_id)));
            c.insert("report_data".into(), json!(hex::encode(r.report_data)));
            c.insert("debug".into(), json!(r.debug()));
        }
        Body::Td10(t) | Body::Td15(t) => {
            c.insert("tdx_version".into(), json!(if t.tee_tcb_svn2.is_some() { "1.5" } else { "1.0" }));
            c.insert("mr_td".into(), json!(hex::encode(t.mr_td)));
            c.insert("mr_config_id".into(), json!(hex::encode(t.mr_config_id)));
            c.insert("mr_owner".into(), json!(hex::encode(t.mr_owner)));
            c.insert("mr_owner_config".into(), json!(hex::encode(t.mr_owner_config)));
            for (i, r) in t.rtmr.iter().enumerate() {
                c.insert(format!("rtmr{i}"), json!(hex::encode(r)));
            }
            c.insert("td_attributes".into(), json!(hex::encode(t.td_attributes)));
            c.insert("xfam".into(), json!(hex::encode(t.xfam)));
            c.insert("tee_tcb_svn".into(), json!(hex::encode(t.tee_tcb_svn)));
            c.insert("mr_seam".into(), json!(hex::encode(t.mr_seam)));
            c.insert("mr_signer_seam".into(), json!(hex::encode(t.mr_signer_seam)));
            c.insert("seam_attributes".into(), json!(hex::encode(t.seam_attributes)));
            c.insert("tdx_module_isv_svn".into(), json!(t.tee_tcb_svn[0]));
            c.insert("tdx_module_version".into(), json!(t.tee_tcb_svn[1]));
            if let Some(s) = t.tee_tcb_svn2 {
                c.insert("tee_tcb_svn2".into(), json!(hex::encode(s)));
            }
            if let Some(m) = t.mr_service_td {
                c.insert("mr_service_td".into(), json!(hex::encode(m)));
            }
            c.insert("report_data".into(), json!(hex::encode(t.report_data)));
            c.insert("debug".into(), json!(t.debug()));
        }
    }
    c
}
