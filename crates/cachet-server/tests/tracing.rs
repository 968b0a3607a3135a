//! Request tracing over real HTTP: the `x-request-id` round trip, the id in
//! audit entries and in every log line of its request, the access log
//! (route template, status, key id; never the key, a token or a raw path),
//! and the HTTP metrics.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use cachet_server::auth::Role;
use common::{b64, cases, start};
use serde_json::{json, Value};

/// Every log line of this test process, as JSON: one global subscriber (the
/// server's tasks run on the runtime's worker threads), installed once.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured log, as text and as parsed lines.
fn log_lines() -> (String, Vec<Value>) {
    let text = String::from_utf8(logs().lock().unwrap().clone()).unwrap();
    let lines = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    (text, lines)
}

/// The access-log line of the request with this id.
fn access_line(id: &str) -> Value {
    let (text, lines) = log_lines();
    let mut found: Vec<Value> =
        lines.into_iter().filter(|l| l["target"] == "cachet_server::access" && l["fields"]["request_id"] == id).collect();
    assert_eq!(found.len(), 1, "one access-log line for {id}: {text}");
    found.remove(0)
}

/// A request with this `x-request-id` (and API key, if any); returns the
/// status, the echoed id and the body.
async fn send(req: reqwest::RequestBuilder, id: Option<&[u8]>, key: Option<&str>) -> (u16, String, Value) {
    let mut req = req;
    if let Some(id) = id {
        req = req.header("x-request-id", reqwest::header::HeaderValue::from_bytes(id).unwrap());
    }
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.expect("request");
    let echoed = r.headers().get("x-request-id").expect("every response has an x-request-id").to_str().unwrap().to_string();
    let (s, v) = common::status_json(r).await;
    (s, echoed, v)
}

