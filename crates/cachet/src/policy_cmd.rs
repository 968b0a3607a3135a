//! `cachet admin policy`: appraisal-policy tools that need no server or store.
//!
//! `sign` turns a Rego file into the compact JWS a server configured with
//! `--policy-signing-cert` requires (`PUT /v1/admin/policies/{name}` with
//! `{"jws": ...}`), so operators need no other JOSE tool. The policy is
//! validated first (as the server will), so a broken policy is never signed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// `cachet admin policy ...`.
#[derive(Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// The policy subcommands.
#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Sign a Rego policy as a compact JWS (stdout) for a server that
    /// requires signed policies. The signed payload binds the text to the
    /// policy's name and version (`{"name", "version", "policy"}`): the
    /// server refuses it under another name, or unless the version is
    /// greater than every signed version it stored under that name. The algorithm follows the certificate's key
    /// (P-256: ES256, P-384: ES384, RSA: PS256); the header names the
    /// certificate (`kid` = hex SHA-256 of it, `x5t#S256`). Upload with
    /// `jq -Rs '{jws: .}' POLICY.jws | curl -X PUT -H 'content-type: application/json'
    /// -H "Authorization: Bearer $KEY" --data-binary @- $URL/v1/admin/policies/NAME`.
    /// Exit 0 signed, 2 error.
    Sign {
        /// The name the policy will be stored under (`PUT /v1/admin/policies/NAME`).
        #[arg(long, value_name = "NAME")]
        name: String,
        /// This version's number: greater than that of every signed version
        /// of the policy stored before (e.g. 1, 2, 3, or a date as 20250131).
        #[arg(long, value_name = "N")]
        version: u64,
        /// PKCS#8 private key (PEM `PRIVATE KEY` block, or DER).
        #[arg(long, value_name = "KEY.pem")]
        key: PathBuf,
        /// The certificate of that key, as configured on the server (PEM or DER).
        #[arg(long, value_name = "CERT.pem")]
        cert: PathBuf,
        /// The Rego policy file.
        policy: PathBuf,
    },
}

