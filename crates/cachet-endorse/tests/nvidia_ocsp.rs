//! NVIDIA OCSP fetching against a real, independent OCSP responder on
//! loopback: `openssl ocsp` answering DER `OCSPRequest`s POSTed as NVIDIA's
//! responder takes them, signing with a P-384 CA made by `openssl` for the
//! test (NVIDIA's own responder cannot be reached here, and its answers are
//! not recorded in the vectors).
//!
//! What NVIDIA's chains need is checked on the real ones: every certificate
//! of the recorded GPU device chain and RIM signer chains but the roots.

#[path = "../../cachet-verify/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use cachet_endorse::{nvidia, EndorseError, Endorser, MemoryCache, Resource, Sources};
use cachet_verify::Endorsement;
use common::vectors_dir;

/// `openssl`, or `None` (the test says it skipped) outside CI.
fn openssl() -> Option<&'static str> {
    let ok = Command::new("openssl").arg("version").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "openssl is needed for the OCSP tests under CI");
        eprintln!("SKIPPED: openssl not found");
        return None;
    }
    Some("openssl")
}

fn sh(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A P-384 CA and two leaves it issued (serials 0x1001 and 0x1002; the
/// second revoked), with `openssl ca`'s index of them.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        sh(d, &["ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", "ca.key"]);
        sh(d, &["req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=Test GPU CA", "-days", "30", "-sha384", "-out", "ca.pem"]);
        for (name, serial) in [("leaf", "1001"), ("other", "1002")] {
            sh(d, &["ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", &format!("{name}.key")]);
            sh(
                d,
                &["req", "-new", "-key", &format!("{name}.key"), "-subj", &format!("/CN=Test GPU {name}"), "-out", &format!("{name}.csr")],
            );
            sh(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-set_serial",
                    &format!("0x{serial}"),
                    "-days",
                    "30",
                    "-sha384",
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
        }
        // `openssl ca` index: V(alid) leaf, R(evoked) other.
        std::fs::write(
            d.join("index.txt"),
            "V\t491231235959Z\t\t1001\tunknown\t/CN=Test GPU leaf\nR\t491231235959Z\t240101000000Z\t1002\tunknown\t/CN=Test GPU other\n",
        )
        .unwrap();
        Pki { dir }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    /// The chain as a GPU evidence's certificate file holds it.
    fn chain(&self, leaf: &str) -> Endorsement {
        let mut pem = std::fs::read(self.path(&format!("{leaf}.pem"))).unwrap();
        pem.extend(std::fs::read(self.path("ca.pem")).unwrap());
        Endorsement { name: "gpuAkCertChain.pem".into(), bytes: pem }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `openssl ocsp` answers the request.
    Honest,
    /// Always the answer for serial 0x1002, whatever was asked.
    OtherSerial,
    /// Bytes that are no OCSP response.
    Garbage,
    /// HTTP 503.
    Down,
}

#[derive(Clone)]
struct Responder {
    dir: PathBuf,
    mode: Mode,
    asked: Arc<Mutex<usize>>,
}

async fn answer(State(s): State<Responder>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    *s.asked.lock().unwrap() += 1;
    if headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) != Some("application/ocsp-request") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "want application/ocsp-request").into_response();
    }
    if s.mode == Mode::Down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    if s.mode == Mode::Garbage {
        return ([(header::CONTENT_TYPE, "application/ocsp-response")], b"<html>maintenance</html>".to_vec()).into_response();
    }
    let dir = s.dir.clone();
    let mode = s.mode;
    let der = tokio::task::spawn_blocking(move || {
        let req = if mode == Mode::OtherSerial {
            sh(&dir, &["ocsp", "-sha384", "-issuer", "ca.pem", "-cert", "other.pem", "-no_nonce", "-reqout", "other-req.der"]);
            "other-req.der".to_string()
        } else {
            std::fs::write(dir.join("req.der"), &body).unwrap();
            "req.der".to_string()
        };
        sh(
            &dir,
            &[
                "ocsp",
                "-index",
                "index.txt",
                "-rsigner",
                "ca.pem",
                "-rkey",
                "ca.key",
                "-CA",
                "ca.pem",
                "-reqin",
                &req,
                "-respout",
                "resp.der",
                "-ndays",
                "1",
            ],
        );
        std::fs::read(dir.join("resp.der")).unwrap()
    })
    .await
    .unwrap();
    ([(header::CONTENT_TYPE, "application/ocsp-response")], der).into_response()
}

