//! NVIDIA H100 (Hopper) GPU in confidential-computing mode.
//!
//! Evidence is the GPU attestation report: an SPDM 1.1 `GET_MEASUREMENTS`
//! request (with the verifier's 32-byte nonce) followed by the signed
//! `MEASUREMENTS` response (see [`spdm`]). It is verified as NVIDIA's own
//! verifier does (nvtrust `local_gpu_verifier`, `cc_admin.attest`):
//!
//! | check | what |
//! |---|---|
//! | `SPDM format` | request/response parsed strictly by declared lengths |
//! | `Nonce` | request nonce equals the expected nonce (when one is given) |
//! | `Device certificate chain` (+ `validity`) | leaf to the pinned NVIDIA Device Identity CA |
//! | `Device certificate FWID` | the leaf's DICE FWID equals the report's FWID field (when the report has one) |
//! | `SPDM signature` | ECDSA P-384/SHA-384, raw `r‖s`, by the leaf over request ‖ response-before-signature |
//! | `RIM format` / `RIM signature (driver)` / `RIM certificate chain (driver)` (+ `validity`) | each RIM supplied: SWID structure, XML-DSig, chain to the pinned NVIDIA RIM root |
//! | `RIM index overlap` | driver and VBIOS RIMs do not both claim an index |
//! | `RIM measurements (driver)` / `(vbios)` | every active golden index matches the report |
//!
//! **RIM pairing.** The evidence, not whoever supplies the RIMs, decides
//! which RIMs apply. NVIDIA's verifier fetches them by id from the signed
//! report: `NV_GPU_DRIVER_GH100_<driver version>` (Blackwell:
//! `NV_GPU_CC_DRIVER_<chip>_<driver version>`) and
//! `NV_GPU_VBIOS_<project>_<project SKU>_<chip SKU>_<VBIOS version>`
//! (claim `rim_ids`). A RIM is that id when its signed `colloquialVersion`
//! equals the report's driver version (driver RIM) or VBIOS version (VBIOS
//! RIM) and its signed `product` is this GPU's chip; any other RIM is still
//! authenticated (a forged endorsement is refused whatever it describes) but
//! ignored (`rims_ignored`, with the reason). The project/SKU part of a VBIOS
//! id is not in the RIM's signed content, so two authentic RIMs can claim
//! one id (NVIDIA publishes a production and a test RIM of one VBIOS
//! version): RIMs of one component that state different golden values are
//! refused (`RIM conflict (…)`), as the verifier cannot tell which one the
//! id names; identical re-signed copies are fine. The GPU's measurements are
//! `match`ed only when both the driver and the VBIOS RIM were supplied and
//! matched in full; a missing one is `not_appraised` (with a warning check
//! `RIM measurements (…)`), never `match`. A mismatch fails
//! `RIM measurements (…)` as a warning naming the indices.
//!
//! **Revocation.** NVIDIA publishes the revocation status of device and RIM
//! certificates only by OCSP, which is online; this verifier is offline. A
//! caller who wants revocation checked supplies stored OCSP responses as
//! endorsements (see [`ocsp`]): checks `OCSP response` (format, signature by
//! the issuing CA or its delegated responder, `thisUpdate <= at <=
//! nextUpdate`), `Device certificate revocation` and `RIM certificate
//! revocation` (a revoked certificate fails by name). The claims say what
//! was checked: `revocation_checked` is `true` when every certificate of the
//! device chain and of the applied RIMs' chains (trust anchors excepted) has
//! a verified `good` response, `false` when none has (always so without
//! responses), `"partial"` otherwise; `revocation` lists each certificate
//! with its status (`good`, `unknown`, `not_covered`).
//!
//! **Debug.** The report has no debug indicator. NVIDIA's verifier asserts
//! `dbgstat: "disabled"` only when every measurement matched its RIMs; the
//! claims follow that (`dbgstat` is `"disabled"` only with both RIMs fully
//! matched, `"unknown"` otherwise), and `debug` is `false` because nothing
//! in the evidence says otherwise.
//!
//! **Claims.** `tee`, `debug`, `nonce` (the request's, i.e. the verifier's
//! challenge), `responder_nonce`, `spdm_version`, `slot_id`,
//! `driver_version`, `vbios_version` (NVIDIA's `96.00.5E.00.01` form),
//! `project`, `project_sku`, `chip_sku`, `chip`, `nvdec0_disabled`, `opaque`
//! (every opaque field by NVIDIA's name), `measurements` (hex, keyed by
//! NVIDIA's 0-based measurement index, i.e. SPDM block index − 1, the
//! numbering RIMs use), `device_cert` (`subject`, `serial`, `ueid`,
//! `hwmodel`, `fwid`, `report_fwid`), `rims` (`driver`/`vbios`: `id`,
//! `sha256`, `version`, `matched`, `mismatched`, `skipped`, `all_matched`,
//! `other_applicable`, `rim_id`), `rim_ids` (the ids the evidence names),
//! `rims_ignored`, `rim_status` (`match`: the driver and the VBIOS RIM were
//! both compared and matched in full; `mismatch`: an applicable RIM's golden
//! values differ — reported, not a verification failure, for the appraisal
//! policy to refuse; `not_appraised`: a RIM is missing), `rim_appraisal`
//! (`driver+vbios`/`driver`/`vbios`/`none`), `dbgstat`, `arch` (from the
//! signed device chain), `revocation_checked`, `revocation`.
//!
//! Evidence may also be a JSON array of per-GPU evidence as NVIDIA's
//! attestation SDK collects it for a multi-GPU (PPCIe) system
//! (`[{arch, nonce, driver_version, vbios_version, version, certificate:
//! base64(PEM chain), evidence: base64(report)}]`); each GPU is verified as
//! above, with its own chain, and checks are prefixed `GPU <n>: `. The
//! unsigned `arch` label must agree with the architecture the signed device
//! chain names (`Device architecture`; an NVSwitch is never a GPU, whatever
//! its label), `version` is not a claim, and one device twice (the same
//! per-chip identity certificate) is refused (`Distinct devices`).
//!
//! **Limits.** At most [`MAX_POOL_CERTS`] certificates and [`MAX_RIMS`] RIMs
//! among the endorsements (`Endorsement limits`), and at most
//! [`SIGNATURE_BUDGET`] signature verifications per request, as
//! rustls-webpki bounds path building (`Signature budget`, see
//! [`crate::budget`]).

