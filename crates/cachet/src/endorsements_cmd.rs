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
    }
    Ok(ExitCode::SUCCESS)
}
