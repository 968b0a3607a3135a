//! Operations: HTTPS with rustls, certificate chains published as `x5c`,
//! health/readiness/metrics, the OpenAPI document, JSON errors with stable
//! codes for unknown routes, wrong methods, oversized and malformed bodies.

mod common;

use cachet_server::ops::{open, StoreArgs};
use cachet_token::Algorithm;
use common::*;
use serde_json::json;

/// A CA and a leaf for `127.0.0.1`, as PEM (cert, key) plus the CA's DER.
fn tls_material() -> (String, String, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::default();
    leaf.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    (cert.pem(), key.serialize_pem(), ca_cert.der().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_rustls_serves_the_api() {
    let (cert_pem, key_pem, ca_der) = tls_material();
    let files = temp_dir("tls-files");
    std::fs::write(files.join("cert.pem"), cert_pem).unwrap();
    std::fs::write(files.join("key.pem"), key_pem).unwrap();
    let srv = start("tls", |a| {
        a.tls_cert = Some(files.join("cert.pem"));
        a.tls_key = Some(files.join("key.pem"));
    })
    .await;
    assert!(srv.url.starts_with("https://127.0.0.1:"), "{}", srv.url);
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(&ca_der).unwrap())
        .build()
        .unwrap();
    let conf: serde_json::Value = client.get(srv.at("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(conf["issuer"], srv.url.as_str());
    assert_eq!(conf["jwks_uri"], format!("{}/.well-known/jwks.json", srv.url));
    // HTTPS responses, errors included, tell clients to keep to HTTPS (HSTS).
    for path in ["/healthz", "/no/such/route"] {
        let r = client.get(srv.at(path)).send().await.unwrap();
        assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000", "{path}");
    }
    // Plain HTTP to the TLS port does not get an answer.
    let plain = http_client().get(srv.url.replace("https://", "http://") + "/healthz").send().await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    let _ = std::fs::remove_dir_all(&files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_key_with_a_certificate_is_published_with_x5c() {
    let srv = start("x5c", |_| {}).await;
    let (leaf_pem, leaf_key_pem, ca_der) = {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap(); // P-256
        let cert = CertificateParams::new(vec!["cachet-token-signing".into()]).unwrap().signed_by(&key, &ca_cert, &ca_key).unwrap();
        (cert.der().to_vec(), key.serialize_der(), ca_cert.der().to_vec())
    };
    let args = StoreArgs { data_dir: Some(srv.dir.clone()), ..Default::default() };
    let opened = open(&args).await.unwrap();
    let keys = opened.keys();
    // A chain whose leaf certifies another key is refused.
    let other = rcgen::KeyPair::generate().unwrap().serialize_der();
    assert!(keys.import(Algorithm::ES256, &other, vec![leaf_pem.clone()], "test", cachet_server::now()).await.is_err());
    let info =
        keys.import(Algorithm::ES256, &leaf_key_pem, vec![leaf_pem.clone(), ca_der.clone()], "test", cachet_server::now()).await.unwrap();
    assert!(info.has_certificate);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await; // the server's key cache refresh
    let (_, jwks) = srv.get("/.well-known/jwks.json").await;
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == info.kid.as_str()).expect("imported key published");
    use base64::Engine;
    let x5c: Vec<Vec<u8>> = jwk["x5c"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| base64::engine::general_purpose::STANDARD.decode(c.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(x5c, vec![leaf_pem, ca_der]);
    assert!(jwk["x5t#S256"].is_string());
    // The server's own generated key has no certificate.
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k.get("x5c").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_openapi() {
    let srv = start("ops", |a| a.allow_verification_time = true).await;
    assert_eq!(srv.get("/healthz").await, (200, json!({"status": "ok"})));
    let r = srv.client.get(srv.at("/healthz")).send().await.unwrap();
    assert!(r.headers().get("strict-transport-security").is_none(), "no HSTS over plain HTTP");
    assert_eq!(srv.get("/readyz").await, (200, json!({"status": "ready", "key_custody": "ok"})));

    let c = cases().into_iter().find(|c| c.expect == "accept" && c.tee == "sgx").unwrap();
    let endorsements: Vec<_> = c.endorsement_files().iter().map(|e| json!({"data": b64(&e.bytes)})).collect();
    let (s, v) = srv
        .post("/v1/attest", &json!({"tee": "sgx", "evidence": b64(&c.evidence_bytes()), "endorsements": endorsements, "at": c.verify_at}))
        .await;
    assert_eq!(s, 200, "{v}");
    let cache_hits = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("cachet_endorsement_cache_lookups_total{result=\"hit\"} "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no cache hit figure: {text}"))
    };
    let text = srv.client.get(srv.at("/metrics")).send().await.unwrap().text().await.unwrap();
    let cold_hits = cache_hits(&text);
    // The same platform again: its PCK chain, CRLs and collateral
    // signatures come from the verifier's cache (the quote is checked anew).
    let (s2, v2) = srv
        .post("/v1/attest", &json!({"tee": "sgx", "evidence": b64(&c.evidence_bytes()), "endorsements": endorsements, "at": c.verify_at}))
        .await;
    assert_eq!(s2, 200, "{v2}");
    let text = srv.client.get(srv.at("/metrics")).send().await.unwrap().text().await.unwrap();
    let warm_hits = cache_hits(&text) - cold_hits;
    assert!(warm_hits >= 5, "the second attestation hit the cache {warm_hits} times: {text}");
    assert!(!text.contains("cachet_endorsement_cache_entries 0\n"), "{text}");
    let (s, _) = srv.post("/v1/attest", &json!({"tee": "snp", "evidence": b64(b"junk")})).await;
    assert_eq!(s, 422);
    let text = srv.client.get(srv.at("/metrics")).send().await.unwrap().text().await.unwrap();
    let status = srv.verify_token(v["token"].as_str().unwrap()).await["submods"]["sgx"]["ear.status"].as_str().unwrap().to_string();
    assert!(text.contains(&format!("cachet_attestations_total{{outcome=\"{status}\",tee=\"sgx\"}} 2")), "{text}");
    assert!(text.contains("cachet_attestations_total{outcome=\"refused\",tee=\"snp\"} 1"), "{text}");
    assert!(text.contains("cachet_verification_seconds_bucket{tee=\"sgx\""), "{text}");

    let (s, doc) = srv.get("/openapi.json").await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in
        ["/v1/challenge", "/v1/attest", "/.well-known/jwks.json", "/.well-known/openid-configuration", "/healthz", "/readyz", "/metrics"]
    {
        assert!(doc["paths"].get(p).is_some(), "{p} documented");
    }
    let description = doc["info"]["description"].as_str().unwrap();
    assert!(
        description.contains("SHA-512(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)")
            && description.contains("SHA-256(len(nonce) ‖ nonce ‖ len(runtime_data) ‖ runtime_data)")
    );
    assert!(doc["components"]["schemas"].get("AttestRequest").is_some());
}

#[tokio::test]
async fn errors_are_json_with_stable_codes() {
    let srv = start("errors", |a| a.body_limit = Some(4096)).await;
    let (s, v) = srv.get("/no/such/route").await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let r = srv.client.delete(srv.at("/v1/attest")).send().await.unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!((s, v["error"]["code"].as_str()), (405, Some("method_not_allowed")));
    let big = json!({"tee": "sgx", "evidence": "A".repeat(8192)});
    let (s, v) = srv.post("/v1/attest", &big).await;
    assert_eq!((s, v["error"]["code"].as_str()), (413, Some("body_too_large")), "{v}");
    let r = srv.client.post(srv.at("/v1/attest")).header("content-type", "application/json").body("{not json").send().await.unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("malformed_json")), "{v}");
    let (s, v) = srv.post("/v1/attest", &json!({"tee": "sgx"})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_request")), "{v}");
    let (s, v) = srv.post("/v1/attest", &json!({"tee": "quantum", "evidence": ""})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("unknown_tee")), "{v}");
    let (s, v) = srv.post("/v1/attest", &json!({"tee": "sgx", "evidence": "!!"})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_request")), "{v}");
    let (s, v) = srv.post("/v1/attest", &json!({"tee": "sgx", "evidence": "AAAA", "nonce": "zz"})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_request")), "{v}");
}
