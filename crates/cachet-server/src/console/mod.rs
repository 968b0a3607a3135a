//! The operator console, `/console`: server-rendered HTML over the same
//! store queries and handlers as the admin API, for people.
//!
//! - **Sign-in.** A form posts an API key; the key is checked with
//!   [`auth::authenticate`] and exchanged for a random session id in an
//!   `HttpOnly`, `SameSite=Strict` cookie (`Secure` and `__Host-` over TLS).
//!   Sessions are held in memory (bounded, 8 h at most, 30 min idle; a
//!   restart signs everyone out) and end with *Sign out*. The key never
//!   appears in a URL, a page or a log line.
//! - **Authorisation is the admin API's.** Each console request carries its
//!   session's key to the very middleware of the admin API
//!   ([`auth::require_reader`], [`auth::require_operator_reader`]) as
//!   `Authorization: Bearer`, so roles, tenants, expiry and revocation are
//!   decided by the same code; a revoked or expired key ends the session at
//!   its next request. Pages call the admin API's handlers (or the same store
//!   queries) with the [`Principal`] that middleware set.
//! - **Browser hardening.** Every response has a strict
//!   `Content-Security-Policy` (no script at all, styles from
//!   `/console/assets` only), `X-Frame-Options: DENY`, `nosniff`,
//!   `Referrer-Policy: same-origin` and `Cache-Control: no-store`. Forms that
//!   change state (sign-out, dry run) carry the session's CSRF token and are
//!   refused when `Origin` or `Sec-Fetch-Site` names another site. Every
//!   value shown is HTML-escaped ([`esc`]): audit details hold what
//!   attesters sent.
//!
//! No template engine: plain `format!` with [`esc`] on every interpolated
//! value keeps the dependency tree as it was and the escaping visible at
//! each use. The one asset (`console.css`) is compiled into the binary.

mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::auth::{self, Principal};
use crate::{now, AppState};

/// Longest a session lives, whatever its use (seconds).
pub const SESSION_LIFETIME: i64 = 8 * 3600;
/// A session unused this long ends (seconds).
pub const SESSION_IDLE: i64 = 30 * 60;
/// Most sessions held at once; the least recently used goes first.
const MAX_SESSIONS: usize = 4096;

const CSS: &str = include_str!("console.css");
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// One signed-in browser.
struct Session {
    /// The API key it signed in with (held only here, zeroed when dropped).
    key: Zeroizing<String>,
    /// Its anti-CSRF token (hidden field of every state-changing form).
    csrf: String,
    created: i64,
    last_used: i64,
}

/// The server-side session table, keyed by the SHA-256 of the cookie value
/// (so the table holds no cookie a memory dump could replay as is).
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

fn sha256_hex(s: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes()))
}

fn random_hex(n: usize) -> Option<String> {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).ok()?;
    Some(hex::encode(b))
}

impl Sessions {
    fn create(&self, key: &str, t: i64) -> Option<(String, String)> {
        let (sid, csrf) = (random_hex(32)?, random_hex(32)?);
        let mut m = self.0.lock().ok()?;
        m.retain(|_, s| live(s, t));
        while m.len() >= MAX_SESSIONS {
            let oldest = m.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone())?;
            m.remove(&oldest);
        }
        m.insert(sha256_hex(&sid), Session { key: Zeroizing::new(key.to_string()), csrf: csrf.clone(), created: t, last_used: t });
        Some((sid, csrf))
    }

    /// The key and CSRF token of a live session, marking it used.
    fn get(&self, sid: &str, t: i64) -> Option<(Zeroizing<String>, String)> {
        let mut m = self.0.lock().ok()?;
        let id = sha256_hex(sid);
        match m.get_mut(&id) {
            Some(s) if live(s, t) => {
                s.last_used = t;
                Some((s.key.clone(), s.csrf.clone()))
            }
            Some(_) => {
                m.remove(&id);
                None
            }
            None => None,
        }
    }

    fn remove(&self, sid: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&sha256_hex(sid));
        }
    }

    /// How many sessions are held (tests).
    pub fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn live(s: &Session, t: i64) -> bool {
    t < s.created + SESSION_LIFETIME && t < s.last_used + SESSION_IDLE
}

