//! Endorsements from the manufacturers, owned by the service.
//!
//! The verifier (`cachet-verify`) is pure: it judges evidence with the
//! endorsements it is handed. This crate decides *which* endorsements those
//! are: from the evidence it derives what is needed ([`needs`]), fetches each
//! piece from the vendor's service (Intel PCS or a PCCS, AMD KDS, NVIDIA's
//! RIM service), keeps it in a [`Cache`] with its fetch time and the issuer's
//! next update, and hands the verifier the bytes exactly as the vendor signed
//! them. Nothing here is trusted for being fetched: every piece is verified
//! again by `cachet-verify` against the pinned roots.
//!
//! Who controls what: the **operator** chooses the sources ([`Sources`]) and
//! freshness rules; the **manufacturer** signs what they serve; the
//! **attester** controls nothing here — endorsements it sends are hints that
//! [`authority`] accepts only when they are no older than the service's own.

#![deny(missing_docs)]

pub mod authority;
pub mod bundle;
pub mod cache;
pub mod forecast;
pub mod http;
pub mod kds;
pub mod needs;
pub mod nvidia;
pub mod pcs;

use std::sync::Arc;
use std::time::Duration;

use cachet_verify::Tee;

pub use cache::{Cache, CachedEntry, FolderCache, MemoryCache, Remembered};
pub use needs::{needs, Resource};

/// Intel's public Provisioning Certification Service (API v4).
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";
/// AMD's Key Distribution Service.
pub const AMD_KDS_URL: &str = "https://kdsintf.amd.com";
/// NVIDIA's RIM service.
pub const NVIDIA_RIM_URL: &str = "https://rim.attestation.nvidia.com";
/// NVIDIA's OCSP responder.
pub const NVIDIA_OCSP_URL: &str = "https://ocsp.ndis.nvidia.com";

/// Where endorsements come from; chosen by the operator (flags / config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// Intel PCS API v4 or any PCCS-compatible service.
    pub pcs_url: String,
    /// AMD KDS.
    pub kds_url: String,
    /// NVIDIA RIM service (`GET /v1/rim/{id}`).
    pub nvidia_rim_url: String,
    /// NVIDIA OCSP responder.
    pub nvidia_ocsp_url: String,
    /// Fetch nothing: only what is cached (or given) is used.
    pub offline: bool,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            pcs_url: INTEL_PCS_URL.into(),
            kds_url: AMD_KDS_URL.into(),
            nvidia_rim_url: NVIDIA_RIM_URL.into(),
            nvidia_ocsp_url: NVIDIA_OCSP_URL.into(),
            offline: false,
            timeout: Duration::from_secs(30),
        }
    }
}

/// One endorsement as fetched: the vendor's bytes, and what is known of its freshness.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fetched {
    /// What it is (the cache key is [`Resource::key`]).
    pub resource: Resource,
    /// The pieces handed to the verifier, each as `cachet-verify` reads
    /// endorsement files (e.g. a PCS TCB Info body and its issuer chain PEM).
    pub parts: Vec<Part>,
    /// When it was fetched (Unix seconds).
    pub fetched_at: i64,
    /// The issuer's next update (TCB Info / identity `nextUpdate`, CRL
    /// `nextUpdate`, certificate `notAfter`), when the document says.
    pub next_update: Option<i64>,
    /// Where it came from (base URL and path), for listings and messages.
    pub source: String,
}

/// One named piece of an endorsement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Part {
    /// A file-like name the verifier's messages can show (e.g. `tcb-info-00606a000000.json`).
    pub name: String,
    /// The bytes, exactly as the vendor sent them (after transport decoding only).
    #[serde(with = "b64")]
    pub bytes: Vec<u8>,
}

impl Fetched {
    /// The pieces as the verifier takes them.
    pub fn endorsements(&self) -> Vec<cachet_verify::Endorsement> {
        self.parts.iter().map(|p| cachet_verify::Endorsement { name: p.name.clone(), bytes: p.bytes.clone() }).collect()
    }
}

