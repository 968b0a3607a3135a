//! The Trustee KBS protocol (`/kbs/v0/...`) over real HTTP on loopback, with
//! a client written here as Trustee's guest-components do it: the
//! `kbs-types` wire types, an EC P-256 TEE key exported as a JWK with
//! `alg: ECDH-ES+A256KW`, the report data = SHA-384 of the RFC 8785 JSON of
//! `{"additional-evidence", "nonce", "tee-pubkey"}` zero-padded to 64 bytes,
//! and the resource JWE opened with the AAD `kbs_types::ProtectedHeader::
//! generate_aad` re-serialises (ECDH-ES concat KDF, AES key unwrap and
//! AES-256-GCM written here with aws-lc-rs, not Cachet's code).

mod common;

use std::path::Path;

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::digest::{digest, SHA256, SHA384};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use cachet_attester::simulated::{ReportOptions, SimulatedTee};
use cachet_server::auth::{new_tenant_api_key, Role};
use cachet_store::{AuditEntry, SqliteStore, Store};
use common::*;
use kbs_types::{Attestation, Challenge, CompositeEvidence, Request, Response, RuntimeData, Tee, TeePubKey};
use serde_json::{json, Value};

const GOOD: [u8; 48] = [0x11; 48];
const BAD: [u8; 48] = [0x22; 48];
const SECRET: &str = "kbs-resource-plaintext-5e1f";
const KBS_ERR: &str = "https://github.com/confidential-containers/kbs/errors/";

fn policy(measurement: &[u8; 48]) -> String {
    format!(
        r#"package release
import rego.v1
status := "affirming" if {{
    input.tee == "sim"
    input.claims.submods.sim["ear.veraison.annotated-evidence"].measurement == "{m}"
}}
"#,
        m = hex::encode(measurement)
    )
}

async fn tenant_key(dir: &Path, tenant: &str) -> String {
    let store = SqliteStore::open_dir(dir).await.unwrap();
    let k = new_tenant_api_key("test", Role::Admin, Some(tenant), cachet_server::now()).unwrap();
    let a = AuditEntry { ts: 0, actor: "test".into(), action: "api_key.create".into(), outcome: "ok".into(), ..Default::default() };
    store.insert_api_key(&k.record, &a).await.unwrap();
    store.close().await;
    k.key
}

/// Tenant `bank-a` stores secret `key.1` (KBS `bank-a/key/1`) releasable to measurement GOOD.
async fn put_secret(srv: &TestServer) {
    let key = tenant_key(&srv.dir, "bank-a").await;
    let r = srv
        .client
        .put(srv.at("/v1/admin/secrets/key.1"))
        .bearer_auth(&key)
        .json(&json!({"value": b64(SECRET.as_bytes()), "policy": policy(&GOOD)}))
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert!(s == 200 || s == 201, "{s} {v}");
}

/// A KBS client: one TEE key, one cookie jar entry.
struct KbsClient {
    sk: PrivateKey,
    x: String,
    y: String,
    cookie: Option<String>,
}

impl KbsClient {
    fn new() -> Self {
        let sk = PrivateKey::generate(&ECDH_P256).unwrap();
        let pk = sk.compute_public_key().unwrap();
        let p = pk.as_ref();
        Self { x: URL_SAFE_NO_PAD.encode(&p[1..33]), y: URL_SAFE_NO_PAD.encode(&p[33..65]), sk, cookie: None }
    }

    fn tee_pubkey(&self) -> TeePubKey {
        TeePubKey::EC { crv: "P-256".into(), alg: "ECDH-ES+A256KW".into(), x: self.x.clone(), y: self.y.clone() }
    }

    /// Trustee's runtime-data binding, canonicalised by hand (RFC 8785: sorted members, no spaces).
    fn report_data(&self, nonce: &str) -> [u8; 64] {
        let canon = format!(
            r#"{{"additional-evidence":"","nonce":"{nonce}","tee-pubkey":{{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"{}","y":"{}"}}}}"#,
            self.x, self.y
        );
        let mut rd = [0u8; 64];
        rd[..48].copy_from_slice(digest(&SHA384, canon.as_bytes()).as_ref());
        rd
    }

    async fn auth(&mut self, srv: &TestServer, tee: Tee) -> (u16, Value) {
        let req = Request { version: "0.4.0".into(), tee, extra_params: json!("") };
        let r = srv.client.post(srv.at("/kbs/v0/auth")).json(&req).send().await.unwrap();
        if let Some(c) = r.headers().get("set-cookie") {
            let c = c.to_str().unwrap();
            assert!(c.starts_with("kbs-session-id="), "{c}");
            self.cookie = Some(c.split(';').next().unwrap().to_string());
        }
        status_json(r).await
    }

