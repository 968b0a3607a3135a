//! The protocol client: challenge → evidence bound to the nonce and the
//! workload's key → token → secrets released as JWEs to that key.
//!
//! ```text
//! POST /v1/challenge                    → {nonce, expires_at}
//! (evidence binds nonce ‖ runtime_data, runtime_data = canonical public JWK)
//! POST /v1/attest {tee, evidence, endorsements, nonce, runtime_data} → {token}
//! POST /v1/secrets/release {token, secrets, workload_key}
//!                                       → {results: [{secret, released, reason, jwe?}]}
//! ```
//!
//! HTTP is reqwest on rustls (aws-lc-rs provider, the operating system's
//! roots plus an optional CA), no redirects (a token is never sent to a
//! place the operator did not name), timeouts, and a size limit on every
//! response body. Plain `http://` is refused unless the server is on a
//! loopback address or [`ClientOptions::allow_insecure_http`] is set: on a
//! network, whoever is in the path could answer for the service.
//!
//! A release answer is trusted only as far as the service's signed release
//! statement vouches for it ([`crate::release`]): the statement must verify
//! with a key of the service's JWKS, name the issuer and `jti` of the
//! attestation token (itself verified with the JWKS) and this workload's
//! key, and list each secret with the SHA-256 of its JWE, whose protected
//! header must name the same secret and token.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cachet_verify::Endorsement;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::ephemeral::EphemeralKey;
use crate::jwe::JweError;
use crate::source::{BindingInput, CollectError, Evidence, EvidenceSource};

/// Default limit on a response body.
pub const MAX_RESPONSE: usize = 4 << 20;

/// Why the protocol failed.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The service answered with an error document.
    #[error("{endpoint}: HTTP {status} {code}: {message}{}", check.as_ref().map(|c| format!(" (check: {c})")).unwrap_or_default())]
    Server {
        /// The endpoint called.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// The stable error code (`nonce_reused`, `verification_failed`, ...).
        code: String,
        /// The message.
        message: String,
        /// The failing verification check, when there is one.
        check: Option<String>,
    },
    /// The service could not be reached or the exchange broke off.
    #[error("{message}")]
    Transport {
        /// The endpoint called.
        endpoint: &'static str,
        /// What happened: the full URL and the cause ([`describe_http_error`]).
        message: String,
    },
    /// The service answered something this client cannot use.
    #[error("{endpoint}: {message}")]
    Protocol {
        /// The endpoint called.
        endpoint: &'static str,
        /// What was wrong.
        message: String,
    },
    /// Evidence collection failed.
    #[error("evidence: {0}")]
    Evidence(#[from] CollectError),
    /// Local setup (key generation, TLS configuration).
    #[error("{0}")]
    Setup(String),
}

impl AttestError {
    /// The server's error code, when the service refused.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Extra trusted CA certificates (PEM), e.g. the service's private CA.
    pub ca_pem: Vec<Vec<u8>>,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_response: usize,
    /// Allow plain `http://` to a server that is not on a loopback address
    /// (tokens and secrets then cross the network unauthenticated).
    pub allow_insecure_http: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self { ca_pem: Vec::new(), timeout: Duration::from_secs(60), max_response: MAX_RESPONSE, allow_insecure_http: false }
    }
}

/// Why an HTTP request to `url` failed, for people: the URL, then the
/// cause found by walking the error's source chain (connection refused,
/// timeout, TLS, DNS), then what to check. Shared by every Cachet HTTP
/// client (`cachet attest`, `fetch-secret`, `secrets`, `refvals push`).
pub fn describe_http_error(method: &str, url: &str, e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut io_kind = None;
    let mut tls = None;
    // reqwest's own message names the URL ("… for url (URL)"); ours names it once.
    let mut deepest = match e.url() {
        Some(u) => e.to_string().replace(&format!(" for url ({u})"), ""),
        None => e.to_string(),
    };
    let mut source = e.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        if let Some(t) = cause.downcast_ref::<rustls::Error>() {
            tls.get_or_insert_with(|| t.to_string());
        }
        deepest = cause.to_string();
        source = cause.source();
    }
    let host = reqwest::Url::parse(url).ok().and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)));
    let host = host.as_deref().unwrap_or(url);
    let why = if e.is_timeout() {
        format!("timed out ({deepest}): the service at {host} did not answer in time; check that it is up and reachable")
    } else if let Some(t) = tls {
        format!("TLS handshake failed: {t}; for a service with a private CA pass its certificate with --ca-cert")
    } else if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
        format!("connection refused: nothing is listening at {host}; check --server and that the service is running")
    } else if deepest.contains("dns error") || deepest.contains("failed to lookup address") || deepest.contains("Name or service not known")
    {
        format!("DNS lookup failed ({deepest}): check the host name in --server")
    } else if e.is_connect() {
        format!("cannot connect to {host} ({deepest}); check --server and that the service is running")
    } else {
        format!("the exchange broke off: {deepest}")
    };
    format!("{method} {url}: {why}")
}

