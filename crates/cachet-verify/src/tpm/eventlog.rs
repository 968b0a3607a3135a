//! TCG PC Client crypto-agile event logs: parse, replay, compare with quoted PCRs.
//!
//! A TPM quote signs PCR values, not what was measured. The measured-boot
//! event log says what was measured; it is trusted only as far as replaying
//! its digests reproduces the quoted PCR values. This module implements the
//! TCG PC Client Platform Firmware Profile (PFP) 2.0 "crypto agile" format:
//!
//! * the first event is a SHA-1-format `TCG_PCClientPCREvent` (PCR 0,
//!   `EV_NO_ACTION`, 20 zero bytes of digest) whose data is a
//!   `TCG_EfiSpecIDEvent` ("Spec ID Event03") listing the digest algorithms
//!   and their sizes;
//! * every following event is a `TCG_PCR_EVENT2`: PCR index, event type, a
//!   `TPML_DIGEST_VALUES` (one digest per listed algorithm) and the event
//!   data. All integers are little-endian.
//!
//! Replay (PFP §3.3.3.2 / TPM 2.0 Part 1 §17): every PCR starts at its reset
//! value (zeros; all ones for the DRTM PCRs 17-22; PCR 0 carries the startup
//! locality announced by a `StartupLocality` `EV_NO_ACTION` event), and each
//! event other than `EV_NO_ACTION` extends its PCR: `PCR = H(PCR || digest)`.
//!
//! Legacy SHA-1-only logs (TCG 1.2 format) are refused by name. Everything
//! read is size-limited; nothing here panics on input.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::quote::HashAlg;
use crate::check::{Checks, VResult};

/// Largest event log accepted, in bytes. Real firmware logs are 10-100 KiB
/// (the largest seen carry full `db`/`dbx` variables); ACPI log areas are at
/// most a few hundred KiB.
pub const MAX_EVENT_LOG_LEN: usize = 2 << 20;
/// Most events accepted in one log (real firmware logs have 50-300).
pub const MAX_EVENTS: usize = 20_000;
/// Most digest algorithms a Spec ID event may list.
pub const MAX_ALGORITHMS: usize = 16;
/// Largest digest size accepted for an algorithm unknown to Cachet.
pub const MAX_DIGEST_LEN: usize = 64;
/// Number of PCRs of a PC Client TPM (0..=23).
pub const PCR_COUNT: u32 = 24;
/// Longest event data reported as text in claims; longer data is summarised.
pub const MAX_TEXT_CLAIM: usize = 512;
/// Longest binary event data reported in hex in claims.
pub const MAX_HEX_CLAIM: usize = 64;

/// `EV_NO_ACTION`: informational events that are never extended.
pub const EV_NO_ACTION: u32 = 0x0000_0003;
/// Signature of the crypto-agile Spec ID event (PFP §9.4.5.1), NUL included.
const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
/// Signature of the StartupLocality `EV_NO_ACTION` event (PFP §9.4.5.3).
const STARTUP_LOCALITY_SIGNATURE: &[u8; 16] = b"StartupLocality\0";

pub use super::quote::PcrBanks;

/// The name used in claims for a `TPM_ALG_ID` listed by a log (`"sha256"`),
/// or `"alg_0x0012"` for one Cachet cannot replay.
pub fn alg_name(id: u16) -> String {
    match HashAlg::from_tpm(id) {
        Some(h) => h.name().to_string(),
        None => format!("alg_0x{id:04x}"),
    }
}