fn is_generated(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sane_request_id_comes_back_and_any_other_is_replaced() {
    let srv = start("trace-id", |_| {}).await;
    let get = |p: &str| srv.client.get(srv.at(p));

    let (s, echoed, _) = send(get("/healthz"), Some(b"client-req.42:a_b-c"), None).await;
    assert_eq!((s, echoed.as_str()), (200, "client-req.42:a_b-c"));
    let longest = "x".repeat(128);
    assert_eq!(send(get("/healthz"), Some(longest.as_bytes()), None).await.1, longest);

    let (_, first, _) = send(get("/healthz"), None, None).await;
    let (_, second, _) = send(get("/healthz"), None, None).await;
    assert!(is_generated(&first) && is_generated(&second) && first != second, "{first} {second}");

    let too_long = "y".repeat(129);
    for absurd in [too_long.as_bytes(), b"a\tb", b"a b", b"../../etc/passwd", b"a\"b;<x>".as_slice(), b"caf\xc3\xa9", b""] {
        let (_, echoed, _) = send(get("/healthz"), Some(absurd), None).await;
        assert!(is_generated(&echoed), "{:?} replaced by a generated id, got {echoed}", String::from_utf8_lossy(absurd));
    }

    // Errors carry it too: no route, no API key, a malformed body.
    let (s, echoed, _) = send(get("/no/such/route"), Some(b"err-1"), None).await;
    assert_eq!((s, echoed.as_str()), (404, "err-1"));
    let (s, echoed, _) = send(get("/v1/admin/audit"), Some(b"err-2"), None).await;
    assert_eq!((s, echoed.as_str()), (401, "err-2"));
    let (s, echoed, _) =
        send(srv.client.post(srv.at("/v1/attest")).header("content-type", "application/json").body("{"), Some(b"err-3"), None).await;
    assert_eq!((s, echoed.as_str()), (400, "err-3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_entries_written_during_a_request_carry_its_id() {
    let srv = start("trace-audit", |a| a.allow_verification_time = true).await;
    let admin = srv.api_key(Role::Admin).await;
    let c = cases().into_iter().find(|c| c.expect == "accept" && c.tee == "sgx").unwrap();
    let endorsements: Vec<_> = c.endorsement_files().iter().map(|e| json!({"data": b64(&e.bytes)})).collect();
    let body = json!({"tee": "sgx", "evidence": b64(&c.evidence_bytes()), "endorsements": endorsements, "at": c.verify_at});
    let (s, _, v) = send(srv.client.post(srv.at("/v1/attest")).json(&body), Some(b"attest-ok-1"), None).await;
    assert_eq!(s, 200, "{v}");
    let token_id = srv.verify_token(v["token"].as_str().unwrap()).await["jti"].as_str().unwrap().to_string();
    // A refusal, and an audited admin change (written with the store's own transaction).
    let junk = json!({"tee": "snp", "evidence": b64(b"junk")});
    let (s, _, _) = send(srv.client.post(srv.at("/v1/attest")).json(&junk), Some(b"attest-refused-1"), None).await;
    assert_eq!(s, 422);
    let (s, _, created) =
        send(srv.client.post(srv.at("/v1/admin/api-keys")).json(&json!({"role": "reader"})), Some(b"key-create-1"), Some(&admin)).await;
    assert_eq!(s, 201, "{created}");
    // An entry written without a client id carries the generated one.
    let (s, generated, _) = send(srv.client.post(srv.at("/v1/attest")).json(&junk), None, None).await;
    assert_eq!(s, 422);

    let (s, _, audit) = send(srv.client.get(srv.at("/v1/admin/audit?limit=1000")), None, Some(&admin)).await;
    assert_eq!(s, 200, "{audit}");
    let entries: Vec<(Value, Value)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r.clone(), serde_json::from_str::<Value>(r["detail"].as_str().unwrap()).unwrap()))
        .collect();
    let by_id = |id: &str| -> Vec<&Value> { entries.iter().filter(|(_, d)| d["request_id"] == id).map(|(r, _)| r).collect() };
    let ok = by_id("attest-ok-1");
    assert_eq!(ok.len(), 1, "{audit}");
    assert_eq!(
        (ok[0]["action"].as_str(), ok[0]["outcome"].as_str(), ok[0]["token_id"].as_str()),
        (Some("attest"), Some("ok"), Some(&*token_id))
    );
    let refused = by_id("attest-refused-1");
    assert_eq!((refused.len(), refused[0]["outcome"].as_str()), (1, Some("refused")), "{audit}");
    let key = by_id("key-create-1");
    assert_eq!((key.len(), key[0]["action"].as_str()), (1, Some("api_key.create")), "{audit}");
    assert_eq!(by_id(&generated).len(), 1, "{audit}");
    // The key created before the server ran (no request) has no id.
    assert!(entries.iter().any(|(r, d)| r["actor"] == "test" && d.get("request_id").is_none()), "{audit}");

    // The stamped entries keep the hash chain valid.
    let (s, _, verified) = send(srv.client.get(srv.at("/v1/admin/audit/verify")), None, Some(&admin)).await;
    assert_eq!((s, &verified["ok"]), (200, &json!(true)), "{verified}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_names_the_route_and_caller_but_never_the_key_token_or_path() {
    logs();
    let srv = start("trace-log", |a| a.allow_verification_time = true).await;
    let admin = srv.api_key(Role::Admin).await;
    let key_id = admin.split('_').nth(1).unwrap().to_string();
    let key_secret = admin.split('_').nth(2).unwrap().to_string();

    // A path naming something secret: logged as its template only.
    let (s, _, _) = send(srv.client.get(srv.at("/v1/admin/policies/very-secret-policy-name")), Some(b"log-route-1"), Some(&admin)).await;
    assert_eq!(s, 404);
    let line = access_line("log-route-1");
    let f = &line["fields"];
    assert_eq!(f["method"], "GET");
    assert_eq!(f["route"], "/v1/admin/policies/{name}");
    assert_eq!(f["status"], 404);
    assert_eq!(f["key_id"], key_id.as_str());
    assert!(f["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{line}");
    assert!(f["client"].as_str().is_some_and(|c| c.starts_with("127.0.0.1:")), "{line}");
    assert_eq!(line["level"], "INFO");

    // No route: `unmatched`, and no caller.
    send(srv.client.get(srv.at("/no/such/very-secret-path")), Some(b"log-unmatched-1"), Some(&admin)).await;
    let line = access_line("log-unmatched-1");
    assert_eq!((&line["fields"]["route"], &line["fields"]["status"]), (&json!("unmatched"), &json!(404)), "{line}");
    assert!(line["fields"].get("key_id").is_none(), "not authenticated on an unmatched route: {line}");

    // An attestation: its handler's own log line carries the request id
    // through the span, and its token is never logged.
    let c = cases().into_iter().find(|c| c.expect == "accept" && c.tee == "sgx").unwrap();
    let endorsements: Vec<_> = c.endorsement_files().iter().map(|e| json!({"data": b64(&e.bytes)})).collect();
    let body = json!({"tee": "sgx", "evidence": b64(&c.evidence_bytes()), "endorsements": endorsements, "at": c.verify_at});
    let (s, _, v) = send(srv.client.post(srv.at("/v1/attest")).json(&body), Some(b"log-attest-1"), None).await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    // The token sent back in a release request.
    let release = json!({"token": token, "secrets": ["bank-a/db-password"]});
    send(srv.client.post(srv.at("/v1/secrets/release")).json(&release), Some(b"log-release-1"), None).await;
    let line = access_line("log-attest-1");
    assert_eq!((&line["fields"]["route"], &line["fields"]["status"]), (&json!("/v1/attest"), &json!(200)), "{line}");
    assert!(line["fields"].get("key_id").is_none(), "{line}");
    assert_eq!(access_line("log-release-1")["fields"]["route"], "/v1/secrets/release");
    let (text, lines) = log_lines();
    let issued = lines
        .iter()
        .find(|l| l["fields"]["message"] == "attestation token issued" && l["span"]["request_id"] == "log-attest-1")
        .unwrap_or_else(|| panic!("the handler's line carries the request id in its span: {text}"));
    assert_eq!(issued["span"]["name"], "request");

    for secret in [admin.as_str(), key_secret.as_str(), token.as_str(), "very-secret-policy-name", "very-secret-path"] {
        assert!(!text.contains(secret), "{secret:?} is in the log: {text}");
    }
    // The token's signature alone (a token cut at its last part) is not there either.
    assert!(!text.contains(token.rsplit('.').next().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_and_status_with_a_latency_histogram() {
    let srv = start("trace-metrics", |_| {}).await;
    assert_eq!(srv.get("/healthz").await.0, 200);
    assert_eq!(srv.get("/healthz").await.0, 200);
    assert_eq!(srv.get("/no/such/thing").await.0, 404);
    assert_eq!(srv.get("/v1/admin/policies/some-name").await.0, 401);
    let r = srv.client.request(reqwest::Method::from_bytes(b"BREW").unwrap(), srv.at("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 405);

    let text = srv.client.get(srv.at("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        "# TYPE cachet_http_requests_total counter",
        "cachet_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2",
        "cachet_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
        "cachet_http_requests_total{method=\"GET\",route=\"/v1/admin/policies/{name}\",status=\"401\"} 1",
        "cachet_http_requests_total{method=\"other\",route=\"/healthz\",status=\"405\"} 1",
        "# TYPE cachet_http_request_duration_seconds histogram",
        "cachet_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"0.0005\"}",
        "cachet_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"10\"} 2",
        "cachet_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\"} 2",
        "# TYPE cachet_endorsement_cache_lookups_total counter",
        "cachet_endorsement_cache_lookups_total{result=\"hit\"} 0",
    ] {
        assert!(text.contains(line), "{line:?} missing from: {text}");
    }
    assert!(!text.contains("some-name") && !text.contains("/no/such/thing"), "raw paths never become labels: {text}");
    assert!(!text.contains("cachet_endorsement_cache_lookups{"), "the gauge is gone: {text}");
    // Every counter is declared as one, every gauge is not a total.
    for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = l.split_once(' ').unwrap();
        assert_eq!(name.ends_with("_total"), kind == "counter", "{l}");
    }
}
