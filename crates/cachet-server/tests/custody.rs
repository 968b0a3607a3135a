//! What the service keeps in its database is not enough to act as it, over
//! real HTTP on loopback with the simulated TEE:
//!
//! - a copy of the database cannot sign tokens: software signing keys are
//!   stored sealed under the KEK (also keys an older version stored as
//!   plaintext, sealed at start), and the SQLite file is created 0600;
//! - a release policy edited in the database (`secrets.policy`, with or
//!   without its hash) releases nothing: refused with a named code, GET
//!   says so, and the stored row is unchanged;
//! - concurrent PUTs of one secret each get their own version, all stored;
//! - the release answer carries a statement signed with a key of the JWKS.

mod common;

use std::path::Path;

use aws_lc_rs::agreement::{PrivateKey, ECDH_P256};
use cachet_attester::binding;
use cachet_attester::simulated::{ReportOptions, SimulatedTee};
use cachet_keybroker::jwe::{Curve, WorkloadKey};
use cachet_server::auth::Role;
use cachet_store::{AuditEntry, SigningKeyRecord, SqliteStore, Store};
use cachet_token::{Algorithm, KeyCustody, LocalCustody};
use common::*;
use serde_json::{json, Value};

const GOOD: [u8; 48] = [0x11; 48];
const BAD: [u8; 48] = [0x22; 48];

fn policy(measurement: &[u8; 48]) -> String {
    format!(
        "package release\nimport rego.v1\nev := input.claims.submods[input.tee][\"ear.veraison.annotated-evidence\"]\n\
         status := \"affirming\" if ev.measurement == \"{}\"\n",
        hex::encode(measurement)
    )
}

const ANYONE: &str = "package release\nimport rego.v1\nstatus := \"affirming\"\n";

async fn put(srv: &TestServer, key: &str, name: &str, value: &str, policy: &str) -> (u16, Value) {
    let r = srv
        .client
        .put(srv.at(&format!("/v1/admin/secrets/{name}")))
        .bearer_auth(key)
        .json(&json!({"value": b64(value.as_bytes()), "policy": policy}));
    status_json(r.send().await.unwrap()).await
}

async fn get(srv: &TestServer, key: &str, path: &str) -> (u16, Value) {
    status_json(srv.client.get(srv.at(path)).bearer_auth(key).send().await.unwrap()).await
}

