//! TCB recovery forecast: which platforms seen attesting will fall out of
//! date when the newest collateral is enforced, which component falls
//! short, and from when.
//!
//! Intel publishes a TCB recovery's TCB Info first on the PCS `early`
//! channel (`GET /{sgx|tdx}/certification/v4/tcb?fmspc=…&update=early`,
//! "commonly the day of public disclosure") and on the `standard` channel,
//! which verification uses, "commonly approximately 6 weeks after public
//! disclosure" (Intel PCS API v4). Neither TCB Info carries the date the
//! standard channel switches: the forecast reports the new TCB Info's
//! `tcbEvaluationDataNumber`, `issueDate` and the `tcbDate` of its up-to-date
//! level, and an *estimate* of the switch (that `tcbDate` plus six weeks),
//! labelled as one. The status under each TCB Info is decided with the
//! verifier's own TCB-level rules ([`cachet_verify::dcap::tcb`]: level
//! matching, TDX module identities, QVL's status convergence); the QE
//! Identity and the TD relaunch rule are not part of the forecast (they need
//! the quote's QE report and TEE_TCB_SVN2, which are not recorded).
//!
//! AMD has no equivalent of `update=early` (KDS issues a VCEK for any
//! reported TCB; AMD announces new minimum firmware in security bulletins):
//! an AMD forecast compares each chip's reported TCB with minimums the
//! operator gives ([`AmdMinimum`]).
//!
//! Where platforms come from: the attestation audit log records, for each
//! verified SGX/TDX/SNP attestation, the platform's TCB (`platform` in the
//! detail, [`platform_seen`]); or evidence files given to the CLI
//! ([`platform_hint`]).

use std::collections::BTreeMap;

use cachet_verify::dcap::collateral::from_endorsements;
use cachet_verify::dcap::pck::parse_pck_extensions;
use cachet_verify::dcap::quote::{self, QuoteTee, CERT_TYPE_PCK_CHAIN};
use cachet_verify::dcap::tcb::{self, TcbInfo, TcbStatus};
use cachet_verify::x509::{certs_from_pem, parse_cert};
use cachet_verify::Tee;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::needs::{AmdTcb, IntelTee, TcbUpdate};
use crate::{Endorser, Fetched, Part, Resource};

/// Most distinct platforms a forecast considers (the rest are counted, not assessed).
pub const MAX_PLATFORMS: usize = 10_000;
/// Most distinct (TEE, FMSPC) pairs whose TCB Infos a forecast fetches.
pub const MAX_FMSPCS: usize = 256;
/// Six weeks: Intel's "commonly approximately 6 weeks" between the early and the standard channel.
pub const STANDARD_LAG_S: i64 = 42 * 86_400;

/// What a verified attestation says about the platform's TCB: recorded in
/// the attestation's audit detail as `platform`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Platform {
    /// An SGX or TDX platform, from its PCK certificate and (TDX) the quote.
    Intel {
        /// SGX or TDX.
        tee: IntelTee,
        /// FMSPC, 12 lowercase hex digits.
        fmspc: String,
        /// PCE ID, 4 lowercase hex digits.
        pce_id: String,
        /// PPID (the platform's identity in the PCK certificate), lowercase hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ppid: Option<String>,
        /// The PCK certificate's SGX TCB components 1..16.
        sgx_tcb_components: [u8; 16],
        /// The PCK certificate's PCESVN.
        pce_svn: u16,
        /// TDX: the quote's TEE_TCB_SVN, 32 lowercase hex digits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tee_tcb_svn: Option<String>,
    },
    /// An SEV-SNP chip and the TCB its report states.
    Amd {
        /// Milan, Genoa, Turin.
        product: String,
        /// CHIP_ID, lowercase hex.
        chip_id: String,
        /// REPORTED_TCB.
        reported_tcb: AmdTcb,
    },
}

