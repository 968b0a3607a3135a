//! The relying-party examples of `docs/guides/relying-party.md`
//! (`docs/guides/examples/verify_token.py` with PyJWT, and
//! `verify-token.mjs` with npm `jose`) against a real `cachet serve` child
//! process on loopback:
//!
//! - a real TDX quote (`tdx-cos113`, UpToDate, at its verification instant)
//!   with its measurement pushed as a reference value (`cachet refvals
//!   add` + `push`) gives an `affirming` token, which both examples accept;
//! - that token with its payload altered (one claim changed, signature
//!   kept) is refused as a bad signature;
//! - a token of the simulated TEE (`cachet attest --tee sim`: `warning`,
//!   never `affirming`) is refused by default and accepted with
//!   `--accept-warning`, and one forged to say `affirming` is refused;
//! - the wrong issuer is refused.
//!
//! Python needs `PyJWT[crypto]` (installed by `.ci/run`); as in
//! `cachet-server/tests/python_interop.rs` the test fails when it is missing
//! unless CACHET_SKIP_PYTHON_INTEROP=1. The JavaScript example runs when
//! `node` and `npm` are present and `npm install jose` succeeds in a folder
//! of the test's own; without node it is skipped with the reason printed,
//! and so is a failed install, except under `CI`, where that fails the test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

const EVIDENCE: &str = "tdx/go-tdx-guest/cos-113-tdx-quote.dat";
const COLLATERAL: &str = "tdx/automata/collateral_2510.derived.json";
const AT: &str = "2025-10-31T14:17:11Z";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn vectors() -> PathBuf {
    root().join("testdata/vectors")
}

fn examples() -> PathBuf {
    root().join("docs/guides/examples")
}

fn cachet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachet")).args(args).output().expect("run cachet")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{:?}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Serve {
    child: Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cachet"))
        .args(["serve", "--listen", "127.0.0.1:0", "--offline", "--allow-verification-time", "--insecure-simulated-tee"])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run cachet serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    Serve { child, url }
}

/// `POST /v1/attest` with the real quote, its collateral as the attester's
/// endorsements (the service is `--offline`) and the case's instant.
fn attest_tdx(url: &str) -> String {
    let collateral = std::fs::read(vectors().join(COLLATERAL)).unwrap();
    let body = json!({
        "tee": "tdx",
        "evidence": STANDARD.encode(std::fs::read(vectors().join(EVIDENCE)).unwrap()),
        "endorsements": [{"name": "collateral.json", "data": STANDARD.encode(collateral)}],
        "at": AT,
    });
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (status, v) = rt.block_on(async {
        let r = reqwest::Client::new().post(format!("{url}/v1/attest")).json(&body).send().await.expect("POST /v1/attest");
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.expect("JSON answer"))
    });
    assert_eq!(status, 200, "{v}");
    v["token"].as_str().unwrap().to_string()
}

fn claims(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// The token with its payload replaced by `f(claims)`, signature kept.
fn forged(token: &str, f: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut c = claims(token);
    f(&mut c);
    format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap()), parts[2])
}

/// Run one example (`python3 verify_token.py` or `node verify-token.mjs`)
/// on `token` (a file), returning (exit code, stdout).
fn run(cmd: &[&str], issuer: &str, extra: &[&str], token: &str, dir: &Path) -> (i32, String) {
    let file = dir.join("token.jwt");
    std::fs::write(&file, token).unwrap();
    let o = Command::new(cmd[0]).args(&cmd[1..]).args(["--issuer", issuer]).args(extra).arg(&file).output().expect("run the example");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    println!("{} {extra:?}: {:?}\n{out}{}", cmd.join(" "), o.status.code(), String::from_utf8_lossy(&o.stderr));
    (o.status.code().unwrap_or(-1), out)
}

