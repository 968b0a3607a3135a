//! Intel PCS / PCCS client against a loopback server answering with the real
//! recorded collateral of the SGX and TDX vectors, in the vendor's API shape.
//!
//! The server puts each case's recorded pieces back into the wire shape PCS
//! uses: the exact signed TCB Info / QE Identity text with its recorded
//! signature as `{"tcbInfo":TEXT,"signature":"HEX"}`, the recorded issuer
//! chains URL-encoded in the `*-Issuer-Chain` headers, the recorded CRLs as
//! DER, PEM or (PCCS) the hex of the DER. Nothing is re-signed or made up.

#[path = "../../cachet-verify/tests/common/mod.rs"]
mod common;
#[path = "common/recorded.rs"]
mod recorded;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cachet_endorse::needs::{IntelTee, PckCa};
use cachet_endorse::{needs, EndorseError, Endorser, MemoryCache, Resource, Sources};
use cachet_verify::{Tee, TrustAnchors};
use common::Case;

/// How the server answers the CRLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// Intel's PCCS: PCK and root CA CRLs as the hex of the DER (`rootcacrl` route).
    PccsHex,
    /// Intel's PCS: DER PCK CRL, no `rootcacrl` (the root's distribution point path instead).
    PcsDer,
    /// PCS with the PCK CRL as PEM.
    PcsPem,
}

/// One case's recorded collateral.
struct Recorded {
    tee: &'static str,
    fmspc: String,
    tcb_body: String,
    tcb_chain: String,
    qe_body: String,
    qe_chain: String,
    pck_ca: &'static str,
    pck_crl: Vec<u8>,
    pck_chain: String,
    root_crl: Vec<u8>,
}

struct Server {
    rec: Recorded,
    flavour: Flavour,
    /// Answer every FMSPC with the recorded TCB Info (a misbehaving mirror).
    any_fmspc: bool,
    requests: AtomicUsize,
}

/// The bundle file of a case (dcap-qvl `QuoteCollateralV3` and its derived repackagings).
fn recorded(c: &Case) -> Recorded {
    let path = common::vectors_dir().join(&c.endorsements[0]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("{}: no {k}", c.id)).to_string();
    let tcb_text = s("tcb_info");
    let info: serde_json::Value = serde_json::from_str(&tcb_text).unwrap();
    let pck_crl = hex::decode(s("pck_crl")).unwrap();
    let crl = cachet_verify::x509::parse_crl(&pck_crl).unwrap();
    let issuer = crl.issuer().iter_common_name().next().unwrap().as_str().unwrap().to_string();
    Recorded {
        tee: if c.tee == "sgx" { "sgx" } else { "tdx" },
        fmspc: info["fmspc"].as_str().unwrap().to_ascii_lowercase(),
        tcb_body: format!("{{\"tcbInfo\":{tcb_text},\"signature\":\"{}\"}}", s("tcb_info_signature")),
        tcb_chain: s("tcb_info_issuer_chain"),
        qe_body: format!("{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}", s("qe_identity"), s("qe_identity_signature")),
        qe_chain: s("qe_identity_issuer_chain"),
        pck_ca: if issuer.contains("Processor") { "processor" } else { "platform" },
        pck_crl,
        pck_chain: s("pck_crl_issuer_chain"),
        root_crl: hex::decode(s("root_ca_crl")).unwrap(),
    }
}

fn pem_crl(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n", lines.join("\n"))
}

async fn answer(State(s): State<Arc<Server>>, uri: Uri) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let r = &s.rec;
    let path = uri.path();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let tcb_path = format!("/{}/certification/v4/tcb", r.tee);
    let qe_path = format!("/{}/certification/v4/qe/identity", r.tee);
    let json = "application/json";
    if path == tcb_path && (s.any_fmspc || q("fmspc").map(str::to_ascii_lowercase).as_deref() == Some(r.fmspc.as_str())) {
        return ([("content-type", json), ("tcb-info-issuer-chain", &recorded::encode_uri_component(&r.tcb_chain))], r.tcb_body.clone())
            .into_response();
    }
    if path == qe_path {
        return (
            [("content-type", json), ("sgx-enclave-identity-issuer-chain", &recorded::encode_uri_component(&r.qe_chain))],
            r.qe_body.clone(),
        )
            .into_response();
    }
    if path == "/sgx/certification/v4/pckcrl" && q("ca") == Some(r.pck_ca) {
        let chain = recorded::encode_uri_component(&r.pck_chain);
        let body = match s.flavour {
            Flavour::PccsHex => hex::encode(&r.pck_crl).into_bytes(),
            Flavour::PcsDer => r.pck_crl.clone(),
            Flavour::PcsPem => pem_crl(&r.pck_crl).into_bytes(),
        };
        return ([("content-type", "application/pkix-crl"), ("sgx-pck-crl-issuer-chain", chain.as_str())], body).into_response();
    }
    if path == "/sgx/certification/v4/rootcacrl" && s.flavour == Flavour::PccsHex {
        return ([("content-type", "application/pkix-crl")], hex::encode(&r.root_crl)).into_response();
    }
    if path == "/IntelSGXRootCA.der" {
        return ([("content-type", "application/pkix-crl")], r.root_crl.clone()).into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}

