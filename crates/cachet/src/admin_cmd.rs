//! `cachet admin`: API keys for the admin API (create, list, revoke), and
//! appraisal-policy tools (`cachet admin policy sign`).

use std::process::ExitCode;

use cachet_server::auth::{new_tenant_api_key, Role};
use cachet_server::ops::{block_on, cli_actor, open, StoreArgs};
use cachet_store::AuditEntry;
use clap::{Args, Subcommand};
use serde_json::json;

#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create an API key and print it (shown once; only its hash is kept).
    CreateKey {
        /// `admin` (every admin route) or `reader` (read-only routes).
        #[arg(long, value_enum)]
        role: Role,
        /// A label for the key.
        #[arg(long, default_value = "")]
        name: String,
        /// The tenant the key acts for: it owns the key-broker secrets it
        /// puts and sees only those (`cachet secrets`).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List API keys (never their secrets).
    ListKeys,
    /// Revoke an API key by id.
    RevokeKey {
        /// Key id (the part after `cachet_`).
        id: String,
    },
    /// Appraisal-policy tools: `sign` a Rego policy as a JWS for a server
    /// that requires signed policies (--policy-signing-cert).
    Policy(crate::policy_cmd::PolicyArgs),
}

pub fn run(args: AdminArgs) -> ExitCode {
    // Policy tools work on files only: no store is opened.
    let args = match args.command {
        AdminCommand::Policy(p) => return crate::policy_cmd::run(p),
        command => AdminArgs { command, ..args },
    };
    match block_on(run_async(args)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) | Err(e) => {
            eprintln!("cachet admin: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run_async(args: AdminArgs) -> Result<ExitCode, String> {
    let opened = open(&args.store).await?;
    let store = opened.store.clone();
    let now = cachet_server::now();
    let audit = |action: &str, detail: serde_json::Value| AuditEntry {
        ts: now,
        actor: cli_actor(),
        action: action.into(),
        outcome: "ok".into(),
        detail,
        ..Default::default()
    };
    let code = match args.command {
        AdminCommand::CreateKey { role, name, tenant } => {
            let k = new_tenant_api_key(&name, role, tenant.as_deref(), now)?;
            let a = audit("api_key.create", json!({"id": k.record.id, "name": name, "role": role.as_str(), "tenant": tenant}));
            store.insert_api_key(&k.record, &a).await.map_err(|e| e.to_string())?;
            eprintln!("created {} key {} (shown once; keep it secret)", role.as_str(), k.record.id);
            println!("{}", k.key);
            ExitCode::SUCCESS
        }
        AdminCommand::ListKeys => {
            let keys = store.list_api_keys().await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&keys).unwrap_or_default());
            ExitCode::SUCCESS
        }
        AdminCommand::Policy(p) => crate::policy_cmd::run(p),
        AdminCommand::RevokeKey { id } => {
            if store.revoke_api_key(&id, now, &audit("api_key.revoke", json!({"id": id}))).await.map_err(|e| e.to_string())? {
                eprintln!("revoked {id}");
                ExitCode::SUCCESS
            } else {
                eprintln!("cachet admin: no active API key {id}");
                ExitCode::from(1)
            }
        }
    };
    store.close().await;
    Ok(code)
}
