//! Which endorsements decide: the service's own are authoritative; the
//! attester's are hints, accepted only when they verify and are no older than
//! the service's (built in `merge`).
//!
//! The rule, piece by piece (pieces are recognised by content, as the
//! verifier recognises them):
//! * a TCB Info or QE Identity the attester sends for an FMSPC / identity the
//!   service also holds is **refused** when its `tcbEvaluationDataNumber` is
//!   lower than the service's ([`AuthorityError::Outdated`]); when it is equal
//!   or newer it is dropped all the same: the service's copy decides;
//! * CRLs of a kind the service fetched are dropped when no older than the
//!   service's, refused when older ([`AuthorityError::OutdatedCrl`]);
//! * an attester RIM for a RIM id the service fetched (its signed version names
//!   that id) that is not the service's RIM byte for byte is **refused**
//!   ([`AuthorityError::Contradicted`]): the RIM service decides what a driver or
//!   VBIOS version must measure; other attester RIMs are dropped;
//! * everything else (certificates such as a VLEK or a PCK chain the quote does
//!   not carry, and any piece of a kind the service could not get) is passed on
//!   for the verifier to check against the pinned roots, as before.
//!
//! Nothing the attester sends is trusted for being sent: what passes here is
//! verified again by `cachet-verify`.

use cachet_verify::dcap::collateral::{add_file, Collateral, SignedJson};
use cachet_verify::Endorsement;

use crate::{Fetched, Resource};

/// Why the attester's endorsements were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// An attester-supplied TCB Info / QE Identity is older than the service's.
    #[error(
        "{what} sent with the evidence has tcbEvaluationDataNumber {theirs}, older than the service's {ours}; \
         send no endorsements (the service fetches its own) or send the current ones"
    )]
    Outdated {
        /// What (e.g. `TCB Info for FMSPC 00906ed50000`).
        what: String,
        /// The attester's `tcbEvaluationDataNumber`.
        theirs: u64,
        /// The service's.
        ours: u64,
    },
    /// An attester-supplied RIM contradicts the one the RIM service serves for
    /// the same id (e.g. a test RIM of the same version).
    #[error(
        "the RIM {name} sent with the evidence describes {id} but is not the RIM NVIDIA's RIM service serves for it; \
         send no RIMs (the service fetches its own)"
    )]
    Contradicted {
        /// The attester's file name.
        name: String,
        /// The RIM id it claims to describe.
        id: String,
    },
    /// An attester-supplied CRL is older than the service's for the same
    /// issuer (lower CRL number, or earlier thisUpdate).
    #[error(
        "the CRL of {issuer} sent with the evidence ({theirs}) is older than the service's ({ours}); \
         send no CRLs (the service fetches its own) or send the current one"
    )]
    OutdatedCrl {
        /// The CRL issuer.
        issuer: String,
        /// The attester's CRL number and thisUpdate.
        theirs: String,
        /// The service's.
        ours: String,
    },
}

impl AuthorityError {
    /// Stable error code for API answers.
    pub fn code(&self) -> &'static str {
        match self {
            AuthorityError::Outdated { .. } | AuthorityError::OutdatedCrl { .. } => "endorsement_outdated",
            AuthorityError::Contradicted { .. } => "endorsement_contradicted",
        }
    }

    /// Name of the check that failed, for verification reports.
    pub fn check(&self) -> &'static str {
        match self {
            AuthorityError::Contradicted { .. } => "Endorsement authority",
            _ => "Endorsement freshness",
        }
    }
}

/// An attester RIM whose signed version names a RIM id the service fetched
/// must be that very RIM; anything else for that id is a contradiction.
fn check_rim_hint(service: &[Fetched], e: &Endorsement) -> Result<(), AuthorityError> {
    let Ok(theirs) = crate::nvidia::parsed_rim(&e.bytes) else { return Ok(()) };
    for f in service {
        let Resource::Rim { id } = &f.resource else { continue };
        if crate::nvidia::names_version(id, &theirs.version) && !f.parts.iter().any(|p| p.bytes == e.bytes) {
            return Err(AuthorityError::Contradicted { name: e.name.clone(), id: id.clone() });
        }
    }
    Ok(())
}

