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

/// The one issuer of every replica of these tests.
const ISSUER: &str = "https://cachet.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_from_replica_a_is_redeemed_once_at_replica_b_and_refused_as_reused_at_a() {
    let Some(cluster) = pg::PgCluster::start("serve") else { return };
    let url = cluster.create_database();
    let mut a = start("replica-a", |x| {
        x.database_url = Some(url.clone());
        x.issuer = Some(ISSUER.into());
        x.insecure_simulated_tee = true;
    })
    .await;
    // B shares A's configuration folder (the simulated TEE root, the KEK),
    // as replicas share their configuration; all state is in the database.
    let shared = a.dir.clone();
    let mut b = start("replica-b", |x| {
        x.database_url = Some(url.clone());
        x.issuer = Some(ISSUER.into());
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

#[path = "../../cachet-endorse/tests/common/recorded.rs"]
mod recorded;

/// The endorsement cache is the shared database's: a bundle an operator
/// imports through replica A judges evidence sent alone to replica B (both
/// offline), and B lists what A imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endorsements_imported_at_one_replica_judge_evidence_at_the_other() {
    let Some(cluster) = pg::PgCluster::start("serve-endorse") else { return };
    let url = cluster.create_database();
    let mut a = start("replica-endorse-a", |x| {
        x.database_url = Some(url.clone());
        x.issuer = Some(ISSUER.into());
        x.allow_verification_time = true;
    })
    .await;
    let shared = a.dir.clone();
    let mut b = start("replica-endorse-b", |x| {
        x.database_url = Some(url.clone());
        x.issuer = Some(ISSUER.into());
        x.data_dir = Some(shared);
        x.allow_verification_time = true;
    })
    .await;
    // An operator key, in the shared database.
    let store = PostgresStore::open(&url).await.unwrap();
    let k = cachet_server::auth::new_tenant_api_key("test", cachet_server::auth::Role::Admin, None, cachet_server::now()).unwrap();
    let created =
        cachet_store::AuditEntry { actor: "test".into(), action: "api_key.create".into(), outcome: "ok".into(), ..Default::default() };
    store.insert_api_key(&k.record, &created).await.unwrap();

    let c = cases().into_iter().find(|c| c.id == "tdx-automata-2510").expect("case");
    let attest = json!({"tee": c.tee, "evidence": b64(&c.evidence_bytes()), "at": c.verify_at});
    let (s, v) = b.post("/v1/attest", &attest).await;
    assert_eq!(s, 422, "nothing held yet, offline: {v}");

    let bundle: serde_json::Value = serde_json::from_slice(
        &cachet_endorse::bundle::Bundle::new(recorded::intel_bundle("tdx/automata/collateral_2510.derived.json")).to_json(),
    )
    .unwrap();
    let r = a.client.post(a.at("/v1/admin/endorsements/import")).bearer_auth(&k.key).json(&bundle).send().await.unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!((s, v["imported"].as_u64()), (200, Some(4)), "{v}");

    // B holds what A imported...
    let r = b.client.get(b.at("/v1/admin/endorsements")).bearer_auth(&k.key).send().await.unwrap();
    let (s, held) = status_json(r).await;
    assert_eq!(s, 200, "{held}");
    let keys: Vec<&str> = held.as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert!(keys.contains(&"intel/tdx/tcb/00806f050000") && keys.contains(&"intel/rootcacrl"), "{keys:?}");
    assert_eq!(store.list_endorsements().await.unwrap().len(), 4, "kept once, in the shared table");
    // ...and judges the evidence alone with it.
    let (s, v) = b.post("/v1/attest", &attest).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(b.verify_token(v["token"].as_str().unwrap()).await["cachet.endorsements"], "service");
    store.close().await;
    a.stop().await;
    b.stop().await;
}

/// A replica started with its own key-encryption key on a shared database
/// could not open the secrets and signing keys sealed by the others, and one
/// with another issuer would sign tokens the others' relying parties refuse:
/// both refuse to start, naming what the deployment holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_another_kek_or_issuer_refuses_to_start() {
    let Some(cluster) = pg::PgCluster::start("serve-kek") else { return };
    let url = cluster.create_database();
    let mut a = start("replica-kek-a", |x| {
        x.database_url = Some(url.clone());
        x.issuer = Some(ISSUER.into());
    })
    .await;
    let (s, v) = a.get("/readyz").await;
    assert_eq!(s, 200, "{v}");
    // Its own data directory: its own, different KEK. Refused at start,
    // naming both KEKs, before it signs or seals anything.
    let dir = temp_dir("replica-kek-c");
    let mut c = args(&dir);
    c.database_url = Some(url.clone());
    c.issuer = Some(ISSUER.into());
    let err = cachet_server::start(c.resolve().expect("config")).await.err().expect("refused");
    assert!(err.contains("key-encryption key") && err.contains("local-file"), "{err}");
    // The first is still ready.
    assert_eq!(a.get("/readyz").await.0, 200);

    // Another issuer, or none, on the shared database: refused too.
    for issuer in [Some("https://other.example"), None] {
        let mut b = args(&a.dir);
        b.database_url = Some(url.clone());
        b.data_dir = Some(a.dir.clone());
        b.issuer = issuer.map(Into::into);
        let err = cachet_server::start(b.resolve().expect("config")).await.err().expect("refused");
        assert!(err.contains("--issuer"), "{err}");
        if issuer.is_some() {
            assert!(err.contains(ISSUER), "names the deployment's issuer: {err}");
        }
    }
    a.stop().await;
}

/// With the database gone, the routes a load balancer and an attester poll
/// answer 503 `storage_unavailable` at once (a client giving up after 10 s
/// would have seen the pool's 30 s wait for a connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_readyz_and_challenge_answer_503_at_once() {
    let Some(cluster) = pg::PgCluster::start("serve-down") else { return };
    let url = cluster.create_database();
    let mut a = start("replica-down", |x| {
        x.database_url = Some(url.clone());
        x.issuer = Some(ISSUER.into());
    })
    .await;
    assert_eq!(a.get("/readyz").await.0, 200);
    cluster.stop();
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().unwrap();
    for (method, path) in [(reqwest::Method::GET, "/readyz"), (reqwest::Method::POST, "/v1/challenge")] {
        let r = client.request(method, a.at(path)).send().await.unwrap_or_else(|e| panic!("{path} answers: {e}"));
        let (s, v) = status_json(r).await;
        assert_eq!((s, v["error"]["code"].as_str()), (503, Some("storage_unavailable")), "{path}: {v}");
    }
    a.stop().await;
}
