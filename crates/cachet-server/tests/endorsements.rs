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
    seeded_server_with(tag, rel, |_| {}).await
}

/// A seeded, offline server with its arguments adjusted by `f`.
async fn seeded_server_with(tag: &str, rel: &str, f: impl FnOnce(&mut cachet_server::ServeArgs)) -> TestServer {
    let dir = temp_dir(tag);
    seed(&dir, rel).await;
    let mut a = args(&dir);
    a.allow_verification_time = true;
    f(&mut a);
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

fn tdx_body() -> Value {
    let c = case("tdx-automata-2510");
    json!({"tee": c.tee, "evidence": b64(&c.evidence_bytes()), "at": c.verify_at})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minimum_tcb_evaluation_number_refuses_older_collateral_and_claims_name_the_revision() {
    // The seeded TCB Info (FMSPC 00806f050000) has tcbEvaluationDataNumber 17.
    let strict =
        seeded_server_with("endorse-min-eval", "tdx/automata/collateral_2510.derived.json", |a| a.min_tcb_evaluation_number = Some(18))
            .await;
    let (status, refused) = strict.post("/v1/attest", &tdx_body()).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "endorsement_outdated", "{refused}");
    assert_eq!(refused["error"]["check"], "Endorsement freshness", "{refused}");
    let msg = refused["error"]["message"].as_str().unwrap();
    assert!(msg.contains("tcbEvaluationDataNumber 17") && msg.contains("minimum 18"), "{msg}");

    // At the minimum it is accepted, and the claims say which revision decided.
    let ok_srv =
        seeded_server_with("endorse-min-eval-ok", "tdx/automata/collateral_2510.derived.json", |a| a.min_tcb_evaluation_number = Some(17))
            .await;
    let (status, ok) = ok_srv.post("/v1/attest", &tdx_body()).await;
    assert_eq!(status, 200, "{ok}");
    let t = ok_srv.verify_token(ok["token"].as_str().unwrap()).await;
    let rev = &t["cachet.endorsement-revisions"];
    assert_eq!(rev["tcb_eval_num"], 17, "{t}");
    let crls = rev["crls"].as_array().expect("CRL revisions");
    assert!(crls.iter().any(|c| c["issuer"].as_str().unwrap().contains("Intel SGX PCK Platform CA") && c["crl_number"] == "1"), "{rev}");
    assert!(crls.iter().any(|c| c["issuer"].as_str().unwrap().contains("Intel SGX Root CA")), "{rev}");

    // Endorsement metrics: the service's cache answered.
    let text = ok_srv.client.get(ok_srv.at("/metrics")).send().await.unwrap().text().await.unwrap();
    let hits = text
        .lines()
        .find(|l| l.starts_with("cachet_endorsement_cache_hits_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("cache hits series");
    assert!(hits >= 4, "{text}");
    for series in ["cachet_endorsement_fetches_total", "cachet_endorsement_rate_limited_total", "cachet_endorsement_oldest_age_seconds"] {
        assert!(text.contains(series), "{series} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maximum_collateral_age_refuses_old_collateral_by_name_and_date() {
    // The TCB Info was issued 2025-10-19T17:48:50Z; the case verifies later than a day after.
    let srv =
        seeded_server_with("endorse-max-age", "tdx/automata/collateral_2510.derived.json", |a| a.max_collateral_age = Some("1d".into()))
            .await;
    let (status, refused) = srv.post("/v1/attest", &tdx_body()).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "endorsement_outdated", "{refused}");
    let msg = refused["error"]["message"].as_str().unwrap();
    assert!(msg.contains("issued 2025-10-19T17:48:50Z") && msg.contains("86400 s"), "{msg}");

    let lax = seeded_server_with("endorse-max-age-ok", "tdx/automata/collateral_2510.derived.json", |a| {
        a.max_collateral_age = Some("3650d".into())
    })
    .await;
    let (status, ok) = lax.post("/v1/attest", &tdx_body()).await;
    assert_eq!(status, 200, "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_revocation_refuses_snp_without_an_amd_crl() {
    // The recorded VCEK and chain, no CRL (and the offline service has none).
    let c = case("snp-virtee-milan");
    let sent: Vec<Value> = c.endorsement_files().iter().map(|e| json!({"name": e.name, "data": b64(&e.bytes)})).collect();
    let body = json!({"tee": c.tee, "evidence": b64(&c.evidence_bytes()), "at": c.verify_at, "endorsements": sent});
    let strict = start("endorse-revocation", |a| {
        a.allow_verification_time = true;
        a.require_revocation = true;
    })
    .await;
    let (status, refused) = strict.post("/v1/attest", &body).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "revocation_unavailable", "{refused}");
    assert_eq!(refused["error"]["check"], "Revocation", "{refused}");

    let lax = start("endorse-revocation-off", |a| a.allow_verification_time = true).await;
    let (_, answer) = lax.post("/v1/attest", &body).await;
    assert_ne!(answer["error"]["code"], "revocation_unavailable", "{answer}");

    // NVIDIA evidence without any OCSP response: refused the same way.
    let g = case("nvgpu-h100-2023");
    let sent: Vec<Value> = g.endorsement_files().iter().map(|e| json!({"name": e.name, "data": b64(&e.bytes)})).collect();
    let gpu = json!({"tee": g.tee, "evidence": b64(&g.evidence_bytes()), "at": g.verify_at, "endorsements": sent});
    let (status, refused) = strict.post("/v1/attest", &gpu).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "revocation_unavailable", "{refused}");
    let (_, answer) = lax.post("/v1/attest", &gpu).await;
    assert_ne!(answer["error"]["code"], "revocation_unavailable", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attester_crl_older_than_the_services_is_refused_by_name() {
    // The service holds the PCK Platform CA CRL of 2026-02-18; the attester
    // sends the same CA's CRL of 2025-02-13 (both recorded from Intel).
    let c = case("tdx-dcapqvl-v5-outdated");
    let srv = seeded_server("endorse-old-crl", "tdx/dcap-qvl/tdx_quote_outdated_collateral.json").await;
    let old_bundle: Value =
        serde_json::from_slice(&std::fs::read(recorded::vectors().join("tdx/automata/collateral_v5_2502.derived.json")).unwrap()).unwrap();
    let old_crl = hex::decode(old_bundle["pck_crl"].as_str().unwrap()).unwrap();
    let body = json!({
        "tee": c.tee,
        "evidence": b64(&c.evidence_bytes()),
        "at": c.verify_at,
        "endorsements": [{"name": "pck-crl.der", "data": b64(&old_crl)}],
    });
    let (status, refused) = srv.post("/v1/attest", &body).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "endorsement_outdated", "{refused}");
    let msg = refused["error"]["message"].as_str().unwrap();
    assert!(msg.contains("Intel SGX PCK Platform CA") && msg.contains("2025-02-13") && msg.contains("2026-02-18"), "{msg}");

    // The service's own revision of that CRL is not refused for freshness.
    let current: Value =
        serde_json::from_slice(&std::fs::read(recorded::vectors().join("tdx/dcap-qvl/tdx_quote_outdated_collateral.json")).unwrap())
            .unwrap();
    let same_crl = hex::decode(current["pck_crl"].as_str().unwrap()).unwrap();
    let mut same = body.clone();
    same["endorsements"] = json!([{"name": "pck-crl.der", "data": b64(&same_crl)}]);
    let (_, answer) = srv.post("/v1/attest", &same).await;
    assert_ne!(answer["error"]["code"], "endorsement_outdated", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_refresh_refetches_what_nears_its_next_update_and_keeps_it() {
    use axum::http::{StatusCode, Uri};
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let rel = "tdx/automata/collateral_2510.derived.json";
    let b: Value = serde_json::from_slice(&std::fs::read(recorded::vectors().join(rel)).unwrap()).unwrap();
    let s = |k: &str| b[k].as_str().unwrap().to_string();
    let tcb = (format!("{{\"tcbInfo\":{},\"signature\":\"{}\"}}", s("tcb_info"), s("tcb_info_signature")), s("tcb_info_issuer_chain"));
    let qe = (
        format!("{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}", s("qe_identity"), s("qe_identity_signature")),
        s("qe_identity_issuer_chain"),
    );
    // Intel PCS v4 in its real shape, answering the recorded signed bytes.
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let (tcb, qe) = (tcb.clone(), qe.clone());
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            match uri.path() {
                "/tdx/certification/v4/tcb" => (
                    [("content-type", "application/json".to_string()), ("tcb-info-issuer-chain", recorded::encode_uri_component(&tcb.1))],
                    tcb.0,
                )
                    .into_response(),
                "/tdx/certification/v4/qe/identity" => (
                    [
                        ("content-type", "application/json".to_string()),
                        ("sgx-enclave-identity-issuer-chain", recorded::encode_uri_component(&qe.1)),
                    ],
                    qe.0,
                )
                    .into_response(),
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pcs = format!("http://{}", listener.local_addr().unwrap());
    let serving = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = temp_dir("endorse-refresh");
    seed(&dir, rel).await;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(&dir).await.expect("store"));
    let cache: Arc<dyn Cache> = Arc::new(StoreCache(store.clone()));
    let tcb_key = recorded::intel_bundle(rel)[0].resource.key();
    let before = cache.get(&tcb_key).await.expect("seeded");
    let next = before.next_update.expect("TCB Info nextUpdate");
    let sources = cachet_endorse::Sources { pcs_url: pcs.clone(), ..Default::default() };
    let endorser = Arc::new(cachet_endorse::Endorser::new(sources, cache.clone()).unwrap());

    // Far from its next update: nothing is fetched.
    let far = next - 30 * 86_400;
    assert_eq!(cachet_server::endorse::refresh_once(&endorser, far).await.0, 0);
    assert_eq!(requests.load(Ordering::SeqCst), 0, "nothing due, nothing asked");

    // Within a day of it: re-fetched from the source and kept in the store.
    let near = next - 3600;
    let (ok, _) = cachet_server::endorse::refresh_once(&endorser, near).await;
    assert!(ok >= 1, "the TCB Info was refreshed");
    let after = cache.get(&tcb_key).await.expect("kept");
    assert_eq!(after.fetched_at, near);
    assert!(after.source.starts_with(&pcs), "{}", after.source);
    assert_eq!(after.next_update, Some(next));

    // `cachet serve` runs it in the background when asked (a 1 s period here):
    // its seeded TCB Info, past its nextUpdate by now, is re-fetched into the store.
    let served_dir = temp_dir("endorse-refresh-serve");
    seed(&served_dir, rel).await;
    let mut a = args(&served_dir);
    a.offline = false;
    a.pcs_url = Some(pcs.clone());
    a.endorsement_refresh_interval = Some("1".into());
    let srv = cachet_server::start(a.resolve().expect("config")).await.expect("server starts");
    let served_store: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(&served_dir).await.expect("store"));
    let served = StoreCache(served_store.clone());
    let mut refreshed = None;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        if let Some(f) = served.get(&tcb_key).await.filter(|f| f.fetched_at > 0) {
            refreshed = Some(f);
            break;
        }
    }
    let refreshed = refreshed.expect("the background refresh re-fetched the TCB Info");
    assert!(refreshed.source.starts_with(&pcs), "{}", refreshed.source);
    srv.shutdown().await;
    served_store.close().await;

    // The source gone: the refresh fails, the cached entry stays.
    serving.abort();
    let _ = serving.await;
    let later = near + 60;
    let (ok, failed) = cachet_server::endorse::refresh_once(&endorser, later).await;
    assert_eq!(ok, 0);
    assert!(failed >= 1);
    assert_eq!(cache.get(&tcb_key).await.expect("still cached").fetched_at, near);

    // Offline: no refresh at all.
    let offline = cachet_endorse::Endorser::new(cachet_endorse::Sources { offline: true, ..Default::default() }, cache.clone()).unwrap();
    assert_eq!(cachet_server::endorse::refresh_once(&Arc::new(offline), later).await, (0, 0));
    store.close().await;
}

/// The service's own pieces decide even when another piece is unavailable:
/// a server holding only the TCB Info (rev 18) of an FMSPC — its CRLs and QE
/// Identity not cached, offline — still refuses an attester's older TCB Info
/// (rev 17) sent with a full collateral set, rather than falling back to the
/// attester's set whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_tcb_info_decides_when_its_other_pieces_are_unavailable() {
    let c = case("tdx-dcapqvl-v5-outdated");
    let dir = temp_dir("endorse-partial");
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(&dir).await.expect("store"));
        let cache = StoreCache(store.clone());
        for f in recorded::intel_bundle("tdx/dcap-qvl/tdx_quote_outdated_collateral.json") {
            if matches!(f.resource, cachet_endorse::Resource::TcbInfo { .. }) {
                cache.put(&f.resource.key(), &f).await;
            }
        }
        assert_eq!(cache.list().await.len(), 1, "only the TCB Info is held");
        store.close().await;
    }
    let mut a = args(&dir);
    a.allow_verification_time = true;
    assert!(a.offline);
    let server = cachet_server::start(a.resolve().expect("config")).await.expect("server starts");
    let srv = TestServer { url: server.url.clone(), server: Some(server), dir, client: http_client() };

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
}

/// Evidence alone (`{tee, evidence}`) is attested from the service's own
/// endorsements for SNP, both Azure families and NVIDIA (with the GPU's
/// device certificates, which are evidence, sent beside it), and the token
/// says whose endorsements decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_is_attested_from_the_services_cache() {
    for (id, intel_bundle, send_certs) in [
        ("snp-virtee-milan", None, false),
        ("az-snp-vtpm-genoa", None, false),
        ("az-tdx-vtpm-v0", Some("tdx/automata/collateral_2507.derived.json"), false),
        ("nvgpu-h100-2023", None, true),
    ] {
        let c = case(id);
        let raw = c.evidence_bytes();
        let dir = temp_dir(&format!("endorse-family-{id}"));
        let seeded = match intel_bundle {
            Some(rel) => {
                seed(&dir, rel).await;
                4
            }
            None => seed_from_case_files(&dir, &c, &raw).await,
        };
        assert!(seeded >= 1, "{id}: something seeded");
        let mut a = args(&dir);
        a.allow_verification_time = true;
        let server = cachet_server::start(a.resolve().expect("config")).await.expect("server starts");
        let srv = TestServer { url: server.url.clone(), server: Some(server), dir, client: http_client() };
        let mut body = json!({"tee": c.tee, "evidence": b64(&raw), "at": c.verify_at});
        if send_certs {
            let certs: Vec<Value> = c
                .endorsement_files()
                .iter()
                .filter(|e| e.name.ends_with("gpuAkCertChain.txt"))
                .map(|e| json!({"name": e.name, "data": b64(&e.bytes)}))
                .collect();
            assert_eq!(certs.len(), 1);
            body["endorsements"] = Value::Array(certs);
        }
        let (status, ok) = srv.post("/v1/attest", &body).await;
        assert_eq!(status, 200, "{id}: {ok}");
        let t = srv.verify_token(ok["token"].as_str().unwrap()).await;
        let want = if send_certs { "service+attester" } else { "service" };
        assert_eq!(t["cachet.endorsements"], want, "{id}");
        if send_certs {
            let claims = &t["submods"]["nvgpu"]["ear.veraison.annotated-evidence"];
            assert_eq!(claims["rim_appraisal"], "driver+vbios", "the service's RIMs judged the measurements: {claims}");
        }
    }
}