fn is_hex(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Platform {
    /// Whether a record read back (from the audit log) is well formed.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Platform::Intel { fmspc, pce_id, ppid, tee_tcb_svn, tee, .. } => {
                if !is_hex(fmspc, 12, 12) || !is_hex(pce_id, 4, 4) {
                    return Err("fmspc / pce_id are not 12 / 4 hex digits".into());
                }
                if ppid.as_deref().is_some_and(|p| !is_hex(p, 2, 64)) {
                    return Err("ppid is not hex (at most 32 bytes)".into());
                }
                match (tee, tee_tcb_svn) {
                    (IntelTee::Tdx, Some(t)) if is_hex(t, 32, 32) => Ok(()),
                    (IntelTee::Tdx, _) => Err("a TDX platform needs tee_tcb_svn (32 hex digits)".into()),
                    (IntelTee::Sgx, None) => Ok(()),
                    (IntelTee::Sgx, Some(_)) => Err("an SGX platform has no tee_tcb_svn".into()),
                }
            }
            Platform::Amd { product, chip_id, .. } => {
                if !["Milan", "Genoa", "Turin"].contains(&product.as_str()) || !is_hex(chip_id, 2, 128) {
                    return Err("product is not Milan/Genoa/Turin or chip_id is not hex".into());
                }
                Ok(())
            }
        }
    }

    /// One platform, whatever its TCB: FMSPC and PPID (or its whole TCB
    /// when the PPID is unknown), or the AMD chip.
    pub fn identity(&self) -> String {
        match self {
            Platform::Intel { tee, fmspc, ppid: Some(p), .. } => format!("{} fmspc {fmspc} ppid {p}", tee.as_str()),
            Platform::Intel { tee, fmspc, sgx_tcb_components, pce_svn, tee_tcb_svn, .. } => format!(
                "{} fmspc {fmspc} tcb {}/{pce_svn}{}",
                tee.as_str(),
                hex::encode(sgx_tcb_components),
                tee_tcb_svn.as_deref().map(|t| format!("/{t}")).unwrap_or_default()
            ),
            Platform::Amd { product, chip_id, .. } => format!("snp {product} chip {chip_id}"),
        }
    }
}

/// The platform of an SGX/TDX quote, read (not verified) from the PCK
/// certificate in its certification data (type 5) and its TD report; `None`
/// for other evidence or a quote without its PCK chain. The attest path
/// keeps it only once the evidence verified ([`platform_seen`]); the CLI's
/// evidence files are the operator's own.
pub fn platform_hint(tee: Tee, evidence: &[u8]) -> Option<Platform> {
    if !matches!(tee, Tee::Sgx | Tee::Tdx) {
        return None;
    }
    let (_, raw) = cachet_verify::encoding::decode_evidence(evidence);
    let q = quote::parse(&raw).ok()?;
    if q.cert_data_type != CERT_TYPE_PCK_CHAIN {
        return None;
    }
    let certs = certs_from_pem(q.cert_data);
    let leaf = parse_cert(certs.first()?).ok()?;
    let ext = parse_pck_extensions(&leaf).ok()?;
    let (tee, tee_tcb_svn) = match q.tee() {
        QuoteTee::Sgx => (IntelTee::Sgx, None),
        QuoteTee::Tdx => (IntelTee::Tdx, Some(hex::encode(q.body.td()?.tee_tcb_svn))),
    };
    Some(Platform::Intel {
        tee,
        fmspc: hex::encode(ext.fmspc),
        pce_id: hex::encode(ext.pce_id),
        ppid: (!ext.ppid.is_empty() && ext.ppid.len() <= 32).then(|| hex::encode(&ext.ppid)),
        sgx_tcb_components: ext.cpu_svn_components,
        pce_svn: ext.pce_svn,
        tee_tcb_svn,
    })
}

/// The platform to record for evidence that verified with `claims`: for
/// SGX/TDX the [`platform_hint`] read before verification, kept only when
/// it is the platform the verifier judged (its FMSPC, PCE ID, PCESVN, PPID
/// and TEE_TCB_SVN equal the claims); for SNP the product, CHIP_ID and
/// REPORTED_TCB of the claims.
pub fn platform_seen(tee: Tee, hint: Option<Platform>, claims: &Value) -> Option<Platform> {
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    match (tee, hint) {
        (Tee::Sgx | Tee::Tdx, Some(p @ Platform::Intel { .. })) => {
            let Platform::Intel { fmspc, pce_id, pce_svn, ppid, tee_tcb_svn, .. } = &p else { return None };
            let same = s("fmspc") == Some(fmspc.as_str())
                && s("pce_id") == Some(pce_id.as_str())
                && claims.get("pck_pce_svn").and_then(Value::as_u64) == Some(u64::from(*pce_svn))
                && s("ppid") == ppid.as_deref()
                && s("tee_tcb_svn") == tee_tcb_svn.as_deref();
            (same && p.check().is_ok()).then_some(p)
        }
        (Tee::Snp, _) => {
            let t = claims.get("reported_tcb")?;
            let n = |k: &str| t.get(k).and_then(Value::as_u64).and_then(|v| u8::try_from(v).ok());
            let p = Platform::Amd {
                product: s("product")?.to_string(),
                chip_id: s("chip_id")?.to_string(),
                reported_tcb: AmdTcb { bl: n("bootloader")?, tee: n("tee")?, snp: n("snp")?, ucode: n("microcode")?, fmc: n("fmc") },
            };
            p.check().is_ok().then_some(p)
        }
        _ => None,
    }
}