/// The PFP name of an event type (`"EV_SEPARATOR"`), so claims and policies
/// can say what was measured without a table of numbers.
pub fn event_type_name(t: u32) -> String {
    let name = match t {
        0x0000_0000 => "EV_PREBOOT_CERT",
        0x0000_0001 => "EV_POST_CODE",
        0x0000_0002 => "EV_UNUSED",
        0x0000_0003 => "EV_NO_ACTION",
        0x0000_0004 => "EV_SEPARATOR",
        0x0000_0005 => "EV_ACTION",
        0x0000_0006 => "EV_EVENT_TAG",
        0x0000_0007 => "EV_S_CRTM_CONTENTS",
        0x0000_0008 => "EV_S_CRTM_VERSION",
        0x0000_0009 => "EV_CPU_MICROCODE",
        0x0000_000A => "EV_PLATFORM_CONFIG_FLAGS",
        0x0000_000B => "EV_TABLE_OF_DEVICES",
        0x0000_000C => "EV_COMPACT_HASH",
        0x0000_000D => "EV_IPL",
        0x0000_000E => "EV_IPL_PARTITION_DATA",
        0x0000_000F => "EV_NONHOST_CODE",
        0x0000_0010 => "EV_NONHOST_CONFIG",
        0x0000_0011 => "EV_NONHOST_INFO",
        0x0000_0012 => "EV_OMIT_BOOT_DEVICE_EVENTS",
        0x0000_0013 => "EV_POST_CODE2",
        0x8000_0000 => "EV_EFI_EVENT_BASE",
        0x8000_0001 => "EV_EFI_VARIABLE_DRIVER_CONFIG",
        0x8000_0002 => "EV_EFI_VARIABLE_BOOT",
        0x8000_0003 => "EV_EFI_BOOT_SERVICES_APPLICATION",
        0x8000_0004 => "EV_EFI_BOOT_SERVICES_DRIVER",
        0x8000_0005 => "EV_EFI_RUNTIME_SERVICES_DRIVER",
        0x8000_0006 => "EV_EFI_GPT_EVENT",
        0x8000_0007 => "EV_EFI_ACTION",
        0x8000_0008 => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
        0x8000_0009 => "EV_EFI_HANDOFF_TABLES",
        0x8000_000A => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
        0x8000_000B => "EV_EFI_HANDOFF_TABLES2",
        0x8000_000C => "EV_EFI_VARIABLE_BOOT2",
        0x8000_000D => "EV_EFI_GPT_EVENT2",
        0x8000_0010 => "EV_EFI_HCRTM_EVENT",
        0x8000_00E0 => "EV_EFI_VARIABLE_AUTHORITY",
        0x8000_00E1 => "EV_EFI_SPDM_FIRMWARE_BLOB",
        0x8000_00E2 => "EV_EFI_SPDM_FIRMWARE_CONFIG",
        0x8000_00E3 => "EV_EFI_SPDM_DEVICE_POLICY",
        0x8000_00E4 => "EV_EFI_SPDM_DEVICE_AUTHORITY",
        other => return format!("EV_UNKNOWN_0x{other:08x}"),
    };
    name.to_string()
}

/// The `TCG_EfiSpecIDEvent` that opens a crypto-agile log: which digest
/// algorithms each event carries and how long each digest is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecIdEvent {
    /// Platform class (0 = client, 1 = server).
    pub platform_class: u32,
    /// specVersionMajor.specVersionMinor (2.0 for PFP 2.0 logs).
    pub spec_version: (u8, u8),
    /// specErrata.
    pub spec_errata: u8,
    /// Size of UINTN in the firmware (1 = 32-bit, 2 = 64-bit).
    pub uintn_size: u8,
    /// (TPM_ALG_ID, digest size) for every algorithm in every event, in order.
    pub algorithms: Vec<(u16, u16)>,
    /// Vendor-specific bytes.
    pub vendor_info: Vec<u8>,
}

/// One `TCG_PCR_EVENT2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Position in the log, counting the Spec ID event as 0.
    pub seq: usize,
    /// PCR index extended (or, for `EV_NO_ACTION`, the index logged).
    pub pcr: u32,
    /// Event type (see [`event_type_name`]).
    pub event_type: u32,
    /// (TPM_ALG_ID, digest) in log order.
    pub digests: Vec<(u16, Vec<u8>)>,
    /// The event data as logged (not itself covered by the PCR unless the
    /// event's digest happens to be the hash of it).
    pub data: Vec<u8>,
}

