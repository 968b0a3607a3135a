//! PKCS#11 with SoftHSM2 (Debian's `softhsm2`): a private token per test
//! (`SOFTHSM2_CONF`), each step in its own process so a "restart" is a new
//! process with a new PKCS#11 session.
//!
//! - Secrets sealed under an HSM-held KEK survive a restart and open only
//!   through that HSM token (not with a local KEK, not with another token's
//!   KEK of the same label).
//! - The KEK cannot be exported: CKA_SENSITIVE true, CKA_EXTRACTABLE false,
//!   CKA_VALUE unreadable, C_WrapKey refused, the attributes cannot be
//!   relaxed. Same for a KEK imported by its owner (bring your own key).
//! - Token-signing keys in the HSM (ES256, ES384, PS256) sign JWTs that
//!   verify with the published key, across a restart.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cachet_keybroker::envelope;
use cachet_keybroker::jwe;
use cachet_keybroker::kek::KeyEncryptionKey;
use cachet_keybroker::pkcs11::{Hsm, Pkcs11Custody, Pkcs11Kek, SOFTHSM2_MODULE};
use cachet_keybroker::secret::KeyBytes;
use cachet_keybroker::{BrokerConfig, KeyBroker, LocalFileKek, MemorySecretStore, ReleaseRequest, SecretRecord, SecretValue};
use cachet_token::ear::Freshness;
use cachet_token::{Algorithm, KeyCustody};
use common::*;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType};

const PIN: &str = "1234-user";
const LABEL: &str = "cachet-kek";

/// A fresh SoftHSM2 token in its own folder.
struct Token {
    dir: tempfile::TempDir,
}

impl Token {
    fn new() -> Token {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", dir.path().join("tokens").display()),
        )
        .unwrap();
        let t = Token { dir };
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", "cachet", "--pin", PIN, "--so-pin", "5678-so"])
            .env("SOFTHSM2_CONF", t.conf())
            .output()
            .expect("softhsm2-util (Debian package softhsm2) must be installed: .ci/run installs it");
        assert!(out.status.success(), "init-token: {}", String::from_utf8_lossy(&out.stderr));
        t
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// Run one role of [`child`] in a new process against this token.
    fn run(&self, role: &str, work: &Path) -> String {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--ignored", "--nocapture", "--test-threads=1"])
            .env("SOFTHSM2_CONF", self.conf())
            .env("CACHET_HSM_ROLE", role)
            .env("CACHET_HSM_WORK", work)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success() && stdout.contains(&format!("ROLE-OK {role}")),
            "role {role} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

fn hsm() -> Arc<Hsm> {
    Hsm::open(Path::new(SOFTHSM2_MODULE), "cachet", PIN).unwrap()
}

/// `generated`: made in the token, so it was never extractable (an
/// imported key was outside once, so CKA_NEVER_EXTRACTABLE is false for it).
fn assert_not_exportable(hsm: &Hsm, kek: &Pkcs11Kek, generated: bool) {
    let p = kek.protection().unwrap();
    assert!(p.sensitive && !p.extractable && !p.value_readable, "{p:?}");
    assert_eq!(p.never_extractable, generated, "{p:?}");
    let s = hsm.session().unwrap();
    let handle = s
        .find_objects(&[Attribute::Label(LABEL.as_bytes().to_vec())])
        .unwrap()
        .into_iter()
        .next()
        .or_else(|| s.find_objects(&[Attribute::Label(b"owner-kek".to_vec())]).unwrap().into_iter().next())
        .unwrap();
    // C_GetAttributeValue(CKA_VALUE) yields no bytes.
    if let Ok(attrs) = s.get_attributes(handle, &[AttributeType::Value]) {
        assert!(!attrs.iter().any(|a| matches!(a, Attribute::Value(v) if !v.is_empty())), "CKA_VALUE was readable");
    }
    // C_WrapKey under another key the caller controls is refused.
    let wrapping = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::ValueLen(32.into()),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Encrypt(true),
            ],
        )
        .unwrap();
    assert!(s.wrap_key(&Mechanism::AesKeyWrapPad, wrapping, handle).is_err(), "C_WrapKey exported the KEK");
    assert!(s.wrap_key(&Mechanism::AesKeyWrap, wrapping, handle).is_err(), "C_WrapKey exported the KEK");
    // The protection cannot be relaxed.
    assert!(s.update_attributes(handle, &[Attribute::Extractable(true)]).is_err(), "CKA_EXTRACTABLE was set to true");
    assert!(s.update_attributes(handle, &[Attribute::Sensitive(false)]).is_err(), "CKA_SENSITIVE was set to false");
    drop(s);
    let p = kek.protection().unwrap();
    assert!(p.sensitive && !p.extractable);
}

