//! The tamper-evident audit log: a hash chain over every entry.
//!
//! Each record's `hash` is `SHA-256(prev_hash ‖ canonical(record))`, where
//! the canonical form is the JSON array of the record's fields in a fixed
//! order (`detail` is stored as JSON text, so no map ordering is involved).
//! Editing, inserting or deleting a row in the middle breaks the chain at
//! that row; [`ChainChecker`] names the first broken sequence number.
//! (Truncating the tail is only detectable against a head hash kept
//! elsewhere, which `cachet audit verify` prints for that purpose.)

use std::borrow::Cow;

use aws_lc_rs::digest;
use serde::Serialize;
use serde_json::{json, Value};

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

/// Longest text field kept whole in an audit record (`actor`, `action`,
/// `tee`, `outcome`, `failed_check`, `token_id`), in bytes.
pub const MAX_FIELD: usize = 256;
/// Longest string kept whole inside `detail`, in bytes.
pub const MAX_DETAIL_STRING: usize = 2048;
/// Most items of one array (or entries of one object) kept inside `detail`.
pub const MAX_DETAIL_ITEMS: usize = 64;
/// Deepest nesting kept inside `detail`.
pub const MAX_DETAIL_DEPTH: usize = 8;
/// Largest `detail` (as JSON text) kept; a larger one is replaced by its
/// summary (size, SHA-256, a prefix).
pub const MAX_DETAIL: usize = 16 << 10;
/// Most bytes of records (their text fields) in one page of
/// [`crate::Store::audit_page`] / [`crate::Store::owner_audit_page`]: a page
/// ends at `limit` rows or at this budget, whichever comes first (it always
/// holds at least one row, so paging by the last `seq` makes progress).
pub const MAX_PAGE_BYTES: i64 = 4 << 20;

/// Hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// `s` if it is at most `max` bytes, else its first bytes (cut on a
/// character boundary) followed by a marker with the full length and the
/// SHA-256 of the whole value, so a record stays bounded yet can still be
/// matched against the value it was about. For anything a caller sent that
/// reaches the audit log or the process log.
pub fn bound_text(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut cut = max.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}…[truncated: {} bytes, sha256:{}]", &s[..cut], s.len(), sha256_hex(s.as_bytes())))
}

