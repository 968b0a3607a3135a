//! The operator console (`/console`) driven in a real browser: Debian's
//! `chromium` through `chromium-driver` (W3C WebDriver), against a real
//! server on loopback holding real attestations of the evidence in
//! `testdata/vectors` (accepted and refused), tenants' secrets and releases,
//! and an audit entry carrying an attacker's markup.
//!
//! Screenshots of every page are saved in `target/console-screenshots/`.
//! Without chromium the test is skipped with the reason printed; under `CI`
//! it fails instead.

mod common;
#[path = "common/early_pcs.rs"]
mod early_pcs;
#[path = "../../cachet-endorse/tests/common/recorded.rs"]
mod recorded;
#[path = "console/webdriver.rs"]
mod webdriver;

use std::collections::BTreeMap;
use std::path::PathBuf;

use cachet_server::auth::Role;
use common::*;
use serde_json::{json, Value};
use webdriver::Browser;

const XSS: &str = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">";

fn shots_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    std::fs::create_dir_all(&d).expect("screenshot folder");
    d
}

fn attest_body(c: &Case, tee: &str, at: &str) -> Value {
    let endorsements: Vec<Value> = c.endorsement_files().iter().map(|e| json!({"name": e.name, "data": b64(&e.bytes)})).collect();
    json!({"tee": tee, "evidence": b64(&c.evidence_bytes()), "endorsements": endorsements, "at": at})
}

async fn call(srv: &TestServer, method: reqwest::Method, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = srv.client.request(method, srv.at(path)).bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    status_json(r.send().await.expect("request")).await
}

/// The whole audit log, as `GET /v1/admin/audit` pages it.
async fn audit(srv: &TestServer, key: &str) -> Vec<Value> {
    let (mut out, mut after) = (Vec::new(), 0);
    loop {
        let (s, v) = call(srv, reqwest::Method::GET, &format!("/v1/admin/audit?after={after}&limit=1000"), key, None).await;
        assert_eq!(s, 200, "{v}");
        let page = v.as_array().unwrap().clone();
        let Some(last) = page.last() else { return out };
        after = last["seq"].as_i64().unwrap();
        out.extend(page);
    }
}

async fn sign_in(b: &Browser, srv: &TestServer, key: &str) {
    b.goto(&srv.at("/console/login")).await.unwrap();
    b.type_into("#key", key).await.unwrap();
    b.click("form.login button").await.unwrap();
    let url = b.url().await.unwrap();
    assert!(url.ends_with("/console"), "signed in, on the overview: {url}");
    assert!(!url.contains("cachet_"), "the key is never in a URL");
}

