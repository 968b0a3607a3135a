//! `cachet secrets`: a tenant's key-broker secrets over the admin API
//! (put, list, get, delete, releases). The API key's tenant owns the
//! secrets; values are read from a file or stdin (never from the command
//! line, where other users could see them) and are never shown again.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use cachet_server::ops::block_on;
use cachet_server::secrets_client::SecretsClient;
use clap::{Args, Subcommand};

use crate::exit::Failure;

/// Largest secret value read (bytes).
const MAX_VALUE: u64 = 64 * 1024;

#[derive(Args)]
pub struct SecretsArgs {
    /// The service's base URL.
    #[arg(long, global = true, env = "CACHET_SERVER", default_value = "http://127.0.0.1:8700")]
    pub server: String,
    /// An API key acting for the tenant that owns the secrets
    /// (`cachet admin create-key --tenant NAME`).
    #[arg(long, global = true, env = "CACHET_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// CA certificates (PEM) to trust for an HTTPS server.
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    pub command: SecretsCommand,
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Create or replace a secret with its release policy (Rego).
    Put {
        /// Secret name (workloads ask for it as TENANT/NAME).
        name: String,
        /// Read the value from this file.
        #[arg(long, value_name = "PATH", conflicts_with = "value_stdin", required_unless_present = "value_stdin")]
        value_file: Option<PathBuf>,
        /// Read the value from standard input.
        #[arg(long)]
        value_stdin: bool,
        /// The release policy (Rego): released only when its status is affirming.
        #[arg(long, value_name = "PATH")]
        policy_file: PathBuf,
    },
    /// List the tenant's secrets (never their values).
    List,
    /// Show one secret's metadata and policy (never its value).
    Get {
        /// Secret name.
        name: String,
    },
    /// Delete a secret.
    Delete {
        /// Secret name.
        name: String,
    },
    /// Show the releases and refusals of the tenant's secrets (audit entries).
    Releases {
        /// Entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

fn read_limited(mut r: impl Read, what: &str) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    r.by_ref().take(MAX_VALUE + 1).read_to_end(&mut buf).map_err(|e| format!("{what}: {e}"))?;
    if buf.len() as u64 > MAX_VALUE {
        return Err(format!("{what}: larger than {MAX_VALUE} bytes"));
    }
    Ok(buf)
}

/// Exit status: 0 done, 1 the service refused, 2 usage, I/O or connection
/// error (`crate::exit`).
pub fn run(args: SecretsArgs) -> ExitCode {
    match block_on(run_async(args)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => e.exit("secrets"),
        Err(e) => Failure::usage(e).exit("secrets"),
    }
}

async fn run_async(args: SecretsArgs) -> Result<(), Failure> {
    let key = args.api_key.ok_or_else(|| {
        Failure::usage(
            "an API key is required: pass --api-key KEY or set CACHET_API_KEY \
             (an operator makes one with `cachet admin create-key --role admin --tenant NAME`)",
        )
    })?;
    let ca = match &args.ca_cert {
        Some(p) => Some(std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => None,
    };
    let client = SecretsClient::new(&args.server, &key, ca.as_deref())?;
    let print = |v: serde_json::Value| println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    match args.command {
        SecretsCommand::Put { name, value_file, value_stdin, policy_file } => {
            let mut value = match (value_file, value_stdin) {
                (Some(p), _) => {
                    read_limited(std::fs::File::open(&p).map_err(|e| format!("{}: {e}", p.display()))?, &p.display().to_string())?
                }
                (None, true) => read_limited(std::io::stdin(), "stdin")?,
                (None, false) => return Err(Failure::usage("give --value-file or --value-stdin")),
            };
            let policy = std::fs::read_to_string(&policy_file).map_err(|e| format!("{}: {e}", policy_file.display()))?;
            let label = policy_file.file_name().map(|f| f.to_string_lossy().into_owned());
            let r = client.put(&name, &value, &policy, label.as_deref()).await;
            value.iter_mut().for_each(|b| *b = 0);
            print(r?);
        }
        SecretsCommand::List => print(client.list().await?),
        SecretsCommand::Get { name } => print(client.get(&name).await?),
        SecretsCommand::Delete { name } => {
            client.delete(&name).await?;
            eprintln!("deleted {name}");
        }
        SecretsCommand::Releases { after, limit } => print(client.releases(after, limit).await?),
    }
    Ok(())
}
