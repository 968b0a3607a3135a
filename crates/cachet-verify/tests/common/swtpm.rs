//! A real software TPM for tests: Debian's `swtpm` driven with `tpm2-tools`.
//!
//! Each [`Swtpm`] has its own state folder and its own TCP ports, so tests run
//! in parallel. `swtpm_setup --create-ek-cert` with a local CA (made by
//! `swtpm_localca` inside the folder) gives the TPM an RSA 2048 and an ECC
//! P-384 EK with certificates, as a manufacturer would. There is no resource
//! manager: every helper flushes the transient objects and sessions it made.
//! The swtpm process is a child of the test and is killed (by its own id)
//! when the value is dropped.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Persistent handle of the RSA 2048 EK that swtpm_setup creates.
pub const EK_RSA: &str = "0x81010001";
/// NV index of its certificate (TCG EK Credential Profile).
pub const EK_RSA_CERT_NV: &str = "0x1c00002";
/// Persistent handle of the ECC (NIST P-384) EK that swtpm_setup creates.
pub const EK_ECC: &str = "0x81010016";
/// NV index of its certificate.
pub const EK_ECC_CERT_NV: &str = "0x1c00016";

/// Whether the tools are installed. When they are not, tests print a loud
/// message and return — unless running in CI (`CI` set), where that fails.
pub fn available() -> bool {
    let have = |bin: &str| std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file())).unwrap_or(false);
    let ok = ["swtpm", "swtpm_setup", "swtpm_localca", "tpm2_quote", "tpm2_activatecredential"].iter().all(|b| have(b));
    if !ok {
        let msg = "swtpm / swtpm-tools / tpm2-tools are not installed: the real-TPM tests cannot run \
                   (apt-get install -y swtpm swtpm-tools tpm2-tools; .ci/run installs them)";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("\n**********\nSKIPPED: {msg}\n**********\n");
    }
    ok
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Two consecutive free TCP ports on 127.0.0.1 (server, control).
fn free_port_pair() -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").expect("bind a port");
        let p = a.local_addr().expect("local addr").port();
        if p < 65000 && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// One running software TPM.
pub struct Swtpm {
    /// Private working folder (state, CA, files the tools write).
    pub dir: PathBuf,
    /// TPM command port.
    pub port: u16,
    child: Child,
}

