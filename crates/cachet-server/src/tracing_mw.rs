//! Request tracing: an id for every request (`x-request-id`), a span that
//! carries it around the request's work, one access-log line per request,
//! and the HTTP metrics.
//!
//! Only what cannot carry a secret is logged: the method, the matched route
//! *template* (never the raw path, which can name a secret or a tenant's
//! object), the status, the duration, the client address, and the API key's
//! id and tenant once the key is authenticated (never the key, a token or a
//! body). The id travels in a task-local (for the audit log,
//! [`cachet_store::audit::REQUEST_ID`]) and in the request's extensions
//! ([`RequestId`], for handlers), not through function arguments.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::auth::Principal;
use crate::metrics::Metrics;

/// The request id header, read from the client and set on every response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest client-chosen request id kept.
pub const MAX_REQUEST_ID: usize = 128;
/// The route label (and logged route) of a request no route matched.
pub const UNMATCHED: &str = "unmatched";
/// The log target of the access log, so it can be filtered on its own
/// (`RUST_LOG=info,cachet_server::access=warn` silences it).
pub const ACCESS_TARGET: &str = "cachet_server::access";

/// The request's id, in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Who called, once authenticated (for the access log).
#[derive(Debug)]
struct Caller {
    key_id: String,
    tenant: Option<String>,
}

tokio::task_local! {
    /// Filled by the API-key guard ([`record_caller`]) within a request.
    static CALLER: Arc<OnceLock<Caller>>;
}

/// The client's id if it is one to keep: 1 to [`MAX_REQUEST_ID`] of
/// `A-Z a-z 0-9 . _ : -` (nothing that could forge or break a log line).
pub fn sane_request_id(v: &HeaderValue) -> Option<&str> {
    let b = v.as_bytes();
    let ok = !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c));
    // All ASCII, so this is valid UTF-8.
    ok.then(|| v.to_str().ok()).flatten()
}

/// A fresh id: 128 random bits, hex. Should the system's randomness fail,
/// the time and a process counter (unique, not secret: an id is no secret).
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_ok() {
        return hex::encode(bytes);
    }
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{t:x}-{n:x}")
}

/// Note the authenticated API key of the current request (its id and
/// tenant, never the key) for its access-log line. Called by the API-key
/// guard; does nothing outside a request.
pub fn record_caller(p: &Principal) {
    let _ = CALLER.try_with(|c| c.set(Caller { key_id: p.key_id.clone(), tenant: p.tenant.clone() }));
}

/// The method as a metric label: the standard ones by name, any other
/// (clients can send any token) as `other`, so the label stays bounded.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// The middleware: the id (the client's if sane, else a new one) on the
/// request, in a span around it, in the audit entries it writes and on its
/// response; then the access-log line and the HTTP metrics.
pub async fn trace_request(State(metrics): State<Metrics>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req.headers().get(&REQUEST_ID_HEADER).and_then(sane_request_id).map(str::to_owned).unwrap_or_else(new_request_id);
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str).to_owned();
    let client = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    req.extensions_mut().insert(RequestId(id.clone()));

    let caller = Arc::new(OnceLock::new());
    let span = tracing::info_span!("request", request_id = %id);
    let work = CALLER.scope(caller.clone(), cachet_store::audit::REQUEST_ID.scope(id.clone(), next.run(req)));
    let mut resp = work.instrument(span).await;

    let elapsed = started.elapsed();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let status = resp.status();
    metrics.observe_http(method, &route, status, elapsed.as_secs_f64());
    let caller = caller.get();
    tracing::info!(
        target: ACCESS_TARGET,
        method = %method,
        route = %route,
        status = status.as_u16(),
        // Milliseconds, to the microsecond.
        duration_ms = elapsed.as_micros() as f64 / 1000.0,
        request_id = %id,
        client = client.map(tracing::field::display),
        key_id = caller.map(|c| c.key_id.as_str()),
        tenant = caller.and_then(|c| c.tenant.as_deref()),
        "request"
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_kept() {
        let keep = |s: &str| sane_request_id(&HeaderValue::from_str(s).unwrap()).map(str::to_owned);
        for good in ["a", "req-1", "0af7651916cd43dd8448eb211c80319c", "trace.id:span_2", &"x".repeat(MAX_REQUEST_ID)] {
            assert_eq!(keep(good).as_deref(), Some(good));
        }
        for bad in ["", "a b", "a\tb", "a/b", "a=b", "\"quoted\"", "é", &"x".repeat(MAX_REQUEST_ID + 1)] {
            assert_eq!(sane_request_id(&HeaderValue::from_bytes(bad.as_bytes()).unwrap()), None, "{bad:?}");
        }
        // Bytes a HeaderValue may hold but a log line must not.
        assert_eq!(sane_request_id(&HeaderValue::from_bytes(b"a\xffb").unwrap()), None);
    }

    #[test]
    fn new_ids_are_128_bit_hex_and_distinct() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(sane_request_id(&HeaderValue::from_str(&a).unwrap()).is_some());
    }

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
