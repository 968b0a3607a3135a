//! AMD KDS: VCEK by chip and TCB, ASK/ASVK + ARK chains, CRLs.
//!
//! What an SEV-SNP report needs is read from the report alone (parsed by
//! `cachet-verify`'s own parser): the product line from its CPUID fields
//! (report version 3 and later), the CHIP_ID, the REPORTED_TCB (the TCB the
//! VCEK is derived from; its layout depends on the product) and which key
//! signed it. Nothing read here is trusted: the verifier checks the VCEK's
//! hwID and TCB against the report and the chain against the pinned ARK.
//!
//! Answers are handed to the verifier as its SNP endorsement loader reads
//! them ([`cachet_verify::snp::certs::Pool::from_endorsements`]): the VCEK
//! as DER, the chain as the PEM text KDS sends (ASK or ASVK, then ARK), the
//! CRL as DER.

use cachet_verify::anchors::AmdProduct as VerifyProduct;
use cachet_verify::encoding::decode_evidence;
use cachet_verify::snp::certs::{common_name, vek_cert};
use cachet_verify::snp::{Report, SigningKey, REPORT_LEN};
use cachet_verify::x509::{certs_from_pem, der_from_pem_or_der, parse_cert, parse_crl, pem_blocks};

use crate::http::{Answer, Http};
use crate::needs::{AmdKey, AmdProduct, AmdTcb};
use crate::{EndorseError, Fetched, Part, Resource, Sources};

/// What an SNP report needs, its product read from the report.
///
/// A version 2 report does not name its product (no CPUID fields): Milan is
/// assumed, as go-sev-guest does (`DefaultSevProduct`); a VCEK not found
/// then says so. Use [`needs_for`] when the operator names the product.
pub fn needs(evidence: &[u8]) -> Result<Vec<Resource>, EndorseError> {
    needs_for(evidence, None)
}

/// Whether the report leaves its product to be assumed (a version 2 report
/// has no CPUID fields); false for what is not an SNP report.
pub fn product_assumed(evidence: &[u8]) -> bool {
    let (_, raw) = decode_evidence(evidence);
    raw.get(..REPORT_LEN).and_then(|b| Report::parse(b).ok()).is_some_and(|r| r.cpuid.is_none())
}

/// What an SNP report needs, with the product given by the operator when
/// known (it must agree with the report's CPUID on version 3+ reports). The
/// report may be raw, hex or base64, optionally followed by an extended
/// report's certificate table.
pub fn needs_for(evidence: &[u8], product: Option<AmdProduct>) -> Result<Vec<Resource>, EndorseError> {
    let (_, raw) = decode_evidence(evidence);
    let Some(report_bytes) = raw.get(..REPORT_LEN) else {
        return Err(EndorseError::Evidence(format!(
            "{} bytes: an SEV-SNP report is {REPORT_LEN} bytes, so it cannot tell which AMD endorsements it needs",
            raw.len()
        )));
    };
    let rep = Report::parse(report_bytes)
        .map_err(|e| EndorseError::Evidence(format!("cannot read the SEV-SNP report to tell which AMD endorsements it needs: {e}")))?;
    let product = report_product(&rep, product)?;
    let key = match rep.signing_key {
        SigningKey::Vcek => AmdKey::Vcek,
        // KDS has no lookup of a VLEK: the VLEK itself comes with the
        // evidence (extended report) or --endorsements; only its chain is fetched.
        SigningKey::Vlek => AmdKey::Vlek,
        SigningKey::Unsigned => return Err(EndorseError::Evidence("the SEV-SNP report is not signed (SIGNING_KEY 7)".into())),
        SigningKey::Reserved(v) => return Err(EndorseError::Evidence(format!("the SEV-SNP report's SIGNING_KEY {v} is reserved"))),
    };
    let mut out = Vec::new();
    if key == AmdKey::Vcek {
        out.push(Resource::Vcek { product, hwid: hwid(&rep, product)?, tcb: reported_tcb(&rep, product) });
    }
    out.push(Resource::AmdChain { product, key });
    out.push(Resource::AmdCrl { product, key });
    Ok(out)
}

/// The product line: the report's CPUID (version 3+), else the operator's
/// choice, else Milan (version 2 reports come from Milan, or from Genoa
/// firmware before 1.55.x; a Genoa VCEK is then not found under Milan).
fn report_product(rep: &Report, given: Option<AmdProduct>) -> Result<AmdProduct, EndorseError> {
    let Some(cpuid) = rep.cpuid else {
        return Ok(given.unwrap_or(AmdProduct::Milan));
    };
    let from_report = cpuid.product().map(from_verify).ok_or_else(|| {
        EndorseError::Evidence(format!(
            "the report's CPUID family {:#x} model {:#x} is not a known SEV-SNP product (Milan, Genoa, Turin): \
             give the VCEK and its chain with --endorsements",
            cpuid.family, cpuid.model
        ))
    })?;
    match given {
        Some(g) if g != from_report => {
            Err(EndorseError::Evidence(format!("the report's CPUID names {}, not the {} given", from_report.as_str(), g.as_str())))
        }
        _ => Ok(from_report),
    }
}

