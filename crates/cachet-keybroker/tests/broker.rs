//! Library-level key release: owners, policies, multi-owner requests,
//! refusals (wrong measurement, expiry, freshness, key substitution) and
//! what is kept at rest.

mod common;

use std::sync::Arc;

use cachet_keybroker::jwe;
use cachet_keybroker::{BrokerConfig, KeyBroker, LocalFileKek, MemorySecretStore, ReleaseRequest, SecretValue};
use cachet_token::ear::Freshness;
use common::*;
use serde_json::Value;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<MemorySecretStore>,
    broker: KeyBroker,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let kek = Arc::new(LocalFileKek::open_or_create(&dir.path().join("kek")).unwrap());
    let store = Arc::new(MemorySecretStore::new());
    let broker = KeyBroker::new(kek, store.clone(), BrokerConfig::default());
    broker
        .put_secret("bank-a", "fraud-model-key", &SecretValue::from_slice(b"BANK-A-PLAINTEXT-KEY-0001"), &policy_for(GOOD), NOW)
        .await
        .unwrap();
    broker
        .put_secret("bank-b", "fraud-model-key", &SecretValue::from_slice(b"BANK-B-PLAINTEXT-KEY-0002"), &policy_for(GOOD), NOW)
        .await
        .unwrap();
    Fixture { _dir: dir, store, broker }
}

fn req(claims: Value, names: &[&str], key: Option<Value>) -> ReleaseRequest {
    ReleaseRequest { claims, secrets: names.iter().map(|s| s.to_string()).collect(), workload_key: key }
}

#[tokio::test]
async fn the_right_workload_gets_each_owners_secret_encrypted_to_its_key() {
    let f = fixture().await;
    let (sk, pk) = workload_key();
    let c = claims(GOOD, Some(runtime_data(&pk)), Freshness::Nonce, NOW + 60);
    let out = f.broker.release(&req(c, &["bank-a/fraud-model-key", "bank-b/fraud-model-key"], Some(pk.to_jwk())), NOW).await.unwrap();
    assert_eq!(out.workload_key.as_deref(), Some(pk.thumbprint().as_str()));
    assert_eq!(out.token_id.as_deref(), Some("tok-1"));
    let expected = [
        ("bank-a/fraud-model-key", "bank-a", &b"BANK-A-PLAINTEXT-KEY-0001"[..]),
        ("bank-b/fraud-model-key", "bank-b", b"BANK-B-PLAINTEXT-KEY-0002"),
    ];
    for (r, (name, owner, value)) in out.results.iter().zip(expected) {
        assert!(r.released, "{r:?}");
        assert_eq!((r.secret.as_str(), r.owner.as_str()), (name, owner));
        let d = jwe::decrypt(&sk, r.jwe.as_deref().unwrap()).unwrap();
        assert_eq!(d.plaintext.expose(), value);
        assert_eq!(d.header["cachet.secret"], name);
        assert_eq!(d.header["alg"], "ECDH-ES+A256KW");
        assert_eq!(d.header["enc"], "A256GCM");
    }
    // Nothing printable about the response shows a value.
    let shown = format!("{out:?} {}", serde_json::to_string(&out).unwrap());
    assert!(!shown.contains("PLAINTEXT"));
}

#[tokio::test]
async fn each_secret_is_decided_by_its_own_owners_policy_only() {
    let f = fixture().await;
    // bank-b now approves only OTHER: the GOOD workload gets bank-a's secret, not bank-b's.
    f.broker
        .put_secret("bank-b", "fraud-model-key", &SecretValue::from_slice(b"BANK-B-PLAINTEXT-KEY-0002"), &policy_for(OTHER), NOW)
        .await
        .unwrap();
    let (_, pk) = workload_key();
    let c = claims(GOOD, Some(runtime_data(&pk)), Freshness::Nonce, NOW + 60);
    let out = f.broker.release(&req(c, &["bank-a/fraud-model-key", "bank-b/fraud-model-key"], None), NOW).await.unwrap();
    assert!(out.results[0].released);
    assert!(!out.results[1].released);
    assert!(out.results[1].jwe.is_none());
    assert!(
        out.results[1].reason.contains("measurement") && out.results[1].reason.contains("contraindicated"),
        "{}",
        out.results[1].reason
    );
    assert_eq!(out.results[1].policy_hash.as_deref(), Some(cachet_appraise::policy_hash(&policy_for(OTHER)).as_str()));
}