/// Whether `url` (`http://host[:port]…`) names a loopback host.
fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost")
            || h.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    })
}

/// A challenge from `POST /v1/challenge`.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// The nonce (raw bytes).
    pub nonce: Vec<u8>,
    /// Its expiry (Unix seconds).
    pub expires_at: i64,
}

/// A successful attestation.
#[derive(Debug, Clone)]
pub struct Attestation {
    /// The EAR token (JWT).
    pub token: String,
    /// The nonce bound.
    pub nonce: Vec<u8>,
    /// The evidence sent (family, bytes, back-end).
    pub evidence: Evidence,
}

/// One released secret.
pub struct Secret {
    /// The reference requested (`owner/name`).
    pub name: String,
    /// The decrypted value (wiped when dropped).
    pub value: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({}, {} bytes)", self.name, self.value.len())
    }
}

/// One refused secret and why (the service's reason; never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reference requested.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// The outcome of a release request.
#[derive(Debug, Default)]
pub struct Release {
    /// Secrets released and decrypted.
    pub secrets: Vec<Secret>,
    /// Secrets refused.
    pub refused: Vec<Refusal>,
}

#[derive(Deserialize)]
struct ChallengeBody {
    nonce: String,
    expires_at: i64,
}

#[derive(Deserialize)]
struct AttestBody {
    token: String,
}

#[derive(Deserialize)]
struct ReleaseBody {
    #[serde(default)]
    workload_key: Option<String>,
    results: Vec<ReleaseItem>,
    #[serde(default)]
    statement: Option<String>,
}

#[derive(Deserialize)]
struct ReleaseItem {
    secret: String,
    released: bool,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    jwe: Option<String>,
}

/// Check a `POST /v1/secrets/release` answer (what [`Attester::release`]
/// received) against the service's JWKS, for `token` and `key`, and decrypt
/// what the signed release statement vouches for ([`crate::release`]).
pub fn check_release_answer(jwks: &Value, token: &str, key: &EphemeralKey, answer: Value) -> Result<Release, AttestError> {
    const EP: &str = "/v1/secrets/release";
    let body: ReleaseBody = serde_json::from_value(answer)
        .map_err(|e| AttestError::Protocol { endpoint: EP, message: format!("unexpected release answer: {e}") })?;
    let forged =
        |m: String| AttestError::Protocol { endpoint: EP, message: format!("the release answer is not vouched for by the service: {m}") };
    let (jti, stated_key, stated) = verify_statement(jwks, token, body.statement.as_deref()).map_err(forged)?;
    // Refusals (a key substitution among them) may name the key the token is
    // bound to; a release must be to this workload's key.
    if stated.iter().any(|r| r.released) && stated_key.as_deref() != Some(key.thumbprint().as_str()) {
        return Err(forged("the release statement is for another workload key".into()));
    }
    // JWEs encrypted to another key would not decrypt anyway; say why
    // (refusals, e.g. of a key substitution, carry no JWE and pass).
    if let Some(t) = &body.workload_key {
        if *t != key.thumbprint() && body.results.iter().any(|r| r.released) {
            return Err(AttestError::Protocol {
                endpoint: EP,
                message: format!("secrets were encrypted to key {t}, not to this workload's key {}", key.thumbprint()),
            });
        }
    }
    let mut out = Release::default();
    for item in body.results {
        let vouched = stated
            .iter()
            .find(|r| r.secret == item.secret)
            .ok_or_else(|| forged(format!("the statement does not list secret {}", item.secret)))?;
        if vouched.released != item.released {
            return Err(forged(format!(
                "the statement says secret {} was {}",
                item.secret,
                if vouched.released { "released" } else { "refused" }
            )));
        }
        match (item.released, item.jwe) {
            (true, Some(jwe)) => {
                if vouched.jwe_sha256.as_deref() != Some(crate::release::jwe_sha256(&jwe).as_str()) {
                    return Err(forged(format!("the JWE of secret {} is not the one the statement names", item.secret)));
                }
                let d = key
                    .decrypt(&jwe)
                    .map_err(|e: JweError| AttestError::Protocol { endpoint: EP, message: format!("secret {}: {e}", item.secret) })?;
                let header = |k: &str| d.header.get(k).and_then(Value::as_str);
                if header("cachet.secret") != Some(item.secret.as_str()) || header("cachet.token_id") != Some(jti.as_str()) {
                    return Err(forged(format!("the JWE of secret {} names another secret or token in its protected header", item.secret)));
                }
                out.secrets.push(Secret { name: item.secret, value: d.plaintext });
            }
            (true, None) => {
                return Err(AttestError::Protocol { endpoint: EP, message: format!("secret {} released without a JWE", item.secret) })
            }
            (false, _) => out.refused.push(Refusal { name: item.secret, reason: item.reason }),
        }
    }
    Ok(out)
}

