//! An independent client verifies Cachet's tokens: PyJWT's PyJWKClient
//! (`tests/python/test_jwks_interop.py`, installed by `.ci/run`) discovers
//! the keys through `/.well-known/openid-configuration`, verifies tokens
//! signed ES256, ES384 and PS256 (signature, issuer, expiry), and refuses a
//! token with one byte altered or whose key was removed from the JWKS.
//!
//! Needs `python3` with `PyJWT[crypto]`; it fails (never skips silently)
//! when they are missing, unless CACHET_SKIP_PYTHON_INTEROP=1 is set.

mod common;

use std::path::PathBuf;
use std::process::Command;

use cachet_attester::binding;
use cachet_attester::simulated::{ReportOptions, SimulatedTee};
use cachet_server::auth::Role;
use cachet_token::Algorithm;
use common::*;
use serde_json::json;

async fn sim_token(srv: &TestServer) -> String {
    let sim = SimulatedTee::load_or_create(&srv.dir.join("simulated-tee")).unwrap();
    let nonce = srv.challenge().await;
    let report = sim.report(&binding::report_data(&nonce, b""), &ReportOptions::default()).unwrap();
    let (s, v) = srv.post("/v1/attest", &json!({"tee": "sim", "evidence": b64(&report), "nonce": hex::encode(&nonce)})).await;
    assert_eq!(s, 200, "{v}");
    v["token"].as_str().unwrap().to_string()
}

fn python_has_pyjwt() -> bool {
    Command::new("python3")
        .args(["-c", "import jwt, cryptography; from jwt import PyJWKClient"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_verifies_tokens_through_openid_discovery() {
    if !python_has_pyjwt() {
        if std::env::var("CACHET_SKIP_PYTHON_INTEROP").as_deref() == Ok("1") {
            eprintln!("SKIPPED on request (CACHET_SKIP_PYTHON_INTEROP=1): python3 with PyJWT not found");
            return;
        }
        panic!("python3 with PyJWT is required: python3 -m pip install 'PyJWT[crypto]>=2.8' (as .ci/run does)");
    }
    let main = start("py-es256", |a| {
        a.insecure_simulated_tee = true;
        a.token_ttl = Some(6);
    })
    .await;
    let admin = main.api_key(Role::Admin).await;
    let token = sim_token(&main).await;
    let mut others = Vec::new();
    let mut keep = Vec::new();
    for alg in [Algorithm::ES384, Algorithm::PS256] {
        let srv = start("py-alg", |a| {
            a.insecure_simulated_tee = true;
            a.token_alg = Some(alg);
        })
        .await;
        others.push(json!({"url": srv.url, "token": sim_token(&srv).await, "alg": alg.as_str()}));
        keep.push(srv);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/test_jwks_interop.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .env("CACHET_URL", &main.url)
        .env("CACHET_TOKEN", &token)
        .env("CACHET_ADMIN_KEY", &admin)
        .env("CACHET_OTHER", serde_json::to_string(&others).unwrap())
        .output()
        .await
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "PyJWT interop failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" passed, 0 failed"));
}