/// One step, in its own process (run by the tests below, ignored otherwise).
#[test]
#[ignore = "run as a child process by the SoftHSM tests"]
fn child() {
    let Ok(role) = std::env::var("CACHET_HSM_ROLE") else { return };
    let work = PathBuf::from(std::env::var("CACHET_HSM_WORK").unwrap());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    match role.as_str() {
        "write" => {
            let hsm = hsm();
            let kek = Arc::new(Pkcs11Kek::open_or_generate(hsm.clone(), LABEL).unwrap());
            assert_not_exportable(&hsm, &kek, true);
            let store = Arc::new(MemorySecretStore::new());
            let broker = KeyBroker::new(kek.clone(), store.clone(), BrokerConfig::default());
            rt.block_on(async {
                broker
                    .put_secret("bank-a", "db", &SecretValue::from_slice(b"HSM-SEALED-PLAINTEXT-A"), &policy_for(GOOD), NOW)
                    .await
                    .unwrap();
                broker
                    .put_secret("bank-b", "db", &SecretValue::from_slice(b"HSM-SEALED-PLAINTEXT-B"), &policy_for(GOOD), NOW)
                    .await
                    .unwrap();
            });
            std::fs::write(work.join("store.json"), store.at_rest_bytes()).unwrap();
            std::fs::write(work.join("kek-id"), kek.key_id()).unwrap();
        }
        "read" => {
            // A new process: open the existing KEK (never generate) and release.
            let kek = Arc::new(Pkcs11Kek::open(hsm(), LABEL).unwrap());
            assert_eq!(kek.key_id(), std::fs::read_to_string(work.join("kek-id")).unwrap());
            let store = Arc::new(MemorySecretStore::from_at_rest_bytes(&std::fs::read(work.join("store.json")).unwrap()).unwrap());
            let broker = KeyBroker::new(kek, store, BrokerConfig::default());
            let (sk, pk) = workload_key();
            let req = ReleaseRequest {
                claims: claims(GOOD, Some(runtime_data(&pk)), Freshness::Nonce, NOW + 60),
                secrets: vec!["bank-a/db".into(), "bank-b/db".into()],
                workload_key: None,
            };
            let out = rt.block_on(broker.release(&req, NOW)).unwrap();
            let got: Vec<Vec<u8>> =
                out.results.iter().map(|r| jwe::decrypt(&sk, r.jwe.as_deref().unwrap()).unwrap().plaintext.expose().to_vec()).collect();
            assert_eq!(got, vec![b"HSM-SEALED-PLAINTEXT-A".to_vec(), b"HSM-SEALED-PLAINTEXT-B".to_vec()]);
        }
        "read-elsewhere" => {
            // Another token with a KEK of the same label cannot open the records.
            let kek = Pkcs11Kek::open_or_generate(hsm(), LABEL).unwrap();
            let recs: Vec<SecretRecord> = serde_json::from_slice(&std::fs::read(work.join("store.json")).unwrap()).unwrap();
            for r in &recs {
                let mut forged = r.sealed.clone();
                forged.kek_id = kek.key_id().to_string();
                assert!(envelope::open(&kek, &r.owner, &r.name, &r.policy_hash, &forged).is_err());
            }
        }
        "byok" => {
            let hsm = hsm();
            let owner_key = KeyBytes::<32>::from_slice(&[0x5a; 32]).unwrap();
            let kek = Pkcs11Kek::import(hsm.clone(), "owner-kek", &owner_key).unwrap();
            assert_not_exportable(&hsm, &kek, false);
            assert!(Pkcs11Kek::import(hsm.clone(), "owner-kek", &owner_key).is_err(), "a second import under the label");
            let s = envelope::seal(&kek, "bank-a", "k", "p", &SecretValue::from_slice(b"BYOK-PLAINTEXT")).unwrap();
            assert_eq!(envelope::open(&kek, "bank-a", "k", "p", &s).unwrap().expose(), b"BYOK-PLAINTEXT");
            std::fs::write(work.join("byok.json"), serde_json::to_vec(&s).unwrap()).unwrap();
        }
        "byok-read" => {
            let kek = Pkcs11Kek::open(hsm(), "owner-kek").unwrap();
            let s = serde_json::from_slice(&std::fs::read(work.join("byok.json")).unwrap()).unwrap();
            assert_eq!(envelope::open(&kek, "bank-a", "k", "p", &s).unwrap().expose(), b"BYOK-PLAINTEXT");
        }
        "sign" | "sign-again" => {
            use cachet_token::jwk::PublicKey;
            use cachet_token::{jws, SigningKey};
            let hsm = hsm();
            let custody = Pkcs11Custody::new(hsm.clone());
            let path = work.join("signing-keys.json");
            let keys: Vec<(String, Vec<u8>, Vec<u8>)> = if role == "sign" {
                let ks: Vec<_> = Algorithm::ALL
                    .into_iter()
                    .map(|alg| {
                        let k = custody.generate(alg, "cachet-token-signing").unwrap();
                        assert!(
                            std::str::from_utf8(&k.handle).unwrap().starts_with("pkcs11:id="),
                            "the handle is a reference, not key material"
                        );
                        (alg.as_str().to_string(), k.public_spki_der, k.handle)
                    })
                    .collect();
                std::fs::write(&path, serde_json::to_vec(&ks).unwrap()).unwrap();
                ks
            } else {
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
            };
            for (alg, spki, handle) in keys {
                let alg = Algorithm::parse(&alg).unwrap();
                let pk = PublicKey::from_spki("k1", alg, &spki).unwrap();
                let sk = SigningKey::new("k1", alg, "pkcs11", cachet_token::CustodyKey { public_spki_der: spki, handle }, 0, 0);
                let claims = serde_json::json!({"iss": "https://cachet.test", "iat": 1, "exp": 100});
                let token = jws::sign(&claims, &sk, &custody).unwrap();
                let want = jws::Expectations { now: 50, leeway: 0, issuer: Some("https://cachet.test") };
                assert_eq!(jws::verify(&token, std::slice::from_ref(&pk), &want).unwrap(), claims, "{alg}");
                // The private key is not readable.
                let s = private_key_readable(&hsm, &sk.handle);
                assert!(!s, "{alg}: private key value readable");
            }
        }
        "outage" => {
            // The token's store vanishes (the HSM is unplugged) and comes back.
            let tokens = PathBuf::from(std::env::var("SOFTHSM2_CONF").unwrap()).with_file_name("tokens");
            let away = tokens.with_file_name("tokens-away");
            let hsm = hsm();
            let kek = Arc::new(Pkcs11Kek::open_or_generate(hsm.clone(), LABEL).unwrap());
            let custody = Pkcs11Custody::new(hsm.clone());
            let signing = custody.generate(Algorithm::ES256, "k").unwrap();
            let store = Arc::new(MemorySecretStore::new());
            let broker = KeyBroker::new(kek.clone(), store.clone(), BrokerConfig::default());
            rt.block_on(broker.put_secret("bank-a", "db", &SecretValue::from_slice(b"V"), &policy_for(GOOD), NOW)).unwrap();
            let (sk, pk) = workload_key();
            let req = ReleaseRequest {
                claims: claims(GOOD, Some(runtime_data(&pk)), Freshness::Nonce, NOW + 60),
                secrets: vec!["bank-a/db".into()],
                workload_key: None,
            };
            let release = || rt.block_on(broker.release(&req, NOW)).unwrap().results.remove(0);
            let released = |r: &cachet_keybroker::ReleaseResult| {
                r.released && jwe::decrypt(&sk, r.jwe.as_deref().unwrap()).unwrap().plaintext.expose() == b"V"
            };
            assert!(released(&release()));

            std::fs::rename(&tokens, &away).unwrap();
            for _ in 0..2 {
                let r = release();
                assert!(!r.released);
                // The real cause, not "altered record".
                assert_eq!(r.code.as_deref(), Some("key_custody_unavailable"), "{r:?}");
                assert!(!r.reason.contains("altered"), "{r:?}");
                assert!(matches!(kek.check(), Err(cachet_keybroker::BrokerError::Unavailable(_))));
                assert!(custody.sign(Algorithm::ES256, &signing.handle, b"m").is_err());
            }

            // The token is back: the next use reconnects and logs in again.
            std::fs::rename(&away, &tokens).unwrap();
            kek.check().unwrap();
            assert!(released(&release()));
            assert!(custody.sign(Algorithm::ES256, &signing.handle, b"m").is_ok());

            // A session logged out under us (token reset, another client): logged in again.
            hsm.session().unwrap().logout().unwrap();
            assert!(released(&release()));
            kek.check().unwrap();

            // An altered record is still named as one while the token answers.
            use cachet_keybroker::SecretStore;
            let mut rec = rt.block_on(store.get_secret("bank-a", "db")).unwrap().unwrap();
            rec.sealed.wrapped_dek[20] ^= 1;
            rec.version += 1;
            rt.block_on(store.put_secret(&rec)).unwrap();
            let r = release();
            assert_eq!(r.code.as_deref(), Some("secret_record_altered"), "{r:?}");
        }
        other => panic!("unknown role {other}"),
    }
    println!("ROLE-OK {role}");
}

