//! TCB Info (v2, v3; SGX and TDX) and QE Identity (v2, v3): parsing, and the
//! TCB-level rules of Intel's Quote Verification Library (QVL).
//!
//! The rules follow QVL `Verifiers/Checks/TcbLevelCheck.cpp`,
//! `TdxModuleCheck.cpp`, `TDRelaunchCheck.cpp` and `EnclaveReportVerifier.cpp`:
//!
//! * TCB levels are ordered as QVL's `std::set<TcbLevel, greater>` orders them
//!   (SGX components, then PCE SVN, then TDX components, descending); the first
//!   level whose SGX components and PCE SVN are all `<=` the PCK's is the SGX
//!   level; for TDX, the first such level whose TDX components are also `<=`
//!   TEE_TCB_SVN is the TDX level. When TEE_TCB_SVN[1] (the TDX module major
//!   version) is non-zero, indices 0 and 1 are not compared here: the module
//!   is judged by its own identity (`tdxModuleIdentities`, id `TDX_<version>`)
//!   and TCB levels (ISVSVN = TEE_TCB_SVN[0]).
//! * No matching level means the platform is not supported by this TCB Info:
//!   QVL returns `STATUS_TCB_NOT_SUPPORTED`, an error, not a status.
//! * The final status combines the platform level, the TDX module status and
//!   the QE Identity status exactly as QVL's `convergeTcbStatusWith*` do, and
//!   applies the TD 1.5 relaunch rule.

use serde::Deserialize;

use crate::UnixTime;

/// A TCB status as Intel publishes it, plus QVL's two TD-relaunch results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcbStatus {
    /// Fully patched.
    UpToDate,
    /// Patched; software mitigations for some advisories are needed.
    SWHardeningNeeded,
    /// Patched; platform configuration needed (e.g. hyper-threading).
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// A newer TCB exists: the platform misses security updates.
    OutOfDate,
    /// Out of date, and configuration needed.
    OutOfDateConfigurationNeeded,
    /// TD 1.5: the TDX module was updated; relaunching the TD makes it up to date.
    TDRelaunchAdvised,
    /// TD relaunch advised, and configuration needed.
    TDRelaunchAdvisedConfigurationNeeded,
    /// Revoked: must not be trusted.
    Revoked,
}

impl TcbStatus {
    /// Intel's name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::TDRelaunchAdvised => "TDRelaunchAdvised",
            TcbStatus::TDRelaunchAdvisedConfigurationNeeded => "TDRelaunchAdvisedConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
        }
    }

    /// Parse one of the seven statuses a TCB level may carry (QVL `VALID_TCB_INFO_STATUSES`).
    pub fn parse_level(s: &str) -> Result<Self, String> {
        Ok(match s {
            "UpToDate" => TcbStatus::UpToDate,
            "SWHardeningNeeded" => TcbStatus::SWHardeningNeeded,
            "ConfigurationNeeded" => TcbStatus::ConfigurationNeeded,
            "ConfigurationAndSWHardeningNeeded" => TcbStatus::ConfigurationAndSWHardeningNeeded,
            "OutOfDate" => TcbStatus::OutOfDate,
            "OutOfDateConfigurationNeeded" => TcbStatus::OutOfDateConfigurationNeeded,
            "Revoked" => TcbStatus::Revoked,
            other => return Err(format!("unrecognised TCB status \"{other}\"")),
        })
    }

    /// Parse a TDX module or QE Identity level status (QVL `VALID_MODULE_TCB_STATUSES`).
    pub fn parse_simple(s: &str) -> Result<Self, String> {
        match s {
            "UpToDate" => Ok(TcbStatus::UpToDate),
            "OutOfDate" => Ok(TcbStatus::OutOfDate),
            "Revoked" => Ok(TcbStatus::Revoked),
            other => Err(format!("unrecognised TCB status \"{other}\"")),
        }
    }

    fn configuration_needed(self) -> bool {
        matches!(
            self,
            TcbStatus::ConfigurationNeeded
                | TcbStatus::OutOfDateConfigurationNeeded
                | TcbStatus::ConfigurationAndSWHardeningNeeded
                | TcbStatus::TDRelaunchAdvisedConfigurationNeeded
        )
    }
}