impl Event {
    /// The digest this event carries for one algorithm.
    pub fn digest(&self, alg: u16) -> Option<&[u8]> {
        self.digests.iter().find(|(a, _)| *a == alg).map(|(_, d)| d.as_slice())
    }

    /// Whether this event extends a PCR (every type except `EV_NO_ACTION`).
    pub fn extends(&self) -> bool {
        self.event_type != EV_NO_ACTION
    }
}

/// A parsed crypto-agile event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    /// The opening Spec ID event.
    pub spec_id: SpecIdEvent,
    /// Every event after the Spec ID event, in order.
    pub events: Vec<Event>,
    /// Locality announced by a `StartupLocality` event, if any (PCR 0's
    /// reset value then ends in this byte).
    pub startup_locality: Option<u8>,
    /// Bytes of 0x00/0xFF padding after the last event (ACPI log areas are
    /// larger than the log they hold).
    pub trailing_padding: usize,
}

/// Little-endian reader over untrusted bytes that never panics.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or_else(|| format!("{what}: length overflow"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| format!("{what}: needs {n} bytes at offset {}, only {} left", self.pos, self.remaining()))?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?.first().copied().unwrap_or_default())
    }
    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Parse a crypto-agile event log (the bytes of
/// `/sys/kernel/security/tpm0/binary_bios_measurements` or of the ACPI TPM2
/// log area).
pub fn parse(bytes: &[u8]) -> Result<EventLog, String> {
    if bytes.len() > MAX_EVENT_LOG_LEN {
        return Err(format!("{} bytes exceeds the {MAX_EVENT_LOG_LEN}-byte limit", bytes.len()));
    }
    let mut r = Reader::new(bytes);
    let spec_id = parse_header(&mut r)?;
    let sizes: BTreeMap<u16, usize> = spec_id.algorithms.iter().map(|(a, s)| (*a, usize::from(*s))).collect();
    let mut events = Vec::new();
    let mut startup_locality = None;
    let mut trailing_padding = 0;
    while r.remaining() > 0 {
        let rest = r.rest();
        if rest.iter().all(|b| *b == 0xFF) || rest.iter().all(|b| *b == 0x00) {
            trailing_padding = rest.len();
            break;
        }
        if events.len() >= MAX_EVENTS {
            return Err(format!("more than {MAX_EVENTS} events"));
        }
        let seq = events.len() + 1;
        let ev = parse_event2(&mut r, seq, &spec_id, &sizes)?;
        if ev.event_type == EV_NO_ACTION {
            if let Some(loc) = startup_locality_of(&ev)? {
                let earlier_pcr0 = events.iter().any(|e: &Event| e.pcr == 0 && e.extends());
                if earlier_pcr0 || startup_locality.is_some() {
                    return Err(format!("event {seq}: StartupLocality event after PCR 0 was initialised"));
                }
                startup_locality = Some(loc);
            }
        }
        events.push(ev);
    }
    Ok(EventLog { spec_id, events, startup_locality, trailing_padding })
}

/// The SHA-1-format first event and the Spec ID event inside it.
fn parse_header(r: &mut Reader<'_>) -> Result<SpecIdEvent, String> {
    let legacy = "not a crypto-agile (TCG PC Client PFP 2.0) event log: the first event is not a \
                  'Spec ID Event03' EV_NO_ACTION event (SHA-1-only legacy logs are not supported)";
    let pcr = r.u32("first event PCR index")?;
    let event_type = r.u32("first event type")?;
    let digest = r.take(20, "first event digest")?;
    let size = r.u32("first event data size")? as usize;
    if event_type != EV_NO_ACTION || pcr != 0 {
        return Err(legacy.into());
    }
    let data = r.take(size, "Spec ID event data")?;
    if data.get(..16) != Some(SPEC_ID_SIGNATURE.as_slice()) {
        return Err(legacy.into());
    }
    if digest.iter().any(|b| *b != 0) {
        return Err("Spec ID event: digest is not 20 zero bytes".into());
    }
    let mut d = Reader::new(data);
    d.take(16, "Spec ID signature")?;
    let platform_class = d.u32("Spec ID platformClass")?;
    let minor = d.u8("Spec ID specVersionMinor")?;
    let major = d.u8("Spec ID specVersionMajor")?;
    let spec_errata = d.u8("Spec ID specErrata")?;
    let uintn_size = d.u8("Spec ID uintnSize")?;
    if major != 2 {
        return Err(format!("Spec ID event: spec version {major}.{minor}, expected 2.x"));
    }
    let n = d.u32("Spec ID numberOfAlgorithms")? as usize;
    if n == 0 || n > MAX_ALGORITHMS {
        return Err(format!("Spec ID event: {n} digest algorithms (1..={MAX_ALGORITHMS} accepted)"));
    }
    let mut algorithms: Vec<(u16, u16)> = Vec::with_capacity(n);
    for _ in 0..n {
        let id = d.u16("Spec ID algorithmId")?;
        let sz = d.u16("Spec ID digestSize")?;
        if algorithms.iter().any(|(a, _)| *a == id) {
            return Err(format!("Spec ID event: algorithm {} listed twice", alg_name(id)));
        }
        match HashAlg::from_tpm(id).map(HashAlg::len) {
            Some(k) if k != usize::from(sz) => return Err(format!("Spec ID event: {} digest size {sz}, expected {k}", alg_name(id))),
            None if sz == 0 || usize::from(sz) > MAX_DIGEST_LEN => {
                return Err(format!("Spec ID event: {} digest size {sz} out of range", alg_name(id)))
            }
            _ => {}
        }
        algorithms.push((id, sz));
    }
    let vsize = usize::from(d.u8("Spec ID vendorInfoSize")?);
    let vendor_info = d.take(vsize, "Spec ID vendorInfo")?.to_vec();
    if d.remaining() != 0 {
        return Err(format!("Spec ID event: {} unexpected trailing bytes", d.remaining()));
    }
    Ok(SpecIdEvent { platform_class, spec_version: (major, minor), spec_errata, uintn_size, algorithms, vendor_info })
}

/// One `TCG_PCR_EVENT2`. Each event must carry exactly one digest for every
/// algorithm of the Spec ID event (PFP §10.2.2: "the digests of all active
/// PCR banks").
fn parse_event2(r: &mut Reader<'_>, seq: usize, spec: &SpecIdEvent, sizes: &BTreeMap<u16, usize>) -> Result<Event, String> {
    let ctx = |s: String| format!("event {seq}: {s}");
    let pcr = r.u32("PCR index").map_err(ctx)?;
    let event_type = r.u32("event type").map_err(ctx)?;
    let count = r.u32("digest count").map_err(ctx)? as usize;
    if count != spec.algorithms.len() {
        return Err(ctx(format!("{count} digests, but the Spec ID event lists {} algorithms", spec.algorithms.len())));
    }
    let mut digests: Vec<(u16, Vec<u8>)> = Vec::with_capacity(count);
    for _ in 0..count {
        let id = r.u16("digest algorithm").map_err(ctx)?;
        let size = *sizes.get(&id).ok_or_else(|| ctx(format!("digest algorithm {} not in the Spec ID event", alg_name(id))))?;
        if digests.iter().any(|(a, _)| *a == id) {
            return Err(ctx(format!("two {} digests", alg_name(id))));
        }
        let d = r.take(size, "digest").map_err(ctx)?;
        digests.push((id, d.to_vec()));
    }
    let size = r.u32("event data size").map_err(ctx)? as usize;
    let data = r.take(size, "event data").map_err(ctx)?.to_vec();
    if event_type != EV_NO_ACTION && pcr >= PCR_COUNT {
        return Err(ctx(format!("PCR index {pcr} out of range 0..{PCR_COUNT}")));
    }
    Ok(Event { seq, pcr, event_type, digests, data })
}

/// The locality of a StartupLocality `EV_NO_ACTION` event, if it is one.
fn startup_locality_of(ev: &Event) -> Result<Option<u8>, String> {
    if ev.data.get(..16) != Some(STARTUP_LOCALITY_SIGNATURE.as_slice()) {
        return Ok(None);
    }
    if ev.pcr != 0 || ev.data.len() != 17 {
        return Err(format!("event {}: malformed StartupLocality event", ev.seq));
    }
    match ev.data.get(16).copied() {
        Some(l @ (0 | 3 | 4)) => Ok(Some(l)),
        Some(l) => Err(format!("event {}: StartupLocality {l} (0, 3 or 4 expected)", ev.seq)),
        None => Ok(None),
    }
}

/// The PCRs of one bank after replaying a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankReplay {
    /// Value of PCR 0..=23.
    pub values: Vec<Vec<u8>>,
    /// Number of events extended into each PCR.
    pub extends: Vec<usize>,
}