/// A platform and when it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its latest TCB.
    pub platform: Platform,
    /// Last attestation (Unix seconds).
    pub last_seen: i64,
    /// Attestations seen.
    pub attestations: u64,
}

/// Platforms from attestation audit details (`(ts, detail)`): one per
/// [`Platform::identity`], with the TCB of its latest attestation. Details
/// without a well-formed `platform` are skipped. At most [`MAX_PLATFORMS`];
/// the second value counts the platforms left out.
pub fn collect_seen(entries: impl IntoIterator<Item = (i64, Value)>) -> (Vec<Seen>, u64) {
    let mut by_id: BTreeMap<String, Seen> = BTreeMap::new();
    let mut left_out = std::collections::BTreeSet::new();
    for (ts, detail) in entries {
        let Some(p) = detail.get("platform").and_then(|v| serde_json::from_value::<Platform>(v.clone()).ok()) else { continue };
        if p.check().is_err() {
            continue;
        }
        let id = p.identity();
        let room = by_id.len() < MAX_PLATFORMS;
        match by_id.get_mut(&id) {
            Some(s) => {
                s.attestations += 1;
                if ts >= s.last_seen {
                    s.last_seen = ts;
                    s.platform = p;
                }
            }
            None if room => {
                by_id.insert(id, Seen { platform: p, last_seen: ts, attestations: 1 });
            }
            None => {
                if left_out.len() < MAX_PLATFORMS {
                    left_out.insert(id);
                }
            }
        }
    }
    (by_id.into_values().collect(), left_out.len() as u64)
}

/// A TCB Info whose Intel signature chains to the pinned root, parsed by the verifier.
#[derive(Debug, Clone)]
pub struct TcbInfoDoc {
    /// The parsed TCB Info.
    pub info: TcbInfo,
    /// The signed text, byte for byte (for the components' names).
    pub body: String,
    /// Where it came from.
    pub source: String,
}

impl TcbInfoDoc {
    /// From a PCS answer and its issuer chain (as fetched or cached):
    /// checked as a bundle entry is (`bundle::check_entry`: what it names,
    /// Intel's signature chaining to the pinned Intel SGX Root CA).
    pub fn from_fetched(f: &Fetched) -> Result<Self, String> {
        crate::bundle::check_entry(f).map_err(|e| format!("{}: {e}", f.source))?;
        let c = from_endorsements(&f.endorsements());
        let sj = c.tcb_infos.first().ok_or_else(|| format!("{}: no TCB Info", f.source))?;
        let info = TcbInfo::parse(&sj.body).map_err(|e| format!("{}: {e}", f.source))?;
        Ok(TcbInfoDoc { info, body: sj.body.clone(), source: f.source.clone() })
    }