pub mod appraise;
pub mod device;
pub mod ocsp;
pub mod opaque;
pub mod rim;
pub mod spdm;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

use self::appraise::{Component, Measurements};
use crate::anchors::{Anchor, AnchorKind};
use crate::encoding::decode_base64;
use crate::x509::{self, certs_from_pem, is_der_cert, parse_cert};
use crate::{Checks, Endorsement, VResult, VerifyError, VerifyRequest};

/// Most GPUs in one JSON evidence set (an HGX board has 8).
pub const MAX_GPUS: usize = 64;
/// Most certificates taken from the endorsements (a GPU chain has 5; the
/// other families cap their pools alike), so chain building stays small.
pub const MAX_POOL_CERTS: usize = 64;
/// Most RIMs among the endorsements (a GPU needs 2; re-signed copies and
/// several board types add a few).
pub const MAX_RIMS: usize = 16;
/// Most signature verifications one request may cost: an 8-GPU set with
/// its RIMs and OCSP responses needs a few hundred.
pub const SIGNATURE_BUDGET: usize = 1024;

/// Verify NVIDIA GPU evidence: one attestation report (binary, hex or
/// base64, decoded by the caller) or a JSON array of per-GPU evidence.
pub fn verify(req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<Value> {
    let (result, exhausted) = crate::budget::scoped(SIGNATURE_BUDGET, || verify_within_budget(req, checks));
    if exhausted {
        return Err(checks.fail(
            "Signature budget",
            format!(
                "more than {SIGNATURE_BUDGET} signature verifications for one request: send each GPU's own certificate chain and only the RIMs and OCSP responses that apply"
            ),
        ));
    }
    result
}

fn verify_within_budget(req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<Value> {
    let mut inputs = Inputs::from_endorsements(req.endorsements);
    inputs.check_limits(checks)?;
    inputs.ocsp = ocsp::from_endorsements(req.endorsements, checks)?;
    let first = req.evidence.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'[') | Some(b'{')) {
        return verify_set(req, &inputs, checks);
    }
    let mut claims = verify_report(req.evidence, &inputs, None, req, checks)?;
    claims.insert("tee".into(), json!("nvgpu"));
    Ok(Value::Object(claims))
}

/// The endorsements, sorted by what they are.
struct Inputs<'a> {
    /// Every certificate given as PEM or DER (device chains, roots).
    certs: Vec<Vec<u8>>,
    /// Every XML endorsement: candidate RIMs.
    rims: Vec<&'a Endorsement>,
    /// Stored OCSP responses, parsed.
    ocsp: Vec<ocsp::StoredResponse>,
}

impl<'a> Inputs<'a> {
    fn from_endorsements(list: &'a [Endorsement]) -> Self {
        let mut certs = Vec::new();
        let mut rims = Vec::new();
        for e in list {
            if rim::looks_like_xml(&e.bytes) {
                rims.push(e);
            } else if ocsp::is_ocsp(e) {
                // Parsed (and its format checked) by `ocsp::from_endorsements`.
            } else if is_der_cert(&e.bytes) {
                certs.push(e.bytes.clone());
            } else {
                certs.extend(certs_from_pem(&e.bytes));
            }
        }
        Inputs { certs, rims, ocsp: Vec::new() }
    }

    /// Refuse oversized pools before any parsing or signature work.
    fn check_limits(&self, checks: &mut Checks) -> VResult<()> {
        let (c, r) = (self.certs.len(), self.rims.len());
        checks.require(
            "Endorsement limits",
            c <= MAX_POOL_CERTS && r <= MAX_RIMS,
            format!("{c} certificates, {r} RIMs"),
            format!(
                "{c} certificates and {r} RIMs among the endorsements; at most {MAX_POOL_CERTS} certificates and {MAX_RIMS} RIMs are accepted: send the GPU's chain, the roots and the RIMs that apply"
            ),
        )
    }
}

