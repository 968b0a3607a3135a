//! `cachet serve`: the attestation service (see `cachet serve --help`).
//!
//! The flags, environment variables and configuration file are defined in
//! `cachet_server::config`, shared with the standalone `cachet-server`.

use std::process::ExitCode;

pub use cachet_server::ServeArgs;

/// Run the service until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> ExitCode {
    cachet_server::run_blocking(args)
}