/// What decides a TCB Info / QE Identity: its identity and its evaluation number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Judged {
    /// `tcb:<id>:<fmspc>` or `qe:<id>`.
    key: String,
    /// Shown in messages.
    what: String,
    /// `tcbEvaluationDataNumber` (0 when absent).
    eval: u64,
}

fn judged(sj: &SignedJson, tcb: bool) -> Option<Judged> {
    let v: serde_json::Value = serde_json::from_str(&sj.body).ok()?;
    let id = v.get("id").and_then(|x| x.as_str()).unwrap_or(if tcb { "SGX" } else { "QE" }).to_ascii_uppercase();
    let eval = v.get("tcbEvaluationDataNumber").and_then(|x| x.as_u64()).unwrap_or(0);
    if tcb {
        let fmspc = v.get("fmspc")?.as_str()?.to_ascii_lowercase();
        Some(Judged { key: format!("tcb:{id}:{fmspc}"), what: format!("TCB Info ({id}) for FMSPC {fmspc}"), eval })
    } else {
        Some(Judged { key: format!("qe:{id}"), what: format!("QE Identity ({id})"), eval })
    }
}

fn classify(name: &str, bytes: &[u8]) -> Collateral {
    let mut c = Collateral::default();
    add_file(&mut c, name, bytes);
    c
}

fn all_judged(c: &Collateral) -> Vec<Judged> {
    c.tcb_infos.iter().filter_map(|s| judged(s, true)).chain(c.qe_identities.iter().filter_map(|s| judged(s, false))).collect()
}

/// The endorsements the verifier is handed: every piece the service fetched,
/// then the attester's pieces for what the service could not get. Refuses an
/// attester TCB Info / QE Identity older than the service's for the same
/// FMSPC / identity.
pub fn merge(service: &[Fetched], attester: &[Endorsement]) -> Result<Vec<Endorsement>, AuthorityError> {
    let mut out: Vec<Endorsement> = service.iter().flat_map(Fetched::endorsements).collect();
    if attester.is_empty() {
        return Ok(out);
    }
    // Nothing of the service's to compare with or to prefer: the attester's
    // pieces go to the verifier as they are (without reading them here).
    if service.is_empty() {
        return Ok(attester.to_vec());
    }
    // What the service holds, as the verifier will read it.
    let mut ours = Collateral::default();
    for e in &out {
        add_file(&mut ours, &e.name, &e.bytes);
    }
    let our_judged = all_judged(&ours);
    let service_has_crls =
        service.iter().any(|f| matches!(f.resource, Resource::PckCrl { .. } | Resource::RootCaCrl | Resource::AmdCrl { .. }))
            || !ours.crls.is_empty();
    let service_has_rims = service.iter().any(|f| matches!(f.resource, Resource::Rim { .. }));
    let our_crls: Vec<CrlRevision> = ours.crls.iter().filter_map(|c| crl_revision(&c.der)).collect();

    for e in attester {
        if service_has_rims && cachet_verify::nvgpu::rim::looks_like_xml(&e.bytes) {
            check_rim_hint(service, e)?;
            tracing::info!("attester RIM {} dropped: the service fetched its own", e.name);
            continue;
        }
        let c = classify(&e.name, &e.bytes);
        let theirs = all_judged(&c);
        for t in &theirs {
            if let Some(o) = our_judged.iter().filter(|o| o.key == t.key).max_by_key(|o| o.eval) {
                if t.eval < o.eval {
                    return Err(AuthorityError::Outdated { what: t.what.clone(), theirs: t.eval, ours: o.eval });
                }
            }
        }
        for t in c.crls.iter().filter_map(|c| crl_revision(&c.der)) {
            for o in our_crls.iter().filter(|o| o.issuer_der == t.issuer_der) {
                if t.older_than(o) {
                    return Err(AuthorityError::OutdatedCrl { issuer: t.issuer.clone(), theirs: t.describe(), ours: o.describe() });
                }
            }
        }
        let covered_json = theirs.iter().any(|t| our_judged.iter().any(|o| o.key == t.key));
        let covered_crl = service_has_crls && !c.crls.is_empty();
        if !covered_json && !covered_crl {
            out.push(e.clone());
            continue;
        }
        // The piece carries something the service decides; keep only what it
        // does not: its certificates, and TCB Info / QE Identity the service lacks.
        for (i, der) in c.certs.iter().enumerate() {
            out.push(Endorsement { name: format!("{}#cert{i}", e.name), bytes: der.clone() });
        }
        if !covered_crl {
            for (i, crl) in c.crls.iter().enumerate() {
                out.push(Endorsement { name: format!("{}#crl{i}", e.name), bytes: crl.der.clone() });
            }
        }
        // Re-stated byte for byte (the signed text and its signature): the
        // TCB Info / QE Identity the service does not hold.
        let ours_has = |sj: &SignedJson, tcb: bool| judged(sj, tcb).is_some_and(|j| our_judged.iter().any(|o| o.key == j.key));
        for (i, sj) in c.tcb_infos.iter().enumerate().filter(|(_, sj)| !ours_has(sj, true)) {
            out.push(signed_piece(&e.name, "tcbInfo", i, sj));
        }
        for (i, sj) in c.qe_identities.iter().enumerate().filter(|(_, sj)| !ours_has(sj, false)) {
            out.push(signed_piece(&e.name, "enclaveIdentity", i, sj));
        }
        tracing::info!("attester endorsement {} used only for what the service could not get", e.name);
    }
    Ok(out)
}

