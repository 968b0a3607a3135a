//! `cachet endorsements` (the air-gapped path) on a real TDX case's recorded
//! collateral: a folder cache is exported to a bundle, the bundle imported
//! into an empty folder, and `cachet verify --offline` over that folder
//! verifies; `list` shows what is held; a bundle with one entry's bytes
//! changed is refused naming the entry, and nothing is imported.

#[path = "../../cachet-endorse/tests/common/recorded.rs"]
mod recorded;

use std::path::Path;
use std::process::{Command, Output};

use cachet_endorse::{Cache, FolderCache};

const EVIDENCE: &str = "tdx/automata/quote_tdx.bin";
const COLLATERAL: &str = "tdx/automata/collateral_2510.derived.json";
const AT: &str = "2025-10-31T14:17:11Z";

fn cachet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachet")).args(args).output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn seeded(dir: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cache = FolderCache::new(dir);
    rt.block_on(async {
        for f in recorded::intel_bundle(COLLATERAL) {
            cache.put(&f.resource.key(), &f).await;
        }
    });
}

fn verify_offline(cache: &Path) -> Output {
    let ev = recorded::vectors().join(EVIDENCE);
    cachet(&["verify", s(&ev), "--tee", "tdx", "--at", AT, "--format", "json", "--offline", "--cache-dir", s(cache)])
}

#[test]
fn export_import_then_verify_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (online, airgapped, file) = (dir.path().join("online"), dir.path().join("airgapped"), dir.path().join("bundle.json"));
    seeded(&online);

    let o = cachet(&["endorsements", "export", "--cache-dir", s(&online), "--out", s(&file)]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(b["format"], "cachet-endorsements/1");
    assert_eq!(b["entries"].as_array().unwrap().len(), 4);

    // Before the import the air-gapped side has nothing.
    assert_eq!(verify_offline(&airgapped).status.code(), Some(2));
    let o = cachet(&["endorsements", "import", s(&file), "--cache-dir", s(&airgapped)]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let v = verify_offline(&airgapped);
    let out: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&v.stderr)));
    assert_eq!(v.status.code(), Some(0), "{out}");
    assert_eq!(out["verified"], true, "{out}");

    let l = cachet(&["endorsements", "list", "--cache-dir", s(&airgapped), "--format", "json"]);
    assert_eq!(l.status.code(), Some(0), "{}", String::from_utf8_lossy(&l.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&l.stdout).unwrap();
    let keys: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert!(keys.contains(&"intel/tdx/tcb/00806f050000"), "{keys:?}");
    assert!(keys.contains(&"intel/rootcacrl"), "{keys:?}");
    assert!(rows[0]["source"].as_str().unwrap().starts_with("recorded:"), "{rows}");
    assert!(rows[0].get("age_s").is_some() && rows[0].get("next_update").is_some(), "{rows}");
}

#[test]
fn a_tampered_entry_is_refused_by_name_and_nothing_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let (online, airgapped, file) = (dir.path().join("online"), dir.path().join("airgapped"), dir.path().join("bundle.json"));
    seeded(&online);
    let o = cachet(&["endorsements", "export", "--cache-dir", s(&online), "--out", s(&file)]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));

    // One byte of the root CA CRL (its signature) changed: still a CRL, no longer Intel's.
    let mut b: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let entries = b["entries"].as_array_mut().unwrap();
    let e = entries.iter_mut().find(|e| e["resource"]["kind"] == "root_ca_crl").unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut der = b64.decode(e["parts"][0]["bytes"].as_str().unwrap()).unwrap();
    let last = der.len() - 1;
    der[last] ^= 1;
    e["parts"][0]["bytes"] = b64.encode(&der).into();
    std::fs::write(&file, serde_json::to_vec(&b).unwrap()).unwrap();

    let o = cachet(&["endorsements", "import", s(&file), "--cache-dir", s(&airgapped)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("intel/rootcacrl") && err.contains("nothing imported"), "{err}");
    assert!(!airgapped.exists() || std::fs::read_dir(&airgapped).unwrap().next().is_none(), "something was imported");
}

/// `fetch` gathers what the evidence needs (here all in its cache folder,
/// valid at `--at`, so no vendor is asked) into a bundle that verifies offline elsewhere.
#[test]
fn fetch_gathers_what_the_evidence_needs_into_a_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (online, airgapped, file) = (dir.path().join("online"), dir.path().join("airgapped"), dir.path().join("bundle.json"));
    seeded(&online);
    let ev = recorded::vectors().join(EVIDENCE);
    // Unreachable sources: anything not cached would fail the fetch.
    let nowhere = "http://127.0.0.1:9";
    let o = cachet(&[
        "endorsements",
        "fetch",
        s(&ev),
        "--tee",
        "tdx",
        "--at",
        AT,
        "--cache-dir",
        s(&online),
        "--out",
        s(&file),
        "--pcs-url",
        nowhere,
        "--kds-url",
        nowhere,
        "--nvidia-rim-url",
        nowhere,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let mut kinds: Vec<&str> = b["entries"].as_array().unwrap().iter().map(|e| e["resource"]["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["pck_crl", "qe_identity", "root_ca_crl", "tcb_info"]);

    let o = cachet(&["endorsements", "import", s(&file), "--cache-dir", s(&airgapped)]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(verify_offline(&airgapped).status.code(), Some(0));

    // Evidence it cannot get endorsements for writes no bundle.
    let missing = dir.path().join("none.json");
    let o = cachet(&[
        "endorsements",
        "fetch",
        s(&ev),
        "--tee",
        "tdx",
        "--at",
        AT,
        "--cache-dir",
        s(&dir.path().join("empty")),
        "--out",
        s(&missing),
        "--pcs-url",
        nowhere,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!missing.exists());
}

/// With `--data-dir`, import, list and export work on a server's store, and the import is audited.
#[test]
fn a_server_store_is_imported_into_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (online, data, file, back) =
        (dir.path().join("online"), dir.path().join("data"), dir.path().join("bundle.json"), dir.path().join("back.json"));
    seeded(&online);
    assert_eq!(cachet(&["endorsements", "export", "--cache-dir", s(&online), "--out", s(&file)]).status.code(), Some(0));
    let o = cachet(&["endorsements", "import", s(&file), "--data-dir", s(&data)]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let l = cachet(&["endorsements", "list", "--data-dir", s(&data), "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&l.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&l.stderr)));
    assert_eq!(rows.as_array().unwrap().len(), 4, "{rows}");
    assert_eq!(cachet(&["endorsements", "export", "--data-dir", s(&data), "--out", s(&back)]).status.code(), Some(0));
    let (a, b): (serde_json::Value, serde_json::Value) =
        (serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap(), serde_json::from_slice(&std::fs::read(&back).unwrap()).unwrap());
    assert_eq!(a, b, "the store gives back what was imported");
    let audit = cachet(&["audit", "show", "--data-dir", s(&data)]);
    let text = String::from_utf8_lossy(&audit.stdout);
    assert!(text.contains("endorsements.import"), "{text}");
}
