//! The one HTTP client of the crate: timeouts, bounded answers, retries that
//! honour `Retry-After` (AMD KDS answers 429 readily), and single flight — one
//! request per URL however many verifications want it at the same time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::EndorseError;

/// Largest answer body read (a RIM is ~100 KiB, a CRL of a busy CA a few MiB).
pub const MAX_BODY: usize = 16 << 20;

/// An answer: status, headers (lowercase names) and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Headers, lowercase names.
    pub headers: HashMap<String, String>,
    /// Body, at most [`MAX_BODY`] bytes.
    pub body: Vec<u8>,
}

impl Answer {
    /// A header by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

type Flight = Arc<OnceCell<Result<Answer, EndorseError>>>;

/// Retry policy.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all (first included).
    pub attempts: u32,
    /// First back-off when the answer names no `Retry-After`.
    pub backoff: Duration,
    /// Longest single wait (a larger `Retry-After` gives up instead).
    pub max_wait: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 4, backoff: Duration::from_millis(500), max_wait: Duration::from_secs(30) }
    }
}

/// The HTTP client.
pub struct Http {
    client: reqwest::Client,
    retry: Retry,
    inflight: Mutex<HashMap<String, Flight>>,
    /// HTTP 429 answers seen since start (for metrics).
    rate_limited: std::sync::atomic::AtomicU64,
}

impl Http {
    /// A client with a per-request `timeout`.
    pub fn new(timeout: Duration, retry: Retry) -> Result<Self, EndorseError> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let _ = provider.clone().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("cachet/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EndorseError::Source { origin: "HTTP client".into(), message: e.to_string() })?;
        Ok(Http { client, retry, inflight: Mutex::new(HashMap::new()), rate_limited: Default::default() })
    }

    /// HTTP 429 answers seen since start.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `GET url`: 2xx and 404 are answers; 429 and 5xx are retried (after
    /// `Retry-After` when given, else with exponential back-off); concurrent
    /// calls for the same URL share one request.
    pub async fn get(&self, url: &str) -> Result<Answer, EndorseError> {
        self.send(url, None).await
    }

    /// `POST url` with `body` of `content_type` (an OCSP request): as [`Http::get`],
    /// one request per URL and body at a time.
    pub async fn post(&self, url: &str, content_type: &'static str, body: Vec<u8>) -> Result<Answer, EndorseError> {
        self.send(url, Some((content_type, body))).await
    }

    async fn send(&self, url: &str, body: Option<(&'static str, Vec<u8>)>) -> Result<Answer, EndorseError> {
        let key = match &body {
            None => url.to_string(),
            Some((_, b)) => format!("POST {url} {}", hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b))),
        };
        let flight = {
            let mut m = self.inflight.lock().map_err(|_| source_err(url, "client state poisoned"))?;
            m.entry(key.clone()).or_default().clone()
        };
        let out = flight.get_or_init(|| self.send_with_retry(url, body.as_ref())).await.clone();
        if let Ok(mut m) = self.inflight.lock() {
            if m.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                m.remove(&key);
            }
        }
        out
    }

    async fn send_with_retry(&self, url: &str, body: Option<&(&'static str, Vec<u8>)>) -> Result<Answer, EndorseError> {
        let mut wait = self.retry.backoff;
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts.max(1) {
            match self.send_once(url, body).await {
                Ok(a) if a.status == 429 || a.status >= 500 => {
                    last = format!("HTTP {}", a.status);
                    if a.status == 429 {
                        self.rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let asked = a.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
                    if let Some(asked) = asked {
                        if asked > self.retry.max_wait {
                            return Err(source_err(
                                url,
                                &format!("HTTP {} with Retry-After {}s: try again later", a.status, asked.as_secs()),
                            ));
                        }
                    }
                    if attempt < self.retry.attempts {
                        tokio::time::sleep(asked.unwrap_or(wait)).await;
                        wait = (wait * 2).min(self.retry.max_wait);
                    }
                }
                Ok(a) => return Ok(a),
                Err(e) => {
                    last = e;
                    if attempt < self.retry.attempts {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(self.retry.max_wait);
                    }
                }
            }
        }
        Err(source_err(url, &format!("{last} after {} attempts", self.retry.attempts)))
    }

    async fn send_once(&self, url: &str, body: Option<&(&'static str, Vec<u8>)>) -> Result<Answer, String> {
        let request = match body {
            None => self.client.get(url),
            Some((content_type, b)) => self.client.post(url).header(reqwest::header::CONTENT_TYPE, *content_type).body(b.clone()),
        };
        let mut resp = request.send().await.map_err(|e| describe(&e))?;
        let status = resp.status().as_u16();
        let headers =
            resp.headers().iter().filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_string()))).collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("answer larger than {MAX_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer { status, headers, body })
    }
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn source_err(url: &str, message: &str) -> EndorseError {
    EndorseError::Source { origin: url.to_string(), message: message.to_string() }
}
