//! `cachet refvals`: build and inspect a reference-value file — the named
//! sets of allowed measurements that appraisal policies look up — from
//! in-toto / SLSA provenance and from plain JSON/TOML files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cachet_appraise::provenance;
use cachet_appraise::refvals::{self, format_time, parse_time};
use cachet_appraise::{RefValue, ReferenceValues};
use clap::{Args, Subcommand, ValueEnum};

/// Arguments of `cachet refvals`.
#[derive(Args)]
pub struct RefvalsArgs {
    #[command(subcommand)]
    command: RefvalsCommand,
}

#[derive(Subcommand)]
enum RefvalsCommand {
    /// Import reference values into the store file (created if absent).
    ///
    /// A SOURCE is either a plain reference-value file (JSON or TOML:
    /// {"reference_values": {"NAME": ["value", ...]}}, whose sets are merged
    /// in), or in-toto provenance — a Statement, a DSSE envelope, a Sigstore
    /// bundle or .intoto.jsonl lines, e.g. SLSA provenance — whose subject
    /// digests become allowed values of the set --name, with the builder id
    /// recorded. Signatures on envelopes are NOT checked here: verify the
    /// provenance (slsa-verifier, cosign) before importing it.
    Import {
        /// The reference-value store file (JSON).
        #[arg(long)]
        store: PathBuf,
        /// Set that provenance subject digests go into (e.g. mr_td,
        /// snp.measurement, nitro.pcr0). Required for provenance.
        #[arg(long)]
        name: Option<String>,
        /// Only take subject digests of this algorithm (sha256, sha384, ...).
        #[arg(long)]
        digest: Option<String>,
        /// Imported values expire at this instant (RFC 3339 or YYYY-MM-DD),
        /// unless the source gives an expiry of its own.
        #[arg(long)]
        expires: Option<String>,
        /// Files to import.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
    },
    /// Add values to a set of the store file.
    Add {
        /// The reference-value store file (JSON).
        #[arg(long)]
        store: PathBuf,
        /// The set (created if absent).
        #[arg(long)]
        name: String,
        /// The values expire at this instant (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        expires: Option<String>,
        /// Allowed values (hex is lowercased, a 0x prefix dropped).
        #[arg(required = true)]
        values: Vec<String>,
    },
    /// Remove a set from the store file.
    Remove {
        /// The reference-value store file (JSON).
        #[arg(long)]
        store: PathBuf,
        /// The set to remove.
        #[arg(long)]
        name: String,
    },
    /// List the sets of a reference-value file (JSON or TOML) and which of
    /// their values are live at an instant.
    List {
        /// The reference-value file.
        #[arg(long)]
        store: PathBuf,
        /// Show liveness as of this instant (RFC 3339); default: now.
        #[arg(long)]
        at: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: ListFormat,
    },
    /// Upload the sets of a reference-value file to a running `cachet serve`
    /// (`PUT /v1/admin/reference-values/{name}` per set, replacing a stored
    /// set of the same name; needs an admin API key).
    Push {
        /// The reference-value file (JSON or TOML).
        #[arg(long)]
        store: PathBuf,
        /// The service's base URL.
        #[arg(long, env = "CACHET_SERVER", default_value = "http://127.0.0.1:8700")]
        server: String,
        /// An API key with the admin role.
        #[arg(long, env = "CACHET_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// CA certificates (PEM) to trust for an HTTPS server.
        #[arg(long, value_name = "PEM")]
        ca_cert: Option<PathBuf>,
        /// Only these sets (default: all).
        #[arg(long)]
        name: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ListFormat {
    Text,
    Json,
}

use crate::exit::Failure;

fn usage(msg: impl Into<String>) -> Failure {
    Failure::usage(msg)
}

fn refused(msg: impl Into<String>) -> Failure {
    Failure::refused(msg)
}

/// Run `cachet refvals`. Exit status: 0 done, 1 a source or the store was
/// refused (invalid content, or the service refused a push), 2 usage, I/O
/// or connection error.
pub fn run(args: RefvalsArgs) -> ExitCode {
    match dispatch(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.exit("refvals"),
    }
}

fn dispatch(cmd: RefvalsCommand) -> Result<(), Failure> {
    match cmd {
        RefvalsCommand::Import { store, name, digest, expires, sources } => {
            let expires = expires.as_deref().map(parse_time).transpose().map_err(|e| usage(format!("--expires: {e}")))?;
            if let Some(n) = &name {
                refvals::check_name(n).map_err(|e| usage(format!("--name: {}", e.0)))?;
            }
            let mut rv = load_store(&store, true)?;
            for src in &sources {
                let summary = import_one(&mut rv, src, name.as_deref(), digest.as_deref(), expires)?;
                println!("{}: {summary}", src.display());
            }
            save_store(&store, &rv)
        }
        RefvalsCommand::Add { store, name, expires, values } => {
            let expires = expires.as_deref().map(parse_time).transpose().map_err(|e| usage(format!("--expires: {e}")))?;
            let mut rv = load_store(&store, true)?;
            let vals = values
                .iter()
                .map(|v| {
                    RefValue::new(v).map(|mut r| {
                        r.expires = expires;
                        r
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| usage(e.0))?;
            let n = vals.len();
            rv.add_values(&name, vals).map_err(|e| usage(e.0))?;
            save_store(&store, &rv)?;
            println!("{name}: {n} value(s) added");
            Ok(())
        }
        RefvalsCommand::Remove { store, name } => {
            let mut rv = load_store(&store, false)?;
            if !rv.remove_set(&name) {
                return Err(usage(format!("{}: no set named {name:?}", store.display())));
            }
            save_store(&store, &rv)
        }
        RefvalsCommand::Push { store, server, api_key, ca_cert, name } => {
            let rv = load_store(&store, false)?;
            let key = api_key.ok_or_else(|| usage("an API key is required (--api-key or CACHET_API_KEY)"))?;
            let ca = match &ca_cert {
                Some(p) => Some(std::fs::read(p).map_err(|e| usage(format!("{}: {e}", p.display())))?),
                None => None,
            };
            if let Some(missing) = name.iter().find(|n| !rv.sets().contains_key(*n)) {
                return Err(usage(format!("{}: no set named {missing:?}", store.display())));
            }
            let client = cachet_server::secrets_client::SecretsClient::new(&server, &key, ca.as_deref()).map_err(usage)?;
            cachet_server::ops::block_on(async {
                for (set_name, set) in rv.sets().iter().filter(|(n, _)| name.is_empty() || name.contains(n)) {
                    let body = serde_json::to_value(set).map_err(|e| usage(e.to_string()))?;
                    let path = format!("/v1/admin/reference-values/{set_name}");
                    client.request(reqwest_put(), &path, Some(&body)).await.map_err(|e| {
                        let f = Failure::from(e);
                        Failure { message: format!("{set_name}: {}", f.message), ..f }
                    })?;
                    println!("{set_name}: {} value(s) pushed to {server}", set.values.len());
                }
                Ok(())
            })
            .map_err(usage)?
        }
        RefvalsCommand::List { store, at, format } => {
            let at = match at {
                Some(s) => parse_time(&s).map_err(|e| usage(format!("--at: {e}")))?,
                None => time::OffsetDateTime::now_utc().unix_timestamp(),
            };
            let rv = load_store(&store, false)?;
            match format {
                ListFormat::Json => {
                    let doc = serde_json::json!({
                        "at": format_time(at),
                        "reference_values": rv.to_document()["reference_values"],
                        "live": rv.live_data(at)["reference_values"],
                        "fingerprint": hex_of(&rv.fingerprint()),
                    });
                    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                }
                ListFormat::Text => print_list(&rv, at),
            }
            Ok(())
        }
    }
}

/// `PUT` (the HTTP method type of the admin client).
fn reqwest_put() -> cachet_server::secrets_client::Method {
    cachet_server::secrets_client::Method::PUT
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Import one source file into `rv`; returns a one-line summary.
fn import_one(
    rv: &mut ReferenceValues,
    src: &Path,
    name: Option<&str>,
    digest: Option<&str>,
    expires: Option<i64>,
) -> Result<String, Failure> {
    let bytes = crate::verify_cmd::read_limited(src, refvals::MAX_FILE_LEN).map_err(usage)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| refused(format!("{}: not UTF-8 text", src.display())))?;
    let as_json: Option<serde_json::Value> = serde_json::from_str(text).ok();
    let is_provenance = match &as_json {
        Some(doc) => provenance::looks_like_provenance(doc),
        // JSON Lines (.intoto.jsonl): every line a JSON document.
        None => text
            .lines()
            .next()
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .is_some_and(|d| provenance::looks_like_provenance(&d)),
    };
    let label = src.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| src.display().to_string());
    if is_provenance {
        let name =
            name.ok_or_else(|| usage(format!("{}: provenance needs --name (the set its subject digests go into)", src.display())))?;
        let digests = provenance::subject_digests(&bytes).map_err(|e| refused(format!("{}: {}", src.display(), e.0)))?;
        let values =
            provenance::to_ref_values(&digests, digest, &label, expires).map_err(|e| refused(format!("{}: {}", src.display(), e.0)))?;
        let n = values.len();
        let builders: Vec<String> = {
            let mut b: Vec<String> = values.iter().filter_map(|v| v.builder_id.clone()).collect();
            b.sort();
            b.dedup();
            b
        };
        rv.add_values(name, values).map_err(|e| refused(e.0))?;
        return Ok(format!(
            "{n} subject digest(s) into set {name}; builder {}",
            if builders.is_empty() { "(not stated)".to_string() } else { builders.join(", ") }
        ));
    }
    if name.is_some() || digest.is_some() {
        return Err(usage(format!("{}: --name and --digest apply to provenance; this is a plain reference-value file", src.display())));
    }
    let toml = src.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let mut incoming = ReferenceValues::parse(text, toml).map_err(|e| refused(format!("{}: {}", src.display(), e.0)))?;
    if let Some(exp) = expires {
        let mut sets = incoming.sets().clone();
        for set in sets.values_mut() {
            for v in set.values.iter_mut().filter(|v| v.expires.is_none()) {
                v.expires = Some(exp);
            }
        }
        incoming = ReferenceValues::from_sets(sets).map_err(|e| refused(e.0))?;
    }
    rv.merge(&incoming).map_err(|e| refused(e.0))?;
    Ok(format!("{} set(s), {} value(s) merged", incoming.sets().len(), incoming.value_count()))
}

/// Read a reference-value file; an absent file is an empty store when `create`.
fn load_store(path: &Path, create: bool) -> Result<ReferenceValues, Failure> {
    if create && !path.exists() {
        return Ok(ReferenceValues::new());
    }
    let bytes = crate::verify_cmd::read_limited(path, refvals::MAX_FILE_LEN).map_err(usage)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| refused(format!("{}: not UTF-8 text", path.display())))?;
    let toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    ReferenceValues::parse(text, toml).map_err(|e| refused(format!("{}: {}", path.display(), e.0)))
}

/// Write the store as JSON, atomically (a temporary file renamed over it).
fn save_store(path: &Path, rv: &ReferenceValues) -> Result<(), Failure> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml")) {
        return Err(usage(format!("{}: the store is written as JSON; name it .json (TOML files can be imported)", path.display())));
    }
    let text = serde_json::to_string_pretty(&rv.to_document()).map_err(|e| usage(e.to_string()))? + "\n";
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(|e| usage(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    Ok(())
}

fn print_list(rv: &ReferenceValues, at: i64) {
    println!("reference values as of {} ({} sets, {} values)", format_time(at), rv.sets().len(), rv.value_count());
    for (name, set) in rv.sets() {
        let set_live = set.live_at(at);
        let mut head = name.clone();
        if let Some(d) = &set.description {
            head.push_str(&format!(" — {d}"));
        }
        if let Some(e) = set.expires {
            head.push_str(&format!(" (set {} {})", if set_live { "expires" } else { "EXPIRED" }, format_time(e)));
        }
        println!("  {head}");
        for v in &set.values {
            let live = set_live && v.live_at(at);
            let mut line = format!("    {} {}", if live { "✓" } else { "✗" }, v.value);
            if let Some(e) = v.expires {
                line.push_str(&format!("  {} {}", if live { "expires" } else { "expired" }, format_time(e)));
            }
            if let Some(a) = &v.digest_alg {
                line.push_str(&format!("  {a}"));
            }
            if let Some(b) = &v.builder_id {
                line.push_str(&format!("  builder {b}"));
            }
            if let Some(s) = &v.source {
                line.push_str(&format!("  from {s}"));
            }
            println!("{line}");
        }
    }
}