impl std::fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3339 timestamp to Unix seconds.
pub fn parse_time(s: &str) -> Result<UnixTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| format!("bad date \"{s}\": {e}"))
}

fn hex_fixed<const N: usize>(s: &str, what: &str) -> Result<[u8; N], String> {
    let v = hex::decode(s).map_err(|e| format!("{what} is not hex: {e}"))?;
    <[u8; N]>::try_from(v.as_slice()).map_err(|_| format!("{what} is {} bytes, expected {N}", v.len()))
}

// ---------------------------------------------------------------- TCB Info

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TcbInfoJson {
    id: Option<String>,
    version: u32,
    issue_date: String,
    next_update: String,
    fmspc: String,
    pce_id: String,
    #[serde(default)]
    tcb_type: Option<u32>,
    #[serde(default)]
    tcb_evaluation_data_number: Option<u32>,
    #[serde(default)]
    tdx_module: Option<TdxModuleJson>,
    #[serde(default)]
    tdx_module_identities: Option<Vec<TdxModuleIdentityJson>>,
    tcb_levels: Vec<TcbLevelJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TdxModuleJson {
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TdxModuleIdentityJson {
    id: String,
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
    tcb_levels: Vec<ModuleLevelJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModuleLevelJson {
    tcb: IsvSvnJson,
    tcb_date: String,
    tcb_status: String,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
struct IsvSvnJson {
    isvsvn: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TcbLevelJson {
    tcb: serde_json::Map<String, serde_json::Value>,
    tcb_date: String,
    tcb_status: String,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

/// One platform TCB level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbLevel {
    /// Minimum SGX TCB component SVNs.
    pub sgx: [u8; 16],
    /// Minimum PCE SVN.
    pub pce_svn: u16,
    /// Minimum TDX TCB component SVNs (TDX TCB Info only).
    pub tdx: Option<[u8; 16]>,
    /// Status of a platform at this level.
    pub status: TcbStatus,
    /// The level's TCB date (RFC 3339).
    pub tcb_date: String,
    /// Intel security advisories that apply at this level.
    pub advisory_ids: Vec<String>,
}

/// The TDX module expectations (`tdxModule`, or one of `tdxModuleIdentities`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxModule {
    /// Identity id (`TDX_01`, ...), empty for the base `tdxModule`.
    pub id: String,
    /// Expected MRSIGNERSEAM.
    pub mrsigner: [u8; 48],
    /// Expected SEAMATTRIBUTES.
    pub attributes: [u8; 8],
    /// Mask for SEAMATTRIBUTES.
    pub attributes_mask: [u8; 8],
    /// TCB levels by module ISVSVN (identities only), highest first.
    pub levels: Vec<SimpleLevel>,
}

/// A level keyed by one ISVSVN (TDX module identity and QE Identity levels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleLevel {
    /// Minimum ISVSVN.
    pub isv_svn: u16,
    /// Status at this level.
    pub status: TcbStatus,
    /// The level's TCB date.
    pub tcb_date: String,
    /// Advisories at this level.
    pub advisory_ids: Vec<String>,
}

/// A parsed TCB Info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbInfo {
    /// `"SGX"` or `"TDX"` (v2 TCB Info has no id and is SGX).
    pub id: String,
    /// Structure version (2 or 3).
    pub version: u32,
    /// issueDate, Unix seconds.
    pub issue_date: UnixTime,
    /// nextUpdate, Unix seconds.
    pub next_update: UnixTime,
    /// issueDate as published.
    pub issue_date_str: String,
    /// nextUpdate as published.
    pub next_update_str: String,
    /// FMSPC the TCB Info is for.
    pub fmspc: [u8; 6],
    /// PCE ID the TCB Info is for.
    pub pce_id: [u8; 2],
    /// tcbType (0).
    pub tcb_type: u32,
    /// TCB evaluation data number.
    pub tcb_evaluation_data_number: Option<u32>,
    /// `tdxModule` (TDX only).
    pub tdx_module: Option<TdxModule>,
    /// `tdxModuleIdentities` (TDX only, when present).
    pub tdx_module_identities: Option<Vec<TdxModule>>,
    /// Levels in QVL order (highest first).
    pub levels: Vec<TcbLevel>,
}

fn svn_u8(v: &serde_json::Value, what: &str) -> Result<u8, String> {
    v.as_u64().and_then(|n| u8::try_from(n).ok()).ok_or_else(|| format!("{what} is not an SVN (0..255)"))
}

fn components(v: Option<&serde_json::Value>, what: &str) -> Result<[u8; 16], String> {
    let arr = v.and_then(|v| v.as_array()).ok_or_else(|| format!("{what} missing or not an array"))?;
    if arr.len() != 16 {
        return Err(format!("{what} has {} entries, expected 16", arr.len()));
    }
    let mut out = [0u8; 16];
    for (slot, c) in out.iter_mut().zip(arr) {
        *slot = svn_u8(c.get("svn").unwrap_or(&serde_json::Value::Null), what)?;
    }
    Ok(out)
}

fn parse_level(l: TcbLevelJson, version: u32, tdx: bool) -> Result<TcbLevel, String> {
    let pce = l.tcb.get("pcesvn").and_then(|v| v.as_u64()).and_then(|n| u16::try_from(n).ok());
    let pce_svn = pce.ok_or("tcb.pcesvn missing or out of range")?;
    let sgx = if version >= 3 {
        components(l.tcb.get("sgxtcbcomponents"), "sgxtcbcomponents")?
    } else {
        let mut out = [0u8; 16];
        for (i, slot) in out.iter_mut().enumerate() {
            let key = format!("sgxtcbcomp{:02}svn", i + 1);
            *slot = svn_u8(l.tcb.get(&key).ok_or_else(|| format!("tcb.{key} missing"))?, &key)?;
        }
        out
    };
    let tdx = if tdx { Some(components(l.tcb.get("tdxtcbcomponents"), "tdxtcbcomponents")?) } else { None };
    parse_time(&l.tcb_date)?;
    Ok(TcbLevel { sgx, pce_svn, tdx, status: TcbStatus::parse_level(&l.tcb_status)?, tcb_date: l.tcb_date, advisory_ids: l.advisory_ids })
}

fn parse_module(m: TdxModuleJson) -> Result<TdxModule, String> {
    Ok(TdxModule {
        id: String::new(),
        mrsigner: hex_fixed(&m.mrsigner, "tdxModule.mrsigner")?,
        attributes: hex_fixed(&m.attributes, "tdxModule.attributes")?,
        attributes_mask: hex_fixed(&m.attributes_mask, "tdxModule.attributesMask")?,
        levels: Vec::new(),
    })
}

fn parse_simple_levels(levels: Vec<ModuleLevelJson>) -> Result<Vec<SimpleLevel>, String> {
    let mut out = Vec::with_capacity(levels.len());
    for l in levels {
        parse_time(&l.tcb_date)?;
        out.push(SimpleLevel {
            isv_svn: l.tcb.isvsvn,
            status: TcbStatus::parse_simple(&l.tcb_status)?,
            tcb_date: l.tcb_date,
            advisory_ids: l.advisory_ids,
        });
    }
    // Highest ISVSVN first ("go over the sorted collection ... descending").
    out.sort_by_key(|l| std::cmp::Reverse(l.isv_svn));
    Ok(out)
}

/// QVL's `TcbLevel::operator>`: the order of its `std::set<TcbLevel, greater>`.
fn qvl_order(a: &TcbLevel, b: &TcbLevel, tdx_info: bool) -> std::cmp::Ordering {
    b.sgx.cmp(&a.sgx).then_with(|| if tdx_info && a.pce_svn == b.pce_svn { b.tdx.cmp(&a.tdx) } else { b.pce_svn.cmp(&a.pce_svn) })
}

impl TcbInfo {
    /// Parse the signed TCB Info text (the value of `tcbInfo`).
    pub fn parse(body: &str) -> Result<Self, String> {
        let j: TcbInfoJson = serde_json::from_str(body).map_err(|e| format!("TCB Info is not valid: {e}"))?;
        let id = match (j.version, j.id) {
            (2, _) => "SGX".to_string(),
            (3, Some(id)) if id == "SGX" || id == "TDX" => id,
            (3, id) => return Err(format!("TCB Info id {id:?} is not SGX or TDX")),
            (v, _) => return Err(format!("TCB Info version {v} is not supported (2 or 3)")),
        };
        let tdx = id == "TDX";
        let mut levels = Vec::with_capacity(j.tcb_levels.len());
        for l in j.tcb_levels {
            levels.push(parse_level(l, j.version, tdx)?);
        }
        levels.sort_by(|a, b| qvl_order(a, b, tdx));
        let tdx_module = match j.tdx_module {
            Some(m) if tdx => Some(parse_module(m)?),
            _ => None,
        };
        let tdx_module_identities = match j.tdx_module_identities {
            Some(ids) if tdx => {
                let mut out = Vec::with_capacity(ids.len());
                for m in ids {
                    out.push(TdxModule {
                        id: m.id,
                        mrsigner: hex_fixed(&m.mrsigner, "tdxModuleIdentities.mrsigner")?,
                        attributes: hex_fixed(&m.attributes, "tdxModuleIdentities.attributes")?,
                        attributes_mask: hex_fixed(&m.attributes_mask, "tdxModuleIdentities.attributesMask")?,
                        levels: parse_simple_levels(m.tcb_levels)?,
                    });
                }
                Some(out)
            }
            _ => None,
        };
        Ok(TcbInfo {
            id,
            version: j.version,
            issue_date: parse_time(&j.issue_date)?,
            next_update: parse_time(&j.next_update)?,
            issue_date_str: j.issue_date,
            next_update_str: j.next_update,
            fmspc: hex_fixed(&j.fmspc, "fmspc")?,
            pce_id: hex_fixed(&j.pce_id, "pceId")?,
            tcb_type: j.tcb_type.unwrap_or(0),
            tcb_evaluation_data_number: j.tcb_evaluation_data_number,
            tdx_module,
            tdx_module_identities,
            levels,
        })
    }

    /// Whether this is a TDX TCB Info (version 3, id TDX).
    pub fn is_tdx(&self) -> bool {
        self.version >= 3 && self.id == "TDX"
    }
}

// ------------------------------------------------------------- QE Identity

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QeIdentityJson {
    id: String,
    version: u32,
    issue_date: String,
    next_update: String,
    #[serde(default)]
    tcb_evaluation_data_number: Option<u32>,
    miscselect: String,
    miscselect_mask: String,
    attributes: String,
    attributes_mask: String,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<ModuleLevelJson>,
}

/// A parsed QE Identity (enclave identity of the quoting enclave).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeIdentity {
    /// `"QE"` (SGX) or `"TD_QE"` (TDX).
    pub id: String,
    /// Structure version.
    pub version: u32,
    /// issueDate, Unix seconds.
    pub issue_date: UnixTime,
    /// nextUpdate, Unix seconds.
    pub next_update: UnixTime,
    /// issueDate as published.
    pub issue_date_str: String,
    /// nextUpdate as published.
    pub next_update_str: String,
    /// TCB evaluation data number.
    pub tcb_evaluation_data_number: Option<u32>,
    /// Expected MISCSELECT (bytes as in the report).
    pub miscselect: [u8; 4],
    /// Mask for MISCSELECT.
    pub miscselect_mask: [u8; 4],
    /// Expected ATTRIBUTES.
    pub attributes: [u8; 16],
    /// Mask for ATTRIBUTES.
    pub attributes_mask: [u8; 16],
    /// Expected MRSIGNER.
    pub mrsigner: [u8; 32],
    /// Expected ISVPRODID.
    pub isvprodid: u16,
    /// Levels by QE ISVSVN, highest first.
    pub levels: Vec<SimpleLevel>,
}

impl QeIdentity {
    /// Parse the signed QE Identity text (the value of `enclaveIdentity`).
    pub fn parse(body: &str) -> Result<Self, String> {
        let j: QeIdentityJson = serde_json::from_str(body).map_err(|e| format!("QE Identity is not valid: {e}"))?;
        Ok(QeIdentity {
            id: j.id,
            version: j.version,
            issue_date: parse_time(&j.issue_date)?,
            next_update: parse_time(&j.next_update)?,
            issue_date_str: j.issue_date,
            next_update_str: j.next_update,
            tcb_evaluation_data_number: j.tcb_evaluation_data_number,
            miscselect: hex_fixed(&j.miscselect, "miscselect")?,
            miscselect_mask: hex_fixed(&j.miscselect_mask, "miscselectMask")?,
            attributes: hex_fixed(&j.attributes, "attributes")?,
            attributes_mask: hex_fixed(&j.attributes_mask, "attributesMask")?,
            mrsigner: hex_fixed(&j.mrsigner, "mrsigner")?,
            isvprodid: j.isvprodid,
            levels: parse_simple_levels(j.tcb_levels)?,
        })
    }
}

/// Check a QE report against the QE Identity (QVL `EnclaveReportVerifier`
/// 4.1.2.9.5-8): masked MISCSELECT and ATTRIBUTES equal the identity's values,
/// MRSIGNER and ISVPRODID equal.
pub fn match_qe_identity(
    id: &QeIdentity,
    misc_select: &[u8; 4],
    attributes: &[u8; 16],
    mr_signer: &[u8; 32],
    isv_prod_id: u16,
) -> Result<(), String> {
    let masked_misc: Vec<u8> = misc_select.iter().zip(id.miscselect_mask).map(|(a, m)| a & m).collect();
    if masked_misc != id.miscselect {
        return Err(format!(
            "MISCSELECT {} under mask {} is not {}",
            hex::encode(misc_select),
            hex::encode(id.miscselect_mask),
            hex::encode(id.miscselect)
        ));
    }
    let masked_attr: Vec<u8> = attributes.iter().zip(id.attributes_mask).map(|(a, m)| a & m).collect();
    if masked_attr != id.attributes {
        return Err(format!(
            "ATTRIBUTES {} under mask {} is not {}",
            hex::encode(attributes),
            hex::encode(id.attributes_mask),
            hex::encode(id.attributes)
        ));
    }
    if *mr_signer != id.mrsigner {
        return Err(format!("MRSIGNER {} is not the QE's {}", hex::encode(mr_signer), hex::encode(id.mrsigner)));
    }
    if isv_prod_id != id.isvprodid {
        return Err(format!("ISVPRODID {isv_prod_id} is not the QE's {}", id.isvprodid));
    }
    Ok(())
}

/// The first level (highest first) whose ISVSVN is `<=` `isv_svn`.
pub fn match_simple_level(levels: &[SimpleLevel], isv_svn: u16) -> Option<&SimpleLevel> {
    levels.iter().find(|l| l.isv_svn <= isv_svn)
}

// ------------------------------------------------------- TCB level matching

/// QVL `isTdxTcbHigherOrEqual`: from index 2 when the module version is
/// non-zero (the module is judged by its identity), else from index 0.
fn tdx_components_ok(tee_tcb_svn: &[u8; 16], level: &[u8; 16]) -> bool {
    let start = if tee_tcb_svn[1] > 0 { 2 } else { 0 };
    tee_tcb_svn.iter().zip(level).skip(start).all(|(q, l)| q >= l)
}

/// The SGX level and (for TDX) the TDX level matched, per QVL `matchTcbLevels`.
#[derive(Debug, Clone)]
pub struct MatchedLevels<'a> {
    /// First level met by the PCK's SGX components and PCE SVN.
    pub sgx: Option<&'a TcbLevel>,
    /// First level also met by TEE_TCB_SVN (TDX only).
    pub tdx: Option<&'a TcbLevel>,
}

