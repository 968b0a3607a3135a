//! TCB recovery forecast on real data: real TDX quotes from real hardware
//! (FMSPC 90C06F000000) and Intel's real TCB Infos for that FMSPC with
//! tcbEvaluationDataNumber 17 (issued 2025-02-12) and 18 (issued 2026-02-18),
//! exactly as recorded (nothing re-signed or edited).
//!
//! * `automata/alibaba_quote_5.dat`: PCK SGX components 02 02 02 02 03 01 00
//!   05, PCESVN 13, TEE_TCB_SVN 05 01 02 (TDX module 1, ISVSVN 5): UpToDate
//!   under 17, OutOfDate under 18, which raises SGX components 1, 2 and 5,
//!   TDX component 3 and the TDX_01 module ISVSVN to 6.
//! * `go-tdx-guest/quote_v5_sample.dat`: components 04 04 02 02 04 01 00 05,
//!   TEE_TCB_SVN 0b 01 04: UpToDate under both: not listed.
//!
//! The `update=early` channel is served by a loopback PCS answering the
//! recorded 17 on the standard channel and the recorded 18 on the early one
//! (what PCS does during a TCB recovery's early window).

#[path = "../../cachet-verify/tests/common/mod.rs"]
mod common;
#[path = "common/recorded.rs"]
mod recorded;

use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cachet_endorse::forecast::{self, Newest, Platform, Seen, TcbInfoDoc, TcbInfoPair};
use cachet_endorse::needs::IntelTee;
use cachet_endorse::{Endorser, Fetched, MemoryCache, Resource, Sources};
use cachet_verify::Tee;
use serde_json::Value;

const OLDER: &str = "tdx/automata/collateral_v5_2502.derived.json"; // 90C06F000000, number 17
const NEWER: &str = "tdx/dcap-qvl/tdx_quote_outdated_collateral.json"; // 90C06F000000, number 18
const DEMOTED: &str = "tdx/automata/alibaba_quote_5.dat";
const STAYS: &str = "tdx/go-tdx-guest/quote_v5_sample.dat";
const FMSPC: &str = "90c06f000000";

fn tcb_info(rel: &str) -> Fetched {
    recorded::intel_bundle(rel).into_iter().find(|f| matches!(f.resource, Resource::TcbInfo { .. })).unwrap()
}

fn platform(rel: &str) -> Platform {
    let quote = std::fs::read(recorded::vectors().join(rel)).unwrap();
    forecast::platform_hint(Tee::Tdx, &quote).expect("a TDX quote with its PCK chain")
}

fn seen(rel: &str, ts: i64) -> Seen {
    Seen { platform: platform(rel), last_seen: ts, attestations: 1 }
}

#[test]
fn the_real_quotes_say_what_the_header_says() {
    match platform(DEMOTED) {
        Platform::Intel { tee, fmspc, pce_svn, sgx_tcb_components, tee_tcb_svn, .. } => {
            assert_eq!((tee, fmspc.as_str(), pce_svn), (IntelTee::Tdx, FMSPC, 13));
            assert_eq!(sgx_tcb_components[..8], [2, 2, 2, 2, 3, 1, 0, 5]);
            assert_eq!(tee_tcb_svn.as_deref(), Some("05010200000000000000000000000000"));
        }
        other => panic!("{other:?}"),
    }
    assert_ne!(platform(DEMOTED).identity(), platform(STAYS).identity(), "two platforms (PPIDs)");
}

