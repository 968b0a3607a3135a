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
    let file = recorded::vectors().join(COLLATERAL);
    let with_files = verify(&["-e", file.to_str().unwrap()], &dir.path().join("unused"));
    assert_eq!(with_files.status.code(), Some(0));
    let (a, b) = (json(&cached), json(&with_files));
    assert_eq!(a["verified"], true);
    assert_eq!(a["claims"], b["claims"], "same claims as with the files");
}