/// Verify one report with the given certificate pool. `own_chain` is the
/// chain that came with the evidence itself (JSON sets): the leaf is taken
/// from it and every one of its certificates must be on the verified path.
fn verify_report(
    report: &[u8],
    inputs: &Inputs<'_>,
    own_chain: Option<&[Vec<u8>]>,
    req: &VerifyRequest<'_>,
    checks: &mut Checks,
) -> VResult<Map<String, Value>> {
    let parsed = match spdm::parse_report(report) {
        Ok(p) => {
            checks.pass("SPDM format", format_detail(&p));
            p
        }
        Err(e) => return Err(checks.fail("SPDM format", e)),
    };
    let (rq, rs) = (&parsed.request, &parsed.response);

    if let Some(expected) = req.expected_nonce {
        crate::nonce::record(checks, "Nonce", "the SPDM request nonce", &rq.nonce, expected)?;
    }

    // Device identity: the leaf, its chain, its FWID.
    let mut pool: Vec<Vec<u8>> = own_chain.map(|c| c.to_vec()).unwrap_or_default();
    pool.extend(inputs.certs.iter().cloned());
    let candidates = device::leaf_candidates(own_chain.unwrap_or(&inputs.certs));
    let signed = report.get(..parsed.signed_len).unwrap_or_default();
    let leaf = match candidates.as_slice() {
        [] => {
            return Err(checks.fail(
                "Device certificate chain",
                "no GPU device certificate (a P-384 leaf that issues no other certificate) among the certificates given",
            ))
        }
        [one] => one.to_vec(),
        many => many
            .iter()
            .find(|c| device::verify_p384(c, signed, &rs.signature).is_ok())
            .or(many.first())
            .map(|c| c.to_vec())
            .unwrap_or_default(),
    };
    let roots: Vec<&Anchor> = req.anchors.of_kind(AnchorKind::NvidiaDeviceIdentity).collect();
    let chain = crate::cache::verify_chain("Device certificate chain", &leaf, &pool, roots.iter().copied(), req.at, checks)?;
    if let Some(own) = own_chain {
        if let Some(stray) = own.iter().find(|c| !chain.certs.contains(c)) {
            return Err(checks.fail(
                "Device certificate chain",
                format!("certificate '{}' in the evidence is not on the verified path", x509::subject_of(stray)),
            ));
        }
    }
    // What the device is comes from NVIDIA's signed names in the verified
    // chain: an NVSwitch's report has the same shape as a GPU's.
    let chain_chip = device::chain_chip(&chain.certs).unwrap_or_default();
    let arch = match device::architecture(&chain_chip) {
        Some("NVSWITCH") => {
            return Err(checks.fail(
                "Device architecture",
                format!("the device certificates are an NVSwitch's ({chain_chip}), not a GPU's: verify GPU evidence only"),
            ))
        }
        Some(a) => {
            checks.pass("Device architecture", format!("{a} ({chain_chip}), named by the verified device chain"));
            a
        }
        None => {
            return Err(
                checks.fail("Device architecture", format!("the device chain names chip {chain_chip:?}, not a Hopper or Blackwell GPU"))
            )
        }
    };
    let cert_fwid = device::cert_fwid(&leaf).map_err(|e| checks.fail("Device certificate FWID", e))?;
    let report_fwid = opaque::get(&rs.opaque, opaque::FWID);
    if let Some(rf) = report_fwid {
        match &cert_fwid {
            Some(cf) if cf.as_slice() == rf => checks.pass("Device certificate FWID", format!("{} in report and leaf", hex::encode(rf))),
            Some(cf) => {
                return Err(checks.fail(
                    "Device certificate FWID",
                    format!("report FWID {} differs from the leaf certificate's {}", hex::encode(rf), hex::encode(cf)),
                ))
            }
            None => {
                return Err(checks
                    .fail("Device certificate FWID", format!("report FWID {} but the leaf certificate certifies none", hex::encode(rf))))
            }
        }
    }
    checks.record(
        "SPDM signature",
        device::verify_p384(&leaf, signed, &rs.signature),
        format!("ECDSA P-384/SHA-384 over {} bytes (request ‖ response before the signature) by the device leaf", signed.len()),
    )?;

    // Claims from the now-authenticated report.
    let driver_version = opaque::text(&rs.opaque, opaque::DRIVER_VERSION);
    let vbios_version = opaque::vbios_version(&rs.opaque);
    let nvdec0_disabled = opaque::nvdec0_disabled(&rs.opaque);
    let chip = opaque::text(&rs.opaque, opaque::CHIP_INFO)
        .or_else(|| device::common_name(&leaf).and_then(|cn| cn.split_whitespace().next().map(str::to_string)));
    let measurements: Measurements = rs.blocks.iter().filter_map(|b| Some((u32::from(b.index).checked_sub(1)?, b.value.clone()))).collect();

    let project = opaque::text(&rs.opaque, opaque::PROJECT);
    let project_sku = opaque::text(&rs.opaque, opaque::PROJECT_SKU);
    let chip_sku = opaque::text(&rs.opaque, opaque::CHIP_SKU);
    let ctx = ReportContext {
        driver_version: driver_version.as_deref(),
        vbios_version: vbios_version.as_deref(),
        chip: chip.as_deref(),
        arch,
        project: project.as_deref(),
        project_sku: project_sku.as_deref(),
        chip_sku: chip_sku.as_deref(),
        measurements: &measurements,
        nvdec0_disabled,
    };
    let rims = appraise_rims(&ctx, &inputs.rims, req, checks)?;

    // Revocation, from stored OCSP responses (when given).
    let mut revocation = ocsp::check_chain("Device certificate revocation", "device", &chain.certs, &inputs.ocsp, req.at, checks)?;
    for (label, rim_chain) in &rims.chains {
        revocation.merge(ocsp::check_chain("RIM certificate revocation", label, rim_chain, &inputs.ocsp, req.at, checks)?);
    }

    let mut c = Map::new();
    c.insert("debug".into(), json!(false));
    c.insert("nonce".into(), json!(hex::encode(rq.nonce)));
    c.insert("responder_nonce".into(), json!(hex::encode(rs.nonce)));
    c.insert("spdm_version".into(), json!(spdm::version_string(rq.version)));
    c.insert("slot_id".into(), json!(rq.slot_id));
    c.insert("driver_version".into(), json!(driver_version));
    c.insert("vbios_version".into(), json!(vbios_version));
    c.insert("project".into(), json!(project));
    c.insert("project_sku".into(), json!(project_sku));
    c.insert("chip_sku".into(), json!(chip_sku));
    c.insert("chip".into(), json!(chip));
    c.insert("arch".into(), json!(arch));
    c.insert("nvdec0_disabled".into(), json!(nvdec0_disabled));
    c.insert("opaque".into(), opaque::to_json(&rs.opaque));
    let m: Map<String, Value> = measurements.iter().map(|(i, v)| (i.to_string(), json!(hex::encode(v)))).collect();
    c.insert("measurements".into(), Value::Object(m));
    c.insert("device_cert".into(), device_claims(&chain.certs, cert_fwid.as_deref(), report_fwid));
    c.insert("dbgstat".into(), json!(if rims.both_matched { "disabled" } else { "unknown" }));
    c.insert("rim_appraisal".into(), json!(rims.appraisal));
    c.insert("rim_status".into(), json!(rims.status));
    c.insert("rims".into(), rims.claims);
    let (driver_id, vbios_id) = ctx.rim_ids();
    c.insert("rim_ids".into(), json!({"driver": driver_id, "vbios": vbios_id}));
    c.insert("rims_ignored".into(), json!(rims.ignored));
    c.insert("revocation_checked".into(), revocation.checked_claim());
    c.insert("revocation".into(), json!(revocation.entries));
    Ok(c)
}

