//! Support for the offline commands (`cachet keys`, `cachet admin`,
//! `cachet audit`): they open the same store as `cachet serve`, directly,
//! so they work whether or not a server is running (SQLite, or PostgreSQL's
//! chain lock, serialises the writers; a running server sees key changes
//! within seconds).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use cachet_store::Store;

use crate::config::{Config, ServeArgs};
use crate::keys::KeyService;

/// Where the store is: the same flags and variables as `cachet serve`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// TOML configuration file of the server.
    #[arg(long, global = true, env = "CACHET_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./cachet-data].
    #[arg(long, global = true, env = "CACHET_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL instead of the data directory's file
    /// (`postgres://…`/`postgresql://…` for PostgreSQL, `sqlite:PATH`).
    #[arg(long, global = true, env = "CACHET_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

impl StoreArgs {
    /// The server configuration these arguments select.
    pub fn resolve(&self) -> Result<Config, String> {
        ServeArgs {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            ..Default::default()
        }
        .resolve()
    }
}

/// An opened store with the configuration it belongs to.
pub struct Opened {
    /// Resolved configuration.
    pub config: Config,
    /// The store (SQLite or PostgreSQL, as configured).
    pub store: Arc<dyn Store>,
}

impl Opened {
    /// The key service over this store.
    pub fn keys(&self) -> KeyService {
        let store: Arc<dyn Store> = self.store.clone();
        crate::key_service(&self.config, store)
    }
}

/// Open the store selected by `args`. With the embedded store, a data
/// directory that does not exist is refused (a mistyped `--data-dir` would
/// otherwise become a new, empty store): only `cachet serve` and
/// [`open_or_create`] make one.
pub async fn open(args: &StoreArgs) -> Result<Opened, String> {
    let config = args.resolve()?;
    if config.database_url.is_none() && !config.data_dir.is_dir() {
        let d = config.data_dir.display();
        return Err(format!(
            "no Cachet data directory at {d}: run `cachet serve --data-dir {d}` once to create it \
             (or `cachet admin create-key --data-dir {d}`), or check the path (--data-dir, CACHET_DATA_DIR, \
             or data_dir in --config)"
        ));
    }
    let store = crate::open_store(&config).await?;
    Ok(Opened { config, store })
}

/// Open the store selected by `args`, creating the data directory and its
/// database when they do not exist yet (`cachet admin create-key`, the
/// first step before `cachet serve`).
pub async fn open_or_create(args: &StoreArgs) -> Result<Opened, String> {
    let config = args.resolve()?;
    let store = crate::open_store(&config).await?;
    Ok(Opened { config, store })
}

/// Run an async command to completion on a small runtime.
pub fn block_on<F: Future>(f: F) -> Result<F::Output, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    Ok(rt.block_on(f))
}

/// The audit actor for commands run by a person: `cli:<user>`.
pub fn cli_actor() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}
