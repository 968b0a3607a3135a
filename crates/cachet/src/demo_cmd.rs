//! `cachet demo`: the whole key-release story in one command, on embedded
//! defaults, for a newcomer.
//!
//! 1. start the service in this process on a loopback port, with a fresh
//!    data folder and `--insecure-simulated-tee` (loudly announced);
//! 2. two owners (tenants `bank-a`, `bank-b`, each with its own admin API
//!    key) each put a secret with a release policy that approves one
//!    workload measurement;
//! 3. a workload with that measurement attests through the simulated TEE
//!    (challenge, ephemeral key bound into the evidence) and receives both
//!    secrets as JWEs it decrypts;
//! 4. a workload with a different measurement attests too, and both owners'
//!    policies refuse it;
//! 5. the audit log is shown (and its hash chain checked), as well as what
//!    one owner can see of it.
//!
//! Prints a narrative on stdout and a last line `DEMO OK: ...` (exit 0) or
//! `DEMO FAILED: ...` (exit 1) that tests check.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use cachet_attester::client::{Attester, ClientOptions, Release};
use cachet_attester::sim_source::SimulatedSource;
use cachet_attester::simulated::{ReportOptions, SimulatedTee};
use cachet_server::auth::{new_tenant_api_key, Role};
use cachet_server::ServeArgs;
use cachet_store::{AuditEntry, SqliteStore, Store};
use clap::Args;
use serde_json::{json, Value};

/// The approved workload: SHA-384 of "fraud-scoring model v1.4 (approved build)".
const APPROVED: &str = "fb1a96dd54b5aae20da1748078051dcc92da47a5a5463e9bf89e716f3312beaf030036c8c47236def21ac9df50403096";
/// The modified workload: SHA-384 of "fraud-scoring model v1.4 + debug patch (unapproved)".
const MODIFIED: &str = "84b977613bde184e362dd0b3b2606755abdb6fe4dcc506a8990bea8357048e3c8e16c7da785a7b80a063cbf0309fffd1";

/// The two owners and their secrets: (tenant, secret name, value).
const OWNERS: [(&str, &str, &str); 2] = [
    ("bank-a", "fraud-model-key", "bank-a: AES key for the fraud-scoring model weights"),
    ("bank-b", "transactions-key", "bank-b: key to the shared transaction dataset"),
];

/// `cachet demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the service's data in this folder (default: a temporary folder,
    /// deleted at the end).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// A release policy approving one measurement, with a reason when it refuses.
fn release_policy(measurement: &str) -> String {
    format!(
        r#"package release
import rego.v1

# Release only to the approved build, with a fresh (nonce-bound) attestation.
ev := input.claims.submods[input.tee]["ear.veraison.annotated-evidence"]

status := "affirming" if {{
    input.claims["cachet.freshness"] == "nonce"
    input.claims.submods[input.tee]["ear.status"] != "contraindicated"
    ev.measurement == "{measurement}"
}}

reasons contains {{"rule": "measurement", "outcome": "contraindicated",
    "detail": sprintf("measurement %v… is not the approved build", [substring(ev.measurement, 0, 16)])}} if {{
    ev.measurement != "{measurement}"
}}
"#
    )
}

fn short(hex: &str) -> String {
    format!("{}…", &hex[..hex.len().min(16)])
}

/// Create an admin API key acting for `tenant`, as `cachet admin create-key --tenant` does.
async fn tenant_key(dir: &Path, tenant: &str) -> Result<String, String> {
    let store = SqliteStore::open_dir(dir).await.map_err(|e| e.to_string())?;
    let k = new_tenant_api_key(&format!("{tenant} (demo)"), Role::Admin, Some(tenant), cachet_server::now())?;
    let audit = AuditEntry {
        ts: cachet_server::now(),
        actor: "cli".into(),
        action: "api_key.create".into(),
        outcome: "ok".into(),
        detail: json!({"id": k.record.id, "tenant": tenant, "role": "admin"}),
        ..Default::default()
    };
    let r = store.insert_api_key(&k.record, &audit).await.map_err(|e| e.to_string());
    store.close().await;
    r.map(|_| k.key)
}

struct Demo {
    url: String,
    dir: PathBuf,
    http: reqwest::Client,
}

