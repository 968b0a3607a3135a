//! `cachet demo` runs the whole story and reports the expected outcome: the
//! approved workload gets both owners' secrets (decrypted), the modified
//! workload is refused by both policies, the audit chain verifies, and the
//! insecure simulated TEE is announced.

use std::process::Command;

#[test]
fn demo_releases_to_the_approved_workload_only() {
    let out = Command::new(env!("CARGO_BIN_EXE_cachet")).arg("demo").output().expect("run cachet demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{stderr}", out.status.code());
    assert!(stdout.lines().any(|l| l.starts_with("DEMO OK:")), "{stdout}");
    for line in [
        "RELEASED bank-a/fraud-model-key: decrypted \"bank-a: AES key for the fraud-scoring model weights\"",
        "RELEASED bank-b/transactions-key: decrypted \"bank-b: key to the shared transaction dataset\"",
        "REFUSED  bank-a/fraud-model-key: ",
        "REFUSED  bank-b/transactions-key: ",
        "is not the approved build",
        "Chain verified: ",
        "--insecure-simulated-tee",
        "HTTP 404",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // The modified workload's refusals come after its attestation, and no
    // RELEASED line follows the modified workload's heading.
    let modified = stdout.find("4. A modified workload").expect("section 4");
    assert!(!stdout[modified..].contains("RELEASED"), "{stdout}");
    assert!(stderr.contains("INSECURE SIMULATED TEE"), "{stderr}");
    // It ends with what to run next: serve, attest, and the keys that verify the token.
    let next = stdout.find("Next, try it by hand").expect("next steps after the result");
    assert!(next > stdout.find("DEMO OK:").unwrap(), "{stdout}");
    for cmd in [
        "cachet serve --data-dir cachet-data --insecure-simulated-tee",
        "cachet attest --server http://127.0.0.1:8700 --tee sim --sim-dir cachet-data/simulated-tee > token.jwt",
        "curl -s http://127.0.0.1:8700/.well-known/jwks.json",
    ] {
        assert!(stdout[next..].lines().any(|l| l.trim() == cmd), "missing {cmd:?} in:\n{stdout}");
    }
}

#[test]
fn demo_keeps_its_data_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cachet")).args(["demo", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // The store is there, and `cachet audit verify` agrees with the demo.
    assert!(dir.path().join("cachet.db").exists());
    let v = Command::new(env!("CARGO_BIN_EXE_cachet")).args(["audit", "--data-dir"]).arg(dir.path()).arg("verify").output().unwrap();
    assert!(v.status.success(), "{}{}", String::from_utf8_lossy(&v.stdout), String::from_utf8_lossy(&v.stderr));
}
