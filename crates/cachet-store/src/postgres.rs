//! The PostgreSQL backend: several `cachet serve` replicas share one database.
//!
//! Two guarantees matter across replicas, and both are kept by the database
//! rather than by any one process:
//!
//! * **A nonce is consumed at most once.** [`Store::consume_nonce`] is a
//!   single `UPDATE … WHERE consumed_at IS NULL AND expires_at > now
//!   RETURNING`: PostgreSQL row-locks the nonce, a concurrent update of the
//!   same row waits for the first to commit and then re-checks the `WHERE`
//!   against the committed row, so of any number of racing replicas exactly
//!   one gets the row back. A read-then-write would let two replicas both
//!   see "unused".
//! * **The audit log stays one hash chain.** Every transaction that appends
//!   to it first takes a transaction-scoped advisory lock
//!   (`pg_advisory_xact_lock`), then reads the chain head, writes the admin
//!   change and its audit record, and commits, which releases the lock. This
//!   is the PostgreSQL counterpart of SQLite's `BEGIN IMMEDIATE`: appends
//!   (and the changes they record) are serialised, so no two replicas link
//!   to the same head and no change commits without its record. An advisory
//!   lock needs no extra row and cannot be forgotten by a reader (readers do
//!   not take it and never block); `SELECT … FOR UPDATE` on the head row
//!   would not cover the empty log. Transactions run at `READ COMMITTED`, so
//!   the head read after the lock sees the previous holder's commit.
//!
//! The schema (migrations/postgres) mirrors the SQLite one with `BIGINT`
//! times and `BYTEA` blobs; it is migrated when the store is opened (sqlx
//! serialises concurrent migrators with its own advisory lock).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};

use crate::audit::{chain_hash, AuditEntry, AuditRecord, GENESIS};
use crate::{
    chain_json, parse_chain, ApiKeyRecord, EndorsementRow, NonceOutcome, PolicyRow, ReferenceSetRow, SecretRow, SigningKeyRecord, Store,
    StoreError, StoreResult,
};

/// The advisory-lock key serialising audit-chain appends ("cachet" in ASCII,
/// then 1): fixed, so every replica and every `cachet` command agree on it.
pub const AUDIT_CHAIN_LOCK: i64 = 0x6361_6368_6574_0001;

/// The PostgreSQL implementation of [`Store`].
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// Attestations' audit entries, written a batch per transaction (one
    /// advisory lock for the batch, not one per entry).
    audit: std::sync::Arc<crate::group_commit::GroupCommit>,
}

impl PostgresStore {
    /// Connect to a `postgres://` / `postgresql://` URL and migrate the
    /// database. Errors name what failed, never the URL (it may hold a
    /// password).
    pub async fn open(url: &str) -> StoreResult<Self> {
        let opts =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::Database(format!("database URL: {}", redact(&e.to_string(), url))))?;
        Self::open_with(opts).await
    }

    /// Connect with explicit options and migrate the database.
    pub async fn open_with(opts: PgConnectOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new().max_connections(8).acquire_timeout(Duration::from_secs(30)).connect_with(opts).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(|e| StoreError::Database(format!("migration: {e}")))?;
        Ok(Self { pool, audit: Default::default() })
    }

    /// The connection pool, for maintenance tools and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction that may append to the audit chain: `READ COMMITTED`
    /// and holding [`AUDIT_CHAIN_LOCK`] until it commits or rolls back.
    async fn writer(&self) -> StoreResult<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED").await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(AUDIT_CHAIN_LOCK).execute(&mut *tx).await?;
        Ok(tx)
    }
}

/// `text` with every occurrence of `secret` removed (parse errors may quote
/// the URL they could not parse).
fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "<database URL>")
    }
}

/// The size of an audit row (its variable-length text), as SQL: what a
/// page's byte budget counts (`octet_length` reads the stored length).
const ROW_BYTES: &str = "(octet_length(actor) + octet_length(detail) + COALESCE(octet_length(failed_check), 0) + 256)::BIGINT";