/// The console's state: the service's, and the sessions.
#[derive(Clone)]
pub struct ConsoleState {
    pub(crate) app: AppState,
    sessions: Arc<Sessions>,
    tls: bool,
}

impl ConsoleState {
    fn cookie_name(&self) -> &'static str {
        if self.tls {
            "__Host-cachet_console"
        } else {
            "cachet_console"
        }
    }

    fn set_cookie(&self, value: &str, max_age: i64) -> HeaderValue {
        let (path, secure) = if self.tls { ("/", "; Secure") } else { ("/console", "") };
        let v = format!("{}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}", self.cookie_name());
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("cachet_console=; Max-Age=0"))
    }
}

/// What a signed-in page knows about its session (never the key).
#[derive(Clone)]
pub(crate) struct SessionInfo {
    pub csrf: String,
}

/// The `/console` routes, for [`crate::app`] to merge.
pub fn router(app: AppState) -> Router<AppState> {
    let tls = app.config.tls.is_some();
    let store = app.store.clone();
    let cs = ConsoleState { app, sessions: Arc::new(Sessions::default()), tls };
    // The admin API's own guards, by page.
    let reader = Router::new()
        .route("/console", get(pages::overview))
        .route("/console/", get(pages::overview))
        .route("/console/attestations", get(pages::attestations))
        .route("/console/attestations/{seq}", get(pages::report))
        .route("/console/reference-values", get(pages::reference_values))
        .route("/console/secrets", get(pages::secrets))
        .route("/console/logout", post(logout))
        .layer(from_fn_with_state(store.clone(), auth::require_reader));
    let operator = Router::new()
        .route("/console/dry-run", get(pages::dry_run_form).post(pages::dry_run))
        .route("/console/policies", get(pages::policies))
        .route("/console/policies/{name}", get(pages::policy).post(pages::policy_replay))
        .route("/console/forecast", get(pages::forecast))
        .layer(from_fn_with_state(store, auth::require_operator_reader));
    let signed_in = reader.merge(operator).layer(from_fn_with_state(cs.clone(), with_session));
    Router::new()
        .route("/console/login", get(login_form).post(login))
        .route("/console/assets/console.css", get(css))
        .merge(signed_in)
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(cs)
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.entry(CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    r
}

async fn css() -> Response {
    ([(CONTENT_TYPE, "text/css; charset=utf-8"), (CACHE_CONTROL, "public, max-age=3600")], CSS).into_response()
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// A state-changing request from another site (a cross-site form post):
/// refused whatever it carries. Browsers send `Sec-Fetch-Site` (older ones
/// only `Origin` on POST); a request with neither is not a browser's
/// cross-site one.
fn cross_site(headers: &HeaderMap) -> bool {
    // A page cannot set `Sec-Fetch-Site`: where the browser sends it, it decides.
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let host = headers.get(axum::http::header::HOST).and_then(|v| v.to_str().ok());
    match headers.get(axum::http::header::ORIGIN).map(|v| v.to_str().ok()) {
        None => false,
        Some(Some(origin)) => {
            let origin_host = origin.split_once("://").map(|(_, h)| h);
            origin_host.is_none() || origin_host != host
        }
        Some(None) => true,
    }
}

/// Turn the session cookie into the admin API's bearer key; then render
/// the admin API's JSON errors as pages.
async fn with_session(State(cs): State<ConsoleState>, mut req: Request, next: Next) -> Response {
    // Only the session signs a console request in (never a header sent along).
    req.headers_mut().remove(AUTHORIZATION);
    let t = now();
    let sid = cookie(req.headers(), cs.cookie_name()).map(str::to_string);
    let Some((key, csrf)) = sid.as_deref().and_then(|s| cs.sessions.get(s, t)) else {
        return to_login(&cs, None);
    };
    if req.method() != Method::GET && req.method() != Method::HEAD && cross_site(req.headers()) {
        return error_page(StatusCode::FORBIDDEN, "cross_site", "a request from another site was refused");
    }
    let Ok(mut bearer) = HeaderValue::from_str(&format!("Bearer {}", key.as_str())) else {
        return to_login(&cs, None);
    };
    bearer.set_sensitive(true);
    req.headers_mut().insert(AUTHORIZATION, bearer);
    req.extensions_mut().insert(SessionInfo { csrf });
    let r = next.run(req).await;
    if r.status() == StatusCode::UNAUTHORIZED {
        // The key was revoked or expired since sign-in: the session ends.
        if let Some(s) = &sid {
            cs.sessions.remove(s);
        }
        let why = api_error_of(r).await.map(|(_, m)| m).unwrap_or_else(|| "the API key is no longer accepted".into());
        return to_login(&cs, Some(&why));
    }
    if r.status().is_client_error() || r.status().is_server_error() {
        let status = r.status();
        let is_json = r.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("application/json"));
        if is_json {
            let (code, message) = api_error_of(r).await.unwrap_or_else(|| ("error".into(), "the request failed".into()));
            return error_page(status, &code, &message);
        }
    }
    r
}

/// The `{error: {code, message}}` of an admin API answer.
async fn api_error_of(r: Response) -> Option<(String, String)> {
    let bytes = axum::body::to_bytes(r.into_body(), 64 << 10).await.ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    Some((v["error"]["code"].as_str()?.to_string(), v["error"]["message"].as_str().unwrap_or_default().to_string()))
}

fn error_page(status: StatusCode, code: &str, message: &str) -> Response {
    let hint = match code {
        "operator_only" => "<p>This page is for operator keys (keys without a tenant).</p>",
        "forbidden" => "<p>Your key's role does not allow this page.</p>",
        _ => "",
    };
    let body = format!(
        "<h1>{} {}</h1><p class=\"error\" role=\"alert\"><code>{}</code>: {}</p>{hint}<p><a href=\"/console\">Back to the overview</a></p>",
        status.as_u16(),
        esc(status.canonical_reason().unwrap_or("")),
        esc(code),
        esc(message)
    );
    (status, html_page("Error", None, None, &body)).into_response()
}

fn to_login(cs: &ConsoleState, why: Option<&str>) -> Response {
    let mut r = match why {
        Some(why) => (StatusCode::UNAUTHORIZED, login_page(Some(why))).into_response(),
        None => {
            Response::builder().status(StatusCode::SEE_OTHER).header(LOCATION, "/console/login").body(Body::empty()).unwrap_or_default()
        }
    };
    r.headers_mut().insert(SET_COOKIE, cs.set_cookie("", 0));
    r
}

fn login_page(error: Option<&str>) -> axum::response::Html<String> {
    let error =
        error.map(|e| format!("<p class=\"error\" role=\"alert\" id=\"login-error\">Sign-in refused: {}</p>", esc(e))).unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1>{error}\
         <form method=\"post\" action=\"/console/login\" class=\"login\">\
         <label for=\"key\">API key</label>\
         <input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"off\" spellcheck=\"false\" required \
          aria-describedby=\"key-help\" placeholder=\"cachet_…\">\
         <p id=\"key-help\" class=\"help\">A key from <code>cachet admin create-key</code>. An operator key sees the whole \
         service; a tenant key sees its own secrets, releases and reference values.</p>\
         <button type=\"submit\">Sign in</button></form>"
    );
    html_page("Sign in", None, None, &body)
}

