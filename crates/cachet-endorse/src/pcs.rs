//! Intel PCS API v4 / PCCS: TCB Info, QE Identity, PCK CRLs, the root CA CRL.
//!
//! What a quote needs is read from the quote alone: the PCK certificate in
//! its certification data (type 5, a PEM chain) names the platform's FMSPC
//! (SGX extension `1.2.840.113741.1.13.1`, sub-OID `.4`) and, by its issuer,
//! which PCK CA's CRL applies. Nothing read here is trusted: the verifier
//! checks the PCK chain, every signature and every CRL against the pinned
//! Intel SGX Root CA.
//!
//! Answers are handed to the verifier in the forms its DCAP collateral
//! loader reads ([`cachet_verify::dcap::collateral`]): the PCS JSON body
//! exactly as sent (`{"tcbInfo":…,"signature":…}`), the issuer chain from
//! the response header as PEM, and CRLs as DER (PCCS sends the hex of the
//! DER, PCS DER or PEM: all are accepted and turned into DER).

use cachet_verify::dcap::collateral::{from_endorsements, percent_decode};
use cachet_verify::dcap::pck::parse_pck_extensions;
use cachet_verify::dcap::quote::{self, QuoteTee, CERT_TYPE_PCK_CHAIN};
use cachet_verify::encoding::decode_evidence;
use cachet_verify::x509::{certs_from_pem, parse_cert, parse_crl, pem_blocks};
use cachet_verify::Tee;

use crate::http::{Answer, Http};
use crate::needs::{IntelTee, PckCa, TcbUpdate};
use crate::{EndorseError, Fetched, Part, Resource, Sources};

/// Intel's own PCS host: the root CA CRL then comes from the root's CRL
/// distribution point, since PCS has no `rootcacrl` route.
const INTEL_PCS_HOST: &str = "api.trustedservices.intel.com";
/// The CRL distribution point of the Intel SGX Root CA.
pub const INTEL_ROOT_CA_CRL_URL: &str = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// What an SGX or TDX quote needs (FMSPC and PCK CA from the PCK certificate
/// in the quote's certification data, type 5). The quote may be raw, hex or base64.
pub fn needs(tee: Tee, evidence: &[u8]) -> Result<Vec<Resource>, EndorseError> {
    let want = match tee {
        Tee::Sgx => IntelTee::Sgx,
        Tee::Tdx => IntelTee::Tdx,
        other => return Err(EndorseError::Evidence(format!("{other} evidence is not an Intel quote"))),
    };
    let (_, raw) = decode_evidence(evidence);
    let q = quote::parse(&raw)
        .map_err(|e| EndorseError::Evidence(format!("cannot read the quote to tell which Intel collateral it needs: {e}")))?;
    let found = match q.tee() {
        QuoteTee::Sgx => IntelTee::Sgx,
        QuoteTee::Tdx => IntelTee::Tdx,
    };
    if found != want {
        return Err(EndorseError::Evidence(format!(
            "this is a {} quote, not {}: send it as tee \"{}\"",
            found.as_str().to_uppercase(),
            want.as_str().to_uppercase(),
            found.as_str()
        )));
    }
    if q.cert_data_type != CERT_TYPE_PCK_CHAIN {
        return Err(EndorseError::Evidence(format!(
            "the quote carries certification data type {}, not the PCK chain (type {CERT_TYPE_PCK_CHAIN}): give the PCK certificate chain \
             with --endorsements or use a PCCS that resolves the PCK certificate (PPID-based quotes need the platform's PCK certificate)",
            q.cert_data_type
        )));
    }
    let certs = certs_from_pem(q.cert_data);
    let leaf_der = certs.first().ok_or_else(|| {
        EndorseError::Evidence(
            "the quote's certification data (type 5) holds no PEM certificate: it needs the PCK certificate chain".into(),
        )
    })?;
    let leaf = parse_cert(leaf_der).map_err(|e| EndorseError::Evidence(format!("the quote's PCK certificate: {e}")))?;
    let ext = parse_pck_extensions(&leaf).map_err(|e| EndorseError::Evidence(format!("the quote's PCK certificate: {e}")))?;
    let issuer = leaf.issuer().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or("").to_string();
    let ca = pck_ca(&issuer).ok_or_else(|| {
        EndorseError::Evidence(format!(
            "the quote's PCK certificate is issued by \"{issuer}\", not \"Intel SGX PCK Processor CA\" or \"Intel SGX PCK Platform CA\""
        ))
    })?;
    Ok(vec![
        Resource::TcbInfo { tee: want, fmspc: hex::encode(ext.fmspc) },
        Resource::QeIdentity { tee: want },
        Resource::PckCrl { ca },
        Resource::RootCaCrl,
    ])
}