/// The last `seq` of a page, from `(seq, n)` rows (see [`crate::audit::page_end`]).
fn page_end_of(sizes: &[PgRow]) -> StoreResult<Option<i64>> {
    let sizes = sizes.iter().map(|r| Ok((r.try_get::<i64, _>("seq")?, r.try_get::<i64, _>("n")?))).collect::<StoreResult<Vec<_>>>()?;
    Ok(crate::audit::page_end(&sizes))
}

/// Append an audit entry inside a [`PostgresStore::writer`] transaction.
async fn append_in(tx: &mut Transaction<'static, Postgres>, e: &AuditEntry) -> StoreResult<AuditRecord> {
    // Entries record what callers sent: stored within the audit limits,
    // with the id of the request that wrote them.
    append_stored_in(tx, &e.stored()).await
}

/// [`append_in`] for an entry already bounded and stamped (`AuditEntry::stored`,
/// as the group commit queues them: bounding twice would cut the cut text again).
async fn append_stored_in(tx: &mut Transaction<'static, Postgres>, e: &AuditEntry) -> StoreResult<AuditRecord> {
    let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetch_optional(&mut **tx).await?;
    let (seq, prev_hash) = match last {
        Some(row) => {
            let seq: i64 = row.try_get("seq")?;
            (seq.checked_add(1).ok_or_else(|| StoreError::Corrupt("audit_log seq overflow".into()))?, row.try_get::<String, _>("hash")?)
        }
        None => (1, GENESIS.to_string()),
    };
    let detail = e.detail.to_string();
    let hash = chain_hash(
        &prev_hash,
        seq,
        e.ts,
        &e.actor,
        &e.action,
        e.tee.as_deref(),
        &e.outcome,
        e.failed_check.as_deref(),
        e.token_id.as_deref(),
        &detail,
    );
    sqlx::query(
        "INSERT INTO audit_log (seq, ts, actor, action, tee, outcome, failed_check, token_id, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(seq)
    .bind(e.ts)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.tee)
    .bind(&e.outcome)
    .bind(&e.failed_check)
    .bind(&e.token_id)
    .bind(&detail)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    Ok(AuditRecord {
        seq,
        ts: e.ts,
        actor: e.actor.clone(),
        action: e.action.clone(),
        tee: e.tee.clone(),
        outcome: e.outcome.clone(),
        failed_check: e.failed_check.clone(),
        token_id: e.token_id.clone(),
        detail,
        prev_hash,
        hash,
    })
}