#[tokio::test]
async fn a_wrong_measurement_is_refused_with_the_policys_reason() {
    let f = fixture().await;
    let (_, pk) = workload_key();
    let c = claims(OTHER, Some(runtime_data(&pk)), Freshness::Nonce, NOW + 60);
    let out = f.broker.release(&req(c, &["bank-a/fraud-model-key", "bank-b/fraud-model-key"], None), NOW).await.unwrap();
    for r in &out.results {
        assert!(!r.released && r.jwe.is_none());
        assert!(r.reason.contains(&format!("measurement {OTHER} is not the approved one")), "{}", r.reason);
    }
}

#[tokio::test]
async fn expired_unfresh_keyless_and_substituted_requests_are_refused() {
    let f = fixture().await;
    let (_, pk) = workload_key();
    let (_, other) = workload_key();
    let names = ["bank-a/fraud-model-key"];
    let cases = [
        (claims(GOOD, Some(runtime_data(&pk)), Freshness::Nonce, NOW), None, "expired"),
        (claims(GOOD, Some(runtime_data(&pk)), Freshness::NotEstablished, NOW + 60), None, "freshness"),
        (claims(GOOD, None, Freshness::Nonce, NOW + 60), None, "no runtime data"),
        (claims(GOOD, Some(b"not json".to_vec()), Freshness::Nonce, NOW + 60), None, "not a JSON object"),
        (claims(GOOD, Some(runtime_data(&pk)), Freshness::Nonce, NOW + 60), Some(other.to_jwk()), "key substitution"),
    ];
    for (c, key, why) in cases {
        let out = f.broker.release(&req(c, &names, key), NOW).await.unwrap();
        let r = &out.results[0];
        assert!(!r.released && r.jwe.is_none(), "{why}");
        assert!(r.reason.contains(why), "{why}: {}", r.reason);
    }
    // A token bound to an RSA1_5 or private JWK is refused too.
    let mut jwk = pk.to_jwk();
    jwk["d"] = "AAAA".into();
    let c = claims(GOOD, Some(serde_json::to_vec(&jwk).unwrap()), Freshness::Nonce, NOW + 60);
    let out = f.broker.release(&req(c, &names, None), NOW).await.unwrap();
    assert!(out.results[0].reason.contains("private member"), "{}", out.results[0].reason);
}