fn format_detail(r: &spdm::Report) -> String {
    let mut s = format!(
        "SPDM {} GET_MEASUREMENTS: {} measurement blocks, {} opaque fields, {}-byte signature",
        spdm::version_string(r.request.version),
        r.response.blocks.len(),
        r.response.opaque.len(),
        r.response.signature.len()
    );
    if r.trailing_zeros > 0 {
        s.push_str(&format!(", {} zero padding bytes after it (not signed, ignored)", r.trailing_zeros));
    }
    s
}

/// Device certificate claims: NVIDIA's `hwmodel` (CN of the certificate
/// above the leaf), `ueid` (the leaf's serial number, decimal, as NVIDIA
/// reports it) and the FWIDs.
fn device_claims(chain: &[Vec<u8>], cert_fwid: Option<&[u8]>, report_fwid: Option<&[u8]>) -> Value {
    let leaf = chain.first().and_then(|d| parse_cert(d).ok());
    json!({
        "subject": leaf.as_ref().map(|c| c.subject().to_string()),
        // The per-chip certificate (`GH100 A01 GSP BROM`, with the chip's
        // serialNumber) that issued the attestation key: the device identity.
        "issuer": leaf.as_ref().map(|c| c.issuer().to_string()),
        "serial": leaf.as_ref().map(|c| hex::encode(c.raw_serial())),
        "ueid": leaf.as_ref().map(|c| c.serial.to_string()),
        "hwmodel": chain.get(1).and_then(|d| device::common_name(d)),
        "fwid": cert_fwid.map(hex::encode),
        "report_fwid": report_fwid.map(hex::encode),
        "chain_length": chain.len(),
    })
}

/// What the RIM appraisal needs from the report.
struct ReportContext<'a> {
    driver_version: Option<&'a str>,
    vbios_version: Option<&'a str>,
    chip: Option<&'a str>,
    /// `HOPPER` / `BLACKWELL`, from the verified device chain.
    arch: &'static str,
    project: Option<&'a str>,
    project_sku: Option<&'a str>,
    chip_sku: Option<&'a str>,
    measurements: &'a Measurements,
    nvdec0_disabled: bool,
}

impl ReportContext<'_> {
    /// The ids of the driver and VBIOS RIMs this report names, as NVIDIA's
    /// verifier builds them to fetch the RIMs from NVIDIA's RIM service.
    fn rim_ids(&self) -> (Option<String>, Option<String>) {
        ids_of(self.chip, self.arch, self.driver_version, [self.project, self.project_sku, self.chip_sku], self.vbios_version)
    }
}

/// The driver and VBIOS RIM ids, as nvtrust builds them (one place for the
/// verifier's `rim_ids` claim and for [`rim_ids`]).
fn ids_of(
    chip: Option<&str>,
    arch: &str,
    driver_version: Option<&str>,
    [project, project_sku, chip_sku]: [Option<&str>; 3],
    vbios_version: Option<&str>,
) -> (Option<String>, Option<String>) {
    let chip = chip.unwrap_or("GH100").to_ascii_uppercase();
    let driver = driver_version.map(|v| match arch {
        "BLACKWELL" => format!("NV_GPU_CC_DRIVER_{chip}_{v}"),
        _ => format!("NV_GPU_DRIVER_{chip}_{v}"),
    });
    let vbios = match (project, project_sku, chip_sku, vbios_version) {
        (Some(p), Some(ps), Some(cs), Some(v)) => Some(format!("NV_GPU_VBIOS_{p}_{ps}_{cs}_{}", v.replace('.', "")).to_ascii_uppercase()),
        _ => None,
    };
    (driver, vbios)
}

