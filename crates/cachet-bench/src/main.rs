//! `cachet-loadgen`: load test of the attestation service.
//!
//! Drives `POST /v1/attest` on loopback with real evidence from
//! `testdata/vectors` (one accepted case per family, round robin, each
//! verified at its own instant: the server runs with
//! `--allow-verification-time`), at several concurrency levels (closed
//! loop: each client sends its next request when the previous answer
//! arrives). Reports attestations per second, p50/p99 latency and the
//! server's peak resident memory per level (Linux `VmHWM`, reset between
//! levels through `/proc/PID/clear_refs`).
//!
//! Without `--url` it starts `cachet serve` itself on a free loopback port
//! with a fresh data directory, and stops it at the end. Every level is
//! bounded in time (`--seconds`) and in count (`--max-requests`); only
//! loopback addresses are accepted.
//!
//! ```text
//! cargo build --release -p cachet -p cachet-bench
//! target/release/cachet-loadgen --concurrency 1,4,16 --seconds 20
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cachet_verify::selftest::parse_cases;
use cachet_verify::Endorsement;
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
#[command(name = "cachet-loadgen", about = "Load test of POST /v1/attest on loopback")]
struct Args {
    /// Base URL of a running server (loopback only); without it one is started.
    #[arg(long)]
    url: Option<String>,
    /// PID of the server given by --url, to report its peak memory.
    #[arg(long)]
    pid: Option<u32>,
    /// The `cachet` binary to start when no --url is given.
    #[arg(long, default_value = "target/release/cachet")]
    cachet: PathBuf,
    /// Folder with cases.json and the evidence.
    #[arg(long, default_value = "testdata/vectors")]
    vectors: PathBuf,
    /// Concurrency levels, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    concurrency: Vec<usize>,
    /// Measured seconds per level.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Most requests per level.
    #[arg(long, default_value_t = 100_000)]
    max_requests: u64,
    /// Unmeasured requests before each level.
    #[arg(long, default_value_t = 20)]
    warmup: u64,
    /// Cases to send (ids, repeatable); default: the first accepted case of each family.
    #[arg(long = "case")]
    cases: Vec<String>,
    /// Also measure each family alone at this concurrency.
    #[arg(long)]
    per_family: Option<usize>,
}

/// One prepared request.
struct Req {
    tee: String,
    body: Vec<u8>,
}

fn read_endorsements(root: &Path, rel: &str) -> Result<Vec<Endorsement>, String> {
    let p = root.join(rel);
    let mut files = Vec::new();
    if p.is_dir() {
        let rd = std::fs::read_dir(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        files.extend(rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|f| f.is_file()));
        files.sort();
    } else {
        files.push(p);
    }
    files
        .into_iter()
        .map(|f| {
            std::fs::read(&f).map(|bytes| Endorsement { name: f.display().to_string(), bytes }).map_err(|e| format!("{}: {e}", f.display()))
        })
        .collect()
}

fn requests(args: &Args) -> Result<Vec<Req>, String> {
    let text = std::fs::read_to_string(args.vectors.join("cases.json")).map_err(|e| format!("cases.json: {e}"))?;
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for c in parse_cases(&text)? {
        let wanted = if args.cases.is_empty() { c.expect == "accept" && !seen.contains(&c.tee) } else { args.cases.contains(&c.id) };
        if !wanted {
            continue;
        }
        seen.push(c.tee.clone());
        let raw = std::fs::read(args.vectors.join(&c.evidence)).map_err(|e| format!("{}: {e}", c.evidence))?;
        let mut ends = Vec::new();
        for e in &c.endorsements {
            ends.extend(read_endorsements(&args.vectors, e)?);
        }
        let s = c.subject(&raw, ends)?;
        let body = json!({
            "tee": c.tee,
            "evidence": STANDARD.encode(&s.evidence),
            "endorsements": s.endorsements.iter().map(|e| json!({"name": e.name.rsplit('/').next().unwrap_or(""), "data": STANDARD.encode(&e.bytes)})).collect::<Vec<_>>(),
            "at": c.verify_at,
        });
        out.push(Req { tee: c.tee.clone(), body: serde_json::to_vec(&body).map_err(|e| e.to_string())? });
    }
    if out.is_empty() {
        return Err("no cases selected".into());
    }
    Ok(out)
}

/// A server this program started (stopped on drop).
struct Spawned {
    child: std::process::Child,
    dir: PathBuf,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn_server(cachet: &Path) -> Result<(Spawned, String), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let dir = std::env::temp_dir().join(format!("cachet-loadgen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let child = std::process::Command::new(cachet)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--allow-verification-time", "--data-dir"])
        .arg(&dir)
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{}: {e}", cachet.display()))?;
    Ok((Spawned { child, dir }, format!("http://127.0.0.1:{port}")))
}

