//! Kill -9 of the server process during a burst of admin writes loses no
//! acknowledged write: after a restart every API key whose creation was
//! answered `201` is there, each with its audit entry, and the audit chain
//! is intact. The same for attestations under concurrency: their audit
//! entries are group-committed (several per transaction), and every token a
//! client received has its `attest` entry after the restart. The server runs
//! as its own process (`cachet-server`).

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cachet_server::auth::Role;
use common::*;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Start `cachet-server` on a free loopback port; return it and its URL.
async fn spawn_server(dir: &std::path::Path) -> (Child, String) {
    spawn_server_with(dir, &[]).await
}

async fn spawn_server_with(dir: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cachet-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn cachet-server");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("server starts within 60 s")
        .unwrap()
        .expect("a listening line");
    let url = line.rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_admin_writes_loses_no_acknowledged_write() {
    let dir = temp_dir("kill9");
    let admin = create_api_key(&dir, Role::Admin).await;
    let (mut child, url) = spawn_server(&dir).await;
    let client = http_client();

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (client, url, admin, acked) = (client.clone(), url.clone(), admin.clone(), acked.clone());
            tokio::spawn(async move {
                for i in 0..10_000 {
                    let r = client
                        .post(format!("{url}/v1/admin/api-keys"))
                        .bearer_auth(&admin)
                        .json(&json!({"name": format!("w{w}-{i}"), "role": "reader"}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let v: serde_json::Value = r.json().await.unwrap_or_default();
                            if let Some(id) = v["id"].as_str() {
                                acked.lock().unwrap().push(id.to_string());
                            }
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => return, // the server is gone
                    }
                }
            })
        })
        .collect();

    // Let the burst run, then kill -9 in the middle of it.
    let started = Instant::now();
    while acked.lock().unwrap().len() < 200 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().expect("SIGKILL"); // Child::start_kill sends SIGKILL on Unix
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 200, "the burst was running: {} writes acknowledged", acked.len());

    // Restart on the same data directory and compare.
    let (mut child, url) = spawn_server(&dir).await;
    let r = client.get(format!("{url}/v1/admin/api-keys")).bearer_auth(&admin).send().await.unwrap();
    let (s, listed) = status_json(r).await;
    assert_eq!(s, 200);
    let stored: std::collections::HashSet<&str> = listed.as_array().unwrap().iter().filter_map(|k| k["id"].as_str()).collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(id.as_str())).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged writes lost: {lost:?}", lost.len(), acked.len());

    let r = client.get(format!("{url}/v1/admin/audit/verify")).bearer_auth(&admin).send().await.unwrap();
    let (_, v) = status_json(r).await;
    assert_eq!(v["ok"], true, "audit chain intact after kill -9: {v}");
    let r = client.get(format!("{url}/v1/admin/audit?limit=1000")).bearer_auth(&admin).send().await.unwrap();
    let (_, log) = status_json(r).await;
    let audited: Vec<&str> =
        log.as_array().unwrap().iter().filter(|e| e["action"] == "api_key.create").filter_map(|e| e["detail"].as_str()).collect();
    for id in &acked {
        assert!(audited.iter().any(|d| d.contains(id.as_str())), "no audit entry for acknowledged key {id}");
    }
    println!("{} acknowledged writes before kill -9, all present after restart", acked.len());
    child.start_kill().ok();
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_concurrent_attestations_loses_no_issued_tokens_record() {
    use base64::Engine;
    use cachet_attester::binding;
    use cachet_attester::simulated::{ReportOptions, SimulatedTee};
    let dir = temp_dir("kill9-attest");
    let admin = create_api_key(&dir, Role::Admin).await;
    let sim = Arc::new(SimulatedTee::load_or_create(&dir.join("simulated-tee")).unwrap());
    let (mut child, url) = spawn_server_with(&dir, &["--insecure-simulated-tee", "--rate-limit", "0"]).await;
    let client = http_client();

    // Each token id a client was handed.
    let issued = Arc::new(Mutex::new(Vec::<String>::new()));
    let attesters: Vec<_> = (0..16)
        .map(|_| {
            let (client, url, issued, sim) = (client.clone(), url.clone(), issued.clone(), sim.clone());
            tokio::spawn(async move {
                loop {
                    let Ok(r) = client.post(format!("{url}/v1/challenge")).send().await else { return };
                    let Ok(c) = r.json::<serde_json::Value>().await else { return };
                    let nonce = hex::decode(c["nonce"].as_str().unwrap_or_default()).unwrap_or_default();
                    let evidence = sim.report(&binding::report_data(&nonce, b""), &ReportOptions::default()).unwrap();
                    let body = json!({"tee": "sim", "evidence": b64(&evidence), "nonce": hex::encode(&nonce)});
                    let Ok(r) = client.post(format!("{url}/v1/attest")).json(&body).send().await else { return };
                    let Ok(v) = r.json::<serde_json::Value>().await else { return };
                    let token = v["token"].as_str().unwrap_or_else(|| panic!("a token: {v}"));
                    let payload = token.split('.').nth(1).unwrap();
                    let claims: serde_json::Value =
                        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
                    issued.lock().unwrap().push(claims["jti"].as_str().expect("jti").to_string());
                }
            })
        })
        .collect();
    let started = Instant::now();
    while issued.lock().unwrap().len() < 300 && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.start_kill().expect("SIGKILL");
    assert!(!child.wait().await.unwrap().success());
    for a in attesters {
        a.await.unwrap();
    }
    let issued = issued.lock().unwrap().clone();
    assert!(issued.len() >= 300, "the attestations were running: {} tokens issued", issued.len());

    let (mut child, url) = spawn_server_with(&dir, &["--insecure-simulated-tee", "--rate-limit", "0"]).await;
    let r = client.get(format!("{url}/v1/admin/audit/verify")).bearer_auth(&admin).send().await.unwrap();
    let (_, v) = status_json(r).await;
    assert_eq!(v["ok"], true, "audit chain intact after kill -9: {v}");
    let mut recorded = std::collections::HashSet::new();
    let mut after = 0;
    loop {
        let r = client.get(format!("{url}/v1/admin/audit?after={after}&limit=1000")).bearer_auth(&admin).send().await.unwrap();
        let (_, page) = status_json(r).await;
        let page = page.as_array().unwrap().clone();
        let Some(last) = page.last() else { break };
        after = last["seq"].as_i64().unwrap();
        for e in &page {
            if e["action"] == "attest" && e["outcome"] == "ok" {
                recorded.insert(e["token_id"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    let lost: Vec<&String> = issued.iter().filter(|j| !recorded.contains(*j)).collect();
    assert!(lost.is_empty(), "{} of {} issued tokens have no audit entry: {lost:?}", lost.len(), issued.len());
    println!("{} tokens issued before kill -9, every one audited after restart", issued.len());
    child.start_kill().ok();
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
}
