//! Fresh-nonce end to end with the simulated TEE: challenge → evidence
//! bound to the nonce and runtime data → token; reuse, unknown and expired
//! nonces and wrong bindings refused; one nonce consumed exactly once under
//! concurrency; the simulated TEE refused without `--insecure-simulated-tee`.

mod common;

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cachet_attester::binding;
use cachet_attester::simulated::{ReportOptions, SimulatedTee};
use common::*;
use serde_json::{json, Value};

/// The simulated TEE the server trusts (its root lives in the data dir).
fn sim_of(srv: &TestServer) -> SimulatedTee {
    SimulatedTee::load_or_create(&srv.dir.join("simulated-tee")).unwrap()
}

fn sim_evidence(sim: &SimulatedTee, nonce: &[u8], runtime: &[u8], debug: bool) -> String {
    let rd = binding::report_data(nonce, runtime);
    b64(&sim.report(&rd, &ReportOptions { debug, ..Default::default() }).unwrap())
}

fn body(evidence: String, nonce: Option<&[u8]>, runtime: Option<&[u8]>) -> Value {
    let mut b = json!({"tee": "sim", "evidence": evidence});
    if let Some(n) = nonce {
        b["nonce"] = hex::encode(n).into();
    }
    if let Some(r) = runtime {
        b["runtime_data"] = b64(r).into();
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_nonce_bound_report_gets_a_token_that_says_so() {
    let srv = start("fresh", |a| a.insecure_simulated_tee = true).await;
    let sim = sim_of(&srv);
    let nonce = srv.challenge().await;
    assert_eq!(nonce.len(), 32);
    let runtime = b"-----BEGIN PUBLIC KEY----- workload key";
    let (s, v) = srv.post("/v1/attest", &body(sim_evidence(&sim, &nonce, runtime, false), Some(&nonce), Some(runtime))).await;
    assert_eq!(s, 200, "{v}");
    let t = srv.verify_token(v["token"].as_str().unwrap()).await;
    assert_eq!(t["eat_nonce"], hex::encode(&nonce));
    assert_eq!(t["cachet.freshness"], "nonce");
    assert_eq!(URL_SAFE_NO_PAD.decode(t["cachet.runtime_data"].as_str().unwrap()).unwrap(), runtime);
    let sub = &t["submods"]["sim"];
    assert_eq!(sub["ear.status"], "warning", "a simulated TEE is never affirming");
    assert_eq!(sub["ear.veraison.annotated-evidence"]["report_data"], hex::encode(binding::report_data(&nonce, runtime)));
    assert_eq!(sub["ear.veraison.annotated-evidence"]["simulated"], true);

    // The same nonce again: refused, even with new evidence.
    let (s, v) = srv.post("/v1/attest", &body(sim_evidence(&sim, &nonce, runtime, false), Some(&nonce), Some(runtime))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("nonce_reused")), "{v}");

    // A nonce this server never issued.
    let fake = [7u8; 32];
    let (s, v) = srv.post("/v1/attest", &body(sim_evidence(&sim, &fake, b"", false), Some(&fake), None)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("nonce_unknown")), "{v}");

    // Evidence bound to other runtime data than claimed.
    let n2 = srv.challenge().await;
    let (s, v) = srv.post("/v1/attest", &body(sim_evidence(&sim, &n2, b"real key", false), Some(&n2), Some(b"other key"))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("freshness_binding_failed")), "{v}");

    // Evidence bound to another nonce than the one presented.
    let (n3, n4) = (srv.challenge().await, srv.challenge().await);
    let (s, v) = srv.post("/v1/attest", &body(sim_evidence(&sim, &n3, b"", false), Some(&n4), None)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("freshness_binding_failed")), "{v}");

    // No nonce at all: verified, but the token says freshness is not established.
    let (s, v) = srv.post("/v1/attest", &body(sim_evidence(&sim, b"", b"", false), None, None)).await;
    assert_eq!(s, 200, "{v}");
    let t = srv.verify_token(v["token"].as_str().unwrap()).await;
    assert_eq!(t["cachet.freshness"], "not-established");
    assert!(t.get("eat_nonce").is_none());

    // Debug mode: verified and signed, but contraindicated.
    let n5 = srv.challenge().await;
    let (s, v) = srv.post("/v1/attest", &body(sim_evidence(&sim, &n5, b"", true), Some(&n5), None)).await;
    assert_eq!(s, 200, "{v}");
    let t = srv.verify_token(v["token"].as_str().unwrap()).await;
    assert_eq!(t["submods"]["sim"]["ear.status"], "contraindicated");
    assert_eq!(t["submods"]["sim"]["ear.trustworthiness-vector"]["configuration"], 96);

    // Another simulated TEE's report (a root the server does not trust).
    let other = SimulatedTee::generate().unwrap();
    let n6 = srv.challenge().await;
    let (s, v) = srv.post("/v1/attest", &body(sim_evidence(&other, &n6, b"", false), Some(&n6), None)).await;
    assert_eq!((s, v["error"]["check"].as_str()), (422, Some("Report signature")), "{v}");
}