/// Whether any private-key object with this custody handle's id exposes CKA_VALUE/CKA_PRIVATE_EXPONENT.
fn private_key_readable(hsm: &Hsm, handle: &[u8]) -> bool {
    let id = hex::decode(std::str::from_utf8(handle).unwrap().trim_start_matches("pkcs11:id=")).unwrap();
    let s = hsm.session().unwrap();
    let objs = s.find_objects(&[Attribute::Class(cryptoki::object::ObjectClass::PRIVATE_KEY), Attribute::Id(id)]).unwrap();
    assert_eq!(objs.len(), 1);
    match s.get_attributes(objs[0], &[AttributeType::Value, AttributeType::PrivateExponent, AttributeType::Extractable]) {
        Ok(attrs) => attrs.iter().any(|a| match a {
            Attribute::Value(v) | Attribute::PrivateExponent(v) => !v.is_empty(),
            Attribute::Extractable(e) => *e,
            _ => false,
        }),
        Err(_) => false,
    }
}

#[test]
fn hsm_sealed_secrets_survive_a_restart_and_open_only_through_that_hsm() {
    let token = Token::new();
    let work = tempfile::tempdir().unwrap();
    token.run("write", work.path());
    let at_rest = std::fs::read(work.path().join("store.json")).unwrap();
    for v in [&b"HSM-SEALED-PLAINTEXT-A"[..], b"HSM-SEALED-PLAINTEXT-B"] {
        assert!(!at_rest.windows(v.len()).any(|w| w == v), "plaintext at rest");
        assert!(!String::from_utf8_lossy(&at_rest).contains(&hex::encode(v)));
    }
    let kek_id = std::fs::read_to_string(work.path().join("kek-id")).unwrap();
    assert!(kek_id.starts_with("pkcs11:cachet/"), "{kek_id}");
    // Restart: a new process, a new session, the same token.
    token.run("read", work.path());
    token.run("read", work.path());
    // Without the HSM: a local KEK is refused by name, and a forged KEK id does not help.
    let recs: Vec<SecretRecord> = serde_json::from_slice(&at_rest).unwrap();
    let local = LocalFileKek::open_or_create(&work.path().join("local-kek")).unwrap();
    for r in &recs {
        assert!(matches!(
            envelope::open(&local, &r.owner, &r.name, &r.policy_hash, &r.sealed),
            Err(cachet_keybroker::BrokerError::WrongKek { .. })
        ));
        let mut forged = r.sealed.clone();
        forged.kek_kind = "local-file".into();
        forged.kek_id = local.key_id().to_string();
        assert!(envelope::open(&local, &r.owner, &r.name, &r.policy_hash, &forged).is_err());
    }
    // Another HSM token (its own KEK under the same label) cannot open them either.
    let elsewhere = Token::new();
    elsewhere.run("read-elsewhere", work.path());
}

#[test]
fn an_owner_imported_kek_is_used_only_inside_the_hsm() {
    let token = Token::new();
    let work = tempfile::tempdir().unwrap();
    token.run("byok", work.path());
    token.run("byok-read", work.path());
    let sealed = std::fs::read(work.path().join("byok.json")).unwrap();
    assert!(!sealed.windows(14).any(|w| w == b"BYOK-PLAINTEXT"));
}

/// The HSM goes away (its token store is moved off) and returns: releases
/// fail as `key_custody_unavailable` meanwhile (never as an altered record),
/// and recover without a restart: the session is reopened, logged in again
/// and the module re-initialised when it lost the token.
#[test]
fn an_hsm_outage_is_named_and_recovered_from() {
    let token = Token::new();
    let work = tempfile::tempdir().unwrap();
    token.run("outage", work.path());
}

#[test]
fn token_signing_keys_in_the_hsm_sign_verifiable_jwts_across_restarts() {
    let token = Token::new();
    let work = tempfile::tempdir().unwrap();
    token.run("sign", work.path());
    token.run("sign-again", work.path());
}