/// Why endorsements could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndorseError {
    /// The evidence does not say what it needs (e.g. a quote without its PCK chain).
    #[error("{0}")]
    Evidence(String),
    /// Offline, and not cached.
    #[error("offline and not cached: {0}; import it with `cachet endorsements import` or give it with --endorsements")]
    Offline(String),
    /// The vendor's service answered with an error, or could not be reached.
    #[error("{origin}: {message}")]
    Source {
        /// Base URL and path.
        origin: String,
        /// What went wrong, and what to do.
        message: String,
    },
    /// The vendor has nothing for this (HTTP 404).
    #[error("{origin}: not found ({what})")]
    NotFound {
        /// Base URL and path.
        origin: String,
        /// What was asked for.
        what: String,
    },
    /// The cache held it, but past its validity, and the source cannot refresh it.
    #[error("{what} is stale since {since} and {origin} cannot refresh it: {message}")]
    Stale {
        /// What is stale.
        what: String,
        /// RFC 3339 instant it went stale.
        since: String,
        /// The source.
        origin: String,
        /// Why the refresh failed.
        message: String,
    },
}

/// Gets what evidence needs: from the cache while fresh, else from the
/// vendor; a source that is down is survived on cached endorsements until
/// their own expiry.
pub struct Endorser {
    sources: Sources,
    cache: Arc<dyn Cache>,
    http: http::Http,
    /// One fetch per resource at a time (cache re-check, fetch, keep): a
    /// caller arriving between the fetch and the cache write would otherwise
    /// ask the vendor again (AMD KDS rate-limits VCEKs hard).
    flights: std::sync::Mutex<std::collections::HashMap<String, ResourceFlight>>,
    /// Recent "the vendor has nothing for this" answers, by key, with when
    /// they were had and how long they hold: asked again only after
    /// [`NOT_FOUND_TTL`] (an unknown chip attesting in a loop must not spend
    /// the KDS rate limit), or [`FAILURE_TTL`] for any other failure to get
    /// it (a source that is down or unreachable must not slow every
    /// attestation by its timeouts and retries).
    not_found: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, std::time::Duration, EndorseError)>>,
    stats: Stats,
}

/// OCSP requests in flight at once for one verification.
const OCSP_CONCURRENCY: usize = 8;

/// How long a vendor's 404 is remembered before the resource is asked for again.
pub const NOT_FOUND_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// How long a failure to get a piece (a source down, unreachable, or
/// answering what is refused) is remembered: it is then asked for again by
/// the next request that needs it. Meanwhile requests go on at once with
/// what is cached or given (a required piece missing is refused by name).
pub const FAILURE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Most 404s remembered at once (oldest forgotten first).
const MAX_NOT_FOUND: usize = 10_000;

/// Counters since start, for metrics: cache hits, and fetches by source
/// (`pcs`, `kds`, `nvidia`) and outcome.
#[derive(Default)]
struct Stats {
    hits: std::sync::atomic::AtomicU64,
    /// `[source][ok=0 | error=1]`.
    fetches: [[std::sync::atomic::AtomicU64; 2]; 3],
}

/// A snapshot of an [`Endorser`]'s counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndorserStats {
    /// Endorsements served from the cache.
    pub cache_hits: u64,
    /// `(source, outcome, count)`: source `pcs` / `kds` / `nvidia`, outcome `ok` / `error`.
    pub fetches: Vec<(&'static str, &'static str, u64)>,
    /// HTTP 429 answers seen.
    pub rate_limited: u64,
}

const SOURCES: [&str; 3] = ["pcs", "kds", "nvidia"];

fn source_index(r: &Resource) -> usize {
    match r {
        Resource::TcbInfo { .. } | Resource::QeIdentity { .. } | Resource::PckCrl { .. } | Resource::RootCaCrl => 0,
        Resource::Vcek { .. } | Resource::AmdChain { .. } | Resource::AmdCrl { .. } => 1,
        Resource::Rim { .. } | Resource::Ocsp { .. } => 2,
    }
}

type ResourceFlight = Arc<tokio::sync::OnceCell<Result<Fetched, EndorseError>>>;

impl Endorser {
    /// An endorser over `sources`, keeping what it fetches in `cache`.
    pub fn new(sources: Sources, cache: Arc<dyn Cache>) -> Result<Self, EndorseError> {
        Self::with_retry(sources, cache, http::Retry::default())
    }

    /// The same with its own retry policy (one attempt where a failure only
    /// means going on without the piece).
    pub fn with_retry(sources: Sources, cache: Arc<dyn Cache>, retry: http::Retry) -> Result<Self, EndorseError> {
        let http = http::Http::new(sources.timeout, retry)?;
        Ok(Endorser { sources, cache, http, flights: Default::default(), not_found: Default::default(), stats: Stats::default() })
    }

