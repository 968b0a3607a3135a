//! The tamper-evident audit log: a hash chain over every entry.
//!
//! Each record's `hash` is `SHA-256(prev_hash ‖ canonical(record))`, where
//! the canonical form is the JSON array of the record's fields in a fixed
//! order (`detail` is stored as JSON text, so no map ordering is involved).
//! Editing, inserting or deleting a row in the middle breaks the chain at
//! that row; [`ChainChecker`] names the first broken sequence number.
//! (Truncating the tail is only detectable against a head hash kept
//! elsewhere, which `cachet audit verify` prints for that purpose.)

use aws_lc_rs::digest;
use serde::Serialize;
use serde_json::json;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An event to record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// When (Unix seconds).
    pub ts: i64,
    /// Who: `api-key:<id>`, `cli`, `client:<address>`, `server`.
    pub actor: String,
    /// What: `attest`, `api_key.create`, `signing_key.rotate`, ...
    pub action: String,
    /// TEE family, for attestations.
    pub tee: Option<String>,
    /// `ok`, `refused`, `error`.
    pub outcome: String,
    /// The failing check, for refused attestations.
    pub failed_check: Option<String>,
    /// The token issued (its `jti`), if any.
    pub token_id: Option<String>,
    /// Further detail as a JSON value (kept as text).
    pub detail: serde_json::Value,
}

/// An entry as stored, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Position, from 1, without gaps.
    pub seq: i64,
    /// When.
    pub ts: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// TEE family.
    pub tee: Option<String>,
    /// Outcome.
    pub outcome: String,
    /// Failing check.
    pub failed_check: Option<String>,
    /// Token id.
    pub token_id: Option<String>,
    /// Detail, as the JSON text stored.
    pub detail: String,
    /// Hash of the previous record ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

/// Hex SHA-256 chaining `prev_hash` with the record's fields.
#[allow(clippy::too_many_arguments)]
pub fn chain_hash(
    prev_hash: &str,
    seq: i64,
    ts: i64,
    actor: &str,
    action: &str,
    tee: Option<&str>,
    outcome: &str,
    failed_check: Option<&str>,
    token_id: Option<&str>,
    detail: &str,
) -> String {
    let canonical = json!([seq, ts, actor, action, tee, outcome, failed_check, token_id, detail]).to_string();
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev_hash.as_bytes());
    ctx.update(b"\n");
    ctx.update(canonical.as_bytes());
    hex::encode(ctx.finish().as_ref())
}

impl AuditRecord {
    /// The hash this record should carry, recomputed from its fields.
    pub fn expected_hash(&self) -> String {
        chain_hash(
            &self.prev_hash,
            self.seq,
            self.ts,
            &self.actor,
            &self.action,
            self.tee.as_deref(),
            &self.outcome,
            self.failed_check.as_deref(),
            self.token_id.as_deref(),
            &self.detail,
        )
    }
}

/// Where and why the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at entry {seq}: {reason}")]
pub struct ChainError {
    /// The first sequence number that does not check.
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks records one by one, in order.
#[derive(Debug, Clone)]
pub struct ChainChecker {
    next_seq: i64,
    prev_hash: String,
}

impl Default for ChainChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainChecker {
    /// A checker expecting the first record.
    pub fn new() -> Self {
        Self { next_seq: 1, prev_hash: GENESIS.to_string() }
    }

    /// Check the next record.
    pub fn check(&mut self, r: &AuditRecord) -> Result<(), ChainError> {
        let fail = |reason: String| Err(ChainError { seq: r.seq, reason });
        if r.seq != self.next_seq {
            return fail(format!("expected entry {} next (an entry was removed or inserted)", self.next_seq));
        }
        if r.prev_hash != self.prev_hash {
            return fail("its prev_hash is not the previous entry's hash".into());
        }
        if r.expected_hash() != r.hash {
            return fail("its content does not match its hash (edited)".into());
        }
        self.next_seq += 1;
        self.prev_hash = r.hash.clone();
        Ok(())
    }

    /// The number of records checked and the head hash.
    pub fn finish(self) -> (u64, String) {
        (u64::try_from(self.next_seq - 1).unwrap_or(0), self.prev_hash)
    }
}
