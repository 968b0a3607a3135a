//! `cachet keys`: token signing keys (list, rotate, revoke, prune, import,
//! attach a certificate). Works on the store directly, with or without a
//! running server; a running server sees the change within seconds.

use std::path::PathBuf;
use std::process::ExitCode;

use cachet_server::ops::{block_on, cli_actor, open, StoreArgs};
use cachet_token::Algorithm;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// List signing keys with their state (pending, active, retired, expired, revoked).
    List,
    /// Publish a new key now; it signs after the publish lead, and the old
    /// key stays in the JWKS until every token it signed has expired.
    Rotate,
    /// Revoke a key (compromise): removed from the JWKS at once; a
    /// replacement that signs at once is made if it was the signing key.
    Revoke {
        /// Key ID.
        kid: String,
    },
    /// Delete expired and revoked keys (and their private keys).
    Prune,
    /// Import a PKCS#8 private key (PEM) with its certificate chain, to be
    /// published with `x5c`; it signs after the publish lead.
    Import {
        /// Algorithm of the key.
        #[arg(long, default_value = "ES256")]
        alg: Algorithm,
        /// PEM file with a `PRIVATE KEY` (PKCS#8) block.
        #[arg(long)]
        key: PathBuf,
        /// PEM certificate chain, leaf (certifying the key) first.
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Attach a certificate chain (PEM, leaf first) to a key; published as `x5c`.
    AttachCert {
        /// Key ID.
        kid: String,
        /// PEM certificate chain.
        #[arg(long)]
        cert: PathBuf,
    },
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    crate::exit::usage("keys", msg)
}

fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, String> {
    crate::verify_cmd::read_limited(path, 1 << 20)
}

fn chain_from(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let chain = cachet_verify::x509::certs_from_pem(&read_pem(path)?);
    if chain.is_empty() {
        return Err(format!("{}: no CERTIFICATE block", path.display()));
    }
    Ok(chain)
}

pub fn run(args: KeysArgs) -> ExitCode {
    match block_on(run_async(args)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) | Err(e) => fail(e),
    }
}

async fn run_async(args: KeysArgs) -> Result<ExitCode, String> {
    let opened = open(&args.store).await?;
    let keys = opened.keys();
    let now = cachet_server::now();
    let actor = cli_actor();
    let print = |v: &dyn erased::Show| println!("{}", v.show());
    match args.command {
        KeysCommand::List => {
            let list = keys.list(now).await.map_err(|e| e.to_string())?;
            print(&list);
        }
        KeysCommand::Rotate => {
            let k = keys.rotate(&actor, now).await.map_err(|e| e.to_string())?;
            eprintln!("published {}; it signs from {}", k.kid, cachet_verify::x509::fmt_time(k.active_from));
            print(&k);
        }
        KeysCommand::Revoke { kid } => {
            if !keys.revoke(&kid, &actor, now).await.map_err(|e| e.to_string())? {
                eprintln!("cachet keys: no unrevoked key {kid}");
                return Ok(ExitCode::from(1));
            }
            eprintln!("revoked {kid}");
        }
        KeysCommand::Prune => {
            let gone = keys.prune(&actor, now).await.map_err(|e| e.to_string())?;
            eprintln!("deleted {} key(s)", gone.len());
            print(&gone);
        }
        KeysCommand::Import { alg, key, cert } => {
            let pem = read_pem(&key)?;
            let pkcs8 = cachet_verify::x509::pem_blocks(&pem, "PRIVATE KEY")
                .into_iter()
                .next()
                .ok_or_else(|| format!("{}: no PRIVATE KEY (PKCS#8) block", key.display()))?;
            let chain = match &cert {
                Some(c) => chain_from(c)?,
                None => Vec::new(),
            };
            let k = keys.import(alg, &pkcs8, chain, &actor, now).await.map_err(|e| e.to_string())?;
            print(&k);
        }
        KeysCommand::AttachCert { kid, cert } => {
            keys.attach_chain(&kid, chain_from(&cert)?, &actor, now).await.map_err(|e| e.to_string())?;
            eprintln!("certificate attached to {kid}");
        }
    }
    opened.store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Pretty JSON printing of serialisable values behind one trait object.
mod erased {
    pub trait Show {
        fn show(&self) -> String;
    }
    impl<T: serde::Serialize> Show for T {
        fn show(&self) -> String {
            serde_json::to_string_pretty(self).unwrap_or_default()
        }
    }
}