    /// Counters since start.
    pub fn stats(&self) -> EndorserStats {
        use std::sync::atomic::Ordering::Relaxed;
        let mut fetches = Vec::new();
        for (i, s) in SOURCES.iter().enumerate() {
            fetches.push((*s, "ok", self.stats.fetches[i][0].load(Relaxed)));
            fetches.push((*s, "error", self.stats.fetches[i][1].load(Relaxed)));
        }
        EndorserStats { cache_hits: self.stats.hits.load(Relaxed), fetches, rate_limited: self.http.rate_limited() }
    }

    /// Re-fetch `r` from its source now, whatever the cache holds (the
    /// background refresh before `nextUpdate`), and keep it. A failure
    /// leaves the cached entry as it was.
    pub async fn refresh(&self, r: &Resource, now: i64) -> Result<Fetched, EndorseError> {
        if self.sources.offline {
            return Err(EndorseError::Offline(r.key()));
        }
        let f = self.fetch(r, now).await?;
        self.cache.put(&r.key(), &f).await;
        Ok(f)
    }

    /// The sources in use.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// The cache in use.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.cache
    }

    /// Every endorsement `evidence` of family `tee` needs, at `now` (Unix
    /// seconds). Optional resources that cannot be had are left out (the
    /// verifier then reports what it could not check); a required one that
    /// cannot be had is the error.
    pub async fn endorsements_for(&self, tee: Tee, evidence: &[u8], now: i64) -> Result<Vec<Fetched>, EndorseError> {
        let (got, mut missing) = self.available(tee, evidence, now).await?;
        if missing.is_empty() {
            Ok(got)
        } else {
            Err(missing.swap_remove(0))
        }
    }

    /// What the service can get of what `evidence` needs, and why each
    /// required piece it cannot get is missing: the service's own pieces
    /// still decide when another is unavailable (only the gaps are left to
    /// the attester). An error only when the evidence does not say what it needs.
    pub async fn available(&self, tee: Tee, evidence: &[u8], now: i64) -> Result<(Vec<Fetched>, Vec<EndorseError>), EndorseError> {
        let (got, missing) = self.get_all(&needs(tee, evidence)?, now).await;
        // A version 2 SNP report does not name its product and Milan is
        // assumed; Genoa firmware before 1.55 also writes version 2 reports,
        // so a Milan VCEK that KDS does not know is asked for under Genoa.
        let milan_vcek_unknown =
            missing.iter().any(|e| matches!(e, EndorseError::NotFound { origin, .. } if origin.contains("/vcek/v1/Milan/")));
        if tee == Tee::Snp && milan_vcek_unknown && kds::product_assumed(evidence) {
            let genoa = kds::needs_for(evidence, Some(needs::AmdProduct::Genoa))?;
            let (g, m) = self.get_all(&genoa, now).await;
            if m.is_empty() {
                return Ok((g, m));
            }
            let mut missing = missing;
            missing.extend(m);
            return Ok((got, missing));
        }
        Ok((got, missing))
    }

    /// Each of `needed`: what was had, and why each required piece was not.
    async fn get_all(&self, needed: &[Resource], now: i64) -> (Vec<Fetched>, Vec<EndorseError>) {
        let (mut got, mut missing) = (Vec::new(), Vec::new());
        for r in needed {
            match self.get(r, now).await {
                Ok(f) => got.push(f),
                Err(e) if r.optional() => tracing::info!("optional endorsement {} not available: {e}", r.key()),
                Err(e) => missing.push(e),
            }
        }
        (got, missing)
    }

    /// NVIDIA's OCSP answers for the certificates among `endorsements` (the
    /// GPU's device chain, the RIMs' signer chains) that `endorsements` does
    /// not already answer for; nothing for other families. Revocation is
    /// optional: what cannot be had is logged and left "not checked" (the
    /// claims say so, and `--require-revocation` refuses).
    pub async fn revocation(&self, tee: Tee, endorsements: &[cachet_verify::Endorsement], now: i64) -> Vec<Fetched> {
        if tee != Tee::Nvgpu {
            return Vec::new();
        }
        use futures_util::StreamExt;
        let held = authority::Coverage::of(endorsements);
        let needs: Vec<Resource> = nvidia::ocsp_needs(endorsements).into_iter().filter(|r| !held.covers(r)).collect();
        // A few at a time: one slow certificate must not hold up the others.
        let asks: Vec<_> = needs.iter().map(|r| self.get(r, now)).collect();
        let answers: Vec<_> = futures_util::stream::iter(asks).buffered(OCSP_CONCURRENCY).collect().await;
        let mut out = Vec::new();
        for (r, answer) in needs.iter().zip(answers) {
            match answer {
                Ok(f) => out.push(f),
                Err(e) => tracing::info!("NVIDIA OCSP answer {} not available: {e}", r.key()),
            }
        }
        out
    }

    /// One resource: cached and fresh, else fetched (and cached), else the
    /// cached copy while it is still within its validity.
    pub async fn get(&self, r: &Resource, now: i64) -> Result<Fetched, EndorseError> {
        let key = r.key();
        let cached = self.cache.get(&key).await;
        let fresh = |f: &Fetched| f.next_update.is_none_or(|n| now < n);
        if let Some(c) = cached.as_ref().filter(|c| fresh(c)) {
            self.stats.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(c.clone());
        }
        if self.sources.offline {
            return match cached {
                Some(c) => Err(stale(&key, &c, "offline")),
                None => Err(EndorseError::Offline(key)),
            };
        }
        if let Some(e) = self.recently_not_found(&key) {
            return match cached {
                Some(c) => Err(stale(&key, &c, &e.to_string())),
                None => Err(e),
            };
        }
        let flight = match self.flights.lock() {
            Ok(mut m) => m.entry(key.clone()).or_default().clone(),
            Err(_) => ResourceFlight::default(),
        };
        let out = flight.get_or_init(|| self.fetch_and_keep(r, &key, now)).await.clone();
        if let Ok(mut m) = self.flights.lock() {
            if m.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                m.remove(&key);
            }
        }
        out
    }

    /// Inside the resource's flight: what another caller kept meanwhile, else
    /// fetched and kept, else the cached copy's staleness.
    async fn fetch_and_keep(&self, r: &Resource, key: &str, now: i64) -> Result<Fetched, EndorseError> {
        let cached = self.cache.get(key).await;
        if let Some(c) = cached.as_ref().filter(|c| c.next_update.is_none_or(|n| now < n)) {
            return Ok(c.clone());
        }
        match self.fetch(r, now).await {
            Ok(f) => {
                self.cache.put(key, &f).await;
                Ok(f)
            }
            Err(e) => {
                if matches!(e, EndorseError::NotFound { .. }) {
                    self.remember_not_found(key, &e, NOT_FOUND_TTL);
                } else {
                    self.remember_not_found(key, &e, FAILURE_TTL);
                }
                match cached {
                    Some(c) => Err(stale(key, &c, &e.to_string())),
                    None => Err(e),
                }
            }
        }
    }

    /// The vendor's 404 for `key`, while it is recent.
    fn recently_not_found(&self, key: &str) -> Option<EndorseError> {
        let mut m = self.not_found.lock().ok()?;
        match m.get(key) {
            Some((at, ttl, e)) if at.elapsed() < *ttl => Some(e.clone()),
            Some(_) => {
                m.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember_not_found(&self, key: &str, e: &EndorseError, ttl: std::time::Duration) {
        if let Ok(mut m) = self.not_found.lock() {
            if m.len() >= MAX_NOT_FOUND {
                m.retain(|_, (at, ttl, _)| at.elapsed() < *ttl);
                if m.len() >= MAX_NOT_FOUND {
                    if let Some(oldest) = m.iter().min_by_key(|(_, (at, _, _))| *at).map(|(k, _)| k.clone()) {
                        m.remove(&oldest);
                    }
                }
            }
            m.insert(key.to_string(), (std::time::Instant::now(), ttl, e.clone()));
        }
    }

    async fn fetch(&self, r: &Resource, now: i64) -> Result<Fetched, EndorseError> {
        let out = self.fetch_from_source(r, now).await;
        let outcome = usize::from(out.is_err());
        self.stats.fetches[source_index(r)][outcome].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        out
    }

    async fn fetch_from_source(&self, r: &Resource, now: i64) -> Result<Fetched, EndorseError> {
        match r {
            Resource::TcbInfo { .. } | Resource::QeIdentity { .. } | Resource::PckCrl { .. } | Resource::RootCaCrl => {
                pcs::fetch(&self.http, &self.sources, r, now).await
            }
            Resource::Vcek { .. } | Resource::AmdChain { .. } | Resource::AmdCrl { .. } => {
                kds::fetch(&self.http, &self.sources, r, now).await
            }
            Resource::Rim { .. } => nvidia::fetch(&self.http, &self.sources, r, now).await,
            Resource::Ocsp { .. } => nvidia::fetch_ocsp(&self.http, &self.sources, r, now).await,
        }
    }
}

fn stale(key: &str, c: &Fetched, why: &str) -> EndorseError {
    let since = c
        .next_update
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "?".into());
    EndorseError::Stale { what: key.to_string(), since, origin: c.source.clone(), message: why.to_string() }
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}
