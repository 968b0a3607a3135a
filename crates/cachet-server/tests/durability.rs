//! Kill -9 of the server process during a burst of admin writes loses no
//! acknowledged write: after a restart every API key whose creation was
//! answered `201` is there, each with its audit entry, and the audit chain
//! is intact. The server runs as its own process (`cachet-server`).

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_cachet-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
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
