//! The Azure Attestation (MAA) surface (`cachet_server::maa`), checked with
//! the unmodified Azure Attestation SDK for Python (`azure-security-attestation`,
//! installed by `.ci/run`; `tests/python/maa_sdk.py`) against `cachet serve`
//! on loopback over HTTPS (the SDK's bearer-token policy refuses http://):
//! OpenID metadata, signing certificates, `attest_sgx_enclave` and
//! `attest_open_enclave` with the real SGX quote of `testdata/vectors`
//! (case `sgx-dcapqvl`; its recorded Intel collateral seeded into the
//! service's cache, offline; the verification instant pinned by
//! `--fixed-verification-time`), the SDK's own token validation (RS256
//! signature with the `x5c` of `/certs`, expiry, not-before, issuer), and
//! MAA's claims equal to the verifier's claims for that quote. Plus, over
//! plain HTTP from Rust (the SDK 1.0.0 has no SEV-SNP or TDX call): MAA's
//! binding, api-version and error shapes, and `/attest/SevSnpVm` (real
//! Milan, Genoa and Turin reports) and `/attest/TdxVm` (a real TDX quote),
//! each seeded with its recorded AMD/Intel endorsements and pinned at its
//! `verify_at`: refused for MAA's binding alone, or a token whose
//! `x-ms-sevsnpvm-*` / `tdx_*` claims are `cachet_verify`'s.
//!
//! Needs `python3` with `azure-security-attestation`; it fails (never skips
//! silently) when it is missing, unless CACHET_SKIP_PYTHON_INTEROP=1 is set.

mod common;

#[path = "../../cachet-endorse/tests/common/recorded.rs"]
mod recorded;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cachet_endorse::Cache;
use cachet_server::endorse::StoreCache;
use cachet_store::{SqliteStore, Store};
use cachet_token::jwk::PublicKey;
use cachet_token::jws;
use common::*;
use serde_json::{json, Value};

const CASE: &str = "sgx-dcapqvl";
const COLLATERAL: &str = "sgx/dcap-qvl/sgx_quote_collateral.json";

fn case() -> Case {
    cases().into_iter().find(|c| c.id == CASE).expect("case")
}

/// Seed the recorded Intel collateral of the SGX case into the store of `dir`.
async fn seed(dir: &Path) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(dir).await.expect("store"));
    let cache = StoreCache(store.clone());
    for f in recorded::intel_bundle(COLLATERAL) {
        cache.put(&f.resource.key(), &f).await;
    }
    store.close().await;
}

/// A seeded, offline server whose verification instant is the case's.
async fn maa_server(tag: &str, f: impl FnOnce(&mut cachet_server::ServeArgs)) -> TestServer {
    let dir = temp_dir(tag);
    seed(&dir).await;
    let mut a = args(&dir);
    a.fixed_verification_time = case().verify_at.clone();
    f(&mut a);
    assert!(a.offline, "tests fetch nothing");
    let server = cachet_server::start(a.resolve().expect("config")).await.expect("server starts");
    let url = server.url.clone();
    TestServer { server: Some(server), url, dir, client: http_client() }
}

