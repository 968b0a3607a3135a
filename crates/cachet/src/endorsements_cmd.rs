//! `cachet endorsements`: the manufacturers' endorsements moved by hand (the
//! air-gapped path). `fetch` gathers what pieces of evidence need into one
//! bundle, `export` writes a cache as a bundle, `import` checks a bundle
//! entry by entry (`cachet_endorse::bundle`) and keeps it, `list` shows what
//! is held. The cache is a folder (`--cache-dir`, as `cachet verify` uses) or
//! a server's store (`--data-dir` / `--database-url` / `--config`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use cachet_endorse::bundle::{self, Bundle};
use cachet_endorse::{Cache, Endorser, FolderCache};
use cachet_server::ops::{block_on, cli_actor, open, open_or_create, StoreArgs};
use clap::{Args, Subcommand, ValueEnum};

use crate::verify_cmd::{parse_rfc3339, parse_tee, read_limited, SourceArgs, TeeArg};

#[derive(Args)]
pub struct EndorsementsArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: EndorsementsCommand,
}

#[derive(Subcommand)]
pub enum EndorsementsCommand {
    /// Gather every endorsement these pieces of evidence need (from the
    /// cache folder, else the vendors) into one bundle file.
    Fetch {
        /// Evidence files (binary, hex or base64).
        #[arg(required = true)]
        evidence: Vec<PathBuf>,
        /// Evidence family; `auto` guesses from each piece's structure.
        #[arg(long, default_value = "auto", value_parser = parse_tee)]
        tee: TeeArg,
        /// The bundle to write.
        #[arg(long)]
        out: PathBuf,
        /// Fetched for this instant (RFC 3339) [default: now].
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        sources: SourceArgs,
        /// The cache folder used while fetching [default: as `cachet verify`].
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Check a bundle (every entry must be what its key says, its signature
    /// chaining to the pinned roots) and keep it; one bad entry refuses the
    /// bundle, naming it, and nothing is imported.
    Import {
        /// The bundle file.
        bundle: PathBuf,
        /// Into this cache folder (else the server store given by --data-dir / --database-url).
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Write everything held as a bundle.
    Export {
        /// The bundle to write.
        #[arg(long)]
        out: PathBuf,
        /// From this cache folder (else the server store).
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// What is held: key, source, age, next update.
    List {
        /// This cache folder (else the server store).
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: ListFormat,
    },
    /// TCB recovery forecast: which platforms seen attesting in the last
    /// --days days (the server store's audit log) or given as evidence files
    /// will fall to a worse TCB status (e.g. UpToDate to OutOfDate) under
    /// the newest TCB Info (Intel PCS `update=early` from --pcs-url, or
    /// --tcb-info files), which component falls short, and from when.
    Forecast {
        /// SGX/TDX quotes (binary, hex or base64) instead of the audit log.
        evidence: Vec<PathBuf>,
        /// Platforms seen in the last N days of the audit log (1 to 3650).
        #[arg(long, default_value_t = 30, value_name = "N")]
        days: u32,
        /// The newest TCB Info as files (air-gapped; repeatable): PCS
        /// answers or collateral bundles, and the TCB-Info-Issuer-Chain PEM
        /// when an answer came without it. Default: fetched with
        /// update=early from --pcs-url (else the server's pcs_url).
        #[arg(long = "tcb-info", value_name = "FILE")]
        tcb_info: Vec<PathBuf>,
        /// AMD has no early TCB: a JSON list of minimum TCBs per product
        /// (`[{"product":"Milan","bootloader":4,"tee":0,"snp":23,"microcode":213,"from":"2026-01-01"}]`).
        #[arg(long, value_name = "FILE")]
        amd_min_tcb: Option<PathBuf>,
        #[command(flatten)]
        sources: SourceArgs,
        /// With evidence files: the cache folder of the TCB Infos in use [default: as `cachet verify`].
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: ListFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    crate::exit::usage("endorsements", msg)
}

pub fn run(args: EndorsementsArgs) -> ExitCode {
    match block_on(run_async(args)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) | Err(e) => fail(e),
    }
}

fn folder(dir: Option<&PathBuf>) -> Result<PathBuf, String> {
    match dir {
        Some(d) => Ok(d.clone()),
        None => FolderCache::default_dir().ok_or_else(|| "no cache folder (set HOME or XDG_CACHE_HOME, or pass --cache-dir)".into()),
    }
}

/// The cache named: the folder, else the server store when one is named,
/// else the default folder. The second value is the store, when it is one
/// (imports into it are audited; it is closed when done). `create`: an
/// import may prepare a new server's data directory (air-gapped, before its
/// first start); export and list refuse one that does not exist.
async fn cache_of(
    store: &StoreArgs,
    dir: Option<&PathBuf>,
    create: bool,
) -> Result<(Arc<dyn Cache>, Option<Arc<dyn cachet_store::Store>>), String> {
    let store_named = store.data_dir.is_some() || store.database_url.is_some() || store.config.is_some();
    if dir.is_none() && store_named {
        let opened = if create { open_or_create(store).await? } else { open(store).await? };
        let s = opened.store.clone();
        return Ok((Arc::new(cachet_server::endorse::StoreCache(opened.store)), Some(s)));
    }
    Ok((Arc::new(FolderCache::new(folder(dir)?)), None))
}

fn write_bundle(path: &Path, b: &Bundle) -> Result<(), String> {
    std::fs::write(path, b.to_json()).map_err(|e| format!("{}: {e}", path.display()))
}

async fn run_async(args: EndorsementsArgs) -> Result<ExitCode, String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match args.command {
        EndorsementsCommand::Fetch { evidence, tee, out, at, sources, cache_dir } => {
            let at = match at {
                Some(s) => parse_rfc3339(&s).map_err(|e| format!("--at {s:?}: {e}"))?,
                None => now,
            };
            let sources = sources.to_sources(false);
            let endorser = Endorser::new(sources, Arc::new(FolderCache::new(folder(cache_dir.as_ref())?))).map_err(|e| e.to_string())?;
            let mut entries = std::collections::BTreeMap::new();
            for path in &evidence {
                let raw = read_limited(path, cachet_verify::MAX_EVIDENCE_LEN as u64)?;
                let (_, ev) = cachet_verify::encoding::decode_evidence(&raw);
                let tee = match tee {
                    TeeArg::Tee(t) => t,
                    TeeArg::Auto => cachet_verify::detect_tee(&ev)
                        .ok_or_else(|| format!("{}: cannot tell which TEE produced this evidence; pass --tee", path.display()))?,
                };
                eprintln!("{}: fetching what it needs …", path.display());
                let got = endorser.endorsements_for(tee, &ev, at).await.map_err(|e| format!("{}: {e}", path.display()))?;
                for f in got {
                    entries.insert(f.resource.key(), f);
                }
            }
            let b = Bundle::new(entries.into_values().collect());
            // What an importer would refuse is not written.
            let b = Bundle::parse(&b.to_json()).map_err(|e| e.to_string())?;
            write_bundle(&out, &b)?;
            eprintln!("wrote {} endorsement(s) to {}", b.entries.len(), out.display());
        }
        EndorsementsCommand::Import { bundle: path, cache_dir } => {
            let bytes = read_limited(&path, bundle::MAX_BUNDLE_LEN as u64)?;
            // Checked before the cache is opened: a bad bundle touches nothing.
            Bundle::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            let (cache, store) = cache_of(&args.store, cache_dir.as_ref(), true).await?;
            let kept = bundle::import(cache.as_ref(), &bytes).await.map_err(|e| format!("{}: {e}", path.display()))?;
            if let Some(store) = &store {
                let keys: Vec<String> = kept.iter().map(|f| f.resource.key()).collect();
                let entry = cachet_store::AuditEntry {
                    ts: now,
                    actor: cli_actor(),
                    action: "endorsements.import".into(),
                    outcome: "ok".into(),
                    detail: serde_json::json!({ "count": keys.len(), "keys": keys }),
                    ..Default::default()
                };
                let audited = store.append_audit(&entry).await;
                store.close().await;
                audited.map_err(|e| format!("imported, but the audit log refused the entry: {e}"))?;
            }
            eprintln!("imported {} endorsement(s)", kept.len());
        }
        EndorsementsCommand::Export { out, cache_dir } => {
            let (cache, store) = cache_of(&args.store, cache_dir.as_ref(), false).await?;
            let b = bundle::export(cache.as_ref()).await;
            if let Some(store) = store {
                store.close().await;
            }
            write_bundle(&out, &b)?;
            eprintln!("wrote {} endorsement(s) to {}", b.entries.len(), out.display());
        }
        EndorsementsCommand::List { cache_dir, format } => {
            let (cache, store) = cache_of(&args.store, cache_dir.as_ref(), false).await?;
            let mut list = cache.list().await;
            if let Some(store) = store {
                store.close().await;
            }
            list.sort_by_key(|f| f.resource.key());
            let rows: Vec<serde_json::Value> = list.iter().map(|f| bundle::summary(f, now)).collect();
            match format {
                ListFormat::Json => println!("{}", serde_json::Value::Array(rows)),
                ListFormat::Text => {
                    for r in &rows {
                        println!(
                            "{}\tage {}s\tnext update {}\t{}",
                            r["key"].as_str().unwrap_or(""),
                            r["age_s"],
                            r["next_update"].as_str().unwrap_or("-"),
                            r["source"].as_str().unwrap_or("")
                        );
                    }
                }
            }
        }
        EndorsementsCommand::Forecast { evidence, days, tcb_info, amd_min_tcb, sources, cache_dir, format } => {
            let report = forecast(&args.store, evidence, days, tcb_info, amd_min_tcb, sources, cache_dir, now).await?;
            match format {
                ListFormat::Json => println!("{report}"),
                ListFormat::Text => print!("{}", cachet_endorse::forecast::table(&report)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cachet endorsements forecast`: the server's forecast
/// (`endorse_admin::forecast_from_store`) over its store, or the same over
/// evidence files.
#[allow(clippy::too_many_arguments)]
async fn forecast(
    store: &StoreArgs,
    evidence: Vec<PathBuf>,
    days: u32,
    tcb_info: Vec<PathBuf>,
    amd_min_tcb: Option<PathBuf>,
    sources: SourceArgs,
    cache_dir: Option<PathBuf>,
    now: i64,
) -> Result<serde_json::Value, String> {
    use cachet_endorse::forecast::{self, AmdMinimum, Newest, Seen, TcbInfoDoc};
    const MAX_FILE: u64 = 4 << 20;
    if days == 0 || days > cachet_server::endorse_admin::MAX_FORECAST_DAYS {
        return Err(format!("--days must be 1 to {}", cachet_server::endorse_admin::MAX_FORECAST_DAYS));
    }
    let mut files = Vec::new();
    for p in &tcb_info {
        files.push((p.display().to_string(), read_limited(p, MAX_FILE)?));
    }
    let docs = if files.is_empty() { Vec::new() } else { TcbInfoDoc::from_files(&files)? };
    let newest = if docs.is_empty() { Newest::Early } else { Newest::Given(&docs) };
    let amd: Vec<AmdMinimum> = match &amd_min_tcb {
        Some(p) => serde_json::from_slice(&read_limited(p, MAX_FILE)?)
            .map_err(|e| format!("{}: not a list of {{product, bootloader, tee, snp, microcode, fmc?, from?}}: {e}", p.display()))?,
        None => Vec::new(),
    };
    if !evidence.is_empty() {
        let mut seen = Vec::new();
        for path in &evidence {
            let raw = read_limited(path, cachet_verify::MAX_EVIDENCE_LEN as u64)?;
            let (_, ev) = cachet_verify::encoding::decode_evidence(&raw);
            let tee = cachet_verify::detect_tee(&ev).unwrap_or(cachet_verify::Tee::Tdx);
            let platform = forecast::platform_hint(tee, &ev).ok_or_else(|| {
                format!(
                    "{}: not an SGX/TDX quote carrying its PCK certificate chain (AMD platforms come from the audit log)",
                    path.display()
                )
            })?;
            seen.push(Seen { platform, last_seen: now, attestations: 1 });
        }
        let endorser =
            Endorser::new(sources.to_sources(false), Arc::new(FolderCache::new(folder(cache_dir.as_ref())?))).map_err(|e| e.to_string())?;
        let (seen, left_out) =
            forecast::collect_seen(seen.into_iter().map(|s| (s.last_seen, serde_json::json!({ "platform": s.platform }))));
        let pairs = forecast::tcb_infos(&seen, &endorser, newest, now).await;
        return Ok(forecast::forecast(&seen, &pairs, &amd, left_out, None, now));
    }
    let opened = open(store).await?;
    // The server's sources (offline stays offline), unless one is named here.
    let src = if sources.any_named() { sources.to_sources(false) } else { opened.config.endorsement_sources.clone() };
    let endorser = Endorser::new(src, Arc::new(cachet_server::endorse::StoreCache(opened.store.clone()))).map_err(|e| e.to_string())?;
    let report = cachet_server::endorse_admin::forecast_from_store(opened.store.as_ref(), &endorser, days, newest, &amd, now).await;
    opened.store.close().await;
    report.map_err(|e| e.to_string())
}
