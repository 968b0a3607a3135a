//! The Trustee KBS protocol (`/kbs/v0/...`) over real HTTP on loopback, with
//! a client written here as Trustee's guest-components do it: the
//! `kbs-types` wire types, an EC P-256 TEE key exported as a JWK with
//! `alg: ECDH-ES+A256KW`, the report data = SHA-384 of the RFC 8785 JSON of
//! `{"additional-evidence", "nonce", "tee-pubkey"}` zero-padded to 64 bytes,
//! and the resource JWE opened with the AAD `kbs_types::ProtectedHeader::
//! generate_aad` re-serialises (ECDH-ES concat KDF, AES key unwrap and
//! AES-256-GCM written here with aws-lc-rs, not Cachet's code).

mod common;

#[path = "../../cachet-endorse/tests/common/recorded.rs"]
mod recorded;

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::digest::{digest, SHA256, SHA384};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use cachet_attester::simulated::{ReportOptions, SimulatedTee};
use cachet_endorse::Cache;
use cachet_server::auth::{new_tenant_api_key, Role};
use cachet_server::endorse::StoreCache;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tdx_quote_whose_binding_cannot_hold_is_refused_in_trustees_shape() {
    // Its recorded Intel collateral in the service's cache, verified as of its instant:
    // the quote verifies, and is refused for Trustee's binding alone.
    let case = case("tdx-automata-2510");
    let srv = case_server(&case, Some("tdx/automata/collateral_2510.derived.json")).await;
    let mut c = KbsClient::new();
    let (s, v) = c.auth(&srv, Tee::Tdx).await;
    assert_eq!(s, 200, "{v}");
    let nonce = v["nonce"].as_str().unwrap().to_string();
    let ev = json!({"cc_eventlog": null, "quote": b64(&case.evidence_bytes())});
    let (s, v) = c.attest(&srv, ev, &nonce).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "freshness_binding_failed");
    assert!(v["detail"].as_str().unwrap().contains(&hex::encode(c.report_data(&nonce))), "{v}");
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
    let (s, v) = c.auth(&srv, Tee::Cca).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "not supported");
    let (s, v) = c.auth(&srv, Tee::Csv).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "supported: tdx, sgx, snp, az-snp-vtpm, az-tdx-vtpm, nvidia");
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

// ---- Trustee's other TEEs, with the real evidence of testdata/vectors ----

fn case(id: &str) -> Case {
    cases().into_iter().find(|c| c.id == id).expect("case")
}

/// Seed the service's endorsement cache of `dir` for case `c`: the recorded
/// Intel collateral bundle `intel`, or what the service would have fetched
/// for the evidence, built from the case's recorded vendor files (as
/// `common::seed_from_case_files` does for every server test).
async fn seed(dir: &Path, c: &Case, evidence: &[u8], intel: Option<&str>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(dir).await.expect("store"));
    let cache = StoreCache(store.clone());
    if let Some(rel) = intel {
        for f in recorded::intel_bundle(rel) {
            cache.put(&f.resource.key(), &f).await;
        }
    }
    store.close().await;
    seed_from_case_files(dir, c, evidence).await;
    let store = SqliteStore::open_dir(dir).await.expect("store");
    assert!(!store.list_endorsements().await.unwrap().is_empty(), "{}: something seeded", c.id);
    store.close().await;
}

/// An offline server whose cache holds case `c`'s endorsements and whose
/// verification instant is the case's `verify_at`.
async fn case_server(c: &Case, intel: Option<&str>) -> TestServer {
    let dir = temp_dir(&format!("kbs-{}", c.id));
    seed(&dir, c, &c.evidence_bytes(), intel).await;
    let mut a = args(&dir);
    a.fixed_verification_time = c.verify_at.clone();
    assert!(a.offline, "tests fetch nothing");
    let server = cachet_server::start(a.resolve().expect("config")).await.expect("server starts");
    TestServer { url: server.url.clone(), server: Some(server), dir, client: http_client() }
}