    async fn attest(&self, srv: &TestServer, primary_evidence: Value, nonce: &str) -> (u16, Value) {
        let att = Attestation {
            init_data: None,
            runtime_data: RuntimeData { nonce: nonce.into(), tee_pubkey: self.tee_pubkey() },
            tee_evidence: CompositeEvidence { primary_evidence, additional_evidence: String::new() },
        };
        let mut r = srv.client.post(srv.at("/kbs/v0/attest")).json(&att);
        if let Some(c) = &self.cookie {
            r = r.header("cookie", c);
        }
        status_json(r.send().await.unwrap()).await
    }

    async fn resource(&self, srv: &TestServer, path: &str, bearer: Option<&str>) -> (u16, Value) {
        let mut r = srv.client.get(srv.at(&format!("/kbs/v0/resource/{path}")));
        if let Some(c) = &self.cookie {
            r = r.header("cookie", c);
        }
        if let Some(t) = bearer {
            r = r.bearer_auth(t);
        }
        status_json(r.send().await.unwrap()).await
    }

    /// Open a resource response as guest-components does (`decrypt_response`).
    fn decrypt(&self, body: &Value) -> Vec<u8> {
        let resp: Response = serde_json::from_value(body.clone()).expect("a kbs_types::Response");
        // Byte-compatible: the header as sent is the one kbs-types re-serialises.
        let sent = URL_SAFE_NO_PAD.decode(body["protected"].as_str().unwrap()).unwrap();
        assert_eq!(String::from_utf8(sent).unwrap(), serde_json::to_string(&resp.protected).unwrap());
        assert_eq!((resp.protected.alg.as_str(), resp.protected.enc.as_str()), ("ECDH-ES+A256KW", "A256GCM"));
        let epk = &resp.protected.other_fields["epk"];
        assert_eq!(epk["crv"], "P-256");
        let mut point = vec![4u8];
        point.extend(URL_SAFE_NO_PAD.decode(epk["x"].as_str().unwrap()).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(epk["y"].as_str().unwrap()).unwrap());
        let kek = agreement::agree(&self.sk, UnparsedPublicKey::new(&ECDH_P256, point), (), |z| {
            // Concat KDF (RFC 7518 4.6.2), SHA-256, one round, empty apu/apv.
            let alg = b"ECDH-ES+A256KW";
            let mut input = vec![0, 0, 0, 1];
            input.extend_from_slice(z);
            input.extend_from_slice(&(alg.len() as u32).to_be_bytes());
            input.extend_from_slice(alg);
            input.extend_from_slice(&[0; 8]);
            input.extend_from_slice(&256u32.to_be_bytes());
            Ok(digest(&SHA256, &input).as_ref().to_vec())
        })
        .unwrap();
        use aws_lc_rs::key_wrap::{KeyEncryptionKey, KeyWrap, AES_256};
        let mut cek = [0u8; 40];
        let cek = KeyEncryptionKey::new(&AES_256, &kek).unwrap().unwrap(&resp.encrypted_key, &mut cek).unwrap().to_vec();
        let aad = resp.protected.generate_aad().unwrap();
        use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).unwrap());
        let mut buf = resp.ciphertext.clone();
        buf.extend_from_slice(&resp.tag);
        let nonce = Nonce::try_assume_unique_for_key(&resp.iv).unwrap();
        key.open_in_place(nonce, Aad::from(&aad[..]), &mut buf).expect("AES-GCM opens with guest-components' AAD").to_vec()
    }
}

fn simulated(srv: &TestServer, report_data: &[u8; 64], measurement: [u8; 48]) -> Value {
    let sim = SimulatedTee::load_or_create(&srv.dir.join("simulated-tee")).unwrap();
    let report = sim.report(report_data, &ReportOptions { measurement, ..Default::default() }).unwrap();
    serde_json::from_slice(&report).unwrap()
}

