//! TPM 2.0 with a real software TPM (Debian's swtpm + tpm2-tools), and real
//! firmware event logs.
//!
//! * Real firmware event logs (testdata/eventlogs, from google/go-eventlog,
//!   with the PCR values read on the same machines) replay to their PCRs;
//!   tampering is refused by name.
//! * Each swtpm test starts its own TPM with EKs and EK certificates from a
//!   local CA (`swtpm_setup --create-ek-cert`), creates AKs, and runs:
//!   Cachet's MakeCredential → the TPM's ActivateCredential → Cachet's check;
//!   measured boot (PCR extends with a crypto-agile event log written here,
//!   clearly a test-built log) → a quote with a fresh nonce → Cachet's quote
//!   verifier and event-log replay. And the refusals: a replayed nonce, a
//!   quote by another AK, a PCR value that does not match, a log that does
//!   not explain the PCRs, a credential bound to another AK's name, a wrong
//!   secret, an EK certificate of another TPM, an untrusted EK root.
//!
//! The swtpm tests print a loud SKIPPED message when swtpm is not installed
//! (and fail instead when `CI` is set); `.ci/run` installs it.

#[path = "common/swtpm.rs"]
mod swtpm;

use std::collections::BTreeMap;

use base64::Engine;
use cachet_verify::anchors::{AnchorKind, TrustAnchors};
use cachet_verify::tpm::activation::{self, CredentialChallenge, EkEvidence, EkPublic};
use cachet_verify::tpm::eventlog::{self, EV_NO_ACTION};
use cachet_verify::tpm::quote::{AkPublic, HashAlg, PcrBanks};
use cachet_verify::tpm::{self, TpmEvidence};
use cachet_verify::{Checks, VerifyError};
use serde_json::{json, Value};
use swtpm::{Swtpm, EK_ECC, EK_ECC_CERT_NV, EK_RSA, EK_RSA_CERT_NV};

/// swtpm's local CA is a development root: no pinned anchor kind fits, and
/// activation takes the anchors it is given regardless of kind.
const EK_ROOT_KIND: AnchorKind = AnchorKind::TpmEkRoot;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn err_check<T: std::fmt::Debug>(r: Result<T, VerifyError>) -> String {
    match r {
        Ok(v) => panic!("expected a failure, got {v:?}"),
        Err(e) => e.check,
    }
}

fn fresh_nonce() -> Vec<u8> {
    use aws_lc_rs::rand::SecureRandom;
    let mut n = vec![0u8; 32];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut n).unwrap();
    n
}

// ---------------------------------------------------------------------------
// Real firmware event logs

fn eventlogs_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/eventlogs")
}

fn real_logs() -> Vec<Value> {
    let doc: Value = serde_json::from_slice(&std::fs::read(eventlogs_dir().join("logs.json")).unwrap()).unwrap();
    doc["logs"].as_array().unwrap().clone()
}

fn banks_from(v: &Value) -> PcrBanks {
    let mut out = PcrBanks::new();
    for (bank, pcrs) in v.as_object().unwrap() {
        let h = HashAlg::from_name(bank).unwrap();
        for (i, d) in pcrs.as_object().unwrap() {
            out.entry(h).or_default().insert(i.parse().unwrap(), hex::decode(d.as_str().unwrap()).unwrap());
        }
    }
    out
}