#[test]
fn a_platform_demoted_by_the_newer_tcb_info_is_listed_with_what_falls_short() {
    let older = TcbInfoDoc::from_fetched(&tcb_info(OLDER)).unwrap();
    let newer = TcbInfoDoc::from_fetched(&tcb_info(NEWER)).unwrap();
    assert_eq!((older.info.tcb_evaluation_data_number, newer.info.tcb_evaluation_data_number), (Some(17), Some(18)));
    let pair = TcbInfoPair { tee: IntelTee::Tdx, fmspc: FMSPC.into(), current: Ok(older), next: Ok(newer) };
    let now = common::ts("2026-03-01T00:00:00Z");
    let report = forecast::forecast(&[seen(DEMOTED, now - 3600), seen(STAYS, now - 60)], &[pair], &[], 0, Some(7), now);

    assert_eq!(report["platforms_seen"], 2);
    assert_eq!(report["unaffected"], 1, "the platform that stays UpToDate is not listed: {report:#}");
    let affected = report["affected"].as_array().unwrap();
    assert_eq!(affected.len(), 1, "{report:#}");
    let a = &affected[0];
    assert_eq!(a["platform"], platform(DEMOTED).identity());
    assert_eq!((a["current_status"].as_str(), a["next_status"].as_str()), (Some("UpToDate"), Some("OutOfDate")));
    assert_eq!(a["out_of_date_or_worse"], true);
    assert_eq!(a["current_tcb_evaluation_data_number"], 17);
    let short: Vec<(String, u64, u64)> = a["shortfalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["component"].as_str().unwrap().to_string(), s["required"].as_u64().unwrap(), s["platform"].as_u64().unwrap()))
        .collect();
    let want = [
        ("SGX TCB component 1 (BIOS: Early Microcode Update)", 3, 2),
        ("SGX TCB component 2 (OS/VMM: SGX Late Microcode Update)", 3, 2),
        ("SGX TCB component 5", 4, 3),
        ("TDX TCB component 3 (OS/VMM: TDX Late Microcode Update)", 3, 2),
        ("TDX module TDX_01 ISVSVN (TEE_TCB_SVN[0])", 6, 5),
    ];
    for (name, required, has) in want {
        assert!(
            short.iter().any(|(n, r, p)| n.starts_with(name) && *r == required && *p == has),
            "{name} {required} > {has} missing from {short:?}"
        );
    }
    assert_eq!(short.len(), want.len(), "{short:?}");
    let from = &a["from"];
    assert_eq!(from["tcb_evaluation_data_number"], 18);
    assert_eq!(from["issue_date"], "2026-02-18T10:58:51Z");
    assert_eq!(from["up_to_date_tcb_date"], "2024-11-13T00:00:00Z");
    assert_eq!(from["standard_expected_about"], "2024-12-25T00:00:00Z", "tcbDate + 6 weeks, labelled an estimate");
    assert_eq!(from["in_force"], false);
    assert!(report["notes"][0].as_str().unwrap().contains("update=early"));
    // The table names the same.
    let table = forecast::table(&report);
    assert!(table.contains("UpToDate\tOutOfDate") && table.contains("tcbEvaluationDataNumber 18"), "{table}");
}

#[test]
fn the_status_is_the_verifiers() {
    // The verifier's own claims on a settled TDX case equal the forecast's
    // assessment of that platform under the same TCB Info (same rules, one place).
    let c = common::cases(&["tdx"]).into_iter().find(|c| c.id == "tdx-dcapqvl-v4").unwrap();
    let v = common::run_case(&c, c.verify_at());
    let claims = v.result.expect("verifies");
    let p = forecast::platform_seen(Tee::Tdx, forecast::platform_hint(Tee::Tdx, &c.evidence_bytes()), &claims).expect("same platform");
    let Platform::Intel { sgx_tcb_components, pce_svn, tee_tcb_svn, .. } = &p else { panic!() };
    let files: Vec<(String, Vec<u8>)> =
        c.endorsements.iter().map(|e| (e.clone(), std::fs::read(recorded::vectors().join(e)).unwrap())).collect();
    let docs = TcbInfoDoc::from_files(&files).unwrap();
    let tee = hex::decode(tee_tcb_svn.as_ref().unwrap()).unwrap();
    let a = forecast::assess(&docs[0].info, sgx_tcb_components, *pce_svn, Some(&tee.try_into().unwrap()));
    assert_eq!(a.status.map(|s| s.as_str()), claims["platform_tcb_status"].as_str());
    // A hint that is not the verified platform is not recorded.
    let mut other = claims.clone();
    other["pck_pce_svn"] = Value::from(1);
    assert!(forecast::platform_seen(Tee::Tdx, forecast::platform_hint(Tee::Tdx, &c.evidence_bytes()), &other).is_none());
}

#[test]
fn a_tcb_info_file_needs_its_issuer_chain() {
    let raw = std::fs::read(recorded::vectors().join("tdx/go-tdx-guest/sample_tcbinfo_response_v5")).unwrap();
    let chain = std::fs::read(recorded::vectors().join("tdx/go-tdx-guest/derived/tcb_info_issuer_chain.pem")).unwrap();
    let err = TcbInfoDoc::from_files(&[("tcb.json".into(), raw.clone())]).unwrap_err();
    assert!(err.contains("Issuer-Chain"), "{err}");
    let docs = TcbInfoDoc::from_files(&[("tcb.json".into(), raw.clone()), ("chain.pem".into(), chain)]).unwrap();
    assert_eq!((docs.len(), docs[0].info.tcb_evaluation_data_number), (1, Some(18)));
    // A changed byte in the signed text: refused.
    let text = String::from_utf8(raw).unwrap().replacen("\"UpToDate\"", "\"OutOfDate\"", 1);
    let chain = std::fs::read(recorded::vectors().join("tdx/go-tdx-guest/derived/tcb_info_issuer_chain.pem")).unwrap();
    assert!(TcbInfoDoc::from_files(&[("tcb.json".into(), text.into_bytes()), ("chain.pem".into(), chain)]).is_err());
}

#[test]
fn audit_details_give_one_row_per_platform_with_its_latest_tcb() {
    let p = serde_json::to_value(platform(DEMOTED)).unwrap();
    let q = serde_json::to_value(platform(STAYS)).unwrap();
    let bad = serde_json::json!({"kind": "intel", "tee": "tdx", "fmspc": "zz", "pce_id": "0000", "sgx_tcb_components": vec![0u8; 16], "pce_svn": 1});
    let (rows, left) = forecast::collect_seen([
        (10, serde_json::json!({"platform": p})),
        (20, serde_json::json!({"platform": p})),
        (15, serde_json::json!({"platform": q})),
        (16, serde_json::json!({"platform": bad})),
        (17, serde_json::json!({"status": "affirming"})),
    ]);
    assert_eq!((rows.len(), left), (2, 0));
    let r = rows.iter().find(|r| r.platform == platform(DEMOTED)).unwrap();
    assert_eq!((r.attestations, r.last_seen), (2, 20));
}

/// A PCS on loopback: the standard channel serves `standard`, `update=early` serves `early`.
#[derive(Clone)]
struct Pcs {
    standard: Fetched,
    early: Fetched,
    asked: Arc<Mutex<Vec<String>>>,
}

async fn tcb(State(pcs): State<Pcs>, RawQuery(q): RawQuery) -> Response {
    let q = q.unwrap_or_default();
    pcs.asked.lock().unwrap().push(q.clone());
    let f = if q.contains("update=early") { &pcs.early } else { &pcs.standard };
    if !q.to_ascii_lowercase().contains(&format!("fmspc={FMSPC}")) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let chain = String::from_utf8(f.parts[1].bytes.clone()).unwrap();
    let enc: String = chain
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    ([("TCB-Info-Issuer-Chain", enc), ("Content-Type", "application/json".into())], f.parts[0].bytes.clone()).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_early_tcb_info_is_fetched_with_update_early_and_never_cached() {
    let pcs = Pcs { standard: tcb_info(OLDER), early: tcb_info(NEWER), asked: Default::default() };
    let app = axum::Router::new().route("/tdx/certification/v4/tcb", axum::routing::get(tcb)).with_state(pcs.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let sources = Sources { pcs_url: url.clone(), ..Sources::default() };
    let endorser = Endorser::new(sources, Arc::new(MemoryCache::default())).unwrap();
    let now = common::ts("2025-03-01T00:00:00Z");
    let rows = [seen(DEMOTED, now), seen(STAYS, now)];
    let pairs = forecast::tcb_infos(&rows, &endorser, Newest::Early, now).await;
    assert_eq!(pairs.len(), 1, "one FMSPC");
    let (cur, next) = (pairs[0].current.as_ref().unwrap(), pairs[0].next.as_ref().unwrap());
    assert_eq!((cur.info.tcb_evaluation_data_number, next.info.tcb_evaluation_data_number), (Some(17), Some(18)));
    assert!(next.source.ends_with(&format!("/tdx/certification/v4/tcb?fmspc={FMSPC}&update=early")), "{}", next.source);
    let asked = pcs.asked.lock().unwrap().clone();
    assert!(asked.contains(&format!("fmspc={FMSPC}")) && asked.contains(&format!("fmspc={FMSPC}&update=early")), "{asked:?}");
    // Only the standard one is kept under the TCB Info's key.
    let key = Resource::TcbInfo { tee: IntelTee::Tdx, fmspc: FMSPC.into() }.key();
    let kept = endorser.cache().get(&key).await.unwrap();
    assert_eq!(TcbInfoDoc::from_fetched(&kept).unwrap().info.tcb_evaluation_data_number, Some(17));

    let report = forecast::forecast(&rows, &pairs, &[], 0, None, now);
    assert_eq!(report["affected"].as_array().unwrap().len(), 1, "{report:#}");
    assert_eq!(report["tcb_infos"][0]["next"]["tcb_evaluation_data_number"], 18);

    // Offline: nothing fetched, every platform "not assessed", saying why.
    let offline = Endorser::new(Sources { pcs_url: url, offline: true, ..Sources::default() }, Arc::new(MemoryCache::default())).unwrap();
    let pairs = forecast::tcb_infos(&rows, &offline, Newest::Early, now).await;
    let report = forecast::forecast(&rows, &pairs, &[], 0, None, now);
    assert_eq!(report["not_assessed"].as_array().unwrap().len(), 2, "{report:#}");
}