/// Match the platform against the TCB Info levels.
pub fn match_levels<'a>(info: &'a TcbInfo, cpu_svn: &[u8; 16], pce_svn: u16, tee_tcb_svn: Option<&[u8; 16]>) -> MatchedLevels<'a> {
    let mut sgx = None;
    for level in &info.levels {
        let sgx_ok = cpu_svn.iter().zip(&level.sgx).all(|(p, l)| p >= l) && pce_svn >= level.pce_svn;
        if !sgx_ok {
            continue;
        }
        match tee_tcb_svn {
            None => return MatchedLevels { sgx: Some(level), tdx: None },
            Some(tee) => {
                sgx = sgx.or(Some(level));
                if level.tdx.as_ref().is_some_and(|t| tdx_components_ok(tee, t)) {
                    return MatchedLevels { sgx, tdx: Some(level) };
                }
            }
        }
    }
    MatchedLevels { sgx, tdx: None }
}

/// QVL `convergeTcbStatusWithQeTcbStatus`.
pub fn converge_with_qe(tcb: TcbStatus, qe: TcbStatus) -> TcbStatus {
    match qe {
        TcbStatus::Revoked => TcbStatus::Revoked,
        TcbStatus::UpToDate => tcb,
        // Anything else from the QE Identity is "out of date" to QVL.
        _ => match tcb {
            TcbStatus::UpToDate | TcbStatus::SWHardeningNeeded => TcbStatus::OutOfDate,
            TcbStatus::ConfigurationNeeded | TcbStatus::ConfigurationAndSWHardeningNeeded => TcbStatus::OutOfDateConfigurationNeeded,
            other => other,
        },
    }
}

