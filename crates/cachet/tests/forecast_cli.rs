//! `cachet endorsements forecast` against a real server's store, with a
//! loopback PCS serving Intel's real recorded TCB Infos for FMSPC
//! 90C06F000000 (tcbEvaluationDataNumber 17 on the standard channel, 18 on
//! `update=early`; nothing re-signed): the CLI prints the JSON that
//! `GET /v1/admin/endorsements/forecast` answers; `--tcb-info` (air-gapped)
//! and evidence files give the same affected platform; the text table names it.
//! The audit log holds the platforms of two real quotes as the attest path
//! records them (automata/alibaba_quote_5.dat: demoted by 18;
//! go-tdx-guest/quote_v5_sample.dat: stays UpToDate).

#[path = "../../cachet-endorse/tests/common/recorded.rs"]
mod recorded;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use cachet_endorse::{Fetched, Resource};
use cachet_server::auth::{new_tenant_api_key, Role};
use cachet_store::{AuditEntry, SqliteStore, Store};
use serde_json::{json, Value};

const OLDER: &str = "tdx/automata/collateral_v5_2502.derived.json";
const NEWER: &str = "tdx/dcap-qvl/tdx_quote_outdated_collateral.json";
const DEMOTED: &str = "tdx/automata/alibaba_quote_5.dat";
const STAYS: &str = "tdx/go-tdx-guest/quote_v5_sample.dat";

fn tcb_info(rel: &str) -> Fetched {
    recorded::intel_bundle(rel).into_iter().find(|f| matches!(f.resource, Resource::TcbInfo { .. })).unwrap()
}

/// A PCS on loopback (plain std HTTP/1.1, one request per connection).
fn fake_pcs() -> String {
    let (standard, early) = (tcb_info(OLDER), tcb_info(NEWER));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req).lines().next().unwrap_or_default().to_ascii_lowercase();
            let f = if line.contains("update=early") { &early } else { &standard };
            let reply = if line.starts_with("get /tdx/certification/v4/tcb?fmspc=90c06f000000") {
                let chain: String =
                    f.parts[1]
                        .bytes
                        .iter()
                        .map(|&b| {
                            if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
                                (b as char).to_string()
                            } else {
                                format!("%{b:02X}")
                            }
                        })
                        .collect();
                let body = &f.parts[0].bytes;
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTCB-Info-Issuer-Chain: {chain}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(body);
                r
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            };
            let _ = s.write_all(&reply);
        }
    });
    url
}

fn cachet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cachet")).args(args).output().unwrap()
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn without_time(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("generated_at");
    v
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn affected_fmspcs(v: &Value) -> Vec<(String, String, String)> {
    v["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["platform"].as_str().unwrap().into(),
                a["current_status"].as_str().unwrap().into(),
                a["next_status"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[test]
fn the_cli_prints_the_forecast_the_admin_route_answers() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let pcs = fake_pcs();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let demoted =
        cachet_endorse::forecast::platform_hint(cachet_verify::Tee::Tdx, &std::fs::read(recorded::vectors().join(DEMOTED)).unwrap())
            .unwrap();

    let (server, key) = rt.block_on(async {
        let args = cachet_server::ServeArgs {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(data.clone()),
            pcs_url: Some(pcs.clone()),
            ..Default::default()
        };
        let server = cachet_server::start(args.resolve().unwrap()).await.unwrap();
        let store = SqliteStore::open_dir(&data).await.unwrap();
        for rel in [DEMOTED, STAYS] {
            let quote = std::fs::read(recorded::vectors().join(rel)).unwrap();
            let platform = cachet_endorse::forecast::platform_hint(cachet_verify::Tee::Tdx, &quote).unwrap();
            let e = AuditEntry {
                ts: cachet_server::now(),
                actor: "test".into(),
                action: "attest".into(),
                tee: Some("tdx".into()),
                outcome: "ok".into(),
                detail: json!({"platform": platform}),
                ..Default::default()
            };
            store.append_audit(&e).await.unwrap();
        }
        let k = new_tenant_api_key("test", Role::Reader, None, cachet_server::now()).unwrap();
        let a = AuditEntry { ts: 0, actor: "test".into(), action: "api_key.create".into(), outcome: "ok".into(), ..Default::default() };
        store.insert_api_key(&k.record, &a).await.unwrap();
        store.close().await;
        (server, k.key)
    });
    let route: Value = rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("{}/v1/admin/endorsements/forecast?days=7", server.url))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    });
    let want = vec![(demoted.identity(), "UpToDate".to_string(), "OutOfDate".to_string())];
    assert_eq!(affected_fmspcs(&route), want, "{route:#}");
    assert_eq!(route["unaffected"], 1);

    // The CLI over the same store and PCS: the same JSON.
    let cli = json_of(&cachet(&["endorsements", "forecast", "--data-dir", s(&data), "--pcs-url", &pcs, "--days", "7", "--format", "json"]));
    assert_eq!(without_time(cli), without_time(route.clone()));

    // Air-gapped: the newest TCB Info as a file.
    let newer = recorded::vectors().join(NEWER);
    let gapped = json_of(&cachet(&[
        "endorsements",
        "forecast",
        "--data-dir",
        s(&data),
        "--pcs-url",
        &pcs,
        "--tcb-info",
        s(&newer),
        "--format",
        "json",
    ]));
    assert_eq!(affected_fmspcs(&gapped), want, "{gapped:#}");
    assert!(gapped["tcb_infos"][0]["next"]["source"].as_str().unwrap().ends_with("tdx_quote_outdated_collateral.json"));

    // Evidence files instead of the audit log; the text table.
    let cache = dir.path().join("cache");
    let out = cachet(&[
        "endorsements",
        "forecast",
        s(&recorded::vectors().join(DEMOTED)),
        s(&recorded::vectors().join(STAYS)),
        "--pcs-url",
        &pcs,
        "--cache-dir",
        s(&cache),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("1 affected, 1 unaffected"), "{text}");
    assert!(text.contains(&format!("{}\tUpToDate\tOutOfDate\ttcbEvaluationDataNumber 18", demoted.identity())), "{text}");
    assert!(text.contains("TDX module TDX_01 ISVSVN (TEE_TCB_SVN[0]) needs 6 has 5"), "{text}");

    // A bad window is a usage error.
    let out = cachet(&["endorsements", "forecast", "--data-dir", s(&data), "--days", "0"]);
    assert_eq!(out.status.code(), Some(2));
    rt.block_on(async move { drop(server) });
}
