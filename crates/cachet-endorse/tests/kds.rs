//! AMD KDS client against a loopback server answering with the real recorded
//! VCEKs and certificate chains of the SEV-SNP vectors, on KDS's paths.
//!
//! The server indexes every certificate recorded with the SNP cases: a VCEK
//! by its issuer's product, its hwID and the TCB its extensions certify (so it
//! answers `GET /vcek/v1/{product}/{hwid}?blSPL=…` exactly as KDS would, from
//! what the request asks), ASK/ASVK and ARK by common name (the `cert_chain`
//! answers are the recorded PEM blocks, ASK or ASVK then ARK). No AMD CRL is
//! recorded, so `/crl` answers 404 as the replay does. Nothing is re-signed.

#[path = "../../cachet-verify/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cachet_endorse::needs::{AmdKey, AmdProduct};
use cachet_endorse::{needs, Cache, EndorseError, Endorser, MemoryCache, Resource, Sources};
use cachet_verify::snp::certs::{common_name, vek_cert};
use cachet_verify::x509::{certs_from_pem, der_from_pem_or_der, parse_cert};
use cachet_verify::{Tee, TrustAnchors};
use common::Case;

/// How the VCEK route behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// As KDS does when not rate-limited.
    Normal,
    /// The first VCEK request answers 429 with `Retry-After: 1`.
    First429,
    /// Every request answers 503.
    Always503,
    /// A misbehaving mirror: any VCEK request gets the first recorded VCEK.
    AnyVcek,
    /// KDS knows no Milan VCEK (a Genoa chip whose firmware writes version 2 reports).
    NoMilanVcek,
}

/// The recorded AMD certificates, indexed as KDS serves them.
#[derive(Default)]
struct Recorded {
    /// (product, hwid hex, "bl-tee-snp-ucode[-fmc]") → DER VCEK.
    vceks: HashMap<(String, String, String), Vec<u8>>,
    /// (vcek|vlek, product) → PEM text (intermediate then ARK).
    chains: HashMap<(String, String), String>,
}

struct Server {
    rec: Recorded,
    mode: Mode,
    /// Delay before a VCEK answer (a slow KDS: concurrent requests pile up).
    vcek_delay: Duration,
    vcek_requests: AtomicUsize,
    requests: AtomicUsize,
    /// Every path asked for, in order.
    paths: std::sync::Mutex<Vec<String>>,
}

/// The PEM blocks of a recorded text, each exactly as recorded.
fn pem_texts(text: &str) -> Vec<String> {
    let (begin, end) = ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(b) = rest.find(begin) {
        let Some(e) = rest[b..].find(end) else { break };
        out.push(format!("{}\n", &rest[b..b + e + end.len()]));
        rest = &rest[b + e + end.len()..];
    }
    out
}

fn tcb_key(bl: u8, tee: u8, snp: u8, ucode: u8, fmc: Option<u8>) -> String {
    format!("{bl}-{tee}-{snp}-{ucode}{}", fmc.map(|f| format!("-{f}")).unwrap_or_default())
}

fn snp_cases() -> Vec<Case> {
    let cases = common::cases(&["snp"]);
    assert!(cases.len() >= 5, "the SNP cases of cases.json");
    cases
}

fn recorded() -> Recorded {
    let mut rec = Recorded::default();
    let mut blocks: HashMap<String, String> = HashMap::new();
    for c in snp_cases() {
        for e in c.endorsement_files() {
            let text = String::from_utf8_lossy(&e.bytes).to_string();
            let pems = pem_texts(&text);
            let ders: Vec<(Vec<u8>, Option<String>)> = if pems.is_empty() {
                vec![(der_from_pem_or_der(&e.bytes).unwrap(), None)]
            } else {
                pems.into_iter().map(|p| (certs_from_pem(p.as_bytes()).remove(0), Some(p))).collect()
            };
            for (der, pem) in ders {
                if let Some(v) = vek_cert(&der).unwrap() {
                    let Some(hw) = v.hwid else { continue };
                    let product = v.issuer_cn.trim_start_matches("SEV-").to_string();
                    let s = &v.spl;
                    let fmc = if product == "Turin" { s.fmc } else { None };
                    let key = tcb_key(s.bootloader.unwrap(), s.tee.unwrap(), s.snp.unwrap(), s.microcode.unwrap(), fmc);
                    rec.vceks.insert((product, hex::encode(hw), key), der);
                } else if let Some(p) = pem {
                    let cn = common_name(parse_cert(&der).unwrap().subject()).unwrap_or_default();
                    blocks.entry(cn).or_insert(p);
                }
            }
        }
    }
    for product in ["Milan", "Genoa", "Turin"] {
        let Some(ark) = blocks.get(&format!("ARK-{product}")) else { continue };
        for (key, cn) in [("vcek", format!("SEV-{product}")), ("vlek", format!("SEV-VLEK-{product}"))] {
            if let Some(ask) = blocks.get(&cn) {
                rec.chains.insert((key.into(), product.into()), format!("{ask}{ark}"));
            }
        }
    }
    rec
}

