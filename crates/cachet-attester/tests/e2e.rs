//! The protocol client against the real service (`cachet serve` in-process
//! on a loopback port, started with `--insecure-simulated-tee`), with the
//! SIMULATED TEE as evidence source: challenge → evidence bound to
//! `nonce ‖ runtime_data` → token carrying both; and the service's refusals
//! arriving as named errors (replayed nonce, evidence bound to another key,
//! unknown nonce), plus the client's own limits (response size, URL scheme);
//! then key release from two owners: the approved workload decrypts both
//! secrets, another measurement and a substituted key are refused per secret.
//! A release answer altered on the way (a refusal turned into "released"
//! with a JWE made for the workload key, a swapped JWE, a missing or foreign
//! statement) is refused by the client; plain HTTP to a non-loopback server
//! is refused unless allowed.

use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cachet_attester::client::{AttestError, Attester, ClientOptions};
use cachet_attester::ephemeral::EphemeralKey;
use cachet_attester::sim_source::SimulatedSource;
use cachet_attester::simulated::{ReportOptions, SimulatedTee};
use cachet_attester::source::BindingInput;
use cachet_attester::EvidenceSource;
use cachet_server::{ServeArgs, Server};
use serde_json::Value;

struct Running {
    server: Server,
    _dir: tempfile::TempDir,
    sim_dir: PathBuf,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(dir.path().to_path_buf()),
        insecure_simulated_tee: true,
        ..Default::default()
    };
    let server = cachet_server::start(args.resolve().unwrap()).await.unwrap();
    let sim_dir = dir.path().join("simulated-tee");
    Running { server, _dir: dir, sim_dir }
}

