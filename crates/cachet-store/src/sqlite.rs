//! The embedded SQLite backend (the default: no other process needed).
//!
//! Durability: the database runs in WAL mode with `synchronous=FULL`, so a
//! transaction is on disk when its commit returns; a `kill -9` (or power
//! loss) after an acknowledged write loses nothing. Writers that read before
//! writing (the audit chain) use `BEGIN IMMEDIATE`, so two processes (the
//! server and a `cachet keys` command) never interleave a chain append.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

use crate::audit::{chain_hash, AuditEntry, AuditRecord, GENESIS};
use crate::{
    chain_json, parse_chain, ApiKeyRecord, EndorsementRow, NonceOutcome, PolicyRow, ReferenceSetRow, SecretRow, SigningKeyRecord, Store,
    StoreError, StoreResult,
};

/// The database file name inside a data directory.
pub const DB_FILE: &str = "cachet.db";

/// The SQLite implementation of [`Store`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Attestations' audit entries, written a batch per transaction.
    audit: std::sync::Arc<crate::group_commit::GroupCommit>,
}

impl SqliteStore {
    /// Open (creating if needed) `cachet.db` in `data_dir`, and migrate it.
    pub async fn open_dir(data_dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Database(format!("{}: {e}", data_dir.display())))?;
        restrict_dir(data_dir);
        Self::open_file(&data_dir.join(DB_FILE)).await
    }

    /// Open (creating if needed) the database file at `path`, and migrate it.
    pub async fn open_file(path: &Path) -> StoreResult<Self> {
        create_private(path)?;
        let opts = SqliteConnectOptions::new().filename(path);
        Self::open_with(opts).await
    }

    /// Open a `sqlite:` URL (e.g. `sqlite:///var/lib/cachet/cachet.db`).
    pub async fn open_url(url: &str) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Database(e.to_string()))?;
        let file = opts.get_filename();
        let in_memory = url.contains(":memory:") || url.contains("mode=memory") || file.to_string_lossy().starts_with("file:");
        if !in_memory {
            create_private(file)?;
        }
        Self::open_with(opts).await
    }

    async fn open_with(opts: SqliteConnectOptions) -> StoreResult<Self> {
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // Deleted and overwritten content (a signing key sealed in
            // place, a replaced secret) is zeroed, not left in free space.
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new().max_connections(8).acquire_timeout(Duration::from_secs(30)).connect_with(opts).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(|e| StoreError::Database(format!("migration: {e}")))?;
        Ok(Self { pool, audit: Default::default() })
    }

    /// The connection pool, for maintenance tools and tests.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Close the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn immediate(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Create a new database file with mode 0600 before SQLite opens it (SQLite
/// would create it with the umask's permissions, often world-readable): it
/// holds API-key hashes, sealed secrets and sealed signing keys. SQLite
/// gives its `-wal` and `-shm` files the database file's permissions. An
/// existing file is left as it is.
fn create_private(path: &Path) -> StoreResult<()> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Database(format!("creating {}: {e}", path.display()))),
    }
}

/// Make the data directory private to its owner (it holds private keys).
fn restrict_dir(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
}

/// The size of an audit row (its variable-length text), as SQL: what a
/// page's byte budget counts.
const ROW_BYTES: &str =
    "length(CAST(actor AS BLOB)) + length(CAST(detail AS BLOB)) + COALESCE(length(CAST(failed_check AS BLOB)), 0) + 256";

/// The last `seq` of a page, from `(seq, n)` rows (see [`crate::audit::page_end`]).
fn page_end_of(sizes: &[SqliteRow]) -> StoreResult<Option<i64>> {
    let sizes = sizes.iter().map(|r| Ok((r.try_get::<i64, _>("seq")?, r.try_get::<i64, _>("n")?))).collect::<StoreResult<Vec<_>>>()?;
    Ok(crate::audit::page_end(&sizes))
}

