//! Processes: the `cachet serve` replicas this program starts, a private
//! PostgreSQL cluster for them, and what `/proc` says about a process (CPU
//! time, peak resident memory). Everything started here is stopped when its
//! value is dropped: at the end, on an error, and on Ctrl-C / SIGTERM (the
//! run is dropped).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A port nothing listens on right now.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| format!("no free port: {e}"))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when it cannot say).
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU time (user + system, all threads, exited ones included) of a
/// process, in seconds, from `/proc/PID/stat` (`self` for this one).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is field 3,
    // utime field 14, stime field 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck())
}

/// This thread's CPU time in nanoseconds (`/proc/thread-self/schedstat`).
pub fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

/// Reset a process's peak resident memory (`VmHWM`).
pub fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// Peak resident memory (`VmHWM`) in MiB.
pub fn peak_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A `cachet serve` this program started (killed on drop).
pub struct Spawned {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Spawned {
    /// The last lines of its log (for errors).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Whether it has exited, and how.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(st)) => Some(format!("{st}")),
            _ => None,
        }
    }
}

/// Start `cachet serve` on a free loopback port with `data_dir`, the options
/// every load test needs (`--allow-verification-time`, `--rate-limit 0`: all
/// requests come from one address) and `extra`.
pub fn spawn_server(cachet: &Path, data_dir: &Path, extra: &[String]) -> Result<Spawned, String> {
    let port = free_port()?;
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let log = data_dir.join("server.log");
    let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let child = Command::new(cachet)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--allow-verification-time", "--rate-limit", "0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out)
        .spawn()
        .map_err(|e| format!("{}: {e}", cachet.display()))?;
    Ok(Spawned { child, url: format!("http://127.0.0.1:{port}"), log })
}

/// Everything this program started: servers first, then the database they
/// use, then the folder. Dropped in that order.
#[derive(Default)]
pub struct Fleet {
    pub servers: Vec<Spawned>,
    pub pg: Option<PgCluster>,
    pub root: Option<PathBuf>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.servers.clear();
        self.pg = None;
        if let Some(r) = self.root.take() {
            let _ = std::fs::remove_dir_all(r);
        }
    }
}

/// The folder holding `initdb`, `pg_ctl` and `createdb`: the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps them off `PATH`), else `PATH`.
/// (The same search as crates/cachet-store/tests/common/pg.rs.)
fn pg_bin_dir() -> Option<PathBuf> {
    let complete = |d: &Path| ["initdb", "pg_ctl", "createdb", "postgres"].iter().all(|b| d.join(b).is_file());
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, d)| complete(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Some(d);
    }
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(|d| complete(d)))
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A private PostgreSQL server (`initdb` in a temporary folder, `pg_ctl
/// start` on a free loopback port, trust authentication, user `cachet`);
/// stopped (`-m immediate`) and deleted on drop. As root the PostgreSQL
/// programs run as `postgres` through `runuser`, in a folder it owns
/// (`initdb` refuses root). Logic of crates/cachet-store/tests/common/pg.rs.
pub struct PgCluster {
    root: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PgCluster {
    /// Start a fresh cluster with `max_connections=200`.
    pub fn start() -> Result<PgCluster, String> {
        let bin = pg_bin_dir().ok_or("PostgreSQL (initdb, pg_ctl, createdb) is not installed (apt-get install -y postgresql)")?;
        let as_postgres = running_as_root();
        let base = if as_postgres { PathBuf::from("/tmp") } else { std::env::temp_dir() };
        let root = base.join(format!("cachet-loadgen-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sock")).map_err(|e| format!("{}: {e}", root.display()))?;
        // From here on, dropping `c` removes the folder (and stops the server once it has a port).
        let mut c = PgCluster { data: root.join("data"), root, bin, port: 0, as_postgres };
        if as_postgres {
            let out = Command::new("chown").args(["-R", "postgres:"]).arg(&c.root).output().map_err(|e| format!("chown: {e}"))?;
            if !out.status.success() {
                return Err(format!("chown postgres: {}", text(&out)));
            }
        }
        let data = c.data.display().to_string();
        let out = c.pg("initdb", &["-D", &data, "-U", "cachet", "--auth=trust", "-E", "UTF8", "--no-sync"])?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", text(&out)));
        }
        // A free port can be taken between probing and binding: retry.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let opts = format!("-k {} -p {port} -h 127.0.0.1 -F -c max_connections=200", c.root.join("sock").display());
            let log = c.root.join("server.log").display().to_string();
            let out = c.pg("pg_ctl", &["-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "60", "start"])?;
            if out.status.success() {
                c.port = port;
                return Ok(c);
            }
            last = format!("{}\n{}", text(&out), std::fs::read_to_string(&log).unwrap_or_default());
        }
        Err(format!("pg_ctl start failed: {last}"))
    }

    /// Run a PostgreSQL program (as `postgres` when we are root).
    fn pg(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir(&self.root).stdin(Stdio::null()).output().map_err(|e| format!("run {program}: {e}"))
    }

    /// Create database `name` and return its URL.
    pub fn create_database(&self, name: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let out = self.pg("createdb", &["-h", "127.0.0.1", "-p", &port, "-U", "cachet", name])?;
        if !out.status.success() {
            return Err(format!("createdb: {}", text(&out)));
        }
        Ok(format!("postgres://cachet@127.0.0.1:{}/{name}", self.port))
    }

    /// The postmaster's PID (`postmaster.pid`, first line).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let data = self.data.display().to_string();
            let _ = self.pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// CPU seconds of a PostgreSQL cluster: the postmaster and every process
/// whose parent it is (its backends; those that exited are in the
/// postmaster's children time, fields 16-17, once reaped).
pub fn cluster_cpu_seconds(postmaster: u32) -> Option<f64> {
    let own = std::fs::read_to_string(format!("/proc/{postmaster}/stat")).ok()?;
    let f: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let mut ticks = t(11) + t(12) + t(13) + t(14);
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().filter(|s| s.bytes().all(|b| b.is_ascii_digit())) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let g: Vec<&str> = rest.split_whitespace().collect();
        if g.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(postmaster) {
            ticks +=
                g.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) + g.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        }
    }
    Some(ticks / clk_tck())
}

/// Wait until every server answers `/healthz` (30 s), failing early when
/// one this program started has exited.
pub async fn wait_healthy(client: &reqwest::Client, urls: &[String], spawned: &mut [Spawned]) -> Result<(), String> {
    let start = Instant::now();
    for url in urls {
        loop {
            if let Ok(r) = client.get(format!("{url}/healthz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if let Some(s) = spawned.iter_mut().find(|s| &s.url == url) {
                if let Some(st) = s.exited() {
                    return Err(format!("the server for {url} exited ({st}):\n{}", s.log_tail()));
                }
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!("{url} did not become healthy"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