/// The RIM ids NVIDIA's verifier would fetch for `evidence` (decoded, as
/// [`verify`] takes it: one report or a JSON array of per-GPU evidence),
/// without verifying anything: the driver RIM and each distinct VBIOS RIM,
/// first seen first. For endorsement fetching only — the verifier still
/// decides which RIMs apply from the authenticated report. The chip comes
/// from the report's `CHIP_INFO`, else (JSON sets) the entry's device chain,
/// else GH100 (nvtrust's Hopper default); the architecture from the chain's
/// chip when the evidence carries one, else from the chip.
pub fn rim_ids(evidence: &[u8]) -> Result<Vec<String>, String> {
    if evidence.len() > crate::MAX_EVIDENCE_LEN {
        return Err(format!("{} bytes exceeds the {}-byte evidence limit", evidence.len(), crate::MAX_EVIDENCE_LEN));
    }
    let first = evidence.iter().find(|b| !b.is_ascii_whitespace());
    let mut out: Vec<String> = Vec::new();
    let mut add = |(d, v): (Option<String>, Option<String>)| {
        for id in [d, v].into_iter().flatten() {
            if !out.contains(&id) {
                out.push(id);
            }
        }
    };
    if matches!(first, Some(b'[') | Some(b'{')) {
        let list: Vec<GpuEvidence> = serde_json::from_slice(evidence).map_err(|e| format!("not a JSON array of GPU evidence: {e}"))?;
        if list.is_empty() || list.len() > MAX_GPUS {
            return Err(format!("{} GPUs (1..{MAX_GPUS} allowed)", list.len()));
        }
        for (i, g) in list.iter().enumerate() {
            let report = decode_base64(&g.evidence).ok_or_else(|| format!("GPU {i}: evidence is not base64"))?;
            let pem = decode_base64(&g.certificate).ok_or_else(|| format!("GPU {i}: certificate is not base64"))?;
            let chain = strict_pem_chain(&pem).map_err(|e| format!("GPU {i}: certificate: {e}"))?;
            add(report_ids(&report, Some(&chain)).map_err(|e| format!("GPU {i}: {e}"))?);
        }
    } else {
        add(report_ids(evidence, None)?);
    }
    if out.is_empty() {
        return Err("the report names no driver or VBIOS version".into());
    }
    Ok(out)
}

/// The ids one report names; `chain` is the device chain that came with it, if any.
fn report_ids(report: &[u8], chain: Option<&[Vec<u8>]>) -> Result<(Option<String>, Option<String>), String> {
    let rs = spdm::parse_report(report)?.response;
    let text = |id| opaque::text(&rs.opaque, id);
    let leaf_chip = || {
        chain
            .and_then(|c| device::leaf_candidates(c).first().and_then(|l| device::common_name(l)))
            .and_then(|cn| cn.split_whitespace().next().map(str::to_string))
    };
    let chip = text(opaque::CHIP_INFO).or_else(leaf_chip);
    let arch_chip = chain.and_then(device::chain_chip).or_else(|| chip.clone()).unwrap_or_default();
    let arch = device::architecture(&arch_chip).unwrap_or("HOPPER");
    let (driver, vbios) = (text(opaque::DRIVER_VERSION), opaque::vbios_version(&rs.opaque));
    let names = [text(opaque::PROJECT), text(opaque::PROJECT_SKU), text(opaque::CHIP_SKU)];
    Ok(ids_of(chip.as_deref(), arch, driver.as_deref(), [names[0].as_deref(), names[1].as_deref(), names[2].as_deref()], vbios.as_deref()))
}

/// The outcome of the RIM appraisal, for the claims.
struct RimOutcome {
    claims: Value,
    ignored: Vec<Value>,
    appraisal: &'static str,
    both_matched: bool,
    /// `match`, `mismatch` or `not_appraised` (see the module docs).
    status: &'static str,
    /// The verified signer chain of each applied RIM (`rim driver`/`rim vbios`), for revocation.
    chains: Vec<(String, Vec<Vec<u8>>)>,
}

/// Which component a RIM applies to for this report, or why it does not.
fn applicability(rim: &rim::Rim, ctx: &ReportContext<'_>) -> Result<Component, String> {
    let component = if ctx.driver_version.is_some_and(|v| appraise::same_version(v, &rim.version)) {
        Component::Driver
    } else if ctx.vbios_version.is_some_and(|v| appraise::same_version(v, &rim.version)) {
        Component::Vbios
    } else {
        return Err(format!(
            "version {} is neither the driver version {} nor the VBIOS version {} of this GPU",
            rim.version,
            ctx.driver_version.unwrap_or("(none)"),
            ctx.vbios_version.unwrap_or("(none)")
        ));
    };
    // The product is part of the id: a RIM that names none, or another
    // chip, is not this GPU's (NVIDIA's RIM service hands out a GH100 RIM
    // for a Blackwell driver id).
    match (&rim.product, ctx.chip) {
        (Some(p), Some(chip)) if p.eq_ignore_ascii_case(chip) => Ok(component),
        (Some(p), Some(chip)) => Err(format!("for product {p}, this GPU is a {chip}")),
        (None, _) => Err("the RIM names no product (chip)".into()),
        (Some(p), None) => Err(format!("for product {p}, and the report names no chip")),
    }
}