/// Where the service publishes its token-signing keys.
const JWKS: &str = "/.well-known/jwks.json";

/// Check a release statement ([`crate::release`]) against the service's
/// JWKS: the attestation token is the service's (its signature verifies),
/// the statement too, with the token's issuer and `jti`. Returns the
/// token's `jti`, the workload key thumbprint stated and the vouched results.
///
/// Validity times are the service's to enforce (it refuses expired tokens);
/// the workload's clock is not trusted here, so both signatures are checked
/// as of the instant each document says it was issued.
type Vouched = (String, Option<String>, Vec<crate::release::StatedResult>);

fn verify_statement(jwks: &Value, token: &str, statement: Option<&str>) -> Result<Vouched, String> {
    use cachet_token::jwk::PublicKey;
    use cachet_token::jws;
    let keys: Vec<PublicKey> = jwks
        .get("keys")
        .and_then(Value::as_array)
        .map(|ks| ks.iter().filter_map(|k| PublicKey::from_jwk(k).ok()).collect())
        .unwrap_or_default();
    let issued_at = |jws_text: &str| jws::decode(jws_text).ok().and_then(|d| d.claims.get("iat").and_then(Value::as_i64));
    let at = issued_at(token).ok_or("the attestation token has no iat")?;
    let t = jws::verify(token, &keys, &jws::Expectations { now: at, leeway: 0, issuer: None })
        .map_err(|e| format!("the attestation token does not verify with the service's JWKS: {e}"))?;
    let jti = t.get("jti").and_then(Value::as_str).ok_or("the attestation token has no jti")?.to_string();
    let iss = t.get("iss").and_then(Value::as_str).ok_or("the attestation token has no iss")?;
    let statement = statement.ok_or("it carries no release statement")?;
    let typ = jws::decode(statement)
        .map_err(|e| format!("release statement: {e}"))?
        .header
        .get("typ")
        .and_then(Value::as_str)
        .map(str::to_string);
    if typ.as_deref() != Some(crate::release::STATEMENT_TYP) {
        return Err(format!("the release statement has typ {typ:?}, not {}", crate::release::STATEMENT_TYP));
    }
    let at = issued_at(statement).ok_or("the release statement has no iat")?;
    let c = jws::verify(statement, &keys, &jws::Expectations { now: at, leeway: 0, issuer: Some(iss) })
        .map_err(|e| format!("the release statement does not verify with the service's JWKS: {e}"))?;
    let claim = c.get(crate::release::STATEMENT_CLAIM).ok_or("the release statement has no release claim")?;
    if claim.get("token_id").and_then(Value::as_str) != Some(jti.as_str()) {
        return Err("the release statement is for another attestation token".into());
    }
    let stated_key = claim.get("workload_key").and_then(Value::as_str).map(str::to_string);
    let results = crate::release::results_of(&c).ok_or("the release statement's results are malformed")?;
    Ok((jti, stated_key, results))
}

