//! One closed-loop level: `conc` clients, each sending its next request when
//! the previous answer arrives, round robin over the servers and the cases.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cases::Req;

/// What one server (or all together) answered.
#[derive(Default)]
pub struct Tally {
    /// Answers 200 (a token).
    pub ok: u64,
    /// Latencies of the 200 answers, µs (sorted once the level ends).
    pub lat_us: Vec<u64>,
    /// Errors by HTTP status (or `transport`): count and the first answer.
    pub errors: BTreeMap<String, (u64, String)>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.ok += o.ok;
        self.lat_us.extend(o.lat_us);
        for (k, (n, first)) in o.errors {
            self.errors.entry(k).or_insert((0, first)).0 += n;
        }
    }

    /// Errors of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }

    /// Latency percentile in µs (`p` in 0..=1).
    pub fn pct(&self, p: f64) -> Option<u64> {
        if self.lat_us.is_empty() {
            return None;
        }
        let i = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        self.lat_us.get(i).copied()
    }

    fn error(&mut self, key: String, first: impl FnOnce() -> String) {
        match self.errors.get_mut(&key) {
            Some(e) => e.0 += 1,
            None => {
                self.errors.insert(key, (1, first()));
            }
        }
    }
}

/// Result of one level.
pub struct LevelResult {
    /// Measured seconds.
    pub secs: f64,
    /// All servers together.
    pub total: Tally,
    /// Per server, in the order given.
    pub per: Vec<Tally>,
}

/// Drive `urls` for `secs` seconds or `max` requests: request `n` goes to
/// server `n mod k` with case `(n div k) mod cases`, so every server gets
/// the whole mix.
pub async fn level(client: &reqwest::Client, urls: &[String], reqs: &Arc<Vec<Req>>, conc: usize, secs: u64, max: u64) -> LevelResult {
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let t0 = Instant::now();
    let urls: Arc<Vec<String>> = Arc::new(urls.iter().map(|u| format!("{u}/v1/attest")).collect());
    let k = urls.len().max(1) as u64;
    let mut tasks = Vec::new();
    for _ in 0..conc.max(1) {
        let (client, urls, reqs, next) = (client.clone(), urls.clone(), reqs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut per: Vec<Tally> = urls.iter().map(|_| Tally::default()).collect();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= max || Instant::now() >= deadline {
                    break;
                }
                let s = (n % k) as usize;
                let (Some(url), Some(r), Some(tally)) = (urls.get(s), reqs.get(((n / k) % reqs.len() as u64) as usize), per.get_mut(s))
                else {
                    break;
                };
                let t = Instant::now();
                let resp = client.post(url).header("content-type", "application/json").body(r.body.clone()).send().await;
                match resp {
                    Ok(resp) if resp.status().as_u16() == 200 => {
                        let _ = resp.bytes().await;
                        tally.ok += 1;
                        tally.lat_us.push(t.elapsed().as_micros() as u64);
                    }
                    Ok(resp) => {
                        let code = resp.status().as_u16();
                        let body = resp.text().await.unwrap_or_default();
                        tally.error(code.to_string(), || format!("{}: {}", r.tee, body.chars().take(300).collect::<String>()));
                    }
                    Err(e) => tally.error("transport".into(), || format!("{}: {e}", r.tee)),
                }
            }
            per
        }));
    }
    let mut per: Vec<Tally> = urls.iter().map(|_| Tally::default()).collect();
    for t in tasks {
        if let Ok(p) = t.await {
            for (a, b) in per.iter_mut().zip(p) {
                a.merge(b);
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut total = Tally::default();
    for p in per.iter_mut() {
        p.lat_us.sort_unstable();
        total.ok += p.ok;
        total.lat_us.extend_from_slice(&p.lat_us);
        for (k, (n, first)) in &p.errors {
            total.errors.entry(k.clone()).or_insert((0, first.clone())).0 += n;
        }
    }
    total.lat_us.sort_unstable();
    LevelResult { secs, total, per }
}

/// `cachet_verification_seconds` sum and count over all families, from a
/// server's `/metrics` (`None` when it does not answer them).
pub async fn verification_seconds(client: &reqwest::Client, url: &str) -> Option<(f64, f64)> {
    let text = client.get(format!("{url}/metrics")).send().await.ok()?.error_for_status().ok()?.text().await.ok()?;
    let (mut sum, mut count, mut seen) = (0.0, 0.0, false);
    for line in text.lines() {
        let (name, value) = match line.split_once(' ') {
            Some((n, v)) if !n.starts_with('#') => (n, v.trim()),
            _ => continue,
        };
        let metric = name.split('{').next().unwrap_or("");
        let Ok(v) = value.parse::<f64>() else { continue };
        match metric {
            "cachet_verification_seconds_sum" => (sum, seen) = (sum + v, true),
            "cachet_verification_seconds_count" => count += v,
            _ => {}
        }
    }
    seen.then_some((sum, count))
}