async fn serve(pki: &Pki, mode: Mode) -> (String, Arc<Mutex<usize>>) {
    let asked = Arc::new(Mutex::new(0));
    let app =
        Router::new().route("/", post(answer)).with_state(Responder { dir: pki.dir.path().to_path_buf(), mode, asked: asked.clone() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, asked)
}

fn endorser(url: &str, offline: bool) -> Endorser {
    let sources = Sources { nvidia_ocsp_url: url.to_string(), offline, ..Sources::default() };
    Endorser::new(sources, Arc::new(MemoryCache::default())).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn every_certificate_of_the_recorded_nvidia_chains_but_the_roots_is_asked_about() {
    let dir = vectors_dir().join("nvidia/nvtrust-2023-full");
    let file = |f: &str| Endorsement { name: f.into(), bytes: std::fs::read(dir.join(f)).unwrap() };
    // The GPU device chain: leaf (AK) … NVIDIA Device Identity CA (self-signed).
    let chain = file("gpuAkCertChain.txt");
    let certs = pem_count(&chain.bytes);
    assert!(certs >= 4, "the recorded device chain has {certs} certificates");
    let needs = nvidia::ocsp_needs(std::slice::from_ref(&chain));
    assert_eq!(needs.len(), certs - 1, "one CertID per certificate but the root: {needs:?}");
    for r in &needs {
        let Resource::Ocsp { issuer_name_hash, issuer_key_hash, serial } = r else { panic!("{r:?}") };
        assert_eq!(issuer_name_hash.len(), 96, "SHA-384 of the issuer's name");
        assert_eq!(issuer_key_hash.len(), 96, "SHA-384 of the issuer's key");
        assert!(!serial.is_empty());
        assert!(r.optional(), "revocation answers are optional: a missing one is reported, not fatal");
        assert!(r.key().starts_with("nvidia/ocsp/"));
    }
    // A RIM's signer chain adds its own certificates (leaf and intermediates).
    let rim = file("1010_0200_882_96005E0001_PROD.swidtag");
    let with_rim = nvidia::ocsp_needs(&[chain.clone(), rim.clone()]);
    assert!(with_rim.len() > needs.len(), "the VBIOS RIM's signer chain is asked about too");
    assert!(needs.iter().all(|r| with_rim.contains(r)));
    // The same file twice asks once.
    assert_eq!(nvidia::ocsp_needs(&[chain.clone(), chain]).len(), needs.len());
}

fn pem_count(b: &[u8]) -> usize {
    String::from_utf8_lossy(b).matches("-----BEGIN CERTIFICATE-----").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ocsp_answer_is_fetched_once_and_kept_until_its_next_update() {
    let Some(_) = openssl() else { return };
    let pki = Pki::new();
    let (url, asked) = serve(&pki, Mode::Honest).await;
    let e = endorser(&url, false);
    let given = [pki.chain("leaf")];
    let needs = nvidia::ocsp_needs(&given);
    assert_eq!(needs.len(), 1, "the leaf, not the self-signed CA: {needs:?}");
    let Resource::Ocsp { serial, .. } = &needs[0] else { unreachable!() };
    assert_eq!(serial, "1001");

    let t = now();
    let got = e.revocation(cachet_verify::Tee::Nvgpu, &given, t).await;
    assert_eq!(got.len(), 1, "one answer for the leaf");
    assert_eq!(*asked.lock().unwrap(), 1);
    let f = &got[0];
    assert_eq!(f.resource, needs[0]);
    let next = f.next_update.expect("openssl -ndays 1 sets nextUpdate");
    assert!((next - (t + 86_400)).abs() < 120, "kept until the responder's nextUpdate (+1 day), got {}", next - t);
    // The answer the verifier receives is the responder's DER, byte for byte.
    let resp = std::fs::read(pki.path("resp.der")).unwrap();
    assert_eq!(f.parts[0].bytes, resp);
    assert!(nvidia::check_ocsp_answer(&needs[0], &resp, t).is_ok());
    // openssl reads the answer as "good" for the leaf.
    std::fs::write(pki.path("got.der"), &f.parts[0].bytes).unwrap();
    let out = Command::new("openssl")
        .args(["ocsp", "-respin", "got.der", "-sha384", "-issuer", "ca.pem", "-cert", "leaf.pem", "-CAfile", "ca.pem", "-resp_text"])
        .current_dir(pki.dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("leaf.pem: good"), "{}", String::from_utf8_lossy(&out.stdout));

    // Cached: neither asking again nor the same chain in another request asks the responder.
    let again = e.revocation(cachet_verify::Tee::Nvgpu, &given, t + 60).await;
    assert_eq!(again, got);
    assert_eq!(*asked.lock().unwrap(), 1, "served from the cache until nextUpdate");
    // An answer given with the evidence covers the certificate: nothing is asked.
    let mut with_answer = given.to_vec();
    with_answer.push(Endorsement { name: "ocsp-leaf.der".into(), bytes: resp });
    let fresh = endorser(&url, false);
    assert!(fresh.revocation(cachet_verify::Tee::Nvgpu, &with_answer, t).await.is_empty());
    assert_eq!(*asked.lock().unwrap(), 1);
    // Other families are not asked about.
    assert!(fresh.revocation(cachet_verify::Tee::Snp, &given, t).await.is_empty());
    assert_eq!(*asked.lock().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_for_another_certificate_or_no_answer_at_all_is_refused() {
    let Some(_) = openssl() else { return };
    let pki = Pki::new();
    let given = [pki.chain("leaf")];
    let need = nvidia::ocsp_needs(&given).remove(0);
    for (mode, says) in [(Mode::OtherSerial, "does not answer for certificate serial 1001"), (Mode::Garbage, "not an OCSP response")] {
        let (url, asked) = serve(&pki, mode).await;
        let e = endorser(&url, false);
        match e.get(&need, now()).await {
            Err(EndorseError::Source { origin, message }) => {
                assert_eq!(origin, url);
                assert!(message.contains(says), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(*asked.lock().unwrap(), 1);
        // Nothing was cached: revocation() reports nothing rather than a wrong answer.
        assert!(e.revocation(cachet_verify::Tee::Nvgpu, &given, now()).await.is_empty());
    }
    // The revoked certificate's own answer is kept (it is the verifier that reads "revoked").
    let (url, _) = serve(&pki, Mode::Honest).await;
    let other = nvidia::ocsp_needs(&[pki.chain("other")]).remove(0);
    let got = endorser(&url, false).get(&other, now()).await.unwrap();
    std::fs::write(pki.path("revoked.der"), &got.parts[0].bytes).unwrap();
    let out = Command::new("openssl")
        .args(["ocsp", "-respin", "revoked.der", "-sha384", "-issuer", "ca.pem", "-cert", "other.pem", "-CAfile", "ca.pem"])
        .current_dir(pki.dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("other.pem: revoked"), "{}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_asks_nobody() {
    let Some(_) = openssl() else { return };
    let pki = Pki::new();
    let (url, asked) = serve(&pki, Mode::Honest).await;
    let e = endorser(&url, true);
    let given = [pki.chain("leaf")];
    let need = nvidia::ocsp_needs(&given).remove(0);
    assert!(matches!(e.get(&need, now()).await, Err(EndorseError::Offline(_))));
    assert!(e.revocation(cachet_verify::Tee::Nvgpu, &given, now()).await.is_empty());
    assert_eq!(*asked.lock().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_that_is_down_is_not_asked_again_by_every_attestation() {
    let Some(_) = openssl() else { return };
    let pki = Pki::new();
    let (url, asked) = serve(&pki, Mode::Down).await;
    let sources = Sources { nvidia_ocsp_url: url.clone(), ..Sources::default() };
    let retry = cachet_endorse::http::Retry { attempts: 1, ..Default::default() };
    let e = Endorser::with_retry(sources, Arc::new(MemoryCache::default()), retry).unwrap();
    let given = [pki.chain("leaf")];
    assert!(e.revocation(cachet_verify::Tee::Nvgpu, &given, now()).await.is_empty(), "no answer: revocation not checked");
    assert_eq!(*asked.lock().unwrap(), 1);
    // The next attestations within FAILURE_TTL go on without waiting on it.
    for _ in 0..5 {
        assert!(e.revocation(cachet_verify::Tee::Nvgpu, &given, now()).await.is_empty());
    }
    assert_eq!(*asked.lock().unwrap(), 1, "remembered for {:?}", cachet_endorse::FAILURE_TTL);
    // A vendor's 404 (the piece does not exist) is remembered longer.
    assert!(cachet_endorse::FAILURE_TTL < cachet_endorse::NOT_FOUND_TTL);
}