impl Demo {
    async fn call(&self, method: reqwest::Method, path: &str, key: &str, body: Option<Value>) -> Result<(u16, Value), String> {
        let mut r = self.http.request(method, format!("{}{path}", self.url)).bearer_auth(key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let v = resp.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, v))
    }

    fn workload(&self, measurement: &str) -> Result<Attester, String> {
        let tee = SimulatedTee::load_or_create(&self.dir.join("simulated-tee")).map_err(|e| e.to_string())?;
        let measurement: [u8; 48] = hex::decode(measurement).ok().and_then(|m| m.try_into().ok()).ok_or("bad measurement")?;
        let options = ReportOptions { measurement, ..Default::default() };
        Attester::new(&self.url, Arc::new(SimulatedSource { tee, options }), &ClientOptions::default()).map_err(|e| e.to_string())
    }

    /// Attest as a workload with `measurement` and ask for every owner's secret.
    async fn run_workload(&self, measurement: &str) -> Result<Release, String> {
        let a = self.workload(measurement)?;
        let (att, key) = a.attest_with_key().await.map_err(|e| e.to_string())?;
        println!("   - challenge: nonce {}", short(&hex::encode(&att.nonce)));
        println!("   - ephemeral P-256 key (RFC 7638 thumbprint {}), bound as SHA-512(nonce || JWK) into its report", key.thumbprint());
        let claims: Value = att
            .token
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        println!(
            "   - attested: token {} (tee sim, ear.status {} — a simulated TEE is never \"affirming\" —, measurement {})",
            claims["jti"].as_str().map(short).unwrap_or_default(),
            claims["submods"]["sim"]["ear.status"].as_str().unwrap_or("?"),
            claims["submods"]["sim"]["ear.veraison.annotated-evidence"]["measurement"].as_str().map(short).unwrap_or_default(),
        );
        let names: Vec<String> = OWNERS.iter().map(|(o, n, _)| format!("{o}/{n}")).collect();
        println!("   - asked for {}", names.join(" and "));
        let release = a.release(&att.token, &key, &names).await.map_err(|e| e.to_string())?;
        for s in &release.secrets {
            println!("     RELEASED {}: decrypted {:?}", s.name, String::from_utf8_lossy(&s.value));
        }
        for r in &release.refused {
            println!("     REFUSED  {}: {}", r.name, r.reason);
        }
        Ok(release)
    }
}

fn audit_line(r: &cachet_store::AuditRecord) -> String {
    let d: Value = serde_json::from_str(&r.detail).unwrap_or(Value::Null);
    let what = match r.action.as_str() {
        "secret.release" => {
            format!("{} {}", d["secret"].as_str().unwrap_or(""), d["reason"].as_str().map(|s| format!("({s})")).unwrap_or_default())
        }
        "secret.create" | "secret.update" => format!(
            "{}/{} policy {}",
            d["owner"].as_str().unwrap_or(""),
            d["name"].as_str().unwrap_or(""),
            d["policy_hash"].as_str().map(short).unwrap_or_default()
        ),
        "attest" => format!("{} {}", r.tee.as_deref().unwrap_or(""), d["status"].as_str().unwrap_or("")),
        "api_key.create" => format!("tenant {}", d["tenant"].as_str().unwrap_or("-")),
        _ => String::new(),
    };
    format!("   {:>3}  {:<25} {:<15} {:<9} {}", r.seq, r.actor, r.action, r.outcome, what)
}

async fn demo(dir: PathBuf) -> Result<(usize, usize), String> {
    println!("Cachet demo: releasing secrets only to an attested workload\n");
    println!("1. The service");
    let args = ServeArgs {
        listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        data_dir: Some(dir.clone()),
        insecure_simulated_tee: true,
        ..Default::default()
    };
    let server = cachet_server::start(args.resolve()?).await?;
    println!("   Started `cachet serve` in this process at {} (data folder {}).", server.url, dir.display());
    println!("   !! It runs with --insecure-simulated-tee: it accepts evidence from a SIMULATED TEE whose signing");
    println!("   !! key is a file in the data folder. That proves nothing about hardware: development and demos only.");
    println!("   !! On real hardware the same workload code uses configfs-tsm, /dev/sev-guest, /dev/nsm or a TPM.\n");
    let d = Demo { url: server.url.clone(), dir: dir.clone(), http: reqwest::Client::new() };
    let result = story(&d).await;
    server.shutdown().await;
    result
}

