//! The Intel SGX extensions of a PCK certificate (OID 1.2.840.113741.1.13.1).
//!
//! The PCK leaf names the platform: its FMSPC and PCE ID select the TCB Info,
//! and its TCB (16 CPU SVN components and the PCE SVN) is what TCB levels are
//! matched against. The extension is a `SEQUENCE OF SEQUENCE { OID, value }`
//! (Intel "SGX PCK Certificate and CRL Profile"); it is parsed with
//! `der-parser` (through `x509-parser`), never by scanning bytes.

use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::ber::BerObject;
use x509_parser::der_parser::der::parse_der;

/// OID of the SGX extensions.
pub const SGX_EXTENSIONS_OID: &str = "1.2.840.113741.1.13.1";

/// What the PCK certificate says about the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PckExtensions {
    /// Platform Provisioning ID (16 bytes).
    pub ppid: Vec<u8>,
    /// SGX TCB component SVNs 1..16, from the TCB sequence.
    pub cpu_svn_components: [u8; 16],
    /// PCE SVN.
    pub pce_svn: u16,
    /// The raw CPUSVN (16 bytes).
    pub cpu_svn: [u8; 16],
    /// PCE ID (2 bytes).
    pub pce_id: [u8; 2],
    /// FMSPC: family-model-stepping-platform-customSKU (6 bytes).
    pub fmspc: [u8; 6],
    /// SGX type (0 standard, 1 scalable, 2 scalable with integrity).
    pub sgx_type: Option<u64>,
    /// Platform instance ID (platform CA certificates only).
    pub platform_instance_id: Option<Vec<u8>>,
    /// Configuration flags (platform CA certificates only).
    pub dynamic_platform: Option<bool>,
    /// Configuration: cached keys policy.
    pub cached_keys: Option<bool>,
    /// Configuration: SMT enabled.
    pub smt_enabled: Option<bool>,
}

fn sub_oid(oid: &str) -> Option<&str> {
    oid.strip_prefix(SGX_EXTENSIONS_OID)?.strip_prefix('.')
}

/// The `(OID, value)` pairs of a `SEQUENCE OF SEQUENCE { OID, value }`.
fn pairs<'a, 'b>(seq: &'b BerObject<'a>) -> Result<Vec<(String, &'b BerObject<'a>)>, String> {
    let items = seq.as_sequence().map_err(|e| format!("expected a SEQUENCE: {e}"))?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let kv = item.as_sequence().map_err(|e| format!("expected SEQUENCE {{ OID, value }}: {e}"))?;
        let (Some(k), Some(v), None) = (kv.first(), kv.get(1), kv.get(2)) else {
            return Err("expected SEQUENCE { OID, value } with two elements".into());
        };
        let oid = k.as_oid().map_err(|e| format!("expected an OID: {e}"))?.to_id_string();
        out.push((oid, v));
    }
    Ok(out)
}

fn octets<const N: usize>(v: &BerObject<'_>, what: &str) -> Result<[u8; N], String> {
    let s = v.as_slice().map_err(|e| format!("{what}: {e}"))?;
    <[u8; N]>::try_from(s).map_err(|_| format!("{what} is {} bytes, expected {N}", s.len()))
}

fn small_uint(v: &BerObject<'_>, max: u32, what: &str) -> Result<u32, String> {
    let n = v.as_u32().map_err(|e| format!("{what}: {e}"))?;
    if n > max {
        return Err(format!("{what} = {n} exceeds {max}"));
    }
    Ok(n)
}

/// Parse the SGX extensions of a PCK certificate.
pub fn parse_pck_extensions(cert: &X509Certificate<'_>) -> Result<PckExtensions, String> {
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == SGX_EXTENSIONS_OID)
        .ok_or("the PCK certificate has no SGX extensions (OID 1.2.840.113741.1.13.1)")?;
    let (rest, top) = parse_der(ext.value).map_err(|e| format!("SGX extensions are not DER: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the SGX extensions".into());
    }
    let mut ppid = None;
    let mut tcb = None;
    let mut pce_id = None;
    let mut fmspc = None;
    let mut out_type = None;
    let mut instance = None;
    let (mut dynamic_platform, mut cached_keys, mut smt_enabled) = (None, None, None);
    for (oid, v) in pairs(&top)? {
        match sub_oid(&oid) {
            Some("1") => ppid = Some(v.as_slice().map_err(|e| format!("PPID: {e}"))?.to_vec()),
            Some("2") => tcb = Some(parse_tcb(v)?),
            Some("3") => pce_id = Some(octets::<2>(v, "PCE-ID")?),
            Some("4") => fmspc = Some(octets::<6>(v, "FMSPC")?),
            Some("5") => out_type = v.as_u64().ok(),
            Some("6") => instance = v.as_slice().ok().map(<[u8]>::to_vec),
            Some("7") => {
                for (k, flag) in pairs(v)? {
                    let b = flag.as_bool().ok();
                    match sub_oid(&k) {
                        Some("7.1") => dynamic_platform = b,
                        Some("7.2") => cached_keys = b,
                        Some("7.3") => smt_enabled = b,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let (cpu_svn_components, pce_svn, cpu_svn) = tcb.ok_or("the SGX extensions have no TCB")?;
    Ok(PckExtensions {
        ppid: ppid.ok_or("the SGX extensions have no PPID")?,
        cpu_svn_components,
        pce_svn,
        cpu_svn,
        pce_id: pce_id.ok_or("the SGX extensions have no PCE-ID")?,
        fmspc: fmspc.ok_or("the SGX extensions have no FMSPC")?,
        sgx_type: out_type,
        platform_instance_id: instance,
        dynamic_platform,
        cached_keys,
        smt_enabled,
    })
}

/// The TCB sequence: components 2.1..2.16, PCESVN 2.17, CPUSVN 2.18. All required.
fn parse_tcb(v: &BerObject<'_>) -> Result<([u8; 16], u16, [u8; 16]), String> {
    let mut comps: [Option<u8>; 16] = [None; 16];
    let mut pce_svn = None;
    let mut cpu_svn = None;
    for (oid, val) in pairs(v)? {
        let Some(idx) = sub_oid(&oid).and_then(|s| s.strip_prefix("2.")) else { continue };
        match idx.parse::<usize>() {
            Ok(n @ 1..=16) => {
                let svn = small_uint(val, 255, &format!("TCB component {n}"))?;
                if let Some(slot) = comps.get_mut(n - 1) {
                    *slot = u8::try_from(svn).ok();
                }
            }
            Ok(17) => pce_svn = Some(small_uint(val, u32::from(u16::MAX), "PCESVN")? as u16),
            Ok(18) => cpu_svn = Some(octets::<16>(val, "CPUSVN")?),
            _ => {}
        }
    }
    let mut out = [0u8; 16];
    for (i, (slot, c)) in out.iter_mut().zip(comps).enumerate() {
        *slot = c.ok_or_else(|| format!("the PCK TCB has no component {}", i + 1))?;
    }
    Ok((out, pce_svn.ok_or("the PCK TCB has no PCESVN")?, cpu_svn.ok_or("the PCK TCB has no CPUSVN")?))
}