/// A raw SEV-SNP report as Trustee's `SnpEvidence.attestation_report`: the
/// `sev` crate's `AttestationReport` as serde_json writes it, each field read
/// here at its offset in AMD's ATTESTATION_REPORT table (little-endian
/// integers, byte arrays as arrays of numbers, TCB versions in Turin's layout
/// when the CPUID family is 0x1A, as the `sev` crate decodes them).
fn trustee_snp_report(raw: &[u8]) -> Value {
    assert_eq!(raw.len(), 1184);
    let u32_at = |o: usize| u32::from_le_bytes(raw[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(raw[o..o + 8].try_into().unwrap());
    let arr = |o: usize, n: usize| json!(raw[o..o + n].to_vec());
    let version = u32_at(0);
    let (v3, v5) = (version >= 3, version >= 5);
    let turin = v3 && raw[0x188] == 0x1a;
    let tcb = |o: usize| {
        let b = &raw[o..o + 8];
        if turin {
            json!({"fmc": b[0], "bootloader": b[1], "tee": b[2], "snp": b[3], "microcode": b[7]})
        } else {
            json!({"fmc": null, "bootloader": b[0], "tee": b[1], "snp": b[6], "microcode": b[7]})
        }
    };
    let fw = |o: usize| json!({"major": raw[o + 2], "minor": raw[o + 1], "build": raw[o]});
    json!({
        "version": version,
        "guest_svn": u32_at(0x04),
        "policy": u64_at(0x08),
        "family_id": arr(0x10, 16),
        "image_id": arr(0x20, 16),
        "vmpl": u32_at(0x30),
        "sig_algo": u32_at(0x34),
        "current_tcb": tcb(0x38),
        "plat_info": u64_at(0x40),
        "key_info": u32_at(0x48),
        "report_data": arr(0x50, 64),
        "measurement": arr(0x90, 48),
        "host_data": arr(0xc0, 32),
        "id_key_digest": arr(0xe0, 48),
        "author_key_digest": arr(0x110, 48),
        "report_id": arr(0x140, 32),
        "report_id_ma": arr(0x160, 32),
        "reported_tcb": tcb(0x180),
        "cpuid_fam_id": v3.then_some(raw[0x188]),
        "cpuid_mod_id": v3.then_some(raw[0x189]),
        "cpuid_step": v3.then_some(raw[0x18a]),
        "chip_id": arr(0x1a0, 64),
        "committed_tcb": tcb(0x1e0),
        "current": fw(0x1e8),
        "committed": fw(0x1ec),
        "launch_tcb": tcb(0x1f0),
        "launch_mit_vector": v5.then(|| u64_at(0x1f8)),
        "current_mit_vector": v5.then(|| u64_at(0x200)),
        "signature": {"r": arr(0x2a0, 72), "s": arr(0x2e8, 72)},
    })
}

/// Auth with `tee`, then attest `primary`: the answer.
async fn auth_and_attest(srv: &TestServer, tee: Tee, primary: impl FnOnce(&KbsClient, &str) -> Value) -> (KbsClient, String, u16, Value) {
    let mut c = KbsClient::new();
    let (s, v) = c.auth(srv, tee).await;
    assert_eq!(s, 200, "{v}");
    let nonce = v["nonce"].as_str().unwrap().to_string();
    let ev = primary(&c, &nonce);
    let (s, v) = c.attest(srv, ev, &nonce).await;
    (c, nonce, s, v)
}

/// Real SNP reports (Milan v2 and v3, Genoa v5, Turin v5 with its FMC TCB
/// layout) sent as Trustee's SnpEvidence: the service rebuilds the raw
/// report from the JSON fields and the verifier accepts its signature (VCEK
/// from the service's cache); the recorded report data cannot be this
/// session's binding, so the refusal is precisely the binding, naming the
/// value Trustee's binding needs. A field changed in the JSON is refused by
/// the report signature instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trustee_snp_evidence_is_rebuilt_verified_and_refused_only_for_its_binding() {
    for id in ["snp-virtee-milan", "snp-oak-milan-v3", "snp-oak-genoa", "snp-oak-turin"] {
        let c = case(id);
        let raw = c.evidence_bytes();
        let report = trustee_snp_report(&raw);
        assert_eq!(cachet_server::kbs::snp_report_bytes(&report).unwrap(), raw, "{id}: the server rebuilds the exact bytes");
        let srv = case_server(&c, None).await;

        let (client, nonce, s, v) = auth_and_attest(&srv, Tee::Snp, |_, _| json!({"attestation_report": report, "cert_chain": null})).await;
        assert_kbs_error(s, &v, 401, "AttestationError", "freshness_binding_failed");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains(&hex::encode(client.report_data(&nonce))), "{id}: names the binding Trustee needs: {detail}");

        // A field of the report changed: the signature no longer verifies.
        let mut forged = report.clone();
        forged["measurement"][0] = json!(raw[0x90] ^ 1);
        let (_, _, s, v) = auth_and_attest(&srv, Tee::Snp, |_, _| json!({"attestation_report": forged})).await;
        assert_kbs_error(s, &v, 401, "AttestationError", "verification_failed");
        assert!(v["detail"].as_str().unwrap().contains("Report signature"), "{id}: {v}");
    }

    // The VCEK sent in Trustee's cert_chain (the sev crate's CertTableEntry) is read as a hint.
    let c = case("snp-virtee-milan");
    let srv = case_server(&c, None).await;
    let vcek = std::fs::read(vectors_dir().join("sev-snp/virtee-sev/vcek_milan.der")).unwrap();
    let report = trustee_snp_report(&c.evidence_bytes());
    let chain = json!([{"cert_type": "VCEK", "data": vcek}, {"cert_type": {"OTHER": "00000000-0000-0000-0000-000000000001"}, "data": [1]}]);
    let (_, _, s, v) = auth_and_attest(&srv, Tee::Snp, |_, _| json!({"attestation_report": report, "cert_chain": chain})).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "freshness_binding_failed");
    // Malformed SnpEvidence: refused before anything is verified, saying what is wrong.
    let mut old = report.clone();
    old["version"] = json!(1);
    let (_, _, s, v) = auth_and_attest(&srv, Tee::Snp, |_, _| json!({"attestation_report": old})).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "versions 2 to 5");
    let mut short = report.clone();
    short["chip_id"] = json!([0, 1]);
    let (_, _, s, v) = auth_and_attest(&srv, Tee::Snp, |_, _| json!({"attestation_report": short})).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "chip_id is not an array of 64 bytes");
    let (_, _, s, v) = auth_and_attest(&srv, Tee::Snp, |_, _| json!({"quote": b64(&c.evidence_bytes())})).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "SnpEvidence");
}

