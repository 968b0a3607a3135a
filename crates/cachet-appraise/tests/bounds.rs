//! No policy may abort, hang or exhaust the process: each of these used to
//! (or could) — a builtin asked for petabytes at once, a chain of steps
//! doubled a string until memory ran out, a single comparison ran for hours.
//! Each must now be refused with an error, quickly, at compilation (the
//! probe run) or at evaluation, and the process must carry on.

use std::time::{Duration, Instant};

use cachet_appraise::{AppraisalInput, Policy, PolicyError, ReferenceValues};
use serde_json::json;

/// Compile and validate `body` (a policy module body) and expect a refusal
/// whose message contains `needle`, in well under the deadline.
fn refused(body: &str, needle: &str) {
    let text = format!("package p\nimport rego.v1\n{body}\nhardware := 2\n");
    let start = Instant::now();
    let e = Policy::validate("p", &text).expect_err(body);
    assert!(start.elapsed() < Duration::from_secs(10), "{body}: took {:?}", start.elapsed());
    assert!(e.to_string().contains(needle), "{body}: {e}");
}

/// A policy that is fine at upload but whose rule `x` blows up on `input.n`.
fn refused_at_evaluation(rule: &str, runtime_data: serde_json::Value, needle: &str) {
    let text = format!("package p\nimport rego.v1\nhardware := 2\nx := {rule} if input.runtime_data.go\n");
    let p = Policy::validate("p", &text).unwrap();
    let mut input = AppraisalInput::new("tdx", json!({}));
    input.runtime_data = Some(runtime_data);
    let start = Instant::now();
    let e = p.evaluate(&input, &ReferenceValues::new(), 0).expect_err(rule);
    assert!(start.elapsed() < Duration::from_secs(10), "{rule}: took {:?}", start.elapsed());
    assert!(matches!(e, PolicyError::Evaluation(_)), "{rule}: {e:?}");
    assert!(e.to_string().contains(needle), "{rule}: {e}");
}

#[test]
fn a_huge_range_is_refused_not_allocated() {
    // This aborted the process: "memory allocation of 24000000000000024 bytes failed".
    refused("x := count(numbers.range(0, 1000000000000000))", "numbers.range");
    refused("x := count(numbers.range_step(0, 1000000000000000, 1))", "numbers.range_step");
    refused_at_evaluation("count(numbers.range(0, input.runtime_data.n))", json!({"go": true, "n": 1e15}), "numbers.range");
    // A small range still works.
    let p = Policy::validate("p", "package p\nimport rego.v1\nhardware := 2 if count(numbers.range(1, 10)) == 10\n").unwrap();
    assert_eq!(
        p.evaluate(&AppraisalInput::new("tdx", json!({})), &ReferenceValues::new(), 0).unwrap().trustworthiness_vector.hardware,
        Some(2)
    );
}