    /// From files an operator gives (`--tcb-info`): every file that holds a
    /// TCB Info (a PCS answer, a collateral bundle) with the certificates of
    /// all the files (its issuer chain may be a file of its own), each
    /// checked as [`TcbInfoDoc::from_fetched`] checks a fetched one.
    pub fn from_files(files: &[(String, Vec<u8>)]) -> Result<Vec<Self>, String> {
        let chains: Vec<Part> = files
            .iter()
            .filter(|(name, bytes)| {
                let c = from_endorsements(&[cachet_verify::Endorsement { name: name.clone(), bytes: bytes.clone() }]);
                c.tcb_infos.is_empty() && c.qe_identities.is_empty() && !c.certs.is_empty()
            })
            .map(|(name, bytes)| Part { name: name.clone(), bytes: bytes.clone() })
            .collect();
        let mut out = Vec::new();
        for (name, bytes) in files {
            let c = from_endorsements(&[cachet_verify::Endorsement { name: name.clone(), bytes: bytes.clone() }]);
            let Some(sj) = c.tcb_infos.first() else { continue };
            let info = TcbInfo::parse(&sj.body).map_err(|e| format!("{name}: {e}"))?;
            let tee = if info.is_tdx() { IntelTee::Tdx } else { IntelTee::Sgx };
            // The TCB Info alone, as PCS serves it, with the chains given.
            let answer = format!("{{\"tcbInfo\":{},\"signature\":\"{}\"}}", sj.body, hex::encode(&sj.signature));
            let mut parts = vec![Part { name: format!("{name} (tcbInfo)"), bytes: answer.into_bytes() }];
            for der in &sj.issuer_chain {
                parts.push(Part { name: format!("{name} (issuer chain)"), bytes: pem("CERTIFICATE", der).into_bytes() });
            }
            parts.extend(chains.iter().cloned());
            let f = Fetched {
                resource: Resource::TcbInfo { tee, fmspc: hex::encode(info.fmspc) },
                parts,
                fetched_at: 0,
                next_update: Some(info.next_update),
                source: name.clone(),
            };
            let doc = TcbInfoDoc::from_fetched(&f).map_err(|e| {
                format!("{e} (give the TCB-Info-Issuer-Chain PEM as another --tcb-info file when the TCB Info came without it)")
            })?;
            out.push(doc);
        }
        if out.is_empty() {
            return Err("none of the --tcb-info files holds a TCB Info".into());
        }
        Ok(out)
    }

    fn tee(&self) -> IntelTee {
        if self.info.is_tdx() {
            IntelTee::Tdx
        } else {
            IntelTee::Sgx
        }
    }