async fn sign_out(b: &Browser) {
    b.click("nav .who button").await.unwrap();
    assert!(b.url().await.unwrap().ends_with("/console/login"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    let (chromium, driver) = match webdriver::find_browser() {
        Ok(found) => found,
        Err(why) if std::env::var_os("CI").is_some() => panic!("the console test needs a browser under CI: {why}"),
        Err(why) => {
            eprintln!("SKIPPED console_in_a_real_browser: {why}");
            return;
        }
    };
    // Intel's PCS on loopback, serving a TCB recovery's early TCB Info (the
    // forecast page must list the platform it demotes); the other sources
    // answer 404 there, so attestations use the endorsements they carry.
    let pcs = early_pcs::serve().await;
    let srv = start("console", |a| {
        a.allow_verification_time = true;
        a.offline = false;
        a.pcs_url = Some(pcs.clone());
        a.kds_url = Some(pcs.clone());
        a.nvidia_rim_url = Some(pcs.clone());
        a.nvidia_ocsp_url = Some(pcs.clone());
    })
    .await;
    let op = srv.api_key(Role::Admin).await;
    let bank_a = create_tenant_api_key(&srv.dir, Some("bank-a"), Role::Admin).await;
    let bank_b = create_tenant_api_key(&srv.dir, Some("bank-b"), Role::Reader).await;
    let shots = shots_dir();

    // ---- real attestations: accepted ones, and refused ones
    let cases = cases();
    let pick = |tee: &str| {
        cases.iter().find(|c| c.tee == tee && c.expect == "accept").unwrap_or_else(|| panic!("an accept case of {tee}")).clone()
    };
    for tee in ["sgx", "snp", "nitro", "tdx"] {
        let c = pick(tee);
        let (s, v) = srv.post("/v1/attest", &attest_body(&c, &c.tee, c.verify_at.as_deref().unwrap())).await;
        assert_eq!(s, 200, "{}: {v}", c.id);
    }
    // TDX evidence presented as SNP: refused by the check `Evidence format`.
    let tdx = pick("tdx");
    let (s, v) = srv.post("/v1/attest", &attest_body(&tdx, "snp", tdx.verify_at.as_deref().unwrap())).await;
    assert_eq!((s, v["error"]["check"].as_str()), (422, Some("Evidence format")), "{v}");
    // SNP evidence judged long before its certificates existed: refused by a later check.
    let snp = pick("snp");
    let (s, v) = srv.post("/v1/attest", &attest_body(&snp, "snp", "2001-01-01T00:00:00Z")).await;
    assert_eq!(s, 422, "{v}");
    let late_check = v["error"]["check"].as_str().expect("a failing check").to_string();

    // ---- an attacker's markup in the audit log (a release request needs no key)
    let (s, v) = srv.post("/v1/secrets/release", &json!({"token": "not-a-token", "secrets": [format!("bank-a/{XSS}")]})).await;
    assert!(s >= 400, "{s} {v}");
    let (s, _) = srv.post("/v1/secrets/release", &json!({"token": "not-a-token", "secrets": ["bank-b/only-for-b"]})).await;
    assert!(s >= 400);
    // A tenant's secret, two policy versions and an operator reference set.
    let release = "package release\nimport rego.v1\nstatus := \"affirming\" if input.tee == \"sim\"\n";
    let (s, v) =
        call(&srv, reqwest::Method::PUT, "/v1/admin/secrets/db-key", &bank_a, Some(json!({"value": b64(b"v"), "policy": release}))).await;
    assert_eq!(s, 201, "{v}");
    for (i, status) in ["warning", "affirming"].iter().enumerate() {
        let rego = format!("package lab\nimport rego.v1\ntees := {{\"tdx\", \"sgx\"}}\n# version {}\nstatus := \"{status}\"\n", i + 1);
        let (s, v) = call(&srv, reqwest::Method::PUT, "/v1/admin/policies/lab", &op, Some(json!({"policy": rego}))).await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = call(
        &srv,
        reqwest::Method::PUT,
        "/v1/admin/reference-values/tdx.mr_td",
        &op,
        Some(json!({"description": "approved TD builds", "values": ["4f1c".repeat(24)]})),
    )
    .await;
    assert!(s == 200 || s == 201, "{v}");

    // ---- what the admin API says
    let log = audit(&srv, &op).await;
    let attests: Vec<&Value> = log.iter().filter(|e| e["action"] == "attest").collect();
    let seq_of = |f: &dyn Fn(&Value) -> bool| log.iter().find(|e| f(e)).map(|e| e["seq"].as_i64().unwrap()).expect("entry");
    let format_seq = seq_of(&|e| e["failed_check"] == "Evidence format");
    let late_seq = seq_of(&|e| e["action"] == "attest" && e["failed_check"] == late_check.as_str());
    let ok_seq = seq_of(&|e| e["action"] == "attest" && e["outcome"] == "ok" && e["tee"] == "snp");
    let xss_seq = seq_of(&|e| e["action"] == "secret.release" && e["detail"].as_str().unwrap_or_default().contains("__pwned"));
    let b_seq = seq_of(&|e| e["action"] == "secret.release" && e["detail"].as_str().unwrap_or_default().contains("only-for-b"));
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for e in &attests {
        let d: Value = serde_json::from_str(e["detail"].as_str().unwrap()).unwrap();
        let st = if e["outcome"] == "ok" { d["status"].as_str().unwrap().to_string() } else { e["outcome"].as_str().unwrap().to_string() };
        *want.entry(format!("{}:{st}", e["tee"].as_str().unwrap())).or_default() += 1;
    }

    // ---- plain HTTP: headers, CSRF on sign-in, no bearer shortcut
    let r = srv.client.get(srv.at("/console/login")).send().await.unwrap();
    let csp = r.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers().get("x-frame-options").unwrap(), "DENY");
    let r = srv
        .client
        .post(srv.at("/console/login"))
        .header("origin", "https://evil.example")
        .form(&[("key", op.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a sign-in posted from another site is refused");
    assert!(r.headers().get("set-cookie").is_none());
    let r = srv.client.get(srv.at("/console/attestations")).bearer_auth(&op).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.url().path().ends_with("/console/login"), "a bearer header does not sign the console in: {}", r.url());

    // ---- the browser
    let profile = temp_dir("chromium-profile");
    let b = Browser::start(&chromium, &driver, profile).await.expect("chromium starts");
    b.goto(&srv.at("/console")).await.unwrap();
    assert!(b.url().await.unwrap().ends_with("/console/login"), "signed out: the sign-in page");
    b.screenshot(&shots.join("01-login.png")).await.unwrap();

    // A wrong key is refused, and opens no session.
    b.type_into("#key", &format!("cachet_{}_{}", "0".repeat(16), "0".repeat(64))).await.unwrap();
    b.click("form.login button").await.unwrap();
    b.screenshot(&shots.join("02-login-refused.png")).await.unwrap();
    assert!(b.text("#login-error").await.unwrap().contains("invalid API key"));
    assert!(b.url().await.unwrap().ends_with("/console/login"));
    assert!(b.cookies().await.unwrap().is_empty(), "no session cookie for a refused key");

    // The operator signs in: a session cookie the page's scripts cannot read.
    sign_in(&b, &srv, &op).await;
    let cookies = b.cookies().await.unwrap();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert_eq!((cookies[0]["httpOnly"].as_bool(), cookies[0]["sameSite"].as_str()), (Some(true), Some("Strict")), "{cookies:?}");
    assert!(!cookies[0]["value"].as_str().unwrap().contains(op.as_str()));
    assert!(!b.source().await.unwrap().contains(op.as_str()), "the key is never in a page");

    // Overview: its figures are the audit API's.
    let figures = b
        .eval(
            "return Object.fromEntries([...document.querySelectorAll('[data-figure]')].map(e => [e.dataset.figure, e.textContent.trim()]))",
        )
        .await
        .unwrap();
    assert_eq!(figures["total"], attests.len().to_string());
    let refused = attests.iter().filter(|e| e["outcome"] != "ok").count();
    assert_eq!(figures["refused"], refused.to_string());
    for (k, n) in &want {
        assert_eq!(figures[k.as_str()], n.to_string(), "overview figure {k}: {figures}");
    }
    assert_eq!(figures["check:Evidence format"], "1");
    assert_eq!(figures[format!("check:{late_check}").as_str()], "1");
    let shown: u64 = figures
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.matches(':').count() == 1 && !k.starts_with("check:") && !k.starts_with("release:"))
        .map(|(_, v)| v.as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(shown, attests.len() as u64, "every attestation is in one TEE × status cell");
    assert!(b.count("svg.chart rect").await.unwrap() >= 1, "the chart has bars");
    assert_eq!(b.count("#signing-keys tbody tr").await.unwrap(), 1);
    b.screenshot_full(&shots.join("03-overview.png")).await.unwrap();

    // Explorer: every attestation, filters, and the reports.
    b.goto(&srv.at("/console/attestations")).await.unwrap();
    assert_eq!(b.count("#entries tbody tr[data-seq]").await.unwrap(), attests.len());
    b.screenshot_full(&shots.join("04-attestations.png")).await.unwrap();
    b.goto(&srv.at("/console/attestations?outcome=refused")).await.unwrap();
    assert_eq!(b.count("#entries tbody tr[data-seq]").await.unwrap(), refused);
    b.goto(&srv.at("/console/attestations?tee=sgx")).await.unwrap();
    assert_eq!(b.count("#entries tbody tr[data-seq]").await.unwrap(), attests.iter().filter(|e| e["tee"] == "sgx").count());
    b.goto(&srv.at(&format!("/console/attestations?check={}", "Evidence%20format"))).await.unwrap();
    assert_eq!(b.count("#entries tbody tr[data-seq]").await.unwrap(), 1);
    b.click("#entries tbody tr a").await.unwrap();
    assert!(b.url().await.unwrap().ends_with(&format!("/console/attestations/{format_seq}")), "a shareable link per report");
    assert_eq!(b.text("#failed-check").await.unwrap(), "Evidence format");
    assert!(b.text("#checks li[data-ok=false]").await.unwrap().contains("Evidence format"));
    b.screenshot_full(&shots.join("05-report-refused-format.png")).await.unwrap();

    b.goto(&srv.at(&format!("/console/attestations/{late_seq}"))).await.unwrap();
    assert_eq!(b.text("#failed-check").await.unwrap(), late_check);
    assert!(b.text("#checks li[data-ok=false]").await.unwrap().contains(&late_check), "the failing check is named, marked ✗");
    b.screenshot_full(&shots.join("06-report-refused-validity.png")).await.unwrap();

    b.goto(&srv.at(&format!("/console/attestations/{ok_seq}"))).await.unwrap();
    let passed = b.count("#checks li[data-ok=true]").await.unwrap();
    assert!(passed >= 3, "every check of an accepted attestation, in order: {passed}");
    assert_eq!(b.count("#checks li[data-ok=false]").await.unwrap(), 0);
    assert!(b.text("#policy").await.unwrap().contains("default-snp"));
    assert!(b.count("#rules tbody tr").await.unwrap() >= 1);
    assert!(b.text("#claims").await.unwrap().contains("measurement"), "the verified claims");
    b.screenshot_full(&shots.join("07-report-accepted.png")).await.unwrap();

    // An attacker's markup is shown as text, never run (the detail is JSON: its quotes escaped).
    let xss_json = serde_json::to_string(XSS).unwrap().trim_matches('"').to_string();
    b.goto(&srv.at(&format!("/console/attestations?action=all&q={}", "__pwned"))).await.unwrap();
    assert_eq!(b.count("#entries tbody tr[data-seq]").await.unwrap(), 1);
    b.goto(&srv.at(&format!("/console/attestations/{xss_seq}"))).await.unwrap();
    assert!(b.text("#detail").await.unwrap().contains(&xss_json), "the markup is shown as the text it is");
    assert_eq!(b.eval("return window.__pwned === undefined").await.unwrap(), true);
    assert_eq!(b.count("script").await.unwrap(), 0);
    assert_eq!(b.count("main img").await.unwrap(), 0);
    b.screenshot_full(&shots.join("08-report-attacker-markup.png")).await.unwrap();

    // Dry run: the admin API's evaluate, as a report.
    let sgx = pick("sgx");
    b.goto(&srv.at("/console/dry-run")).await.unwrap();
    b.type_into("#d-evidence", &b64(&sgx.evidence_bytes())).await.unwrap();
    b.type_into("#d-at", sgx.verify_at.as_deref().unwrap()).await.unwrap();
    b.click("form.stack button").await.unwrap();
    let result = b.text("#result").await.unwrap();
    assert!(result.contains("verified") || result.contains("not verified"), "{result}");
    assert!(b.count("#checks li").await.unwrap() >= 1, "the checks that ran");
    b.screenshot_full(&shots.join("09-dry-run.png")).await.unwrap();
    // The same with the evidence file uploaded (raw bytes): a Nitro document verifies on its own.
    let nitro = pick("nitro");
    let file = srv.dir.join("nitro-evidence.bin");
    std::fs::write(&file, nitro.evidence_bytes()).unwrap();
    b.goto(&srv.at("/console/dry-run")).await.unwrap();
    b.type_into("#d-file", file.to_str().unwrap()).await.unwrap();
    b.type_into("#d-at", nitro.verify_at.as_deref().unwrap()).await.unwrap();
    b.click("form.stack button").await.unwrap();
    let result = b.text("#result").await.unwrap();
    assert!(result.contains("verified") && !result.contains("not verified"), "the uploaded file verifies: {result}");
    assert!(b.text("#checks").await.unwrap().contains("COSE"), "the Nitro checks ran");
    b.screenshot_full(&shots.join("09b-dry-run-upload.png")).await.unwrap();

    // Policies: versions with their signer, and a diff.
    b.goto(&srv.at("/console/policies")).await.unwrap();
    assert!(b.text("#policies").await.unwrap().contains("lab"));
    b.screenshot_full(&shots.join("10-policies.png")).await.unwrap();
    b.goto(&srv.at("/console/policies/lab?a=1&b=2")).await.unwrap();
    assert_eq!(b.count("#versions tbody tr").await.unwrap(), 2);
    assert!(b.text("#diff .del").await.unwrap().contains("version 1"));
    assert!(b.text("#diff").await.unwrap().contains("+ status := \"affirming\""));
    b.screenshot_full(&shots.join("11-policy-diff.png")).await.unwrap();
    // What a stricter default-snp would do to the attestations recorded under it: the API's answer, shown.
    let strict = "package candidate\nimport rego.v1\ntees := {\"snp\"}\nstatus := \"contraindicated\"\n";
    b.goto(&srv.at("/console/policies/default-snp")).await.unwrap();
    b.type_into("#r-policy", strict).await.unwrap();
    b.click("#replay button").await.unwrap();
    let shown = b.text("[data-figure=would-refuse]").await.unwrap();
    let (s, api) = call(&srv, reqwest::Method::POST, "/v1/admin/policies/default-snp/replay", &op, Some(json!({"policy": strict}))).await;
    assert_eq!(s, 200, "{api}");
    assert!(api["would_refuse"].as_u64().unwrap() >= 1, "the accepted SNP attestation would be refused: {api}");
    assert_eq!(shown, api["would_refuse"].to_string(), "the page shows the API's figure");
    assert!(b.count("#replay-changes tbody tr a").await.unwrap() >= 1, "each changed attestation links to its report");
    b.screenshot_full(&shots.join("11b-policy-replay.png")).await.unwrap();

    b.goto(&srv.at("/console/reference-values")).await.unwrap();
    assert!(b.source().await.unwrap().contains("approved TD builds"));
    b.screenshot_full(&shots.join("12-reference-values.png")).await.unwrap();
    // A platform a TCB recovery will demote, recorded as the attest path
    // records it (its quote has no settled collateral to attest with here).
    early_pcs::record_seen(&srv.dir, early_pcs::DEMOTED_QUOTE).await;
    b.goto(&srv.at("/console/forecast")).await.unwrap();
    let (s, fc) = call(&srv, reqwest::Method::GET, "/v1/admin/endorsements/forecast", &op, None).await;
    assert_eq!(s, 200, "{fc}");
    let shown = b.eval("return document.querySelector('[data-figure=affected]').textContent").await.unwrap();
    assert_eq!(shown, json!(fc["affected"].as_array().map(Vec::len).unwrap_or(0).to_string()), "the forecast route's answer");
    assert_eq!(shown, json!("1"), "the platform the early TCB Info demotes: {fc}");
    let page = b.source().await.unwrap();
    assert!(page.contains(early_pcs::FMSPC) || page.contains(&early_pcs::FMSPC.to_uppercase()), "the page names its FMSPC");
    assert!(page.contains("OutOfDate"), "and what it drops to");
    b.screenshot_full(&shots.join("13-forecast.png")).await.unwrap();

    // Sign out ends the session: the old cookie opens nothing.
    sign_out(&b).await;
    b.goto(&srv.at("/console/attestations")).await.unwrap();
    assert!(b.url().await.unwrap().ends_with("/console/login"));

    // ---- tenant bank-b: its own view only
    sign_in(&b, &srv, &bank_b).await;
    assert!(b.text("#who").await.unwrap().contains("tenant bank-b"));
    b.screenshot_full(&shots.join("14-tenant-overview.png")).await.unwrap();
    b.goto(&srv.at("/console/attestations")).await.unwrap();
    let seqs = b.eval("return [...document.querySelectorAll('#entries tr[data-seq]')].map(r => Number(r.dataset.seq))").await.unwrap();
    // Exactly bank-b's audit view of the admin API (`/v1/admin/secret-releases`), newest first.
    let (s, own) = call(&srv, reqwest::Method::GET, "/v1/admin/secret-releases?limit=1000", &bank_b, None).await;
    assert_eq!(s, 200, "{own}");
    let mut own: Vec<i64> = own.as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    own.reverse();
    assert!(own.contains(&b_seq) && !own.contains(&xss_seq));
    assert_eq!(seqs, json!(own), "bank-b sees its own entries and no other");
    let page = b.source().await.unwrap();
    assert!(!page.contains("pwned") && !page.contains("db-key"), "nothing of bank-a's");
    b.screenshot_full(&shots.join("15-tenant-releases.png")).await.unwrap();
    for seq in [xss_seq, ok_seq, format_seq] {
        b.goto(&srv.at(&format!("/console/attestations/{seq}"))).await.unwrap();
        let page = b.source().await.unwrap();
        assert!(page.contains("404") && page.contains("no such audit entry"), "another's entry {seq} is not there for bank-b");
        assert!(!page.contains("pwned") && !page.contains("default-snp"));
    }
    b.screenshot(&shots.join("16-tenant-other-report-404.png")).await.unwrap();
    b.goto(&srv.at("/console/policies")).await.unwrap();
    assert!(b.source().await.unwrap().contains("operator_only"), "operator pages refuse a tenant key as the admin API does");
    b.screenshot(&shots.join("17-tenant-operator-page-403.png")).await.unwrap();
    b.goto(&srv.at("/console/secrets")).await.unwrap();
    assert_eq!(b.count("#secrets tbody tr td.num").await.unwrap(), 0, "bank-b has no secrets, and never sees bank-a's");
    sign_out(&b).await;

    // ---- tenant bank-a: its secrets, and its release history with the markup escaped
    sign_in(&b, &srv, &bank_a).await;
    b.goto(&srv.at("/console/secrets")).await.unwrap();
    assert!(b.text("#secrets").await.unwrap().contains("db-key"));
    assert!(b.count("#release-history tbody tr").await.unwrap() >= 1);
    assert_eq!(b.eval("return window.__pwned === undefined").await.unwrap(), true);
    b.screenshot_full(&shots.join("18-tenant-secrets.png")).await.unwrap();
    b.goto(&srv.at(&format!("/console/attestations/{xss_seq}"))).await.unwrap();
    assert!(b.text("#detail").await.unwrap().contains(&xss_json), "bank-a sees its own entry, escaped");
    b.goto(&srv.at(&format!("/console/attestations/{b_seq}"))).await.unwrap();
    assert!(b.source().await.unwrap().contains("no such audit entry"), "bank-a cannot open bank-b's entry");

    // A key revoked while signed in ends the session at the next request.
    let id = bank_a.split('_').nth(1).unwrap();
    let (s, v) = call(&srv, reqwest::Method::DELETE, &format!("/v1/admin/api-keys/{id}"), &op, None).await;
    assert_eq!(s, 204, "{v}");
    b.goto(&srv.at("/console/secrets")).await.unwrap();
    assert!(b.text("#login-error").await.unwrap().contains("invalid API key"), "the revoked key's session ended");
    b.quit().await;
    println!("screenshots in {}", shots.display());
}
