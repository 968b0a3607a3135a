//! The service's offline commands on a data directory: `cachet admin
//! create-key/list-keys/revoke-key`, `cachet keys rotate/list/revoke`, and
//! `cachet audit verify/show`, which names an edited row (exit 1).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cachet(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachet")).args(args).arg("--data-dir").arg(dir).output().expect("run cachet")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cachet-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn admin_keys_and_audit_commands_work_on_the_store() {
    let dir = temp("svc");
    let o = cachet(&dir, &["admin", "create-key", "--role", "admin", "--name", "ops"]);
    assert!(o.status.success(), "{o:?}");
    let key = stdout(&o).trim().to_string();
    assert!(key.starts_with("cachet_") && key.len() == 7 + 16 + 1 + 64, "{key}");
    let id = key.split('_').nth(1).unwrap().to_string();

    let o = cachet(&dir, &["admin", "list-keys"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["role"], "admin");
    assert!(!stdout(&o).contains(&key[24..]), "the secret is never listed");

    // The first rotation on an empty store signs at once; the next one is pending.
    let first: serde_json::Value = serde_json::from_slice(&cachet(&dir, &["keys", "rotate"]).stdout).unwrap();
    assert_eq!(first["state"], "active");
    let second: serde_json::Value = serde_json::from_slice(&cachet(&dir, &["keys", "rotate"]).stdout).unwrap();
    assert_eq!(second["state"], "pending");
    let o = cachet(&dir, &["keys", "revoke", second["kid"].as_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(cachet(&dir, &["keys", "revoke", "no-such-kid"]).status.code(), Some(1));
    assert!(cachet(&dir, &["admin", "revoke-key", &id]).status.success());

    let o = cachet(&dir, &["audit", "verify"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("audit log intact: 5 entries"), "{}", stdout(&o));
    let head = stdout(&o).trim().rsplit(' ').next().unwrap().to_string();
    let shown = stdout(&cachet(&dir, &["audit", "show"]));
    let actions: Vec<String> =
        shown.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["action"].as_str().unwrap().to_string()).collect();
    assert_eq!(actions, ["api_key.create", "signing_key.rotate", "signing_key.rotate", "signing_key.revoke", "api_key.revoke"]);

    // Edit entry 2 behind the tool's back (with Python's sqlite3 module).
    let db = dir.join("cachet.db");
    let edit = format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute(\"UPDATE audit_log SET actor = 'mallory' WHERE seq = 2\"); c.commit()",
        db.display().to_string()
    );
    assert!(Command::new("python3").args(["-c", &edit]).status().unwrap().success());
    let o = cachet(&dir, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).contains("broken at entry 2"), "{}", stdout(&o));

    // Truncation is caught against a head kept from before.
    let restore = format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute(\"UPDATE audit_log SET actor = (SELECT actor FROM audit_log WHERE seq = 1) WHERE seq = 2\"); c.execute('DELETE FROM audit_log WHERE seq = 5'); c.commit()",
        db.display().to_string()
    );
    assert!(Command::new("python3").args(["-c", &restore]).status().unwrap().success());
    assert!(cachet(&dir, &["audit", "verify"]).status.success(), "a truncated chain is still a chain");
    assert_eq!(cachet(&dir, &["audit", "verify", "--expect-head", &head]).status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_help_documents_every_setting_with_its_variable() {
    let o = Command::new(env!("CARGO_BIN_EXE_cachet")).args(["serve", "--help"]).output().unwrap();
    let help = stdout(&o);
    for flag in [
        "--config",
        "--listen",
        "--data-dir",
        "--issuer",
        "--tls-cert",
        "--tls-key",
        "--token-alg",
        "--token-ttl",
        "--key-publish-lead",
        "--nonce-ttl",
        "--body-limit",
        "--request-timeout",
        "--allow-verification-time",
        "--insecure-simulated-tee",
    ] {
        assert!(help.contains(flag), "{flag} missing from serve --help");
    }
    assert!(help.contains("CACHET_LISTEN") && help.contains("CACHET_INSECURE_SIMULATED_TEE"));
}

#[test]
fn a_closed_stdout_ends_listing_commands_quietly() {
    // `cachet admin list-keys | head -0`: the reader is gone before the
    // command writes. It must end like a Unix filter (SIGPIPE or success),
    // never with a Rust panic about a broken pipe.
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let dir = temp("pipe");
    for n in 0..20 {
        assert!(cachet(&dir, &["admin", "create-key", "--role", "reader", "--name", &format!("k{n}")]).status.success());
    }
    for args in [&["admin", "list-keys"][..], &["audit", "show"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cachet"))
            .args(args)
            .arg("--data-dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run cachet");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.status.success() || out.status.signal() == Some(libc_sigpipe()), "{args:?}: {:?} {stderr}", out.status);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGPIPE's number on Linux and the BSDs.
fn libc_sigpipe() -> i32 {
    13
}

#[test]
fn create_key_takes_an_expiry_as_a_duration_or_a_time() {
    let dir = temp("svc-expiry");
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let o = cachet(&dir, &["admin", "create-key", "--role", "reader", "--tenant", "bank-a", "--expires", "90d"]);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains(", expires "), "{o:?}");
    let o = cachet(&dir, &["admin", "create-key", "--role", "admin", "--expires", "2100-01-01T00:00:00Z"]);
    assert!(o.status.success(), "{o:?}");
    let list: serde_json::Value = serde_json::from_slice(&cachet(&dir, &["admin", "list-keys"]).stdout).unwrap();
    // Both keys are made in the same second: find each by its tenant, not by its place in the list.
    let keys = list.as_array().expect("a list of keys");
    let tenant_key = keys.iter().find(|k| k["tenant"] == "bank-a").expect("the tenant's key");
    let operator_key = keys.iter().find(|k| k["tenant"].is_null()).expect("the operator's key");
    let expiry = tenant_key["expires_at"].as_i64().unwrap();
    assert!((before + 90 * 86_400..=before + 90 * 86_400 + 60).contains(&expiry), "{list}");
    assert_eq!(operator_key["expires_at"].as_i64(), Some(4_102_444_800), "{list}");
    // A past or unreadable expiry is refused and creates nothing.
    for bad in ["2000-01-01T00:00:00Z", "0d", "soon"] {
        let o = cachet(&dir, &["admin", "create-key", "--role", "admin", "--expires", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {o:?}");
    }
    let list: serde_json::Value = serde_json::from_slice(&cachet(&dir, &["admin", "list-keys"]).stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `cachet serve --allow-verification-time` warns on stderr as it starts
/// (attesters then choose the verification instant); without the flag it
/// says nothing of the kind.
#[test]
fn serve_warns_when_attesters_may_choose_the_verification_time() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    for allow in [true, false] {
        let dir = temp(&format!("allow-at-{allow}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cachet"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(&dir).env_remove("CACHET_ALLOW_VERIFICATION_TIME");
        if allow {
            cmd.arg("--allow-verification-time");
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run cachet serve");
        // The first stdout line is the listening URL: start-up, warnings included, is done.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(line.contains("http://127.0.0.1:"), "allow={allow}: {line:?} {stderr}");
        assert_eq!(stderr.contains("WARNING: --allow-verification-time is on"), allow, "allow={allow}: {stderr}");
        assert_eq!(stderr.contains("INSECURE: --allow-verification-time is on"), allow, "allow={allow}: {stderr}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
