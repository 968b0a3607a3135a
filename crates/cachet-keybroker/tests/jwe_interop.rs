//! The released JWEs decrypt with an independent implementation: Python's
//! `jwcrypto` (installed from PyPI by .ci/run). Python generates the
//! workload keys (P-256, P-384, RSA-2048) and keeps the private halves;
//! this crate encrypts to the public JWKs; Python decrypts.

use std::process::Command;

use cachet_keybroker::jwe::{self, WorkloadKey};
use serde_json::{Map, Value};

const GEN: &str = r#"
import json, sys
from jwcrypto import jwk
keys = {"p256": jwk.JWK.generate(kty="EC", crv="P-256"), "p384": jwk.JWK.generate(kty="EC", crv="P-384"),
        "rsa": jwk.JWK.generate(kty="RSA", size=2048)}
json.dump({k: json.loads(v.export_private()) for k, v in keys.items()}, open(sys.argv[1], "w"))
print(json.dumps({k: json.loads(v.export_public()) for k, v in keys.items()}))
"#;

const DEC: &str = r#"
import json, sys
from jwcrypto import jwk, jwe
priv = json.load(open(sys.argv[1]))
jwes = json.load(open(sys.argv[2]))
out = {}
for name, token in jwes.items():
    t = jwe.JWE()
    t.deserialize(token, key=jwk.JWK(**priv[name]))
    out[name] = {"plaintext": t.payload.decode(), "alg": t.jose_header["alg"], "enc": t.jose_header["enc"], "secret": t.jose_header.get("cachet.secret")}
print(json.dumps(out))
"#;

fn python(script: &str, args: &[&std::path::Path]) -> Value {
    let out = Command::new("python3").arg("-c").arg(script).args(args).output().expect("python3 must be installed");
    assert!(out.status.success(), "python (needs `pip install jwcrypto`, done by .ci/run): {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn jwcrypto_decrypts_what_the_broker_releases() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private.json");
    let public = python(GEN, &[&private]);
    let mut jwes = Map::new();
    for (name, jwk) in public.as_object().unwrap() {
        let key = WorkloadKey::from_jwk(jwk).unwrap();
        let mut extra = Map::new();
        extra.insert("cachet.secret".into(), format!("owner/{name}").into());
        jwes.insert(name.clone(), jwe::encrypt(&key, format!("secret for {name}").as_bytes(), &extra).unwrap().into());
    }
    let jwe_file = dir.path().join("jwes.json");
    std::fs::write(&jwe_file, serde_json::to_vec(&jwes).unwrap()).unwrap();
    let out = python(DEC, &[&private, &jwe_file]);
    for (name, alg) in [("p256", "ECDH-ES+A256KW"), ("p384", "ECDH-ES+A256KW"), ("rsa", "RSA-OAEP-256")] {
        assert_eq!(out[name]["plaintext"], format!("secret for {name}"), "{out}");
        assert_eq!(out[name]["alg"], alg);
        assert_eq!(out[name]["enc"], "A256GCM");
        assert_eq!(out[name]["secret"], format!("owner/{name}"));
    }
}

#[test]
fn jwcrypto_refuses_an_altered_jwe() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private.json");
    let public = python(GEN, &[&private]);
    let key = WorkloadKey::from_jwk(&public["p256"]).unwrap();
    let token = jwe::encrypt(&key, b"value", &Map::new()).unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    // Flip a bit of the ciphertext.
    let mut ct = parts[3].clone().into_bytes();
    ct[0] = if ct[0] == b'A' { b'B' } else { b'A' };
    parts[3] = String::from_utf8(ct).unwrap();
    let jwe_file = dir.path().join("jwes.json");
    std::fs::write(&jwe_file, serde_json::to_vec(&serde_json::json!({"p256": parts.join(".")})).unwrap()).unwrap();
    let out = Command::new("python3").arg("-c").arg(DEC).arg(&private).arg(&jwe_file).output().unwrap();
    assert!(!out.status.success(), "jwcrypto accepted an altered JWE");
}