/// Trustee's Azure vTPM evidence (the az-snp-vtpm and az-tdx-vtpm files of
/// testdata/vectors are Trustee's own JSON, versions 0 to 2): verified as
/// they are (AMD chain / Intel collateral from the service's cache), then
/// refused for Trustee's binding (the vTPM quote's nonce must be SHA-384 of
/// the canonical runtime data), naming the nonce the quote holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trustee_azure_vtpm_evidence_is_verified_and_refused_only_for_its_binding() {
    for (id, tee, intel, quote_nonce) in [
        ("az-snp-vtpm-v0", Tee::AzSnpVtpm, None, hex::encode("challenge")),
        (
            "az-snp-vtpm-v2",
            Tee::AzSnpVtpm,
            None,
            "982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9aa398f647caa2338748cd0fd9f5f819ef".into(),
        ),
        ("az-snp-vtpm-genoa", Tee::AzSnpVtpm, None, String::new()),
        ("az-tdx-vtpm-v0", Tee::AzTdxVtpm, Some("tdx/automata/collateral_2507.derived.json"), String::new()),
        ("az-tdx-vtpm-v1", Tee::AzTdxVtpm, Some("tdx/automata/collateral_2507.derived.json"), String::new()),
    ] {
        let c = case(id);
        let doc: Value = serde_json::from_slice(&c.evidence_bytes()).unwrap();
        let o = doc.as_object().unwrap();
        assert!(o.contains_key("hcl_report") || o.contains_key("report"), "{id}: Trustee's JSON");
        assert!(o.contains_key("tpm_quote") || o.contains_key("quote"), "{id}: Trustee's JSON");
        let srv = case_server(&c, intel).await;
        let (client, nonce, s, v) = auth_and_attest(&srv, tee, |_, _| doc.clone()).await;
        assert_kbs_error(s, &v, 401, "AttestationError", "freshness_binding_failed");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains("extraData"), "{id}: {detail}");
        assert!(detail.contains(&hex::encode(&client.report_data(&nonce)[..48])), "{id}: names the hash Trustee binds: {detail}");
        if !quote_nonce.is_empty() {
            assert!(detail.contains(&quote_nonce), "{id}: names the quote's nonce: {detail}");
        }
    }
    // Evidence of the other Azure family than the session's: refused by the verifier.
    let c = case("az-snp-vtpm-v0");
    let srv = case_server(&c, None).await;
    let doc: Value = serde_json::from_slice(&c.evidence_bytes()).unwrap();
    let (_, _, s, v) = auth_and_attest(&srv, Tee::AzTdxVtpm, |_, _| doc.clone()).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "verification_failed");
}

