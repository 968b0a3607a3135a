//! # AMD SEV-SNP attestation reports
//!
//! Verifies an SEV-SNP `ATTESTATION_REPORT` (versions 2, 3/4 and 5: Milan,
//! Genoa, Turin) against AMD's key hierarchy, following the SEV-SNP Firmware
//! ABI specification (56860) and the VCEK/VLEK certificate specifications
//! (57230, 57371):
//!
//! 1. **Report format**: size, version, reserved fields zero ([`report`]).
//! 2. **Signature algorithm** (ECDSA P-384/SHA-384) and **Signing key**
//!    (VCEK or VLEK; an unsigned report is refused).
//! 3. The endorsement key certificate is found among the endorsements by
//!    content; its **Product** (Milan/Genoa/Turin) is read from its issuer
//!    name and productName extension and, for v3+ reports, must agree with
//!    the CPUID family/model in the report. Nothing is assumed.
//! 4. **VCEK certificate chain** (or VLEK): VCEK → ASK → ARK (VLEK → ASVK →
//!    ARK) to the *pinned* ARK of that product only, with **… validity** at
//!    the verification instant, and **Certificate chain roles** (ASK/ASVK
//!    and ARK names of that product).
//! 5. **AMD CRL**, when CRLs are among the endorsements: signed by the ARK
//!    (or ASK) of the chain, current, and not revoking the ASK (or VCEK).
//! 6. **Report signature** over bytes `0x000..=0x29F` with the VCEK/VLEK.
//! 7. **VCEK chip ID** (hwID extension = CHIP_ID; 8 bytes on Turin) and
//!    **VCEK TCB** (the certified SPLs = REPORTED_TCB, per product layout).
//!
//! [`verify_report`] is the reusable core (the Azure verifier calls it with
//! the report inside an HCL report and the VCEK found in the evidence);
//! [`verify`] adds the request's optional nonce check.

pub mod certs;
pub mod report;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
use serde_json::{Map, Value};

use crate::anchors::{AmdProduct, AnchorKind};
use crate::x509::{self, parse_cert, parse_crl, VerifiedChain};
use crate::{Checks, Endorsement, TrustAnchors, UnixTime, VResult, VerifyRequest};

use certs::{Pool, VekCert};
pub use report::{Report, SigningKey, REPORT_LEN, SIGNED_LEN};

/// Verify SEV-SNP evidence: a report (optionally followed by the
/// certificate table of an extended report) with the request's
/// endorsements, and, when the caller expects a nonce, check that
/// REPORT_DATA is it (zero-padded, see [`crate::nonce`]).
pub fn verify(req: &VerifyRequest<'_>, checks: &mut Checks) -> VResult<Value> {
    let claims = verify_report(req.evidence, req.endorsements, req.anchors, req.at, checks)?;
    if let Some(nonce) = req.expected_nonce {
        let data = report_data(&claims).unwrap_or([0u8; 64]);
        crate::nonce::record(checks, "Nonce", "REPORT_DATA", &data, nonce)?;
    }
    Ok(claims)
}