#[test]
fn real_firmware_event_logs_replay_to_their_pcrs() {
    let logs = real_logs();
    assert!(logs.len() >= 6);
    for l in logs.iter().filter(|l| l["crypto_agile"] == true) {
        let id = l["id"].as_str().unwrap();
        let bytes = std::fs::read(eventlogs_dir().join(l["file"].as_str().unwrap())).unwrap();
        assert_eq!(cachet_verify::x509::sha256_hex(&bytes), l["sha256"].as_str().unwrap(), "{id}: file as recorded");
        let pcrs = banks_from(&l["pcrs"]);
        let mut checks = Checks::new();
        let claims =
            eventlog::verify_event_log(&bytes, &pcrs, &mut checks).unwrap_or_else(|e| panic!("{id}: {e} ({:?})", checks.as_slice()));
        let names: Vec<&str> = checks.as_slice().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Event log format", "Event log banks", "Event log replay"], "{id}");
        // Every PCR the machine reported and the log extends was compared.
        let replayed: Vec<u64> = claims["replayed_pcrs"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        for i in 0..8 {
            assert!(replayed.contains(&i), "{id}: PCR {i} not replayed");
        }
        assert_eq!(claims["replayed_banks"], json!(["sha1", "sha256"]), "{id}");
        let events = claims["events"].as_array().unwrap();
        assert!(events.len() > 20, "{id}");
        // UEFI firmware: one EV_SEPARATOR on each of PCRs 0-7, whose data
        // is hashed into the digest.
        for pcr in 0..8 {
            assert!(
                events.iter().any(|e| e["pcr"] == pcr && e["type"] == "EV_SEPARATOR" && e["data_digest_matches"] == true),
                "{id}: no EV_SEPARATOR on PCR {pcr}"
            );
        }
        assert!(events.iter().all(|e| e["type"] != "EV_NO_ACTION"));
        assert!(events.iter().any(|e| e["type"] == "EV_EFI_BOOT_SERVICES_APPLICATION"), "{id}");

        // Any altered quoted PCR value is refused by name.
        for (bank, values) in &pcrs {
            for i in values.keys().copied().filter(|i| *i < 8) {
                let mut bad = pcrs.clone();
                bad.get_mut(bank).unwrap().get_mut(&i).unwrap()[0] ^= 0x01;
                let e = eventlog::verify_event_log(&bytes, &bad, &mut Checks::new()).unwrap_err();
                assert_eq!(e.check, "Event log replay", "{id} {} PCR {i}", bank.name());
            }
        }
        // Any altered event digest of an extending event is refused.
        let parsed = eventlog::parse(&bytes).unwrap();
        let spec_len = u32::from_le_bytes(bytes[28..32].try_into().unwrap()) as usize;
        let mut at = 32 + spec_len;
        for ev in &parsed.events {
            let digest_at = at + 12 + 2; // pcr, type, count, first algorithm id
            if ev.event_type != EV_NO_ACTION && ev.pcr < 8 {
                let mut bad = bytes.clone();
                bad[digest_at] ^= 0x80;
                let e = eventlog::verify_event_log(&bad, &pcrs, &mut Checks::new()).unwrap_err();
                assert_eq!(e.check, "Event log replay", "{id} event {}", ev.seq);
            }
            let digests: usize = ev.digests.iter().map(|(_, d)| 2 + d.len()).sum();
            at += 12 + digests + 4 + ev.data.len();
        }
        assert_eq!(at + parsed.trailing_padding, bytes.len(), "{id}: walked the whole log");
        // Dropping the last event of a quoted PCR is refused too.
        let last = parsed.events.iter().rev().find(|e| e.extends() && e.pcr < 8).unwrap();
        let mut truncated = parsed.clone();
        truncated.events.retain(|e| e.seq != last.seq);
        let r = truncated.replay(HashAlg::Sha256).unwrap();
        assert_ne!(&r.values[last.pcr as usize], pcrs[&HashAlg::Sha256].get(&last.pcr).unwrap(), "{id}");
    }
}

#[test]
fn real_event_log_details() {
    let bytes = std::fs::read(eventlogs_dir().join("rhel8-uefi.bin")).unwrap();
    let log = eventlog::parse(&bytes).unwrap();
    let algs: Vec<u16> = log.spec_id.algorithms.iter().map(|(a, _)| *a).collect();
    assert_eq!(algs, [0x0004, 0x000B, 0x000C], "GCE logs carry SHA-1, SHA-256 and SHA-384");
    assert_eq!(log.spec_id.spec_version, (2, 0));
    // The SHA-384 bank replays too; its PCRs were not recorded, but a quote
    // over SHA-384 alone must still be compared against it.
    let r384 = log.replay(HashAlg::Sha384).unwrap();
    let mut only384 = PcrBanks::new();
    only384.entry(HashAlg::Sha384).or_default().insert(7, r384.values[7].clone());
    let claims = eventlog::verify_event_log(&bytes, &only384, &mut Checks::new()).unwrap();
    assert_eq!(claims["replayed_banks"], json!(["sha384"]));
    assert_eq!(claims["replayed_pcrs"], json!([7]));
    // Only PCR 7 is quoted: events of other PCRs are not claims.
    assert!(claims["events"].as_array().unwrap().iter().all(|e| e["pcr"] == 7));
    assert!(claims["unverified_event_count"].as_u64().unwrap() > 0);
    // Text data is reported as text.
    let ubuntu = std::fs::read(eventlogs_dir().join("ubuntu-2104-no-secure-boot.bin")).unwrap();
    let l = real_logs().into_iter().find(|l| l["id"] == "ubuntu-2104-no-secure-boot").unwrap();
    let claims = eventlog::verify_event_log(&ubuntu, &banks_from(&l["pcrs"]), &mut Checks::new()).unwrap();
    let events = claims["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["type"] == "EV_EFI_ACTION" && e["data"] == "Calling EFI Application from Boot Option"));
    assert!(events.iter().any(|e| e["pcr"] == 8 && e["data"].as_str().is_some_and(|d| d.starts_with("grub_cmd"))));
}

#[test]
fn legacy_sha1_log_is_refused_by_name() {
    let l = real_logs().into_iter().find(|l| l["crypto_agile"] == false).unwrap();
    let bytes = std::fs::read(eventlogs_dir().join(l["file"].as_str().unwrap())).unwrap();
    let mut checks = Checks::new();
    let e = eventlog::verify_event_log(&bytes, &banks_from(&l["pcrs"]), &mut checks).unwrap_err();
    assert_eq!(e.check, "Event log format");
    assert!(e.message.contains("not a crypto-agile"), "{e}");
}

#[test]
fn mutated_real_logs_never_panic() {
    use aws_lc_rs::rand::SecureRandom;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    for l in real_logs() {
        let bytes = std::fs::read(eventlogs_dir().join(l["file"].as_str().unwrap())).unwrap();
        let pcrs = banks_from(&l["pcrs"]);
        for _ in 0..300 {
            let mut r = [0u8; 8];
            rng.fill(&mut r).unwrap();
            let pos = (u32::from_le_bytes([r[0], r[1], r[2], r[3]]) as usize) % bytes.len();
            let mut m = bytes.clone();
            m[pos] = r[4];
            if r[5] & 1 == 1 {
                m.truncate(pos + 1);
            }
            let _ = eventlog::verify_event_log(&m, &pcrs, &mut Checks::new());
        }
    }
}

// ---------------------------------------------------------------------------
// A test-built crypto-agile event log, measured into a real TPM

/// The banks swtpm_setup activates in these tests, in log order.
const BANKS: [HashAlg; 3] = [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384];

/// Writes a TCG PC Client crypto-agile log while extending the same
/// digests into the TPM, as firmware would.
struct MeasuredBoot<'a> {
    tpm: &'a Swtpm,
    log: Vec<u8>,
}

impl<'a> MeasuredBoot<'a> {
    fn new(tpm: &'a Swtpm) -> Self {
        let mut spec = b"Spec ID Event03\0".to_vec();
        spec.extend(0u32.to_le_bytes()); // platform class: client
        spec.extend([0, 2, 0, 2]); // version 2.0, errata 0, uintn 64-bit
        spec.extend((BANKS.len() as u32).to_le_bytes());
        for b in BANKS {
            spec.extend(b.tpm_id().to_le_bytes());
            spec.extend((b.len() as u16).to_le_bytes());
        }
        spec.push(0); // no vendor info
        let mut log = Vec::new();
        log.extend(0u32.to_le_bytes());
        log.extend(EV_NO_ACTION.to_le_bytes());
        log.extend([0u8; 20]);
        log.extend((spec.len() as u32).to_le_bytes());
        log.extend(spec);
        MeasuredBoot { tpm, log }
    }

    fn append(&mut self, pcr: u32, ty: u32, digests: &[Vec<u8>], data: &[u8]) {
        self.log.extend(pcr.to_le_bytes());
        self.log.extend(ty.to_le_bytes());
        self.log.extend((BANKS.len() as u32).to_le_bytes());
        for (b, d) in BANKS.iter().zip(digests) {
            self.log.extend(b.tpm_id().to_le_bytes());
            self.log.extend(d);
        }
        self.log.extend((data.len() as u32).to_le_bytes());
        self.log.extend(data);
    }

    /// TPM2_PCR_Event: the TPM hashes `data` into every bank; the log
    /// records the digests the TPM reports.
    fn event(&mut self, pcr: u32, ty: u32, data: &[u8]) {
        let file = format!("event-{}.bin", self.log.len());
        self.tpm.write(&file, data);
        let out = self.tpm.tool("tpm2_pcrevent", &[&pcr.to_string(), &file]);
        let reported: BTreeMap<String, Vec<u8>> =
            out.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), hex::decode(v.trim()).unwrap())).collect();
        let digests: Vec<Vec<u8>> = BANKS.iter().map(|b| reported[b.name()].clone()).collect();
        for (b, d) in BANKS.iter().zip(&digests) {
            assert_eq!(&b.digest(data), d, "the TPM's {} of the event data", b.name());
        }
        self.append(pcr, ty, &digests, data);
    }

    /// TPM2_PCR_Extend with the digests of `measured` (e.g. a PE image),
    /// logging `data` that is not what was hashed (as firmware does for
    /// EV_EFI_BOOT_SERVICES_APPLICATION).
    fn extend(&mut self, pcr: u32, ty: u32, measured: &[u8], data: &[u8]) {
        let digests: Vec<Vec<u8>> = BANKS.iter().map(|b| b.digest(measured)).collect();
        let spec: Vec<(&str, Vec<u8>)> = BANKS.iter().zip(&digests).map(|(b, d)| (b.name(), d.clone())).collect();
        self.tpm.extend(pcr, &spec);
        self.append(pcr, ty, &digests, data);
    }

    /// Boot a pretend UEFI machine: CRTM version, firmware blob, Secure Boot
    /// variable, separators on PCRs 0-7, a boot application, a GRUB command.
    fn boot(tpm: &'a Swtpm) -> Vec<u8> {
        let mut m = MeasuredBoot::new(tpm);
        let version: Vec<u8> = "Cachet test firmware 1.0\0".encode_utf16().flat_map(|c| c.to_le_bytes()).collect();
        m.event(0, 0x0000_0008, &version); // EV_S_CRTM_VERSION
        m.extend(0, 0x8000_0008, b"firmware volume contents", &[0x00, 0x00, 0x82, 0xff, 0, 0, 0, 0, 0, 0, 0x1e, 0, 0, 0, 0, 0]);
        m.event(7, 0x8000_0001, b"\x61\xdf\xe4\x8b\xca\x93\xd2\x11\xaa\x0d\x00\xe0\x98\x03\x2b\x8c SecureBoot=1");
        for pcr in 0..8 {
            m.event(pcr, 0x0000_0004, &[0, 0, 0, 0]); // EV_SEPARATOR
        }
        m.event(4, 0x8000_0007, b"Calling EFI Application from Boot Option"); // EV_EFI_ACTION
        m.extend(4, 0x8000_0003, b"PE image of shimx64.efi", &[0x18, 0x60, 0x1b, 0x7f, 0, 0, 0, 0, 0x40, 0x01]);
        m.event(8, 0x0000_000D, b"grub_cmd: linux /vmlinuz root=/dev/vda1 ro\0"); // EV_IPL
        m.log
    }
}