fn from_verify(p: VerifyProduct) -> AmdProduct {
    match p {
        VerifyProduct::Milan => AmdProduct::Milan,
        VerifyProduct::Genoa => AmdProduct::Genoa,
        VerifyProduct::Turin => AmdProduct::Turin,
    }
}

pub(crate) fn to_verify(p: AmdProduct) -> VerifyProduct {
    match p {
        AmdProduct::Milan => VerifyProduct::Milan,
        AmdProduct::Genoa => VerifyProduct::Genoa,
        AmdProduct::Turin => VerifyProduct::Turin,
    }
}

/// Number of significant CHIP_ID bytes in KDS's hwid (Turin: 8).
fn hwid_len(product: AmdProduct) -> usize {
    if product == AmdProduct::Turin {
        8
    } else {
        64
    }
}

/// CHIP_ID as KDS takes it: lowercase hex, 64 bytes (Turin: the first 8).
fn hwid(rep: &Report, product: AmdProduct) -> Result<String, EndorseError> {
    let id = &rep.chip_id[..hwid_len(product)];
    if rep.mask_chip_key || id.iter().all(|b| *b == 0) {
        return Err(EndorseError::Evidence(
            "the SEV-SNP report's CHIP_ID is masked (MASK_CHIP_ID), so its VCEK cannot be looked up: \
             give the VCEK with --endorsements"
                .into(),
        ));
    }
    Ok(hex::encode(id))
}

/// REPORTED_TCB split by the product's layout.
fn reported_tcb(rep: &Report, product: AmdProduct) -> AmdTcb {
    let p = rep.reported_tcb.parts(to_verify(product));
    AmdTcb { bl: p.bootloader, tee: p.tee, snp: p.snp, ucode: p.microcode, fmc: p.fmc }
}

/// Whether `der` is the VCEK `Resource::Vcek { product, hwid, tcb }` names: a
/// VCEK of that chip, certifying that TCB, issued by that product's ASK. The
/// one check applied to what KDS answers and to what a bundle brings.
pub(crate) fn check_vcek(der: &[u8], product: AmdProduct, hwid: &str, tcb: &AmdTcb) -> Result<(), String> {
    let vek = vek_cert(der).map_err(|e| format!("the VCEK: {e}"))?.ok_or("not a VCEK (no AMD hwID)")?;
    let got = vek.hwid.as_deref().map(hex::encode).unwrap_or_default();
    if vek.kind != SigningKey::Vcek || !got.eq_ignore_ascii_case(hwid) {
        return Err("the VCEK is for another chip (its hwID differs from the report's CHIP_ID)".into());
    }
    let s = &vek.spl;
    let tcb_ok = s.bootloader == Some(tcb.bl)
        && s.tee == Some(tcb.tee)
        && s.snp == Some(tcb.snp)
        && s.microcode == Some(tcb.ucode)
        && (product != AmdProduct::Turin || s.fmc == tcb.fmc);
    if !tcb_ok {
        return Err("the VCEK certifies another TCB than the report's REPORTED_TCB".into());
    }
    let issuer = format!("SEV-{}", product.as_str());
    if vek.issuer_cn != issuer {
        return Err(format!("the VCEK is issued by '{}', not '{issuer}'", vek.issuer_cn));
    }
    Ok(())
}