/// The same assertions for either example.
fn check_example(cmd: &[&str], url: &str, real: &str, sim: &str, dir: &Path) {
    let (code, out) = run(cmd, url, &[], real, dir);
    assert_eq!(code, 0, "the affirming token is accepted: {out}");
    assert!(out.starts_with("ACCEPTED") && out.contains("tdx: affirming"), "{out}");

    let tampered = forged(real, |c| c["cachet.verification_time"] = json!(c["cachet.verification_time"].as_i64().unwrap() + 1));
    let (code, out) = run(cmd, url, &[], &tampered, dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("REFUSED") && out.to_lowercase().contains("signature"), "a tampered token is refused: {out}");

    let (code, out) = run(cmd, url, &[], sim, dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("REFUSED") && out.contains("sim") && out.contains("warning"), "a warning is not affirming: {out}");
    let (code, out) = run(cmd, url, &["--accept-warning"], sim, dir);
    assert_eq!(code, 0, "--accept-warning accepts it: {out}");
    let promoted = forged(sim, |c| c["submods"]["sim"]["ear.status"] = json!("affirming"));
    let (code, out) = run(cmd, url, &["--accept-warning"], &promoted, dir);
    assert_eq!(code, 1, "a token forged to say affirming is refused: {out}");

    // The same service under another name: its discovery document names
    // its own issuer, which is not the one expected.
    let (code, out) = run(cmd, &url.replace("127.0.0.1", "localhost"), &[], real, dir);
    assert_ne!(code, 0, "another issuer is refused: {out}");
}

fn python_has_pyjwt() -> bool {
    Command::new("python3")
        .args(["-c", "import jwt, cryptography; from jwt import PyJWKClient"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `jose` installed into `dir` (the example copied beside it, since Node
/// resolves packages from the script's folder); `Ok(None)` without `node`
/// and `npm`, `Err` when the install fails.
fn node_with_jose(dir: &Path) -> Result<Option<PathBuf>, String> {
    let works = |c: &str| Command::new(c).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !works("node") || !works("npm") {
        return Ok(None);
    }
    std::fs::write(dir.join("package.json"), r#"{"name":"cachet-guide-example","private":true,"type":"module"}"#).unwrap();
    let o = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "jose@6"])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("npm: {e}"))?;
    if !o.status.success() {
        return Err(format!("npm install jose failed: {}", String::from_utf8_lossy(&o.stderr)));
    }
    let script = dir.join("verify-token.mjs");
    std::fs::copy(examples().join("verify-token.mjs"), &script).unwrap();
    Ok(Some(script))
}

#[test]
fn the_relying_party_examples_accept_an_affirming_token_and_refuse_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cachet-data");
    let key = ok(&cachet(&["admin", "create-key", "--role", "admin", "--data-dir", s(&data)])).trim().to_string();
    let srv = serve(&data);

    // The guide's steps: the measurement from `cachet verify`, a reference
    // value for it, pushed to the service.
    let ev = vectors().join(EVIDENCE);
    let col = vectors().join(COLLATERAL);
    let v: Value = serde_json::from_str(&ok(&cachet(&["verify", s(&ev), "-e", s(&col), "--at", AT, "--format", "json"]))).unwrap();
    let mr_td = v["claims"]["mr_td"].as_str().expect("mr_td").to_string();
    let store = tmp.path().join("refvals.json");
    ok(&cachet(&["refvals", "add", "--store", s(&store), "--name", "tdx.mr_td", "--expires", "2100-01-01", &mr_td]));
    ok(&cachet(&["refvals", "push", "--store", s(&store), "--server", &srv.url, "--api-key", &key]));

    let real = attest_tdx(&srv.url);
    assert_eq!(claims(&real)["submods"]["tdx"]["ear.status"], "affirming", "{}", claims(&real));
    let sim =
        ok(&cachet(&["attest", "--server", &srv.url, "--tee", "sim", "--sim-dir", s(&data.join("simulated-tee"))])).trim().to_string();
    assert_eq!(claims(&sim)["submods"]["sim"]["ear.status"], "warning");

    if python_has_pyjwt() {
        let py = examples().join("verify_token.py");
        check_example(&["python3", s(&py)], &srv.url, &real, &sim, tmp.path());
    } else if std::env::var("CACHET_SKIP_PYTHON_INTEROP").as_deref() == Ok("1") {
        eprintln!("SKIPPED on request (CACHET_SKIP_PYTHON_INTEROP=1): python3 with PyJWT not found");
    } else {
        panic!("python3 with PyJWT is required: python3 -m pip install 'PyJWT[crypto]>=2.8' (as .ci/run does)");
    }

    let js = tmp.path().join("js");
    std::fs::create_dir_all(&js).unwrap();
    match node_with_jose(&js) {
        Ok(Some(script)) => check_example(&["node", s(&script)], &srv.url, &real, &sim, tmp.path()),
        Ok(None) => eprintln!("SKIPPED the JavaScript example: node or npm is not installed"),
        Err(why) if std::env::var_os("CI").is_some() => panic!("the JavaScript example must run under CI: {why}"),
        Err(why) => eprintln!("SKIPPED the JavaScript example: {why}"),
    }
}