/// Which PCK CA an issuer common name is.
fn pck_ca(issuer_cn: &str) -> Option<PckCa> {
    match issuer_cn {
        "Intel SGX PCK Processor CA" => Some(PckCa::Processor),
        "Intel SGX PCK Platform CA" => Some(PckCa::Platform),
        _ => None,
    }
}

/// Fetch one Intel resource.
pub async fn fetch(http: &Http, sources: &Sources, r: &Resource, now: i64) -> Result<Fetched, EndorseError> {
    let base = sources.pcs_url.trim_end_matches('/');
    match r {
        Resource::TcbInfo { tee, fmspc } => fetch_tcb_info(http, sources, *tee, fmspc, TcbUpdate::Standard, now).await,
        Resource::QeIdentity { tee } => {
            let url = format!("{base}/{}/certification/v4/qe/identity", tee.as_str());
            let id = if *tee == IntelTee::Sgx { "QE" } else { "TD_QE" };
            let doc = SignedDoc {
                what: format!("{} QE Identity", tee.as_str().to_uppercase()),
                chain_headers: &["sgx-enclave-identity-issuer-chain", "enclave-identity-issuer-chain"],
                member: "enclaveIdentity",
                expect: &[("id", id)],
                names: (format!("qe-identity-{}.json", tee.as_str()), "qe-identity-issuer-chain.pem"),
            };
            signed_doc(http, r, url, doc, now).await.and_then(|f| accepted(f, |c| c.qe_identities.len() == 1, "a QE Identity"))
        }
        Resource::PckCrl { ca } => {
            let url = format!("{base}/sgx/certification/v4/pckcrl?ca={}&encoding=der", ca.as_str());
            let a = ok_answer(http, &url, &format!("PCK {} CA CRL", ca.as_str())).await?;
            let chain = issuer_chain(&a, &["sgx-pck-crl-issuer-chain"], &url)?;
            let want = match ca {
                PckCa::Processor => "Intel SGX PCK Processor CA",
                PckCa::Platform => "Intel SGX PCK Platform CA",
            };
            let (der, next_update) = crl_der(&a.body, want, &url)?;
            Ok(Fetched {
                resource: r.clone(),
                parts: vec![
                    Part { name: format!("pck-crl-{}.der", ca.as_str()), bytes: der },
                    Part { name: "pck-crl-issuer-chain.pem".into(), bytes: chain },
                ],
                fetched_at: now,
                next_update,
                source: url,
            })
        }
        Resource::RootCaCrl => {
            let host = url::Url::parse(base).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase));
            let answer = if host.as_deref() == Some(INTEL_PCS_HOST) {
                let url = INTEL_ROOT_CA_CRL_URL.to_string();
                let a = ok_answer(http, &url, "Intel SGX Root CA CRL").await?;
                (url, a)
            } else {
                // A PCCS serves it (hex of the DER); a PCS-shaped mirror may
                // only serve the distribution point's path.
                let pccs = format!("{base}/sgx/certification/v4/rootcacrl");
                match ok_answer(http, &pccs, "Intel SGX Root CA CRL").await {
                    Ok(a) => (pccs, a),
                    Err(EndorseError::NotFound { .. }) => {
                        let url = format!("{base}/IntelSGXRootCA.der");
                        let a = ok_answer(http, &url, "Intel SGX Root CA CRL (PCCS rootcacrl and IntelSGXRootCA.der)").await?;
                        (url, a)
                    }
                    Err(e) => return Err(e),
                }
            };
            let (url, a) = answer;
            let (der, next_update) = crl_der(&a.body, "Intel SGX Root CA", &url)?;
            Ok(Fetched {
                resource: r.clone(),
                parts: vec![Part { name: "root-ca-crl.der".into(), bytes: der }],
                fetched_at: now,
                next_update,
                source: url,
            })
        }
        other => Err(EndorseError::Evidence(format!("{} is not an Intel PCS resource", other.key()))),
    }
}

