//! The service's own endorsements: a server whose store cache holds the
//! recorded Intel collateral of a real TDX case (offline, so nothing is
//! fetched) attests `{tee, evidence}` alone, and refuses an attester TCB Info
//! older than the one it holds, by name.

mod common;

#[path = "../../cachet-endorse/tests/common/recorded.rs"]
mod recorded;

use std::sync::Arc;

use cachet_endorse::Cache;
use cachet_server::endorse::StoreCache;
use cachet_store::{SqliteStore, Store};
use common::*;
use serde_json::{json, Value};

/// Put the recorded collateral `rel` into the store cache of `dir`, through
/// the server's own adapter.
async fn seed(dir: &std::path::Path, rel: &str) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(dir).await.expect("store"));
    let cache = StoreCache(store.clone());
    for f in recorded::intel_bundle(rel) {
        cache.put(&f.resource.key(), &f).await;
    }
    assert_eq!(cache.list().await.len(), 4);
    store.close().await;
}

fn case(id: &str) -> Case {
    cases().into_iter().find(|c| c.id == id).expect("case")
}

async fn seeded_server(tag: &str, rel: &str) -> TestServer {
    let dir = temp_dir(tag);
    seed(&dir, rel).await;
    let mut a = args(&dir);
    a.allow_verification_time = true;
    assert!(a.offline, "tests fetch nothing");
    let server = cachet_server::start(a.resolve().expect("config")).await.expect("server starts");
    let url = server.url.clone();
    TestServer { server: Some(server), url, dir, client: http_client() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_alone_is_attested_from_the_services_cache() {
    let c = case("tdx-automata-2510");
    let body = json!({"tee": c.tee, "evidence": b64(&c.evidence_bytes()), "at": c.verify_at});

    // Without the cache (and offline), the evidence alone cannot be judged,
    // and the refusal names what is missing...
    let bare = start("endorse-bare", |a| a.allow_verification_time = true).await;
    let (status, refused) = bare.post("/v1/attest", &body).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "verification_failed");
    let msg = refused["error"]["message"].as_str().unwrap();
    assert!(msg.contains("offline and not cached") && msg.contains("intel/tdx/tcb/00806f050000"), "names what is missing: {msg}");

    // ...with it, it is, on the service's endorsements alone.
    let srv = seeded_server("endorse-seeded", "tdx/automata/collateral_2510.derived.json").await;
    let (status, ok) = srv.post("/v1/attest", &body).await;
    assert_eq!(status, 200, "{ok}");
    let t = srv.verify_token(ok["token"].as_str().unwrap()).await;
    assert_eq!(t["cachet.endorsements"], "service");

    // The attester's own (the same recorded collateral) is a hint: still accepted.
    let sent: Vec<Value> = c.endorsement_files().iter().map(|e| json!({"name": e.name, "data": b64(&e.bytes)})).collect();
    let mut with = body.clone();
    with["endorsements"] = Value::Array(sent);
    let (status, ok) = srv.post("/v1/attest", &with).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(srv.verify_token(ok["token"].as_str().unwrap()).await["cachet.endorsements"], "service+attester");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attester_tcb_info_older_than_the_services_is_refused_by_name() {
    // FMSPC 90c06f000000: the service holds tcbEvaluationDataNumber 18, the
    // attester sends 17 (both genuine recorded Intel documents).
    let c = case("tdx-dcapqvl-v5-outdated");
    let srv = seeded_server("endorse-outdated", "tdx/dcap-qvl/tdx_quote_outdated_collateral.json").await;
    let old = recorded::as_attester("tdx/automata/collateral_v5_2502.derived.json");
    let body = json!({
        "tee": c.tee,
        "evidence": b64(&c.evidence_bytes()),
        "at": c.verify_at,
        "endorsements": [{"name": old.name, "data": b64(&old.bytes)}],
    });
    let (status, refused) = srv.post("/v1/attest", &body).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "endorsement_outdated", "{refused}");
    assert_eq!(refused["error"]["check"], "Endorsement freshness", "{refused}");
    let msg = refused["error"]["message"].as_str().unwrap();
    assert!(msg.contains("tcbEvaluationDataNumber 17") && msg.contains("service's 18"), "{msg}");

    // The same evidence with the service's own revision is not refused for freshness.
    let current = recorded::as_attester("tdx/dcap-qvl/tdx_quote_outdated_collateral.json");
    let mut same = body.clone();
    same["endorsements"] = json!([{"name": current.name, "data": b64(&current.bytes)}]);
    let (_, answer) = srv.post("/v1/attest", &same).await;
    assert_ne!(answer["error"]["code"], "endorsement_outdated", "{answer}");
}