/// Spent evidence (bound to nonce `n` and runtime data `rd`) presented again
/// with the nonce moved into the runtime data (`runtime_data = n ‖ rd` and
/// no nonce, which the unprefixed `SHA-512(nonce ‖ runtime_data)` accepted):
/// the length-prefixed binding tells the parts apart, so it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_evidence_cannot_be_replayed_by_moving_the_nonce_into_the_runtime_data() {
    let srv = start("replay-split", |a| a.insecure_simulated_tee = true).await;
    let sim = sim_of(&srv);
    let nonce = srv.challenge().await;
    let runtime = br#"{"kty":"EC","crv":"P-256"}"#;
    let evidence = sim_evidence(&sim, &nonce, runtime, false);
    let (s, v) = srv.post("/v1/attest", &body(evidence.clone(), Some(&nonce), Some(runtime))).await;
    assert_eq!(s, 200, "{v}");

    let joined = [nonce.as_slice(), runtime].concat();
    let (s, v) = srv.post("/v1/attest", &body(evidence.clone(), None, Some(&joined))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("freshness_binding_failed")), "{v}");
    // Nor the exact bytes that were hashed, as runtime data.
    let hashed = [&(nonce.len() as u32).to_be_bytes()[..], &nonce, &(runtime.len() as u32).to_be_bytes(), runtime].concat();
    let (s, v) = srv.post("/v1/attest", &body(evidence, None, Some(&hashed))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("freshness_binding_failed")), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_nonce_is_refused() {
    let srv = start("expired", |a| {
        a.insecure_simulated_tee = true;
        a.nonce_ttl = Some(1);
    })
    .await;
    let sim = sim_of(&srv);
    let nonce = srv.challenge().await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (s, v) = srv.post("/v1/attest", &body(sim_evidence(&sim, &nonce, b"", false), Some(&nonce), None)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("nonce_expired")), "{v}");
}

#[tokio::test]
async fn the_simulated_tee_is_refused_without_the_insecure_flag() {
    let srv = start("nosim", |_| {}).await;
    // The root file does not even exist: use a fresh simulated TEE.
    assert!(!srv.dir.join("simulated-tee").exists());
    let sim = SimulatedTee::generate().unwrap();
    let nonce = srv.challenge().await;
    let (s, v) = srv.post("/v1/attest", &body(sim_evidence(&sim, &nonce, b"", false), Some(&nonce), None)).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["code"], "verification_failed");
    assert_eq!(v["error"]["check"], "Simulated root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_nonce_under_many_concurrent_attempts_is_consumed_exactly_once() {
    let srv = Arc::new(start("race", |a| a.insecure_simulated_tee = true).await);
    let sim = sim_of(&srv);
    for round in 0..3 {
        let nonce = srv.challenge().await;
        let evidence = sim_evidence(&sim, &nonce, b"", false);
        let attempts: Vec<_> = (0..24)
            .map(|_| {
                let (srv, b) = (srv.clone(), body(evidence.clone(), Some(&nonce), None));
                tokio::spawn(async move { srv.post("/v1/attest", &b).await })
            })
            .collect();
        let mut ok = 0;
        for a in attempts {
            let (s, v) = a.await.unwrap();
            match s {
                200 => ok += 1,
                409 => assert_eq!(v["error"]["code"], "nonce_reused"),
                other => panic!("unexpected {other}: {v}"),
            }
        }
        assert_eq!(ok, 1, "round {round}: exactly one attempt may consume the nonce");
    }
}
