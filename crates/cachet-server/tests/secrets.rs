//! Key broker end to end over real HTTP on loopback, with the simulated TEE:
//! owners put secrets with release policies; an attested workload gets the
//! secrets of several owners as JWEs to its key; a wrong measurement, a
//! replayed nonce, an expired token, a token from another issuer and a key
//! substitution are refused; owners cannot read, overwrite, delete, list or
//! see releases of another owner's secrets on any route; the SQLite file
//! holds no plaintext. Release policies read their own tenant's reference
//! values and the sets the operator shares with it, never another tenant's.

mod common;

use std::path::Path;

use aws_lc_rs::agreement::{PrivateKey, ECDH_P256};
use cachet_attester::binding;
use cachet_attester::simulated::{ReportOptions, SimulatedTee};
use cachet_keybroker::jwe::{self, Curve, DecryptionKey, WorkloadKey};
use cachet_server::auth::{new_tenant_api_key, Role};
use cachet_store::{AuditEntry, SqliteStore, Store};
use common::*;
use serde_json::{json, Value};

const GOOD: [u8; 48] = [0x11; 48];
const BAD: [u8; 48] = [0x22; 48];
const VALUE_A: &str = "bank-a-plaintext-model-key-7f3e9c";
const VALUE_B: &str = "bank-b-plaintext-model-key-41d0aa";

fn policy(measurement: &[u8; 48]) -> String {
    format!(
        r#"package release
import rego.v1
ev := input.claims.submods[input.tee]["ear.veraison.annotated-evidence"]
status := "affirming" if {{
    input.tee == "sim"
    input.claims.submods.sim["ear.status"] != "contraindicated"
    ev.measurement == "{m}"
}}
reasons contains {{"rule": "measurement", "outcome": "contraindicated", "detail": sprintf("measurement %v is not approved", [ev.measurement])}} if {{
    ev.measurement != "{m}"
}}
"#,
        m = hex::encode(measurement)
    )
}

async fn tenant_key(dir: &Path, tenant: Option<&str>, role: Role) -> String {
    let store = SqliteStore::open_dir(dir).await.unwrap();
    let k = new_tenant_api_key("test", role, tenant, cachet_server::now()).unwrap();
    let a = AuditEntry { ts: 0, actor: "test".into(), action: "api_key.create".into(), outcome: "ok".into(), ..Default::default() };
    store.insert_api_key(&k.record, &a).await.unwrap();
    store.close().await;
    k.key
}

struct Workload {
    sk: DecryptionKey,
    pk: WorkloadKey,
}

