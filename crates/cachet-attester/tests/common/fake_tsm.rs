//! A SIMULATED kernel for configfs-tsm (Documentation/ABI/testing/configfs-tsm):
//! a user-space model of `/sys/kernel/config/tsm/report` in a temporary
//! folder, served by test threads playing the kernel. Nothing here touches a
//! real TSM; tests using it are named `simulated_*`.
//!
//! What it reproduces, as seen from user space:
//! * `mkdir report/<name>` makes an instance whose attributes appear
//!   (`inblob`, `privlevel`, `privlevel_floor` regular files, written by the
//!   attester; `outblob`, `auxblob`, `provider`, `generation` readable);
//! * `generation` counts the writes to `inblob` and `privlevel` (each
//!   open-write-close, observed through inotify, which queues the event
//!   before `close` returns), starting at 0;
//! * reading `outblob` produces the report for the *current* `inblob`
//!   (the readable attributes are FIFOs: the kernel thread computes their
//!   content when a reader opens them, as configfs does on read).
//!
//! Where it differs: configfs creates the attributes inside `mkdir`, this
//! model right after (the attester waits for them, bounded), and `rmdir`
//! of an instance fails here (ENOTEMPTY), which the attester ignores.
//!
//! It can also play *another writer* that writes `inblob` between the
//! attester's write and its read of `outblob` (`interfere`), and a broken
//! provider whose `outblob` ignores `inblob` (`stale`).
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::stat::Mode;

/// What the other writer writes when it interferes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interference {
    /// The same bytes the attester wrote (only `generation` betrays it).
    SameInblob,
    /// Other bytes (the report is then for another request).
    OtherInblob,
}

/// Makes `outblob` from `inblob`.
pub type MakeOutblob = Box<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// How the simulated provider behaves.
pub struct Provider {
    /// `provider` (`tdx_guest`, `sev_guest`).
    pub name: String,
    /// `outblob` for an `inblob`.
    pub outblob: MakeOutblob,
    /// `auxblob`, when the provider has the attribute.
    pub auxblob: Option<Vec<u8>>,
}

/// Observations and knobs shared with the test.
#[derive(Default)]
pub struct Shared {
    /// Instances created (names), in order.
    pub instances: Mutex<Vec<String>>,
    /// Every `privlevel` value written.
    pub privlevels: Mutex<Vec<String>>,
    /// Number of upcoming `outblob` reads during which another writer writes.
    pub interfere: AtomicU32,
    /// What the other writer writes.
    pub interference: Mutex<Option<Interference>>,
    /// Serve an `outblob` for an all-zero inblob whatever was written.
    pub stale: AtomicBool,
}

/// The simulated kernel; stops its threads when dropped.
pub struct FakeTsm {
    /// The root (`<root>/sys/kernel/config/tsm/report`).
    pub root: tempfile::TempDir,
    /// Shared state.
    pub shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

struct Instance {
    dir: PathBuf,
    inotify: Inotify,
    generation: u64,
}

impl FakeTsm {
    /// Start a simulated kernel with `provider`.
    pub fn start(provider: Provider) -> FakeTsm {
        let root = tempfile::tempdir().expect("temp root");
        let report_dir = root.path().join("sys/kernel/config/tsm/report");
        std::fs::create_dir_all(&report_dir).expect("report dir");
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = Arc::new(Mutex::new(Vec::new()));
        let provider = Arc::new(provider);
        // Watch before returning, so no mkdir goes unseen.
        let ino = Inotify::init(InitFlags::IN_NONBLOCK).expect("inotify");
        ino.add_watch(&report_dir, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ONLYDIR).expect("watch report dir");
        let watcher = {
            let (shared, stop, threads) = (shared.clone(), stop.clone(), threads.clone());
            std::thread::spawn(move || watch_report_dir(ino, &report_dir, provider, shared, stop, threads))
        };
        threads.lock().unwrap().push(watcher);
        FakeTsm { root, shared, stop, threads }
    }

