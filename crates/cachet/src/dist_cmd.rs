//! `cachet completions SHELL` and `cachet man [SUBCOMMAND]`: shell
//! completions and the roff manual page, generated from the parser's own
//! definitions, so that packages ship what the binary really accepts.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

/// `cachet --version`: the package version and the commit it was built
/// from (`crates/cachet/build.rs`; `unknown` outside a git checkout).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("CACHET_GIT_COMMIT"), ")");

/// Shells `cachet completions` writes for.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Shell {
    /// Bash: source it, or install as /usr/share/bash-completion/completions/cachet.
    Bash,
    /// Zsh: install as `_cachet` in a folder of $fpath (e.g. /usr/share/zsh/vendor-completions).
    Zsh,
    /// Fish: install as /usr/share/fish/vendor_completions.d/cachet.fish.
    Fish,
}

/// Print a completion script for SHELL on stdout.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Print a manual page (roff) on stdout: `cachet man | man -l -`, or
/// `cachet man serve > cachet-serve.1`.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// The subcommand to document (e.g. `serve`); none: the `cachet(1)` page.
    #[arg(value_name = "SUBCOMMAND")]
    pub subcommand: Option<String>,
}

/// Write the completion script for `args.shell` of the command line `cmd`.
pub fn completions(args: CompletionsArgs, mut cmd: clap::Command) -> ExitCode {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "cachet", &mut out);
    emit(&out)
}

/// Write the manual page of `cmd`, or of its subcommand `args.subcommand`
/// (titled `cachet-SUBCOMMAND`, as git and cargo name theirs).
pub fn man(args: ManArgs, cmd: clap::Command) -> ExitCode {
    let cmd = cmd.version(VERSION);
    let page = match &args.subcommand {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name) {
            Some(sub) => {
                // clap takes a name as `&'static str` (without its "string"
                // feature); this process prints one page and exits.
                let page: &'static str = Box::leak(format!("cachet-{}", sub.get_name()).into_boxed_str());
                sub.clone().name(page).display_name(page).bin_name(format!("cachet {}", sub.get_name())).version(VERSION)
            }
            None => {
                let names: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).filter(|n| *n != "help").collect();
                eprintln!("error: no subcommand '{name}'; use one of: {}", names.join(", "));
                return ExitCode::from(2);
            }
        },
    };
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(page).render(&mut out) {
        eprintln!("error: rendering the manual page: {e}");
        return ExitCode::from(2);
    }
    emit(&out)
}

/// Write the whole text at once; a closed stdout (`| head`) is not an error.
fn emit(text: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing to stdout: {e}");
            ExitCode::from(2)
        }
    }
}
