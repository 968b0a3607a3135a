//! Shared test support: a real server on a loopback port, a real HTTP
//! client, API keys, token verification against the served JWKS, and the
//! real-evidence cases of `testdata/vectors/cases.json`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cachet_server::auth::{new_tenant_api_key, Role};
use cachet_server::{ServeArgs, Server};
use cachet_store::{AuditEntry, SqliteStore, Store};
use cachet_token::jwk::PublicKey;
use cachet_token::jws;
use serde_json::{json, Value};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("cachet-srv-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A running in-process server and a client for it.
pub struct TestServer {
    pub server: Option<Server>,
    pub url: String,
    pub dir: PathBuf,
    pub client: reqwest::Client,
}

/// Default arguments: loopback, free port, a fresh data directory, and no
/// endorsement fetching (tests reach no vendor; the attester's endorsements
/// are used, as when the service cannot get its own).
pub fn args(dir: &Path) -> ServeArgs {
    ServeArgs { listen: Some("127.0.0.1:0".parse().unwrap()), data_dir: Some(dir.to_path_buf()), offline: true, ..Default::default() }
}

/// Start a server with `args` adjusted by `f`.
pub async fn start(tag: &str, f: impl FnOnce(&mut ServeArgs)) -> TestServer {
    let dir = temp_dir(tag);
    let mut a = args(&dir);
    f(&mut a);
    let server = cachet_server::start(a.resolve().expect("config")).await.expect("server starts");
    let url = server.url.clone();
    TestServer { server: Some(server), url, dir, client: http_client() }
}

/// A plain HTTP client (installs the process's rustls crypto provider,
/// aws-lc-rs, which reqwest needs even for plain HTTP).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build().expect("client")
}

impl TestServer {
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Create an API key with `role` directly in the store (as `cachet admin create-key` does).
    pub async fn api_key(&self, role: Role) -> String {
        create_api_key(&self.dir, role).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.at(path)).send().await.expect("GET");
        status_json(r).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.client.post(self.at(path)).json(body).send().await.expect("POST");
        status_json(r).await
    }

    pub async fn challenge(&self) -> Vec<u8> {
        let (s, v) = self.post("/v1/challenge", &json!({})).await;
        assert_eq!(s, 200, "{v}");
        hex::decode(v["nonce"].as_str().unwrap()).unwrap()
    }

    /// The served JWKS as verification keys.
    pub async fn jwks(&self) -> Vec<PublicKey> {
        let (s, v) = self.get("/.well-known/jwks.json").await;
        assert_eq!(s, 200);
        v["keys"].as_array().unwrap().iter().map(|k| PublicKey::from_jwk(k).expect("JWK parses")).collect()
    }

    /// Verify a token against the served JWKS and the issuer its discovery
    /// document names (its URL unless `--issuer` was given); return its claims.
    pub async fn verify_token(&self, token: &str) -> Value {
        let keys = self.jwks().await;
        let (s, discovery) = self.get("/.well-known/openid-configuration").await;
        assert_eq!(s, 200, "{discovery}");
        let issuer = discovery["issuer"].as_str().expect("discovery names the issuer").to_string();
        let want = jws::Expectations { now: cachet_server::now(), leeway: 5, issuer: Some(&issuer) };
        jws::verify(token, &keys, &want).expect("token verifies against the JWKS")
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn status_json(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (s, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Create an operator API key in the store of `data_dir`.
pub async fn create_api_key(data_dir: &Path, role: Role) -> String {
    create_tenant_api_key(data_dir, None, role).await
}

/// Create an API key acting for `tenant` (`None`: an operator key) in the store of `data_dir`.
pub async fn create_tenant_api_key(data_dir: &Path, tenant: Option<&str>, role: Role) -> String {
    let store = SqliteStore::open_dir(data_dir).await.expect("store");
    let k = new_tenant_api_key("test", role, tenant, cachet_server::now()).unwrap();
    let a = AuditEntry { ts: 0, actor: "test".into(), action: "api_key.create".into(), outcome: "ok".into(), ..Default::default() };
    store.insert_api_key(&k.record, &a).await.unwrap();
    store.close().await;
    k.key
}

/// The header of a token, decoded without verification.
pub fn header(token: &str) -> Value {
    jws::decode(token).unwrap().header
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

// ---- vectors ----

pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors")
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Case {
    pub id: String,
    pub tee: String,
    pub evidence: String,
    #[serde(default)]
    pub endorsements: Vec<String>,
    pub verify_at: Option<String>,
    pub expect: String,
    #[serde(default)]
    pub expected_claims: serde_json::Map<String, Value>,
}

#[derive(serde::Deserialize)]
struct CasesFile {
    cases: Vec<Case>,
}

pub fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(vectors_dir().join("cases.json")).expect("cases.json");
    serde_json::from_str::<CasesFile>(&text).expect("cases.json parses").cases
}

impl Case {
    pub fn evidence_bytes(&self) -> Vec<u8> {
        let raw = std::fs::read(vectors_dir().join(&self.evidence)).expect("evidence file");
        cachet_verify::encoding::decode_evidence(&raw).1
    }

    pub fn endorsement_files(&self) -> Vec<cachet_verify::Endorsement> {
        let mut out = Vec::new();
        for e in &self.endorsements {
            let p = vectors_dir().join(e);
            let mut files = if p.is_dir() {
                std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()).filter(|f| f.is_file()).collect::<Vec<_>>()
            } else {
                vec![p]
            };
            files.sort();
            for f in files {
                out.push(cachet_verify::Endorsement { name: f.display().to_string(), bytes: std::fs::read(&f).unwrap() });
            }
        }
        out
    }
}

/// What the service would have fetched for case `c`, built from the case's
/// recorded vendor files (each resource from the file that holds it), put into
/// the store cache of `dir`.
pub async fn seed_from_case_files(dir: &Path, c: &Case, evidence: &[u8]) -> usize {
    use cachet_endorse::{authority::covered, Cache, Fetched, Part};
    let tee = cachet_verify::Tee::parse(&c.tee).expect("tee");
    let files = c.endorsement_files();
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(SqliteStore::open_dir(dir).await.expect("store"));
    let cache = cachet_server::endorse::StoreCache(store.clone());
    let mut n = 0;
    for r in cachet_endorse::needs(tee, evidence).expect("needs") {
        if r.optional() {
            continue;
        }
        let Some(file) = files.iter().find(|f| covered(&r, std::slice::from_ref(f))) else {
            continue; // e.g. the Intel pieces: seeded from the bundle below
        };
        let f = Fetched {
            resource: r.clone(),
            parts: vec![Part { name: file.name.clone(), bytes: file.bytes.clone() }],
            fetched_at: 0,
            next_update: None,
            source: "recorded".into(),
        };
        cache.put(&r.key(), &f).await;
        n += 1;
    }
    store.close().await;
    n
}