impl Workload {
    fn new() -> Self {
        let sk = PrivateKey::generate(&ECDH_P256).unwrap();
        let pk = WorkloadKey::Ec { curve: Curve::P256, point: sk.compute_public_key().unwrap().as_ref().to_vec() };
        Workload { sk: DecryptionKey::Ec(sk), pk }
    }
    /// The runtime data an attester binds: the canonical public JWK.
    fn runtime_data(&self) -> Vec<u8> {
        let j = self.pk.to_jwk();
        format!(r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#, j["x"], j["y"]).into_bytes()
    }
    fn open(&self, jwe: &str) -> String {
        String::from_utf8(jwe::decrypt(&self.sk, jwe).unwrap().plaintext.expose().to_vec()).unwrap()
    }
}

/// The attest request for `measurement`, bound to `nonce` and the workload key.
fn attest_body(srv: &TestServer, nonce: &[u8], w: &Workload, measurement: [u8; 48]) -> Value {
    let sim = SimulatedTee::load_or_create(&srv.dir.join("simulated-tee")).unwrap();
    let rd = w.runtime_data();
    let report = sim.report(&binding::report_data(nonce, &rd), &ReportOptions { measurement, ..Default::default() }).unwrap();
    json!({"tee": "sim", "evidence": b64(&report), "nonce": hex::encode(nonce), "runtime_data": b64(&rd)})
}

async fn token_for(srv: &TestServer, w: &Workload, measurement: [u8; 48]) -> String {
    let nonce = srv.challenge().await;
    let (s, v) = srv.post("/v1/attest", &attest_body(srv, &nonce, w, measurement)).await;
    assert_eq!(s, 200, "{v}");
    v["token"].as_str().unwrap().to_string()
}

async fn call(srv: &TestServer, method: reqwest::Method, path: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut r = srv.client.request(method, srv.at(path));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    status_json(r.send().await.unwrap()).await
}

async fn put(srv: &TestServer, key: &str, name: &str, value: &str, policy: &str) -> (u16, Value) {
    call(
        srv,
        reqwest::Method::PUT,
        &format!("/v1/admin/secrets/{name}"),
        Some(key),
        Some(json!({"value": b64(value.as_bytes()), "policy": policy})),
    )
    .await
}

async fn release(srv: &TestServer, body: Value) -> (u16, Value) {
    srv.post("/v1/secrets/release", &body).await
}

fn no_plaintext_in_files(dir: &Path, values: &[&str]) {
    let mut seen = 0;
    for f in ["cachet.db", "cachet.db-wal"] {
        let Ok(bytes) = std::fs::read(dir.join(f)) else { continue };
        seen += 1;
        for v in values {
            assert!(!bytes.windows(v.len()).any(|w| w == v.as_bytes()), "{f} holds a plaintext secret");
            assert!(!bytes.windows(v.len() * 2).any(|w| w == hex::encode(v).as_bytes()), "{f} holds a hex secret");
            assert!(!bytes.windows(b64(v.as_bytes()).len()).any(|w| w == b64(v.as_bytes()).as_bytes()), "{f} holds a base64 secret");
        }
    }
    assert!(seen > 0, "no database file found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attested_workloads_get_secrets_and_every_refusal_is_named_and_audited() {
    let mut srv = start("kb-e2e", |a| a.insecure_simulated_tee = true).await;
    let (ka, kb) = (tenant_key(&srv.dir, Some("bank-a"), Role::Admin).await, tenant_key(&srv.dir, Some("bank-b"), Role::Admin).await);
    let (s, v) = put(&srv, &ka, "model-key", VALUE_A, &policy(&GOOD)).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!((v["owner"].as_str(), v["version"].as_i64()), (Some("bank-a"), Some(1)));
    assert!(v.get("value").is_none());
    assert!(v["kek"].as_str().unwrap().starts_with("local-file local:"));
    let (s, v) = put(&srv, &kb, "model-key", VALUE_B, &policy(&GOOD)).await;
    assert_eq!(s, 201, "{v}");
    // A policy that does not compile is refused and changes nothing.
    let (s, v) = put(&srv, &ka, "model-key", "x", "package p\nstatus := ").await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("policy_invalid")), "{v}");

    let both = json!(["bank-a/model-key", "bank-b/model-key"]);
    // The right workload: both owners' secrets, each as a JWE to its key.
    let w = Workload::new();
    let token = token_for(&srv, &w, GOOD).await;
    let (s, v) = release(&srv, json!({"token": token, "secrets": both, "workload_key": w.pk.to_jwk()})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["workload_key"], w.pk.thumbprint());
    assert_eq!(v["results"][0]["released"], true, "{v}");
    assert_eq!(v["results"][1]["released"], true, "{v}");
    assert_eq!(w.open(v["results"][0]["jwe"].as_str().unwrap()), VALUE_A);
    assert_eq!(w.open(v["results"][1]["jwe"].as_str().unwrap()), VALUE_B);
    let token_id = v["token_id"].as_str().unwrap().to_string();

    // Evidence attested in the same call.
    let w2 = Workload::new();
    let nonce = srv.challenge().await;
    let (s, v) = release(&srv, json!({"attest": attest_body(&srv, &nonce, &w2, GOOD), "secrets": ["bank-a/model-key"]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(w2.open(v["results"][0]["jwe"].as_str().unwrap()), VALUE_A);
    assert!(v["token"].as_str().is_some());
    // Replayed nonce: the same evidence again is refused before any release.
    let (s, v) = release(&srv, json!({"attest": attest_body(&srv, &nonce, &w2, GOOD), "secrets": ["bank-a/model-key"]})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("nonce_reused")), "{v}");

    // Wrong measurement: both refused, by each owner's policy, no JWE.
    let wb = Workload::new();
    let token_bad = token_for(&srv, &wb, BAD).await;
    let (s, v) = release(&srv, json!({"token": token_bad, "secrets": both})).await;
    assert_eq!(s, 200, "{v}");
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["released"], false);
        assert!(r.get("jwe").is_none());
        assert!(r["reason"].as_str().unwrap().contains(&format!("measurement {} is not approved", hex::encode(BAD))), "{r}");
    }