/// The verifier's own claims for the quote (what `cachet verify` reports).
fn verifier_claims() -> Value {
    let c = case();
    let at = time::OffsetDateTime::parse(c.verify_at.as_deref().unwrap(), &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp();
    let evidence = c.evidence_bytes();
    let endorsements = c.endorsement_files();
    let anchors = cachet_verify::TrustAnchors::pinned();
    let v = cachet_verify::verify(
        cachet_verify::Tee::Sgx,
        &cachet_verify::VerifyRequest { evidence: &evidence, endorsements: &endorsements, anchors: &anchors, at, expected_nonce: None },
    );
    v.result.expect("the case verifies")
}

fn b64url(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn python_has_sdk() -> bool {
    std::process::Command::new("python3").args(["-c", "import azure.security.attestation"]).status().map(|s| s.success()).unwrap_or(false)
}

fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    // A subject of its own: OpenSSL takes a leaf named like its issuer for self-signed.
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Cachet MAA test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name.push(rcgen::DnType::CommonName, "127.0.0.1");
    leaf.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let (c, k, a) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("ca.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    std::fs::write(&a, ca_cert.pem()).unwrap();
    (c, k, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_sdk_for_python_attests_sgx_quotes_and_validates_the_tokens() {
    if !python_has_sdk() {
        if std::env::var("CACHET_SKIP_PYTHON_INTEROP").as_deref() == Ok("1") {
            eprintln!("SKIPPED on request (CACHET_SKIP_PYTHON_INTEROP=1): python3 with azure-security-attestation not found");
            return;
        }
        panic!("python3 with the Azure Attestation SDK is required: python3 -m pip install azure-security-attestation (as .ci/run does)");
    }
    let files = temp_dir("maa-tls");
    let (cert, key, ca) = tls_files(&files);
    let srv = maa_server("maa-sdk", |a| {
        a.tls_cert = Some(cert.clone());
        a.tls_key = Some(key.clone());
    })
    .await;
    assert!(srv.url.starts_with("https://127.0.0.1:"));
    let quote_file = files.join("quote.bin");
    std::fs::write(&quote_file, case().evidence_bytes()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/maa_sdk.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .env("MAA_URL", &srv.url)
        .env("MAA_CA", &ca)
        .env("MAA_QUOTE", &quote_file)
        .output()
        .await
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Azure SDK failed:\n{stdout}\n{stderr}");
    let r: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));

    // Discovery and certificates, as the SDK read them.
    assert_eq!(r["metadata"]["issuer"], srv.url.as_str());
    assert_eq!(r["metadata"]["jwks_uri"], format!("{}/.well-known/jwks.json", srv.url));
    let signers = r["signers"].as_array().unwrap();
    assert!(!signers.is_empty() && signers.iter().all(|s| s["certificates"].as_u64() >= Some(1)), "{signers:?}");

    // The SDK validated each token (signature, times, issuer); its claims are the verifier's.
    let claims = verifier_claims();
    for which in ["sgx", "open_enclave"] {
        let t = &r[which];
        assert_eq!(t["alg"], "RS256", "{which}");
        assert!(signers.iter().any(|s| s["kid"] == t["kid"]), "{which}: signed by a key of /certs");
        assert_eq!(t["issuer"], srv.url.as_str());
        assert_eq!(t["attestation_type"], "sgx");
        assert_eq!(t["version"], "1.0");
        assert_eq!(t["mr_enclave"], claims["mr_enclave"], "{which}");
        assert_eq!(t["mr_signer"], claims["mr_signer"], "{which}");
        assert_eq!(t["product_id"].as_f64(), claims["isv_prod_id"].as_f64(), "{which}");
        assert_eq!(t["svn"].as_f64(), claims["isv_svn"].as_f64(), "{which}");
        assert_eq!(t["is_debuggable"], claims["debug"], "{which}");
        assert!(t["policy_hash"].as_str().is_some_and(|h| h.len() == 64), "{which}: x-ms-policy-hash is SHA-256");
        // Cachet's own view of the same token: the EAR claims beside MAA's,
        // the real clock for iat/nbf/exp, the pinned instant for verification.
        let token = t["token"].as_str().unwrap();
        let d = jws::decode(token).unwrap();
        let c = &d.claims;
        let now = cachet_server::now();
        assert!((c["iat"].as_i64().unwrap() - now).abs() < 120, "iat is now, not the pinned instant");
        assert_eq!(c["nbf"], c["iat"]);
        assert!(c["exp"].as_i64().unwrap() > now);
        assert_eq!(c["cachet.verification_time"].as_i64(), Some(1_751_624_924), "verified as of the pinned instant");
        assert_eq!(c["cachet.freshness"], "not-established", "no challenge step: the caller's binding");
        assert_eq!(c["submods"]["sgx"]["ear.veraison.annotated-evidence"]["mr_enclave"], claims["mr_enclave"]);
        let hash = c["cachet.policy_hash"].as_str().unwrap().strip_prefix("sha-256:").unwrap();
        assert_eq!(t["policy_hash"].as_str().unwrap(), hash);
        assert_eq!(c["x-ms-sgx-report-data"], claims["report_data"]);
    }
    // The token key is in the JWKS (with its certificate) and verifies the token there too.
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let jwks: Value = client.get(srv.at("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let keys: Vec<PublicKey> = jwks["keys"].as_array().unwrap().iter().map(|k| PublicKey::from_jwk(k).unwrap()).collect();
    let want = jws::Expectations { now: cachet_server::now(), leeway: 5, issuer: Some(&srv.url) };
    jws::verify(r["sgx"]["token"].as_str().unwrap(), &keys, &want).expect("verifies against /.well-known/jwks.json");

    // Runtime data the quote was not made with: refused with MAA's error shape.
    assert_eq!(r["unbound"]["refused"], true, "{}", r["unbound"]);
    assert_eq!(r["unbound"]["status"], 400);
    assert_eq!(r["unbound"]["code"], "InvalidParameter");
    // A draft (Cachet Rego) policy: an unsecured token, as MAA gives.
    assert_eq!(r["draft"]["alg"], "none");
    assert_eq!(r["draft"]["mr_enclave"], claims["mr_enclave"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maa_binding_api_versions_and_errors_over_http() {
    let srv = maa_server("maa-http", |_| {}).await;
    let quote = case().evidence_bytes();
    let post = |path: &str, body: Value| {
        let client = srv.client.clone();
        let url = srv.at(path);
        async move {
            // The SDK always sends a bearer token: it must not be refused.
            let r = client.post(url).bearer_auth("an-azure-ad-token").json(&body).send().await.unwrap();
            let code = r.headers().get("x-ms-error-code").map(|v| v.to_str().unwrap().to_string());
            let (s, v) = status_json(r).await;
            (s, v, code)
        }
    };

    // /certs: every key has an x5c whose certificate is the key's.
    let (s, certs) = srv.get("/certs").await;
    assert_eq!(s, 200);
    let keys = certs["keys"].as_array().unwrap();
    assert!(keys.iter().any(|k| k["alg"] == "RS256"));
    for k in keys {
        let der = base64::engine::general_purpose::STANDARD.decode(k["x5c"][0].as_str().unwrap()).unwrap();
        assert!(PublicKey::from_jwk(k).unwrap().matches_certificate(&der));
    }

    // The binding: runtime data whose SHA-256 begins the report data passes;
    // any other is refused, by name, with MAA's error shape.
    let claims = verifier_claims();
    let report_data = hex::decode(claims["report_data"].as_str().unwrap()).unwrap();
    let (s, v, code) = post(
        "/attest/SgxEnclave?api-version=2022-08-01",
        json!({"quote": b64url(&quote), "runtimeData": {"data": b64url(b"other key"), "dataType": "Binary"}}),
    )
    .await;
    assert_eq!((s, code.as_deref()), (400, Some("InvalidParameter")), "{v}");
    assert_eq!(v["error"]["code"], "InvalidParameter");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("freshness_binding_failed") && msg.contains("SHA-256 of runtimeData.data"), "{msg}");
    assert!(msg.contains(&hex::encode(&report_data[..32])), "names what the report data holds: {msg}");

    // Without runtime data: attested, the nonce echoed, JSON runtime data kept.
    let (s, v, _) = post("/attest/SgxEnclave?api-version=2020-10-01", json!({"quote": b64url(&quote), "nonce": "n-123"})).await;
    assert_eq!(s, 200, "{v}");
    let c = jws::decode(v["token"].as_str().unwrap()).unwrap();
    assert_eq!(c.header["alg"], "RS256");
    assert_eq!(c.claims["nonce"], "n-123");
    assert_eq!(c.claims["x-ms-sgx-mrenclave"], claims["mr_enclave"]);
    assert_eq!(c.claims["x-ms-sgx-product-id"], claims["isv_prod_id"]);
    assert_eq!(c.claims["x-ms-sgx-svn"], claims["isv_svn"]);
    assert_eq!(c.claims["x-ms-sgx-is-debuggable"], claims["debug"]);
    assert_eq!(c.claims["x-ms-sgx-config-id"], claims["config_id"]);

    // An api-version this route does not implement, or none: MAA's error shape.
    for (path, code) in [
        ("/attest/SgxEnclave?api-version=2019-01-01", "UnsupportedApiVersion"),
        ("/attest/TdxVm?api-version=2020-10-01", "UnsupportedApiVersion"),
        ("/attest/SgxEnclave", "MissingApiVersionParameter"),
    ] {
        let (s, v, h) = post(path, json!({"quote": b64url(&quote)})).await;
        assert_eq!((s, v["error"]["code"].as_str(), h.as_deref()), (400, Some(code), Some(code)), "{path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("supported: 20"), "names the supported versions: {v}");
    }
    // Malformed bodies: MAA's shape, saying what is wrong.
    let (s, v, _) = post("/attest/SgxEnclave?api-version=2022-08-01", json!({"report": b64url(&quote)})).await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("'quote'"), "{v}");
    let (s, v, _) = post("/attest/OpenEnclave?api-version=2022-08-01", json!({"report": b64url(&quote)})).await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("Open Enclave"), "{v}");
    let (s, v, _) = post("/attest/SgxEnclave?api-version=2022-08-01", json!({"quote": "!!"})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("InvalidParameter")));
    // A TDX route given an SGX quote: refused by the verifier's format check.
    let (s, v, _) = post("/attest/TdxVm?api-version=2023-04-01-preview", json!({"quote": b64url(&quote)})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("verification_failed"), "{v}");
    // Administration: not supported, in MAA's shape, naming Cachet's admin API.
    let (s, v, _) = post("/policies/SgxEnclave:reset?api-version=2022-08-01", json!({})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (501, Some("NotSupported")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("/v1/admin/policies"));
    let (s, _) = srv.get("/certificates?api-version=2022-08-01").await;
    assert_eq!(s, 501);

    // Every MAA attestation is in the audit log, as the native ones are.
    let store = SqliteStore::open_dir(&srv.dir).await.unwrap();
    let entries = store.audit_page(0, 1000).await.unwrap();
    let maa: Vec<_> = entries.iter().filter(|e| e.action == "attest" && e.actor.contains("azure-attestation")).collect();
    assert!(maa.iter().any(|e| e.outcome == "ok") && maa.iter().any(|e| e.outcome == "refused"), "{maa:?}");
}

// ---- /attest/SevSnpVm and /attest/TdxVm with real SNP and TDX evidence ----

/// An offline server whose cache holds case `c`'s endorsements (the recorded
/// Intel collateral bundle `intel`, else the case's vendor files as the
/// service would have fetched them), verifying as of the case's `verify_at`.
async fn case_server(c: &Case, intel: Option<&str>) -> TestServer {
    use cachet_endorse::{authority::covered, Fetched, Part};
    let dir = temp_dir(&format!("maa-{}", c.id));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(&dir).await.expect("store"));
    let cache = StoreCache(store.clone());
    if let Some(rel) = intel {
        for f in recorded::intel_bundle(rel) {
            cache.put(&f.resource.key(), &f).await;
        }
    }
    let files = c.endorsement_files();
    for r in cachet_endorse::needs(cachet_verify::Tee::parse(&c.tee).unwrap(), &c.evidence_bytes()).expect("needs") {
        if r.optional() {
            continue;
        }
        let Some(file) = files.iter().find(|f| covered(&r, std::slice::from_ref(f))) else { continue };
        let parts = vec![Part { name: file.name.clone(), bytes: file.bytes.clone() }];
        cache.put(&r.key(), &Fetched { resource: r.clone(), parts, fetched_at: 0, next_update: None, source: "recorded".into() }).await;
    }
    assert!(!cache.list().await.is_empty(), "{}: something seeded", c.id);
    store.close().await;
    let mut a = args(&dir);
    a.fixed_verification_time = c.verify_at.clone();
    assert!(a.offline, "tests fetch nothing");
    let server = cachet_server::start(a.resolve().expect("config")).await.expect("server starts");
    TestServer { url: server.url.clone(), server: Some(server), dir, client: http_client() }
}

/// What `cachet_verify` itself says about case `c` (its endorsement files, its instant).
fn claims_of(c: &Case) -> Value {
    let at = time::OffsetDateTime::parse(c.verify_at.as_deref().unwrap(), &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp();
    let (evidence, endorsements, anchors) = (c.evidence_bytes(), c.endorsement_files(), cachet_verify::TrustAnchors::pinned());
    let req =
        cachet_verify::VerifyRequest { evidence: &evidence, endorsements: &endorsements, anchors: &anchors, at, expected_nonce: None };
    cachet_verify::verify(cachet_verify::Tee::parse(&c.tee).unwrap(), &req).result.expect("the case verifies")
}

/// The token of an MAA answer, its RS256 signature checked with the keys of `/certs`.
async fn maa_token(srv: &TestServer, answer: &Value) -> Value {
    let token = answer["token"].as_str().expect("a token");
    assert_eq!(jws::decode(token).unwrap().header["alg"], "RS256");
    let (s, certs) = srv.get("/certs").await;
    assert_eq!(s, 200);
    let keys: Vec<PublicKey> = certs["keys"].as_array().unwrap().iter().map(|k| PublicKey::from_jwk(k).unwrap()).collect();
    let want = jws::Expectations { now: cachet_server::now(), leeway: 5, issuer: Some(&srv.url) };
    jws::verify(token, &keys, &want).expect("verifies with /certs")
}

/// The binding refusal: after verification passed, MAA's binding names the
/// report data's first 32 bytes and SHA-256 of the runtime data sent.
fn assert_binding_refused(s: u16, v: &Value, report_data_hex: &str, runtime: &[u8]) {
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("InvalidParameter")), "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("freshness_binding_failed"), "{msg}");
    assert!(msg.contains(&report_data_hex[..64]), "names the report data: {msg}");
    let want = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, runtime));
    assert!(msg.contains(&want), "names SHA-256 of runtimeData.data: {msg}");
}

/// Real SEV-SNP reports (Milan v2, Genoa v5, Turin v5) at `/attest/SevSnpVm`:
/// runtime data the report was not made with is refused for MAA's binding
/// alone; without runtime data the token (RS256, checked with `/certs`)
/// carries the `x-ms-sevsnpvm-*` claims, equal to `cachet_verify`'s claims for
/// the same report; MAA's JSON form `{SnpReport, VcekCertChain}` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sev_snp_vm_reports_are_verified_and_carry_the_verifiers_claims() {
    for id in ["snp-virtee-milan", "snp-oak-genoa", "snp-oak-turin"] {
        let c = cases().into_iter().find(|c| c.id == id).unwrap();
        let raw = c.evidence_bytes();
        let claims = claims_of(&c);
        let srv = case_server(&c, None).await;
        let url = "/attest/SevSnpVm?api-version=2022-08-01";

        let runtime = b"a workload key the report never saw";
        let (s, v) = srv.post(url, &json!({"report": b64url(&raw), "runtimeData": {"data": b64url(runtime), "dataType": "Binary"}})).await;
        assert_binding_refused(s, &v, claims["report_data"].as_str().unwrap(), runtime);

        let (s, v) = srv.post(url, &json!({"report": b64url(&raw), "nonce": "snp-1"})).await;
        assert_eq!(s, 200, "{id}: {v}");
        let t = maa_token(&srv, &v).await;
        assert_eq!(t["x-ms-attestation-type"], "sevsnpvm");
        assert_eq!(t["nonce"], "snp-1");
        assert_eq!(t["cachet.verification_time"].as_i64(), Some(time_of(&c)), "{id}: judged at the pinned instant");
        for (maa, native) in [
            ("x-ms-sevsnpvm-launchmeasurement", "measurement"),
            ("x-ms-sevsnpvm-hostdata", "host_data"),
            ("x-ms-sevsnpvm-idkeydigest", "id_key_digest"),
            ("x-ms-sevsnpvm-authorkeydigest", "author_key_digest"),
            ("x-ms-sevsnpvm-familyId", "family_id"),
            ("x-ms-sevsnpvm-imageId", "image_id"),
            ("x-ms-sevsnpvm-guestsvn", "guest_svn"),
            ("x-ms-sevsnpvm-vmpl", "vmpl"),
            ("x-ms-sevsnpvm-reportid", "report_id"),
            ("x-ms-sevsnpvm-reportdata", "report_data"),
            ("x-ms-sevsnpvm-is-debuggable", "debug"),
        ] {
            assert!(!claims[native].is_null(), "{id}: the verifier claims {native}");
            assert_eq!(t[maa], claims[native], "{id}: {maa}");
        }
        for (maa, part) in [
            ("x-ms-sevsnpvm-bootloader-svn", "bootloader"),
            ("x-ms-sevsnpvm-tee-svn", "tee"),
            ("x-ms-sevsnpvm-snpfw-svn", "snp"),
            ("x-ms-sevsnpvm-microcode-svn", "microcode"),
        ] {
            assert_eq!(t[maa], claims["reported_tcb"][part], "{id}: {maa}");
        }
        assert_eq!(t["x-ms-sevsnpvm-smt-allowed"], claims["policy_flags"]["smt_allowed"], "{id}");
        assert_eq!(t["x-ms-sevsnpvm-migration-allowed"], claims["policy_flags"]["migration_agent_allowed"], "{id}");
        assert_eq!(t["submods"]["snp"]["ear.veraison.annotated-evidence"]["measurement"], claims["measurement"]);

        // MAA's JSON report form, the VCEK chain as a hint.
        let vcek = c.endorsement_files().into_iter().find(|e| e.name.contains("vcek")).unwrap();
        let doc = json!({"SnpReport": b64url(&raw), "VcekCertChain": b64url(&vcek.bytes)});
        let (s, v) = srv.post(url, &json!({"report": b64url(doc.to_string().as_bytes())})).await;
        assert_eq!(s, 200, "{id}: {v}");
        assert_eq!(maa_token(&srv, &v).await["x-ms-sevsnpvm-launchmeasurement"], claims["measurement"]);
    }
}

fn time_of(c: &Case) -> i64 {
    time::OffsetDateTime::parse(c.verify_at.as_deref().unwrap(), &time::format_description::well_known::Rfc3339).unwrap().unix_timestamp()
}

/// A real TDX quote (its recorded Intel collateral in the service's cache) at
/// `/attest/TdxVm`: refused for MAA's binding alone when runtime data is
/// sent, else a token whose `tdx_*` claims are `cachet_verify`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tdx_vm_quotes_are_verified_and_carry_the_verifiers_claims() {
    let c = cases().into_iter().find(|c| c.id == "tdx-automata-2510").unwrap();
    let quote = c.evidence_bytes();
    let claims = claims_of(&c);
    let srv = case_server(&c, Some("tdx/automata/collateral_2510.derived.json")).await;
    for version in TDX_API_VERSIONS {
        let url = format!("/attest/TdxVm?api-version={version}");
        let runtime = br#"{"jwk": "not the one in the quote"}"#;
        let (s, v) = srv.post(&url, &json!({"quote": b64url(&quote), "runtimeData": {"data": b64url(runtime), "dataType": "JSON"}})).await;
        assert_binding_refused(s, &v, claims["report_data"].as_str().unwrap(), runtime);

        let (s, v) = srv.post(&url, &json!({"quote": b64url(&quote)})).await;
        assert_eq!(s, 200, "{version}: {v}");
        let t = maa_token(&srv, &v).await;
        assert_eq!(t["x-ms-attestation-type"], "tdxvm");
        assert_eq!(t["cachet.verification_time"].as_i64(), Some(time_of(&c)));
        for (maa, native) in [
            ("tdx_mrtd", "mr_td"),
            ("tdx_rtmr0", "rtmr0"),
            ("tdx_rtmr1", "rtmr1"),
            ("tdx_rtmr2", "rtmr2"),
            ("tdx_rtmr3", "rtmr3"),
            ("tdx_mrconfigid", "mr_config_id"),
            ("tdx_mrowner", "mr_owner"),
            ("tdx_mrownerconfig", "mr_owner_config"),
            ("tdx_td_attributes", "td_attributes"),
            ("tdx_td_attributes_debug", "debug"),
            ("tdx_xfam", "xfam"),
            ("tdx_tee_tcb_svn", "tee_tcb_svn"),
            ("tdx_mrseam", "mr_seam"),
            ("tdx_mrsignerseam", "mr_signer_seam"),
            ("tdx_seam_attributes", "seam_attributes"),
            ("tdx_report_data", "report_data"),
        ] {
            assert!(!claims[native].is_null(), "the verifier claims {native}");
            assert_eq!(t[maa], claims[native], "{maa}");
        }
        assert_eq!(t["submods"]["tdx"]["ear.veraison.annotated-evidence"]["tcb_status"], claims["tcb_status"]);
    }
    // An SNP report at the TDX route: the verifier's format check refuses it.
    let snp = cases().into_iter().find(|c| c.id == "snp-oak-genoa").unwrap();
    let (s, v) = srv.post("/attest/TdxVm?api-version=2025-06-01", &json!({"quote": b64url(&snp.evidence_bytes())})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().starts_with("verification_failed"), "{v}");
}

const TDX_API_VERSIONS: [&str; 2] = ["2023-04-01-preview", "2025-06-01"];