// ---------------------------------------------------------------------------
// Helpers around the TPM

/// Read `selection` from the TPM as PcrBanks.
fn read_pcrs(tpm: &Swtpm, selection: &str) -> PcrBanks {
    let mut out = PcrBanks::new();
    for (bank, i, v) in tpm.pcr_read(selection) {
        out.entry(HashAlg::from_name(&bank).unwrap()).or_default().insert(i, v);
    }
    out
}

const SELECTION: &str = "sha256:0,1,2,3,4,5,6,7,8+sha1:0,4,7";

/// swtpm's local CA as the only trusted EK root.
fn ek_roots(tpm: &Swtpm) -> TrustAnchors {
    let mut a = TrustAnchors::empty();
    a.push(EK_ROOT_KIND, tpm.local_ca_root());
    a
}

/// The whole activation: Cachet's challenge, the TPM's ActivateCredential,
/// Cachet's check.
fn activate(tpm: &Swtpm, ek: &str, ek_nv: &str, ak: &str) -> activation::ActivatedAk {
    let ek_public = tpm.read_public(ek);
    let ek_cert = tpm.ek_cert(ek_nv);
    let ak_public = tpm.read(&format!("{ak}.pub"));
    let roots = ek_roots(tpm);
    let mut checks = Checks::new();
    let (challenge, pending) = activation::start_activation(
        &ek_public,
        &ek_cert,
        &[tpm.local_ca_issuer()],
        &roots.of_kind(EK_ROOT_KIND).collect::<Vec<_>>(),
        &ak_public,
        now(),
        &mut checks,
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", checks.as_slice()));
    // Cachet's name computation agrees with the TPM's.
    assert_eq!(pending.ak_name, tpm.ak_name(ak), "AK name");
    let file = format!("{ak}-challenge.cred");
    tpm.write(&file, &challenge.to_tpm2_tools());
    let secret = tpm.activate(ak, ek, &file).expect("the TPM activates the credential");
    assert_eq!(secret.len(), pending.secret.len());
    let activated = activation::finish_activation(pending, &secret, &mut checks).unwrap();
    let names: Vec<&str> = checks.as_slice().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "EK public key",
            "EK attributes",
            "EK certificate chain",
            "EK certificate chain validity",
            "EK binding",
            "AK public key",
            "AK attributes",
            "Credential challenge",
            "Credential activation"
        ]
    );
    assert!(checks.as_slice().iter().all(|c| c.ok));
    activated
}