/// Index an audit record for an owner, inside the transaction that appended it.
async fn index_owner(tx: &mut Transaction<'static, Postgres>, owner: &str, seq: i64) -> StoreResult<()> {
    sqlx::query("INSERT INTO owner_audit (owner, seq) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(owner)
        .bind(seq)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn api_key_from(row: &PgRow) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        secret_hash: row.try_get("secret_hash")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        tenant: row.try_get("tenant")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn secret_from(row: &PgRow) -> StoreResult<SecretRow> {
    Ok(SecretRow {
        owner: row.try_get("owner")?,
        name: row.try_get("name")?,
        policy: row.try_get("policy")?,
        policy_hash: row.try_get("policy_hash")?,
        sealed: row.try_get("sealed")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
    })
}

fn policy_from(row: &PgRow) -> StoreResult<PolicyRow> {
    Ok(PolicyRow {
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        text: row.try_get("text")?,
        hash: row.try_get("hash")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        signer: row.try_get("signer")?,
        jws: row.try_get("jws")?,
    })
}

fn endorsement_from(row: &PgRow) -> StoreResult<EndorsementRow> {
    Ok(EndorsementRow {
        key: row.try_get("key")?,
        kind: row.try_get("kind")?,
        body: row.try_get("body")?,
        fetched_at: row.try_get("fetched_at")?,
        next_update: row.try_get("next_update")?,
        source: row.try_get("source")?,
    })
}

fn reference_set_from(row: &PgRow) -> StoreResult<ReferenceSetRow> {
    let shared: String = row.try_get("shared_with")?;
    Ok(ReferenceSetRow {
        owner: crate::owner_of_column(row.try_get("owner")?),
        name: row.try_get("name")?,
        doc: row.try_get("doc")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
        shared_with: crate::parse_shared_with(&shared)?,
    })
}

fn signing_key_from(row: &PgRow) -> StoreResult<SigningKeyRecord> {
    let chain_text: String = row.try_get("cert_chain")?;
    Ok(SigningKeyRecord {
        kid: row.try_get("kid")?,
        alg: row.try_get("alg")?,
        custody: row.try_get("custody")?,
        public_spki: row.try_get("public_spki")?,
        handle: row.try_get("handle")?,
        cert_chain: parse_chain(&chain_text)?,
        created_at: row.try_get("created_at")?,
        active_from: row.try_get("active_from")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn audit_from(row: &PgRow) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        ts: row.try_get("ts")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        tee: row.try_get("tee")?,
        outcome: row.try_get("outcome")?,
        failed_check: row.try_get("failed_check")?,
        token_id: row.try_get("token_id")?,
        detail: row.try_get("detail")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn insert_nonce(&self, nonce: &[u8], created_at: i64, expires_at: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO nonces (nonce, created_at, expires_at) VALUES ($1, $2, $3)")
            .bind(nonce)
            .bind(created_at)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn consume_nonce(&self, nonce: &[u8], now: i64) -> StoreResult<NonceOutcome> {
        // One statement decides (see the module documentation): the row lock
        // makes concurrent consumers on any replica take turns, and each
        // re-checks `consumed_at IS NULL` against the committed row.
        let won =
            sqlx::query("UPDATE nonces SET consumed_at = $1 WHERE nonce = $2 AND consumed_at IS NULL AND expires_at > $1 RETURNING nonce")
                .bind(now)
                .bind(nonce)
                .fetch_optional(&self.pool)
                .await?;
        if won.is_some() {
            return Ok(NonceOutcome::Consumed);
        }
        // Not consumed by us: say why, exactly as the SQLite store does.
        let row = sqlx::query("SELECT expires_at, consumed_at FROM nonces WHERE nonce = $1").bind(nonce).fetch_optional(&self.pool).await?;
        Ok(match row {
            None => NonceOutcome::Unknown,
            Some(r) if r.try_get::<Option<i64>, _>("consumed_at")?.is_some() => NonceOutcome::AlreadyUsed,
            Some(_) => NonceOutcome::Expired,
        })
    }

    async fn purge_nonces(&self, before: i64) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM nonces WHERE expires_at < $1").bind(before).execute(&self.pool).await?;
        Ok(r.rows_affected())
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.writer().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, name, role, secret_hash, created_at, revoked_at, tenant, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.role)
        .bind(&key.secret_hash)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .bind(&key.tenant)
        .bind(key.expires_at)
        .execute(&mut *tx)
        .await?;
        let rec = append_in(&mut tx, audit).await?;
        if let Some(t) = &key.tenant {
            index_owner(&mut tx, t, rec.seq).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn find_api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(api_key_from).transpose()
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id").fetch_all(&self.pool).await?;
        rows.iter().map(api_key_from).collect()
    }

    async fn revoke_api_key(&self, id: &str, at: i64, audit: &AuditEntry) -> StoreResult<bool> {
        let mut tx = self.writer().await?;
        let r = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        let tenant: Option<String> = sqlx::query_scalar("SELECT tenant FROM api_keys WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
        let rec = append_in(&mut tx, audit).await?;
        if let Some(t) = &tenant {
            index_owner(&mut tx, t, rec.seq).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.writer().await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, custody, public_spki, handle, cert_chain, created_at, active_from, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.custody)
        .bind(&key.public_spki)
        .bind(&key.handle)
        .bind(chain_json(&key.cert_chain))
        .bind(key.created_at)
        .bind(key.active_from)
        .bind(key.revoked_at)
        .execute(&mut *tx)
        .await?;
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, active_from, kid").fetch_all(&self.pool).await?;
        rows.iter().map(signing_key_from).collect()
    }

    async fn revoke_signing_key(&self, kid: &str, at: i64, audit: &AuditEntry) -> StoreResult<bool> {
        let mut tx = self.writer().await?;
        let r = sqlx::query("UPDATE signing_keys SET revoked_at = $1 WHERE kid = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn set_signing_key_chain(&self, kid: &str, chain: &[Vec<u8>], audit: &AuditEntry) -> StoreResult<bool> {
        let mut tx = self.writer().await?;
        let r = sqlx::query("UPDATE signing_keys SET cert_chain = $1 WHERE kid = $2")
            .bind(chain_json(chain))
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn move_signing_key(&self, kid: &str, from: &str, to: &str, handle: &[u8], audit: &AuditEntry) -> StoreResult<bool> {
        let mut tx = self.writer().await?;
        let r = sqlx::query("UPDATE signing_keys SET custody = $1, handle = $2 WHERE kid = $3 AND custody = $4")
            .bind(to)
            .bind(handle)
            .bind(kid)
            .bind(from)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_signing_keys(&self, kids: &[String], audit: &AuditEntry) -> StoreResult<u64> {
        let mut tx = self.writer().await?;
        let n = sqlx::query("DELETE FROM signing_keys WHERE kid = ANY($1)").bind(kids).execute(&mut *tx).await?.rows_affected();
        if n > 0 {
            append_in(&mut tx, audit).await?;
            tx.commit().await?;
        }
        Ok(n)
    }

    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<AuditRecord> {
        let store = self.clone();
        self.audit
            .append(entry, move |batch| {
                let store = store.clone();
                async move {
                    let mut tx = store.writer().await?;
                    let mut out = Vec::with_capacity(batch.len());
                    for e in &batch {
                        out.push(append_stored_in(&mut tx, e).await?);
                    }
                    tx.commit().await?;
                    Ok(out)
                }
            })
            .await
    }

    async fn audit_page(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        let sizes = sqlx::query(&format!("SELECT seq, {ROW_BYTES} AS n FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"))
            .bind(after)
            .bind(limit.clamp(1, 10_000))
            .fetch_all(&self.pool)
            .await?;
        let Some(end) = page_end_of(&sizes)? else { return Ok(Vec::new()) };
        let rows = sqlx::query("SELECT * FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq")
            .bind(after)
            .bind(end)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_from).collect()
    }

    async fn put_secret(&self, row: &SecretRow, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.writer().await?;
        // Compare-and-swap on the version (see the trait): a create collides
        // on the primary key, a replace matches only the previous version.
        let written = if row.version <= 1 {
            sqlx::query(
                "INSERT INTO secrets (owner, name, policy, policy_hash, sealed, created_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (owner, name) DO NOTHING",
            )
            .bind(&row.owner)
            .bind(&row.name)
            .bind(&row.policy)
            .bind(&row.policy_hash)
            .bind(&row.sealed)
            .bind(row.created_at)
            .bind(row.updated_at)
            .bind(row.version)
            .execute(&mut *tx)
            .await?
        } else {
            sqlx::query(
                "UPDATE secrets SET policy = $1, policy_hash = $2, sealed = $3, updated_at = $4, version = $5 \
                 WHERE owner = $6 AND name = $7 AND version = $8",
            )
            .bind(&row.policy)
            .bind(&row.policy_hash)
            .bind(&row.sealed)
            .bind(row.updated_at)
            .bind(row.version)
            .bind(&row.owner)
            .bind(&row.name)
            .bind(row.version - 1)
            .execute(&mut *tx)
            .await?
        };
        if written.rows_affected() != 1 {
            return Err(crate::secret_conflict(row));
        }
        let rec = append_in(&mut tx, audit).await?;
        index_owner(&mut tx, &row.owner, rec.seq).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_secret(&self, owner: &str, name: &str) -> StoreResult<Option<SecretRow>> {
        let row =
            sqlx::query("SELECT * FROM secrets WHERE owner = $1 AND name = $2").bind(owner).bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(secret_from).transpose()
    }

    async fn list_secrets(&self, owner: &str) -> StoreResult<Vec<SecretRow>> {
        let rows = sqlx::query("SELECT * FROM secrets WHERE owner = $1 ORDER BY name").bind(owner).fetch_all(&self.pool).await?;
        rows.iter().map(secret_from).collect()
    }

    async fn delete_secret(&self, owner: &str, name: &str, audit: &AuditEntry) -> StoreResult<bool> {
        let mut tx = self.writer().await?;
        let r = sqlx::query("DELETE FROM secrets WHERE owner = $1 AND name = $2").bind(owner).bind(name).execute(&mut *tx).await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        let rec = append_in(&mut tx, audit).await?;
        index_owner(&mut tx, owner, rec.seq).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn append_owner_audit(&self, entry: &AuditEntry, owners: &[String]) -> StoreResult<AuditRecord> {
        let mut tx = self.writer().await?;
        let rec = append_in(&mut tx, entry).await?;
        for o in owners {
            index_owner(&mut tx, o, rec.seq).await?;
        }
        tx.commit().await?;
        Ok(rec)
    }

    async fn owner_audit_page(&self, owner: &str, after: i64, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        let sizes = sqlx::query(&format!(
            "SELECT a.seq, {ROW_BYTES} AS n FROM audit_log a JOIN owner_audit o ON o.seq = a.seq WHERE o.owner = $1 AND a.seq > $2 ORDER BY a.seq LIMIT $3"
        ))
        .bind(owner)
        .bind(after)
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.pool)
        .await?;
        let Some(end) = page_end_of(&sizes)? else { return Ok(Vec::new()) };
        let rows = sqlx::query(
            "SELECT a.* FROM audit_log a JOIN owner_audit o ON o.seq = a.seq WHERE o.owner = $1 AND a.seq > $2 AND a.seq <= $3 ORDER BY a.seq",
        )
        .bind(owner)
        .bind(after)
        .bind(end)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from).collect()
    }

    async fn put_policy(&self, row: &PolicyRow, audit: &AuditEntry) -> StoreResult<i64> {
        // Under the chain lock, so two replicas storing the same policy
        // never compute the same next version.
        let mut tx = self.writer().await?;
        let next: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 AS v FROM policies WHERE name = $1")
            .bind(&row.name)
            .fetch_one(&mut *tx)
            .await?
            .try_get("v")?;
        sqlx::query(
            "INSERT INTO policies (name, version, text, hash, created_at, created_by, signer, jws) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&row.name)
        .bind(next)
        .bind(&row.text)
        .bind(&row.hash)
        .bind(row.created_at)
        .bind(&row.created_by)
        .bind(&row.signer)
        .bind(&row.jws)
        .execute(&mut *tx)
        .await?;
        let mut audit = audit.clone();
        if let serde_json::Value::Object(m) = &mut audit.detail {
            m.insert("version".into(), next.into());
        }
        append_in(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(next)
    }

    async fn get_policy(&self, name: &str, version: Option<i64>) -> StoreResult<Option<PolicyRow>> {
        let row = match version {
            Some(v) => {
                sqlx::query("SELECT * FROM policies WHERE name = $1 AND version = $2").bind(name).bind(v).fetch_optional(&self.pool).await?
            }
            None => {
                sqlx::query("SELECT * FROM policies WHERE name = $1 ORDER BY version DESC LIMIT 1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        row.as_ref().map(policy_from).transpose()
    }

    async fn list_policies(&self) -> StoreResult<Vec<PolicyRow>> {
        let rows = sqlx::query(
            "SELECT p.* FROM policies p JOIN (SELECT name, MAX(version) AS version FROM policies GROUP BY name) m \
             ON m.name = p.name AND m.version = p.version ORDER BY p.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(policy_from).collect()
    }

    async fn policy_versions(&self, name: &str) -> StoreResult<Vec<PolicyRow>> {
        let rows = sqlx::query("SELECT * FROM policies WHERE name = $1 ORDER BY version").bind(name).fetch_all(&self.pool).await?;
        rows.iter().map(policy_from).collect()
    }

    async fn put_reference_set(&self, row: &ReferenceSetRow, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.writer().await?;
        sqlx::query(
            "INSERT INTO reference_sets (owner, name, doc, updated_at, updated_by, shared_with) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (owner, name) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at, \
             updated_by = excluded.updated_by, shared_with = excluded.shared_with",
        )
        .bind(crate::owner_column(row.owner.as_deref()))
        .bind(&row.name)
        .bind(&row.doc)
        .bind(row.updated_at)
        .bind(&row.updated_by)
        .bind(serde_json::Value::from(row.shared_with.clone()).to_string())
        .execute(&mut *tx)
        .await?;
        let rec = append_in(&mut tx, audit).await?;
        if let Some(o) = &row.owner {
            index_owner(&mut tx, o, rec.seq).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_reference_sets(&self) -> StoreResult<Vec<ReferenceSetRow>> {
        let rows = sqlx::query("SELECT * FROM reference_sets ORDER BY owner, name").fetch_all(&self.pool).await?;
        rows.iter().map(reference_set_from).collect()
    }

    async fn delete_reference_set(&self, owner: Option<&str>, name: &str, audit: &AuditEntry) -> StoreResult<bool> {
        let mut tx = self.writer().await?;
        let r = sqlx::query("DELETE FROM reference_sets WHERE owner = $1 AND name = $2")
            .bind(crate::owner_column(owner))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        let rec = append_in(&mut tx, audit).await?;
        if let Some(o) = owner {
            index_owner(&mut tx, o, rec.seq).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn get_endorsement(&self, key: &str) -> StoreResult<Option<EndorsementRow>> {
        let row = sqlx::query("SELECT * FROM endorsements WHERE key = $1").bind(key).fetch_optional(&self.pool).await?;
        row.as_ref().map(endorsement_from).transpose()
    }

    async fn put_endorsement(&self, row: &EndorsementRow) -> StoreResult<()> {
        put_endorsement_in(&self.pool, row).await
    }

    async fn put_endorsements(&self, rows: &[EndorsementRow]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for row in rows {
            put_endorsement_in(&mut *tx, row).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claim_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO deployment (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT value FROM deployment WHERE name = $1").bind(name).fetch_one(&self.pool).await?;
        Ok(row.try_get("value")?)
    }

    async fn list_endorsements(&self) -> StoreResult<Vec<EndorsementRow>> {
        let rows = sqlx::query("SELECT * FROM endorsements ORDER BY key").fetch_all(&self.pool).await?;
        rows.iter().map(endorsement_from).collect()
    }
}

/// Insert or replace one cached endorsement, on the pool or inside a transaction.
async fn put_endorsement_in<'e, E: sqlx::Executor<'e, Database = sqlx::Postgres>>(db: E, row: &EndorsementRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO endorsements (key, kind, body, fetched_at, next_update, source) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, body = excluded.body, fetched_at = excluded.fetched_at, \
         next_update = excluded.next_update, source = excluded.source",
    )
    .bind(&row.key)
    .bind(&row.kind)
    .bind(&row.body)
    .bind(row.fetched_at)
    .bind(row.next_update)
    .bind(&row.source)
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_not_repeated_in_errors() {
        let url = "postgres://u:hunter2@db/x";
        assert_eq!(redact(&format!("bad {url} here"), url), "bad <database URL> here");
        assert!(crate::is_postgres_url("PostgreSQL://h/db") && crate::is_postgres_url("postgres://h"));
        assert!(!crate::is_postgres_url("sqlite:/tmp/x.db") && !crate::is_postgres_url("postgres:/h") && !crate::is_postgres_url("pg"));
    }
}