/// QVL `convergeTcbStatusWithTdxModuleStatus`.
pub fn converge_with_module(tcb: TcbStatus, module: TcbStatus) -> TcbStatus {
    match module {
        TcbStatus::Revoked => TcbStatus::Revoked,
        TcbStatus::OutOfDate => match tcb {
            TcbStatus::UpToDate | TcbStatus::SWHardeningNeeded => TcbStatus::OutOfDate,
            TcbStatus::ConfigurationNeeded | TcbStatus::ConfigurationAndSWHardeningNeeded => TcbStatus::OutOfDateConfigurationNeeded,
            other => other,
        },
        _ => tcb,
    }
}

/// Why the TD relaunch rule could not be evaluated (QVL returns these as errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelaunchError {
    /// No identity `TDX_<version>` for TEE_TCB_SVN2[1].
    ModuleMismatch(String),
    /// The TCB Info or the module identity has no levels.
    NotSupported(String),
}

/// QVL `checkForRelaunch` (TD report 1.5 bodies): when the platform is
/// current but the running TDX module is out of date, and TEE_TCB_SVN2 shows
/// the module has since been updated to the latest level, the status becomes
/// `TDRelaunchAdvised[ConfigurationNeeded]`.
pub fn check_relaunch(
    info: &TcbInfo,
    tee_tcb_svn2: &[u8; 16],
    sgx_status: TcbStatus,
    tdx_status: TcbStatus,
    module_status: TcbStatus,
    qe_status: TcbStatus,
) -> Result<TcbStatus, RelaunchError> {
    let qe_ok = !matches!(qe_status, TcbStatus::OutOfDate | TcbStatus::Revoked);
    let sgx_ok = matches!(
        sgx_status,
        TcbStatus::UpToDate | TcbStatus::SWHardeningNeeded | TcbStatus::ConfigurationNeeded | TcbStatus::ConfigurationAndSWHardeningNeeded
    );
    let tdx_old = matches!(tdx_status, TcbStatus::OutOfDate | TcbStatus::OutOfDateConfigurationNeeded);
    if !(qe_ok && sgx_ok && tdx_old && module_status == TcbStatus::OutOfDate) {
        return Ok(tdx_status);
    }
    let latest = info.levels.first().ok_or_else(|| RelaunchError::NotSupported("no TCB levels".into()))?;
    let latest_tdx = latest.tdx.unwrap_or([0; 16]);
    let module_current = if tee_tcb_svn2[1] == 0 {
        tee_tcb_svn2[0] >= latest_tdx[0]
    } else {
        let id = find_module_identity(info, tee_tcb_svn2[1])
            .ok_or_else(|| RelaunchError::ModuleMismatch(format!("no TDX module identity {}", module_id(tee_tcb_svn2[1]))))?;
        let top = id.levels.first().ok_or_else(|| RelaunchError::NotSupported(format!("TDX module identity {} has no levels", id.id)))?;
        u16::from(tee_tcb_svn2[0]) >= top.isv_svn
    };
    if module_current && tee_tcb_svn2[2] >= latest_tdx[2] {
        if sgx_status.configuration_needed() || tdx_status.configuration_needed() {
            return Ok(TcbStatus::TDRelaunchAdvisedConfigurationNeeded);
        }
        return Ok(TcbStatus::TDRelaunchAdvised);
    }
    Ok(tdx_status)
}

