//! NVIDIA RIM fetching against a loopback RIM service that answers
//! `GET /v1/rim/{id}` in the service's JSON shape with the recorded RIM files
//! of `testdata/vectors/nvidia` (the exact signed bytes).
//!
//! Which recorded file answers which id follows NVIDIA's naming, as the
//! service publishes them: a driver RIM (`colloquialVersion` like `545.00`)
//! is `NV_GPU_DRIVER_{product}_{version}` (Blackwell `NV_GPU_CC_DRIVER_…`), a
//! VBIOS RIM `NV_GPU_VBIOS_{project}_{project SKU}_{chip SKU}_{VERSION}` from
//! nvtrust's file naming (`1010_0200_882_96005E0001_PROD.swidtag`), the
//! production RIM where a test one shares the id.

#[path = "../../cachet-verify/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use cachet_endorse::{EndorseError, Endorser, MemoryCache, Resource, Sources};
use cachet_verify::nvgpu::rim;
use cachet_verify::{Endorsement, Tee, TrustAnchors};
use common::{cases, run, run_case, vectors_dir, Case};
use serde_json::json;

/// How the loopback service misbehaves, for the refusal tests.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Honest,
    /// `sha256` of other bytes than the `rim` sent.
    WrongSha,
    /// Answers every id with one fixed recorded RIM (another id's).
    Swapped,
}

#[derive(Clone)]
struct Service {
    rims: Arc<HashMap<String, Vec<u8>>>,
    mode: Mode,
    /// Every id asked for, in order.
    asked: Arc<Mutex<Vec<String>>>,
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b))
}

async fn rim_by_id(State(s): State<Service>, Path(id): Path<String>) -> Response {
    s.asked.lock().unwrap().push(id.clone());
    let bytes = match s.mode {
        Mode::Swapped => s.rims.iter().filter(|(k, _)| k.contains("VBIOS")).map(|(_, v)| v.clone()).next(),
        _ => s.rims.get(&id).cloned(),
    };
    let Some(bytes) = bytes else {
        let body = json!({"message": format!("RIM {id} not found"), "request_id": "00000000-0000-4000-8000-000000000000"});
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    };
    let sha256 = if s.mode == Mode::WrongSha { sha256_hex(b"not the RIM") } else { sha256_hex(&bytes) };
    Json(json!({
        "id": id,
        "rim": base64::engine::general_purpose::STANDARD.encode(&bytes),
        "sha256": sha256,
        "last_updated": "2024-06-24T07:54:33.000000",
        "rim_format": "TCG",
        "request_id": "00000000-0000-4000-8000-000000000001",
    }))
    .into_response()
}

/// The recorded RIMs by the id the RIM service publishes them under.
fn recorded_rims() -> HashMap<String, Vec<u8>> {
    let mut files = Vec::new();
    let mut dirs = vec![vectors_dir().join("nvidia")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()) {
            if e.is_dir() {
                dirs.push(e);
            } else if e.extension().is_some_and(|x| x == "swidtag") {
                files.push(e);
            }
        }
    }
    files.sort();
    let mut out: HashMap<String, (bool, Vec<u8>)> = HashMap::new();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let r = rim::parse(&bytes).expect("recorded RIM parses");
        let product = r.product.clone().unwrap_or_default().to_ascii_uppercase();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let vbios_shape = r.version.split('.').count() == 5;
        let (id, prod) = if !vbios_shape {
            let id = if product.starts_with("GB") {
                format!("NV_GPU_CC_DRIVER_{product}_{}", r.version)
            } else {
                format!("NV_GPU_DRIVER_{product}_{}", r.version)
            };
            (id, true)
        } else {
            // {project}_{project_sku}_{chip_sku}_{VERSION}_{PROD|test_no_gpu}.swidtag
            let parts: Vec<&str> = name.trim_end_matches(".swidtag").split('_').collect();
            let [p, ps, cs, v, ..] = parts.as_slice() else { continue };
            assert_eq!(v.to_ascii_uppercase(), r.version.replace('.', "").to_ascii_uppercase(), "{name}");
            (format!("NV_GPU_VBIOS_{p}_{ps}_{cs}_{v}").to_ascii_uppercase(), name.contains("_PROD"))
        };
        match out.get(&id) {
            Some((true, _)) if !prod => {}
            _ => {
                out.insert(id, (prod, bytes));
            }
        }
    }
    out.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

/// A loopback RIM service; its base URL and the ids it was asked for.
async fn serve(mode: Mode) -> (String, Arc<Mutex<Vec<String>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let state = Service { rims: Arc::new(recorded_rims()), mode, asked: asked.clone() };
    let app = Router::new().route("/v1/rim/{id}", get(rim_by_id)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), asked)
}