fn assert_kbs_error(s: u16, v: &Value, status: u16, name: &str, detail_has: &str) {
    assert_eq!(s, status, "{v}");
    assert_eq!(v["type"], format!("{KBS_ERR}{name}"), "{v}");
    let detail = v["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(detail_has), "detail {detail:?} lacks {detail_has:?}");
    assert_eq!(v.as_object().map(|o| o.len()), Some(2), "only type and detail: {v}");
}

/// A client that authenticates, attests with the simulated TEE and returns its nonce and token.
async fn attested(srv: &TestServer, measurement: [u8; 48]) -> (KbsClient, String) {
    let mut c = KbsClient::new();
    let (s, v) = c.auth(srv, Tee::Sample).await;
    assert_eq!(s, 200, "{v}");
    let ch: Challenge = serde_json::from_value(v).unwrap();
    assert_eq!(STANDARD.decode(&ch.nonce).unwrap().len(), 32, "Trustee's nonce: base64 of 32 bytes");
    let ev = simulated(srv, &c.report_data(&ch.nonce), measurement);
    let (s, v) = c.attest(srv, ev, &ch.nonce).await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    (c, token)
}

#[tokio::test]
async fn a_trustee_client_attests_with_the_sample_tee_and_decrypts_the_resource() {
    let srv = start("kbs-e2e", |a| a.insecure_simulated_tee = true).await;
    put_secret(&srv).await;
    let (c, token) = attested(&srv, GOOD).await;

    // The token is Cachet's EAR token, bound to the nonce and carrying the TEE key.
    let claims = srv.verify_token(&token).await;
    assert_eq!(claims["cachet.freshness"], "nonce");
    let rd = URL_SAFE_NO_PAD.decode(claims["cachet.runtime_data"].as_str().unwrap()).unwrap();
    let jwk: Value = serde_json::from_slice(&rd).unwrap();
    assert_eq!(jwk, json!({"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": c.x, "y": c.y}));

    // Cookie: the resource comes back as a JWE that guest-components open.
    let (s, v) = c.resource(&srv, "bank-a/key/1", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(c.decrypt(&v), SECRET.as_bytes());

    // Bearer token, no cookie: the same.
    let bare = KbsClient { cookie: None, ..c };
    let (s, v) = bare.resource(&srv, "bank-a/key/1", Some(&token)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(bare.decrypt(&v), SECRET.as_bytes());

    // The release is in the owner's audit log, decided by the native path.
    let key = tenant_key(&srv.dir, "bank-a").await;
    let r = srv.client.get(srv.at("/v1/admin/secret-releases")).bearer_auth(&key).send().await.unwrap();
    let (_, log) = status_json(r).await;
    let released = log
        .as_array()
        .or_else(|| log["entries"].as_array())
        .unwrap()
        .iter()
        .filter(|e| {
            let detail: Value = serde_json::from_str(e["detail"].as_str().unwrap_or("null")).unwrap_or_default();
            e["action"] == "secret.release" && e["outcome"] == "released" && detail["secret"] == "bank-a/key.1"
        })
        .count();
    assert_eq!(released, 2, "{log}");

    // A name with no secret: 404 in Trustee's shape; a malformed path too.
    let (s, v) = bare.resource(&srv, "bank-a/key/2", Some(&token)).await;
    assert_kbs_error(s, &v, 404, "InvalidRequestPath", "no_such_secret");
    let (s, v) = bare.resource(&srv, "bank-a/a.b/1", Some(&token)).await;
    assert_kbs_error(s, &v, 404, "InvalidRequestPath", "<type>");
    // A forged bearer token is refused.
    let (s, v) = bare.resource(&srv, "bank-a/key/1", Some(&format!("{token}x"))).await;
    assert_kbs_error(s, &v, 401, "TokenVerifierError", "token_refused");
}

#[tokio::test]
async fn a_second_session_cannot_read_the_first_sessions_resource() {
    let srv = start("kbs-sessions", |a| a.insecure_simulated_tee = true).await;
    put_secret(&srv).await;
    let (_first, _token) = attested(&srv, GOOD).await;
    // Another client with its own session, authenticated but not attested.
    let mut second = KbsClient::new();
    assert_eq!(second.auth(&srv, Tee::Sample).await.0, 200);
    let (s, v) = second.resource(&srv, "bank-a/key/1", None).await;
    assert_kbs_error(s, &v, 401, "TokenNotFound", "has not attested");
    // No credential at all, or a cookie the server never issued.
    let none = KbsClient::new();
    let (s, v) = none.resource(&srv, "bank-a/key/1", None).await;
    assert_kbs_error(s, &v, 401, "TokenNotFound", "attest first");
    let forged = KbsClient { cookie: Some("kbs-session-id=00112233445566778899aabbccddeeff".into()), ..KbsClient::new() };
    let (s, v) = forged.resource(&srv, "bank-a/key/1", None).await;
    assert_kbs_error(s, &v, 401, "TokenNotFound", "unknown KBS session");
    let (s, v) = forged.attest(&srv, json!({}), "AAAA").await;
    assert_kbs_error(s, &v, 401, "AttestationError", "unknown KBS session");
}

#[tokio::test]
async fn a_resource_the_release_policy_refuses_is_policy_deny() {
    let srv = start("kbs-deny", |a| a.insecure_simulated_tee = true).await;
    put_secret(&srv).await;
    let (c, _) = attested(&srv, BAD).await;
    let (s, v) = c.resource(&srv, "bank-a/key/1", None).await;
    assert_kbs_error(s, &v, 401, "PolicyDeny", "policy_refused");
}

#[tokio::test]
async fn evidence_that_does_not_bind_trustees_runtime_data_is_refused() {
    let srv = start("kbs-binding", |a| a.insecure_simulated_tee = true).await;
    let mut c = KbsClient::new();
    let (_, v) = c.auth(&srv, Tee::Sample).await;
    let nonce = v["nonce"].as_str().unwrap().to_string();
    // Bound to another TEE key than the one sent.
    let other = KbsClient::new();
    let ev = simulated(&srv, &other.report_data(&nonce), GOOD);
    let (s, v) = c.attest(&srv, ev, &nonce).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "freshness_binding_failed");
    // The nonce is spent with the session: the right evidence now is refused too.
    let ev = simulated(&srv, &c.report_data(&nonce), GOOD);
    let (s, v) = c.attest(&srv, ev, &nonce).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "unknown KBS session");

    // A nonce other than the session's.
    let mut d = KbsClient::new();
    let (_, v) = d.auth(&srv, Tee::Sample).await;
    let nonce = v["nonce"].as_str().unwrap().to_string();
    let ev = simulated(&srv, &d.report_data("AAAAAAAAAAAA"), GOOD);
    let (s, v) = d.attest(&srv, ev, "AAAAAAAAAAAA").await;
    assert_kbs_error(s, &v, 401, "AttestationError", "not the nonce of this session");
    // Trustee's unsigned sample evidence is not accepted as the simulated TEE.
    let (s, v) = d.attest(&srv, json!({"svn": "1", "report_data": b64(&d.report_data(&nonce)[..48])}), &nonce).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "unsigned sample evidence");
}