/// Verify one SEV-SNP report and return its claims.
///
/// `report` is the 1184-byte report, optionally followed by an extended
/// report's certificate table (whose certificates join the endorsements,
/// untrusted like them). `endorsements` holds the VCEK or VLEK (DER or PEM),
/// the ASK/ASVK and ARK (e.g. AMD's `cert_chain` PEM) and optional CRLs; the
/// chain must end at the anchor of kind [`AnchorKind::AmdArk`] for the
/// product the certificates and report name.
pub fn verify_report(
    report: &[u8],
    endorsements: &[Endorsement],
    anchors: &TrustAnchors,
    at: UnixTime,
    checks: &mut Checks,
) -> VResult<Value> {
    const FORMAT: &str = "Report format";
    let Some((report_bytes, trailing)) = report.split_at_checked(REPORT_LEN) else {
        return Err(checks.fail(FORMAT, format!("{} bytes; an SEV-SNP report is {REPORT_LEN} bytes", report.len())));
    };
    let mut pool = Pool::from_endorsements(endorsements);
    let mut from_table = 0;
    if !trailing.is_empty() {
        let table = certs::certs_from_table(trailing)
            .map_err(|e| checks.fail(FORMAT, format!("{} bytes after the report: {e}", trailing.len())))?;
        for der in table.iter().flat_map(|body| certs::entry_certs(body)) {
            pool.add_cert(der);
            from_table += 1;
        }
    }
    let rep = checks.record(
        FORMAT,
        Report::parse(report_bytes),
        format!("version {}, {REPORT_LEN} bytes, reserved fields zero", u32_le(report_bytes)),
    )?;
    checks.require(
        "Signature algorithm",
        rep.signature_algo == report::SIG_ALGO_ECDSA_P384_SHA384,
        "ECDSA P-384 with SHA-384",
        format!("SIGNATURE_ALGO {} is not ECDSA P-384/SHA-384 (1)", rep.signature_algo),
    )?;
    let kind = rep.signing_key;
    checks.require(
        "Signing key",
        matches!(kind, SigningKey::Vcek | SigningKey::Vlek),
        kind.label(),
        match kind {
            SigningKey::Unsigned => "SIGNING_KEY is 7: the report is not signed".to_string(),
            SigningKey::Reserved(v) => format!("SIGNING_KEY {v} is reserved"),
            _ => String::new(),
        },
    )?;
    let vek = select_vek(&rep, &pool, from_table, checks)?;
    let product = check_product(&rep, &vek, checks)?;
    let label = kind.label();
    // `of_kind` is not `Clone`; the chain walk needs to restart it.
    let arks: Vec<&crate::anchors::Anchor> = anchors.of_kind(AnchorKind::AmdArk(product)).collect();
    let chain = crate::cache::verify_chain(&format!("{label} certificate chain"), &vek.der, &pool.certs, arks.iter().copied(), at, checks)?;
    check_roles(&chain, kind, product, checks)?;
    let crl_checked = check_crls(&pool, &chain, at, checks)?;
    check_signature(&rep, &vek, checks)?;
    if kind == SigningKey::Vcek {
        check_chip_id(&rep, &vek, product, checks)?;
    }
    check_tcb(&rep, &vek, product, checks)?;
    Ok(claims(&rep, &vek, product, crl_checked))
}

/// REPORT_DATA from the claims of [`verify_report`] (e.g. to compare it with
/// a hash of the runtime data an Azure HCL report carries).
pub fn report_data(claims: &Value) -> Option<[u8; 64]> {
    let text = claims.get("report_data")?.as_str()?;
    hex::decode(text).ok()?.try_into().ok()
}

fn u32_le(b: &[u8]) -> u32 {
    b.get(..4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_le_bytes).unwrap_or(0)
}

/// Find the VCEK/VLEK among the endorsement certificates: the one of the
/// kind the report names, preferring one whose hwID is the report's chip ID.
fn select_vek(rep: &Report, pool: &Pool, from_table: usize, checks: &mut Checks) -> VResult<VekCert> {
    let label = rep.signing_key.label();
    let name = format!("{label} certificate");
    let mut problems = Vec::new();
    let mut found = Vec::new();
    for der in &pool.certs {
        match certs::vek_cert(der) {
            Ok(Some(v)) if v.kind == rep.signing_key => found.push(v),
            Ok(Some(v)) => problems.push(format!("a {} certificate ('{}')", v.kind.label(), x509::subject_of(der))),
            Ok(None) => {}
            Err(e) => problems.push(format!("'{}': {e}", x509::subject_of(der))),
        }
    }
    let chip_match = |v: &VekCert| v.hwid.as_deref().is_some_and(|h| rep.chip_id.get(..h.len()) == Some(h));
    let pick = found.iter().position(chip_match).unwrap_or(0);
    match found.into_iter().nth(pick) {
        Some(v) => {
            let detail = format!(
                "'{}' (productName {}, serial {}){}",
                x509::subject_of(&v.der),
                v.product_name,
                hex::encode(&v.raw_serial),
                if from_table > 0 { format!("; {from_table} certificates from the report's certificate table") } else { String::new() }
            );
            checks.pass(&name, detail);
            Ok(v)
        }
        None => {
            let mut msg =
                format!("no {label} certificate among the endorsements ({} certificates, {} CRLs", pool.certs.len(), pool.crls.len());
            if !pool.ignored.is_empty() {
                msg.push_str(&format!("; not recognised: {}", pool.ignored.join(", ")));
            }
            msg.push(')');
            if !problems.is_empty() {
                msg.push_str(&format!("; found {}", problems.join("; ")));
            }
            Err(checks.fail(&name, msg))
        }
    }
}

