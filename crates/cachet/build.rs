//! Stamps the git commit the binary is built from into `cachet --version`,
//! as `CACHET_GIT_COMMIT` (read with `env!`).
//!
//! The commit comes from, in order: the `CACHET_GIT_COMMIT` environment
//! variable (for builds from a tarball or a container context without
//! `.git`, where the builder knows the commit), `git rev-parse --short HEAD`,
//! else `unknown`. A build never fails for want of git.
//!
//! There is no `-dirty` mark: the script reruns only when HEAD moves (it
//! watches HEAD, the branch's ref file and packed-refs, so an edit does not
//! rerun it), so a dirty mark computed here would go stale with the next
//! edit and mislead more than it tells.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CACHET_GIT_COMMIT");
    let commit = match std::env::var("CACHET_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => git_commit().unwrap_or_else(|| "unknown".into()),
    };
    println!("cargo:rustc-env=CACHET_GIT_COMMIT={commit}");
}

/// The short commit of HEAD, watching the files that change when it moves.
fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    // `--git-path` resolves worktrees and a `.git` file; watch only files
    // that exist, since Cargo reruns a script whose watched path is missing.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])?, git(&["rev-parse", "--git-path", "packed-refs"])?];
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git(&["rev-parse", "--git-path", &reference]));
    }
    for path in watched {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
        if path.exists() {
            let path = std::fs::canonicalize(&path).unwrap_or(path);
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}

/// One git query run in the crate's folder; `None` when git is missing,
/// this is not a checkout, or the answer is empty.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}
