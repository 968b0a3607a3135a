//! The admin API: every route (taken from the served OpenAPI document, so a
//! new route is covered automatically) is refused without a key, with a bad
//! or revoked key, and with a reader key where admin is needed; key
//! rotation publishes before use and keeps the old key until its tokens
//! expire; revocation unpublishes at once; every change is in the audit
//! log, whose hash chain detects an edited row. Every route is also called
//! with a tenant key and another tenant's names: operator routes refuse it
//! (`operator_only`), the others act on its own tenant only and leave the
//! other tenant's data as it was. API keys expire (`api_key_expired`).

mod common;

use cachet_server::auth::Role;
use cachet_store::{SqliteStore, Store};
use common::*;
use serde_json::{json, Value};

/// Every operation of the OpenAPI document that declares an API-key role:
/// (method, path, role). Every `/v1/admin` route must declare one.
async fn admin_operations(srv: &TestServer) -> Vec<(String, String, String)> {
    let (s, doc) = srv.get("/openapi.json").await;
    assert_eq!(s, 200);
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let role = op["security"][0]["api_key"][0].as_str().map(str::to_string);
            match role {
                Some(role) => ops.push((method.to_uppercase(), path.clone(), role)),
                None => assert!(!path.starts_with("/v1/admin"), "{method} {path}: admin route without a declared role"),
            }
        }
    }
    ops
}

/// The path with every `{parameter}` replaced by a value that names nothing.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map(|c| open + c + 1).unwrap_or(rest.len());
        out.push_str("0000000000000000");
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// Whether a response came from past the role guard: not 401, and not the
/// guard's role refusal (a route may still refuse for its own reasons, e.g.
/// a key that acts for no tenant, or a made-up id that names nothing).
fn passes_role_guard(status: u16, body: &Value) -> bool {
    let role_refusal = status == 403 && body["error"]["message"].as_str().unwrap_or("").contains(" role");
    status != 401 && !role_refusal
}

