//! `GET /v1/admin/endorsements/forecast` (TCB recovery forecast) on a real
//! server over loopback HTTP, with a loopback PCS that serves Intel's real
//! recorded TCB Infos for FMSPC 90C06F000000: tcbEvaluationDataNumber 17 on
//! the standard channel and 18 on `update=early` (as PCS does in a TCB
//! recovery's early window). Nothing is re-signed or edited.
//!
//! * A real attestation (case tdx-dcapqvl-v4) records the platform's TCB in
//!   its audit detail (`platform`: FMSPC, PCK SGX components, PCESVN,
//!   TEE_TCB_SVN), taken from the verified quote.
//! * Two real 90C06F quotes' platforms are in the audit log as the attest
//!   path records them (`forecast::platform_hint` of the real quotes; those
//!   quotes are unsettled cases for verification, so they are not attested
//!   here): automata/alibaba_quote_5.dat is UpToDate under 17 and OutOfDate
//!   under 18 and is listed with its short components; go-tdx-guest's
//!   quote_v5_sample.dat stays UpToDate and is not listed.
//! * The route gives the JSON the CLI's function gives
//!   (`endorse_admin::forecast_from_store` over the same store), tenant keys
//!   get 403 `operator_only`, and `days` out of range is 400.

mod common;

#[path = "common/early_pcs.rs"]
mod early_pcs;
#[path = "../../cachet-endorse/tests/common/recorded.rs"]
mod recorded;

use std::sync::Arc;

use cachet_endorse::forecast::Newest;
use cachet_endorse::{Endorser, Sources};
use cachet_server::auth::Role;
use cachet_store::{SqliteStore, Store};
use common::*;
use serde_json::{json, Value};

async fn get(srv: &TestServer, path: &str, key: &str) -> (u16, Value) {
    status_json(srv.client.get(srv.at(path)).bearer_auth(key).send().await.unwrap()).await
}

fn without_time(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("generated_at");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forecast_lists_the_platforms_the_early_tcb_info_demotes() {
    let pcs = early_pcs::serve().await;
    let srv = start("forecast", |a| {
        a.allow_verification_time = true;
        a.offline = false;
        a.pcs_url = Some(pcs.clone());
    })
    .await;
    let operator = srv.api_key(Role::Reader).await;

    // A real attestation records the verified platform.
    let c = cases().into_iter().find(|c| c.id == "tdx-dcapqvl-v4").unwrap();
    let endorsements: Vec<Value> = c.endorsement_files().iter().map(|e| json!({"name": e.name, "data": b64(&e.bytes)})).collect();
    let body = json!({"tee": "tdx", "evidence": b64(&c.evidence_bytes()), "endorsements": endorsements, "at": c.verify_at});
    let (s, v) = srv.post("/v1/attest", &body).await;
    assert_eq!(s, 200, "{v}");
    let (_, log) = get(&srv, "/v1/admin/audit?limit=1000", &operator).await;
    let attest = log.as_array().unwrap().iter().rev().find(|r| r["action"] == "attest" && r["outcome"] == "ok").unwrap();
    let detail: Value = serde_json::from_str(attest["detail"].as_str().unwrap()).unwrap();
    let p = &detail["platform"];
    assert_eq!(
        (p["kind"].as_str(), p["tee"].as_str(), p["fmspc"].as_str()),
        (Some("intel"), Some("tdx"), Some("b0c06f000000")),
        "{detail}"
    );
    assert_eq!(p["pce_svn"], 11);
    assert_eq!(p["sgx_tcb_components"], json!([3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(p["tee_tcb_svn"], "06010300000000000000000000000000");

    // Two more platforms in the audit log, as the attest path records them.
    let store = SqliteStore::open_dir(&srv.dir).await.unwrap();
    for rel in [early_pcs::DEMOTED_QUOTE, early_pcs::STEADY_QUOTE] {
        early_pcs::record_seen(&srv.dir, rel).await;
    }

    let (s, report) = get(&srv, "/v1/admin/endorsements/forecast?days=7", &operator).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["platforms_seen"], 3, "{report:#}");
    assert_eq!(report["unaffected"], 1, "quote_v5_sample stays UpToDate: {report:#}");
    let affected = report["affected"].as_array().unwrap();
    assert_eq!(affected.len(), 1, "{report:#}");
    let a = &affected[0];
    assert_eq!(a["tcb"]["fmspc"], early_pcs::FMSPC);
    assert_eq!((a["current_status"].as_str(), a["next_status"].as_str()), (Some("UpToDate"), Some("OutOfDate")));
    assert_eq!(a["from"]["tcb_evaluation_data_number"], 18);
    assert_eq!(a["current_tcb_evaluation_data_number"], 17);
    let names: Vec<&str> = a["shortfalls"].as_array().unwrap().iter().map(|s| s["component"].as_str().unwrap()).collect();
    assert!(names.iter().any(|n| n.starts_with("TDX TCB component 3")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("TDX module TDX_01")), "{names:?}");
    // The attested B0C06F platform: this PCS has no TCB Info for it: not assessed, saying why.
    let na = report["not_assessed"].as_array().unwrap();
    assert!(na.len() == 1 && na[0]["tcb"]["fmspc"] == "b0c06f000000", "{report:#}");

    // The CLI's function over the same store gives the same JSON.
    let endorser = Endorser::new(
        Sources { pcs_url: pcs.clone(), ..Sources::default() },
        Arc::new(cachet_server::endorse::StoreCache(Arc::new(SqliteStore::open_dir(&srv.dir).await.unwrap()) as Arc<dyn Store>)),
    )
    .unwrap();
    let cli =
        cachet_server::endorse_admin::forecast_from_store(&store, &endorser, 7, Newest::Early, &[], cachet_server::now()).await.unwrap();
    assert_eq!(without_time(cli), without_time(report.clone()));

    // Tenant keys are refused; days out of range is a 400.
    let tenant = create_tenant_api_key(&srv.dir, Some("acme"), Role::Admin).await;
    let (s, v) = get(&srv, "/v1/admin/endorsements/forecast", &tenant).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("operator_only")), "{v}");
    let (s, v) = get(&srv, "/v1/admin/endorsements/forecast?days=0", &operator).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_request")), "{v}");
    let (s, _) = status_json(srv.client.get(srv.at("/v1/admin/endorsements/forecast")).send().await.unwrap()).await;
    assert_eq!(s, 401);
}
