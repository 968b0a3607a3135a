//! Prometheus metrics, exposed as text at `/metrics`.
//!
//! Each series has the type of what it measures: a total since start that
//! only grows is a counter (`_total`), even when it is copied from another
//! component's running total at scrape time; a level that can go down
//! (entries held, an age) is a gauge; a latency is a histogram.

use axum::http::StatusCode;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Buckets of `cachet_http_request_duration_seconds`: 0.5 ms to 10 s.
pub const HTTP_DURATION_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The service's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `cachet_attestations_total{tee, outcome}`; outcome is the EAR status
    /// (`affirming`, `warning`, `contraindicated`) or `refused` / `error`.
    pub attestations: IntCounterVec,
    /// `cachet_verification_seconds{tee}`: time spent verifying evidence.
    pub verification_seconds: HistogramVec,
    /// `cachet_nonces_issued_total{}`.
    pub nonces_issued: IntCounterVec,
    /// `cachet_http_requests_total{method, route, status}`: responses by
    /// method, route template (`unmatched` for none) and status code.
    http_requests: IntCounterVec,
    /// `cachet_http_request_duration_seconds{method, route}`.
    http_duration: HistogramVec,
    /// `cachet_endorsement_cache_lookups_total{result="hit"|"miss"}` and
    /// `cachet_endorsement_cache_entries`: brought up to the verifier's
    /// cache figures at each scrape.
    cache_lookups: IntCounterVec,
    cache_entries: IntGauge,
    /// `cachet_endorsement_fetches_total{source, outcome}`: vendor fetches
    /// (`pcs`, `kds`, `nvidia`; `ok`, `error`).
    endorsement_fetches: IntCounterVec,
    /// `cachet_endorsement_cache_hits_total`: endorsements served from the store's cache.
    endorsement_cache_hits: IntCounter,
    /// `cachet_endorsement_rate_limited_total`: HTTP 429 answers from the vendors.
    endorsement_rate_limited: IntCounter,
    /// `cachet_endorsement_oldest_age_seconds`: age of the oldest endorsement held, by fetch time.
    endorsement_oldest_age: IntGauge,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let attestations =
            IntCounterVec::new(Opts::new("cachet_attestations_total", "Attestation requests by TEE and outcome"), &["tee", "outcome"])?;
        let verification_seconds = HistogramVec::new(
            HistogramOpts::new("cachet_verification_seconds", "Evidence verification latency")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["tee"],
        )?;
        let nonces_issued = IntCounterVec::new(Opts::new("cachet_nonces_issued_total", "Challenge nonces issued"), &[])?;
        let http_requests = IntCounterVec::new(
            Opts::new("cachet_http_requests_total", "HTTP responses by method, route template and status"),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new("cachet_http_request_duration_seconds", "HTTP request latency by method and route template")
                .buckets(HTTP_DURATION_BUCKETS.to_vec()),
            &["method", "route"],
        )?;
        registry.register(Box::new(attestations.clone()))?;
        registry.register(Box::new(verification_seconds.clone()))?;
        registry.register(Box::new(nonces_issued.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        let cache_lookups = IntCounterVec::new(
            Opts::new("cachet_endorsement_cache_lookups_total", "Endorsement cache lookups since start, by result"),
            &["result"],
        )?;
        let cache_entries = IntGauge::new("cachet_endorsement_cache_entries", "Verified endorsements held in the cache")?;
        registry.register(Box::new(cache_lookups.clone()))?;
        registry.register(Box::new(cache_entries.clone()))?;
        let endorsement_fetches = IntCounterVec::new(
            Opts::new("cachet_endorsement_fetches_total", "Endorsement fetches from the vendors, by source and outcome"),
            &["source", "outcome"],
        )?;
        let endorsement_cache_hits =
            IntCounter::new("cachet_endorsement_cache_hits_total", "Endorsements served from the service's cache")?;
        let endorsement_rate_limited =
            IntCounter::new("cachet_endorsement_rate_limited_total", "HTTP 429 answers from the endorsement sources")?;
        let endorsement_oldest_age =
            IntGauge::new("cachet_endorsement_oldest_age_seconds", "Age of the oldest endorsement held, since it was fetched")?;
        registry.register(Box::new(endorsement_fetches.clone()))?;
        registry.register(Box::new(endorsement_cache_hits.clone()))?;
        registry.register(Box::new(endorsement_rate_limited.clone()))?;
        registry.register(Box::new(endorsement_oldest_age.clone()))?;
        Ok(Self {
            registry,
            attestations,
            verification_seconds,
            nonces_issued,
            http_requests,
            http_duration,
            cache_lookups,
            cache_entries,
            endorsement_fetches,
            endorsement_cache_hits,
            endorsement_rate_limited,
            endorsement_oldest_age,
        })
    }

    /// Count one HTTP response. `route` is the matched route template (or
    /// `unmatched`) and `method` a bounded label, so the series stay few.
    pub fn observe_http(&self, method: &str, route: &str, status: StatusCode, seconds: f64) {
        self.http_requests.with_label_values(&[method, route, status.as_str()]).inc();
        self.http_duration.with_label_values(&[method, route]).observe(seconds);
    }

    /// Bring the endorsement series up to the endorser's counters (totals
    /// since start: each counter only moves forward) and the oldest age.
    pub fn observe_endorsements(&self, stats: &cachet_endorse::EndorserStats, oldest_age: Option<i64>) {
        for (source, outcome, n) in &stats.fetches {
            catch_up(&self.endorsement_fetches.with_label_values(&[source, outcome]), *n);
        }
        catch_up(&self.endorsement_cache_hits, stats.cache_hits);
        catch_up(&self.endorsement_rate_limited, stats.rate_limited);
        self.endorsement_oldest_age.set(oldest_age.unwrap_or(0));
    }

    /// The text exposition format, with the endorsement cache's figures.
    pub fn render(&self, cache: cachet_verify::cache::CacheStats) -> String {
        catch_up(&self.cache_lookups.with_label_values(&["hit"]), cache.hits);
        catch_up(&self.cache_lookups.with_label_values(&["miss"]), cache.misses);
        self.cache_entries.set(i64::try_from(cache.entries).unwrap_or(i64::MAX));
        let mut buf = Vec::new();
        if TextEncoder::new().encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Move a counter up to `total`, another component's running total since
/// start (a counter never goes down: a smaller total leaves it as it is).
fn catch_up(c: &IntCounter, total: u64) {
    c.inc_by(total.saturating_sub(c.get()));
}