async fn login_form() -> axum::response::Html<String> {
    login_page(None)
}

#[derive(Deserialize)]
struct LoginForm {
    key: String,
}

async fn login(State(cs): State<ConsoleState>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    if cross_site(&headers) {
        return error_page(StatusCode::FORBIDDEN, "cross_site", "a sign-in from another site was refused");
    }
    let key = Zeroizing::new(f.key);
    let t = now();
    match auth::authenticate(cs.app.store.as_ref(), key.trim(), t).await {
        Ok(p) => {
            let Some((sid, _)) = cs.sessions.create(key.trim(), t) else {
                return error_page(StatusCode::SERVICE_UNAVAILABLE, "session_unavailable", "no session could be opened");
            };
            let entry = cachet_store::AuditEntry {
                ts: t,
                actor: p.actor(),
                action: "console.sign_in".into(),
                outcome: "ok".into(),
                detail: serde_json::json!({"tenant": p.tenant, "role": p.role.as_str()}),
                ..Default::default()
            };
            if let Err(e) = cs.app.store.append_audit(&entry).await {
                tracing::error!(error = %e, "cannot append to the audit log");
            }
            tracing::info!(key_id = %p.key_id, "console: signed in");
            let mut r =
                Response::builder().status(StatusCode::SEE_OTHER).header(LOCATION, "/console").body(Body::empty()).unwrap_or_default();
            r.headers_mut().insert(SET_COOKIE, cs.set_cookie(&sid, SESSION_LIFETIME));
            r
        }
        Err(e) => {
            let status = if e.status == StatusCode::UNAUTHORIZED { StatusCode::UNAUTHORIZED } else { e.status };
            (status, login_page(Some(&e.message))).into_response()
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(cs): State<ConsoleState>,
    headers: HeaderMap,
    axum::Extension(s): axum::Extension<SessionInfo>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return error_page(StatusCode::FORBIDDEN, "csrf", "the form's token does not match this session; reload the page");
    }
    if let Some(sid) = cookie(&headers, cs.cookie_name()) {
        cs.sessions.remove(sid);
    }
    to_login(&cs, None)
}

/// Whether a form's CSRF token is the session's (constant time).
pub(crate) fn csrf_ok(s: &SessionInfo, sent: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(s.csrf.as_bytes(), sent.as_bytes()).is_ok()
}

/// HTML-escape text for element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a URL path segment or query value (everything but
/// unreserved characters).
pub fn url_enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A whole page: the navigation for `who` (none on the sign-in page).
pub(crate) fn html_page(title: &str, who: Option<&Principal>, session: Option<&SessionInfo>, body: &str) -> axum::response::Html<String> {
    let nav = match who {
        None => String::new(),
        Some(p) => {
            let links: &[(&str, &str)] = if p.is_operator() {
                &[
                    ("/console", "Overview"),
                    ("/console/attestations", "Attestations"),
                    ("/console/dry-run", "Dry run"),
                    ("/console/policies", "Policies"),
                    ("/console/reference-values", "Reference values"),
                    ("/console/forecast", "TCB forecast"),
                ]
            } else {
                &[
                    ("/console", "Overview"),
                    ("/console/attestations", "Releases"),
                    ("/console/secrets", "Secrets"),
                    ("/console/reference-values", "Reference values"),
                ]
            };
            let items: String = links.iter().map(|(h, t)| format!("<li><a href=\"{h}\">{t}</a></li>")).collect();
            let scope = match &p.tenant {
                None => "operator".to_string(),
                Some(t) => format!("tenant {}", esc(t)),
            };
            let csrf = session.map(|s| esc(&s.csrf)).unwrap_or_default();
            format!(
                "<nav aria-label=\"Console\"><ul>{items}</ul><div class=\"who\"><span id=\"who\">{scope} · {} · key {}</span>\
                 <form method=\"post\" action=\"/console/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <button type=\"submit\" class=\"link\">Sign out</button></form></div></nav>",
                p.role.as_str(),
                esc(&p.key_id)
            )
        }
    };
    axum::response::Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Cachet console</title><link rel=\"stylesheet\" href=\"/console/assets/console.css\"></head>\
         <body><header><a class=\"brand\" href=\"/console\">Cachet console</a>{nav}</header><main id=\"main\">{body}</main></body></html>",
        esc(title)
    ))
}