/// The product line, from the endorsement key's issuer name and productName
/// extension and (v3+) the report's CPUID; every source present must agree.
fn check_product(rep: &Report, vek: &VekCert, checks: &mut Checks) -> VResult<AmdProduct> {
    const NAME: &str = "Product";
    let from_issuer = certs::product_from_intermediate_cn(&vek.issuer_cn).filter(|p| certs::intermediate_cn(vek.kind, *p) == vek.issuer_cn);
    let Some(product) = from_issuer else {
        return Err(checks.fail(
            NAME,
            format!("{} issuer '{}' is not an AMD {} signing key of a known product", vek.kind.label(), vek.issuer_cn, vek.kind.label()),
        ));
    };
    // productName is in every VCEK; should a VLEK lack it, the issuer (and
    // CPUID, and the product's pinned ARK) still name the product.
    if !vek.product_name.is_empty() && certs::product_from_product_name(&vek.product_name) != Some(product) {
        return Err(checks.fail(
            NAME,
            format!(
                "{} productName '{}' does not name {} (its issuer is '{}')",
                vek.kind.label(),
                vek.product_name,
                product.name(),
                vek.issuer_cn
            ),
        ));
    }
    let mut detail = format!("{} (issuer '{}', productName '{}'", product.name(), vek.issuer_cn, vek.product_name);
    if let Some(c) = rep.cpuid {
        match c.product() {
            Some(p) if p == product => {
                detail.push_str(&format!(", CPUID family {:#x} model {:#x}", c.family, c.model));
            }
            Some(p) => {
                return Err(checks.fail(
                    NAME,
                    format!(
                        "the report's CPUID (family {:#x}, model {:#x}) is {}, but the {} is for {}",
                        c.family,
                        c.model,
                        p.name(),
                        vek.kind.label(),
                        product.name()
                    ),
                ));
            }
            None => {
                return Err(checks
                    .fail(NAME, format!("the report's CPUID family {:#x} model {:#x} is not a known SEV-SNP product", c.family, c.model)));
            }
        }
    }
    detail.push(')');
    checks.pass(NAME, detail);
    Ok(product)
}

/// The verified path must be exactly key → ASK/ASVK → ARK of the product.
fn check_roles(chain: &VerifiedChain, kind: SigningKey, product: AmdProduct, checks: &mut Checks) -> VResult<()> {
    let cn = |i: usize| chain.certs.get(i).and_then(|d| parse_cert(d).ok()).and_then(|c| certs::common_name(c.subject()));
    let want_mid = certs::intermediate_cn(kind, product);
    let want_root = certs::root_cn(product);
    let (mid, root) = (cn(1).unwrap_or_default(), cn(2).unwrap_or_default());
    let ok = chain.certs.len() == 3 && mid == want_mid && root == want_root;
    checks.require(
        "Certificate chain roles",
        ok,
        format!("{} → {mid} → {root}", kind.label()),
        format!(
            "expected {} → {want_mid} → {want_root}, got {} certificates ({})",
            kind.label(),
            chain.certs.len(),
            chain.certs.iter().map(|d| x509::subject_of(d)).collect::<Vec<_>>().join(" → ")
        ),
    )
}

