//! Policy management behaviour: broken or failing policies are refused with
//! a clear error before they can be used; a refused policy never replaces
//! a working one; compiled policies are cached by hash.

use std::sync::Arc;

use cachet_appraise::defaults::{default_policy_text, DEFAULT_POLICIES};
use cachet_appraise::{policy_hash, AppraisalInput, Policy, PolicyCache, PolicyError, ReferenceValues, Status};
use serde_json::json;

const GOOD: &str = r#"package example
import rego.v1

default hardware := 97
hardware := 2 if input.claims.debug == false

reasons contains {"rule": "debug", "outcome": "contraindicated", "detail": "debug mode"} if input.claims.debug
claims := {"workload": "example"}
"#;

fn input(debug: bool) -> AppraisalInput {
    AppraisalInput::new("tdx", json!({"tee": "tdx", "debug": debug, "mr_td": "aa"}))
}

#[test]
fn a_good_policy_validates_and_explains() {
    let p = Policy::validate("example", GOOD).unwrap();
    assert_eq!(p.hash(), policy_hash(GOOD));
    assert_eq!(p.package(), "data.example");
    let a = p.evaluate(&input(false), &ReferenceValues::new(), 0).unwrap();
    assert_eq!(a.status, Status::Affirming);
    assert_eq!(a.claims["workload"], "example");
    let a = p.evaluate(&input(true), &ReferenceValues::new(), 0).unwrap();
    assert_eq!(a.status, Status::Contraindicated);
    assert_eq!(a.reasons[0].rule, "debug");
    assert_eq!(a.to_ear_submod()["ear.appraisal-policy-id"], format!("policy:example@sha256:{}", policy_hash(GOOD)));
}