fn attester(r: &Running, measurement: [u8; 48]) -> Attester {
    let tee = SimulatedTee::load_or_create(&r.sim_dir).unwrap();
    let source = SimulatedSource { tee, options: ReportOptions { measurement, ..Default::default() } };
    Attester::new(&r.server.url, Arc::new(source), &ClientOptions::default()).unwrap()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attest_binds_the_nonce_and_the_workload_key() {
    let r = start().await;
    let a = attester(&r, [0x11; 48]);
    let (att, key) = a.attest_with_key().await.expect("attested");
    let c = claims(&att.token);
    assert_eq!(c["eat_nonce"], hex::encode(&att.nonce));
    assert_eq!(c["cachet.freshness"], "nonce");
    assert_eq!(URL_SAFE_NO_PAD.decode(c["cachet.runtime_data"].as_str().unwrap()).unwrap(), key.runtime_data());
    let sub = &c["submods"]["sim"];
    assert_eq!(sub["ear.veraison.annotated-evidence"]["measurement"], hex::encode([0x11; 48]));
    assert_eq!(att.evidence.backend, "sim");
    r.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_refusals_are_named() {
    let r = start().await;
    let a = attester(&r, [0x22; 48]);

    // A nonce is usable once.
    let ch = a.challenge().await.unwrap();
    let ev = a.collect(&ch.nonce, b"key A").await.unwrap();
    a.send_evidence(&ev, Some(&ch.nonce), b"key A").await.expect("first use");
    let e = a.send_evidence(&ev, Some(&ch.nonce), b"key A").await.unwrap_err();
    assert_eq!(e.code(), Some("nonce_reused"), "{e}");

    // Evidence bound to one key, presented with another (key substitution).
    let ch = a.challenge().await.unwrap();
    let ev = a.collect(&ch.nonce, b"key A").await.unwrap();
    let e = a.send_evidence(&ev, Some(&ch.nonce), b"key B").await.unwrap_err();
    assert_eq!(e.code(), Some("freshness_binding_failed"), "{e}");
    assert!(matches!(&e, AttestError::Server { check: Some(c), .. } if c == "Freshness binding"), "{e}");

    // A nonce the service never issued.
    let forged = [7u8; 32];
    let ev = a.collect(&forged, b"").await.unwrap();
    let e = a.send_evidence(&ev, Some(&forged), b"").await.unwrap_err();
    assert_eq!(e.code(), Some("nonce_unknown"), "{e}");

    // Another simulated TEE (a root the service does not trust).
    let rogue = SimulatedSource { tee: SimulatedTee::generate().unwrap(), options: ReportOptions::default() };
    let ch = a.challenge().await.unwrap();
    let ev = rogue.collect(&BindingInput { nonce: &ch.nonce, runtime_data: b"" }).unwrap();
    let e = a.send_evidence(&ev, Some(&ch.nonce), b"").await.unwrap_err();
    assert_eq!(e.code(), Some("verification_failed"), "{e}");
    r.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_limits() {
    let r = start().await;
    let tee = SimulatedTee::load_or_create(&r.sim_dir).unwrap();
    let source = Arc::new(SimulatedSource { tee, options: ReportOptions::default() });
    let tiny = ClientOptions { max_response: 16, ..Default::default() };
    let a = Attester::new(&r.server.url, source.clone(), &tiny).unwrap();
    let e = a.challenge().await.unwrap_err();
    assert!(e.to_string().contains("larger than 16 bytes"), "{e}");
    let e = Attester::new("ftp://example", source.clone(), &ClientOptions::default()).unwrap_err();
    assert!(e.to_string().contains("http://"), "{e}");
    // Plain HTTP only to loopback, unless explicitly allowed.
    for far in ["http://10.0.0.1:8443", "http://cachet.example", "http://[2001:db8::1]:80"] {
        let e = Attester::new(far, source.clone(), &ClientOptions::default()).unwrap_err();
        assert!(e.to_string().contains("--allow-insecure-http"), "{far}: {e}");
        let allowed = ClientOptions { allow_insecure_http: true, ..Default::default() };
        assert!(Attester::new(far, source.clone(), &allowed).is_ok(), "{far}");
    }
    for near in ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9", "https://cachet.example"] {
        assert!(Attester::new(near, source.clone(), &ClientOptions::default()).is_ok(), "{near}");
    }
    // Nothing listens there: a transport error naming the endpoint.
    let a = Attester::new("http://127.0.0.1:9", source, &ClientOptions::default()).unwrap();
    let e = a.challenge().await.unwrap_err();
    assert!(matches!(e, AttestError::Transport { endpoint: "/v1/challenge", .. }), "{e}");
    r.server.shutdown().await;
}

/// An admin API key acting for `tenant` (as `cachet admin create-key` stores it).
async fn tenant_key(r: &Running, tenant: &str) -> String {
    use cachet_store::Store;
    let store = cachet_store::SqliteStore::open_dir(r._dir.path()).await.unwrap();
    let k = cachet_server::auth::new_tenant_api_key("test", cachet_server::auth::Role::Admin, Some(tenant), cachet_server::now()).unwrap();
    let audit =
        cachet_store::AuditEntry { actor: "test".into(), action: "api_key.create".into(), outcome: "ok".into(), ..Default::default() };
    store.insert_api_key(&k.record, &audit).await.unwrap();
    store.close().await;
    k.key
}

fn policy(measurement: &[u8; 48]) -> String {
    format!(
        r#"package release
import rego.v1
ev := input.claims.submods[input.tee]["ear.veraison.annotated-evidence"]
status := "affirming" if {{
    input.claims["cachet.freshness"] == "nonce"
    ev.measurement == "{m}"
}}
reasons contains {{"rule": "measurement", "outcome": "contraindicated", "detail": "not the approved measurement"}} if {{
    ev.measurement != "{m}"
}}
"#,
        m = hex::encode(measurement)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_of_two_owners_are_released_only_to_the_approved_workload() {
    use base64::engine::general_purpose::STANDARD;
    let r = start().await;
    let http = reqwest::Client::new();
    let owners = [("owner-a", "key-a", "value of A"), ("owner-b", "key-b", "value of B")];
    for (owner, name, value) in owners {
        let key = tenant_key(&r, owner).await;
        let body = serde_json::json!({"value": STANDARD.encode(value), "policy": policy(&[0x11; 48])});
        let resp = http.put(format!("{}/v1/admin/secrets/{name}", r.server.url)).bearer_auth(key).json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 201, "{}", resp.text().await.unwrap());
    }
    let names: Vec<String> = owners.iter().map(|(o, n, _)| format!("{o}/{n}")).collect();

    let good = attester(&r, [0x11; 48]);
    let (_, release) = good.fetch_secrets(&names).await.expect("released");
    assert!(release.refused.is_empty(), "{:?}", release.refused);
    let got: Vec<(String, Vec<u8>)> = release.secrets.iter().map(|s| (s.name.clone(), s.value.to_vec())).collect();
    assert_eq!(got, owners.iter().map(|(o, n, v)| (format!("{o}/{n}"), v.as_bytes().to_vec())).collect::<Vec<_>>());

    let bad = attester(&r, [0x22; 48]);
    let (_, release) = bad.fetch_secrets(&names).await.unwrap();
    assert!(release.secrets.is_empty());
    assert_eq!(release.refused.len(), 2);
    assert!(release.refused.iter().all(|x| x.reason.contains("not the approved measurement")), "{:?}", release.refused);

    // A token bound to one key, secrets asked for another: refused, nothing released.
    let (att, _bound) = good.attest_with_key().await.unwrap();
    let other = EphemeralKey::generate().unwrap();
    let release = good.release(&att.token, &other, &names).await.unwrap();
    assert!(release.secrets.is_empty());
    assert!(release.refused.iter().all(|x| x.reason.contains("key substitution")), "{:?}", release.refused);

    // A token from elsewhere (altered signature) is refused as a whole.
    let (att, key) = good.attest_with_key().await.unwrap();
    let mut chars: Vec<char> = att.token.chars().collect();
    let at = chars.len() - 10;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    let forged: String = chars.into_iter().collect();
    let e = good.release(&forged, &key, &names).await.unwrap_err();
    assert_eq!(e.code(), Some("token_refused"), "{e}");
    r.server.shutdown().await;
}

/// What a proxy in the path could do to a release answer, done to a real
/// one: every alteration is refused by the client, never printed as a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_answer_altered_on_the_way_is_refused() {
    use base64::engine::general_purpose::STANDARD;
    use cachet_attester::client::check_release_answer;
    use cachet_keybroker::jwe::{self, WorkloadKey};
    let r = start().await;
    let http = reqwest::Client::new();
    let key = tenant_key(&r, "owner-a").await;
    for (name, m) in [("ok", [0x11; 48]), ("no", [0x33; 48])] {
        let body = serde_json::json!({"value": STANDARD.encode(format!("value of {name}")), "policy": policy(&m)});
        let resp = http.put(format!("{}/v1/admin/secrets/{name}", r.server.url)).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 201);
    }
    let a = attester(&r, [0x11; 48]);
    let (att, wk) = a.attest_with_key().await.unwrap();
    let names = vec!["owner-a/ok".to_string(), "owner-a/no".to_string()];
    let answer: Value = http
        .post(format!("{}/v1/secrets/release", r.server.url))
        .json(&serde_json::json!({"token": att.token, "secrets": names, "workload_key": wk.public_jwk()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks: Value = http.get(format!("{}/.well-known/jwks.json", r.server.url)).send().await.unwrap().json().await.unwrap();

    // Untouched: one released, one refused with its code.
    let release = check_release_answer(&jwks, &att.token, &wk, answer.clone()).unwrap();
    assert_eq!(release.secrets.len(), 1);
    assert_eq!(&release.secrets[0].value[..], b"value of ok");
    assert_eq!(answer["results"][1]["code"], "policy_refused", "{answer}");

    // The refusal turned into "released" with a JWE made for the workload key
    // (with the right protected header, even): not vouched for.
    let to_workload = WorkloadKey::from_jwk(wk.public_jwk()).unwrap();
    let mut header = serde_json::Map::new();
    header.insert("cachet.secret".into(), "owner-a/no".into());
    header.insert("cachet.token_id".into(), claims(&att.token)["jti"].clone());
    let made_up = jwe::encrypt(&to_workload, b"attacker's value", &header).unwrap();
    let mut forged = answer.clone();
    forged["results"][1]["released"] = true.into();
    forged["results"][1]["jwe"] = made_up.clone().into();
    let e = check_release_answer(&jwks, &att.token, &wk, forged).unwrap_err();
    assert!(e.to_string().contains("not vouched for"), "{e}");
    // The released secret's JWE swapped for a made-up one.
    let mut forged = answer.clone();
    forged["results"][0]["jwe"] = made_up.into();
    let e = check_release_answer(&jwks, &att.token, &wk, forged).unwrap_err();
    assert!(e.to_string().contains("not the one the statement names"), "{e}");
    // No statement, an altered one, or one for another attestation.
    let mut forged = answer.clone();
    forged.as_object_mut().unwrap().remove("statement");
    assert!(check_release_answer(&jwks, &att.token, &wk, forged).is_err());
    let mut forged = answer.clone();
    let st = answer["statement"].as_str().unwrap();
    // One signature character changed in the middle (the last one may carry only padding bits).
    let mut altered = st.as_bytes().to_vec();
    let i = st.len() - 10;
    altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
    forged["statement"] = String::from_utf8(altered).unwrap().into();
    assert!(check_release_answer(&jwks, &att.token, &wk, forged).is_err());
    let (other, _) = a.attest_with_key().await.unwrap();
    let e = check_release_answer(&jwks, &other.token, &wk, answer.clone()).unwrap_err();
    assert!(e.to_string().contains("another attestation token"), "{e}");
    // A JWKS that is not the service's (a proxy answering everything) verifies nothing.
    let e = check_release_answer(&serde_json::json!({"keys": []}), &att.token, &wk, answer.clone()).unwrap_err();
    assert!(e.to_string().contains("JWKS"), "{e}");

    // The statement is no credential: it is refused as an attestation token.
    let resp = http
        .post(format!("{}/v1/secrets/release", r.server.url))
        .json(&serde_json::json!({"token": answer["statement"], "secrets": names}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "token_refused", "{v}");
    r.server.shutdown().await;
}