    fn summary(&self, now: i64) -> Value {
        json!({
            "tcb_evaluation_data_number": self.info.tcb_evaluation_data_number,
            "issue_date": self.info.issue_date_str,
            "next_update": self.info.next_update_str,
            "up_to_date_tcb_date": top_level(&self.info).map(|l| l.tcb_date.clone()),
            "expired": now >= self.info.next_update,
            "source": self.source,
        })
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// The TCB Infos of one (TEE, FMSPC): the one verification uses now and the newest published.
#[derive(Debug, Clone)]
pub struct TcbInfoPair {
    /// SGX or TDX.
    pub tee: IntelTee,
    /// FMSPC, lowercase hex.
    pub fmspc: String,
    /// The standard TCB Info in use, or why there is none.
    pub current: Result<TcbInfoDoc, String>,
    /// The newest (`update=early` or given), or why there is none.
    pub next: Result<TcbInfoDoc, String>,
}

/// Where the newest TCB Infos come from.
pub enum Newest<'a> {
    /// `update=early` from the endorser's PCS (`--pcs-url`).
    Early,
    /// Given by the operator (air-gapped: `--tcb-info`).
    Given(&'a [TcbInfoDoc]),
}

/// The TCB Infos the `seen` Intel platforms need: the standard one from
/// `endorser` (its cache, else its PCS: what verification uses) and the
/// newest ([`Newest`]). At most [`MAX_FMSPCS`] pairs; an early TCB Info is
/// never kept in the endorser's cache.
pub async fn tcb_infos(seen: &[Seen], endorser: &Endorser, newest: Newest<'_>, now: i64) -> Vec<TcbInfoPair> {
    let mut wanted = std::collections::BTreeSet::new();
    for s in seen {
        if let Platform::Intel { tee, fmspc, .. } = &s.platform {
            if wanted.len() < MAX_FMSPCS {
                wanted.insert((tee.as_str(), fmspc.to_ascii_lowercase()));
            }
        }
    }
    let http = match newest {
        Newest::Early if !endorser.sources().offline => {
            Some(crate::http::Http::new(endorser.sources().timeout, crate::http::Retry::default()).map_err(|e| e.to_string()))
        }
        _ => None,
    };
    let mut out = Vec::new();
    for (tee, fmspc) in wanted {
        let tee = if tee == "sgx" { IntelTee::Sgx } else { IntelTee::Tdx };
        let r = Resource::TcbInfo { tee, fmspc: fmspc.clone() };
        let current = match endorser.get(&r, now).await {
            Ok(f) => TcbInfoDoc::from_fetched(&f),
            // Stale and not refreshable: still the one in use until it is.
            Err(e) => match endorser.cache().get(&r.key()).await {
                Some(f) => TcbInfoDoc::from_fetched(&f),
                None => Err(e.to_string()),
            },
        };
        let next = match (&newest, &http) {
            (Newest::Given(docs), _) => docs
                .iter()
                .find(|d| d.tee() == tee && hex::encode(d.info.fmspc) == fmspc)
                .cloned()
                .ok_or_else(|| "no --tcb-info file is for this FMSPC".to_string()),
            (Newest::Early, Some(Ok(http))) => {
                match crate::pcs::fetch_tcb_info(http, endorser.sources(), tee, &fmspc, TcbUpdate::Early, now).await {
                    Ok(f) => TcbInfoDoc::from_fetched(&f),
                    Err(e) => Err(e.to_string()),
                }
            }
            (Newest::Early, Some(Err(e))) => Err(e.clone()),
            (Newest::Early, None) => Err("offline: the update=early TCB Info cannot be fetched (give it with --tcb-info)".into()),
        };
        out.push(TcbInfoPair { tee, fmspc, current, next });
    }
    out
}

/// An operator's minimum TCB for an AMD product (AMD publishes no early TCB).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmdMinimum {
    /// Milan, Genoa, Turin.
    pub product: String,
    /// Minimum boot loader SPL.
    pub bootloader: u8,
    /// Minimum PSP OS (TEE) SPL.
    pub tee: u8,
    /// Minimum SNP firmware SPL.
    pub snp: u8,
    /// Minimum microcode SPL.
    pub microcode: u8,
    /// Minimum FMC SPL (Turin).
    #[serde(default)]
    pub fmc: Option<u8>,
    /// From when the operator enforces it (free text, e.g. a date).
    #[serde(default)]
    pub from: Option<String>,
}

/// How bad a status is, for "does it get worse": not supported (no level
/// met: verification fails) is worst.
fn rank(s: Option<TcbStatus>) -> u8 {
    match s {
        Some(TcbStatus::UpToDate) => 0,
        Some(TcbStatus::SWHardeningNeeded) => 1,
        Some(TcbStatus::ConfigurationNeeded) => 2,
        Some(TcbStatus::ConfigurationAndSWHardeningNeeded) => 3,
        Some(TcbStatus::TDRelaunchAdvised) => 4,
        Some(TcbStatus::TDRelaunchAdvisedConfigurationNeeded) => 5,
        Some(TcbStatus::OutOfDate) => 6,
        Some(TcbStatus::OutOfDateConfigurationNeeded) => 7,
        Some(TcbStatus::Revoked) => 8,
        None => 9,
    }
}

/// A platform's status under one TCB Info, by the verifier's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The status; `None`: no TCB level is met (verification fails: "TCB not supported").
    pub status: Option<TcbStatus>,
    /// The matched level's tcbDate.
    pub tcb_date: Option<String>,
    /// Advisories at the matched level(s).
    pub advisory_ids: Vec<String>,
    /// Why there is no status.
    pub why: Option<String>,
}

impl Assessment {
    fn status_str(&self) -> &'static str {
        self.status.map(TcbStatus::as_str).unwrap_or("NotSupported")
    }
}

fn tee_svn(t: Option<&str>) -> Option<[u8; 16]> {
    let v = hex::decode(t?).ok()?;
    <[u8; 16]>::try_from(v.as_slice()).ok()
}