/// The TCB Info of an FMSPC from the `update` channel (`Standard`: the
/// request verification makes, without the parameter, as before). An `Early`
/// answer is a TCB recovery's TCB Info ahead of enforcement: its
/// [`Fetched::resource`] still names the TCB Info, so it must never be kept
/// in a cache under that key (the TCB recovery forecast reads it and keeps nothing).
pub async fn fetch_tcb_info(
    http: &Http,
    sources: &Sources,
    tee: IntelTee,
    fmspc: &str,
    update: TcbUpdate,
    now: i64,
) -> Result<Fetched, EndorseError> {
    if fmspc.len() != 12 || !fmspc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(EndorseError::Evidence(format!("FMSPC {fmspc:?} is not 12 hex digits")));
    }
    let base = sources.pcs_url.trim_end_matches('/');
    let channel = match update {
        TcbUpdate::Standard => String::new(),
        TcbUpdate::Early => "&update=early".to_string(),
    };
    let url = format!("{base}/{}/certification/v4/tcb?fmspc={fmspc}{channel}", tee.as_str());
    let id = if tee == IntelTee::Sgx { "SGX" } else { "TDX" };
    let r = Resource::TcbInfo { tee, fmspc: fmspc.to_string() };
    let what = match update {
        TcbUpdate::Standard => format!("{} TCB Info for FMSPC {fmspc}", tee.as_str().to_uppercase()),
        TcbUpdate::Early => format!("{} TCB Info for FMSPC {fmspc} (update=early)", tee.as_str().to_uppercase()),
    };
    let doc = SignedDoc {
        what,
        chain_headers: &["tcb-info-issuer-chain", "sgx-tcb-info-issuer-chain"],
        member: "tcbInfo",
        expect: &[("id", id), ("fmspc", fmspc)],
        names: (format!("tcb-info-{}-{fmspc}.json", tee.as_str()), "tcb-info-issuer-chain.pem"),
    };
    signed_doc(http, &r, url, doc, now).await.and_then(|f| accepted(f, |c| c.tcb_infos.len() == 1, "a TCB Info"))
}

/// `GET url`: a 200 answer, 404 as [`EndorseError::NotFound`], anything else a source error.
/// A signed JSON document of PCS (TCB Info, QE Identity): where its issuer
/// chain travels, what it must say, and the names its parts get.
struct SignedDoc<'a> {
    what: String,
    chain_headers: &'a [&'a str],
    member: &'a str,
    expect: &'a [(&'a str, &'a str)],
    names: (String, &'a str),
}

/// Fetch a signed JSON document and its issuer chain, checked to be the one asked for.
async fn signed_doc(http: &Http, r: &Resource, url: String, doc: SignedDoc<'_>, now: i64) -> Result<Fetched, EndorseError> {
    let a = ok_answer(http, &url, &doc.what).await?;
    let chain = issuer_chain(&a, doc.chain_headers, &url)?;
    let next_update = signed_json(&a.body, doc.member, doc.expect, &url)?;
    Ok(Fetched {
        resource: r.clone(),
        parts: vec![Part { name: doc.names.0, bytes: a.body }, Part { name: doc.names.1.into(), bytes: chain }],
        fetched_at: now,
        next_update,
        source: url,
    })
}

async fn ok_answer(http: &Http, url: &str, what: &str) -> Result<Answer, EndorseError> {
    let a = http.get(url).await?;
    match a.status {
        200 => Ok(a),
        404 => Err(EndorseError::NotFound { origin: url.to_string(), what: what.to_string() }),
        s => Err(EndorseError::Source {
            origin: url.to_string(),
            message: format!("HTTP {s} for the {what}: check --pcs-url (Intel PCS API v4 or a PCCS)"),
        }),
    }
}

/// The issuer chain of a PCS answer, from the first of `names` present: the
/// PEM chain, URL-decoded when it is URL-encoded (as PCS and PCCS send it).
fn issuer_chain(a: &Answer, names: &[&str], url: &str) -> Result<Vec<u8>, EndorseError> {
    let bad = |message: String| EndorseError::Source { origin: url.to_string(), message };
    let (name, value) = names
        .iter()
        .find_map(|n| a.header(n).map(|v| (*n, v)))
        .ok_or_else(|| bad(format!("the answer has no {} header (issuer chain)", names.first().copied().unwrap_or_default())))?;
    let pem = if value.contains("-----BEGIN ") {
        value.to_string()
    } else {
        percent_decode(value).ok_or_else(|| bad(format!("the {name} header is not URL-encoded PEM")))?
    };
    if certs_from_pem(pem.as_bytes()).is_empty() {
        return Err(bad(format!("the {name} header holds no certificate")));
    }
    Ok(pem.into_bytes())
}

