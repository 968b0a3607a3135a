//! A private PostgreSQL cluster for tests: real PostgreSQL (Debian's
//! `postgresql` package), no mocks, no system service.
//!
//! [`PgCluster::start`] runs `initdb` in a fresh temporary folder and
//! `pg_ctl start` on a free loopback port with its own unix-socket folder;
//! dropping the value (also while a failed test unwinds) stops the server
//! and removes the folder. `initdb` refuses to run as root, so when the tests
//! run as root (CI, containers) the PostgreSQL programs run as the `postgres`
//! user through `runuser`, in a folder owned by that user.
//!
//! When the PostgreSQL programs are not installed the tests print a loud
//! SKIPPED message, and fail instead when `CI` is set (`.ci/run` installs
//! them), like the swtpm and SoftHSM tests.
//!
//! Pure `std`, so other crates' tests can include it with
//! `#[path = "../../cachet-store/tests/common/pg.rs"] mod pg;`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The folder holding `initdb`, `pg_ctl` and `createdb`: the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps them off `PATH`), else `PATH`.
pub fn bin_dir() -> Option<PathBuf> {
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

/// Whether the tests can run PostgreSQL; panics under `CI` when they cannot.
pub fn available() -> Option<PathBuf> {
    let found = bin_dir();
    if found.is_none() {
        let msg = "PostgreSQL (initdb, pg_ctl, createdb) is not installed: the PostgreSQL store tests cannot run \
                   (apt-get install -y postgresql; .ci/run installs it)";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("\n**********\nSKIPPED: {msg}\n**********\n");
    }
    found
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// A running private PostgreSQL server; stopped and deleted on drop.
pub struct PgCluster {
    root: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    databases: AtomicUsize,
}

impl PgCluster {
    /// Start a fresh cluster, or `None` (after the SKIPPED message) when
    /// PostgreSQL is not installed and `CI` is not set.
    pub fn start(tag: &str) -> Option<PgCluster> {
        let bin = available()?;
        let as_postgres = running_as_root();
        let base = if as_postgres { PathBuf::from("/tmp") } else { std::env::temp_dir() };
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = base.join(format!("cachet-pg-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sock")).expect("cluster folder");
        let mut c = PgCluster { data: root.join("data"), root, bin, port: 0, as_postgres, databases: AtomicUsize::new(0) };
        if as_postgres {
            let out = Command::new("chown").args(["-R", "postgres:"]).arg(&c.root).output().expect("run chown");
            assert!(out.status.success(), "chown postgres: {}", String::from_utf8_lossy(&out.stderr));
        }
        let data = c.data.display().to_string();
        let out = c.pg("initdb", &["-D", &data, "-U", "cachet", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        assert!(out.status.success(), "initdb failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        // A free port can be taken between probing and binding: retry.
        let mut last = String::new();
        for _ in 0..5 {
            c.port = free_port();
            let opts = format!("-k {} -p {} -h 127.0.0.1 -F -c max_connections=200", c.root.join("sock").display(), c.port);
            let log = c.root.join("server.log").display().to_string();
            let out = c.pg("pg_ctl", &["-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "60", "start"]);
            if out.status.success() {
                return Some(c);
            }
            last = format!(
                "{}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("pg_ctl start failed: {last}");
    }

    /// Run a PostgreSQL program (as `postgres` when we are root).
    fn pg(&self, program: &str, args: &[&str]) -> Output {
        self.try_pg(program, args).unwrap_or_else(|e| panic!("run {program}: {e}"))
    }

    /// [`Self::pg`] without panicking (for `Drop`).
    fn try_pg(&self, program: &str, args: &[&str]) -> std::io::Result<Output> {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir(&self.root).output()
    }

    /// Stop the server now (`-m immediate`, as a crash would): the database is gone.
    pub fn stop(&self) {
        let data = self.data.display().to_string();
        let out = self.pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` (user `cachet`, trust authentication).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://cachet@127.0.0.1:{}/{db}", self.port)
    }

    /// Create a new, empty database and return its URL.
    pub fn create_database(&self) -> String {
        let name = format!("cachet_{}", self.databases.fetch_add(1, Ordering::SeqCst));
        let port = self.port.to_string();
        let out = self.pg("createdb", &["-h", "127.0.0.1", "-p", &port, "-U", "cachet", &name]);
        assert!(out.status.success(), "createdb: {}", String::from_utf8_lossy(&out.stderr));
        self.url(&name)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let data = self.data.display().to_string();
            let _ = self.try_pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}
