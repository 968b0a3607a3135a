//! `cachet verify --policy/--refvals` and `cachet refvals`, run as a user
//! would: real evidence, exit codes, the JSON `appraisal` object.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cachet"))
}

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cachet-policy-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `cachet verify` of the TDX quote of the README, with extra arguments.
fn verify_tdx(extra: &[&str]) -> (i32, serde_json::Value, String) {
    let v = vectors();
    let out = bin()
        .arg("verify")
        .arg(v.join("tdx/dcap-qvl/tdx_quote"))
        .arg("--endorsements")
        .arg(v.join("tdx/dcap-qvl/tdx_quote_collateral.json"))
        .args(["--at", "2025-07-04T10:16:31Z", "--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), doc, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn write_provenance(dir: &Path, digest: &str) -> PathBuf {
    let st = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "td.img", "digest": {"sha384": digest}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"runDetails": {"builder": {"id": "https://ci.example/builder"}}}
    });
    let p = dir.join("prov.json");
    std::fs::write(&p, st.to_string()).unwrap();
    p
}

#[test]
fn without_a_policy_the_output_is_unchanged() {
    let (code, doc, _) = verify_tdx(&[]);
    if doc["verified"] != true {
        eprintln!("TDX verifier not ready; skipped");
        return;
    }
    assert_eq!(code, 0);
    assert!(doc.get("appraisal").is_none());
}

#[test]
fn the_default_policy_explains_its_appraisal() {
    let (code, doc, _) = verify_tdx(&["--policy", "default"]);
    if doc["verified"] != true {
        eprintln!("TDX verifier not ready; skipped");
        return;
    }
    assert_eq!(code, 0);
    let a = &doc["appraisal"];
    // Current hardware, but no reference values given: a warning saying the
    // measurements were not appraised.
    assert_eq!(a["status"], "warning", "{a:#}");
    assert!(a["reasons"].as_array().unwrap().iter().any(|r| r["rule"] == "reference_values"
        && r["outcome"] == "warning"
        && r["detail"].as_str().unwrap_or("").contains("measurements not appraised")));
    assert_eq!(a["trustworthiness_vector"]["hardware"], 2);
    assert_eq!(a["policy_name"], "default-tdx");
    assert_eq!(a["policy_hash"].as_str().unwrap().len(), 64);
    assert!(a["reasons"].as_array().unwrap().iter().any(|r| r["rule"] == "tcb_status" && r["outcome"] == "affirming"));
}

#[test]
fn provenance_reference_values_decide_with_a_requiring_policy() {
    let (_, doc, _) = verify_tdx(&[]);
    if doc["verified"] != true {
        eprintln!("TDX verifier not ready; skipped");
        return;
    }
    let mr_td = doc["claims"]["mr_td"].as_str().unwrap().to_string();
    let dir = scratch("prov");
    let store = dir.join("refvals.json");
    let prov = write_provenance(&dir, &mr_td);
    let st = bin().args(["refvals", "import", "--store"]).arg(&store).args(["--name", "mr_td"]).arg(&prov).status().unwrap();
    assert!(st.success());
    let list = bin().args(["refvals", "list", "--format", "json", "--store"]).arg(&store).output().unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed["reference_values"]["mr_td"]["values"][0]["builder_id"], "https://ci.example/builder");

    let strict = cachet_policy_requiring();
    let policy = dir.join("strict.rego");
    std::fs::write(&policy, strict).unwrap();
    let (code, doc, _) = verify_tdx(&["--policy", policy.to_str().unwrap(), "--refvals", store.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(doc["appraisal"]["status"], "affirming", "{:#}", doc["appraisal"]);
    assert_eq!(doc["appraisal"]["trustworthiness_vector"]["executables"], 2);

    // Another measurement: contraindicated, exit 1, still verified.
    let other = dir.join("other.json");
    std::fs::write(&other, serde_json::json!({"reference_values": {"mr_td": ["00".repeat(48)]}}).to_string()).unwrap();
    let (code, doc, err) = verify_tdx(&["--policy", policy.to_str().unwrap(), "--refvals", other.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(doc["verified"], true);
    assert_eq!(doc["appraisal"]["status"], "contraindicated");
    assert!(err.contains("contraindicated"), "{err}");
}

/// The default TDX policy with its two strictness settings changed.
fn cachet_policy_requiring() -> String {
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cachet-appraise/policies/tdx.rego")).unwrap();
    text.replace(r#"mismatch_outcome := "warning""#, r#"mismatch_outcome := "contraindicated""#)
        .replace("require_reference_values := false", "require_reference_values := true")
}

#[test]
fn a_debug_nitro_document_is_refused_with_exit_1() {
    let v = vectors();
    let out = bin()
        .arg("verify")
        .arg(v.join("nitro/evervault/debug-mode-attestation-doc-bytes"))
        .args(["--tee", "nitro", "--at", "2022-10-12T15:20:00Z", "--format", "json", "--policy", "default"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    if doc["verified"] != true {
        eprintln!("Nitro verifier not ready; skipped");
        return;
    }
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(doc["appraisal"]["status"], "contraindicated");
    assert!(doc["appraisal"]["reasons"].as_array().unwrap().iter().any(|r| r["rule"] == "debug" && r["outcome"] == "contraindicated"));
}

#[test]
fn a_broken_policy_is_a_usage_error() {
    let dir = scratch("broken");
    let p = dir.join("broken.rego");
    std::fs::write(&p, "package x\nimport rego.v1\nhardware := \n").unwrap();
    let (code, _, err) = verify_tdx(&["--policy", p.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("policy syntax error") && err.contains("broken.rego:"), "{err}");
    let bad_refs = dir.join("refs.json");
    std::fs::write(&bad_refs, r#"{"reference_values": {"bad name": ["aa"]}}"#).unwrap();
    let (code, _, err) = verify_tdx(&["--refvals", bad_refs.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("bad name"), "{err}");
}

#[test]
fn refvals_add_remove_and_toml_import() {
    let dir = scratch("toml");
    let store = dir.join("s.json");
    let toml = dir.join("r.toml");
    std::fs::write(&toml, "[reference_values.pcr0]\nexpires = 2030-01-01T00:00:00Z\nvalues = [\"0xAB\"]\n").unwrap();
    assert!(bin().args(["refvals", "import", "--store"]).arg(&store).arg(&toml).status().unwrap().success());
    assert!(bin().args(["refvals", "add", "--name", "nitro.pcr0", "--store"]).arg(&store).arg("CD").status().unwrap().success());
    let out = bin().args(["refvals", "list", "--at", "2031-01-01T00:00:00Z", "--format", "json", "--store"]).arg(&store).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["live"]["pcr0"], serde_json::json!([]), "expired");
    assert_eq!(doc["live"]["nitro.pcr0"], serde_json::json!(["cd"]));
    assert!(bin().args(["refvals", "remove", "--name", "pcr0", "--store"]).arg(&store).status().unwrap().success());
    let st = bin().args(["refvals", "remove", "--name", "pcr0", "--store"]).arg(&store).status().unwrap();
    assert_eq!(st.code(), Some(2));
    // Provenance without --name is refused.
    let prov = write_provenance(&dir, &"11".repeat(48));
    assert_eq!(bin().args(["refvals", "import", "--store"]).arg(&store).arg(&prov).status().unwrap().code(), Some(2));
}