/// Append an audit entry inside an open (immediate) transaction.
async fn append_in(tx: &mut Transaction<'static, Sqlite>, e: &AuditEntry) -> StoreResult<AuditRecord> {
    // Entries record what callers sent: stored within the audit limits,
    // with the id of the request that wrote them.
    append_stored_in(tx, &e.stored()).await
}

/// [`append_in`] for an entry already bounded and stamped (`AuditEntry::stored`,
/// as the group commit queues them: bounding twice would cut the cut text again).
async fn append_stored_in(tx: &mut Transaction<'static, Sqlite>, e: &AuditEntry) -> StoreResult<AuditRecord> {
    let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetch_optional(&mut **tx).await?;
    let (seq, prev_hash) = match last {
        Some(row) => (row.try_get::<i64, _>("seq")? + 1, row.try_get::<String, _>("hash")?),
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
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

fn api_key_from(row: &SqliteRow) -> StoreResult<ApiKeyRecord> {
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

fn secret_from(row: &SqliteRow) -> StoreResult<SecretRow> {
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

fn policy_from(row: &SqliteRow) -> StoreResult<PolicyRow> {
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

fn endorsement_from(row: &SqliteRow) -> StoreResult<EndorsementRow> {
    Ok(EndorsementRow {
        key: row.try_get("key")?,
        kind: row.try_get("kind")?,
        body: row.try_get("body")?,
        fetched_at: row.try_get("fetched_at")?,
        next_update: row.try_get("next_update")?,
        source: row.try_get("source")?,
    })
}

fn reference_set_from(row: &SqliteRow) -> StoreResult<ReferenceSetRow> {
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

/// Index an audit record for an owner, inside the transaction that appended it.
async fn index_owner(tx: &mut Transaction<'static, Sqlite>, owner: &str, seq: i64) -> StoreResult<()> {
    sqlx::query("INSERT OR IGNORE INTO owner_audit (owner, seq) VALUES (?, ?)").bind(owner).bind(seq).execute(&mut **tx).await?;
    Ok(())
}

fn signing_key_from(row: &SqliteRow) -> StoreResult<SigningKeyRecord> {
    let chain_text: String = row.try_get("cert_chain")?;
    let cert_chain = parse_chain(&chain_text)?;
    Ok(SigningKeyRecord {
        kid: row.try_get("kid")?,
        alg: row.try_get("alg")?,
        custody: row.try_get("custody")?,
        public_spki: row.try_get("public_spki")?,
        handle: row.try_get("handle")?,
        cert_chain,
        created_at: row.try_get("created_at")?,
        active_from: row.try_get("active_from")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn audit_from(row: &SqliteRow) -> StoreResult<AuditRecord> {
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
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn insert_nonce(&self, nonce: &[u8], created_at: i64, expires_at: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO nonces (nonce, created_at, expires_at) VALUES (?, ?, ?)")
            .bind(nonce)
            .bind(created_at)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn consume_nonce(&self, nonce: &[u8], now: i64) -> StoreResult<NonceOutcome> {
        // One statement: SQLite runs it atomically, so exactly one of any
        // number of concurrent consumers sees a row change.
        let done = sqlx::query("UPDATE nonces SET consumed_at = ? WHERE nonce = ? AND consumed_at IS NULL AND expires_at > ?")
            .bind(now)
            .bind(nonce)
            .bind(now)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 1 {
            return Ok(NonceOutcome::Consumed);
        }
        let row = sqlx::query("SELECT expires_at, consumed_at FROM nonces WHERE nonce = ?").bind(nonce).fetch_optional(&self.pool).await?;
        Ok(match row {
            None => NonceOutcome::Unknown,
            Some(r) if r.try_get::<Option<i64>, _>("consumed_at")?.is_some() => NonceOutcome::AlreadyUsed,
            Some(_) => NonceOutcome::Expired,
        })
    }

    async fn purge_nonces(&self, before: i64) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM nonces WHERE expires_at < ?").bind(before).execute(&self.pool).await?;
        Ok(r.rows_affected())
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.immediate().await?;
        sqlx::query("INSERT INTO api_keys (id, name, role, secret_hash, created_at, revoked_at, tenant, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
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
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(api_key_from).transpose()
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id").fetch_all(&self.pool).await?;
        rows.iter().map(api_key_from).collect()
    }

    async fn revoke_api_key(&self, id: &str, at: i64, audit: &AuditEntry) -> StoreResult<bool> {
        let mut tx = self.immediate().await?;
        let r = sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        let tenant: Option<String> = sqlx::query_scalar("SELECT tenant FROM api_keys WHERE id = ?").bind(id).fetch_one(&mut *tx).await?;
        let rec = append_in(&mut tx, audit).await?;
        if let Some(t) = &tenant {
            index_owner(&mut tx, t, rec.seq).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.immediate().await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, custody, public_spki, handle, cert_chain, created_at, active_from, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        let mut tx = self.immediate().await?;
        let r = sqlx::query("UPDATE signing_keys SET revoked_at = ? WHERE kid = ? AND revoked_at IS NULL")
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
        let mut tx = self.immediate().await?;
        let r =
            sqlx::query("UPDATE signing_keys SET cert_chain = ? WHERE kid = ?").bind(chain_json(chain)).bind(kid).execute(&mut *tx).await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn move_signing_key(&self, kid: &str, from: &str, to: &str, handle: &[u8], audit: &AuditEntry) -> StoreResult<bool> {
        let mut tx = self.immediate().await?;
        let r = sqlx::query("UPDATE signing_keys SET custody = ?, handle = ? WHERE kid = ? AND custody = ?")
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
        // The old handle (e.g. a plaintext key) is still in the database
        // file's earlier page and in the WAL: write the new pages back now
        // and empty the WAL, so neither file keeps it.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await?;
        Ok(true)
    }

    async fn delete_signing_keys(&self, kids: &[String], audit: &AuditEntry) -> StoreResult<u64> {
        let mut tx = self.immediate().await?;
        let mut n = 0;
        for kid in kids {
            n += sqlx::query("DELETE FROM signing_keys WHERE kid = ?").bind(kid).execute(&mut *tx).await?.rows_affected();
        }
        if n > 0 {
            append_in(&mut tx, audit).await?;
            tx.commit().await?;
        }
        Ok(n)
    }

    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<AuditRecord> {
        let pool = self.pool.clone();
        self.audit
            .append(entry, move |batch| {
                let pool = pool.clone();
                async move {
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
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
        let sizes = sqlx::query(&format!("SELECT seq, {ROW_BYTES} AS n FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"))
            .bind(after)
            .bind(limit.clamp(1, 10_000))
            .fetch_all(&self.pool)
            .await?;
        let Some(end) = page_end_of(&sizes)? else { return Ok(Vec::new()) };
        let rows = sqlx::query("SELECT * FROM audit_log WHERE seq > ? AND seq <= ? ORDER BY seq")
            .bind(after)
            .bind(end)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_from).collect()
    }

    async fn put_secret(&self, row: &SecretRow, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.immediate().await?;
        // Compare-and-swap on the version (see the trait): a create collides
        // on the primary key, a replace matches only the previous version.
        let written = if row.version <= 1 {
            sqlx::query(
                "INSERT INTO secrets (owner, name, policy, policy_hash, sealed, created_at, updated_at, version) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (owner, name) DO NOTHING",
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
                "UPDATE secrets SET policy = ?, policy_hash = ?, sealed = ?, updated_at = ?, version = ? \
                 WHERE owner = ? AND name = ? AND version = ?",
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
            sqlx::query("SELECT * FROM secrets WHERE owner = ? AND name = ?").bind(owner).bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(secret_from).transpose()
    }

    async fn list_secrets(&self, owner: &str) -> StoreResult<Vec<SecretRow>> {
        let rows = sqlx::query("SELECT * FROM secrets WHERE owner = ? ORDER BY name").bind(owner).fetch_all(&self.pool).await?;
        rows.iter().map(secret_from).collect()
    }

    async fn delete_secret(&self, owner: &str, name: &str, audit: &AuditEntry) -> StoreResult<bool> {
        let mut tx = self.immediate().await?;
        let r = sqlx::query("DELETE FROM secrets WHERE owner = ? AND name = ?").bind(owner).bind(name).execute(&mut *tx).await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        let rec = append_in(&mut tx, audit).await?;
        index_owner(&mut tx, owner, rec.seq).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn append_owner_audit(&self, entry: &AuditEntry, owners: &[String]) -> StoreResult<AuditRecord> {
        let mut tx = self.immediate().await?;
        let rec = append_in(&mut tx, entry).await?;
        for o in owners {
            index_owner(&mut tx, o, rec.seq).await?;
        }
        tx.commit().await?;
        Ok(rec)
    }

    async fn owner_audit_page(&self, owner: &str, after: i64, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        let sizes = sqlx::query(&format!(
            "SELECT a.seq, {ROW_BYTES} AS n FROM audit_log a JOIN owner_audit o ON o.seq = a.seq WHERE o.owner = ? AND a.seq > ? ORDER BY a.seq LIMIT ?"
        ))
        .bind(owner)
        .bind(after)
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.pool)
        .await?;
        let Some(end) = page_end_of(&sizes)? else { return Ok(Vec::new()) };
        let rows = sqlx::query(
            "SELECT a.* FROM audit_log a JOIN owner_audit o ON o.seq = a.seq WHERE o.owner = ? AND a.seq > ? AND a.seq <= ? ORDER BY a.seq",
        )
        .bind(owner)
        .bind(after)
        .bind(end)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from).collect()
    }

    async fn put_policy(&self, row: &PolicyRow, audit: &AuditEntry) -> StoreResult<i64> {
        let mut tx = self.immediate().await?;
        let next: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 AS v FROM policies WHERE name = ?")
            .bind(&row.name)
            .fetch_one(&mut *tx)
            .await?
            .try_get("v")?;
        sqlx::query(
            "INSERT INTO policies (name, version, text, hash, created_at, created_by, signer, jws) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
                sqlx::query("SELECT * FROM policies WHERE name = ? AND version = ?").bind(name).bind(v).fetch_optional(&self.pool).await?
            }
            None => {
                sqlx::query("SELECT * FROM policies WHERE name = ? ORDER BY version DESC LIMIT 1")
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
        let rows = sqlx::query("SELECT * FROM policies WHERE name = ? ORDER BY version").bind(name).fetch_all(&self.pool).await?;
        rows.iter().map(policy_from).collect()
    }

    async fn put_reference_set(&self, row: &ReferenceSetRow, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.immediate().await?;
        sqlx::query(
            "INSERT INTO reference_sets (owner, name, doc, updated_at, updated_by, shared_with) VALUES (?, ?, ?, ?, ?, ?) \
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
        let mut tx = self.immediate().await?;
        let r = sqlx::query("DELETE FROM reference_sets WHERE owner = ? AND name = ?")
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
        let row = sqlx::query("SELECT * FROM endorsements WHERE key = ?").bind(key).fetch_optional(&self.pool).await?;
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
        sqlx::query("INSERT INTO deployment (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT value FROM deployment WHERE name = ?").bind(name).fetch_one(&self.pool).await?;
        Ok(row.try_get("value")?)
    }

    async fn list_endorsements(&self) -> StoreResult<Vec<EndorsementRow>> {
        let rows = sqlx::query("SELECT * FROM endorsements ORDER BY key").fetch_all(&self.pool).await?;
        rows.iter().map(endorsement_from).collect()
    }
}

/// Insert or replace one cached endorsement, on the pool or inside a transaction.
async fn put_endorsement_in<'e, E: sqlx::Executor<'e, Database = sqlx::Sqlite>>(db: E, row: &EndorsementRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO endorsements (key, kind, body, fetched_at, next_update, source) VALUES (?, ?, ?, ?, ?, ?) \
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
