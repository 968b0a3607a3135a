//! Errors that say what to do (issue 18), over real HTTP on loopback:
//! evidence is taken as `cachet verify` takes it (`tee: "auto"`, hex or
//! base64 text sent inside the base64), evidence that only looks encoded
//! is `evidence_encoding`; a release policy that never sets `status` is
//! refused at upload (`policy_no_status`), a Rego error names the uploaded
//! file; a token of another issuer names both issuers.

mod common;

use base64::Engine;
use cachet_attester::simulated::{ReportOptions, SimulatedTee};
use cachet_server::auth::Role;
use common::*;
use serde_json::{json, Value};

fn case(id: &str) -> Case {
    cases().into_iter().find(|c| c.id == id).unwrap_or_else(|| panic!("case {id} in cases.json"))
}

fn endorsements(c: &Case) -> Vec<Value> {
    c.endorsement_files().iter().map(|e| json!({"name": e.name, "data": b64(&e.bytes)})).collect()
}

/// The submodule (family) of a token.
async fn token_tee(srv: &TestServer, v: &Value) -> String {
    let t = srv.verify_token(v["token"].as_str().expect("token")).await;
    t["submods"].as_object().expect("submods").keys().next().expect("one submod").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_is_taken_as_the_cli_takes_it() {
    let srv = start("errors-evidence", |a| a.allow_verification_time = true).await;

    // Hex text (the vector's own file), base64 of it, family "auto": before,
    // "unknown tee" (auto) or "unsupported quote version 13360" (hex).
    let tdx = case("tdx-near-v4");
    let hex_text = std::fs::read(vectors_dir().join(&tdx.evidence)).unwrap();
    assert!(hex_text.iter().all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace()), "the vector is hex text");
    let body = |tee: &str, evidence: String| json!({"tee": tee, "evidence": evidence, "endorsements": endorsements(&tdx), "at": tdx.verify_at.as_deref().unwrap()});
    let (s, v) = srv.post("/v1/attest", &body("auto", b64(&hex_text))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(token_tee(&srv, &v).await, "tdx");
    let (s, v) = srv.post("/v1/attest", &body("tdx", b64(&hex_text))).await;
    assert_eq!(s, 200, "hex with its family named: {v}");

    // Base64 of base64 text (was "COSE_Sign1: … trailing bytes").
    let nitro = case("nitro-evervault-bin");
    let b64_text = base64::engine::general_purpose::STANDARD.encode(nitro.evidence_bytes());
    let nbody = json!({"tee": "auto", "evidence": b64(b64_text.as_bytes()), "endorsements": endorsements(&nitro),
                       "at": nitro.verify_at.as_deref().unwrap()});
    let (s, v) = srv.post("/v1/attest", &nbody).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(token_tee(&srv, &v).await, "nitro");

    // Hex cut short (odd number of digits): a stable code saying what to send.
    let cut = &hex_text.trim_ascii()[..hex_text.trim_ascii().len() - 1];
    let (s, v) = srv.post("/v1/attest", &body("tdx", b64(cut))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("evidence_encoding")), "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("looks hex-encoded") && m.contains("send 'evidence' as base64 of the raw evidence bytes"), "{m}");

    // "auto" on evidence no family has: a stable code, naming `tee`.
    let (s, v) = srv.post("/v1/attest", &body("auto", b64(&[0xAB; 600]))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("tee_undetected")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("name its family in 'tee'"), "{v}");

    // An unknown family still says which exist, `auto` among them.
    let (s, v) = srv.post("/v1/attest", &body("sev", b64(&hex_text))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("unknown_tee")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("expected auto or one of"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_with_evidence_takes_tee_auto() {
    let srv = start("errors-release-auto", |a| a.insecure_simulated_tee = true).await;
    let sim = SimulatedTee::load_or_create(&srv.dir.join("simulated-tee")).unwrap();
    let report = sim.report(&[0u8; 64], &ReportOptions::default()).unwrap();
    let body = json!({"attest": {"tee": "auto", "evidence": b64(&report)}, "secrets": ["bank-a/none"]});
    let (s, v) = srv.post("/v1/secrets/release", &body).await;
    // Attested as `sim` (was `400 unknown_tee`); the secret does not exist.
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0]["released"], false, "{v}");
    let t = srv.verify_token(v["token"].as_str().expect("the token issued in the call")).await;
    assert!(t["submods"].get("sim").is_some(), "{t}");
}

async fn put_secret(srv: &TestServer, key: &str, body: Value) -> (u16, Value) {
    let r = srv.client.put(srv.at("/v1/admin/secrets/db")).bearer_auth(key).json(&body).send().await.unwrap();
    status_json(r).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_policies_that_cannot_release_are_refused_at_upload() {
    let srv = start("errors-release-policy", |_| {}).await;
    let key = create_tenant_api_key(&srv.dir, Some("bank-a"), Role::Admin).await;
    let value = b64(b"v");

    // OPA's usual `allow := true`: it never sets status, so it would refuse every release.
    let allow = "package release\nimport rego.v1\ndefault allow := false\nallow := true if { input.tee == \"sim\" }\n";
    let (s, v) = put_secret(&srv, &key, json!({"value": value, "policy": allow})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("policy_no_status")), "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("never sets `status`") && m.contains("`allow`") && m.contains("status := \"affirming\""), "{m}");

    // A policy that decides only for some workloads is kept (its sample does not match).
    let some = "package release\nimport rego.v1\nstatus := \"affirming\" if { input.claims.submods.sim[\"ear.veraison.annotated-evidence\"].measurement == \"ff\" }\n";
    let (s, v) = put_secret(&srv, &key, json!({"value": value, "policy": some})).await;
    assert_eq!(s, 201, "{v}");

    // A Rego error names the uploaded file.
    let bad = "package release\nimport rego.v1\nstatus := \"affirming\" if { input.tee == }\n";
    let (s, v) = put_secret(&srv, &key, json!({"value": value, "policy": bad, "policy_name": "bad.rego"})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("policy_invalid")), "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("bad.rego") && !m.contains("release.rego"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_another_issuer_names_both_issuers() {
    let dir = temp_dir("errors-issuer");
    let serve = |issuer: &str| {
        let mut a = args(&dir);
        a.insecure_simulated_tee = true;
        a.issuer = Some(issuer.to_string());
        a
    };
    // The same store and keys, first under one issuer, then another.
    let first = cachet_server::start(serve("https://old.example").resolve().unwrap()).await.unwrap();
    let sim = SimulatedTee::load_or_create(&dir.join("simulated-tee")).unwrap();
    let report = sim.report(&[0u8; 64], &ReportOptions::default()).unwrap();
    let client = http_client();
    let r = client.post(format!("{}/v1/attest", first.url)).json(&json!({"tee": "sim", "evidence": b64(&report)})).send().await.unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    first.shutdown().await;

    let second = cachet_server::start(serve("https://new.example").resolve().unwrap()).await.unwrap();
    let body = json!({"token": token, "secrets": ["bank-a/db"], "workload_key": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}});
    let r = client.post(format!("{}/v1/secrets/release", second.url)).json(&body).send().await.unwrap();
    let (s, v) = status_json(r).await;
    second.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("token_refused")), "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(!m.contains("token token"), "{m}");
    assert!(m.contains("https://new.example") && m.contains("https://old.example"), "{m}");
}