/// The status of the platform (`sgx` components, `pce_svn`, TDX
/// `tee_tcb_svn`) under `info`: QVL's level matching, the TDX module's own
/// levels when TEE_TCB_SVN[1] names a module version, and their convergence
/// (`cachet_verify::dcap::tcb`, as the verifier decides `tcb_status`, less
/// the QE Identity and the TD relaunch rule).
pub fn assess(info: &TcbInfo, sgx: &[u8; 16], pce_svn: u16, tee_tcb_svn: Option<&[u8; 16]>) -> Assessment {
    let none = |why: String| Assessment { status: None, tcb_date: None, advisory_ids: Vec::new(), why: Some(why) };
    let tee = tee_tcb_svn.filter(|_| info.is_tdx());
    let m = tcb::match_levels(info, sgx, pce_svn, tee);
    let level = if tee.is_some() { m.tdx } else { m.sgx };
    let Some(level) = level else {
        return none(format!(
            "no TCB level is met by SGX components {} PCESVN {pce_svn}{}: TCB not supported",
            hex::encode(sgx),
            tee.map(|t| format!(" TEE_TCB_SVN {}", hex::encode(t))).unwrap_or_default()
        ));
    };
    let mut status = level.status;
    let mut advisory_ids = level.advisory_ids.clone();
    if let Some(t) = tee.filter(|t| t[1] > 0) {
        let Some(ident) = tcb::find_module_identity(info, t[1]) else {
            return none(format!("the TCB Info has no TDX module identity {}", tcb::module_id(t[1])));
        };
        let Some(ml) = tcb::match_simple_level(&ident.levels, u16::from(t[0])) else {
            return none(format!("TDX module ISVSVN {} is below every level of {}: TCB not supported", t[0], ident.id));
        };
        status = tcb::converge_with_module(status, ml.status);
        tcb::merge_advisories(&mut advisory_ids, &ml.advisory_ids);
    }
    Assessment { status: Some(status), tcb_date: Some(level.tcb_date.clone()), advisory_ids, why: None }
}

/// The highest UpToDate level (else the highest level).
fn top_level(info: &TcbInfo) -> Option<&tcb::TcbLevel> {
    info.levels.iter().find(|l| l.status == TcbStatus::UpToDate).or_else(|| info.levels.first())
}

/// Names of the TCB Info's components (`category: type`), from the signed text.
fn component_names(body: &str, set: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let levels = v.get("tcbLevels").and_then(Value::as_array).cloned().unwrap_or_default();
    for l in &levels {
        if let Some(arr) = l.get("tcb").and_then(|t| t.get(set)).and_then(Value::as_array) {
            let names: Vec<String> = arr
                .iter()
                .map(|c| {
                    let parts: Vec<&str> = ["category", "type"].iter().filter_map(|k| c.get(*k).and_then(Value::as_str)).collect();
                    parts.join(": ")
                })
                .collect();
            if names.iter().any(|n| !n.is_empty()) {
                return names;
            }
        }
    }
    Vec::new()
}

/// Each component where the platform is below the newest TCB Info's
/// up-to-date level: which, what is required, what the platform has.
pub fn shortfalls(doc: &TcbInfoDoc, sgx: &[u8; 16], pce_svn: u16, tee_tcb_svn: Option<&[u8; 16]>) -> Vec<Value> {
    let mut out = Vec::new();
    let Some(level) = top_level(&doc.info) else { return out };
    let name = |label: &str, i: usize, names: &[String]| {
        let n = names.get(i).filter(|n| !n.is_empty()).map(|n| format!(" ({n})")).unwrap_or_default();
        format!("{label} {}{n}", i + 1)
    };
    let sgx_names = component_names(&doc.body, "sgxtcbcomponents");
    for (i, (p, r)) in sgx.iter().zip(&level.sgx).enumerate() {
        if p < r {
            out.push(json!({"component": name("SGX TCB component", i, &sgx_names), "set": "sgxtcbcomponents", "index": i, "required": r, "platform": p}));
        }
    }
    if pce_svn < level.pce_svn {
        out.push(json!({"component": "PCESVN", "set": "pcesvn", "required": level.pce_svn, "platform": pce_svn}));
    }
    if let (Some(t), Some(req), true) = (tee_tcb_svn, level.tdx.as_ref(), doc.info.is_tdx()) {
        let tdx_names = component_names(&doc.body, "tdxtcbcomponents");
        let start = if t[1] > 0 { 2 } else { 0 };
        for (i, (p, r)) in t.iter().zip(req).enumerate().skip(start) {
            if p < r {
                out.push(json!({"component": name("TDX TCB component", i, &tdx_names), "set": "tdxtcbcomponents", "index": i, "required": r, "platform": p}));
            }
        }
        if t[1] > 0 {
            if let Some(ident) = tcb::find_module_identity(&doc.info, t[1]) {
                let top = ident.levels.iter().find(|l| l.status == TcbStatus::UpToDate);
                if let Some(top) = top.filter(|l| u16::from(t[0]) < l.isv_svn) {
                    out.push(json!({"component": format!("TDX module {} ISVSVN (TEE_TCB_SVN[0])", ident.id), "set": "tdxModuleIdentities", "required": top.isv_svn, "platform": t[0]}));
                }
            }
        }
    }
    out
}