#[tokio::test]
async fn a_tdx_quote_whose_binding_cannot_hold_is_refused_in_trustees_shape() {
    let srv = start("kbs-tdx", |_| {}).await;
    let case = cases().into_iter().find(|c| c.tee == "tdx").expect("a TDX vector");
    let mut c = KbsClient::new();
    let (s, v) = c.auth(&srv, Tee::Tdx).await;
    assert_eq!(s, 200, "{v}");
    let nonce = v["nonce"].as_str().unwrap().to_string();
    let ev = json!({"cc_eventlog": null, "quote": b64(&case.evidence_bytes())});
    let (s, v) = c.attest(&srv, ev, &nonce).await;
    // The quote's report data is not this session's binding (and its
    // collateral is not in this offline server's cache): refused either way.
    assert_kbs_error(s, &v, 401, "AttestationError", "");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("verification_failed") || detail.contains("freshness_binding_failed"), "{detail}");
    // Its nonce is spent with the session.
    let (s, v) = c.attest(&srv, json!({"quote": b64(&case.evidence_bytes())}), &nonce).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "unknown KBS session");
}

#[tokio::test]
async fn sample_without_insecure_simulated_tee_unknown_versions_and_expired_sessions_are_refused() {
    let srv = start("kbs-nosim", |a| a.nonce_ttl = Some(1)).await;
    let mut c = KbsClient::new();
    let (s, v) = c.auth(&srv, Tee::Sample).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "--insecure-simulated-tee");
    assert!(c.cookie.is_none(), "no session for a refused TEE");
    let (s, v) = c.auth(&srv, Tee::Snp).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "not supported");
    let r =
        srv.client.post(srv.at("/kbs/v0/auth")).json(&json!({"version": "0.1.0", "tee": "tdx", "extra-params": ""})).send().await.unwrap();
    let (s, v) = status_json(r).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "version mismatch");
    let r = srv.client.post(srv.at("/kbs/v0/auth")).body("{not json").send().await.unwrap();
    let (s, v) = status_json(r).await;
    assert_kbs_error(s, &v, 401, "SerdeError", "Request");

    // An expired session (nonce_ttl 1 s) is refused, and forgotten.
    let (s, v) = c.auth(&srv, Tee::Tdx).await;
    assert_eq!(s, 200, "{v}");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (s, v) = c.attest(&srv, json!({"quote": "AAAA"}), v["nonce"].as_str().unwrap()).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "expired");
    let (s, v) = c.attest(&srv, json!({"quote": "AAAA"}), "AAAA").await;
    assert_kbs_error(s, &v, 401, "AttestationError", "unknown KBS session");
}
