//! `/v1/admin/endorsements` (the air-gapped path on the server): an operator
//! imports a bundle of a real TDX case's recorded collateral into an empty,
//! offline server, which then attests the evidence alone from it; list and
//! export show what is held; a bundle with one entry's bytes changed is
//! refused naming the entry (nothing imported, the refusal audited); tenant
//! keys get 403 `operator_only` (a tenant reader on the import route: its role).

mod common;

#[path = "../../cachet-endorse/tests/common/recorded.rs"]
mod recorded;

use base64::Engine;
use cachet_endorse::bundle::Bundle;
use cachet_server::auth::Role;
use common::*;
use serde_json::{json, Value};

const COLLATERAL: &str = "tdx/automata/collateral_2510.derived.json";

fn bundle_json() -> Value {
    serde_json::from_slice(&Bundle::new(recorded::intel_bundle(COLLATERAL)).to_json()).unwrap()
}

async fn send(srv: &TestServer, m: reqwest::Method, path: &str, key: &str, body: Option<&Value>) -> (u16, Value) {
    let mut r = srv.client.request(m, srv.at(path)).bearer_auth(key);
    if let Some(b) = body {
        r = r.json(b);
    }
    status_json(r.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_moves_endorsements_in_and_out_and_the_server_attests_from_them() {
    let srv = start("endorse-admin", |a| a.allow_verification_time = true).await;
    let operator = srv.api_key(Role::Admin).await;
    let c = cases().into_iter().find(|c| c.id == "tdx-automata-2510").unwrap();
    let attest = json!({"tee": c.tee, "evidence": b64(&c.evidence_bytes()), "at": c.verify_at});
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    // A tampered bundle first: one byte of the root CA CRL's signature changed.
    let mut bad = bundle_json();
    let e = bad["entries"].as_array_mut().unwrap().iter_mut().find(|e| e["resource"]["kind"] == "root_ca_crl").unwrap();
    let b64e = base64::engine::general_purpose::STANDARD;
    let mut der = b64e.decode(e["parts"][0]["bytes"].as_str().unwrap()).unwrap();
    let last = der.len() - 1;
    der[last] ^= 1;
    e["parts"][0]["bytes"] = b64e.encode(&der).into();
    let (s, v) = send(&srv, post.clone(), "/v1/admin/endorsements/import", &operator, Some(&bad)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("endorsement_refused")), "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("intel/rootcacrl") && msg.contains("nothing imported"), "{msg}");
    let (s, held) = send(&srv, get.clone(), "/v1/admin/endorsements", &operator, None).await;
    assert_eq!((s, held.as_array().map(Vec::len)), (200, Some(0)), "nothing imported: {held}");
    let (s, v) = send(&srv, post.clone(), "/v1/admin/endorsements/import", &operator, Some(&json!({"format": "x"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_request")), "{v}");

    // Offline and empty: the evidence alone cannot be judged.
    assert_eq!(srv.post("/v1/attest", &attest).await.0, 422);

    let (s, v) = send(&srv, post, "/v1/admin/endorsements/import", &operator, Some(&bundle_json())).await;
    assert_eq!((s, v["imported"].as_u64()), (200, Some(4)), "{v}");
    let (s, held) = send(&srv, get.clone(), "/v1/admin/endorsements", &operator, None).await;
    assert_eq!(s, 200, "{held}");
    let keys: Vec<&str> = held.as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert!(keys.contains(&"intel/tdx/tcb/00806f050000") && keys.contains(&"intel/rootcacrl"), "{keys:?}");

    let (status, ok) = srv.post("/v1/attest", &attest).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(srv.verify_token(ok["token"].as_str().unwrap()).await["cachet.endorsements"], "service");

    let (s, exported) = send(&srv, get.clone(), "/v1/admin/endorsements/export", &operator, None).await;
    assert_eq!(s, 200, "{exported}");
    let again = Bundle::parse(&serde_json::to_vec(&exported).unwrap()).expect("the export is a valid bundle");
    assert_eq!(again, Bundle::new(recorded::intel_bundle(COLLATERAL)));

    let (_, audit) = send(&srv, get, "/v1/admin/audit", &operator, None).await;
    let imports: Vec<&Value> = audit.as_array().unwrap().iter().filter(|r| r["action"] == "endorsements.import").collect();
    let outcomes: Vec<&str> = imports.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["refused", "refused", "ok"], "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_keys_are_refused_operator_only() {
    let srv = start("endorse-admin-tenant", |_| {}).await;
    let admin = create_tenant_api_key(&srv.dir, Some("bank-a"), Role::Admin).await;
    let reader = create_tenant_api_key(&srv.dir, Some("bank-a"), Role::Reader).await;
    let body = bundle_json();
    for key in [&admin, &reader] {
        for (m, path) in [
            (reqwest::Method::GET, "/v1/admin/endorsements"),
            (reqwest::Method::GET, "/v1/admin/endorsements/export"),
            (reqwest::Method::POST, "/v1/admin/endorsements/import"),
        ] {
            let post = m == reqwest::Method::POST;
            let (s, v) = send(&srv, m, path, key, Some(&body)).await;
            // A tenant reader on the import route is refused for its role first.
            let want = if post && key == &reader { "forbidden" } else { "operator_only" };
            assert_eq!((s, v["error"]["code"].as_str()), (403, Some(want)), "{path}: {v}");
        }
    }
    let operator = srv.api_key(Role::Admin).await;
    let (_, held) = send(&srv, reqwest::Method::GET, "/v1/admin/endorsements", &operator, None).await;
    assert_eq!(held.as_array().map(Vec::len), Some(0), "a tenant imported nothing: {held}");
}