/// A token for simulated evidence with `measurement`, bound to a fresh workload key.
async fn token_for(srv: &TestServer, measurement: [u8; 48]) -> String {
    let sk = PrivateKey::generate(&ECDH_P256).unwrap();
    let j = WorkloadKey::Ec { curve: Curve::P256, point: sk.compute_public_key().unwrap().as_ref().to_vec() }.to_jwk();
    let rd = format!(r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#, j["x"], j["y"]).into_bytes();
    let nonce = srv.challenge().await;
    let sim = SimulatedTee::load_or_create(&srv.dir.join("simulated-tee")).unwrap();
    let report = sim.report(&binding::report_data(&nonce, &rd), &ReportOptions { measurement, ..Default::default() }).unwrap();
    let (s, v) = srv
        .post("/v1/attest", &json!({"tee": "sim", "evidence": b64(&report), "nonce": hex::encode(&nonce), "runtime_data": b64(&rd)}))
        .await;
    assert_eq!(s, 200, "{v}");
    v["token"].as_str().unwrap().to_string()
}

async fn raw_sql(dir: &Path, sql: &str) {
    let store = SqliteStore::open_dir(dir).await.unwrap();
    sqlx::query(sql).execute(store.pool()).await.unwrap();
    store.close().await;
}

async fn secret_row(dir: &Path, owner: &str, name: &str) -> cachet_store::SecretRow {
    let store = SqliteStore::open_dir(dir).await.unwrap();
    let row = store.get_secret(owner, name).await.unwrap().unwrap();
    store.close().await;
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_database_cannot_sign_tokens() {
    // A key stored by an earlier version: plaintext PKCS#8, custody "local".
    let dir = temp_dir("custody-copy");
    let legacy = LocalCustody::new().generate(Algorithm::ES256, "k").unwrap();
    let legacy_kid = cachet_token::keyring::thumbprint_kid(Algorithm::ES256, &legacy.public_spki_der).unwrap();
    let store = SqliteStore::open_dir(&dir).await.unwrap();
    let now = cachet_server::now();
    let rec = SigningKeyRecord {
        kid: legacy_kid.clone(),
        alg: "ES256".into(),
        custody: "local".into(),
        public_spki: legacy.public_spki_der.clone(),
        handle: legacy.handle.clone(),
        cert_chain: vec![],
        created_at: now - 10,
        active_from: now - 10,
        revoked_at: None,
    };
    store
        .insert_signing_key(
            &rec,
            &AuditEntry { actor: "old".into(), action: "signing_key.create".into(), outcome: "ok".into(), ..Default::default() },
        )
        .await
        .unwrap();
    store.close().await;
    std::fs::remove_file(dir.join("kek")).ok();

    let mut a = args(&dir);
    a.insecure_simulated_tee = true;
    let server = cachet_server::start(a.resolve().unwrap()).await.unwrap();
    let srv = TestServer { url: server.url.clone(), server: Some(server), dir: dir.clone(), client: http_client() };
    // The old key still signs (same kid): it was sealed at start, not replaced.
    let token = token_for(&srv, GOOD).await;
    assert_eq!(header(&token)["kid"], legacy_kid.as_str());
    srv.verify_token(&token).await;

    // The database, as a backup or a read-only replica would hold it.
    let copy = temp_dir("custody-copy-of-db");
    for f in ["cachet.db", "cachet.db-wal", "cachet.db-shm"] {
        if dir.join(f).exists() {
            std::fs::copy(dir.join(f), copy.join(f)).unwrap();
        }
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(dir.join("cachet.db")).unwrap().permissions().mode() & 0o777, 0o600);
    let stolen = SqliteStore::open_dir(&copy).await.unwrap();
    let keys = stolen.list_signing_keys().await.unwrap();
    assert!(!keys.is_empty());
    let software = LocalCustody::new();
    for k in &keys {
        assert_eq!(k.custody, "local-sealed", "{k:?}");
        let alg = Algorithm::parse(&k.alg).unwrap();
        assert!(software.sign(alg, &k.handle, b"forged.token").is_err(), "{}: the stored handle signs", k.kid);
        assert!(!k.handle.windows(legacy.handle.len()).any(|w| w == legacy.handle.as_slice()), "the plaintext key is still stored");
        // Nothing else in the row parses as a private key either.
        assert!(cachet_token::LocalCustody::new().import_pkcs8(alg, &k.handle, "x").is_err());
    }
    stolen.close().await;
    let db = std::fs::read(copy.join("cachet.db")).unwrap();
    assert!(!db.windows(legacy.handle.len()).any(|w| w == legacy.handle.as_slice()), "the plaintext key is in the file");
    let _ = std::fs::remove_dir_all(&copy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_policy_edited_in_the_database_releases_nothing() {
    let srv = start("custody-policy", |a| a.insecure_simulated_tee = true).await;
    let key = create_tenant_api_key(&srv.dir, Some("bank-a"), Role::Admin).await;
    let (s, v) = put(&srv, &key, "db", "the-value", &policy(&GOOD)).await;
    assert_eq!(s, 201, "{v}");
    let intruder = token_for(&srv, BAD).await;
    let ask = |token: &str| json!({"token": token, "secrets": ["bank-a/db"]});

    // The policy text replaced by one that releases to anyone.
    raw_sql(&srv.dir, &format!("UPDATE secrets SET policy = '{ANYONE}' WHERE owner = 'bank-a'")).await;
    let before = secret_row(&srv.dir, "bank-a", "db").await;
    let (s, v) = srv.post("/v1/secrets/release", &ask(&intruder)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["results"][0]["released"].as_bool(), v["results"][0]["code"].as_str()),
        (Some(false), Some("secret_policy_altered")),
        "{v}"
    );
    assert!(v["results"][0].get("jwe").is_none());
    let (s, v) = get(&srv, &key, "/v1/admin/secrets/db").await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("secret_policy_altered")), "{v}");
    let (s, v) = get(&srv, &key, "/v1/admin/secrets").await;
    assert_eq!((s, v[0]["policy_altered"].as_bool()), (200, Some(true)), "{v}");

    // Text and hash replaced together: the seal binds the owner's hash.
    let hash = cachet_appraise::policy_hash(ANYONE);
    raw_sql(&srv.dir, &format!("UPDATE secrets SET policy_hash = '{hash}' WHERE owner = 'bank-a'")).await;
    let (s, v) = srv.post("/v1/secrets/release", &ask(&intruder)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["results"][0]["released"].as_bool(), v["results"][0]["code"].as_str()),
        (Some(false), Some("secret_record_altered")),
        "{v}"
    );
    // The refusals changed nothing stored, and the server still answers.
    let after = secret_row(&srv.dir, "bank-a", "db").await;
    assert_eq!((after.sealed, after.version), (before.sealed, before.version));
    assert_eq!(srv.get("/healthz").await.0, 200);

    // The owner writes it again: released to the approved workload only.
    let (s, v) = put(&srv, &key, "db", "the-value", &policy(&GOOD)).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = srv.post("/v1/secrets/release", &ask(&intruder)).await;
    assert_eq!(v["results"][0]["code"], "policy_refused", "{v}");
    let (_, v) = srv.post("/v1/secrets/release", &ask(&token_for(&srv, GOOD).await)).await;
    assert_eq!(v["results"][0]["released"], true, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_puts_get_versions_one_to_sixteen_and_are_all_stored() {
    let srv = start("custody-cas", |_| {}).await;
    let key = create_tenant_api_key(&srv.dir, Some("bank-a"), Role::Admin).await;
    let puts = (0..16).map(|i| {
        let (client, url, key) = (srv.client.clone(), srv.at("/v1/admin/secrets/db"), key.clone());
        tokio::spawn(async move {
            let body = json!({"value": b64(format!("value {i}").as_bytes()), "policy": policy(&GOOD)});
            status_json(client.put(url).bearer_auth(key).json(&body).send().await.unwrap()).await
        })
    });
    let mut versions = Vec::new();
    let mut created = 0;
    for p in puts.collect::<Vec<_>>() {
        let (s, v) = p.await.unwrap();
        assert!(s == 200 || s == 201, "{s} {v}");
        created += usize::from(s == 201);
        versions.push(v["version"].as_i64().unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=16).collect::<Vec<i64>>(), "each PUT its own version");
    assert_eq!(created, 1, "exactly one PUT created the secret");
    let (s, v) = get(&srv, &key, "/v1/admin/secrets/db").await;
    assert_eq!((s, v["version"].as_i64()), (200, Some(16)), "{v}");
    let (_, audit) = get(&srv, &key, "/v1/admin/secret-releases").await;
    let writes: Vec<i64> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "secret.create" || e["action"] == "secret.update")
        .map(|e| serde_json::from_str::<Value>(e["detail"].as_str().unwrap()).unwrap()["version"].as_i64().unwrap())
        .collect();
    let mut sorted = writes.clone();
    sorted.sort();
    assert_eq!(sorted, (1..=16).collect::<Vec<i64>>(), "every version stored and audited once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_answer_is_signed_with_a_key_of_the_jwks() {
    let srv = start("custody-statement", |a| a.insecure_simulated_tee = true).await;
    let key = create_tenant_api_key(&srv.dir, Some("bank-a"), Role::Admin).await;
    put(&srv, &key, "db", "v", &policy(&GOOD)).await;
    let token = token_for(&srv, GOOD).await;
    let (s, v) = srv.post("/v1/secrets/release", &json!({"token": token, "secrets": ["bank-a/db", "bank-a/none"]})).await;
    assert_eq!(s, 200, "{v}");
    let statement = v["statement"].as_str().unwrap();
    assert_eq!(header(statement)["typ"], cachet_attester::release::STATEMENT_TYP);
    let c = cachet_token::jws::verify(
        statement,
        &srv.jwks().await,
        &cachet_token::jws::Expectations { now: cachet_server::now(), leeway: 5, issuer: Some(&srv.url) },
    )
    .expect("the statement verifies with the JWKS");
    let t = srv.verify_token(&token).await;
    assert_eq!(c["cachet.release"]["token_id"], t["jti"]);
    assert_eq!(c["cachet.release"]["workload_key"], v["workload_key"]);
    let stated = cachet_attester::release::results_of(&c).unwrap();
    assert_eq!(
        stated[0].jwe_sha256.as_deref(),
        Some(cachet_attester::release::jwe_sha256(v["results"][0]["jwe"].as_str().unwrap()).as_str())
    );
    assert_eq!((stated[1].released, stated[1].code.as_deref()), (false, Some("no_such_secret")));
}