/// The reset value of a PCR (TPM 2.0 Part 1 §17.x, PC Client PTP): zeros,
/// except the DRTM PCRs 17-22 (all ones) and PCR 0 with a non-zero startup
/// locality (zeros ending in the locality byte).
fn reset_value(pcr: u32, size: usize, startup_locality: Option<u8>) -> Vec<u8> {
    let mut v = if (17..=22).contains(&pcr) { vec![0xFF; size] } else { vec![0; size] };
    if pcr == 0 {
        if let (Some(l), Some(last)) = (startup_locality, v.last_mut()) {
            *last = l;
        }
    }
    v
}

impl EventLog {
    /// The algorithms of the log that Cachet can replay.
    pub fn replayable_banks(&self) -> Vec<HashAlg> {
        self.spec_id.algorithms.iter().filter_map(|(a, _)| HashAlg::from_tpm(*a)).collect()
    }

    /// Replay one bank: the PCR values the log predicts.
    pub fn replay(&self, bank: HashAlg) -> Result<BankReplay, String> {
        let size = bank.len();
        let mut values: Vec<Vec<u8>> = (0..PCR_COUNT).map(|i| reset_value(i, size, self.startup_locality)).collect();
        let mut extends = vec![0usize; PCR_COUNT as usize];
        for ev in self.events.iter().filter(|e| e.extends()) {
            let d = ev.digest(bank.tpm_id()).ok_or_else(|| format!("event {} has no {} digest", ev.seq, bank.name()))?;
            let i = ev.pcr as usize;
            let (Some(pcr), Some(n)) = (values.get_mut(i), extends.get_mut(i)) else {
                return Err(format!("event {}: PCR index {} out of range", ev.seq, ev.pcr));
            };
            *pcr = bank.digest(&[pcr.as_slice(), d].concat());
            *n += 1;
        }
        Ok(BankReplay { values, extends })
    }
}