/// Start the server; returns its base URL and state.
async fn serve(c: &Case, flavour: Flavour) -> (String, Arc<Server>) {
    serve_with(c, flavour, false).await
}

async fn serve_with(c: &Case, flavour: Flavour, any_fmspc: bool) -> (String, Arc<Server>) {
    let state = Arc::new(Server { rec: recorded(c), flavour, any_fmspc, requests: AtomicUsize::new(0) });
    let app = axum::Router::new().fallback(answer).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

fn endorser(url: &str) -> Endorser {
    let sources = Sources { pcs_url: url.into(), ..Sources::default() };
    Endorser::new(sources, Arc::new(MemoryCache::default())).unwrap()
}

fn intel_cases() -> Vec<Case> {
    let cases = common::cases(&["sgx", "tdx"]);
    assert!(cases.len() >= 10, "the SGX and TDX cases of cases.json");
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_collateral_gives_the_same_verdict_and_claims_as_the_recorded_files() {
    let flavours = [Flavour::PccsHex, Flavour::PcsDer, Flavour::PcsPem];
    for (i, c) in intel_cases().iter().enumerate() {
        let flavour = flavours[i % flavours.len()];
        let (url, server) = serve(c, flavour).await;
        let e = endorser(&url);
        let at = c.verify_at();
        let evidence = c.evidence_bytes();
        let fetched = e.endorsements_for(c.tee(), &evidence, at).await.unwrap_or_else(|err| panic!("{} ({flavour:?}): {err}", c.id));
        assert_eq!(fetched.len(), 4, "{}: TCB Info, QE Identity, PCK CRL, root CA CRL", c.id);
        for f in &fetched {
            assert!(f.source.starts_with(&url), "{}: source {}", c.id, f.source);
            let next = f.next_update.unwrap_or_else(|| panic!("{}: {} has no next update", c.id, f.resource.key()));
            assert!(next > at - 400 * 86400, "{}: next update of {}", c.id, f.resource.key());
        }
        let endorsements: Vec<_> = fetched.iter().flat_map(|f| f.endorsements()).collect();
        let online = common::run(c.tee(), &evidence, &endorsements, &TrustAnchors::pinned(), at);
        let offline = common::run_case(c, at);
        match (&online.result, &offline.result) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{}: claims", c.id),
            (Err(a), Err(b)) => assert_eq!((&a.check, &a.message), (&b.check, &b.message), "{}: refusal", c.id),
            (a, b) => panic!("{} ({flavour:?}): fetched collateral gives {a:?}, the recorded files {b:?}", c.id),
        }
        if c.expect == "accept" {
            assert!(online.verified(), "{}: {:?}", c.id, online.result);
            for (k, v) in &c.expected_claims {
                assert_eq!(online.result.as_ref().unwrap().get(k), Some(v), "{}: claim {k}", c.id);
            }
        }
        let asked = server.requests.load(Ordering::SeqCst);
        assert!(asked >= 4, "{}: {asked} requests", c.id);

        // A second run is served from the cache: no request for what is
        // still fresh at `at` (a recorded piece already past its nextUpdate
        // is asked for again, once, as it should be).
        let again = e.endorsements_for(c.tee(), &evidence, at).await.unwrap();
        assert_eq!(again.len(), fetched.len(), "{}", c.id);
        let stale: usize = fetched
            .iter()
            .filter(|f| f.next_update.is_some_and(|n| n <= at))
            .map(|f| if f.resource == Resource::RootCaCrl && flavour != Flavour::PccsHex { 2 } else { 1 })
            .sum();
        let fresh = fetched.iter().filter(|f| f.next_update.is_some_and(|n| n > at)).count();
        assert!(fresh >= 3, "{}: {fresh} fresh", c.id);
        assert_eq!(
            server.requests.load(Ordering::SeqCst),
            asked + stale,
            "{}: the second run asked for fresh cached collateral again",
            c.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_ca_crl_comes_from_rootcacrl_on_a_pccs_and_the_distribution_point_path_otherwise() {
    let c = &intel_cases()[0];
    for (flavour, path) in [(Flavour::PccsHex, "/sgx/certification/v4/rootcacrl"), (Flavour::PcsDer, "/IntelSGXRootCA.der")] {
        let (url, _) = serve(c, flavour).await;
        let f = endorser(&url).get(&Resource::RootCaCrl, c.verify_at()).await.unwrap();
        assert_eq!(f.source, format!("{url}{path}"));
        assert_eq!(f.parts[0].bytes, recorded(c).root_crl, "the DER CRL, whatever the transport");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hex_bodied_pccs_crls_are_handed_over_as_der() {
    let c = &intel_cases()[0];
    let rec = recorded(c);
    let (url, _) = serve(c, Flavour::PccsHex).await;
    let ca = if rec.pck_ca == "processor" { PckCa::Processor } else { PckCa::Platform };
    let f = endorser(&url).get(&Resource::PckCrl { ca }, c.verify_at()).await.unwrap();
    assert_eq!(f.parts[0].bytes, rec.pck_crl);
    assert_eq!(f.parts[1].bytes, rec.pck_chain.as_bytes(), "issuer chain URL-decoded to the recorded PEM");
    let crl = cachet_verify::x509::parse_crl(&rec.pck_crl).unwrap();
    assert_eq!(f.next_update, crl.next_update().map(|t| t.timestamp()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_vendor_does_not_have_is_not_found() {
    let c = &intel_cases()[0];
    let (url, _) = serve(c, Flavour::PcsDer).await;
    let e = endorser(&url);
    let err = e.get(&Resource::TcbInfo { tee: IntelTee::Sgx, fmspc: "00000000ff00".into() }, c.verify_at()).await.unwrap_err();
    assert!(matches!(err, EndorseError::NotFound { .. }), "{err:?}");
    // A PCS-shaped server with no rootcacrl route and no distribution point path: not found.
    let other = if c.tee == "sgx" { IntelTee::Tdx } else { IntelTee::Sgx };
    let err = e.get(&Resource::QeIdentity { tee: other }, c.verify_at()).await.unwrap_err();
    assert!(matches!(err, EndorseError::NotFound { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_platforms_tcb_info_is_refused_and_not_cached() {
    let c = &intel_cases()[0];
    let (url, _) = serve_with(c, Flavour::PcsDer, true).await;
    let e = endorser(&url);
    let tee = if c.tee == "sgx" { IntelTee::Sgx } else { IntelTee::Tdx };
    let other = Resource::TcbInfo { tee, fmspc: "00000000ff00".into() };
    let err = e.get(&other, c.verify_at()).await.unwrap_err();
    assert!(matches!(&err, EndorseError::Source { message, .. } if message.contains("fmspc")), "{err:?}");
    assert!(e.cache().get(&other.key()).await.is_none(), "a wrong answer is not cached");
    // The platform's own is accepted from the same server.
    let own = Resource::TcbInfo { tee, fmspc: recorded(c).fmspc };
    e.get(&own, c.verify_at()).await.unwrap();
    assert!(e.cache().get(&own.key()).await.is_some());
}

/// A quote whose certification data is not the PCK chain: the type field is
/// changed (no re-signing needed: `needs` refuses before any verification).
#[test]
fn a_quote_without_the_pck_chain_is_refused_naming_what_is_missing() {
    for c in intel_cases().iter().filter(|c| c.id == "sgx-dcapqvl" || c.id == "tdx-dcapqvl-v4") {
        let mut raw = c.evidence_bytes();
        let q = cachet_verify::dcap::quote::parse(&raw).unwrap();
        assert_eq!(q.cert_data_type, 5);
        let at = q.cert_data.as_ptr() as usize - raw.as_ptr() as usize;
        // The inner certification data header: type (u16) then size (u32), then the data.
        raw[at - 6..at - 4].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(cachet_verify::dcap::quote::parse(&raw).unwrap().cert_data_type, 3);
        match needs(c.tee(), &raw) {
            Err(EndorseError::Evidence(m)) => {
                assert!(m.contains("certification data type 3, not the PCK chain (type 5)"), "{m}");
                assert!(m.contains("--endorsements"), "{m}");
            }
            other => panic!("{}: {other:?}", c.id),
        }
        // Untouched, the same quote names its platform.
        let want = needs(c.tee(), &c.evidence_bytes()).unwrap();
        assert!(matches!(&want[0], Resource::TcbInfo { fmspc, .. } if *fmspc == recorded(c).fmspc), "{want:?}");
    }
}

/// A PCK certificate whose issuer is not one of Intel's PCK CAs (the issuer
/// name is changed inside the quote; `needs` refuses before verification).
#[test]
fn a_pck_certificate_from_another_issuer_is_refused() {
    use base64::Engine;
    let c = intel_cases().into_iter().find(|c| c.id == "sgx-dcapqvl").unwrap();
    let mut raw = c.evidence_bytes();
    let q = cachet_verify::dcap::quote::parse(&raw).unwrap();
    let start = q.cert_data.as_ptr() as usize - raw.as_ptr() as usize;
    let text = String::from_utf8(q.cert_data.to_vec()).unwrap();
    let (head, rest) = text.split_once("-----BEGIN CERTIFICATE-----").unwrap();
    let (body, _) = rest.split_once("-----END CERTIFICATE-----").unwrap();
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut der = base64::engine::general_purpose::STANDARD.decode(&compact).unwrap();
    let at = der.windows(9).position(|w| w == b"Processor" || w == b"Platform ").expect("the PCK CA name");
    der[at..at + 9].copy_from_slice(b"Elsewhere");
    let mut new = base64::engine::general_purpose::STANDARD.encode(&der).into_bytes().into_iter();
    // Same length: write the new base64 over the old, keeping the line breaks.
    let offset = start + head.len() + "-----BEGIN CERTIFICATE-----".len();
    for (i, ch) in body.bytes().enumerate() {
        if !ch.is_ascii_whitespace() {
            raw[offset + i] = new.next().unwrap();
        }
    }
    match needs(Tee::Sgx, &raw) {
        Err(EndorseError::Evidence(m)) => assert!(m.contains("not \"Intel SGX PCK Processor CA\" or \"Intel SGX PCK Platform CA\""), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn needs_reads_fmspc_and_pck_ca_from_the_quote_in_any_encoding() {
    for c in intel_cases() {
        let rec = recorded(&c);
        let raw = std::fs::read(common::vectors_dir().join(&c.evidence)).unwrap();
        let got = needs(c.tee(), &raw).unwrap_or_else(|e| panic!("{}: {e}", c.id));
        let tee = if c.tee == "sgx" { IntelTee::Sgx } else { IntelTee::Tdx };
        let ca = if rec.pck_ca == "processor" { PckCa::Processor } else { PckCa::Platform };
        assert_eq!(
            got,
            vec![
                Resource::TcbInfo { tee, fmspc: rec.fmspc.clone() },
                Resource::QeIdentity { tee },
                Resource::PckCrl { ca },
                Resource::RootCaCrl,
            ],
            "{}",
            c.id
        );
        // Sent as the other Intel family, it is refused before anything is fetched.
        let wrong = if c.tee == "sgx" { Tee::Tdx } else { Tee::Sgx };
        assert!(matches!(needs(wrong, &raw), Err(EndorseError::Evidence(_))), "{}", c.id);
    }
}

/// The same comparison against an external mirror of the vendors' APIs (e.g.
/// `collateral-replay`), one listener per instant:
/// `CACHET_PCS_MIRRORS="2025-07-04T10:28:44Z=http://127.0.0.1:P,..." cargo test -p cachet-endorse --test pcs -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an external PCS/PCCS mirror (CACHET_PCS_MIRRORS)"]
async fn against_an_external_mirror() {
    let spec = std::env::var("CACHET_PCS_MIRRORS").expect("CACHET_PCS_MIRRORS");
    let mirrors: Vec<(i64, String)> =
        spec.split(',').map(|kv| kv.split_once('=').expect("T=URL")).map(|(t, u)| (common::ts(t), u.to_string())).collect();
    let mut checked = 0;
    for c in intel_cases() {
        let at = c.verify_at();
        let Some((_, url)) = mirrors.iter().find(|(t, _)| *t == at) else { continue };
        let evidence = c.evidence_bytes();
        let fetched = match endorser(url).endorsements_for(c.tee(), &evidence, at).await {
            Ok(f) => f,
            Err(e) => panic!("{}: {e}", c.id),
        };
        let endorsements: Vec<_> = fetched.iter().flat_map(|f| f.endorsements()).collect();
        let online = common::run(c.tee(), &evidence, &endorsements, &TrustAnchors::pinned(), at);
        let offline = common::run_case(&c, at);
        let show = |v: &cachet_verify::Verification| match &v.result {
            Ok(claims) => format!("accept {} {}", claims["tcb_status"], claims["advisory_ids"]),
            Err(e) => format!("refuse {}: {}", e.check, e.message),
        };
        println!("{}: mirror: {} | files: {}", c.id, show(&online), show(&offline));
        if c.expect == "accept" {
            assert!(online.verified(), "{}: {:?}", c.id, online.result);
            for (k, v) in &c.expected_claims {
                assert_eq!(online.result.as_ref().unwrap().get(k), Some(v), "{}: claim {k}", c.id);
            }
        }
        checked += 1;
    }
    assert!(checked > 0, "no case's verify_at has a mirror");
}
