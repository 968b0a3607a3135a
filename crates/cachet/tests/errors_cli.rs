//! Errors that say what to do (issue 18), with the real `cachet` binary:
//! each test reproduces what a new user ran into and checks the message
//! says what was wrong and what to do, with a stable exit status
//! (0 done, 1 refused, 2 usage/configuration/I-O/connection).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_cachet");

fn cachet(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_remove("CACHET_API_KEY").env_remove("CACHET_DATA_DIR").output().expect("run cachet")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vectors")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Stale collateral: the message names when it expired (its nextUpdate),
/// the verification instant, and how to get current endorsements; the
/// check's name is unchanged. Was "TCB Info validity: expired at <instant>".
#[test]
fn stale_collateral_says_when_it_expired_and_how_to_refresh() {
    // Case tdx-dcapqvl-v4: its TCB Info's nextUpdate is 2025-07-19T10:16:03Z.
    let (quote, collateral) = (vectors().join("tdx/dcap-qvl/tdx_quote"), vectors().join("tdx/dcap-qvl/tdx_quote_collateral.json"));
    let o = cachet(&["verify", s(&quote), "--tee", "tdx", "-e", s(&collateral), "--at", "2025-07-19T10:20:00Z", "--offline"]);
    let e = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("TCB Info validity"), "{e}");
    assert!(e.contains("expired at 2025-07-19T10:16:03Z (its nextUpdate)"), "{e}");
    assert!(e.contains("the verification instant 2025-07-19T10:20:00Z"), "{e}");
    assert!(e.contains("cachet endorsements fetch"), "{e}");
}

/// A free loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A server that is down: the full URL and "connection refused", exit 2.
/// Was "/v1/challenge: error sending request".
#[test]
fn attest_to_a_server_that_is_down_names_the_url_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let server = format!("http://127.0.0.1:{port}");
    let sim = dir.path().join("sim");
    let o = cachet(&["attest", "--server", &server, "--tee", "sim", "--sim-dir", s(&sim)]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains(&format!("POST {server}/v1/challenge")), "{e}");
    assert!(e.contains("connection refused"), "{e}");
    assert!(e.contains("check --server"), "{e}");
    // The admin-API client says the same.
    let o = Command::new(BIN).args(["secrets", "list", "--server", &server, "--api-key", "cachet_x_y"]).output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains(&format!("GET {server}/v1/admin/secrets")) && e.contains("connection refused"), "{e}");
}

/// A mistyped data directory is refused (exit 2), and not created. Was an
/// empty new database and `[]`.
#[test]
fn store_commands_refuse_a_data_directory_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("cachet-dta");
    for args in [&["keys", "list"][..], &["admin", "list-keys"], &["audit", "show"], &["endorsements", "list"]] {
        let mut all = args.to_vec();
        all.extend(["--data-dir", s(&typo)]);
        let o = cachet(&all);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(&format!("no Cachet data directory at {}", typo.display())), "{args:?}: {e}");
        assert!(e.contains(&format!("cachet serve --data-dir {}", typo.display())), "{args:?}: {e}");
        assert!(o.stdout.is_empty(), "{args:?}");
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
    // Creating the first API key is how a data directory starts (README).
    let o = cachet(&["admin", "create-key", "--role", "admin", "--data-dir", s(&typo)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = cachet(&["keys", "list", "--data-dir", s(&typo)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// A usage error exits 2, like clap's own. Was exit 1.
#[test]
fn secrets_without_an_api_key_is_a_usage_error() {
    let o = cachet(&["secrets", "list", "--server", "http://127.0.0.1:9"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("--api-key") && e.contains("CACHET_API_KEY"), "{e}");
    // clap's own usage errors exit 2 too.
    assert_eq!(cachet(&["secrets", "no-such-command"]).status.code(), Some(2));
}

/// A missing TLS certificate fails before any state exists. Was: the data
/// directory and a signing key created, then "TLS certificate/key: …".
#[test]
fn serve_checks_its_tls_files_before_creating_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh-data");
    let (cert, key) = (dir.path().join("missing-cert.pem"), dir.path().join("missing-key.pem"));
    let o = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", s(&data), "--tls-cert", s(&cert), "--tls-key", s(&key)])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains(&format!("--tls-cert {}", cert.display())), "{e}");
    assert!(!data.exists(), "the data directory was created: {e}");
    // A file that is not a certificate is refused the same way.
    std::fs::write(&cert, "not PEM").unwrap();
    std::fs::write(&key, "not PEM").unwrap();
    let o = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", s(&data), "--tls-cert", s(&cert), "--tls-key", s(&key)])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("no CERTIFICATE block"), "{e}");
    assert!(!data.exists(), "the data directory was created: {e}");
}

/// `cachet selftest` away from the repository root says where the vectors
/// are expected and how to pass them; `--vectors DIR` works from anywhere.
#[test]
fn selftest_says_how_to_find_its_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(BIN).args(["selftest", "--mutations", "1"]).current_dir(dir.path()).env_remove("CACHET_VECTORS").output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("testdata/vectors/cases.json") && e.contains("--vectors DIR") && e.contains("the default"), "{e}");
    let o = Command::new(BIN)
        .args(["selftest", "--mutations", "2", "--threads", "1", "--case", "nitro-evervault-bin", "--vectors"])
        .arg(vectors())
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cachet serve` on a loopback port over `dir`: the process and its URL.
fn serve(dir: &Path) -> (Serve, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--offline", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    (Serve(child), url)
}

/// Release policies: one that never sets `status` (OPA's `allow := true`)
/// is refused at upload (exit 1, `policy_no_status`); a Rego error names
/// the file given. Was: accepted, then every release refused; and errors
/// about `release.rego`.
#[test]
fn release_policy_errors_name_the_file_and_the_missing_status() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = cachet(&["admin", "create-key", "--role", "admin", "--tenant", "bank-a", "--data-dir", s(&data)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let key = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let (_serve, url) = serve(&data);
    let value = dir.path().join("value");
    std::fs::write(&value, "v").unwrap();
    let put = |policy: &Path| {
        Command::new(BIN)
            .args(["secrets", "put", "db", "--server", &url, "--value-file", s(&value), "--policy-file", s(policy)])
            .env("CACHET_API_KEY", &key)
            .output()
            .unwrap()
    };
    let allow = dir.path().join("allow.rego");
    std::fs::write(&allow, "package release\nimport rego.v1\ndefault allow := false\nallow := true if input.tee == \"sim\"\n").unwrap();
    let o = put(&allow);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("policy_no_status") && e.contains("never sets `status`"), "{e}");

    let bad = dir.path().join("bad.rego");
    std::fs::write(&bad, "package release\nimport rego.v1\nstatus := \"affirming\" if { input.tee == }\n").unwrap();
    let o = put(&bad);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("policy_invalid") && e.contains("bad.rego") && !e.contains("release.rego"), "{e}");
}

/// `--policy` with a name that is not a file says so and offers `default`
/// (exit 2). Was "No such file or directory".
#[test]
fn verify_with_an_unknown_policy_offers_default() {
    let quote = vectors().join("tdx/dcap-qvl/tdx_quote");
    let collateral = vectors().join("tdx/dcap-qvl/tdx_quote_collateral.json");
    let o = cachet(&["verify", s(&quote), "-e", s(&collateral), "--at", "2025-07-04T10:16:31Z", "--offline", "--policy", "no-such-policy"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("no policy file 'no-such-policy'") && e.contains("`default`"), "{e}");
}