/// Verify an event log against quoted PCR values and return its claims.
///
/// `quoted` must hold PCR values whose quote signature and PCR digest were
/// already verified. Records three checks:
/// * `"Event log format"`: the log parses as a crypto-agile log;
/// * `"Event log banks"`: the log and the quote share a bank Cachet replays;
/// * `"Event log replay"`: for every shared bank, every quoted PCR that the
///   log extends replays to exactly the quoted value.
///
/// Only events on quoted PCRs are returned as claims (`events`); events on
/// PCRs the quote does not cover are counted in `unverified_event_count` and
/// their PCRs listed in `unquoted_pcrs`, because nothing binds them. Quoted
/// PCRs that no event extends are listed in `pcrs_without_events`.
pub fn verify_event_log(log: &[u8], quoted: &PcrBanks, checks: &mut Checks) -> VResult<Value> {
    let parsed = checks.record("Event log format", parse(log), format!("{} bytes", log.len()))?;
    let shared: Vec<HashAlg> = parsed.replayable_banks().into_iter().filter(|b| quoted.get(b).is_some_and(|p| !p.is_empty())).collect();
    let names = |v: &[String]| v.join(", ");
    let shared_names: Vec<String> = shared.iter().map(|h| h.name().to_string()).collect();
    let log_banks: Vec<String> = parsed.spec_id.algorithms.iter().map(|(a, _)| alg_name(*a)).collect();
    let quoted_banks: Vec<String> = quoted.keys().map(|h| h.name().to_string()).collect();
    checks.require(
        "Event log banks",
        !shared.is_empty(),
        format!("replaying {}", names(&shared_names)),
        format!("the log has banks [{}], the quote [{}]: none in common", names(&log_banks), names(&quoted_banks)),
    )?;
    let mut replayed_pcrs: BTreeSet<u32> = BTreeSet::new();
    let mut without_events: BTreeSet<u32> = BTreeSet::new();
    let mut compared = 0usize;
    for bank in &shared {
        let replay = parsed.replay(*bank).map_err(|e| checks.fail("Event log replay", e))?;
        let empty = BTreeMap::new();
        for (idx, value) in quoted.get(bank).unwrap_or(&empty) {
            let i = *idx as usize;
            let (Some(expect), Some(n)) = (replay.values.get(i), replay.extends.get(i)) else {
                // Beyond the 24 PC Client PCRs: no event can extend it.
                without_events.insert(*idx);
                continue;
            };
            let locality_only = i == 0 && parsed.startup_locality.is_some_and(|l| l != 0);
            if *n == 0 && !locality_only {
                without_events.insert(*idx);
                continue;
            }
            if expect != value {
                return Err(checks.fail(
                    "Event log replay",
                    format!(
                        "{} PCR {idx}: the log replays to {} ({n} events) but the quote has {}",
                        bank.name(),
                        hex::encode(expect),
                        hex::encode(value)
                    ),
                ));
            }
            replayed_pcrs.insert(*idx);
            compared += 1;
        }
    }
    checks.pass(
        "Event log replay",
        format!("{compared} quoted PCR values reproduced by {} events ({})", parsed.events.len(), names(&shared_names)),
    );
    let quoted_pcrs: BTreeSet<u32> = shared.iter().filter_map(|b| quoted.get(b)).flat_map(|m| m.keys().copied()).collect();
    let mut events = Vec::new();
    let mut unverified = 0usize;
    let mut unquoted: BTreeSet<u32> = BTreeSet::new();
    for ev in &parsed.events {
        if ev.extends() && !quoted_pcrs.contains(&ev.pcr) {
            unverified += 1;
            unquoted.insert(ev.pcr);
            continue;
        }
        if ev.extends() {
            events.push(event_claim(ev, &shared));
        }
    }
    Ok(json!({
        "spec_version": format!("{}.{}", parsed.spec_id.spec_version.0, parsed.spec_id.spec_version.1),
        "spec_errata": parsed.spec_id.spec_errata,
        "platform_class": parsed.spec_id.platform_class,
        "banks": log_banks,
        "replayed_banks": shared_names,
        "startup_locality": parsed.startup_locality,
        "event_count": parsed.events.len(),
        "replayed_pcrs": replayed_pcrs,
        "pcrs_without_events": without_events,
        "unquoted_pcrs": unquoted,
        "unverified_event_count": unverified,
        "events": events,
    }))
}

