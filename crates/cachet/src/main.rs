//! `cachet`: the command line over Cachet's verifier, service and attester.

mod verify_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Remote attestation and key release for confidential computing.
#[derive(Parser)]
#[command(name = "cachet", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify attestation evidence offline and print its claims.
    ///
    /// Exit status: 0 verified, 1 verification failed (the failing check is
    /// named), 2 usage or I/O error.
    Verify(verify_cmd::VerifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify(args) => verify_cmd::run(args),
    }
}