fn rfc3339(t: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(t).ok()?.format(&time::format_description::well_known::Rfc3339).ok()
}

/// What Intel publishes about enforcement, said once in every report.
pub const INTEL_NOTE: &str = "Intel serves a TCB recovery's TCB Info on the PCS early channel (update=early) \
commonly the day of public disclosure and on the standard channel, which verification uses, commonly about 6 weeks \
later (Intel PCS API v4 documentation); the TCB Info carries no enforcement date. A platform listed here gets \
next_status once the standard TCB Info the service uses reaches the listed tcbEvaluationDataNumber (the service \
refreshes it before each nextUpdate); standard_expected_about is an estimate: the new up-to-date level's tcbDate + 6 weeks. \
Status = platform TCB level and TDX module by the verifier's rules; the QE Identity is not forecast.";

/// What AMD publishes, said once in every report that has AMD platforms.
pub const AMD_NOTE: &str = "AMD publishes no early TCB (KDS issues a VCEK for any reported TCB): AMD chips are \
compared with the minimum TCB the operator gives (--amd-min-tcb), else not assessed.";

/// The forecast: for each platform seen, its status under the current and
/// the newest TCB Info; listed (`affected`) when the newest is worse, with
/// the components that fall short and from when. The same JSON for the CLI
/// and `GET /v1/admin/endorsements/forecast`.
pub fn forecast(seen: &[Seen], pairs: &[TcbInfoPair], amd: &[AmdMinimum], left_out: u64, days: Option<u32>, now: i64) -> Value {
    let mut affected = Vec::new();
    let mut not_assessed = Vec::new();
    let mut unaffected = 0u64;
    for s in seen {
        let base = |extra: Value| {
            let mut v = json!({
                "platform": s.platform.identity(),
                "tcb": s.platform,
                "last_seen": rfc3339(s.last_seen),
                "attestations": s.attestations,
            });
            if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
                m.extend(e);
            }
            v
        };
        match &s.platform {
            Platform::Intel { tee, fmspc, sgx_tcb_components, pce_svn, tee_tcb_svn, .. } => {
                let Some(pair) = pairs.iter().find(|p| p.tee == *tee && p.fmspc == *fmspc) else {
                    not_assessed.push(base(json!({"reason": format!("more than {MAX_FMSPCS} FMSPCs: not assessed")})));
                    continue;
                };
                let (cur, next) = match (&pair.current, &pair.next) {
                    (Ok(c), Ok(n)) => (c, n),
                    (Err(e), _) => {
                        not_assessed.push(base(json!({"reason": format!("no current TCB Info: {e}")})));
                        continue;
                    }
                    (_, Err(e)) => {
                        not_assessed.push(base(json!({"reason": format!("no newer TCB Info: {e}")})));
                        continue;
                    }
                };
                let t = tee_svn(tee_tcb_svn.as_deref());
                let now_a = assess(&cur.info, sgx_tcb_components, *pce_svn, t.as_ref());
                let next_a = assess(&next.info, sgx_tcb_components, *pce_svn, t.as_ref());
                if rank(next_a.status) <= rank(now_a.status) {
                    unaffected += 1;
                    continue;
                }
                let top = top_level(&next.info);
                let expected = top.and_then(|l| tcb::parse_time(&l.tcb_date).ok()).and_then(|t| rfc3339(t + STANDARD_LAG_S));
                affected.push(base(json!({
                    "current_status": now_a.status_str(),
                    "current_tcb_evaluation_data_number": cur.info.tcb_evaluation_data_number,
                    "next_status": next_a.status_str(),
                    "next_status_detail": next_a.why,
                    "next_advisory_ids": next_a.advisory_ids,
                    "out_of_date_or_worse": rank(next_a.status) >= rank(Some(TcbStatus::OutOfDate)),
                    "shortfalls": shortfalls(next, sgx_tcb_components, *pce_svn, t.as_ref()),
                    "from": {
                        "tcb_evaluation_data_number": next.info.tcb_evaluation_data_number,
                        "issue_date": next.info.issue_date_str,
                        "up_to_date_tcb_date": top.map(|l| l.tcb_date.clone()),
                        "standard_expected_about": expected,
                        "in_force": next.info.tcb_evaluation_data_number <= cur.info.tcb_evaluation_data_number,
                    },
                })));
            }
            Platform::Amd { product, reported_tcb: r, .. } => {
                let Some(min) = amd.iter().find(|m| m.product.eq_ignore_ascii_case(product)) else {
                    not_assessed.push(base(json!({"reason": "AMD: no operator minimum TCB for this product (--amd-min-tcb)"})));
                    continue;
                };
                let mut short = Vec::new();
                let mut below = |name: &str, have: u8, need: u8| {
                    if have < need {
                        short.push(json!({"component": name, "required": need, "platform": have}));
                    }
                };
                below("bootloader", r.bl, min.bootloader);
                below("tee", r.tee, min.tee);
                below("snp", r.snp, min.snp);
                below("microcode", r.ucode, min.microcode);
                if let Some(need) = min.fmc {
                    below("fmc", r.fmc.unwrap_or(0), need);
                }
                if short.is_empty() {
                    unaffected += 1;
                    continue;
                }
                affected.push(base(json!({
                    "current_status": "not judged (AMD)",
                    "next_status": "below the operator's minimum TCB",
                    "out_of_date_or_worse": true,
                    "shortfalls": short,
                    "from": {"operator": min.from},
                })));
            }
        }
    }
    let infos: Vec<Value> = pairs
        .iter()
        .map(|p| {
            json!({
                "tee": p.tee.as_str(),
                "fmspc": p.fmspc,
                "current": match &p.current { Ok(d) => d.summary(now), Err(e) => json!({"error": e}) },
                "next": match &p.next { Ok(d) => d.summary(now), Err(e) => json!({"error": e}) },
            })
        })
        .collect();
    let mut notes = vec![INTEL_NOTE];
    if seen.iter().any(|s| matches!(s.platform, Platform::Amd { .. })) {
        notes.push(AMD_NOTE);
    }
    json!({
        "format": "cachet-forecast/1",
        "generated_at": rfc3339(now),
        "days": days,
        "platforms_seen": seen.len(),
        "platforms_left_out": left_out,
        "affected": affected,
        "unaffected": unaffected,
        "not_assessed": not_assessed,
        "tcb_infos": infos,
        "notes": notes,
    })
}