/// A JSON value with every string, array, object and nesting level within
/// the limits above (see [`bound_text`]); cut parts are replaced by markers
/// naming their size and SHA-256.
fn bound_value(v: &Value, depth: usize) -> Value {
    let marker = |what: &str, v: &Value| {
        let text = v.to_string();
        Value::String(format!("…[truncated: {what} of {} bytes, sha256:{}]", text.len(), sha256_hex(text.as_bytes())))
    };
    match v {
        Value::String(s) => Value::String(bound_text(s, MAX_DETAIL_STRING).into_owned()),
        Value::Array(_) | Value::Object(_) if depth >= MAX_DETAIL_DEPTH => marker("nested value", v),
        Value::Array(items) => {
            let mut out: Vec<Value> = items.iter().take(MAX_DETAIL_ITEMS).map(|i| bound_value(i, depth + 1)).collect();
            if items.len() > MAX_DETAIL_ITEMS {
                out.push(marker(&format!("{} more items; the whole array", items.len() - MAX_DETAIL_ITEMS), v));
            }
            Value::Array(out)
        }
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .take(MAX_DETAIL_ITEMS)
                .map(|(k, i)| (bound_text(k, MAX_FIELD).into_owned(), bound_value(i, depth + 1)))
                .collect();
            if map.len() > MAX_DETAIL_ITEMS {
                out.insert("…".into(), marker(&format!("{} more entries; the whole object", map.len() - MAX_DETAIL_ITEMS), v));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

impl AuditEntry {
    /// The entry as it is stored: every text field within [`MAX_FIELD`] and
    /// `detail` within the detail limits (each string, array, object and
    /// level, then [`MAX_DETAIL`] in all). Entries record what callers sent
    /// (refused evidence, requested secret names), so without this an
    /// unauthenticated request could write rows of any size. Applied by
    /// every backend when appending, so no caller can skip it.
    pub fn bounded(&self) -> Cow<'_, AuditEntry> {
        let fields = [
            Some(&self.actor),
            Some(&self.action),
            self.tee.as_ref(),
            Some(&self.outcome),
            self.failed_check.as_ref(),
            self.token_id.as_ref(),
        ];
        let short = fields.iter().flatten().all(|f| f.len() <= MAX_FIELD);
        let detail = self.detail.to_string();
        if short && detail.len() <= MAX_DETAIL && !too_wide(&self.detail, 0) {
            return Cow::Borrowed(self);
        }
        let field = |s: &str| bound_text(s, MAX_FIELD).into_owned();
        let mut detail_value = bound_value(&self.detail, 0);
        let bounded_text = detail_value.to_string();
        if bounded_text.len() > MAX_DETAIL {
            detail_value = json!({
                "truncated": format!("detail of {} bytes, sha256:{}", detail.len(), sha256_hex(detail.as_bytes())),
                "prefix": bound_text(&bounded_text, MAX_DETAIL_STRING),
            });
        }
        Cow::Owned(AuditEntry {
            ts: self.ts,
            actor: field(&self.actor),
            action: field(&self.action),
            tee: self.tee.as_deref().map(field),
            outcome: field(&self.outcome),
            failed_check: self.failed_check.as_deref().map(field),
            token_id: self.token_id.as_deref().map(field),
            detail: detail_value,
        })
    }
}

tokio::task_local! {
    /// The id of the HTTP request being served, set by the server around
    /// each request (`x-request-id`). Every entry appended while it is set
    /// records it as `detail.request_id` ([`AuditEntry::stored`]), so an
    /// audit entry leads to that request's log lines.
    pub static REQUEST_ID: String;
}

impl AuditEntry {
    /// The entry as it is stored: [`Self::bounded`], then stamped with the
    /// current [`REQUEST_ID`] (if any) as `detail.request_id` (a `null`
    /// detail becomes an object, any other non-object is kept under
    /// `detail.detail`). Stamped after bounding so the id is never cut; it
    /// is itself bounded to [`MAX_FIELD`]. Applied by every backend when
    /// appending, so every entry written during a request carries its id.
    pub fn stored(&self) -> Cow<'_, AuditEntry> {
        let bounded = self.bounded();
        let Ok(id) = REQUEST_ID.try_with(|id| bound_text(id, MAX_FIELD).into_owned()) else { return bounded };
        let mut e = bounded.into_owned();
        e.detail = match std::mem::take(&mut e.detail) {
            Value::Object(mut m) => {
                m.insert("request_id".into(), Value::String(id));
                Value::Object(m)
            }
            Value::Null => json!({ "request_id": id }),
            other => json!({ "request_id": id, "detail": other }),
        };
        Cow::Owned(e)
    }
}

/// Whether `v` has an array or object wider than [`MAX_DETAIL_ITEMS`] or
/// nested deeper than [`MAX_DETAIL_DEPTH`] (a small detail can still be).
fn too_wide(v: &Value, depth: usize) -> bool {
    match v {
        Value::Array(_) | Value::Object(_) if depth >= MAX_DETAIL_DEPTH => true,
        Value::Array(a) => a.len() > MAX_DETAIL_ITEMS || a.iter().any(|i| too_wide(i, depth + 1)),
        Value::Object(m) => m.len() > MAX_DETAIL_ITEMS || m.iter().any(|(k, i)| k.len() > MAX_FIELD || too_wide(i, depth + 1)),
        Value::String(s) => s.len() > MAX_DETAIL_STRING,
        _ => false,
    }
}

/// Where a page of records ends, given `(seq, size)` of the candidate rows
/// in order: the last `seq` whose running size stays within
/// [`MAX_PAGE_BYTES`], and never before the first row.
pub fn page_end(sizes: &[(i64, i64)]) -> Option<i64> {
    let mut total: i64 = 0;
    let mut end = None;
    for (seq, size) in sizes {
        total = total.saturating_add((*size).max(0));
        if end.is_some() && total > MAX_PAGE_BYTES {
            break;
        }
        end = Some(*seq);
    }
    end
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_with_its_hash() {
        assert!(matches!(bound_text("abc", 3), Cow::Borrowed("abc")));
        let long = "é".repeat(1000); // 2000 bytes, 2-byte characters
        let cut = bound_text(&long, 101);
        assert!(cut.starts_with(&"é".repeat(50)), "cut on a character boundary: {cut}");
        assert!(cut.contains("[truncated: 2000 bytes, sha256:"), "{cut}");
        assert!(cut.contains(&sha256_hex(long.as_bytes())));
        assert!(cut.len() < 101 + 120);
    }

    #[test]
    fn an_entry_within_the_limits_is_stored_as_is() {
        let e = AuditEntry {
            actor: "client:127.0.0.1".into(),
            action: "attest".into(),
            outcome: "ok".into(),
            detail: json!({"a": [1, 2], "b": "x"}),
            ..Default::default()
        };
        assert!(matches!(e.bounded(), Cow::Borrowed(_)));
    }

    #[test]
    fn every_caller_supplied_part_of_an_entry_is_bounded() {
        let huge = "A".repeat(60_000);
        let e = AuditEntry {
            actor: "client:127.0.0.1".into(),
            action: "attest".into(),
            tee: Some(huge.clone()),
            outcome: "refused".into(),
            failed_check: Some(huge.clone()),
            detail: json!({"message": huge, "secrets": vec!["x"; 1000], "deep": json!([[[[[[[[[[["bottom"]]]]]]]]]]])}),
            ..Default::default()
        };
        let b = e.bounded();
        assert!(b.tee.as_ref().unwrap().len() < MAX_FIELD + 120);
        assert!(b.failed_check.as_ref().unwrap().contains(&sha256_hex(huge.as_bytes())));
        assert!(b.detail.to_string().len() <= MAX_DETAIL, "{}", b.detail.to_string().len());
        let msg = b.detail["message"].as_str().unwrap();
        assert!(msg.starts_with("AAAA") && msg.contains("[truncated: 60000 bytes, sha256:"), "{msg}");
        let secrets = b.detail["secrets"].as_array().unwrap();
        assert_eq!(secrets.len(), MAX_DETAIL_ITEMS + 1);
        assert!(secrets[MAX_DETAIL_ITEMS].as_str().unwrap().contains("936 more items"), "{}", secrets[MAX_DETAIL_ITEMS]);
        assert!(b.detail["deep"].to_string().contains("truncated: nested value"), "{}", b.detail["deep"]);

        // Many strings each under the limit, together over it: the detail
        // becomes its summary.
        let wide = AuditEntry { detail: json!({"secrets": vec!["B".repeat(2000); 60]}), ..Default::default() };
        let b = wide.bounded();
        let text = wide.detail.to_string();
        assert_eq!(b.detail["truncated"], format!("detail of {} bytes, sha256:{}", text.len(), sha256_hex(text.as_bytes())));
        assert!(b.detail.to_string().len() <= MAX_DETAIL);
    }

    #[test]
    fn entries_written_during_a_request_carry_its_id() {
        let e = AuditEntry { action: "attest".into(), detail: json!({"status": "affirming"}), ..Default::default() };
        assert!(matches!(e.stored(), Cow::Borrowed(_)), "outside a request: as bounded");
        REQUEST_ID.sync_scope("req-1".to_string(), || {
            assert_eq!(e.stored().detail, json!({"status": "affirming", "request_id": "req-1"}));
            let null = AuditEntry::default();
            assert_eq!(null.stored().detail, json!({"request_id": "req-1"}));
            let list = AuditEntry { detail: json!([1, 2]), ..Default::default() };
            assert_eq!(list.stored().detail, json!({"request_id": "req-1", "detail": [1, 2]}));
            // A detail naming its own request_id does not override the service's.
            let forged = AuditEntry { detail: json!({"request_id": "forged"}), ..Default::default() };
            assert_eq!(forged.stored().detail["request_id"], "req-1");
        });
        // Stamped after bounding: a summarised detail still carries the id.
        let wide = AuditEntry { detail: json!({"secrets": vec!["B".repeat(2000); 60]}), ..Default::default() };
        REQUEST_ID.sync_scope("req-2".to_string(), || {
            let s = wide.stored();
            assert_eq!(s.detail["request_id"], "req-2");
            assert!(s.detail["truncated"].is_string());
        });
    }

    #[test]
    fn a_page_ends_at_the_byte_budget_but_holds_at_least_one_row() {
        assert_eq!(page_end(&[]), None);
        assert_eq!(page_end(&[(7, MAX_PAGE_BYTES * 3)]), Some(7), "one oversized row still makes a page");
        let half = MAX_PAGE_BYTES / 2;
        assert_eq!(page_end(&[(1, half), (2, half), (3, 1)]), Some(2));
        assert_eq!(page_end(&[(1, 10), (2, 10), (3, 10)]), Some(3));
    }
}