/// The identity id of a TDX module major version (`TDX_01`).
pub fn module_id(version: u8) -> String {
    format!("TDX_{version:02X}")
}

/// The `tdxModuleIdentities` entry for a module major version (case-insensitive id).
pub fn find_module_identity(info: &TcbInfo, version: u8) -> Option<&TdxModule> {
    let want = module_id(version);
    info.tdx_module_identities.as_ref()?.iter().find(|m| m.id.eq_ignore_ascii_case(&want))
}

/// Append advisory IDs without duplicates, keeping first-seen order.
pub fn merge_advisories(into: &mut Vec<String>, more: &[String]) {
    for a in more {
        if !into.contains(a) {
            into.push(a.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(sgx0: u8, pce: u16, tdx: [u8; 3], status: TcbStatus) -> TcbLevel {
        let mut s = [0u8; 16];
        s[0] = sgx0;
        let mut t = [0u8; 16];
        t[..3].copy_from_slice(&tdx);
        TcbLevel { sgx: s, pce_svn: pce, tdx: Some(t), status, tcb_date: String::new(), advisory_ids: vec![] }
    }

    fn info(levels: Vec<TcbLevel>) -> TcbInfo {
        TcbInfo {
            id: "TDX".into(),
            version: 3,
            issue_date: 0,
            next_update: 0,
            issue_date_str: String::new(),
            next_update_str: String::new(),
            fmspc: [0; 6],
            pce_id: [0; 2],
            tcb_type: 0,
            tcb_evaluation_data_number: None,
            tdx_module: None,
            tdx_module_identities: None,
            levels,
        }
    }

    #[test]
    fn tdx_levels_skip_module_svn_when_module_version_is_set() {
        let i = info(vec![level(2, 10, [5, 0, 3], TcbStatus::UpToDate), level(1, 10, [3, 0, 2], TcbStatus::OutOfDate)]);
        let mut cpu = [0u8; 16];
        cpu[0] = 2;
        // Module ISVSVN 4 < 5 at index 0, but module version 1: indices 0/1 are not compared.
        let tee = {
            let mut t = [0u8; 16];
            t[..3].copy_from_slice(&[4, 1, 3]);
            t
        };
        let m = match_levels(&i, &cpu, 10, Some(&tee));
        assert_eq!(m.tdx.map(|l| l.status), Some(TcbStatus::UpToDate));
        // Module version 0: index 0 counts, so the first level is not met.
        let tee0 = {
            let mut t = [0u8; 16];
            t[..3].copy_from_slice(&[4, 0, 3]);
            t
        };
        let m = match_levels(&i, &cpu, 10, Some(&tee0));
        assert_eq!(m.tdx.map(|l| l.status), Some(TcbStatus::OutOfDate));
        // Below every SGX level: nothing matches.
        let m = match_levels(&i, &[0; 16], 10, Some(&tee));
        assert!(m.sgx.is_none() && m.tdx.is_none());
    }

    #[test]
    fn qvl_order_sorts_highest_first() {
        let mut levels = [level(1, 5, [0, 0, 0], TcbStatus::OutOfDate), level(2, 5, [0, 0, 0], TcbStatus::UpToDate)];
        levels.sort_by(|a, b| qvl_order(a, b, true));
        assert_eq!(levels[0].status, TcbStatus::UpToDate);
    }

    #[test]
    fn status_convergence_follows_qvl() {
        use TcbStatus::*;
        assert_eq!(converge_with_qe(UpToDate, OutOfDate), OutOfDate);
        assert_eq!(converge_with_qe(SWHardeningNeeded, OutOfDate), OutOfDate);
        assert_eq!(converge_with_qe(ConfigurationNeeded, OutOfDate), OutOfDateConfigurationNeeded);
        assert_eq!(converge_with_qe(UpToDate, Revoked), Revoked);
        assert_eq!(converge_with_qe(ConfigurationAndSWHardeningNeeded, UpToDate), ConfigurationAndSWHardeningNeeded);
        assert_eq!(converge_with_module(UpToDate, OutOfDate), OutOfDate);
        assert_eq!(converge_with_module(ConfigurationAndSWHardeningNeeded, OutOfDate), OutOfDateConfigurationNeeded);
        assert_eq!(converge_with_module(OutOfDate, Revoked), Revoked);
        assert_eq!(converge_with_module(SWHardeningNeeded, UpToDate), SWHardeningNeeded);
    }

    #[test]
    fn relaunch_is_advised_only_when_the_module_was_updated() {
        use TcbStatus::*;
        let i = info(vec![level(2, 10, [5, 0, 3], UpToDate)]);
        let updated = [5u8, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let stale = [4u8, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(check_relaunch(&i, &updated, UpToDate, OutOfDate, OutOfDate, UpToDate), Ok(TDRelaunchAdvised));
        assert_eq!(
            check_relaunch(&i, &updated, ConfigurationNeeded, OutOfDate, OutOfDate, UpToDate),
            Ok(TDRelaunchAdvisedConfigurationNeeded)
        );
        assert_eq!(check_relaunch(&i, &stale, UpToDate, OutOfDate, OutOfDate, UpToDate), Ok(OutOfDate));
        assert_eq!(check_relaunch(&i, &updated, UpToDate, OutOfDate, OutOfDate, OutOfDate), Ok(OutOfDate));
        let with_version = [5u8, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            check_relaunch(&i, &with_version, UpToDate, OutOfDate, OutOfDate, UpToDate),
            Err(RelaunchError::ModuleMismatch(_))
        ));
    }

    #[test]
    fn qe_identity_masks_apply_to_the_report() {
        let id = QeIdentity {
            id: "QE".into(),
            version: 2,
            issue_date: 0,
            next_update: 0,
            issue_date_str: String::new(),
            next_update_str: String::new(),
            tcb_evaluation_data_number: None,
            miscselect: [0; 4],
            miscselect_mask: [0xff; 4],
            attributes: [0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            attributes_mask: [0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0],
            mrsigner: [7; 32],
            isvprodid: 1,
            levels: vec![],
        };
        let mut attr = id.attributes;
        attr[9] = 0xff; // outside the mask
        assert!(match_qe_identity(&id, &[0; 4], &attr, &[7; 32], 1).is_ok());
        attr[0] |= 0x02; // DEBUG: inside the mask
        assert!(match_qe_identity(&id, &[0; 4], &attr, &[7; 32], 1).unwrap_err().contains("ATTRIBUTES"));
        assert!(match_qe_identity(&id, &[0; 4], &id.attributes, &[8; 32], 1).unwrap_err().contains("MRSIGNER"));
        assert!(match_qe_identity(&id, &[0; 4], &id.attributes, &[7; 32], 2).unwrap_err().contains("ISVPRODID"));
        assert!(match_qe_identity(&id, &[1, 0, 0, 0], &id.attributes, &[7; 32], 1).unwrap_err().contains("MISCSELECT"));
    }
}