    // Key substitution: the token binds w's key; the request names another.
    let other = Workload::new();
    let (s, v) = release(&srv, json!({"token": token, "secrets": both, "workload_key": other.pk.to_jwk()})).await;
    assert_eq!(s, 200, "{v}");
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["released"], false);
        assert!(r.get("jwe").is_none());
        assert!(r["reason"].as_str().unwrap().contains("key substitution"), "{r}");
    }
    // ... and the same with evidence in the call.
    let n = srv.challenge().await;
    let (s, v) =
        release(&srv, json!({"attest": attest_body(&srv, &n, &w, GOOD), "secrets": both, "workload_key": other.pk.to_jwk()})).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["results"][0]["reason"].as_str().unwrap().contains("key substitution"), "{v}");

    // A token from another issuer (another Cachet server, its own keys).
    let other_srv = start("kb-other", |a| a.insecure_simulated_tee = true).await;
    let foreign = token_for(&other_srv, &w, GOOD).await;
    let (s, v) = release(&srv, json!({"token": foreign, "secrets": both})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("token_refused")), "{v}");
    // A token altered in one byte.
    let mut altered = token.clone().into_bytes();
    let i = altered.len() - 5;
    altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
    let (s, _) = release(&srv, json!({"token": String::from_utf8(altered).unwrap(), "secrets": both})).await;
    assert_eq!(s, 403);

    // Each owner reads the decisions about its own secrets, and only those.
    let reader_a = tenant_key(&srv.dir, Some("bank-a"), Role::Reader).await;
    let (s, v) = call(&srv, reqwest::Method::GET, "/v1/admin/secret-releases?limit=1000", Some(&reader_a), None).await;
    assert_eq!(s, 200, "{v}");
    let entries = v.as_array().unwrap();
    let releases: Vec<&Value> = entries.iter().filter(|e| e["action"] == "secret.release").collect();
    assert!(releases.iter().any(|e| e["outcome"] == "released" && e["token_id"] == token_id.as_str()));
    assert!(releases.iter().any(|e| e["outcome"] == "refused" && e["detail"].as_str().unwrap().contains("key substitution")));
    assert!(releases.iter().any(|e| e["outcome"] == "refused" && e["failed_check"] == "token_refused"));
    for e in entries {
        let d = e["detail"].as_str().unwrap();
        assert!(!d.contains("\"bank-b/model-key\"") || d.contains("bank-a/model-key"), "bank-a sees a bank-b-only entry: {d}");
        assert!(!d.contains("\"owner\":\"bank-b\""), "{d}");
    }
    // No value in the audit log, the logs' source of truth.
    let admin = srv.api_key(Role::Admin).await;
    let (s, v) = call(&srv, reqwest::Method::GET, "/v1/admin/audit?limit=1000", Some(&admin), None).await;
    assert_eq!(s, 200);
    let all = v.to_string();
    assert!(!all.contains(VALUE_A) && !all.contains(VALUE_B) && !all.contains(&b64(VALUE_A.as_bytes())));
    let (s, v) = call(&srv, reqwest::Method::GET, "/v1/admin/audit/verify", Some(&admin), None).await;
    assert_eq!((s, v["ok"].as_bool()), (200, Some(true)), "{v}");

    // Reading the SQLite file directly shows no plaintext.
    srv.stop().await;
    no_plaintext_in_files(&srv.dir, &[VALUE_A, VALUE_B]);
    let store = SqliteStore::open_dir(&srv.dir).await.unwrap();
    let row = store.get_secret("bank-a", "model-key").await.unwrap().unwrap();
    assert!(!row.sealed.contains(VALUE_A) && !row.sealed.contains(&hex::encode(VALUE_A)));
    store.close().await;

    // Restart: the secrets are still there and still released (same KEK file).
    let restarted = cachet_server::start(args(&srv.dir).tap(|a| a.insecure_simulated_tee = true).resolve().unwrap()).await.unwrap();
    let srv2 =
        TestServer { url: restarted.url.clone(), server: Some(restarted), dir: common::temp_dir("kb-unused"), client: http_client() };
    let sim_dir = srv.dir.join("simulated-tee");
    let w3 = Workload::new();
    let nonce = srv2.challenge().await;
    let sim = SimulatedTee::load_or_create(&sim_dir).unwrap();
    let rd = w3.runtime_data();
    let report = sim.report(&binding::report_data(&nonce, &rd), &ReportOptions { measurement: GOOD, ..Default::default() }).unwrap();
    let body = json!({"tee": "sim", "evidence": b64(&report), "nonce": hex::encode(&nonce), "runtime_data": b64(&rd)});
    let (s, v) = release(&srv2, json!({"attest": body, "secrets": ["bank-b/model-key"]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(w3.open(v["results"][0]["jwe"].as_str().unwrap()), VALUE_B);
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}
impl<T> Tap for T {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused() {
    let srv = start("kb-exp", |a| {
        a.insecure_simulated_tee = true;
        a.token_ttl = Some(1);
    })
    .await;
    let ka = tenant_key(&srv.dir, Some("bank-a"), Role::Admin).await;
    assert_eq!(put(&srv, &ka, "k", VALUE_A, &policy(&GOOD)).await.0, 201);
    let w = Workload::new();
    let token = token_for(&srv, &w, GOOD).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (s, v) = release(&srv, json!({"token": token, "secrets": ["bank-a/k"]})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("token_refused")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_cannot_read_overwrite_delete_list_or_see_releases_of_each_others_secrets() {
    use reqwest::Method;
    let srv = start("kb-owners", |a| a.insecure_simulated_tee = true).await;
    let ka = tenant_key(&srv.dir, Some("bank-a"), Role::Admin).await;
    let kb = tenant_key(&srv.dir, Some("bank-b"), Role::Admin).await;
    let rb = tenant_key(&srv.dir, Some("bank-b"), Role::Reader).await;
    let ra = tenant_key(&srv.dir, Some("bank-a"), Role::Reader).await;
    let no_tenant = srv.api_key(Role::Admin).await;
    assert_eq!(put(&srv, &ka, "shared", VALUE_A, &policy(&GOOD)).await.0, 201);
    // bank-a's secret is released once, so there is a release to (not) see.
    let w = Workload::new();
    let token = token_for(&srv, &w, GOOD).await;
    let (s, v) = release(&srv, json!({"token": token, "secrets": ["bank-a/shared"]})).await;
    assert_eq!((s, v["results"][0]["released"].as_bool()), (200, Some(true)), "{v}");

    // GET: bank-b does not see bank-a's secret.
    assert_eq!(call(&srv, Method::GET, "/v1/admin/secrets/shared", Some(&kb), None).await.0, 404);
    assert_eq!(call(&srv, Method::GET, "/v1/admin/secrets/shared", Some(&rb), None).await.0, 404);
    let (s, v) = call(&srv, Method::GET, "/v1/admin/secrets/shared", Some(&ra), None).await;
    assert_eq!((s, v["owner"].as_str()), (200, Some("bank-a")), "{v}");
    assert!(!v.to_string().contains(VALUE_A), "GET never returns the value");
    // LIST: only one's own.
    let (s, v) = call(&srv, Method::GET, "/v1/admin/secrets", Some(&rb), None).await;
    assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(0)), "{v}");
    // DELETE: bank-b cannot delete it.
    assert_eq!(call(&srv, Method::DELETE, "/v1/admin/secrets/shared", Some(&kb), None).await.0, 404);
    // PUT: bank-b writing the same name writes its own secret, not bank-a's.
    let (s, v) = put(&srv, &kb, "shared", VALUE_B, &policy(&BAD)).await;
    assert_eq!((s, v["owner"].as_str(), v["version"].as_i64()), (201, Some("bank-b"), Some(1)), "{v}");
    let (_, v) = call(&srv, Method::GET, "/v1/admin/secrets/shared", Some(&ka), None).await;
    assert_eq!((v["version"].as_i64(), v["policy"].as_str()), (Some(1), Some(policy(&GOOD).as_str())), "{v}");
    let token = token_for(&srv, &w, GOOD).await;
    let (_, v) = release(&srv, json!({"token": token, "secrets": ["bank-a/shared"]})).await;
    assert_eq!(w.open(v["results"][0]["jwe"].as_str().unwrap()), VALUE_A);
    // Releases: bank-b sees only entries about its own secrets.
    let (s, v) = call(&srv, Method::GET, "/v1/admin/secret-releases", Some(&rb), None).await;
    assert_eq!(s, 200);
    assert!(!v.as_array().unwrap().is_empty());
    for e in v.as_array().unwrap() {
        assert!(!e["detail"].as_str().unwrap().contains("bank-a"), "bank-b sees a bank-a entry: {e}");
    }
    let (_, v) = call(&srv, Method::GET, "/v1/admin/secret-releases", Some(&ra), None).await;
    assert!(v.as_array().unwrap().iter().any(|e| e["outcome"] == "released"), "{v}");
    // Roles: a reader cannot change secrets; a key without a tenant has none; no key, no access.
    assert_eq!(put(&srv, &ra, "shared", "x", &policy(&GOOD)).await.0, 403);
    assert_eq!(call(&srv, Method::DELETE, "/v1/admin/secrets/shared", Some(&ra), None).await.0, 403);
    let routes = [
        (Method::GET, "/v1/admin/secrets"),
        (Method::GET, "/v1/admin/secrets/shared"),
        (Method::DELETE, "/v1/admin/secrets/shared"),
        (Method::GET, "/v1/admin/secret-releases"),
    ];
    for (m, p) in routes.iter().cloned() {
        assert_eq!(call(&srv, m.clone(), p, Some(&no_tenant), None).await.0, 403, "{m} {p} without tenant");
        assert_eq!(call(&srv, m.clone(), p, None, None).await.0, 401, "{m} {p} without key");
    }
    assert_eq!(put(&srv, &no_tenant, "n", "x", &policy(&GOOD)).await.0, 403);
    let (s, _) = call(&srv, Method::PUT, "/v1/admin/secrets/n", None, Some(json!({"value": "eA==", "policy": policy(&GOOD)}))).await;
    assert_eq!(s, 401);
    // bank-a's secret survived all of it.
    let (s, v) = call(&srv, Method::GET, "/v1/admin/secrets/shared", Some(&ka), None).await;
    assert_eq!((s, v["version"].as_i64()), (200, Some(1)));
    // And the owner can delete its own.
    assert_eq!(call(&srv, Method::DELETE, "/v1/admin/secrets/shared", Some(&ka), None).await.0, 204);
    assert_eq!(call(&srv, Method::GET, "/v1/admin/secrets/shared", Some(&ka), None).await.0, 404);
    assert_eq!(call(&srv, Method::GET, "/v1/admin/secrets/shared", Some(&kb), None).await.0, 200, "bank-b's own is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_policies_read_their_tenants_reference_values_and_those_shared_with_it_only() {
    // The --reference-values file is the operator's: appraisal reads it, release policies do not.
    let refs = temp_dir("kb-refs").join("refs.json");
    std::fs::write(&refs, json!({"reference_values": {"approved": [hex::encode(GOOD)], "lab": [hex::encode(GOOD)]}}).to_string()).unwrap();
    let srv = start("kb-refvals", |a| {
        a.insecure_simulated_tee = true;
        a.reference_values = Some(refs.clone());
    })
    .await;
    let ka = tenant_key(&srv.dir, Some("bank-a"), Role::Admin).await;
    let kb = tenant_key(&srv.dir, Some("bank-b"), Role::Admin).await;
    let operator = srv.api_key(Role::Admin).await;
    let policy = |set: &str| {
        format!(
            r#"package release
import rego.v1
ev := input.claims.submods[input.tee]["ear.veraison.annotated-evidence"]
status := "affirming" if ev.measurement in data.reference_values["{set}"]
reasons contains {{"rule": "measurement", "outcome": "contraindicated", "detail": "not in reference set '{set}'"}} if {{
    not ev.measurement in data.reference_values["{set}"]
}}
"#
        )
    };
    for (key, secret, set) in [(&ka, "k", "approved"), (&kb, "k", "approved"), (&ka, "lab-k", "lab"), (&kb, "lab-k", "lab")] {
        assert_eq!(put(&srv, key, secret, VALUE_A, &policy(set)).await.0, 201);
    }
    let w = Workload::new();
    let released = |m: [u8; 48], secret: &'static str| {
        let (srv, w) = (&srv, &w);
        async move {
            let token = token_for(srv, w, m).await;
            let (s, v) = release(srv, json!({"token": token, "secrets": [secret]})).await;
            assert_eq!(s, 200, "{v}");
            if v["results"][0]["released"] == false {
                assert!(v["results"][0]["reason"].as_str().unwrap().contains("not in reference set"), "{v}");
            }
            v["results"][0]["released"] == true
        }
    };
    let set = |key: &str, name: &str, body: Value| {
        let (srv, key, path) = (&srv, key.to_string(), format!("/v1/admin/reference-values/{name}"));
        async move { call(srv, reqwest::Method::PUT, &path, Some(&key), Some(body)).await }
    };
    // Nothing of the tenant's own yet, and the file's sets are not shared.
    assert!(!released(GOOD, "bank-a/k").await, "the operator's file is not a tenant's");
    // bank-b approves GOOD in its own set: that releases bank-b's secret only.
    let (s, v) = set(&kb, "approved", json!([hex::encode(GOOD)])).await;
    assert_eq!((s, v["owner"].as_str()), (200, Some("bank-b")), "{v}");
    assert!(released(GOOD, "bank-b/k").await);
    assert!(!released(GOOD, "bank-a/k").await);
    // bank-a adds its own workload's measurement to "approved": to its own set,
    // which bank-b's policy never reads. bank-b's secret stays out of reach.
    let (s, v) = set(&ka, "approved", json!([hex::encode(BAD)])).await;
    assert_eq!((s, v["owner"].as_str()), (200, Some("bank-a")), "{v}");
    assert!(!released(BAD, "bank-b/k").await, "one tenant's reference values released another's secret");
    assert!(released(BAD, "bank-a/k").await);
    // A tenant cannot share its set with another.
    let (s, v) = set(&ka, "approved", json!({"values": [hex::encode(BAD)], "shared_with": ["bank-b"]})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("operator_only")), "{v}");
    assert!(!released(BAD, "bank-b/k").await);
    // The operator shares "lab" with bank-a only: bank-a's policies read it, bank-b's do not ...
    let (s, v) = set(&operator, "lab", json!({"values": [hex::encode(GOOD)], "shared_with": ["bank-a"]})).await;
    assert_eq!((s, v["owner"].as_str(), v["shared_with"].clone()), (200, None, json!(["bank-a"])), "{v}");
    assert!(released(GOOD, "bank-a/lab-k").await);
    assert!(!released(GOOD, "bank-b/lab-k").await);
    let (s, v) = call(&srv, reqwest::Method::GET, "/v1/admin/reference-values/lab", Some(&kb), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    // ... bank-a sees it, without learning whom else it is shared with ...
    let (s, v) = call(&srv, reqwest::Method::GET, "/v1/admin/reference-values/lab", Some(&ka), None).await;
    assert_eq!((s, v.get("shared_with"), v["owner"].as_str()), (200, None, None), "{v}");
    // ... and re-putting the values keeps the sharing; sharing with "*" reaches bank-b.
    let (s, v) = set(&operator, "lab", json!([hex::encode(GOOD)])).await;
    assert_eq!((s, v["shared_with"].clone()), (200, json!(["bank-a"])), "{v}");
    assert!(!released(GOOD, "bank-b/lab-k").await);
    assert_eq!(set(&operator, "lab", json!({"values": [hex::encode(GOOD)], "shared_with": ["*"]})).await.0, 200);
    assert!(released(GOOD, "bank-b/lab-k").await);
    // Each tenant lists what its policies read; neither sees the other's values.
    let (_, a_doc) = call(&srv, reqwest::Method::GET, "/v1/admin/reference-values", Some(&ka), None).await;
    let (_, b_doc) = call(&srv, reqwest::Method::GET, "/v1/admin/reference-values", Some(&kb), None).await;
    assert!(a_doc.to_string().contains(&hex::encode(BAD)) && !b_doc.to_string().contains(&hex::encode(BAD)), "{a_doc} {b_doc}");
}