#[test]
fn huge_strings_are_refused() {
    // One call asking for a billion-character padding.
    refused(r#"x := sprintf("%01000000000d", [1])"#, "sprintf");
    // Doubling chains: each step is small, the fortieth is a terabyte.
    let doubling: String = (1..=40).map(|i| format!("s{i} := concat(\"\", [s{}, s{}])\n", i - 1, i - 1)).collect();
    refused(&format!("s0 := \"abcdefgh\"\n{doubling}x := count(s40)"), "larger than");
    let squaring: String = (1..=6).map(|i| format!("r{i} := replace(r{}, \"a\", r{})\n", i - 1, i - 1)).collect();
    refused(&format!("r0 := \"aaaaaaaaaaaaaaaa\"\n{squaring}x := count(r6)"), "larger than");
    refused_at_evaluation(
        r#"strings.replace_n({"a": input.runtime_data.big}, input.runtime_data.big)"#,
        json!({"go": true, "big": "a".repeat(1 << 20)}),
        "larger than",
    );
    // Oversized input is refused before the policy runs.
    refused_at_evaluation("1", json!({"go": true, "big": "a".repeat(5 << 20)}), "larger than");
}

#[test]
fn huge_shared_arrays_are_not_flattened() {
    // 2^64 leaves sharing one string: cheap to build, fatal to serialize.
    let levels: String = (1..=64).map(|i| format!("a{i} := [a{}, a{}]\n", i - 1, i - 1)).collect();
    refused(&format!("a0 := \"leaf\"\n{levels}x := json.marshal(a64)"), "larger than");
    refused(&format!("a0 := \"leaf\"\n{levels}x := sprintf(\"%v\", [a64])"), "larger than");
}

#[test]
fn numbers_with_huge_exponents_are_refused() {
    let e = Policy::compile("p", "package p\nimport rego.v1\nx := 1e999999999\nhardware := 2\n").unwrap_err();
    assert!(matches!(e, PolicyError::Refused(_)), "{e:?}");
    refused_at_evaluation("to_number(input.runtime_data.s)", json!({"go": true, "s": "1e999999999"}), "exponent");
    refused("x := bits.lsh(1, 4000000000)", "bits.lsh");
}

#[test]
fn growing_arithmetic_stops_at_the_time_limit() {
    // Squaring doubles the digits each step; the clock stops the chain.
    let squares: String = (1..=40).map(|i| format!("n{i} := n{} * n{}\n", i - 1, i - 1)).collect();
    let start = Instant::now();
    let r = Policy::validate("p", &format!("package p\nimport rego.v1\nn0 := 12345678901\n{squares}hardware := 2 if n40 > 0\n"));
    assert!(r.is_err(), "a 2^40-digit number was computed");
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let deep = format!("x := {}1{}", "(".repeat(100_000), ")".repeat(100_000));
    refused(&deep, "");
    let deep = format!("x := {}1{}", "[".repeat(100_000), "]".repeat(100_000));
    refused(&deep, "");
}

#[test]
fn regex_bombs_are_refused_or_run_in_linear_time() {
    // Catastrophic backtracking patterns are linear in Rust's regex engine;
    // a pattern whose compiled form is huge is refused by its size limit.
    let p = Policy::validate("p", "package p\nimport rego.v1\nhardware := 2\nreasons contains {\"rule\": \"r\", \"outcome\": \"warning\", \"detail\": \"m\"} if regex.match(`^(a+)+$`, input.runtime_data.s)\n").unwrap();
    let mut input = AppraisalInput::new("tdx", json!({}));
    input.runtime_data = Some(json!({"s": format!("{}!", "a".repeat(100_000))}));
    let start = Instant::now();
    p.evaluate(&input, &ReferenceValues::new(), 0).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    refused(r#"x := regex.match("((a{100}){100}){100}", "a")"#, "");
}

#[test]
fn a_step_the_clock_cannot_interrupt_still_answers_at_the_deadline() {
    // Two separately built 2^40-leaf structures (local to the rule body):
    // comparing them is one regorus step that would run for hours. The
    // caller gets an error at the deadline (the runaway thread is counted,
    // and capped).
    let b: String = (1..=40).map(|i| format!("  b{i} := [b{}, b{}]\n", i - 1, i - 1)).collect();
    let c: String = (1..=40).map(|i| format!("  c{i} := [c{}, c{}]\n", i - 1, i - 1)).collect();
    let text = format!(
        "package p\nimport rego.v1\nhardware := 2\nx if {{\n  input.runtime_data.go\n  b0 := concat(\"\", [\"le\", \"af\"])\n  c0 := concat(\"\", [\"l\", \"eaf\"])\n{b}{c}  b40 == c40\n}}\n"
    );
    let p = Policy::validate("p", &text).unwrap();
    let mut input = AppraisalInput::new("tdx", json!({}));
    input.runtime_data = Some(json!({"go": true}));
    let start = Instant::now();
    let e = p.evaluate(&input, &ReferenceValues::new(), 0).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert!(e.to_string().contains("time limit"), "{e}");
}

#[test]
fn a_huge_rule_value_is_not_serialized() {
    // A rule (part of the package's output) holding 2^64 shared leaves.
    let levels: String = (1..=64).map(|i| format!("a{i} := [a{}, a{}]\n", i - 1, i - 1)).collect();
    refused(&format!("a0 := \"leaf\"\n{levels}"), "larger than");
}