    /// The report folder.
    pub fn report_dir(&self) -> PathBuf {
        self.root.path().join("sys/kernel/config/tsm/report")
    }
}

impl Drop for FakeTsm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let threads: Vec<_> = self.threads.lock().unwrap().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

fn nap() {
    std::thread::sleep(Duration::from_millis(1));
}

/// The "kernel" side of mkdir: populate each new instance.
fn watch_report_dir(
    ino: Inotify,
    report_dir: &Path,
    provider: Arc<Provider>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    while !stop.load(Ordering::SeqCst) {
        let events = match ino.read_events() {
            Ok(e) => e,
            Err(_) => {
                nap();
                continue;
            }
        };
        for ev in events {
            let Some(name) = ev.name else { continue };
            let dir = report_dir.join(&name);
            if !dir.is_dir() {
                continue;
            }
            shared.instances.lock().unwrap().push(name.to_string_lossy().into_owned());
            let inst = populate(&dir, &provider);
            let inst = Arc::new(Mutex::new(inst));
            let mut attrs = vec!["outblob", "provider", "generation"];
            if provider.auxblob.is_some() {
                attrs.push("auxblob");
            }
            for attr in attrs {
                let (inst, provider, shared, stop) = (inst.clone(), provider.clone(), shared.clone(), stop.clone());
                let t = std::thread::spawn(move || serve(attr, inst, provider, shared, stop));
                threads.lock().unwrap().push(t);
            }
            // `generation` appears last: the instance is complete.
            let g = dir.join("generation");
            nix::unistd::mkfifo(&g, Mode::S_IRUSR | Mode::S_IWUSR).expect("mkfifo generation");
        }
    }
}

fn populate(dir: &Path, provider: &Provider) -> Instance {
    std::fs::write(dir.join("inblob"), b"").expect("inblob");
    std::fs::write(dir.join("privlevel"), b"").expect("privlevel");
    std::fs::write(dir.join("privlevel_floor"), b"0\n").expect("privlevel_floor");
    // Count writes from now on.
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK).expect("inotify");
    inotify.add_watch(dir, AddWatchFlags::IN_CLOSE_WRITE).expect("watch instance");
    let mut fifos = vec!["outblob", "provider"];
    if provider.auxblob.is_some() {
        fifos.push("auxblob");
    }
    for f in fifos {
        nix::unistd::mkfifo(&dir.join(f), Mode::S_IRUSR | Mode::S_IWUSR).expect("mkfifo");
    }
    Instance { dir: dir.to_path_buf(), inotify, generation: 0 }
}

/// Count the writes observed so far (and record privlevel values).
fn account(inst: &mut Instance, shared: &Shared) {
    while let Ok(events) = inst.inotify.read_events() {
        if events.is_empty() {
            break;
        }
        for ev in events {
            match ev.name.as_ref().and_then(|n| n.to_str()) {
                Some("inblob") => inst.generation += 1,
                Some("privlevel") => {
                    inst.generation += 1;
                    let v = std::fs::read_to_string(inst.dir.join("privlevel")).unwrap_or_default();
                    shared.privlevels.lock().unwrap().push(v);
                }
                _ => {}
            }
        }
    }
}

/// Serve one readable attribute: each time a reader opens it, compute and
/// write the content, close (the reader sees end of file), and wait for the
/// reader to close before serving the next open (else a quick re-open could
/// append to the same read).
fn serve(attr: &'static str, inst: Arc<Mutex<Instance>>, provider: Arc<Provider>, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let (dir, path) = {
        let i = inst.lock().unwrap();
        (i.dir.clone(), i.dir.join(attr))
    };
    let closes = Inotify::init(InitFlags::IN_NONBLOCK).expect("inotify");
    closes.add_watch(&dir, AddWatchFlags::IN_CLOSE_NOWRITE).expect("watch closes");
    while !stop.load(Ordering::SeqCst) {
        let _ = closes.read_events();
        let mut f = match std::fs::OpenOptions::new().write(true).custom_flags(nix::libc::O_NONBLOCK).open(&path) {
            Ok(f) => f,
            Err(_) => {
                // Not created yet (generation), or no reader yet (ENXIO).
                nap();
                continue;
            }
        };
        let content = {
            let mut i = inst.lock().unwrap();
            // inotify merges identical unread events: count the writes so
            // far before the other writer makes an identical one.
            account(&mut i, &shared);
            if attr == "outblob" && shared.interfere.load(Ordering::SeqCst) > 0 {
                shared.interfere.fetch_sub(1, Ordering::SeqCst);
                let mut inblob = std::fs::read(i.dir.join("inblob")).unwrap_or_default();
                if *shared.interference.lock().unwrap() == Some(Interference::OtherInblob) {
                    inblob.iter_mut().for_each(|b| *b ^= 0xff);
                }
                let mut w = std::fs::OpenOptions::new().write(true).truncate(true).open(i.dir.join("inblob")).expect("other writer");
                w.write_all(&inblob).expect("other writer writes");
            }
            account(&mut i, &shared);
            match attr {
                "outblob" => {
                    let inblob = if shared.stale.load(Ordering::SeqCst) {
                        vec![0u8; 64]
                    } else {
                        std::fs::read(i.dir.join("inblob")).unwrap_or_default()
                    };
                    (provider.outblob)(&inblob)
                }
                "auxblob" => provider.auxblob.clone().unwrap_or_default(),
                "provider" => format!("{}\n", provider.name).into_bytes(),
                _ => format!("{}\n", i.generation).into_bytes(),
            }
        };
        write_nonblocking(&mut f, &content);
        drop(f);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        'reader: while std::time::Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
            if let Ok(events) = closes.read_events() {
                if events.iter().any(|e| e.name.as_ref().and_then(|n| n.to_str()) == Some(attr)) {
                    break 'reader;
                }
            }
            nap();
        }
    }
}

/// Write all of `buf` to a non-blocking FIFO, waiting while it is full.
fn write_nonblocking(f: &mut std::fs::File, mut buf: &[u8]) {
    while !buf.is_empty() {
        match f.write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => nap(),
            Err(_) => return,
        }
    }
}

/// Read a file written by the attester (test helper).
pub fn read(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut v)).expect("read");
    v
}
