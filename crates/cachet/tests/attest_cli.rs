//! `cachet attest` and `cachet fetch-secret` against a real `cachet serve`
//! child process started with `--insecure-simulated-tee`, using the
//! SIMULATED TEE back-end: the token on stdout binds the nonce and the given
//! runtime data; a secret that does not exist is refused (exit 1, named);
//! without a TEE or with bad arguments the commands exit 2.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

struct Serve {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cachet"))
        .args(["serve", "--insecure-simulated-tee", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    Serve { child, url, dir }
}

fn cachet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cachet")).args(args).output().unwrap()
}

#[test]
fn attest_prints_a_token_binding_the_runtime_data() {
    let s = serve();
    let sim = s.dir.path().join("simulated-tee");
    let rd = s.dir.path().join("runtime.json");
    std::fs::write(&rd, br#"{"purpose":"cli test"}"#).unwrap();
    let out =
        cachet(&["attest", "--server", &s.url, "--tee", "sim", "--sim-dir", sim.to_str().unwrap(), "--runtime-data", rd.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.trim().split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["cachet.freshness"], "nonce");
    assert_eq!(URL_SAFE_NO_PAD.decode(claims["cachet.runtime_data"].as_str().unwrap()).unwrap(), br#"{"purpose":"cli test"}"#);
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIMULATED TEE"));
}

#[test]
fn fetch_secret_names_each_refusal() {
    let s = serve();
    let sim = s.dir.path().join("simulated-tee");
    let out = cachet(&["fetch-secret", "--server", &s.url, "--tee", "sim", "--sim-dir", sim.to_str().unwrap(), "nobody/nothing"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused nobody/nothing"), "{err}");
}

#[test]
fn usage_and_environment_errors_exit_2() {
    let s = serve();
    // A name that is not OWNER/NAME.
    let out = cachet(&["fetch-secret", "--server", &s.url, "--tee", "sim", "--sim-dir", "/nonexistent", "../etc"]);
    assert_eq!(out.status.code(), Some(2));
    // The simulated TEE without its key folder.
    let out = cachet(&["attest", "--server", &s.url, "--tee", "sim"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sim-dir"));
    // An unknown back-end.
    let out = cachet(&["attest", "--server", &s.url, "--tee", "sgx"]);
    assert_eq!(out.status.code(), Some(2));
    // A simulated TEE the service does not trust: refused (exit 1), by name.
    let rogue = tempfile::tempdir().unwrap();
    let out = cachet(&["attest", "--server", &s.url, "--tee", "sim", "--sim-dir", rogue.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("verification_failed"), "{}", String::from_utf8_lossy(&out.stderr));
}