async fn call(srv: &TestServer, method: &str, path: &str, key: Option<&str>) -> (u16, Value) {
    // Path parameters get a value that names nothing: the guard must answer first.
    let path = concrete(path);
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = srv.client.request(m, srv.at(&path));
    if matches!(method, "POST" | "PUT" | "PATCH") {
        req = req.json(&json!({"name": "x", "role": "reader"}));
    }
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    status_json(req.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_needs_a_key_with_the_right_role() {
    let srv = start("authz", |_| {}).await;
    let ops = admin_operations(&srv).await;
    assert!(ops.iter().filter(|o| o.1.starts_with("/v1/admin")).count() >= 10, "{ops:?}");
    assert!(ops.iter().any(|o| o.2 == "admin") && ops.iter().any(|o| o.2 == "reader"));
    let reader = srv.api_key(Role::Reader).await;
    let admin = srv.api_key(Role::Admin).await;
    let revoked = srv.api_key(Role::Admin).await;
    let revoked_id = revoked.split('_').nth(1).unwrap().to_string();
    let (s, _) = srv
        .client
        .delete(srv.at(&format!("/v1/admin/api-keys/{revoked_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(s, 204);
    let forged = format!("cachet_{}_{}", admin.split('_').nth(1).unwrap(), "0".repeat(64));

    for (method, path, role) in &ops {
        for (label, key) in
            [("no key", None), ("garbage", Some("nope")), ("forged secret", Some(forged.as_str())), ("revoked", Some(revoked.as_str()))]
        {
            let (s, v) = call(&srv, method, path, key).await;
            assert_eq!(s, 401, "{method} {path} with {label}: {v}");
            assert_eq!(v["error"]["code"], "unauthorized");
        }
        let (s, v) = call(&srv, method, path, Some(&reader)).await;
        if role == "admin" {
            assert_eq!(s, 403, "{method} {path} with a reader key: {v}");
            assert_eq!(v["error"]["code"], "forbidden");
        } else if role == "reader" {
            assert!(passes_role_guard(s, &v), "{method} {path} with a reader key: {s} {v}");
        }
    }
    // Admin keys pass the guard everywhere (404 for the made-up ids).
    for (method, path, _) in ops.iter().filter(|o| matches!(o.2.as_str(), "admin" | "reader")) {
        let (s, v) = call(&srv, method, path, Some(&admin)).await;
        assert!(passes_role_guard(s, &v), "{method} {path} with an admin key: {s} {v}");
    }
}

/// What tenant bank-b holds, as bank-b and the operator see it.
async fn bank_b_state(srv: &TestServer, b: &str, operator: &str) -> Vec<(String, u16, Value)> {
    let mut out = Vec::new();
    let paths = [
        (b, "/v1/admin/secrets"),
        (b, "/v1/admin/secrets/model-key"),
        (b, "/v1/admin/api-keys"),
        (b, "/v1/admin/reference-values"),
        (b, "/v1/admin/reference-values/approved"),
        (b, "/v1/admin/secret-releases?limit=1000"),
        (operator, "/v1/admin/api-keys"),
        (operator, "/v1/admin/reference-values"),
        (operator, "/v1/admin/policies"),
        (operator, "/v1/admin/signing-keys"),
    ];
    for (key, path) in paths {
        let (s, v) = status_json(srv.client.get(srv.at(path)).bearer_auth(key).send().await.unwrap()).await;
        out.push((path.to_string(), s, v));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_confines_a_tenant_key_to_its_own_tenant() {
    let srv = start("tenants", |a| a.insecure_simulated_tee = true).await;
    let ops = admin_operations(&srv).await;
    let operator = srv.api_key(Role::Admin).await;
    let (a_admin, a_reader) = (
        create_tenant_api_key(&srv.dir, Some("bank-a"), Role::Admin).await,
        create_tenant_api_key(&srv.dir, Some("bank-a"), Role::Reader).await,
    );
    let b_admin = create_tenant_api_key(&srv.dir, Some("bank-b"), Role::Admin).await;
    let b_reader = create_tenant_api_key(&srv.dir, Some("bank-b"), Role::Reader).await;
    let b_reader_id = b_reader.split('_').nth(1).unwrap().to_string();
    // bank-b's secret, reference set and keys, each with a marker bank-a must never see.
    const B_POLICY_MARKER: &str = "bank-b-only-release-rule";
    let b_value = "bb".repeat(48);
    let policy = |marker: &str| format!("package release\nimport rego.v1\n# {marker}\nstatus := \"affirming\" if input.tee == \"sim\"\n");
    let send = |m: reqwest::Method, path: &str, key: &str, body: Option<Value>| {
        let mut r = srv.client.request(m, srv.at(path)).bearer_auth(key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move { status_json(r.send().await.unwrap()).await }
    };
    let (s, v) = send(
        reqwest::Method::PUT,
        "/v1/admin/secrets/model-key",
        &b_admin,
        Some(json!({"value": b64(b"bank-b value"), "policy": policy(B_POLICY_MARKER)})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = send(reqwest::Method::PUT, "/v1/admin/reference-values/approved", &b_admin, Some(json!({"values": [b_value]}))).await;
    assert_eq!((s, v["owner"].as_str()), (200, Some("bank-b")), "{v}");
    let (_, kids) = send(reqwest::Method::GET, "/v1/admin/signing-keys", &operator, None).await;
    let kid = kids[0]["kid"].as_str().unwrap().to_string();
    let before = bank_b_state(&srv, &b_admin, &operator).await;

    // Every route, with bank-b's names in the path, and a body that would act on bank-b.
    let statement = json!({"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "x", "digest": {"sha256": "ab".repeat(32)}}],
        "predicateType": "https://slsa.dev/provenance/v1", "predicate": {}});
    let (_, doc) = srv.get("/openapi.json").await;
    let mut exercised = 0;
    for (method, path, role) in &ops {
        // Declared in the document: `"operator"` beside the role.
        let scopes = &doc["paths"][path.as_str()][method.to_lowercase()]["security"][0]["api_key"];
        let operator_only = scopes.as_array().unwrap().iter().any(|s| s == "operator");
        let concrete = path
            .replace("{name}", if path.contains("reference-values") { "approved" } else { "model-key" })
            .replace("{id}", &b_reader_id)
            .replace("{kid}", &kid);
        let body = match (method.as_str(), path.as_str()) {
            ("POST", "/v1/admin/api-keys") => json!({"name": "stolen", "role": "admin", "tenant": "bank-b"}),
            ("PUT", "/v1/admin/secrets/{name}") => json!({"value": b64(b"bank-a value"), "policy": policy("bank-a")}),
            ("PUT", "/v1/admin/reference-values/{name}") => json!({"values": ["aa".repeat(48)]}),
            ("POST", "/v1/admin/reference-values/{name}/import") => json!({"provenance": statement.to_string()}),
            ("PUT", "/v1/admin/policies/{name}") => {
                json!({"policy": "package p\nimport rego.v1\ntees := {\"sim\"}\nstatus := \"affirming\""})
            }
            ("POST", "/v1/admin/policies/{name}/evaluate") => json!({"tee": "sim", "evidence": b64(b"x")}),
            _ => json!({}),
        };
        for key in [&a_admin, &a_reader] {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let with_body = matches!(method.as_str(), "POST" | "PUT" | "PATCH").then(|| body.clone());
            let (s, v) = send(m, &concrete, key, with_body).await;
            let text = v.to_string();
            for secret in [B_POLICY_MARKER, b_value.as_str(), b_reader_id.as_str(), b_admin.split('_').nth(1).unwrap()] {
                assert!(!text.contains(secret), "{method} {concrete} shows bank-a something of bank-b: {text}");
            }
            if operator_only && (key == &a_admin || role == "reader") {
                assert_eq!((s, v["error"]["code"].as_str()), (403, Some("operator_only")), "{method} {concrete}: {v}");
            } else if operator_only {
                assert_eq!(s, 403, "{method} {concrete}: {v}");
            } else if key == &a_admin || role == "reader" {
                assert!(passes_role_guard(s, &v), "{method} {concrete}: {s} {v}");
                exercised += 1;
            }
            // The refusals that name the cross-tenant attempt.
            if key == &a_admin {
                match (method.as_str(), path.as_str()) {
                    ("POST", "/v1/admin/api-keys") => assert_eq!((s, v["error"]["code"].as_str()), (403, Some("tenant_mismatch")), "{v}"),
                    ("DELETE", "/v1/admin/api-keys/{id}") => assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}"),
                    ("PUT", "/v1/admin/reference-values/{name}") => assert_eq!((s, v["owner"].as_str()), (200, Some("bank-a")), "{v}"),
                    _ => {}
                }
            }
        }
    }
    assert!(exercised >= 10, "tenant-scoped routes exercised: {exercised}");
    // Sharing a set is the operator's: a tenant asking is refused.
    let (s, v) = send(
        reqwest::Method::PUT,
        "/v1/admin/reference-values/approved",
        &a_admin,
        Some(json!({"values": ["cc"], "shared_with": ["bank-b"]})),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("operator_only")), "{v}");
    // A tenant key cannot mint an operator key either: its tenant is forced.
    let (s, v) = send(reqwest::Method::POST, "/v1/admin/api-keys", &a_admin, Some(json!({"name": "mine", "role": "admin"}))).await;
    assert_eq!((s, v["tenant"].as_str()), (201, Some("bank-a")), "{v}");
    let minted = v["key"].as_str().unwrap().to_string();
    assert_eq!(send(reqwest::Method::GET, "/v1/admin/audit", &minted, None).await.1["error"]["code"], "operator_only");
    // bank-b's data, keys and the operator's are as they were (bank-a's new key aside).
    let mut after = bank_b_state(&srv, &b_admin, &operator).await;
    let operator_keys = &mut after[6];
    assert_eq!(operator_keys.0, "/v1/admin/api-keys");
    operator_keys.2.as_array_mut().unwrap().retain(|k| k["id"] != minted.split('_').nth(1).unwrap());
    assert_eq!(before, after);
    // bank-b's keys still work.
    assert_eq!(send(reqwest::Method::GET, "/v1/admin/secrets", &b_reader, None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_expire_with_their_own_code_and_new_keys_are_never_cached() {
    let srv = start("expiry", |_| {}).await;
    let operator = srv.api_key(Role::Admin).await;
    let create = |key: &str, body: Value| srv.client.post(srv.at("/v1/admin/api-keys")).bearer_auth(key).json(&body).send();
    let soon = time::OffsetDateTime::from_unix_timestamp(cachet_server::now() + 2)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = create(&operator, json!({"name": "short", "role": "admin", "tenant": "bank-a", "expires": soon})).await.unwrap();
    assert_eq!(r.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"), "a new key is never cached");
    let (s, short) = status_json(r).await;
    assert_eq!(s, 201, "{short}");
    let short_key = short["key"].as_str().unwrap().to_string();
    let expires_at = short["expires_at"].as_i64().unwrap();
    // A key with an expiry makes keys that expire no later, by default and when asked.
    let (s, child) = status_json(create(&short_key, json!({"name": "child", "role": "reader"})).await.unwrap()).await;
    assert_eq!((s, child["expires_at"].as_i64(), child["tenant"].as_str()), (201, Some(expires_at), Some("bank-a")), "{child}");
    let (s, v) =
        status_json(create(&short_key, json!({"name": "longer", "role": "reader", "expires": "2100-01-01T00:00:00Z"})).await.unwrap())
            .await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("expiry_not_allowed")), "{v}");
    // An expiry in the past, or not a time, is refused.
    for bad in ["2000-01-01T00:00:00Z", "soon"] {
        let (s, v) = status_json(create(&operator, json!({"name": "x", "role": "reader", "expires": bad})).await.unwrap()).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_request")), "{bad}: {v}");
    }
    let srv = &srv;
    let listed =
        |key: String| async move { status_json(srv.client.get(srv.at("/v1/admin/api-keys")).bearer_auth(key).send().await.unwrap()).await };
    let (s, list) = listed(short_key.clone()).await;
    assert_eq!(s, 200);
    assert!(list.as_array().unwrap().iter().all(|k| k["tenant"] == "bank-a" && k["expires_at"] == expires_at), "{list}");
    // After the expiry: refused with its own code, also for the child.
    tokio::time::sleep(std::time::Duration::from_millis((expires_at - cachet_server::now() + 1).max(0) as u64 * 1000 + 100)).await;
    for key in [short_key, child["key"].as_str().unwrap().to_string()] {
        let (s, v) = listed(key).await;
        assert_eq!((s, v["error"]["code"].as_str()), (401, Some("api_key_expired")), "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("expired at"), "{v}");
    }
    assert_eq!(listed(operator).await.0, 200, "a key without expiry still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_publishes_before_use_and_keeps_the_old_key_until_its_tokens_expire() {
    let srv = start("rotate", |a| {
        a.allow_verification_time = true;
        a.key_publish_lead = Some(2);
        a.token_ttl = Some(2);
        a.clock_skew = Some(1);
    })
    .await;
    let admin = srv.api_key(Role::Admin).await;
    let c = cases().into_iter().find(|c| c.expect == "accept" && c.tee == "sgx").unwrap();
    let attest = || async {
        let endorsements: Vec<Value> = c.endorsement_files().iter().map(|e| json!({"data": b64(&e.bytes)})).collect();
        let b = json!({"tee": c.tee, "evidence": b64(&c.evidence_bytes()), "endorsements": endorsements, "at": c.verify_at});
        let (s, v) = srv.post("/v1/attest", &b).await;
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_string()
    };
    let kids = |jwks: Vec<cachet_token::jwk::PublicKey>| {
        let mut k = jwks.into_iter().map(|k| k.kid).collect::<Vec<_>>();
        k.sort();
        k
    };
    let pair = |a: &str, b: &str| {
        let mut v = vec![a.to_string(), b.to_string()];
        v.sort();
        v
    };

    let old_token = attest().await;
    let old = header(&old_token)["kid"].as_str().unwrap().to_string();
    assert_eq!(kids(srv.jwks().await), vec![old.clone()]);

    let r = srv.client.post(srv.at("/v1/admin/signing-keys/rotate")).bearer_auth(&admin).send().await.unwrap();
    let (s, new) = status_json(r).await;
    assert_eq!((s, new["state"].as_str()), (200, Some("pending")), "{new}");
    let new_kid = new["kid"].as_str().unwrap().to_string();
    // Published at once, not used yet.
    assert_eq!(kids(srv.jwks().await), pair(&old, &new_kid));
    assert_eq!(header(&attest().await)["kid"], old.as_str());
    // After the publish lead the new key signs; the old one is still published.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let new_token = attest().await;
    assert_eq!(header(&new_token)["kid"], new_kid.as_str());
    assert_eq!(kids(srv.jwks().await), pair(&old, &new_kid));
    // After token_ttl + clock_skew the old key leaves the JWKS.
    tokio::time::sleep(std::time::Duration::from_millis(3300)).await;
    assert_eq!(kids(srv.jwks().await), vec![new_kid.clone()]);
    let r = srv.client.get(srv.at("/v1/admin/signing-keys")).bearer_auth(&admin).send().await.unwrap();
    let (_, list) = status_json(r).await;
    let states: Vec<&str> = list.as_array().unwrap().iter().map(|k| k["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["expired", "active"]);

    // Revoking the signing key unpublishes it at once; a replacement signs.
    let r = srv.client.delete(srv.at(&format!("/v1/admin/signing-keys/{new_kid}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let now_kids = kids(srv.jwks().await);
    assert!(!now_kids.contains(&new_kid) && now_kids.len() == 1, "{now_kids:?}");
    assert_eq!(header(&attest().await)["kid"], now_kids[0].as_str());
    // Prune deletes the expired and the revoked key.
    let r = srv.client.post(srv.at("/v1/admin/signing-keys/prune")).bearer_auth(&admin).send().await.unwrap();
    let (_, pruned) = status_json(r).await;
    assert_eq!(pruned["deleted"].as_array().unwrap().len(), 2, "{pruned}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_decisions_and_changes_and_detects_an_edited_row() {
    let srv = start("audit", |a| a.insecure_simulated_tee = true).await;
    let reader = srv.api_key(Role::Reader).await;
    let admin = srv.api_key(Role::Admin).await;
    // One refused attestation and one admin change.
    // Binary that is no quote (text would be refused earlier, as text: evidence_encoding).
    let (s, _) = srv.post("/v1/attest", &json!({"tee": "sgx", "evidence": b64(&[0x03, 0x00, 0xff, 0x00, 0x81])})).await;
    assert_eq!(s, 422);
    let r = srv
        .client
        .post(srv.at("/v1/admin/api-keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "ci", "role": "reader"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    let get = |path: &'static str| {
        let req = srv.client.get(srv.at(path)).bearer_auth(&reader);
        async move { status_json(req.send().await.unwrap()).await.1 }
    };
    let log = get("/v1/admin/audit?limit=1000").await;
    let entries = log.as_array().unwrap();
    let refused = entries.iter().find(|e| e["action"] == "attest").expect("attestation audited");
    assert_eq!((refused["outcome"].as_str(), refused["tee"].as_str()), (Some("refused"), Some("sgx")));
    assert_eq!(refused["failed_check"], "Quote format");
    assert!(refused["actor"].as_str().unwrap().starts_with("client:127.0.0.1"));
    let created = entries.iter().find(|e| e["action"] == "api_key.create" && e["actor"].as_str().unwrap().starts_with("api-key:"));
    assert!(created.is_some(), "admin change audited with its actor: {log}");
    let v = get("/v1/admin/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["entries"].as_u64().unwrap() as usize, entries.len());

    // Edit one row behind the server's back: the chain names it.
    let store = SqliteStore::open_dir(&srv.dir).await.unwrap();
    let seq = refused["seq"].as_i64().unwrap();
    sqlx::query("UPDATE audit_log SET outcome = 'ok' WHERE seq = ?").bind(seq).execute(store.pool()).await.unwrap();
    let v = get("/v1/admin/audit/verify").await;
    assert_eq!((v["ok"].as_bool(), v["seq"].as_i64()), (Some(false), Some(seq)), "{v}");
    let err = cachet_store::verify_audit_chain(&store).await.unwrap_err();
    assert_eq!(err.seq, seq);
    assert!(store.audit_page(0, 1).await.is_ok());
}