async fn story(d: &Demo) -> Result<(usize, usize), String> {
    println!("2. Two owners, one secret each");
    let mut keys = Vec::new();
    for (owner, name, value) in OWNERS {
        let key = tenant_key(&d.dir, owner).await?;
        let body = json!({"value": STANDARD.encode(value), "policy": release_policy(APPROVED)});
        let (s, v) = d.call(reqwest::Method::PUT, &format!("/v1/admin/secrets/{name}"), &key, Some(body)).await?;
        if s != 201 {
            return Err(format!("{owner} could not put its secret: HTTP {s} {v}"));
        }
        println!(
            "   {owner} (its own admin API key) put secret {owner}/{name}, sealed under {}; its Rego release policy",
            v["kek"].as_str().unwrap_or("the key-encryption key")
        );
        println!(
            "     (sha-256 {}) releases it only to measurement {} (the approved build).",
            short(v["policy_hash"].as_str().unwrap_or("")),
            short(APPROVED)
        );
        keys.push((owner, key));
    }
    if let Some((_, key_b)) = keys.get(1) {
        let (s, _) = d.call(reqwest::Method::GET, &format!("/v1/admin/secrets/{}", OWNERS[0].1), key_b, None).await?;
        println!(
            "   bank-b asking the admin API for {}: HTTP {s} (an owner sees only its own secrets; values are never returned).",
            OWNERS[0].1
        );
    }
    println!();

    println!("3. The approved workload (measurement {})", short(APPROVED));
    let good = d.run_workload(APPROVED).await?;
    println!();
    println!("4. A modified workload (measurement {})", short(MODIFIED));
    let bad = d.run_workload(MODIFIED).await?;
    println!();

    println!("5. The audit log (hash-chained)");
    let store = SqliteStore::open_dir(&d.dir).await.map_err(|e| e.to_string())?;
    let records = store.audit_page(0, 1000).await.map_err(|e| e.to_string());
    let chain = cachet_store::verify_audit_chain(&store).await.map_err(|e| e.to_string());
    store.close().await;
    let records = records?;
    println!("   {:>3}  {:<25} {:<15} {:<9} what", "seq", "actor", "action", "outcome");
    for r in records.iter().filter(|r| r.action != "signing_key.create") {
        println!("{}", audit_line(r));
    }
    match chain {
        Ok((n, head)) => println!("   Chain verified: {n} entries, head {} (`cachet audit verify` does the same).", short(&head)),
        Err(e) => return Err(format!("the audit chain does not verify: {e}")),
    }
    if let Some((owner, key)) = keys.first() {
        let (s, v) = d.call(reqwest::Method::GET, "/v1/admin/secret-releases", key, None).await?;
        let n = v.as_array().map(Vec::len).unwrap_or(0);
        if s == 200 {
            println!("   {owner} sees {n} of these entries (GET /v1/admin/secret-releases): only those about its own secrets.");
        }
    }
    println!();
    let wanted = OWNERS.len();
    let ok = good.secrets.len() == wanted
        && good.refused.is_empty()
        && bad.secrets.is_empty()
        && bad.refused.len() == wanted
        && good.secrets.iter().all(|s| OWNERS.iter().any(|(o, n, v)| s.name == format!("{o}/{n}") && &s.value[..] == v.as_bytes()));
    if !ok {
        return Err(format!(
            "approved workload got {}/{wanted} secrets ({} refused); modified workload got {} (refused {})",
            good.secrets.len(),
            good.refused.len(),
            bad.secrets.len(),
            bad.refused.len()
        ));
    }
    Ok((good.secrets.len(), bad.refused.len()))
}

/// `cachet demo`.
pub fn run(args: DemoArgs) -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let temp = match &args.data_dir {
        Some(_) => None,
        None => match tempfile::Builder::new().prefix("cachet-demo-").tempdir() {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("cachet demo: temporary folder: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let dir = match (&args.data_dir, &temp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => return ExitCode::from(2),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cachet demo: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(demo(dir)) {
        Ok((released, refused)) => {
            println!("DEMO OK: the approved workload received {released} secrets from 2 owners; the modified workload was refused {refused} times; every decision is in the audit log.");
            if temp.is_some() {
                println!("(The temporary data folder is deleted now; use --data-dir DIR to keep it.)");
            }
            print_next_steps();
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("DEMO FAILED: {e}");
            ExitCode::from(1)
        }
    }
}

/// The commands to try next (each one works as printed, from one folder).
pub const NEXT_STEPS: [(&str, &str); 3] = [
    (
        "cachet serve --data-dir cachet-data --insecure-simulated-tee",
        "the service on http://127.0.0.1:8700, trusting the INSECURE simulated TEE (leave it running)",
    ),
    (
        "cachet attest --server http://127.0.0.1:8700 --tee sim --sim-dir cachet-data/simulated-tee > token.jwt",
        "in another terminal: attest as a workload; the EAR token is printed",
    ),
    (
        "curl -s http://127.0.0.1:8700/.well-known/jwks.json",
        "the keys that verify token.jwt's signature (any JWT library; iss http://127.0.0.1:8700)",
    ),
];

fn print_next_steps() {
    println!();
    println!("Next, try it by hand (development only: the simulated TEE proves nothing about hardware):");
    for (cmd, what) in NEXT_STEPS {
        println!("  {cmd}");
        println!("      # {what}");
    }
    println!(
        "On real hardware: `cachet attest --server URL` (--tee auto finds the TEE), and `cachet verify EVIDENCE` checks evidence offline."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurements_are_sha384_sized_and_distinct() {
        assert_eq!(hex::decode(APPROVED).unwrap().len(), 48);
        assert_eq!(hex::decode(MODIFIED).unwrap().len(), 48);
        assert_ne!(APPROVED, MODIFIED);
        assert!(release_policy(APPROVED).contains(APPROVED));
    }
}