/// Check a PCS signed-JSON body (`{"<member>":{…},"signature":"…"}`) is
/// what was asked for (`expect`: members and their values, any case), so a
/// wrong answer is never cached under this resource's key; return its
/// `nextUpdate` (Unix seconds).
fn signed_json(body: &[u8], member: &str, expect: &[(&str, &str)], url: &str) -> Result<Option<i64>, EndorseError> {
    let bad = |message: String| EndorseError::Source { origin: url.to_string(), message };
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("not a PCS answer ({{\"{member}\":…,\"signature\":…}}): {e}")))?;
    let inner = v.get(member).filter(|x| x.is_object()).ok_or_else(|| bad(format!("the answer has no \"{member}\" object")))?;
    if !v.get("signature").is_some_and(serde_json::Value::is_string) {
        return Err(bad("the answer has no \"signature\"".into()));
    }
    for (k, want) in expect {
        let got = inner.get(*k).and_then(serde_json::Value::as_str).unwrap_or_default();
        if !got.eq_ignore_ascii_case(want) {
            return Err(bad(format!("asked for {member} with {k} {want}, the answer has {k} {got:?}")));
        }
    }
    let next = inner.get("nextUpdate").and_then(serde_json::Value::as_str).ok_or_else(|| bad(format!("\"{member}\" has no nextUpdate")))?;
    let t = time::OffsetDateTime::parse(next, &time::format_description::well_known::Rfc3339)
        .map_err(|e| bad(format!("nextUpdate {next:?} is not RFC 3339: {e}")))?;
    Ok(Some(t.unix_timestamp()))
}

/// Whether the verifier's collateral loader reads the parts as intended.
fn accepted(f: Fetched, ok: impl Fn(&cachet_verify::dcap::collateral::Collateral) -> bool, what: &str) -> Result<Fetched, EndorseError> {
    let c = from_endorsements(&f.endorsements());
    if ok(&c) && c.problems.is_empty() {
        Ok(f)
    } else {
        Err(EndorseError::Source {
            origin: f.source.clone(),
            message: format!("the answer is not {what} the verifier can read: {}", c.problems.join("; ")),
        })
    }
}

/// A CRL body as DER (PCS: DER or PEM; PCCS: the hex of the DER), checked to
/// be a CRL issued by `issuer_cn`; with its `nextUpdate`.
fn crl_der(body: &[u8], issuer_cn: &str, url: &str) -> Result<(Vec<u8>, Option<i64>), EndorseError> {
    let bad = |message: String| EndorseError::Source { origin: url.to_string(), message };
    let der = if body.first() == Some(&0x30) {
        body.to_vec()
    } else {
        let text = std::str::from_utf8(body).map_err(|_| bad("the CRL is neither DER, PEM nor hex".into()))?;
        if text.contains("-----BEGIN X509 CRL-----") {
            pem_blocks(text.as_bytes(), "X509 CRL").into_iter().next().ok_or_else(|| bad("the PEM holds no CRL".into()))?
        } else {
            let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace() && *c != '\0').collect();
            hex::decode(&compact).map_err(|_| bad("the CRL is neither DER, PEM nor hex".into()))?
        }
    };
    let crl = parse_crl(&der).map_err(|e| bad(format!("the CRL: {e}")))?;
    let issuer = crl.issuer().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or("").to_string();
    if issuer != issuer_cn {
        return Err(bad(format!("the CRL is issued by \"{issuer}\", not \"{issuer_cn}\"")));
    }
    let next_update = crl.next_update().map(|t| t.timestamp());
    Ok((der, next_update))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pck_ca_names() {
        assert_eq!(pck_ca("Intel SGX PCK Processor CA"), Some(PckCa::Processor));
        assert_eq!(pck_ca("Intel SGX PCK Platform CA"), Some(PckCa::Platform));
        assert_eq!(pck_ca("Intel SGX Root CA"), None);
    }

    #[test]
    fn signed_json_needs_member_signature_and_next_update() {
        let ok = br#"{"tcbInfo":{"id":"TDX","fmspc":"00806F050000","nextUpdate":"2025-07-19T10:01:18Z"},"signature":"00"}"#;
        let want = [("id", "TDX"), ("fmspc", "00806f050000")];
        assert_eq!(signed_json(ok, "tcbInfo", &want, "u").unwrap(), Some(1752919278));
        assert!(signed_json(ok, "tcbInfo", &[("id", "SGX")], "u").is_err(), "another TEE's TCB Info");
        assert!(signed_json(ok, "tcbInfo", &[("fmspc", "00906ed50000")], "u").is_err(), "another platform's TCB Info");
        assert!(signed_json(br#"{"tcbInfo":{"nextUpdate":"2025-07-19T10:01:18Z"}}"#, "tcbInfo", &[], "u").is_err());
        assert!(signed_json(br#"{"tcbInfo":{},"signature":"00"}"#, "tcbInfo", &[], "u").is_err());
        assert!(signed_json(ok, "enclaveIdentity", &[], "u").is_err());
        assert!(signed_json(b"not json", "tcbInfo", &[], "u").is_err());
    }

    #[test]
    fn crl_bodies_that_are_not_crls_are_refused() {
        assert!(crl_der(b"zz", "Intel SGX Root CA", "u").is_err());
        assert!(crl_der(&[0x30, 0x00], "Intel SGX Root CA", "u").is_err());
        assert!(crl_der("\u{ff}".as_bytes(), "Intel SGX Root CA", "u").is_err());
    }
}
