//! The exit statuses of every `cachet` command, and the one way a command
//! fails with one (README, *Exit status*).
//!
//! | status | meaning |
//! |---|---|
//! | 0 | done (verified, token issued, every secret released) |
//! | 1 | refused: verification or appraisal failed, the service refused, a check found a problem |
//! | 2 | usage, configuration, I/O or connection error: nothing was decided (clap's own usage errors too) |

use std::process::ExitCode;

/// Verification or appraisal failed, the service refused, a check failed.
pub const REFUSED: u8 = 1;
/// A usage, configuration, I/O or connection error.
pub const USAGE: u8 = 2;

/// A command's failure: its exit status and what to tell the user.
#[derive(Debug)]
pub struct Failure {
    /// [`REFUSED`] or [`USAGE`].
    pub code: u8,
    /// The message (printed as `cachet CMD: message`).
    pub message: String,
}

impl Failure {
    /// A usage, configuration, I/O or connection error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self { code: USAGE, message: message.into() }
    }

    /// A refusal (exit 1).
    pub fn refused(message: impl Into<String>) -> Self {
        Self { code: REFUSED, message: message.into() }
    }

    /// Print `cachet CMD: message` on stderr and give the exit status.
    pub fn exit(self, cmd: &str) -> ExitCode {
        eprintln!("cachet {cmd}: {}", self.message);
        ExitCode::from(self.code)
    }
}

/// Plain-text errors of the local commands are usage, configuration or I/O
/// errors.
impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::usage(message)
    }
}

/// An admin-API call: refused by the service (1), or not made (2).
impl From<cachet_server::secrets_client::ClientError> for Failure {
    fn from(e: cachet_server::secrets_client::ClientError) -> Self {
        match e {
            cachet_server::secrets_client::ClientError::Refused { .. } => Self::refused(e.to_string()),
            cachet_server::secrets_client::ClientError::Local(m) => Self::usage(m),
        }
    }
}

/// Print a usage/configuration/I-O error for `cmd` and give status 2.
pub fn usage(cmd: &str, message: impl std::fmt::Display) -> ExitCode {
    Failure::usage(message.to_string()).exit(cmd)
}
