//! The `http_attest` target's server: the real `cachet serve` (in process,
//! loopback, fresh data directory, verification time allowed so the real
//! vectors verify), started once; each input is one raw HTTP/1.1 request.
//!
//! Input: first byte picks the route (and content type), the rest is the
//! body. A request must always get an HTTP response (a handler panic closes
//! the connection without one) and never a 500.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cachet_verify::selftest::Subject;

struct Running {
    addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
    _server: cachet_server::Server,
}

fn server() -> SocketAddr {
    static S: OnceLock<Running> = OnceLock::new();
    S.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let dir = std::env::temp_dir().join(format!("cachet-fuzz-http-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("data dir");
        let args = cachet_server::ServeArgs {
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            data_dir: Some(dir),
            allow_verification_time: true,
            ..Default::default()
        };
        let config = args.resolve().expect("config");
        let server = rt.block_on(cachet_server::start(config)).expect("server starts");
        Running { addr: server.addr, _rt: rt, _server: server }
    })
    .addr
}

/// The JSON body of `POST /v1/attest` for a case (seed corpus).
pub fn attest_body(s: &Subject) -> Vec<u8> {
    let ends: Vec<serde_json::Value> =
        s.endorsements.iter().map(|e| serde_json::json!({"name": "e", "data": STANDARD.encode(&e.bytes)})).collect();
    let at = cachet_verify::x509::fmt_time(s.verify_at);
    serde_json::to_vec(&serde_json::json!({
        "tee": s.tee.as_str(),
        "evidence": STANDARD.encode(&s.evidence),
        "endorsements": ends,
        "at": at,
    }))
    .unwrap_or_default()
}

const ROUTES: &[(&str, &str)] = &[
    ("/v1/attest", "application/json"),
    ("/v1/challenge", "application/json"),
    ("/v1/secrets/release", "application/json"),
    ("/v1/attest", "text/plain"),
];

/// Send one request and check the answer.
pub fn post(data: &[u8]) {
    let Some((first, body)) = data.split_first() else { return };
    let (path, ctype) = ROUTES[usize::from(*first) % ROUTES.len()];
    let addr = server();
    let Ok(mut s) = TcpStream::connect(addr) else { return };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).and_then(|_| s.write_all(body)).is_err() {
        return;
    }
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    assert!(resp.starts_with(b"HTTP/1.1 "), "no HTTP response to a {} byte body on {path}", body.len());
    let code = resp.get(9..12).unwrap_or_default();
    assert!(code != b"500", "500 Internal Server Error: {}", String::from_utf8_lossy(&resp));
}
