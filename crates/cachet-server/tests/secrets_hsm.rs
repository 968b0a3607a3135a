//! `cachet serve` with SoftHSM2: the key-encryption key and the token
//! signing key in a PKCS#11 token. Secrets put over HTTP survive a server
//! restart and are released through the HSM; the SQLite file holds only
//! sealed records that a local KEK cannot open; tokens are signed in the
//! HSM and verify against the published JWKS. When the HSM goes away,
//! `/readyz` and releases say `key_custody_unavailable`, and both recover
//! once it is back, without a restart.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_lc_rs::agreement::{PrivateKey, ECDH_P256};
use cachet_attester::binding;
use cachet_attester::simulated::{ReportOptions, SimulatedTee};
use cachet_keybroker::envelope;
use cachet_keybroker::jwe::{self, Curve, DecryptionKey, WorkloadKey};
use cachet_keybroker::kek::LocalFileKek;
use cachet_server::auth::{new_tenant_api_key, Role};
use cachet_server::config::SigningCustody;
use cachet_store::{AuditEntry, SqliteStore, Store};
use common::*;
use serde_json::json;

const VALUE: &str = "hsm-sealed-plaintext-5e21";
const PIN: &str = "4321-user";

fn softhsm_token(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", dir.join("tokens").display()),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "cachet", "--pin", PIN, "--so-pin", "8765-so"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util (Debian package softhsm2) must be installed: .ci/run installs it");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    conf
}

