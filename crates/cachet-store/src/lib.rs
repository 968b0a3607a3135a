//! Persistence: embedded SQLite by default, behind a small SQL interface.
//!
//! [`Store`] is the whole interface the service needs: nonces consumed at
//! most once, API keys (hashed), token-signing keys, appraisal policies
//! (every version kept), reference values, and a hash-chained audit log. Every admin change is written in the same transaction as its
//! audit entry, so no change can exist without its record. The queries are
//! plain SQL; [`sqlite::SqliteStore`] is the embedded default (WAL journal,
//! `synchronous=FULL`: a committed write survives `kill -9` and power loss),
//! and [`postgres::PostgresStore`] is the backend for several `cachet serve`
//! replicas sharing one database (nonces consumed once across replicas, one
//! audit chain). [`open_url`] picks the backend from a database URL.

#![deny(missing_docs)]

pub mod audit;
pub mod group_commit;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use audit::{AuditEntry, AuditRecord, ChainError};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Whether `url` names a PostgreSQL database (`postgres://` or
/// `postgresql://`, scheme case-insensitive): the servers and commands
/// choose the backend by this, so one setting (`--database-url`) selects it.
pub fn is_postgres_url(url: &str) -> bool {
    has_scheme(url, "postgres://") || has_scheme(url, "postgresql://")
}

/// Whether `url` names an SQLite database file (`sqlite:PATH`).
fn is_sqlite_url(url: &str) -> bool {
    has_scheme(url, "sqlite:")
}

/// Whether `url` starts with `prefix`, ignoring ASCII case.
fn has_scheme(url: &str, prefix: &str) -> bool {
    url.trim_start().get(..prefix.len()).is_some_and(|h| h.eq_ignore_ascii_case(prefix))
}

/// Open (and migrate) the store a database URL names: `postgres://…` or
/// `postgresql://…` opens [`PostgresStore`], `sqlite:PATH` opens
/// [`SqliteStore`]. Any other scheme is refused rather than guessed (a typo
/// must not silently create a local file). Errors never repeat the URL,
/// which may carry a password.
pub async fn open_url(url: &str) -> StoreResult<Arc<dyn Store>> {
    if is_postgres_url(url) {
        Ok(Arc::new(PostgresStore::open(url).await?))
    } else if is_sqlite_url(url) {
        Ok(Arc::new(SqliteStore::open_url(url).await?))
    } else {
        Err(StoreError::Database("unsupported database URL: use sqlite:PATH, postgres://… or postgresql://…".into()))
    }
}

/// The JSON text a certificate chain is stored as (an array of hex DER),
/// the same in both backends so a dump moves between them unchanged.
pub(crate) fn chain_json(chain: &[Vec<u8>]) -> String {
    serde_json::Value::from(chain.iter().map(hex::encode).collect::<Vec<_>>()).to_string()
}

/// Parse a stored certificate chain ([`chain_json`]); a malformed one is
/// reported as corrupt, never trusted or panicked on.
pub(crate) fn parse_chain(text: &str) -> StoreResult<Vec<Vec<u8>>> {
    let chain_hex: Vec<String> = serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("signing key cert_chain: {e}")))?;
    chain_hex.iter().map(|h| hex::decode(h).map_err(|e| StoreError::Corrupt(format!("signing key cert_chain: {e}")))).collect()
}

/// A storage failure. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed an operation.
    #[error("database: {0}")]
    Database(String),
    /// Stored data is not what this version expects.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A record with this key exists already.
    #[error("already exists: {0}")]
    Conflict(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return StoreError::Conflict(db.message().to_string());
            }
        }
        StoreError::Database(e.to_string())
    }
}

/// Shorthand.
pub type StoreResult<T> = Result<T, StoreError>;

/// The [`Store::put_secret`] compare-and-swap lost: someone else wrote the
/// secret first.
pub(crate) fn secret_conflict(row: &SecretRow) -> StoreError {
    let expected = if row.version <= 1 { "none".to_string() } else { (row.version - 1).to_string() };
    StoreError::Conflict(format!("secret {}/{} changed concurrently (expected stored version {expected})", row.owner, row.name))
}

