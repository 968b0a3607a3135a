//! Policy-evaluation cost per attestation: `cargo bench -p cachet-appraise`.
//!
//! * cold — compile the family's default policy (parse + analyse), add the
//!   reference values and evaluate once: what the first attestation naming
//!   a new policy pays;
//! * warm — evaluate with the compiled, cached policy and unchanged
//!   reference values: what every later attestation pays;
//! * new reference values — the cached policy, but reference values changed
//!   since the last evaluation (the engine is re-prepared once).
//!
//! Claims are those of real evidence (`testdata/vectors`, verified with
//! `cachet-verify`) when it verifies, else the built-in samples. A summary
//! table per TEE family is printed first; criterion's figures follow.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cachet_appraise::defaults::{default_policy_name, default_policy_text, DEFAULT_POLICIES};
use cachet_appraise::{samples, AppraisalInput, Policy, RefValue, ReferenceValues};
use criterion::{criterion_group, criterion_main, Criterion};

/// Claims of real TDX evidence (the first `accept` TDX case that verifies).
fn real_tdx_claims() -> Option<(serde_json::Value, i64)> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors");
    let cases: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("cases.json")).ok()?).ok()?;
    for c in cases["cases"].as_array()? {
        if c["tee"] != "tdx" || c["expect"] != "accept" {
            continue;
        }
        let at =
            time::OffsetDateTime::parse(c["verify_at"].as_str()?, &time::format_description::well_known::Rfc3339).ok()?.unix_timestamp();
        let raw = std::fs::read(dir.join(c["evidence"].as_str()?)).ok()?;
        let evidence = cachet_verify::encoding::decode_evidence(&raw).1;
        let mut endorsements = Vec::new();
        for e in c["endorsements"].as_array().into_iter().flatten() {
            let p = dir.join(e.as_str()?);
            endorsements.push(cachet_verify::Endorsement { name: e.to_string(), bytes: std::fs::read(p).ok()? });
        }
        let anchors = cachet_verify::TrustAnchors::pinned();
        let req =
            cachet_verify::VerifyRequest { evidence: &evidence, endorsements: &endorsements, anchors: &anchors, at, expected_nonce: None };
        if let Ok(claims) = cachet_verify::verify(cachet_verify::Tee::Tdx, &req).result {
            return Some((claims, at));
        }
    }
    None
}

/// Reference values for the measurements of `claims`, plus unrelated sets
/// (a realistic store holds values for many workloads).
fn refvals_for(claims: &serde_json::Value) -> ReferenceValues {
    let mut r = ReferenceValues::new();
    for name in ["mr_td", "rtmr0", "rtmr1", "rtmr2", "measurement", "mr_enclave"] {
        if let Some(v) = claims.get(name).and_then(|v| v.as_str()) {
            r.add_values(name, vec![RefValue::new(v).unwrap()]).unwrap();
        }
    }
    for i in 0..20 {
        let vals = (0..10).map(|j| RefValue::new(&format!("{:096x}", i * 100 + j)).unwrap()).collect();
        r.add_values(&format!("other{i}"), vals).unwrap();
    }
    r
}

fn time_per(n: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

fn summary() {
    println!("\npolicy evaluation cost per attestation (default policy of each family, 20 reference sets)");
    println!("{:<12} {:>12} {:>12} {:>16}", "tee", "cold", "warm", "new refvals");
    let mut inputs = samples::sample_inputs();
    if let Some((claims, _)) = real_tdx_claims() {
        if let Some(i) = inputs.iter_mut().find(|i| i.tee == "tdx") {
            i.claims = claims;
        }
    }
    for (tee, text) in DEFAULT_POLICIES {
        let Some(input) = inputs.iter().find(|i| i.tee == tee) else { continue };
        let refs = refvals_for(&input.claims);
        let cold = time_per(20, || {
            let p = Policy::compile(&default_policy_name(tee), text).unwrap();
            black_box(p.evaluate(input, &refs, 0).unwrap());
        });
        let p = Policy::compile(&default_policy_name(tee), text).unwrap();
        p.evaluate(input, &refs, 0).unwrap();
        let warm = time_per(500, || {
            black_box(p.evaluate(input, &refs, 0).unwrap());
        });
        let mut k = 0u64;
        let fresh = time_per(50, || {
            k += 1;
            let mut r = refs.clone();
            r.add_values("rotating", vec![RefValue::new(&format!("{k:x}")).unwrap()]).unwrap();
            black_box(p.evaluate(input, &r, 0).unwrap());
        });
        println!("{tee:<12} {:>10.1}µs {:>10.1}µs {:>14.1}µs", us(cold), us(warm), us(fresh));
    }
    println!();
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn bench(c: &mut Criterion) {
    summary();
    let (claims, at) = real_tdx_claims().unwrap_or_else(|| {
        let s = samples::sample_inputs().into_iter().find(|i| i.tee == "tdx").unwrap();
        (s.claims, 0)
    });
    let input = AppraisalInput::new("tdx", claims);
    let refs = refvals_for(&input.claims);
    let text = default_policy_text("tdx").unwrap();
    c.bench_function("tdx default policy: cold (compile + first evaluation)", |b| {
        b.iter(|| {
            let p = Policy::compile("default-tdx", text).unwrap();
            black_box(p.evaluate(&input, &refs, at).unwrap())
        })
    });
    let p = Policy::compile("default-tdx", text).unwrap();
    c.bench_function("tdx default policy: warm (cached, per attestation)", |b| {
        b.iter(|| black_box(p.evaluate(&input, &refs, at).unwrap()))
    });
    c.bench_function("tdx default policy: validate (compile + 20 sample runs)", |b| {
        b.iter(|| black_box(Policy::validate("default-tdx", text).unwrap()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
