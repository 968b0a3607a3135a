//! Appraisal policies and reference values through the real server:
//! a stored policy requiring reference values decides with the store's
//! values (matching → affirming, mismatching → contraindicated) for every
//! family; a broken or failing policy upload is refused and the previous
//! version keeps serving; in-toto provenance imported through the API makes
//! a matching measurement affirming; the dry run explains each check and
//! rule without issuing a token.

mod common;

use cachet_appraise::defaults;
use cachet_server::auth::Role;
use cachet_verify::{Tee, TrustAnchors, VerifyRequest};
use common::*;
use serde_json::{json, Value};

/// A case's attestation body (with its verification time).
fn body(c: &Case) -> Value {
    let endorsements: Vec<Value> = c.endorsement_files().iter().map(|e| json!({"name": e.name, "data": b64(&e.bytes)})).collect();
    json!({"tee": c.tee, "evidence": b64(&c.evidence_bytes()), "endorsements": endorsements, "at": c.verify_at})
}

/// The verified claims of a case (local verification).
fn claims_of(c: &Case) -> Option<Value> {
    let at = time::OffsetDateTime::parse(c.verify_at.as_deref()?, &time::format_description::well_known::Rfc3339).ok()?.unix_timestamp();
    let (evidence, endorsements) = (c.evidence_bytes(), c.endorsement_files());
    let anchors = TrustAnchors::pinned();
    let v = cachet_verify::verify(
        Tee::parse(&c.tee)?,
        &VerifyRequest { evidence: &evidence, endorsements: &endorsements, anchors: &anchors, at, expected_nonce: None },
    );
    v.result.ok()
}

/// The names a family's default policy compares with reference values
/// (the quoted names of its `measured := ...` line).
fn measured(tee: &str) -> Vec<String> {
    let text = defaults::default_policy_text(tee).unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("measured := ")) else { return vec![] };
    line.split('"').skip(1).step_by(2).map(str::to_string).collect()
}