/// Authenticate every RIM given, compare those that apply, and decide.
fn appraise_rims(ctx: &ReportContext<'_>, given: &[&Endorsement], req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<RimOutcome> {
    let mut applied: Vec<(Component, Arc<rim::Rim>, appraise::Comparison)> = Vec::new();
    // The endorsement name of each applied RIM, in the same order.
    let mut applied_names: Vec<String> = Vec::new();
    let mut chains: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    let mut stale: Vec<(Component, Checks, VerifyError)> = Vec::new();
    let mut ignored = Vec::new();
    for e in given {
        // Parsed once per distinct file when a cache is in scope (parsing,
        // with its C14N, is most of a warm NVIDIA verification).
        let r = crate::cache::parsed("nvidia-rim", &e.bytes, || rim::parse(&e.bytes))
            .map_err(|err| checks.fail("RIM format", format!("{}: {err}", e.name)))?;
        let applies = applicability(&r, ctx);
        let label = match &applies {
            Ok(c) => c.as_str().to_string(),
            Err(_) => format!("other {}", appraise::component_by_shape(&r.version).as_str()),
        };
        // A RIM is collateral: its XML-DSig, keyed by signer and the whole
        // file (which fixes SignedInfo and the referenced bytes), is
        // remembered when a cache is in scope. Its chain is checked below.
        let signer = r.certs.first().map(Vec::as_slice).unwrap_or_default();
        let mut fresh = None;
        let detail = crate::cache::collateral_signature("nvidia-rim-xmldsig", signer, &e.bytes, b"", || {
            rim::verify_signature(&r).map(|d| fresh = Some(d))
        })
        .map(|()| fresh.unwrap_or_else(|| format!("XML-DSig by '{}', reference digest matches (cached)", x509::subject_of(signer))))
        .map_err(|err| format!("{}: {err}", e.name));
        let detail_ok = detail.as_ref().map(|d| format!("{} ({} {}): {d}", e.name, r.version, r.tag_id)).unwrap_or_default();
        checks.record(&format!("RIM signature ({label})"), detail, detail_ok)?;
        let leaf = r.certs.first().map(|c| c.as_slice()).unwrap_or_default();
        let pool = r.certs.get(1..).unwrap_or_default();
        let roots: Vec<&Anchor> = req.anchors.of_kind(AnchorKind::NvidiaRimRoot).collect();
        let anchors = roots.iter().copied();
        let chain_name = format!("RIM certificate chain ({label})");
        match applies {
            Ok(component) => {
                let mut scratch = Checks::new();
                match crate::cache::verify_chain(&chain_name, leaf, pool, anchors, req.at, &mut scratch) {
                    Ok(verified) => {
                        checks.extend_prefixed("", scratch);
                        chains.push((format!("rim {}", component.as_str()), verified.certs));
                        let cmp = appraise::compare(&r, ctx.measurements, ctx.nvdec0_disabled);
                        applied.push((component, r, cmp));
                        applied_names.push(e.name.clone());
                    }
                    // Not valid at this time: usable only if no other RIM
                    // of the component is (NVIDIA re-signs RIMs when their
                    // signer certificates expire; an old copy beside a
                    // fresh one is not an error).
                    Err(err) if err.check.ends_with(" validity") => {
                        ignored.push(json!({"id": r.tag_id, "sha256": r.sha256, "version": r.version, "product": r.product,
                            "reason": format!("signer chain not valid at this time: {}", err.message)}));
                        stale.push((component, scratch, err));
                    }
                    Err(err) => {
                        checks.extend_prefixed("", scratch);
                        return Err(err);
                    }
                }
            }
            Err(reason) => {
                // Authentic or refused, but its validity period does not
                // matter: it is not used.
                let mut scratch = Checks::new();
                if let Err(err) = crate::cache::verify_chain(&chain_name, leaf, pool, anchors.clone(), req.at, &mut scratch) {
                    if !err.check.ends_with(" validity") {
                        return Err(checks.fail(&err.check, format!("{}: {}", e.name, err.message)));
                    }
                }
                checks.pass(&chain_name, format!("{}: authentic; not applied ({reason})", e.name));
                ignored.push(json!({"id": r.tag_id, "sha256": r.sha256, "version": r.version, "product": r.product, "reason": reason}));
            }
        }
    }

    // A component whose every applicable RIM is out of its validity period
    // fails on that.
    for (component, scratch, err) in stale {
        if !applied.iter().any(|(k, _, _)| *k == component) {
            checks.extend_prefixed("", scratch);
            return Err(err);
        }
    }

    // One id, one RIM. Authentic RIMs of one component that state
    // different golden values cannot both be the one the evidence names
    // (NVIDIA signs production and test RIMs of one VBIOS version, and the
    // board is not in a RIM's signed content): refused rather than letting
    // the sender's choice decide.
    let (driver_id, vbios_id) = ctx.rim_ids();
    for (component, id) in [(Component::Driver, &driver_id), (Component::Vbios, &vbios_id)] {
        let of: Vec<usize> = (0..applied.len()).filter(|i| applied.get(*i).is_some_and(|(k, _, _)| *k == component)).collect();
        let Some((&first, rest)) = of.split_first() else { continue };
        for &other in rest {
            let (Some((_, a, _)), Some((_, b, _))) = (applied.get(first), applied.get(other)) else { continue };
            let diff = appraise::differing(a, b);
            if !diff.is_empty() {
                let name = |i: usize| applied_names.get(i).cloned().unwrap_or_default();
                return Err(checks.fail(
                    &format!("RIM conflict ({})", component.as_str()),
                    format!(
                        "{} and {} are both {} RIMs of {} {} but state different golden values at indices {diff:?}: supply only the RIM NVIDIA's RIM service serves as {}",
                        name(first),
                        name(other),
                        component.as_str(),
                        a.product.as_deref().unwrap_or("?"),
                        a.version,
                        id.as_deref().unwrap_or("this GPU's id")
                    ),
                ));
            }
        }
    }

    // The RIM of each component (all applicable ones agree): the first.
    let best = |c: Component| {
        let of: Vec<_> = applied.iter().filter(|(k, _, _)| *k == c).collect();
        of.iter().find(|(_, _, m)| m.all_matched()).or(of.first()).copied()
    };
    let (driver, vbios) = (best(Component::Driver), best(Component::Vbios));
    if let (Some((_, d, _)), Some((_, v, _))) = (driver, vbios) {
        let both = appraise::overlap(d, v);
        checks.require(
            "RIM index overlap",
            both.is_empty(),
            "driver and VBIOS RIMs claim disjoint indices",
            format!("driver RIM {} and VBIOS RIM {} both have active measurements at {both:?}", d.tag_id, v.tag_id),
        )?;
    }
    let mut claims = Map::new();
    for (component, chosen) in [(Component::Driver, driver), (Component::Vbios, vbios)] {
        let Some((_, r, cmp)) = chosen else { continue };
        let name = format!("RIM measurements ({})", component.as_str());
        let total = cmp.matched.len() + cmp.mismatched.len();
        if cmp.all_matched() {
            let mut d = format!("{}/{total} active measurements match RIM {} ({})", cmp.matched.len(), r.tag_id, r.version);
            if !cmp.skipped.is_empty() {
                d.push_str(&format!("; not compared (NVDEC0 disabled): {:?}", cmp.skipped));
            }
            checks.pass(&name, d);
        } else {
            let all: Vec<String> = applied
                .iter()
                .filter(|(k, _, _)| *k == component)
                .map(|(_, r, m)| format!("RIM {} ({}): indices {:?} differ", r.tag_id, r.version, m.mismatched))
                .collect();
            // Authentic evidence whose measurements differ from NVIDIA's
            // golden values is not a forgery: it is a GPU in a state the
            // reference values do not endorse. Like an out-of-date TCB, that
            // is reported (`rim_status: "mismatch"`, the indices per RIM) for
            // the appraisal policy, whose defaults contraindicate it.
            checks.warn(&name, format!("the GPU's measurements match no applicable RIM: {}", all.join("; ")));
        }
        let mut j = appraise::to_json(r, cmp);
        let id = if component == Component::Driver { &driver_id } else { &vbios_id };
        if let Some(obj) = j.as_object_mut() {
            obj.insert("rim_id".into(), json!(id));
        }
        let others: Vec<Value> =
            applied.iter().filter(|(k, o, _)| *k == component && !std::ptr::eq(o, r)).map(|(_, o, m)| appraise::to_json(o, m)).collect();
        if let Some(obj) = j.as_object_mut() {
            if !others.is_empty() {
                obj.insert("other_applicable".into(), json!(others));
            }
        }
        claims.insert(component.as_str().into(), j);
    }
    let appraisal = match (driver.is_some(), vbios.is_some()) {
        (true, true) => "driver+vbios",
        (true, false) => "driver",
        (false, true) => "vbios",
        (false, false) => "none",
    };
    let matched = |c: Option<&(Component, Arc<rim::Rim>, appraise::Comparison)>| c.is_some_and(|(_, _, m)| m.all_matched());
    let both_matched = matched(driver) && matched(vbios);
    // Both RIMs, or the measurements were not appraised: a withheld RIM
    // never turns into a match.
    for (component, present, absent, id) in [
        (Component::Driver, driver.is_some(), vbios.is_none(), &vbios_id),
        (Component::Vbios, vbios.is_some(), driver.is_none(), &driver_id),
    ] {
        if present && absent {
            let missing = if component == Component::Driver { Component::Vbios } else { Component::Driver };
            checks.warn(
                &format!("RIM measurements ({})", missing.as_str()),
                format!(
                    "no {} RIM for this GPU ({}) among the endorsements: its measurements were not appraised; supply it",
                    missing.as_str(),
                    id.as_deref().unwrap_or("id unknown")
                ),
            );
        }
    }
    let status = if [driver, vbios].into_iter().flatten().any(|(_, _, m)| !m.all_matched()) {
        "mismatch"
    } else if driver.is_some() && vbios.is_some() {
        "match"
    } else {
        "not_appraised"
    };
    Ok(RimOutcome { claims: Value::Object(claims), ignored, appraisal, both_matched, status, chains })
}

