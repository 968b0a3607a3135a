//! Every `accept` case of `testdata/vectors/cases.json`, attested through
//! the real server over HTTP (with the case's verification time, which the
//! server accepts only with `--allow-verification-time`), and the token's
//! EAR claims checked against a local verification of the same case and a
//! local appraisal with the family's default policy (`cachet-appraise`).

mod common;

use cachet_appraise::{defaults, AppraisalInput, ReferenceValues};
use cachet_verify::{Tee, TrustAnchors, VerifyRequest};
use common::*;
use serde_json::{json, Value};

fn attest_body(c: &Case) -> Value {
    let endorsements: Vec<Value> = c.endorsement_files().iter().map(|e| json!({"name": e.name, "data": b64(&e.bytes)})).collect();
    json!({
        "tee": c.tee,
        "evidence": b64(&c.evidence_bytes()),
        "endorsements": endorsements,
        "at": c.verify_at.as_deref().expect("accept cases have verify_at"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accept_case_is_attested_with_a_correct_ear_token() {
    let srv = start("vectors", |a| a.allow_verification_time = true).await;
    let anchors = TrustAnchors::pinned();
    let accept: Vec<Case> = cases().into_iter().filter(|c| c.expect == "accept").collect();
    assert!(!accept.is_empty());
    let mut not_verified = Vec::new();
    let mut families = std::collections::BTreeSet::new();
    let mut debug_nitro = 0;
    for c in &accept {
        let tee = Tee::parse(&c.tee).expect("known tee");
        let at = time::OffsetDateTime::parse(c.verify_at.as_deref().unwrap(), &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp();
        let (evidence, endorsements) = (c.evidence_bytes(), c.endorsement_files());
        let local = cachet_verify::verify(
            tee,
            &VerifyRequest { evidence: &evidence, endorsements: &endorsements, anchors: &anchors, at, expected_nonce: None },
        );
        let (status, body) = srv.post("/v1/attest", &attest_body(c)).await;
        let claims = match local.result {
            Err(e) => {
                // The server must refuse exactly as the verifier does...
                assert_eq!(status, 422, "{}: {body}", c.id);
                assert_eq!(body["error"]["code"], "verification_failed", "{}", c.id);
                assert_eq!(body["error"]["check"], e.check.as_str(), "{}", c.id);
                // ...and the case counts as not yet attested: the test fails below.
                not_verified.push(format!("{} ({}): {e}", c.id, c.tee));
                continue;
            }
            Ok(claims) => claims,
        };
        assert_eq!(status, 200, "{}: {body}", c.id);
        let token = body["token"].as_str().expect("token");
        let t = srv.verify_token(token).await;
        let now = cachet_server::now();

        assert_eq!(header(token)["alg"], "ES256", "{}", c.id);
        assert!(header(token)["kid"].is_string());
        assert_eq!(t["eat_profile"], "tag:github.com,2023:veraison/ear", "{}", c.id);
        let (iat, exp) = (t["iat"].as_i64().unwrap(), t["exp"].as_i64().unwrap());
        assert!((now - iat).abs() <= 60, "{}: iat is the issue time, not the verification time", c.id);
        assert_eq!(exp - iat, 600, "{}: default token lifetime", c.id);
        assert_eq!(t["cachet.verification_time"], at, "{}", c.id);
        assert!(t["ear.verifier-id"]["build"].as_str().unwrap().starts_with("cachet "), "{}", c.id);
        assert!(t["ear.verifier-id"]["developer"].is_string());
        assert_eq!(t["cachet.freshness"], "not-established", "{}: no nonce was given", c.id);
        assert!(t.get("eat_nonce").is_none());
        let want = defaults::default_policy(&c.tee)
            .expect("every family has a default policy")
            .evaluate(&AppraisalInput::new(&c.tee, claims.clone()), &ReferenceValues::new(), at)
            .expect("the default policy appraises");
        assert_eq!(t["cachet.policy_hash"], format!("sha-256:{}", want.policy_hash), "{}: the token records the policy used", c.id);
        assert!(t["jti"].as_str().unwrap().len() >= 32);

        let sub = &t["submods"][c.tee.as_str()];
        assert_eq!(sub["ear.status"], want.status.as_str(), "{}", c.id);
        assert_eq!(sub["ear.trustworthiness-vector"], serde_json::to_value(want.trustworthiness_vector).unwrap(), "{}", c.id);
        assert_eq!(sub["ear.trustworthiness-vector"]["instance-identity"], 2, "{}", c.id);
        assert_eq!(sub["ear.appraisal-policy-id"], format!("policy:default-{}@sha256:{}", c.tee, want.policy_hash), "{}", c.id);
        assert_eq!(sub["cachet.reasons"], serde_json::to_value(&want.reasons).unwrap(), "{}: each rule's outcome", c.id);
        families.insert(c.tee.clone());
        let evidence_claims = &sub["ear.veraison.annotated-evidence"];
        assert_eq!(evidence_claims, &claims, "{}: the token carries the verified claims", c.id);
        for (k, v) in &c.expected_claims {
            assert_eq!(&evidence_claims[k], v, "{}: expected claim {k}", c.id);
        }
        if claims["debug"] == true {
            assert_eq!(sub["ear.status"], "contraindicated", "{}", c.id);
        }
        if claims["debug"] == false && claims["tcb_status"] == "UpToDate" {
            // Current hardware, but no reference values: not affirming.
            assert_eq!(sub["ear.status"], "warning", "{}", c.id);
            assert!(sub["cachet.reasons"].to_string().contains("measurements not appraised"), "{}: {sub}", c.id);
        }
        if c.tee == "tdx" && claims["debug"] == false && claims["tcb_status"] == "OutOfDate" {
            assert_eq!(sub["ear.status"], "warning", "{}: an OutOfDate TDX platform is a warning", c.id);
            assert_eq!(sub["ear.trustworthiness-vector"]["hardware"], 32, "{}", c.id);
        }
        if c.tee == "nitro" && claims["debug"] == true {
            debug_nitro += 1;
            assert_eq!(sub["ear.trustworthiness-vector"]["configuration"], 96, "{}", c.id);
        }
    }
    println!("attested {} of {} accept cases ({families:?})", accept.len() - not_verified.len(), accept.len());
    assert!(debug_nitro > 0, "a debug Nitro document is among the cases and was refused by the default policy");
    for (tee, _) in defaults::DEFAULT_POLICIES.iter().filter(|(t, _)| *t != "sim") {
        assert!(families.contains(*tee), "no accept case of {tee} was attested");
    }
    assert!(
        not_verified.is_empty(),
        "{} accept case(s) are not verified by cachet-verify yet (the server refused them exactly as the verifier does):\n  {}",
        not_verified.len(),
        not_verified.join("\n  ")
    );
}

#[tokio::test]
async fn a_verification_time_is_refused_unless_the_server_allows_it() {
    let srv = start("no-at", |_| {}).await;
    let c = cases().into_iter().find(|c| c.expect == "accept").unwrap();
    let (status, body) = srv.post("/v1/attest", &attest_body(&c)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "verification_time_not_allowed");
}

/// Real evidence of one family posted as another is refused by name at
/// `Evidence format`, saying which family it looks like, not deep in the
/// other family's parser. The case's own endorsements and instant go with
/// it, so nothing but the family label is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_of_one_family_sent_as_another_is_refused_by_name() {
    let srv = start("wrong-tee", |a| a.allow_verification_time = true).await;
    let all = cases();
    let case_of =
        |tee: &str| all.iter().find(|c| c.expect == "accept" && c.tee == tee).unwrap_or_else(|| panic!("an accept {tee} case")).clone();
    for (real, sent_as, looks_like) in
        [("snp", "tdx", "this looks like an SNP report, not a TDX quote"), ("tdx", "snp", "this looks like a TDX quote, not an SNP report")]
    {
        let c = case_of(real);
        let mut body = attest_body(&c);
        body["tee"] = json!(sent_as);
        let (status, v) = srv.post("/v1/attest", &body).await;
        assert_eq!(status, 422, "{} sent as {sent_as}: {v}", c.id);
        assert_eq!(v["error"]["code"], "verification_failed", "{}: {v}", c.id);
        assert_eq!(v["error"]["check"], "Evidence format", "{}: {v}", c.id);
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(looks_like), "{}: {message}", c.id);
        assert!(message.contains(&format!("send it as tee \"{real}\"")), "{}: {message}", c.id);
        // Sent as what it is, the same request is attested.
        let (status, v) = srv.post("/v1/attest", &attest_body(&c)).await;
        assert_eq!(status, 200, "{}: {v}", c.id);
    }
}

/// NVIDIA's 8-GPU PPCIe evidence set with one GPU's entry repeated is
/// refused at the repeat (`Distinct devices`), naming the GPU it repeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nvidia_evidence_set_listing_one_gpu_twice_is_refused() {
    let srv = start("nvgpu-twice", |a| a.allow_verification_time = true).await;
    let set: Value =
        serde_json::from_slice(&std::fs::read(vectors_dir().join("nvidia/nvtrust-head-partial/ppcie_gpu_evidence.json")).unwrap()).unwrap();
    let post = |set: &Value| json!({"tee": "nvgpu", "evidence": b64(&serde_json::to_vec(set).unwrap()), "at": "2026-01-30T12:00:00Z"});
    let (status, v) = srv.post("/v1/attest", &post(&set)).await;
    assert_eq!(status, 200, "the set as collected is attested: {v}");
    let mut repeated = set.clone();
    repeated.as_array_mut().unwrap().push(set[3].clone());
    let (status, v) = srv.post("/v1/attest", &post(&repeated)).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "verification_failed", "{v}");
    assert_eq!(v["error"]["check"], "GPU 8: Distinct devices", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("GPU 3"), "{v}");
}