#[tokio::test]
async fn owners_cannot_read_overwrite_delete_or_list_each_others_secrets() {
    let f = fixture().await;
    // bank-c has no secret of that name: it cannot see bank-a's.
    assert!(f.broker.get_secret("bank-c", "fraud-model-key").await.unwrap().is_none());
    assert!(f.broker.list_secrets("bank-c").await.unwrap().is_empty());
    let a = f.broker.list_secrets("bank-a").await.unwrap();
    assert_eq!(a.len(), 1);
    assert!(a.iter().all(|m| m.owner == "bank-a"));
    // bank-b writing "its" fraud-model-key writes its own, not bank-a's.
    f.broker
        .put_secret("bank-b", "fraud-model-key", &SecretValue::from_slice(b"OVERWRITE-ATTEMPT"), &policy_for(GOOD), NOW + 1)
        .await
        .unwrap();
    assert_eq!(f.broker.get_secret("bank-a", "fraud-model-key").await.unwrap().unwrap().version, 1);
    // bank-c deleting the name deletes nothing of bank-a's.
    assert!(!f.broker.delete_secret("bank-c", "fraud-model-key").await.unwrap());
    let (sk, pk) = workload_key();
    let c = claims(GOOD, Some(runtime_data(&pk)), Freshness::Nonce, NOW + 60);
    let out = f.broker.release(&req(c, &["bank-a/fraud-model-key"], None), NOW).await.unwrap();
    assert_eq!(jwe::decrypt(&sk, out.results[0].jwe.as_deref().unwrap()).unwrap().plaintext.expose(), b"BANK-A-PLAINTEXT-KEY-0001");
    // Names cannot smuggle another owner in.
    for bad in ["../bank-a", "bank-a/x", "", ".hidden"] {
        assert!(f.broker.get_secret("bank-b", bad).await.is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn nothing_at_rest_reveals_a_value() {
    let f = fixture().await;
    let at_rest = f.store.at_rest_bytes();
    assert!(!at_rest.is_empty());
    let text = String::from_utf8_lossy(&at_rest);
    for v in [&b"BANK-A-PLAINTEXT-KEY-0001"[..], b"BANK-B-PLAINTEXT-KEY-0002"] {
        assert!(!at_rest.windows(v.len()).any(|w| w == v));
        assert!(!text.contains(&hex::encode(v)));
        use base64::Engine;
        assert!(!text.contains(&base64::engine::general_purpose::STANDARD.encode(v)));
    }
    // The metadata owners can read back carries no value either.
    let m = f.broker.get_secret("bank-a", "fraud-model-key").await.unwrap().unwrap();
    assert!(!format!("{m:?}").contains("PLAINTEXT"));
    assert!(m.kek.starts_with("local-file local:"));
}

#[tokio::test]
async fn a_broken_policy_is_refused_and_does_not_replace_a_working_one() {
    let f = fixture().await;
    for bad in
        ["package x\nallow if {", "package x\nimport rego.v1\nstatus := undefined_fn(1)", "package x\nimport rego.v1\nstatus := 1 / 0"]
    {
        let e = f.broker.put_secret("bank-a", "fraud-model-key", &SecretValue::from_slice(b"NEW"), bad, NOW + 5).await.unwrap_err();
        assert!(e.to_string().contains("release policy"), "{e}");
        assert!(!e.to_string().contains("NEW"));
    }
    let m = f.broker.get_secret("bank-a", "fraud-model-key").await.unwrap().unwrap();
    assert_eq!((m.version, m.policy.as_str()), (1, policy_for(GOOD).as_str()));
    // A policy that decides nothing would refuse every release: refused at upload.
    let e = f
        .broker
        .put_secret("bank-a", "silent", &SecretValue::from_slice(b"x"), "package s\nimport rego.v1\nhelper := true", NOW)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "policy_no_status", "{e}");
    assert!(e.to_string().contains("never sets `status`"), "{e}");
    let (_, pk) = workload_key();
    let c = claims(GOOD, Some(runtime_data(&pk)), Freshness::Nonce, NOW + 60);
    let out = f.broker.release(&req(c, &["bank-a/silent", "bank-a/none", "no-slash"], None), NOW).await.unwrap();
    assert_eq!(out.results[0].reason, "no such secret");
    assert_eq!(out.results[1].reason, "no such secret");
    assert!(out.results[2].reason.contains("owner/name"));
}

#[tokio::test]
async fn request_limits() {
    let f = fixture().await;
    let (_, pk) = workload_key();
    let c = claims(GOOD, Some(runtime_data(&pk)), Freshness::Nonce, NOW + 60);
    let many: Vec<String> = (0..40).map(|i| format!("bank-a/s{i}")).collect();
    let r = ReleaseRequest { claims: c.clone(), secrets: many, workload_key: None };
    assert!(f.broker.release(&r, NOW).await.is_err());
    assert!(f.broker.release(&req(c.clone(), &[], None), NOW).await.is_err());
    // Duplicates are answered once.
    let out = f.broker.release(&req(c, &["bank-a/fraud-model-key", "bank-a/fraud-model-key"], None), NOW).await.unwrap();
    assert_eq!(out.results.len(), 1);
}