/// Claims for one verified event: PCR, type, the digests of the replayed
/// banks, and the data (as text when it is text, as hex when short).
/// `data_digest_matches` says whether each replayed digest is the hash of
/// the data, i.e. whether the data itself is covered by the quote.
pub fn event_claim(ev: &Event, banks: &[HashAlg]) -> Value {
    let mut o = Map::new();
    o.insert("seq".into(), json!(ev.seq));
    o.insert("pcr".into(), json!(ev.pcr));
    o.insert("type".into(), json!(event_type_name(ev.event_type)));
    o.insert("type_value".into(), json!(ev.event_type));
    let mut digests = Map::new();
    let mut data_matches = !banks.is_empty();
    for b in banks {
        if let Some(d) = ev.digest(b.tpm_id()) {
            digests.insert(b.name().to_string(), json!(hex::encode(d)));
            data_matches &= b.digest(&ev.data) == d;
        } else {
            data_matches = false;
        }
    }
    o.insert("digests".into(), Value::Object(digests));
    o.insert("data_len".into(), json!(ev.data.len()));
    o.insert("data_digest_matches".into(), json!(data_matches));
    if let Some(t) = textual(&ev.data) {
        o.insert("data".into(), json!(t));
    } else if ev.data.len() <= MAX_HEX_CLAIM {
        o.insert("data_hex".into(), json!(hex::encode(&ev.data)));
    }
    Value::Object(o)
}