/// What orders two CRLs of one issuer: the CRL number, else thisUpdate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlRevision {
    /// The issuer's DER name (what "the same issuer" compares).
    pub issuer_der: Vec<u8>,
    /// The issuer, for people.
    pub issuer: String,
    /// The CRL number extension, when present (decimal).
    pub number: Option<String>,
    /// thisUpdate (Unix seconds).
    pub this_update: i64,
}

impl CrlRevision {
    fn older_than(&self, other: &CrlRevision) -> bool {
        let num = |s: &Option<String>| s.as_ref().and_then(|n| n.parse::<u128>().ok());
        match (num(&self.number), num(&other.number)) {
            (Some(a), Some(b)) if a != b => a < b,
            _ => self.this_update < other.this_update,
        }
    }

    fn describe(&self) -> String {
        let when = time::OffsetDateTime::from_unix_timestamp(self.this_update)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_else(|| self.this_update.to_string());
        match &self.number {
            Some(n) => format!("CRL number {n}, thisUpdate {when}"),
            None => format!("thisUpdate {when}"),
        }
    }
}

/// The revision of a DER CRL, or `None` when it does not parse.
pub fn crl_revision(der: &[u8]) -> Option<CrlRevision> {
    let crl = cachet_verify::x509::parse_crl(der).ok()?;
    Some(CrlRevision {
        issuer_der: crl.issuer().as_raw().to_vec(),
        issuer: crl.issuer().to_string(),
        number: crl.crl_number().map(|n| n.to_string()),
        this_update: crl.last_update().timestamp(),
    })
}

/// A TCB Info / QE Identity as Intel PCS serves it, around the exact signed text.
fn signed_piece(name: &str, field: &str, i: usize, sj: &SignedJson) -> Endorsement {
    let body = format!("{{\"{field}\":{},\"signature\":\"{}\"}}", sj.body, hex::encode(&sj.signature));
    Endorsement { name: format!("{name}#{field}{i}"), bytes: body.into_bytes() }
}