fn endorser(url: &str) -> Endorser {
    let sources = Sources { nvidia_rim_url: url.to_string(), ..Sources::default() };
    Endorser::new(sources, Arc::new(MemoryCache::default())).unwrap()
}

fn nvgpu_cases() -> Vec<Case> {
    let all = cases(&["nvgpu"]);
    assert!(!all.is_empty(), "no nvgpu cases in cases.json");
    all
}

/// The evidence file as a client sends it (hex here): `needs` decodes it.
fn raw_evidence(c: &Case) -> Vec<u8> {
    std::fs::read(vectors_dir().join(&c.evidence)).unwrap()
}

fn is_rim(e: &Endorsement) -> bool {
    rim::looks_like_xml(&e.bytes)
}

fn ids(rs: &[Resource]) -> Vec<String> {
    rs.iter()
        .map(|r| match r {
            Resource::Rim { id } => id.clone(),
            other => panic!("not a RIM: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_rims_give_the_verdict_and_claims_of_the_case_files() {
    let (url, asked) = serve(Mode::Honest).await;
    let recorded = recorded_rims();
    let mut compared = 0;
    for c in nvgpu_cases() {
        let needed = ids(&cachet_endorse::needs(Tee::Nvgpu, &raw_evidence(&c)).unwrap());
        let e = endorser(&url);
        let got = e.endorsements_for(Tee::Nvgpu, &raw_evidence(&c), c.verify_at()).await;
        if !needed.iter().all(|id| recorded.contains_key(id)) {
            // Not recorded (nvgpu-h100-head): the service says so, nothing is made up.
            assert!(matches!(got, Err(EndorseError::NotFound { .. })), "{}: {got:?}", c.id);
            continue;
        }
        let fetched = got.unwrap_or_else(|err| panic!("{}: {err}", c.id));
        assert_eq!(fetched.len(), needed.len(), "{}", c.id);
        let mut given: Vec<Endorsement> = c.endorsement_files().into_iter().filter(|e| !is_rim(e)).collect();
        for f in &fetched {
            assert!(f.next_update.is_some_and(|n| n > c.verify_at()), "{}: RIM validity from its signer chain", c.id);
            given.extend(f.endorsements());
        }
        let with_files = run_case(&c, c.verify_at());
        let with_fetched = run(c.tee(), &c.evidence_bytes(), &given, &TrustAnchors::pinned(), c.verify_at());
        assert_eq!(with_files.verified(), with_fetched.verified(), "{}", c.id);
        assert_eq!(with_files.result.as_ref().ok(), with_fetched.result.as_ref().ok(), "{}: claims", c.id);
        assert_eq!(c.expect == "accept", with_fetched.verified(), "{}: {:?}", c.id, with_fetched.result);
        // Cached: asking again does not reach the service.
        let before = asked.lock().unwrap().len();
        e.endorsements_for(Tee::Nvgpu, &raw_evidence(&c), c.verify_at()).await.unwrap();
        assert_eq!(asked.lock().unwrap().len(), before, "{}: served from the cache", c.id);
        compared += 1;
    }
    assert!(compared >= 1, "no NVIDIA case with recorded RIMs");
}

#[test]
fn ids_are_derived_from_the_evidence() {
    for c in nvgpu_cases() {
        let needed = ids(&cachet_endorse::needs(Tee::Nvgpu, &raw_evidence(&c)).unwrap());
        // The same ids the verifier names in its claims, from the signed report.
        let v = run_case(&c, c.verify_at());
        let claims = v.result.as_ref().unwrap_or_else(|e| panic!("{}: {e:?}", c.id));
        let named: Vec<String> = ["driver", "vbios"].iter().filter_map(|k| claims["rim_ids"][k].as_str().map(str::to_string)).collect();
        assert_eq!(needed, named, "{}", c.id);
    }
    let c = nvgpu_cases().into_iter().find(|c| c.id == "nvgpu-h100-2023").expect("nvgpu-h100-2023");
    let needed = ids(&cachet_endorse::needs(Tee::Nvgpu, &raw_evidence(&c)).unwrap());
    assert_eq!(needed, ["NV_GPU_DRIVER_GH100_545.00", "NV_GPU_VBIOS_1010_0200_882_96005E0001"]);

    // Another driver version in the report: another id.
    let mut report = c.evidence_bytes();
    let at = report.windows(6).position(|w| w == b"545.00").expect("driver version in the report");
    report[at..at + 6].copy_from_slice(b"546.00");
    let needed = ids(&cachet_endorse::needs(Tee::Nvgpu, &report).unwrap());
    assert_eq!(needed[0], "NV_GPU_DRIVER_GH100_546.00");

    // Not a report: no ids, a clear error.
    let err = cachet_endorse::needs(Tee::Nvgpu, b"\x11\xe0garbage").unwrap_err();
    assert!(matches!(err, EndorseError::Evidence(ref m) if m.contains("NVIDIA RIMs")), "{err}");
}

/// An 8-GPU set as NVIDIA's SDK collects it: one driver RIM and one VBIOS
/// RIM (all eight GPUs share them), the versions the entries' signed reports say.
#[test]
fn multi_gpu_sets_need_each_distinct_rim_once() {
    let raw = std::fs::read(vectors_dir().join("nvidia/nvtrust-head-partial/ppcie_gpu_evidence.json")).unwrap();
    let needed = ids(&cachet_endorse::needs(Tee::Nvgpu, &raw).unwrap());
    let list: Vec<serde_json::Value> = serde_json::from_slice(&raw).unwrap();
    let entry = &list[0];
    let driver = entry["driver_version"].as_str().unwrap();
    let vbios = entry["vbios_version"].as_str().unwrap().replace('.', "");
    assert_eq!(needed.len(), 2, "{needed:?}");
    assert_eq!(needed[0], format!("NV_GPU_DRIVER_GH100_{driver}"));
    assert!(needed[1].starts_with("NV_GPU_VBIOS_") && needed[1].ends_with(&format!("_{vbios}")), "{needed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_id_is_not_found() {
    let (url, asked) = serve(Mode::Honest).await;
    let e = endorser(&url);
    let r = Resource::Rim { id: "NV_GPU_DRIVER_GH100_999.99".into() };
    let err = e.get(&r, 1_719_215_673).await.unwrap_err();
    assert!(matches!(err, EndorseError::NotFound { ref what, .. } if what.contains("NV_GPU_DRIVER_GH100_999.99")), "{err}");
    assert_eq!(*asked.lock().unwrap(), ["NV_GPU_DRIVER_GH100_999.99"]);
    assert!(e.cache().get(&r.key()).await.is_none());

    // An id that is not a plain path segment is never sent.
    let err = e.get(&Resource::Rim { id: "../admin".into() }, 1_719_215_673).await.unwrap_err();
    assert!(matches!(err, EndorseError::Evidence(_)), "{err}");
    assert_eq!(asked.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_sha256_is_refused() {
    let (url, _) = serve(Mode::WrongSha).await;
    let e = endorser(&url);
    let r = Resource::Rim { id: "NV_GPU_DRIVER_GH100_545.00".into() };
    let err = e.get(&r, 1_719_215_673).await.unwrap_err();
    assert!(matches!(err, EndorseError::Source { ref message, .. } if message.contains("SHA-256")), "{err}");
    assert!(e.cache().get(&r.key()).await.is_none(), "a refused answer is not cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rim_of_another_version_is_refused() {
    let (url, _) = serve(Mode::Swapped).await;
    let e = endorser(&url);
    let r = Resource::Rim { id: "NV_GPU_DRIVER_GH100_545.00".into() };
    let err = e.get(&r, 1_719_215_673).await.unwrap_err();
    assert!(matches!(err, EndorseError::Source { ref message, .. } if message.contains("version")), "{err}");
    assert!(e.cache().get(&r.key()).await.is_none());
}

/// The same client against an independent mirror of the RIM service
/// (`../shared/tools/collateral-replay`, started by hand): run with
/// `CACHET_RIM_REPLAY_URL=http://127.0.0.1:PORT cargo test -p cachet-endorse --test nvidia -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a collateral-replay listener in CACHET_RIM_REPLAY_URL"]
async fn against_collateral_replay() {
    let url = std::env::var("CACHET_RIM_REPLAY_URL").expect("CACHET_RIM_REPLAY_URL");
    let c = nvgpu_cases().into_iter().find(|c| c.id == "nvgpu-h100-2023").expect("nvgpu-h100-2023");
    let fetched = endorser(&url).endorsements_for(Tee::Nvgpu, &raw_evidence(&c), c.verify_at()).await.unwrap();
    let mut given: Vec<Endorsement> = c.endorsement_files().into_iter().filter(|e| !is_rim(e)).collect();
    given.extend(fetched.iter().flat_map(|f| f.endorsements()));
    let with_files = run_case(&c, c.verify_at());
    let with_fetched = run(c.tee(), &c.evidence_bytes(), &given, &TrustAnchors::pinned(), c.verify_at());
    assert_eq!(with_files.result.as_ref().ok(), with_fetched.result.as_ref().ok());
    let head = nvgpu_cases().into_iter().find(|c| c.id == "nvgpu-h100-head").expect("nvgpu-h100-head");
    let got = endorser(&url).endorsements_for(Tee::Nvgpu, &raw_evidence(&head), head.verify_at()).await;
    assert!(matches!(got, Err(EndorseError::NotFound { .. })), "{got:?}");
}