fn is_loopback(url: &str) -> bool {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or("");
    let host = rest.split('/').next().unwrap_or("");
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    host == "localhost" || host == "[::1]" || host.starts_with("127.")
}

fn reset_peak(pid: Option<u32>) {
    if let Some(p) = pid {
        let _ = std::fs::write(format!("/proc/{p}/clear_refs"), "5");
    }
}

fn peak_mib(pid: Option<u32>) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Result of one level.
struct Level {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    secs: f64,
    lat_us: Vec<u64>,
}

async fn level(client: &reqwest::Client, url: &str, reqs: &Arc<Vec<Req>>, conc: usize, secs: u64, max: u64) -> Level {
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, url, reqs, next) = (client.clone(), url.to_string(), reqs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= max || Instant::now() >= deadline {
                    break;
                }
                let Some(r) = reqs.get((n % reqs.len() as u64) as usize) else { break };
                let t = Instant::now();
                let resp =
                    client.post(format!("{url}/v1/attest")).header("content-type", "application/json").body(r.body.clone()).send().await;
                match resp {
                    Ok(resp) if resp.status().as_u16() == 200 => {
                        let _ = resp.bytes().await;
                        ok += 1;
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    Ok(resp) => {
                        errors += 1;
                        let code = resp.status().as_u16();
                        let text = resp.text().await.unwrap_or_default();
                        first_error.get_or_insert_with(|| format!("{} {code}: {}", r.tee, text.chars().take(200).collect::<String>()));
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{}: {e}", r.tee));
                    }
                }
            }
            (lat, ok, errors, first_error)
        }));
    }
    let mut out = Level { ok: 0, errors: 0, first_error: None, secs: 0.0, lat_us: Vec::new() };
    for t in tasks {
        if let Ok((lat, ok, errors, fe)) = t.await {
            out.lat_us.extend(lat);
            out.ok += ok;
            out.errors += errors;
            if out.first_error.is_none() {
                out.first_error = fe;
            }
        }
    }
    out.secs = t0.elapsed().as_secs_f64();
    out.lat_us.sort_unstable();
    out
}

fn pct(sorted: &[u64], p: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    let us = sorted.get(i).copied().unwrap_or(0) as f64;
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

async fn run_levels(
    client: &reqwest::Client,
    url: &str,
    reqs: Arc<Vec<Req>>,
    levels: &[usize],
    args: &Args,
    pid: Option<u32>,
    label: &str,
) {
    for &c in levels {
        // Warm-up (connections, caches, the server's first key use).
        let _ = level(client, url, &reqs, c.max(1), 30, args.warmup).await;
        reset_peak(pid);
        let l = level(client, url, &reqs, c.max(1), args.seconds, args.max_requests).await;
        let rate = l.ok as f64 / l.secs.max(1e-9);
        let mem = peak_mib(pid).map(|m| format!("{m:.0} MiB")).unwrap_or_else(|| "-".into());
        println!(
            "| {label} | {c} | {} | {} | {rate:.0} | {} | {} | {} | {mem} |",
            l.ok + l.errors,
            l.errors,
            pct(&l.lat_us, 0.50),
            pct(&l.lat_us, 0.99),
            pct(&l.lat_us, 1.0),
        );
        if let Some(e) = l.first_error {
            println!("|   first error: {e} |");
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let reqs = match requests(&args) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("cachet-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let mut _spawned = None;
    let (url, pid) = match &args.url {
        Some(u) if is_loopback(u) => (u.trim_end_matches('/').to_string(), args.pid),
        Some(u) => {
            eprintln!("cachet-loadgen: {u} is not a loopback address");
            return ExitCode::from(2);
        }
        None => match spawn_server(&args.cachet) {
            Ok((s, u)) => {
                let pid = Some(s.child.id());
                _spawned = Some(s);
                (u, pid)
            }
            Err(e) => {
                eprintln!("cachet-loadgen: cannot start the server: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(1024).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cachet-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    // Wait for the server.
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{url}/healthz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            eprintln!("cachet-loadgen: {url} did not become healthy");
            return ExitCode::from(2);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let families: Vec<&str> = reqs.iter().map(|r| r.tee.as_str()).collect();
    println!("server {url}, {cores} cores shared by server and load generator, {} s per level", args.seconds);
    println!("mix (round robin): {}", families.join(", "));
    println!();
    println!("| mix | concurrency | requests | errors | attestations/s | p50 | p99 | max | server peak RSS |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    run_levels(&client, &url, reqs.clone(), &args.concurrency, &args, pid, "all families").await;
    if let Some(c) = args.per_family {
        for r in reqs.iter() {
            let one = Arc::new(vec![Req { tee: r.tee.clone(), body: r.body.clone() }]);
            run_levels(&client, &url, one, &[c], &args, pid, &r.tee).await;
        }
    }
    ExitCode::SUCCESS
}
