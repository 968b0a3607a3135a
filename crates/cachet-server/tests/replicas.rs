//! Two `cachet serve` replicas (in process, on loopback) sharing one real
//! PostgreSQL database (`--database-url postgres://…`, a private cluster
//! started by the test): a challenge issued by replica A is redeemed at
//! replica B exactly once, refused as reused at A (and at B), and both
//! replicas' attestations land in one unbroken audit chain.
//!
//! Skipped with a loud message when PostgreSQL is not installed, and failing
//! instead under `CI` (`.ci/run` installs it).

mod common;
#[path = "../../cachet-store/tests/common/pg.rs"]
mod pg;

use cachet_attester::binding;
use cachet_attester::simulated::{ReportOptions, SimulatedTee};
use cachet_store::{verify_audit_chain, PostgresStore, Store};
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_from_replica_a_is_redeemed_once_at_replica_b_and_refused_as_reused_at_a() {
    let Some(cluster) = pg::PgCluster::start("serve") else { return };
    let url = cluster.create_database();
    let mut a = start("replica-a", |x| {
        x.database_url = Some(url.clone());
        x.insecure_simulated_tee = true;
    })
    .await;
    // B shares A's configuration folder (the simulated TEE root, the KEK),
    // as replicas share their configuration; all state is in the database.
    let shared = a.dir.clone();
    let mut b = start("replica-b", |x| {
        x.database_url = Some(url.clone());
        x.data_dir = Some(shared);
        x.insecure_simulated_tee = true;
    })
    .await;
    assert_ne!(a.url, b.url);
    assert_eq!(a.get("/readyz").await.0, 200);

    let sim = SimulatedTee::load_or_create(&a.dir.join("simulated-tee")).unwrap();
    let nonce = a.challenge().await;
    let runtime = b"replica test workload key";
    let evidence = b64(&sim.report(&binding::report_data(&nonce, runtime), &ReportOptions::default()).unwrap());
    let body = json!({"tee": "sim", "evidence": evidence, "nonce": hex::encode(&nonce), "runtime_data": b64(runtime)});

    // Redeemed at B, which never issued it: the nonce lives in the shared database.
    let (s, v) = b.post("/v1/attest", &body).await;
    assert_eq!(s, 200, "{v}");
    let claims = b.verify_token(v["token"].as_str().unwrap()).await;
    assert_eq!(claims["eat_nonce"], hex::encode(&nonce));
    assert_eq!(claims["cachet.freshness"], "nonce");

    // Spent for every replica.
    let (s, v) = a.post("/v1/attest", &body).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("nonce_reused")), "{v}");
    let (s, v) = b.post("/v1/attest", &body).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("nonce_reused")), "{v}");

    // Both replicas appended to one chain: one accepted and two refused attestations.
    let store = PostgresStore::open(&url).await.unwrap();
    verify_audit_chain(&store).await.expect("one unbroken audit chain");
    let attests: Vec<String> =
        store.audit_page(0, 1000).await.unwrap().into_iter().filter(|r| r.action == "attest").map(|r| r.outcome).collect();
    assert_eq!(attests, ["ok", "refused", "refused"]);
    store.close().await;

    a.stop().await;
    b.stop().await;
}
