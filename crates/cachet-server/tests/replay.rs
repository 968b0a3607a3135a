//! `POST /v1/admin/policies/{name}/replay`: what a policy change would do to
//! the attestations already recorded under that policy, on a real server
//! with real attestations of `testdata/vectors` evidence (SNP and TDX).

mod common;

use cachet_server::auth::Role;
use common::*;
use serde_json::{json, Value};

fn attest_body(c: &Case) -> Value {
    let endorsements: Vec<Value> = c.endorsement_files().iter().map(|e| json!({"name": e.name, "data": b64(&e.bytes)})).collect();
    json!({"tee": c.tee, "evidence": b64(&c.evidence_bytes()), "endorsements": endorsements, "at": c.verify_at})
}

async fn replay(srv: &TestServer, key: &str, name: &str, body: Value) -> (u16, Value) {
    let r = srv.client.post(srv.at(&format!("/v1/admin/policies/{name}/replay"))).bearer_auth(key).json(&body).send().await.unwrap();
    status_json(r).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_policy_is_replayed_over_the_attestations_recorded_under_its_name() {
    let srv = start("replay", |a| a.allow_verification_time = true).await;
    let op = srv.api_key(Role::Reader).await;
    let cases = cases();
    // Three SNP attestations (default policy default-snp) and one TDX.
    let snp: Vec<&Case> = cases.iter().filter(|c| c.tee == "snp" && c.expect == "accept").take(3).collect();
    assert_eq!(snp.len(), 3);
    for c in &snp {
        let (s, v) = srv.post("/v1/attest", &attest_body(c)).await;
        assert_eq!(s, 200, "{}: {v}", c.id);
    }
    let tdx = cases.iter().find(|c| c.tee == "tdx" && c.expect == "accept").unwrap();
    assert_eq!(srv.post("/v1/attest", &attest_body(tdx)).await.0, 200);
    // A refused attestation is not replayed (the verifier decided it).
    assert_eq!(srv.post("/v1/attest", &json!({"tee": "snp", "evidence": b64(&[7u8; 1184])})).await.0, 422);

    // The stored policy replayed: the recorded claims give the recorded statuses.
    let (s, same) = replay(&srv, &op, "default-snp", json!({})).await;
    assert_eq!(s, 200, "{same}");
    assert_eq!((same["evaluated"].as_u64(), same["changed"].as_u64(), same["skipped"].as_u64()), (Some(3), Some(0), Some(0)), "{same}");

    // A stricter candidate: refuse any chip whose revocation was not checked (none of the vectors carry AMD's CRL).
    let strict = "package candidate\nimport rego.v1\ntees := {\"snp\"}\nstatus := \"contraindicated\" if not input.claims.crl_checked\n\
                  status := \"affirming\" if input.claims.crl_checked\n";
    let (s, v) = replay(&srv, &op, "default-snp", json!({"policy": strict})).await;
    assert_eq!(s, 200, "{v}");
    // Every SNP attestation not already contraindicated (the debug guest's is) would now be.
    let r = srv.client.get(srv.at("/v1/admin/audit?limit=1000")).bearer_auth(&op).send().await.unwrap();
    let (_, log) = status_json(r).await;
    let not_yet = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "attest" && e["outcome"] == "ok" && e["tee"] == "snp")
        .filter(|e| serde_json::from_str::<Value>(e["detail"].as_str().unwrap()).unwrap()["status"] != "contraindicated")
        .count() as u64;
    assert!(not_yet >= 1);
    assert_eq!(
        (v["evaluated"].as_u64(), v["changed"].as_u64(), v["would_refuse"].as_u64()),
        (Some(3), Some(not_yet), Some(not_yet)),
        "{v}"
    );
    let change = &v["changes"][0];
    assert_eq!((change["tee"].as_str(), change["now"].as_str()), (Some("snp"), Some("contraindicated")), "{v}");
    assert_ne!(change["was"], "contraindicated");
    assert!(change["seq"].as_i64().unwrap() >= 1);
    assert_eq!(v["policy"]["name"], "default-snp");

    // The latest one only; another policy's attestations are not counted.
    let (_, one) = replay(&srv, &op, "default-snp", json!({"policy": strict, "last": 1})).await;
    assert_eq!(one["evaluated"], 1, "{one}");
    let (_, tdx_only) = replay(&srv, &op, "default-tdx", json!({"policy": strict.replace("\"snp\"", "\"tdx\"")})).await;
    assert_eq!(tdx_only["evaluated"], 1, "{tdx_only}");

    // Refusals: a candidate that does not compile, a count out of range, a tenant's key.
    let (s, v) = replay(&srv, &op, "default-snp", json!({"policy": "package p\nstatus := "})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("policy_invalid")), "{v}");
    let (s, v) = replay(&srv, &op, "default-snp", json!({"last": 0})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_request")), "{v}");
    let tenant = create_tenant_api_key(&srv.dir, Some("bank-a"), Role::Admin).await;
    let (s, v) = replay(&srv, &tenant, "default-snp", json!({})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("operator_only")), "{v}");
}