/// Fetch one AMD resource.
pub async fn fetch(http: &Http, sources: &Sources, r: &Resource, now: i64) -> Result<Fetched, EndorseError> {
    let base = sources.kds_url.trim_end_matches('/');
    match r {
        Resource::Vcek { product, hwid, tcb } => {
            let want = hwid_len(*product) * 2;
            if hwid.len() != want || !hwid.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(EndorseError::Evidence(format!("hwid {hwid:?} is not {want} hex digits")));
            }
            let hwid = hwid.to_ascii_lowercase();
            let mut url = format!(
                "{base}/vcek/v1/{}/{hwid}?blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
                product.as_str(),
                tcb.bl,
                tcb.tee,
                tcb.snp,
                tcb.ucode
            );
            if *product == AmdProduct::Turin {
                url.push_str(&format!("&fmcSPL={:02}", tcb.fmc.unwrap_or(0)));
            }
            let what = format!(
                "{} VCEK for this chip at the reported TCB (if the chip is not {}, e.g. a version 2 report from Genoa, \
                 give the VCEK with --endorsements)",
                product.as_str(),
                product.as_str()
            );
            let a = ok_answer(http, &url, &what).await?;
            let der = der_from_pem_or_der(&a.body).map_err(|e| bad(&url, &format!("the VCEK is not a certificate: {e}")))?;
            // A mirror answering with another chip's or TCB's VCEK is not cached.
            check_vcek(&der, *product, &hwid, tcb).map_err(|m| bad(&url, &m))?;
            let next_update = not_after(&der);
            Ok(Fetched {
                resource: r.clone(),
                parts: vec![Part { name: format!("vcek-{}-{hwid}.der", product.as_str()), bytes: der }],
                fetched_at: now,
                next_update,
                source: url,
            })
        }
        Resource::AmdChain { product, key } => {
            let url = format!("{base}/{}/v1/{}/cert_chain", key.as_str(), product.as_str());
            let intermediate = match key {
                AmdKey::Vcek => format!("SEV-{}", product.as_str()),
                AmdKey::Vlek => format!("SEV-VLEK-{}", product.as_str()),
            };
            let what = format!(
                "{} {} certificate chain ({intermediate} and ARK-{})",
                product.as_str(),
                key.as_str().to_uppercase(),
                product.as_str()
            );
            let a = ok_answer(http, &url, &what).await?;
            let certs = certs_from_pem(&a.body);
            let names: Vec<String> =
                certs.iter().map(|der| parse_cert(der).ok().and_then(|c| common_name(c.subject())).unwrap_or_default()).collect();
            let root = format!("ARK-{}", product.as_str());
            if !names.contains(&intermediate) || !names.contains(&root) {
                return Err(bad(&url, &format!("expected the PEM certificates {intermediate} and {root}, got {names:?}")));
            }
            // The chain is as fresh as its first certificate to expire.
            let next_update = certs.iter().filter_map(|d| not_after(d)).min();
            Ok(Fetched {
                resource: r.clone(),
                parts: vec![Part { name: format!("{}-cert-chain-{}.pem", key.as_str(), product.as_str()), bytes: a.body }],
                fetched_at: now,
                next_update,
                source: url,
            })
        }
        Resource::AmdCrl { product, key } => {
            let url = format!("{base}/{}/v1/{}/crl", key.as_str(), product.as_str());
            let a = ok_answer(http, &url, &format!("{} {} CRL", product.as_str(), key.as_str().to_uppercase())).await?;
            // KDS sends DER; a PEM CRL from a mirror is accepted too.
            let der = pem_blocks(&a.body, "X509 CRL").into_iter().next().unwrap_or(a.body);
            let next_update = {
                let crl = parse_crl(&der).map_err(|e| bad(&url, &format!("the CRL: {e}")))?;
                let issuer = common_name(crl.issuer()).unwrap_or_default();
                let root = format!("ARK-{}", product.as_str());
                if issuer != root {
                    return Err(bad(&url, &format!("the CRL is issued by '{issuer}', not '{root}'")));
                }
                crl.next_update().map(|t| t.timestamp())
            };
            Ok(Fetched {
                resource: r.clone(),
                parts: vec![Part { name: format!("{}-crl-{}.der", key.as_str(), product.as_str()), bytes: der }],
                fetched_at: now,
                next_update,
                source: url,
            })
        }
        other => Err(EndorseError::Evidence(format!("{} is not an AMD KDS resource", other.key()))),
    }
}

/// `GET url`: a 200 answer, 404 as [`EndorseError::NotFound`], anything else a source error.
async fn ok_answer(http: &Http, url: &str, what: &str) -> Result<Answer, EndorseError> {
    let a = http.get(url).await?;
    match a.status {
        200 => Ok(a),
        404 => Err(EndorseError::NotFound { origin: url.to_string(), what: what.to_string() }),
        s => Err(EndorseError::Source { origin: url.to_string(), message: format!("HTTP {s} for the {what}: check --kds-url (AMD KDS)") }),
    }
}

fn bad(url: &str, message: &str) -> EndorseError {
    EndorseError::Source { origin: url.to_string(), message: message.to_string() }
}

/// A certificate's notAfter (Unix seconds).
fn not_after(der: &[u8]) -> Option<i64> {
    parse_cert(der).ok().map(|c| c.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_unreadable_evidence_says_why() {
        let err = needs(&[0u8; 100]).unwrap_err();
        assert!(err.to_string().contains("1184 bytes"), "{err}");
        let err = needs(&vec![0u8; REPORT_LEN]).unwrap_err();
        assert!(matches!(err, EndorseError::Evidence(_)), "{err:?}");
    }
}