/// Run `cachet admin policy ...` (no store is opened).
pub fn run(args: PolicyArgs) -> ExitCode {
    match args.command {
        PolicyCommand::Sign { name, version, key, cert, policy } => match sign(&name, version, &key, &cert, &policy) {
            Ok(jws) => {
                println!("{jws}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cachet admin policy sign: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn sign(name: &str, version: u64, key: &std::path::Path, cert: &std::path::Path, policy: &std::path::Path) -> Result<String, String> {
    let read = |p: &std::path::Path, limit| crate::verify_cmd::read_limited(p, limit);
    let text_bytes = read(policy, 16 << 20)?;
    let text = String::from_utf8(text_bytes).map_err(|_| format!("{}: not UTF-8 text", policy.display()))?;
    cachet_appraise::Policy::validate(name, &text)
        .map_err(|e| format!("{}: refused, the server would refuse it too: {e}", policy.display()))?;
    let cert_bytes = read(cert, 1 << 20)?;
    let (jws, signer) = cachet_server::policy_signing::sign_policy(name, version, &text, &read(key, 1 << 20)?, &cert_bytes)?;
    let der = cachet_verify::x509::der_from_pem_or_der(&cert_bytes).map_err(|e| format!("certificate: {e}"))?;
    if let Err(e) = cachet_server::policy_signing::Signer::from_der(der)?.check_validity(cachet_server::now()) {
        eprintln!("cachet admin policy sign: warning: the certificate is not valid now ({e}); servers refuse what it signs");
    }
    eprintln!(
        "signed {} as {name:?} version {version} ({}) with '{}' (sha-256 {})",
        policy.display(),
        signer.alg,
        signer.subject,
        signer.thumbprint
    );
    Ok(jws)
}

#[cfg(test)]
mod tests {
    //! The command as typed, end to end: Python `cryptography` makes a key
    //! and certificate, `cachet admin policy sign` signs, `jwcrypto`
    //! verifies with the certificate (fails unless python3 with jwcrypto is
    //! present, or CACHET_SKIP_PYTHON_INTEROP=1).
    use clap::Parser;

    const PY_MAKE: &str = r#"
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cli signer")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
open(sys.argv[1], "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
open(sys.argv[2], "wb").write(cert.public_bytes(serialization.Encoding.PEM))
"#;

    const PY_VERIFY: &str = r#"
import sys
from jwcrypto import jwk, jws
s = jws.JWS()
s.deserialize(open(sys.argv[2]).read().strip())
s.verify(jwk.JWK.from_pem(open(sys.argv[1], "rb").read()))
sys.stdout.write(s.payload.decode())
"#;

    fn python(script: &str, args: &[&std::path::Path]) -> Option<String> {
        let out = std::process::Command::new("python3").arg("-c").arg(script).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[test]
    fn cachet_admin_policy_sign_output_verifies_in_jwcrypto() {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert, rego, jws_file) =
            (dir.path().join("k.pem"), dir.path().join("c.pem"), dir.path().join("p.rego"), dir.path().join("p.jws"));
        if python(PY_MAKE, &[&key, &cert]).is_none() {
            if std::env::var("CACHET_SKIP_PYTHON_INTEROP").as_deref() == Ok("1") {
                eprintln!("SKIPPED on request (CACHET_SKIP_PYTHON_INTEROP=1): python3 with cryptography/jwcrypto not found");
                return;
            }
            panic!("python3 with jwcrypto is required: python3 -m pip install 'jwcrypto>=1.5' (as .ci/run does)");
        }
        let text = "package p\nimport rego.v1\nstatus := \"warning\"\n";
        std::fs::write(&rego, text).unwrap();
        let argv = [
            "cachet",
            "admin",
            "policy",
            "sign",
            "--name",
            "lab",
            "--version",
            "7",
            "--key",
            key.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            rego.to_str().unwrap(),
        ];
        let cli = crate::Cli::try_parse_from(argv).unwrap();
        let crate::Command::Admin(admin) = cli.command else { panic!("not admin") };
        let crate::admin_cmd::AdminCommand::Policy(super::PolicyArgs {
            command: super::PolicyCommand::Sign { name, version, key, cert, policy },
        }) = admin.command
        else {
            panic!("not policy sign")
        };
        assert_eq!((name.as_str(), version), ("lab", 7));
        let jws = super::sign(&name, version, &key, &cert, &policy).unwrap();
        std::fs::write(&jws_file, &jws).unwrap();
        // The payload binds the text to its name and version.
        let payload: serde_json::Value = serde_json::from_str(&python(PY_VERIFY, &[&cert, &jws_file]).unwrap()).unwrap();
        assert_eq!(payload, serde_json::json!({"name": "lab", "version": 7, "policy": text}), "jwcrypto verifies and reads the policy");
        // One payload byte changed: jwcrypto refuses.
        let parts: Vec<&str> = jws.split('.').collect();
        let altered = text.replace("warning", "affirming");
        use base64::Engine;
        let forged = format!("{}.{}.{}", parts[0], base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(altered), parts[2]);
        std::fs::write(&jws_file, forged).unwrap();
        assert_eq!(python(PY_VERIFY, &[&cert, &jws_file]), None);
        // A broken policy is not signed; nor with a key that is not the certificate's.
        std::fs::write(&rego, "package p\nstatus := ").unwrap();
        assert!(super::sign("lab", 8, &key, &cert, &policy).is_err());
        std::fs::write(&rego, text).unwrap();
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        python(PY_MAKE, &[&other.join("k.pem"), &other.join("c.pem")]).unwrap();
        let e = super::sign("lab", 8, &other.join("k.pem"), &cert, &policy).unwrap_err();
        assert!(e.contains("not the key of certificate"), "{e}");
    }
}