/// The attester: a service URL and an evidence source.
pub struct Attester {
    http: reqwest::Client,
    base: String,
    source: Arc<dyn EvidenceSource>,
    endorsements: Vec<Endorsement>,
    max_response: usize,
}

impl std::fmt::Debug for Attester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attester").field("server", &self.base).field("source", &self.source.name()).finish_non_exhaustive()
    }
}

impl Attester {
    /// An attester for the service at `server` (`http(s)://host:port`).
    pub fn new(server: &str, source: Arc<dyn EvidenceSource>, options: &ClientOptions) -> Result<Self, AttestError> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let base = server.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(AttestError::Setup(format!("server URL {server:?} must start with http:// or https://")));
        }
        let url = reqwest::Url::parse(&base).map_err(|e| AttestError::Setup(format!("server URL {server:?}: {e}")))?;
        if url.scheme() == "http" && !is_loopback(&url) && !options.allow_insecure_http {
            return Err(AttestError::Setup(format!(
                "refusing plain HTTP to {}: anyone on the network path could read the token and answer in the service's place; \
                 use https:// (with --ca-cert for a private CA), or --allow-insecure-http for a trusted test network",
                url.host_str().unwrap_or("the server")
            )));
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(options.timeout)
            .user_agent(concat!("cachet-attester/", env!("CARGO_PKG_VERSION")));
        for pem in &options.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| AttestError::Setup(format!("CA certificate: {e}")))? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| AttestError::Setup(format!("HTTP client: {e}")))?;
        Ok(Self { http, base, source, endorsements: Vec::new(), max_response: options.max_response })
    }

    /// Send these endorsements with every attestation (e.g. TDX collateral).
    pub fn with_endorsements(mut self, endorsements: Vec<Endorsement>) -> Self {
        self.endorsements = endorsements;
        self
    }

    /// The evidence source's name.
    pub fn source_name(&self) -> &'static str {
        self.source.name()
    }

    /// POST a JSON body, returning the JSON answer or the service's error.
    async fn post(&self, endpoint: &'static str, body: &Value) -> Result<Value, AttestError> {
        self.send("POST", endpoint, self.http.post(format!("{}{endpoint}", self.base)).json(body)).await
    }

    /// GET a JSON document.
    async fn get(&self, endpoint: &'static str) -> Result<Value, AttestError> {
        self.send("GET", endpoint, self.http.get(format!("{}{endpoint}", self.base))).await
    }

    async fn send(&self, method: &str, endpoint: &'static str, req: reqwest::RequestBuilder) -> Result<Value, AttestError> {
        let url = format!("{}{endpoint}", self.base);
        let transport = |e: reqwest::Error| AttestError::Transport { endpoint, message: describe_http_error(method, &url, &e) };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > self.max_response {
                return Err(AttestError::Protocol { endpoint, message: format!("response larger than {} bytes", self.max_response) });
            }
            bytes.extend_from_slice(&chunk);
        }
        let doc: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return doc.ok_or_else(|| AttestError::Protocol { endpoint, message: "the response is not JSON".into() });
        }
        let err = doc.as_ref().and_then(|d| d.get("error"));
        let text = |k: &str| err.and_then(|e| e.get(k)).and_then(Value::as_str).map(str::to_string);
        Err(AttestError::Server {
            endpoint,
            status: status.as_u16(),
            code: text("code").unwrap_or_else(|| "http_error".into()),
            message: text("message").unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()),
            check: text("check"),
        })
    }

    /// `POST /v1/challenge`.
    pub async fn challenge(&self) -> Result<Challenge, AttestError> {
        const EP: &str = "/v1/challenge";
        let v = self.post(EP, &json!({})).await?;
        let body: ChallengeBody =
            serde_json::from_value(v).map_err(|e| AttestError::Protocol { endpoint: EP, message: format!("unexpected challenge: {e}") })?;
        let nonce =
            hex::decode(body.nonce.trim()).map_err(|_| AttestError::Protocol { endpoint: EP, message: "the nonce is not hex".into() })?;
        if !(8..=64).contains(&nonce.len()) {
            return Err(AttestError::Protocol { endpoint: EP, message: format!("a {}-byte nonce (expected 8 to 64)", nonce.len()) });
        }
        Ok(Challenge { nonce, expires_at: body.expires_at })
    }

    /// Collect evidence for `nonce` and `runtime_data` on a blocking thread.
    pub async fn collect(&self, nonce: &[u8], runtime_data: &[u8]) -> Result<Evidence, AttestError> {
        let source = self.source.clone();
        let (nonce, rd) = (nonce.to_vec(), runtime_data.to_vec());
        tokio::task::spawn_blocking(move || source.collect(&BindingInput { nonce: &nonce, runtime_data: &rd }))
            .await
            .map_err(|e| AttestError::Setup(format!("evidence collection thread: {e}")))?
            .map_err(AttestError::from)
    }

    /// Challenge, collect evidence binding `nonce ‖ runtime_data`, and
    /// `POST /v1/attest`: the token.
    pub async fn attest(&self, runtime_data: &[u8]) -> Result<Attestation, AttestError> {
        let challenge = self.challenge().await?;
        let evidence = self.collect(&challenge.nonce, runtime_data).await?;
        let token = self.send_evidence(&evidence, Some(&challenge.nonce), runtime_data).await?;
        Ok(Attestation { token, nonce: challenge.nonce, evidence })
    }

    /// `POST /v1/attest` with evidence already collected.
    pub async fn send_evidence(&self, evidence: &Evidence, nonce: Option<&[u8]>, runtime_data: &[u8]) -> Result<String, AttestError> {
        const EP: &str = "/v1/attest";
        let endorsements: Vec<Value> = evidence
            .endorsements
            .iter()
            .chain(&self.endorsements)
            .map(|e| json!({"name": e.name, "data": STANDARD.encode(&e.bytes)}))
            .collect();
        let mut body = json!({
            "tee": evidence.tee.as_str(),
            "evidence": STANDARD.encode(&evidence.evidence),
            "endorsements": endorsements,
        });
        if let Some(n) = nonce {
            body["nonce"] = Value::String(hex::encode(n));
        }
        if !runtime_data.is_empty() {
            body["runtime_data"] = Value::String(STANDARD.encode(runtime_data));
        }
        let v = self.post(EP, &body).await?;
        let body: AttestBody =
            serde_json::from_value(v).map_err(|e| AttestError::Protocol { endpoint: EP, message: format!("no token: {e}") })?;
        Ok(body.token)
    }

    /// Attest with a fresh ephemeral key as runtime data: the token and the key.
    pub async fn attest_with_key(&self) -> Result<(Attestation, EphemeralKey), AttestError> {
        let key = EphemeralKey::generate().map_err(AttestError::Setup)?;
        let attestation = self.attest(key.runtime_data()).await?;
        Ok((attestation, key))
    }

    /// `POST /v1/secrets/release` with `token` for `names` (`owner/name`),
    /// decrypting each released JWE with `key`. The answer must carry the
    /// service's signed release statement for this token and key
    /// ([`crate::release`]); a result it does not vouch for, a JWE whose
    /// digest or protected header differs, or a JWE that does not decrypt
    /// is an error (a forged or altered answer), never a released secret.
    pub async fn release(&self, token: &str, key: &EphemeralKey, names: &[String]) -> Result<Release, AttestError> {
        const EP: &str = "/v1/secrets/release";
        let v = self.post(EP, &json!({"token": token, "secrets": names, "workload_key": key.public_jwk()})).await?;
        let jwks = self.get(JWKS).await?;
        check_release_answer(&jwks, token, key, v)
    }

    /// The whole flow: attest with a fresh key, then ask for `names`.
    pub async fn fetch_secrets(&self, names: &[String]) -> Result<(Attestation, Release), AttestError> {
        let (attestation, key) = self.attest_with_key().await?;
        let release = self.release(&attestation.token, &key, names).await?;
        Ok((attestation, release))
    }
}
