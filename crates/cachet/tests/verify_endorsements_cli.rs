//! `cachet verify` without `--endorsements` gets what the evidence needs from
//! its cache folder (or the vendors): `--offline` with an empty cache is
//! refused (exit 2) naming what is missing; with the folder holding the
//! recorded collateral of a real TDX case it verifies as with the files.

#[path = "../../cachet-endorse/tests/common/recorded.rs"]
mod recorded;

use std::process::{Command, Output};

use cachet_endorse::{Cache, FolderCache};

const EVIDENCE: &str = "tdx/automata/quote_tdx.bin";
const COLLATERAL: &str = "tdx/automata/collateral_2510.derived.json";
const AT: &str = "2025-10-31T14:17:11Z";

fn verify(extra: &[&str], cache: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachet"))
        .arg("verify")
        .arg(recorded::vectors().join(EVIDENCE))
        .args(["--tee", "tdx", "--at", AT, "--format", "json", "--cache-dir"])
        .arg(cache)
        .args(extra)
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn offline_with_an_empty_cache_is_refused_naming_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    let o = verify(&["--offline"], &empty);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(o.stdout.is_empty(), "nothing verified, nothing printed");
    assert!(err.contains("--offline and not cached"), "{err}");
    assert!(err.contains("TDX TCB Info for FMSPC 00806f050000"), "{err}");
    assert!(err.contains("TDX QE Identity") && err.contains("PCK CRL") && err.contains("Root CA CRL"), "{err}");
    assert!(!err.contains("fetching"), "offline fetches nothing: {err}");

    // Given endorsements are used as they are, cache or not.
    let file = recorded::vectors().join(COLLATERAL);
    let given = verify(&["--offline", "-e", file.to_str().unwrap()], &empty);
    assert_eq!(given.status.code(), Some(0), "{}", String::from_utf8_lossy(&given.stderr));
}

#[test]
fn offline_with_the_recorded_collateral_cached_verifies_as_with_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cache = FolderCache::new(&cache_dir);
    rt.block_on(async {
        for f in recorded::intel_bundle(COLLATERAL) {
            cache.put(&f.resource.key(), &f).await;
        }
    });
    let cached = verify(&["--offline"], &cache_dir);
    assert_eq!(cached.status.code(), Some(0), "{}", String::from_utf8_lossy(&cached.stderr));
    let said = String::from_utf8_lossy(&cached.stderr);
    assert!(!said.contains("OCSP"), "NVIDIA's OCSP responder is for NVIDIA evidence only: {said}");
    let file = recorded::vectors().join(COLLATERAL);
    let with_files = verify(&["-e", file.to_str().unwrap()], &dir.path().join("unused"));
    assert_eq!(with_files.status.code(), Some(0));
    let (a, b) = (json(&cached), json(&with_files));
    assert_eq!(a["verified"], true);
    assert_eq!(a["claims"], b["claims"], "same claims as with the files");
}

/// Given files and fetched pieces mix: a GPU's device certificates (evidence
/// the SDK collects from the GPU, which no NVIDIA service serves) are given
/// with `-e`, the RIMs the report names come from the cache, and the verdict
/// and claims are those of the run with every file given.
#[test]
fn given_device_certificates_mix_with_cached_rims_and_verify_as_with_every_file() {
    let v = recorded::vectors();
    let dir = v.join("nvidia/nvtrust-2023-full");
    let evidence = dir.join("attestationReport.txt");
    let certs = dir.join("gpuAkCertChain.txt");
    let at = "2024-06-24T07:54:33Z";
    let ids: Vec<String> = cachet_endorse::nvidia::needs(&std::fs::read(&evidence).unwrap())
        .unwrap()
        .into_iter()
        .map(|r| match r {
            cachet_endorse::Resource::Rim { id } => id,
            other => panic!("an NVIDIA report needs RIMs only, not {other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");

    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("cache");
    let run = |extra: &[&std::path::Path], offline: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cachet"));
        c.arg("verify").arg(&evidence).args(["--tee", "nvgpu", "--at", at, "--format", "json", "--cache-dir"]).arg(&cache_dir);
        for e in extra {
            c.arg("-e").arg(e);
        }
        if offline {
            c.arg("--offline");
        }
        c.output().unwrap()
    };

    // Nothing cached: the report verifies but its measurements go unappraised,
    // and the warning names the RIMs that could not be had.
    let short = run(&[&certs], true);
    assert_eq!(json(&short)["claims"]["rim_appraisal"], "none");
    let err = String::from_utf8_lossy(&short.stderr);
    assert!(err.contains("NVIDIA RIM") && err.contains("not available"), "names the RIMs it could not get: {err}");

    // With files given, the vendors are asked only when a source is named.
    let quiet = run(&[&certs], false);
    let err = String::from_utf8_lossy(&quiet.stderr);
    assert!(!err.contains("fetching") && err.contains("not cached"), "no source named, nothing fetched: {err}");
    let mut named = Command::new(env!("CARGO_BIN_EXE_cachet"));
    named.arg("verify").arg(&evidence).args(["--tee", "nvgpu", "--at", at, "--format", "json", "--cache-dir"]).arg(&cache_dir);
    let asked = named.arg("-e").arg(&certs).args(["--nvidia-rim-url", "http://127.0.0.1:9"]).output().unwrap();
    let err = String::from_utf8_lossy(&asked.stderr);
    assert!(err.contains("fetching NVIDIA RIM") && err.contains("http://127.0.0.1:9"), "the named source is asked: {err}");

    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cache = FolderCache::new(&cache_dir);
    rt.block_on(async {
        for id in &ids {
            let file = if id.contains("DRIVER") { "Driver_RIM_test_no_gpu.swidtag" } else { "1010_0200_882_96005E0001_PROD.swidtag" };
            let f = cachet_endorse::Fetched {
                resource: cachet_endorse::Resource::Rim { id: id.clone() },
                parts: vec![cachet_endorse::Part { name: file.into(), bytes: std::fs::read(dir.join(file)).unwrap() }],
                fetched_at: 0,
                next_update: None,
                source: "test".into(),
            };
            cache.put(&f.resource.key(), &f).await;
        }
    });
    let mixed = run(&[&certs], true);
    assert_eq!(mixed.status.code(), Some(0), "{}", String::from_utf8_lossy(&mixed.stderr));
    let all = run(&[&certs, &dir.join("Driver_RIM_test_no_gpu.swidtag"), &dir.join("1010_0200_882_96005E0001_PROD.swidtag")], true);
    assert_eq!(all.status.code(), Some(0), "{}", String::from_utf8_lossy(&all.stderr));
    let (a, b) = (json(&mixed), json(&all));
    assert_eq!(a["verified"], true);
    assert_eq!(a["claims"]["rim_appraisal"], "driver+vbios", "the cached RIMs judged the measurements");
    assert_eq!(a["claims"], b["claims"], "same claims as with every file");
}
