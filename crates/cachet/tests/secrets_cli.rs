//! `cachet secrets put|list|get|delete|releases` against a running
//! `cachet serve` on a loopback port, with tenant API keys from
//! `cachet admin create-key --tenant`: values go in from a file or stdin and
//! never come back out; one tenant does not see another's secrets.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_cachet");
const VALUE: &str = "cli-plaintext-value-93b1";

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cachet-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn key(dir: &Path, tenant: &str, role: &str) -> String {
    let o = Command::new(BIN).args(["admin", "create-key", "--role", role, "--tenant", tenant, "--data-dir"]).arg(dir).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn secrets(url: &str, key: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(BIN)
        .arg("secrets")
        .args(args)
        .env("CACHET_SERVER", url)
        .env("CACHET_API_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(c.stdin.take());
    c.wait_with_output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{o:?}");
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn tenants_manage_their_own_secrets_from_the_command_line() {
    let dir = temp("secrets");
    let (ka, kb) = (key(&dir, "bank-a", "admin"), key(&dir, "bank-b", "admin"));
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _serve = Serve(child);
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");

    let policy = dir.join("policy.rego");
    std::fs::write(&policy, "package release\nimport rego.v1\nstatus := \"affirming\" if input.tee == \"sim\"\n").unwrap();
    let value_file = dir.join("value");
    std::fs::write(&value_file, VALUE).unwrap();
    let p = policy.to_str().unwrap();
    let v = json(&secrets(&url, &ka, &["put", "db", "--value-file", value_file.to_str().unwrap(), "--policy-file", p], None));
    assert_eq!((v["owner"].as_str(), v["name"].as_str(), v["version"].as_i64()), (Some("bank-a"), Some("db"), Some(1)));
    let v = json(&secrets(&url, &ka, &["put", "db", "--value-stdin", "--policy-file", p], Some(VALUE)));
    assert_eq!(v["version"], 2);
    let o = secrets(&url, &ka, &["list"], None);
    assert!(!String::from_utf8_lossy(&o.stdout).contains(VALUE), "values are never shown");
    let list = json(&o);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(json(&secrets(&url, &ka, &["get", "db"], None))["policy"].as_str().unwrap().contains("affirming"));
    // Another tenant sees nothing of it and cannot delete it.
    assert_eq!(json(&secrets(&url, &kb, &["list"], None)).as_array().unwrap().len(), 0);
    let o = secrets(&url, &kb, &["get", "db"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("404"), "{o:?}");
    assert_eq!(secrets(&url, &kb, &["delete", "db"], None).status.code(), Some(1));
    // The owner's releases view shows its own changes (its key's creation too), never another's.
    let rel = json(&secrets(&url, &ka, &["releases"], None));
    let actions: Vec<&str> = rel.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["api_key.create", "secret.create", "secret.update"]);
    let rel_b = json(&secrets(&url, &kb, &["releases"], None));
    let actions: Vec<&str> = rel_b.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["api_key.create"], "{rel_b}");
    // A bad policy is refused with its code; no key, no access.
    std::fs::write(&policy, "package p\nstatus := ").unwrap();
    let o = secrets(&url, &ka, &["put", "db", "--value-stdin", "--policy-file", p], Some("x"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("policy_invalid"), "{o:?}");
    let o = Command::new(BIN).args(["secrets", "list", "--server", &url]).env_remove("CACHET_API_KEY").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "no API key is a usage error");
    // Delete.
    assert!(secrets(&url, &ka, &["delete", "db"], None).status.success());
    assert!(json(&secrets(&url, &ka, &["list"], None)).as_array().unwrap().is_empty());
    drop(_serve);
    // The database never held the value.
    for f in ["cachet.db", "cachet.db-wal"] {
        if let Ok(b) = std::fs::read(dir.join(f)) {
            assert!(!b.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()), "{f}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
