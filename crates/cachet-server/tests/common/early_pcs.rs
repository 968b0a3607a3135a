//! A loopback Intel PCS for the TCB recovery forecast's tests: it serves
//! Intel's real recorded TCB Infos for FMSPC 90C06F000000 —
//! tcbEvaluationDataNumber 17 on the standard channel and 18 on
//! `update=early`, as PCS does in a recovery's early window — byte for byte
//! with their issuer chain header (nothing re-signed). Shared by
//! `#[path]`; the including test declares `mod recorded`.
#![allow(dead_code)]

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use cachet_endorse::{Fetched, Resource};

/// The FMSPC it knows.
pub const FMSPC: &str = "90c06f000000";

/// Real quotes of that FMSPC: UpToDate under 17 and OutOfDate under 18; and one that stays UpToDate.
pub const DEMOTED_QUOTE: &str = "tdx/automata/alibaba_quote_5.dat";
pub const STEADY_QUOTE: &str = "tdx/go-tdx-guest/quote_v5_sample.dat";

fn tcb_info(rel: &str) -> Fetched {
    crate::recorded::intel_bundle(rel).into_iter().find(|f| matches!(f.resource, Resource::TcbInfo { .. })).unwrap()
}

#[derive(Clone)]
struct Pcs {
    standard: Fetched,
    early: Fetched,
}

async fn tcb(State(pcs): State<Pcs>, RawQuery(q): RawQuery) -> Response {
    let q = q.unwrap_or_default().to_ascii_lowercase();
    if !q.contains(&format!("fmspc={FMSPC}")) {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    let f = if q.contains("update=early") { &pcs.early } else { &pcs.standard };
    let chain = crate::recorded::encode_uri_component(&String::from_utf8_lossy(&f.parts[1].bytes));
    ([("TCB-Info-Issuer-Chain", chain), ("Content-Type", "application/json".into())], f.parts[0].bytes.clone()).into_response()
}

/// Start it; its base URL.
pub async fn serve() -> String {
    let pcs = Pcs {
        standard: tcb_info("tdx/automata/collateral_v5_2502.derived.json"),
        early: tcb_info("tdx/dcap-qvl/tdx_quote_outdated_collateral.json"),
    };
    let app = axum::Router::new().route("/tdx/certification/v4/tcb", axum::routing::get(tcb)).with_state(pcs);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Record in the audit log of the store in `data_dir` that the platform of
/// the real quote `rel` attested (TDX), as the attest path records it: its
/// quote has no settled collateral to attest with here.
pub async fn record_seen(data_dir: &std::path::Path, rel: &str) {
    use cachet_store::Store;
    let store = cachet_store::SqliteStore::open_dir(data_dir).await.unwrap();
    let quote = std::fs::read(crate::recorded::vectors().join(rel)).unwrap();
    let platform = cachet_endorse::forecast::platform_hint(cachet_verify::Tee::Tdx, &quote).unwrap();
    let e = cachet_store::AuditEntry {
        ts: cachet_server::now(),
        actor: "test".into(),
        action: "attest".into(),
        tee: Some("tdx".into()),
        outcome: "ok".into(),
        detail: serde_json::json!({"status": "affirming", "platform": platform}),
        ..Default::default()
    };
    store.append_audit(&e).await.unwrap();
    store.close().await;
}