impl Swtpm {
    /// A fresh TPM with EKs and EK certificates issued by a local CA
    /// (`swtpm_setup --create-ek-cert`), PCR banks SHA-1, SHA-256, SHA-384.
    pub fn with_ek_certs() -> Swtpm {
        let dir = new_dir();
        let state = dir.join("state");
        let ca = dir.join("ca");
        std::fs::create_dir_all(&state).expect("state dir");
        std::fs::create_dir_all(&ca).expect("ca dir");
        let localca = dir.join("swtpm-localca.conf");
        std::fs::write(
            &localca,
            format!(
                "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n",
                ca = ca.display()
            ),
        )
        .expect("localca conf");
        let options = dir.join("swtpm-localca.options");
        std::fs::write(&options, "--platform-manufacturer Cachet\n--platform-version 1\n--platform-model test\n").expect("options");
        let setup = dir.join("swtpm_setup.conf");
        std::fs::write(
            &setup,
            format!(
                "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\nactive_pcr_banks = sha1,sha256,sha384\n",
                localca.display(),
                options.display()
            ),
        )
        .expect("setup conf");
        let out = Command::new("swtpm_setup")
            .args(["--tpm2", "--create-ek-cert", "--lock-nvram", "--overwrite", "--tpmstate"])
            .arg(&state)
            .arg("--config")
            .arg(&setup)
            .output()
            .expect("run swtpm_setup");
        assert!(
            out.status.success(),
            "swtpm_setup failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Self::start_in(dir)
    }

    /// A fresh TPM with no EK (manufacturing left to the test).
    pub fn blank() -> Swtpm {
        let dir = new_dir();
        std::fs::create_dir_all(dir.join("state")).expect("state dir");
        Self::start_in(dir)
    }

    fn start_in(dir: PathBuf) -> Swtpm {
        let state = dir.join("state");
        for _attempt in 0..8 {
            let port = free_port_pair();
            let log = std::fs::File::create(dir.join("swtpm.log")).expect("log file");
            let mut child = Command::new("swtpm")
                .arg("socket")
                .arg("--tpmstate")
                .arg(format!("dir={}", state.display()))
                .arg("--tpm2")
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start swtpm");
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut up = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: port taken, retry with others
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    std::thread::sleep(Duration::from_millis(50));
                    up = matches!(child.try_wait(), Ok(None));
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if up {
                return Swtpm { dir, port, child };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("swtpm did not start: {}", std::fs::read_to_string(dir.join("swtpm.log")).unwrap_or_default());
    }

    /// A path inside the working folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Run a tpm2-tools command against this TPM; Err(stderr) on failure.
    pub fn try_tool(&self, tool: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new(tool)
            .args(args)
            .current_dir(&self.dir)
            .env("TPM2TOOLS_TCTI", format!("swtpm:host=127.0.0.1,port={}", self.port))
            .output()
            .map_err(|e| format!("cannot run {tool}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("{tool} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// Run a tpm2-tools command; panic with its error output on failure.
    pub fn tool(&self, tool: &str, args: &[&str]) -> String {
        match self.try_tool(tool, args) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    /// Flush every transient object and session (no resource manager).
    pub fn flush(&self) {
        self.tool("tpm2_flushcontext", &["-t"]);
        self.tool("tpm2_flushcontext", &["-s"]);
    }

    /// Read a file the tools wrote into the working folder.
    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    /// Write a file into the working folder.
    pub fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.path(name), bytes).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }

    /// The EK certificate (DER) stored by swtpm_setup at an NV index.
    pub fn ek_cert(&self, nv_index: &str) -> Vec<u8> {
        let file = format!("ekcert-{nv_index}.der");
        self.tool("tpm2_nvread", &[nv_index, "-C", "o", "-o", &file]);
        self.read(&file)
    }

    /// The public area (TPM2B_PUBLIC) of a persistent key.
    pub fn read_public(&self, handle: &str) -> Vec<u8> {
        let file = format!("pub-{handle}.tpm2b");
        self.tool("tpm2_readpublic", &["-c", handle, "-o", &file]);
        self.flush();
        self.read(&file)
    }

    /// The local CA's root certificate (DER), which signed the EK CA.
    pub fn local_ca_root(&self) -> Vec<u8> {
        pem_to_der(&std::fs::read(self.path("ca/swtpm-localca-rootca-cert.pem")).expect("root CA"))
    }

    /// The local CA's issuing (intermediate) certificate (DER).
    pub fn local_ca_issuer(&self) -> Vec<u8> {
        pem_to_der(&std::fs::read(self.path("ca/issuercert.pem")).expect("issuer CA"))
    }

    /// Create an AK under an EK: `alg` is `"ecc"` or `"rsa"`, `scheme`
    /// `"ecdsa"`, `"rsassa"` or `"rsapss"`. Writes `{name}.ctx` (saved
    /// context) and returns its TPM2B_PUBLIC.
    pub fn create_ak(&self, ek: &str, name: &str, alg: &str, scheme: &str) -> Vec<u8> {
        let ctx = format!("{name}.ctx");
        let public = format!("{name}.pub");
        let nm = format!("{name}.name");
        let private = format!("{name}.priv");
        self.tool(
            "tpm2_createak",
            &["-C", ek, "-c", &ctx, "-G", alg, "-g", "sha256", "-s", scheme, "-u", &public, "-n", &nm, "-r", &private],
        );
        self.flush();
        self.read(&public)
    }

    /// The AK's name as tpm2_createak reported it.
    pub fn ak_name(&self, name: &str) -> Vec<u8> {
        self.read(&format!("{name}.name"))
    }

    /// TPM2_ActivateCredential. The EK is used in the USER role: the RSA
    /// EK (low-range template, no userWithAuth) needs its policy
    /// (PolicySecret on the endorsement hierarchy); the P-384 EK
    /// (high-range template) has userWithAuth and an empty password.
    /// `cred_file` is in tpm2-tools' format.
    pub fn activate(&self, ak: &str, ek: &str, cred_file: &str) -> Result<Vec<u8>, String> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let out = format!("activated-{n}.bin");
        let ak_ctx = format!("{ak}.ctx");
        let r = if ek == EK_ECC {
            self.try_tool("tpm2_activatecredential", &["-c", &ak_ctx, "-C", ek, "-i", cred_file, "-o", &out])
        } else {
            let session = format!("session-{n}.ctx");
            self.tool("tpm2_startauthsession", &["--policy-session", "-S", &session]);
            let r = self.try_tool("tpm2_policysecret", &["-S", &session, "-c", "e"]).and_then(|_| {
                let auth = format!("session:{session}");
                self.try_tool("tpm2_activatecredential", &["-c", &ak_ctx, "-C", ek, "-i", cred_file, "-o", &out, "-P", &auth])
            });
            let _ = self.try_tool("tpm2_flushcontext", &[&session]);
            r
        };
        self.flush();
        r.map(|_| self.read(&out))
    }

    /// Extend a PCR in every listed bank with the given digests.
    pub fn extend(&self, pcr: u32, digests: &[(&str, Vec<u8>)]) {
        let spec: Vec<String> = digests.iter().map(|(b, d)| format!("{b}={}", hex::encode(d))).collect();
        self.tool("tpm2_pcrextend", &[&format!("{pcr}:{}", spec.join(","))]);
    }

    /// Read PCR values: `selection` like `"sha256:0,1,2+sha1:0"`. Returns
    /// (bank, index, value) in output order.
    pub fn pcr_read(&self, selection: &str) -> Vec<(String, u32, Vec<u8>)> {
        let text = self.tool("tpm2_pcrread", &[selection]);
        let mut bank = String::new();
        let mut out = Vec::new();
        for line in text.lines() {
            let t = line.trim();
            if let Some(b) = t.strip_suffix(':') {
                bank = b.to_string();
            } else if let Some((i, v)) = t.split_once(" : ") {
                let v = v.trim().trim_start_matches("0x");
                out.push((bank.clone(), i.trim().parse().expect("PCR index"), hex::decode(v).expect("PCR hex")));
            }
        }
        out
    }

    /// TPM2_Quote with an AK (saved context `{ak}.ctx`): returns (TPMS_ATTEST,
    /// TPMT_SIGNATURE). `scheme` is the AK's (`"ecdsa"`, `"rsassa"`,
    /// `"rsapss"`).
    pub fn quote_with(&self, ak: &str, scheme: &str, selection: &str, nonce: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let (m, s) = (format!("quote-{n}.msg"), format!("quote-{n}.sig"));
        let scheme = format!("--scheme={scheme}");
        let nonce = hex::encode(nonce);
        self.tool("tpm2_quote", &["-c", &format!("{ak}.ctx"), "-l", selection, "-q", &nonce, "-m", &m, "-s", &s, "-g", "sha256", &scheme]);
        self.flush();
        (self.read(&m), self.read(&s))
    }

    /// TPM2_Quote with an ECDSA AK.
    pub fn quote(&self, ak: &str, selection: &str, nonce: &[u8]) -> (Vec<u8>, Vec<u8>) {
        self.quote_with(ak, "ecdsa", selection, nonce)
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("CACHET_KEEP_SWTPM").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn new_dir() -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    std::env::temp_dir().join(format!("cachet-swtpm-{}-{n}-{nanos}", std::process::id()))
}

fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    cachet_verify::x509::certs_from_pem(pem).into_iter().next().expect("a PEM certificate")
}