#[test]
fn a_syntax_error_is_refused_with_its_line() {
    let broken = "package example\nimport rego.v1\nhardware := 2 if {\n  input.claims.debug == \n";
    let e = Policy::validate("broken", broken).unwrap_err();
    assert!(matches!(e, PolicyError::Syntax(_)), "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with("policy syntax error: "), "{msg}");
    assert!(msg.contains("broken.rego:"), "names the file and line: {msg}");
}

#[test]
fn an_unknown_function_is_refused_at_compilation() {
    let e = Policy::compile("p", "package p\nimport rego.v1\nhardware := no_such_function(input.claims)\n").unwrap_err();
    assert!(matches!(e, PolicyError::Compile(_) | PolicyError::Evaluation(_)), "{e}");
    assert!(e.to_string().contains("no_such_function"), "{e}");
}

#[test]
fn a_policy_failing_at_run_time_is_refused_by_validation() {
    // Compiles, but two definitions of a complete rule disagree on real input.
    let conflicting = "package p\nimport rego.v1\nhardware := 2 if input.claims\nhardware := 3 if input.tee\n";
    assert!(Policy::compile("p", conflicting).is_ok(), "compiles: the conflict needs input to show");
    let e = Policy::validate("p", conflicting).unwrap_err();
    assert!(matches!(e, PolicyError::Evaluation(_)), "{e}");
    assert!(e.to_string().contains("on the sample"), "names the sample it failed on: {e}");

    // A builtin error on real claims.
    let e = Policy::validate("p", "package p\nimport rego.v1\nhardware := to_number(input.tee)\n").unwrap_err();
    assert!(matches!(e, PolicyError::Evaluation(_)), "{e}");
}

#[test]
fn malformed_output_is_refused() {
    for (text, want) in [
        ("package p\nimport rego.v1\nhardware := \"genuine\"\n", "`hardware` must be an AR4SI integer"),
        ("package p\nimport rego.v1\nhardware := 200\n", "`hardware` must be an AR4SI integer"),
        ("package p\nimport rego.v1\nstatus := \"fine\"\n", "`status` must be one of"),
        ("package p\nimport rego.v1\nhardware := 2\nreasons contains {\"rule\": \"x\", \"outcome\": \"ok\"}\n", "`outcome` must be one of"),
        ("package p\nimport rego.v1\nhardware := 2\nclaims := [1]\n", "`claims` must be an object"),
    ] {
        let e = Policy::validate("p", text).unwrap_err();
        assert!(matches!(e, PolicyError::Output(_)), "{text}: {e}");
        assert!(e.to_string().contains(want), "{e}");
    }
}

#[test]
fn a_policy_that_decides_nothing_is_refused() {
    let e = Policy::validate("p", "package p\nimport rego.v1\nhelper := 1\n").unwrap_err();
    assert!(matches!(e, PolicyError::NoDecision(_)), "{e}");
}

#[test]
fn reserved_package_and_oversized_text_are_refused() {
    let e = Policy::compile("p", "package reference_values\nimport rego.v1\nhardware := 2\n").unwrap_err();
    assert!(matches!(e, PolicyError::Refused(_)), "{e}");
    let huge = format!("package p\n{}", "#".repeat(cachet_appraise::policy::MAX_POLICY_LEN));
    assert!(matches!(Policy::compile("p", &huge).unwrap_err(), PolicyError::Refused(_)));
}

#[test]
fn an_endless_policy_is_stopped() {
    // A comprehension over a huge range: refused by the evaluation time limit
    // or a regorus limit, never left running.
    let text = "package p\nimport rego.v1\nhardware := 2 if count([x | some x in numbers.range(1, 100000000)]) > 0\n";
    let start = std::time::Instant::now();
    let r = Policy::validate("p", text);
    assert!(r.is_err());
    assert!(start.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn a_refused_policy_never_replaces_the_cached_one() {
    let cache = PolicyCache::new(8);
    let good = cache.insert(Arc::new(Policy::validate("tenant", GOOD).unwrap()));
    // An update that fails validation is never inserted...
    let bad = "package example\nimport rego.v1\nhardware := \n";
    assert!(Policy::validate("tenant", bad).is_err());
    // ...so the working policy still serves.
    let served = cache.get("tenant", &policy_hash(GOOD)).unwrap();
    assert!(Arc::ptr_eq(&good, &served));
    assert_eq!(served.evaluate(&input(false), &ReferenceValues::new(), 0).unwrap().status, Status::Affirming);
    assert!(cache.get("tenant", &policy_hash(bad)).is_none());
}

#[test]
fn compiled_policies_evaluate_concurrently() {
    let p = Arc::new(Policy::compile("tdx", default_policy_text("tdx").unwrap()).unwrap());
    let claims = json!({"tee": "tdx", "debug": false, "tcb_status": "UpToDate", "mr_td": "ab"});
    let refs = Arc::new(ReferenceValues::parse(r#"{"mr_td": ["AB"]}"#, false).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (p, refs, claims) = (p.clone(), refs.clone(), claims.clone());
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let a = p.evaluate(&AppraisalInput::new("tdx", claims.clone()), &refs, 0).unwrap();
                    assert_eq!(a.status, Status::Affirming);
                    assert_eq!(a.trustworthiness_vector.executables, Some(2));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn every_family_has_a_default_policy() {
    let names: Vec<&str> = DEFAULT_POLICIES.iter().map(|(t, _)| *t).collect();
    for tee in ["sgx", "tdx", "snp", "az-snp-vtpm", "az-tdx-vtpm", "nitro", "nitro-tpm", "tpm", "nvgpu", "sim"] {
        assert!(names.contains(&tee), "{tee}");
    }
}

#[test]
fn a_policy_declares_the_tee_families_it_judges() {
    // Every shipped default judges exactly its own family.
    for (tee, text) in DEFAULT_POLICIES {
        let p = Policy::compile(&format!("default-{tee}"), text).unwrap();
        assert_eq!(p.declared_tees().unwrap(), Some(vec![tee.to_string()]), "default-{tee}");
    }
    let with = |decl: &str| Policy::compile("p", &format!("{GOOD}{decl}\n")).unwrap().declared_tees();
    assert_eq!(with("tees := {\"tdx\", \"az-tdx-vtpm\", \"tdx\"}").unwrap(), Some(vec!["az-tdx-vtpm".to_string(), "tdx".to_string()]));
    assert_eq!(with("tees := [\"sgx\"]").unwrap(), Some(vec!["sgx".to_string()]));
    // Undeclared, or declared from the input (unknown without one): none.
    assert_eq!(with("").unwrap(), None);
    assert_eq!(with("tees := {input.tee}").unwrap(), None);
    // Not a set of names: an error, never "every family".
    assert!(matches!(with("tees := \"tdx\""), Err(PolicyError::Output(_))));
    assert!(matches!(with("tees := {1, 2}"), Err(PolicyError::Output(_))));
}