/// What consuming a nonce found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NonceOutcome {
    /// It was issued, unexpired and unused: it is now used.
    Consumed,
    /// Never issued here (or purged long after expiry).
    Unknown,
    /// Issued, but its expiry has passed.
    Expired,
    /// Already consumed by an earlier attestation.
    AlreadyUsed,
}

/// An admin API key as stored (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public identifier, part of the key string.
    pub id: String,
    /// Label given at creation.
    pub name: String,
    /// Role name (`admin`, `reader`).
    pub role: String,
    /// Hex SHA-256 of the secret part.
    #[serde(skip_serializing)]
    pub secret_hash: String,
    /// Creation time.
    pub created_at: i64,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
    /// The tenant the key acts for (owner of secrets), if any.
    #[serde(default)]
    pub tenant: Option<String>,
    /// After this instant (Unix seconds) the key is refused; `None`: never expires.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// A key-broker secret as stored: the sealed (envelope-encrypted) record is
/// opaque JSON text here; only the key broker can open it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRow {
    /// Owning tenant.
    pub owner: String,
    /// Name within the owner.
    pub name: String,
    /// Release policy (Rego).
    pub policy: String,
    /// SHA-256 of the policy.
    pub policy_hash: String,
    /// The sealed value (JSON: wrapped data key and ciphertext).
    pub sealed: String,
    /// Creation time.
    pub created_at: i64,
    /// Last update.
    pub updated_at: i64,
    /// Version, from 1.
    pub version: i64,
}

impl std::fmt::Debug for SecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRow")
            .field("owner", &self.owner)
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// One stored version of an appraisal policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRow {
    /// Policy name.
    pub name: String,
    /// Version, from 1; the highest is the current policy.
    pub version: i64,
    /// The Rego text.
    pub text: String,
    /// `sha-256:<hex>` of the text.
    pub hash: String,
    /// When this version was stored.
    pub created_at: i64,
    /// Who stored it (audit actor, e.g. `api-key:<id>`).
    pub created_by: String,
    /// Who signed it, when it was uploaded signed: JSON
    /// `{"subject", "thumbprint", "alg"}` of the policy-signing certificate
    /// that verified it. `None` for a version stored unsigned.
    #[serde(default)]
    pub signer: Option<String>,
    /// The compact JWS the version was uploaded as (its payload is `text`),
    /// kept so the signature can be checked again later. `None` when unsigned.
    #[serde(default)]
    pub jws: Option<String>,
}

/// A fetched endorsement as stored (a cache: see `cachet-endorse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndorsementRow {
    /// What it is (`cachet_endorse::Resource::key`), the primary key.
    pub key: String,
    /// Its kind (`tcb_info`, `vcek`, `rim`, ...), for listings.
    pub kind: String,
    /// The `cachet_endorse::Fetched` JSON.
    pub body: String,
    /// When it was fetched (Unix seconds).
    pub fetched_at: i64,
    /// The issuer's next update, when the document says.
    pub next_update: Option<i64>,
    /// Where it came from.
    pub source: String,
}

/// A named reference-value set as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceSetRow {
    /// The tenant owning the set (only its release policies read it), or
    /// `None` for an operator set (appraisal policies read it).
    #[serde(default)]
    pub owner: Option<String>,
    /// Set name, unique per owner.
    pub name: String,
    /// The set's JSON document (cachet-appraise `RefSet`).
    pub doc: String,
    /// Last change.
    pub updated_at: i64,
    /// Who changed it last.
    pub updated_by: String,
    /// For an operator set: the tenants whose release policies also read it
    /// (`"*"`: every tenant). Empty for tenant sets.
    #[serde(default)]
    pub shared_with: Vec<String>,
}