/// Trustee's `nvidia` evidence (`{device_evidence_list: [{arch, uuid,
/// evidence, certificate}]}`, written here from NVIDIA's recorded H100 report
/// and its device chain) is read as Cachet's per-GPU set, verified to the
/// pinned NVIDIA root, and refused precisely for Trustee's binding (the SPDM
/// request nonce must be the first 32 bytes of the runtime data's SHA-384):
/// the recorded report was made for another nonce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trustee_nvidia_evidence_is_verified_and_refused_only_for_its_binding() {
    let c = case("nvgpu-h100-head");
    let report = cachet_verify::encoding::decode_evidence(&c.evidence_bytes()).1;
    let chain = std::fs::read(vectors_dir().join("nvidia/nvtrust-head-partial/hopperCertChain.txt")).unwrap();
    let doc = json!({"device_evidence_list": [{
        "arch": "HOPPER",
        "uuid": "GPU-00000000-0000-0000-0000-000000000000",
        "evidence": STANDARD.encode(&report),
        "certificate": STANDARD.encode(&chain),
    }]});
    // Nothing to seed: the device chain comes with the evidence, and this report's RIMs are not recorded.
    let dir = temp_dir("kbs-nvidia");
    let mut a = args(&dir);
    a.fixed_verification_time = c.verify_at.clone();
    let server = cachet_server::start(a.resolve().expect("config")).await.expect("server starts");
    let srv = TestServer { url: server.url.clone(), server: Some(server), dir, client: http_client() };
    let (client, nonce, s, v) = auth_and_attest(&srv, Tee::Nvidia, |_, _| doc.clone()).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "freshness_binding_failed");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("SPDM request nonce"), "{detail}");
    assert!(detail.contains(&hex::encode(&client.report_data(&nonce)[..32])), "names the nonce Trustee binds: {detail}");
    // The same report with another device's chain does not verify at all.
    let other = std::fs::read(vectors_dir().join("nvidia/nvtrust-2023-full/gpuAkCertChain.txt")).unwrap();
    let mut wrong = doc.clone();
    wrong["device_evidence_list"][0]["certificate"] = json!(STANDARD.encode(&other));
    let (_, _, s, v) = auth_and_attest(&srv, Tee::Nvidia, |_, _| wrong.clone()).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "verification_failed");
    // Not Trustee's shape: named.
    let (_, _, s, v) = auth_and_attest(&srv, Tee::Nvidia, |_, _| json!({"evidence": "x"})).await;
    assert_kbs_error(s, &v, 401, "AttestationError", "device_evidence_list");
}
