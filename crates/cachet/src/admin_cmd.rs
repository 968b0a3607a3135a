//! `cachet admin`: API keys for the admin API (create, list, revoke), and
//! appraisal-policy tools (`cachet admin policy sign`).

use std::process::ExitCode;

use cachet_server::auth::{format_time, new_expiring_api_key, parse_expiry, Role};
use cachet_server::ops::{block_on, cli_actor, open, open_or_create, StoreArgs};
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
        /// `admin` (every route) or `reader` (read-only routes), within the key's scope: with `--tenant`, that tenant's own objects only; without, the whole service (an operator key).
        #[arg(long, value_enum)]
        role: Role,
        /// A label for the key.
        #[arg(long, default_value = "")]
        name: String,
        /// The tenant the key acts for: it owns the key-broker secrets it
        /// puts and sees only those (`cachet secrets`). Without it: an
        /// operator key, which manages the whole service.
        #[arg(long)]
        tenant: Option<String>,
        /// When the key stops being accepted: an RFC 3339 time
        /// (`2026-12-31T00:00:00Z`) or a duration from now (`90d`, `12h`,
        /// `30m`). Without it the key does not expire.
        #[arg(long)]
        expires: Option<String>,
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
        Ok(Err(e)) | Err(e) => crate::exit::usage("admin", e),
    }
}

async fn run_async(args: AdminArgs) -> Result<ExitCode, String> {
    // Creating the first key may come before the first `cachet serve`.
    let opened = match args.command {
        AdminCommand::CreateKey { .. } => open_or_create(&args.store).await?,
        _ => open(&args.store).await?,
    };
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
        AdminCommand::CreateKey { role, name, tenant, expires } => {
            let expires_at = expires.as_deref().map(|e| parse_expiry(e, now)).transpose()?;
            let k = new_expiring_api_key(&name, role, tenant.as_deref(), expires_at, now)?;
            let a = audit(
                "api_key.create",
                json!({"id": k.record.id, "name": name, "role": role.as_str(), "tenant": tenant, "expires_at": expires_at}),
            );
            store.insert_api_key(&k.record, &a).await.map_err(|e| e.to_string())?;
            let until = expires_at.map(|e| format!(", expires {}", format_time(e))).unwrap_or_default();
            eprintln!("created {} key {}{until} (shown once; keep it secret)", role.as_str(), k.record.id);
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