/// Cachet TPM evidence JSON for a quote, as an attester would send it.
fn evidence_json(tpm: &Swtpm, ak: &str, quote: &[u8], sig: &[u8], pcrs: &PcrBanks, log: &[u8], nonce: &[u8]) -> Value {
    let ek_cert = tpm.ek_cert(EK_RSA_CERT_NV);
    json!({
        "quote": hex::encode(quote),
        "signature": hex::encode(sig),
        "ak_public": hex::encode(tpm.read(&format!("{ak}.pub"))),
        "pcrs": cachet_verify::tpm::quote::pcr_banks_json(pcrs),
        "event_log": base64::engine::general_purpose::STANDARD.encode(log),
        "nonce": hex::encode(nonce),
        "ek_public": hex::encode(tpm.read_public(EK_RSA)),
        "ek_certificate": base64::engine::general_purpose::STANDARD.encode(ek_cert),
        "ek_cert_chain": [hex::encode(tpm.local_ca_issuer())],
    })
}

// ---------------------------------------------------------------------------
// swtpm tests

#[test]
fn swtpm_activation_quote_and_event_log() {
    if !swtpm::available() {
        return;
    }
    let tpm = Swtpm::with_ek_certs();
    tpm.create_ak(EK_RSA, "ak", "ecc", "ecdsa");
    let activated = activate(&tpm, EK_RSA, EK_RSA_CERT_NV, "ak");
    let claims = activated.claims();
    assert_eq!(claims["ak_trust"], "credential-activation");
    assert_eq!(claims["ek_type"], "RSA 2048");
    assert_eq!(claims["ek_certificate"]["root_sha256"], cachet_verify::x509::sha256_hex(&tpm.local_ca_root()));

    // Measured boot, then a quote over a fresh nonce.
    let log = MeasuredBoot::boot(&tpm);
    let nonce = fresh_nonce();
    let (quote, sig) = tpm.quote("ak", SELECTION, &nonce);
    let pcrs = read_pcrs(&tpm, SELECTION);

    // The evidence as JSON, read back through the verifier's own parsers.
    let doc = evidence_json(&tpm, "ak", &quote, &sig, &pcrs, &log, &nonce);
    let ev = TpmEvidence::from_json(&doc).unwrap();
    let ek = EkEvidence::from_json(&ev.json).unwrap().unwrap();
    assert_eq!(ek.ek_certificate, tpm.ek_cert(EK_RSA_CERT_NV));
    assert_eq!(ek.intermediates, vec![tpm.local_ca_issuer()]);
    let ak = AkPublic::from_json(&ev.ak_public).unwrap();
    assert!(ak.same_key(&activated.ak));

    let mut checks = Checks::new();
    let q = tpm::verify_quote(&ev.quote, &ev.signature, &activated.ak, &ev.pcrs, Some(&nonce), &mut checks)
        .unwrap_or_else(|e| panic!("{e}: {:?}", checks.as_slice()));
    assert_eq!(q.attest.extra_data, nonce);
    let mut claims = tpm::quote_claims(cachet_verify::Tee::Tpm, &q, &activated.ak);
    tpm::add_event_log(&ev, &q, &mut claims, &mut checks).unwrap_or_else(|e| panic!("{e}: {:?}", checks.as_slice()));
    let el = &claims["event_log"];
    assert_eq!(el["replayed_banks"], json!(["sha1", "sha256"]));
    assert_eq!(el["replayed_pcrs"], json!([0, 1, 2, 3, 4, 5, 6, 7, 8]));
    assert_eq!(el["unverified_event_count"], 0);
    let events = el["events"].as_array().unwrap();
    assert_eq!(events.len(), 14);
    assert_eq!(events[0]["type"], "EV_S_CRTM_VERSION");
    assert_eq!(events[0]["data"], "Cachet test firmware 1.0");
    assert!(events.iter().any(|e| e["type"] == "EV_EFI_ACTION" && e["data"] == "Calling EFI Application from Boot Option"));
    let app = events.iter().find(|e| e["type"] == "EV_EFI_BOOT_SERVICES_APPLICATION").unwrap();
    assert_eq!(app["data_digest_matches"], false, "the digest is of the image, not of the logged data");
    assert_eq!(app["digests"]["sha256"], hex::encode(HashAlg::Sha256.digest(b"PE image of shimx64.efi")));
    assert_eq!(claims["pcrs"]["sha256"]["8"], hex::encode(&pcrs[&HashAlg::Sha256][&8]));

    // A replayed quote: the verifier now expects a new nonce.
    let e = tpm::verify_quote(&quote, &sig, &activated.ak, &pcrs, Some(&fresh_nonce()), &mut Checks::new());
    assert_eq!(err_check(e), "Quote nonce");

    // A PCR value that does not match the quote's digest.
    for (bank, i) in [(HashAlg::Sha256, 8), (HashAlg::Sha1, 0)] {
        let mut bad = pcrs.clone();
        bad.get_mut(&bank).unwrap().get_mut(&i).unwrap()[5] ^= 0x20;
        let e = tpm::verify_quote(&quote, &sig, &activated.ak, &bad, Some(&nonce), &mut Checks::new());
        assert_eq!(err_check(e), "PCR digest");
    }
    // A flipped bit in the signed quote.
    let mut bad = quote.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let e = tpm::verify_quote(&bad, &sig, &activated.ak, &pcrs, Some(&nonce), &mut Checks::new());
    assert_eq!(err_check(e), "TPM quote signature");

    // A quote from a different AK of the same TPM: signature refused.
    tpm.create_ak(EK_RSA, "ak2", "ecc", "ecdsa");
    let nonce2 = fresh_nonce();
    let (quote2, sig2) = tpm.quote("ak2", SELECTION, &nonce2);
    let e = tpm::verify_quote(&quote2, &sig2, &activated.ak, &pcrs, Some(&nonce2), &mut Checks::new());
    assert_eq!(err_check(e), "TPM quote signature");

    // Something extended after boot without being logged: the quote is
    // genuine, but the log no longer explains the PCRs.
    tpm.extend(8, &[("sha1", vec![7; 20]), ("sha256", vec![7; 32]), ("sha384", vec![7; 48])]);
    let nonce3 = fresh_nonce();
    let (quote3, sig3) = tpm.quote("ak", SELECTION, &nonce3);
    let pcrs3 = read_pcrs(&tpm, SELECTION);
    let mut checks = Checks::new();
    let q3 = tpm::verify_quote(&quote3, &sig3, &activated.ak, &pcrs3, Some(&nonce3), &mut checks).unwrap();
    let e = eventlog::verify_event_log(&log, &q3.pcrs, &mut checks).unwrap_err();
    assert_eq!(e.check, "Event log replay");
    assert!(e.message.contains("PCR 8"), "{e}");
}