fn hsm_args(a: &mut cachet_server::ServeArgs) {
    a.insecure_simulated_tee = true;
    a.pkcs11_module = Some(cachet_keybroker::pkcs11::SOFTHSM2_MODULE.into());
    a.pkcs11_token = Some("cachet".into());
    a.pkcs11_pin = Some(PIN.into());
    a.signing_custody = Some(SigningCustody::Pkcs11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_held_kek_and_signing_key_over_http_across_a_restart() {
    let hsm_dir = temp_dir("kb-hsm-token");
    // The only test in this binary: the process-wide PKCS#11 configuration.
    std::env::set_var("SOFTHSM2_CONF", softhsm_token(&hsm_dir));
    let mut srv = start("kb-hsm", hsm_args).await;
    let store = SqliteStore::open_dir(&srv.dir).await.unwrap();
    let k = new_tenant_api_key("t", Role::Admin, Some("bank-a"), cachet_server::now()).unwrap();
    store
        .insert_api_key(
            &k.record,
            &AuditEntry { actor: "test".into(), action: "api_key.create".into(), outcome: "ok".into(), ..Default::default() },
        )
        .await
        .unwrap();
    store.close().await;
    let policy = "package release\nimport rego.v1\nstatus := \"affirming\" if input.tee == \"sim\"\n";
    let r = srv
        .client
        .put(srv.at("/v1/admin/secrets/db"))
        .bearer_auth(&k.key)
        .json(&json!({"value": b64(VALUE.as_bytes()), "policy": policy}))
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 201, "{v}");
    assert!(v["kek"].as_str().unwrap().starts_with("pkcs11 pkcs11:cachet/cachet-kek"), "{v}");

    // The signing keys are HSM handles, not key material.
    let signing = SqliteStore::open_dir(&srv.dir).await.unwrap();
    let keys = signing.list_signing_keys().await.unwrap();
    assert!(!keys.is_empty() && keys.iter().all(|k| k.custody == "pkcs11" && k.handle.starts_with(b"pkcs11:id=")), "{keys:?}");
    signing.close().await;
    srv.stop().await;

    // Restart on the same data directory and HSM token.
    let restarted = cachet_server::start({
        let mut a = args(&srv.dir);
        hsm_args(&mut a);
        a.resolve().unwrap()
    })
    .await
    .unwrap();
    let srv2 = TestServer { url: restarted.url.clone(), server: Some(restarted), dir: temp_dir("kb-hsm-unused"), client: http_client() };
    let sk = PrivateKey::generate(&ECDH_P256).unwrap();
    let pk = WorkloadKey::Ec { curve: Curve::P256, point: sk.compute_public_key().unwrap().as_ref().to_vec() };
    let j = pk.to_jwk();
    let rd = format!(r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#, j["x"], j["y"]).into_bytes();
    let nonce = srv2.challenge().await;
    let sim = SimulatedTee::load_or_create(&srv.dir.join("simulated-tee")).unwrap();
    let report = sim.report(&binding::report_data(&nonce, &rd), &ReportOptions::default()).unwrap();
    let (s, v) = srv2
        .post("/v1/attest", &json!({"tee": "sim", "evidence": b64(&report), "nonce": hex::encode(&nonce), "runtime_data": b64(&rd)}))
        .await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap();
    srv2.verify_token(token).await; // signed in the HSM, verifies with the JWKS
    let (s, v) = srv2.post("/v1/secrets/release", &json!({"token": token, "secrets": ["bank-a/db"]})).await;
    assert_eq!(s, 200, "{v}");
    let sk = DecryptionKey::Ec(sk);
    let d = jwe::decrypt(&sk, v["results"][0]["jwe"].as_str().unwrap()).unwrap();
    assert_eq!(d.plaintext.expose(), VALUE.as_bytes());
    let (s, v) = srv2.get("/readyz").await;
    assert_eq!((s, v["key_custody"].as_str()), (200, Some("ok")), "{v}");

    // The HSM goes away (its token store is moved off): not ready, and
    // releases are refused naming the real cause, never "altered record".
    let (tokens, away) = (hsm_dir.join("tokens"), hsm_dir.join("tokens-away"));
    std::fs::rename(&tokens, &away).unwrap();
    let (s, v) = srv2.get("/readyz").await;
    assert_eq!((s, v["error"]["code"].as_str()), (503, Some("key_custody_unavailable")), "{v}");
    let (s, v) = srv2.post("/v1/secrets/release", &json!({"token": token, "secrets": ["bank-a/db"]})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (503, Some("key_custody_unavailable")), "{v}");
    assert!(!v.to_string().contains("altered"), "{v}");
    let (s, _) = srv2.get("/healthz").await;
    assert_eq!(s, 200);

    // It comes back: the server reconnects and logs in again by itself.
    std::fs::rename(&away, &tokens).unwrap();
    let (s, v) = srv2.get("/readyz").await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = srv2.post("/v1/secrets/release", &json!({"token": token, "secrets": ["bank-a/db"]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0]["released"], true, "{v}");
    assert_eq!(jwe::decrypt(&sk, v["results"][0]["jwe"].as_str().unwrap()).unwrap().plaintext.expose(), VALUE.as_bytes());
    drop(srv2);

    // The database holds a sealed record only, which no local KEK opens.
    for f in ["cachet.db", "cachet.db-wal"] {
        if let Ok(b) = std::fs::read(srv.dir.join(f)) {
            assert!(!b.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()), "{f} holds the plaintext");
        }
    }
    let store = SqliteStore::open_dir(&srv.dir).await.unwrap();
    let row = store.get_secret("bank-a", "db").await.unwrap().unwrap();
    let sealed: envelope::Sealed = serde_json::from_str(&row.sealed).unwrap();
    let local = LocalFileKek::open_or_create(&hsm_dir.join("local-kek")).unwrap();
    assert!(matches!(
        envelope::open(&local, "bank-a", "db", &row.policy_hash, &sealed),
        Err(cachet_keybroker::BrokerError::WrongKek { .. })
    ));
    let mut forged = sealed.clone();
    forged.kek_kind = "local-file".into();
    forged.kek_id = cachet_keybroker::KeyEncryptionKey::key_id(&local).to_string();
    assert!(envelope::open(&local, "bank-a", "db", &row.policy_hash, &forged).is_err());
    store.close().await;
    let _ = std::fs::remove_dir_all(&hsm_dir);
}