/// Most bytes (as JSON) of what [`audit_report`] adds to an audit detail:
/// with the rest it stays under the audit log's 16 KiB per detail.
pub const MAX_REPORT: usize = 10 << 10;

/// What an attestation's audit entry records for the console's report: each
/// verification check in order (name, outcome, detail cut to 240 bytes),
/// the verified claims, every policy rule's outcome and which endorsement
/// revisions decided. Kept under [`MAX_REPORT`]: the claims go first, then
/// the rules, then the checks' details (each dropped part is named in
/// `report_omitted`), so the entry is never replaced by its summary.
pub fn audit_report(
    checks: &[cachet_verify::Check],
    claims: Option<&Value>,
    rules: Option<Value>,
    revisions: Option<&Value>,
) -> serde_json::Map<String, Value> {
    use cachet_store::audit::bound_text;
    let checks: Vec<Value> = checks
        .iter()
        .take(48)
        .map(|c| serde_json::json!({"name": bound_text(&c.name, 120), "ok": c.ok, "detail": bound_text(&c.detail, 240)}))
        .collect();
    let mut m = serde_json::Map::new();
    m.insert("checks".into(), Value::Array(checks));
    if let Some(c) = claims {
        m.insert("claims".into(), c.clone());
    }
    if let Some(r) = rules {
        m.insert("rules".into(), r);
    }
    if let Some(r) = revisions {
        m.insert("revisions".into(), r.clone());
    }
    // Its size as JSON, without copying it.
    let size = |m: &serde_json::Map<String, Value>| serde_json::to_vec(m).map_or(usize::MAX, |v| v.len());
    let mut omitted = Vec::new();
    for part in ["claims", "rules", "check details"] {
        if size(&m) <= MAX_REPORT {
            break;
        }
        match part {
            "check details" => {
                if let Some(Value::Array(cs)) = m.get_mut("checks") {
                    cs.iter_mut().for_each(|c| {
                        c.as_object_mut().map(|o| o.remove("detail"));
                    });
                }
            }
            p => {
                m.remove(p);
            }
        }
        omitted.push(part);
    }
    if size(&m) > MAX_REPORT {
        m.remove("checks");
        omitted.push("checks");
    }
    if !omitted.is_empty() {
        m.insert("report_omitted".into(), serde_json::json!(omitted));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_attributes() {
        assert_eq!(esc("<script>alert('x')</script> & \"q\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
        assert_eq!(url_enc("a b/<x>?&"), "a%20b%2F%3Cx%3E%3F%26");
    }

    #[test]
    fn sessions_end_when_idle_or_old_and_on_removal() {
        let s = Sessions::default();
        let (sid, _) = s.create("k", 1000).unwrap();
        assert_eq!(s.get(&sid, 1001).unwrap().0.as_str(), "k");
        assert!(s.get(&sid, 1001 + SESSION_IDLE).is_none(), "idle too long");
        let (sid, _) = s.create("k", 1000).unwrap();
        let mut t = 1000;
        while t < 1000 + SESSION_LIFETIME - 60 {
            t += SESSION_IDLE - 1;
            assert!(s.get(&sid, t.min(1000 + SESSION_LIFETIME - 1)).is_some());
        }
        assert!(s.get(&sid, 1000 + SESSION_LIFETIME).is_none(), "older than the lifetime");
        let (sid, _) = s.create("k", 1000).unwrap();
        s.remove(&sid);
        assert!(s.get(&sid, 1000).is_none());
        assert!(s.get("not-a-session", 1000).is_none());
    }

    #[test]
    fn audit_reports_stay_bounded() {
        let check = |i: usize| cachet_verify::Check { name: format!("check {i}"), ok: true, detail: "d".repeat(1000) };
        let checks: Vec<_> = (0..60).map(check).collect();
        let claims = serde_json::json!({"big": "x".repeat(20_000)});
        let m = audit_report(&checks, Some(&claims), Some(serde_json::json!([{"rule": "r", "outcome": "warning"}])), None);
        assert!(Value::Object(m.clone()).to_string().len() <= MAX_REPORT);
        assert!(m.get("claims").is_none() && m["report_omitted"][0] == "claims");
        let small = audit_report(&checks[..3], Some(&serde_json::json!({"a": 1})), None, None);
        assert_eq!(small["checks"].as_array().unwrap().len(), 3);
        assert_eq!(small["claims"]["a"], 1);
        assert!(small.get("report_omitted").is_none());
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:8700"));
        assert!(!cross_site(&h));
        h.insert("origin", HeaderValue::from_static("http://127.0.0.1:8700"));
        assert!(!cross_site(&h));
        h.insert("origin", HeaderValue::from_static("https://evil.example"));
        assert!(cross_site(&h));
        h.insert("origin", HeaderValue::from_static("null"));
        assert!(cross_site(&h));
        h.remove("origin");
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(cross_site(&h), "another port or subdomain is another origin");
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        h.insert("origin", HeaderValue::from_static("null"));
        assert!(!cross_site(&h), "the browser's own word decides");
    }
}