#[test]
fn swtpm_activation_refusals() {
    if !swtpm::available() {
        return;
    }
    let tpm = Swtpm::with_ek_certs();
    let other = Swtpm::with_ek_certs();
    tpm.create_ak(EK_RSA, "ak", "ecc", "ecdsa");
    tpm.create_ak(EK_RSA, "ak2", "ecc", "ecdsa");
    other.create_ak(EK_RSA, "foreign", "ecc", "ecdsa");
    let ek_public = tpm.read_public(EK_RSA);
    let ek_cert = tpm.ek_cert(EK_RSA_CERT_NV);
    let pool = [tpm.local_ca_issuer()];
    let roots = ek_roots(&tpm);
    let start = |ek_pub: &[u8], cert: &[u8], pool: &[Vec<u8>], roots: &TrustAnchors, ak_pub: &[u8]| {
        let mut checks = Checks::new();
        let roots: Vec<_> = roots.of_kind(EK_ROOT_KIND).collect();
        activation::start_activation(ek_pub, cert, pool, &roots, ak_pub, now(), &mut checks)
    };

    // A credential bound to another AK's name: the TPM refuses to release it
    // to this AK (integrity check over the name).
    let (challenge, pending) = start(&ek_public, &ek_cert, &pool, &roots, &tpm.read("ak2.pub")).unwrap();
    tpm.write("to-ak2.cred", &challenge.to_tpm2_tools());
    let r = tpm.activate("ak", EK_RSA, "to-ak2.cred");
    assert!(r.is_err(), "ActivateCredential must refuse a credential bound to another name");
    // ... while the AK it names gets it (the challenge itself is sound).
    let secret = tpm.activate("ak2", EK_RSA, "to-ak2.cred").unwrap();
    assert!(activation::finish_activation(pending.clone(), &secret, &mut Checks::new()).is_ok());
    // A wrong secret returned is refused by name.
    let mut wrong = secret.clone();
    wrong[0] ^= 1;
    let e = activation::finish_activation(pending, &wrong, &mut Checks::new());
    assert_eq!(err_check(e), "Credential activation");

    // An AK from another TPM presented with this TPM's EK: its name gets a
    // challenge, but neither TPM can activate it (the other TPM lacks this
    // EK; this TPM lacks that AK), so only a guess can come back.
    let (challenge, pending) = start(&ek_public, &ek_cert, &pool, &roots, &other.read("foreign.pub")).unwrap();
    tpm.write("foreign.cred", &challenge.to_tpm2_tools());
    other.write("foreign.cred", &challenge.to_tpm2_tools());
    assert!(other.activate("foreign", EK_RSA, "foreign.cred").is_err());
    assert!(tpm.activate("ak", EK_RSA, "foreign.cred").is_err());
    let e = activation::finish_activation(pending, &[0u8; 32], &mut Checks::new());
    assert_eq!(err_check(e), "Credential activation");

    // A challenge tampered in transit is refused by the TPM.
    let (challenge, _) = start(&ek_public, &ek_cert, &pool, &roots, &tpm.read("ak.pub")).unwrap();
    let mut blob = challenge.credential_blob.clone();
    let last = blob.len() - 1;
    blob[last] ^= 1;
    let tampered = CredentialChallenge { credential_blob: blob, secret: challenge.secret.clone() };
    tpm.write("tampered.cred", &tampered.to_tpm2_tools());
    assert!(tpm.activate("ak", EK_RSA, "tampered.cred").is_err());

    // The EK certificate of another TPM does not certify this EK.
    let e = start(&ek_public, &other.ek_cert(EK_RSA_CERT_NV), &[other.local_ca_issuer()], &ek_roots(&other), &tpm.read("ak.pub"));
    assert_eq!(err_check(e), "EK binding");
    // An EK certificate chaining to a root that is not trusted.
    let e = start(&ek_public, &ek_cert, &pool, &ek_roots(&other), &tpm.read("ak.pub"));
    assert_eq!(err_check(e), "EK certificate chain");
    let e = start(&ek_public, &ek_cert, &pool, &TrustAnchors::pinned(), &tpm.read("ak.pub"));
    assert_eq!(err_check(e), "EK certificate chain");
    // Not yet valid at the verification time.
    let mut checks = Checks::new();
    let trusted: Vec<_> = roots.of_kind(EK_ROOT_KIND).collect();
    let year_ago = now() - 86_400 * 365;
    let e = activation::start_activation(&ek_public, &ek_cert, &pool, &trusted, &tpm.read("ak.pub"), year_ago, &mut checks);
    assert_eq!(err_check(e), "EK certificate chain validity");
    // A key that is not an AK (the EK itself: a decryption key).
    let e = start(&ek_public, &ek_cert, &pool, &roots, &ek_public);
    assert_eq!(err_check(e), "AK attributes");
    // An AK given only as a raw key has no name to bind.
    let ak = AkPublic::parse(&tpm.read("ak.pub")).unwrap();
    let sec1 = hex::decode(ak.to_hex()).unwrap();
    let e = start(&ek_public, &ek_cert, &pool, &roots, &sec1);
    assert_eq!(err_check(e), "AK public key");
    // Not an EK: an AK public area is not a storage key.
    let e = start(&tpm.read("ak.pub"), &ek_cert, &pool, &roots, &tpm.read("ak.pub"));
    assert_eq!(err_check(e), "EK public key");
}

