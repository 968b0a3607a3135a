//! Denial-of-service limits over real TCP on loopback: half-sent requests
//! are closed (by default within hyper's header-read timeout) while
//! `/healthz` keeps answering; connections are capped per client address
//! and in all; the unauthenticated routes are rate-limited per client
//! address (`429 rate_limited` with `Retry-After`, nothing stored);
//! oversized fields of unauthenticated requests reach neither the audit log
//! nor the process log whole; malformed query strings are JSON errors.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cachet_server::auth::Role;
use cachet_store::{SqliteStore, Store};
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `srv` from the loopback address `from`.
async fn connect_from(srv: &TestServer, from: &str) -> TcpStream {
    let addr = srv.server.as_ref().unwrap().addr;
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Whether the server closes `conn` within `within` (EOF or reset, after
/// whatever response it sent).
async fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// A client whose connections come from the loopback address `from`.
fn client_from(from: &str) -> reqwest::Client {
    let _ = http_client();
    reqwest::Client::builder().local_address(from.parse::<IpAddr>().unwrap()).timeout(Duration::from_secs(5)).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_by_default_and_healthz_keeps_answering() {
    let srv = start("slowloris", |_| {}).await;
    let opened = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut c = connect_from(&srv, "127.0.0.1").await;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: cachet\r\nX-Slow: ").await.unwrap();
        slow.push(c);
    }
    // Every connection is open and half-sent: the service still answers.
    let client = client_from("127.0.0.1");
    for _ in 0..5 {
        let t = Instant::now();
        let r = client.get(srv.at("/healthz")).send().await.expect("/healthz answers while 300 requests are half-sent");
        assert_eq!(r.status(), 200);
        assert!(t.elapsed() < Duration::from_secs(2), "/healthz took {:?}", t.elapsed());
    }
    // Each half-sent request is closed by the server within 30 s of being opened.
    for c in &mut slow {
        let left = Duration::from_secs(30).saturating_sub(opened.elapsed());
        assert!(closed_within(c, left).await, "a half-sent request is still open {:?} after it was opened", opened.elapsed());
    }
    assert!(client.get(srv.at("/healthz")).send().await.unwrap().status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_bodies_and_idle_connections_are_closed() {
    let srv = start("slowbody", |a| {
        a.request_timeout = Some(1);
        a.idle_timeout = Some(2);
    })
    .await;
    let mut c = connect_from(&srv, "127.0.0.1").await;
    c.write_all(b"POST /v1/attest HTTP/1.1\r\nHost: cachet\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"tee\":")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let t = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut answer)).await.expect("the connection is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"timeout\""), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(5), "closed after {:?}", t.elapsed());
    // An HTTP/2 connection that sends its preface and then nothing (no
    // header-read timeout there) is closed by the idle timeout.
    let mut h2 = connect_from(&srv, "127.0.0.1").await;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    assert!(closed_within(&mut h2, Duration::from_secs(5)).await, "an idle HTTP/2 connection is still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_client_address_and_in_all() {
    let srv = start("conncap", |a| {
        a.max_connections = Some(6);
        a.max_connections_per_client = Some(4);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from(&srv, "127.0.0.1").await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A fifth from the same address is closed at once...
    let mut fifth = connect_from(&srv, "127.0.0.1").await;
    let _ = fifth.write_all(b"GET /healthz HTTP/1.1\r\nHost: cachet\r\n\r\n").await;
    assert!(closed_within(&mut fifth, Duration::from_secs(2)).await, "over the per-client cap");
    // ...while another address is served.
    let other = client_from("127.0.0.2");
    assert_eq!(other.get(srv.at("/healthz")).send().await.unwrap().status(), 200);
    // Two more from a second address reach the cap in all: a third address is refused.
    let _b1 = connect_from(&srv, "127.0.0.2").await;
    let _b2 = connect_from(&srv, "127.0.0.2").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = client_from("127.0.0.3").get(srv.at("/healthz")).send().await;
    assert!(refused.is_err(), "over the cap in all: {refused:?}");
    // A connection that closes gives its place back.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(client_from("127.0.0.3").get(srv.at("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_routes_are_rate_limited_per_client_address() {
    let srv = start("ratelimit", |a| {
        a.rate_limit = Some(60); // one a second
        a.rate_limit_burst = Some(3);
    })
    .await;
    let a = client_from("127.0.0.1");
    for _ in 0..3 {
        assert_eq!(a.post(srv.at("/v1/challenge")).json(&json!({})).send().await.unwrap().status(), 200);
    }
    let store = SqliteStore::open_dir(&srv.dir).await.unwrap();
    let audit_before = store.audit_page(0, 1000).await.unwrap().len();
    for (path, body) in [
        ("/v1/challenge", json!({})),
        ("/v1/attest", json!({"tee": "sgx", "evidence": "AAAA"})),
        ("/v1/secrets/release", json!({"token": "x", "secrets": ["o/n"]})),
    ] {
        let r = a.post(srv.at(path)).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 429, "{path}");
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry), "Retry-After: {retry}");
        let (_, v) = status_json(r).await;
        assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    }
    assert_eq!(store.audit_page(0, 1000).await.unwrap().len(), audit_before, "a refused request writes nothing");
    store.close().await;
    // Other routes are not counted, other addresses have their own budget.
    assert_eq!(a.get(srv.at("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(client_from("127.0.0.2").post(srv.at("/v1/challenge")).json(&json!({})).send().await.unwrap().status(), 200);
    // The budget refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(a.post(srv.at("/v1/challenge")).json(&json!({})).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_query_strings_are_json_errors() {
    let srv = start("query", |_| {}).await;
    let key = srv.api_key(Role::Admin).await;
    for path in [
        "/v1/admin/audit?limit=abc",
        "/v1/admin/audit?after=1e99",
        "/v1/admin/secret-releases?limit=x",
        "/v1/admin/policies/default-sgx?version=new",
    ] {
        let r = srv.client.get(srv.at(path)).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.headers()["content-type"], "application/json", "{path}");
        let (s, v) = status_json(r).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_query")), "{path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("query"), "{v}");
    }
}

/// The reviewer's requests: a `sim` report with a 60 KB `format` to a server
/// that does not trust `sim`, and a release naming huge secrets with a bad
/// token. Run as a separate process to read its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_fields_reach_neither_the_audit_nor_the_log_whole() {
    let dir = temp_dir("oversized");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cachet-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn cachet-server");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), stdout.next_line()).await.unwrap().unwrap().expect("listening line");
    let url = line.rsplit(' ').next().unwrap().to_string();
    let stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut longest = 0;
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            longest = longest.max(l.len());
        }
        longest
    });

    let client = http_client();
    let format = "F".repeat(60_000);
    let evidence = json!({"format": format, "report": "", "signature": ""}).to_string();
    let r =
        client.post(format!("{url}/v1/attest")).json(&json!({"tee": "sim", "evidence": b64(evidence.as_bytes())})).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let huge_names: Vec<String> = (0..32).map(|i| format!("owner/{i}{}", "n".repeat(400_000))).collect();
    let r = client
        .post(format!("{url}/v1/secrets/release"))
        .json(&json!({"token": "not-a-token", "secrets": huge_names}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .post(format!("{url}/v1/secrets/release"))
        .json(&json!({"attest": {"tee": "sim", "evidence": b64(evidence.as_bytes())}, "secrets": ["owner/name"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    let store = SqliteStore::open_dir(&dir).await.unwrap();
    let rows = store.audit_page(0, 1000).await.unwrap();
    let refusals: Vec<_> = rows.iter().filter(|r| r.outcome == "refused").collect();
    assert!(refusals.len() >= 3, "{rows:?}");
    for r in &refusals {
        let size = serde_json::to_string(r).unwrap().len();
        assert!(size < 20_000, "an audit row of {size} bytes: {}", &r.detail[..200.min(r.detail.len())]);
        let detail: Value = serde_json::from_str(&r.detail).unwrap();
        assert!(r.detail.contains("[truncated: ") && r.detail.contains("sha256:"), "cut with a marker and the hash: {detail}");
    }
    assert!(cachet_store::verify_audit_chain(&store).await.is_ok());
    store.close().await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    let longest = tokio::time::timeout(Duration::from_secs(10), log).await.unwrap().unwrap();
    assert!(longest < 8_000, "a log line of {longest} bytes");
    let _ = std::fs::remove_dir_all(&dir);
}