/// A token-signing key as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key ID.
    pub kid: String,
    /// JWS algorithm name.
    pub alg: String,
    /// Custody name.
    pub custody: String,
    /// Public key (SubjectPublicKeyInfo DER).
    pub public_spki: Vec<u8>,
    /// Custody handle (secret for the local custody).
    pub handle: Vec<u8>,
    /// Certificate chain, DER, leaf first.
    pub cert_chain: Vec<Vec<u8>>,
    /// Creation (= publication) time.
    pub created_at: i64,
    /// Time from which it signs.
    pub active_from: i64,
    /// Revocation time.
    pub revoked_at: Option<i64>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("custody", &self.custody)
            .field("created_at", &self.created_at)
            .field("active_from", &self.active_from)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// Everything the service persists. Methods that change admin state take
/// the audit entry describing the change and commit both together.
#[async_trait]
pub trait Store: Send + Sync {
    /// A cheap query proving the database answers (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    /// Close the connections, waiting for running queries to finish, so a
    /// short-lived command leaves no half-open session behind. The default
    /// does nothing (a backend without connections).
    async fn close(&self) {}

    /// Record an issued nonce.
    async fn insert_nonce(&self, nonce: &[u8], created_at: i64, expires_at: i64) -> StoreResult<()>;
    /// Consume a nonce atomically: of any number of concurrent calls for one
    /// valid nonce, exactly one returns [`NonceOutcome::Consumed`].
    async fn consume_nonce(&self, nonce: &[u8], now: i64) -> StoreResult<NonceOutcome>;
    /// Delete nonces that expired before `before`; returns how many.
    async fn purge_nonces(&self, before: i64) -> StoreResult<u64>;

    /// Store a new API key (a tenant's key is indexed for that tenant's audit view).
    async fn insert_api_key(&self, key: &ApiKeyRecord, audit: &AuditEntry) -> StoreResult<()>;
    /// Look an API key up by id.
    async fn find_api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// All API keys, oldest first.
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Revoke an API key; `false` when there is no such unrevoked key
    /// (a tenant's key: the entry is indexed for that tenant's audit view).
    async fn revoke_api_key(&self, id: &str, at: i64, audit: &AuditEntry) -> StoreResult<bool>;

    /// Store a new signing key.
    async fn insert_signing_key(&self, key: &SigningKeyRecord, audit: &AuditEntry) -> StoreResult<()>;
    /// All signing keys, oldest first.
    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;
    /// Revoke a signing key; `false` when there is no such unrevoked key.
    async fn revoke_signing_key(&self, kid: &str, at: i64, audit: &AuditEntry) -> StoreResult<bool>;
    /// Attach a certificate chain to a key; `false` when there is no such key.
    async fn set_signing_key_chain(&self, kid: &str, chain: &[Vec<u8>], audit: &AuditEntry) -> StoreResult<bool>;
    /// Move a signing key from custody `from` to custody `to` with its new
    /// handle (e.g. a plaintext key sealed under the KEK); `false` when
    /// there is no such key in custody `from` (another process moved it).
    async fn move_signing_key(&self, kid: &str, from: &str, to: &str, handle: &[u8], audit: &AuditEntry) -> StoreResult<bool>;
    /// Delete signing keys (expired or revoked ones); returns how many.
    async fn delete_signing_keys(&self, kids: &[String], audit: &AuditEntry) -> StoreResult<u64>;