async fn answer(State(s): State<Arc<Server>>, uri: Uri) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    s.paths.lock().unwrap().push(uri.path().to_string());
    if s.mode == Mode::Always503 {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let segs: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let query: HashMap<String, String> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    match segs.as_slice() {
        [key @ ("vcek" | "vlek"), "v1", product, "cert_chain"] => match s.rec.chains.get(&(key.to_string(), product.to_string())) {
            Some(pem) => ([("content-type", "application/x-pem-file")], pem.clone()).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        // No AMD CRL is recorded in the vectors.
        ["vcek" | "vlek", "v1", _, "crl"] => StatusCode::NOT_FOUND.into_response(),
        ["vcek", "v1", "Milan", _] if s.mode == Mode::NoMilanVcek => StatusCode::NOT_FOUND.into_response(),
        ["vcek", "v1", product, hwid] => {
            let n = s.vcek_requests.fetch_add(1, Ordering::SeqCst);
            if s.mode == Mode::First429 && n == 0 {
                return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
            }
            tokio::time::sleep(s.vcek_delay).await;
            let want_len = if *product == "Turin" { 16 } else { 128 };
            let spl = |k: &str| query.get(k).and_then(|v| v.parse::<u8>().ok());
            let (Some(bl), Some(tee), Some(snp), Some(ucode)) = (spl("blSPL"), spl("teeSPL"), spl("snpSPL"), spl("ucodeSPL")) else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            let fmc = if *product == "Turin" {
                match spl("fmcSPL") {
                    Some(f) => Some(f),
                    None => return StatusCode::BAD_REQUEST.into_response(),
                }
            } else {
                None
            };
            if hwid.len() != want_len {
                return StatusCode::BAD_REQUEST.into_response();
            }
            if s.mode == Mode::AnyVcek {
                let der = s.rec.vceks.values().next().unwrap().clone();
                return ([("content-type", "application/octet-stream")], der).into_response();
            }
            let k = (product.to_string(), hwid.to_ascii_lowercase(), tcb_key(bl, tee, snp, ucode, fmc));
            match s.rec.vceks.get(&k) {
                Some(der) => ([("content-type", "application/octet-stream")], der.clone()).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn serve(mode: Mode, vcek_delay: Duration) -> (String, Arc<Server>) {
    let state = Arc::new(Server {
        rec: recorded(),
        mode,
        vcek_delay,
        vcek_requests: AtomicUsize::new(0),
        requests: AtomicUsize::new(0),
        paths: Default::default(),
    });
    let app = axum::Router::new().fallback(answer).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

fn endorser_with(url: &str, cache: Arc<dyn Cache>) -> Endorser {
    let sources = Sources { kds_url: url.into(), ..Sources::default() };
    Endorser::new(sources, cache).unwrap()
}

fn endorser(url: &str) -> Endorser {
    endorser_with(url, Arc::new(MemoryCache::default()))
}

fn vcek_of(c: &Case) -> Resource {
    needs(c.tee(), &c.evidence_bytes())
        .unwrap()
        .into_iter()
        .find(|r| matches!(r, Resource::Vcek { .. }))
        .unwrap_or_else(|| panic!("{}: a VCEK", c.id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_endorsements_give_the_same_verdict_and_claims_as_the_recorded_files() {
    let (url, server) = serve(Mode::Normal, Duration::ZERO).await;
    let mut products = Vec::new();
    for c in snp_cases() {
        let e = endorser(&url);
        let at = c.verify_at();
        let evidence = c.evidence_bytes();
        let fetched = e.endorsements_for(Tee::Snp, &evidence, at).await.unwrap_or_else(|err| panic!("{}: {err}", c.id));
        // VCEK and chain; the CRL is optional and none is recorded.
        let kinds: Vec<_> = fetched.iter().map(|f| std::mem::discriminant(&f.resource)).collect();
        assert_eq!(fetched.len(), 2, "{}: {kinds:?}", c.id);
        for f in &fetched {
            assert!(f.source.starts_with(&url), "{}: source {}", c.id, f.source);
            assert!(f.next_update.is_some_and(|n| n > at), "{}: {} valid at verify_at (notAfter)", c.id, f.resource.key());
        }
        if let Resource::Vcek { product, .. } = &fetched[0].resource {
            products.push(*product);
        } else {
            panic!("{}: VCEK first", c.id);
        }
        let endorsements: Vec<_> = fetched.iter().flat_map(|f| f.endorsements()).collect();
        let online = common::run(Tee::Snp, &evidence, &endorsements, &TrustAnchors::pinned(), at);
        let offline = common::run_case(&c, at);
        match (&online.result, &offline.result) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{}: claims", c.id),
            (Err(a), Err(b)) => assert_eq!((&a.check, &a.message), (&b.check, &b.message), "{}: refusal", c.id),
            (a, b) => panic!("{}: fetched endorsements give {a:?}, the recorded files {b:?}", c.id),
        }
        if c.expect == "accept" {
            assert!(online.verified(), "{}: {:?}", c.id, online.result);
            let claims = online.result.as_ref().unwrap();
            assert_eq!(claims.get("crl_checked"), Some(&serde_json::Value::Bool(false)), "{}: no CRL recorded", c.id);
        }
        // Asked again: the VCEK and chain come from the cache, and the CRL's
        // 404 is remembered: KDS is not asked at all.
        let before = server.requests.load(Ordering::SeqCst);
        let again = e.endorsements_for(Tee::Snp, &evidence, at).await.unwrap();
        assert_eq!(again, fetched, "{}", c.id);
        assert_eq!(server.requests.load(Ordering::SeqCst), before, "{}: nothing is asked again", c.id);
    }
    for p in [AmdProduct::Milan, AmdProduct::Genoa, AmdProduct::Turin] {
        assert!(products.contains(&p), "a {p:?} case");
    }
}

#[test]
fn what_a_report_needs_is_read_from_the_report() {
    for c in snp_cases() {
        let rs = needs(Tee::Snp, &c.evidence_bytes()).unwrap();
        let Resource::Vcek { product, hwid, tcb } = &rs[0] else { panic!("{}: {rs:?}", c.id) };
        assert_eq!(rs[1], Resource::AmdChain { product: *product, key: AmdKey::Vcek }, "{}", c.id);
        assert_eq!(rs[2], Resource::AmdCrl { product: *product, key: AmdKey::Vcek }, "{}", c.id);
        assert!(rs[2].optional());
        let turin = *product == AmdProduct::Turin;
        assert_eq!(hwid.len(), if turin { 16 } else { 128 }, "{}", c.id);
        assert_eq!(tcb.fmc.is_some(), turin, "{}: fmcSPL on Turin only", c.id);
    }
    // The same report as hex and as base64 needs the same.
    let c = &snp_cases()[1];
    let raw = c.evidence_bytes();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    assert_eq!(needs(Tee::Snp, hex::encode(&raw).as_bytes()).unwrap(), needs(Tee::Snp, &raw).unwrap());
    assert_eq!(needs(Tee::Snp, b64.as_bytes()).unwrap(), needs(Tee::Snp, &raw).unwrap());
}

#[test]
fn a_vlek_signed_report_needs_only_the_vlek_chain_and_a_masked_chip_id_is_refused() {
    let c = snp_cases().into_iter().find(|c| c.id == "snp-oak-genoa").unwrap();
    let mut raw = c.evidence_bytes();
    // SIGNING_KEY (bits 4:2 at 0x48) = 1: VLEK. The signature no longer
    // matters: needs() only reads what to fetch; the verifier judges.
    raw[0x48] = (raw[0x48] & !0b1_1100) | (1 << 2);
    let rs = needs(Tee::Snp, &raw).unwrap();
    assert_eq!(
        rs,
        vec![
            Resource::AmdChain { product: AmdProduct::Genoa, key: AmdKey::Vlek },
            Resource::AmdCrl { product: AmdProduct::Genoa, key: AmdKey::Vlek }
        ]
    );
    let mut masked = c.evidence_bytes();
    masked[0x48] |= 0b10; // MASK_CHIP_KEY
    masked[0x1A0..0x1E0].fill(0);
    let err = needs(Tee::Snp, &masked).unwrap_err();
    assert!(matches!(&err, EndorseError::Evidence(m) if m.contains("MASK_CHIP_ID") && m.contains("--endorsements")), "{err:?}");
    let err = needs(Tee::Snp, &raw[..100]).unwrap_err();
    assert!(matches!(err, EndorseError::Evidence(_)), "{err:?}");
}

/// A cache that is slow to write (a busy database): callers arriving while
/// a fetched VCEK is being kept must not ask KDS again.
#[derive(Default)]
struct SlowCache(MemoryCache);

#[async_trait::async_trait]
impl Cache for SlowCache {
    async fn get(&self, key: &str) -> Option<cachet_endorse::Fetched> {
        self.0.get(key).await
    }
    async fn put(&self, key: &str, entry: &cachet_endorse::Fetched) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.0.put(key, entry).await
    }
    async fn list(&self) -> Vec<cachet_endorse::Fetched> {
        self.0.list().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_verifications_of_a_new_chip_make_one_vcek_request() {
    let (url, server) = serve(Mode::Normal, Duration::from_millis(300)).await;
    let c = snp_cases().into_iter().find(|c| c.id == "snp-oak-turin").unwrap();
    let e = Arc::new(endorser_with(&url, Arc::new(SlowCache::default())));
    let evidence = Arc::new(c.evidence_bytes());
    let at = c.verify_at();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let (e, evidence) = (e.clone(), evidence.clone());
            // Spread over 0.8 s around the 0.3 s answer and 0.3 s write: some wait
            // on the request in flight, some arrive as it is being kept.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 8)).await;
                e.endorsements_for(Tee::Snp, &evidence, at).await
            })
        })
        .collect();
    for t in tasks {
        let fetched = t.await.unwrap().unwrap();
        assert_eq!(fetched.len(), 2);
    }
    assert_eq!(server.vcek_requests.load(Ordering::SeqCst), 1, "one VCEK request for 100 verifications");
    // And none more once it is cached.
    e.endorsements_for(Tee::Snp, &evidence, at).await.unwrap();
    assert_eq!(server.vcek_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_waited_out() {
    let (url, server) = serve(Mode::First429, Duration::ZERO).await;
    let c = snp_cases().into_iter().find(|c| c.id == "snp-virtee-milan").unwrap();
    let vcek = vcek_of(&c);
    let started = Instant::now();
    let f = endorser(&url).get(&vcek, c.verify_at()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}, Retry-After said 1 s", started.elapsed());
    assert_eq!(server.vcek_requests.load(Ordering::SeqCst), 2);
    let recorded = std::fs::read(common::vectors_dir().join("sev-snp/virtee-sev/vcek_milan.der")).unwrap();
    assert_eq!(f.parts[0].bytes, recorded, "the recorded DER VCEK, byte for byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kds_that_always_fails_is_a_source_error_naming_the_url() {
    let (url, server) = serve(Mode::Always503, Duration::ZERO).await;
    let c = snp_cases().into_iter().find(|c| c.id == "snp-oak-genoa").unwrap();
    let err = endorser(&url).endorsements_for(Tee::Snp, &c.evidence_bytes(), c.verify_at()).await.unwrap_err();
    match &err {
        EndorseError::Source { origin, message } => {
            assert!(origin.starts_with(&format!("{url}/vcek/v1/Genoa/")), "{origin}");
            assert!(message.contains("503"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("/vcek/v1/Genoa/"), "{err}");
    assert_eq!(server.vcek_requests.load(Ordering::SeqCst), 0, "503 before routing");
    let asked = server.requests.load(Ordering::SeqCst);
    assert!(asked > 1, "retried");
    // The next attestations of the minute are answered at once with the
    // same error: the failing source is not asked (and waited on) again.
    let e = endorser(&url);
    let first = e.endorsements_for(Tee::Snp, &c.evidence_bytes(), c.verify_at()).await.unwrap_err();
    let asked = server.requests.load(Ordering::SeqCst);
    for _ in 0..3 {
        let again = e.endorsements_for(Tee::Snp, &c.evidence_bytes(), c.verify_at()).await.unwrap_err();
        assert_eq!(again.to_string(), first.to_string());
    }
    assert_eq!(server.requests.load(Ordering::SeqCst), asked, "remembered for {:?}", cachet_endorse::FAILURE_TTL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_vcek_is_served_when_kds_is_gone() {
    let (url, server) = serve(Mode::Normal, Duration::ZERO).await;
    let c = snp_cases().into_iter().find(|c| c.id == "snp-gosevguest-milan").unwrap();
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::default());
    let at = c.verify_at();
    let first = endorser_with(&url, cache.clone()).endorsements_for(Tee::Snp, &c.evidence_bytes(), at).await.unwrap();
    assert_eq!(server.vcek_requests.load(Ordering::SeqCst), 1);
    // A KDS that is gone: a port nothing listens on.
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let e = endorser_with(&gone, cache.clone());
    let again = e.endorsements_for(Tee::Snp, &c.evidence_bytes(), at).await.unwrap();
    assert_eq!(again, first);
    let online = common::run(
        Tee::Snp,
        &c.evidence_bytes(),
        &again.iter().flat_map(|f| f.endorsements()).collect::<Vec<_>>(),
        &TrustAnchors::pinned(),
        at,
    );
    assert!(online.verified(), "{:?}", online.result);
    // Past the VCEK's notAfter the cached copy is stale, and the refusal says since when.
    let vcek = vcek_of(&c);
    let expiry = first[0].next_update.unwrap();
    let err = e.get(&vcek, expiry + 1).await.unwrap_err();
    assert!(matches!(&err, EndorseError::Stale { what, .. } if *what == vcek.key()), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vcek_for_another_chip_or_tcb_is_not_found() {
    let (url, server) = serve(Mode::Normal, Duration::ZERO).await;
    let c = snp_cases().into_iter().find(|c| c.id == "snp-virtee-milan").unwrap();
    let Resource::Vcek { product, hwid, mut tcb } = vcek_of(&c) else { unreachable!() };
    tcb.snp = tcb.snp.wrapping_add(1);
    let e = endorser(&url);
    let unknown = Resource::Vcek { product, hwid: hwid.clone(), tcb };
    let err = e.get(&unknown, c.verify_at()).await.unwrap_err();
    assert!(matches!(&err, EndorseError::NotFound { origin, .. } if origin.contains(&format!("/vcek/v1/Milan/{hwid}?"))), "{err:?}");
    // The 404 is remembered: asked again, the answer is the same and KDS is not asked.
    let asked = server.vcek_requests.load(Ordering::SeqCst);
    assert_eq!(e.get(&unknown, c.verify_at()).await.unwrap_err(), err);
    assert_eq!(server.vcek_requests.load(Ordering::SeqCst), asked, "a remembered 404 is not asked for again");
    // A malformed hwid is not sent at all.
    let err = endorser(&url).get(&Resource::Vcek { product, hwid: "zz".into(), tcb }, c.verify_at()).await.unwrap_err();
    assert!(matches!(err, EndorseError::Evidence(_)), "{err:?}");
}

#[test]
fn the_product_comes_from_the_report_and_a_version_2_report_takes_the_one_given() {
    let turin = snp_cases().into_iter().find(|c| c.id == "snp-oak-turin").unwrap().evidence_bytes();
    let err = cachet_endorse::kds::needs_for(&turin, Some(AmdProduct::Milan)).unwrap_err();
    assert!(matches!(&err, EndorseError::Evidence(m) if m.contains("Turin")), "{err:?}");
    // go-sev-guest's v2 report carries no CPUID: Milan unless the operator says otherwise.
    let v2 = snp_cases().into_iter().find(|c| c.id == "snp-gosevguest-milan").unwrap().evidence_bytes();
    assert_eq!(v2[0], 2, "a version 2 report");
    assert!(matches!(needs(Tee::Snp, &v2).unwrap()[0], Resource::Vcek { product: AmdProduct::Milan, .. }));
    let given = cachet_endorse::kds::needs_for(&v2, Some(AmdProduct::Genoa)).unwrap();
    assert!(matches!(given[0], Resource::Vcek { product: AmdProduct::Genoa, .. }), "{given:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vcek_for_another_chip_or_tcb_served_by_a_mirror_is_refused_and_not_cached() {
    let (url, _) = serve(Mode::AnyVcek, Duration::ZERO).await;
    let (good, _) = serve(Mode::Normal, Duration::ZERO).await;
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::default());
    for c in snp_cases() {
        let vcek = vcek_of(&c);
        let e = endorser_with(&url, cache.clone());
        match e.get(&vcek, c.verify_at()).await {
            // The one recorded VCEK the mirror serves may be this chip's own.
            Ok(f) => assert_eq!(endorser(&good).get(&vcek, c.verify_at()).await.unwrap().parts, f.parts, "{}", c.id),
            Err(err) => {
                assert!(matches!(&err, EndorseError::Source { message, .. } if message.contains("another")), "{}: {err:?}", c.id);
                assert!(cache.get(&vcek.key()).await.is_none(), "{}: not cached", c.id);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_report_whose_vcek_kds_does_not_know_under_milan_is_asked_for_under_genoa() {
    let (url, server) = serve(Mode::NoMilanVcek, Duration::ZERO).await;
    let v2 = snp_cases().into_iter().find(|c| c.id == "snp-gosevguest-milan").unwrap().evidence_bytes();
    assert!(cachet_endorse::kds::product_assumed(&v2), "a version 2 report names no product");
    let e = endorser(&url);
    let (_, missing) = e.available(Tee::Snp, &v2, 1_700_000_000).await.unwrap();
    let paths = server.paths.lock().unwrap().clone();
    let milan = paths.iter().position(|p| p.starts_with("/vcek/v1/Milan/") && !p.ends_with("cert_chain") && !p.ends_with("crl"));
    let genoa = paths.iter().position(|p| p.starts_with("/vcek/v1/Genoa/") && !p.ends_with("cert_chain") && !p.ends_with("crl"));
    assert!(matches!((milan, genoa), (Some(m), Some(g)) if m < g), "Milan first, then Genoa: {paths:?}");
    // This chip is Milan in truth, so neither knows it: both misses are named.
    let said: Vec<String> = missing.iter().map(ToString::to_string).collect();
    assert!(said.iter().any(|m| m.contains("/Milan/")) && said.iter().any(|m| m.contains("/Genoa/")), "{said:?}");

    // A report that names its product (version 3+) is asked for under it alone.
    let (url, server) = serve(Mode::NoMilanVcek, Duration::ZERO).await;
    let v3 = snp_cases().into_iter().find(|c| c.id == "snp-oak-milan-v3").unwrap().evidence_bytes();
    assert!(!cachet_endorse::kds::product_assumed(&v3));
    let (_, missing) = endorser(&url).available(Tee::Snp, &v3, 1_700_000_000).await.unwrap();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(server.paths.lock().unwrap().iter().all(|p| !p.contains("/Genoa/")), "{:?}", server.paths.lock().unwrap());

    // Served honestly, the Milan VCEK is found and Genoa is never asked.
    let (url, server) = serve(Mode::Normal, Duration::ZERO).await;
    let (got, missing) = endorser(&url).available(Tee::Snp, &v2, 1_700_000_000).await.unwrap();
    assert!(missing.is_empty(), "{missing:?}");
    assert!(got.iter().any(|f| matches!(f.resource, Resource::Vcek { product: AmdProduct::Milan, .. })));
    assert!(server.paths.lock().unwrap().iter().all(|p| !p.contains("/Genoa/")));
}