/// The report as a table for people.
pub fn table(report: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let affected = report["affected"].as_array().unwrap_or(&empty);
    out.push_str(&format!(
        "{} platform(s) seen{}: {} affected, {} unaffected, {} not assessed\n",
        report["platforms_seen"],
        report["days"].as_u64().map(|d| format!(" in the last {d} day(s)")).unwrap_or_default(),
        affected.len(),
        report["unaffected"],
        report["not_assessed"].as_array().map_or(0, Vec::len)
    ));
    if !affected.is_empty() {
        out.push_str("PLATFORM\tNOW\tNEXT\tFROM\tSHORT BY\n");
    }
    for a in affected {
        let short: Vec<String> = a["shortfalls"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|s| format!("{} needs {} has {}", s["component"].as_str().unwrap_or("?"), s["required"], s["platform"]))
            .collect();
        let from = &a["from"];
        let when = match from["tcb_evaluation_data_number"].as_u64() {
            Some(n) => format!(
                "tcbEvaluationDataNumber {n} (issued {}, standard expected about {})",
                from["issue_date"].as_str().unwrap_or("?"),
                from["standard_expected_about"].as_str().unwrap_or("?")
            ),
            None => from["operator"].as_str().unwrap_or("operator minimum").to_string(),
        };
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            a["platform"].as_str().unwrap_or("?"),
            a["current_status"].as_str().unwrap_or("?"),
            a["next_status"].as_str().unwrap_or("?"),
            when,
            short.join("; ")
        ));
    }
    for n in report["not_assessed"].as_array().unwrap_or(&empty) {
        out.push_str(&format!("not assessed: {}: {}\n", n["platform"].as_str().unwrap_or("?"), n["reason"].as_str().unwrap_or("?")));
    }
    for n in report["notes"].as_array().unwrap_or(&empty) {
        out.push_str(&format!("note: {}\n", n.as_str().unwrap_or("")));
    }
    out
}
