//! `cachet audit`: check and read the tamper-evident audit log.

use std::process::ExitCode;

use cachet_server::ops::{block_on, open, StoreArgs};
use cachet_store::Store;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain. Exit 0 intact (prints the entry count and head
    /// hash: keep the head elsewhere to detect truncation later), 1 broken
    /// (names the first bad entry), 2 error.
    Verify {
        /// Also require this head hash (from an earlier `verify`) to be in the chain.
        #[arg(long)]
        expect_head: Option<String>,
    },
    /// Print entries as JSON lines.
    Show {
        /// Entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

pub fn run(args: AuditArgs) -> ExitCode {
    match block_on(run_async(args)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) | Err(e) => crate::exit::usage("audit", e),
    }
}

async fn run_async(args: AuditArgs) -> Result<ExitCode, String> {
    let opened = open(&args.store).await?;
    let store = opened.store.clone();
    let code = match args.command {
        AuditCommand::Verify { expect_head } => match cachet_store::verify_audit_chain(store.as_ref()).await {
            Ok((n, head)) => {
                let found = match &expect_head {
                    None => true,
                    Some(h) => head_in_chain(store.as_ref(), h).await?,
                };
                if found {
                    println!("audit log intact: {n} entries, head {head}");
                    ExitCode::SUCCESS
                } else {
                    println!("audit log TRUNCATED or replaced: the expected head is not in the chain ({n} entries, head {head})");
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                println!("audit log BROKEN: {e}");
                ExitCode::from(1)
            }
        },
        AuditCommand::Show { after, limit } => {
            for r in store.audit_page(after, limit).await.map_err(|e| e.to_string())? {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

async fn head_in_chain(store: &dyn Store, head: &str) -> Result<bool, String> {
    let mut after = 0;
    loop {
        let page = store.audit_page(after, 1000).await.map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { return Ok(false) };
        if page.iter().any(|r| r.hash == head) {
            return Ok(true);
        }
        after = last.seq;
    }
}
