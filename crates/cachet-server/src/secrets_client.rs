//! A client for the tenant secret routes of the admin API, used by
//! `cachet secrets`. Values are sent once (base64 in the PUT body) and are
//! never returned by the service.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use zeroize::Zeroize;

/// HTTP methods for [`SecretsClient::request`].
pub use reqwest::Method;

/// Largest response read (bytes).
const MAX_RESPONSE: usize = 16 << 20;

/// Why an admin-API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The service answered with an error document (`HTTP <status> <code>: <message>`).
    #[error("HTTP {status} {code}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The stable error code.
        code: String,
        /// The service's message.
        message: String,
    },
    /// The request could not be made or its answer not read (the URL and
    /// the cause: connection refused, TLS, timeout, DNS), or a bad argument.
    #[error("{0}")]
    Local(String),
}

impl From<ClientError> for String {
    fn from(e: ClientError) -> Self {
        e.to_string()
    }
}

impl From<String> for ClientError {
    fn from(e: String) -> Self {
        ClientError::Local(e)
    }
}

/// An admin-API client acting with one tenant API key.
pub struct SecretsClient {
    http: reqwest::Client,
    base: String,
    api_key: String,
}

impl std::fmt::Debug for SecretsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl SecretsClient {
    /// A client for the service at `base` (`http(s)://host:port`), trusting
    /// `ca_pem` (PEM certificates) for HTTPS.
    pub fn new(base: &str, api_key: &str, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(60));
        if let Some(pem) = ca_pem {
            for c in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("CA certificates: {e}"))? {
                b = b.add_root_certificate(c);
            }
        }
        Ok(Self { http: b.build().map_err(|e| e.to_string())?, base: base.trim_end_matches('/').to_string(), api_key: api_key.to_string() })
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<(u16, Value), ClientError> {
        let url = format!("{}{path}", self.base);
        let transport = |e: reqwest::Error| ClientError::Local(cachet_attester::client::describe_http_error(method.as_str(), &url, &e));
        let mut r = self.http.request(method.clone(), &url).bearer_auth(&self.api_key);
        if let Some(b) = body {
            r = r.json(b);
        }
        let mut resp = r.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE {
                return Err(ClientError::Local(format!("{method} {url}: response larger than {MAX_RESPONSE} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        if (200..300).contains(&status) {
            Ok((status, v))
        } else {
            let code = v["error"]["code"].as_str().unwrap_or("error").to_string();
            let message = v["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            Err(ClientError::Refused { status, code, message })
        }
    }

    /// Any admin-API call with this key (e.g. `PUT /v1/admin/reference-values/{name}`):
    /// the JSON answer of a 2xx response, or `HTTP <status> <code>: <message>`.
    pub async fn request(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        self.send(method, path, body).await.map(|(_, v)| v)
    }

    fn path(name: &str) -> Result<String, ClientError> {
        if cachet_keybroker::broker::valid_name(name) {
            Ok(format!("/v1/admin/secrets/{name}"))
        } else {
            Err(ClientError::Local(format!("invalid secret name {name:?}: 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit")))
        }
    }

    /// Create or replace a secret; returns its metadata (never the value).
    /// `policy_name` (the policy's file name) is what the service's errors
    /// about the policy call it.
    pub async fn put(&self, name: &str, value: &[u8], policy: &str, policy_name: Option<&str>) -> Result<Value, ClientError> {
        let path = Self::path(name)?;
        let mut encoded = STANDARD.encode(value);
        let mut body = json!({"value": encoded, "policy": policy});
        if let Some(n) = policy_name {
            body["policy_name"] = Value::String(n.to_string());
        }
        encoded.zeroize();
        let r = self.send(reqwest::Method::PUT, &path, Some(&body)).await;
        if let Some(Value::String(s)) = body.get_mut("value") {
            s.zeroize();
        }
        r.map(|(_, v)| v)
    }

    /// The tenant's secrets (metadata).
    pub async fn list(&self) -> Result<Value, ClientError> {
        self.send(reqwest::Method::GET, "/v1/admin/secrets", None).await.map(|(_, v)| v)
    }

    /// One secret's metadata.
    pub async fn get(&self, name: &str) -> Result<Value, ClientError> {
        self.send(reqwest::Method::GET, &Self::path(name)?, None).await.map(|(_, v)| v)
    }

    /// Delete a secret.
    pub async fn delete(&self, name: &str) -> Result<(), ClientError> {
        self.send(reqwest::Method::DELETE, &Self::path(name)?, None).await.map(|_| ())
    }

    /// The audit entries about the tenant's secrets (releases, refusals, changes).
    pub async fn releases(&self, after: i64, limit: i64) -> Result<Value, ClientError> {
        self.send(reqwest::Method::GET, &format!("/v1/admin/secret-releases?after={after}&limit={limit}"), None).await.map(|(_, v)| v)
    }
}