/// Whether endorsements an operator handed over (`cachet verify -e`) already
/// hold resource `r`, so that only the rest is fetched: pieces are recognised
/// by content, as the verifier recognises them (a TCB Info by its FMSPC, a CRL
/// by its issuer, a certificate by its subject, a RIM by the version it
/// signs). A wrong "covered" only leaves the verifier short of a piece, which
/// it then refuses by name; it never widens what is trusted.
pub fn covered(r: &Resource, given: &[Endorsement]) -> bool {
    Coverage::of(given).covers(r)
}

/// What a set of endorsements holds, read once, for [`covered`] questions
/// about many resources (a GPU's OCSP answers, a report's pieces).
pub struct Coverage {
    rim_versions: Vec<String>,
    crl_issuers: Vec<String>,
    subjects: Vec<String>,
    judged: Vec<Judged>,
    /// The OCSP responses among them (DER).
    ocsp: Vec<Vec<u8>>,
}

impl Coverage {
    /// Read `given`.
    pub fn of(given: &[Endorsement]) -> Self {
        let mut c = Collateral::default();
        let mut rim_versions = Vec::new();
        for e in given {
            if cachet_verify::nvgpu::rim::looks_like_xml(&e.bytes) {
                if let Ok(rim) = crate::nvidia::parsed_rim(&e.bytes) {
                    rim_versions.push(rim.version.clone());
                }
                continue;
            }
            add_file(&mut c, &e.name, &e.bytes);
        }
        let crl_issuers = c.crls.iter().filter_map(|x| crl_revision(&x.der)).map(|x| x.issuer).collect();
        let subjects = c.certs.iter().filter_map(|d| subject_cn(d)).collect();
        let judged = all_judged(&c);
        let ocsp = given.iter().filter_map(|e| cachet_verify::nvgpu::ocsp::recognise(&e.bytes)).collect();
        Coverage { rim_versions, crl_issuers, subjects, judged, ocsp }
    }

    /// Whether the endorsements hold `r` (see [`covered`]).
    pub fn covers(&self, r: &Resource) -> bool {
        let Coverage { rim_versions, crl_issuers, subjects, judged, ocsp } = self;
        match r {
            Resource::TcbInfo { tee, fmspc } => {
                let key = format!("tcb:{}:{}", tee.as_str().to_ascii_uppercase(), fmspc.to_ascii_lowercase());
                // A v2 TCB Info carries no id: `judged` reads it as SGX's.
                judged.iter().any(|j| j.key == key)
            }
            Resource::QeIdentity { tee } => {
                let id = match tee {
                    crate::needs::IntelTee::Sgx => "QE",
                    crate::needs::IntelTee::Tdx => "TD_QE",
                };
                judged.iter().any(|j| j.key == format!("qe:{id}"))
            }
            Resource::PckCrl { ca } => crl_issuers.iter().any(|i| i.contains(&format!("PCK {} CA", title(ca.as_str())))),
            Resource::RootCaCrl => crl_issuers.iter().any(|i| i.contains("Intel SGX Root CA")),
            Resource::Vcek { .. } => subjects.iter().any(|s| s == "SEV-VCEK"),
            Resource::AmdChain { product, key } => {
                let ask = match key {
                    crate::needs::AmdKey::Vcek => format!("SEV-{}", title(product.as_str())),
                    crate::needs::AmdKey::Vlek => format!("SEV-VLEK-{}", title(product.as_str())),
                };
                subjects.contains(&ask)
            }
            Resource::AmdCrl { product, .. } => crl_issuers.iter().any(|i| i.contains(&format!("ARK-{}", title(product.as_str())))),
            Resource::Rim { id } => rim_versions.iter().any(|v| crate::nvidia::names_version(id, v)),
            Resource::Ocsp { .. } => ocsp.iter().any(|der| crate::nvidia::check_ocsp_answer(r, der, 0).is_ok()),
        }
    }
}

/// `milan` → `Milan`, `processor` → `Processor`.
fn title(s: &str) -> String {
    let mut out = s.to_string();
    if let Some(f) = out.get_mut(0..1) {
        f.make_ascii_uppercase();
    }
    out
}

/// A certificate's subject common name.
fn subject_cn(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}