/// A claim as reference values spell it (lowercase hex, decimal numbers).
fn spelled(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_lowercase()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The value of measurement `name` in the claims: a top-level claim, or
/// for `pcrN` PCR N (Nitro's `pcrs`, or a non-SHA-1 bank of a TPM quote).
fn observed(claims: &Value, name: &str) -> Option<String> {
    if let Some(v) = spelled(&claims[name]) {
        return Some(v);
    }
    let idx = name.strip_prefix("pcr")?;
    for pcrs in [&claims["pcrs"], &claims["tpm"]["pcrs"]] {
        if let Some(v) = spelled(&pcrs[idx]) {
            return Some(v);
        }
        for (alg, bank) in pcrs.as_object().into_iter().flatten() {
            if alg != "sha1" {
                if let Some(v) = spelled(&bank[idx]) {
                    return Some(v);
                }
            }
        }
    }
    None
}

struct Admin {
    key: String,
}

impl Admin {
    async fn send(&self, srv: &TestServer, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut r = srv.client.request(method, srv.at(path)).bearer_auth(&self.key);
        if let Some(b) = body {
            r = r.json(b);
        }
        status_json(r.send().await.unwrap()).await
    }
    async fn put(&self, srv: &TestServer, path: &str, body: &Value) -> (u16, Value) {
        self.send(srv, reqwest::Method::PUT, path, Some(body)).await
    }
    async fn post(&self, srv: &TestServer, path: &str, body: &Value) -> (u16, Value) {
        self.send(srv, reqwest::Method::POST, path, Some(body)).await
    }
    async fn get(&self, srv: &TestServer, path: &str) -> (u16, Value) {
        self.send(srv, reqwest::Method::GET, path, None).await
    }
}

/// Attest and return the token's claims (asserting 200).
async fn attest(srv: &TestServer, body: &Value) -> Value {
    let (s, v) = srv.post("/v1/attest", body).await;
    assert_eq!(s, 200, "{v}");
    srv.verify_token(v["token"].as_str().unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_requiring_reference_values_affirms_matches_and_refuses_mismatches_in_every_family() {
    let srv = start("pol-refvals", |a| a.allow_verification_time = true).await;
    let admin = Admin { key: srv.api_key(Role::Admin).await };
    let mut done = std::collections::BTreeSet::new();
    for c in cases().into_iter().filter(|c| c.expect == "accept") {
        if done.contains(&c.tee) {
            continue;
        }
        let Some(claims) = claims_of(&c) else { continue };
        if claims["debug"] == true {
            continue;
        }
        // The first measurement the family's policy compares that this evidence reports.
        let Some((name, value)) = measured(&c.tee).into_iter().find_map(|n| observed(&claims, &n).map(|v| (n, v))) else { continue };
        // Evidence the default policy already refuses (e.g. a GPU whose
        // measurements differ from NVIDIA's RIMs) cannot be affirmed by reference values.
        let default_status = attest(&srv, &body(&c)).await["submods"][c.tee.as_str()]["ear.status"].clone();
        if default_status == "contraindicated" {
            continue;
        }
        let text = defaults::requiring_reference_values_text(&c.tee).expect("the default policy has the two strictness settings");
        let policy = format!("strict-{}", c.tee);
        let (s, stored) = admin.put(&srv, &format!("/v1/admin/policies/{policy}"), &json!({"policy": text})).await;
        assert_eq!(s, 201, "{}: {stored}", c.id);
        let set = format!("/v1/admin/reference-values/{}.{name}", c.tee);
        let mut req = body(&c);
        req["policy"] = json!(policy);

        // Matching value: the measurement is affirmed.
        let (s, v) = admin.put(&srv, &set, &json!({"values": [value.clone()], "expires": "2100-01-01T00:00:00Z"})).await;
        assert_eq!(s, 200, "{v}");
        let t = attest(&srv, &req).await;
        let sub = &t["submods"][c.tee.as_str()];
        assert_eq!(sub["ear.trustworthiness-vector"]["executables"], 2, "{}: {sub}", c.id);
        assert_ne!(sub["ear.status"], "contraindicated", "{}: {sub}", c.id);
        if default_status == "affirming" {
            assert_eq!(sub["ear.status"], "affirming", "{}: {sub}", c.id);
        }
        assert_eq!(t["cachet.policy_hash"], stored["hash"], "{}: the token records the stored policy", c.id);
        assert!(sub["ear.appraisal-policy-id"].as_str().unwrap().starts_with(&format!("policy:{policy}@sha256:")));

        // Mismatching value: refused.
        let other = if value.starts_with('0') { value.replacen('0', "1", 1) } else { format!("0{}", &value[1..]) };
        let (s, _) = admin.put(&srv, &set, &json!([other])).await;
        assert_eq!(s, 200);
        let t = attest(&srv, &req).await;
        let sub = &t["submods"][c.tee.as_str()];
        assert_eq!(sub["ear.status"], "contraindicated", "{}: {sub}", c.id);
        assert_eq!(sub["ear.trustworthiness-vector"]["executables"], 96, "{}", c.id);
        let rule = format!("reference_values.{name}");
        assert!(
            sub["cachet.reasons"].as_array().unwrap().iter().any(|r| r["rule"] == rule && r["outcome"] == "contraindicated"),
            "{}: {sub}",
            c.id
        );

        // An expired set no longer matches.
        let (s, _) = admin.put(&srv, &set, &json!({"values": [value], "expires": "2000-01-01T00:00:00Z"})).await;
        assert_eq!(s, 200);
        assert_eq!(attest(&srv, &req).await["submods"][c.tee.as_str()]["ear.status"], "contraindicated", "{}", c.id);
        done.insert(c.tee.clone());
    }
    println!("covered: {done:?}");
    for tee in ["sgx", "tdx", "snp", "az-snp-vtpm", "az-tdx-vtpm", "nitro", "tpm", "nitro-tpm", "nvgpu"] {
        assert!(done.contains(tee), "{tee} not covered: {done:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_or_failing_policies_are_refused_and_the_previous_version_serves() {
    let srv = start("pol-broken", |a| a.allow_verification_time = true).await;
    let admin = Admin { key: srv.api_key(Role::Admin).await };
    let c = cases()
        .into_iter()
        .find(|c| c.tee == "tdx" && c.expect == "accept" && c.expected_claims.get("tcb_status") == Some(&json!("UpToDate")))
        .unwrap();
    // Override the TDX default with a stored policy (a copy of the shipped one).
    let good = defaults::default_policy_text("tdx").unwrap().replace("instance_identity := 2", "instance_identity := 3");
    let (s, v1) = admin.put(&srv, "/v1/admin/policies/default-tdx", &json!({"policy": good})).await;
    assert_eq!(s, 201, "{v1}");
    assert_eq!(v1["version"], 1);
    let t = attest(&srv, &body(&c)).await;
    assert_eq!(t["cachet.policy_hash"], v1["hash"]);
    assert_eq!(t["submods"]["tdx"]["ear.trustworthiness-vector"]["instance-identity"], 3, "the stored default serves");

    let broken = [
        ("syntax", "package p\nimport rego.v1\nstatus := \"affirming\" if {".to_string(), "syntax"),
        ("unknown function", "package p\nimport rego.v1\nstatus := no_such_function(input.claims)".to_string(), "compile"),
        ("bad output", "package p\nimport rego.v1\nstatus := \"maybe\"".to_string(), "malformed"),
        ("runtime conflict", "package p\nimport rego.v1\nhardware := 2\nhardware := 3 if input.tee == \"tdx\"".to_string(), "evaluation"),
        ("no decision", "package p\nimport rego.v1\nx := 1".to_string(), "no appraisal"),
    ];
    for (what, text, word) in broken {
        let (s, e) = admin.put(&srv, "/v1/admin/policies/default-tdx", &json!({"policy": text})).await;
        assert_eq!(s, 422, "{what}: {e}");
        assert_eq!(e["error"]["code"], "policy_invalid", "{what}");
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(word), "{what}: {msg}");
    }
    // Nothing replaced version 1: the versions, the current text, and the next token say so.
    let (s, versions) = admin.get(&srv, "/v1/admin/policies/default-tdx/versions").await;
    assert_eq!(s, 200);
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");
    assert!(versions[0]["created_by"].as_str().unwrap().starts_with("api-key:"));
    let (_, cur) = admin.get(&srv, "/v1/admin/policies/default-tdx").await;
    assert_eq!(cur["version"], 1);
    assert_eq!(cur["hash"], v1["hash"]);
    let t = attest(&srv, &body(&c)).await;
    assert_eq!(t["cachet.policy_hash"], v1["hash"], "the previous policy still serves");
    // (Current hardware, but no reference values: measurements not appraised.)
    assert_eq!(t["submods"]["tdx"]["ear.status"], "warning");

    // A second good version is kept beside the first, and serves.
    let good2 = defaults::default_policy_text("tdx").unwrap().to_string();
    let (s, v2) = admin.put(&srv, "/v1/admin/policies/default-tdx", &json!({"policy": good2})).await;
    assert_eq!((s, v2["version"].clone()), (201, json!(2)));
    let (_, versions) = admin.get(&srv, "/v1/admin/policies/default-tdx/versions").await;
    assert_eq!(versions.as_array().unwrap().len(), 2);
    let (_, old) = admin.get(&srv, "/v1/admin/policies/default-tdx?version=1").await;
    assert_eq!(old["hash"], v1["hash"]);
    assert_eq!(attest(&srv, &body(&c)).await["cachet.policy_hash"], v2["hash"]);

    // A request naming an unknown policy is refused; the list shows stored and shipped policies.
    let mut req = body(&c);
    req["policy"] = json!("nope");
    let (s, e) = srv.post("/v1/attest", &req).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("policy_unknown")), "{e}");
    let (_, list) = admin.get(&srv, "/v1/admin/policies").await;
    let list = list.as_array().unwrap();
    assert!(list.iter().any(|p| p["name"] == "default-tdx" && p["source"] == "stored" && p["version"] == 2));
    assert!(list.iter().any(|p| p["name"] == "default-snp" && p["source"] == "builtin"));

    // Refusals and changes are audited.
    let (_, audit) = admin.get(&srv, "/v1/admin/audit?limit=1000").await;
    let puts: Vec<&Value> = audit.as_array().unwrap().iter().filter(|e| e["action"] == "policy.put").collect();
    assert_eq!(puts.iter().filter(|e| e["outcome"] == "ok").count(), 2);
    assert_eq!(puts.iter().filter(|e| e["outcome"] == "refused").count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_toto_provenance_imported_through_the_api_makes_a_matching_measurement_affirming() {
    let srv = start("pol-intoto", |a| a.allow_verification_time = true).await;
    let admin = Admin { key: srv.api_key(Role::Admin).await };
    let c = cases()
        .into_iter()
        .find(|c| c.tee == "tdx" && c.expect == "accept" && c.expected_claims.get("tcb_status") == Some(&json!("UpToDate")))
        .unwrap();
    let claims = claims_of(&c).unwrap();
    let mr_td = claims["mr_td"].as_str().unwrap().to_string();
    assert_eq!(mr_td.len(), 96, "MRTD is a SHA-384 digest");
    let text = defaults::requiring_reference_values_text("tdx").unwrap();
    assert_eq!(admin.put(&srv, "/v1/admin/policies/strict", &json!({"policy": text})).await.0, 201);
    let mut req = body(&c);
    req["policy"] = json!("strict");
    assert_eq!(attest(&srv, &req).await["submods"]["tdx"]["ear.status"], "contraindicated", "no reference values yet");

    let builder = "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_generic_slsa3.yml@refs/tags/v2.0.0";
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "td-image.raw", "digest": {"sha384": mr_td.to_uppercase()}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://example.com/td-build"}, "runDetails": {"builder": {"id": builder}}}
    });
    let (s, set) = admin
        .post(
            &srv,
            "/v1/admin/reference-values/tdx.mr_td/import",
            &json!({"provenance": statement.to_string(), "alg": "sha384", "source": "td-image.intoto.json"}),
        )
        .await;
    assert_eq!(s, 200, "{set}");
    assert_eq!(set["set"]["values"][0]["value"], mr_td);
    assert_eq!(set["set"]["values"][0]["builder_id"], builder, "the builder is recorded");
    let (_, doc) = admin.get(&srv, "/v1/admin/reference-values").await;
    assert_eq!(doc["reference_values"]["tdx.mr_td"]["values"][0]["value"], mr_td);

    let t = attest(&srv, &req).await;
    let sub = &t["submods"]["tdx"];
    assert_eq!(sub["ear.status"], "affirming", "{sub}");
    assert_eq!(sub["ear.trustworthiness-vector"]["executables"], 2);

    // Not provenance: refused with a clear error; deleting the set makes the evidence unappraised again.
    let (s, e) = admin.post(&srv, "/v1/admin/reference-values/tdx.mr_td/import", &json!({"provenance": "{\"_type\": \"other\"}"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("reference_values_invalid")), "{e}");
    let (s, _) = admin.send(&srv, reqwest::Method::DELETE, "/v1/admin/reference-values/tdx.mr_td", None).await;
    assert_eq!(s, 204);
    assert_eq!(attest(&srv, &req).await["submods"]["tdx"]["ear.status"], "contraindicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_explains_each_check_and_rule_without_issuing_a_token() {
    let srv = start("pol-eval", |a| a.allow_verification_time = true).await;
    let reader = srv.api_key(Role::Reader).await;
    let r = Admin { key: reader };
    let c = cases().into_iter().find(|c| c.id.contains("debug") && c.tee == "nitro").expect("a debug Nitro case");
    let (s, out) = r.post(&srv, "/v1/admin/policies/default-nitro/evaluate", &body(&c)).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["verified"], true);
    let checks = out["checks"].as_array().unwrap();
    assert!(checks.len() >= 3 && checks.iter().all(|c| c["ok"] == true && c["name"].is_string()), "{out}");
    assert_eq!(out["appraisal"]["status"], "contraindicated");
    let reasons = out["appraisal"]["reasons"].as_array().unwrap();
    assert!(reasons.iter().any(|r| r["rule"] == "debug" && r["outcome"] == "contraindicated"), "{out}");
    assert_eq!(out["policy"]["name"], "default-nitro");
    assert_eq!(out["claims"]["debug"], true);

    // Evidence that does not verify: the failing check is named, and the appraisal says so.
    let mut bad = body(&c);
    let mut ev = c.evidence_bytes();
    let n = ev.len();
    ev[n - 10] ^= 1;
    bad["evidence"] = json!(b64(&ev));
    let (s, out) = r.post(&srv, "/v1/admin/policies/default-nitro/evaluate", &bad).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["verified"], false);
    assert!(out["error"]["check"].is_string());
    assert!(out["checks"].as_array().unwrap().iter().any(|c| c["ok"] == false));
    assert_eq!(out["appraisal"]["status"], "contraindicated");

    // A candidate text is evaluated without being stored; a broken one is refused.
    let mut cand = body(&c);
    cand["policy"] = json!("package p\nimport rego.v1\nstatus := \"warning\"\nreasons contains {\"rule\": \"mine\", \"outcome\": \"warning\", \"detail\": \"x\"}");
    let (s, out) = r.post(&srv, "/v1/admin/policies/candidate/evaluate", &cand).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["appraisal"]["reasons"][0]["rule"], "mine");
    assert_eq!(r.get(&srv, "/v1/admin/policies/candidate").await.0, 404);
    cand["policy"] = json!("package p\nstatus := ");
    let (s, out) = r.post(&srv, "/v1/admin/policies/candidate/evaluate", &cand).await;
    assert_eq!((s, out["error"]["code"].as_str()), (422, Some("policy_invalid")), "{out}");

    // No token was issued: the audit log has no attestation.
    let (_, audit) = r.get(&srv, "/v1/admin/audit?limit=1000").await;
    assert!(!audit.as_array().unwrap().iter().any(|e| e["action"] == "attest"), "{audit}");
    // And the route needs a key; writing policies needs admin.
    assert_eq!(srv.post("/v1/admin/policies/default-nitro/evaluate", &body(&c)).await.0, 401);
    let (s, _) = r.put(&srv, "/v1/admin/policies/x", &json!({"policy": "package p"})).await;
    assert_eq!(s, 403);
    let (s, _) = r.put(&srv, "/v1/admin/reference-values/x", &json!(["00"])).await;
    assert_eq!(s, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attester_may_request_only_a_policy_that_judges_its_tee_and_simulated_evidence_is_never_affirming() {
    use cachet_attester::simulated::{ReportOptions, SimulatedTee};
    let srv = start("pol-choice", |a| {
        a.allow_verification_time = true;
        a.insecure_simulated_tee = true;
    })
    .await;
    let admin = Admin { key: srv.api_key(Role::Admin).await };
    let sim = SimulatedTee::load_or_create(&srv.dir.join("simulated-tee")).unwrap();
    let sim_body = |policy: Option<&str>| {
        let report = sim.report(&[0u8; 64], &ReportOptions::default()).unwrap();
        let mut b = json!({"tee": "sim", "evidence": b64(&report)});
        if let Some(p) = policy {
            b["policy"] = json!(p);
        }
        b
    };
    // Simulated evidence under another family's default policy: refused, named.
    for other in ["default-nitro", "default-tdx", "default-tpm"] {
        let (s, v) = srv.post("/v1/attest", &sim_body(Some(other))).await;
        assert_eq!((s, v["error"]["code"].as_str()), (403, Some("policy_not_allowed")), "{other}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("default-sim"), "the message says what to do: {v}");
    }
    // A real SGX quote cannot pick the TPM policy either; its own default still serves.
    let c = cases().into_iter().find(|c| c.tee == "sgx" && c.expect == "accept").unwrap();
    let mut req = body(&c);
    req["policy"] = json!("default-tpm");
    let (s, v) = srv.post("/v1/attest", &req).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("policy_not_allowed")), "{v}");
    req["policy"] = json!("default-sgx");
    assert_eq!(
        attest(&srv, &req).await["submods"]["sgx"]["ear.appraisal-policy-id"].as_str().map(|p| p.starts_with("policy:default-sgx@")),
        Some(true)
    );

    // A stored policy must declare what it judges, with known family names.
    let lenient = |tees: &str| format!("package lenient\nimport rego.v1\n{tees}\nstatus := \"affirming\"\n");
    for (tees, word) in [("", "declare the TEE families"), ("tees := {\"quantum\"}", "not a TEE family"), ("tees := set()", "empty")] {
        let (s, v) = admin.put(&srv, "/v1/admin/policies/lenient", &json!({"policy": lenient(tees)})).await;
        assert_eq!((s, v["error"]["code"].as_str()), (422, Some("policy_invalid")), "{tees}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(word), "{tees}: {v}");
    }
    let (s, v) = admin.put(&srv, "/v1/admin/policies/default-tdx", &json!({"policy": lenient("tees := {\"sgx\"}")})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("policy_invalid")), "default-tdx must judge tdx: {v}");
    let (s, v) = admin.put(&srv, "/v1/admin/policies/lenient", &json!({"policy": lenient("tees := {\"sim\", \"sgx\"}")})).await;
    assert_eq!(s, 201, "{v}");
    // The lenient policy judges sim and sgx, not tdx.
    let tdx = cases().into_iter().find(|c| c.tee == "tdx" && c.expect == "accept").unwrap();
    let mut req = body(&tdx);
    req["policy"] = json!("lenient");
    assert_eq!(srv.post("/v1/attest", &req).await.1["error"]["code"], "policy_not_allowed");
    // Allowed for sim, but simulated evidence is never affirming, whatever the policy says.
    for policy in [Some("lenient"), Some("default-sim"), None] {
        let (s, v) = srv.post("/v1/attest", &sim_body(policy)).await;
        assert_eq!(s, 200, "{policy:?}: {v}");
        let t = srv.verify_token(v["token"].as_str().unwrap()).await;
        assert_eq!(t["submods"]["sim"]["ear.status"], "warning", "{policy:?}: {t}");
    }
    let (_, v) = srv.post("/v1/attest", &sim_body(Some("lenient"))).await;
    let t = srv.verify_token(v["token"].as_str().unwrap()).await;
    assert!(t["submods"]["sim"]["cachet.reasons"].as_array().unwrap().iter().any(|r| r["rule"] == "simulated_tee"), "{t}");
}

/// No policy may abort, hang or exhaust the server: each of these, sent to
/// the dry run (reader role) or uploaded (admin), is refused with a named
/// error, nothing is stored, and the server keeps answering `/healthz`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_that_would_exhaust_the_server_are_refused_and_it_keeps_answering() {
    let srv = start("pol-bombs", |a| a.allow_verification_time = true).await;
    let admin = Admin { key: srv.api_key(Role::Admin).await };
    let reader = Admin { key: srv.api_key(Role::Reader).await };
    let c = cases().into_iter().find(|c| c.tee == "tdx" && c.expect == "accept").expect("a TDX case");
    let doubling: String = (1..=40).map(|i| format!("s{i} := concat(\"\", [s{}, s{}])\n", i - 1, i - 1)).collect();
    let shared: String = (1..=64).map(|i| format!("a{i} := [a{}, a{}]\n", i - 1, i - 1)).collect();
    let bombs = [
        // This one aborted the process ("memory allocation of 24000000000000024 bytes failed").
        ("numbers.range", "x := count(numbers.range(0, 1000000000000000))".to_string()),
        ("sprintf width", "x := sprintf(\"%01000000000d\", [1])".to_string()),
        ("doubling string", format!("s0 := \"abcdefgh\"\n{doubling}x := count(s40)")),
        ("shared array written out", format!("a0 := \"leaf\"\n{shared}x := json.marshal(a64)")),
        ("huge exponent", "x := 1e999999999".to_string()),
        ("deep nesting", format!("x := {}1{}", "(".repeat(50_000), ")".repeat(50_000))),
        ("regex size", "x := regex.match(\"((a{100}){100}){100}\", \"a\")".to_string()),
    ];
    for (what, rule) in bombs {
        let text = format!("package p\nimport rego.v1\ntees := {{\"tdx\"}}\nhardware := 2\n{rule}\n");
        let mut req = body(&c);
        req["policy"] = json!(text);
        let (s, e) = reader.post(&srv, "/v1/admin/policies/candidate/evaluate", &req).await;
        assert_eq!((s, e["error"]["code"].as_str()), (422, Some("policy_invalid")), "{what}: {e}");
        let (s, e) = admin.put(&srv, "/v1/admin/policies/bomb", &json!({"policy": text})).await;
        assert_eq!((s, e["error"]["code"].as_str()), (422, Some("policy_invalid")), "{what}: {e}");
        let msg = e["error"]["message"].as_str().unwrap_or("");
        assert!(msg.len() > 20 && !msg.contains("declare the TEE"), "{what}: refused for what it does: {e}");
        let (s, _) = srv.get("/healthz").await;
        assert_eq!(s, 200, "{what}: the server still answers");
    }
    assert_eq!(admin.get(&srv, "/v1/admin/policies/bomb").await.0, 404, "nothing was stored");
    // A stored policy that blows up only on some input fails that appraisal
    // with a named error; the server still answers.
    let lazy = "package p\nimport rego.v1\ntees := {\"tdx\"}\nhardware := 2\nx := count(numbers.range(0, to_number(base64.decode(input.runtime_data)))) if input.runtime_data\n";
    let (s, e) = admin.put(&srv, "/v1/admin/policies/lazy", &json!({"policy": lazy})).await;
    assert_eq!(s, 201, "{e}");
    let mut req = body(&c);
    req["runtime_data"] = json!(b64(b"1000000000000000"));
    let (s, e) = reader.post(&srv, "/v1/admin/policies/lazy/evaluate", &req).await;
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("policy_evaluation_failed")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap_or("").contains("numbers.range"), "{e}");
    assert_eq!(srv.get("/healthz").await.0, 200);
}