/// Apply each CRL issued by a CA of the verified chain: that CA must be
/// allowed to sign CRLs, the CRL must verify (signature, issuer,
/// thisUpdate/nextUpdate), and it must not list the
/// certificate that CA issued in this chain. CRLs of other issuers are
/// noted and ignored. Returns whether any CRL was applied.
fn check_crls(pool: &Pool, chain: &VerifiedChain, at: UnixTime, checks: &mut Checks) -> VResult<bool> {
    const NAME: &str = "AMD CRL";
    let mut applied = 0;
    let mut ignored = Vec::new();
    for crl_der in &pool.crls {
        let crl = parse_crl(crl_der).map_err(|e| checks.fail(NAME, e))?;
        let issuer_idx =
            chain.certs.iter().enumerate().skip(1).find(|(_, d)| parse_cert(d).is_ok_and(|c| c.subject() == crl.issuer())).map(|(i, _)| i);
        let Some(idx) = issuer_idx else {
            ignored.push(crl.issuer().to_string());
            continue;
        };
        let (Some(issuer_der), Some(subject_der)) = (chain.certs.get(idx), chain.certs.get(idx - 1)) else {
            continue;
        };
        // verify_crl refuses an issuer whose keyUsage lacks cRLSign (AMD's
        // ARK has it; its ASK/ASVK do not).
        let verified = crate::cache::verify_crl(NAME, crl_der, issuer_der, at, checks)?;
        let subject = parse_cert(subject_der).map_err(|e| checks.fail(NAME, e))?;
        if verified.is_revoked(subject.raw_serial()) {
            return Err(checks.fail(
                NAME,
                format!(
                    "'{}' (serial {}) is revoked by the CRL of '{}'",
                    subject.subject(),
                    hex::encode(subject.raw_serial()),
                    crl.issuer()
                ),
            ));
        }
        applied += 1;
    }
    if !ignored.is_empty() {
        checks.pass(NAME, format!("ignored {} CRL(s) of issuers outside this chain: {}", ignored.len(), ignored.join("; ")));
    }
    Ok(applied > 0)
}

/// ECDSA P-384/SHA-384 over bytes 0x000..=0x29F with the VCEK/VLEK key.
fn check_signature(rep: &Report, vek: &VekCert, checks: &mut Checks) -> VResult<()> {
    const NAME: &str = "Report signature";
    let r = (|| {
        let cert = parse_cert(&vek.der)?;
        if x509::ec_curve(cert.public_key()) != Some("P-384") {
            return Err(format!("the {} key is not an ECDSA P-384 key", vek.kind.label()));
        }
        let sig = rep.signature_fixed()?;
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, cert.public_key().subject_public_key.data.as_ref())
            .verify(rep.signed_bytes(), &sig)
            .map_err(|_| format!("the signature over bytes 0x000..0x29F does not verify with the {}", vek.kind.label()))
    })();
    checks.record(NAME, r, format!("ECDSA P-384/SHA-384 by the {}", vek.kind.label()))
}

/// The VCEK's hwID must be the report's CHIP_ID: 64 bytes, or on Turin the
/// 8-byte hwID equal to the first 8 bytes of CHIP_ID with the rest zero.
fn check_chip_id(rep: &Report, vek: &VekCert, product: AmdProduct, checks: &mut Checks) -> VResult<()> {
    const NAME: &str = "VCEK chip ID";
    let hwid = vek.hwid.as_deref().unwrap_or_default();
    let chip = &rep.chip_id;
    let mismatch = || format!("VCEK hwID {} is not the report's CHIP_ID {}", hex::encode(hwid), hex::encode(chip));
    let r = if chip.iter().all(|b| *b == 0) {
        Err("the report's CHIP_ID is masked (all zero), so it cannot be bound to a VCEK".to_string())
    } else {
        match (hwid.len(), product) {
            (64, _) => (hwid == chip.as_slice()).then_some(()).ok_or_else(mismatch),
            (8, AmdProduct::Turin) => match chip.split_at_checked(8) {
                Some((head, rest)) if head == hwid && rest.iter().all(|b| *b == 0) => Ok(()),
                _ => Err(mismatch()),
            },
            (8, p) => Err(format!("an 8-byte hwID is only defined for Turin, this VCEK is for {}", p.name())),
            (n, _) => Err(format!("VCEK hwID has {n} bytes; expected 64 (8 on Turin)")),
        }
    };
    checks.record(NAME, r, format!("hwID = CHIP_ID ({} bytes)", hwid.len()))
}

