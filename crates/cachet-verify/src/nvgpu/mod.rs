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
//! **RIM pairing.** A RIM applies to this GPU when its `colloquialVersion`
//! equals the report's driver version (driver RIM) or VBIOS version (VBIOS
//! RIM), and its `product` (when given) is this GPU's chip. RIMs for other
//! versions are still authenticated (a forged endorsement is refused
//! whatever it describes) but not compared; they are listed in the claims as
//! `rims_ignored`. When several authentic RIMs apply to one component, the
//! GPU passes if it matches one of them in full: each is NVIDIA's signed
//! statement that those values are a good state of that release, and the
//! RIM's signed content does not name the board (project/SKU) it was issued
//! for. A mismatch against every applicable RIM fails
//! `RIM measurements (…)` naming the indices.
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
//! `other_applicable`), `rims_ignored`, `rim_status` (`match`: every
//! compared RIM matched in full; `mismatch`: some applicable RIM's golden
//! values differ — reported, not a verification failure, for the appraisal
//! policy to refuse; `no_rim`), `rim_appraisal`
//! (`driver+vbios`/`driver`/`vbios`/`none`), `dbgstat`,
//! `revocation_checked`, `revocation`.
//!
//! Evidence may also be a JSON array of per-GPU evidence as NVIDIA's
//! attestation SDK collects it for a multi-GPU (PPCIe) system
//! (`[{arch, nonce, driver_version, vbios_version, version, certificate:
//! base64(PEM chain), evidence: base64(report)}]`); each GPU is verified as
//! above, with its own chain, and checks are prefixed `GPU <n>: `.

pub mod appraise;
pub mod device;
pub mod ocsp;
pub mod opaque;
pub mod rim;
pub mod spdm;

use std::sync::Arc;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use self::appraise::{Component, Measurements};
use crate::anchors::{Anchor, AnchorKind};
use crate::encoding::decode_base64;
use crate::x509::{self, certs_from_pem, is_der_cert, parse_cert};
use crate::{Checks, Endorsement, VResult, VerifyError, VerifyRequest};

/// Most GPUs in one JSON evidence set (an HGX board has 8).
pub const MAX_GPUS: usize = 64;

/// Verify NVIDIA GPU evidence: one attestation report (binary, hex or
/// base64, decoded by the caller) or a JSON array of per-GPU evidence.
pub fn verify(req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<Value> {
    let mut inputs = Inputs::from_endorsements(req.endorsements);
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
        checks.require(
            "Nonce",
            expected == rq.nonce.as_slice(),
            format!("request nonce {} is the expected one", hex::encode(rq.nonce)),
            format!("request nonce {} differs from the expected {}", hex::encode(rq.nonce), hex::encode(expected)),
        )?;
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
                return Err(checks.fail(
                    "Device certificate FWID",
                    format!("report FWID {} but the leaf certificate certifies none", hex::encode(rf)),
                ))
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

    let ctx = ReportContext { driver_version: driver_version.as_deref(), vbios_version: vbios_version.as_deref(), chip: chip.as_deref(), measurements: &measurements, nvdec0_disabled };
    let rims = appraise_rims(&ctx, &inputs.rims, req, checks)?;

    // Revocation, from stored OCSP responses (when given).
    let mut revocation =
        ocsp::check_chain("Device certificate revocation", "device", &chain.certs, &inputs.ocsp, req.at, checks)?;
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
    c.insert("project".into(), json!(opaque::text(&rs.opaque, opaque::PROJECT)));
    c.insert("project_sku".into(), json!(opaque::text(&rs.opaque, opaque::PROJECT_SKU)));
    c.insert("chip_sku".into(), json!(opaque::text(&rs.opaque, opaque::CHIP_SKU)));
    c.insert("chip".into(), json!(chip));
    c.insert("nvdec0_disabled".into(), json!(nvdec0_disabled));
    c.insert("opaque".into(), opaque::to_json(&rs.opaque));
    let m: Map<String, Value> = measurements.iter().map(|(i, v)| (i.to_string(), json!(hex::encode(v)))).collect();
    c.insert("measurements".into(), Value::Object(m));
    c.insert("device_cert".into(), device_claims(&chain.certs, cert_fwid.as_deref(), report_fwid));
    c.insert("dbgstat".into(), json!(if rims.both_matched { "disabled" } else { "unknown" }));
    c.insert("rim_appraisal".into(), json!(rims.appraisal));
    c.insert("rim_status".into(), json!(rims.status));
    c.insert("rims".into(), rims.claims);
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
    measurements: &'a Measurements,
    nvdec0_disabled: bool,
}

/// The outcome of the RIM appraisal, for the claims.
struct RimOutcome {
    claims: Value,
    ignored: Vec<Value>,
    appraisal: &'static str,
    both_matched: bool,
    /// `match`, `mismatch` or `no_rim` (see the module docs).
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
    if let (Some(p), Some(chip)) = (&rim.product, ctx.chip) {
        if !p.eq_ignore_ascii_case(chip) {
            return Err(format!("for product {p}, this GPU is a {chip}"));
        }
    }
    Ok(component)
}

/// Authenticate every RIM given, compare those that apply, and decide.
fn appraise_rims(
    ctx: &ReportContext<'_>,
    given: &[&Endorsement],
    req: &VerifyRequest<'_>,
    checks: &mut Checks,
) -> VResult<RimOutcome> {
    let mut applied: Vec<(Component, Arc<rim::Rim>, appraise::Comparison)> = Vec::new();
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

    // The best RIM of each component: the first that matches in full, else
    // the first.
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
        let others: Vec<Value> = applied
            .iter()
            .filter(|(k, o, _)| *k == component && !std::ptr::eq(o, r))
            .map(|(_, o, m)| appraise::to_json(o, m))
            .collect();
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
    let status = match (driver, vbios) {
        (None, None) => "no_rim",
        _ if [driver, vbios].into_iter().flatten().all(|(_, _, m)| m.all_matched()) => "match",
        _ => "mismatch",
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
    #[serde(default)]
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
    let mut gpus = Vec::new();
    for (i, g) in list.iter().enumerate() {
        let prefix = format!("GPU {i}: ");
        let mut sub = Checks::new();
        let r = verify_gpu_entry(g, inputs, req, &mut sub);
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

fn verify_gpu_entry(
    g: &GpuEvidence,
    inputs: &Inputs<'_>,
    req: &VerifyRequest<'_>,
    checks: &mut Checks,
) -> VResult<Map<String, Value>> {
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
    let mut c = verify_report(&report, inputs, Some(&chain), req, checks)?;
    let request_nonce = c.get("nonce").and_then(Value::as_str).unwrap_or_default().to_string();
    checks.require(
        "Evidence nonce",
        request_nonce == hex::encode(&nonce),
        "the entry's nonce is the report's request nonce",
        format!("entry nonce {} but the report's request nonce is {request_nonce}", hex::encode(&nonce)),
    )?;
    for (label, given, key) in [
        ("driver", &g.driver_version, "driver_version"),
        ("VBIOS", &g.vbios_version, "vbios_version"),
    ] {
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
    c.insert("arch".into(), json!(g.arch));
    c.insert("evidence_version".into(), json!(g.version));
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
