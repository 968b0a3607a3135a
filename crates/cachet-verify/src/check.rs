//! The record of what a verifier checked.
//!
//! Every verifier reports each check it ran by name, pass or fail, so that a
//! user can see *why* evidence was refused ("PCK CRL: certificate revoked"),
//! not merely that it was.

use serde::Serialize;

/// One named check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable, human-readable name of the check, e.g. `"PCK CRL"`.
    pub name: String,
    /// Whether the check passed.
    pub ok: bool,
    /// What was found: the value compared, the reason for failure.
    pub detail: String,
}

/// A verification failure: the check that failed and why.
///
/// `check` is the same name as the failing [`Check`], so `Display` reads
/// like `"PCK CRL: certificate revoked (serial 1a2b)"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{check}: {message}")]
pub struct VerifyError {
    /// Name of the failing check.
    pub check: String,
    /// Why it failed, for a person.
    pub message: String,
}

impl VerifyError {
    /// A failure of the named check.
    pub fn new(check: impl Into<String>, message: impl Into<String>) -> Self {
        Self { check: check.into(), message: message.into() }
    }

    /// A stable machine-readable code derived from the check name
    /// (`"PCK CRL"` -> `"pck_crl"`), for JSON errors and metrics.
    pub fn code(&self) -> String {
        let mut out = String::new();
        for c in self.check.chars() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase());
            } else if !out.ends_with('_') && !out.is_empty() {
                out.push('_');
            }
        }
        out.trim_end_matches('_').to_string()
    }
}

/// Shorthand for results inside verifiers.
pub type VResult<T> = Result<T, VerifyError>;

/// Collects checks as a verifier runs.
///
/// `fail` both records the failed check and returns the error to propagate,
/// so a verifier cannot fail without saying which check failed.
#[derive(Debug, Default, Clone)]
pub struct Checks {
    list: Vec<Check>,
}

impl Checks {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a passed check.
    pub fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.list.push(Check { name: name.to_string(), ok: true, detail: detail.into() });
    }

    /// Record a failed check and return the error naming it.
    pub fn fail(&mut self, name: &str, detail: impl Into<String>) -> VerifyError {
        let detail = detail.into();
        self.list.push(Check { name: name.to_string(), ok: false, detail: detail.clone() });
        VerifyError::new(name, detail)
    }

    /// Record a failed check that does not fail verification: the evidence
    /// is authentic, but a comparison against reference values (e.g. an
    /// NVIDIA RIM) did not hold. The claims carry the outcome and the
    /// appraisal policy decides, as it does for an out-of-date TCB.
    pub fn warn(&mut self, name: &str, detail: impl Into<String>) {
        self.list.push(Check { name: name.to_string(), ok: false, detail: detail.into() });
    }

    /// Record the check as passed when `ok`, else fail it.
    pub fn require(&mut self, name: &str, ok: bool, pass_detail: impl Into<String>, fail_detail: impl Into<String>) -> VResult<()> {
        if ok {
            self.pass(name, pass_detail);
            Ok(())
        } else {
            Err(self.fail(name, fail_detail))
        }
    }

    /// Record the outcome of a fallible step under one check name.
    pub fn record<T>(&mut self, name: &str, r: Result<T, String>, pass_detail: impl Into<String>) -> VResult<T> {
        match r {
            Ok(v) => {
                self.pass(name, pass_detail);
                Ok(v)
            }
            Err(e) => Err(self.fail(name, e)),
        }
    }

    /// Append the checks of a nested verification (e.g. the SNP report inside
    /// Azure evidence), prefixing their names.
    pub fn extend_prefixed(&mut self, prefix: &str, other: Checks) {
        for mut c in other.list {
            c.name = format!("{prefix}{}", c.name);
            self.list.push(c);
        }
    }

    /// The checks recorded so far.
    pub fn as_slice(&self) -> &[Check] {
        &self.list
    }

    /// Take the recorded checks.
    pub fn into_vec(self) -> Vec<Check> {
        self.list
    }
}
