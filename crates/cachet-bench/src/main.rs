//! `cachet-loadgen`: load test of the attestation service.
//!
//! Drives `POST /v1/attest` on loopback with real evidence from
//! `testdata/vectors` (one accepted case per family, round robin, each
//! verified at its own instant: the server runs with
//! `--allow-verification-time`), at several concurrency levels (closed
//! loop: each client sends its next request when the previous answer
//! arrives). Per level it reports attestations per second, p50/p99/max
//! latency, errors by HTTP status (with the first answer of each), the
//! server's CPU time per attestation (`/proc/PID/stat`), its ratio to the
//! warm in-process verification cost of the same mix (measured first, in
//! this run, through `cachet_verify::cache` as the server verifies), the
//! load generator's own CPU per attestation and the server's peak resident
//! memory (Linux `VmHWM`, reset between levels through `/proc/PID/clear_refs`).
//!
//! Servers:
//! - without `--url` it starts `cachet serve` itself (SQLite) on a free
//!   loopback port with a fresh data directory;
//! - `--url A,B,...` drives running servers (replicas) round robin, with
//!   `--pid` their PIDs in the same order for CPU and memory;
//! - `--postgres` starts a private PostgreSQL cluster and `--replicas N`
//!   servers on it (one issuer, one key-encryption key).
//!
//! With several servers every level is measured on the first alone, then on
//! all, and the report gives the scaling. Everything started here is stopped
//! at the end, on an error and on Ctrl-C. Every level is bounded in time
//! (`--seconds`) and in count (`--max-requests`); only loopback addresses are
//! accepted. `--json FILE` writes every figure as JSON too.
//!
//! ```text
//! cargo build --release -p cachet -p cachet-bench
//! target/release/cachet-loadgen --concurrency 1,4,16 --seconds 20
//! target/release/cachet-loadgen --postgres --replicas 2 --concurrency 16 --seconds 20 --json load.json
//! ```

mod cases;
mod load;
mod procs;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde_json::{json, Value};

use cases::{requests, warm_verify, Req, Warm};
use load::{level, verification_seconds, LevelResult, Tally};
use procs::{cluster_cpu_seconds, cpu_seconds, peak_mib, reset_peak, spawn_server, wait_healthy, Fleet, PgCluster};

#[derive(Parser)]
#[command(name = "cachet-loadgen", about = "Load test of POST /v1/attest on loopback")]
struct Args {
    /// Base URLs of running servers (loopback only), comma separated:
    /// replicas, driven round robin. Without it one is started.
    #[arg(long, value_delimiter = ',')]
    url: Vec<String>,
    /// PIDs of the servers given by --url, same order: their CPU time and peak memory.
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// Start a private PostgreSQL cluster and --replicas servers on it.
    #[arg(long, conflicts_with = "url")]
    postgres: bool,
    /// Servers to start with --postgres.
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// The `cachet` binary to start when no --url is given.
    #[arg(long, default_value = "target/release/cachet")]
    cachet: PathBuf,
    /// More options for the `cachet serve` processes started here (repeatable,
    /// e.g. --server-arg=--max-concurrent-verifications=4).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Let the servers started here fetch endorsements from the vendors
    /// (Intel PCS, AMD KDS, NVIDIA). By default they run `--offline`, so they
    /// verify the endorsements the requests carry, as the in-process
    /// measurement does, and never wait on the network.
    #[arg(long)]
    online: bool,
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
    /// Seconds of warm in-process verification of the mix (before the levels).
    #[arg(long, default_value_t = 2.0)]
    verify_seconds: f64,
    /// Cases to send (ids, repeatable); default: the first accepted case of each family.
    #[arg(long = "case")]
    cases: Vec<String>,
    /// Also measure each family alone at this concurrency.
    #[arg(long)]
    per_family: Option<usize>,
    /// Also write every figure as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A server under load.
struct Server {
    name: String,
    url: String,
    pid: Option<u32>,
}

fn is_loopback(url: &str) -> bool {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or("");
    let host = rest.split('/').next().unwrap_or("");
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    host == "localhost" || host == "[::1]" || host.starts_with("127.")
}

fn us(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(us) if us >= 1000.0 => format!("{:.1} ms", us / 1000.0),
        Some(us) => format!("{us:.0} µs"),
    }
}

fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map(f).unwrap_or_else(|| "-".into())
}

/// What the run has: servers, the database, the client, the mix's warm cost.
struct Ctx<'a> {
    args: &'a Args,
    client: reqwest::Client,
    servers: Vec<Server>,
    pg_pid: Option<u32>,
    warm: Warm,
    levels: Vec<Value>,
}

/// One measured level on servers `on` (indices).
struct Measured {
    res: LevelResult,
    cpu: Vec<Option<f64>>,
    rss: Vec<Option<f64>>,
    db_cpu: Option<f64>,
    own_cpu: Option<f64>,
    /// Mean `cachet_verification_seconds` per verification over the level, all servers.
    verify_wall: Option<f64>,
}

fn per_att(cpu: Option<f64>, ok: u64) -> Option<f64> {
    (ok > 0).then_some(())?;
    Some(cpu? * 1e6 / ok as f64)
}

fn sum(v: &[Option<f64>]) -> Option<f64> {
    v.iter().try_fold(0.0, |a, x| Some(a + (*x)?))
}

impl Ctx<'_> {
    async fn measure(&self, reqs: &Arc<Vec<Req>>, on: &[usize], conc: usize) -> Measured {
        let urls: Vec<String> = on.iter().map(|&i| self.servers[i].url.clone()).collect();
        let pids: Vec<Option<u32>> = on.iter().map(|&i| self.servers[i].pid).collect();
        // Warm-up (connections, caches, the server's first key use).
        let _ = level(&self.client, &urls, reqs, conc, 30, self.args.warmup).await;
        pids.iter().flatten().for_each(|&p| reset_peak(p));
        let cpu_of = |p: &Option<u32>| p.and_then(|p| cpu_seconds(&p.to_string()));
        let cpu0: Vec<Option<f64>> = pids.iter().map(cpu_of).collect();
        let (db0, own0) = (self.pg_pid.and_then(cluster_cpu_seconds), cpu_seconds("self"));
        let v0 = self.verification_totals(&urls).await;
        let res = level(&self.client, &urls, reqs, conc, self.args.seconds, self.args.max_requests).await;
        let cpu1: Vec<Option<f64>> = pids.iter().map(cpu_of).collect();
        let (db1, own1) = (self.pg_pid.and_then(cluster_cpu_seconds), cpu_seconds("self"));
        let v1 = self.verification_totals(&urls).await;
        let verify_wall = match (v0, v1) {
            (Some((s0, n0)), Some((s1, n1))) if n1 > n0 => Some((s1 - s0) / (n1 - n0)),
            _ => None,
        };
        let cpu = cpu0.iter().zip(&cpu1).map(|(a, b)| Some(((*b)? - (*a)?).max(0.0))).collect();
        let rss = pids.iter().map(|p| p.and_then(peak_mib)).collect();
        let diff = |a: Option<f64>, b: Option<f64>| Some((b? - a?).max(0.0));
        Measured { res, cpu, rss, db_cpu: diff(db0, db1), own_cpu: diff(own0, own1), verify_wall }
    }

    /// `cachet_verification_seconds` sum and count over `urls` (`None` if one does not say).
    async fn verification_totals(&self, urls: &[String]) -> Option<(f64, f64)> {
        let (mut sum, mut count) = (0.0, 0.0);
        for u in urls {
            let (s, n) = verification_seconds(&self.client, u).await?;
            (sum, count) = (sum + s, count + n);
        }
        Some((sum, count))
    }

    /// Print one table row (and its errors), return its JSON.
    #[allow(clippy::too_many_arguments)]
    fn row(
        &self,
        mix: &str,
        servers: &str,
        conc: usize,
        t: &Tally,
        secs: f64,
        cpu: Option<f64>,
        own: Option<f64>,
        db: Option<f64>,
        rss: Option<f64>,
        verify_wall: Option<f64>,
        warm_s: f64,
    ) -> Value {
        let errors = t.error_count();
        let rate = t.ok as f64 / secs.max(1e-9);
        let cpu_att = per_att(cpu, t.ok);
        let ratio = cpu_att.map(|c| c / (warm_s * 1e6));
        let (own_att, db_att) = (per_att(own, t.ok), per_att(db, t.ok));
        let pct = |p| t.pct(p).map(|v| v as f64);
        let db_cell = if self.pg_pid.is_some() { format!(" {} |", us(db_att)) } else { String::new() };
        println!(
            "| {mix} | {servers} | {conc} | {} | {errors} | {rate:.0} | {} | {} | {} | {} | {} | {} |{db_cell} {} | {} |",
            t.ok + errors,
            us(pct(0.50)),
            us(pct(0.99)),
            us(pct(1.0)),
            us(cpu_att),
            opt(ratio, |r| format!("{r:.2}×")),
            us(verify_wall.map(|v| v * 1e6)),
            us(own_att),
            opt(rss, |m| format!("{m:.0} MiB")),
        );
        for (code, (n, first)) in &t.errors {
            println!("|   errors {code}: {n}, first: {} |", first.replace('|', "/").replace('\n', " "));
        }
        json!({
            "mix": mix,
            "servers": servers,
            "concurrency": conc,
            "seconds": secs,
            "requests": t.ok + errors,
            "ok": t.ok,
            "errors": t.errors.iter().map(|(k, (n, f))| (k.clone(), json!({"count": n, "first": f}))).collect::<serde_json::Map<_, _>>(),
            "attestations_per_s": rate,
            "p50_us": t.pct(0.50),
            "p99_us": t.pct(0.99),
            "max_us": t.pct(1.0),
            "server_cpu_s": cpu,
            "server_cpu_per_attestation_us": cpu_att,
            "warm_verify_per_attestation_us": warm_s * 1e6,
            "ratio_server_cpu_to_warm_verify": ratio,
            "server_verification_wall_us": verify_wall.map(|v| v * 1e6),
            "loadgen_cpu_per_attestation_us": own_att,
            "database_cpu_per_attestation_us": db_att,
            "server_peak_rss_mib": rss,
        })
    }

    /// Measure and report `mix` at `conc` on servers `on`; per-server rows
    /// when there are several. Returns attestations/s.
    async fn report(&mut self, mix: &str, reqs: &Arc<Vec<Req>>, on: &[usize], conc: usize, warm_s: f64) -> f64 {
        let m = self.measure(reqs, on, conc).await;
        let names: Vec<&str> = on.iter().map(|&i| self.servers[i].name.as_str()).collect();
        let label = names.join("+");
        let rss_total = sum(&m.rss);
        let mut v =
            self.row(mix, &label, conc, &m.res.total, m.res.secs, sum(&m.cpu), m.own_cpu, m.db_cpu, rss_total, m.verify_wall, warm_s);
        if on.len() > 1 {
            let mut per = Vec::new();
            for (j, t) in m.res.per.iter().enumerate() {
                let name = format!("· {} of {label}", names[j]);
                per.push(self.row(mix, &name, conc, t, m.res.secs, m.cpu[j], None, None, m.rss[j], None, warm_s));
            }
            v["per_server"] = Value::Array(per);
        }
        let rate = m.res.total.ok as f64 / m.res.secs.max(1e-9);
        self.levels.push(v);
        rate
    }
}

