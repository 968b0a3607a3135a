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
    /// Origins (scheme, host, port) that could not be reached, with when and
    /// why: asked again only after [`UNREACHABLE_TTL`], so a source that is
    /// down or cut off costs one round of retries, not one per resource.
    unreachable: Mutex<HashMap<String, (std::time::Instant, String)>>,
}

/// How long an origin that could not be reached (no connection, no DNS, a
/// timeout) is not asked again.
pub const UNREACHABLE_TTL: Duration = Duration::from_secs(60);

/// `scheme://host:port` of `url`, or the URL itself when it does not parse.
fn origin_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!("{}://{}:{}", u.scheme(), u.host_str().unwrap_or(""), u.port_or_known_default().unwrap_or(0)),
        Err(_) => url.to_string(),
    }
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
        Ok(Http {
            client,
            retry,
            inflight: Mutex::new(HashMap::new()),
            rate_limited: Default::default(),
            unreachable: Mutex::new(HashMap::new()),
        })
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
        let origin = origin_of(url);
        let recent = self.unreachable.lock().ok().and_then(|m| m.get(&origin).filter(|(at, _)| at.elapsed() < UNREACHABLE_TTL).cloned());
        if let Some((at, why)) = recent {
            return Err(source_err(
                url,
                &format!(
                    "{origin} could not be reached {}s ago ({why}); it is asked again {}s after that",
                    at.elapsed().as_secs(),
                    UNREACHABLE_TTL.as_secs()
                ),
            ));
        }
        let mut wait = self.retry.backoff;
        let mut last = String::new();
        let mut answered = false;
        for attempt in 1..=self.retry.attempts.max(1) {
            let once = self.send_once(url, body).await;
            answered |= once.is_ok();
            match once {
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
                Ok(a) => {
                    if let Ok(mut m) = self.unreachable.lock() {
                        m.remove(&origin);
                    }
                    return Ok(a);
                }
                Err(e) => {
                    last = e;
                    if attempt < self.retry.attempts {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(self.retry.max_wait);
                    }
                }
            }
        }
        if !answered {
            if let Ok(mut m) = self.unreachable.lock() {
                // Bounded: only the operator's few sources (and a vendor's redirects) are ever asked.
                if m.len() >= 64 {
                    m.clear();
                }
                m.insert(origin, (std::time::Instant::now(), last.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_origin_that_cannot_be_reached_is_not_asked_again_for_another_resource() {
        // A source that accepts and drops every connection: no answer, ever.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(conn);
            }
        });
        let retry = Retry { attempts: 2, backoff: Duration::from_millis(10), max_wait: Duration::from_secs(1) };
        let http = Http::new(Duration::from_secs(5), retry).unwrap();
        let first = http.get(&format!("{base}/tcb")).await.unwrap_err();
        assert!(first.to_string().contains("after 2 attempts"), "{first}");
        let tried = accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert!(tried >= 2, "both attempts connected: {tried}");
        // Another resource of the same origin: refused at once, naming why.
        let second = http.get(&format!("{base}/qe/identity")).await.unwrap_err();
        assert!(second.to_string().contains("could not be reached"), "{second}");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), tried, "not asked again");
        // Another origin is asked as before.
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other_url = format!("http://{}/tcb", other.local_addr().unwrap());
        drop(other);
        let third = http.get(&other_url).await.unwrap_err();
        assert!(third.to_string().contains("after 2 attempts"), "{third}");
    }
}