/// Event data as text when it is printable ASCII or ASCII-range UTF-16LE
/// (both occur: EV_EFI_ACTION strings, GRUB command lines, firmware version
/// strings), with trailing NULs removed.
pub fn textual(data: &[u8]) -> Option<String> {
    let printable = |b: u8| (0x20..0x7F).contains(&b) || b == b'\t' || b == b'\n' || b == b'\r';
    let trimmed = {
        let n = data.iter().rev().take_while(|b| **b == 0).count();
        data.get(..data.len() - n).unwrap_or_default()
    };
    if trimmed.is_empty() || trimmed.len() > MAX_TEXT_CLAIM {
        return None;
    }
    if trimmed.iter().all(|b| printable(*b)) {
        return Some(String::from_utf8_lossy(trimmed).into_owned());
    }
    // UTF-16LE: the trailing-NUL trim may have eaten the high byte of the
    // last character, so pair over the untrimmed prefix.
    let even = data.get(..(trimmed.len() + 1) & !1)?;
    let chars: Vec<u8> = even.chunks_exact(2).map(|c| if c[1] == 0 { c[0] } else { 0xFF }).collect();
    if chars.len() >= 2 && chars.iter().all(|b| printable(*b)) {
        return Some(String::from_utf8_lossy(&chars).into_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal log: Spec ID (sha1+sha256) then the given events.
    fn build(events: &[(u32, u32, &[u8])], algs: &[(u16, u16)]) -> Vec<u8> {
        let mut spec = SPEC_ID_SIGNATURE.to_vec();
        spec.extend_from_slice(&0u32.to_le_bytes());
        spec.extend_from_slice(&[0, 2, 0, 2]);
        spec.extend_from_slice(&(algs.len() as u32).to_le_bytes());
        for (a, s) in algs {
            spec.extend_from_slice(&a.to_le_bytes());
            spec.extend_from_slice(&s.to_le_bytes());
        }
        spec.push(0);
        let mut out = Vec::new();
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        out.extend_from_slice(&[0u8; 20]);
        out.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        out.extend_from_slice(&spec);
        for (pcr, ty, data) in events {
            out.extend_from_slice(&pcr.to_le_bytes());
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&(algs.len() as u32).to_le_bytes());
            for (a, _) in algs {
                out.extend_from_slice(&a.to_le_bytes());
                out.extend_from_slice(&HashAlg::from_tpm(*a).unwrap().digest(data));
            }
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    const BANKS: &[(u16, u16)] = &[(0x0004, 20), (0x000B, 32)];

    #[test]
    fn replays_extend_chain() {
        let log = build(&[(4, 4, b"\0\0\0\0"), (4, 0x8000_0007, b"Calling EFI Application from Boot Option")], BANKS);
        let parsed = parse(&log).unwrap();
        assert_eq!(parsed.events.len(), 2);
        let r = parsed.replay(HashAlg::Sha256).unwrap();
        let mut pcr = vec![0u8; 32];
        for data in [&b"\0\0\0\0"[..], b"Calling EFI Application from Boot Option"] {
            let d = HashAlg::Sha256.digest(data);
            pcr = HashAlg::Sha256.digest(&[pcr, d].concat());
        }
        assert_eq!(r.values[4], pcr);
        assert_eq!(r.extends[4], 2);
        assert_eq!(r.values[17], vec![0xFF; 32]);
    }

    #[test]
    fn startup_locality_sets_pcr0_reset_value() {
        let mut loc = STARTUP_LOCALITY_SIGNATURE.to_vec();
        loc.push(3);
        let log = build(&[(0, EV_NO_ACTION, &loc)], BANKS);
        let parsed = parse(&log).unwrap();
        assert_eq!(parsed.startup_locality, Some(3));
        let r = parsed.replay(HashAlg::Sha1).unwrap();
        let mut want = vec![0u8; 20];
        want[19] = 3;
        assert_eq!(r.values[0], want);
    }

    #[test]
    fn refuses_legacy_and_truncated_logs() {
        let mut legacy = vec![0u8; 32];
        legacy[4] = 8; // EV_S_CRTM_VERSION first: a TCG 1.2 SHA-1 log
        assert!(parse(&legacy).unwrap_err().contains("not a crypto-agile"));
        let log = build(&[(7, 4, b"\0\0\0\0")], BANKS);
        for cut in 1..40 {
            assert!(parse(&log[..log.len() - cut]).is_err(), "cut {cut}");
        }
        let mut padded = log.clone();
        padded.extend_from_slice(&[0xFF; 100]);
        assert_eq!(parse(&padded).unwrap().trailing_padding, 100);
    }

    #[test]
    fn refuses_event_without_every_bank() {
        let mut log = build(&[(7, 4, b"\0\0\0\0")], BANKS);
        // Replace the digest count of the only event with 1.
        let spec_len = u32::from_le_bytes(log[28..32].try_into().unwrap()) as usize;
        let at = 32 + spec_len + 8;
        log[at] = 1;
        assert!(parse(&log).unwrap_err().contains("1 digests"));
    }

    #[test]
    fn mismatch_is_named_and_unquoted_events_are_not_claims() {
        let log = build(&[(7, 4, b"\0\0\0\0"), (9, 0xD, b"grub_cmd linux /vmlinuz")], BANKS);
        let parsed = parse(&log).unwrap();
        let good = parsed.replay(HashAlg::Sha256).unwrap().values[7].clone();
        let mut quoted = PcrBanks::new();
        quoted.entry(HashAlg::Sha256).or_default().insert(7, good.clone());
        quoted.entry(HashAlg::Sha256).or_default().insert(8, vec![0; 32]);
        let mut checks = Checks::new();
        let claims = verify_event_log(&log, &quoted, &mut checks).unwrap();
        assert_eq!(claims["events"].as_array().unwrap().len(), 1);
        assert_eq!(claims["unverified_event_count"], 1);
        assert_eq!(claims["unquoted_pcrs"], json!([9]));
        assert_eq!(claims["pcrs_without_events"], json!([8]));
        assert_eq!(claims["events"][0]["type"], "EV_SEPARATOR");
        assert_eq!(claims["events"][0]["data_digest_matches"], true);

        let mut bad = good;
        bad[0] ^= 1;
        quoted.entry(HashAlg::Sha256).or_default().insert(7, bad);
        let mut checks = Checks::new();
        let err = verify_event_log(&log, &quoted, &mut checks).unwrap_err();
        assert_eq!(err.check, "Event log replay");

        let mut only384 = PcrBanks::new();
        only384.entry(HashAlg::Sha384).or_default().insert(7, vec![0; 48]);
        let err = verify_event_log(&log, &only384, &mut Checks::new()).unwrap_err();
        assert_eq!(err.check, "Event log banks");
    }

    #[test]
    fn text_detection() {
        assert_eq!(textual(b"Calling EFI Application\0").as_deref(), Some("Calling EFI Application"));
        let utf16: Vec<u8> = "GCE Virtual Firmware v1\0".encode_utf16().flat_map(|c| c.to_le_bytes()).collect();
        assert_eq!(textual(&utf16).as_deref(), Some("GCE Virtual Firmware v1"));
        assert_eq!(textual(&[0x01, 0x02, 0x03]), None);
    }

    proptest::proptest! {
        #[test]
        fn random_input_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse(&bytes);
        }
    }
}
