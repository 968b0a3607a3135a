//! `cachet-server`: the attestation service alone (same as `cachet serve`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    cachet_server::run_blocking(cachet_server::ServeArgs::parse())
}