/// The certified SPLs must equal REPORTED_TCB, read with the product's
/// layout (FMC on Turin); reserved SPLs the certificate carries must match
/// the reserved TCB bytes too.
fn check_tcb(rep: &Report, vek: &VekCert, product: AmdProduct, checks: &mut Checks) -> VResult<()> {
    let name = format!("{} TCB", vek.kind.label());
    let parts = rep.reported_tcb.parts(product);
    let spl = &vek.spl;
    let mut named = vec![
        ("bootloader", parts.bootloader, spl.bootloader),
        ("tee", parts.tee, spl.tee),
        ("snp", parts.snp, spl.snp),
        ("microcode", parts.microcode, spl.microcode),
    ];
    if let Some(fmc) = parts.fmc {
        named.push(("fmc", fmc, spl.fmc));
    }
    let mut problems = Vec::new();
    for (what, in_report, in_cert) in named {
        match in_cert {
            None => problems.push(format!("the {} has no {what} SPL extension", vek.kind.label())),
            Some(c) if c != in_report => problems.push(format!("{what}: report {in_report}, {} {c}", vek.kind.label())),
            Some(_) => {}
        }
    }
    for (n, in_report) in &parts.reserved {
        let in_cert = spl.reserved.get(usize::from(*n)).copied().flatten().unwrap_or(0);
        if in_cert != *in_report {
            problems.push(format!("reserved spl_{n}: report {in_report}, {} {in_cert}", vek.kind.label()));
        }
    }
    checks.require(
        &name,
        problems.is_empty(),
        format!("REPORTED_TCB {} = certified TCB", hex::encode(rep.reported_tcb.0)),
        format!("REPORTED_TCB {} differs from the certificate: {}", hex::encode(rep.reported_tcb.0), problems.join("; ")),
    )
}

/// The normalized claims of a verified report.
fn claims(rep: &Report, vek: &VekCert, product: AmdProduct, crl_checked: bool) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("tee", "snp".into());
    put("product", product.name().into());
    put("signing_key", rep.signing_key.name().into());
    put("endorsement_key_product_name", vek.product_name.clone().into());
    if let Some(csp) = &vek.csp_id {
        put("csp_id", csp.clone().into());
    }
    put("version", rep.version.into());
    put("guest_svn", rep.guest_svn.into());
    put("policy", format!("{:#x}", rep.policy.0).into());
    put("policy_flags", rep.policy.to_json());
    put("debug", rep.policy.debug_allowed().into());
    put("vmpl", rep.vmpl.into());
    put("signature_algo", "ecdsa-p384-sha384".into());
    put("platform_info", format!("{:#x}", rep.platform_info.0).into());
    put("platform_flags", rep.platform_info.to_json());
    put("author_key_en", rep.author_key_en.into());
    put("mask_chip_key", rep.mask_chip_key.into());
    put("family_id", hex::encode(rep.family_id).into());
    put("image_id", hex::encode(rep.image_id).into());
    put("report_data", hex::encode(rep.report_data).into());
    put("measurement", hex::encode(rep.measurement).into());
    put("host_data", hex::encode(rep.host_data).into());
    put("id_key_digest", hex::encode(rep.id_key_digest).into());
    put("author_key_digest", hex::encode(rep.author_key_digest).into());
    put("report_id", hex::encode(rep.report_id).into());
    put("report_id_ma", hex::encode(rep.report_id_ma).into());
    put("chip_id", hex::encode(rep.chip_id).into());
    put("current_tcb", rep.current_tcb.to_json(product));
    put("reported_tcb", rep.reported_tcb.to_json(product));
    put("committed_tcb", rep.committed_tcb.to_json(product));
    put("launch_tcb", rep.launch_tcb.to_json(product));
    put("current_version", rep.current_version.to_string().into());
    put("committed_version", rep.committed_version.to_string().into());
    if let Some(c) = rep.cpuid {
        put("cpuid_family", c.family.into());
        put("cpuid_model", c.model.into());
        put("cpuid_stepping", c.stepping.into());
    }
    if let Some(v) = rep.launch_mit_vector {
        put("launch_mit_vector", format!("{v:#x}").into());
    }
    if let Some(v) = rep.current_mit_vector {
        put("current_mit_vector", format!("{v:#x}").into());
    }
    put("crl_checked", crl_checked.into());
    Value::Object(m)
}
