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

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let mut r = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.api_key);
        if let Some(b) = body {
            r = r.json(b);
        }
        let mut resp = r.send().await.map_err(|e| format!("{}: {e}", self.base))?;
        let status = resp.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if bytes.len() + chunk.len() > MAX_RESPONSE {
                return Err("response too large".into());
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
            let code = v["error"]["code"].as_str().unwrap_or("error");
            let msg = v["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            Err(format!("HTTP {status} {code}: {msg}"))
        }
    }

    /// Any admin-API call with this key (e.g. `PUT /v1/admin/reference-values/{name}`):
    /// the JSON answer of a 2xx response, or `HTTP <status> <code>: <message>`.
    pub async fn request(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, String> {
        self.send(method, path, body).await.map(|(_, v)| v)
    }

    fn path(name: &str) -> Result<String, String> {
        if cachet_keybroker::broker::valid_name(name) {
            Ok(format!("/v1/admin/secrets/{name}"))
        } else {
            Err(format!("invalid secret name {name:?}: 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit"))
        }
    }

    /// Create or replace a secret; returns its metadata (never the value).
    pub async fn put(&self, name: &str, value: &[u8], policy: &str) -> Result<Value, String> {
        let path = Self::path(name)?;
        let mut encoded = STANDARD.encode(value);
        let mut body = json!({"value": encoded, "policy": policy});
        encoded.zeroize();
        let r = self.send(reqwest::Method::PUT, &path, Some(&body)).await;
        if let Some(Value::String(s)) = body.get_mut("value") {
            s.zeroize();
        }
        r.map(|(_, v)| v)
    }

    /// The tenant's secrets (metadata).
    pub async fn list(&self) -> Result<Value, String> {
        self.send(reqwest::Method::GET, "/v1/admin/secrets", None).await.map(|(_, v)| v)
    }

    /// One secret's metadata.
    pub async fn get(&self, name: &str) -> Result<Value, String> {
        self.send(reqwest::Method::GET, &Self::path(name)?, None).await.map(|(_, v)| v)
    }

    /// Delete a secret.
    pub async fn delete(&self, name: &str) -> Result<(), String> {
        self.send(reqwest::Method::DELETE, &Self::path(name)?, None).await.map(|_| ())
    }

    /// The audit entries about the tenant's secrets (releases, refusals, changes).
    pub async fn releases(&self, after: i64, limit: i64) -> Result<Value, String> {
        self.send(reqwest::Method::GET, &format!("/v1/admin/secret-releases?after={after}&limit={limit}"), None).await.map(|(_, v)| v)
    }
}
