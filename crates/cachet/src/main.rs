//! `cachet`: the command line over Cachet's verifier, service and attester.

mod admin_cmd;
mod attest_cmd;
mod audit_cmd;
mod demo_cmd;
mod dist_cmd;
mod endorsements_cmd;
mod exit;
mod keys_cmd;
mod policy_cmd;
mod refvals_cmd;
mod secrets_cmd;
mod selftest_cmd;
mod serve_cmd;
mod verify_cmd;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

/// Remote attestation and key release for confidential computing.
#[derive(Parser)]
#[command(name = "cachet", version = dist_cmd::VERSION, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify attestation evidence and print its claims (the endorsements it needs are fetched from the manufacturers and cached, unless given with -e or --offline).
    ///
    /// Exit status: 0 verified, 1 verification failed (the failing check is
    /// named), 2 usage or I/O error.
    Verify(verify_cmd::VerifyArgs),
    /// The manufacturers' endorsements by hand (air-gapped): fetch into a
    /// bundle, import, export, list.
    Endorsements(endorsements_cmd::EndorsementsArgs),
    /// Run the attestation service (HTTP/HTTPS): challenges, attestation
    /// tokens, JWKS discovery, admin API, audit log.
    Serve(Box<serve_cmd::ServeArgs>),
    /// Manage token signing keys (list, rotate, revoke, prune, import).
    Keys(keys_cmd::KeysArgs),
    /// Manage admin API keys (create-key, list-keys, revoke-key); sign
    /// appraisal policies (policy sign).
    Admin(admin_cmd::AdminArgs),
    /// Check (verify) or read (show) the tamper-evident audit log.
    Audit(audit_cmd::AuditArgs),
    /// Build and list reference values (allowed measurements) from in-toto /
    /// SLSA provenance and plain JSON/TOML files.
    Refvals(refvals_cmd::RefvalsArgs),
    /// A tenant's key-broker secrets: put (value + Rego release policy),
    /// list, get, delete, and the releases of them.
    Secrets(secrets_cmd::SecretsArgs),
    /// Attest this workload (inside a TEE): challenge, evidence bound to the
    /// nonce, token printed on stdout. Exit 0 token, 1 refused, 2 error.
    Attest(attest_cmd::AttestArgs),
    /// Attest with a fresh key and fetch secrets (OWNER/NAME) released to it.
    /// Exit 0 all released, 1 any refused, 2 error.
    FetchSecret(attest_cmd::FetchArgs),
    /// Run the whole key-release story locally (in-process service, INSECURE
    /// simulated TEE): two owners, an approved and a modified workload, the
    /// audit log.
    Demo(demo_cmd::DemoArgs),
    /// Mutation self-test over the real vectors: every forgery must be
    /// refused by name (exit 1 if one is accepted or panics).
    Selftest(selftest_cmd::SelftestArgs),
    /// Print a shell completion script (bash, zsh, fish) on stdout.
    Completions(dist_cmd::CompletionsArgs),
    /// Print a manual page (roff) on stdout: `cachet man | man -l -`.
    Man(dist_cmd::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if writes_local_output_only(&cli.command) {
        default_sigpipe();
    }
    match cli.command {
        Command::Verify(args) => verify_cmd::run(args),
        Command::Endorsements(args) => endorsements_cmd::run(args),
        Command::Serve(args) => serve_cmd::run(*args),
        Command::Keys(args) => keys_cmd::run(args),
        Command::Admin(args) => admin_cmd::run(args),
        Command::Audit(args) => audit_cmd::run(args),
        Command::Refvals(args) => refvals_cmd::run(args),
        Command::Secrets(args) => secrets_cmd::run(args),
        Command::Attest(args) => attest_cmd::run(args),
        Command::FetchSecret(args) => attest_cmd::run_fetch(args),
        Command::Demo(args) => demo_cmd::run(args),
        Command::Selftest(args) => selftest_cmd::run(args),
        Command::Completions(args) => dist_cmd::completions(args, Cli::command()),
        Command::Man(args) => dist_cmd::man(args, Cli::command()),
    }
}

/// Commands that print to stdout and talk to no peer but, at most, the
/// store's database: for them a closed pipe (`cachet audit show | head`)
/// should end the process quietly, as for any Unix filter, rather than
/// panic in `println!`. The service and the networked client commands keep
/// Rust's default (SIGPIPE ignored, EPIPE as an error) so that a peer
/// closing a connection is an error they handle.
fn writes_local_output_only(command: &Command) -> bool {
    matches!(command, Command::Verify(_) | Command::Keys(_) | Command::Admin(_) | Command::Audit(_) | Command::Selftest(_))
}

#[cfg(unix)]
fn default_sigpipe() {
    // SAFETY: called once at start, before any thread exists; SIG_DFL is a
    // valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn default_sigpipe() {}
