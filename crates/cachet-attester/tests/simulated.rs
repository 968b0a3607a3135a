//! The simulated TEE end to end at library level: the attester's reports
//! verify against its own root, and every tampering, a foreign root, the
//! pinned (genuine) roots, a future issue time or a wrong nonce is refused
//! by the named check.

use cachet_attester::binding;
use cachet_attester::simulated::{ReportOptions, SimulatedTee};
use cachet_verify::{verify, AnchorKind, Tee, TrustAnchors, Verification, VerifyRequest};

const NOW: i64 = 1_800_000_000;

fn anchors_for(sim: &SimulatedTee) -> TrustAnchors {
    let mut a = TrustAnchors::pinned();
    a.push(AnchorKind::SimulatedTee, sim.root_der().to_vec());
    a
}

fn run(evidence: &[u8], anchors: &TrustAnchors, nonce: Option<&[u8]>) -> Verification {
    verify(Tee::Simulated, &VerifyRequest { evidence, endorsements: &[], anchors, at: NOW, expected_nonce: nonce })
}

fn failed(v: &Verification) -> String {
    match &v.result {
        Ok(c) => panic!("expected refusal, got claims {c}"),
        Err(e) => e.check.clone(),
    }
}

fn report(sim: &SimulatedTee, rd: &[u8; 64]) -> Vec<u8> {
    sim.report(rd, &ReportOptions { issued_at: Some(NOW - 10), ..Default::default() }).unwrap()
}

#[test]
fn a_bound_report_verifies_and_carries_its_claims() {
    let sim = SimulatedTee::generate().unwrap();
    let rd = binding::report_data(b"nonce", b"runtime");
    let v = run(&report(&sim, &rd), &anchors_for(&sim), None);
    let claims = v.result.expect("verifies");
    assert_eq!(claims["tee"], "sim");
    assert_eq!(claims["report_data"], hex::encode(rd));
    assert_eq!(claims["debug"], false);
    assert_eq!(claims["simulated"], true);
    let v = run(&report(&sim, &rd), &anchors_for(&sim), Some(&rd));
    assert!(v.verified(), "{:?}", v.result);
}

#[test]
fn the_genuine_roots_alone_refuse_it() {
    let sim = SimulatedTee::generate().unwrap();
    let v = run(&report(&sim, &[1; 64]), &TrustAnchors::pinned(), None);
    assert_eq!(failed(&v), "Simulated root");
}

#[test]
fn another_simulated_root_refuses_it() {
    let sim = SimulatedTee::generate().unwrap();
    let other = SimulatedTee::generate().unwrap();
    let v = run(&report(&sim, &[1; 64]), &anchors_for(&other), None);
    assert_eq!(failed(&v), "Report signature");
}

#[test]
fn every_altered_signed_byte_is_refused() {
    use base64::Engine;
    let sim = SimulatedTee::generate().unwrap();
    let anchors = anchors_for(&sim);
    let ev = report(&sim, &[7; 64]);
    let env: serde_json::Value = serde_json::from_slice(&ev).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = b64.decode(env["report"].as_str().unwrap()).unwrap();
    for i in 0..body.len() {
        let mut b = body.clone();
        b[i] ^= 0x01;
        let mut e = env.clone();
        e["report"] = b64.encode(&b).into();
        let v = run(&serde_json::to_vec(&e).unwrap(), &anchors, None);
        assert_eq!(failed(&v), "Report signature", "flip at byte {i}");
    }
    let mut sig = b64.decode(env["signature"].as_str().unwrap()).unwrap();
    sig[5] ^= 0x80;
    let mut e = env.clone();
    e["signature"] = b64.encode(&sig).into();
    assert_eq!(failed(&run(&serde_json::to_vec(&e).unwrap(), &anchors, None)), "Report signature");
}

#[test]
fn a_report_from_the_future_or_with_another_nonce_is_refused() {
    let sim = SimulatedTee::generate().unwrap();
    let anchors = anchors_for(&sim);
    let future = sim.report(&[0; 64], &ReportOptions { issued_at: Some(NOW + 3600), ..Default::default() }).unwrap();
    assert_eq!(failed(&run(&future, &anchors, None)), "Report time");
    let ev = report(&sim, &binding::report_data(b"n1", b""));
    let other = binding::report_data(b"n2", b"");
    assert_eq!(failed(&run(&ev, &anchors, Some(&other))), "Nonce");
}

#[test]
fn garbage_is_refused_as_a_format_error() {
    let sim = SimulatedTee::generate().unwrap();
    let anchors = anchors_for(&sim);
    for ev in [&b""[..], b"{}", b"[1,2]", b"\x84\x00", br#"{"format":"other","report":"","signature":""}"#] {
        assert_eq!(failed(&run(ev, &anchors, None)), "Evidence format", "{ev:?}");
    }
}

#[test]
fn load_or_create_keeps_the_same_root() {
    let dir = std::env::temp_dir().join(format!("cachet-sim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let a = SimulatedTee::load_or_create(&dir).unwrap();
    let b = SimulatedTee::load_or_create(&dir).unwrap();
    assert_eq!(a.root_der(), b.root_der());
    let v = run(&report(&b, &[3; 64]), &anchors_for(&a), None);
    assert!(v.verified());
    let _ = std::fs::remove_dir_all(&dir);
}