    /// Append an entry (an attestation decision) to the audit log, bounded
    /// by [`AuditEntry::bounded`] (as every backend does for every entry).
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<AuditRecord>;
    /// Audit records with `seq > after`, in order, at most `limit` and at
    /// most [`audit::MAX_PAGE_BYTES`] of them (at least one).
    async fn audit_page(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditRecord>>;

    /// Write a secret with its audit entry (indexed for its owner), as a
    /// compare-and-swap on its version: `row.version` 1 creates it (refused
    /// if it exists), `row.version` n > 1 replaces version n - 1 and nothing
    /// else. A lost race is [`StoreError::Conflict`] and writes nothing, so
    /// concurrent writers each get a distinct version or retry.
    async fn put_secret(&self, row: &SecretRow, audit: &AuditEntry) -> StoreResult<()>;
    /// The secret `(owner, name)`.
    async fn get_secret(&self, owner: &str, name: &str) -> StoreResult<Option<SecretRow>>;
    /// An owner's secrets, by name.
    async fn list_secrets(&self, owner: &str) -> StoreResult<Vec<SecretRow>>;
    /// Delete `(owner, name)` with its audit entry; `false` if there was none.
    async fn delete_secret(&self, owner: &str, name: &str, audit: &AuditEntry) -> StoreResult<bool>;
    /// Append an audit entry and index it for each of `owners` (a release
    /// decision concerns the owners of the secrets requested).
    async fn append_owner_audit(&self, entry: &AuditEntry, owners: &[String]) -> StoreResult<AuditRecord>;
    /// Audit records indexed for `owner` with `seq > after`, in order, at
    /// most `limit` and at most [`audit::MAX_PAGE_BYTES`] of them (at least one).
    async fn owner_audit_page(&self, owner: &str, after: i64, limit: i64) -> StoreResult<Vec<AuditRecord>>;

    /// Store a new version of policy `row.name` (its `version` is ignored:
    /// the next one is assigned in the transaction) with its audit entry;
    /// returns the version stored.
    async fn put_policy(&self, row: &PolicyRow, audit: &AuditEntry) -> StoreResult<i64>;
    /// Policy `name` at `version`, or its current (highest) version.
    async fn get_policy(&self, name: &str, version: Option<i64>) -> StoreResult<Option<PolicyRow>>;
    /// The current version of every policy, by name.
    async fn list_policies(&self) -> StoreResult<Vec<PolicyRow>>;
    /// Every version of policy `name`, oldest first.
    async fn policy_versions(&self, name: &str) -> StoreResult<Vec<PolicyRow>>;

    /// Create or replace the set `(row.owner, row.name)`, with its audit
    /// entry (indexed for the owning tenant, if any).
    async fn put_reference_set(&self, row: &ReferenceSetRow, audit: &AuditEntry) -> StoreResult<()>;
    /// Every reference-value set of every owner (operator sets first), by name.
    async fn list_reference_sets(&self) -> StoreResult<Vec<ReferenceSetRow>>;
    /// Delete the set `(owner, name)` (`owner` `None`: the operator's) with
    /// its audit entry; `false` if there was none.
    async fn delete_reference_set(&self, owner: Option<&str>, name: &str, audit: &AuditEntry) -> StoreResult<bool>;

    /// A cached endorsement by key.
    async fn get_endorsement(&self, key: &str) -> StoreResult<Option<EndorsementRow>>;
    /// Keep a fetched endorsement (replacing the one under the same key).
    /// A cache, not admin state: no audit entry.
    async fn put_endorsement(&self, row: &EndorsementRow) -> StoreResult<()>;
    /// Keep every row, or none of them (an imported bundle is kept whole).
    async fn put_endorsements(&self, rows: &[EndorsementRow]) -> StoreResult<()>;
    /// Every cached endorsement, by key.
    async fn list_endorsements(&self) -> StoreResult<Vec<EndorsementRow>>;

    /// The deployment-wide value of `name`: `value` if none was claimed yet
    /// (it is then kept), else the one claimed first, whatever `value` is.
    async fn claim_setting(&self, name: &str, value: &str) -> StoreResult<String>;
}

/// How an owner is stored in `reference_sets.owner`: `''` is the operator.
pub(crate) fn owner_column(owner: Option<&str>) -> &str {
    owner.unwrap_or("")
}

/// The owner of a stored `reference_sets.owner` value.
pub(crate) fn owner_of_column(owner: String) -> Option<String> {
    (!owner.is_empty()).then_some(owner)
}

/// The JSON text `shared_with` is stored as; a malformed one is reported as corrupt.
pub(crate) fn parse_shared_with(text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("reference set shared_with: {e}")))
}

/// Walk the whole audit log and check its hash chain.
/// Returns the number of entries and the head hash.
pub async fn verify_audit_chain(store: &dyn Store) -> Result<(u64, String), ChainError> {
    let mut checker = audit::ChainChecker::new();
    let mut after = 0;
    loop {
        let page = store.audit_page(after, 1000).await.map_err(|e| ChainError { seq: after + 1, reason: e.to_string() })?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            checker.check(r)?;
        }
    }
    Ok(checker.finish())
}
