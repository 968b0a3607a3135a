//! Prometheus metrics, exposed as text at `/metrics`.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

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
    /// `cachet_http_requests_total{status}` by status class.
    pub http_requests: IntCounterVec,
    /// `cachet_endorsement_cache_lookups{result="hit"|"miss"}` and
    /// `cachet_endorsement_cache_entries`: read from the verifier's cache
    /// at each scrape.
    cache_lookups: IntGaugeVec,
    cache_entries: IntGauge,
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
        let http_requests = IntCounterVec::new(Opts::new("cachet_http_requests_total", "HTTP responses by status class"), &["status"])?;
        registry.register(Box::new(attestations.clone()))?;
        registry.register(Box::new(verification_seconds.clone()))?;
        registry.register(Box::new(nonces_issued.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        let cache_lookups = IntGaugeVec::new(
            Opts::new("cachet_endorsement_cache_lookups", "Endorsement cache lookups since start, by result"),
            &["result"],
        )?;
        let cache_entries = IntGauge::new("cachet_endorsement_cache_entries", "Verified endorsements held in the cache")?;
        registry.register(Box::new(cache_lookups.clone()))?;
        registry.register(Box::new(cache_entries.clone()))?;
        Ok(Self { registry, attestations, verification_seconds, nonces_issued, http_requests, cache_lookups, cache_entries })
    }

    /// The text exposition format, with the endorsement cache's figures.
    pub fn render(&self, cache: cachet_verify::cache::CacheStats) -> String {
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.cache_lookups.with_label_values(&["hit"]).set(clamp(cache.hits));
        self.cache_lookups.with_label_values(&["miss"]).set(clamp(cache.misses));
        self.cache_entries.set(i64::try_from(cache.entries).unwrap_or(i64::MAX));
        let mut buf = Vec::new();
        if TextEncoder::new().encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