/// One GPU's evidence in a JSON set, as NVIDIA's attestation SDK writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GpuEvidence {
    arch: String,
    certificate: String,
    evidence: String,
    nonce: String,
    #[serde(default)]
    driver_version: Option<String>,
    #[serde(default)]
    vbios_version: Option<String>,
    /// The SDK's evidence format version: unsigned, so accepted but never a claim.
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<String>,
}

/// Verify a JSON array of per-GPU evidence.
fn verify_set(req: &VerifyRequest<'_>, inputs: &Inputs<'_>, checks: &mut Checks) -> VResult<Value> {
    let list: Vec<GpuEvidence> = serde_json::from_slice(req.evidence)
        .map_err(|e| checks.fail("Evidence format", format!("not a JSON array of GPU evidence: {e}")))?;
    if list.is_empty() || list.len() > MAX_GPUS {
        return Err(checks.fail("Evidence format", format!("{} GPUs (1..{MAX_GPUS} allowed)", list.len())));
    }
    checks.pass("Evidence format", format!("{} GPU evidence entries", list.len()));
    let mut gpus: Vec<Value> = Vec::new();
    for (i, g) in list.iter().enumerate() {
        let prefix = format!("GPU {i}: ");
        let mut sub = Checks::new();
        let r = verify_gpu_entry(g, inputs, req, &mut sub).and_then(|c| {
            // One device counted once: its per-chip identity certificate
            // (the attestation key's issuer) must not repeat.
            let identity = &c["device_cert"]["issuer"];
            match gpus.iter().position(|earlier| earlier["device_cert"]["issuer"] == *identity) {
                Some(j) => Err(sub.fail(
                    "Distinct devices",
                    format!("the same device as GPU {j} ({}): each GPU's evidence once", identity.as_str().unwrap_or("?")),
                )),
                None => {
                    sub.pass("Distinct devices", format!("device {} appears once", identity.as_str().unwrap_or("?")));
                    Ok(c)
                }
            }
        });
        checks.extend_prefixed(&prefix, sub);
        match r {
            Ok(c) => gpus.push(Value::Object(c)),
            Err(e) => return Err(VerifyError::new(format!("{prefix}{}", e.check), e.message)),
        }
    }
    let nonces: Vec<&Value> = gpus.iter().map(|g| &g["nonce"]).collect();
    let nonce = if nonces.windows(2).all(|w| w[0] == w[1]) { nonces.first().map(|v| (*v).clone()) } else { None };
    let each: Vec<&Value> = gpus.iter().map(|g| &g["revocation_checked"]).collect();
    let revocation_checked = if each.iter().all(|v| **v == json!(true)) {
        json!(true)
    } else if each.iter().all(|v| **v == json!(false)) {
        json!(false)
    } else {
        json!("partial")
    };
    Ok(json!({
        "tee": "nvgpu",
        "debug": false,
        "nonce": nonce,
        "gpu_count": gpus.len(),
        "gpus": gpus,
        "revocation_checked": revocation_checked,
    }))
}