#[test]
fn swtpm_ecc_p384_ek_and_rsa_aks() {
    if !swtpm::available() {
        return;
    }
    let tpm = Swtpm::with_ek_certs();
    let ek = EkPublic::parse(&tpm.read_public(EK_ECC)).unwrap();
    assert_eq!(ek.key.describe(), "ECC P-384");
    for (name, alg, scheme) in [("rsa-ak", "rsa", "rsassa"), ("pss-ak", "rsa", "rsapss"), ("p256-ak", "ecc", "ecdsa")] {
        tpm.create_ak(EK_ECC, name, alg, scheme);
        let activated = activate(&tpm, EK_ECC, EK_ECC_CERT_NV, name);
        assert_eq!(activated.claims()["ek_type"], "ECC P-384");
        let nonce = fresh_nonce();
        let (quote, sig) = tpm.quote_with(name, scheme, "sha256:0,1,2+sha384:0", &nonce);
        let pcrs = read_pcrs(&tpm, "sha256:0,1,2+sha384:0");
        let mut checks = Checks::new();
        tpm::verify_quote(&quote, &sig, &activated.ak, &pcrs, Some(&nonce), &mut checks)
            .unwrap_or_else(|e| panic!("{name}: {e}: {:?}", checks.as_slice()));
        let e = tpm::verify_quote(&quote, &sig, &activated.ak, &pcrs, Some(&nonce[..31]), &mut Checks::new());
        assert_eq!(err_check(e), "Quote nonce");
    }
}