async fn run(args: Args) -> Result<(), String> {
    let reqs = Arc::new(requests(&args.vectors, &args.cases)?);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(1024).build().map_err(|e| e.to_string())?;

    // Servers. `fleet` owns what this program starts: dropped (stopped) when
    // `run` returns or is cancelled.
    let mut fleet = Fleet::default();
    let mut servers = Vec::new();
    let mode;
    if !args.url.is_empty() {
        if !args.pid.is_empty() && args.pid.len() != args.url.len() {
            return Err(format!("{} URLs but {} PIDs: give one PID per URL, same order", args.url.len(), args.pid.len()));
        }
        for (i, u) in args.url.iter().enumerate() {
            if !is_loopback(u) {
                return Err(format!("{u} is not a loopback address"));
            }
            servers.push(Server { name: format!("r{}", i + 1), url: u.trim_end_matches('/').to_string(), pid: args.pid.get(i).copied() });
        }
        mode = "external";
    } else {
        let mut server_args: Vec<String> = if args.online { Vec::new() } else { vec!["--offline".into()] };
        server_args.extend(args.server_args.iter().cloned());
        let root = std::env::temp_dir().join(format!("cachet-loadgen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        fleet.root = Some(root.clone());
        if args.postgres {
            let n = args.replicas.max(1);
            eprintln!("starting PostgreSQL and {n} servers ...");
            let pg = PgCluster::start()?;
            let db = pg.create_database("cachet")?;
            fleet.pg = Some(pg);
            // One issuer for all; the first server creates the key-encryption
            // key, which the others get before they start.
            let issuer = "http://127.0.0.1".to_string();
            for i in 0..n {
                let dir = root.join(format!("r{}", i + 1));
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                if i > 0 {
                    let kek = root.join("r1").join("secrets-kek.key");
                    std::fs::copy(&kek, dir.join("secrets-kek.key")).map_err(|e| format!("{}: {e}", kek.display()))?;
                }
                let mut extra = vec!["--database-url".to_string(), db.clone(), "--issuer".into(), issuer.clone()];
                extra.extend(server_args.iter().cloned());
                let s = spawn_server(&args.cachet, &dir, &extra)?;
                let url = s.url.clone();
                fleet.servers.push(s);
                wait_healthy(&client, std::slice::from_ref(&url), &mut fleet.servers).await?;
            }
            mode = "postgres";
        } else {
            fleet.servers.push(spawn_server(&args.cachet, &root.join("r1"), &server_args)?);
            mode = "sqlite";
        }
        for (i, s) in fleet.servers.iter().enumerate() {
            servers.push(Server { name: format!("r{}", i + 1), url: s.url.clone(), pid: Some(s.child.id()) });
        }
    }
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    wait_healthy(&client, &urls, &mut fleet.servers).await?;

    // The warm in-process cost of the same mix, on one thread.
    let secs = args.verify_seconds.max(0.0);
    let warm = {
        let reqs = reqs.clone();
        tokio::task::spawn_blocking(move || warm_verify(&reqs, secs)).await.map_err(|e| e.to_string())?
    };

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let families: Vec<&str> = reqs.iter().map(|r| r.tee.as_str()).collect();
    let described: Vec<String> = servers
        .iter()
        .map(|s| format!("{} {} (pid {})", s.name, s.url, s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())))
        .collect();
    println!("servers ({mode}): {}", described.join(", "));
    println!("{cores} cores shared by servers and load generator, {} s per level", args.seconds);
    println!("mix (round robin): {}", families.join(", "));
    let clock = if warm.cpu_clock { "thread CPU" } else { "wall time (no thread CPU clock)" };
    println!(
        "warm in-process verification of the mix (cachet_verify::cache, one thread, {:.1} s, {} verifications): {} {clock} per attestation (wall {})",
        secs,
        warm.n,
        us(Some(warm.cpu_s * 1e6)),
        us(Some(warm.wall_s * 1e6)),
    );
    let per_case: Vec<String> = reqs.iter().zip(&warm.cases).map(|(r, c)| format!("{} {}", r.tee, us(Some(c.cpu_s * 1e6)))).collect();
    println!("  per case: {}", per_case.join(", "));
    for (r, c) in reqs.iter().zip(&warm.cases) {
        if let Some(why) = &c.refused {
            println!("  WARNING: {} ({}) is refused in process: {why}", r.tee, r.id);
        }
    }
    println!();
    let db_head = if fleet.pg.is_some() { " database CPU/attestation |" } else { "" };
    let db_rule = if fleet.pg.is_some() { "---:|" } else { "" };
    println!(
        "| mix | servers | concurrency | requests | errors | attestations/s | p50 | p99 | max | server CPU/attestation | ÷ warm verify | server verification (wall) |{db_head} load generator CPU/attestation | server peak RSS |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|{db_rule}---:|---:|");

    let pg_pid = fleet.pg.as_ref().and_then(PgCluster::pid);
    let mut ctx = Ctx { args: &args, client, servers, pg_pid, warm, levels: Vec::new() };
    let all: Vec<usize> = (0..ctx.servers.len()).collect();
    let mut scaling = Vec::new();
    let warm_mix = ctx.warm.cpu_s;
    for &c in &args.concurrency {
        let c = c.max(1);
        if all.len() > 1 {
            let one = ctx.report("all families", &reqs, &[0], c, warm_mix).await;
            let every = ctx.report("all families", &reqs, &all, c, warm_mix).await;
            scaling.push((c, one, every));
        } else {
            ctx.report("all families", &reqs, &all, c, warm_mix).await;
        }
    }
    if let Some(c) = args.per_family {
        for (i, r) in reqs.iter().enumerate() {
            let one = Arc::new(vec![Req {
                id: r.id.clone(),
                tee: r.tee.clone(),
                body: r.body.clone(),
                kind: r.kind,
                evidence: Vec::new(),
                endorsements: Vec::new(),
                at: r.at,
            }]);
            let warm_case = ctx.warm.cases[i].cpu_s;
            ctx.report(&r.tee, &one, &all, c.max(1), warm_case).await;
        }
    }
    if !scaling.is_empty() {
        println!();
        for (c, one, every) in &scaling {
            println!(
                "scaling at concurrency {c}: {} servers {every:.0}/s vs 1 server {one:.0}/s = {:.2}× (target ≥ 1.7× with two)",
                all.len(),
                every / one.max(1e-9)
            );
        }
    }

    if let Some(path) = &args.json {
        let v = json!({
            "mode": mode,
            "cores": cores,
            "seconds_per_level": args.seconds,
            "servers": ctx.servers.iter().map(|s| json!({"name": s.name, "url": s.url, "pid": s.pid})).collect::<Vec<_>>(),
            "mix": families,
            "warm_verification": {
                "seconds": secs,
                "verifications": ctx.warm.n,
                "thread_cpu_clock": ctx.warm.cpu_clock,
                "cpu_per_attestation_us": ctx.warm.cpu_s * 1e6,
                "wall_per_attestation_us": ctx.warm.wall_s * 1e6,
                "per_case": reqs.iter().zip(&ctx.warm.cases).map(|(r, c)| json!({
                    "id": r.id, "tee": r.tee, "cpu_us": c.cpu_s * 1e6, "wall_us": c.wall_s * 1e6, "rounds": c.n, "refused": c.refused,
                })).collect::<Vec<_>>(),
            },
            "levels": ctx.levels,
            "scaling": scaling.iter().map(|(c, one, every)| json!({
                "concurrency": c, "servers": all.len(), "one_per_s": one, "all_per_s": every, "ratio": every / one.max(1e-9),
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    drop(fleet);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Registered now, so that Ctrl-C or SIGTERM at any point stops what was
    // started: the run is dropped, and with it the servers and the database.
    use tokio::signal::unix::{signal, SignalKind};
    let (mut int, mut term) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("cachet-loadgen: signals: {e}");
            return ExitCode::from(2);
        }
    };
    tokio::select! {
        biased;
        _ = int.recv() => {
            eprintln!("cachet-loadgen: interrupted; stopped what it had started");
            ExitCode::from(130)
        }
        _ = term.recv() => {
            eprintln!("cachet-loadgen: terminated; stopped what it had started");
            ExitCode::from(143)
        }
        r = run(args) => match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cachet-loadgen: {e}");
                ExitCode::from(2)
            }
        },
    }
}