fn verify_gpu_entry(g: &GpuEvidence, inputs: &Inputs<'_>, req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<Map<String, Value>> {
    let fail = |checks: &mut Checks, m: String| Err(checks.fail("Evidence format", m));
    if !matches!(g.arch.as_str(), "HOPPER" | "BLACKWELL") {
        return fail(checks, format!("unknown GPU architecture {:?}", g.arch));
    }
    let Some(report) = decode_base64(&g.evidence) else { return fail(checks, "evidence is not base64".into()) };
    let Some(pem) = decode_base64(&g.certificate) else { return fail(checks, "certificate is not base64".into()) };
    let chain = match strict_pem_chain(&pem) {
        Ok(c) => c,
        Err(e) => return fail(checks, format!("certificate: {e}")),
    };
    let Some(nonce) = hex::decode(g.nonce.trim()).ok().filter(|n| n.len() == spdm::NONCE_LEN) else {
        return fail(checks, "nonce is not 32 bytes of hex".into());
    };
    checks.pass("Evidence format", format!("{} report, {}-certificate chain", g.arch, chain.len()));
    let c = verify_report(&report, inputs, Some(&chain), req, checks)?;
    let request_nonce = c.get("nonce").and_then(Value::as_str).unwrap_or_default().to_string();
    checks.require(
        "Evidence nonce",
        request_nonce == hex::encode(&nonce),
        "the entry's nonce is the report's request nonce",
        format!("entry nonce {} but the report's request nonce is {request_nonce}", hex::encode(&nonce)),
    )?;
    for (label, given, key) in [("driver", &g.driver_version, "driver_version"), ("VBIOS", &g.vbios_version, "vbios_version")] {
        if let Some(v) = given {
            let in_report = c.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
            checks.require(
                "Evidence versions",
                appraise::same_version(v, &in_report),
                format!("{label} version {v} is the report's"),
                format!("entry says {label} version {v}, the signed report says {in_report:?}"),
            )?;
        }
    }
    // The label is the sender's; the claim is what the signed chain says.
    let signed_arch = c.get("arch").and_then(Value::as_str).unwrap_or_default().to_string();
    checks.require(
        "Device architecture",
        g.arch.eq_ignore_ascii_case(&signed_arch),
        format!("entry label {} is the architecture of the signed device chain", g.arch),
        format!("entry says {} but the signed device chain is a {signed_arch} GPU", g.arch),
    )?;
    Ok(c)
}

/// A PEM certificate chain that must be nothing else: every block a
/// parsable CERTIFICATE, only whitespace between blocks.
fn strict_pem_chain(text: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let s = std::str::from_utf8(text).map_err(|_| "PEM chain is not UTF-8".to_string())?;
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let trimmed = rest.trim_start();
        if trimmed.is_empty() {
            break;
        }
        const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
        const END: &str = "-----END CERTIFICATE-----";
        let body = trimmed.strip_prefix(BEGIN).ok_or("text outside a CERTIFICATE block")?;
        let end = body.find(END).ok_or("unterminated CERTIFICATE block")?;
        let b64: String = body.get(..end).unwrap_or_default().chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = decode_base64(&b64).ok_or("certificate block is not base64")?;
        parse_cert(&der)?;
        out.push(der);
        if out.len() > x509::MAX_CHAIN_DEPTH {
            return Err("too many certificates".into());
        }
        rest = body.get(end + END.len()..).unwrap_or_default();
    }
    if out.is_empty() {
        return Err("no certificate".into());
    }
    Ok(out)
}

/// Whether a JSON document is the per-GPU evidence list NVIDIA's
/// attestation SDK produces (`[{arch, certificate, evidence, nonce, …}]`),
/// for [`crate::detect_tee`]: a non-empty array whose every entry has
/// string `certificate` and `evidence` members.
pub fn detect(v: &Value) -> bool {
    let is_str = |e: &Value, k: &str| e.get(k).is_some_and(Value::is_string);
    v.as_array().is_some_and(|list| !list.is_empty() && list.iter().all(|e| is_str(e, "certificate") && is_str(e, "evidence")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_pem_refuses_extra_text() {
        assert!(strict_pem_chain(b"").is_err());
        assert!(strict_pem_chain(b"hello").unwrap_err().contains("outside"));
        assert!(strict_pem_chain(b"-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap_err().contains("unterminated"));
        assert!(strict_pem_chain(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    }
}
